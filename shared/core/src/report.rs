//! The status document a DBA reads (`migration-status`, `bakdrop status`): built from the
//! migration record and its file records only (no SQL Server, no VPC).

use serde::Serialize;

use crate::status::{BackupKind, FileRecord, FileState, MigrationRecord, MigrationState, Reason};

/// One migration, as the status function answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub database: String,
    /// `None` when files were uploaded but none was accepted (all rejected).
    pub state: Option<MigrationState>,
    /// The line a person reads.
    pub summary: String,
    /// Percent complete of the restore in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<f64>,
    pub counts: Counts,
    /// Restored files in the order they were applied.
    pub applied: Vec<AppliedFile>,
    pub waiting: Vec<FileNote>,
    pub rejected: Vec<FileNote>,
    pub skipped: Vec<FileNote>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Reason>,
    /// What may be done now: "complete", "cancel".
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

/// A restored file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedFile {
    pub file: String,
    pub key: String,
    pub backup_type: BackupKind,
    pub first_lsn: String,
    pub last_lsn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A file with the reason it is where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileNote {
    pub file: String,
    pub key: String,
    pub reason: String,
}

fn stamp(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

fn note(f: &FileRecord) -> FileNote {
    FileNote {
        file: f.object.file_name().to_owned(),
        key: f.object.key.clone(),
        reason: f
            .reason
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// Builds the report. `files` in any order.
pub fn build(
    database: &str,
    migration: Option<&MigrationRecord>,
    files: &[FileRecord],
) -> StatusReport {
    let mut counts = Counts::default();
    for f in files {
        match f.state {
            FileState::Received | FileState::Validated | FileState::Queued => counts.queued += 1,
            FileState::Waiting => counts.waiting += 1,
            FileState::Restoring => counts.restoring += 1,
            FileState::Restored => counts.restored += 1,
            FileState::Skipped => counts.skipped += 1,
            FileState::Rejected => counts.rejected += 1,
            FileState::Failed => counts.failed += 1,
        }
    }
    let mut restored: Vec<&FileRecord> = files
        .iter()
        .filter(|f| f.state == FileState::Restored)
        .collect();
    restored.sort_by_key(|f| (f.restore_finished_at, f.header.as_ref().map(|h| h.last_lsn)));
    let applied: Vec<AppliedFile> = restored
        .iter()
        .filter_map(|f| {
            f.header.as_ref().map(|h| AppliedFile {
                file: f.object.file_name().to_owned(),
                key: f.object.key.clone(),
                backup_type: h.backup_type,
                first_lsn: h.first_lsn.to_string(),
                last_lsn: h.last_lsn.to_string(),
                started_at: stamp(f.restore_started_at),
                finished_at: stamp(f.restore_finished_at),
            })
        })
        .collect();
    let pick = |state: FileState| -> Vec<FileNote> {
        files
            .iter()
            .filter(|f| f.state == state)
            .map(note)
            .collect()
    };
    let last_error = migration.and_then(|m| m.reason.clone()).or_else(|| {
        files
            .iter()
            .filter(|f| f.state == FileState::Failed)
            .max_by_key(|f| f.updated_at)
            .and_then(|f| f.reason.clone())
    });
    let state = migration.map(|m| m.state);
    let in_flight = counts.queued + counts.waiting + counts.restoring;
    let mut actions = Vec::new();
    if state == Some(MigrationState::Synchronizing) && in_flight == 0 {
        actions.push("complete");
    }
    if state.is_some_and(|s| {
        !matches!(
            s,
            MigrationState::Succeeded | MigrationState::Cancelled | MigrationState::Completing
        )
    }) {
        actions.push("cancel");
    }
    if state == Some(MigrationState::Cancelled) && migration.is_some_and(|m| m.in_flight.is_none())
    {
        actions.push("reset");
    }
    let kinds = |k: BackupKind| {
        restored
            .iter()
            .filter(|f| f.header.as_ref().is_some_and(|h| h.backup_type == k))
            .count()
    };
    let last = applied.last();
    let mut summary = match state {
        None => format!(
            "No migration of {database}: {} file(s) rejected",
            counts.rejected
        ),
        Some(MigrationState::Succeeded) => "Synchronization succeeded".to_owned(),
        Some(MigrationState::Failed) => format!(
            "Synchronization failed: {}",
            last_error
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "no reason recorded".into())
        ),
        Some(MigrationState::Cancelled) if migration.is_some_and(|m| m.in_flight.is_some()) => {
            "Cancelled — the target is stopping its restore; the half-restored database is dropped once it has stopped".to_owned()
        }
        Some(MigrationState::Cancelled) => "Cancelled".to_owned(),
        Some(MigrationState::Completing) => match migration.and_then(|m| m.finishing.as_ref()) {
            Some(task) => format!(
                "Completing: {task} (FINISH_RESTORE) is bringing the database online; Succeeded once it has"
            ),
            None => "Completing: bringing the database online".to_owned(),
        },
        Some(MigrationState::AwaitingFull) => format!(
            "Awaiting the full backup ({} file(s) waiting)",
            counts.waiting + counts.queued
        ),
        Some(s) => {
            let mut line = format!(
                "{} — {} full, {} differential, {} log restored",
                if s == MigrationState::Restoring {
                    "Restoring"
                } else {
                    "Synchronizing"
                },
                kinds(BackupKind::Full),
                kinds(BackupKind::Differential),
                kinds(BackupKind::Log)
            );
            if let Some(last) = last {
                line.push_str(&format!(
                    "; last restored {} (LastLSN {})",
                    last.file, last.last_lsn
                ));
            }
            if counts.waiting > 0 {
                line.push_str(&format!("; {} waiting", counts.waiting));
            }
            line
        }
    };
    // A migration in progress that carries a reason is blocked on the target (login refused,
    // unreachable …): the line says so while the job is retried.
    if let Some(reason) = migration
        .filter(|m| m.state.accepts_uploads())
        .and_then(|m| m.reason.as_ref())
    {
        summary.push_str(&format!(" — retrying: {reason}"));
    }
    StatusReport {
        database: database.to_owned(),
        state,
        summary,
        percent_complete: migration
            .and_then(|m| m.in_flight.as_ref())
            .and_then(|f| f.percent_complete),
        counts,
        applied,
        waiting: pick(FileState::Waiting),
        rejected: pick(FileState::Rejected),
        skipped: pick(FileState::Skipped),
        last_error,
        actions,
    }
}
