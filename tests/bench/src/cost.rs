//! Cost per migration: the requests and Lambda time one validated file, one
//! restored step, one poll and one Complete take, counted on the whole pipeline
//! ([`crate::flow`]: every AWS request of the functions, by operation, and each handler's
//! time), priced at AWS's list prices, and the total for a 1 TB database with 96 log backups a
//! day over 7 days; beside it a Python peer's, with its measured start-up time.
//!
//! Prices (US East (N. Virginia), read 2026-12-01; only what an AWS page said is used as a
//! price, see [`PRICES`]):
//! - Lambda requests $0.20 per million, duration $0.00001667 per GB-second (x86): AWS
//!   whitepaper "How AWS Pricing Works", Lambda
//!   (docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html); Arm duration 20 %
//!   lower (AWS News Blog, "AWS Lambda Functions Powered by AWS Graviton2 Processor"): the
//!   functions are arm64 (template.yaml), so $0.000013336 per GB-second.
//! - The INIT phase (cold start) is billed like the handler's time for custom runtimes such as
//!   `provided.al2023`, and since 2025-08-01 for managed runtimes too (AWS Compute Blog, "AWS
//!   Lambda standardizes billing for INIT Phase").
//! - SQS, DynamoDB on-demand and S3 request prices: AWS's pricing pages render their tables in
//!   the browser, and the stored copies this was written from carry no numbers: not priced
//!   from an AWS page. An indicative figure from third-party pages is shown beside the counts,
//!   marked as such.

use std::time::Duration;

use crate::catchup::CatchupFigure;
use crate::flow::{KindStats, Usage};
use crate::latency::LatencyFigure;

/// Memory of every function (template.yaml, Globals).
pub const MEMORY_GB: f64 = 0.125;

/// A price and where it was read.
#[derive(Debug, Clone, Copy)]
pub struct Price {
    pub usd: f64,
    pub per: &'static str,
    pub source: &'static str,
    /// Read on an AWS page (else: a third-party page, indicative only).
    pub aws: bool,
}

/// The prices used, US East (N. Virginia), read 2026-12-01.
pub const PRICES: [(&str, Price); 6] = [
    (
        "lambda request",
        Price {
            usd: 0.20 / 1e6,
            per: "request",
            source: "AWS whitepaper How AWS Pricing Works, Lambda: $0.20 per 1 million requests",
            aws: true,
        },
    ),
    (
        "lambda GB-s arm64",
        Price {
            usd: 0.000_016_67 * 0.8,
            per: "GB-second",
            source: "same page: $0.00001667 per GB-second; AWS News Blog (Graviton2 Lambda): Arm duration 20 % lower",
            aws: true,
        },
    ),
    (
        "sqs request",
        Price {
            usd: 0.40 / 1e6,
            per: "request (64 KB)",
            source: "third party (cloudburn.io, Amazon SQS pricing guide, March 2026): $0.40 per million standard requests",
            aws: false,
        },
    ),
    (
        "dynamodb write unit",
        Price {
            usd: 0.625 / 1e6,
            per: "write request unit",
            source: "third party (airbyte.com, DynamoDB pricing, July 2025): $0.625 per million WRU",
            aws: false,
        },
    ),
    (
        "dynamodb read unit",
        Price {
            usd: 0.125 / 1e6,
            per: "read request unit",
            source: "third party (airbyte.com, same page): $0.125 per million RRU",
            aws: false,
        },
    ),
    (
        "s3 get",
        Price {
            usd: f64::NAN,
            per: "GET/HEAD request",
            source: "not found on a page read here: not priced",
            aws: false,
        },
    ),
];

fn price(name: &str) -> f64 {
    PRICES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(f64::NAN, |(_, p)| p.usd)
}

/// What one unit of work takes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Unit {
    pub invocations: f64,
    /// Handler time, seconds.
    pub seconds: f64,
    pub s3_requests: f64,
    pub dynamodb_requests: f64,
    pub read_units: f64,
    pub write_units: f64,
    /// SQS requests: the functions' sends, and the event source mapping's receive and delete
    /// per invocation it makes.
    pub sqs_requests: f64,
}

impl Unit {
    fn from(stats: &KindStats, per: f64, invocations: f64, esm: bool) -> Unit {
        let u: &Usage = &stats.usage;
        let per = per.max(1.0);
        Unit {
            invocations: invocations / per,
            seconds: stats.busy.as_secs_f64() / per,
            s3_requests: u.requests_of("S3") as f64 / per,
            dynamodb_requests: u.requests_of("DynamoDB") as f64 / per,
            read_units: u.read_units() / per,
            write_units: u.write_units() / per,
            sqs_requests: (u.requests_of("SQS") as f64 + if esm { 2.0 * invocations } else { 0.0 })
                / per,
        }
    }

    fn plus(self, o: Unit) -> Unit {
        Unit {
            invocations: self.invocations + o.invocations,
            seconds: self.seconds + o.seconds,
            s3_requests: self.s3_requests + o.s3_requests,
            dynamodb_requests: self.dynamodb_requests + o.dynamodb_requests,
            read_units: self.read_units + o.read_units,
            write_units: self.write_units + o.write_units,
            sqs_requests: self.sqs_requests + o.sqs_requests,
        }
    }

    fn times(self, n: f64) -> Unit {
        Unit {
            invocations: self.invocations * n,
            seconds: self.seconds * n,
            s3_requests: self.s3_requests * n,
            dynamodb_requests: self.dynamodb_requests * n,
            read_units: self.read_units * n,
            write_units: self.write_units * n,
            sqs_requests: self.sqs_requests * n,
        }
    }

    /// Lambda's part (priced from AWS pages).
    pub fn lambda_usd(&self) -> f64 {
        self.invocations * price("lambda request")
            + self.seconds * MEMORY_GB * price("lambda GB-s arm64")
    }

    /// SQS and DynamoDB at the indicative third-party prices.
    pub fn indicative_usd(&self) -> f64 {
        self.sqs_requests * price("sqs request")
            + self.write_units * price("dynamodb write unit")
            + self.read_units * price("dynamodb read unit")
    }
}

/// Sums the kinds whose name starts with `prefix` (and not with any of `except`).
fn kinds(
    all: &std::collections::BTreeMap<String, KindStats>,
    prefix: &str,
    except: &[&str],
) -> KindStats {
    let mut sum = KindStats::default();
    for (k, s) in all {
        if k.starts_with(prefix) && !except.iter().any(|e| k.starts_with(e)) {
            sum.messages += s.messages;
            sum.busy += s.busy;
            sum.usage.add(&s.usage);
        }
    }
    sum
}

/// The units.
#[derive(Debug, Clone)]
pub struct Units {
    pub file: Unit,
    pub step: Unit,
    pub poll: Unit,
    pub complete: Unit,
    /// Looks at a running log restore per step, from the catch-up run.
    pub running_polls_per_step: f64,
}

const RUNNING: &str = "worker: poll: still running";
const FINISH: &str = "worker: finish";

/// Measured units: files, steps and polls as a synchronizing migration meets them (one log at
/// a time, `steady`), Complete from the same run (its invocation and the worker's looks at the
/// finish task), looks per step from a catch-up run at the restore times it models.
pub fn units(steady: &LatencyFigure, catchup: &CatchupFigure) -> Units {
    let files = steady.submitted.len() as f64;
    let validate = kinds(&steady.kinds, crate::flow::VALIDATE, &[]);
    let file = Unit::from(&validate, files, files, false);
    let polls = kinds(&steady.kinds, RUNNING, &[]);
    let poll_count = polls.messages as f64;
    let finishes = kinds(&steady.kinds, FINISH, &[]);
    let work = kinds(&steady.kinds, "worker: ", &[RUNNING, FINISH]);
    // Invocations left once each running poll and each finish look had its own.
    let step_invocations =
        (steady.worker_invocations as f64 - poll_count - finishes.messages as f64).max(files);
    let step = Unit::from(&work, files, step_invocations, true);
    let catchup_polls = kinds(&catchup.kinds, RUNNING, &[]);
    let poll = if poll_count > 0.0 {
        Unit::from(&polls, poll_count, poll_count, true)
    } else {
        let n = catchup_polls.messages as f64;
        Unit::from(&catchup_polls, n, n, true)
    };
    let n = f64::from(u32::try_from(steady.completes.len()).unwrap_or(1).max(1));
    let complete = Unit::from(&steady.complete_usage, n, n, false).plus(Unit::from(
        &finishes,
        n,
        finishes.messages as f64,
        true,
    ));
    Units {
        file,
        step,
        poll,
        complete,
        running_polls_per_step: catchup.running_polls_per_step(),
    }
}

/// The 1 TB migration: a full and 96 logs a day for 7 days.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub logs: f64,
    /// Looks at the full while it restores: one per poll interval (60 s) over its restore time.
    pub full_polls: f64,
    pub full_restore: Duration,
    /// Invocations starting a new execution environment (cold starts): each upload finds both
    /// functions cold (15 minutes apart), the looks within a step find them warm.
    pub cold_starts: f64,
}

impl Migration {
    /// 1 TB restored at `mb_per_s` (an assumption: the target's speed is not bakdrop's).
    pub fn one_terabyte(mb_per_s: f64) -> Migration {
        let logs = 96.0 * 7.0;
        let seconds = 1e12 / (mb_per_s * 1e6);
        Migration {
            logs,
            full_polls: (seconds / 60.0).ceil() + 2.0,
            full_restore: Duration::from_secs_f64(seconds),
            cold_starts: 2.0 * (logs + 1.0) + 1.0,
        }
    }
}

/// Start-up time and memory of one function and of the Python peer (figure 2).
#[derive(Debug, Clone, Copy)]
pub struct StartUp {
    pub ours: Duration,
    pub peer: Duration,
}

/// The cost table as Markdown.
pub fn table(u: &Units, m: &Migration, start: &StartUp) -> String {
    let mut out = String::from("Per unit of work (measured counts):\n\n| unit | invocations | handler time | S3 requests | DynamoDB requests (RRU / WRU) | SQS requests | Lambda $ (AWS prices) | SQS + DynamoDB $ (indicative) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, unit) in [
        ("one validated file", u.file),
        ("one restored step (job, submit, record)", u.step),
        ("one poll of a running restore", u.poll),
        ("one Complete", u.complete),
    ] {
        out.push_str(&format!(
            "| {name} | {:.2} | {:.0} ms | {:.2} | {:.1} ({:.1} / {:.1}) | {:.2} | {:.8} | {:.8} |\n",
            unit.invocations,
            unit.seconds * 1e3,
            unit.s3_requests,
            unit.dynamodb_requests,
            unit.read_units,
            unit.write_units,
            unit.sqs_requests,
            unit.lambda_usd(),
            unit.indicative_usd(),
        ));
    }
    let files = m.logs + 1.0;
    let polls = m.full_polls + m.logs * u.running_polls_per_step;
    let total = u
        .file
        .times(files)
        .plus(u.step.times(files))
        .plus(u.poll.times(polls))
        .plus(u.complete);
    let init = |d: Duration| Unit {
        seconds: d.as_secs_f64() * m.cold_starts,
        ..Unit::default()
    };
    let ours = total.plus(init(start.ours));
    let peer = total.plus(init(start.peer));
    out.push_str(&format!(
        "\nOne migration of 1 TB with 96 log backups a day for 7 days: {} files, {} steps, {:.0} polls ({:.0} while the full restores for {:.1} h, {:.2} per log step), one Complete, {:.0} cold starts:\n\n\
         | | invocations | Lambda time (GB-s at 128 MB) | S3 requests | DynamoDB RRU / WRU | SQS requests | Lambda $ (AWS prices) | SQS + DynamoDB $ (indicative) | total $ |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        files,
        files,
        polls,
        m.full_polls,
        m.full_restore.as_secs_f64() / 3600.0,
        u.running_polls_per_step,
        m.cold_starts,
    ));
    for (name, t, start) in [
        ("bakdrop (Rust)", ours, start.ours),
        ("Python peer", peer, start.peer),
    ] {
        out.push_str(&format!(
            "| {name} (start-up {:.1} ms) | {:.0} | {:.1} | {:.0} | {:.0} / {:.0} | {:.0} | {:.4} | {:.4} | {:.4} |\n",
            start.as_secs_f64() * 1e3,
            t.invocations,
            t.seconds * MEMORY_GB,
            t.s3_requests,
            t.read_units,
            t.write_units,
            t.sqs_requests,
            t.lambda_usd(),
            t.indicative_usd(),
            t.lambda_usd() + t.indicative_usd(),
        ));
    }
    out.push_str("\nPrices (US East (N. Virginia), read 2026-12-01):\n\n| item | price | source |\n|---|---:|---|\n");
    for (name, p) in PRICES {
        out.push_str(&format!(
            "| {name} | {} per {} | {}{} |\n",
            if p.usd.is_nan() {
                "—".to_owned()
            } else {
                format!("${:.10}", p.usd)
            },
            p.per,
            p.source,
            if p.aws { "" } else { " (not an AWS page)" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terabyte_at_200_mb_per_second_is_polled_once_a_minute_for_83_minutes() {
        let m = Migration::one_terabyte(200.0);
        assert_eq!(m.logs, 672.0);
        assert_eq!(m.full_polls, 84.0 + 2.0);
        assert_eq!(m.cold_starts, 2.0 * 673.0 + 1.0);
    }

    #[test]
    fn lambda_is_priced_per_request_and_per_gigabyte_second_at_128_mb() {
        let unit = Unit {
            invocations: 1.0,
            seconds: 0.1,
            ..Unit::default()
        };
        let want = 0.2e-6 + 0.1 * 0.125 * 0.000_016_67 * 0.8;
        assert!((unit.lambda_usd() - want).abs() < 1e-15);
    }
}
