//! Throughput of validation (figure 3, first half): many backups dropped at once into a bucket
//! whose ObjectCreated events go to a queue (the real S3 → SQS notification path of the local
//! endpoint), consumed by a fleet of concurrent "Lambdas" that each receive batches of events and
//! run validate-upload's handler with the real S3, DynamoDB and SQS adapters. The clock runs from
//! the first PUT until every upload is validated and its job is on the restore queue; then the
//! restore queue is drained to check that every upload got exactly one job.
//!
//! Each upload is its own database (`BenchNNNN/<fixture>`), cycling through the 2016 chain's
//! differential and logs (small real backups), so all are accepted.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::s3::S3ObjectReader;
use bakdrop_aws::sqs::SqsJobQueue;
use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::validate::{ValidateConfig, Validator};
use bakdrop_test_support::aws::{LocalAws, StackResources};
use futures_util::stream::{self, StreamExt};

use crate::stats;
use crate::{cleanup, fixtures};

/// The real backups dropped, in turn.
const BACKUPS: &[&str] = &[
    "sql2016_diff_RestoreTimeClean2.bak",
    "sql2016_log_RestoreTimeClean_1.trn",
    "sql2016_log_RestoreTimeClean_2.trn",
    "sql2016_log_RestoreTimeClean_3.trn",
    "sql2016_log_RestoreTimeClean2_1.trn",
    "sql2016_log_RestoreTimeClean2_2.trn",
    "sql2016_log_RestoreTimeClean2_3.trn",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct IngestPlan {
    pub uploads: usize,
    /// Concurrent "Lambdas" consuming the event queue.
    pub consumers: usize,
    /// Concurrent PUTs while dropping.
    pub uploaders: usize,
    /// Give up after this long.
    pub timeout: Duration,
}

/// The figure.
#[derive(Debug, Clone)]
pub struct IngestFigure {
    pub uploads: usize,
    pub bytes: u64,
    pub consumers: usize,
    /// First PUT to last PUT answered.
    pub drop_time: Duration,
    /// First PUT to the last upload validated and queued.
    pub total_time: Duration,
    pub queued: usize,
    pub rejected: usize,
    pub duplicates: usize,
    /// Handler invocations that failed (retried).
    pub failed_invocations: usize,
    /// Jobs found on the restore queue, and for how many distinct migrations.
    pub jobs: usize,
    pub job_migrations: usize,
}

/// Runs the plan against a fresh stack and deletes the stack afterwards.
///
/// # Errors
/// When the endpoint refuses or the uploads are not all queued before the timeout.
pub async fn run(aws: &LocalAws, plan: &IngestPlan) -> anyhow::Result<IngestFigure> {
    let stack = aws.create_stack().await.context("creating the stack")?;
    let result = measure(aws, &stack, plan).await;
    cleanup::stack(aws, &stack).await;
    result
}

async fn measure(
    aws: &LocalAws,
    stack: &StackResources,
    plan: &IngestPlan,
) -> anyhow::Result<IngestFigure> {
    let bodies: Vec<Vec<u8>> = BACKUPS
        .iter()
        .map(|n| fixtures::read(n))
        .collect::<anyhow::Result<_>>()?;
    let validator = Arc::new(Validator {
        reader: S3ObjectReader::new(aws.s3.clone()),
        store: DynamoStatusStore::new(aws.dynamodb.clone(), &stack.table),
        queue: SqsJobQueue::new(aws.sqs.clone(), &stack.restore_queue),
        config: ValidateConfig {
            arm_by_upload: false,
            target: Some("2022".parse()?),
            policy: VersionPolicy::NotNewer,
            location: bakdrop_core::tsql::source::SourceLocation::rds(None),
        },
    });
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let deadline = started + plan.timeout;
    let consumers: Vec<_> = (0..plan.consumers)
        .map(|n| {
            tokio::spawn(consume(
                aws.clone(),
                stack.events.clone(),
                validator.clone(),
                counts.clone(),
                plan.uploads,
                deadline,
                n,
            ))
        })
        .collect();
    let mut bytes = 0u64;
    let puts: Vec<_> = (0..plan.uploads)
        .map(|i| {
            let name = BACKUPS[i % BACKUPS.len()];
            let body = bodies[i % BACKUPS.len()].clone();
            bytes += body.len() as u64;
            (format!("Bench{i:04}/{name}"), body)
        })
        .collect();
    let results: Vec<anyhow::Result<()>> = stream::iter(puts)
        .map(|(key, body)| {
            let aws = aws.clone();
            let bucket = stack.bucket.clone();
            async move {
                aws.s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .with_context(|| format!("putting {key}"))?;
                Ok(())
            }
        })
        .buffer_unordered(plan.uploaders.max(1))
        .collect()
        .await;
    let drop_time = started.elapsed();
    for r in results {
        r?;
    }
    for c in consumers {
        c.await.context("a consumer panicked")??;
    }
    let total_time = started.elapsed();
    let done = counts.queued.load(Ordering::SeqCst) + counts.rejected.load(Ordering::SeqCst);
    if done < plan.uploads {
        bail!(
            "only {done} of {} uploads were validated within {}",
            plan.uploads,
            stats::duration(plan.timeout)
        );
    }
    let mut migrations = BTreeSet::new();
    let mut jobs = 0;
    let mut empty_polls = 0;
    while empty_polls < 2 {
        let batch = aws.receive_now(&stack.restore_queue).await?;
        if batch.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        for (_, body) in batch {
            jobs += 1;
            if let Ok(QueueMessage::Restore(job)) = QueueMessage::from_json(&body) {
                migrations.insert(job.migration);
            }
        }
    }
    Ok(IngestFigure {
        uploads: plan.uploads,
        bytes,
        consumers: plan.consumers,
        drop_time,
        total_time,
        queued: counts.queued.load(Ordering::SeqCst),
        rejected: counts.rejected.load(Ordering::SeqCst),
        duplicates: counts.duplicates.load(Ordering::SeqCst),
        failed_invocations: counts.failed.load(Ordering::SeqCst),
        jobs,
        job_migrations: migrations.len(),
    })
}

#[derive(Debug, Default)]
struct Counts {
    queued: AtomicUsize,
    rejected: AtomicUsize,
    duplicates: AtomicUsize,
    failed: AtomicUsize,
}

/// One "Lambda": receives up to 10 events at a time and hands each to the handler, deleting the
/// handled ones and making failed ones visible again at once, until `expected` uploads are done.
async fn consume(
    aws: LocalAws,
    queue: String,
    validator: Arc<Validator<S3ObjectReader, DynamoStatusStore, SqsJobQueue>>,
    counts: Arc<Counts>,
    expected: usize,
    deadline: Instant,
    consumer: usize,
) -> anyhow::Result<()> {
    loop {
        let done = counts.queued.load(Ordering::SeqCst) + counts.rejected.load(Ordering::SeqCst);
        if done >= expected || Instant::now() > deadline {
            return Ok(());
        }
        let out = aws
            .sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .send()
            .await
            .context("ReceiveMessage")?;
        for m in out.messages() {
            let Some(handle) = m.receipt_handle() else {
                continue;
            };
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap_or_default())
                .context("an event body is not JSON")?;
            let request_id = format!("c{consumer}-{}", m.message_id().unwrap_or_default());
            match validate_upload::handler::handle(
                validator.as_ref(),
                body,
                &request_id,
                time::OffsetDateTime::now_utc(),
            )
            .await
            {
                Ok(summary) => {
                    counts.queued.fetch_add(summary.queued, Ordering::SeqCst);
                    counts
                        .rejected
                        .fetch_add(summary.rejected, Ordering::SeqCst);
                    counts
                        .duplicates
                        .fetch_add(summary.duplicates, Ordering::SeqCst);
                    aws.sqs
                        .delete_message()
                        .queue_url(&queue)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .context("DeleteMessage")?;
                }
                Err(e) => {
                    counts.failed.fetch_add(1, Ordering::SeqCst);
                    let mut chain = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        chain.push_str(&format!(": {cause}"));
                        source = cause.source();
                    }
                    eprintln!("ingest: an invocation failed and is retried: {chain}");
                    aws.sqs
                        .change_message_visibility()
                        .queue_url(&queue)
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .context("ChangeMessageVisibility")?;
                }
            }
        }
    }
}

/// The figure as a Markdown table.
pub fn table(f: &IngestFigure) -> String {
    let rate = f.uploads as f64 / f.total_time.as_secs_f64().max(1e-9);
    format!(
        "| uploads (bytes) | consumers × batch | drop (all PUTs answered) | all validated and queued | rate | queued / rejected / duplicates / failed invocations | jobs on the restore queue (distinct migrations) |\n\
         |---:|---:|---:|---:|---:|---|---:|\n\
         | {} ({}) | {} × 10 | {} | {} | {:.1} uploads/s | {} / {} / {} / {} | {} ({}) |\n",
        f.uploads,
        stats::bytes(f.bytes),
        f.consumers,
        stats::duration(f.drop_time),
        stats::duration(f.total_time),
        rate,
        f.queued,
        f.rejected,
        f.duplicates,
        f.failed_invocations,
        f.jobs,
        f.job_migrations
    )
}
