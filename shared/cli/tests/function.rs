//! `bakdrop status|complete|cancel --function` against a deployed stack's functions: the
//! `bakdrop` binary invokes them through the AWS SDK (Lambda Invoke over HTTP) on a local Lambda
//! service whose functions are the real handlers of migration-status and complete-migration,
//! over the status table on the local AWS endpoint (started by infra/test.sh) and the TDS test
//! server as target.

use std::process::{Command, Output};

use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_core::backup::{HEAD_LIMIT, TAIL_LIMIT};
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::status::{FileRecord, FileState, MigrationRecord, MigrationState};
use bakdrop_core::ports::StatusStore;
use bakdrop_core::tsql::Dialect;

use bakdrop_mssql::testing::emulator_target;
use bakdrop_tds_server::emulator::DatabaseState;
use bakdrop_tds_server::SqlServerEmulator;
use bakdrop_test_support::aws::{unique_name, LocalAws};
use bakdrop_test_support::lambda::{LocalLambda, Outcome};
use lambda_runtime::Diagnostic;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak/");

/// Runs `bakdrop` with the Lambda endpoint pointed at `lambda` (off the async runtime: the
/// local services answer on it).
async fn bakdrop(lambda: &LocalLambda, args: &[&str]) -> Output {
    let endpoint = lambda.endpoint();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_bakdrop"))
            .args(&args)
            .env("AWS_ENDPOINT_URL_LAMBDA", endpoint)
            .output()
            .expect("bakdrop runs")
    })
    .await
    .expect("joined")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A restored file record of fixture `name`, its header read from the fixture's head and tail.
fn restored(database: &str, name: &str) -> FileRecord {
    let data = std::fs::read(format!("{FIXTURES}{name}")).expect("fixture");
    let head = &data[..data.len().min(HEAD_LIMIT)];
    let tail = &data[data.len().saturating_sub(TAIL_LIMIT)..];
    let header = bakdrop_core::backup::summary::summarize(head, Some(tail), data.len() as u64)
        .expect("fixture header");
    let now = time::OffsetDateTime::now_utc();
    let object = ObjectRef {
        bucket: "b".into(),
        key: format!("{database}/{name}"),
        version_id: None,
        etag: Some("e".into()),
        size: data.len() as u64,
    };
    FileRecord {
        migration: Some(bakdrop_core::DatabaseName::parse(database).expect("name")),
        file_id: object.file_id(),
        object,
        state: FileState::Restored,
        reason: None,
        header: Some(header),
        claim: None,
        restore_started_at: None,
        restore_finished_at: None,
        created_at: now,
        updated_at: now,
    }
}

async fn synchronizing(store: &DynamoStatusStore, database: &str) {
    let mut migration = MigrationRecord::new(
        bakdrop_core::DatabaseName::parse(database).expect("name"),
        time::OffsetDateTime::now_utc(),
    );
    migration.state = MigrationState::Synchronizing;
    migration.restores_submitted = true; // its restores made the database on the target
    let files = [
        "sql2016_full_RestoreTimeClean.bak",
        "sql2016_log_RestoreTimeClean_1.trn",
    ]
    .map(|name| restored(database, name));
    // The chain the worker recorded restoring them.
    for f in &files {
        let h = f.header.as_ref().expect("header");
        let step = bakdrop_core::model::chain::Step {
            kind: h.backup_type,
            files: vec![f.file_id.clone()],
            backup_set_guid: h.backup_set_guid,
            first_lsn: h.first_lsn,
            last_lsn: h.last_lsn,
        };
        migration.chain.apply_on_fork(&step, h.recovery_fork_id);
    }
    store.put_migration(&migration, None).await.expect("stored");
    for f in &files {
        store.put_file(f, None).await.expect("stored");
    }
}

fn diagnostic(e: impl Into<Diagnostic>) -> Outcome {
    let d: Diagnostic = e.into();
    Outcome::Error {
        error_type: d.error_type,
        message: d.error_message,
    }
}

#[tokio::test]
async fn complete_cancel_and_status_invoke_a_stacks_functions() {
    let aws = LocalAws::get().await;
    let table = unique_name("fn-status");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let (sales, hr) = ("Sales", "HR");
    synchronizing(&store, sales).await;
    synchronizing(&store, hr).await;
    // A gap: a later log waits for the one before it. A file still queued. A migration still
    // restoring its full backup.
    for (database, file, state) in [
        (
            "Gap",
            "sql2016_log_RestoreTimeClean_3.trn",
            FileState::Waiting,
        ),
        (
            "Busy",
            "sql2016_log_RestoreTimeClean_2.trn",
            FileState::Queued,
        ),
    ] {
        synchronizing(&store, database).await;
        let mut waiting = restored(database, file);
        waiting.state = state;
        store.put_file(&waiting, None).await.expect("stored");
    }
    let mut restoring = MigrationRecord::new(
        bakdrop_core::DatabaseName::parse("Early").expect("name"),
        time::OffsetDateTime::now_utc(),
    );
    restoring.state = MigrationState::Restoring;
    store.put_migration(&restoring, None).await.expect("stored");

    let emulator = SqlServerEmulator::native();
    emulator.set_finish_duration(std::time::Duration::from_millis(300));
    emulator.add_database(sales, DatabaseState::Restoring);
    emulator.add_database(hr, DatabaseState::Restoring);
    let (addr, _server) = emulator.start().await.expect("tds server");
    let target = emulator_target(addr.port(), Dialect::Native);

    let lambda = LocalLambda::start().await.expect("local lambda");
    {
        let (store, target) = (store.clone(), target.clone());
        lambda.route("bakdrop-complete", move |payload| {
            let (store, target) = (store.clone(), target.clone());
            async move {
                let now = time::OffsetDateTime::now_utc();
                // As deployed: the function follows the recovery job for up to 10 s (the test
                // server's takes a fraction of that), then would queue the worker's follow-up.
                let queue = bakdrop_core::ports::fakes::MemoryQueue::default();
                let followup = complete_migration::handler::Followup {
                    queue: &queue,
                    delay: std::time::Duration::from_secs(1),
                    wait: std::time::Duration::from_secs(10),
                    look_every: std::time::Duration::from_millis(100),
                };
                let reader = bakdrop_core::ports::fakes::MemoryObjects::default();
                let config = bakdrop_core::validate::ValidateConfig {
                    arm_by_upload: false,
                    target: Some(bakdrop_core::model::version::NEWEST),
                    policy: bakdrop_core::model::version::VersionPolicy::Same,
                    location: bakdrop_core::tsql::source::SourceLocation::rds(None),
                };
                let revalidation = complete_migration::handler::Revalidation {
                    reader: &reader,
                    config: &config,
                };
                match complete_migration::handler::handle(
                    &store,
                    &target,
                    &followup,
                    &revalidation,
                    payload,
                    now,
                )
                .await
                {
                    Ok(v) => Outcome::Ok(v),
                    Err(e) => diagnostic(e),
                }
            }
        });
    }
    {
        let store = store.clone();
        lambda.route("bakdrop-status", move |payload| {
            let store = store.clone();
            async move {
                match migration_status::handler::handle(&store, payload).await {
                    Ok(v) => Outcome::Ok(v),
                    Err(e) => diagnostic(e),
                }
            }
        });
    }
    let complete = |args: &'static [&'static str]| {
        let mut all = vec!["complete"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--function", "bakdrop-complete"]);
        all
    };

    // Status through the migration-status function.
    let status = bakdrop(
        &lambda,
        &["status", sales, "--function", "bakdrop-status", "--json"],
    )
    .await;
    assert!(status.status.success(), "{}", text(&status));
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(doc["state"], "Synchronizing");
    assert_eq!(doc["applied"].as_array().map(Vec::len), Some(2));
    let listed = bakdrop(&lambda, &["status", "--function", "bakdrop-status"]).await;
    let listed = text(&listed);
    assert!(
        listed.contains("Sales") && listed.contains("HR"),
        "{listed}"
    );
    let unknown = bakdrop(&lambda, &["status", "Nope", "--function", "bakdrop-status"]).await;
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("MigrationNotFound"),
        "{}",
        text(&unknown)
    );

    // Every refusal comes back with the function's stable error type; the database stays
    // restoring.
    for (args, code) in [
        (complete(&["Sales", "--require-tail-log"]), "NotTailLog"),
        (
            complete(&[
                "Sales",
                "--last-backup",
                "sql2016_log_RestoreTimeClean_3.trn",
            ]),
            "NotLastBackup",
        ),
        (complete(&["Nope"]), "MigrationNotFound"),
        (complete(&["Gap"]), "FilesInFlight"),
        (complete(&["Busy"]), "FilesInFlight"),
        (complete(&["Early"]), "NotSynchronizing"),
        (complete(&["tempdb"]), "InvalidDatabaseName"),
        (complete(&[" Sales"]), "InvalidDatabaseName"),
    ] {
        let out = bakdrop(&lambda, &args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("refused ({code})")),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert_eq!(
        emulator.database(sales).map(|d| d.state),
        Some(DatabaseState::Restoring)
    );

    // Complete, then Complete again (harmless), then Cancel of another migration.
    let done = bakdrop(
        &lambda,
        &complete(&[
            "Sales",
            "--last-backup",
            "sql2016_log_RestoreTimeClean_1.trn",
        ]),
    )
    .await;
    assert!(done.status.success(), "{}", text(&done));
    assert!(text(&done).contains("Sales: Succeeded"), "{}", text(&done));
    let again = bakdrop(&lambda, &complete(&["Sales"])).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("Sales: Succeeded"),
        "{}",
        text(&again)
    );
    assert_eq!(
        emulator.database(sales).map(|d| d.state),
        Some(DatabaseState::Online)
    );
    let cancelled = bakdrop(&lambda, &["cancel", hr, "--function", "bakdrop-complete"]).await;
    assert!(cancelled.status.success(), "{}", text(&cancelled));
    assert!(
        text(&cancelled).contains("HR: Cancelled"),
        "{}",
        text(&cancelled)
    );
    assert!(
        emulator.database(hr).is_none(),
        "the half-restored database is dropped"
    );
    let state = |db: &'static str| {
        let store = store.clone();
        async move {
            store
                .get_migration(db)
                .await
                .expect("read")
                .expect("migration")
                .record
                .state
        }
    };
    assert_eq!(state(sales).await, MigrationState::Succeeded);
    assert_eq!(state(hr).await, MigrationState::Cancelled);

    // Reset: refused for the online database (exit 1, its error type), done for the cancelled.
    let online = bakdrop(&lambda, &["reset", sales, "--function", "bakdrop-complete"]).await;
    assert_eq!(online.status.code(), Some(1), "{}", text(&online));
    assert!(
        text(&online).contains("refused (AlreadyOnline)"),
        "{}",
        text(&online)
    );
    let reset = bakdrop(&lambda, &["reset", hr, "--function", "bakdrop-complete"]).await;
    assert!(reset.status.success(), "{}", text(&reset));
    assert!(
        text(&reset).contains("HR: AwaitingFull"),
        "{}",
        text(&reset)
    );
    assert_eq!(state(hr).await, MigrationState::AwaitingFull);

    // No such function: a clear error, not a refusal.
    let missing = bakdrop(&lambda, &["cancel", hr, "--function", "nope"]).await;
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("invoking function nope"),
        "{}",
        text(&missing)
    );
    // --function with --target is refused before anything runs.
    let both = bakdrop(
        &lambda,
        &[
            "complete",
            sales,
            "--function",
            "bakdrop-complete",
            "--target",
            "host=x",
        ],
    )
    .await;
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));
    lambda.stop().await;
}
