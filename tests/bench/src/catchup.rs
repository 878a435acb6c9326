//! Catch-up of a long chain: a full and a day of 15-minute log backups
//! (96) uploaded at once, through the whole pipeline ([`crate::flow`]) with the production
//! delays, until the last log is restored and the migration is Synchronizing. Compared with
//! the sum of the target's own restore times on the test server.
//!
//! The target's time per backup is a model, set per backup on the test server
//! (`set_restore_duration_of`): the full takes `full`; the logs follow a day's activity, from
//! `log_min` at night to `log_max` at midday (a log restore's time grows with the log's size,
//! and the size with the activity of its 15 minutes). The logs are copies of one real log with
//! their LSNs rewritten ([`crate::synth`]), so their bytes are alike: bakdrop cannot guess a
//! log's time from its size here, which is the harder case for its pacing.
//!
//! RDS tasks wait in CREATED for the test server's queue delay (100 ms) before running: part
//! of the target's time, measured from the tasks' own records.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::status::MigrationState;
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::ports::StatusStore;
use bakdrop_core::tsql::Dialect;
use bakdrop_core::validate::ValidateConfig;
use bakdrop_mssql::testing::emulator_target;
use bakdrop_tds_server::emulator::{ClockMode, Lifecycle};
use bakdrop_tds_server::SqlServerEmulator;
use bakdrop_test_support::aws::{LocalAws, StackResources};
use bakdrop_test_support::tds::{emulator_restore_config, register_upload};
use futures_util::stream::{self, StreamExt};

use crate::flow::{self, Fleet, FleetPlan, KindStats};
use crate::{cleanup, fixtures, stats, synth};

/// The full the logs follow.
pub const FULL: &str = "sql2016_full_RestoreTimeClean.bak";

/// What to run.
#[derive(Debug, Clone)]
pub struct CatchupPlan {
    pub dialect: Dialect,
    pub logs: u32,
    pub full: Duration,
    pub log_min: Duration,
    pub log_max: Duration,
    pub workers: usize,
    pub validators: usize,
    pub timeout: Duration,
}

impl CatchupPlan {
    /// The modelled restore time of log `i` (1-based) of `n`: the day's activity, a cosine from
    /// `log_min` (midnight, log 1) to `log_max` (midday) and back.
    pub fn log_time(&self, i: u32) -> Duration {
        let phase = f64::from(i.saturating_sub(1)) / f64::from(self.logs.max(1));
        let activity = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * phase).cos();
        self.log_min + (self.log_max.saturating_sub(self.log_min)).mul_f64(activity)
    }

    /// The modelled restore times: the full's, then each log's.
    pub fn modelled(&self) -> Duration {
        self.full + (1..=self.logs).map(|i| self.log_time(i)).sum::<Duration>()
    }
}

/// The figure.
#[derive(Debug, Clone)]
pub struct CatchupFigure {
    pub dialect: Dialect,
    pub logs: u32,
    /// Sum of the modelled restore times.
    pub modelled: Duration,
    /// Sum of the target's task times as its records show them (RDS: created → ended, the
    /// queue delay included); the modelled sum for native, whose jobs are deleted once done.
    pub target_time: Duration,
    /// First PUT to the last log restored, the migration Synchronizing.
    pub catch_up: Duration,
    /// First PUT to the full's RESTORE reaching the target.
    pub first_submit: Duration,
    /// RESTOREs submitted (steps).
    pub steps: u64,
    pub kinds: std::collections::BTreeMap<String, KindStats>,
    pub worker_invocations: u64,
    pub validate_invocations: u64,
    pub failures: u64,
    /// RDS: from one task's end to the next task's creation.
    pub gaps: Vec<Duration>,
}

impl CatchupFigure {
    pub fn ratio(&self) -> f64 {
        self.catch_up.as_secs_f64() / self.target_time.as_secs_f64().max(1e-9)
    }

    /// Looks at a running restore (a poll that found it running), per step.
    pub fn running_polls_per_step(&self) -> f64 {
        self.count("worker: poll: still running") as f64 / self.steps.max(1) as f64
    }

    /// Every poll (running or done), per step.
    pub fn polls_per_step(&self) -> f64 {
        self.count("worker: poll") as f64 / self.steps.max(1) as f64
    }

    fn count(&self, prefix: &str) -> u64 {
        self.kinds
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, s)| s.messages)
            .sum()
    }
}

/// Runs the plan on a fresh stack and test server; deletes the stack afterwards.
///
/// # Errors
/// When the endpoint or the test server fails, or the chain is not restored in time.
pub async fn run(aws: &LocalAws, plan: &CatchupPlan) -> anyhow::Result<CatchupFigure> {
    let stack = aws.create_stack().await.context("creating the stack")?;
    let result = measure(aws, &stack, plan).await;
    cleanup::stack(aws, &stack).await;
    result
}

/// The test server of `dialect`, on wall-clock time.
pub fn emulator(dialect: Dialect) -> SqlServerEmulator {
    let emulator = match dialect {
        Dialect::Rds => SqlServerEmulator::rds(),
        Dialect::Native => SqlServerEmulator::native(),
    };
    emulator.set_clock_mode(ClockMode::Wall);
    emulator
}

/// The fleets with production settings against `dialect`'s test server.
pub fn fleet_plan(dialect: Dialect, workers: usize, validators: usize) -> FleetPlan {
    let restore = flow::production(emulator_restore_config(dialect));
    FleetPlan {
        validators,
        workers,
        validate: ValidateConfig {
            arm_by_upload: false,
            target: Some("2022".parse().unwrap_or_else(|_| unreachable!())),
            policy: VersionPolicy::NotNewer,
            location: restore.location.clone(),
        },
        restore,
    }
}

/// Tells the test server about an upload and how long restoring it takes.
pub fn describe(
    emulator: &SqlServerEmulator,
    dialect: Dialect,
    bucket: &str,
    key: &str,
    bytes: &[u8],
    restore_time: Duration,
) {
    register_upload(emulator, bucket, key, bytes);
    let object = ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: None,
        etag: None,
        size: bytes.len() as u64,
    };
    let source = emulator_restore_config(dialect).location.source(&object);
    emulator.set_restore_duration_of(&source.text(), restore_time);
}

/// PUTs every object, 16 at a time.
pub async fn put_all(
    aws: &LocalAws,
    bucket: &str,
    objects: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = stream::iter(objects)
        .map(|(key, body)| {
            let aws = aws.clone();
            let bucket = bucket.to_owned();
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
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The time (on the test server's clock) of the first request after `after` whose text holds
/// one of `needles`.
pub fn first_request(
    emulator: &SqlServerEmulator,
    after: Duration,
    needles: &[&str],
) -> Option<Duration> {
    emulator
        .requests()
        .iter()
        .filter(|r| r.at >= after)
        .find(|r| {
            let sql = r.request.sql.to_ascii_lowercase();
            needles.iter().any(|n| sql.contains(n))
        })
        .map(|r| r.at)
}

/// What starts a restore, in each dialect's statements.
pub const SUBMITS: &[&str] = &["rds_restore_database", "rds_restore_log", "sp_start_job"];

async fn measure(
    aws: &LocalAws,
    stack: &StackResources,
    plan: &CatchupPlan,
) -> anyhow::Result<CatchupFigure> {
    let emulator = emulator(plan.dialect);
    let (addr, server) = emulator
        .start()
        .await
        .context("starting the TDS test server")?;
    let database = "Catchup";
    let full = fixtures::read(FULL)?;
    let template = fixtures::read(synth::TEMPLATE)?;
    let logs = synth::log_chain(&template, plan.logs);
    let last_lsn = bakdrop_core::backup::summary::summarize(
        logs.last().context("no logs")?,
        None,
        logs.last().map_or(0, |l| l.len() as u64),
    )
    .map_err(|r| anyhow::anyhow!("the last log does not parse: {r:?}"))?
    .last_lsn;
    let mut objects = vec![(format!("{database}/{FULL}"), full)];
    for (i, log) in logs.into_iter().enumerate() {
        objects.push((format!("{database}/{database}_LOG_{:03}.trn", i + 1), log));
    }
    for (n, (key, body)) in objects.iter().enumerate() {
        let time = if n == 0 {
            plan.full
        } else {
            plan.log_time(u32::try_from(n).unwrap_or(u32::MAX))
        };
        describe(&emulator, plan.dialect, &stack.bucket, key, body, time);
    }
    let target = emulator_target(addr.port(), plan.dialect);
    let fleet = Fleet::start(
        aws,
        stack,
        &target,
        &fleet_plan(plan.dialect, plan.workers, plan.validators),
    );
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &stack.table);
    let started = Instant::now();
    let clock_at_start = emulator.with_state(|s| s.now());
    put_all(aws, &stack.bucket, objects).await?;
    let deadline = started + plan.timeout;
    let outcome = loop {
        let migration = store.get_migration(database).await?.map(|m| m.record);
        if let Some(m) = &migration {
            if m.state == MigrationState::Synchronizing
                && m.in_flight.is_none()
                && m.chain.last_lsn == Some(last_lsn)
            {
                break Ok(started.elapsed());
            }
            if matches!(m.state, MigrationState::Failed | MigrationState::Cancelled) {
                break Err(anyhow::anyhow!(
                    "the migration ended {:?}: {:?}",
                    m.state,
                    m.reason
                ));
            }
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "the chain was not restored within {} (migration: {:?})",
                stats::duration(plan.timeout),
                migration.map(|m| (m.state, m.chain.applied, m.in_flight.map(|f| f.task_name)))
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ledger = fleet.ledger.clone();
    fleet.stop().await;
    let catch_up = match outcome {
        Ok(t) => t,
        Err(e) => {
            server.shutdown().await;
            return Err(e);
        }
    };
    let first_submit = first_request(&emulator, clock_at_start, SUBMITS)
        .map(|at| at.saturating_sub(clock_at_start))
        .unwrap_or_default();
    let tasks = emulator.rds_tasks();
    let mut ordered: Vec<_> = tasks.iter().collect();
    ordered.sort_by_key(|t| t.created_at);
    let gaps: Vec<Duration> = ordered
        .windows(2)
        .map(|w| w[1].created_at.saturating_sub(w[0].last_updated))
        .collect();
    let target_time = match plan.dialect {
        Dialect::Rds => tasks
            .iter()
            .filter(|t| t.lifecycle == Lifecycle::Success)
            .map(|t| t.last_updated.saturating_sub(t.created_at))
            .sum(),
        Dialect::Native => plan.modelled(),
    };
    let steps = match plan.dialect {
        Dialect::Rds => tasks.len() as u64,
        Dialect::Native => emulator
            .requests()
            .iter()
            .filter(|r| r.request.sql.to_ascii_lowercase().contains("sp_start_job"))
            .count() as u64,
    };
    server.shutdown().await;
    if steps < u64::from(plan.logs) + 1 {
        bail!("only {steps} restores reached the target");
    }
    use std::sync::atomic::Ordering;
    Ok(CatchupFigure {
        dialect: plan.dialect,
        logs: plan.logs,
        modelled: plan.modelled(),
        target_time,
        catch_up,
        first_submit,
        steps,
        kinds: ledger.kinds(),
        worker_invocations: ledger.worker_invocations.load(Ordering::SeqCst),
        validate_invocations: ledger.validate_invocations.load(Ordering::SeqCst),
        failures: ledger.failures.load(Ordering::SeqCst),
        gaps,
    })
}

/// The figures as Markdown: one row per run, then what the worker handled.
pub fn table(plan: &CatchupPlan, figures: &[CatchupFigure]) -> String {
    let mut out = format!(
        "Modelled restore times: full {}, {} logs from {} to {} (sum {}); production delays (poll at most every 60 s, busy retry 120 s).\n\n\
         | dialect | target's restore time (sum) | upload → last log restored | ratio | dead time per step | upload → full submitted | restores (steps) | polls per step (running / all) | worker invocations | failed messages |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        stats::duration(plan.full),
        plan.logs,
        stats::duration(plan.log_min),
        stats::duration(plan.log_max),
        stats::duration(plan.modelled()),
    );
    for f in figures {
        let dead =
            f.catch_up.saturating_sub(f.target_time) / u32::try_from(f.steps.max(1)).unwrap_or(1);
        out.push_str(&format!(
            "| {:?} | {} | {} | **{:.3}×** | {} | {} | {} | {:.2} / {:.2} | {} | {} |\n",
            f.dialect,
            stats::duration(f.target_time),
            stats::duration(f.catch_up),
            f.ratio(),
            stats::duration(dead),
            stats::duration(f.first_submit),
            f.steps,
            f.running_polls_per_step(),
            f.polls_per_step(),
            f.worker_invocations,
            f.failures,
        ));
    }
    for f in figures.iter().filter(|f| !f.gaps.is_empty()) {
        let mut g = f.gaps.clone();
        g.sort();
        out.push_str(&format!(
            "\n{:?}: from one RDS task's end to the next one's creation: median {}, 90th percentile {}, max {}.\n",
            f.dialect,
            stats::duration(g[g.len() / 2]),
            stats::duration(g[(g.len() * 9 / 10).min(g.len() - 1)]),
            stats::duration(g[g.len() - 1]),
        ));
    }
    if let Some(f) = figures.last() {
        out.push_str("\nWhat the restore worker handled (last run):\n\n| message: what it did | messages | handler time (sum) |\n|---|---:|---:|\n");
        for (kind, s) in &f.kinds {
            out.push_str(&format!(
                "| {kind} | {} | {} |\n",
                s.messages,
                stats::duration(s.busy)
            ));
        }
    }
    out
}
