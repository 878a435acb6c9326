//! One round of decisions over the backup sets: which set is applied next, and each other
//! set's fate against what is restored (or will be, once the next step is applied).

use super::decision::{ChainFailure, SkipReason, WaitReason};
use super::sets::BackupSet;
use crate::model::chain::ChainState;
use crate::model::header::BackupKind;

/// One set's fate in one round.
#[derive(Debug)]
pub(super) enum Verdict {
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

/// The decisions of one round: the index of the set applied next, and a verdict per set.
pub(super) struct Round {
    pub(super) next: Option<usize>,
    pub(super) verdicts: Vec<Verdict>,
}

/// Decides one round over `sets` (indices of the result refer to `sets`).
pub(super) fn decide(state: &ChainState, sets: &[&BackupSet<'_>]) -> Round {
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
