//! bakdrop's benchmarks, run by `infra/bench.sh`; figures published in BENCHMARKS.md.
//!
//! # Layout
//! - [`stats`]: samples, medians and the formatting of durations and rates.
//! - [`cleanup`]: removes what a benchmark created on the local endpoint.
//! - [`endpoint`]: a range-honest S3 GetObject endpoint on loopback (moto is not).
//! - [`fixtures`]: the real backups of `tests/fixtures/bak`.
//! - [`splice`]: big objects made of a real backup's head and tail around a zero filler.
//! - [`parser`]: headers per second per core of `backup::parse` on every fixture.
//! - [`validation`]: bytes read and wall time of one validation against the local S3, by size.
//! - [`ingest`]: many backups dropped at once, through the real S3 → SQS notification path.
//! - [`restores`]: many migrations restored at once against the TDS emulator (RDS dialect).
//! - [`synth`]: a long log chain made from one real log backup.
//! - [`flow`]: the whole pipeline (validate and restore fleets, production delays), every AWS
//!   request its functions make counted.
//! - [`catchup`]: a full and a day of logs uploaded at once, until the last log is restored.
//! - [`latency`]: upload → RESTORE submitted, and Complete → ONLINE, one at a time.
//! - [`cost`]: what a validated file, a restored step, a poll and a migration cost.

pub mod catchup;
pub mod cleanup;
pub mod cost;
pub mod endpoint;
pub mod fixtures;
pub mod flow;
pub mod ingest;
pub mod latency;
pub mod parser;
pub mod restores;
pub mod splice;
pub mod stats;
pub mod synth;
pub mod validation;
