//! Headers per second per core: `backup::parse` on each fixture's head and tail, sliced the way
//! validation reads them, on one thread. Each run repeats the parse for at least a minimum time;
//! the figure is the median over runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bakdrop_core::backup::parse;

use crate::fixtures;
use crate::splice::Spliced;
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

/// Measures every fixture.
///
/// # Errors
/// When the fixtures cannot be read.
pub fn run(plan: ParserPlan) -> anyhow::Result<Vec<ParserFigure>> {
    let mut figures = Vec::new();
    for name in fixtures::names()? {
        let real = fixtures::read(&name)?;
        let object = Spliced::new(&real, real.len() as u64)?;
        let (head, tail) = object.validation_reads();
        let size = object.size();
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
            outcome,
            rates,
        });
    }
    Ok(figures)
}

/// The figures as a Markdown table.
pub fn table(figures: &[ParserFigure]) -> String {
    let mut out = String::from(
        "| fixture | size | head + tail read | parse | headers/s/core (median) | min | max |\n\
         |---|---:|---:|---|---:|---:|---:|\n",
    );
    for f in figures {
        let min = f.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = f.rates.iter().copied().fold(0.0, f64::max);
        out.push_str(&format!(
            "| {} | {} | {} + {} | {} | {:.0} | {:.0} | {:.0} |\n",
            f.fixture,
            stats::bytes(f.size),
            stats::bytes(f.head_len as u64),
            stats::bytes(f.tail_len as u64),
            match &f.outcome {
                Ok(sets) => format!("ok, {sets} set(s)"),
                Err(e) => format!("error: {e}"),
            },
            f.median_rate(),
            min,
            max
        ));
    }
    out
}
