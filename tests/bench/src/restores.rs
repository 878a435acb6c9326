//! Throughput of restores (figure 3, second half): many migrations, each a full and a log, are
//! validated and queued, then restored concurrently by a fleet of restore-worker "Lambdas"
//! (restore-worker's handler with the real DynamoDB and SQS adapters and the tiberius target)
//! against the TDS emulator in the RDS dialect, on wall-clock time. The clock runs from the first
//! receive until every migration is Synchronizing (or Failed: then the run is reported failed).
//!
//! RDS runs at most [`RDS_MAX_CONCURRENT_TASKS`] restore tasks at once, and the worker checks
//! that before submitting. The emulator records every task with its creation and end times:
//! the maximum number of tasks active at one instant is computed from those intervals, and
//! submissions the emulator itself refused (a third task while two were active) are counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_s3::primitives::ByteStream;
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::s3::S3ObjectReader;
use bakdrop_aws::sqs::SqsJobQueue;
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::status::MigrationState;
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::ports::StatusStore;
use bakdrop_core::restore::{RestoreConfig, SourceLocation, Worker};
use bakdrop_core::tsql::Dialect;
use bakdrop_core::validate::{Outcome, ValidateConfig, Validator};

use bakdrop_mssql::target::RDS_MAX_CONCURRENT_TASKS;
use bakdrop_mssql::TiberiusTarget;
use bakdrop_tds_server::emulator::{ClockMode, RdsTask};
use bakdrop_tds_server::SqlServerEmulator;
use bakdrop_test_support::aws::{LocalAws, StackResources};
use serde_json::json;

use crate::stats;
use crate::{cleanup, fixtures};

const FULL: &str = "sql2016_full_RestoreTimeClean.bak";
const LOG: &str = "sql2016_log_RestoreTimeClean_1.trn";

/// What to run.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub migrations: usize,
    /// Concurrent restore-worker "Lambdas" (the template's MaximumConcurrency is 5).
    pub workers: usize,
    /// How long the emulator takes for one restore (after RDS's queueing delay of 100 ms).
    pub restore_time: Duration,
    /// The worker's delay between polls of a task, and before retrying a busy target (SQS
    /// delays are whole seconds; production defaults are 60 s and 120 s).
    pub poll_interval: Duration,
    pub timeout: Duration,
}

/// The figure.
#[derive(Debug, Clone)]
pub struct RestoreFigure {
    pub migrations: usize,
    pub workers: usize,
    pub restore_time: Duration,
    pub poll_interval: Duration,
    /// First receive to every migration settled: Synchronizing, or Failed.
    pub total_time: Duration,
    pub synchronizing: usize,
    pub failed: Vec<String>,
    pub tasks: usize,
    /// Submissions that reached the emulator, and those it refused for the task limit.
    pub submissions: usize,
    pub refused_by_server: usize,
    pub max_concurrent: usize,
    pub cap: usize,
    /// Sum of task durations (created → end) over the wall time: the mean concurrency.
    pub mean_concurrency: f64,
}

/// Runs the plan against a fresh stack and emulator and deletes the stack afterwards.
///
/// # Errors
/// When the endpoint refuses, or a validation or the emulator fails.
pub async fn run(aws: &LocalAws, plan: &RestorePlan) -> anyhow::Result<RestoreFigure> {
    let stack = aws.create_stack().await.context("creating the stack")?;
    let result = measure(aws, &stack, plan).await;
    cleanup::stack(aws, &stack).await;
    result
}

async fn measure(
    aws: &LocalAws,
    stack: &StackResources,
    plan: &RestorePlan,
) -> anyhow::Result<RestoreFigure> {
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &stack.table);
    let queue = SqsJobQueue::new(aws.sqs.clone(), &stack.restore_queue);
    let emulator = SqlServerEmulator::rds();
    emulator.set_clock_mode(ClockMode::Wall);
    emulator.set_restore_duration(None, plan.restore_time);
    let (addr, server) = emulator
        .start()
        .await
        .context("starting the TDS emulator")?;
    let worker = Arc::new(Worker {
        store: store.clone(),
        queue: queue.clone(),
        target: bakdrop_mssql::testing::emulator_target(addr.port(), Dialect::Rds),
        objects: S3ObjectReader::new(aws.s3.clone()),
        config: RestoreConfig {
            dialect: Dialect::Rds,
            location: SourceLocation::rds(None),
            policy: VersionPolicy::NotNewer,
            check_version: true,
            poll_interval: plan.poll_interval,
            busy_retry: plan.poll_interval,
            settle: None,
        },
    });
    let validator = Validator {
        reader: S3ObjectReader::new(aws.s3.clone()),
        store: store.clone(),
        queue,
        config: ValidateConfig {
            arm_by_upload: false,
            target: Some("2022".parse()?),
            policy: VersionPolicy::NotNewer,
            location: bakdrop_core::tsql::source::SourceLocation::rds(None),
        },
    };
    // Setup (not timed): upload and validate a full and a log per migration.
    let full = fixtures::read(FULL)?;
    let log = fixtures::read(LOG)?;
    let names: Vec<String> = (0..plan.migrations)
        .map(|i| format!("Bench{i:03}"))
        .collect();
    for name in &names {
        for (file, body) in [(FULL, &full), (LOG, &log)] {
            let key = format!("{name}/{file}");
            bakdrop_test_support::tds::register_upload(&emulator, &stack.bucket, &key, body);
            let out = aws
                .s3
                .put_object()
                .bucket(&stack.bucket)
                .key(&key)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .with_context(|| format!("putting {key}"))?;
            let object = ObjectRef {
                bucket: stack.bucket.clone(),
                key: key.clone(),
                version_id: None,
                etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
                size: body.len() as u64,
            };
            let outcome = validator
                .validate(&object, "bench", time::OffsetDateTime::now_utc())
                .await?;
            if !matches!(outcome, Outcome::Queued { .. }) {
                bail!("{key} was not queued: {outcome:?}");
            }
        }
    }
    eprintln!(
        "restores: {} migrations uploaded, validated and queued; restoring",
        names.len()
    );
    let started = Instant::now();
    let deadline = started + plan.timeout;
    let workers: Vec<_> = (0..plan.workers)
        .map(|_| {
            tokio::spawn(work(
                aws.clone(),
                stack.restore_queue.clone(),
                worker.clone(),
            ))
        })
        .collect();
    let (synchronizing, failed) = loop {
        let (synchronizing, failed) = states(&store, plan.migrations).await?;
        if synchronizing + failed.len() >= plan.migrations || Instant::now() > deadline {
            break (synchronizing, failed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let total_time = started.elapsed();
    for w in &workers {
        w.abort();
    }
    for w in workers {
        if let Ok(Err(e)) = w.await {
            eprintln!("restores: a worker stopped early: {e:#}");
        }
    }
    let tasks = emulator.rds_tasks();
    let now = emulator.with_state(|s| s.now());
    let submissions = emulator
        .requests()
        .iter()
        .filter(|r| {
            let sql = r.request.sql.to_ascii_lowercase();
            sql.contains("rds_restore_database") || sql.contains("rds_restore_log")
        })
        .count();
    let (max_concurrent, busy) = concurrency(&tasks, now);
    server.shutdown().await;
    Ok(RestoreFigure {
        migrations: plan.migrations,
        workers: plan.workers,
        restore_time: plan.restore_time,
        poll_interval: plan.poll_interval,
        total_time,
        synchronizing,
        failed,
        tasks: tasks.len(),
        submissions,
        refused_by_server: submissions.saturating_sub(tasks.len()),
        max_concurrent,
        cap: RDS_MAX_CONCURRENT_TASKS,
        mean_concurrency: busy.as_secs_f64() / total_time.as_secs_f64().max(1e-9),
    })
}

/// How many migrations are Synchronizing, and which failed (with their reason).
async fn states(
    store: &DynamoStatusStore,
    expected: usize,
) -> anyhow::Result<(usize, Vec<String>)> {
    let migrations = store.list_migrations(None, expected + 10).await?;
    let synchronizing = migrations
        .iter()
        .filter(|m| m.state == MigrationState::Synchronizing)
        .count();
    let failed = migrations
        .iter()
        .filter(|m| matches!(m.state, MigrationState::Failed | MigrationState::Cancelled))
        .map(|m| format!("{}: {:?}", m.database, m.reason))
        .collect();
    Ok((synchronizing, failed))
}

/// The most tasks active (CREATED or IN_PROGRESS) at one instant, and the summed task time.
/// A task is active from its creation until its end (`last_updated` once it has ended).
fn concurrency(tasks: &[RdsTask], now: Duration) -> (usize, Duration) {
    let mut edges: Vec<(Duration, i32)> = Vec::new();
    let mut busy = Duration::ZERO;
    for t in tasks {
        let end = if t.lifecycle.is_active() {
            now
        } else {
            t.last_updated
        };
        busy += end.saturating_sub(t.created_at);
        edges.push((t.created_at, 1));
        edges.push((end, -1));
    }
    // Ends sort before starts at the same instant: a task ending as another starts is not overlap.
    edges.sort();
    let (mut active, mut max) = (0i32, 0i32);
    for (_, delta) in edges {
        active += delta;
        max = max.max(active);
    }
    (usize::try_from(max).unwrap_or(0), busy)
}

/// One restore-worker "Lambda": receives batches of up to 10 messages, hands them to the handler
/// as an SQS event, deletes the handled ones and makes the failed ones visible again.
async fn work(
    aws: LocalAws,
    queue: String,
    worker: Arc<Worker<DynamoStatusStore, SqsJobQueue, TiberiusTarget, S3ObjectReader>>,
) -> anyhow::Result<()> {
    loop {
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
        let messages = out.messages();
        if messages.is_empty() {
            continue;
        }
        let records: Vec<_> = messages
            .iter()
            .map(|m| json!({"messageId": m.message_id(), "body": m.body()}))
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records }))
            .context("building the SQS event")?;
        let response = restore_worker::handler::handle(
            worker.as_ref(),
            event,
            &bakdrop_test_support::invocation(),
            time::OffsetDateTime::now_utc(),
        )
        .await;
        for m in messages {
            let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                continue;
            };
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == id);
            if failed {
                aws.sqs
                    .change_message_visibility()
                    .queue_url(&queue)
                    .receipt_handle(handle)
                    .visibility_timeout(1)
                    .send()
                    .await
                    .context("ChangeMessageVisibility")?;
            } else {
                aws.sqs
                    .delete_message()
                    .queue_url(&queue)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .context("DeleteMessage")?;
            }
        }
    }
}

/// The figure as a Markdown table.
pub fn table(f: &RestoreFigure) -> String {
    format!(
        "| migrations (full + log each) | workers × batch | emulated restore time | poll / busy retry | all settled (Synchronizing or Failed) | Synchronizing / failed | RDS tasks (submissions reaching the server, refused by it) | max concurrent tasks observed / cap | mean concurrency |\n\
         |---:|---:|---:|---:|---:|---|---:|---:|---:|\n\
         | {} | {} × 10 | {} + 100 ms queued | {} | {} | {} / {} | {} ({}, {}) | {} / {} | {:.2} |\n",
        f.migrations,
        f.workers,
        stats::duration(f.restore_time),
        stats::duration(f.poll_interval),
        stats::duration(f.total_time),
        f.synchronizing,
        f.failed.len(),
        f.tasks,
        f.submissions,
        f.refused_by_server,
        f.max_concurrent,
        f.cap,
        f.mean_concurrency
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_tds_server::emulator::state::RestoreOp;
    use bakdrop_tds_server::emulator::Lifecycle;

    fn task(created: u64, end: u64, lifecycle: Lifecycle) -> RdsTask {
        RdsTask {
            task_id: 1,
            task_type: "RESTORE_DB".into(),
            lifecycle,
            percent: 0,
            task_info: String::new(),
            s3_object_arn: String::new(),
            kms_master_key_arn: None,
            created_at: Duration::from_millis(created),
            last_updated: Duration::from_millis(end),
            started: lifecycle != Lifecycle::Created,
            op: RestoreOp {
                database: "D".into(),
                kind: bakdrop_tds_server::emulator::BackupKind::Full,
                sources: Vec::new(),
                recovery: false,
                replace: false,
                outcome: Ok(()),
                created_db: false,
                started_at: Duration::ZERO,
                duration: Duration::ZERO,
                session_id: 0,
            },
        }
    }

    #[test]
    fn overlapping_tasks_count_once_each_and_back_to_back_tasks_do_not_overlap() {
        let tasks = [
            task(0, 10, Lifecycle::Success),
            task(5, 20, Lifecycle::Success),
            task(10, 30, Lifecycle::Error),
            task(15, 25, Lifecycle::InProgress),
        ];
        let (max, busy) = concurrency(&tasks, Duration::from_millis(40));
        // At 15..20: tasks 2, 3 and 4 (task 1 ended at 10 as task 3 started).
        assert_eq!(max, 3);
        assert_eq!(busy, Duration::from_millis(10 + 15 + 20 + 25));
    }
}
