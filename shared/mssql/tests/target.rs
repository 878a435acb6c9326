//! `TiberiusTarget` against the TDS test server over TCP: both dialects, their failures, and the
//! connection cut mid-call.

use std::time::Duration;

use bakdrop_core::names::DatabaseName;
use bakdrop_core::ports::{RestoreTarget, TargetError, TaskId, TaskStatus};
use bakdrop_core::status::BackupKind;
use bakdrop_core::tsql::{Dialect, RestoreRequest, RestoreSource};

use bakdrop_mssql::settings::{TargetLogin, Tls};
use bakdrop_mssql::TiberiusTarget;
use bakdrop_tds_server::emulator::ClockMode;
use bakdrop_tds_server::{FaultTiming, ServerHandle, SqlServerEmulator};
use bakdrop_tests::tds::emulator_target;

async fn start(emulator: &SqlServerEmulator, dialect: Dialect) -> (TiberiusTarget, ServerHandle) {
    emulator.set_clock_mode(ClockMode::Manual);
    emulator.set_restore_duration(None, Duration::from_secs(60));
    let (addr, handle) = emulator.start().await.expect("server starts");
    (emulator_target(addr.port(), dialect), handle)
}

fn db(name: &str) -> DatabaseName {
    DatabaseName::parse(name).expect("valid name")
}

fn request(name: &str, kind: BackupKind, source: RestoreSource) -> RestoreRequest {
    RestoreRequest::new(db(name), kind, vec![source])
}

fn arn(key: &str) -> RestoreSource {
    RestoreSource::S3Arn(format!("arn:aws:s3:::uploads/{key}"))
}

#[tokio::test]
async fn rds_restore_is_a_task_polled_until_success() {
    let emulator = SqlServerEmulator::rds();
    let (target, _server) = start(&emulator, Dialect::Rds).await;
    assert_eq!(
        target.product_version().await.expect("version"),
        "16.0.4135.4"
    );
    assert_eq!(
        target.database_state(&db("Sales")).await.expect("state"),
        None
    );
    let full = request("Sales", BackupKind::Full, arn("Sales/full.bak"));
    let task = target.submit(&full, "t1").await.expect("submitted");
    assert!(matches!(task, TaskId::Rds(_)), "{task:?}");
    assert!(matches!(
        target.poll(&db("Sales"), &task).await.expect("poll"),
        TaskStatus::Running { .. }
    ));
    emulator.advance(Duration::from_secs(120));
    assert_eq!(
        target.poll(&db("Sales"), &task).await.expect("poll"),
        TaskStatus::Succeeded
    );
    assert_eq!(
        target
            .database_state(&db("Sales"))
            .await
            .expect("state")
            .as_deref(),
        Some("RESTORING")
    );
    // After a crash, the task is found again by its S3 object.
    assert_eq!(
        target.find_task(&full, "t1").await.expect("found"),
        Some(task)
    );
    let other = request("Sales", BackupKind::Log, arn("Sales/log.trn"));
    assert_eq!(target.find_task(&other, "t2").await.expect("none"), None);
}

#[tokio::test]
async fn rds_refuses_a_third_concurrent_task_as_busy() {
    let emulator = SqlServerEmulator::rds();
    let (target, _server) = start(&emulator, Dialect::Rds).await;
    for name in ["A", "B"] {
        let key = format!("{name}/full.bak");
        target
            .submit(&request(name, BackupKind::Full, arn(&key)), name)
            .await
            .expect("submitted");
    }
    let third = target
        .submit(&request("C", BackupKind::Full, arn("C/full.bak")), "C")
        .await;
    assert!(matches!(third, Err(TargetError::Busy)), "{third:?}");
    assert!(third.err().is_some_and(|e| e.is_transient()));
    assert_eq!(
        emulator.rds_tasks().len(),
        2,
        "the third was never submitted"
    );
}

/// Two workers of different migrations count the active tasks at the same moment (1 of 2), both
/// submit; the server refuses the later one. Found by the 50-migration benchmark: the refusal
/// used to fail that migration for good.
#[tokio::test]
async fn an_rds_submit_refused_because_another_worker_took_the_last_slot_is_busy() {
    let emulator = SqlServerEmulator::rds();
    emulator.set_clock_mode(ClockMode::Manual);
    emulator.set_restore_duration(None, Duration::from_secs(60));
    let (addr, _server) = emulator.start().await.expect("server starts");
    let target = |port: u16| emulator_target(port, Dialect::Rds);
    let direct = target(addr.port());
    direct
        .submit(&request("A", BackupKind::Full, arn("A/full.bak")), "A")
        .await
        .expect("first task");
    let proxy = bakdrop_tests::proxy::TcpProxy::start(addr)
        .await
        .expect("proxy");
    proxy.delay_when_client_sends(
        "C's submit",
        &bakdrop_tests::proxy::utf16le("rds_restore_database"),
        Duration::from_millis(400),
    );
    let slow = target(proxy.addr().port());
    let c = request("C", BackupKind::Full, arn("C/full.bak"));
    let b = request("B", BackupKind::Full, arn("B/full.bak"));
    let (late, early) = tokio::join!(slow.submit(&c, "C"), async {
        // C has counted 1 task and its submit is held on the wire; B takes the last slot.
        tokio::time::sleep(Duration::from_millis(150)).await;
        direct.submit(&b, "B").await
    });
    assert!(early.is_ok(), "{early:?}");
    assert!(matches!(late, Err(TargetError::Busy)), "{late:?}");
    assert_eq!(emulator.rds_tasks().len(), 2);
}

#[tokio::test]
async fn an_rds_task_failure_carries_sql_servers_error_number() {
    let emulator = SqlServerEmulator::rds();
    let (target, _server) = start(&emulator, Dialect::Rds).await;
    emulator.fail_next_restore(
        "Sales",
        3169,
        "The database was backed up on a server running version 16.00.4135. That version is incompatible with this server.",
    );
    let task = target
        .submit(
            &request("Sales", BackupKind::Full, arn("Sales/full.bak")),
            "t",
        )
        .await
        .expect("submitted");
    emulator.advance(Duration::from_secs(120));
    match target.poll(&db("Sales"), &task).await.expect("poll") {
        TaskStatus::Failed { sql_error, .. } => {
            assert_eq!(sql_error.map(|e| e.number), Some(3169));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn native_restore_runs_as_an_agent_job_with_the_name_bracket_quoted() {
    let emulator = SqlServerEmulator::native();
    let (target, _server) = start(&emulator, Dialect::Native).await;
    let hostile = "Sales]; DROP DATABASE master; --";
    let full = request(
        hostile,
        BackupKind::Full,
        RestoreSource::Disk("/var/opt/mssql/backup/it's full.bak".into()),
    );
    let task = target
        .submit(&full, "bakdrop_Sales_full_1")
        .await
        .expect("submitted");
    assert_eq!(task, TaskId::AgentJob("bakdrop_Sales_full_1".into()));
    assert!(matches!(
        target.poll(&db(hostile), &task).await.expect("poll"),
        TaskStatus::Running { .. }
    ));
    emulator.advance(Duration::from_secs(120));
    assert_eq!(
        target.poll(&db(hostile), &task).await.expect("poll"),
        TaskStatus::Succeeded
    );
    assert!(
        emulator.unquoted_database_identifiers().is_empty(),
        "{:?}",
        emulator.unquoted_database_identifiers()
    );
    assert!(
        emulator.database(hostile).is_some(),
        "restored under its exact name"
    );
    assert_eq!(
        target
            .find_task(&full, "bakdrop_Sales_full_1")
            .await
            .expect("found"),
        Some(task)
    );
    assert_eq!(
        target
            .find_task(&full, "bakdrop_other")
            .await
            .expect("none"),
        None
    );
}

#[tokio::test]
async fn a_failed_agent_job_reports_the_restore_error() {
    let emulator = SqlServerEmulator::native();
    let (target, _server) = start(&emulator, Dialect::Native).await;
    emulator.fail_next_restore(
        "Sales",
        3201,
        "Cannot open backup device '/var/opt/mssql/backup/x.bak'. Operating system error 2(The system cannot find the file specified.).",
    );
    let task = target
        .submit(
            &request(
                "Sales",
                BackupKind::Full,
                RestoreSource::Disk("/var/opt/mssql/backup/x.bak".into()),
            ),
            "job1",
        )
        .await
        .expect("submitted");
    emulator.advance(Duration::from_secs(120));
    match target.poll(&db("Sales"), &task).await.expect("poll") {
        TaskStatus::Failed { sql_error, message } => {
            assert_eq!(sql_error.map(|e| e.number), Some(3201), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connection_cut_mid_submit_is_a_transient_connection_error() {
    let emulator = SqlServerEmulator::native();
    let (target, server) = start(&emulator, Dialect::Native).await;
    server.cut_connection_on_sql(FaultTiming::AfterHandler, "sp_add_job");
    let full = request(
        "Sales",
        BackupKind::Full,
        RestoreSource::Disk("/b/full.bak".into()),
    );
    let err = target.submit(&full, "job-cut").await.expect_err("cut");
    assert!(matches!(err, TargetError::Connection(_)), "{err:?}");
    assert!(err.is_transient());
    // The job did run: the retry finds it instead of submitting again.
    assert_eq!(
        target.find_task(&full, "job-cut").await.expect("found"),
        Some(TaskId::AgentJob("job-cut".into()))
    );
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_transient_connection_error() {
    let login = TargetLogin {
        host: "127.0.0.1".into(),
        port: 1,
        username: "u".into(),
        password: "p".into(),
        tls: Tls::Off,
    };
    let target = TiberiusTarget::new(login.config(), Dialect::Rds);
    let err = target
        .product_version()
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_transient(), "{err:?}");
}
