//! The status document's shape: what `migration-status` answers and `bakdrop status` prints
//! (schema: `schemas/status.schema.json`). Types only; [`super::compose`] fills them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::header::BackupKind;
use crate::model::status::{ArmedComplete, MigrationState, Reason};

/// One migration, as the status function answers (schema: `schemas/status.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// The target database; "" for files whose key names none (each note says its folder).
    pub database: String,
    /// `None` when files were uploaded but none was accepted (all rejected).
    pub state: Option<MigrationState>,
    /// The line a person reads.
    pub summary: String,
    /// Percent complete of the restore in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<f64>,
    /// The restore in flight: its first file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restoring: Option<String>,
    /// The point in time the database would have if completed now: `BackupFinishDate` of the
    /// last restored backup (as the backup records it, the source server's local time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_as_of: Option<String>,
    /// When the last restore finished (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_restored_at: Option<String>,
    /// What bakdrop waits for next, in words.
    pub next: String,
    pub counts: Counts,
    /// Restore steps in the order they were applied, one per RESTORE (a striped set is one
    /// step of several files) ([`crate::files::report`]: of the latest [`LISTED`](super::LISTED) files).
    pub applied: Vec<AppliedFile>,
    pub waiting: Vec<FileNote>,
    pub rejected: Vec<FileNote>,
    /// How many of the listed rejected files carry each code.
    pub rejected_by_code: BTreeMap<String, usize>,
    pub skipped: Vec<FileNote>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Reason>,
    /// Complete armed in advance: the backup it waits for, and its refusal once it ran and was
    /// refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub armed: Option<ArmedComplete>,
    /// What may be done now: "complete", "arm", "disarm", "cancel", "reset".
    pub actions: Vec<&'static str>,
}

/// Files by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub queued: usize,
    pub waiting: usize,
    pub restoring: usize,
    pub restored: usize,
    pub skipped: usize,
    pub rejected: usize,
    pub failed: usize,
}

/// A restore step: its first file (family 1 of a striped set) and all its files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedFile {
    pub file: String,
    pub key: String,
    /// Every file of the step, in family order (one unless the backup is striped).
    pub files: Vec<String>,
    pub backup_type: BackupKind,
    pub first_lsn: String,
    pub last_lsn: String,
    /// `BackupFinishDate` of the backup, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_finish_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A file with the reason it is where it is: a stable `code` and the sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileNote {
    pub file: String,
    pub key: String,
    /// The folder the file is in (its key less the file name): for files whose key names no
    /// database, where to look.
    pub folder: String,
    pub code: String,
    pub reason: String,
}
