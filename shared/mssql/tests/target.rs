//! `TiberiusTarget` against the TDS test server over TCP: both dialects, their failures, and the
//! connection cut mid-call.

use std::time::Duration;

use bakdrop_core::model::header::{BackupKind, DatabaseFile, DatabaseFileKind};
use bakdrop_core::model::names::DatabaseName;
use bakdrop_core::model::task::TaskId;
use bakdrop_core::ports::{NotReady, Online, RestoreTarget, TargetError, TaskStatus};
use bakdrop_core::tsql::{Dialect, RestoreRequest, RestoreSource, S3Arn};

use bakdrop_mssql::settings::{TargetLogin, Tls};
use bakdrop_mssql::testing::emulator_target;
use bakdrop_mssql::TiberiusTarget;
use bakdrop_tds_server::emulator::{self as emu, BackupInfo, ClockMode};
use bakdrop_tds_server::{FaultTiming, ServerHandle, SqlServerEmulator};

async fn start(emulator: &SqlServerEmulator, dialect: Dialect) -> (TiberiusTarget, ServerHandle) {
    let (addr, handle) = start_manual(emulator).await;
    (emulator_target(addr.port(), dialect), handle)
}

/// The server on a manual clock, each restore taking 60 s of it.
async fn start_manual(emulator: &SqlServerEmulator) -> (std::net::SocketAddr, ServerHandle) {
    emulator.set_clock_mode(ClockMode::Manual);
    emulator.set_restore_duration(None, Duration::from_secs(60));
    emulator.start().await.expect("server starts")
}

fn db(name: &str) -> DatabaseName {
    DatabaseName::parse(name).expect("valid name")
}

fn request(name: &str, kind: BackupKind, source: RestoreSource) -> RestoreRequest {
    RestoreRequest::new(db(name), kind, vec![source])
}

/// Tells the server that `source` holds a backup of database `name` (files `<name>` and
/// `<name>_log` at Windows paths, no checksums) and returns the request bakdrop would send for
/// it, with the header's file list.
fn described(
    emulator: &SqlServerEmulator,
    name: &str,
    kind: BackupKind,
    source: RestoreSource,
) -> RestoreRequest {
    let emu_kind = match kind {
        BackupKind::Full => emu::BackupKind::Full,
        BackupKind::Differential => emu::BackupKind::Differential,
        BackupKind::Log => emu::BackupKind::Log,
    };
    let info = BackupInfo::new(emu_kind, name);
    emulator.register_backup(&source.text(), info.clone());
    RestoreRequest {
        files: info
            .files
            .iter()
            .zip(1..)
            .map(|(f, file_id)| DatabaseFile {
                logical_name: f.logical_name.clone(),
                physical_name: f.physical_name.clone(),
                kind: if f.file_type == emu::FileKind::Log {
                    DatabaseFileKind::Log
                } else {
                    DatabaseFileKind::Data
                },
                file_id,
            })
            .collect(),
        ..request(name, kind, source)
    }
}

fn arn(key: &str) -> RestoreSource {
    RestoreSource::S3Arn(S3Arn::object("aws", "uploads", key))
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
    let full = described(&emulator, "Sales", BackupKind::Full, arn("Sales/full.bak"));
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
            .submit(
                &described(&emulator, name, BackupKind::Full, arn(&key)),
                name,
            )
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
/// submit. RDS queues tasks beyond the two in progress ("Integrating an Amazon RDS for SQL Server
/// DB instance with Amazon S3": at most two tasks in progress, the others wait in the queue): the
/// later submit gets a task that waits CREATED, and fails nothing.
#[tokio::test]
async fn an_rds_submit_racing_another_worker_for_the_last_slot_is_queued_by_rds() {
    let emulator = SqlServerEmulator::rds();
    let (addr, _server) = start_manual(&emulator).await;
    let target = |port: u16| emulator_target(port, Dialect::Rds);
    let direct = target(addr.port());
    direct
        .submit(
            &described(&emulator, "A", BackupKind::Full, arn("A/full.bak")),
            "A",
        )
        .await
        .expect("first task");
    let proxy = bakdrop_test_support::proxy::TcpProxy::start(addr)
        .await
        .expect("proxy");
    proxy.delay_when_client_sends(
        "C's submit",
        &bakdrop_test_support::proxy::utf16le("rds_restore_database"),
        Duration::from_millis(400),
    );
    let slow = target(proxy.addr().port());
    let c = described(&emulator, "C", BackupKind::Full, arn("C/full.bak"));
    let b = described(&emulator, "B", BackupKind::Full, arn("B/full.bak"));
    let (late, early) = tokio::join!(slow.submit(&c, "C"), async {
        // C has counted 1 task and its submit is held on the wire; B takes the last slot.
        tokio::time::sleep(Duration::from_millis(150)).await;
        direct.submit(&b, "B").await
    });
    assert!(early.is_ok(), "{early:?}");
    let late = late.expect("queued, not refused");
    emulator.advance(Duration::from_secs(1));
    let tasks = emulator.rds_tasks();
    assert_eq!(tasks.len(), 3);
    assert_eq!(
        tasks
            .iter()
            .filter(|t| t.lifecycle == emu::Lifecycle::Created)
            .count(),
        1,
        "one waits in RDS's queue"
    );
    emulator.advance(Duration::from_secs(300));
    assert_eq!(
        direct.poll(&db("C"), &late).await.expect("poll"),
        TaskStatus::Succeeded
    );
}

/// RDS documents texts, not numbers, for failed tasks: the failure carries RDS's text whole.
#[tokio::test]
async fn an_rds_task_failure_carries_rdss_text_and_no_invented_number() {
    let emulator = SqlServerEmulator::rds();
    let (target, _server) = start(&emulator, Dialect::Rds).await;
    // Nothing was uploaded under this key: RDS cannot read it.
    let task = target
        .submit(
            &request("Sales", BackupKind::Full, arn("Sales/missing.bak")),
            "t",
        )
        .await
        .expect("submitted");
    emulator.advance(Duration::from_secs(120));
    match target.poll(&db("Sales"), &task).await.expect("poll") {
        TaskStatus::Failed { sql_error, message } => {
            assert_eq!(sql_error, None, "{message}");
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The result set of `rds_restore_*` is not documented: without a row, the task is found by its
/// object.
#[tokio::test]
async fn an_rds_submit_that_returns_no_row_finds_its_task_by_the_object() {
    let emulator = SqlServerEmulator::rds();
    emulator.set_rds_submit_returns_row(false);
    let (target, _server) = start(&emulator, Dialect::Rds).await;
    let full = described(&emulator, "Sales", BackupKind::Full, arn("Sales/full.bak"));
    let task = target.submit(&full, "t").await.expect("submitted");
    let id = emulator.rds_tasks()[0].task_id;
    assert_eq!(task, TaskId::Rds(i64::from(id)));
}

/// `rds_finish_restore` starts a FINISH_RESTORE task: the database is online only once it
/// succeeded; asking again while it runs returns the same task.
#[tokio::test]
async fn rds_brings_a_database_online_in_a_finish_restore_task() {
    let emulator = SqlServerEmulator::rds();
    let (target, _server) = start(&emulator, Dialect::Rds).await;
    emulator.set_finish_duration(Duration::from_secs(30));
    let full = described(&emulator, "Sales", BackupKind::Full, arn("Sales/full.bak"));
    target.submit(&full, "t").await.expect("submitted");
    emulator.advance(Duration::from_secs(120));
    let Online::Finishing(task) = target
        .bring_online(&db("Sales"), "finish")
        .await
        .expect("finish")
    else {
        panic!("RDS finishes in a task");
    };
    assert!(matches!(
        target.poll(&db("Sales"), &task).await.expect("poll"),
        TaskStatus::Running { .. }
    ));
    assert_eq!(
        target
            .database_state(&db("Sales"))
            .await
            .expect("state")
            .as_deref(),
        Some("RESTORING")
    );
    assert_eq!(
        target
            .bring_online(&db("Sales"), "finish")
            .await
            .expect("again"),
        Online::Finishing(task.clone()),
        "the finish under way, not a second one"
    );
    emulator.advance(Duration::from_secs(60));
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
        Some("ONLINE")
    );
}

#[tokio::test]
async fn native_restore_runs_as_an_agent_job_with_the_name_bracket_quoted() {
    let emulator = SqlServerEmulator::native();
    let (target, _server) = start(&emulator, Dialect::Native).await;
    let hostile = "Sales]; DROP DATABASE master; --";
    let full = described(
        &emulator,
        hostile,
        BackupKind::Full,
        RestoreSource::Disk("/var/opt/mssql/backup/it's $(JOBNAME) full.bak".into()),
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
    // Nothing at that path: the step fails with 3201, then 3013.
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
    let full = described(
        &emulator,
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

/// Before a migration's first restore: Agent must run, the edition must have one, and an
/// `s3://` source needs a credential named after its prefix.
#[tokio::test]
async fn native_targets_without_a_running_agent_or_a_credential_are_not_ready() {
    let emulator = SqlServerEmulator::native();
    let (target, _server) = start(&emulator, Dialect::Native).await;
    let url = "s3://s3.eu-west-1.amazonaws.com/uploads/Sales/full.bak";
    let by_url = request("Sales", BackupKind::Full, RestoreSource::Url(url.into()));
    let by_disk = request(
        "Sales",
        BackupKind::Full,
        RestoreSource::Disk("/b/f.bak".into()),
    );
    target.check_ready(&by_disk).await.expect("ready from disk");
    let missing = target
        .check_ready(&by_url)
        .await
        .expect_err("no credential");
    assert!(
        matches!(&missing, TargetError::NotReady(NotReady::NoCredential { url })
            if url == "s3://s3.eu-west-1.amazonaws.com/uploads"),
        "{missing:?}"
    );
    assert!(
        missing.is_transient(),
        "the DBA creates it; the restore goes on"
    );
    emulator.add_credential("s3://s3.eu-west-1.amazonaws.com/uploads");
    target.check_ready(&by_url).await.expect("credential found");

    emulator.set_agent_running(false);
    assert!(matches!(
        target.check_ready(&by_disk).await,
        Err(TargetError::NotReady(NotReady::AgentNotRunning))
    ));
    // Without VIEW SERVER STATE the check cannot tell; the submit does (22022), and the job
    // the submission created is deleted again.
    emulator.set_view_server_state(false);
    target.check_ready(&by_disk).await.expect("cannot tell");
    let full = described(
        &emulator,
        "Sales",
        BackupKind::Full,
        RestoreSource::Disk("/b/f.bak".into()),
    );
    let refused = target
        .submit(&full, "job-agent")
        .await
        .expect_err("agent stopped");
    assert!(
        matches!(refused, TargetError::NotReady(NotReady::AgentNotRunning)),
        "{refused:?}"
    );
    assert!(emulator.job("job-agent").is_none(), "no job left behind");

    let express = SqlServerEmulator::native_express();
    let (target, _server) = start(&express, Dialect::Native).await;
    let refused = target.check_ready(&by_disk).await.expect_err("express");
    assert!(
        matches!(&refused, TargetError::NotReady(NotReady::EditionWithoutAgent { edition }) if edition.contains("Express")),
        "{refused:?}"
    );
    assert!(!refused.is_transient());
}

/// A native full restore of "Sales" from `/b/f.bak`, submitted as the Agent job `job`.
async fn native_full_submitted(
    emulator: &SqlServerEmulator,
    job: &str,
) -> (TiberiusTarget, TaskId, ServerHandle) {
    let (target, server) = start(emulator, Dialect::Native).await;
    let full = described(
        emulator,
        "Sales",
        BackupKind::Full,
        RestoreSource::Disk("/b/f.bak".into()),
    );
    let task = target.submit(&full, job).await.expect("submitted");
    (target, task, server)
}

/// The job step runs in master: its progress is found through the step's session, not the
/// restored database's id.
#[tokio::test]
async fn a_native_restore_shows_its_progress_while_the_job_runs() {
    let emulator = SqlServerEmulator::native();
    let (target, task, _server) = native_full_submitted(&emulator, "job-progress").await;
    emulator.advance(Duration::from_secs(30));
    match target.poll(&db("Sales"), &task).await.expect("poll") {
        TaskStatus::Running { percent: Some(p) } => assert!(p > 0.0 && p < 100.0, "{p}"),
        other => panic!("expected progress, got {other:?}"),
    }
}

/// A job running when Agent restarted has no outcome and a stale activity row of the old
/// session: it is reported interrupted, not running forever.
#[tokio::test]
async fn a_job_interrupted_by_an_agent_restart_is_a_failure_not_running_forever() {
    let emulator = SqlServerEmulator::native();
    let (target, task, _server) = native_full_submitted(&emulator, "job-restart").await;
    emulator.advance(Duration::from_secs(10));
    emulator.restart_agent();
    match target.poll(&db("Sales"), &task).await.expect("poll") {
        TaskStatus::Failed { sql_error, message } => {
            assert_eq!(sql_error, None);
            assert!(message.contains("interrupted"), "{message}");
        }
        other => panic!("expected the interruption, got {other:?}"),
    }
}

/// The secret was rotated: SQL Server refuses the login in use (18456); the target reads the
/// login again, once, and the call succeeds.
#[tokio::test]
async fn a_refused_login_is_read_again_and_the_call_goes_through() {
    let emulator = SqlServerEmulator::native();
    let (addr, _server) = emulator.start().await.expect("server starts");
    emulator.require_login("admin", "Rotated#2");
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = reads.clone();
    let port = addr.port();
    let target =
        emulator_target(port, Dialect::Native).with_login_refresh(std::sync::Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                Ok(TargetLogin {
                    host: "127.0.0.1".into(),
                    port,
                    username: "admin".into(),
                    password: "Rotated#2".into(),
                    tls: Tls::Off,
                })
            })
        }));
    target
        .product_version()
        .await
        .expect("connected with the login read again");
    target.product_version().await.expect("and keeps it");
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Without a way to read it again, the refusal is a fault of the moment (retried).
    let stale = emulator_target(port, Dialect::Native);
    let refused = stale.product_version().await.expect_err("refused");
    assert!(
        matches!(refused, TargetError::Sql { number: 18456, .. }),
        "{refused:?}"
    );
    assert!(refused.is_transient());
}

/// A server that accepts the connection and never answers, or answers a statement too late:
/// the call ends as a connection error (retried), not a worker hung until Lambda kills it.
#[tokio::test]
async fn connecting_and_statements_time_out_as_connection_errors() {
    use bakdrop_mssql::connection::Timeouts;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket); // accepted, never answered
        }
    });
    let timeouts = Timeouts {
        connect: Duration::from_millis(300),
        query: Duration::from_millis(300),
    };
    let target = emulator_target(port, Dialect::Native).with_timeouts(timeouts);
    let started = std::time::Instant::now();
    let err = target.product_version().await.expect_err("times out");
    assert!(matches!(err, TargetError::Connection(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let emulator = SqlServerEmulator::native();
    let (addr, _server) = emulator.start().await.expect("server starts");
    let proxy = bakdrop_test_support::proxy::TcpProxy::start(addr)
        .await
        .expect("proxy");
    proxy.delay_when_client_sends(
        "slow statement",
        &bakdrop_test_support::proxy::utf16le("SERVERPROPERTY"),
        Duration::from_secs(2),
    );
    let target = emulator_target(proxy.addr().port(), Dialect::Native).with_timeouts(timeouts);
    let err = target.product_version().await.expect_err("times out");
    assert!(
        matches!(&err, TargetError::Connection(e) if e.to_string().contains("statement")),
        "{err:?}"
    );
}

/// Native `RESTORE … WITH RECOVERY` runs as an Agent job, as restores do: the call returns at
/// once with the job, whose history says when the database is online; asking again while it
/// runs returns the same job, and the job is deleted once released.
#[tokio::test]
async fn native_recovery_is_an_agent_job_polled_until_the_database_is_online() {
    let emulator = SqlServerEmulator::native();
    let (target, _server) = start(&emulator, Dialect::Native).await;
    emulator.set_finish_duration(Duration::from_secs(600));
    let full = described(
        &emulator,
        "Sales",
        BackupKind::Full,
        RestoreSource::Disk("/b/f.bak".into()),
    );
    let restore = target.submit(&full, "job-full").await.expect("submitted");
    emulator.advance(Duration::from_secs(120));
    assert_eq!(
        target.poll(&db("Sales"), &restore).await.expect("poll"),
        TaskStatus::Succeeded
    );
    let job = "bakdrop_Sales_recovery";
    let started = std::time::Instant::now();
    let online = target
        .bring_online(&db("Sales"), job)
        .await
        .expect("started");
    assert!(started.elapsed() < Duration::from_secs(5), "not waited for");
    assert_eq!(online, Online::Finishing(TaskId::AgentJob(job.into())));
    let step = &emulator.job(job).expect("an Agent job").steps[0];
    assert_eq!(
        step.command,
        "DECLARE @db sysname = N'Sales'; RESTORE DATABASE @db WITH RECOVERY"
    );
    emulator.advance(Duration::from_secs(300));
    let task = TaskId::AgentJob(job.into());
    assert!(matches!(
        target.poll(&db("Sales"), &task).await.expect("poll"),
        TaskStatus::Running { .. }
    ));
    assert_eq!(
        target
            .database_state(&db("Sales"))
            .await
            .expect("state")
            .as_deref(),
        Some("RESTORING")
    );
    assert_eq!(
        target.bring_online(&db("Sales"), job).await.expect("again"),
        online,
        "the recovery under way, not a second one"
    );
    emulator.advance(Duration::from_secs(300));
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
        Some("ONLINE")
    );
    let nothing = RestoreRequest::new(db("Sales"), BackupKind::Full, Vec::new());
    target
        .release_task(&nothing, &task, job)
        .await
        .expect("released");
    assert!(emulator.job(job).is_none(), "the job is deleted");
}

/// A recovery job that fails says why: SQL Server's error from the job history.
#[tokio::test]
async fn a_failed_native_recovery_job_reports_sql_servers_error() {
    let emulator = SqlServerEmulator::native();
    let (target, _server) = start(&emulator, Dialect::Native).await;
    emulator.add_database("Sales", emu::DatabaseState::Online);
    let job = "bakdrop_Sales_recovery";
    let online = target
        .bring_online(&db("Sales"), job)
        .await
        .expect("started");
    emulator.advance(Duration::from_secs(5));
    let Online::Finishing(task) = online else {
        panic!("a job: {online:?}");
    };
    match target.poll(&db("Sales"), &task).await.expect("poll") {
        TaskStatus::Failed {
            sql_error: Some(e), ..
        } => assert_eq!(e.number, 3117),
        other => panic!("{other:?}"),
    }
}

/// Without SQL Server Agent, no recovery job starts, and none is left behind.
#[tokio::test]
async fn native_recovery_without_agent_is_not_ready_and_leaves_no_job() {
    let emulator = SqlServerEmulator::native();
    let (target, _server) = start(&emulator, Dialect::Native).await;
    emulator.add_database("Sales", emu::DatabaseState::Restoring);
    emulator.set_agent_running(false);
    let job = "bakdrop_Sales_recovery";
    let err = target
        .bring_online(&db("Sales"), job)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, TargetError::NotReady(NotReady::AgentNotRunning)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(emulator.job(job).is_none());
}
