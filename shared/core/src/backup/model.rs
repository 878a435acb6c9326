//! What the parser reports about a backup file: the media, and one record per backup set, with
//! the fields and names `RESTORE HEADERONLY` / `RESTORE FILELISTONLY` use.

use std::fmt;

use serde::{Serialize, Serializer};
use time::PrimitiveDateTime;
use uuid::Uuid;

use crate::model::lsn::Lsn;

/// One backup file (one media family of one media set), as read from its head and tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupFile {
    /// How the MTF stream is stored in the file.
    pub container: Container,
    /// The media this file belongs to (striping, media password).
    pub media: MediaInfo,
    /// How many backup sets the file holds, read from the end-of-set information near the end
    /// of the file. `None` when unknown: no tail was given or it holds no end-of-set block.
    pub set_count: Option<u32>,
    /// The backup sets whose metadata lies in the head, in file order (`position` 1, 2, ...).
    /// Never empty.
    pub sets: Vec<BackupSet>,
}

/// How the Microsoft Tape Format stream is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Container {
    /// A plain MTF stream; `block_size` is the layout's block size in bytes (512 or 4096).
    Mtf { block_size: u32 },
    /// An `MSSQLBAK` container of compressed chunks holding the MTF stream.
    Compressed { block_size: u32 },
}

/// The media header (MTF `TAPE` block and its `RAID` stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaInfo {
    /// Number of media families (stripes) the backup was written to.
    pub family_count: u16,
    /// This file's family, from 1 to `family_count`.
    pub family_sequence: u16,
    /// The media set shared by all families of a striped backup.
    pub media_set_id: Option<Uuid>,
    /// True when the media or a backup set carries a password (`WITH MEDIAPASSWORD` /
    /// `PASSWORD`): a restore must supply it.
    pub password_protected: bool,
    /// When the media was written (server local time).
    pub media_date: Option<BackupDate>,
}

/// What a backup set contains, as `RESTORE HEADERONLY` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupType {
    /// `D`: full database backup.
    Full,
    /// `I`: differential database backup.
    Differential,
    /// `L`: transaction log backup.
    Log,
    /// `F`: file or filegroup backup.
    File,
    /// `G`: differential file backup.
    FileDifferential,
    /// `P`: partial backup.
    Partial,
    /// `Q`: differential partial backup.
    PartialDifferential,
}

impl BackupType {
    /// The type from the letter `msdb.dbo.backupset.type` uses.
    pub fn from_code(code: u8) -> Option<BackupType> {
        Some(match code {
            b'D' => BackupType::Full,
            b'I' => BackupType::Differential,
            b'L' => BackupType::Log,
            b'F' => BackupType::File,
            b'G' => BackupType::FileDifferential,
            b'P' => BackupType::Partial,
            b'Q' => BackupType::PartialDifferential,
            _ => return None,
        })
    }

    /// The `msdb.dbo.backupset.type` letter.
    pub fn code(self) -> char {
        match self {
            BackupType::Full => 'D',
            BackupType::Differential => 'I',
            BackupType::Log => 'L',
            BackupType::File => 'F',
            BackupType::FileDifferential => 'G',
            BackupType::Partial => 'P',
            BackupType::PartialDifferential => 'Q',
        }
    }

    /// True for the types that are based on a full backup (`DifferentialBaseGUID` applies).
    pub fn is_differential(self) -> bool {
        matches!(
            self,
            BackupType::Differential
                | BackupType::FileDifferential
                | BackupType::PartialDifferential
        )
    }
}

/// The SQL Server version that wrote the backup (`SoftwareVersionMajor.Minor.Build`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SoftwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u16,
}

impl fmt::Display for SoftwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// A date and time as the backup stores it: the server's local time, to the second, without
/// an offset (see `BackupSet::time_zone`). Serialised as `YYYY-MM-DDTHH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupDate(pub PrimitiveDateTime);

impl fmt::Display for BackupDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }
}

impl Serialize for BackupDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A database file in the backup (`RESTORE FILELISTONLY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub logical_name: String,
    pub physical_name: String,
    pub file_type: FileType,
    pub file_id: u32,
}

/// The kind of a database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    /// `D`: a data file (rows).
    Data,
    /// `L`: the transaction log.
    Log,
}

/// One backup set (`RESTORE HEADERONLY` row). Fields that only the copy of the metadata near the
/// end of the file holds are `None` when that copy was not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupSet {
    /// `Position`: 1 for the first set in the file.
    pub position: u16,
    pub backup_type: BackupType,
    /// `IsCopyOnly`; `None`: this reader cannot tell it from the header.
    pub copy_only: Option<bool>,
    pub database_name: String,
    pub server_name: String,
    pub machine_name: String,
    pub user_name: String,
    pub backup_name: String,
    pub backup_description: String,
    pub software_version: SoftwareVersion,
    /// `DatabaseVersion` (e.g. 852 for SQL Server 2016): a server restores only versions it knows.
    pub database_version: u16,
    pub compatibility_level: u8,
    pub sort_order: u8,
    pub unicode_locale_id: u32,
    pub unicode_comparison_style: u32,
    /// The database collation's name, when this reader knows it.
    pub collation: Option<String>,
    /// `TimeZone`: the server's offset from UTC in 15-minute steps.
    pub time_zone: i8,
    /// `Compressed`: stored in a compressed container.
    pub compressed: bool,
    /// `HasBackupChecksums`.
    pub has_checksums: bool,
    /// A tail-log backup (`Flags` bit 64, 128 or 256): the last log of a source database, taken
    /// `WITH NORECOVERY` or `NO_TRUNCATE`; a cutover that must lose nothing ends with one.
    pub tail_log: bool,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    /// `DatabaseBackupLSN`: the last full backup's checkpoint; `Lsn::ZERO` when none.
    pub database_backup_lsn: Lsn,
    /// Differential backups only: the base full backup's checkpoint LSN.
    pub differential_base_lsn: Option<Lsn>,
    /// Differential backups only: the base full backup's `BackupSetGUID`.
    pub differential_base_guid: Option<Uuid>,
    pub backup_set_guid: Uuid,
    pub family_guid: Uuid,
    pub recovery_fork_id: Uuid,
    /// `ForkPointLSN`; `None` when the database has no fork point.
    pub fork_point_lsn: Option<Lsn>,
    pub database_creation_date: Option<BackupDate>,
    pub backup_start_date: BackupDate,
    /// From the end of the file; `None` when that was not read.
    pub backup_finish_date: Option<BackupDate>,
    /// `BackupSize` in bytes, from the end of the file; `None` when that was not read.
    pub backup_size: Option<u64>,
    pub files: Vec<FileEntry>,
}
