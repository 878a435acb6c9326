//! The local stack itself: S3 events arrive in the shape real S3 sends (the launcher bridges
//! moto's gaps), and keys decode back to what was uploaded.

use aws_lambda_events::event::s3::S3Event;
use aws_sdk_s3::primitives::ByteStream;
use bakdrop_core::object::decode_event_key;
use bakdrop_tests::aws::{unique_name, LocalAws};

#[tokio::test]
async fn s3_events_have_the_real_shape_and_keys_decode_to_the_uploaded_key() {
    let aws = LocalAws::get().await;
    let bucket = unique_name("shape");
    let events = aws
        .create_bucket_with_events(&bucket)
        .await
        .expect("bucket");
    let keys = [
        "migrations/Sales DB/full+1.bak",
        "Sales/ä ö/log (1).trn",
        "Sales/100%.bak",
        "a/b/c/d.bak",
    ];
    for key in keys {
        aws.s3
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .expect("put");
    }
    let received = aws
        .next_s3_events(&events, keys.len())
        .await
        .expect("events");
    assert_eq!(received.len(), keys.len(), "tried {} keys", keys.len());
    let mut decoded: Vec<String> = received
        .iter()
        .map(|e| {
            let event: S3Event = serde_json::from_value(e.clone()).expect("S3Event");
            let record = &event.records[0];
            assert!(
                record.principal_id.principal_id.is_some(),
                "userIdentity present"
            );
            assert!(record.s3.object.sequencer.is_some(), "sequencer present");
            assert_eq!(record.event_name.as_deref(), Some("ObjectCreated:Put"));
            decode_event_key(record.s3.object.key.as_deref().unwrap_or_default())
        })
        .collect();
    decoded.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(decoded, expected);
}
