//! What bakdrop keeps of a backup's header: its type, its LSNs and GUIDs, the database's files.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::lsn::Lsn;

/// Backup type, as the restore chain needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    Differential,
    Log,
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackupKind::Full => "full",
            BackupKind::Differential => "differential",
            BackupKind::Log => "log",
        })
    }
}

/// What the restore chain and the DBA need from a backup's header, kept on the file record and
/// carried in the restore job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderSummary {
    pub backup_type: BackupKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_only: Option<bool>,
    pub source_database: String,
    pub server_name: String,
    pub software_version: String,
    pub database_version: u32,
    pub compressed: bool,
    pub has_checksums: bool,
    /// A tail-log backup; `None` in records written before bakdrop read this flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_log: Option<bool>,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub database_backup_lsn: Lsn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential_base_lsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential_base_guid: Option<Uuid>,
    pub backup_set_guid: Uuid,
    pub family_guid: Uuid,
    pub recovery_fork_id: Uuid,
    pub family_count: u32,
    pub family_sequence: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_finish_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_size: Option<u64>,
    /// The database's files (`RESTORE FILELISTONLY`): what a native restore moves to the target's
    /// own directories. Empty in records written before bakdrop kept the list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<DatabaseFile>,
}

/// One file of the backed-up database, as `RESTORE FILELISTONLY` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseFile {
    pub logical_name: String,
    /// Where the file was on the source server (often a Windows path).
    pub physical_name: String,
    pub kind: DatabaseFileKind,
    pub file_id: u32,
}

/// Data (rows, and any container that is not the log) or log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseFileKind {
    Data,
    Log,
}
