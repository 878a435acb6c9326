//! Removes what a benchmark created on the local endpoint (buckets with their objects, queues,
//! tables), so that a run leaves the shared endpoint as it found it. Failures are reported, not
//! fatal: the figures are still printed.

use bakdrop_test_support::aws::LocalAws;

/// Deletes every object of `bucket`, then the bucket.
pub async fn bucket(aws: &LocalAws, bucket: &str) {
    let mut token: Option<String> = None;
    loop {
        let listed = match aws
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.clone())
            .send()
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                eprintln!("cleanup: listing s3://{bucket} failed: {e}");
                return;
            }
        };
        for object in listed.contents() {
            if let Some(key) = object.key() {
                if let Err(e) = aws.s3.delete_object().bucket(bucket).key(key).send().await {
                    eprintln!("cleanup: deleting s3://{bucket}/{key} failed: {e}");
                }
            }
        }
        token = listed.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let uploads = aws.s3.list_multipart_uploads().bucket(bucket).send().await;
    if let Ok(uploads) = uploads {
        for u in uploads.uploads() {
            if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                let _ = aws
                    .s3
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
            }
        }
    }
    if let Err(e) = aws.s3.delete_bucket().bucket(bucket).send().await {
        eprintln!("cleanup: deleting bucket {bucket} failed: {e}");
    }
}

/// Deletes a queue by URL.
pub async fn queue(aws: &LocalAws, url: &str) {
    if let Err(e) = aws.sqs.delete_queue().queue_url(url).send().await {
        eprintln!("cleanup: deleting queue {url} failed: {e}");
    }
}

/// Deletes a table.
pub async fn table(aws: &LocalAws, name: &str) {
    if let Err(e) = aws.dynamodb.delete_table().table_name(name).send().await {
        eprintln!("cleanup: deleting table {name} failed: {e}");
    }
}

/// Deletes the resources of [`LocalAws::create_stack`]: bucket, its event queue, table, restore
/// queue.
pub async fn stack(aws: &LocalAws, stack: &bakdrop_test_support::aws::StackResources) {
    bucket(aws, &stack.bucket).await;
    queue(aws, &stack.events).await;
    queue(aws, &stack.restore_queue).await;
    table(aws, &stack.table).await;
}
