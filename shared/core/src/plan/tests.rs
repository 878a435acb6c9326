//! One test per planner rule, on synthetic headers.

use super::testkit::*;
use super::*;
use crate::model::chain::RECENT_STEPS;

fn applied(steps: &[&Step]) -> ChainState {
    let mut state = ChainState::default();
    for s in steps {
        state.apply_on_fork(s, FORK);
    }
    state
}

fn full_step(set: u128, first: u64, last: u64) -> Step {
    Step {
        kind: BackupKind::Full,
        files: vec![format!("full{set}")],
        backup_set_guid: guid(set),
        first_lsn: lsn(first),
        last_lsn: lsn(last),
    }
}

fn step_of(kind: BackupKind, set: u128, first: u64, last: u64) -> Step {
    Step {
        kind,
        files: vec![format!("f{set}")],
        backup_set_guid: guid(set),
        first_lsn: lsn(first),
        last_lsn: lsn(last),
    }
}

fn wait(p: &Plan, id: &str) -> WaitReason {
    match decision_of(p, id) {
        Decision::Wait { reason } => reason.clone(),
        other => panic!("{id}: expected Wait, got {other:?}"),
    }
}

fn skip(p: &Plan, id: &str) -> SkipReason {
    match decision_of(p, id) {
        Decision::Skip { reason } => reason.clone(),
        other => panic!("{id}: expected Skip, got {other:?}"),
    }
}

fn fail(p: &Plan, id: &str) -> ChainFailure {
    match decision_of(p, id) {
        Decision::Fail { reason } => reason.clone(),
        other => panic!("{id}: expected Fail, got {other:?}"),
    }
}

#[test]
fn with_nothing_restored_a_complete_full_is_applied_now() {
    let p = plan(&ChainState::default(), &[full("F", 1, 100, 110)]);
    assert_eq!(
        p.next,
        Some(Step {
            kind: BackupKind::Full,
            files: vec!["F".into()],
            backup_set_guid: guid(1),
            first_lsn: lsn(100),
            last_lsn: lsn(110),
        })
    );
    assert_eq!(decision_of(&p, "F"), &Decision::ApplyNow);
}

#[test]
fn a_striped_full_is_one_step_over_all_its_families_in_family_order() {
    let files = [
        stripe(full("F", 1, 100, 110), 3, 3),
        stripe(full("F", 1, 100, 110), 1, 3),
        stripe(full("F", 1, 100, 110), 2, 3),
    ];
    let p = plan(&ChainState::default(), &files);
    let next = p.next.expect("the full");
    assert_eq!(next.files, vec!["F#1", "F#2", "F#3"]);
    assert!(p.decisions.iter().all(|d| d.decision == Decision::ApplyNow));
}

#[test]
fn a_striped_full_with_missing_families_waits_naming_them() {
    let files = [stripe(full("F", 1, 100, 110), 2, 4)];
    let p = plan(&ChainState::default(), &files);
    assert_eq!(p.next, None);
    assert_eq!(
        wait(&p, "F#2"),
        WaitReason::MissingStripes {
            backup_set_guid: guid(1),
            family_count: 4,
            missing_families: vec![1, 3, 4],
        }
    );
}

#[test]
fn logs_and_differentials_before_any_full_wait_for_a_full() {
    let files = [log("L", 2, 100, 200), diff("D", 3, 1, 150, 160)];
    let p = plan(&ChainState::default(), &files);
    assert_eq!(p.next, None);
    assert_eq!(wait(&p, "L"), WaitReason::NoFullYet);
    assert_eq!(wait(&p, "D"), WaitReason::NoFullYet);
}

#[test]
fn logs_wait_for_a_full_whose_stripes_are_incomplete() {
    let files = [stripe(full("F", 1, 100, 110), 1, 2), log("L", 2, 90, 200)];
    let p = plan(&ChainState::default(), &files);
    assert_eq!(p.next, None);
    assert_eq!(wait(&p, "L"), WaitReason::NoFullYet);
}

#[test]
fn the_newest_complete_full_starts_the_chain_and_other_fulls_are_skipped() {
    let files = [
        full("old", 1, 100, 110),
        full("new", 2, 300, 310),
        stripe(full("newest", 3, 500, 510), 1, 2),
    ];
    let p = plan(&ChainState::default(), &files);
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["new".to_owned()])
    );
    let another = SkipReason::OtherFullChosen {
        by: "new.bak".into(),
        full_backup_set_guid: guid(2),
    };
    assert_eq!(skip(&p, "old"), another);
    assert_eq!(skip(&p, "newest#1"), another);
}

#[test]
fn a_full_arriving_after_the_chain_started_is_skipped_saying_how_to_start_over() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let p = plan(&state, &[full("F2", 2, 300, 310)]);
    assert_eq!(p.next, None);
    let reason = skip(&p, "F2");
    assert_eq!(
        reason,
        SkipReason::AnotherFull {
            full_backup_set_guid: guid(1),
        }
    );
    let text = reason.to_string();
    assert!(
        text.contains("cancel the migration") && text.contains("reset it"),
        "{text}"
    );
}

#[test]
fn a_log_that_continues_the_chain_is_applied() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let p = plan(&state, &[log("L", 2, 90, 200)]);
    assert_eq!(
        p.next.map(|s| (s.kind, s.first_lsn, s.last_lsn)),
        Some((BackupKind::Log, lsn(90), lsn(200)))
    );
}

#[test]
fn a_log_ending_exactly_at_the_restored_point_is_skipped_as_covered() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let p = plan(&state, &[log("L", 2, 50, 110)]);
    assert_eq!(p.next, None);
    assert_eq!(
        skip(&p, "L"),
        SkipReason::Covered {
            last_lsn: lsn(110),
            restored_to: lsn(110),
        }
    );
}

#[test]
fn a_log_starting_after_the_restored_point_waits_with_the_missing_range() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let p = plan(&state, &[log("L2", 3, 200, 300), log("L3", 4, 300, 400)]);
    assert_eq!(p.next, None);
    let gap = WaitReason::MissingLogs {
        from: lsn(110),
        to: lsn(200),
    };
    assert_eq!(wait(&p, "L2"), gap);
    assert_eq!(wait(&p, "L3"), gap, "a later log waits on the same gap");
}

#[test]
fn logs_behind_the_next_step_are_queued_not_reported_as_a_gap() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let files = [
        log("L1", 2, 90, 200),
        log("L2", 3, 200, 300),
        log("L4", 5, 400, 500),
    ];
    let p = plan(&state, &files);
    assert_eq!(decision_of(&p, "L1"), &Decision::ApplyNow);
    assert_eq!(
        wait(&p, "L2"),
        WaitReason::Queued {
            after: "L1.bak".into()
        }
    );
    assert_eq!(
        wait(&p, "L4"),
        WaitReason::MissingLogs {
            from: lsn(300),
            to: lsn(400),
        }
    );
}

#[test]
fn each_log_in_line_waits_for_the_one_before_it_so_its_reason_stays_while_the_line_moves() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let files = [
        log("L1", 2, 90, 200),
        log("L2", 3, 200, 300),
        log("L3", 4, 300, 400),
    ];
    let p = plan(&state, &files);
    assert_eq!(decision_of(&p, "L1"), &Decision::ApplyNow);
    let after = |name: &str| WaitReason::Queued {
        after: format!("{name}.bak"),
    };
    assert_eq!(wait(&p, "L2"), after("L1"));
    assert_eq!(wait(&p, "L3"), after("L2"));
    // L1 restored: L3's reason is unchanged.
    let state = applied(&[
        &full_step(1, 100, 110),
        &step_of(BackupKind::Log, 2, 90, 200),
    ]);
    let p = plan(&state, &files[1..]);
    assert_eq!(decision_of(&p, "L2"), &Decision::ApplyNow);
    assert_eq!(wait(&p, "L3"), after("L2"));
}

#[test]
fn when_the_full_is_next_logs_it_covers_are_superseded_by_it() {
    let files = [
        full("F", 1, 100, 110),
        log("before", 2, 10, 100),
        log("L1", 3, 100, 200),
    ];
    let p = plan(&ChainState::default(), &files);
    assert_eq!(decision_of(&p, "F"), &Decision::ApplyNow);
    assert_eq!(
        skip(&p, "before"),
        SkipReason::Superseded {
            by: "F.bak".into(),
            kind: BackupKind::Full,
            restored_to: lsn(110),
        }
    );
    assert_eq!(
        wait(&p, "L1"),
        WaitReason::Queued {
            after: "F.bak".into()
        }
    );
}

#[test]
fn a_differential_on_the_restored_full_goes_before_logs_and_supersedes_what_it_covers() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let files = [
        log("L1", 2, 100, 200),
        log("L2", 3, 200, 300),
        diff("D", 4, 1, 310, 320),
        log("L3", 5, 300, 400),
    ];
    let p = plan(&state, &files);
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["D".to_owned()])
    );
    for covered in ["L1", "L2"] {
        assert_eq!(
            skip(&p, covered),
            SkipReason::Superseded {
                by: "D.bak".into(),
                kind: BackupKind::Differential,
                restored_to: lsn(320),
            }
        );
    }
    assert_eq!(
        wait(&p, "L3"),
        WaitReason::Queued {
            after: "D.bak".into()
        }
    );
}

#[test]
fn the_newest_differential_wins_and_older_differentials_are_superseded() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let files = [diff("D1", 2, 1, 150, 160), diff("D2", 3, 1, 250, 260)];
    let p = plan(&state, &files);
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["D2".to_owned()])
    );
    assert!(matches!(skip(&p, "D1"), SkipReason::Superseded { .. }));
}

#[test]
fn an_older_complete_differential_goes_first_when_the_newest_lacks_stripes() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let files = [
        diff("D1", 2, 1, 150, 160),
        stripe(diff("D2", 3, 1, 250, 260), 1, 2),
    ];
    let p = plan(&state, &files);
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["D1".to_owned()])
    );
    assert!(matches!(
        wait(&p, "D2#1"),
        WaitReason::MissingStripes { .. }
    ));
}

#[test]
fn a_differential_covering_a_gap_is_applied_before_the_logs_after_it() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let files = [log("L3", 4, 300, 400), diff("D", 5, 1, 310, 320)];
    let p = plan(&state, &files);
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["D".to_owned()])
    );
    assert_eq!(
        wait(&p, "L3"),
        WaitReason::Queued {
            after: "D.bak".into()
        }
    );
}

#[test]
fn a_differential_applies_after_logs_when_it_reaches_further() {
    let state = applied(&[
        &full_step(1, 100, 110),
        &step_of(BackupKind::Log, 2, 100, 200),
    ]);
    let p = plan(&state, &[diff("D", 3, 1, 250, 260)]);
    assert_eq!(p.next.map(|s| s.kind), Some(BackupKind::Differential));
}

#[test]
fn a_differential_not_beyond_the_restored_point_is_skipped_as_covered() {
    let state = applied(&[
        &full_step(1, 100, 110),
        &step_of(BackupKind::Log, 2, 100, 300),
    ]);
    let p = plan(&state, &[diff("D", 3, 1, 250, 260)]);
    assert_eq!(p.next, None);
    assert!(matches!(skip(&p, "D"), SkipReason::Covered { .. }));
}

#[test]
fn a_differential_of_another_full_is_skipped_and_the_logs_carry_on() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let files = [diff("D", 3, 9, 250, 260), log("L1", 2, 100, 200)];
    let p = plan(&state, &files);
    assert_eq!(
        skip(&p, "D"),
        SkipReason::DifferentialOfAnotherFull {
            base: Some(guid(9)),
            full_backup_set_guid: guid(1),
        }
    );
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["L1".to_owned()])
    );
}

#[test]
fn a_file_on_another_recovery_fork_fails_the_chain_and_nothing_is_applied() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let mut other = log("X", 3, 200, 300);
    other.header.recovery_fork_id = guid(0xbad);
    let files = [log("L1", 2, 100, 200), other];
    let p = plan(&state, &files);
    assert_eq!(
        fail(&p, "X"),
        ChainFailure::RecoveryForkMismatch {
            expected: FORK,
            found: guid(0xbad),
        }
    );
    assert_eq!(p.next, None);
    assert_eq!(
        wait(&p, "L1"),
        WaitReason::ChainBroken { at: "X.bak".into() }
    );
}

#[test]
fn a_fork_unknown_to_the_state_is_taken_from_the_next_step() {
    let mut state = ChainState::default();
    state.apply(&full_step(1, 100, 110));
    assert_eq!(state.recovery_fork_id, None);
    let mut other = log("X", 3, 200, 300);
    other.header.recovery_fork_id = guid(0xbad);
    let p = plan(&state, &[log("L1", 2, 100, 200), other]);
    assert!(matches!(
        fail(&p, "X"),
        ChainFailure::RecoveryForkMismatch { .. }
    ));
    assert_eq!(p.next, None);
}

#[test]
fn a_covered_file_on_another_fork_is_skipped_not_failed() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let mut old = log("old", 3, 10, 100);
    old.header.recovery_fork_id = guid(0xbad);
    let p = plan(&state, &[old]);
    assert!(matches!(skip(&p, "old"), SkipReason::Covered { .. }));
}

#[test]
fn a_backup_set_already_restored_is_skipped() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let p = plan(&state, &[full("F-again", 1, 100, 110)]);
    assert_eq!(
        skip(&p, "F-again"),
        SkipReason::AlreadyRestored {
            backup_set_guid: guid(1),
        }
    );
}

#[test]
fn a_second_file_for_the_same_stripe_is_skipped_as_a_duplicate() {
    let a = full("a", 1, 100, 110);
    let mut b = full("b", 1, 100, 110);
    b.file_name = "copy of a.bak".into();
    let p = plan(&ChainState::default(), &[b, a]);
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["a".to_owned()])
    );
    assert_eq!(skip(&p, "b"), SkipReason::Duplicate { of: "a.bak".into() });
}

#[test]
fn stripes_that_disagree_about_their_set_fail_the_chain() {
    let a = stripe(full("F", 1, 100, 110), 1, 2);
    let b = stripe(full("F", 1, 100, 120), 2, 2);
    let p = plan(&ChainState::default(), &[a, b]);
    assert_eq!(p.next, None);
    assert_eq!(
        fail(&p, "F#1"),
        ChainFailure::StripeSetInconsistent {
            backup_set_guid: guid(1),
        }
    );
}

#[test]
fn a_family_number_beyond_the_family_count_fails_the_chain() {
    let p = plan(
        &ChainState::default(),
        &[stripe(full("F", 1, 100, 110), 3, 2)],
    );
    assert!(matches!(
        fail(&p, "F#3"),
        ChainFailure::StripeSetInconsistent { .. }
    ));
}

#[test]
fn of_two_logs_starting_at_the_restored_point_the_one_reaching_further_is_applied() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let mut copy_only = log("copy", 2, 100, 150);
    copy_only.header.copy_only = Some(true);
    let p = plan(&state, &[copy_only, log("regular", 3, 100, 200)]);
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["regular".to_owned()])
    );
    assert!(matches!(skip(&p, "copy"), SkipReason::Superseded { .. }));
}

#[test]
fn a_striped_log_with_missing_families_waits_and_is_not_applied() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let p = plan(&state, &[stripe(log("L", 2, 100, 200), 2, 2)]);
    assert_eq!(p.next, None);
    assert!(matches!(wait(&p, "L#2"), WaitReason::MissingStripes { .. }));
}

#[test]
fn candidate_order_does_not_change_the_plan() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let files = vec![
        log("L1", 2, 100, 200),
        diff("D", 4, 1, 250, 260),
        log("L2", 3, 200, 300),
        log("L4", 5, 400, 500),
        stripe(log("S", 6, 500, 600), 1, 2),
        full("F2", 7, 1, 2),
    ];
    let reference = plan(&state, &files);
    let mut reversed = files.clone();
    reversed.reverse();
    assert_eq!(plan(&state, &reversed), reference);
    let mut rotated = files;
    rotated.rotate_left(2);
    assert_eq!(plan(&state, &rotated), reference);
}

#[test]
fn every_distinct_file_gets_exactly_one_decision_sorted_by_file_id() {
    let files = [
        log("c", 2, 100, 200),
        full("a", 1, 100, 110),
        log("b", 3, 500, 600),
        log("c", 2, 100, 200),
    ];
    let p = plan(&ChainState::default(), &files);
    let ids: Vec<&str> = p.decisions.iter().map(|d| d.file_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn recording_a_step_twice_records_it_once() {
    let mut state = ChainState::default();
    let step = full_step(1, 100, 110);
    state.apply(&step);
    state.apply(&step);
    assert_eq!(state.applied.steps, 1);
    assert_eq!(state.recent, [step]);
    assert_eq!(state.full_backup_set_guid, Some(guid(1)));
    assert_eq!(state.last_lsn, Some(lsn(110)));
}

#[test]
fn applying_a_differential_records_it_and_moves_the_restored_point() {
    let mut state = applied(&[&full_step(1, 100, 110)]);
    state.apply(&step_of(BackupKind::Differential, 5, 250, 260));
    assert_eq!(state.differential_backup_set_guid, Some(guid(5)));
    assert_eq!(state.last_lsn, Some(lsn(260)));
    assert_eq!(state.recovery_fork_id, Some(FORK));
}

#[test]
fn plan_all_gives_full_then_differential_then_the_logs_after_it() {
    let files = [
        log("L1", 2, 100, 200),
        full("F", 1, 100, 110),
        log("L3", 5, 300, 400),
        diff("D", 4, 1, 250, 260),
        log("L2", 3, 200, 300),
        log("L5", 7, 500, 600),
    ];
    let all = plan_all(&files);
    let order: Vec<&str> = all.steps.iter().map(|s| s.files[0].as_str()).collect();
    assert_eq!(order, ["F", "D", "L2", "L3"]);
    assert_eq!(all.skipped.len(), 1);
    assert_eq!(all.skipped[0].0, "L1");
    assert_eq!(
        all.waiting,
        vec![(
            "L5".to_owned(),
            WaitReason::MissingLogs {
                from: lsn(400),
                to: lsn(500),
            }
        )]
    );
    assert!(all.failures.is_empty());
    assert_eq!(check_sequence(&all.steps, &files), Ok(()));
}

#[test]
fn plan_all_applies_nothing_when_the_chain_is_broken() {
    let mut other = log("X", 3, 200, 300);
    other.header.recovery_fork_id = guid(0xbad);
    let files = [full("F", 1, 100, 110), log("L1", 2, 100, 200), other];
    let all = plan_all(&files);
    assert_eq!(
        all.steps,
        [],
        "the fork is checked against the full before restoring it"
    );
    assert_eq!(all.failures.len(), 1);
    assert_eq!(all.failures[0].0, "X");
    let waiting: Vec<&str> = all.waiting.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(waiting, ["F", "L1"]);
    assert_eq!(
        all.waiting[0].1,
        WaitReason::ChainBroken { at: "X.bak".into() }
    );
}

#[test]
fn reasons_read_as_sentences_for_a_dba() {
    let gap = WaitReason::MissingLogs {
        from: lsn(39000000054100001),
        to: lsn(39000000057100001),
    };
    assert_eq!(
        gap.to_string(),
        "waiting for the log backups covering LSN 39000000054100001 up to 39000000057100001: the chain has a gap there; upload the missing log backups"
    );
    let stripes = WaitReason::MissingStripes {
        backup_set_guid: guid(1),
        family_count: 3,
        missing_families: vec![2, 3],
    };
    assert!(stripes
        .to_string()
        .starts_with("waiting for stripe file(s) 2, 3 of 3 of backup set"));
    let superseded = SkipReason::Superseded {
        by: "diff.bak".into(),
        kind: BackupKind::Differential,
        restored_to: lsn(5),
    };
    assert_eq!(
        superseded.to_string(),
        "superseded by differential backup diff.bak, which restores up to LSN 5"
    );
    let fork = ChainFailure::RecoveryForkMismatch {
        expected: guid(1),
        found: guid(2),
    };
    assert!(fork
        .to_string()
        .contains("recovery fork 00000000-0000-0000-0000-000000000002"));
}

#[test]
fn chain_state_and_plans_round_trip_through_json() {
    let state = applied(&[&full_step(1, 100, 110)]);
    let json = serde_json::to_string(&state).expect("serializes");
    assert_eq!(
        serde_json::from_str::<ChainState>(&json).ok(),
        Some(state.clone())
    );
    let p = plan(&state, &[log("L2", 3, 200, 300), log("X", 4, 10, 20)]);
    let json = serde_json::to_value(&p).expect("serializes");
    assert_eq!(json["decisions"][0]["decision"]["decision"], "wait");
    assert_eq!(
        json["decisions"][0]["decision"]["reason"]["code"],
        "MissingLogs"
    );
    assert_eq!(json["decisions"][0]["decision"]["reason"]["from"], "110");
    assert_eq!(serde_json::from_value::<Plan>(json).ok(), Some(p));
}

#[test]
fn an_empty_stored_chain_reads_as_nothing_restored() {
    let state: ChainState = serde_json::from_str("{}").expect("reads");
    assert_eq!(state, ChainState::default());
    let legacy: ChainState = serde_json::from_str(r#"{"steps":[]}"#).expect("reads");
    assert_eq!(legacy, ChainState::default());
}

/// A full, then `logs` logs of one file each: log `i` (set 100 + i) covers LSN
/// 110 + 10·i up to 120 + 10·i.
fn long_chain(logs: u64) -> ChainState {
    let mut state = applied(&[&full_step(1, 100, 110)]);
    for i in 0..logs {
        state.apply(&step_of(
            BackupKind::Log,
            100 + u128::from(i),
            110 + 10 * i,
            120 + 10 * i,
        ));
    }
    state
}

#[test]
fn the_chain_state_keeps_its_size_whatever_the_number_of_restores() {
    let thousand = serde_json::to_string(&long_chain(1_000)).expect("json");
    let state = long_chain(10_000);
    let json = serde_json::to_string(&state).expect("json");
    assert_eq!(state.recent.len(), RECENT_STEPS);
    // Ten times the restores: only the numbers in it grew (a digit or so per LSN).
    assert!(
        json.len() < thousand.len() + 3 * RECENT_STEPS + 64,
        "{} bytes, {} for 1,000",
        json.len(),
        thousand.len()
    );
    assert!(json.len() < 8 * 1024, "{} bytes", json.len());
    assert_eq!(state.applied.steps, 10_001);
    assert_eq!(
        (state.applied.full_files, state.applied.log_files),
        (1, 10_000)
    );
    assert_eq!(state.last_lsn, Some(lsn(120 + 10 * 9_999)));
    assert_eq!(state.full_backup_set_guid, Some(guid(1)));
    // The newest step no longer kept ended at the first LSN of the oldest one kept.
    assert_eq!(
        state.forgotten_reach,
        state.recent.first().map(|s| s.first_lsn)
    );
    let round_trip: ChainState = serde_json::from_str(&json).expect("parses");
    assert_eq!(round_trip, state);
}

#[test]
fn the_window_of_latest_steps_is_bounded_in_bytes_but_always_keeps_the_last_step() {
    let mut state = applied(&[&full_step(1, 100, 110)]);
    let mut big = step_of(BackupKind::Log, 2, 110, 120);
    big.files = (0..64).map(|i| format!("{i:0>700}")).collect();
    state.apply(&big);
    assert_eq!(state.recent, [big.clone()], "the full went: {state:?}");
    assert_eq!(state.forgotten_reach, Some(lsn(110)));
    state.apply(&step_of(BackupKind::Log, 3, 120, 130));
    assert_eq!(state.recent.len(), 1);
    assert_eq!(state.last_step().map(|s| s.backup_set_guid), Some(guid(3)));
    assert_eq!(state.forgotten_reach, Some(lsn(120)));
}

#[test]
fn a_chain_state_written_with_every_step_reads_into_the_bounded_shape() {
    let mut steps = vec![
        full_step(1, 100, 110),
        step_of(BackupKind::Differential, 2, 105, 150),
    ];
    for i in 0..40u64 {
        steps.push(step_of(
            BackupKind::Log,
            10 + u128::from(i),
            150 + 10 * i,
            160 + 10 * i,
        ));
    }
    // The shape records had before: every step in `steps`, no counts.
    let old = serde_json::json!({
        "full_backup_set_guid": guid(1),
        "differential_backup_set_guid": guid(2),
        "last_lsn": lsn(160 + 10 * 39),
        "recovery_fork_id": FORK,
        "steps": steps,
    });
    let state: ChainState = serde_json::from_value(old).expect("old shape parses");
    let mut expected = ChainState::default();
    for s in &steps {
        expected.apply_on_fork(s, FORK);
    }
    assert_eq!(state, expected);
    assert_eq!(state.applied.steps, 42);
    assert_eq!(state.differential_backup_set_guid, Some(guid(2)));
    assert_eq!(state.recent.len(), RECENT_STEPS);
    assert!(!serde_json::to_string(&state)
        .expect("json")
        .contains("\"steps\":["));
    // Nothing restored, in the old shape too.
    let empty: ChainState = serde_json::from_str("{\"steps\":[]}").expect("parses");
    assert!(empty.is_empty());
}

#[test]
fn a_log_restored_long_ago_and_uploaded_again_is_skipped_as_covered_never_restored_twice() {
    let state = long_chain(500);
    assert!(!state.has_restored(guid(103)), "no longer kept by GUID");
    let again = log("log3-again", 103, 140, 150);
    let next = log("log500", 600, 110 + 10 * 500, 120 + 10 * 500);
    let p = plan(&state, &[again.clone(), next]);
    assert_eq!(
        p.next.as_ref().map(|s| s.files.clone()),
        Some(vec!["log500".to_owned()])
    );
    assert_eq!(
        skip(&p, "log3-again"),
        SkipReason::Covered {
            last_lsn: lsn(150),
            restored_to: lsn(120 + 10 * 499),
        }
    );
    // Even as a damaged stripe set (its two files disagree): behind the chain, it is skipped.
    let mut odd = stripe(again.clone(), 1, 2);
    odd.header.first_lsn = lsn(141);
    let p = plan(&state, &[stripe(again, 2, 2), odd]);
    assert!(p.next.is_none());
    assert!(p
        .decisions
        .iter()
        .all(|d| matches!(d.decision, Decision::Skip { .. })));
    // A log still kept by GUID says so.
    let recent = log("log499-again", 599, 110 + 10 * 499, 120 + 10 * 499);
    let p = plan(&state, &[recent]);
    assert_eq!(
        skip(&p, "log499-again"),
        SkipReason::AlreadyRestored {
            backup_set_guid: guid(599),
        }
    );
}

#[test]
fn a_differential_restored_long_ago_and_uploaded_again_is_skipped_as_covered() {
    let mut state = applied(&[
        &full_step(1, 100, 110),
        &step_of(BackupKind::Differential, 2, 105, 150),
        &step_of(BackupKind::Differential, 3, 105, 160),
    ]);
    for i in 0..100u64 {
        state.apply(&step_of(
            BackupKind::Log,
            100 + u128::from(i),
            160 + 10 * i,
            170 + 10 * i,
        ));
    }
    let p = plan(
        &state,
        &[
            diff("diff2-again", 2, 1, 105, 150),
            diff("diff3-again", 3, 1, 105, 160),
            // Of another full: never restored, decided as always.
            diff("other", 9, 8, 105, 150),
        ],
    );
    assert!(p.next.is_none());
    assert!(matches!(
        skip(&p, "diff2-again"),
        SkipReason::Covered { .. }
    ));
    assert_eq!(
        skip(&p, "diff3-again"),
        SkipReason::AlreadyRestored {
            backup_set_guid: guid(3),
        }
    );
    assert!(matches!(
        skip(&p, "other"),
        SkipReason::DifferentialOfAnotherFull { .. }
    ));
}

#[test]
fn recording_a_step_from_before_the_window_again_changes_nothing() {
    let mut state = long_chain(100);
    let before = state.clone();
    state.apply(&step_of(BackupKind::Log, 103, 140, 150));
    assert_eq!(state, before);
}
