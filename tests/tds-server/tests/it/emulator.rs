//! The SQL Server emulator through a real tiberius client.

use crate::common::{connect, TestClient};
use bakdrop_tds_server::emulator::{BackupInfo, BackupKind, ClockMode, DatabaseState};
use bakdrop_tds_server::{FaultTiming, SqlServerEmulator};
use std::time::Duration;
use tiberius::{Row, ToSql};

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
async fn an_rds_restore_is_polled_from_created_to_success_then_finished() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_restore_duration(Some("Sales"), Duration::from_secs(60));
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
    // A log on top, then finish.
    let r = rows(
        &mut c,
        "exec msdb.dbo.rds_restore_log @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=@P3",
        &[&"Sales", &ARN_LOG, &1i32],
    )
    .await;
    let log_task = r[0].get::<i32, _>("task_id").expect("task id");
    emu.advance(Duration::from_secs(120));
    let t = task_status(&mut c, "Sales", log_task).await;
    assert_eq!(text(&t, "lifecycle").as_deref(), Some("SUCCESS"));
    c.execute("exec msdb.dbo.rds_finish_restore @db_name=@P1", &[&"Sales"])
        .await
        .expect("finish");
    assert_eq!(
        emu.database("Sales").map(|d| d.state),
        Some(DatabaseState::Online)
    );
    let all = rows(
        &mut c,
        "exec msdb.dbo.rds_task_status @db_name=@P1",
        &[&"Sales"],
    )
    .await;
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn wall_clock_tasks_finish_on_their_own() {
    let emu = SqlServerEmulator::rds();
    emu.set_restore_duration(None, Duration::from_millis(150));
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
async fn a_third_concurrent_rds_task_is_refused() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let sql = "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1";
    rows(&mut c, sql, &[&"A", &"arn:aws:s3:::b/a.bak"]).await;
    rows(&mut c, sql, &[&"B", &"arn:aws:s3:::b/b.bak"]).await;
    let e = server_error(&mut c, sql, &[&"C", &"arn:aws:s3:::b/c.bak"]).await;
    assert_eq!(e.code(), 50000);
    assert!(
        e.message().contains("2 tasks are already in progress"),
        "{}",
        e.message()
    );
    assert!(emu.database("C").is_none());
    emu.advance(Duration::from_secs(10));
    rows(&mut c, sql, &[&"C", &"arn:aws:s3:::b/c.bak"]).await;
    assert_eq!(emu.rds_tasks().len(), 3);
}

#[tokio::test]
async fn restoring_over_an_existing_database_fails_the_rds_task() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.add_database("Taken", DatabaseState::Online);
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
    assert!(info.contains("Database 'Taken' already exists"), "{info}");
    // The existing database is untouched.
    assert_eq!(
        emu.database("Taken").map(|d| d.state),
        Some(DatabaseState::Online)
    );
}

#[tokio::test]
async fn a_scripted_failure_surfaces_with_its_number_in_rds_and_native_restores() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    let msg = "The database was backed up on a server running version 17.00.100. That version is incompatible with this server, which is running version 16.00.4135.";
    emu.fail_next_restore("Sales", 3169, msg);
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
    assert!(info.contains("Msg 3169, Level 16"), "{info}");
    assert!(info.contains(msg));
    assert!(
        emu.database("Sales").is_none(),
        "a failed first restore leaves no database"
    );

    let native = SqlServerEmulator::native();
    native.fail_next_restore("Sales", 3201, "Cannot open backup device 'https://x/y.bak'. Operating system error 2(The system cannot find the file specified.).");
    let (addr, _h2) = native.start().await.expect("start");
    let mut n = connect(addr).await;
    let e = server_error(
        &mut n,
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY, CHECKSUM, STATS = 10",
        &[&"s3://bucket/Sales/full.bak"],
    )
    .await;
    assert_eq!(e.code(), 3201);
    assert!(e.message().starts_with("Cannot open backup device"));
    // Next attempt succeeds and leaves the database RESTORING.
    n.execute(
        "RESTORE DATABASE [Sales] FROM URL = @P1 WITH NORECOVERY, CHECKSUM, STATS = 10",
        &[&"s3://bucket/Sales/full.bak"],
    )
    .await
    .expect("restore");
    assert_eq!(
        native.database("Sales").map(|d| d.state),
        Some(DatabaseState::Restoring)
    );
}

#[tokio::test]
async fn catalog_lsns_and_versions_drive_4305_and_3169() {
    let emu = SqlServerEmulator::native();
    let full = "s3://b/D/full.bak";
    let gap = "s3://b/D/log2.trn";
    let newer = "s3://b/E/full.bak";
    emu.register_backup(
        full,
        BackupInfo {
            kind: BackupKind::Full,
            first_lsn: 100,
            last_lsn: 200,
            database_version: 957,
            software_version: "16.00.4135".into(),
        },
    );
    emu.register_backup(
        gap,
        BackupInfo {
            kind: BackupKind::Log,
            first_lsn: 300,
            last_lsn: 400,
            database_version: 957,
            software_version: "16.00.4135".into(),
        },
    );
    emu.register_backup(
        newer,
        BackupInfo {
            kind: BackupKind::Full,
            first_lsn: 1,
            last_lsn: 2,
            database_version: 998,
            software_version: "17.00.100".into(),
        },
    );
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    c.execute(
        "RESTORE DATABASE [D] FROM URL = @P1 WITH NORECOVERY",
        &[&full],
    )
    .await
    .expect("full");
    let e = server_error(
        &mut c,
        "RESTORE LOG [D] FROM URL = @P1 WITH NORECOVERY",
        &[&gap],
    )
    .await;
    assert_eq!(e.code(), 4305);
    assert!(e.message().contains("begins at LSN 300"), "{}", e.message());
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [E] FROM URL = @P1 WITH NORECOVERY",
        &[&newer],
    )
    .await;
    assert_eq!(e.code(), 3169);
    assert!(
        e.message().contains("running version 16.00.4135"),
        "{}",
        e.message()
    );
    let e = server_error(
        &mut c,
        "RESTORE DATABASE [D] FROM URL = @P1 WITH NORECOVERY",
        &[&full],
    )
    .await;
    assert_eq!(e.code(), 3154);
}

#[tokio::test]
async fn a_native_restore_runs_as_an_agent_job_and_is_polled_to_completion() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    emu.set_restore_duration(Some("We]ird"), Duration::from_secs(100));
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    let job = "bakdrop-restore-1";
    let command = "RESTORE DATABASE [We]]ird] FROM URL = N's3://b/We]ird/full.bak' WITH NORECOVERY, CHECKSUM, STATS = 5";
    c.execute("EXEC msdb.dbo.sp_add_job @job_name = @P1", &[&job])
        .await
        .expect("add job");
    c.execute(
        "EXEC msdb.dbo.sp_add_jobstep @job_name = @P1, @step_name = N'restore', @subsystem = N'TSQL', @command = @P2, @database_name = N'master'",
        &[&job, &command],
    )
    .await
    .expect("add step");
    let e = server_error(
        &mut c,
        "EXEC msdb.dbo.sp_start_job @job_name = @P1",
        &[&job],
    )
    .await;
    assert_eq!(e.code(), 14256, "no job server yet");
    c.execute("EXEC msdb.dbo.sp_add_jobserver @job_name = @P1", &[&job])
        .await
        .expect("jobserver");
    c.execute("EXEC msdb.dbo.sp_start_job @job_name = @P1", &[&job])
        .await
        .expect("start job");
    let e = server_error(
        &mut c,
        "EXEC msdb.dbo.sp_start_job @job_name = @P1",
        &[&job],
    )
    .await;
    assert_eq!(e.code(), 22022);
    emu.advance(Duration::from_secs(25));
    let r = rows(
        &mut c,
        "SELECT percent_complete, command FROM sys.dm_exec_requests WHERE command IN ('RESTORE DATABASE', 'RESTORE LOG') AND database_id = DB_ID(@P1)",
        &[&"We]ird"],
    )
    .await;
    assert_eq!(r.len(), 1);
    let pct = r[0].get::<f64, _>("percent_complete").expect("pct");
    assert!((20.0..30.0).contains(&pct), "{pct}");
    let job_id: tiberius::Uuid = rows(
        &mut c,
        "SELECT job_id FROM msdb.dbo.sysjobs WHERE name = @P1",
        &[&job],
    )
    .await[0]
        .get("job_id")
        .expect("job id");
    let act = rows(&mut c, "SELECT start_execution_date, stop_execution_date FROM msdb.dbo.sysjobactivity WHERE job_id = @P1", &[&job_id]).await;
    assert_eq!(act.len(), 1);
    let stop = act[0]
        .cells()
        .find(|(col, _)| col.name() == "stop_execution_date")
        .map(|(_, data)| data.clone());
    assert_eq!(stop, Some(tiberius::ColumnData::DateTime(None)));
    emu.advance(Duration::from_secs(80));
    let h = rows(
        &mut c,
        "SELECT TOP 1 run_status, message, sql_message_id FROM msdb.dbo.sysjobhistory WHERE job_id = @P1 AND step_id = 0 ORDER BY instance_id DESC",
        &[&job_id],
    )
    .await;
    assert_eq!(h[0].get::<i32, _>("run_status"), Some(1));
    assert_eq!(
        emu.database("We]ird").map(|d| d.state),
        Some(DatabaseState::Restoring)
    );
    let r = rows(
        &mut c,
        "SELECT COUNT(*) AS n FROM sys.dm_exec_requests WHERE command = 'RESTORE DATABASE'",
        &[],
    )
    .await;
    assert_eq!(r[0].get::<i32, _>("n"), Some(0));
    c.execute("RESTORE DATABASE [We]]ird] WITH RECOVERY", &[])
        .await
        .expect("recover");
    assert_eq!(
        emu.database("We]ird").map(|d| d.state),
        Some(DatabaseState::Online)
    );
    c.execute("DROP DATABASE [We]]ird]", &[])
        .await
        .expect("drop");
    assert!(emu.database("We]ird").is_none());
}

#[tokio::test]
async fn a_failing_job_step_records_the_sql_error_in_job_history() {
    let emu = SqlServerEmulator::native();
    emu.set_clock_mode(ClockMode::Manual);
    emu.add_database("Old", DatabaseState::Online);
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
    let h = emu.job_history();
    let step = h.iter().find(|r| r.step_id == 1).expect("step row");
    assert_eq!(step.run_status, 0);
    assert_eq!(step.sql_message_id, 3117);
    assert!(step.message.contains("The step failed."));
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
    let (addr, _h) = emu.start().await.expect("start");
    let mut c = connect(addr).await;
    c.execute(
        "RESTORE DATABASE [Fine] FROM DISK = @P1 WITH NORECOVERY",
        &[&"/b/f.bak"],
    )
    .await
    .expect("quoted");
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
            &"RESTORE LOG InStep FROM URL = N's3://b/x.trn' WITH NORECOVERY",
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
async fn the_test_server_binary_prints_its_address_and_serves_the_emulator() {
    use std::io::BufRead;
    /// Kills the server process however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_tds-test-server"))
            .args(["--port", "0", "--native"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let mut line = String::new();
    let stdout = child.0.stdout.take().expect("stdout");
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("address line");
    let addr: std::net::SocketAddr = line.trim().parse().expect("an address");
    let mut c = connect(addr).await;
    let r = rows(&mut c, "SELECT SERVERPROPERTY('Edition') AS e", &[]).await;
    assert_eq!(
        text(&r[0], "e").as_deref(),
        Some("Developer Edition (64-bit)")
    );
    drop(child);
}

#[tokio::test]
async fn an_rds_task_can_be_cancelled_and_a_database_dropped() {
    let emu = SqlServerEmulator::rds();
    emu.set_clock_mode(ClockMode::Manual);
    emu.add_database("Old", DatabaseState::Restoring);
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
}
