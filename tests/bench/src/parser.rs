//! Headers per second per core: `backup::parse` on each fixture's head and tail, read the way
//! validation reads them ([`bakdrop_core::validate::read_backup`]: the first 64 KiB and the last
//! 64 KiB, a longer head only when the parser asks), on one thread. Each run repeats the parse
//! for at least a minimum time; the figure is the median over runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bakdrop_core::backup::{parse, ParseError, HEAD_LIMIT, TAIL_LIMIT};
use bakdrop_core::validate::FIRST_HEAD;

use crate::fixtures;
use crate::stats::{self, median_f64};

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct ParserPlan {
    pub runs: usize,
    /// Each run parses for at least this long.
    pub min_run_time: Duration,
}

/// One fixture's figure.
#[derive(Debug, Clone)]
pub struct ParserFigure {
    pub fixture: String,
    pub size: u64,
    pub head_len: usize,
    pub tail_len: usize,
    /// Bytes validation reads (every range counted) and in how many reads.
    pub bytes_read: u64,
    pub reads: u32,
    /// `Ok(set count)` or the parse error.
    pub outcome: Result<usize, String>,
    /// Headers per second per run.
    pub rates: Vec<f64>,
}

impl ParserFigure {
    pub fn median_rate(&self) -> f64 {
        median_f64(&self.rates)
    }
}

/// The head and tail validation ends up parsing, and what it read to get them.
#[derive(Debug, Clone)]
pub struct Reads {
    pub head: Vec<u8>,
    pub tail: Option<Vec<u8>>,
    pub bytes_read: u64,
    pub reads: u32,
}

/// What [`bakdrop_core::validate::read_backup`] reads of `object` (the same steps, kept the same
/// by a test), with the bytes it parses last.
pub fn validation_reads(object: &[u8]) -> Reads {
    let size = object.len();
    let head_len = FIRST_HEAD.min(size);
    let tail_len = TAIL_LIMIT.min(size - head_len);
    let mut head = object[..head_len].to_vec();
    let tail = (tail_len > 0).then(|| object[size - tail_len..].to_vec());
    let mut bytes_read = (head_len + tail_len) as u64;
    let mut reads = 1 + u32::from(tail.is_some());
    for _ in 0..2 {
        match parse(&head, tail.as_deref(), size as u64) {
            Err(ParseError::NeedMoreHead { needed })
                if needed > head.len() && needed <= HEAD_LIMIT.min(size) =>
            {
                head = object[..needed].to_vec();
                bytes_read += needed as u64;
                reads += 1;
            }
            _ => break,
        }
    }
    Reads {
        head,
        tail,
        bytes_read,
        reads,
    }
}

/// Measures every fixture.
///
/// # Errors
/// When the fixtures cannot be read.
pub fn run(plan: ParserPlan) -> anyhow::Result<Vec<ParserFigure>> {
    let mut figures = Vec::new();
    for name in fixtures::names()? {
        let real = fixtures::read(&name)?;
        let reads = validation_reads(&real);
        let (head, tail) = (reads.head, reads.tail);
        let size = real.len() as u64;
        let outcome = parse(&head, tail.as_deref(), size)
            .map(|f| f.sets.len())
            .map_err(|e| e.to_string());
        let mut rates = Vec::with_capacity(plan.runs);
        for _ in 0..plan.runs {
            let start = Instant::now();
            let mut count = 0u64;
            while count == 0 || start.elapsed() < plan.min_run_time {
                for _ in 0..16 {
                    let parsed = parse(black_box(&head), black_box(tail.as_deref()), size);
                    black_box(&parsed);
                }
                count += 16;
            }
            rates.push(count as f64 / start.elapsed().as_secs_f64());
        }
        figures.push(ParserFigure {
            fixture: name,
            size,
            head_len: head.len(),
            tail_len: tail.as_ref().map_or(0, Vec::len),
            bytes_read: reads.bytes_read,
            reads: reads.reads,
            outcome,
            rates,
        });
    }
    Ok(figures)
}

/// The figures as a Markdown table.
pub fn table(figures: &[ParserFigure]) -> String {
    let mut out = String::from(
        "| fixture | size | validation reads (ranges) | head + tail parsed | parse | time per parse (median) | headers/s/core (median) | min | max |\n\
         |---|---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for f in figures {
        let min = f.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = f.rates.iter().copied().fold(0.0, f64::max);
        out.push_str(&format!(
            "| {} | {} | {} ({}) | {} + {} | {} | {} | {:.0} | {:.0} | {:.0} |\n",
            f.fixture,
            stats::bytes(f.size),
            stats::bytes(f.bytes_read),
            f.reads,
            stats::bytes(f.head_len as u64),
            stats::bytes(f.tail_len as u64),
            match &f.outcome {
                Ok(sets) => format!("ok, {sets} set(s)"),
                Err(e) => format!("error: {e}"),
            },
            stats::duration(std::time::Duration::from_secs_f64(
                1.0 / f.median_rate().max(1e-9)
            )),
            f.median_rate(),
            min,
            max
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_core::model::object::ObjectRef;
    use bakdrop_core::ports::fakes::{block_on, MemoryObjects};

    #[test]
    fn the_benchmark_reads_what_validation_reads() {
        for name in fixtures::names().expect("fixtures") {
            let bytes = fixtures::read(&name).expect("fixture");
            let objects = MemoryObjects::default();
            objects.put("b", "Db/f", bytes.clone());
            let object = ObjectRef {
                bucket: "b".into(),
                key: "Db/f".into(),
                version_id: None,
                etag: None,
                size: bytes.len() as u64,
            };
            let read =
                block_on(bakdrop_core::validate::read_backup(&objects, &object)).expect("read");
            let ours = validation_reads(&bytes);
            assert_eq!(
                (ours.bytes_read, ours.reads),
                (read.bytes_read, read.reads),
                "{name}"
            );
            assert_eq!(
                parse(&ours.head, ours.tail.as_deref(), bytes.len() as u64),
                read.parsed,
                "{name}"
            );
        }
    }
}
