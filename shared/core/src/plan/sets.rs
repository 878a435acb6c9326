//! The candidates (validated files not yet applied) and the backup sets they form, one file
//! per media family; grouping alone decides some files: sets already restored or covered,
//! duplicate stripes, and stripe sets whose files disagree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::decision::{ChainFailure, Decision, SkipReason, WaitReason};
use crate::model::chain::{ChainState, Step};
use crate::model::header::{BackupKind, HeaderSummary};
use crate::model::lsn::Lsn;

/// A validated file not yet applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub file_id: String,
    pub file_name: String,
    pub header: HeaderSummary,
}

/// A backup set among the candidates: one file per media family present.
#[derive(Debug)]
pub(super) struct BackupSet<'a> {
    pub(super) guid: Uuid,
    /// The family-1 file's header when present, else the lowest family present.
    pub(super) header: &'a HeaderSummary,
    pub(super) files: BTreeMap<u32, &'a Candidate>,
}

impl BackupSet<'_> {
    pub(super) fn kind(&self) -> BackupKind {
        self.header.backup_type
    }

    pub(super) fn first_lsn(&self) -> Lsn {
        self.header.first_lsn
    }

    pub(super) fn last_lsn(&self) -> Lsn {
        self.header.last_lsn
    }

    pub(super) fn fork(&self) -> Uuid {
        self.header.recovery_fork_id
    }

    fn missing(&self) -> Vec<u32> {
        (1..=self.header.family_count)
            .filter(|n| !self.files.contains_key(n))
            .collect()
    }

    pub(super) fn complete(&self) -> bool {
        self.missing().is_empty()
    }

    /// The first file's name, for sentences.
    pub(super) fn name(&self) -> String {
        let first = self.files.values().next().map(|c| c.file_name.as_str());
        match (first, self.files.len()) {
            (Some(name), 1) => name.to_owned(),
            (Some(name), n) => format!("{name} (+{} stripe files)", n - 1),
            (None, _) => self.guid.to_string(),
        }
    }

    pub(super) fn step(&self) -> Step {
        Step {
            kind: self.kind(),
            files: self.files.values().map(|c| c.file_id.clone()).collect(),
            backup_set_guid: self.guid,
            first_lsn: self.first_lsn(),
            last_lsn: self.last_lsn(),
        }
    }

    pub(super) fn missing_stripes(&self) -> WaitReason {
        WaitReason::MissingStripes {
            backup_set_guid: self.guid,
            family_count: self.header.family_count,
            missing_families: self.missing(),
        }
    }
}

/// Candidates grouped into backup sets, and the files decided by grouping alone.
pub(super) struct Prepared<'a> {
    pub(super) sets: Vec<BackupSet<'a>>,
    pub(super) decided: BTreeMap<String, Decision>,
}

/// Groups candidates into backup sets (sorted by `BackupSetGUID`), deciding duplicates, sets
/// already restored and inconsistent stripe sets.
pub(super) fn prepare<'a>(state: &ChainState, candidates: &'a [Candidate]) -> Prepared<'a> {
    let mut sets = Vec::new();
    let mut decided = BTreeMap::new();
    for (guid, members) in group(candidates) {
        if let Some(decisions) = decided_whole(state, guid, &members) {
            decided.extend(decisions);
            continue;
        }
        let (files, duplicates) = one_per_family(members);
        decided.extend(duplicates);
        let Some(header) = files.values().next().map(|c| &c.header) else {
            continue;
        };
        sets.push(BackupSet {
            guid,
            header,
            files,
        });
    }
    Prepared { sets, decided }
}

/// The candidates by backup set, one per file id (chosen by content so that order does not
/// matter), each set's sorted by file id.
fn group(candidates: &[Candidate]) -> BTreeMap<Uuid, Vec<&Candidate>> {
    let mut by_id: BTreeMap<&str, &Candidate> = BTreeMap::new();
    for c in candidates {
        let entry = by_id.entry(c.file_id.as_str()).or_insert(c);
        if candidate_key(c) < candidate_key(entry) {
            *entry = c;
        }
    }
    let mut groups: BTreeMap<Uuid, Vec<&Candidate>> = BTreeMap::new();
    for c in by_id.into_values() {
        groups.entry(c.header.backup_set_guid).or_default().push(c);
    }
    groups
}

/// The decisions for a set decided whole, before its stripes are sorted out: already restored,
/// covered by what was, or its files disagreeing about the stripe set (the chain fails).
fn decided_whole(
    state: &ChainState,
    guid: Uuid,
    members: &[&Candidate],
) -> Option<Vec<(String, Decision)>> {
    let every = |decision: &dyn Fn(&Candidate) -> Decision| {
        members
            .iter()
            .map(|c| (c.file_id.clone(), decision(c)))
            .collect()
    };
    if state.has_restored(guid) {
        return Some(every(&|_| Decision::Skip {
            reason: SkipReason::AlreadyRestored {
                backup_set_guid: guid,
            },
        }));
    }
    if members.iter().all(|c| behind_the_window(state, &c.header)) {
        // Restored long ago (its GUID is no longer kept) or covered by what was: never
        // restored again, whatever its files say of each other.
        return Some(every(&|c| Decision::Skip {
            reason: SkipReason::Covered {
                last_lsn: c.header.last_lsn,
                restored_to: state.reach(),
            },
        }));
    }
    if !stripes_agree(members) {
        return Some(every(&|_| Decision::Fail {
            reason: ChainFailure::StripeSetInconsistent {
                backup_set_guid: guid,
            },
        }));
    }
    None
}

/// The files of a set agree on the stripe set they form (type, family count, LSNs, fork,
/// differential base), and each is one of its families.
fn stripes_agree(members: &[&Candidate]) -> bool {
    let Some(reference) = members.first().map(|c| &c.header) else {
        return true;
    };
    members.iter().all(|c| {
        let h = &c.header;
        h.backup_type == reference.backup_type
            && h.family_count == reference.family_count
            && h.family_sequence >= 1
            && h.family_sequence <= h.family_count
            && h.first_lsn == reference.first_lsn
            && h.last_lsn == reference.last_lsn
            && h.recovery_fork_id == reference.recovery_fork_id
            && h.differential_base_guid == reference.differential_base_guid
    })
}

/// The first file of each media family (members come sorted by file id), and a duplicate skip
/// for every other file of a family.
fn one_per_family(
    members: Vec<&Candidate>,
) -> (BTreeMap<u32, &Candidate>, Vec<(String, Decision)>) {
    let mut files: BTreeMap<u32, &Candidate> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for c in members {
        match files.get(&c.header.family_sequence) {
            Some(kept) => duplicates.push((
                c.file_id.clone(),
                Decision::Skip {
                    reason: SkipReason::Duplicate {
                        of: kept.file_name.clone(),
                    },
                },
            )),
            None => {
                files.insert(c.header.family_sequence, c);
            }
        }
    }
    (files, duplicates)
}

/// A log, or a differential of the chain's full, ending behind the steps the state still keeps
/// ([`ChainState::is_forgotten`]): whether it was restored or not, the chain reaches past it.
/// (Fulls and differentials of another full are decided as always: the full's GUID is kept.)
fn behind_the_window(state: &ChainState, header: &HeaderSummary) -> bool {
    let on_chain = match header.backup_type {
        BackupKind::Log => true,
        BackupKind::Differential => {
            header.differential_base_guid.is_some()
                && header.differential_base_guid == state.full_backup_set_guid
        }
        BackupKind::Full => false,
    };
    on_chain && state.is_forgotten(header.last_lsn)
}

/// A total order on candidates sharing a file id (a caller bug, but it must not make the plan
/// depend on order).
fn candidate_key(c: &Candidate) -> (&str, Uuid, u32, Lsn, Lsn) {
    (
        c.file_name.as_str(),
        c.header.backup_set_guid,
        c.header.family_sequence,
        c.header.first_lsn,
        c.header.last_lsn,
    )
}
