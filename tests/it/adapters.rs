//! The AWS adapters against the local endpoint: ranged reads pinned to one object version, and
//! the status table's compare-and-set.

use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::s3::S3ObjectReader;
use bakdrop_aws::sqs::SqsJobQueue;
use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::status::{FileRecord, FileState, MigrationRecord, MigrationState};
use bakdrop_core::ports::{ByteRange, JobQueue, ObjectReader, ReadError, StatusStore, StoreError};
use bakdrop_test_support::aws::{unique_name, LocalAws};

async fn put(aws: &LocalAws, bucket: &str, key: &str, body: Vec<u8>) -> ObjectRef {
    aws.put_object(bucket, key, body).await.expect("put")
}

#[tokio::test]
async fn s3_reader_returns_exactly_the_head_and_tail_ranges() {
    let aws = LocalAws::get().await;
    let bucket = unique_name("ranges");
    aws.s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let object = put(&aws, &bucket, "Db/x.bak", body.clone()).await;
    let reader = S3ObjectReader::new(aws.s3.clone());
    let head = reader
        .read(&object, ByteRange::Head(4096))
        .await
        .expect("head");
    assert_eq!(head, body[..4096]);
    let tail = reader
        .read(&object, ByteRange::Tail(65_536))
        .await
        .expect("tail");
    assert_eq!(tail, body[body.len() - 65_536..]);
    let all = reader
        .read(&object, ByteRange::Head(1 << 20))
        .await
        .expect("short object");
    assert_eq!(all.len(), body.len());
}

#[tokio::test]
async fn s3_reader_tells_a_deleted_object_from_a_replaced_one() {
    let aws = LocalAws::get().await;
    let bucket = unique_name("gone");
    aws.s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    let reader = S3ObjectReader::new(aws.s3.clone());
    let old = put(&aws, &bucket, "Db/x.bak", vec![1; 1000]).await;
    put(&aws, &bucket, "Db/x.bak", vec![2; 1000]).await;
    let replaced = reader
        .read(&old, ByteRange::Head(10))
        .await
        .expect_err("replaced");
    assert!(matches!(replaced, ReadError::Changed(_)), "{replaced:?}");
    assert!(!replaced.is_transient());
    aws.s3
        .delete_object()
        .bucket(&bucket)
        .key("Db/x.bak")
        .send()
        .await
        .expect("delete");
    let gone = reader
        .read(&old, ByteRange::Head(10))
        .await
        .expect_err("gone");
    assert!(matches!(gone, ReadError::NotFound(_)), "{gone:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:1")
        .load()
        .await;
    let reader = S3ObjectReader::new(bakdrop_aws::config::s3_client(&sdk));
    let object = ObjectRef {
        bucket: "b".into(),
        key: "k".into(),
        version_id: None,
        etag: None,
        size: 10,
    };
    let err = reader
        .read(&object, ByteRange::Head(10))
        .await
        .expect_err("no endpoint");
    assert!(err.is_transient(), "{err:?}");
    let store = DynamoStatusStore::new(aws_sdk_dynamodb::Client::new(&sdk), "t");
    let err = store.get_migration("x").await.expect_err("no endpoint");
    assert!(err.is_transient(), "{err:?}");
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
}

#[tokio::test]
async fn the_status_table_compare_and_set_refuses_stale_writers() {
    let aws = LocalAws::get().await;
    let table = unique_name("status");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let mut migration = MigrationRecord::new(
        bakdrop_core::DatabaseName::parse("Sales ]'\"DB").expect("name"),
        now(),
    );
    assert_eq!(
        store
            .put_migration(&migration, None)
            .await
            .expect("created"),
        1
    );
    let again = store
        .put_migration(&migration, None)
        .await
        .expect_err("exists");
    assert!(matches!(again, StoreError::Conflict { .. }));
    migration.state = MigrationState::Restoring;
    assert_eq!(
        store
            .put_migration(&migration, Some(1))
            .await
            .expect("replaced"),
        2
    );
    let stale = store
        .put_migration(&migration, Some(1))
        .await
        .expect_err("stale");
    assert!(matches!(stale, StoreError::Conflict { expected: Some(1) }));
    let read = store
        .get_migration("Sales ]'\"DB")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (read.version, read.record.state),
        (2, MigrationState::Restoring)
    );
    assert!(store.get_migration("Other").await.expect("read").is_none());
    let listed = store.list_migrations(None, 10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(store
        .list_migrations(Some("Sales ]'\"DB"), 10)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn file_records_are_listed_per_migration_oldest_first() {
    let aws = LocalAws::get().await;
    let table = unique_name("files");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    for (i, name) in ["b.trn", "a.bak"].iter().enumerate() {
        let mut record = queued_file("Sales", name);
        record.object.version_id = Some(format!("v{i}"));
        record.object.etag = None;
        record.file_id = record.object.file_id();
        record.created_at = now() + time::Duration::seconds(i as i64);
        store.put_file(&record, None).await.expect("stored");
    }
    let files = store.list_files("Sales").await.expect("listed");
    let names: Vec<_> = files
        .iter()
        .map(|f| f.record.object.file_name().to_owned())
        .collect();
    assert_eq!(names, vec!["b.trn", "a.bak"]);
    assert!(store.list_files("Other").await.expect("listed").is_empty());
}

fn queued_file(migration: &str, name: &str) -> FileRecord {
    let object = ObjectRef {
        bucket: "bkt".into(),
        key: format!("{migration}/{name}"),
        version_id: None,
        etag: Some("e".into()),
        size: 1,
    };
    FileRecord {
        migration: Some(bakdrop_core::DatabaseName::parse(migration).expect("name")),
        file_id: object.file_id(),
        object,
        state: FileState::Queued,
        reason: None,
        header: None,
        claim: None,
        restore_started_at: None,
        restore_finished_at: None,
        created_at: now(),
        updated_at: now(),
    }
}

/// Through the table's migrations-by-name index: every migration once, in name order (bytes of
/// UTF-8, as the in-memory store and the CLI's state file order them), page after page; file
/// items are not migrations.
#[tokio::test]
async fn migrations_are_listed_page_by_page_in_name_order() {
    let aws = LocalAws::get().await;
    let table = unique_name("list");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let mut names: Vec<String> = (0..23).map(|i| format!("Db{i:02}")).collect();
    names.extend(["Zürich", "a lower", "Sales ]'\"DB", "日本"].map(String::from));
    for name in &names {
        store
            .put_migration(
                &MigrationRecord::new(
                    bakdrop_core::DatabaseName::parse(name).expect("name"),
                    now(),
                ),
                None,
            )
            .await
            .expect("stored");
        for file in ["full.bak", "log1.trn", "log2.trn"] {
            store
                .put_file(&queued_file(name, file), None)
                .await
                .expect("stored");
        }
    }
    names.sort();
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_migrations(after.as_deref(), 10)
            .await
            .expect("page");
        pages += 1;
        assert!(page.len() <= 10, "{}", page.len());
        let Some(last) = page.last() else { break };
        after = Some(last.database.to_string());
        listed.extend(page.into_iter().map(|m| m.database.to_string()));
    }
    assert_eq!(listed, names);
    assert_eq!(pages, 4, "27 migrations in pages of 10, then an empty page");
    let from_db10 = store.list_migrations(Some("Db09"), 2).await.expect("page");
    let from_db10: Vec<_> = from_db10.into_iter().map(|m| m.database).collect();
    assert_eq!(from_db10, ["Db10", "Db11"]);
}

#[tokio::test]
async fn a_file_record_is_deleted_only_at_the_version_read() {
    let aws = LocalAws::get().await;
    let table = unique_name("delete");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let mut file = queued_file("Sales", "full.bak");
    store.put_file(&file, None).await.expect("stored");
    file.state = FileState::Restored;
    store.put_file(&file, Some(1)).await.expect("replaced");
    let stale = store
        .delete_file("Sales", &file.file_id, 1)
        .await
        .expect_err("changed since version 1");
    assert!(
        matches!(stale, StoreError::Conflict { expected: Some(1) }),
        "{stale:?}"
    );
    assert!(store
        .get_file("Sales", &file.file_id)
        .await
        .expect("read")
        .is_some());
    store
        .delete_file("Sales", &file.file_id, 2)
        .await
        .expect("deleted");
    assert!(store
        .get_file("Sales", &file.file_id)
        .await
        .expect("read")
        .is_none());
    let gone = store
        .delete_file("Sales", &file.file_id, 2)
        .await
        .expect_err("already gone");
    assert!(matches!(gone, StoreError::Conflict { .. }), "{gone:?}");
}

#[tokio::test]
async fn a_record_the_table_refuses_is_rejected_not_retried() {
    let aws = LocalAws::get().await;
    let table = unique_name("refused");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let mut record = queued_file("Sales", "full.bak");
    // Over DynamoDB's 1,024-byte sort key (file ids are bounded; this one is forged).
    record.file_id = "x".repeat(1100);
    let err = store.put_file(&record, None).await.expect_err("refused");
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn the_sqs_queue_carries_versioned_json_with_its_delay() {
    let aws = LocalAws::get().await;
    let url = aws.create_queue(&unique_name("jobs")).await.expect("queue");
    let queue = SqsJobQueue::new(aws.sqs.clone(), &url);
    let message = QueueMessage::Advance {
        migration: bakdrop_core::DatabaseName::parse("Sales").expect("name"),
    };
    queue
        .send(&message, std::time::Duration::ZERO)
        .await
        .expect("sent");
    let bodies = aws
        .receive(&url, 1, std::time::Duration::from_secs(5))
        .await
        .expect("received");
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        QueueMessage::from_json(&bodies[0]).expect("parses"),
        message
    );
    assert!(bodies[0].contains("\"schema\":1"), "{}", bodies[0]);
}

/// A database name is claimed once, by the first migration that takes it; the claim of another
/// folder folding to the same name answers the holder, however often and concurrently asked.
#[tokio::test]
async fn the_status_table_gives_a_folded_database_name_to_one_migration() {
    let aws = LocalAws::get().await;
    let table = unique_name("names");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let folded = bakdrop_core::model::names::fold("Sales");
    let (a, b) = tokio::join!(
        store.claim_name(&folded, "Sales"),
        store.claim_name(&folded, "SALES")
    );
    let (a, b) = (a.expect("claim"), b.expect("claim"));
    assert_eq!(a, b, "one holder");
    let holder = a;
    assert!(holder == "Sales" || holder == "SALES", "{holder}");
    for name in ["Sales", "SALES", "sales"] {
        assert_eq!(
            store.claim_name(&folded, name).await.expect("claim"),
            holder
        );
    }
    assert_eq!(
        store
            .claim_name(&bakdrop_core::model::names::fold("Other"), "Other")
            .await
            .expect("claim"),
        "Other"
    );
}

/// What a target reads is the key's latest version: `check_current` tells whether that is still
/// the version validated, in a versioned bucket (version id) and an unversioned one (ETag).
#[tokio::test]
async fn s3_reader_tells_whether_a_key_still_holds_the_validated_version() {
    let aws = LocalAws::get().await;
    let reader = S3ObjectReader::new(aws.s3.clone());
    for versioned in [false, true] {
        let bucket = unique_name("current");
        aws.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("bucket");
        if versioned {
            aws.s3
                .put_bucket_versioning()
                .bucket(&bucket)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("versioning");
        }
        let put_version = |body: Vec<u8>| {
            let aws = &aws;
            let bucket = &bucket;
            async move {
                let out = aws
                    .s3
                    .put_object()
                    .bucket(bucket)
                    .key("Db/x.bak")
                    .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
                    .send()
                    .await
                    .expect("put");
                ObjectRef {
                    bucket: bucket.clone(),
                    key: "Db/x.bak".into(),
                    version_id: out.version_id().map(str::to_owned),
                    etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
                    size: body.len() as u64,
                }
            }
        };
        let first = put_version(vec![1; 1000]).await;
        assert_eq!(first.version_id.is_some(), versioned);
        reader.check_current(&first).await.expect("current");
        let second = put_version(vec![2; 1000]).await;
        let replaced = reader.check_current(&first).await.expect_err("replaced");
        assert!(matches!(replaced, ReadError::Changed(_)), "{replaced:?}");
        reader
            .check_current(&second)
            .await
            .expect("the new one is current");
        aws.s3
            .delete_object()
            .bucket(&bucket)
            .key("Db/x.bak")
            .send()
            .await
            .expect("delete");
        let gone = reader.check_current(&second).await.expect_err("deleted");
        assert!(
            matches!(gone, ReadError::NotFound(_)),
            "versioned={versioned}: {gone:?}"
        );
    }
}

/// Through the table's files-by-state index: the files of one migration in one state, the
/// latest first, at most the limit, each record as stored now; a file that moves leaves its
/// old state's list; counts read keys only.
#[tokio::test]
async fn files_are_found_by_state_latest_first() {
    let aws = LocalAws::get().await;
    let table = unique_name("bystate");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let mut waiting = Vec::new();
    for i in 0..5i64 {
        let mut record = queued_file("Sales", &format!("log{i}.trn"));
        record.state = FileState::Waiting;
        record.updated_at = now() + time::Duration::seconds(i);
        store.put_file(&record, None).await.expect("stored");
        waiting.push(record);
    }
    let mut restored = queued_file("Sales", "full.bak");
    restored.state = FileState::Restored;
    store.put_file(&restored, None).await.expect("stored");
    let mut elsewhere = queued_file("Other", "log0.trn");
    elsewhere.state = FileState::Waiting;
    store.put_file(&elsewhere, None).await.expect("stored");

    let names = |files: &[bakdrop_core::model::status::Versioned<FileRecord>]| -> Vec<String> {
        files
            .iter()
            .map(|f| f.record.object.file_name().to_owned())
            .collect()
    };
    let latest = store
        .list_files_in("Sales", FileState::Waiting, 2)
        .await
        .expect("listed");
    assert_eq!(names(&latest), ["log4.trn", "log3.trn"]);
    let all = store
        .list_files_in("Sales", FileState::Waiting, usize::MAX)
        .await
        .expect("listed");
    assert_eq!(all.len(), 5);
    assert!(all
        .iter()
        .all(|f| f.version == 1 && f.record.header.is_none()));
    assert_eq!(
        store
            .count_files_in("Sales", FileState::Waiting)
            .await
            .expect("counted"),
        5
    );
    assert_eq!(
        store
            .count_files_in("Sales", FileState::Queued)
            .await
            .expect("counted"),
        0
    );

    // log4 is restored: it leaves the Waiting list and joins the Restored one.
    let mut moved = waiting.pop().expect("log4");
    moved.state = FileState::Restored;
    moved.updated_at = now() + time::Duration::minutes(1);
    store.put_file(&moved, Some(1)).await.expect("moved");
    let still = store
        .list_files_in("Sales", FileState::Waiting, usize::MAX)
        .await
        .expect("listed");
    assert_eq!(
        names(&still),
        ["log3.trn", "log2.trn", "log1.trn", "log0.trn"]
    );
    let done = store
        .list_files_in("Sales", FileState::Restored, 10)
        .await
        .expect("listed");
    assert_eq!(names(&done), ["log4.trn", "full.bak"]);
    assert_eq!(done[0].version, 2);
    // Deleted (a reset): gone from its list.
    store
        .delete_file("Sales", &done[1].record.file_id, 1)
        .await
        .expect("deleted");
    assert_eq!(
        store
            .count_files_in("Sales", FileState::Restored)
            .await
            .expect("counted"),
        1
    );
    // More than one BatchGetItem (100 keys) and more than one page.
    for i in 0..130i64 {
        let mut record = queued_file("Many", &format!("log{i:03}.trn"));
        record.updated_at = now() + time::Duration::seconds(i);
        store.put_file(&record, None).await.expect("stored");
    }
    let many = store
        .list_files_in("Many", FileState::Queued, usize::MAX)
        .await
        .expect("listed");
    assert_eq!(many.len(), 130);
    assert_eq!(many[0].record.object.file_name(), "log129.trn");
}

/// Records written before the files-by-state index: the migration (every step in its chain,
/// no `files_indexed`) still reads, compacted, and its files are read in full, so that the
/// worker still finds a file the index does not list.
#[tokio::test]
async fn a_migration_recorded_before_the_index_still_finds_its_files() {
    let aws = LocalAws::get().await;
    let table = unique_name("legacy");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let guid = uuid::Uuid::from_u128(7);
    let migration = serde_json::json!({
        "database": "Old",
        "state": "Synchronizing",
        "chain": {
            "full_backup_set_guid": guid,
            "last_lsn": "1000",
            "steps": [{"kind": "full", "files": ["bkt/Old/full.bak#etag=e"],
                       "backup_set_guid": guid, "first_lsn": "900", "last_lsn": "1000"}],
        },
        "created_at": "2027-01-15T08:00:00Z",
        "updated_at": "2027-01-15T08:00:00Z",
    });
    let mut waiting = queued_file("Old", "log1.trn");
    waiting.state = FileState::Waiting;
    // The items as the adapter wrote them before (no gsi2pk / gsi2sk).
    for (sk, kind, state, record) in [
        (
            "MIGRATION".to_owned(),
            "migration",
            "Synchronizing",
            migration.to_string(),
        ),
        (
            format!("FILE#{}", waiting.file_id),
            "file",
            "Waiting",
            serde_json::to_string(&waiting).expect("json"),
        ),
    ] {
        aws.dynamodb
            .put_item()
            .table_name(&table)
            .item(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S("MIG#Old".into()),
            )
            .item("sk", aws_sdk_dynamodb::types::AttributeValue::S(sk))
            .item(
                "kind",
                aws_sdk_dynamodb::types::AttributeValue::S(kind.into()),
            )
            .item(
                "version",
                aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
            )
            .item(
                "state",
                aws_sdk_dynamodb::types::AttributeValue::S(state.into()),
            )
            .item(
                "updated_at",
                aws_sdk_dynamodb::types::AttributeValue::S("2027-01-15T08:00:00Z".into()),
            )
            .item("record", aws_sdk_dynamodb::types::AttributeValue::S(record))
            .send()
            .await
            .expect("stored");
    }
    let old = store
        .get_migration("Old")
        .await
        .expect("read")
        .expect("there");
    assert!(!old.record.files_indexed);
    assert_eq!(old.record.chain.applied.steps, 1);
    assert_eq!(old.record.chain.recent.len(), 1);
    let in_play = bakdrop_core::files::in_play(&store, "Old", Some(&old.record))
        .await
        .expect("listed");
    assert_eq!(
        in_play.len(),
        1,
        "the index does not list it; the full read does"
    );
    assert!(store
        .list_files_in("Old", FileState::Waiting, 10)
        .await
        .expect("listed")
        .is_empty());
    // Written back, the migration is in today's shape.
    store
        .put_migration(&old.record, Some(1))
        .await
        .expect("written");
    let report = bakdrop_core::files::report(&store, "Old")
        .await
        .expect("read")
        .expect("report");
    assert_eq!(report.counts.waiting, 1);
}
