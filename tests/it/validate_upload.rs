//! validate-upload end to end: objects put into the local S3, events through the real
//! notification path, the handler with the real S3, DynamoDB and SQS adapters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::s3::S3ObjectReader;
use bakdrop_aws::sqs::SqsJobQueue;
use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::status::FileState;
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::ports::{ByteRange, ObjectReader, ReadError, StatusStore};
use bakdrop_core::validate::{ValidateConfig, Validator};
use bakdrop_test_support::aws::{LocalAws, StackResources};
use serde_json::Value;
use validate_upload::handler;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/bak/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture")
}

/// Counts the bytes the S3 reader hands out.
#[derive(Debug, Clone)]
struct Counting {
    inner: S3ObjectReader,
    bytes: Arc<AtomicU64>,
}

impl ObjectReader for Counting {
    async fn read(&self, object: &ObjectRef, range: ByteRange) -> Result<Vec<u8>, ReadError> {
        let bytes = self.inner.read(object, range).await?;
        self.bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(bytes)
    }

    async fn check_current(&self, object: &ObjectRef) -> Result<(), ReadError> {
        self.inner.check_current(object).await
    }
}

struct Stack {
    aws: LocalAws,
    bucket: String,
    events: String,
    jobs: String,
    store: DynamoStatusStore,
    validator: Validator<Counting, DynamoStatusStore, SqsJobQueue>,
    bytes: Arc<AtomicU64>,
}

async fn stack(target: &str) -> Stack {
    let aws = LocalAws::get().await;
    let StackResources {
        bucket,
        events,
        table,
        restore_queue: jobs,
    } = aws.create_stack().await.expect("stack");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let bytes = Arc::new(AtomicU64::new(0));
    let validator = Validator {
        reader: Counting {
            inner: S3ObjectReader::new(aws.s3.clone()),
            bytes: bytes.clone(),
        },
        store: store.clone(),
        queue: SqsJobQueue::new(aws.sqs.clone(), &jobs),
        config: ValidateConfig {
            arm_by_upload: false,
            target: Some(target.parse().expect("release")),
            policy: VersionPolicy::Same,
            location: bakdrop_core::tsql::source::SourceLocation::rds(None),
        },
    };
    Stack {
        aws,
        bucket,
        events,
        jobs,
        store,
        validator,
        bytes,
    }
}

impl Stack {
    async fn upload(&self, key: &str, body: Vec<u8>) -> Value {
        self.aws
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("put");
        let mut events = self
            .aws
            .next_s3_events(&self.events, 1)
            .await
            .expect("event");
        events.pop().expect("one event")
    }

    async fn handle(&self, event: Value, request_id: &str) -> handler::Summary {
        handler::handle(
            &self.validator,
            event,
            request_id,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .expect("handled")
    }

    async fn jobs(&self, expect: usize) -> Vec<QueueMessage> {
        self.aws
            .receive(&self.jobs, expect + 1, Duration::from_secs(2))
            .await
            .expect("received")
            .iter()
            .map(|b| QueueMessage::from_json(b).expect("job parses"))
            .collect()
    }
}

#[tokio::test]
async fn an_uploaded_full_backup_is_recorded_and_queued_exactly_once_however_often_its_event_arrives(
) {
    let s = stack("2016").await;
    let event = s
        .upload(
            "landing/Clean DB/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
        )
        .await;
    println!("delivering the same S3 event 3 times");
    let first = s.handle(event.clone(), "req-1").await;
    assert_eq!(first.queued, 1, "{first:?}");
    for attempt in ["req-2", "req-3"] {
        let again = s.handle(event.clone(), attempt).await;
        assert_eq!((again.queued, again.duplicates), (0, 1), "{again:?}");
    }
    let files = s.store.list_files("Clean DB").await.expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].record.state, FileState::Queued);
    let migration = s
        .store
        .get_migration("Clean DB")
        .await
        .expect("read")
        .expect("migration");
    assert_eq!(
        migration.record.source_database.as_deref(),
        Some("RestoreTimeClean")
    );
    let jobs = s.jobs(1).await;
    assert_eq!(jobs.len(), 1, "one job for three deliveries");
    match &jobs[0] {
        QueueMessage::Restore(job) => {
            assert_eq!(job.object.key, "landing/Clean DB/full.bak");
            assert_eq!(job.header.first_lsn.to_string(), "39000000048800071");
            assert_eq!(
                job.header.backup_set_guid.to_string(),
                "c6c44151-8a2c-4c6c-9bf5-2e02090c8ebc"
            );
        }
        other => panic!("expected a restore job, got {other:?}"),
    }
}

#[tokio::test]
async fn rejected_uploads_are_recorded_with_their_reason_and_never_queued() {
    let s = stack("2016").await;
    let cases = [
        (
            "Clean/notes.bak",
            b"hello, not a backup".repeat(50),
            "NotABackup",
        ),
        (
            "Old/full.bak",
            fixture("sql2008r2_full_singlerestore.bak"),
            "VersionNotSame",
        ),
        (
            "tempdb/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
            "InvalidKey",
        ),
    ];
    for (key, body, code) in cases {
        let event = s.upload(key, body).await;
        let summary = s.handle(event, "r").await;
        assert_eq!(summary.rejected, 1, "{key}: {summary:?}");
        let reason = summary.results[0].reason.clone().unwrap_or_default();
        assert!(reason.starts_with(code), "{key}: {reason}");
    }
    let recorded = s.store.list_files("Clean").await.expect("files");
    assert_eq!(recorded[0].record.state, FileState::Rejected);
    assert!(s.jobs(0).await.is_empty());
}

#[tokio::test]
async fn a_gibibyte_object_is_validated_from_its_head_and_tail_only() {
    let s = stack("2016").await;
    let full = fixture("sql2016_full_RestoreTimeClean.bak");
    let tail_len = 64 << 10;
    let head_part = {
        let mut part = full[..full.len() - tail_len].to_vec();
        part.resize(8 << 20, 0);
        part
    };
    let tail_part = full[full.len() - tail_len..].to_vec();
    let filler_key = "filler/zeros";
    let filler_len: u64 = 128 << 20;
    s.aws
        .s3
        .put_object()
        .bucket(&s.bucket)
        .key(filler_key)
        .body(ByteStream::from(vec![0u8; filler_len as usize]))
        .send()
        .await
        .expect("filler");
    let key = "Big/full.bak";
    let upload = s
        .aws
        .s3
        .create_multipart_upload()
        .bucket(&s.bucket)
        .key(key)
        .send()
        .await
        .expect("multipart");
    let upload_id = upload.upload_id().expect("upload id").to_owned();
    let mut parts = Vec::new();
    let first = s
        .aws
        .s3
        .upload_part()
        .bucket(&s.bucket)
        .key(key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(ByteStream::from(head_part.clone()))
        .send()
        .await
        .expect("part 1");
    parts.push(
        CompletedPart::builder()
            .part_number(1)
            .set_e_tag(first.e_tag().map(str::to_owned))
            .build(),
    );
    let copies = 8;
    for n in 2..2 + copies {
        let copied = s
            .aws
            .s3
            .upload_part_copy()
            .bucket(&s.bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(n)
            .copy_source(format!("{}/{filler_key}", s.bucket))
            .send()
            .await
            .expect("copy part");
        let etag = copied
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned);
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(etag)
                .build(),
        );
    }
    let last = s
        .aws
        .s3
        .upload_part()
        .bucket(&s.bucket)
        .key(key)
        .upload_id(&upload_id)
        .part_number(2 + copies)
        .body(ByteStream::from(tail_part))
        .send()
        .await
        .expect("last part");
    parts.push(
        CompletedPart::builder()
            .part_number(2 + copies)
            .set_e_tag(last.e_tag().map(str::to_owned))
            .build(),
    );
    s.aws
        .s3
        .complete_multipart_upload()
        .bucket(&s.bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("complete");
    let size = (8u64 << 20) + u64::from(copies as u32) * filler_len + tail_len as u64;
    let mut events = s.aws.next_s3_events(&s.events, 2).await.expect("events");
    let event = events
        .drain(..)
        .find(|e| e["Records"][0]["s3"]["object"]["key"] == "Big/full.bak")
        .expect("event of the big object");
    assert_eq!(
        event["Records"][0]["s3"]["object"]["size"].as_u64(),
        Some(size)
    );
    assert!(size >= 1 << 30);
    let summary = s.handle(event, "big").await;
    assert_eq!(summary.queued, 1, "{summary:?}");
    let read = s.bytes.load(Ordering::SeqCst);
    println!("object of {size} bytes validated reading {read} bytes");
    assert_eq!(
        read,
        (bakdrop_core::validate::FIRST_HEAD + bakdrop_core::backup::TAIL_LIMIT) as u64
    );
}
