//! The status document a DBA reads (`migration-status`, `bakdrop status`): built from the
//! migration record and its file records only (no SQL Server, no VPC).
//!
//! [`crate::files::report`] keeps the document and what it reads bounded whatever the number of files: counts
//! per state, and at most [`LISTED`] files per list, the latest (a migration of 10,000 log
//! backups answers with the 100 last restored and `counts.restored` = 10,000). [`build`] makes
//! the whole document from every file record, for stores that hold them in memory anyway.
//!
//! # Layout
//! - `document`: the document's types, as serialized.
//! - `tally`: what the document reads of the files (`Files`).
//! - `words`: its sentences (the summary line, what bakdrop waits for next).
//! - this module: `compose` puts them together, with the lists and the actions.
//! - [`events`]: the events published when a migration changes.

mod document;
pub mod events;
mod tally;
mod words;

use std::collections::BTreeMap;

pub use self::document::{AppliedFile, Counts, FileNote, StatusReport};
pub(crate) use self::tally::Files;
use self::words::{next_wait, state_line, summary_tail};
use crate::model::status::{ArmedComplete, FileRecord, InFlight, MigrationRecord, MigrationState};

/// The most files [`crate::files::report`] lists per list (applied, waiting, rejected, skipped): the latest.
/// `counts` says how many there are in all.
pub const LISTED: usize = 100;

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

/// The document from the migration record (if any) and what was read of its files.
pub(crate) fn compose(
    database: &str,
    migration: Option<&MigrationRecord>,
    files: Files,
) -> StatusReport {
    let applied = applied_steps(&files.restored);
    let last = applied.last();
    let last_error = migration
        .and_then(|m| m.reason.clone())
        .or_else(|| files.last_failed.as_ref().and_then(|f| f.reason.clone()));
    let summary = state_line(database, migration, &files, last_error.as_ref(), last)
        + &summary_tail(migration);
    let state = migration.map(|m| m.state);
    let in_flight = migration.and_then(|m| m.in_flight.as_ref());
    let percent_complete = in_flight.and_then(|f| f.percent_complete);
    let restoring = in_flight.map(restoring_file);
    let waiting = notes(&files.waiting);
    let rejected = notes(&files.rejected);
    let next = next_wait(
        state,
        restoring.as_deref(),
        percent_complete,
        &waiting,
        last,
        &files.counts,
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
        actions: actions(migration, &files),
        counts: files.counts,
        rejected_by_code: by_code(&rejected),
        waiting,
        rejected,
        skipped: notes(&files.skipped),
        last_error,
        armed: migration.and_then(|m| m.armed.clone()),
        applied,
    }
}

/// Restored files as restore steps in the order they were applied: by restore time, then
/// LSN and family; a striped set's files make one step.
fn applied_steps(restored: &[FileRecord]) -> Vec<AppliedFile> {
    let mut restored: Vec<&FileRecord> = restored.iter().collect();
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
    applied
}

/// What may be done now, in the order the document lists them: "complete" once synchronizing
/// with nothing in flight, "arm" while uploads are accepted, "disarm" while an armed Complete is
/// pending, "cancel" until the migration has ended, "reset" once cancelled and stopped.
fn actions(migration: Option<&MigrationRecord>, files: &Files) -> Vec<&'static str> {
    let counts = &files.counts;
    let state = migration.map(|m| m.state);
    let in_flight = counts.queued + counts.waiting + counts.restoring;
    let mut actions = Vec::new();
    if state == Some(MigrationState::Synchronizing) && in_flight == 0 {
        actions.push("complete");
    }
    if state.is_some_and(MigrationState::accepts_uploads) {
        actions.push("arm");
    }
    if migration.is_some_and(|m| m.armed.as_ref().is_some_and(ArmedComplete::pending)) {
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
    actions
}

/// The file name of the restore in flight: its first file, less folder and `#` suffix.
fn restoring_file(in_flight: &InFlight) -> String {
    in_flight
        .step
        .files
        .first()
        .map(|id| id.rsplit('/').next().unwrap_or(id))
        .map(|n| n.split('#').next().unwrap_or(n).to_owned())
        .unwrap_or_default()
}

/// A note for each file of a list.
fn notes(list: &[FileRecord]) -> Vec<FileNote> {
    list.iter().map(note).collect()
}

/// How many of the notes carry each code.
fn by_code(notes: &[FileNote]) -> BTreeMap<String, usize> {
    let mut by_code = BTreeMap::new();
    for n in notes {
        *by_code.entry(n.code.clone()).or_insert(0) += 1;
    }
    by_code
}
