//! The status document a DBA reads (`migration-status`, `bakdrop status`): built from the
//! migration record and its file records only (no SQL Server, no VPC).
//!
//! [`crate::files::report`] keeps the document and what it reads bounded whatever the number of files: counts
//! per state, and at most [`LISTED`] files per list, the latest (a migration of 10,000 log
//! backups answers with the 100 last restored and `counts.restored` = 10,000). [`build`] makes
//! the whole document from every file record, for stores that hold them in memory anyway.

pub mod events;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::status::{
    ArmedComplete, FileRecord, FileState, MigrationRecord, MigrationState, Reason,
};

use crate::model::header::BackupKind;

/// The most files [`crate::files::report`] lists per list (applied, waiting, rejected, skipped): the latest.
/// `counts` says how many there are in all.
pub const LISTED: usize = 100;

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
    /// step of several files) ([`read`]: of the latest [`LISTED`] files).
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
        folder: f
            .object
            .key
            .rsplit_once('/')
            .map(|(folder, _)| folder.to_owned())
            .unwrap_or_default(),
        code: f
            .reason
            .as_ref()
            .map_or_else(|| "Unknown".to_owned(), |r| r.code.clone()),
        reason: f
            .reason
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// What a report needs of a migration's files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Files {
    pub(crate) counts: Counts,
    /// Restored files (all, or the latest), in any order.
    pub(crate) restored: Vec<FileRecord>,
    pub(crate) waiting: Vec<FileRecord>,
    pub(crate) rejected: Vec<FileRecord>,
    pub(crate) skipped: Vec<FileRecord>,
    /// The failed file updated last.
    pub(crate) last_failed: Option<FileRecord>,
    /// Restore steps by type: full, differential, log (a striped set counts once).
    pub(crate) restored_kinds: [u64; 3],
    /// The counts are known (false for [`headline`], which reads no file).
    pub(crate) counted: bool,
}

fn kind_index(kind: BackupKind) -> usize {
    match kind {
        BackupKind::Full => 0,
        BackupKind::Differential => 1,
        BackupKind::Log => 2,
    }
}

impl Files {
    /// From every file record of the migration.
    pub(crate) fn of(files: &[FileRecord]) -> Files {
        let mut out = Files {
            counted: true,
            ..Files::default()
        };
        for f in files {
            let counts = &mut out.counts;
            match f.state {
                FileState::Received | FileState::Validated | FileState::Queued => {
                    counts.queued += 1;
                }
                FileState::Waiting => counts.waiting += 1,
                FileState::Restoring => counts.restoring += 1,
                FileState::Restored => counts.restored += 1,
                FileState::Skipped => counts.skipped += 1,
                FileState::Rejected => counts.rejected += 1,
                FileState::Failed => counts.failed += 1,
            }
        }
        let pick = |state: FileState| -> Vec<FileRecord> {
            files.iter().filter(|f| f.state == state).cloned().collect()
        };
        out.restored = pick(FileState::Restored);
        // One per step: a striped set's files share their backup set.
        let mut sets = std::collections::BTreeSet::new();
        for f in &out.restored {
            if let Some(h) = &f.header {
                if sets.insert(h.backup_set_guid) {
                    out.restored_kinds[kind_index(h.backup_type)] += 1;
                }
            }
        }
        out.waiting = pick(FileState::Waiting);
        out.rejected = pick(FileState::Rejected);
        out.skipped = pick(FileState::Skipped);
        out.last_failed = files
            .iter()
            .filter(|f| f.state == FileState::Failed)
            .max_by_key(|f| f.updated_at)
            .cloned();
        out
    }
}

/// The status line of a migration from its record alone (no file read): what the events say.
/// Counts that only the files know (queued, waiting) are left out.
pub fn headline(migration: &MigrationRecord) -> String {
    let applied = &migration.chain.applied;
    let files = Files {
        restored_kinds: [
            applied.full_files,
            applied.differential_files,
            applied.log_files,
        ],
        ..Files::default()
    };
    compose(&migration.database, Some(migration), files).summary
}

/// Builds the whole report from every file record of the migration, in any order.
pub fn build(
    database: &str,
    migration: Option<&MigrationRecord>,
    files: &[FileRecord],
) -> StatusReport {
    compose(database, migration, Files::of(files))
}

pub(crate) fn compose(
    database: &str,
    migration: Option<&MigrationRecord>,
    files: Files,
) -> StatusReport {
    let counts = files.counts.clone();
    let mut restored: Vec<&FileRecord> = files.restored.iter().collect();
    restored.sort_by_key(|f| {
        (
            f.restore_finished_at,
            f.header.as_ref().map(|h| (h.last_lsn, h.family_sequence)),
        )
    });
    let mut applied: Vec<AppliedFile> = Vec::new();
    let mut last_set = None;
    for f in restored {
        let Some(h) = &f.header else { continue };
        if last_set == Some(h.backup_set_guid) {
            if let Some(step) = applied.last_mut() {
                step.files.push(f.object.file_name().to_owned());
                continue;
            }
        }
        last_set = Some(h.backup_set_guid);
        applied.push(AppliedFile {
            file: f.object.file_name().to_owned(),
            key: f.object.key.clone(),
            files: vec![f.object.file_name().to_owned()],
            backup_type: h.backup_type,
            first_lsn: h.first_lsn.to_string(),
            last_lsn: h.last_lsn.to_string(),
            backup_finish_date: h.backup_finish_date.clone(),
            started_at: stamp(f.restore_started_at),
            finished_at: stamp(f.restore_finished_at),
        });
    }
    let notes = |list: &[FileRecord]| -> Vec<FileNote> { list.iter().map(note).collect() };
    let last_error = migration
        .and_then(|m| m.reason.clone())
        .or_else(|| files.last_failed.as_ref().and_then(|f| f.reason.clone()));
    let state = migration.map(|m| m.state);
    let in_flight = counts.queued + counts.waiting + counts.restoring;
    let mut actions = Vec::new();
    if state == Some(MigrationState::Synchronizing) && in_flight == 0 {
        actions.push("complete");
    }
    let armed = migration.and_then(|m| m.armed.clone());
    if state.is_some_and(MigrationState::accepts_uploads) {
        actions.push("arm");
    }
    if armed.as_ref().is_some_and(ArmedComplete::pending) {
        actions.push("disarm");
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
    let kinds = |k: BackupKind| files.restored_kinds[kind_index(k)];
    let last = applied.last();
    let mut summary = match state {
        None if database.is_empty() => format!(
            "{} file(s) whose key names no database folder, rejected (each listed under its folder)",
            counts.rejected
        ),
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
        // Words and counts agree: queued files are queued, waiting ones wait.
        Some(MigrationState::AwaitingFull)
            if migration.is_some_and(|m| m.full_backup_set_guid.is_some()) =>
        {
            let mut line = "Full backup accepted; its restore starts shortly".to_owned();
            if files.counted {
                line.push_str(&format!(
                    " ({} queued, {} waiting)",
                    counts.queued, counts.waiting
                ));
            }
            line
        }
        Some(MigrationState::AwaitingFull) => {
            let mut line = "Awaiting the full backup".to_owned();
            if files.counted {
                line.push_str(&format!(
                    " ({} queued, {} waiting for it)",
                    counts.queued, counts.waiting
                ));
            }
            line
        }
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
    if let Some(a) = armed
        .as_ref()
        .filter(|_| state.is_some_and(MigrationState::accepts_uploads))
    {
        let tail = if a.require_tail_log {
            " (a tail-log backup required)"
        } else {
            ""
        };
        summary.push_str(&match &a.refused {
            Some(reason) => format!(
                "; the armed Complete was refused ({}): {}",
                reason.code, reason.message
            ),
            None if a.reached => format!(
                "; Complete armed{tail}: {} is restored, Complete runs once nothing is in flight",
                a.last_backup
            ),
            None => format!(
                "; Complete armed{tail}: waits for {} to be restored",
                a.last_backup
            ),
        });
    }
    let in_flight = migration.and_then(|m| m.in_flight.as_ref());
    let percent_complete = in_flight.and_then(|f| f.percent_complete);
    let restoring = in_flight.map(|f| {
        f.step
            .files
            .first()
            .map(|id| id.rsplit('/').next().unwrap_or(id))
            .map(|n| n.split('#').next().unwrap_or(n).to_owned())
            .unwrap_or_default()
    });
    let waiting = notes(&files.waiting);
    let rejected = notes(&files.rejected);
    let mut rejected_by_code = BTreeMap::new();
    for r in &rejected {
        *rejected_by_code.entry(r.code.clone()).or_insert(0) += 1;
    }
    let next = next_wait(
        state,
        restoring.as_deref(),
        percent_complete,
        &waiting,
        last,
        &counts,
    );
    StatusReport {
        database: database.to_owned(),
        state,
        summary,
        percent_complete,
        restoring,
        data_as_of: last.and_then(|l| l.backup_finish_date.clone()),
        last_restored_at: last.and_then(|l| l.finished_at.clone()),
        next,
        counts,
        applied,
        waiting,
        rejected,
        rejected_by_code,
        skipped: notes(&files.skipped),
        last_error,
        armed,
        actions,
    }
}

/// What bakdrop waits for next, in words.
fn next_wait(
    state: Option<MigrationState>,
    restoring: Option<&str>,
    percent: Option<f64>,
    waiting: &[FileNote],
    last: Option<&AppliedFile>,
    counts: &Counts,
) -> String {
    let blocked = waiting.iter().find(|w| w.code != "Queued");
    match state {
        None => "a usable backup: every file uploaded so far was rejected (see rejected)".into(),
        Some(MigrationState::Succeeded) => "nothing: the database is online".into(),
        Some(MigrationState::Cancelled) => {
            "nothing: the migration was cancelled (reset it to migrate the folder again)".into()
        }
        Some(MigrationState::Failed) => {
            "nothing: the migration failed (cancel, reset, and upload the fixed backups)".into()
        }
        Some(MigrationState::Completing) => "the target bringing the database online".into(),
        _ if restoring.is_some() => match percent {
            Some(p) => format!(
                "the restore of {} to finish ({p:.0}% complete)",
                restoring.unwrap_or_default()
            ),
            None => format!("the restore of {} to finish", restoring.unwrap_or_default()),
        },
        _ if blocked.is_some() => blocked
            .map(|b| format!("{}: {}", b.file, b.reason))
            .unwrap_or_default(),
        _ if counts.queued + counts.waiting > 0 => "the next restore, which starts shortly".into(),
        Some(MigrationState::AwaitingFull) => "a full backup".into(),
        _ => match last {
            Some(l) => format!(
                "the next differential or log backup (after LSN {}), or Complete",
                l.last_lsn
            ),
            None => "the next backup".into(),
        },
    }
}
