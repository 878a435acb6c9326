//! What a report reads of a migration's files: counts per state, the files of each list and
//! the restore steps by type, from every file record ([`Files::of`]) or from a bounded read
//! ([`crate::files::report`]).

use std::collections::BTreeSet;

use super::document::Counts;
use crate::model::header::BackupKind;
use crate::model::status::{FileRecord, FileState};

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
    /// The counts are known (false for [`headline`](super::headline), which reads no file).
    pub(crate) counted: bool,
}

/// The slot of a backup type in [`Files::restored_kinds`].
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
        let mut sets = BTreeSet::new();
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

    /// How many restore steps of this type were restored (a striped set counts once).
    pub(crate) fn restored_steps(&self, kind: BackupKind) -> u64 {
        self.restored_kinds[kind_index(kind)]
    }
}
