//! The local stack itself: S3 events arrive in the shape real S3 sends (the launcher bridges
//! moto's gaps), keys decode back to what was uploaded the way our handler decodes them, and
//! ranged GETs return the bytes validation reads.

use std::time::Duration;

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use aws_sdk_s3::primitives::ByteStream;
use bakdrop_core::model::object::decode_event_key;
use bakdrop_test_support::aws::{unique_name, LocalAws};

const WAIT: Duration = Duration::from_secs(20);

/// Puts `keys` (one byte each) into a new bucket and returns the records of their events.
async fn upload_and_receive(aws: &LocalAws, keys: &[&str]) -> (String, Vec<S3EventRecord>) {
    let bucket = unique_name("shape");
    let queue = aws
        .create_bucket_with_queue_notification(&bucket, &unique_name("shape-events"))
        .await
        .expect("bucket with notification");
    for key in keys {
        aws.s3
            .put_object()
            .bucket(&bucket)
            .key(*key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .expect("put");
    }
    let events: Vec<S3Event> = aws
        .receive_s3_events(&queue, keys.len(), WAIT)
        .await
        .expect("S3 events that deserialize as aws_lambda_events' S3Event");
    let records: Vec<S3EventRecord> = events.into_iter().flat_map(|e| e.records).collect();
    assert_eq!(records.len(), keys.len(), "one record per put of {keys:?}");
    (bucket, records)
}

fn raw_key(record: &S3EventRecord) -> &str {
    record.s3.object.key.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn s3_events_deserialize_as_lambda_events_with_every_field_real_s3_sends() {
    let aws = LocalAws::get().await;
    let (bucket, records) = upload_and_receive(&aws, &["Sales/full.bak"]).await;
    let record = &records[0];
    assert_eq!(record.event_source.as_deref(), Some("aws:s3"));
    assert_eq!(record.event_name.as_deref(), Some("ObjectCreated:Put"));
    assert_eq!(record.aws_region.as_deref(), Some("us-east-1"));
    assert!(
        record
            .principal_id
            .principal_id
            .as_deref()
            .is_some_and(|p| p.starts_with("AWS:")),
        "userIdentity.principalId: {:?}",
        record.principal_id
    );
    assert_eq!(
        record.request_parameters.source_ip_address.as_deref(),
        Some("127.0.0.1")
    );
    let request_id = &record.response_elements["x-amz-request-id"];
    assert_eq!(request_id.len(), 16, "{request_id}");
    assert!(!record.response_elements["x-amz-id-2"].is_empty());
    assert_eq!(record.s3.bucket.name.as_deref(), Some(bucket.as_str()));
    assert_eq!(
        record.s3.bucket.arn.as_deref(),
        Some(format!("arn:aws:s3:::{bucket}").as_str())
    );
    assert_eq!(record.s3.object.size, Some(1));
    let sequencer = record.s3.object.sequencer.as_deref().unwrap_or_default();
    assert!(
        !sequencer.is_empty() && sequencer.chars().all(|c| c.is_ascii_hexdigit()),
        "sequencer {sequencer:?}"
    );
    assert_eq!(record.s3.object.version_id, None, "unversioned bucket");
}

#[tokio::test]
async fn event_keys_are_form_encoded_with_slashes_kept_as_real_s3_writes_them() {
    let aws = LocalAws::get().await;
    let (_, records) =
        upload_and_receive(&aws, &["migrations/Sales DB/full+1.bak", "Sales/ä.bak"]).await;
    let mut raw: Vec<&str> = records.iter().map(raw_key).collect();
    raw.sort_unstable();
    // AWS: "red flower.jpg" becomes "red+flower.jpg"; `+` itself and non-ASCII UTF-8 bytes
    // are percent-encoded; `/` is not (moto alone writes `%2F`).
    assert_eq!(
        raw,
        ["Sales/%C3%A4.bak", "migrations/Sales+DB/full%2B1.bak"]
    );
}

#[tokio::test]
async fn event_keys_decoded_like_the_handler_does_are_the_uploaded_keys() {
    let aws = LocalAws::get().await;
    let keys = [
        "migrations/Sales DB/full+1.bak",
        "Sales/ä.bak",
        "Sales/ä ö/log (1).trn",
        "Sales/100%.bak",
        "Sales/a=b;c:d,e~f*g'h!.bak",
        "a/b/c/d.bak",
    ];
    let (_, records) = upload_and_receive(&aws, &keys).await;
    let mut decoded: Vec<String> = records
        .iter()
        .map(|r| decode_event_key(raw_key(r)))
        .collect();
    decoded.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(decoded, expected);
}

#[tokio::test]
async fn sequencers_of_one_key_grow_with_each_write() {
    let aws = LocalAws::get().await;
    let (_, records) = upload_and_receive(&aws, &["Sales/log.trn", "Sales/log.trn"]).await;
    let sequencers: Vec<&str> = records
        .iter()
        .map(|r| r.s3.object.sequencer.as_deref().unwrap_or_default())
        .collect();
    // S3's rule: compare as strings after right-padding the shorter with zeros.
    let width = sequencers.iter().map(|s| s.len()).max().unwrap_or(0);
    let padded: Vec<String> = sequencers.iter().map(|s| format!("{s:0<width$}")).collect();
    assert!(padded[0] < padded[1], "{sequencers:?}");
}

#[tokio::test]
async fn versioned_buckets_send_the_version_id_of_the_write() {
    let aws = LocalAws::get().await;
    let bucket = unique_name("versioned");
    let queue = aws
        .create_bucket_with_queue_notification(&bucket, &unique_name("versioned-events"))
        .await
        .expect("bucket with notification");
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
    let put = aws
        .s3
        .put_object()
        .bucket(&bucket)
        .key("Sales/full.bak")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("put");
    let events = aws
        .receive_s3_events(&queue, 1, WAIT)
        .await
        .expect("events");
    let record = &events[0].records[0];
    assert!(put.version_id().is_some());
    assert_eq!(record.s3.object.version_id.as_deref(), put.version_id());
}

#[tokio::test]
async fn ranged_gets_return_the_head_and_the_tail_of_an_object() {
    let aws = LocalAws::get().await;
    let bucket = unique_name("ranges");
    aws.s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket");
    // No two 4 KiB windows alike, so an off-by-one range cannot pass.
    let body: Vec<u8> = (0u32..300_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let len = body.len();
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key("Sales/full.bak")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put");
    let get = |range: &'static str| {
        let aws = aws.clone();
        let bucket = bucket.clone();
        async move {
            aws.s3
                .get_object()
                .bucket(&bucket)
                .key("Sales/full.bak")
                .range(range)
                .send()
                .await
        }
    };

    let head = get("bytes=0-4095").await.expect("head range");
    assert_eq!(
        head.content_range(),
        Some(format!("bytes 0-4095/{len}").as_str())
    );
    let head = head.body.collect().await.expect("head body").into_bytes();
    assert_eq!(&head[..], &body[..4096]);

    let tail = get("bytes=-65536").await.expect("suffix range");
    assert_eq!(
        tail.content_range(),
        Some(format!("bytes {}-{}/{len}", len - 65536, len - 1).as_str())
    );
    let tail = tail.body.collect().await.expect("tail body").into_bytes();
    assert_eq!(&tail[..], &body[len - 65536..]);

    let beyond = get("bytes=400000-").await.expect_err("unsatisfiable range");
    assert_eq!(
        beyond.raw_response().map(|r| r.status().as_u16()),
        Some(416)
    );
}
