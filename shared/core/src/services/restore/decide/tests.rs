//! The worker's rules as tables: each row a record as read, what the rule decides.

use super::*;
use crate::model::header::BackupKind;
use crate::model::lsn::Lsn;
use crate::model::object::ObjectRef;
use crate::model::status::ArmedComplete;
use crate::plan::{SkipReason, WaitReason};

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

fn name() -> DatabaseName {
    DatabaseName::parse("Sales").expect("name")
}

const ME: Attempt<'static> = Attempt {
    message_id: "m1",
    invocation: "i1",
};

fn step() -> Step {
    Step {
        kind: BackupKind::Full,
        files: vec!["f1".into()],
        backup_set_guid: uuid::Uuid::from_u128(7),
        first_lsn: Lsn::ZERO,
        last_lsn: Lsn::ZERO,
    }
}

/// A claim of message `owner` by invocation `invocation`, its lease ending `left` from now.
fn claim(owner: &str, invocation: &str, left: i64) -> Claim {
    Claim {
        owner: owner.into(),
        holder: Some(format!("{invocation}/{owner}")),
        until: now() + secs(left),
    }
}

fn in_flight(claim: Claim, task: Option<TaskId>) -> InFlight {
    InFlight {
        step: step(),
        task_name: "Sales_full".into(),
        task,
        claim,
        percent_complete: None,
        seen_running_at: None,
        looks: 0,
        bytes: Some(1000),
        submitted_at: now() - secs(60),
    }
}

fn migration(state: MigrationState, in_flight: Option<InFlight>) -> MigrationRecord {
    let mut m = MigrationRecord::new(name(), now());
    m.state = state;
    m.in_flight = in_flight;
    m
}

fn file(state: FileState, reason: Option<Reason>) -> FileRecord {
    FileRecord {
        migration: Some(name()),
        file_id: "f1".into(),
        object: ObjectRef {
            bucket: "b".into(),
            key: "Sales/f1.bak".into(),
            version_id: None,
            etag: None,
            size: 1000,
        },
        state,
        reason,
        header: None,
        claim: None,
        restore_started_at: None,
        restore_finished_at: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn claimed() -> Claimed {
    Claimed {
        step: step(),
        task_name: "Sales_full".into(),
        task_floor: None,
    }
}

#[test]
fn claim_arbitration() {
    use MigrationState::*;
    let task = Some(TaskId::Rds(5));
    let repoll = Arbitration::Repoll {
        task_name: "Sales_full".into(),
        submitted_at: now() - secs(60),
    };
    let rows: Vec<(&str, MigrationRecord, Arbitration)> = vec![
        (
            "nothing in flight: plan",
            migration(Restoring, None),
            Arbitration::Plan,
        ),
        (
            "nothing in flight, synchronizing: plan",
            migration(Synchronizing, None),
            Arbitration::Plan,
        ),
        (
            "succeeded: rest",
            migration(Succeeded, None),
            Arbitration::Rest,
        ),
        ("failed: rest", migration(Failed, None), Arbitration::Rest),
        (
            "cancelled, nothing in flight: rest",
            migration(Cancelled, None),
            Arbitration::Rest,
        ),
        (
            "cancelled, a submit's lease ran out: settle it",
            migration(Cancelled, Some(in_flight(claim("m0", "i0", -1), None))),
            Arbitration::SettleCancelled(claimed()),
        ),
        (
            "cancelled, a submit's lease is live: rest (its submitter polls what it submits)",
            migration(Cancelled, Some(in_flight(claim("m0", "i0", 30), None))),
            Arbitration::Rest,
        ),
        (
            "cancelled with a task: rest (its polls stop it)",
            migration(
                Cancelled,
                Some(in_flight(claim("m0", "i0", -1), task.clone())),
            ),
            Arbitration::Rest,
        ),
        (
            "completing without its finish task: resume",
            migration(Completing, None),
            Arbitration::ResumeFinish,
        ),
        (
            "a task of this message in flight: queue its poll again",
            migration(
                Restoring,
                Some(in_flight(claim("m1", "i0", 30), task.clone())),
            ),
            repoll,
        ),
        (
            "a task of another message in flight: rest",
            migration(
                Restoring,
                Some(in_flight(claim("m0", "i0", 30), task.clone())),
            ),
            Arbitration::Rest,
        ),
        (
            "this invocation holds the claim: resume it",
            migration(Restoring, Some(in_flight(claim("m1", "i1", 30), None))),
            Arbitration::Resume(claimed()),
        ),
        (
            "this invocation's claim, lease over: still resume it",
            migration(Restoring, Some(in_flight(claim("m1", "i1", -5), None))),
            Arbitration::Resume(claimed()),
        ),
        (
            "another's claim, lease over: take it over",
            migration(Restoring, Some(in_flight(claim("m0", "i0", 0), None))),
            Arbitration::TakeOver(claimed()),
        ),
        (
            "this message held by another invocation: come back after its lease",
            migration(Restoring, Some(in_flight(claim("m1", "i0", 30), None))),
            Arbitration::Defer(Duration::from_secs(31)),
        ),
        (
            "this message held for longer than SQS delays: the longest delay",
            migration(Restoring, Some(in_flight(claim("m1", "i0", 3600), None))),
            Arbitration::Defer(MAX_QUEUE_DELAY),
        ),
        (
            "another message's live claim: rest",
            migration(Restoring, Some(in_flight(claim("m0", "i0", 30), None))),
            Arbitration::Rest,
        ),
    ];
    for (row, m, expected) in rows {
        assert_eq!(arbitrate(&m, ME, now()), expected, "{row}");
    }
}

#[test]
fn a_claim_taken_over_is_this_attempts_with_a_new_lease() {
    let m = migration(
        MigrationState::Restoring,
        Some(in_flight(claim("m0", "i0", -1), None)),
    );
    let taken = taken_over(&m, ME, now());
    let claim = taken.in_flight.as_ref().map(|f| f.claim.clone());
    assert_eq!(claim, Some(ME.claim(now())));
    assert!(ME.holds(&taken.in_flight.as_ref().expect("in flight").claim));
    assert_eq!(taken.in_flight.as_ref().map(|f| &f.step), Some(&step()));
}

#[test]
fn verdicts_on_files() {
    let wait = Decision::Wait {
        reason: WaitReason::NoFullYet,
    };
    let waiting_text = WaitReason::NoFullYet.to_string();
    let waiting = Some(Reason::new("NoFullYet", waiting_text.clone()));
    let skip = Decision::Skip {
        reason: SkipReason::Duplicate { of: "f0".into() },
    };
    // (row, decision, file as read, changed?, state after)
    let rows: Vec<(&str, Decision, FileRecord, bool, FileState)> = vec![
        (
            "apply now: nothing recorded",
            Decision::ApplyNow,
            file(FileState::Waiting, None),
            false,
            FileState::Waiting,
        ),
        (
            "a queued file waits",
            wait.clone(),
            file(FileState::Queued, None),
            true,
            FileState::Waiting,
        ),
        (
            "a waiting file waits for another reason",
            wait.clone(),
            file(FileState::Waiting, Some(Reason::new("MissingLogs", "x"))),
            true,
            FileState::Waiting,
        ),
        (
            "the same wait again: nothing written",
            wait.clone(),
            file(FileState::Waiting, waiting.clone()),
            false,
            FileState::Waiting,
        ),
        (
            "a skipped file",
            skip.clone(),
            file(FileState::Waiting, None),
            true,
            FileState::Skipped,
        ),
        (
            "a file no longer to plan is left alone",
            skip.clone(),
            file(FileState::Restoring, None),
            false,
            FileState::Restoring,
        ),
        (
            "a restored file is left alone",
            wait.clone(),
            file(FileState::Restored, None),
            false,
            FileState::Restored,
        ),
        (
            "a broken chain fails the migration, not through this rule",
            Decision::Fail {
                reason: crate::plan::ChainFailure::StripeSetInconsistent {
                    backup_set_guid: uuid::Uuid::from_u128(7),
                },
            },
            file(FileState::Waiting, None),
            false,
            FileState::Waiting,
        ),
    ];
    for (row, decision, mut f, changed, state) in rows {
        assert_eq!(
            verdict_change(&decision, &mut f, now()).is_some(),
            changed,
            "{row}"
        );
        assert_eq!(f.state, state, "{row}");
    }
    let mut f = file(FileState::Queued, None);
    verdict_change(&wait, &mut f, now());
    assert_eq!(f.reason, waiting);
    let mut f = file(FileState::Waiting, None);
    verdict_change(&skip, &mut f, now());
    assert_eq!(f.reason.map(|r| r.code), Some("Duplicate".to_owned()));
    assert_eq!(f.restore_finished_at, Some(now()));
}

#[test]
fn a_migration_at_rest() {
    let waits = Plan {
        next: None,
        decisions: vec![crate::plan::FileDecision {
            file_id: "f1".into(),
            decision: Decision::Wait {
                reason: WaitReason::NoFullYet,
            },
        }],
    };
    let nothing = Plan {
        next: None,
        decisions: Vec::new(),
    };
    let mut restored = migration(MigrationState::Restoring, None);
    restored.chain.record_restored(&step(), None);
    let mut synced = restored.clone();
    synced.state = MigrationState::Synchronizing;
    let mut indexed = migration(MigrationState::AwaitingFull, None);
    indexed.files_indexed = true;
    let mut unindexed = indexed.clone();
    unindexed.files_indexed = false;
    // (row, migration, plan, joined, index lags, synchronize, replan)
    let rows = [
        (
            "nothing restored",
            indexed.clone(),
            &nothing,
            false,
            false,
            false,
            false,
        ),
        (
            "restored, not yet said",
            restored.clone(),
            &nothing,
            false,
            false,
            true,
            false,
        ),
        (
            "restored and said",
            synced.clone(),
            &nothing,
            false,
            false,
            false,
            false,
        ),
        (
            "a file joined and waits, the index lags",
            indexed.clone(),
            &waits,
            true,
            true,
            false,
            true,
        ),
        (
            "the index does not lag",
            indexed.clone(),
            &waits,
            true,
            false,
            false,
            false,
        ),
        (
            "no file joined",
            indexed.clone(),
            &waits,
            false,
            true,
            false,
            false,
        ),
        (
            "nothing waits",
            indexed.clone(),
            &nothing,
            true,
            true,
            false,
            false,
        ),
        (
            "files not indexed",
            unindexed,
            &waits,
            true,
            true,
            false,
            false,
        ),
    ];
    for (row, m, plan, joined, lags, synchronize, replan) in rows {
        assert_eq!(
            at_rest(&m, plan, joined, lags),
            AtRest {
                synchronize,
                replan
            },
            "{row}"
        );
    }
}

#[test]
fn a_step_claimed_is_restoring_under_its_task_name() {
    let mut m = migration(MigrationState::AwaitingFull, None);
    m.generation = 2;
    m.task_floor = Some(40);
    let got = claim_step(&mut m, &name(), &step(), ME, now());
    assert_eq!(got.task_name, task_name("Sales", 2, &step()));
    assert_eq!(got.task_floor, Some(40));
    assert_eq!(m.state, MigrationState::Restoring);
    assert!(m.restores_submitted);
    let f = m.in_flight.as_ref().expect("claimed");
    assert_eq!(
        (f.task.clone(), &f.task_name, f.submitted_at),
        (None, &got.task_name, now())
    );
    assert!(ME.holds(&f.claim));

    let mut failed = m.clone();
    fail_before_first(&mut failed, Reason::new("TargetDatabaseExists", "x"), now());
    assert_eq!(
        (failed.state, failed.in_flight.is_none()),
        (MigrationState::Failed, true)
    );
}

#[test]
fn tasks_found_again() {
    let rows = [
        (None, None, None),
        (Some(TaskId::Rds(50)), None, Some(TaskId::Rds(50))),
        (Some(TaskId::Rds(50)), Some(40), Some(TaskId::Rds(50))),
        (Some(TaskId::Rds(40)), Some(40), None),
        (Some(TaskId::Rds(12)), Some(40), None),
        (
            Some(TaskId::AgentJob("j".into())),
            Some(40),
            Some(TaskId::AgentJob("j".into())),
        ),
    ];
    for (found, floor, expected) in rows {
        assert_eq!(
            found_task(found.clone(), floor),
            expected,
            "{found:?} over floor {floor:?}"
        );
    }
}

#[test]
fn refused_submissions() {
    let kind = |r: Refusal| match r {
        Refusal::NotReady(_) => "not ready".to_owned(),
        Refusal::Busy => "busy".to_owned(),
        Refusal::Transient(_) => "transient".to_owned(),
        Refusal::Fail(reason) => format!("fail {}", reason.code),
    };
    let rows = [
        (
            TargetError::NotReady(NotReady::AgentNotRunning),
            "not ready",
        ),
        (
            TargetError::NotReady(NotReady::EditionWithoutAgent {
                edition: "Express".into(),
            }),
            "fail TargetRefused",
        ),
        (TargetError::Busy, "busy"),
        (
            TargetError::Sql {
                number: 18456,
                message: "Login failed".into(),
            },
            "transient",
        ),
        (TargetError::Connection("reset".into()), "transient"),
        (
            TargetError::Sql {
                number: 3201,
                message: "Cannot open backup device".into(),
            },
            "fail SqlServerError",
        ),
        (TargetError::Protocol("odd".into()), "fail TargetRefused"),
    ];
    for (error, expected) in rows {
        let row = error.to_string();
        let got = kind(refusal(error));
        assert!(got.starts_with(expected), "{row}: {got}");
    }
}

#[test]
fn a_recorded_task_clears_the_fault_and_raises_the_task_floor_seen() {
    let mut m = migration(
        MigrationState::Restoring,
        Some(in_flight(claim("m1", "i1", 30), None)),
    );
    m.highest_task = Some(9);
    m.reason = Some(Reason::new("TargetUnreachable", "x"));
    m.target_fault_since = Some(now());
    assert!(record_task(&mut m, &TaskId::Rds(12), 5000, now()).is_some());
    let f = m.in_flight.as_ref().expect("in flight");
    assert_eq!(
        (f.task.clone(), f.bytes, f.submitted_at),
        (Some(TaskId::Rds(12)), Some(5000), now())
    );
    assert_eq!(
        (m.highest_task, m.reason.clone(), m.target_fault_since),
        (Some(12), None, None)
    );
    let mut gone = migration(MigrationState::Restoring, None);
    assert!(record_task(&mut gone, &TaskId::Rds(12), 5000, now()).is_none());
}

#[test]
fn what_a_poll_looks_at() {
    use MigrationState::*;
    let task = TaskId::Rds(5);
    let running = in_flight(claim("m0", "i0", 30), Some(task.clone()));
    let rows: Vec<(&str, MigrationRecord, &str, PollTarget)> = vec![
        (
            "its task",
            migration(Restoring, Some(running.clone())),
            "Sales_full",
            PollTarget::Look {
                in_flight: Box::new(running.clone()),
                task: task.clone(),
            },
        ),
        (
            "its task, cancelled",
            migration(Cancelled, Some(running.clone())),
            "Sales_full",
            PollTarget::Cancelled(task.clone()),
        ),
        (
            "another task in flight",
            migration(Restoring, Some(running.clone())),
            "Sales_diff",
            PollTarget::Stale,
        ),
        (
            "nothing in flight",
            migration(Synchronizing, None),
            "Sales_full",
            PollTarget::Stale,
        ),
        (
            "this message claimed the next step",
            migration(Restoring, Some(in_flight(claim("m1", "i0", 30), None))),
            "Sales_diff",
            PollTarget::Advance,
        ),
        (
            "its step, no task recorded",
            migration(Restoring, Some(in_flight(claim("m0", "i0", 30), None))),
            "Sales_full",
            PollTarget::Advance,
        ),
    ];
    for (row, m, polled, expected) in rows {
        assert_eq!(poll_target(&m, polled, ME), expected, "{row}");
    }
}

#[test]
fn what_a_tasks_status_means() {
    let task = TaskId::Rds(5);
    let rows = [
        (
            TaskStatus::Running {
                percent: Some(40.0),
            },
            "running",
        ),
        (TaskStatus::Succeeded, "restored"),
        (
            TaskStatus::Failed {
                sql_error: Some(SqlError {
                    number: 3241,
                    message: "The media family is incorrectly formed".into(),
                }),
                message: String::new(),
            },
            "files failed SqlServerError",
        ),
        (
            TaskStatus::Failed {
                sql_error: None,
                message: "Aborted the task because of a task failure".into(),
            },
            "files failed",
        ),
        (TaskStatus::Cancelled, "failed RestoreCancelled"),
    ];
    for (status, expected) in rows {
        let got = match verdict(&status, &task) {
            Verdict::Running(p) => {
                assert_eq!(p, Some(40.0));
                "running".to_owned()
            }
            Verdict::Restored => "restored".to_owned(),
            Verdict::FilesFailed(r) => format!("files failed {}", r.code),
            Verdict::Failed(r) => format!("failed {}", r.code),
        };
        assert!(got.starts_with(expected), "{status:?}: {got}");
    }
}

#[test]
fn a_restored_step_grows_the_chain_and_reaches_an_armed_complete() {
    let mut f = in_flight(claim("m0", "i0", 30), Some(TaskId::Rds(5)));
    f.bytes = Some(6_000);
    let mut m = migration(MigrationState::Restoring, Some(f));
    m.armed = Some(ArmedComplete {
        last_backup: "f1.bak".into(),
        require_tail_log: false,
        by: "dba".into(),
        armed_at: now(),
        reached: false,
        refused: None,
    });
    let names = vec!["f1.bak".to_owned()];
    let step = step();
    let restored = RestoredStep {
        task_name: "Sales_diff",
        step: &step,
        fork: None,
        names: &names,
        seen_running: Some(now() - secs(30)),
    };
    assert!(
        record_restored(&mut m.clone(), &restored, now()).is_none(),
        "another task"
    );
    let restored = RestoredStep {
        task_name: "Sales_full",
        ..restored
    };
    assert!(record_restored(&mut m, &restored, now()).is_some());
    assert_eq!(m.state, MigrationState::Synchronizing);
    assert!(m.in_flight.is_none());
    assert_eq!(m.chain.last_step(), Some(&step));
    assert!(m.armed.as_ref().is_some_and(|a| a.reached));
    assert!(crate::services::cutover::armed_due(&m));

    let mut running = migration(
        MigrationState::Restoring,
        Some(in_flight(claim("m0", "i0", 30), Some(TaskId::Rds(5)))),
    );
    assert!(record_running(&mut running, "Sales_full", Some(50.0), now()).is_some());
    assert!(record_running(&mut running, "Sales_diff", Some(60.0), now()).is_none());
    let f = running.in_flight.as_ref().expect("in flight");
    assert_eq!(
        (f.percent_complete, f.seen_running_at, f.looks),
        (Some(50.0), Some(now()), 1)
    );
}

#[test]
fn which_failures_leave_the_message_for_a_retry() {
    let rows = [
        (
            WorkError::Store(StoreError::Unavailable("down".into())),
            true,
        ),
        (
            WorkError::Store(StoreError::Conflict { expected: None }),
            true,
        ),
        (WorkError::Store(StoreError::Corrupt("x".into())), false),
        (WorkError::Contended("Sales".into()), true),
        (WorkError::Target(TargetError::Busy), true),
        (
            WorkError::Target(TargetError::Protocol("odd".into())),
            false,
        ),
        (WorkError::Unknown("file f1".into()), false),
    ];
    for (error, transient) in rows {
        assert_eq!(error.is_transient(), transient, "{error:?}");
    }
}
