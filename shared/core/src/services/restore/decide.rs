//! The worker's decisions, as pure functions of the records: which delivery acts on a claim,
//! what the planner's verdicts change on a file, what a migration with nothing to submit does,
//! how a step is claimed and its task recorded, what a refused submission and a poll's answer
//! mean. The executor (`advance`, `submit`, `poll`) reads the records, asks these functions and
//! performs what they decide; the tables in `decide/tests.rs` state every rule.

use super::*;
use crate::plan::Plan;
use crate::ports::NotReady;

/// What a delivery does with a migration before planning: the claim arbitration.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arbitration {
    /// Cancelled while a submit was in progress whose lease ran out: take the claim over, then
    /// find and stop what it submitted, if anything.
    SettleCancelled(Claimed),
    /// Completing, its finishing task never recorded (the armed Complete stopped half-way):
    /// resume the Complete.
    ResumeFinish,
    /// Nothing to do: the migration does not take restores, or another delivery holds its claim.
    Rest,
    /// This message submitted the recorded task but may have failed before queueing its first
    /// poll: queue the poll (a duplicate poll is harmless), then rest.
    Repoll {
        task_name: String,
        submitted_at: OffsetDateTime,
    },
    /// This invocation holds the claim: find its task, or submit the step.
    Resume(Claimed),
    /// The claim's holder failed or vanished (its lease ran out): take the claim over (one taker
    /// wins the compare-and-set), then find its task or submit it.
    TakeOver(Claimed),
    /// This very message, held by another invocation right now (SQS delivers at least once):
    /// never act beside it; come back after this delay, when its lease has ended.
    Defer(Duration),
    /// Nothing in flight: plan.
    Plan,
}

/// Decides who acts on `m`'s claim, for a delivery of `attempt` at `now`.
pub(super) fn arbitrate(
    m: &MigrationRecord,
    attempt: Attempt<'_>,
    now: OffsetDateTime,
) -> Arbitration {
    let claimed = |f: &InFlight| Claimed {
        step: f.step.clone(),
        task_name: f.task_name.clone(),
        task_floor: m.task_floor,
    };
    if m.state == MigrationState::Cancelled {
        if let Some(f) = m
            .in_flight
            .as_ref()
            .filter(|f| f.task.is_none() && f.claim.until <= now)
        {
            return Arbitration::SettleCancelled(claimed(f));
        }
    }
    if m.state == MigrationState::Completing && m.finishing.is_none() {
        return Arbitration::ResumeFinish;
    }
    if !m.state.accepts_uploads() {
        return Arbitration::Rest;
    }
    let Some(f) = &m.in_flight else {
        return Arbitration::Plan;
    };
    let ours = f.claim.owner == attempt.message_id;
    if f.task.is_some() {
        return if ours {
            Arbitration::Repoll {
                task_name: f.task_name.clone(),
                submitted_at: f.submitted_at,
            }
        } else {
            Arbitration::Rest
        };
    }
    if attempt.holds(&f.claim) {
        Arbitration::Resume(claimed(f))
    } else if f.claim.until <= now {
        Arbitration::TakeOver(claimed(f))
    } else if ours {
        let left = f.claim.until - now + time::Duration::SECOND;
        Arbitration::Defer(
            Duration::try_from(left)
                .unwrap_or(Duration::ZERO)
                .min(MAX_QUEUE_DELAY),
        )
    } else {
        Arbitration::Rest
    }
}

/// `m` with its in-flight claim taken over by `attempt`.
pub(super) fn taken_over(
    m: &MigrationRecord,
    attempt: Attempt<'_>,
    now: OffsetDateTime,
) -> MigrationRecord {
    let mut taken = m.clone();
    if let Some(f) = taken.in_flight.as_mut() {
        f.claim = attempt.claim(now);
    }
    taken.updated_at = now;
    taken
}

/// What the planner's decision on a file changes in its record (a file still to plan): a
/// waiting file shows why it waits, a skipped one why it is skipped. `None`: nothing changes
/// (a file to apply now, a wait already recorded with the same reason, a broken chain, which
/// fails the migration instead).
pub(super) fn verdict_change(
    decision: &Decision,
    f: &mut FileRecord,
    now: OffsetDateTime,
) -> Option<()> {
    if !TO_PLAN.contains(&f.state) {
        return None;
    }
    match decision {
        Decision::ApplyNow | Decision::Fail { .. } => None,
        Decision::Wait { reason } => {
            let text = reason.to_string();
            let same = f.state == FileState::Waiting
                && f.reason.as_ref().map(|r| (r.code.as_str(), &r.message))
                    == Some((reason.code(), &text));
            (!same).then(|| {
                f.state = FileState::Waiting;
                f.reason = Some(Reason::new(reason.code(), text));
            })
        }
        Decision::Skip { reason } => {
            f.state = FileState::Skipped;
            f.reason = Some(Reason::new(reason.code(), reason.to_string()));
            f.restore_finished_at = Some(now);
            Some(())
        }
    }
}

/// What a migration with nothing to submit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AtRest {
    /// Something is restored and the migration does not say Synchronizing yet.
    pub synchronize: bool,
    /// Plan again after the poll interval: a file that joined at the same moment (the other
    /// stripe of a set, the log that fills a gap) may not be listed by the store's index yet,
    /// and its own advance may miss the file that joined here.
    pub replan: bool,
}

/// Decides [`AtRest`] for `m`, planned as `planned`; `joined`: a file joined the candidates with
/// this message; `index_lags`: the store's files-by-state index may lag its writes.
pub(super) fn at_rest(
    m: &MigrationRecord,
    planned: &Plan,
    joined: bool,
    index_lags: bool,
) -> AtRest {
    let waits = planned
        .decisions
        .iter()
        .any(|d| matches!(d.decision, Decision::Wait { .. }));
    AtRest {
        synchronize: !m.chain.is_empty() && m.state != MigrationState::Synchronizing,
        replan: joined && waits && m.files_indexed && index_lags,
    }
}

/// Claims `step` on `m` for `attempt`: the migration is Restoring with the step in flight, under
/// the task name that a redelivery finds again.
pub(super) fn claim_step(
    m: &mut MigrationRecord,
    name: &DatabaseName,
    step: &Step,
    attempt: Attempt<'_>,
    now: OffsetDateTime,
) -> Claimed {
    let claimed = Claimed {
        step: step.clone(),
        task_name: task_name(name, m.generation, step),
        task_floor: m.task_floor,
    };
    m.in_flight = Some(InFlight {
        task_name: claimed.task_name.clone(),
        step: step.clone(),
        task: None,
        claim: attempt.claim(now),
        percent_complete: None,
        seen_running_at: None,
        looks: 0,
        bytes: None,
        submitted_at: now,
    });
    m.restores_submitted = true;
    m.state = MigrationState::Restoring;
    m.updated_at = now;
    claimed
}

/// Fails `m` before its first restore, for what the live target showed (only against the record
/// planned from: a concurrent delivery may have claimed and submitted the step meanwhile, which
/// created the database the check found).
pub(super) fn fail_before_first(m: &mut MigrationRecord, reason: Reason, now: OffsetDateTime) {
    m.state = MigrationState::Failed;
    m.reason = Some(reason);
    m.in_flight = None;
    m.updated_at = now;
}

/// A task found again when resuming a claim, unless it is a task of the migration before a reset
/// (same S3 object, an RDS task id at or below the floor).
pub(super) fn found_task(found: Option<TaskId>, task_floor: Option<i64>) -> Option<TaskId> {
    match found {
        Some(TaskId::Rds(id)) if task_floor.is_some_and(|floor| id <= floor) => None,
        found => found,
    }
}

/// What a refused submission means.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The target cannot run restores until the DBA fixes it: show why, plan again later.
    NotReady(NotReady),
    /// The target is busy: let go of the claim, plan again after the busy delay.
    Busy,
    /// A fault of the moment (login refused, connection lost, …): retried, never failing the
    /// migration.
    Transient(TargetError),
    /// The target refused the restore itself: the step's files and the migration fail.
    Fail(Reason),
}

/// Decides what the target's refusal of a submission means.
pub(super) fn refusal(error: TargetError) -> Refusal {
    match error {
        TargetError::NotReady(n) if !n.is_permanent() => Refusal::NotReady(n),
        TargetError::Busy => Refusal::Busy,
        e if e.is_transient() => Refusal::Transient(e),
        TargetError::Sql { number, message } => Refusal::Fail(sql_reason(number, &message)),
        e => Refusal::Fail(Reason::new(
            "TargetRefused",
            format!("the restore could not be submitted: {e}"),
        )),
    }
}

/// Records the submitted `task` on `m`'s claim, with the bytes its files hold; `None` when the
/// claim is gone (the migration moved on meanwhile).
pub(super) fn record_task(
    m: &mut MigrationRecord,
    task: &TaskId,
    bytes: u64,
    now: OffsetDateTime,
) -> Option<()> {
    let f = m.in_flight.as_mut()?;
    f.task = Some(task.clone());
    f.submitted_at = now;
    f.bytes = Some(bytes);
    if let TaskId::Rds(id) = task {
        m.highest_task = m.highest_task.max(Some(*id));
    }
    clear_target_reason(m);
    m.updated_at = now;
    Some(())
}

/// What a poll message looks at.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PollTarget {
    /// The message is about a task no longer in flight.
    Stale,
    /// Plan and resume the claim: this message's poll found its task done and claimed the next
    /// step, then failed before that step's first poll was queued; or the step in flight has
    /// no task recorded yet.
    Advance,
    /// The task of a cancelled migration: stop it, then drop the database.
    Cancelled(TaskId),
    /// The task in flight.
    Look {
        in_flight: Box<InFlight>,
        task: TaskId,
    },
}

/// Decides what a poll of `task_name`, delivered to `attempt`, looks at in `m`.
pub(super) fn poll_target(
    m: &MigrationRecord,
    task_name: &str,
    attempt: Attempt<'_>,
) -> PollTarget {
    let Some(in_flight) = m.in_flight.clone().filter(|f| f.task_name == task_name) else {
        let ours = m
            .in_flight
            .as_ref()
            .is_some_and(|f| f.claim.owner == attempt.message_id);
        return if ours {
            PollTarget::Advance
        } else {
            PollTarget::Stale
        };
    };
    let Some(task) = in_flight.task.clone() else {
        return PollTarget::Advance;
    };
    if m.state == MigrationState::Cancelled {
        PollTarget::Cancelled(task)
    } else {
        PollTarget::Look {
            in_flight: Box::new(in_flight),
            task,
        }
    }
}

/// What a task's status means for the migration.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// Still running: record the progress, look again later.
    Running(Option<f64>),
    /// Restored: the chain grows, the files are Restored, the migration advances.
    Restored,
    /// The restore failed: the step's files and the migration fail with SQL Server's reason.
    FilesFailed(Reason),
    /// The task was stopped on the target: the migration fails.
    Failed(Reason),
}

/// Decides what the status of `task` means.
pub(super) fn verdict(status: &TaskStatus, task: &TaskId) -> Verdict {
    match status {
        TaskStatus::Running { percent } => Verdict::Running(*percent),
        TaskStatus::Succeeded => Verdict::Restored,
        TaskStatus::Failed { sql_error, message } => Verdict::FilesFailed(match sql_error {
            Some(SqlError { number, message }) => sql_reason(*number, message),
            None => task_failure_reason(message),
        }),
        TaskStatus::Cancelled => Verdict::Failed(Reason::new(
            "RestoreCancelled",
            format!("{task} was cancelled on the target"),
        )),
    }
}

/// Records a look that found `task_name` running at `percent`; `None` when it is no longer the
/// task in flight.
pub(super) fn record_running(
    m: &mut MigrationRecord,
    task_name: &str,
    percent: Option<f64>,
    now: OffsetDateTime,
) -> Option<()> {
    let f = m.in_flight.as_mut().filter(|f| f.task_name == task_name)?;
    f.percent_complete = percent;
    f.seen_running_at = Some(now);
    f.looks = f.looks.saturating_add(1);
    Some(())
}

/// What a restored step brings to its migration.
#[derive(Debug, Clone)]
pub(super) struct RestoredStep<'a> {
    pub task_name: &'a str,
    pub step: &'a Step,
    /// The recovery fork of the step's backup.
    pub fork: Option<uuid::Uuid>,
    /// The step's file names: a Complete armed with one of them is due once it is recorded.
    pub names: &'a [String],
    /// When the task was last seen running (what the speed learnt is reckoned from).
    pub seen_running: Option<OffsetDateTime>,
}

/// Records the restored step on `m`: the chain grows, the speed of the restore is learnt, the
/// claim is let go, the migration is Synchronizing and an armed Complete waiting for one of its
/// files is due. `None` when the task is no longer the one in flight.
pub(super) fn record_restored(
    m: &mut MigrationRecord,
    restored: &RestoredStep<'_>,
    now: OffsetDateTime,
) -> Option<()> {
    let f = m
        .in_flight
        .as_ref()
        .filter(|f| f.task_name == restored.task_name)?;
    let since = |at: OffsetDateTime| Duration::try_from(at - f.submitted_at).unwrap_or_default();
    let running = restored.seen_running.map(since).unwrap_or_default();
    let (bytes, took) = (f.bytes.unwrap_or(0), since(now));
    m.chain.record_restored(restored.step, restored.fork);
    m.rates.learn(restored.step.kind, bytes, running, took);
    m.in_flight = None;
    m.state = MigrationState::Synchronizing;
    clear_target_reason(m);
    if let Some(armed) = m
        .armed
        .as_mut()
        .filter(|a| a.pending() && restored.names.contains(&a.last_backup))
    {
        armed.reached = true;
    }
    Some(())
}

/// A file whose restore is under way.
pub(super) fn restoring(f: &mut FileRecord, now: OffsetDateTime) -> Option<()> {
    f.state = FileState::Restoring;
    f.reason = None;
    f.restore_started_at = Some(now);
    Some(())
}

/// A file restored.
pub(super) fn restored(f: &mut FileRecord, now: OffsetDateTime) -> Option<()> {
    f.state = FileState::Restored;
    f.reason = None;
    f.restore_finished_at = Some(now);
    Some(())
}

/// A file that failed, with why.
pub(super) fn failed(f: &mut FileRecord, reason: &Reason, now: OffsetDateTime) -> Option<()> {
    f.state = FileState::Failed;
    f.reason = Some(reason.clone());
    f.restore_finished_at = Some(now);
    Some(())
}

#[cfg(test)]
mod tests;
