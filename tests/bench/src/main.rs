//! `bakdrop-bench`: runs one benchmark and prints its figures as Markdown. Driven by
//! `infra/bench.sh`, which starts the local AWS endpoint and exports its environment; see
//! BENCHMARKS.md for the figures and how they were taken.

use std::time::Duration;

use anyhow::Context;
use bakdrop_bench::catchup::{self, CatchupPlan};
use bakdrop_bench::ingest::{self, IngestPlan};
use bakdrop_bench::latency::{self, LatencyPlan};
use bakdrop_bench::parser::{self, ParserPlan};
use bakdrop_bench::restores::{self, RestorePlan};
use bakdrop_bench::validation::{self, ValidationPlan};
use bakdrop_test_support::aws::LocalAws;
use clap::{Parser, Subcommand};

/// bakdrop's benchmarks. Needs the local AWS endpoint's environment (source
/// .local/moto.env) for everything but `parser`.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Figure 1: bytes read and wall time of one validation versus object size.
    Validation {
        /// Object sizes in MiB.
        #[arg(long, value_delimiter = ',', default_value = "1,256,2048")]
        sizes_mib: Vec<u64>,
        /// Validations (and 64 KiB GETs) per size.
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Whole-object downloads per size.
        #[arg(long, default_value_t = 3)]
        download_runs: usize,
        /// Hold every response of the range-honest endpoint back this long before its first
        /// byte (a modelled network round trip; moto is measured as it is).
        #[arg(long, default_value_t = 0)]
        first_byte_ms: u64,
    },
    /// Figure 3a: many backups dropped at once until all are validated and queued.
    Ingest {
        #[arg(long, default_value_t = 500)]
        uploads: usize,
        /// Concurrent validate-upload "Lambdas", each taking batches of 10 events.
        #[arg(long, default_value_t = 10)]
        consumers: usize,
        /// Concurrent PUTs while dropping.
        #[arg(long, default_value_t = 16)]
        uploaders: usize,
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Figure 3b: many migrations (full + log) restored concurrently on the RDS emulator.
    Restores {
        #[arg(long, default_value_t = 50)]
        migrations: usize,
        /// Concurrent restore-worker "Lambdas" (template: MaximumConcurrency 5).
        #[arg(long, default_value_t = 5)]
        workers: usize,
        /// Emulated duration of one restore, in milliseconds.
        #[arg(long, default_value_t = 500)]
        restore_ms: u64,
        /// Worker poll interval and busy retry, in seconds (SQS delays are whole seconds).
        #[arg(long, default_value_t = 1)]
        poll_secs: u64,
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
    },
    /// Figure 6: a full and a day of logs uploaded at once, until the last log is restored,
    /// against the sum of the target's own restore times (production delays).
    Catchup {
        /// rds, native or both.
        #[arg(long, default_value = "both")]
        dialect: String,
        #[arg(long, default_value_t = 96)]
        logs: u32,
        /// The full's restore time, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        full_ms: u64,
        /// The logs' restore times, from night to midday, in milliseconds.
        #[arg(long, default_value_t = 3_000)]
        log_min_ms: u64,
        #[arg(long, default_value_t = 9_000)]
        log_max_ms: u64,
        #[arg(long, default_value_t = 5)]
        workers: usize,
        #[arg(long, default_value_t = 1)]
        runs: usize,
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
    },
    /// Figure 7: upload → RESTORE submitted and Complete → ONLINE (production delays).
    Latency {
        /// rds, native or both.
        #[arg(long, default_value = "both")]
        dialect: String,
        #[arg(long, default_value_t = 100)]
        uploads: u32,
        #[arg(long, default_value_t = 10)]
        completes: u32,
        /// How long the test server takes to restore one backup, in milliseconds.
        #[arg(long, default_value_t = 500)]
        restore_ms: u64,
        /// How long bringing a database online takes (an RDS FINISH_RESTORE task, a native
        /// recovery job), in milliseconds (comma-separated: one run each).
        #[arg(long, value_delimiter = ',', default_value = "2000,30000")]
        finish_ms: Vec<u64>,
        #[arg(long, default_value_t = 5)]
        workers: usize,
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
    /// Figure 8: cost per unit of work and per migration, from the counts of a catch-up run and
    /// of Completes (RDS, production delays).
    Cost {
        #[arg(long, default_value_t = 24)]
        logs: u32,
        /// The target's speed restoring the 1 TB full (an assumption), MB/s.
        #[arg(long, default_value_t = 200.0)]
        full_mb_per_s: f64,
        /// The catch-up run's modelled restore times: the full's, and the longest log's (the
        /// logs run from a third of it to all of it), in milliseconds; the steady run's logs
        /// take half of it.
        #[arg(long, default_value_t = 20_000)]
        full_ms: u64,
        #[arg(long, default_value_t = 6_000)]
        log_ms: u64,
        /// Start-up (init) of bakdrop's functions and of the Python peer, in milliseconds
        /// (figure 2's medians: validate-upload 6.0, restore-worker 9.6; peer 264.5).
        #[arg(long, default_value_t = 7.8)]
        ours_init_ms: f64,
        #[arg(long, default_value_t = 264.5)]
        peer_init_ms: f64,
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
    /// Figure 4: headers per second per core of the parser on every fixture.
    Parser {
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Minimum time of one run, in milliseconds.
        #[arg(long, default_value_t = 500)]
        min_run_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Parser { runs, min_run_ms } = cli.command {
        // Single-threaded on purpose: the figure is per core.
        let figures = parser::run(ParserPlan {
            runs,
            min_run_time: Duration::from_millis(min_run_ms),
        })?;
        println!("{}", parser::table(&figures));
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_aws(cli.command))
}

async fn run_aws(command: Command) -> anyhow::Result<()> {
    let aws = LocalAws::from_env().await.map_err(anyhow::Error::msg)?;
    match command {
        Command::Validation {
            sizes_mib,
            runs,
            download_runs,
            first_byte_ms,
        } => {
            let plan = ValidationPlan {
                sizes: sizes_mib.iter().map(|m| m << 20).collect(),
                runs,
                download_runs,
                first_byte_latency: Duration::from_millis(first_byte_ms),
            };
            let figures = validation::run(&aws, &plan).await?;
            println!("{}", validation::table(&figures, plan.first_byte_latency));
        }
        Command::Ingest {
            uploads,
            consumers,
            uploaders,
            timeout_secs,
        } => {
            let plan = IngestPlan {
                uploads,
                consumers,
                uploaders,
                timeout: Duration::from_secs(timeout_secs),
            };
            let figure = ingest::run(&aws, &plan).await?;
            println!("{}", ingest::table(&figure));
            if figure.job_migrations != uploads || figure.queued != uploads {
                anyhow::bail!(
                    "{} uploads, {} queued, jobs for {} migrations: not every upload got a job",
                    uploads,
                    figure.queued,
                    figure.job_migrations
                );
            }
        }
        Command::Catchup {
            dialect,
            logs,
            full_ms,
            log_min_ms,
            log_max_ms,
            workers,
            runs,
            timeout_secs,
        } => {
            let mut figures = Vec::new();
            let mut last_plan = None;
            for run in 0..runs {
                for dialect in dialects(&dialect)? {
                    let plan = CatchupPlan {
                        dialect,
                        logs,
                        full: Duration::from_millis(full_ms),
                        log_min: Duration::from_millis(log_min_ms),
                        log_max: Duration::from_millis(log_max_ms),
                        workers,
                        validators: 10,
                        timeout: Duration::from_secs(timeout_secs),
                    };
                    eprintln!("catchup: run {} of {runs}, {dialect:?}", run + 1);
                    figures.push(catchup::run(&aws, &plan).await?);
                    last_plan = Some(plan);
                }
            }
            if let Some(plan) = last_plan {
                println!("{}", catchup::table(&plan, &figures));
            }
        }
        Command::Latency {
            dialect,
            uploads,
            completes,
            restore_ms,
            finish_ms,
            workers,
            timeout_secs,
        } => {
            let mut figures = Vec::new();
            for dialect in dialects(&dialect)? {
                // Both dialects bring the database online in a task (RDS FINISH_RESTORE, a
                // native Agent job running WITH RECOVERY): each finish length is timed.
                for (n, finish) in finish_ms.iter().copied().enumerate() {
                    let plan = LatencyPlan {
                        dialect,
                        // Uploads are timed once per dialect.
                        uploads: if n == 0 { uploads } else { 0 },
                        completes,
                        restore_time: Duration::from_millis(restore_ms),
                        finish_time: Duration::from_millis(finish),
                        workers,
                        timeout: Duration::from_secs(timeout_secs),
                    };
                    eprintln!("latency: {dialect:?}, finish task {finish} ms");
                    figures.push(latency::run(&aws, &plan).await?);
                }
            }
            println!("{}", latency::table(&figures));
        }
        Command::Cost {
            logs,
            full_mb_per_s,
            full_ms,
            log_ms,
            ours_init_ms,
            peer_init_ms,
            timeout_secs,
        } => {
            use bakdrop_bench::cost;
            use bakdrop_core::tsql::Dialect;
            let plan = CatchupPlan {
                dialect: Dialect::Rds,
                logs,
                full: Duration::from_millis(full_ms),
                log_min: Duration::from_millis(log_ms / 3),
                log_max: Duration::from_millis(log_ms),
                workers: 5,
                validators: 10,
                timeout: Duration::from_secs(timeout_secs),
            };
            eprintln!("cost: a catch-up of {logs} logs (RDS)");
            let restored = catchup::run(&aws, &plan).await?;
            eprintln!("cost: {logs} logs one at a time, then Completes (RDS, 2 s finish task)");
            let steady = latency::run(
                &aws,
                &LatencyPlan {
                    dialect: Dialect::Rds,
                    uploads: logs,
                    completes: 3,
                    restore_time: Duration::from_millis(log_ms / 2),
                    finish_time: Duration::from_secs(2),
                    workers: 5,
                    timeout: Duration::from_secs(timeout_secs),
                },
            )
            .await?;
            println!("{}", catchup::table(&plan, std::slice::from_ref(&restored)));
            let units = cost::units(&steady, &restored);
            println!(
                "{}",
                cost::table(
                    &units,
                    &cost::Migration::one_terabyte(full_mb_per_s),
                    &cost::StartUp {
                        ours: Duration::from_secs_f64(ours_init_ms / 1e3),
                        peer: Duration::from_secs_f64(peer_init_ms / 1e3),
                    },
                )
            );
        }
        Command::Restores {
            migrations,
            workers,
            restore_ms,
            poll_secs,
            timeout_secs,
        } => {
            let plan = RestorePlan {
                migrations,
                workers,
                restore_time: Duration::from_millis(restore_ms),
                poll_interval: Duration::from_secs(poll_secs),
                timeout: Duration::from_secs(timeout_secs),
            };
            let figure = restores::run(&aws, &plan).await?;
            println!("{}", restores::table(&figure));
            for f in &figure.failed {
                println!("- failed: {f}");
            }
            if figure.synchronizing != migrations || figure.max_concurrent > figure.cap {
                anyhow::bail!(
                    "{} of {migrations} migrations Synchronizing, max {} concurrent tasks (cap {})",
                    figure.synchronizing,
                    figure.max_concurrent,
                    figure.cap
                );
            }
        }
        Command::Parser { .. } => {}
    }
    Ok(())
}

/// The dialects a `--dialect` names: `rds`, `native` or `both`.
fn dialects(name: &str) -> anyhow::Result<Vec<bakdrop_core::tsql::Dialect>> {
    use bakdrop_core::tsql::Dialect;
    match name {
        "rds" => Ok(vec![Dialect::Rds]),
        "native" => Ok(vec![Dialect::Native]),
        "both" => Ok(vec![Dialect::Rds, Dialect::Native]),
        other => anyhow::bail!("--dialect {other}: rds, native or both"),
    }
}
