//! What the planner says of each file: apply it now, wait, skip it or fail the chain, each
//! reason with its stable `code` (the JSON tag) and the sentence a person reads.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::header::BackupKind;
use crate::model::lsn::Lsn;

/// What to do with one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDecision {
    pub file_id: String,
    pub decision: Decision,
}

/// Apply now, wait, skip or fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// The file is part of [`Plan::next`](super::Plan::next).
    ApplyNow,
    Wait {
        reason: WaitReason,
    },
    Skip {
        reason: SkipReason,
    },
    Fail {
        reason: ChainFailure,
    },
}

/// Why a file waits. It stays a candidate and is planned again later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code")]
pub enum WaitReason {
    /// No complete full backup has arrived: nothing else can be restored before it.
    NoFullYet,
    /// A striped backup set lacks some of its files (media families).
    MissingStripes {
        backup_set_guid: Uuid,
        family_count: u32,
        missing_families: Vec<u32>,
    },
    /// The chain has a gap: no log backup covering these LSNs has arrived.
    MissingLogs { from: Lsn, to: Lsn },
    /// Applicable later, right after `after` (the step applied now, or one in line behind it).
    Queued { after: String },
    /// Another file breaks the chain, so nothing is applied.
    ChainBroken { at: String },
}

impl WaitReason {
    /// The stable code of this reason (its JSON `code`).
    pub fn code(&self) -> &'static str {
        match self {
            WaitReason::NoFullYet => "NoFullYet",
            WaitReason::MissingStripes { .. } => "MissingStripes",
            WaitReason::MissingLogs { .. } => "MissingLogs",
            WaitReason::Queued { .. } => "Queued",
            WaitReason::ChainBroken { .. } => "ChainBroken",
        }
    }

    /// True when the file waits for something that has not arrived (a full, stripes, logs) or
    /// can never come (a broken chain), not merely for its turn.
    pub fn blocks(&self) -> bool {
        !matches!(self, WaitReason::Queued { .. })
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::NoFullYet => f.write_str(
                "waiting for a full backup: nothing is restored before the full backup that starts the chain has arrived (with all its stripe files)",
            ),
            WaitReason::MissingStripes {
                backup_set_guid,
                family_count,
                missing_families,
            } => {
                let list: Vec<String> = missing_families.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "waiting for stripe file(s) {} of {family_count} of backup set {backup_set_guid}: a striped backup is restored from all its files in one statement; upload the missing file(s)",
                    list.join(", ")
                )
            }
            WaitReason::MissingLogs { from, to } => write!(
                f,
                "waiting for the log backups covering LSN {from} up to {to}: the chain has a gap there; upload the missing log backups"
            ),
            WaitReason::Queued { after } => {
                write!(f, "in line: its turn comes after {after} is restored")
            }
            WaitReason::ChainBroken { at } => write!(
                f,
                "not applied: the restore chain is broken at {at}, so nothing more is restored"
            ),
        }
    }
}

/// Why a file is skipped. Final: the file will never be needed by this chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code")]
pub enum SkipReason {
    /// This backup set is already restored.
    AlreadyRestored { backup_set_guid: Uuid },
    /// Another file holds the same stripe of the same backup set.
    Duplicate { of: String },
    /// What is restored already reaches past this backup.
    Covered { last_lsn: Lsn, restored_to: Lsn },
    /// The step applied now reaches past this backup.
    Superseded {
        by: String,
        kind: BackupKind,
        restored_to: Lsn,
    },
    /// Nothing was restored yet and another full backup, the newest complete one, starts the
    /// chain now.
    OtherFullChosen {
        by: String,
        full_backup_set_guid: Uuid,
    },
    /// The chain was started from another full backup: a restore was submitted, and a later full
    /// is never restored over it.
    AnotherFull { full_backup_set_guid: Uuid },
    /// A differential whose base is not the chain's full.
    DifferentialOfAnotherFull {
        base: Option<Uuid>,
        full_backup_set_guid: Uuid,
    },
}

impl SkipReason {
    /// The stable code of this reason (its JSON `code`).
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::AlreadyRestored { .. } => "AlreadyRestored",
            SkipReason::Duplicate { .. } => "Duplicate",
            SkipReason::Covered { .. } => "Covered",
            SkipReason::Superseded { .. } => "Superseded",
            SkipReason::OtherFullChosen { .. } => "OtherFullChosen",
            SkipReason::AnotherFull { .. } => "AnotherFull",
            SkipReason::DifferentialOfAnotherFull { .. } => "DifferentialOfAnotherFull",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::AlreadyRestored { backup_set_guid } => write!(
                f,
                "already restored: backup set {backup_set_guid} was applied before"
            ),
            SkipReason::Duplicate { of } => write!(
                f,
                "duplicate: {of} holds the same stripe of the same backup set and is used instead"
            ),
            SkipReason::Covered {
                last_lsn,
                restored_to,
            } => write!(
                f,
                "already covered: the database is restored up to LSN {restored_to}, which includes this backup (LastLSN {last_lsn})"
            ),
            SkipReason::Superseded {
                by,
                kind,
                restored_to,
            } => write!(
                f,
                "superseded by {kind} backup {by}, which restores up to LSN {restored_to}"
            ),
            SkipReason::OtherFullChosen {
                by,
                full_backup_set_guid,
            } => write!(
                f,
                "the full backup {by} (BackupSetGUID {full_backup_set_guid}) starts the chain instead: while nothing is restored, the newest complete full backup wins"
            ),
            SkipReason::AnotherFull {
                full_backup_set_guid,
            } => write!(
                f,
                "the restore chain was started from another full backup (BackupSetGUID {full_backup_set_guid}), whose restore was submitted before this one arrived; a later full is never restored over it. To start over from this full: cancel the migration (which drops the half-restored database), reset it, then upload this full and the backups taken after it again (or upload them to a new database folder)"
            ),
            SkipReason::DifferentialOfAnotherFull {
                base,
                full_backup_set_guid,
            } => {
                let base = base.map_or_else(|| "none recorded".to_owned(), |b| b.to_string());
                write!(
                    f,
                    "this differential is based on another full backup (DifferentialBaseGUID {base}), not on the full that starts the chain ({full_backup_set_guid}): it can never be applied here; log backups carry the chain on without it"
                )
            }
        }
    }
}

/// Why the chain is broken: the migration fails (cancel and start again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code")]
pub enum ChainFailure {
    /// The file is on another recovery path than the restored chain.
    #[error("the backup is on recovery fork {found}, but the restored chain is on {expected}: the source database was restored onto a new recovery path between these backups. Cancel the migration and start again from a full backup on the recovery path you want")]
    RecoveryForkMismatch { expected: Uuid, found: Uuid },
    /// The files of a backup set disagree about the stripe set they form.
    #[error("the files of backup set {backup_set_guid} disagree about the stripe set (media family count or number, backup type, LSNs or recovery fork): they are not the stripes of one backup")]
    StripeSetInconsistent { backup_set_guid: Uuid },
}

impl ChainFailure {
    /// The stable code of this failure (its JSON `code`).
    pub fn code(&self) -> &'static str {
        match self {
            ChainFailure::RecoveryForkMismatch { .. } => "RecoveryForkMismatch",
            ChainFailure::StripeSetInconsistent { .. } => "StripeSetInconsistent",
        }
    }
}

#[cfg(test)]
mod codes {
    use super::*;

    /// The `code` tag of a reason's JSON.
    fn json_code(reason: &impl Serialize) -> Option<String> {
        serde_json::to_value(reason)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
    }

    /// The codes the reasons carry are the tags their JSON carries.
    #[test]
    fn every_reason_code_is_its_json_tag() {
        let g = Uuid::from_u128(1);
        let l = Lsn::ZERO;
        let waits = [
            WaitReason::NoFullYet,
            WaitReason::MissingStripes {
                backup_set_guid: g,
                family_count: 2,
                missing_families: vec![2],
            },
            WaitReason::MissingLogs { from: l, to: l },
            WaitReason::Queued { after: "x".into() },
            WaitReason::ChainBroken { at: "x".into() },
        ];
        for w in waits {
            assert_eq!(json_code(&w).as_deref(), Some(w.code()));
        }
        let skips = [
            SkipReason::AlreadyRestored { backup_set_guid: g },
            SkipReason::Duplicate { of: "x".into() },
            SkipReason::Covered {
                last_lsn: l,
                restored_to: l,
            },
            SkipReason::Superseded {
                by: "x".into(),
                kind: BackupKind::Log,
                restored_to: l,
            },
            SkipReason::OtherFullChosen {
                by: "x".into(),
                full_backup_set_guid: g,
            },
            SkipReason::AnotherFull {
                full_backup_set_guid: g,
            },
            SkipReason::DifferentialOfAnotherFull {
                base: None,
                full_backup_set_guid: g,
            },
        ];
        for s in skips {
            assert_eq!(json_code(&s).as_deref(), Some(s.code()));
        }
        for f in [
            ChainFailure::RecoveryForkMismatch {
                expected: g,
                found: g,
            },
            ChainFailure::StripeSetInconsistent { backup_set_guid: g },
        ] {
            assert_eq!(json_code(&f).as_deref(), Some(f.code()));
        }
    }
}
