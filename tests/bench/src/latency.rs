//! Latency a DBA feels, through the whole pipeline ([`crate::flow`]) with the
//! production delays:
//!
//! - **Upload → RESTORE submitted**: a migration is Synchronizing (its full restored); each of
//!   `uploads` log backups is uploaded on its own, and timed from the moment its PUT starts to the
//!   moment its RESTORE (`rds_restore_log`, or the Agent job's `sp_start_job`) reaches the test
//!   server (the test server stamps every request on its clock, which runs with the wall clock).
//!   The next log is uploaded once this one is restored: each upload meets an idle pipeline, as
//!   the 15-minute log of a synchronizing migration does.
//! - **Complete → ONLINE**: migrations with their full restored are completed one after another
//!   through complete-migration's handler (as the function invokes it), timed until the status
//!   table says Succeeded; bakdrop's overhead is that time less the target's own (RDS: the
//!   `FINISH_RESTORE` task's, created → ended; native: the Agent job running `RESTORE … WITH
//!   RECOVERY`, which the test server runs for the finish time).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::sqs::SqsJobQueue;
use bakdrop_core::model::status::MigrationState;
use bakdrop_core::ports::StatusStore;
use bakdrop_core::tsql::Dialect;
use bakdrop_mssql::testing::emulator_target;
use bakdrop_test_support::aws::{LocalAws, StackResources};

use crate::catchup::{self, describe, put_all, FULL};
use crate::flow::{Fleet, KindStats, Meter};
use crate::{cleanup, fixtures, stats, synth};

/// What to run.
#[derive(Debug, Clone)]
pub struct LatencyPlan {
    pub dialect: Dialect,
    /// Logs uploaded one at a time.
    pub uploads: u32,
    /// Migrations completed one at a time.
    pub completes: u32,
    /// How long the test server takes to restore one log.
    pub restore_time: Duration,
    /// How long an RDS `FINISH_RESTORE` task, or a native recovery job, runs.
    pub finish_time: Duration,
    pub workers: usize,
    pub timeout: Duration,
}

/// The figure.
#[derive(Debug, Clone)]
pub struct LatencyFigure {
    pub dialect: Dialect,
    /// Upload → RESTORE submitted, per upload.
    pub submitted: Vec<Duration>,
    /// Complete invoked → Succeeded, and the target's own part of it, per migration.
    pub completes: Vec<(Duration, Duration)>,
    /// What complete-migration's invocations did.
    pub complete_usage: KindStats,
    pub finish_time: Duration,
    /// What the fleets did from the first upload on (the setup's fulls left out).
    pub kinds: std::collections::BTreeMap<String, KindStats>,
    pub worker_invocations: u64,
}

/// The `p`-th percentile (0–100) of `samples`, nearest rank.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the plan on a fresh stack and test server; deletes the stack afterwards.
///
/// # Errors
/// When the endpoint or the test server fails, or a step does not finish in time.
pub async fn run(aws: &LocalAws, plan: &LatencyPlan) -> anyhow::Result<LatencyFigure> {
    let stack = aws.create_stack().await.context("creating the stack")?;
    let result = measure(aws, &stack, plan).await;
    cleanup::stack(aws, &stack).await;
    result
}

/// Waits until `database` is Synchronizing with nothing in flight and its chain reaching
/// `last_lsn` (any chain when `None`).
async fn synchronized(
    store: &DynamoStatusStore,
    database: &str,
    last_lsn: Option<bakdrop_core::Lsn>,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        if let Some(m) = store.get_migration(database).await?.map(|m| m.record) {
            let reached = last_lsn.is_none_or(|l| m.chain.last_lsn == Some(l));
            if m.state == MigrationState::Synchronizing && m.in_flight.is_none() && reached {
                return Ok(());
            }
            if matches!(m.state, MigrationState::Failed | MigrationState::Cancelled) {
                bail!("{database} ended {:?}: {:?}", m.state, m.reason);
            }
        }
        if Instant::now() > deadline {
            bail!("{database} did not reach Synchronizing in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn measure(
    aws: &LocalAws,
    stack: &StackResources,
    plan: &LatencyPlan,
) -> anyhow::Result<LatencyFigure> {
    let emulator = catchup::emulator(plan.dialect);
    emulator.set_finish_duration(plan.finish_time);
    let (addr, server) = emulator
        .start()
        .await
        .context("starting the TDS test server")?;
    let target = emulator_target(addr.port(), plan.dialect);
    let fleet = Fleet::start(
        aws,
        stack,
        &target,
        &catchup::fleet_plan(plan.dialect, plan.workers, 4),
    );
    let ledger = fleet.ledger.clone();
    let result = async {
        let store = DynamoStatusStore::new(aws.dynamodb.clone(), &stack.table);
        let deadline = Instant::now() + plan.timeout;
        let full = fixtures::read(FULL)?;
        let template = fixtures::read(synth::TEMPLATE)?;
        let logs = synth::log_chain(&template, plan.uploads);

        // Setup (not timed): the log migration's full, and one full per Complete.
        let database = "Latency";
        let completes: Vec<String> = (0..plan.completes).map(|i| format!("Done{i:03}")).collect();
        // One at a time: RDS runs two tasks at once, and a third would wait out the production
        // busy retry (120 s).
        for db in std::iter::once(database).chain(completes.iter().map(String::as_str)) {
            let key = format!("{db}/{FULL}");
            describe(
                &emulator,
                plan.dialect,
                &stack.bucket,
                &key,
                &full,
                plan.restore_time,
            );
            put_all(aws, &stack.bucket, vec![(key, full.clone())]).await?;
            synchronized(&store, db, None, deadline).await?;
        }
        eprintln!(
            "latency: {} fulls restored; uploading logs one at a time",
            1 + completes.len()
        );
        ledger.reset();

        // Upload → RESTORE submitted.
        let needles: &[&str] = match plan.dialect {
            Dialect::Rds => &["rds_restore_log"],
            Dialect::Native => &["sp_start_job"],
        };
        let mut submitted = Vec::new();
        for (i, log) in logs.into_iter().enumerate() {
            let key = format!("{database}/{database}_LOG_{:03}.trn", i + 1);
            describe(
                &emulator,
                plan.dialect,
                &stack.bucket,
                &key,
                &log,
                plan.restore_time,
            );
            let last_lsn = bakdrop_core::backup::summary::summarize(&log, None, log.len() as u64)
                .map_err(|r| anyhow::anyhow!("log {} does not parse: {r:?}", i + 1))?
                .last_lsn;
            let clock = emulator.with_state(|s| s.now());
            put_all(aws, &stack.bucket, vec![(key.clone(), log)]).await?;
            let at = loop {
                let found = emulator.with_state(|s| {
                    s.requests
                        .iter()
                        .rev()
                        .take_while(|r| r.at >= clock)
                        .filter(|r| {
                            let sql = r.request.sql.to_ascii_lowercase();
                            needles.iter().any(|n| sql.contains(n))
                        })
                        .map(|r| r.at)
                        .last()
                });
                if let Some(at) = found {
                    break at;
                }
                if Instant::now() > deadline {
                    bail!("the RESTORE of {key} never reached the target");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            submitted.push(at.saturating_sub(clock));
            synchronized(&store, database, Some(last_lsn), deadline).await?;
        }

        // Complete → ONLINE.
        let meter = Meter::default();
        let (_, sqs, dynamodb) = meter.clients(aws);
        let complete_store = DynamoStatusStore::new(dynamodb, &stack.table);
        let queue = SqsJobQueue::new(sqs, &stack.restore_queue);
        let followup = complete_migration::handler::Followup {
            queue: &queue,
            delay: Duration::from_secs(60),
            wait: Duration::from_secs(10),
            look_every: Duration::from_millis(250),
        };
        // Complete reads no object; revalidate is not benchmarked.
        let reader = bakdrop_core::ports::fakes::MemoryObjects::default();
        let config = catchup::fleet_plan(plan.dialect, plan.workers, 4).validate;
        let revalidation = complete_migration::handler::Revalidation {
            reader: &reader,
            config: &config,
        };
        let mut usage = KindStats::default();
        let mut done = Vec::new();
        for db in &completes {
            let started = Instant::now();
            let answer = complete_migration::handler::handle(
                &complete_store,
                &target,
                &followup,
                &revalidation,
                serde_json::json!({ "database": db }),
                time::OffsetDateTime::now_utc(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("completing {db}: {e}"))?;
            usage.messages += 1;
            usage.busy += started.elapsed();
            usage.usage.add(&meter.take());
            if answer["state"] != "Succeeded" {
                loop {
                    let m = store.get_migration(db).await?.map(|m| m.record);
                    match m.as_ref().map(|m| m.state) {
                        Some(MigrationState::Succeeded) => break,
                        Some(MigrationState::Completing) => {}
                        other => bail!("{db} ended {other:?} after Complete"),
                    }
                    if Instant::now() > deadline {
                        bail!("{db} was not online in time");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let total = started.elapsed();
            let target_time = match plan.dialect {
                Dialect::Rds => emulator
                    .rds_tasks()
                    .iter()
                    .filter(|t| {
                        t.task_type == "FINISH_RESTORE" && t.op.database.eq_ignore_ascii_case(db)
                    })
                    .map(|t| t.last_updated.saturating_sub(t.created_at))
                    .max()
                    .unwrap_or_default(),
                // The recovery job is deleted with its history once its success is recorded;
                // the test server runs it for exactly the finish time.
                Dialect::Native => plan.finish_time,
            };
            done.push((total, target_time));
        }
        Ok(LatencyFigure {
            dialect: plan.dialect,
            submitted,
            completes: done,
            complete_usage: usage,
            finish_time: plan.finish_time,
            kinds: ledger.kinds(),
            worker_invocations: ledger
                .worker_invocations
                .load(std::sync::atomic::Ordering::SeqCst),
        })
    }
    .await;
    fleet.stop().await;
    server.shutdown().await;
    result
}

/// The figures as Markdown.
pub fn table(figures: &[LatencyFigure]) -> String {
    let mut out = String::from(
        "Upload → RESTORE submitted on the target (each log uploaded alone to a synchronizing migration):\n\n\
         | dialect | uploads | p50 | p90 | p99 | max | target p99 ≤ 2 s |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    for f in figures.iter().filter(|f| !f.submitted.is_empty()) {
        let p99 = percentile(&f.submitted, 99.0);
        out.push_str(&format!(
            "| {:?} | {} | {} | {} | {} | {} | {} |\n",
            f.dialect,
            f.submitted.len(),
            stats::duration(percentile(&f.submitted, 50.0)),
            stats::duration(percentile(&f.submitted, 90.0)),
            stats::duration(p99),
            stats::duration(percentile(&f.submitted, 100.0)),
            if p99 <= Duration::from_secs(2) {
                "**met**"
            } else {
                "**missed**"
            },
        ));
    }
    out.push_str(
        "\nComplete → ONLINE (complete-migration's handler, then the status table says Succeeded):\n\n\
         | dialect | finish task (test server) | completes | Complete → Succeeded, median (max) | target's own time, median | bakdrop's overhead, median (max) | target ≤ 1 s |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    for f in figures.iter().filter(|f| !f.completes.is_empty()) {
        let totals: Vec<Duration> = f.completes.iter().map(|c| c.0).collect();
        let targets: Vec<Duration> = f.completes.iter().map(|c| c.1).collect();
        let overheads: Vec<Duration> = f
            .completes
            .iter()
            .map(|(t, o)| t.saturating_sub(*o))
            .collect();
        let worst = percentile(&overheads, 100.0);
        out.push_str(&format!(
            "| {:?} | {} | {} | {} ({}) | {} | {} ({}) | {} |\n",
            f.dialect,
            stats::duration(f.finish_time),
            f.completes.len(),
            stats::duration(percentile(&totals, 50.0)),
            stats::duration(percentile(&totals, 100.0)),
            stats::duration(percentile(&targets, 50.0)),
            stats::duration(percentile(&overheads, 50.0)),
            stats::duration(worst),
            if worst <= Duration::from_secs(1) {
                "**met**"
            } else {
                "**missed**"
            },
        ));
    }
    out
}
