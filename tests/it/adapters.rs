//! The AWS adapters against the local endpoint: ranged reads pinned to one object version, and
//! the status table's compare-and-set.

use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::s3::S3ObjectReader;
use bakdrop_aws::sqs::SqsJobQueue;
use bakdrop_core::job::QueueMessage;
use bakdrop_core::object::ObjectRef;
use bakdrop_core::ports::{ByteRange, JobQueue, ObjectReader, ReadError, StatusStore, StoreError};
use bakdrop_core::status::{FileRecord, FileState, MigrationRecord, MigrationState};
use bakdrop_tests::aws::{unique_name, LocalAws};

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
    let mut migration = MigrationRecord::new("Sales ]'\"DB", now());
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
        let object = ObjectRef {
            bucket: "bkt".into(),
            key: format!("Sales/{name}"),
            version_id: Some(format!("v{i}")),
            etag: None,
            size: 1,
        };
        let record = FileRecord {
            migration: "Sales".into(),
            file_id: object.file_id(),
            object,
            state: FileState::Queued,
            reason: None,
            header: None,
            claim: None,
            restore_started_at: None,
            restore_finished_at: None,
            created_at: now() + time::Duration::seconds(i as i64),
            updated_at: now(),
        };
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

#[tokio::test]
async fn a_record_the_table_refuses_is_rejected_not_retried() {
    let aws = LocalAws::get().await;
    let table = unique_name("refused");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let object = ObjectRef {
        bucket: "bkt".into(),
        key: "Sales/full.bak".into(),
        version_id: None,
        etag: Some("e".into()),
        size: 1,
    };
    let record = FileRecord {
        migration: "Sales".into(),
        // Over DynamoDB's 1,024-byte sort key (file ids are bounded; this one is forged).
        file_id: "x".repeat(1100),
        object,
        state: FileState::Queued,
        reason: None,
        header: None,
        claim: None,
        restore_started_at: None,
        restore_finished_at: None,
        created_at: now(),
        updated_at: now(),
    };
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
        migration: "Sales".into(),
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
