//! The whole pipeline: uploads to the local S3, validate-upload, the restore queue on the local
//! SQS, restore-worker against the TDS test server, the status table on the local DynamoDB,
//! then Complete.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_s3::primitives::ByteStream;
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::s3::S3ObjectReader;
use bakdrop_aws::sqs::SqsJobQueue;
use bakdrop_aws::staging::S3StripeStaging;
use bakdrop_core::cutover::{self, CompleteRequest};
use bakdrop_core::model::status::{FileState, MigrationState};
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::ports::StatusStore;
use bakdrop_core::restore::Worker;
use bakdrop_core::tsql::Dialect;
use bakdrop_core::validate::{ValidateConfig, Validator};

use bakdrop_mssql::testing::emulator_target;
use bakdrop_mssql::TiberiusTarget;
use bakdrop_tds_server::emulator::ClockMode;
use bakdrop_tds_server::{FaultTiming, ServerHandle, SqlServerEmulator};
use bakdrop_test_support::aws::{LocalAws, StackResources};
use bakdrop_test_support::invocation;
use bakdrop_test_support::tds::{emulator_restore_config, register_upload};
use serde_json::json;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/bak/");

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

struct Migrated {
    emulator: SqlServerEmulator,
    store: DynamoStatusStore,
    target: S3StripeStaging<TiberiusTarget>,
    aws: LocalAws,
    bucket: String,
    events: String,
    jobs: String,
    validator: Validator<S3ObjectReader, DynamoStatusStore, SqsJobQueue>,
    worker: Worker<DynamoStatusStore, SqsJobQueue, S3StripeStaging<TiberiusTarget>, S3ObjectReader>,
    /// The TDS server, for its faults (it lives for the test process).
    server: std::sync::Arc<ServerHandle>,
}

impl Migrated {
    /// A stack on the local AWS endpoint and a TDS test server of `dialect` (restores take 30 s
    /// of its manual clock).
    async fn new(dialect: Dialect) -> Migrated {
        let aws = LocalAws::get().await;
        let StackResources {
            bucket,
            events,
            table,
            restore_queue: jobs,
        } = aws.create_stack().await.expect("stack");
        let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
        let queue = SqsJobQueue::new(aws.sqs.clone(), &jobs);

        let emulator = match dialect {
            Dialect::Rds => SqlServerEmulator::rds(),
            Dialect::Native => SqlServerEmulator::native(),
        };
        emulator.set_clock_mode(ClockMode::Manual);
        emulator.set_restore_duration(None, Duration::from_secs(30));
        let (addr, server) = emulator.start().await.expect("tds server");
        let server = std::sync::Arc::new(server);
        std::mem::forget(server.clone()); // lives for the test process
        let target = S3StripeStaging::new(aws.s3.clone(), emulator_target(addr.port(), dialect));
        let validator = Validator {
            reader: S3ObjectReader::new(aws.s3.clone()),
            store: store.clone(),
            queue: queue.clone(),
            config: ValidateConfig {
                arm_by_upload: false,
                target: Some("2022".parse().expect("release")),
                policy: VersionPolicy::NotNewer,
                location: emulator_restore_config(dialect).location,
            },
        };
        let worker = Worker {
            store: store.clone(),
            queue,
            target: target.clone(),
            objects: S3ObjectReader::new(aws.s3.clone()),
            config: emulator_restore_config(dialect),
        };
        Migrated {
            emulator,
            store,
            target,
            aws,
            bucket,
            events,
            jobs,
            validator,
            worker,
            server,
        }
    }

    /// Uploads the fixtures `files` into the folder `database` and validates their S3 events;
    /// returns the summary of each.
    async fn upload(
        &self,
        database: &str,
        files: &[&str],
    ) -> Vec<validate_upload::handler::Summary> {
        for name in files {
            let body = std::fs::read(format!("{FIXTURES}{name}")).expect("fixture");
            let key = format!("{database}/{name}");
            register_upload(&self.emulator, &self.bucket, &key, &body);
            self.aws
                .s3
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .expect("put");
        }
        let mut summaries = Vec::new();
        for event in self
            .aws
            .next_s3_events(&self.events, files.len())
            .await
            .expect("events")
        {
            let summary = validate_upload::handler::handle(&self.validator, event, "req", now())
                .await
                .expect("validated");
            summaries.push(summary);
        }
        summaries
    }

    /// Drives the worker as Lambda's SQS event source would, advancing the server's clock,
    /// until the restore queue stays empty.
    async fn drive(&self) {
        let mut idle_rounds = 0;
        for _ in 0..200 {
            if self.round().await == 0 {
                idle_rounds += 1;
                if idle_rounds > 3 {
                    break;
                }
                continue;
            }
            idle_rounds = 0;
            self.emulator.advance(Duration::from_secs(20));
        }
    }

    /// One batch of the restore queue handled by the worker; returns how many messages it held.
    async fn round(&self) -> usize {
        let messages = self.aws.receive_now(&self.jobs).await.expect("receive");
        if messages.is_empty() {
            return 0;
        }
        let records: Vec<_> = messages
            .iter()
            .map(|(id, body)| json!({"messageId": id, "body": body}))
            .collect();
        let event: SqsEvent =
            serde_json::from_value(json!({ "Records": records })).expect("sqs event");
        let response =
            restore_worker::handler::handle(&self.worker, event, &invocation(), now()).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        messages.len()
    }

    /// Complete through the complete-migration function, which follows the finish task for
    /// `follow` (looking every quarter of it), then queues its follow-up; returns its answer.
    async fn complete_through_function(
        &self,
        payload: serde_json::Value,
        follow: Duration,
    ) -> serde_json::Value {
        let followup = complete_migration::handler::Followup {
            queue: &self.worker.queue,
            delay: Duration::ZERO,
            wait: follow,
            look_every: follow / 4,
        };
        let revalidation = complete_migration::handler::Revalidation {
            reader: &self.validator.reader,
            config: &self.validator.config,
        };
        complete_migration::handler::handle(
            &self.store,
            &self.target,
            &followup,
            &revalidation,
            payload,
            now(),
        )
        .await
        .expect("complete")
    }

    async fn migration(&self, database: &str) -> bakdrop_core::model::status::MigrationRecord {
        self.store
            .get_migration(database)
            .await
            .expect("read")
            .expect("migration")
            .record
    }

    /// The state of `database` on the server (`Restoring`, `Online`, …).
    fn server_state(&self, database: &str) -> Option<String> {
        self.emulator
            .database(database)
            .map(|d| format!("{:?}", d.state))
    }

    /// The requests that carried `RESTORE … WITH RECOVERY`: each an Agent job submission (the
    /// step's command a parameter), never the statement itself in a session.
    fn recoveries_submitted_as_jobs(&self) -> usize {
        let recoveries: Vec<_> = self
            .emulator
            .requests()
            .into_iter()
            .filter(|r| format!("{:?}", r.request).contains("WITH RECOVERY"))
            .collect();
        for r in &recoveries {
            assert!(
                r.request.sql.contains("sp_add_job") && !r.request.sql.contains("RECOVERY"),
                "{:?}",
                r.request
            );
        }
        recoveries.len()
    }

    /// The migration record, asserted Synchronizing (its reason shown otherwise).
    async fn synchronizing(&self, database: &str) -> bakdrop_core::model::status::MigrationRecord {
        let migration = self
            .store
            .get_migration(database)
            .await
            .expect("read")
            .expect("migration")
            .record;
        assert_eq!(
            migration.state,
            MigrationState::Synchronizing,
            "{:?}",
            migration.reason
        );
        migration
    }
}

/// The stack said its target was SQL Server 2014: the 2016 chain is rejected at validation. Once
/// the stack says 2016, the complete-migration function's `revalidate` action re-checks those
/// files (local DynamoDB and SQS) and the worker migrates them, nothing uploaded again.
#[tokio::test]
async fn revalidate_migrates_the_files_rejected_under_the_former_target_version() {
    let mut m = Migrated::new(Dialect::Native).await;
    m.validator.config.target = Some("2014".parse().expect("release"));
    let files = [
        "sql2016_full_RestoreTimeClean.bak",
        "sql2016_log_RestoreTimeClean_1.trn",
    ];
    for summary in m.upload("Clean", &files).await {
        assert_eq!(summary.queued, 0, "{summary:?}");
    }
    let rejected = m
        .store
        .list_files_in("Clean", FileState::Rejected, 10)
        .await
        .expect("listed");
    assert_eq!(rejected.len(), 2);
    assert!(rejected.iter().all(|f| f
        .record
        .reason
        .as_ref()
        .is_some_and(|r| r.code == "BackupNewerThanTarget")));
    // The stack's parameter changed: the function's settings say 2016 now.
    m.validator.config.target = Some("2016".parse().expect("release"));
    m.validator.config.policy = VersionPolicy::Same;
    let followup = complete_migration::handler::Followup::queued(&m.worker.queue, Duration::ZERO);
    let revalidation = complete_migration::handler::Revalidation {
        reader: &m.validator.reader,
        config: &m.validator.config,
    };
    let answer = complete_migration::handler::handle(
        &m.store,
        &m.target,
        &followup,
        &revalidation,
        json!({"database": "Clean", "action": "revalidate"}),
        now(),
    )
    .await
    .expect("revalidated");
    assert_eq!(answer["revalidated"]["queued"], 2, "{answer}");
    m.drive().await;
    let migration = m.synchronizing("Clean").await;
    assert_eq!(migration.chain.applied.steps, 2);
}

async fn migrate(dialect: Dialect, files: &[&str], database: &str) -> Migrated {
    let migrated = Migrated::new(dialect).await;
    for summary in migrated.upload(database, files).await {
        assert_eq!(summary.queued, 1, "{summary:?}");
    }
    migrated.drive().await;
    migrated
}

/// The reproduced case: folder `Sales` migrates, then a folder `SALES` (one database for SQL
/// Server). The second folder's files are rejected naming the first; no second migration exists
/// whose Cancel could drop `Sales`, and `Sales` completes.
#[tokio::test]
async fn a_second_folder_naming_the_same_database_in_another_case_is_rejected_and_harms_nothing() {
    let full = ["sql2016_full_RestoreTimeClean.bak"];
    let m = Migrated::new(Dialect::Native).await;
    m.upload("Sales", &full).await;
    m.drive().await;
    m.synchronizing("Sales").await;
    let summaries = m.upload("SALES", &full).await;
    let result = &summaries[0].results[0];
    assert_eq!(summaries[0].rejected, 1, "{summaries:?}");
    let reason = result.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("SameDatabaseName") || reason.contains("folder Sales"),
        "{reason}"
    );
    // Its files were all rejected: there is nothing of its own to cancel (and nothing dropped).
    let cancel = cutover::cancel(&m.store, &m.target, "SALES", now()).await;
    assert_eq!(
        cancel.expect_err("no migration of its own").error_type(),
        "NothingAccepted"
    );
    let request = CompleteRequest {
        database: "Sales".into(),
        last_backup: None,
        require_tail_log: false,
    };
    let state = cutover::complete(&m.store, &m.target, &request, now()).await;
    assert_eq!(
        state.expect("completing"),
        MigrationState::Completing,
        "the recovery runs as an Agent job"
    );
    m.emulator.advance(Duration::from_secs(5));
    let state = cutover::follow_finish(&m.store, &m.target, "Sales", now()).await;
    assert_eq!(state.expect("completed"), MigrationState::Succeeded);
}

/// Two target databases from one source backup on one SQL Server: each restore moves the files
/// to names of its own database (the server refuses a file another database uses, 1834, and a
/// directory of the source's Windows paths, 5133/3156).
#[tokio::test]
async fn two_migrations_of_one_source_database_restore_side_by_side_natively() {
    let full = ["sql2016_full_RestoreTimeClean.bak"];
    let m = Migrated::new(Dialect::Native).await;
    for database in ["CopyA", "CopyB"] {
        for summary in m.upload(database, &full).await {
            assert_eq!(summary.queued, 1, "{summary:?}");
        }
    }
    m.drive().await;
    m.synchronizing("CopyA").await;
    m.synchronizing("CopyB").await;
    let files = |name: &str| m.emulator.database(name).expect("restored").files;
    let (a, b) = (files("CopyA"), files("CopyB"));
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(
        a.iter()
            .all(|f| f.starts_with("/var/opt/mssql/data/CopyA_")),
        "{a:?}"
    );
    assert!(a.iter().all(|f| !b.contains(f)), "{a:?} / {b:?}");
}

#[tokio::test]
async fn the_2016_chain_uploaded_out_of_order_is_restored_in_lsn_order_on_sql_server_2022_then_completed(
) {
    let files = [
        "sql2016_log_RestoreTimeClean2_2.trn",
        "sql2016_log_RestoreTimeClean_1.trn",
        "sql2016_diff_RestoreTimeClean2.bak",
        "sql2016_full_RestoreTimeClean.bak",
        "sql2016_log_RestoreTimeClean2_1.trn",
        "sql2016_log_RestoreTimeClean2_3.trn",
    ];
    let migrated = migrate(Dialect::Native, &files, "Clean ]DB").await;
    migrated.synchronizing("Clean ]DB").await;
    let Migrated {
        emulator,
        store,
        target,
        ..
    } = migrated;
    let restored: Vec<String> = emulator
        .requests()
        .iter()
        .filter_map(|r| {
            let sql = format!("{r:?}");
            sql.contains("sp_add_job").then_some(sql)
        })
        .collect();
    assert_eq!(
        restored.len(),
        5,
        "full, differential, three logs: {restored:#?}"
    );
    assert!(emulator.unquoted_database_identifiers().is_empty());
    let files = store.list_files("Clean ]DB").await.expect("files");
    let skipped: Vec<_> = files
        .iter()
        .filter(|f| f.record.state == FileState::Skipped)
        .collect();
    assert_eq!(skipped.len(), 1, "log _1 is superseded by the differential");
    let request = CompleteRequest {
        database: "Clean ]DB".into(),
        last_backup: Some("sql2016_log_RestoreTimeClean2_3.trn".into()),
        require_tail_log: false,
    };
    let state = cutover::complete(&store, &target, &request, now())
        .await
        .expect("completing");
    assert_eq!(state, MigrationState::Completing);
    emulator.advance(Duration::from_secs(5));
    let state = cutover::follow_finish(&store, &target, "Clean ]DB", now())
        .await
        .expect("completed");
    assert_eq!(state, MigrationState::Succeeded);
    assert!(emulator.unquoted_database_identifiers().is_empty());
    assert_eq!(
        emulator
            .database("Clean ]DB")
            .map(|d| format!("{:?}", d.state))
            .as_deref(),
        Some("Online")
    );
}

#[tokio::test]
async fn on_rds_the_full_and_log_restore_as_rds_tasks() {
    let files = [
        "sql2016_full_RestoreTimeClean.bak",
        "sql2016_log_RestoreTimeClean_1.trn",
    ];
    let migrated = migrate(Dialect::Rds, &files, "Clean").await;
    migrated.synchronizing("Clean").await;
    let Migrated { emulator, .. } = migrated;
    let tasks = emulator.rds_tasks();
    assert_eq!(tasks.len(), 2, "{tasks:#?}");
    assert!(tasks
        .iter()
        .all(|t| t.s3_object_arn.starts_with("arn:aws:s3:::uploads-")));
}

/// A striped full on RDS is restored in one task from one prefix ARN: the stripes' own common
/// prefix when nothing else lies under it (no copy, whatever their size), else copies staged under
/// a prefix only they share, deleted once the restore is recorded.
#[tokio::test]
async fn on_rds_a_striped_full_is_restored_in_one_task_from_a_prefix_only_its_stripes_share() {
    let files = [
        "sql2008r2_full_stripe2of2_RestoreTimeStripe1.bak",
        "sql2008r2_full_stripe1of2_RestoreTimeStripe.bak",
    ];
    for crowded in [false, true] {
        let m = Migrated::new(Dialect::Rds).await;
        if crowded {
            // Another object under the stripes' common prefix: RDS would read it too.
            m.aws
                .put_object(
                    &m.bucket,
                    "Stripe/sql2008r2_full_stripes_README.txt",
                    b"x".to_vec(),
                )
                .await
                .expect("put");
            let extra = m.aws.next_s3_events(&m.events, 1).await.expect("event");
            assert_eq!(extra.len(), 1);
            // RDS will read the staged copies (_bakdrop/stripes/<task>/<nnn>-<file>): the test
            // server learns what they hold, as RDS would by reading them.
            for file in files {
                let bytes = std::fs::read(format!("{FIXTURES}{file}")).expect("fixture");
                let header = bakdrop_test_support::tds::header_of(&bytes);
                let step = bakdrop_core::model::chain::Step {
                    kind: header.backup_type,
                    files: Vec::new(),
                    backup_set_guid: header.backup_set_guid,
                    first_lsn: header.first_lsn,
                    last_lsn: header.last_lsn,
                };
                let task = bakdrop_core::restore::task_name("Stripe", 0, &step);
                let staged = format!(
                    "_bakdrop/stripes/{task}/{:03}-{file}",
                    header.family_sequence
                );
                register_upload(&m.emulator, &m.bucket, &staged, &bytes);
            }
        }
        for summary in m.upload("Stripe", &files).await {
            assert_eq!(summary.queued, 1, "{summary:?}");
        }
        m.drive().await;
        m.synchronizing("Stripe").await;
        let tasks = m.emulator.rds_tasks();
        assert_eq!(tasks.len(), 1, "{tasks:#?}");
        let arn = &tasks[0].s3_object_arn;
        let staged_keys = |prefix: String| {
            let aws = &m.aws;
            let bucket = m.bucket.clone();
            async move {
                let listed = aws
                    .s3
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .send()
                    .await
                    .expect("list");
                listed
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned))
                    .collect::<Vec<_>>()
            }
        };
        if crowded {
            assert!(
                arn.ends_with('*') && arn.contains("/_bakdrop/stripes/"),
                "{arn}"
            );
        } else {
            assert_eq!(
                arn,
                &format!("arn:aws:s3:::{}/Stripe/sql2008r2_full_stripe*", m.bucket),
                "restored in place"
            );
        }
        let staged = staged_keys("_bakdrop/".into()).await;
        assert!(
            staged.is_empty(),
            "crowded={crowded}: no staged copy is left once the restore is recorded: {staged:?}"
        );
    }
}

#[tokio::test]
async fn on_rds_complete_brings_the_database_online_and_refusals_change_nothing() {
    let files = [
        "sql2016_full_RestoreTimeClean.bak",
        "sql2016_log_RestoreTimeClean_1.trn",
    ];
    let m = migrate(Dialect::Rds, &files, "Clean").await;
    let (emulator, store, target) = (&m.emulator, &m.store, &m.target);
    let refused = cutover::complete(
        store,
        target,
        &CompleteRequest {
            database: "Clean".into(),
            last_backup: Some("sql2016_full_RestoreTimeClean.bak".into()),
            require_tail_log: false,
        },
        now(),
    )
    .await
    .expect_err("the full is not the last restored backup");
    assert_eq!(refused.error_type(), "NotLastBackup");
    assert_eq!(
        emulator
            .database("Clean")
            .map(|d| format!("{:?}", d.state))
            .as_deref(),
        Some("Restoring"),
        "a refused Complete leaves the database restoring"
    );
    // Complete through the complete-migration function: RDS's rds_finish_restore starts a
    // FINISH_RESTORE task; the migration is Completing until it succeeded, followed by the
    // restore worker from the message the function queued.
    let payload = json!({"database": "Clean", "last_backup": "sql2016_log_RestoreTimeClean_1.trn"});
    let followup = complete_migration::handler::Followup::queued(&m.worker.queue, Duration::ZERO);
    let revalidation = complete_migration::handler::Revalidation {
        reader: &m.validator.reader,
        config: &m.validator.config,
    };
    let answer = complete_migration::handler::handle(
        store,
        target,
        &followup,
        &revalidation,
        payload,
        now(),
    )
    .await
    .expect("completing");
    assert_eq!(answer["state"], "Completing");
    assert_eq!(
        emulator
            .database("Clean")
            .map(|d| format!("{:?}", d.state))
            .as_deref(),
        Some("Restoring"),
        "not online before the FINISH_RESTORE task succeeded"
    );
    let finish = emulator
        .rds_tasks()
        .into_iter()
        .filter(|t| t.task_type == "FINISH_RESTORE")
        .count();
    assert_eq!(finish, 1, "one FINISH_RESTORE task");
    m.drive().await;
    let migration = store
        .get_migration("Clean")
        .await
        .expect("read")
        .expect("m")
        .record;
    assert_eq!(
        migration.state,
        MigrationState::Succeeded,
        "{:?}",
        migration.reason
    );
    assert_eq!(
        emulator
            .database("Clean")
            .map(|d| format!("{:?}", d.state))
            .as_deref(),
        Some("Online")
    );
    let request = CompleteRequest {
        database: "Clean".into(),
        last_backup: Some("sql2016_log_RestoreTimeClean_1.trn".into()),
        require_tail_log: false,
    };
    // Twice is harmless.
    assert_eq!(
        cutover::complete(store, target, &request, now())
            .await
            .expect("again"),
        MigrationState::Succeeded
    );
}

/// A native recovery that outlasts the complete-migration function's follow window: the
/// function answers Completing (the recovery runs on in its Agent job), and the restore worker's
/// Finish messages follow the job until the database is online; the job is then deleted.
#[tokio::test]
async fn on_native_a_recovery_longer_than_the_follow_window_is_followed_by_the_worker_to_succeeded()
{
    let files = [
        "sql2016_full_RestoreTimeClean.bak",
        "sql2016_log_RestoreTimeClean_1.trn",
    ];
    let m = migrate(Dialect::Native, &files, "Clean").await;
    m.synchronizing("Clean").await;
    m.emulator.set_finish_duration(Duration::from_secs(90));
    let started = std::time::Instant::now();
    let answer = m
        .complete_through_function(json!({"database": "Clean"}), Duration::from_millis(400))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not held for the recovery"
    );
    assert_eq!(answer["state"], "Completing");
    let job = bakdrop_core::model::names::finish_task_name("Clean", 0);
    assert_eq!(
        m.migration("Clean").await.finishing,
        Some(bakdrop_core::model::task::TaskId::AgentJob(job.clone()))
    );
    assert_eq!(m.server_state("Clean").as_deref(), Some("Restoring"));
    assert!(
        m.emulator.job(&job).is_some_and(|j| j.running.is_some()),
        "the recovery runs in its Agent job"
    );
    m.drive().await;
    let migration = m.migration("Clean").await;
    assert_eq!(
        migration.state,
        MigrationState::Succeeded,
        "{:?}",
        migration.reason
    );
    assert_eq!(m.server_state("Clean").as_deref(), Some("Online"));
    assert!(m.emulator.job(&job).is_none(), "the job is deleted");
    assert_eq!(m.recoveries_submitted_as_jobs(), 1);
}

/// A quick native recovery ends within the follow window: the function answers Succeeded.
#[tokio::test]
async fn on_native_a_quick_recovery_completes_within_the_function() {
    let m = migrate(
        Dialect::Native,
        &["sql2016_full_RestoreTimeClean.bak"],
        "Quick",
    )
    .await;
    m.synchronizing("Quick").await;
    m.emulator.set_clock_mode(ClockMode::Wall);
    m.emulator.set_finish_duration(Duration::from_millis(200));
    let answer = m
        .complete_through_function(json!({"database": "Quick"}), Duration::from_secs(4))
        .await;
    assert_eq!(answer["state"], "Succeeded");
    assert_eq!(m.server_state("Quick").as_deref(), Some("Online"));
    assert!(m
        .emulator
        .job(&bakdrop_core::model::names::finish_task_name("Quick", 0))
        .is_none());
}

/// Complete armed in advance on a native target: the worker fires it once the named log is
/// restored, and the recovery runs as an Agent job that Finish messages follow to Succeeded
/// (never inside the worker's invocation).
#[tokio::test]
async fn on_native_an_armed_complete_reaches_succeeded_through_the_worker_with_recovery_as_a_job() {
    let m = migrate(
        Dialect::Native,
        &["sql2016_full_RestoreTimeClean.bak"],
        "Armed",
    )
    .await;
    m.synchronizing("Armed").await;
    m.emulator.set_finish_duration(Duration::from_secs(60));
    cutover::arm(
        &m.store,
        "Armed",
        "sql2016_log_RestoreTimeClean_1.trn",
        false,
        "test",
        now(),
    )
    .await
    .expect("armed");
    for summary in m
        .upload("Armed", &["sql2016_log_RestoreTimeClean_1.trn"])
        .await
    {
        assert_eq!(summary.queued, 1, "{summary:?}");
    }
    m.drive().await;
    let migration = m.migration("Armed").await;
    assert_eq!(
        migration.state,
        MigrationState::Succeeded,
        "{:?}",
        migration.reason
    );
    assert_eq!(m.server_state("Armed").as_deref(), Some("Online"));
    assert_eq!(m.recoveries_submitted_as_jobs(), 1);
    assert!(m
        .emulator
        .job(&bakdrop_core::model::names::finish_task_name("Armed", 0))
        .is_none());
}

/// The connection is lost as the armed Complete submits the recovery job, after the migration
/// became Completing: the worker's follow-up starts the job and the migration still ends
/// Succeeded (it is not left Completing with nothing to follow).
#[tokio::test]
async fn on_native_an_armed_complete_cut_off_while_starting_recovery_is_resumed_to_succeeded() {
    let m = migrate(
        Dialect::Native,
        &["sql2016_full_RestoreTimeClean.bak"],
        "Cut",
    )
    .await;
    m.synchronizing("Cut").await;
    cutover::arm(
        &m.store,
        "Cut",
        "sql2016_log_RestoreTimeClean_1.trn",
        false,
        "test",
        now(),
    )
    .await
    .expect("armed");
    m.server.cut_connection_on(FaultTiming::BeforeHandler, |r| {
        r.params.iter().any(|(_, v)| {
            matches!(v, bakdrop_tds_server::protocol::Value::NVarChar(t) if t.contains("WITH RECOVERY"))
        })
    });
    m.upload("Cut", &["sql2016_log_RestoreTimeClean_1.trn"])
        .await;
    m.drive().await;
    assert_eq!(m.server.faults_struck().len(), 1, "the submit was cut");
    let migration = m.migration("Cut").await;
    assert_eq!(
        migration.state,
        MigrationState::Succeeded,
        "{:?}",
        migration.reason
    );
    assert_eq!(m.server_state("Cut").as_deref(), Some("Online"));
    assert_eq!(
        m.recoveries_submitted_as_jobs(),
        1,
        "the cut submission never reached the server; the resumed one did"
    );
}

#[tokio::test]
async fn cancel_drops_the_half_restored_database_and_complete_failing_on_the_server_is_recorded() {
    let files = ["sql2016_full_RestoreTimeClean.bak"];
    let Migrated {
        emulator,
        store,
        target,
        ..
    } = migrate(Dialect::Native, &files, "Gone").await;
    assert!(emulator.database("Gone").is_some());
    let state = cutover::cancel(&store, &target, "Gone", now())
        .await
        .expect("cancelled");
    assert_eq!(state, MigrationState::Cancelled);
    assert!(emulator.database("Gone").is_none(), "dropped on the server");

    let Migrated {
        emulator,
        store,
        target,
        ..
    } = migrate(Dialect::Native, &files, "Broken").await;
    // Someone brought the database online behind bakdrop's back, then took it offline: RECOVERY fails.
    emulator.with_state(|s| {
        if let Some(db) = s.databases.values_mut().find(|d| d.name == "Broken") {
            db.state = bakdrop_tds_server::emulator::DatabaseState::Offline;
        }
    });
    let request = CompleteRequest {
        database: "Broken".into(),
        last_backup: None,
        require_tail_log: false,
    };
    let state = cutover::complete(&store, &target, &request, now())
        .await
        .expect("answered");
    assert_eq!(state, MigrationState::Failed);
    let migration = store
        .get_migration("Broken")
        .await
        .expect("read")
        .expect("migration")
        .record;
    let error = migration
        .reason
        .and_then(|r| r.sql_error)
        .expect("SQL Server's error kept");
    assert!(error.number > 0, "{error:?}");
}

/// Cancel (while the differential's restore runs), then Reset, then the same backups uploaded
/// again: the database is migrated again under the same name. Before Reset existed the folder
/// refused every upload after a Cancel; the stopped Agent job keeps its name on SQL Server, so
/// the same backup's job would be refused (error 14261) without the generation in task names;
/// on RDS a task of the cancelled migration (same S3 object) could pass for the new one's.
#[tokio::test]
async fn a_cancelled_migration_reset_migrates_the_same_backups_again() {
    let full = "sql2016_full_RestoreTimeClean.bak";
    let diff = "sql2016_diff_RestoreTimeClean2.bak";
    let late = "sql2016_log_RestoreTimeClean2_1.trn";
    for dialect in [Dialect::Native, Dialect::Rds] {
        let m = migrate(dialect, &[full], "Again").await;
        let first = m.synchronizing("Again").await;
        assert_eq!(first.generation, 0);
        if dialect == Dialect::Native {
            let jobs: Vec<String> = m.emulator.with_state(|s| s.jobs.keys().cloned().collect());
            assert!(
                jobs.is_empty(),
                "the full's job is deleted once restored: {jobs:?}"
            );
        }
        // The differential's restore is submitted, not finished (the server's clock stands).
        assert_eq!(m.upload("Again", &[diff]).await[0].queued, 1);
        for _ in 0..10 {
            let migration = m.store.get_migration("Again").await.expect("read");
            if migration.is_some_and(|v| v.record.in_flight.is_some_and(|f| f.task.is_some())) {
                break;
            }
            m.round().await;
        }
        let running = m
            .store
            .get_migration("Again")
            .await
            .expect("read")
            .expect("m");
        assert_eq!(
            running.record.state,
            MigrationState::Restoring,
            "[{dialect}]"
        );
        assert_eq!(
            cutover::reset(&m.store, "Again", now())
                .await
                .expect_err("refused")
                .error_type(),
            "NotCancelled",
            "[{dialect}] a live migration is not reset"
        );
        let state = cutover::cancel(&m.store, &m.target, "Again", now())
            .await
            .unwrap_or_else(|e| panic!("[{dialect}] cancel: {e:?}"));
        assert_eq!(state, MigrationState::Cancelled);
        // The server stops the restore in its own time (RDS: CANCEL_REQUESTED, then CANCELLED);
        // the worker's polls drop the database once it has stopped.
        m.drive().await;
        let cancelled = m
            .store
            .get_migration("Again")
            .await
            .expect("read")
            .expect("m");
        assert_eq!(cancelled.record.state, MigrationState::Cancelled);
        assert!(
            cancelled.record.in_flight.is_none(),
            "[{dialect}] {cancelled:?}"
        );
        assert!(
            m.emulator.database("Again").is_none(),
            "[{dialect}] dropped"
        );

        // Cancelled: uploads are refused, and the reason says what to do.
        let refused = m.upload("Again", &[late]).await;
        assert_eq!(refused[0].rejected, 1, "[{dialect}] {refused:?}");
        let files_now = m.store.list_files("Again").await.expect("files");
        let reason = files_now
            .iter()
            .find_map(|f| {
                f.record
                    .reason
                    .clone()
                    .filter(|r| r.code == "MigrationCancelled")
            })
            .expect("the refused upload is recorded with its reason");
        assert!(reason.message.contains("reset"), "{}", reason.message);

        let state = cutover::reset(&m.store, "Again", now())
            .await
            .expect("reset");
        assert_eq!(state, MigrationState::AwaitingFull);
        assert!(m.store.list_files("Again").await.expect("files").is_empty());

        // The same objects again (same ETags), then the log.
        for summary in m.upload("Again", &[full, diff]).await {
            assert_eq!(summary.queued, 1, "[{dialect}] {summary:?}");
        }
        m.drive().await;
        for summary in m.upload("Again", &[late]).await {
            assert_eq!(summary.queued, 1, "[{dialect}] {summary:?}");
        }
        m.drive().await;
        let again = m.synchronizing("Again").await;
        assert_eq!(again.generation, 1);
        assert_eq!(
            again.chain.applied.steps, 3,
            "[{dialect}] {:?}",
            again.chain
        );
        let db = m.emulator.database("Again").expect("restored again");
        assert_eq!(
            db.state,
            bakdrop_tds_server::emulator::DatabaseState::Restoring
        );
        match dialect {
            Dialect::Native => {
                let jobs: Vec<String> = m.emulator.with_state(|s| s.jobs.keys().cloned().collect());
                assert_eq!(
                    jobs.len(),
                    1,
                    "only the stopped job of the first migration: {jobs:?}"
                );
                assert!(
                    jobs[0].contains("_differential_") && !jobs[0].contains("_g1_"),
                    "{jobs:?}"
                );
            }
            Dialect::Rds => {
                let restores = m
                    .emulator
                    .rds_tasks()
                    .iter()
                    .filter(|t| t.task_type.contains("RESTORE"))
                    .count();
                assert_eq!(
                    restores, 5,
                    "two of the first migration, three of the second"
                );
                assert!(again.task_floor.is_some(), "{again:?}");
            }
        }
    }
}

/// A target that refuses bakdrop's login (a wrong password in the secret, SQL Server's 18456):
/// the job is retried later (a delayed message on the restore queue, not a redelivery that
/// would end in the dead-letter queue), and the migration's status says why meanwhile, with SQL
/// Server's number and message. Once the login is fixed, the retry restores and the reason goes.
#[tokio::test]
async fn a_login_the_target_refuses_shows_on_the_migration_until_it_is_fixed() {
    for dialect in [Dialect::Native, Dialect::Rds] {
        let m = Migrated::new(dialect).await;
        m.emulator.require_login("admin", "Another#2");
        assert_eq!(
            m.upload("Refused", &["sql2016_full_RestoreTimeClean.bak"])
                .await[0]
                .queued,
            1
        );
        let jobs = m.aws.receive_now(&m.jobs).await.expect("receive");
        assert_eq!(jobs.len(), 1);
        let event = || -> SqsEvent {
            let records: Vec<_> = jobs
                .iter()
                .map(|(id, body)| json!({"messageId": id, "body": body}))
                .collect();
            serde_json::from_value(json!({ "Records": records })).expect("sqs event")
        };
        let refused =
            restore_worker::handler::handle(&m.worker, event(), &invocation(), now()).await;
        assert!(
            refused.batch_item_failures.is_empty(),
            "[{dialect}] acknowledged, retried by a delayed message: {refused:?}"
        );
        let migration = m
            .store
            .get_migration("Refused")
            .await
            .expect("read")
            .expect("migration")
            .record;
        let reason = migration
            .reason
            .clone()
            .expect("the refusal is on the status");
        assert_eq!(reason.code, "TargetRefused", "[{dialect}] {reason:?}");
        let sql = reason.sql_error.clone().expect("SQL Server's error");
        assert_eq!(sql.number, 18456, "{sql:?}");
        assert!(
            sql.message.contains("Login failed for user 'admin'"),
            "{sql:?}"
        );
        assert!(
            migration.state.accepts_uploads(),
            "not failed: {migration:?}"
        );
        let files = m.store.list_files("Refused").await.expect("files");
        let status = bakdrop_core::report::build(
            "Refused",
            Some(&migration),
            &files.iter().map(|f| f.record.clone()).collect::<Vec<_>>(),
        );
        assert_eq!(
            status.last_error.as_ref().map(|r| r.code.as_str()),
            Some("TargetRefused")
        );
        assert!(
            status.summary.contains("retrying") && status.summary.contains("18456"),
            "{}",
            status.summary
        );

        // The secret is fixed (here: the server takes bakdrop's password); the retry restores.
        m.emulator.require_login("admin", "Secret#1");
        m.drive().await;
        let done = m.synchronizing("Refused").await;
        assert!(done.reason.is_none(), "[{dialect}] {:?}", done.reason);
    }
}
