//! A restore chain's steps ([`Step`]: one RESTORE statement) and what has been restored on the
//! target so far ([`ChainState`]), kept bounded inside the migration's record, and how a
//! restored step changes it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::header::BackupKind;
use crate::model::lsn::Lsn;

/// One RESTORE statement: one backup set, all its stripe files in media-family order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub kind: BackupKind,
    /// File ids, ordered by `family_sequence`.
    pub files: Vec<String>,
    pub backup_set_guid: Uuid,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
}

/// How many of the latest steps [`ChainState::recent`] keeps, at most.
pub const RECENT_STEPS: usize = 32;

/// How many bytes of file ids [`ChainState::recent`] keeps, at most (the newest step is always
/// kept, whatever its size: a striped set has up to 64 files).
pub const RECENT_FILE_ID_BYTES: usize = 16 * 1024;

/// What has been restored on the target so far. `ChainState::default()` is nothing restored.
///
/// Its size does not grow with the number of restores (it lives inside the migration's one
/// status-table item, which DynamoDB caps at 400 KB): it keeps what the planner needs — the
/// full's and the last differential's `BackupSetGUID`, how far the chain reaches, its recovery
/// fork — the latest steps ([`ChainState::recent`], for [`ChainState::has_restored`] and for
/// the guards that name the last restored backup) and how far the steps it no longer keeps
/// reached ([`ChainState::forgotten_reach`]). The full history is in the file records
/// (Restored, with their times). Records written when every step was kept (`steps`) are read
/// into this shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "StoredChainState")]
pub struct ChainState {
    /// `BackupSetGUID` of the restored full; `None` while nothing is restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_backup_set_guid: Option<Uuid>,
    /// `BackupSetGUID` of the last differential applied, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub differential_backup_set_guid: Option<Uuid>,
    /// `LastLSN` of the last step applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_lsn: Option<Lsn>,
    /// The chain's recovery fork, when known (see [`ChainState::apply_on_fork`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_fork_id: Option<Uuid>,
    /// The latest steps applied, in order: at most [`RECENT_STEPS`] and
    /// [`RECENT_FILE_ID_BYTES`] of file ids, the last one always.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Step>,
    /// `LastLSN` of the newest step no longer in [`ChainState::recent`]: every step applied
    /// before those it keeps reached at most this far. `None` while it keeps them all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forgotten_reach: Option<Lsn>,
    /// How many steps were applied, and files restored, by backup type.
    #[serde(skip_serializing_if = "Applied::is_empty")]
    pub applied: Applied,
}

/// Counts of what a chain applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Applied {
    /// RESTORE statements (one per backup set).
    #[serde(default)]
    pub steps: u64,
    /// Files restored (a striped set counts each of its files), by backup type.
    #[serde(default)]
    pub full_files: u64,
    #[serde(default)]
    pub differential_files: u64,
    #[serde(default)]
    pub log_files: u64,
    /// RESTORE statements by backup type (a striped set is one). Zero in records written before
    /// they were counted: [`Applied::steps_of`] then counts files.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub full_steps: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub differential_steps: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_steps: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Applied {
    fn is_empty(&self) -> bool {
        *self == Applied::default()
    }

    /// Files restored of one backup type.
    pub fn files_of(&self, kind: BackupKind) -> u64 {
        match kind {
            BackupKind::Full => self.full_files,
            BackupKind::Differential => self.differential_files,
            BackupKind::Log => self.log_files,
        }
    }

    /// RESTORE statements of one backup type (a striped set counts once).
    pub fn steps_of(&self, kind: BackupKind) -> u64 {
        if self.full_steps + self.differential_steps + self.log_steps == 0 && self.steps > 0 {
            return self.files_of(kind);
        }
        match kind {
            BackupKind::Full => self.full_steps,
            BackupKind::Differential => self.differential_steps,
            BackupKind::Log => self.log_steps,
        }
    }

    /// Files restored, every type.
    pub fn files(&self) -> u64 {
        self.full_files + self.differential_files + self.log_files
    }
}

/// A chain state as stored: today's shape, or the one written before it, which kept every step
/// in `steps` (read once, then written back in today's shape).
#[derive(Deserialize)]
struct StoredChainState {
    #[serde(default)]
    full_backup_set_guid: Option<Uuid>,
    #[serde(default)]
    differential_backup_set_guid: Option<Uuid>,
    #[serde(default)]
    last_lsn: Option<Lsn>,
    #[serde(default)]
    recovery_fork_id: Option<Uuid>,
    #[serde(default)]
    recent: Vec<Step>,
    #[serde(default)]
    forgotten_reach: Option<Lsn>,
    #[serde(default)]
    applied: Applied,
    /// Every step, as records written before [`ChainState::recent`] kept them.
    #[serde(default)]
    steps: Vec<Step>,
}

impl From<StoredChainState> for ChainState {
    fn from(stored: StoredChainState) -> ChainState {
        let mut state = ChainState {
            full_backup_set_guid: stored.full_backup_set_guid,
            differential_backup_set_guid: stored.differential_backup_set_guid,
            last_lsn: stored.last_lsn,
            recovery_fork_id: stored.recovery_fork_id,
            recent: stored.recent,
            forgotten_reach: stored.forgotten_reach,
            applied: stored.applied,
        };
        // The old shape: replay the steps for the counts and the window; the chain's own fields
        // (full, differential, reach, fork) end as they were stored.
        for step in &stored.steps {
            state.record(step);
        }
        state
    }
}

impl ChainState {
    /// Records `step` as restored. A step already recorded is ignored, so recording twice is
    /// harmless: one whose backup set [`ChainState::has_restored`], or one that reaches no
    /// further than steps no longer kept (steps only ever move the chain forward). The
    /// recovery fork is left as it is (a [`Step`] does not carry it); prefer
    /// [`ChainState::apply_on_fork`] where the fork is at hand.
    pub fn apply(&mut self, step: &Step) {
        if self.has_restored(step.backup_set_guid) || self.is_forgotten(step.last_lsn) {
            return;
        }
        self.record(step);
    }

    /// Records `step` (the chain's fields, the counts, the window), without the check.
    fn record(&mut self, step: &Step) {
        match step.kind {
            BackupKind::Full => {
                self.full_backup_set_guid = Some(step.backup_set_guid);
                self.differential_backup_set_guid = None;
            }
            BackupKind::Differential => {
                self.differential_backup_set_guid = Some(step.backup_set_guid);
            }
            BackupKind::Log => {}
        }
        self.last_lsn = Some(step.last_lsn);
        let files = step.files.len() as u64;
        self.applied.steps += 1;
        match step.kind {
            BackupKind::Full => {
                self.applied.full_files += files;
                self.applied.full_steps += 1;
            }
            BackupKind::Differential => {
                self.applied.differential_files += files;
                self.applied.differential_steps += 1;
            }
            BackupKind::Log => {
                self.applied.log_files += files;
                self.applied.log_steps += 1;
            }
        }
        self.recent.push(step.clone());
        let bytes = |steps: &[Step]| -> usize {
            steps.iter().flat_map(|s| &s.files).map(String::len).sum()
        };
        let mut keep_from = 0;
        while self.recent.len() - keep_from > 1
            && (self.recent.len() - keep_from > RECENT_STEPS
                || bytes(&self.recent[keep_from..]) > RECENT_FILE_ID_BYTES)
        {
            keep_from += 1;
        }
        for dropped in self.recent.drain(..keep_from) {
            self.forgotten_reach = self.forgotten_reach.max(Some(dropped.last_lsn));
        }
    }

    /// Records `step` as restored and the chain as being on `recovery_fork_id` (the step's
    /// `RecoveryForkID`). From then on, files on another fork fail the chain.
    pub fn apply_on_fork(&mut self, step: &Step, recovery_fork_id: Uuid) {
        self.apply(step);
        self.recovery_fork_id = Some(recovery_fork_id);
    }

    /// Records a restored step as the restore worker and [`plan_all`] both do: on its
    /// recovery fork when the first file's header (`fork`) is known.
    pub fn record_restored(&mut self, step: &Step, fork: Option<Uuid>) {
        match fork {
            Some(fork) => self.apply_on_fork(step, fork),
            None => self.apply(step),
        }
    }

    /// True when the backup set is known to be restored: the chain's full, its last
    /// differential, or one of the latest steps ([`ChainState::recent`]). A set restored
    /// before those is not remembered by GUID, but it reached no further than
    /// [`ChainState::forgotten_reach`]: see [`ChainState::is_forgotten`].
    pub fn has_restored(&self, backup_set_guid: Uuid) -> bool {
        self.full_backup_set_guid == Some(backup_set_guid)
            || self.differential_backup_set_guid == Some(backup_set_guid)
            || self
                .recent
                .iter()
                .any(|s| s.backup_set_guid == backup_set_guid)
    }

    /// True when a backup ending at `last_lsn` lies wholly behind the steps the state still
    /// keeps: restored long ago or covered by what was, it is never needed again.
    pub fn is_forgotten(&self, last_lsn: Lsn) -> bool {
        self.forgotten_reach.is_some_and(|reach| last_lsn <= reach)
    }

    /// The last step applied.
    pub fn last_step(&self) -> Option<&Step> {
        self.recent.last()
    }

    /// True while nothing is restored.
    pub fn is_empty(&self) -> bool {
        self.applied.steps == 0 && self.full_backup_set_guid.is_none()
    }

    /// How far the restored chain reaches (`LastLSN` of the last step).
    pub(crate) fn reach(&self) -> Lsn {
        self.last_lsn.unwrap_or(Lsn::ZERO)
    }
}
