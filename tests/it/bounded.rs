//! Records stay bounded: a migration of 10,000 restored log backups, on the
//! status table of the local AWS endpoint (moto over HTTP, which refuses items over DynamoDB's
//! 400 KB as DynamoDB does), takes one more log — planned, restored, recorded — while its
//! migration item stays a few KB and one advance reads its few files still to plan, not its
//! 10,000 restored ones. The records are seeded through the store (no 10,000 restores).
//!
//! Measured here (debug build, moto 5.2.5, 2 shared cores), with the same seeding on the code
//! before (036747a):
//!
//! | 10,000 restored logs          | before                                   | after                 |
//! |-------------------------------|------------------------------------------|-----------------------|
//! | migration item                | 2,167,811 B: refused ("Item size has exceeded the maximum allowed size"); about 1,850 steps fit | 7,574 B (7,601 B after two more restores) |
//! | one advance (plan + submit)   | 11.9 s, 10,006 file records read (chain cut to 1,000 steps to fit) | 0.34 s, 6 records |
//! | the poll recording it         | 12.3 s, 10,005 records                   | 0.32 s, 3 records     |
//! | status report                 | 2,439,284 B, 10,002 records, 13.3 s      | 25,203 B, 101 records, 2.1 s |

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_core::model::chain::Step;
use bakdrop_core::model::header::{BackupKind, HeaderSummary};
use bakdrop_core::model::job::{QueueMessage, RestoreJob};
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::status::{
    FileRecord, FileState, MigrationRecord, MigrationState, Versioned,
};
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::ports::fakes::{MemoryObjects, MemoryQueue, MemoryTarget};
use bakdrop_core::ports::{StatusStore, StoreError, TaskStatus};
use bakdrop_core::restore::{Attempt, RestoreConfig, SourceLocation, WorkOutcome, Worker};
use bakdrop_core::tsql::Dialect;
use bakdrop_core::Lsn;
use bakdrop_test_support::aws::{unique_name, LocalAws};
use futures_util::stream::{self, TryStreamExt};
use uuid::Uuid;

/// Restored log backups the migration has before the test's one.
const RESTORED_LOGS: u32 = 10_000;

/// The migration item must stay under this, whatever the number of restores.
const ITEM_LIMIT: usize = 16 * 1024;

const DB: &str = "Longrun";

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
}

/// LSNs of log `i` (0 is the full): each log starts where the one before ended.
fn lsn(i: u32) -> Lsn {
    Lsn::from_parts(100 + i, 0, 1)
}

fn header(kind: BackupKind, i: u32) -> HeaderSummary {
    HeaderSummary {
        backup_type: kind,
        copy_only: None,
        source_database: DB.into(),
        server_name: "SRC".into(),
        software_version: "16.0.4135".into(),
        database_version: 957,
        compressed: true,
        has_checksums: true,
        tail_log: Some(false),
        first_lsn: if i == 0 { lsn(0) } else { lsn(i - 1) },
        last_lsn: lsn(i),
        checkpoint_lsn: lsn(0),
        database_backup_lsn: lsn(0),
        differential_base_lsn: None,
        differential_base_guid: None,
        backup_set_guid: Uuid::from_u128(0x5e7_0000 + u128::from(i)),
        family_guid: Uuid::from_u128(0xfa),
        recovery_fork_id: Uuid::from_u128(0xf0),
        family_count: 1,
        family_sequence: 1,
        backup_start_date: None,
        backup_finish_date: None,
        backup_size: Some(1 << 20),
        files: Vec::new(),
    }
}

fn file(i: u32, state: FileState) -> FileRecord {
    let (kind, name) = match i {
        0 => (BackupKind::Full, format!("{DB}_FULL_20270101_000000.bak")),
        _ => (BackupKind::Log, format!("{DB}_LOG_{i:06}.trn")),
    };
    let object = ObjectRef {
        bucket: "bakdrop-uploads".into(),
        key: format!("migrations/{DB}/{name}"),
        version_id: Some(format!("v{i}")),
        etag: Some(format!("etag{i}")),
        size: 1 << 20,
    };
    // Every 15 minutes up to the test's now (the new log's upload).
    let at = now() - time::Duration::minutes(15 * i64::from(RESTORED_LOGS + 1 - i));
    let restored = state == FileState::Restored;
    FileRecord {
        migration: Some(bakdrop_core::DatabaseName::parse(DB).expect("name")),
        file_id: object.file_id(),
        object,
        state,
        reason: None,
        header: Some(header(kind, i)),
        claim: None,
        restore_started_at: restored.then_some(at),
        restore_finished_at: restored.then_some(at + time::Duration::MINUTE),
        created_at: at,
        updated_at: at + time::Duration::MINUTE,
    }
}

fn step_of(f: &FileRecord) -> Step {
    let h = f.header.as_ref().expect("header");
    Step {
        kind: h.backup_type,
        files: vec![f.file_id.clone()],
        backup_set_guid: h.backup_set_guid,
        first_lsn: h.first_lsn,
        last_lsn: h.last_lsn,
    }
}

/// The store, counting the file records each call returns (what one advance reads).
struct Counting<S> {
    inner: S,
    records: AtomicUsize,
}

impl<S> Counting<S> {
    fn take(&self) -> usize {
        self.records.swap(0, Ordering::SeqCst)
    }
    fn add(&self, n: usize) {
        self.records.fetch_add(n, Ordering::SeqCst);
    }
}

impl<S: StatusStore> StatusStore for Counting<S> {
    async fn get_migration(
        &self,
        database: &str,
    ) -> Result<Option<Versioned<MigrationRecord>>, StoreError> {
        self.inner.get_migration(database).await
    }
    async fn put_migration(
        &self,
        record: &MigrationRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.inner.put_migration(record, expected).await
    }
    async fn get_file(
        &self,
        migration: &str,
        file_id: &str,
    ) -> Result<Option<Versioned<FileRecord>>, StoreError> {
        let got = self.inner.get_file(migration, file_id).await?;
        self.add(usize::from(got.is_some()));
        Ok(got)
    }
    async fn put_file(
        &self,
        record: &FileRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.inner.put_file(record, expected).await
    }
    async fn delete_file(
        &self,
        migration: &str,
        file_id: &str,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.inner.delete_file(migration, file_id, expected).await
    }
    async fn claim_name(&self, folded: &str, database: &str) -> Result<String, StoreError> {
        self.inner.claim_name(folded, database).await
    }
    async fn list_migrations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MigrationRecord>, StoreError> {
        self.inner.list_migrations(after, limit).await
    }
    async fn list_files(&self, migration: &str) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        let files = self.inner.list_files(migration).await?;
        self.add(files.len());
        Ok(files)
    }
    async fn list_files_in(
        &self,
        migration: &str,
        state: FileState,
        limit: usize,
    ) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        let files = self.inner.list_files_in(migration, state, limit).await?;
        self.add(files.len());
        Ok(files)
    }
    async fn count_files_in(&self, migration: &str, state: FileState) -> Result<usize, StoreError> {
        self.inner.count_files_in(migration, state).await
    }
    fn lists_lag(&self) -> bool {
        self.inner.lists_lag()
    }
}

/// The size of the migration item as DynamoDB counts it (attribute names and values, UTF-8).
async fn migration_item_size(aws: &LocalAws, table: &str) -> usize {
    let item = aws
        .dynamodb
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("MIG#{DB}")))
        .key("sk", AttributeValue::S("MIGRATION".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("read")
        .item
        .expect("the migration item");
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    other => panic!("unexpected attribute {other:?}"),
                }
        })
        .sum()
}

#[tokio::test]
async fn a_migration_of_ten_thousand_restored_logs_takes_one_more_with_a_bounded_record() {
    let aws = LocalAws::get().await;
    let table = unique_name("bounded");
    aws.create_status_table(&table).await.expect("table");
    let store = Counting {
        inner: DynamoStatusStore::new(aws.dynamodb.clone(), &table),
        records: AtomicUsize::new(0),
    };

    // Seeded: the full and 10,000 logs restored, their steps recorded on the chain.
    let seeding = Instant::now();
    let mut migration =
        MigrationRecord::new(bakdrop_core::DatabaseName::parse(DB).expect("name"), now());
    migration.state = MigrationState::Synchronizing;
    let restored: Vec<FileRecord> = (0..=RESTORED_LOGS)
        .map(|i| file(i, FileState::Restored))
        .collect();
    for (i, f) in restored.iter().enumerate() {
        let fork = f.header.as_ref().map(|h| h.recovery_fork_id);
        match (i, fork) {
            (0, Some(fork)) => migration.chain.apply_on_fork(&step_of(f), fork),
            _ => migration.chain.apply(&step_of(f)),
        }
    }
    store
        .put_migration(&migration, None)
        .await
        .expect("a chain of 10,001 steps is stored (DynamoDB refuses items over 400 KB)");
    stream::iter(restored.iter().map(Ok::<_, StoreError>))
        .try_for_each_concurrent(16, |f| async { store.put_file(f, None).await.map(drop) })
        .await
        .expect("file records stored");
    println!(
        "seeded {} restored files and their migration in {:.1?}",
        restored.len(),
        seeding.elapsed()
    );
    let before = migration_item_size(&aws, &table).await;
    println!("migration item with {RESTORED_LOGS} restored logs: {before} bytes");
    assert!(before < ITEM_LIMIT, "{before} bytes");

    // One more log arrives (validation recorded it Queued and queued its job).
    let new_log = file(RESTORED_LOGS + 1, FileState::Queued);
    store.put_file(&new_log, None).await.expect("queued");
    let target = MemoryTarget::new("16.0.4135.4");
    target
        .databases
        .lock()
        .expect("lock")
        .insert(DB.into(), "RESTORING".into());
    // The target reads the uploads themselves; the worker checks they are still the ones
    // validated.
    let objects = MemoryObjects::default();
    objects.put(&new_log.object.bucket, &new_log.object.key, vec![0]);
    let worker = Worker {
        store,
        queue: MemoryQueue::default(),
        target,
        objects,
        config: RestoreConfig {
            dialect: Dialect::Native,
            location: SourceLocation::Disk {
                directory: "/backups".into(),
            },
            policy: VersionPolicy::Same,
            check_version: true,
            poll_interval: Duration::from_secs(30),
            busy_retry: Duration::from_secs(120),
            settle: None,
        },
    };
    let job = QueueMessage::Restore(Box::new(RestoreJob {
        migration: bakdrop_core::DatabaseName::parse(DB).expect("name"),
        file_id: new_log.file_id.clone(),
        object: new_log.object.clone(),
        header: new_log.header.clone().expect("header"),
    }));
    let attempt = Attempt {
        message_id: "m1",
        invocation: "r1",
    };
    worker.store.take();
    let advancing = Instant::now();
    let outcome = worker.handle(&job, attempt, now()).await.expect("handled");
    let advance_time = advancing.elapsed();
    let read = worker.store.take();
    println!(
        "one advance (plan and submit the new log) with {RESTORED_LOGS} restored files: \
         {advance_time:.1?}, {read} file records read"
    );
    assert!(
        matches!(outcome, WorkOutcome::Submitted { .. }),
        "{outcome:?}"
    );
    assert!(read <= 8, "read {read} file records to plan one log");
    let submitted = worker.target.submitted();
    assert_eq!(submitted.len(), 1, "{submitted:?}");

    // The restore succeeds; the poll records it and plans again.
    worker.target.finish(&submitted[0], TaskStatus::Succeeded);
    let polls: Vec<QueueMessage> = worker
        .queue
        .drain_sent()
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert!(
        matches!(polls.as_slice(), [QueueMessage::Poll { .. }]),
        "{polls:?}"
    );
    let polling = Instant::now();
    let outcome = worker
        .handle(&polls[0], attempt, now() + time::Duration::minutes(1))
        .await
        .expect("polled");
    println!(
        "the poll that records the restore and plans again: {:.1?}, {} file records read",
        polling.elapsed(),
        worker.store.take()
    );
    assert!(
        matches!(
            outcome,
            WorkOutcome::Idle {
                state: MigrationState::Synchronizing,
                ..
            }
        ),
        "{outcome:?}"
    );
    let recorded = worker
        .store
        .get_file(DB, &new_log.file_id)
        .await
        .expect("read")
        .expect("the file");
    assert_eq!(recorded.record.state, FileState::Restored);
    let migration = worker
        .store
        .get_migration(DB)
        .await
        .expect("read")
        .expect("the migration")
        .record;
    assert_eq!(migration.chain.applied.steps, u64::from(RESTORED_LOGS) + 2);
    assert_eq!(migration.chain.last_lsn, Some(lsn(RESTORED_LOGS + 1)));
    assert_eq!(
        migration.chain.last_step().map(|s| s.files.clone()),
        Some(vec![new_log.file_id.clone()])
    );
    let after = migration_item_size(&aws, &table).await;
    println!(
        "migration item after {} restores: {after} bytes (limit asserted: {ITEM_LIMIT})",
        RESTORED_LOGS + 2
    );
    assert!(after < ITEM_LIMIT, "{after} bytes");

    // An old log uploaded again (another object, the same backup set): covered, not restored.
    let mut again = file(7, FileState::Queued);
    again.object.key = format!("migrations/{DB}/again/{DB}_LOG_000007.trn");
    again.file_id = again.object.file_id();
    worker.store.put_file(&again, None).await.expect("queued");
    let job = QueueMessage::Restore(Box::new(RestoreJob {
        migration: bakdrop_core::DatabaseName::parse(DB).expect("name"),
        file_id: again.file_id.clone(),
        object: again.object.clone(),
        header: again.header.clone().expect("header"),
    }));
    worker.handle(&job, attempt, now()).await.expect("handled");
    let skipped = worker
        .store
        .get_file(DB, &again.file_id)
        .await
        .expect("read")
        .expect("the file")
        .record;
    assert_eq!(skipped.state, FileState::Skipped, "{skipped:?}");
    assert!(
        skipped
            .reason
            .as_ref()
            .is_some_and(|r| r.message.contains("already covered")),
        "{:?}",
        skipped.reason
    );
    assert_eq!(worker.target.submitted().len(), 1, "nothing restored twice");

    // The status report: bounded (counts of every state, the latest files of each list).
    worker.store.take();
    let reading = Instant::now();
    let report = bakdrop_core::files::report(&worker.store, DB)
        .await
        .expect("read")
        .expect("a report");
    let json = serde_json::to_string(&report).expect("json");
    println!(
        "status report: {} bytes, {} file records read, {:.1?}",
        json.len(),
        worker.store.take(),
        reading.elapsed()
    );
    assert_eq!(
        report.counts.restored,
        usize::try_from(RESTORED_LOGS).expect("count") + 2
    );
    assert_eq!(report.counts.skipped, 1);
    assert_eq!(report.applied.len(), bakdrop_core::report::LISTED);
    assert_eq!(
        report.applied.last().map(|a| a.file.as_str()),
        Some(new_log.object.file_name())
    );
    assert!(
        report.summary.contains(&format!(
            "1 full, 0 differential, {} log restored",
            RESTORED_LOGS + 1
        )),
        "{}",
        report.summary
    );
    assert!(json.len() < 64 * 1024, "{} bytes", json.len());
    assert_eq!(report.actions, ["complete", "arm", "cancel"]);
}
