//! The restore-chain planner: given what is already restored on the target and the validated
//! files not yet applied, decide for every file whether to apply it now, wait for something
//! missing, skip it (already covered) or fail the migration (a broken chain). Pure code: the
//! restore worker calls [`plan`], applies [`Plan::next`], records it with
//! [`ChainState::record_restored`] and plans again; `bakdrop plan` calls [`plan_all`], which does
//! the same in a loop, to print the whole sequence at once: one decision function for both, so
//! the preview is what runs.
//!
//! The rules are those of SQL Server's restore sequence (DESIGN.md section 4):
//! - Nothing restored: the newest *complete* full backup starts the chain (a striped full needs
//!   all its media families, else its files wait naming the missing family numbers). Other
//!   fulls are skipped ([`SkipReason::OtherFullChosen`]); differentials and logs wait for a full
//!   ([`WaitReason::NoFullYet`]). Once a full is restored (its restore was submitted: the worker
//!   plans nothing while a restore is in flight), a later full is skipped with the way to start
//!   over from it ([`SkipReason::AnotherFull`]).
//! - Differential: its `DifferentialBaseGUID` must be the restored full's `BackupSetGUID`, and it
//!   applies when its `LastLSN` is beyond the last applied `LastLSN`. The newest complete
//!   applicable differential goes before any log; what it covers is skipped as superseded.
//!   A differential of another full can never be applied to this chain: it is *skipped*
//!   ([`SkipReason::DifferentialOfAnotherFull`]), not failed, because log backups carry the chain
//!   on without it (fulls and differentials do not break the log chain).
//! - Log: `FirstLSN ≤ last applied LastLSN < LastLSN` applies (the one reaching furthest when
//!   several do, e.g. a copy-only log beside a regular one); a log entirely covered is skipped; a
//!   log starting after what can be reached waits, naming the missing LSN range.
//! - A backup set already restored, or a second file for the same stripe of a set, is skipped.
//!   The state keeps the GUIDs of the full, the last differential and the latest steps only
//!   (its size must not grow with the restores): a log or differential ending behind those is
//!   skipped as covered ([`SkipReason::Covered`]) — restored long ago or not, the chain reaches
//!   past it, so it is never restored twice.
//! - Every file must be on the chain's recovery fork, else the migration fails
//!   ([`ChainFailure::RecoveryForkMismatch`]); files already covered are skipped instead. Only
//!   the *ending* fork (`RecoveryForkID`) is known, so a log that crosses a fork is refused too.
//! - When any file fails the chain, nothing is applied ([`Plan::next`] is `None`).
//!
//! Determinism: the plan depends only on the set of candidates, not on their order. Ties are
//! broken by `LastLSN` then `BackupSetGUID`; decisions come sorted by file id, one per distinct
//! file id.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// The planner's answer for one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The one step to apply now, if any.
    pub next: Option<Step>,
    /// One decision per distinct candidate file id, sorted by file id.
    pub decisions: Vec<FileDecision>,
}

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
    /// The file is part of [`Plan::next`].
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

/// The whole sequence over a fixed set of files: what `bakdrop plan` prints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OfflinePlan {
    pub steps: Vec<Step>,
    pub skipped: Vec<(String, SkipReason)>,
    pub waiting: Vec<(String, WaitReason)>,
    pub failures: Vec<(String, ChainFailure)>,
}

/// Plans one round: the step to apply now and a decision for every candidate.
pub fn plan(state: &ChainState, candidates: &[Candidate]) -> Plan {
    let prepared = prepare(state, candidates);
    let mut decisions: BTreeMap<String, Decision> = prepared.decided;
    let sets: Vec<&BackupSet<'_>> = prepared.sets.iter().collect();
    let round = decide(state, &sets);

    let broken_at = decisions
        .iter()
        .find(|(_, d)| matches!(d, Decision::Fail { .. }))
        .map(|(id, _)| {
            candidates
                .iter()
                .find(|c| &c.file_id == id)
                .map_or_else(|| id.clone(), |c| c.file_name.clone())
        })
        .or_else(|| {
            sets.iter()
                .zip(&round.verdicts)
                .find(|(_, v)| matches!(v, Verdict::Fail(_)))
                .map(|(s, _)| s.name())
        });

    let next = round.next.map(|i| sets[i]);
    let mut pending: Vec<usize> = Vec::new();
    for (i, (set, verdict)) in sets.iter().zip(round.verdicts).enumerate() {
        let decision = match verdict {
            Verdict::Next => match &broken_at {
                Some(at) => Decision::Wait {
                    reason: WaitReason::ChainBroken { at: at.clone() },
                },
                None => Decision::ApplyNow,
            },
            Verdict::Skip(reason) => Decision::Skip { reason },
            Verdict::Fail(reason) => Decision::Fail { reason },
            Verdict::Wait(reason) => Decision::Wait { reason },
            Verdict::Pending => {
                pending.push(i);
                continue;
            }
        };
        for file in set.files.values() {
            decisions.insert(file.file_id.clone(), decision.clone());
        }
    }

    // Pending files: in line behind the next step, or stranded behind a gap. A file in line
    // names the set it comes right after (not the next step: its reason then stays the same
    // while the line moves, and a long line is not written again at every step).
    let mut simulated = state.clone();
    let mut queued: BTreeMap<usize, String> = BTreeMap::new();
    if let (Some(first), None) = (next, &broken_at) {
        simulated.apply_on_fork(&first.step(), first.fork());
        let mut before = first.name();
        let mut remaining = pending.clone();
        // Each round applies one set or stops: bounded by the number of sets.
        for _ in 0..=remaining.len() {
            let subset: Vec<&BackupSet<'_>> = remaining.iter().map(|&i| sets[i]).collect();
            let sim = decide(&simulated, &subset);
            let mut still = Vec::new();
            for (&i, verdict) in remaining.iter().zip(&sim.verdicts) {
                if matches!(verdict, Verdict::Pending) {
                    still.push(i);
                } else {
                    queued.insert(i, before.clone());
                }
            }
            match sim.next {
                Some(n) => {
                    simulated.apply_on_fork(&subset[n].step(), subset[n].fork());
                    before = subset[n].name();
                }
                None => break,
            }
            remaining = still;
        }
    }
    let stranded: Vec<usize> = pending
        .iter()
        .copied()
        .filter(|i| !queued.contains_key(i))
        .collect();
    let gap_end = stranded.iter().map(|&i| sets[i].first_lsn()).min();
    for &i in &pending {
        let reason = match (queued.get(&i), next, gap_end) {
            (Some(after), Some(_), _) => WaitReason::Queued {
                after: after.clone(),
            },
            (_, _, Some(to)) if broken_at.is_none() => WaitReason::MissingLogs {
                from: simulated.reach(),
                to,
            },
            _ => WaitReason::ChainBroken {
                at: broken_at.clone().unwrap_or_default(),
            },
        };
        for file in sets[i].files.values() {
            decisions.insert(
                file.file_id.clone(),
                Decision::Wait {
                    reason: reason.clone(),
                },
            );
        }
    }

    Plan {
        next: match broken_at {
            Some(_) => None,
            None => next.map(BackupSet::step),
        },
        decisions: decisions
            .into_iter()
            .map(|(file_id, decision)| FileDecision { file_id, decision })
            .collect(),
    }
}

/// Plans and applies repeatedly over a fixed set of files: the whole sequence a worker would
/// apply if these files were all there is, what it would skip, and what would still wait.
/// Stops at the first failure (as the worker does: the migration fails).
pub fn plan_all(candidates: &[Candidate]) -> OfflinePlan {
    let mut state = ChainState::default();
    let mut remaining: Vec<Candidate> = candidates.to_vec();
    let mut out = OfflinePlan::default();
    // Each round either applies a step (removing at least one file) or ends.
    for _ in 0..=candidates.len() {
        let round = plan(&state, &remaining);
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut waiting = Vec::new();
        for d in round.decisions {
            match d.decision {
                Decision::ApplyNow => {}
                Decision::Skip { reason } => {
                    done.insert(d.file_id.clone());
                    out.skipped.push((d.file_id, reason));
                }
                Decision::Fail { reason } => out.failures.push((d.file_id, reason)),
                Decision::Wait { reason } => waiting.push((d.file_id, reason)),
            }
        }
        let step = match round.next {
            Some(step) if out.failures.is_empty() => step,
            _ => {
                out.waiting = waiting;
                return out;
            }
        };
        let fork = remaining
            .iter()
            .find(|c| step.files.first() == Some(&c.file_id))
            .map(|c| c.header.recovery_fork_id);
        state.record_restored(&step, fork);
        done.extend(step.files.iter().cloned());
        out.steps.push(step);
        remaining.retain(|c| !done.contains(&c.file_id));
    }
    out
}

/// A backup set among the candidates: one file per media family present.
#[derive(Debug)]
struct BackupSet<'a> {
    guid: Uuid,
    /// The family-1 file's header when present, else the lowest family present.
    header: &'a HeaderSummary,
    files: BTreeMap<u32, &'a Candidate>,
}

impl BackupSet<'_> {
    fn kind(&self) -> BackupKind {
        self.header.backup_type
    }

    fn first_lsn(&self) -> Lsn {
        self.header.first_lsn
    }

    fn last_lsn(&self) -> Lsn {
        self.header.last_lsn
    }

    fn fork(&self) -> Uuid {
        self.header.recovery_fork_id
    }

    fn missing(&self) -> Vec<u32> {
        (1..=self.header.family_count)
            .filter(|n| !self.files.contains_key(n))
            .collect()
    }

    fn complete(&self) -> bool {
        self.missing().is_empty()
    }

    /// The first file's name, for sentences.
    fn name(&self) -> String {
        let first = self.files.values().next().map(|c| c.file_name.as_str());
        match (first, self.files.len()) {
            (Some(name), 1) => name.to_owned(),
            (Some(name), n) => format!("{name} (+{} stripe files)", n - 1),
            (None, _) => self.guid.to_string(),
        }
    }

    fn step(&self) -> Step {
        Step {
            kind: self.kind(),
            files: self.files.values().map(|c| c.file_id.clone()).collect(),
            backup_set_guid: self.guid,
            first_lsn: self.first_lsn(),
            last_lsn: self.last_lsn(),
        }
    }

    fn missing_stripes(&self) -> WaitReason {
        WaitReason::MissingStripes {
            backup_set_guid: self.guid,
            family_count: self.header.family_count,
            missing_families: self.missing(),
        }
    }
}

/// Candidates grouped into backup sets, and the files decided by grouping alone.
struct Prepared<'a> {
    sets: Vec<BackupSet<'a>>,
    decided: BTreeMap<String, Decision>,
}

/// Groups candidates into backup sets (sorted by `BackupSetGUID`), deciding duplicates, sets
/// already restored and inconsistent stripe sets.
fn prepare<'a>(state: &ChainState, candidates: &'a [Candidate]) -> Prepared<'a> {
    // One candidate per file id, chosen by content so that order does not matter.
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

    let mut sets = Vec::new();
    let mut decided = BTreeMap::new();
    for (guid, members) in groups {
        if state.has_restored(guid) {
            for c in members {
                decided.insert(
                    c.file_id.clone(),
                    Decision::Skip {
                        reason: SkipReason::AlreadyRestored {
                            backup_set_guid: guid,
                        },
                    },
                );
            }
            continue;
        }
        if members.iter().all(|c| behind_the_window(state, &c.header)) {
            // Restored long ago (its GUID is no longer kept) or covered by what was: never
            // restored again, whatever its files say of each other.
            for c in members {
                decided.insert(
                    c.file_id.clone(),
                    Decision::Skip {
                        reason: SkipReason::Covered {
                            last_lsn: c.header.last_lsn,
                            restored_to: state.reach(),
                        },
                    },
                );
            }
            continue;
        }
        let Some(reference) = members.first().map(|c| &c.header) else {
            continue;
        };
        let consistent = members.iter().all(|c| {
            let h = &c.header;
            h.backup_type == reference.backup_type
                && h.family_count == reference.family_count
                && h.family_sequence >= 1
                && h.family_sequence <= h.family_count
                && h.first_lsn == reference.first_lsn
                && h.last_lsn == reference.last_lsn
                && h.recovery_fork_id == reference.recovery_fork_id
                && h.differential_base_guid == reference.differential_base_guid
        });
        if !consistent {
            for c in members {
                decided.insert(
                    c.file_id.clone(),
                    Decision::Fail {
                        reason: ChainFailure::StripeSetInconsistent {
                            backup_set_guid: guid,
                        },
                    },
                );
            }
            continue;
        }
        // Members are sorted by file id: the first file of each family is kept.
        let mut files: BTreeMap<u32, &Candidate> = BTreeMap::new();
        for c in members {
            match files.get(&c.header.family_sequence) {
                Some(kept) => {
                    decided.insert(
                        c.file_id.clone(),
                        Decision::Skip {
                            reason: SkipReason::Duplicate {
                                of: kept.file_name.clone(),
                            },
                        },
                    );
                }
                None => {
                    files.insert(c.header.family_sequence, c);
                }
            }
        }
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

/// One set's fate in one round.
#[derive(Debug)]
enum Verdict {
    Next,
    Skip(SkipReason),
    Fail(ChainFailure),
    Wait(WaitReason),
    /// Applicable only later: behind the next step or behind a gap.
    Pending,
}

/// A set measured against a state with a restored full.
enum Eval {
    Final(Verdict),
    ApplicableDifferential,
    ApplicableLog,
    /// Starts after what is restored.
    Later,
}

struct Round {
    next: Option<usize>,
    verdicts: Vec<Verdict>,
}

/// Decides one round over `sets` (indices of the result refer to `sets`).
fn decide(state: &ChainState, sets: &[&BackupSet<'_>]) -> Round {
    if state.full_backup_set_guid.is_none() {
        return decide_without_full(state, sets);
    }
    let evals: Vec<Eval> = sets.iter().map(|s| evaluate(state, s)).collect();
    let best = |wanted: fn(&Eval) -> bool| {
        sets.iter()
            .zip(&evals)
            .enumerate()
            .filter(|(_, (_, e))| wanted(e))
            .max_by(|(_, (a, _)), (_, (b, _))| {
                a.last_lsn()
                    .cmp(&b.last_lsn())
                    .then_with(|| b.guid.cmp(&a.guid))
            })
            .map(|(i, _)| i)
    };
    let next = best(|e| matches!(e, Eval::ApplicableDifferential))
        .or_else(|| best(|e| matches!(e, Eval::ApplicableLog)));

    let after = next.map(|n| {
        let mut after = state.clone();
        after.apply_on_fork(&sets[n].step(), sets[n].fork());
        (after, sets[n])
    });
    let verdicts = evals
        .into_iter()
        .enumerate()
        .map(|(i, eval)| match eval {
            Eval::Final(v) => v,
            _ if Some(i) == next => Verdict::Next,
            _ => match &after {
                Some((after, by)) => after_next(after, by, sets[i]),
                None => Verdict::Pending,
            },
        })
        .collect();
    Round { next, verdicts }
}

/// Nothing restored: the newest complete full starts the chain.
fn decide_without_full(state: &ChainState, sets: &[&BackupSet<'_>]) -> Round {
    let chosen = sets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind() == BackupKind::Full && s.complete())
        .max_by(|(_, a), (_, b)| {
            a.last_lsn()
                .cmp(&b.last_lsn())
                .then_with(|| b.guid.cmp(&a.guid))
        })
        .map(|(i, _)| i);
    let Some(n) = chosen else {
        let verdicts = sets
            .iter()
            .map(|s| match s.kind() {
                BackupKind::Full => Verdict::Wait(s.missing_stripes()),
                _ => Verdict::Wait(WaitReason::NoFullYet),
            })
            .collect();
        return Round {
            next: None,
            verdicts,
        };
    };
    let full = sets[n];
    let mut after = state.clone();
    after.apply_on_fork(&full.step(), full.fork());
    let verdicts = sets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == n {
                Verdict::Next
            } else if s.kind() == BackupKind::Full {
                Verdict::Skip(SkipReason::OtherFullChosen {
                    by: full.name(),
                    full_backup_set_guid: full.guid,
                })
            } else {
                after_next(&after, full, s)
            }
        })
        .collect();
    Round {
        next: Some(n),
        verdicts,
    }
}

/// A set that is not applied now, measured against the state after the next step `by`.
fn after_next(after: &ChainState, by: &BackupSet<'_>, set: &BackupSet<'_>) -> Verdict {
    match evaluate(after, set) {
        Eval::Final(Verdict::Skip(SkipReason::Covered { .. })) => {
            Verdict::Skip(SkipReason::Superseded {
                by: by.name(),
                kind: by.kind(),
                restored_to: by.last_lsn(),
            })
        }
        Eval::Final(v) => v,
        _ => Verdict::Pending,
    }
}

/// A set measured against a state with a restored full.
fn evaluate(state: &ChainState, set: &BackupSet<'_>) -> Eval {
    let Some(full) = state.full_backup_set_guid else {
        return Eval::Final(Verdict::Wait(WaitReason::NoFullYet));
    };
    let reach = state.reach();
    let h = set.header;
    if set.kind() == BackupKind::Full {
        return Eval::Final(Verdict::Skip(SkipReason::AnotherFull {
            full_backup_set_guid: full,
        }));
    }
    if set.kind() == BackupKind::Differential && h.differential_base_guid != Some(full) {
        return Eval::Final(Verdict::Skip(SkipReason::DifferentialOfAnotherFull {
            base: h.differential_base_guid,
            full_backup_set_guid: full,
        }));
    }
    if set.last_lsn() <= reach {
        return Eval::Final(Verdict::Skip(SkipReason::Covered {
            last_lsn: set.last_lsn(),
            restored_to: reach,
        }));
    }
    if let Some(expected) = state.recovery_fork_id {
        if set.fork() != expected {
            return Eval::Final(Verdict::Fail(ChainFailure::RecoveryForkMismatch {
                expected,
                found: set.fork(),
            }));
        }
    }
    if !set.complete() {
        return Eval::Final(Verdict::Wait(set.missing_stripes()));
    }
    match set.kind() {
        BackupKind::Differential => Eval::ApplicableDifferential,
        _ if set.first_lsn() <= reach => Eval::ApplicableLog,
        _ => Eval::Later,
    }
}

#[cfg(test)]
mod codes {
    use super::*;

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
            assert_eq!(
                serde_json::to_value(&w)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned))
                    .as_deref(),
                Some(w.code())
            );
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
            assert_eq!(
                serde_json::to_value(&s)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned))
                    .as_deref(),
                Some(s.code())
            );
        }
        for f in [
            ChainFailure::RecoveryForkMismatch {
                expected: g,
                found: g,
            },
            ChainFailure::StripeSetInconsistent { backup_set_guid: g },
        ] {
            assert_eq!(
                serde_json::to_value(&f)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned))
                    .as_deref(),
                Some(f.code())
            );
        }
    }
}
#[cfg(test)]
mod properties;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
