//! Cold start (figure 2 of BENCHMARKS.md): cold start, binary size and peak RSS of each function binary, beside a
//! Python peer timed the same way.
//!
//! Every function is started as a process against a local Lambda Runtime API
//! (`bakdrop_test_support::lambda::LocalLambda`), with the environment Lambda and the stack's template
//! give it (table, queue, secret on the local AWS endpoint). Cold start = process start → its
//! first `GET /runtime/invocation/next`, i.e. everything its `main` does before it can take an
//! invocation (SDK configuration, reading the target's secret where the function does). The
//! peer is a Python function doing what the Python equivalent of validate-upload would do at
//! init (import boto3, create its S3, SQS and DynamoDB clients) on the Runtime API with no runtime
//! library in between (a lower bound for a real Python Lambda).
//!
//! Peak RSS while validating is validate-upload's `VmHWM` after it validated one object of
//! `--big-mib` MiB (a real backup's head and tail around a zero filler) served by the
//! range-honest loopback S3 endpoint, its status record and job written to the local endpoint.
//!
//! Needs the local AWS endpoint's environment (`source .local/moto.env`).
//!
//!   coldstart --bin-dir target/release [--runs 15] [--big-mib 2048] [--python .venv-infra/bin/python]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use bakdrop_bench::endpoint::RangeEndpoint;
use bakdrop_bench::splice::Spliced;
use bakdrop_bench::stats::Samples;
use bakdrop_test_support::aws::{unique_name, LocalAws};
use bakdrop_test_support::lambda::{LocalLambda, Outcome};
use clap::Parser;
use serde_json::json;

const FUNCTIONS: [&str; 4] = [
    "validate-upload",
    "restore-worker",
    "migration-status",
    "complete-migration",
];
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/bak/sql2016_full_RestoreTimeClean.bak"
);
const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lambda/python_bootstrap.py");

#[derive(Debug, Parser)]
struct Args {
    /// Folder holding the four function binaries (a release build).
    #[arg(long)]
    bin_dir: PathBuf,
    /// Cold starts per function.
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// Size of the object validated for the RSS figure, in MiB (0: skip).
    #[arg(long, default_value_t = 2048)]
    big_mib: u64,
    /// Python with boto3 for the peer (default: the local endpoint's venv).
    #[arg(long, default_value = ".venv-infra/bin/python")]
    python: PathBuf,
}

#[derive(Debug)]
struct Row {
    name: String,
    size: Option<u64>,
    init: Samples,
    rss_kib: Vec<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let aws = LocalAws::get().await;
    let stack = aws.create_stack().await.context("stack")?;
    let secret_name = unique_name("target");
    aws_sdk_secretsmanager::Client::new(&bakdrop_aws::config::load().await)
        .create_secret()
        .name(&secret_name)
        .secret_string(
            json!({"username": "admin", "password": "not-a-real-password", "host": "127.0.0.1", "port": 1})
                .to_string(),
        )
        .send()
        .await
        .context("secret")?;
    let forwarded: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    let mut env: Vec<(String, String)> = forwarded.clone();
    env.extend(
        [
            ("STATUS_TABLE", stack.table.as_str()),
            ("RESTORE_QUEUE_URL", stack.restore_queue.as_str()),
            ("TARGET_SQLSERVER_VERSION", "2016"),
            ("TARGET_SECRET_ARN", secret_name.as_str()),
            ("TARGET_DIALECT", "rds"),
            ("TARGET_TLS", "off"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let lambda = LocalLambda::start().await?;
    let mut rows = Vec::new();
    for function in FUNCTIONS {
        let binary = args.bin_dir.join(function);
        if !binary.is_file() {
            bail!("{} is not built", binary.display());
        }
        let size = std::fs::metadata(&binary)?.len();
        rows.push(measure(&lambda, function, &binary, &[], &env, args.runs, Some(size)).await?);
    }
    let mut peer_env = forwarded;
    peer_env.push(("PEER_IMPORTS".into(), "boto3".into()));
    rows.push(
        measure(
            &lambda,
            "python peer (boto3)",
            &args.python,
            &[PEER],
            &peer_env,
            args.runs,
            None,
        )
        .await?,
    );

    println!(
        "### Cold start (process start → first poll of the Runtime API), binary size, idle RSS\n"
    );
    println!("{} cold starts each; median [min – max].\n", args.runs);
    println!("| function | binary (as built; release: stripped) | init median [min – max] | RSS after init (median) |");
    println!("|---|---|---|---|");
    for r in &rows {
        let mut rss = r.rss_kib.clone();
        rss.sort_unstable();
        let median_rss = rss.get(rss.len() / 2).copied().unwrap_or(0);
        println!(
            "| {} | {} | {:.1} ms [{:.1} – {:.1}] | {:.1} MiB |",
            r.name,
            r.size.map_or("—".into(), |s| format!(
                "{:.2} MiB",
                s as f64 / 1_048_576.0
            )),
            ms(r.init.median()),
            ms(r.init.min()),
            ms(r.init.max()),
            median_rss as f64 / 1024.0
        );
    }
    if let Some(peer) = rows.last() {
        println!();
        for r in &rows[..rows.len() - 1] {
            println!(
                "- {}: Python peer's median init is {:.1}× ours",
                r.name,
                ms(peer.init.median()) / ms(r.init.median()).max(0.001)
            );
        }
    }

    if args.big_mib > 0 {
        let rss = validate_big(&lambda, &args.bin_dir, &env, args.big_mib, &stack.bucket).await?;
        println!(
            "\n### validate-upload peak RSS while validating a {} MiB object\n\n- VmHWM after the validation: {:.1} MiB (target ≤ 48 MiB)",
            args.big_mib,
            rss as f64 / 1024.0
        );
    }
    lambda.stop().await;
    bakdrop_bench::cleanup::stack(&aws, &stack).await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(
    lambda: &LocalLambda,
    label: &str,
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    runs: usize,
    size: Option<u64>,
) -> anyhow::Result<Row> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut row = Row {
        name: label.to_owned(),
        size,
        init: Samples::new(),
        rss_kib: Vec::new(),
    };
    let log = std::env::temp_dir().join(format!("bakdrop-coldstart-{}.log", std::process::id()));
    for run in 0..runs {
        let name = format!("{label}-{run}");
        lambda
            .spawn(&name, program, args, &env, Some(&log))
            .await
            .with_context(|| format!("starting {}", program.display()))?;
        let cold = lambda.cold_start(&name).await.with_context(|| {
            format!(
                "{label} did not reach its first poll; its output: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        row.init.push(cold.init);
        row.rss_kib.push(lambda.peak_rss_kib(&name)?);
        lambda.kill(&name).await;
    }
    let _ = std::fs::remove_file(&log);
    Ok(row)
}

async fn validate_big(
    lambda: &LocalLambda,
    bin_dir: &Path,
    env: &[(String, String)],
    mib: u64,
    bucket: &str,
) -> anyhow::Result<u64> {
    let backup = std::fs::read(FIXTURE)?;
    let object = Spliced::new(&backup, mib << 20).context("splice")?;
    let endpoint = RangeEndpoint::start().await?;
    let key = "Big/full.bak";
    let object = endpoint.insert(bucket, key, object);
    let s3 = endpoint.url();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("AWS_ENDPOINT_URL_S3", &s3));
    lambda
        .spawn(
            "validate-big",
            &bin_dir.join("validate-upload"),
            &[],
            &env,
            None,
        )
        .await?;
    lambda.cold_start("validate-big").await?;
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-29T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "bench"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "bench",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": object.size, "eTag": object.etag, "sequencer": "0"}}
    }]});
    match lambda.invoke("validate-big", event).await? {
        Outcome::Ok(summary) if summary["queued"] == 1 => {}
        other => bail!("the {mib} MiB object was not validated and queued: {other:?}"),
    }
    let rss = lambda.peak_rss_kib("validate-big")?;
    lambda.kill("validate-big").await;
    Ok(rss)
}
