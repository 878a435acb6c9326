//! SQL Server's own metadata inside the MTF stream: the `MQCI` stream of the `MSCI` block (near
//! the head) and of the `MSLS` block (near the end). The stream is a run of records, each a
//! 4-letter tag and a 32-bit length: `SCIN` (the configuration: what `RESTORE HEADERONLY`
//! reports), `SFGI` (filegroups) and one `SFIN` per database file (`RESTORE FILELISTONLY`).
//!
//! Offsets below were established on the fixtures in `tests/fixtures/bak` (SQL Server 2008 R2 to
//! 2016, 512- and 4096-byte layouts) by locating values known from their manifest; they are
//! relative to the record start and checked against the record's own length.

use uuid::Uuid;

use super::model::{BackupDate, BackupType, FileEntry, FileType, SoftwareVersion};
use super::mtf::{
    array_at, bytes, damaged, date_at, guid_at, u16_at, u32_at, u64_at, u8_at, utf16, Fault,
};
use crate::model::lsn::Lsn;

/// A record shorter than this cannot hold the fields read from it.
const SCIN_MIN_LEN: usize = 0x168;
const SFIN_MIN_LEN: usize = 0x38;
/// No database has more files than this (SQL Server's limit is 32,767).
const MAX_FILES: usize = 32_767;
/// `SCIN` flags are `RESTORE HEADERONLY`'s `Flags` column: bit 16 is `HasBackupChecksums` (it
/// matches that column on every fixture), bits 64, 128 and 256 mark the three kinds of tail-log
/// backup (plain, with incomplete metadata, `WITH NORECOVERY`), as that column's documentation
/// lists them.
///
/// `SCIN` flag: the backup carries page checksums (`WITH CHECKSUM`).
const FLAG_CHECKSUMS: u32 = 0x10;
/// `SCIN` flags: a tail-log backup (any of its three kinds).
const FLAGS_TAIL_LOG: u32 = 0x40 | 0x80 | 0x100;
/// `SFIN` file type (u32 at 0x1c): 1 for a data file, 2 for the log on every fixture, as
/// `RESTORE FILELISTONLY`'s `Type` (D / L) in MANIFEST.md. (The flags bit 0x8 marks the log on
/// most fixtures but not on the 2019 and 2022-compressed ones.) Types this reader has never seen
/// (FILESTREAM and full-text containers) are reported as data.
const SFIN_TYPE_LOG: u32 = 2;

/// The decoded `SCIN` record and the file list that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    pub flags: u32,
    pub software_version: SoftwareVersion,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub database_backup_lsn: Lsn,
    pub database_creation_date: Option<BackupDate>,
    pub backup_start_date: BackupDate,
    pub backup_finish_date: Option<BackupDate>,
    pub backup_type: BackupType,
    pub compatibility_level: u8,
    pub database_version: u16,
    pub backup_size: u64,
    pub database_name: String,
    pub server_name: String,
    pub unicode_locale_id: u32,
    pub unicode_comparison_style: u32,
    pub recovery_fork_id: Uuid,
    pub fork_point_lsn: Lsn,
    pub differential_base_lsn: Lsn,
    pub differential_base_guid: Uuid,
    pub collation_info: u32,
    pub sort_order: u8,
    pub family_guid: Uuid,
    pub files: Vec<FileEntry>,
}

impl Config {
    pub(crate) fn has_checksums(&self) -> bool {
        self.flags & FLAG_CHECKSUMS != 0
    }

    pub(crate) fn is_tail_log(&self) -> bool {
        self.flags & FLAGS_TAIL_LOG != 0
    }

    /// True when `other` describes the same backup set (head copy vs trailer copy). SQL Server
    /// 2016 and older write the same LSNs in both copies; 2019 and 2022 (the School and
    /// QuanLyBanHang fixtures) write LSNs past the head copy's in the trailer copy, so the LSNs
    /// only need to be in that order.
    pub(crate) fn same_set(&self, other: &Config) -> bool {
        let (head, trailer) = if self.first_lsn <= other.first_lsn {
            (self, other)
        } else {
            (other, self)
        };
        (head.first_lsn == trailer.first_lsn && head.last_lsn == trailer.last_lsn
            || head.last_lsn <= trailer.first_lsn)
            && self.backup_start_date == other.backup_start_date
            && self.family_guid == other.family_guid
            && self.database_name == other.database_name
    }
}

fn lsn_at(data: &[u8], off: usize) -> Result<Lsn, Fault> {
    Ok(Lsn::from_le_bytes(array_at::<10>(data, off)?))
}

/// A UTF-16 string held in `record` by a (byte length, offset) pair at `at`.
fn record_string(
    record: &[u8],
    at: usize,
    base: usize,
    what: &'static str,
) -> Result<String, Fault> {
    let len = usize::from(u16_at(record, at)?);
    let off = usize::from(u16_at(record, at + 2)?);
    match bytes(record, off, len) {
        Ok(raw) => Ok(utf16(raw)),
        Err(_) => Err(damaged(what, base + at)),
    }
}

/// Decodes an `MQCI` stream. `base` is the stream's offset in the MTF bytes, for error offsets.
pub(crate) fn parse_mqci(stream: &[u8], base: usize) -> Result<Config, Fault> {
    let mut records = Records {
        data: stream,
        pos: 0,
        base,
    };
    let (tag, scin, scin_at) = records
        .next_record()?
        .ok_or(damaged("SQL Server metadata stream (MQCI) is empty", base))?;
    if tag != *b"SCIN" {
        return Err(damaged(
            "SQL Server metadata stream (MQCI) does not start with its SCIN record",
            base,
        ));
    }
    let mut config = parse_scin(scin, scin_at)?;
    while let Some((tag, record, at)) = records.next_record()? {
        if tag == *b"SFIN" {
            if config.files.len() >= MAX_FILES {
                return Err(damaged("more database files than SQL Server allows", at));
            }
            config.files.push(parse_sfin(record, at)?);
        }
    }
    Ok(config)
}

/// One record of the stream: its tag, its bytes and its offset in the MTF bytes.
type Record<'a> = ([u8; 4], &'a [u8], usize);

struct Records<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Records<'a> {
    /// The next (tag, record bytes, absolute offset); `None` at the end of the stream.
    fn next_record(&mut self) -> Result<Option<Record<'a>>, Fault> {
        let rest = self.data.len().saturating_sub(self.pos);
        if rest < 8 {
            // Streams may carry a few bytes of padding after the last record.
            return Ok(None);
        }
        let at = self.base + self.pos;
        let tag = array_at::<4>(self.data, self.pos)?;
        if tag == [0; 4] {
            return Ok(None);
        }
        let len = u32_at(self.data, self.pos + 4)? as usize;
        if len < 8 || len > rest || !tag.iter().all(u8::is_ascii_uppercase) {
            return Err(damaged(
                "SQL Server metadata record has a bad tag or length",
                at,
            ));
        }
        let record = &self.data[self.pos..self.pos + len];
        self.pos += len;
        Ok(Some((tag, record, at)))
    }
}

fn parse_scin(r: &[u8], at: usize) -> Result<Config, Fault> {
    if r.len() < SCIN_MIN_LEN {
        return Err(damaged("SCIN record is shorter than its fixed fields", at));
    }
    // Inside the checked length every fixed read succeeds; map stray faults to damage anyway.
    let d = |_f: Fault| damaged("SCIN record is shorter than its fixed fields", at);
    let type_code = u8_at(r, 0x57).map_err(d)?;
    let backup_type = BackupType::from_code(type_code)
        .ok_or(damaged("SCIN record has an unknown backup type", at + 0x57))?;
    let start = date_at(r, 0x4d, "SCIN record's backup start date is not a date")
        .map_err(|f| shift(f, at))?
        .ok_or(damaged("SCIN record has no backup start date", at + 0x4d))?;
    Ok(Config {
        flags: u32_at(r, 0x08).map_err(d)?,
        software_version: SoftwareVersion {
            major: u8_at(r, 0x1b).map_err(d)?,
            minor: u8_at(r, 0x1a).map_err(d)?,
            build: u16_at(r, 0x18).map_err(d)?,
        },
        first_lsn: lsn_at(r, 0x20).map_err(d)?,
        last_lsn: lsn_at(r, 0x2a).map_err(d)?,
        checkpoint_lsn: lsn_at(r, 0x34).map_err(d)?,
        database_backup_lsn: lsn_at(r, 0x3e).map_err(d)?,
        database_creation_date: date_at(
            r,
            0x48,
            "SCIN record's database creation date is not a date",
        )
        .map_err(|f| shift(f, at))?,
        backup_start_date: start,
        backup_finish_date: date_at(r, 0x52, "SCIN record's backup finish date is not a date")
            .map_err(|f| shift(f, at))?,
        backup_type,
        compatibility_level: u8_at(r, 0x5b).map_err(d)?,
        database_version: u16_at(r, 0x5e).map_err(d)?,
        backup_size: u64_at(r, 0x60).map_err(d)?,
        database_name: record_string(r, 0x68, at, "SCIN record's database name lies outside it")?,
        server_name: record_string(r, 0x6c, at, "SCIN record's server name lies outside it")?,
        unicode_locale_id: u32_at(r, 0x74).map_err(d)?,
        unicode_comparison_style: u32_at(r, 0x78).map_err(d)?,
        recovery_fork_id: guid_at(r, 0x9c).map_err(d)?,
        fork_point_lsn: lsn_at(r, 0xac).map_err(d)?,
        collation_info: u32_at(r, 0xd8).map_err(d)?,
        sort_order: u8_at(r, 0xdc).map_err(d)?,
        family_guid: guid_at(r, 0xe0).map_err(d)?,
        differential_base_lsn: lsn_at(r, 0x104).map_err(d)?,
        differential_base_guid: guid_at(r, 0x110).map_err(d)?,
        files: Vec::new(),
    })
}

/// Moves a fault's offset from record-relative to stream-absolute.
fn shift(f: Fault, at: usize) -> Fault {
    match f {
        Fault::Damaged { what, offset } => Fault::Damaged {
            what,
            offset: offset + at as u64,
        },
        Fault::Short { .. } => damaged("SCIN record is shorter than its fixed fields", at),
    }
}

fn parse_sfin(r: &[u8], at: usize) -> Result<FileEntry, Fault> {
    if r.len() < SFIN_MIN_LEN {
        return Err(damaged("SFIN (database file) record is too short", at));
    }
    let d = |_f: Fault| damaged("SFIN (database file) record is too short", at);
    let file_type = u32_at(r, 0x1c).map_err(d)?;
    Ok(FileEntry {
        logical_name: record_string(
            r,
            0x30,
            at,
            "SFIN record's logical file name lies outside it",
        )?,
        physical_name: record_string(
            r,
            0x34,
            at,
            "SFIN record's physical file name lies outside it",
        )?,
        file_type: if file_type == SFIN_TYPE_LOG {
            FileType::Log
        } else {
            FileType::Data
        },
        file_id: u32_at(r, 0x14).map_err(d)?,
    })
}

/// The collation's name from its 4-byte info (LCID in bits 0-19, comparison flags in bits
/// 20-27, version in 28-31) and sort id, for the collations this reader knows; `None` otherwise.
pub(crate) fn collation_name(info: u32, sort_id: u8) -> Option<String> {
    if sort_id != 0 {
        let name = match sort_id {
            51 => "SQL_Latin1_General_CP1_CS_AS",
            52 => "SQL_Latin1_General_CP1_CI_AS",
            53 => "SQL_Latin1_General_Pref_CP1_CI_AS",
            54 => "SQL_Latin1_General_CP1_CI_AI",
            _ => return None,
        };
        return Some(name.to_owned());
    }
    if info >> 28 != 0 {
        // Versioned (_90, _100, _140) Windows collations: not decoded.
        return None;
    }
    let base = match info & 0xf_ffff {
        1033 | 1031 | 1040 | 1043 | 2057 | 4105 | 3081 => "Latin1_General",
        3082 => "Modern_Spanish",
        1034 => "Traditional_Spanish",
        1036 => "French",
        1049 => "Cyrillic_General",
        1053 => "Finnish_Swedish",
        1045 => "Polish",
        1029 => "Czech",
        1041 => "Japanese",
        2052 => "Chinese_PRC",
        _ => return None,
    };
    let flags = (info >> 20) & 0xff;
    let mut name = base.to_owned();
    if flags & 0x10 != 0 {
        name.push_str("_BIN");
    } else if flags & 0x20 != 0 {
        name.push_str("_BIN2");
    } else {
        name.push_str(if flags & 0x1 != 0 { "_CI" } else { "_CS" });
        name.push_str(if flags & 0x2 != 0 { "_AI" } else { "_AS" });
        if flags & 0x4 == 0 {
            name.push_str("_KS");
        }
        if flags & 0x8 == 0 {
            name.push_str("_WS");
        }
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_and_windows_collations_are_named() {
        // SQL_Latin1_General_CP1_CI_AS as SQL Server 2016 stores it: LCID 1033, flags 0x0d, sort 52.
        assert_eq!(
            collation_name(0x00d0_0409, 52).as_deref(),
            Some("SQL_Latin1_General_CP1_CI_AS")
        );
        // Modern_Spanish_CI_AS (pubs restored on a Spanish Express instance): LCID 3082, sort 0.
        assert_eq!(
            collation_name(0x00d0_0c0a, 0).as_deref(),
            Some("Modern_Spanish_CI_AS")
        );
        assert_eq!(collation_name(0x00d0_0409, 200), None);
        assert_eq!(collation_name(0x10d0_0409, 0), None);
    }

    #[test]
    fn a_stream_without_an_scin_record_is_damage() {
        let mut stream = Vec::from(*b"SFIN");
        stream.extend_from_slice(&8u32.to_le_bytes());
        assert!(matches!(parse_mqci(&stream, 0), Err(Fault::Damaged { .. })));
        assert!(matches!(parse_mqci(&[], 0), Err(Fault::Damaged { .. })));
    }
}
