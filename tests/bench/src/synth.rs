//! A long log chain from one real log backup: copies of `sql2016_log_RestoreTimeClean_1.trn`
//! whose LSNs and backup set GUID are rewritten so that each log starts where the one before
//! ended. The fixtures hold three logs after their full; a day of 15-minute logs is 96.
//!
//! The rewrite replaces every occurrence of the template's `FirstLSN` and `LastLSN` (10 bytes
//! each, as the `MQCI` metadata and its trailer copy store them) and of its `BackupSetGUID`
//! (16 bytes, SQL Server's mixed-endian order, as the `SSET` block stores it). Nothing else in
//! a log's header blocks covers those bytes with a checksum (MTF's checksums cover block and
//! stream headers only), so the copies parse as logs of one chain; the restore-time model and
//! the test server take them as they are (the test server reads no bytes either).

/// The template: the first log after `sql2016_full_RestoreTimeClean.bak`.
pub const TEMPLATE: &str = "sql2016_log_RestoreTimeClean_1.trn";

/// An LSN as stored: VLF sequence, block offset, slot.
type Parts = (u32, u32, u16);

/// The template's LSNs (MANIFEST.md: 39000000047400001 and 39000000054100001).
const FIRST: Parts = (39, 474, 1);
const LAST: Parts = (39, 541, 1);
/// The template's BackupSetGUID, eff03344-1bc7-43a9-aa21-7ba2cf1460a5, as stored.
const GUID: u128 = 0xeff0_3344_1bc7_43a9_aa21_7ba2_cf14_60a5;

/// How far each copy's LSNs move on (the template's own span).
const SPAN_BLOCKS: u32 = 541 - 474;

fn lsn_bytes((vlf, block, slot): Parts) -> [u8; 10] {
    let mut b = [0u8; 10];
    b[..4].copy_from_slice(&vlf.to_le_bytes());
    b[4..8].copy_from_slice(&block.to_le_bytes());
    b[8..].copy_from_slice(&slot.to_le_bytes());
    b
}

/// Log `i` of the chain (1-based): log 1 is the template itself, log `i` starts at log
/// `i - 1`'s `LastLSN`.
fn lsns(i: u32) -> (Parts, Parts) {
    if i <= 1 {
        return (FIRST, LAST);
    }
    let (vlf, block, slot) = LAST;
    let at = |n: u32| (vlf, block + n * SPAN_BLOCKS, slot);
    (at(i - 2), at(i - 1))
}

/// Every offset where `pattern` starts in `bytes`.
fn find_all(bytes: &[u8], pattern: &[u8]) -> Vec<usize> {
    bytes
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern)
        .map(|(i, _)| i)
        .collect()
}

/// `count` logs of one chain, the first being `template` (the bytes of [`TEMPLATE`]).
///
/// # Panics
/// Never for [`TEMPLATE`]; for another template, when its LSNs or GUID are not found.
pub fn log_chain(template: &[u8], count: u32) -> Vec<Vec<u8>> {
    let firsts = find_all(template, &lsn_bytes(FIRST));
    let lasts = find_all(template, &lsn_bytes(LAST));
    let guid = uuid::Uuid::from_u128(GUID).to_bytes_le();
    let guids = find_all(template, &guid);
    assert!(
        !firsts.is_empty() && !lasts.is_empty() && !guids.is_empty(),
        "the template is not {TEMPLATE}"
    );
    (1..=count)
        .map(|i| {
            let mut bytes = template.to_vec();
            let (first, last) = lsns(i);
            for &at in &firsts {
                bytes[at..at + 10].copy_from_slice(&lsn_bytes(first));
            }
            for &at in &lasts {
                bytes[at..at + 10].copy_from_slice(&lsn_bytes(last));
            }
            if i > 1 {
                let new = uuid::Uuid::from_u128(GUID ^ u128::from(i)).to_bytes_le();
                for &at in &guids {
                    bytes[at..at + 16].copy_from_slice(&new);
                }
            }
            bytes
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_synthesized_log_parses_as_the_next_log_of_the_chain() {
        let template = crate::fixtures::read(TEMPLATE).unwrap();
        let logs = log_chain(&template, 96);
        let mut last = None;
        let mut guids = std::collections::BTreeSet::new();
        for (i, log) in logs.iter().enumerate() {
            let size = log.len() as u64;
            let header = bakdrop_core::backup::summary::summarize(log, None, size)
                .unwrap_or_else(|r| panic!("log {}: {r:?}", i + 1));
            assert_eq!(
                header.backup_type,
                bakdrop_core::model::header::BackupKind::Log
            );
            if let Some(last) = last {
                assert_eq!(header.first_lsn, last, "log {}", i + 1);
            }
            assert!(header.last_lsn > header.first_lsn);
            last = Some(header.last_lsn);
            assert!(guids.insert(header.backup_set_guid), "log {}", i + 1);
        }
        assert_eq!(logs[0], template);
    }
}
