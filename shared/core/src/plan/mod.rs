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
//!
//! # Layout
//! - `decision`: what the planner says of a file ([`Decision`]) and why, in codes and sentences.
//! - `sets`: the candidates grouped into backup sets, and what grouping alone decides.
//! - `round`: one round's verdicts: the set applied next and every other set's fate.
//! - this module: [`plan`] turns a round into decisions, lining up the sets behind the next
//!   step; [`plan_all`] repeats it over a fixed set of files.

mod decision;
mod round;
mod sets;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use self::decision::{ChainFailure, Decision, FileDecision, SkipReason, WaitReason};
use self::round::{decide, Verdict};
pub use self::sets::Candidate;
use self::sets::{prepare, BackupSet};
use crate::model::chain::{ChainState, Step};
// The tests name backup types through this module (they import it whole).
#[cfg(test)]
use crate::model::header::BackupKind;
use crate::model::lsn::Lsn;

/// The planner's answer for one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The one step to apply now, if any.
    pub next: Option<Step>,
    /// One decision per distinct candidate file id, sorted by file id.
    pub decisions: Vec<FileDecision>,
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
    let broken_at = broken_at(&decisions, candidates, &sets, &round.verdicts);
    let next = round.next.map(|i| sets[i]);
    let pending = settle(&sets, round.verdicts, broken_at.as_deref(), &mut decisions);
    for (i, reason) in pending_waits(state, &sets, next, &pending, broken_at.as_deref()) {
        decide_set(&mut decisions, sets[i], &Decision::Wait { reason });
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

/// The name of what breaks the chain, if anything does: a file failed by grouping, else the
/// first set failed this round.
fn broken_at(
    decided: &BTreeMap<String, Decision>,
    candidates: &[Candidate],
    sets: &[&BackupSet<'_>],
    verdicts: &[Verdict],
) -> Option<String> {
    decided
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
                .zip(verdicts)
                .find(|(_, v)| matches!(v, Verdict::Fail(_)))
                .map(|(s, _)| s.name())
        })
}

/// Records the round's final verdicts as decisions for every file of their sets (the next step
/// waits instead when the chain is broken); returns the sets still pending, by index.
fn settle(
    sets: &[&BackupSet<'_>],
    verdicts: Vec<Verdict>,
    broken_at: Option<&str>,
    decisions: &mut BTreeMap<String, Decision>,
) -> Vec<usize> {
    let mut pending: Vec<usize> = Vec::new();
    for (i, (set, verdict)) in sets.iter().zip(verdicts).enumerate() {
        let decision = match verdict {
            Verdict::Next => match broken_at {
                Some(at) => Decision::Wait {
                    reason: WaitReason::ChainBroken { at: at.to_owned() },
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
        decide_set(decisions, set, &decision);
    }
    pending
}

/// The same decision for every file of a set.
fn decide_set(
    decisions: &mut BTreeMap<String, Decision>,
    set: &BackupSet<'_>,
    decision: &Decision,
) {
    for file in set.files.values() {
        decisions.insert(file.file_id.clone(), decision.clone());
    }
}

/// Why each pending set waits: in line behind the next step, or stranded behind a gap (the
/// missing LSNs), or behind the broken chain.
fn pending_waits(
    state: &ChainState,
    sets: &[&BackupSet<'_>],
    next: Option<&BackupSet<'_>>,
    pending: &[usize],
    broken_at: Option<&str>,
) -> Vec<(usize, WaitReason)> {
    let (queued, reach) = match (next, broken_at) {
        (Some(first), None) => line_up(state, sets, first, pending),
        _ => (BTreeMap::new(), state.reach()),
    };
    let gap_end = pending
        .iter()
        .filter(|i| !queued.contains_key(i))
        .map(|&i| sets[i].first_lsn())
        .min();
    pending
        .iter()
        .map(|&i| {
            let reason = match (queued.get(&i), next, gap_end) {
                (Some(after), Some(_), _) => WaitReason::Queued {
                    after: after.clone(),
                },
                (_, _, Some(to)) if broken_at.is_none() => {
                    WaitReason::MissingLogs { from: reach, to }
                }
                _ => WaitReason::ChainBroken {
                    at: broken_at.unwrap_or_default().to_owned(),
                },
            };
            (i, reason)
        })
        .collect()
}

/// The pending sets that come in line behind the next step `first`, each with the name of the
/// set it comes right after (not the next step: its reason then stays the same while the line
/// moves, and a long line is not written again at every step); and how far the chain reaches
/// once the whole line is applied, where a gap begins.
fn line_up(
    state: &ChainState,
    sets: &[&BackupSet<'_>],
    first: &BackupSet<'_>,
    pending: &[usize],
) -> (BTreeMap<usize, String>, Lsn) {
    let mut simulated = state.clone();
    let mut queued: BTreeMap<usize, String> = BTreeMap::new();
    simulated.apply_on_fork(&first.step(), first.fork());
    let mut before = first.name();
    let mut remaining = pending.to_vec();
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
    (queued, simulated.reach())
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

#[cfg(test)]
mod properties;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
