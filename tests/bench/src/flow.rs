//! The whole pipeline on this machine, as deployed, with everything it does counted: uploads go
//! to a bucket whose ObjectCreated events reach a queue (the local endpoint's real S3 → SQS
//! notification), a fleet of validate-upload "Lambdas" takes them, and a fleet of restore-worker
//! "Lambdas" takes the restore queue (receives of up to 10 messages, as the template's event
//! source mapping) and restores on the TDS test server with the production delays.
//!
//! Each "Lambda" has its own AWS clients, with an interceptor ([`Meter`]) counting every request
//! they send by service and operation, with its bytes; the fleet adds what each message cost,
//! how long its handler ran, by what the message was and did ([`Ledger`]). Those counts are what
//! the cost figure multiplies by AWS's prices. The receives and deletes of the fleet itself stand
//! for Lambda's event source mapping and are not counted here (the cost figure counts them per
//! batch and message, as Lambda makes them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::s3::S3ObjectReader;
use bakdrop_aws::sqs::SqsJobQueue;
use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::restore::{Attempt, RestoreConfig, WorkOutcome, Worker};
use bakdrop_core::validate::{ValidateConfig, Validator};
use bakdrop_mssql::TiberiusTarget;
use bakdrop_test_support::aws::{LocalAws, StackResources};

/// Requests of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpUsage {
    pub requests: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// DynamoDB capacity units, estimated from the bytes (see [`Usage::add_request`]).
    pub read_units: f64,
    pub write_units: f64,
}

/// Requests by `service:operation`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub ops: BTreeMap<String, OpUsage>,
}

impl Usage {
    /// DynamoDB on demand: a write costs one unit per started KiB of the item, and as much again
    /// in the `migrations-by-name` index (projection ALL) for a migration item, one more unit in
    /// `files-by-state` (keys only) for a file item; the request's JSON (the item with its
    /// condition) stands for the item's size, an upper bound. A strongly consistent read costs
    /// one unit per started 4 KiB returned, a query of an index (eventually consistent) half.
    fn add_request(&mut self, op: &str, bytes: u64) {
        let u = self.ops.entry(op.to_owned()).or_default();
        u.requests += 1;
        u.request_bytes += bytes;
        if matches!(op, "DynamoDB:PutItem" | "DynamoDB:DeleteItem") {
            let units = bytes.div_ceil(1024).max(1) as f64;
            // The migration item's sort key is the migration's; a file's names the file.
            u.write_units += units + 1.0;
        }
    }

    fn add_response(&mut self, op: &str, bytes: u64) {
        let u = self.ops.entry(op.to_owned()).or_default();
        u.response_bytes += bytes;
        let units = bytes.div_ceil(4096).max(1) as f64;
        match op {
            "DynamoDB:GetItem" | "DynamoDB:BatchGetItem" => u.read_units += units,
            "DynamoDB:Query" => u.read_units += units / 2.0,
            _ => {}
        }
    }

    /// Adds `other` into this.
    pub fn add(&mut self, other: &Usage) {
        for (op, o) in &other.ops {
            let u = self.ops.entry(op.clone()).or_default();
            u.requests += o.requests;
            u.request_bytes += o.request_bytes;
            u.response_bytes += o.response_bytes;
            u.read_units += o.read_units;
            u.write_units += o.write_units;
        }
    }

    /// Requests of operations of `service` (e.g. "DynamoDB").
    pub fn requests_of(&self, service: &str) -> u64 {
        self.ops
            .iter()
            .filter(|(op, _)| op.split(':').next() == Some(service))
            .map(|(_, u)| u.requests)
            .sum()
    }

    pub fn requests(&self, op: &str) -> u64 {
        self.ops.get(op).map_or(0, |u| u.requests)
    }

    pub fn read_units(&self) -> f64 {
        self.ops.values().map(|u| u.read_units).sum()
    }

    pub fn write_units(&self) -> f64 {
        self.ops.values().map(|u| u.write_units).sum()
    }
}

/// Counts the requests of the clients it is given to (an SDK interceptor).
#[derive(Debug, Clone, Default)]
pub struct Meter {
    usage: Arc<Mutex<Usage>>,
}

impl Meter {
    /// What was counted since the last take.
    pub fn take(&self) -> Usage {
        std::mem::take(&mut *self.usage.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn op(cfg: &ConfigBag) -> String {
        cfg.load::<Metadata>().map_or_else(
            || "?:?".to_owned(),
            |m| format!("{}:{}", m.service(), m.name()),
        )
    }

    /// Clients for the local endpoint whose requests this meter counts.
    pub fn clients(
        &self,
        aws: &LocalAws,
    ) -> (
        aws_sdk_s3::Client,
        aws_sdk_sqs::Client,
        aws_sdk_dynamodb::Client,
    ) {
        let s3 = aws_sdk_s3::config::Builder::from(&aws.sdk)
            .force_path_style(true)
            .interceptor(self.clone())
            .build();
        let sqs = aws_sdk_sqs::config::Builder::from(&aws.sdk)
            .interceptor(self.clone())
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&aws.sdk)
            .interceptor(self.clone())
            .build();
        (
            aws_sdk_s3::Client::from_conf(s3),
            aws_sdk_sqs::Client::from_conf(sqs),
            aws_sdk_dynamodb::Client::from_conf(dynamodb),
        )
    }
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "bakdrop-bench-meter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let bytes = context.request().body().bytes().map_or(0, <[u8]>::len) as u64;
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add_request(&Meter::op(cfg), bytes);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let bytes = context.response().body().bytes().map_or(0, <[u8]>::len) as u64;
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add_response(&Meter::op(cfg), bytes);
        Ok(())
    }
}

/// What messages of one kind cost, in all.
#[derive(Debug, Clone, Default)]
pub struct KindStats {
    pub messages: u64,
    pub usage: Usage,
    /// Handler time, summed.
    pub busy: Duration,
}

/// Everything the fleet did.
#[derive(Debug, Default)]
pub struct Ledger {
    kinds: Mutex<BTreeMap<String, KindStats>>,
    /// Receives that returned messages: one Lambda invocation each.
    pub validate_invocations: AtomicU64,
    pub worker_invocations: AtomicU64,
    /// Handler calls that failed (the message was made visible again).
    pub failures: AtomicU64,
}

impl Ledger {
    fn record(&self, kind: &str, usage: &Usage, busy: Duration) {
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        let k = kinds.entry(kind.to_owned()).or_default();
        k.messages += 1;
        k.usage.add(usage);
        k.busy += busy;
    }

    /// A copy of the counts by kind.
    pub fn kinds(&self) -> BTreeMap<String, KindStats> {
        self.kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets what was counted (e.g. after a setup phase).
    pub fn reset(&self) {
        self.kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.validate_invocations.store(0, Ordering::SeqCst);
        self.worker_invocations.store(0, Ordering::SeqCst);
        self.failures.store(0, Ordering::SeqCst);
    }

    /// Messages of kinds starting with `prefix`.
    pub fn messages(&self, prefix: &str) -> u64 {
        self.kinds()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, s)| s.messages)
            .sum()
    }
}

/// Kinds of work the ledger tells apart.
pub const VALIDATE: &str = "validate: upload";

/// What a restore-worker message was and did.
fn kind_of(message: &QueueMessage, outcome: &Result<WorkOutcome, String>) -> String {
    let what = match message {
        QueueMessage::Restore(_) => "restore job",
        QueueMessage::Poll { .. } => "poll",
        QueueMessage::Advance { .. } => "advance",
        QueueMessage::Finish { .. } => "finish",
    };
    let did = match outcome {
        Ok(WorkOutcome::Submitted { .. }) => "submitted a restore",
        Ok(WorkOutcome::Running { .. }) => "still running",
        Ok(WorkOutcome::Idle { .. }) => "nothing to submit",
        Ok(WorkOutcome::Deferred { .. }) => "deferred",
        Ok(WorkOutcome::Stale { .. }) => "stale",
        Ok(WorkOutcome::Failed { .. }) => "failed the migration",
        Err(_) => "error (retried)",
    };
    format!("worker: {what}: {did}")
}

/// The fleets' settings.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// Concurrent validate-upload "Lambdas" (S3 invokes it asynchronously, as many as needed).
    pub validators: usize,
    /// Concurrent restore-worker "Lambdas" (the template's MaximumConcurrency: 5).
    pub workers: usize,
    pub validate: ValidateConfig,
    pub restore: RestoreConfig,
}

/// The running fleets.
#[derive(Debug)]
pub struct Fleet {
    pub ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Fleet {
    /// Starts the fleets on `stack`, restoring on `target`.
    pub fn start(
        aws: &LocalAws,
        stack: &StackResources,
        target: &TiberiusTarget,
        plan: &FleetPlan,
    ) -> Fleet {
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..plan.validators {
            let meter = Meter::default();
            let (s3, sqs, dynamodb) = meter.clients(aws);
            let validator = Validator {
                reader: S3ObjectReader::new(s3),
                store: DynamoStatusStore::new(dynamodb, &stack.table),
                queue: SqsJobQueue::new(sqs, &stack.restore_queue),
                config: plan.validate.clone(),
            };
            tasks.push(tokio::spawn(validate_loop(
                aws.clone(),
                stack.events.clone(),
                validator,
                meter,
                ledger.clone(),
                stop.clone(),
                n,
            )));
        }
        for _ in 0..plan.workers {
            let meter = Meter::default();
            let (s3, sqs, dynamodb) = meter.clients(aws);
            let worker = Worker {
                store: DynamoStatusStore::new(dynamodb, &stack.table),
                queue: SqsJobQueue::new(sqs, &stack.restore_queue),
                target: target.clone(),
                objects: S3ObjectReader::new(s3),
                config: plan.restore.clone(),
            };
            tasks.push(tokio::spawn(worker_loop(
                aws.clone(),
                stack.restore_queue.clone(),
                worker,
                meter,
                ledger.clone(),
                stop.clone(),
            )));
        }
        Fleet {
            ledger,
            stop,
            tasks,
        }
    }

    /// Stops the fleets (after the receives under way).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            match task.await {
                Ok(Err(e)) => eprintln!("flow: a Lambda stopped early: {e:#}"),
                Err(e) => eprintln!("flow: a Lambda panicked: {e}"),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// One validate-upload "Lambda": an invocation per S3 event.
async fn validate_loop(
    aws: LocalAws,
    queue: String,
    validator: Validator<S3ObjectReader, DynamoStatusStore, SqsJobQueue>,
    meter: Meter,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    n: usize,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::SeqCst) {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .send()
            .await
            .context("ReceiveMessage (S3 events)")?;
        for m in out.messages() {
            let Some(handle) = m.receipt_handle() else {
                continue;
            };
            ledger.validate_invocations.fetch_add(1, Ordering::SeqCst);
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap_or_default())
                .context("an S3 event is not JSON")?;
            let request_id = format!("v{n}-{}", m.message_id().unwrap_or_default());
            let started = Instant::now();
            let result = validate_upload::handler::handle(
                &validator,
                body,
                &request_id,
                time::OffsetDateTime::now_utc(),
            )
            .await;
            let busy = started.elapsed();
            ledger.record(VALIDATE, &meter.take(), busy);
            match result {
                Ok(_) => {
                    aws.sqs
                        .delete_message()
                        .queue_url(&queue)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .context("DeleteMessage")?;
                }
                Err(e) => {
                    ledger.failures.fetch_add(1, Ordering::SeqCst);
                    eprintln!("flow: a validation failed and is retried: {e}");
                    aws.sqs
                        .change_message_visibility()
                        .queue_url(&queue)
                        .receipt_handle(handle)
                        .visibility_timeout(1)
                        .send()
                        .await
                        .context("ChangeMessageVisibility")?;
                }
            }
        }
    }
    Ok(())
}

/// One restore-worker "Lambda": an invocation per receive of up to 10 messages, each handled
/// on its own as the function's handler does.
async fn worker_loop(
    aws: LocalAws,
    queue: String,
    worker: Worker<DynamoStatusStore, SqsJobQueue, TiberiusTarget, S3ObjectReader>,
    meter: Meter,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::SeqCst) {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(120)
            .send()
            .await
            .context("ReceiveMessage (restore queue)")?;
        let messages = out.messages();
        if messages.is_empty() {
            continue;
        }
        ledger.worker_invocations.fetch_add(1, Ordering::SeqCst);
        let invocation = bakdrop_test_support::invocation();
        for m in messages {
            let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                continue;
            };
            let Ok(message) = QueueMessage::from_json(m.body().unwrap_or_default()) else {
                anyhow::bail!("a malformed message on the restore queue: {:?}", m.body());
            };
            let started = Instant::now();
            let attempt = Attempt {
                message_id: id,
                invocation: &invocation,
            };
            let outcome = worker
                .handle(&message, attempt, time::OffsetDateTime::now_utc())
                .await
                .map_err(|e| e.to_string());
            let busy = started.elapsed();
            ledger.record(&kind_of(&message, &outcome), &meter.take(), busy);
            if let Err(e) = &outcome {
                ledger.failures.fetch_add(1, Ordering::SeqCst);
                eprintln!("flow: a restore-queue message failed and is retried: {e}");
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
    Ok(())
}

/// The restore worker's production delays: polls at most 60 s apart, 120 s before planning
/// again when the target is busy, a poll waiting up to 2 s for a restore about to end (the
/// template's `PollIntervalSeconds` default and the function's `BUSY_RETRY_SECONDS` and
/// `SETTLE_SECONDS` defaults).
pub fn production(mut config: RestoreConfig) -> RestoreConfig {
    config.poll_interval = Duration::from_secs(60);
    config.busy_retry = Duration::from_secs(120);
    config.settle = restore_worker::settings::settle(Duration::from_secs(2));
    config
}
