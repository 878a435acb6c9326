//! The SQL Server emulator through a real tiberius client.

use crate::common::{connect, TestClient};
use bakdrop_tds_server::emulator::{
    BackupFileInfo, BackupInfo, BackupKind, ClockMode, DatabaseState, JobHistory, ServerInfo,
};
use bakdrop_tds_server::{FaultTiming, SqlServerEmulator};
use std::time::Duration;
use tiberius::{Row, ToSql};

/// A backup whose files were in the Linux default data directory under their own names.
fn linux_backup(kind: BackupKind, db: &str) -> BackupInfo {
    let mut b = BackupInfo::new(kind, db);
    b.files = vec![
        BackupFileInfo::data(db, &format!("/var/opt/mssql/data/{db}.mdf")),
        BackupFileInfo::log(
            &format!("{db}_log"),
            &format!("/var/opt/mssql/data/{db}_log.ldf"),
        ),
    ];
    b
}

/// bakdrop's Agent job submission: one batch that deletes a half-made job and re-raises.
const SUBMIT_JOB: &str = "DECLARE @job_id uniqueidentifier; BEGIN TRY EXEC msdb.dbo.sp_add_job @job_name=@P1, @job_id=@job_id OUTPUT; EXEC msdb.dbo.sp_add_jobstep @job_id=@job_id, @step_name=N'restore', @subsystem=N'TSQL', @database_name=N'master', @command=@P2; EXEC msdb.dbo.sp_add_jobserver @job_id=@job_id; EXEC msdb.dbo.sp_start_job @job_id=@job_id; END TRY BEGIN CATCH IF @job_id IS NOT NULL EXEC msdb.dbo.sp_delete_job @job_id=@job_id; THROW; END CATCH; SELECT @job_id AS job_id";

async fn submit_job(client: &mut TestClient, name: &str, command: &str) -> tiberius::Uuid {
    let r = rows(client, SUBMIT_JOB, &[&name, &command]).await;
    r[0].get("job_id").expect("job id")
}

/// The step row (step_id 1) of a job's last run.
fn step_row(emu: &SqlServerEmulator, job: &str) -> JobHistory {
    let id = emu.job(job).expect("job").job_id;
    emu.job_history()
        .into_iter()
        .rev()
        .find(|h| h.job_id == id && h.step_id == 1)
        .expect("step row")
}

async fn rows(client: &mut TestClient, sql: &str, params: &[&dyn ToSql]) -> Vec<Row> {
    client
        .query(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_first_result()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn server_error(
    client: &mut TestClient,
    sql: &str,
    params: &[&dyn ToSql],
) -> tiberius::error::TokenError {
    let result = match client.query(sql, params).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Err(tiberius::error::Error::Server(e)) => e,
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

fn text(row: &Row, col: &str) -> Option<String> {
    row.get::<&str, _>(col).map(str::to_string)
}

const ARN_FULL: &str = "arn:aws:s3:::bucket/Sales/full.bak";
const ARN_LOG: &str = "arn:aws:s3:::bucket/Sales/log1.trn";

async fn task_status(client: &mut TestClient, db: &str, task_id: i32) -> Row {
    let mut r = rows(
        client,
        "exec msdb.dbo.rds_task_status @db_name=@P1, @task_id=@P2",
        &[&db, &task_id],
    )
    .await;
    assert_eq!(r.len(), 1, "one task row");
    r.remove(0)
}

#[tokio::test]
async fn sql_outside_the_understood_forms_is_rejected_not_guessed() {
    // CAST is understood (bakdrop casts SERVERPROPERTY's sql_variant); malformed SQL is not.
    let emu = SqlServerEmulator::rds();
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(&mut c, "SELECT CAST(1 AS int AS one", &[]).await;
    assert_eq!(e.code(), 102);
    let e = server_error(
        &mut c,
        "SELECT 1 FROM sys.databases d JOIN sys.databases e ON 1 = 1",
        &[],
    )
    .await;
    assert_eq!(e.code(), 102);
    let e = server_error(&mut c, "SELECT FOO(1)", &[]).await;
    assert_eq!(e.code(), 195);
    let e = server_error(&mut c, "SELECT 'unclosed", &[]).await;
    assert_eq!(e.code(), 105);
}

#[tokio::test]
async fn serverproperty_and_version_queries_answer_like_sql_server_2022() {
    let emu = SqlServerEmulator::rds();
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "SELECT SERVERPROPERTY('ProductVersion') AS ProductVersion,\n  SERVERPROPERTY('ProductMajorVersion') AS ProductMajorVersion, SERVERPROPERTY('Edition') AS Edition, SERVERPROPERTY('EngineEdition') AS EngineEdition",
        &[],
    )
    .await;
    assert_eq!(
        text(&r[0], "ProductVersion").as_deref(),
        Some("16.0.4135.4")
    );
    assert_eq!(text(&r[0], "ProductMajorVersion").as_deref(), Some("16"));
    assert_eq!(
        text(&r[0], "Edition").as_deref(),
        Some("Standard Edition (64-bit)")
    );
    assert_eq!(r[0].get::<i32, _>("EngineEdition"), Some(2));
    let v = rows(&mut c, "select @@VERSION", &[]).await;
    assert!(v[0]
        .get::<&str, _>(0)
        .unwrap_or_default()
        .starts_with("Microsoft SQL Server 2022"));
    let q = c
        .simple_query("SELECT @@version AS v")
        .await
        .expect("batch")
        .into_first_result()
        .await
        .expect("rows");
    assert!(text(&q[0], "v").unwrap_or_default().contains("16.0.4135.4"));
}

#[tokio::test]
async fn sys_databases_reports_existence_and_state() {
    let emu = SqlServerEmulator::rds();
    emu.add_database("Existing", DatabaseState::Restoring);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "SELECT name, state_desc FROM sys.databases WHERE name = @P1",
        &[&"existing"],
    )
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(text(&r[0], "name").as_deref(), Some("Existing"));
    assert_eq!(text(&r[0], "state_desc").as_deref(), Some("RESTORING"));
    let r = rows(
        &mut c,
        "SELECT 1 FROM sys.databases WHERE name = @P1",
        &[&"Missing"],
    )
    .await;
    assert!(r.is_empty());
    let r = rows(
        &mut c,
        "SELECT COUNT(*) AS n FROM master.sys.databases WHERE name IN (N'master', N'msdb')",
        &[],
    )
    .await;
    assert_eq!(r[0].get::<i32, _>("n"), Some(2));
    let e = server_error(&mut c, "SELECT nope FROM sys.databases", &[]).await;
    assert_eq!(e.code(), 207);
}

#[tokio::test]
async fn an_rds_restore_is_polled_from_created_to_success_then_finished_by_a_task() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_restore_duration(Some("Sales"), Duration::from_secs(60));
    emu.set_finish_duration(Duration::from_secs(30));
    emu.register_backup(ARN_FULL, BackupInfo::new(BackupKind::Full, "Sales"));
    emu.register_backup(ARN_LOG, BackupInfo::new(BackupKind::Log, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let submitted = rows(
        &mut c,
        "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=@P3, @type=@P4",
        &[&"Sales", &ARN_FULL, &1i32, &"FULL"],
    )
    .await;
    let task_id = submitted[0].get::<i32, _>("task_id").expect("task id");
    assert_eq!(text(&submitted[0], "lifecycle").as_deref(), Some("CREATED"));
    let t = task_status(&mut c, "Sales", task_id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("CREATED"));
    assert_eq!(
        text(&t, "task_type").as_deref(),
        Some("RESTORE_DB_NORECOVERY")
    );
    emu.advance(Duration::from_secs(30));
    let t = task_status(&mut c, "Sales", task_id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("IN_PROGRESS"));
    let pct = t.get::<i32, _>("% complete").expect("percent");
    assert!((40..60).contains(&pct), "percent {pct}");
    // While it runs the database exists as RESTORING.
    let r = rows(
        &mut c,
        "SELECT state_desc FROM sys.databases WHERE name = @P1",
        &[&"Sales"],
    )
    .await;
    assert_eq!(text(&r[0], "state_desc").as_deref(), Some("RESTORING"));
    // [RDS] blocks only a pending task WITH RECOVERY: a log may be submitted meanwhile.
    let r = rows(
        &mut c,
        "exec msdb.dbo.rds_restore_log @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=@P3",
        &[&"Sales", &ARN_LOG, &1i32],
    )
    .await;
    let log_task = r[0].get::<i32, _>("task_id").expect("task id");
    emu.advance(Duration::from_secs(31));
    let t = task_status(&mut c, "Sales", task_id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("SUCCESS"));
    assert_eq!(t.get::<i32, _>("% complete"), Some(100));
    assert_eq!(text(&t, "S3_object_arn").as_deref(), Some(ARN_FULL));
    assert!(text(&t, "task_info")
        .unwrap_or_default()
        .contains("Task has been completed"));
    let db = emu.database("sales").expect("db");
    assert_eq!(db.state, DatabaseState::Restoring);
    assert_eq!(db.restored_from[0].sources, vec![ARN_FULL.to_string()]);
    emu.advance(Duration::from_secs(120));
    let t = task_status(&mut c, "Sales", log_task).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("SUCCESS"));
    // Finishing is a task of its own: no result set, RESTORING until it succeeds.
    let finish = c
        .query("exec msdb.dbo.rds_finish_restore @db_name=@P1", &[&"Sales"])
        .await
        .expect("finish")
        .into_results()
        .await
        .expect("results");
    assert!(finish.iter().all(Vec::is_empty), "{finish:?}");
    let all = rows(
        &mut c,
        "exec msdb.dbo.rds_task_status @db_name=@P1",
        &[&"Sales"],
    )
    .await;
    assert_eq!(all.len(), 3);
    assert_eq!(
        text(&all[2], "task_type").as_deref(),
        Some("FINISH_RESTORE")
    );
    assert_eq!(text(&all[2], "lifecycle").as_deref(), Some("CREATED"));
    assert_eq!(
        emu.database("Sales").map(|d| d.state),
        Some(DatabaseState::Restoring)
    );
    emu.advance(Duration::from_secs(10));
    let all = rows(
        &mut c,
        "exec msdb.dbo.rds_task_status @db_name=@P1",
        &[&"Sales"],
    )
    .await;
    assert_eq!(text(&all[2], "lifecycle").as_deref(), Some("IN_PROGRESS"));
    assert_eq!(
        emu.database("Sales").map(|d| d.state),
        Some(DatabaseState::Restoring)
    );
    emu.advance(Duration::from_secs(30));
    let all = rows(
        &mut c,
        "exec msdb.dbo.rds_task_status @db_name=@P1",
        &[&"Sales"],
    )
    .await;
    assert_eq!(text(&all[2], "lifecycle").as_deref(), Some("SUCCESS"));
    assert_eq!(
        emu.database("Sales").map(|d| d.state),
        Some(DatabaseState::Online)
    );
}

#[tokio::test]
async fn a_finish_restore_task_cannot_be_cancelled_and_blocks_restores_and_drops_meanwhile() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_finish_duration(Duration::from_secs(60));
    emu.add_database("Sales", DatabaseState::Restoring);
    emu.register_backup(ARN_LOG, BackupInfo::new(BackupKind::Log, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    c.execute("exec msdb.dbo.rds_finish_restore @db_name=@P1", &[&"Sales"])
        .await
        .expect("finish");
    let task = emu
        .rds_tasks()
        .into_iter()
        .find(|t| t.task_type == "FINISH_RESTORE")
        .expect("finish task");
    emu.advance(Duration::from_secs(5));
    let e = server_error(
        &mut c,
        "exec msdb.dbo.rds_cancel_task @task_id=@P1",
        &[&task.task_id],
    )
    .await;
    assert_eq!(e.code(), 50000);
    assert!(e.message().contains("FINISH_RESTORE"), "{}", e.message());
    let e = server_error(
        &mut c,
        "exec msdb.dbo.rds_restore_log @restore_db_name=@P1, @s3_arn_to_restore_from=@P2",
        &[&"Sales", &ARN_LOG],
    )
    .await;
    assert_eq!(e.code(), 50000);
    assert!(e.message().contains("pending"), "{}", e.message());
    let e = server_error(
        &mut c,
        "exec msdb.dbo.rds_drop_database @db_name=@P1",
        &[&"Sales"],
    )
    .await;
    assert_eq!(e.code(), 3702);
    let e = server_error(
        &mut c,
        "exec msdb.dbo.rds_finish_restore @db_name=@P1",
        &[&"Sales"],
    )
    .await;
    assert_eq!(e.code(), 50000, "a second finish while one is pending");
    emu.advance(Duration::from_secs(60));
    let t = task_status(&mut c, "Sales", task.task_id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("SUCCESS"));
    assert_eq!(
        emu.database("Sales").map(|d| d.state),
        Some(DatabaseState::Online)
    );
}

#[tokio::test]
async fn wall_clock_tasks_finish_on_their_own() {
    let emu = SqlServerEmulator::rds();
    emu.set_restore_duration(None, Duration::from_millis(150));
    emu.register_backup(
        "arn:aws:s3:::b/q.bak",
        BackupInfo::new(BackupKind::Full, "Quick"),
    );
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2",
        &[&"Quick", &"arn:aws:s3:::b/q.bak"],
    )
    .await;
    let id = r[0].get::<i32, _>("task_id").expect("id");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t = task_status(&mut c, "Quick", id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("SUCCESS"));
    assert_eq!(
        emu.database("Quick").map(|d| d.state),
        Some(DatabaseState::Online)
    );
}

#[tokio::test]
async fn a_third_concurrent_rds_task_waits_created_until_a_slot_frees() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_restore_duration(None, Duration::from_secs(10));
    for db in ["A", "B", "C"] {
        emu.register_backup(
            &format!("arn:aws:s3:::b/{db}.bak"),
            BackupInfo::new(BackupKind::Full, db),
        );
    }
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let sql = "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1";
    rows(&mut c, sql, &[&"A", &"arn:aws:s3:::b/A.bak"]).await;
    rows(&mut c, sql, &[&"B", &"arn:aws:s3:::b/B.bak"]).await;
    let third = rows(&mut c, sql, &[&"C", &"arn:aws:s3:::b/C.bak"]).await;
    let third = third[0]
        .get::<i32, _>("task_id")
        .expect("queued, not refused");
    emu.advance(Duration::from_secs(5));
    let lifecycles: Vec<&str> = emu
        .rds_tasks()
        .iter()
        .map(|t| t.lifecycle.as_str())
        .collect();
    assert_eq!(lifecycles, vec!["IN_PROGRESS", "IN_PROGRESS", "CREATED"]);
    emu.advance(Duration::from_secs(6));
    let t = task_status(&mut c, "C", third).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("IN_PROGRESS"));
    emu.advance(Duration::from_secs(10));
    let t = task_status(&mut c, "C", third).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("SUCCESS"));
}

#[tokio::test]
async fn an_rds_submit_may_return_no_row_and_the_task_is_found_by_name() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_rds_submit_returns_row(false);
    emu.register_backup(ARN_FULL, BackupInfo::new(BackupKind::Full, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1",
        &[&"Sales", &ARN_FULL],
    )
    .await;
    assert!(r.is_empty(), "no result set");
    let all = rows(
        &mut c,
        "exec msdb.dbo.rds_task_status @db_name=@P1",
        &[&"Sales"],
    )
    .await;
    assert_eq!(all.len(), 1);
    assert_eq!(text(&all[0], "lifecycle").as_deref(), Some("CREATED"));
}

#[tokio::test]
async fn restoring_over_an_existing_database_fails_the_rds_task_with_rds_text() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.add_database("Taken", DatabaseState::Online);
    emu.register_backup(ARN_FULL, BackupInfo::new(BackupKind::Full, "Taken"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2",
        &[&"Taken", &ARN_FULL],
    )
    .await;
    let id = r[0].get::<i32, _>("task_id").expect("id");
    emu.advance(Duration::from_secs(5));
    let t = task_status(&mut c, "Taken", id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("ERROR"));
    let info = text(&t, "task_info").unwrap_or_default();
    assert!(info.contains("Database 'Taken' already exists. Two databases that differ only by case or accent are not allowed. Choose a different database name."), "{info}");
    assert!(!info.contains("Msg "), "no invented Msg lines: {info}");
    // The existing database is untouched.
    assert_eq!(
        emu.database("Taken").map(|d| d.state),
        Some(DatabaseState::Online)
    );
}

#[tokio::test]
async fn rds_task_errors_use_the_texts_rds_documents() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_bucket_region("far", "eu-west-1");
    emu.register_backup(
        "arn:aws:s3:::far/Sales/full.bak",
        BackupInfo::new(BackupKind::Full, "Far"),
    );
    let mut fs = BackupInfo::new(BackupKind::Full, "Stream");
    fs.files.push(BackupFileInfo::filestream(
        "Stream_fs",
        "C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\DATA\\Stream_fs",
    ));
    emu.register_backup("arn:aws:s3:::b/Stream/full.bak", fs);
    for i in 1..=11 {
        let mut b = BackupInfo::new(BackupKind::Full, "Big");
        b.family_count = 11;
        b.family_sequence = i;
        emu.register_backup(&format!("arn:aws:s3:::b/Big/full{i:02}.bak"), b);
    }
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let sql = "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1";
    let cases = [
        (
            "Far",
            "arn:aws:s3:::far/Sales/full.bak",
            "Please specify a bucket that is in the same region as RDS instance",
        ),
        (
            "Missing",
            "arn:aws:s3:::b/Missing/full.bak",
            "The specified key does not exist.",
        ),
        (
            "Big",
            "arn:aws:s3:::b/Big/full*",
            "The Restore task is unable to restore from more than 10 backup file(s). Please reduce the number of files matched and try again.",
        ),
        (
            "Stream",
            "arn:aws:s3:::b/Stream/full.bak",
            "You can't restore a database that contains a FILESTREAM file group.",
        ),
    ];
    for (db, arn, expected) in cases {
        rows(&mut c, sql, &[&db, &arn]).await;
        emu.advance(Duration::from_secs(1));
        let all = rows(&mut c, "exec msdb.dbo.rds_task_status @db_name=@P1", &[&db]).await;
        assert_eq!(text(&all[0], "lifecycle").as_deref(), Some("ERROR"), "{db}");
        let info = text(&all[0], "task_info").unwrap_or_default();
        assert!(info.contains(expected), "{db}: {info}");
        assert!(emu.database(db).is_none(), "{db}");
    }
}

#[tokio::test]
async fn an_rds_arn_prefix_reads_every_stripe_and_all_must_be_there() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    for i in 1..=2 {
        let mut b = BackupInfo::new(BackupKind::Full, "Striped");
        b.family_count = 3;
        b.family_sequence = i;
        emu.register_backup(&format!("arn:aws:s3:::b/Striped/full{i}-of-3.bak"), b);
    }
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let sql = "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1";
    rows(&mut c, sql, &[&"Striped", &"arn:aws:s3:::b/Striped/full*"]).await;
    emu.advance(Duration::from_secs(1));
    let t = &emu.rds_tasks()[0];
    assert_eq!(t.lifecycle.as_str(), "ERROR");
    assert!(
        t.task_info.contains("The media set has 3 media families but only 2 are provided. All members must be provided."),
        "{}",
        t.task_info
    );
    let mut b = BackupInfo::new(BackupKind::Full, "Striped");
    b.family_count = 3;
    b.family_sequence = 3;
    emu.register_backup("arn:aws:s3:::b/Striped/full3-of-3.bak", b);
    rows(&mut c, sql, &[&"Striped", &"arn:aws:s3:::b/Striped/full*"]).await;
    emu.advance(Duration::from_secs(5));
    let t = &emu.rds_tasks()[1];
    assert_eq!(t.lifecycle.as_str(), "SUCCESS", "{}", t.task_info);
    assert_eq!(t.op.sources.len(), 3);
}

#[tokio::test]
async fn rds_arns_must_be_in_the_partition_of_the_server_region() {
    let emu = SqlServerEmulator::new(ServerInfo {
        region: "cn-north-1".to_string(),
        ..ServerInfo::rds_2022()
    });
    emu.set_clock_mode(ClockMode::Manual);
    emu.register_backup(
        "arn:aws-cn:s3:::b/Sales/full.bak",
        BackupInfo::new(BackupKind::Full, "Sales"),
    );
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let sql =
        "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2";
    let e = server_error(&mut c, sql, &[&"Sales", &"arn:aws:s3:::b/Sales/full.bak"]).await;
    assert_eq!(e.code(), 50000);
    assert!(e.message().contains("arn:aws-cn:s3:::"), "{}", e.message());
    let e = server_error(&mut c, sql, &[&"Sales", &""]).await;
    assert_eq!(e.message(), "S3 ARN prefix cannot be empty");
    rows(
        &mut c,
        sql,
        &[&"Sales", &"arn:aws-cn:s3:::b/Sales/full.bak"],
    )
    .await;
    emu.advance(Duration::from_secs(5));
    assert_eq!(emu.rds_tasks()[0].lifecycle.as_str(), "SUCCESS");
}

#[tokio::test]
async fn a_scripted_failure_surfaces_with_its_text_in_rds_and_its_number_natively() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    let msg = "The database was backed up on a server running version 17.00.100. That version is incompatible with this server, which is running version 16.00.4135.";
    emu.fail_next_restore("Sales", 3169, msg);
    emu.register_backup(ARN_FULL, BackupInfo::new(BackupKind::Full, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1",
        &[&"Sales", &ARN_FULL],
    )
    .await;
    let id = r[0].get::<i32, _>("task_id").expect("id");
    emu.advance(Duration::from_secs(5));
    let t = task_status(&mut c, "Sales", id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("ERROR"));
    let info = text(&t, "task_info").unwrap_or_default();
    assert!(info.contains(msg), "{info}");
    assert!(
        emu.database("Sales").is_none(),
        "a failed first restore leaves no database"
    );

    let native = SqlServerEmulator::native();
    let url = "s3://s3.example:9000/bucket/Sales/full.bak";
    native.add_credential("s3://s3.example:9000/bucket");
    native.register_backup(url, linux_backup(BackupKind::Full, "Sales"));
    native.fail_next_restore("Sales", 3201, "Cannot open backup device 'x'. Operating system error 2(The system cannot find the file specified.).");
    let (addr, _h2) = native.start().await.expect("start");
    let mut n = connect(addr).await;
    let e = server_error(
        &mut n,
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY, STATS = 10",
        &[&url],
    )
    .await;
    assert_eq!(e.code(), 3201);
    assert!(e.message().starts_with("Cannot open backup device"));
    // Next attempt succeeds and leaves the database RESTORING.
    n.execute(
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY, STATS = 10",
        &[&url],
    )
    .await
    .expect("restore");
    assert_eq!(
        native.database("Sales").map(|d| d.state),
        Some(DatabaseState::Restoring)
    );
}

#[tokio::test]
async fn catalog_lsns_and_versions_drive_4305_3169_and_3154() {
    let emu = SqlServerEmulator::native();
    let full = "/var/opt/mssql/backup/D/full.bak";
    let gap = "/var/opt/mssql/backup/D/log2.trn";
    let newer = "/var/opt/mssql/backup/E/full.bak";
    let other = "/var/opt/mssql/backup/O/full.bak";
    emu.register_backup(
        full,
        linux_backup(BackupKind::Full, "D").with_lsns(100, 200),
    );
    emu.register_backup(gap, linux_backup(BackupKind::Log, "D").with_lsns(300, 400));
    let mut n = linux_backup(BackupKind::Full, "E").with_lsns(1, 2);
    n.database_version = 998;
    n.software_version = "17.00.100".into();
    emu.register_backup(newer, n);
    emu.register_backup(other, linux_backup(BackupKind::Full, "O"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    c.execute(
        "RESTORE DATABASE [D] FROM DISK = @P1 WITH NORECOVERY",
        &[&full],
    )
    .await
    .expect("full");
    let e = server_error(
        &mut c,
        "RESTORE LOG [D] FROM DISK = @P1 WITH NORECOVERY",
        &[&gap],
    )
    .await;
    assert_eq!(e.code(), 4305);
    assert!(e.message().contains("begins at LSN 300"), "{}", e.message());
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [E] FROM DISK = @P1 WITH NORECOVERY",
        &[&newer],
    )
    .await;
    assert_eq!(e.code(), 3169);
    assert!(
        e.message().contains("running version 16.00.4135"),
        "{}",
        e.message()
    );
    // Another database's backup over D.
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [D] FROM DISK = @P1 WITH NORECOVERY",
        &[&other],
    )
    .await;
    assert_eq!(e.code(), 3154);
    // D's own full again while D is RESTORING is allowed.
    c.execute(
        "RESTORE DATABASE [D] FROM DISK = @P1 WITH NORECOVERY",
        &[&full],
    )
    .await
    .expect("same backup again");
}

#[tokio::test]
async fn checksum_on_a_backup_without_checksums_is_3187_then_paths_from_the_backup_are_5133() {
    // A Windows backup without checksums, restored on Linux with today's statement shape.
    let emu = SqlServerEmulator::native();
    let disk = "/var/opt/mssql/backup/Sales/full.bak";
    emu.register_backup(disk, BackupInfo::new(BackupKind::Full, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales] FROM DISK = N'/var/opt/mssql/backup/Sales/full.bak' WITH NORECOVERY, CHECKSUM, STATS = 5",
        &[],
    )
    .await;
    assert_eq!(e.code(), 3187);
    assert_eq!(
        e.message(),
        "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information."
    );
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales] FROM DISK = N'/var/opt/mssql/backup/Sales/full.bak' WITH NORECOVERY, STATS = 5",
        &[],
    )
    .await;
    assert_eq!(e.code(), 5133);
    assert_eq!(
        e.message(),
        "Directory lookup for the file \"C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\DATA\\Sales.mdf\" failed with the operating system error 2(The system cannot find the file specified.)."
    );
    assert!(emu.database("Sales").is_none());
    // The corrected shape: MOVE each logical file to the target's data directory.
    c.execute(
        "RESTORE DATABASE [Sales] FROM DISK = @P1 WITH NORECOVERY, MOVE N'Sales' TO N'/var/opt/mssql/data/Sales_1a2b.mdf', MOVE N'Sales_log' TO N'/var/opt/mssql/data/Sales_log_1a2b.ldf', STATS = 5",
        &[&disk],
    )
    .await
    .expect("restore with MOVE");
    let db = emu.database("Sales").expect("db");
    assert_eq!(db.state, DatabaseState::Restoring);
    assert_eq!(
        db.files,
        vec![
            "/var/opt/mssql/data/Sales_1a2b.mdf".to_string(),
            "/var/opt/mssql/data/Sales_log_1a2b.ldf".to_string()
        ]
    );
}

#[tokio::test]
async fn agent_step_history_lists_every_error_5133_3156_3119_3013_and_records_3013() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    let disk = "/var/opt/mssql/backup/Sales/full.bak";
    emu.register_backup(disk, BackupInfo::new(BackupKind::Full, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    submit_job(
        &mut c,
        "no-move",
        "RESTORE DATABASE [Sales] FROM DISK = N'/var/opt/mssql/backup/Sales/full.bak' WITH NORECOVERY, STATS = 5",
    )
    .await;
    emu.advance(Duration::from_secs(1));
    let step = step_row(&emu, "no-move");
    assert_eq!(step.run_status, 0);
    assert_eq!(step.sql_message_id, 3013);
    let data = "C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\DATA\\";
    let expected = format!(
        "Executed as user: NT SERVICE\\SQLSERVERAGENT. \
Directory lookup for the file \"{data}Sales.mdf\" failed with the operating system error 2(The system cannot find the file specified.). [SQLSTATE 42000] (Error 5133)  \
File 'Sales' cannot be restored to '{data}Sales.mdf'. Use WITH MOVE to identify a valid location for the file. [SQLSTATE 42000] (Error 3156)  \
Directory lookup for the file \"{data}Sales_log.ldf\" failed with the operating system error 2(The system cannot find the file specified.). [SQLSTATE 42000] (Error 5133)  \
File 'Sales_log' cannot be restored to '{data}Sales_log.ldf'. Use WITH MOVE to identify a valid location for the file. [SQLSTATE 42000] (Error 3156)  \
Problems were identified while planning for the RESTORE statement. Previous messages provide details. [SQLSTATE 42000] (Error 3119)  \
RESTORE DATABASE is terminating abnormally. [SQLSTATE 42000] (Error 3013).  The step failed."
    );
    assert_eq!(step.message, expected);
}

/// The step bakdrop's Complete runs: the name declared from a literal, then the recovery.
const RECOVER_STEP: &str = "DECLARE @db sysname = N'Sales'; RESTORE DATABASE @db WITH RECOVERY";

#[tokio::test]
async fn a_recovery_in_an_agent_job_brings_the_database_online_when_its_duration_is_over() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_finish_duration(Duration::from_secs(30));
    emu.add_database("Sales", DatabaseState::Restoring);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    submit_job(&mut c, "recovery", RECOVER_STEP).await;
    emu.advance(Duration::from_secs(10));
    let running = emu.job("recovery").expect("job");
    assert!(running.running.is_some(), "still recovering");
    assert_eq!(
        emu.database("Sales").map(|d| d.state),
        Some(DatabaseState::Restoring)
    );
    // The database is in use meanwhile: no second recovery, no drop.
    assert_eq!(
        server_error(&mut c, "RESTORE DATABASE [Sales] WITH RECOVERY", &[])
            .await
            .code(),
        3101
    );
    assert_eq!(
        server_error(&mut c, "DROP DATABASE [Sales]", &[])
            .await
            .code(),
        3702
    );
    emu.advance(Duration::from_secs(20));
    assert_eq!(
        emu.database("Sales").map(|d| d.state),
        Some(DatabaseState::Online)
    );
    let step = step_row(&emu, "recovery");
    assert_eq!(step.run_status, 1);
    assert_eq!(step.run_duration, 30);
    assert_eq!(
        step.message,
        "Executed as user: NT SERVICE\\SQLSERVERAGENT. RESTORE DATABASE successfully processed 0 pages in 30.000 seconds (0.000 MB/sec). [SQLSTATE 01000] (Message 3014).  The step succeeded."
    );
    let id = emu.job("recovery").expect("job").job_id;
    assert!(
        emu.job_history()
            .iter()
            .any(|h| h.job_id == id && h.step_id == 0 && h.run_status == 1),
        "the job outcome row"
    );
}

#[tokio::test]
async fn a_recovery_job_of_a_database_that_is_not_restoring_fails_with_3117_then_3013() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    emu.add_database("Sales", DatabaseState::Online);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    submit_job(&mut c, "recovery", RECOVER_STEP).await;
    emu.advance(Duration::from_secs(1));
    let step = step_row(&emu, "recovery");
    assert_eq!(step.run_status, 0);
    assert_eq!(step.sql_message_id, 3013);
    assert!(
        step.message.contains("no files are ready to rollforward. [SQLSTATE 42000] (Error 3117)  RESTORE DATABASE is terminating abnormally. [SQLSTATE 42000] (Error 3013)"),
        "{}",
        step.message
    );
    let direct = server_error(&mut c, "RESTORE DATABASE [Sales] WITH RECOVERY", &[]).await;
    assert_eq!(direct.code(), 3117);
}

#[tokio::test]
async fn a_file_used_by_another_database_is_1834_and_dropping_it_frees_the_file() {
    let emu = SqlServerEmulator::native();
    emu.add_database("Sales", DatabaseState::Online);
    let disk = "/var/opt/mssql/backup/Sales/full.bak";
    emu.register_backup(disk, linux_backup(BackupKind::Full, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    // A second migration of one source database without MOVE collides with the first.
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales_copy] FROM DISK = @P1 WITH NORECOVERY",
        &[&disk],
    )
    .await;
    assert_eq!(e.code(), 1834);
    assert_eq!(
        e.message(),
        "The file '/var/opt/mssql/data/Sales.mdf' cannot be overwritten. It is being used by database 'Sales'."
    );
    // Paths compare case-sensitively on Linux: another case is another file.
    c.execute(
        "RESTORE DATABASE [Sales_copy] FROM DISK = @P1 WITH NORECOVERY, MOVE N'Sales' TO N'/var/opt/mssql/data/SALES.mdf', MOVE N'Sales_log' TO N'/var/opt/mssql/data/SALES_log.ldf'",
        &[&disk],
    )
    .await
    .expect("distinct names");
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales_third] FROM DISK = @P1 WITH NORECOVERY, MOVE N'Sales' TO N'/var/opt/mssql/data/SALES.mdf', MOVE N'Sales_log' TO N'/var/opt/mssql/data/SALES_log.ldf'",
        &[&disk],
    )
    .await;
    assert_eq!(e.code(), 1834);
    c.execute("DROP DATABASE [Sales_copy]", &[])
        .await
        .expect("drop");
    c.execute(
        "RESTORE DATABASE [Sales_third] FROM DISK = @P1 WITH NORECOVERY, MOVE N'Sales' TO N'/var/opt/mssql/data/SALES.mdf', MOVE N'Sales_log' TO N'/var/opt/mssql/data/SALES_log.ldf'",
        &[&disk],
    )
    .await
    .expect("the dropped database's files are free again");
}

#[tokio::test]
async fn windows_paths_compare_without_case_and_with_either_separator() {
    let emu = SqlServerEmulator::new(ServerInfo::native_2022().with_release(2016).expect("2016"));
    emu.add_database("Sales", DatabaseState::Online);
    let data = "C:\\Program Files\\Microsoft SQL Server\\MSSQL13.MSSQLSERVER\\MSSQL\\DATA\\";
    let mut b = BackupInfo::new(BackupKind::Full, "Sales");
    b.database_version = 852;
    b.files = vec![
        BackupFileInfo::data("Sales", &format!("{data}Sales.mdf")),
        BackupFileInfo::log("Sales_log", &format!("{data}Sales_log.ldf")),
    ];
    emu.register_backup("D:\\b\\full.bak", b);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Copy] FROM DISK = N'D:\\b\\full.bak' WITH NORECOVERY, MOVE N'Sales' TO N'c:/program files/microsoft sql server/mssql13.mssqlserver/mssql/data/SALES.MDF', MOVE N'Sales_log' TO N'c:/program files/microsoft sql server/mssql13.mssqlserver/mssql/data/copy_log.ldf'",
        &[],
    )
    .await;
    assert_eq!(e.code(), 1834);
}

#[tokio::test]
async fn move_of_a_logical_name_the_backup_does_not_have_is_3234() {
    let emu = SqlServerEmulator::native();
    let disk = "/var/opt/mssql/backup/Sales/full.bak";
    emu.register_backup(disk, BackupInfo::new(BackupKind::Full, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales] FROM DISK = @P1 WITH NORECOVERY, MOVE N'Sales_Data' TO N'/var/opt/mssql/data/a.mdf', MOVE N'Sales_log' TO N'/var/opt/mssql/data/a.ldf'",
        &[&disk],
    )
    .await;
    assert_eq!(e.code(), 3234);
    assert_eq!(
        e.message(),
        "Logical file 'Sales_Data' is not part of database 'Sales'. Use RESTORE FILELISTONLY to list the logical file names."
    );
}

#[tokio::test]
async fn a_filestream_container_needs_its_parent_directory() {
    let emu = SqlServerEmulator::native();
    let disk = "/var/opt/mssql/backup/Docs/full.bak";
    let mut b = linux_backup(BackupKind::Full, "Docs");
    b.files.push(BackupFileInfo::filestream(
        "Docs_fs",
        "/var/opt/mssql/fs/Docs_fs",
    ));
    emu.register_backup(disk, b);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Docs] FROM DISK = @P1 WITH NORECOVERY",
        &[&disk],
    )
    .await;
    assert_eq!(e.code(), 5133);
    assert!(
        e.message().contains("/var/opt/mssql/fs/Docs_fs"),
        "{}",
        e.message()
    );
    emu.add_directory("/var/opt/mssql/fs");
    c.execute(
        "RESTORE DATABASE [Docs] FROM DISK = @P1 WITH NORECOVERY",
        &[&disk],
    )
    .await
    .expect("the container's parent exists");
}

#[tokio::test]
async fn a_differential_or_log_onto_a_missing_database_is_3118() {
    let emu = SqlServerEmulator::native();
    emu.register_backup(
        "/b/diff.bak",
        linux_backup(BackupKind::Differential, "Ghost"),
    );
    emu.register_backup("/b/log.trn", linux_backup(BackupKind::Log, "Ghost"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    for (sql, src) in [
        (
            "RESTORE DATABASE [Ghost] FROM DISK = @P1 WITH NORECOVERY",
            "/b/diff.bak",
        ),
        (
            "RESTORE LOG [Ghost] FROM DISK = @P1 WITH NORECOVERY",
            "/b/log.trn",
        ),
    ] {
        let e = server_error(&mut c, sql, &[&src]).await;
        assert_eq!(e.code(), 3118);
        assert_eq!(
            e.message(),
            "The database \"Ghost\" does not exist. RESTORE can only create a database when restoring either a full backup or a file backup of the primary file."
        );
    }
}

#[tokio::test]
async fn a_medium_nobody_registered_does_not_exist_3201() {
    let emu = SqlServerEmulator::native();
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales] FROM DISK = N'/var/opt/mssql/backup/nothing.bak' WITH NORECOVERY",
        &[],
    )
    .await;
    assert_eq!(e.code(), 3201);
    assert_eq!(
        e.message(),
        "Cannot open backup device '/var/opt/mssql/backup/nothing.bak'. Operating system error 2(The system cannot find the file specified.)."
    );
}

#[tokio::test]
async fn an_s3_url_needs_the_credential_whose_name_is_its_longest_prefix() {
    let emu = SqlServerEmulator::native();
    let url = "s3://s3.example:9000/bucket/Sales/full.bak";
    emu.register_backup(url, linux_backup(BackupKind::Full, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let sql = "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY";
    let e = server_error(&mut c, sql, &[&url]).await;
    assert_eq!(e.code(), 3201);
    assert_eq!(
        e.message(),
        "Cannot open backup device 's3://s3.example:9000/bucket/Sales/full.bak'. Operating system error 50(The request is not supported.)."
    );
    // A name that is a prefix but not at a '/' does not count.
    emu.add_credential("s3://s3.example:9000/buck");
    let e = server_error(&mut c, sql, &[&url]).await;
    assert_eq!(e.code(), 3201);
    emu.add_credential("s3://s3.example:9000/bucket");
    let r = rows(
        &mut c,
        "SELECT name FROM sys.credentials WHERE name LIKE N's3://%'",
        &[],
    )
    .await;
    assert_eq!(r.len(), 2);
    c.execute(sql, &[&url]).await.expect("credential found");
    // WITH CREDENTIAL names one explicitly.
    emu.register_backup(
        "s3://other:9000/b2/x.bak",
        linux_backup(BackupKind::Full, "X"),
    );
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [X] FROM URL = N's3://other:9000/b2/x.bak' WITH CREDENTIAL = N'nope', NORECOVERY",
        &[],
    )
    .await;
    assert_eq!(e.code(), 3201);
    c.execute(
        "RESTORE DATABASE [X] FROM URL = N's3://other:9000/b2/x.bak' WITH CREDENTIAL = N's3://s3.example:9000/bucket', NORECOVERY",
        &[],
    )
    .await
    .expect("explicit credential");
}

#[tokio::test]
async fn an_s3_url_longer_than_259_characters_is_refused() {
    let emu = SqlServerEmulator::native();
    emu.add_credential("s3://s3.example:9000/bucket");
    let base = "s3://s3.example:9000/bucket/";
    let long = format!("{base}{}.bak", "k".repeat(259 - base.len() - 3));
    assert_eq!(long.len(), 260);
    emu.register_backup(&long, linux_backup(BackupKind::Full, "Long"));
    let ok = format!("{base}{}.bak", "k".repeat(259 - base.len() - 4));
    emu.register_backup(&ok, linux_backup(BackupKind::Full, "Fits"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Long] FROM URL = @P1 WITH NORECOVERY",
        &[&long.as_str()],
    )
    .await;
    assert_eq!(e.code(), 3057);
    assert!(e.message().contains("259 characters"), "{}", e.message());
    c.execute(
        "RESTORE DATABASE [Fits] FROM URL = @P1 WITH NORECOVERY",
        &[&ok.as_str()],
    )
    .await
    .expect("259 characters fit");
}

#[tokio::test]
async fn a_bucket_in_another_region_needs_restore_options() {
    let emu = SqlServerEmulator::native();
    emu.add_credential("s3://s3.eu-west-1.amazonaws.com/eubucket");
    emu.set_bucket_region("eubucket", "eu-west-1");
    let url = "s3://s3.eu-west-1.amazonaws.com/eubucket/Sales/full.bak";
    emu.register_backup(url, linux_backup(BackupKind::Full, "Sales"));
    emu.register_backup(
        "s3://s3.eu-west-1.amazonaws.com/eubucket/Other/full.bak",
        linux_backup(BackupKind::Full, "Other"),
    );
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY",
        &[&url],
    )
    .await;
    assert_eq!(e.code(), 3201);
    assert!(
        e.message()
            .ends_with("Operating system error 5(Access is denied.)."),
        "{}",
        e.message()
    );
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY, REGION = 'eu-west-1'",
        &[&url],
    )
    .await;
    assert_eq!(e.code(), 155, "REGION only inside RESTORE_OPTIONS");
    c.execute(
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY, RESTORE_OPTIONS = '{\"s3\": {\"region\":\"eu-west-1\"}}'",
        &[&url],
    )
    .await
    .expect("region given");
    c.execute(
        "RESTORE DATABASE [Other] FROM URL = N's3://s3.eu-west-1.amazonaws.com/eubucket/Other/full.bak' WITH NORECOVERY, RESTORE_OPTION = '{\"s3\": {\"region\":\"eu-west-1\"}}'",
        &[],
    )
    .await
    .expect("the other spelling [S3] uses");
}

#[tokio::test]
async fn every_media_family_of_a_striped_set_is_needed_3132() {
    let emu = SqlServerEmulator::native();
    emu.add_credential("s3://s3.example:9000/bucket");
    let urls = [
        "s3://s3.example:9000/bucket/Sales/full_1.bak",
        "s3://s3.example:9000/bucket/Sales/full_2.bak",
    ];
    for (i, u) in urls.iter().enumerate() {
        let mut b = linux_backup(BackupKind::Full, "Sales");
        b.family_count = 2;
        b.family_sequence = i as u32 + 1;
        emu.register_backup(u, b);
    }
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY",
        &[&urls[0]],
    )
    .await;
    assert_eq!(e.code(), 3132);
    assert_eq!(
        e.message(),
        "The media set has 2 media families but only 1 are provided. All members must be provided."
    );
    // bakdrop's shape with variables.
    c.execute(
        "DECLARE @db sysname = N'Sales', @s1 nvarchar(4000) = @P1, @s2 nvarchar(4000) = @P2; RESTORE DATABASE @db FROM URL = @s1, URL = @s2 WITH NORECOVERY, STATS = 5",
        &[&urls[0], &urls[1]],
    )
    .await
    .expect("both stripes");
    assert_eq!(
        emu.database("Sales").map(|d| d.state),
        Some(DatabaseState::Restoring)
    );
}

#[tokio::test]
async fn bakdrop_agent_step_with_variables_runs_to_completion_and_shows_progress() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_restore_duration(Some("Sales"), Duration::from_secs(100));
    let mut b = BackupInfo::new(BackupKind::Full, "Sales");
    b.has_checksums = true;
    emu.register_backup("/var/opt/mssql/backup/Sales/full.bak", b);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let command = "DECLARE @db sysname = N'Sales', @s1 nvarchar(4000) = N'/var/opt/mssql/backup/Sales/full.bak', @m1 sysname = N'Sales', @p1 nvarchar(4000) = N'/var/opt/mssql/data/Sales_Sales_1a2b3c4d.mdf', @m2 sysname = N'Sales_log', @p2 nvarchar(4000) = N'/var/opt/mssql/data/Sales_Sales_log_1a2b3c4d.ldf'; RESTORE DATABASE @db FROM DISK = @s1 WITH NORECOVERY, CHECKSUM, MOVE @m1 TO @p1, MOVE @m2 TO @p2, STATS = 5";
    let job_id = submit_job(&mut c, "bakdrop-restore-1", command).await;
    let job = emu.job("bakdrop-restore-1").expect("job");
    assert_eq!(job_id.to_bytes_le(), job.job_id);
    emu.advance(Duration::from_secs(25));
    let hex: String = job.job_id.iter().map(|b| format!("{b:02X}")).collect();
    let s = rows(
        &mut c,
        "SELECT session_id, program_name FROM sys.dm_exec_sessions WHERE program_name LIKE N'SQLAgent - TSQL JobStep%'",
        &[],
    )
    .await;
    assert_eq!(s.len(), 1);
    assert_eq!(
        text(&s[0], "program_name"),
        Some(format!("SQLAgent - TSQL JobStep (Job 0x{hex} : Step 1)"))
    );
    let session_id = s[0].get::<i32, _>("session_id").expect("session");
    let r = rows(
        &mut c,
        "SELECT session_id, database_id, command, percent_complete FROM sys.dm_exec_requests WHERE session_id = @P1",
        &[&session_id],
    )
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(text(&r[0], "command").as_deref(), Some("RESTORE DATABASE"));
    assert_eq!(
        r[0].get::<i32, _>("database_id"),
        Some(1),
        "the step runs in master"
    );
    let pct = r[0].get::<f64, _>("percent_complete").expect("pct");
    assert!((20.0..30.0).contains(&pct), "{pct}");
    emu.advance(Duration::from_secs(80));
    let step = step_row(&emu, "bakdrop-restore-1");
    assert_eq!(step.run_status, 1, "{}", step.message);
    let db = emu.database("Sales").expect("db");
    assert_eq!(db.state, DatabaseState::Restoring);
    assert_eq!(
        db.files,
        vec![
            "/var/opt/mssql/data/Sales_Sales_1a2b3c4d.mdf".to_string(),
            "/var/opt/mssql/data/Sales_Sales_log_1a2b3c4d.ldf".to_string()
        ]
    );
}

#[tokio::test]
async fn dm_exec_requests_reports_the_step_database_and_needs_view_server_state() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_restore_duration(Some("We]ird"), Duration::from_secs(100));
    emu.register_backup(
        "/var/opt/mssql/backup/w.bak",
        linux_backup(BackupKind::Full, "We]ird"),
    );
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    submit_job(
        &mut c,
        "weird",
        "RESTORE DATABASE [We]]ird] FROM DISK = N'/var/opt/mssql/backup/w.bak' WITH NORECOVERY, STATS = 5",
    )
    .await;
    emu.advance(Duration::from_secs(25));
    // Today's shape filters on the restored database and finds nothing.
    let r = rows(
        &mut c,
        "SELECT percent_complete FROM sys.dm_exec_requests WHERE command IN ('RESTORE DATABASE', 'RESTORE LOG') AND database_id = DB_ID(@P1)",
        &[&"We]ird"],
    )
    .await;
    assert!(r.is_empty());
    let r = rows(
        &mut c,
        "SELECT percent_complete FROM sys.dm_exec_requests WHERE command IN ('RESTORE DATABASE', 'RESTORE LOG')",
        &[],
    )
    .await;
    assert_eq!(r.len(), 1);
    let r = rows(
        &mut c,
        "SELECT servicename, status_desc FROM sys.dm_server_services",
        &[],
    )
    .await;
    assert_eq!(r.len(), 2);
    // Without VIEW SERVER STATE only the caller's own session shows.
    emu.set_view_server_state(false);
    let r = rows(
        &mut c,
        "SELECT session_id, command FROM sys.dm_exec_requests",
        &[],
    )
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(text(&r[0], "command").as_deref(), Some("SELECT"));
    let r = rows(&mut c, "SELECT session_id FROM sys.dm_exec_sessions", &[]).await;
    assert_eq!(r.len(), 1);
    let e = server_error(
        &mut c,
        "SELECT servicename, status_desc FROM sys.dm_server_services",
        &[],
    )
    .await;
    assert_eq!(e.code(), 300);
    assert_eq!(
        e.message(),
        "VIEW SERVER STATE permission was denied on object 'server', database 'master'."
    );
}

#[tokio::test]
async fn a_stopped_agent_refuses_sp_start_job_with_22022_and_its_sessions_vanish() {
    let emu = SqlServerEmulator::native();
    emu.set_agent_running(false);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "SELECT servicename, status_desc FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server Agent%'",
        &[],
    )
    .await;
    assert_eq!(
        text(&r[0], "servicename").as_deref(),
        Some("SQL Server Agent (MSSQLSERVER)")
    );
    assert_eq!(text(&r[0], "status_desc").as_deref(), Some("Stopped"));
    let agent_sessions =
        "SELECT COUNT(*) AS n FROM sys.dm_exec_sessions WHERE program_name LIKE N'SQLAgent - %'";
    assert_eq!(
        rows(&mut c, agent_sessions, &[]).await[0].get::<i32, _>("n"),
        Some(0)
    );
    c.simple_query("EXEC msdb.dbo.sp_add_job @job_name = N'j'; EXEC msdb.dbo.sp_add_jobstep @job_name = N'j', @step_name = N's', @command = N'PRINT 1'; EXEC msdb.dbo.sp_add_jobserver @job_name = N'j'")
        .await
        .expect("batch")
        .into_results()
        .await
        .expect("drain");
    let e = server_error(&mut c, "EXEC msdb.dbo.sp_start_job @job_name = N'j'", &[]).await;
    assert_eq!(e.code(), 22022);
    assert_eq!(
        e.message(),
        "SQLServerAgent is not currently running so it cannot be notified of this action."
    );
    emu.set_agent_running(true);
    assert_eq!(
        rows(&mut c, agent_sessions, &[]).await[0].get::<i32, _>("n"),
        Some(2)
    );
    let r = rows(
        &mut c,
        "SELECT status_desc FROM sys.dm_server_services WHERE servicename = N'SQL Server Agent (MSSQLSERVER)'",
        &[],
    )
    .await;
    assert_eq!(text(&r[0], "status_desc").as_deref(), Some("Running"));
    c.execute("EXEC msdb.dbo.sp_start_job @job_name = N'j'", &[])
        .await
        .expect("started");
}

#[tokio::test]
async fn express_has_no_agent_and_no_s3_urls() {
    let emu = SqlServerEmulator::native_express();
    emu.set_agent_running(true);
    emu.add_credential("s3://s3.example:9000/bucket");
    let url = "s3://s3.example:9000/bucket/Sales/full.bak";
    emu.register_backup(url, linux_backup(BackupKind::Full, "Sales"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(&mut c, "SELECT SERVERPROPERTY('EngineEdition') AS e", &[]).await;
    assert_eq!(r[0].get::<i32, _>("e"), Some(4));
    let r = rows(
        &mut c,
        "SELECT status_desc FROM sys.dm_server_services WHERE servicename = N'SQL Server Agent (MSSQLSERVER)'",
        &[],
    )
    .await;
    assert_eq!(text(&r[0], "status_desc").as_deref(), Some("Stopped"));
    let e = server_error(&mut c, SUBMIT_JOB, &[&"express-job", &"PRINT 1"]).await;
    assert_eq!(e.code(), 22022);
    assert!(
        emu.job("express-job").is_none(),
        "CATCH deleted the half-made job"
    );
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY",
        &[&url],
    )
    .await;
    assert_eq!(e.code(), 3201);
}

#[tokio::test]
async fn a_failed_submit_inside_try_deletes_the_job_and_rethrows_the_error() {
    let emu = SqlServerEmulator::native();
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    // Today's four separate calls leave the job behind when sp_start_job fails.
    emu.set_agent_running(false);
    c.execute("EXEC msdb.dbo.sp_add_job @job_name = @P1", &[&"orphan"])
        .await
        .expect("add");
    c.execute("EXEC msdb.dbo.sp_add_jobstep @job_name = @P1, @step_name = N'restore', @command = N'PRINT 1'", &[&"orphan"])
        .await
        .expect("step");
    c.execute(
        "EXEC msdb.dbo.sp_add_jobserver @job_name = @P1",
        &[&"orphan"],
    )
    .await
    .expect("server");
    let e = server_error(
        &mut c,
        "EXEC msdb.dbo.sp_start_job @job_name = @P1",
        &[&"orphan"],
    )
    .await;
    assert_eq!(e.code(), 22022);
    assert!(emu.job("orphan").is_some(), "orphaned");
    // The TRY/CATCH batch deletes it and re-raises the error with its own number.
    let e = server_error(&mut c, SUBMIT_JOB, &[&"tidy", &"PRINT 1"]).await;
    assert_eq!(e.code(), 22022);
    assert_eq!(
        e.message(),
        "SQLServerAgent is not currently running so it cannot be notified of this action."
    );
    assert!(emu.job("tidy").is_none());
    // A duplicate name fails in sp_add_job: @job_id stays NULL, nothing to delete.
    emu.set_agent_running(true);
    let e = server_error(&mut c, SUBMIT_JOB, &[&"orphan", &"PRINT 1"]).await;
    assert_eq!(e.code(), 14261);
    assert!(emu.job("orphan").is_some());
    // THROW outside CATCH is 10704.
    let e = server_error(&mut c, "THROW;", &[]).await;
    assert_eq!(e.code(), 10704);
    let id = submit_job(&mut c, "tidy", "PRINT 1").await;
    assert_eq!(emu.job("tidy").map(|j| j.job_id), Some(id.to_bytes_le()));
}

#[tokio::test]
async fn job_step_tokens_without_an_escape_macro_fail_the_step() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    submit_job(
        &mut c,
        "raw-token",
        "DECLARE @k nvarchar(4000) = N'Sales/$(JOBNAME)x.bak'; PRINT @k",
    )
    .await;
    submit_job(
        &mut c,
        "escaped",
        "DECLARE @k nvarchar(4000) = N'Sales/$(ESCAPE_SQUOTE(JOBNAME))x.bak'; PRINT @k",
    )
    .await;
    submit_job(
        &mut c,
        "broken-dollar",
        "DECLARE @k nvarchar(4000) = N'Sales/$' + N'(JOBNAME)x.bak'; PRINT @k",
    )
    .await;
    emu.advance(Duration::from_secs(1));
    let raw = step_row(&emu, "raw-token");
    assert_eq!(raw.run_status, 0);
    assert_eq!(
        raw.message,
        "Unable to start execution of step 1 (reason: The job step contains one or more tokens. For SQL Server 2005 Service Pack 1 or later, all job steps with tokens must be updated with a macro before the job can run.).  The step failed."
    );
    assert_eq!(step_row(&emu, "escaped").run_status, 1);
    assert_eq!(step_row(&emu, "broken-dollar").run_status, 1);
}

#[tokio::test]
async fn syssessions_tell_stale_activity_rows_from_the_current_agent_session() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_restore_duration(Some("Sales"), Duration::from_secs(100));
    emu.register_backup(
        "/var/opt/mssql/backup/Sales/full.bak",
        linux_backup(BackupKind::Full, "Sales"),
    );
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let job_id = submit_job(
        &mut c,
        "long",
        "RESTORE DATABASE [Sales] FROM DISK = N'/var/opt/mssql/backup/Sales/full.bak' WITH NORECOVERY",
    )
    .await;
    emu.advance(Duration::from_secs(10));
    emu.restart_agent();
    let max = "SELECT MAX(session_id) AS session_id FROM msdb.dbo.syssessions";
    assert_eq!(
        rows(&mut c, max, &[]).await[0].get::<i32, _>("session_id"),
        Some(2)
    );
    // Unfiltered, the dead run's row still looks like a running job.
    let all = rows(
        &mut c,
        "SELECT session_id FROM msdb.dbo.sysjobactivity WHERE job_id = @P1 AND start_execution_date IS NOT NULL AND stop_execution_date IS NULL",
        &[&job_id],
    )
    .await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].get::<i32, _>("session_id"), Some(1));
    // Filtered on the current session ([JA]'s example), it is not running.
    let current = rows(
        &mut c,
        "SELECT start_execution_date FROM msdb.dbo.sysjobactivity WHERE job_id = @P1 AND session_id = @P2 AND start_execution_date IS NOT NULL AND stop_execution_date IS NULL",
        &[&job_id, &2i32],
    )
    .await;
    assert!(current.is_empty());
    assert!(
        emu.database("Sales").is_none(),
        "the restore died with its job"
    );
    assert!(emu.job("long").expect("job").running.is_none());
}

#[tokio::test]
async fn the_default_paths_are_the_platform_s() {
    let q = "SELECT SERVERPROPERTY('InstanceDefaultDataPath') AS d, SERVERPROPERTY('InstanceDefaultLogPath') AS l, SERVERPROPERTY('InstanceDefaultBackupPath') AS b";
    let native = SqlServerEmulator::native();
    let (addr, _h) = native.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(&mut c, q, &[]).await;
    assert_eq!(text(&r[0], "d").as_deref(), Some("/var/opt/mssql/data/"));
    assert_eq!(text(&r[0], "l").as_deref(), Some("/var/opt/mssql/data/"));
    let rds = SqlServerEmulator::rds();
    let (addr, _h2) = rds.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(&mut c, q, &[]).await;
    assert_eq!(text(&r[0], "d").as_deref(), Some("D:\\rdsdbdata\\DATA\\"));
    assert_eq!(text(&r[0], "l").as_deref(), Some("D:\\rdsdbdata\\DATA\\"));
}

#[tokio::test]
async fn a_failing_job_step_records_every_error_in_job_history() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    emu.add_database("Old", DatabaseState::Online);
    emu.register_backup("/x.trn", linux_backup(BackupKind::Log, "Old"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    c.simple_query(
        "EXEC msdb.dbo.sp_add_job @job_name = N'j'; EXEC msdb.dbo.sp_add_jobstep @job_name = N'j', @step_name = N's', @command = N'RESTORE LOG [Old] FROM DISK = ''/x.trn'' WITH NORECOVERY'; EXEC msdb.dbo.sp_add_jobserver @job_name = N'j'; EXEC msdb.dbo.sp_start_job @job_name = N'j'",
    )
    .await
    .expect("batch")
    .into_results()
    .await
    .expect("drain");
    emu.advance(Duration::from_secs(10));
    let step = step_row(&emu, "j");
    assert_eq!(step.run_status, 0);
    assert_eq!(step.sql_message_id, 3013);
    assert_eq!(
        step.message,
        "Executed as user: NT SERVICE\\SQLSERVERAGENT. The log or differential backup cannot be restored because no files are ready to rollforward. [SQLSTATE 42000] (Error 3117)  RESTORE LOG is terminating abnormally. [SQLSTATE 42000] (Error 3013).  The step failed."
    );
}

#[tokio::test]
async fn unknown_statements_get_sql_server_errors_and_every_request_is_recorded() {
    let emu = SqlServerEmulator::native();
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let e = server_error(
        &mut c,
        "exec msdb.dbo.rds_task_status @db_name=@P1",
        &[&"x"],
    )
    .await;
    assert_eq!(e.code(), 2812, "no RDS procedures on a native server");
    assert_eq!(
        e.message(),
        "Could not find stored procedure 'msdb.dbo.rds_task_status'."
    );
    let e = server_error(&mut c, "TRUNCATE TABLE x", &[]).await;
    assert_eq!(e.code(), 102);
    let e = server_error(&mut c, "SELECT * FROM dbo.Nothing", &[]).await;
    assert_eq!(e.code(), 208);
    let e = server_error(&mut c, "EXEC msdb.dbo.sp_add_job @job_nam = N'x'", &[]).await;
    assert_eq!(e.code(), 8145);
    let e = server_error(
        &mut c,
        "SELECT name FROM sys.databases WHERE name = @P2",
        &[&"x"],
    )
    .await;
    assert_eq!(e.code(), 137);
    let e = server_error(&mut c, "DROP DATABASE [NoSuch]", &[]).await;
    assert_eq!(e.code(), 3701);
    let reqs = emu.requests();
    assert_eq!(reqs.len(), 6);
    assert_eq!(
        reqs[0].normalised,
        "exec msdb.dbo.rds_task_status @db_name = @p1"
    );
    assert_eq!(reqs[0].request.params[0].0, "@P1");
    assert_eq!(reqs[5].normalised, "drop database [nosuch]");
}

#[tokio::test]
async fn a_connection_cut_mid_poll_leaves_the_task_running_for_the_next_connection() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.register_backup(ARN_FULL, BackupInfo::new(BackupKind::Full, "Cut"));
    let (addr, handle) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    handle.cut_connection_on_sql(FaultTiming::AfterHandler, "rds_restore_database");
    let submit = "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1";
    let err = c
        .query(submit, &[&"Cut", &ARN_FULL])
        .await
        .expect_err("cut mid-submit");
    assert!(matches!(err, tiberius::error::Error::Io { .. }), "{err:?}");
    // The submit ran before the cut: the task exists.
    assert_eq!(emu.rds_tasks().len(), 1);
    let mut c = connect(addr).await;
    handle.cut_connection_on_sql(FaultTiming::BeforeHandler, "rds_task_status");
    assert!(c
        .query("exec msdb.dbo.rds_task_status @db_name=@P1", &[&"Cut"])
        .await
        .is_err());
    emu.advance(Duration::from_secs(10));
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "exec msdb.dbo.rds_task_status @db_name=@P1",
        &[&"Cut"],
    )
    .await;
    assert_eq!(text(&r[0], "lifecycle").as_deref(), Some("SUCCESS"));
}

#[tokio::test]
async fn unquoted_database_identifiers_are_reported_even_inside_job_steps() {
    let emu = SqlServerEmulator::native();
    emu.register_backup("/b/f.bak", linux_backup(BackupKind::Full, "Fine"));
    emu.register_backup("/b/b.bak", linux_backup(BackupKind::Full, "Bare"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    c.execute(
        "RESTORE DATABASE [Fine] FROM DISK = @P1 WITH NORECOVERY",
        &[&"/b/f.bak"],
    )
    .await
    .expect("quoted");
    c.execute(
        "DECLARE @db sysname = N'x'; BEGIN TRY RESTORE DATABASE @db FROM DISK = N'/nothing' END TRY BEGIN CATCH PRINT 1 END CATCH",
        &[],
    )
    .await
    .expect("a variable is not an identifier");
    assert!(emu.unquoted_database_identifiers().is_empty());
    c.execute(
        "RESTORE DATABASE Bare FROM DISK = @P1 WITH NORECOVERY",
        &[&"/b/b.bak"],
    )
    .await
    .expect("bare");
    c.execute("EXEC msdb.dbo.sp_add_job @job_name = @P1", &[&"j"])
        .await
        .expect("job");
    c.execute(
        "EXEC msdb.dbo.sp_add_jobstep @job_name = @P1, @step_name = N's', @command = @P2",
        &[
            &"j",
            &"BEGIN TRY RESTORE LOG InStep FROM URL = N's3://b/x.trn' WITH NORECOVERY END TRY BEGIN CATCH THROW; END CATCH",
        ],
    )
    .await
    .expect("step");
    assert_eq!(
        emu.unquoted_database_identifiers(),
        vec!["Bare".to_string(), "InStep".to_string()]
    );
}

#[tokio::test]
async fn an_rds_task_can_be_cancelled_and_a_database_dropped() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.add_database("Old", DatabaseState::Restoring);
    emu.register_backup(ARN_FULL, BackupInfo::new(BackupKind::Full, "Gone"));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1",
        &[&"Gone", &ARN_FULL],
    )
    .await;
    let id = r[0].get::<i32, _>("task_id").expect("id");
    emu.advance(Duration::from_millis(500));
    c.execute("exec msdb.dbo.rds_cancel_task @task_id=@P1", &[&id])
        .await
        .expect("cancel");
    let t = task_status(&mut c, "Gone", id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("CANCEL_REQUESTED"));
    emu.advance(Duration::from_secs(1));
    let t = task_status(&mut c, "Gone", id).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("CANCELLED"));
    assert!(emu.database("Gone").is_none());
    let e = server_error(&mut c, "exec msdb.dbo.rds_cancel_task @task_id=@P1", &[&id]).await;
    assert_eq!(e.code(), 50000);
    c.execute("exec msdb.dbo.rds_drop_database @db_name=@P1", &[&"Old"])
        .await
        .expect("drop");
    assert!(emu.database("Old").is_none());
    let e = server_error(
        &mut c,
        "exec msdb.dbo.rds_drop_database @db_name=@P1",
        &[&"Old"],
    )
    .await;
    assert_eq!(e.code(), 3701);
    let e = server_error(
        &mut c,
        "exec msdb.dbo.rds_drop_database @db_name=@P1",
        &[&"msdb"],
    )
    .await;
    assert_eq!(e.code(), 50000);
}

#[tokio::test]
async fn sp_add_job_returns_its_job_id_through_an_output_variable() {
    let emu = SqlServerEmulator::native();
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let r = rows(
        &mut c,
        "DECLARE @id uniqueidentifier; EXEC msdb.dbo.sp_add_job @job_name = @P1, @job_id = @id OUTPUT; SELECT @id AS job_id",
        &[&"with-output"],
    )
    .await;
    let id: tiberius::Uuid = r[0].get("job_id").expect("job id");
    let job = emu.job("with-output").expect("job");
    assert_eq!(id.to_bytes_le(), job.job_id);
    let e = server_error(&mut c, "SET @nope = 1", &[]).await;
    assert_eq!(e.code(), 137);
    let r = rows(
        &mut c,
        "DECLARE @v nvarchar(4000) = N'a$' + N'(b', @w sysname = N'c'; SELECT @v + @w AS v",
        &[],
    )
    .await;
    assert_eq!(text(&r[0], "v").as_deref(), Some("a$(bc"));
}
