//! The sentences of the status document: the summary line a person reads first (where the
//! migration stands, then what holds it), and what bakdrop waits for next. Pure text over the
//! records and the document's lists.

use super::document::{AppliedFile, Counts, FileNote};
use super::tally::Files;
use crate::model::header::BackupKind;
use crate::model::status::{ArmedComplete, MigrationRecord, MigrationState, Reason};

/// The end of the summary line of a migration in progress: whether it is retrying against the
/// target, and what an armed Complete waits for ("" when neither).
pub(crate) fn summary_tail(migration: Option<&MigrationRecord>) -> String {
    let mut tail = String::new();
    // A migration in progress that carries a reason is blocked on the target (login refused,
    // unreachable …): the line says so while the job is retried.
    let in_progress = migration.filter(|m| m.state.accepts_uploads());
    if let Some(reason) = in_progress.and_then(|m| m.reason.as_ref()) {
        tail.push_str(&format!(" — retrying: {reason}"));
    }
    if let Some(armed) = in_progress.and_then(|m| m.armed.as_ref()) {
        tail.push_str(&armed_note(armed));
    }
    tail
}

/// The summary line's start: where the migration stands, by its state (or, without a
/// migration, what was rejected).
pub(crate) fn state_line(
    database: &str,
    migration: Option<&MigrationRecord>,
    files: &Files,
    last_error: Option<&Reason>,
    last: Option<&AppliedFile>,
) -> String {
    let counts = &files.counts;
    match migration.map(|m| m.state) {
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
        Some(MigrationState::AwaitingFull) => {
            let (mut line, waiting) = if migration.is_some_and(|m| m.full_backup_set_guid.is_some())
            {
                ("Full backup accepted; its restore starts shortly".to_owned(), "waiting")
            } else {
                ("Awaiting the full backup".to_owned(), "waiting for it")
            };
            // Words and counts agree: queued files are queued, waiting ones wait.
            if files.counted {
                line.push_str(&format!(
                    " ({} queued, {} {waiting})",
                    counts.queued, counts.waiting
                ));
            }
            line
        }
        Some(s) => progress_line(s, files, last),
    }
}

/// A migration restoring or synchronizing: the steps restored by type, the last one, and how
/// many files wait.
fn progress_line(state: MigrationState, files: &Files, last: Option<&AppliedFile>) -> String {
    let mut line = format!(
        "{} — {} full, {} differential, {} log restored",
        if state == MigrationState::Restoring {
            "Restoring"
        } else {
            "Synchronizing"
        },
        files.restored_steps(BackupKind::Full),
        files.restored_steps(BackupKind::Differential),
        files.restored_steps(BackupKind::Log)
    );
    if let Some(last) = last {
        line.push_str(&format!(
            "; last restored {} (LastLSN {})",
            last.file, last.last_lsn
        ));
    }
    if files.counts.waiting > 0 {
        line.push_str(&format!("; {} waiting", files.counts.waiting));
    }
    line
}

/// The summary's tail for a Complete armed in advance: refused, ready, or waiting for its backup.
fn armed_note(armed: &ArmedComplete) -> String {
    let tail = if armed.require_tail_log {
        " (a tail-log backup required)"
    } else {
        ""
    };
    match &armed.refused {
        Some(reason) => format!(
            "; the armed Complete was refused ({}): {}",
            reason.code, reason.message
        ),
        None if armed.reached => format!(
            "; Complete armed{tail}: {} is restored, Complete runs once nothing is in flight",
            armed.last_backup
        ),
        None => format!(
            "; Complete armed{tail}: waits for {} to be restored",
            armed.last_backup
        ),
    }
}

/// What bakdrop waits for next, in words.
pub(crate) fn next_wait(
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
