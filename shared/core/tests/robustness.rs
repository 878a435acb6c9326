//! The parser on damaged input: every fixture truncated at over a thousand lengths and with
//! single bits flipped at over a thousand positions each. It must never panic, never ask for more head than
//! there is, and name every failure.

use std::collections::BTreeMap;

use bakdrop_core::backup::{parse, BackupFile, ParseError, HEAD_LIMIT, TAIL_LIMIT};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak/");

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .unwrap_or_else(|e| panic!("{DIR}: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".bak") || n.ends_with(".trn"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "fixtures missing: {names:?}");
    names
        .into_iter()
        .map(|n| {
            let data = std::fs::read(format!("{DIR}{n}")).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, data)
        })
        .collect()
}

/// Parses `data` the way the pipeline reads an object of that size.
fn parse_object(data: &[u8], with_tail: bool) -> Result<BackupFile, ParseError> {
    let head = &data[..data.len().min(HEAD_LIMIT)];
    let tail = &data[data.len().saturating_sub(TAIL_LIMIT)..];
    parse(head, with_tail.then_some(tail), data.len() as u64)
}

/// Checks the contract on one outcome and tallies it.
fn record(
    tally: &mut BTreeMap<&'static str, usize>,
    outcome: &Result<BackupFile, ParseError>,
    head_len: usize,
    total: usize,
    case: &dyn Fn() -> String,
) {
    let kind = match outcome {
        Ok(file) => {
            assert!(!file.sets.is_empty(), "{}: Ok without a set", case());
            "ok"
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "{}: unnamed error", case());
            assert!(!e.is_transient(), "{}", case());
            match e {
                ParseError::NotABackup => "not a backup",
                ParseError::NeedMoreHead { needed } => {
                    assert!(
                        head_len < total,
                        "{}: asked for more than the whole object",
                        case()
                    );
                    assert!(
                        *needed > head_len && *needed <= HEAD_LIMIT,
                        "{}: needed {needed}",
                        case()
                    );
                    "need more head"
                }
                ParseError::Truncated => "truncated",
                ParseError::UnsupportedContainer(m) => {
                    assert!(!m.is_empty(), "{}", case());
                    "unsupported container"
                }
                ParseError::Damaged { what, .. } => {
                    assert!(!what.is_empty(), "{}", case());
                    "damaged"
                }
                ParseError::TooManySets { .. } => "too many sets",
            }
        }
    };
    *tally.entry(kind).or_default() += 1;
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

#[test]
fn truncated_fixtures_never_panic_and_fail_with_named_errors() {
    let mut tally = BTreeMap::new();
    let mut cases = 0;
    let mut positions = Vec::new();
    for (name, data) in fixtures() {
        let n = data.len();
        let mut lengths: Vec<usize> = (0..64).chain((64..0x4400).step_by(97)).collect();
        lengths.extend((0..0x4400).step_by(512).flat_map(|l| [l, l + 52, l + 74]));
        lengths.extend(
            (0..TAIL_LIMIT + 8192)
                .step_by(509)
                .map(|k| n.saturating_sub(k)),
        );
        lengths.extend([n / 2, n - 1, HEAD_LIMIT - 1, HEAD_LIMIT, HEAD_LIMIT + 1]);
        // Cuts spread over the whole object, parsed the way the pipeline reads (with the tail).
        let spread: Vec<usize> = (1..=560).map(|i| i * n / 561).collect();
        lengths.extend(&spread);
        lengths.retain(|l| *l <= n);
        lengths.sort_unstable();
        lengths.dedup();
        assert!(
            lengths.len() >= 1000,
            "{name}: only {} truncation positions",
            lengths.len()
        );
        positions.push((name.clone(), lengths.len()));
        for len in lengths {
            let cut = &data[..len];
            let tails: &[bool] = if spread.contains(&len) {
                &[true]
            } else {
                &[true, false]
            };
            for &with_tail in tails {
                let outcome = parse_object(cut, with_tail);
                let case = || format!("{name} cut at {len} (tail: {with_tail})");
                record(&mut tally, &outcome, len.min(HEAD_LIMIT), len, &case);
                // An object that lost its end is never taken for a complete backup with a tail.
                if with_tail && len < n && len >= 0x4000 && !name.contains("compressed") {
                    assert!(outcome.is_err(), "{}: accepted", case());
                }
                cases += 1;
            }
        }
    }
    println!("truncation positions per fixture: {positions:?}");
    println!("truncation cases: {cases}; outcomes: {tally:?}");
    assert!(cases > 10_000);
}

#[test]
fn bit_flipped_fixtures_never_panic_and_fail_with_named_errors() {
    let mut tally = BTreeMap::new();
    let mut cases = 0;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (name, mut data) in fixtures() {
        let n = data.len();
        let head_len = n.min(HEAD_LIMIT);
        let mut flips = 0;
        while flips < 1200 {
            // Mostly where the headers are (the first blocks, the last blocks), some anywhere.
            let pos = match rng.below(10) {
                0..=5 => rng.below(0x4000.min(n)),
                6..=8 => n - 1 - rng.below(0x8000.min(n)),
                _ => rng.below(n),
            };
            let bit = 1u8 << rng.below(8);
            data[pos] ^= bit;
            let outcome = parse_object(&data, true);
            data[pos] ^= bit;
            let case = || format!("{name} with bit {bit:#04x} of byte {pos} flipped");
            record(&mut tally, &outcome, head_len, n, &case);
            flips += 1;
        }
        cases += flips;
    }
    println!("bit-flip cases: {cases}; outcomes: {tally:?}");
    assert!(cases >= 20 * 1000);
}

#[test]
fn garbage_after_a_tape_signature_fails_with_named_errors() {
    let mut tally = BTreeMap::new();
    let mut rng = Rng(7);
    for i in 0..2000 {
        let len = 4 + rng.below(8192);
        let mut data: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        data[..4].copy_from_slice(if i % 2 == 0 { b"TAPE" } else { b"MSSQ" });
        let total = if i % 3 == 0 { len } else { len * 100 };
        let outcome = parse(&data, None, total as u64);
        let case = || format!("garbage case {i}");
        record(&mut tally, &outcome, len, total, &case);
    }
    println!("garbage outcomes: {tally:?}");
}
