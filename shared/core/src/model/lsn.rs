//! Log sequence numbers, as SQL Server's `RESTORE HEADERONLY` prints them.
//!
//! An LSN is three numbers: the virtual log file sequence, the block offset within it and the
//! slot within the block. `RESTORE HEADERONLY` prints them as one decimal, the block offset
//! zero-padded to 10 digits and the slot to 5, so `(39, 488, 71)` reads `39000000048800071`.
//! Ordering the decimal orders the LSNs, which is all the restore chain needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A log sequence number. `Lsn::ZERO` means "none" (e.g. `DatabaseBackupLSN` of a first full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(u128);

/// Why a text is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an LSN: {0:?} (expected up to 25 decimal digits, as RESTORE HEADERONLY prints)")]
pub struct LsnParseError(String);

impl Lsn {
    /// The absent LSN.
    pub const ZERO: Lsn = Lsn(0);

    /// Builds an LSN from its parts as stored on disk.
    pub fn from_parts(vlf_sequence: u32, block_offset: u32, slot: u16) -> Lsn {
        Lsn(u128::from(vlf_sequence) * 1_000_000_000_000_000
            + u128::from(block_offset) * 100_000
            + u128::from(slot))
    }

    /// Reads the 10-byte on-disk form: u32 VLF sequence, u32 block offset, u16 slot (LE).
    pub fn from_le_bytes(bytes: [u8; 10]) -> Lsn {
        let vlf = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let block = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let slot = u16::from_le_bytes([bytes[8], bytes[9]]);
        Lsn::from_parts(vlf, block, slot)
    }

    /// The decimal value.
    pub fn value(self) -> u128 {
        self.0
    }

    /// True for the absent LSN.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 25 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LsnParseError(s.to_owned()));
        }
        s.parse::<u128>()
            .map(Lsn)
            .map_err(|_| LsnParseError(s.to_owned()))
    }
}

// LSNs travel as decimal strings: JSON numbers lose precision past 2^53 in most readers.
impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_print_as_restore_headeronly_does() {
        assert_eq!(
            Lsn::from_parts(39, 488, 71).to_string(),
            "39000000048800071"
        );
        assert_eq!(
            Lsn::from_parts(12863, 52, 61).to_string(),
            "12863000000005200061"
        );
    }

    #[test]
    fn on_disk_bytes_decode_little_endian() {
        let mut raw = [0u8; 10];
        raw[0..4].copy_from_slice(&39u32.to_le_bytes());
        raw[4..8].copy_from_slice(&488u32.to_le_bytes());
        raw[8..10].copy_from_slice(&71u16.to_le_bytes());
        assert_eq!(Lsn::from_le_bytes(raw), Lsn::from_parts(39, 488, 71));
    }

    #[test]
    fn largest_parts_fit_and_order_is_numeric() {
        let max = Lsn::from_parts(u32::MAX, u32::MAX, u16::MAX);
        assert!(max > Lsn::from_parts(u32::MAX, u32::MAX, u16::MAX - 1));
        assert!(Lsn::from_parts(2, 0, 0) > Lsn::from_parts(1, u32::MAX, u16::MAX));
        assert_eq!(max.to_string().parse::<Lsn>(), Ok(max));
    }

    #[test]
    fn text_that_is_not_decimal_is_refused() {
        for bad in ["", "12a", "-1", "1".repeat(26).as_str(), " 1"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn serde_uses_decimal_strings() {
        let lsn = Lsn::from_parts(39, 488, 71);
        let json = serde_json::to_string(&lsn).unwrap_or_default();
        assert_eq!(json, "\"39000000048800071\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).ok(), Some(lsn));
    }
}
