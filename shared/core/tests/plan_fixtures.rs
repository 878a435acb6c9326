//! The planner on real backups: the SQL Server 2016 RestoreTimeClean chain (full, three logs, a
//! differential, three more logs), the striped 2008 R2 full and the 2008 R2 full + differential
//! pair. Headers are read the way the pipeline reads them (first 1 MiB, last 64 KiB); expected
//! LSNs and GUIDs come from tests/fixtures/bak/MANIFEST.md.

use std::collections::BTreeMap;

use bakdrop_core::backup::summary::summarize;
use bakdrop_core::backup::{HEAD_LIMIT, TAIL_LIMIT};
use bakdrop_core::model::chain::{ChainState, Step};
use bakdrop_core::model::header::BackupKind;
use bakdrop_core::plan::{plan, plan_all, Candidate, Decision, SkipReason, WaitReason};
use bakdrop_core::Lsn;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak/");

const FULL: &str = "sql2016_full_RestoreTimeClean.bak";
const DIFF: &str = "sql2016_diff_RestoreTimeClean2.bak";
const LOGS_BEFORE_DIFF: [&str; 3] = [
    "sql2016_log_RestoreTimeClean_1.trn",
    "sql2016_log_RestoreTimeClean_2.trn",
    "sql2016_log_RestoreTimeClean_3.trn",
];
const LOGS_AFTER_DIFF: [&str; 3] = [
    "sql2016_log_RestoreTimeClean2_1.trn",
    "sql2016_log_RestoreTimeClean2_2.trn",
    "sql2016_log_RestoreTimeClean2_3.trn",
];
const STRIPE_1: &str = "sql2008r2_full_stripe1of2_RestoreTimeStripe.bak";
const STRIPE_2: &str = "sql2008r2_full_stripe2of2_RestoreTimeStripe1.bak";

fn lsn(text: &str) -> Lsn {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Reads `name` as the CLI does (head ≤ 1 MiB, then up to 64 KiB after it) and summarizes it.
fn candidate(name: &str) -> Candidate {
    let data = std::fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let head_len = data.len().min(HEAD_LIMIT);
    let tail_len = (data.len() - head_len).min(TAIL_LIMIT);
    let tail = (tail_len > 0).then(|| &data[data.len() - tail_len..]);
    let header = summarize(&data[..head_len], tail, data.len() as u64)
        .unwrap_or_else(|r| panic!("{name}: {r}"));
    Candidate {
        file_id: name.to_owned(),
        file_name: name.to_owned(),
        header,
    }
}

fn chain_2016() -> Vec<Candidate> {
    let mut names = vec![FULL, DIFF];
    names.extend(LOGS_BEFORE_DIFF);
    names.extend(LOGS_AFTER_DIFF);
    names.into_iter().map(candidate).collect()
}

fn first_files(steps: &[Step]) -> Vec<&str> {
    steps.iter().map(|s| s.files[0].as_str()).collect()
}

#[test]
fn the_2016_headers_carry_the_lsns_of_the_manifest() {
    let by_name: BTreeMap<String, Candidate> = chain_2016()
        .into_iter()
        .map(|c| (c.file_id.clone(), c))
        .collect();
    let expect = [
        (
            FULL,
            BackupKind::Full,
            "39000000048800071",
            "39000000051800001",
        ),
        (
            DIFF,
            BackupKind::Differential,
            "39000000059500001",
            "39000000059800001",
        ),
        (
            LOGS_BEFORE_DIFF[0],
            BackupKind::Log,
            "39000000047400001",
            "39000000054100001",
        ),
        (
            LOGS_BEFORE_DIFF[1],
            BackupKind::Log,
            "39000000054100001",
            "39000000057100001",
        ),
        (
            LOGS_BEFORE_DIFF[2],
            BackupKind::Log,
            "39000000057100001",
            "39000000058800001",
        ),
        (
            LOGS_AFTER_DIFF[0],
            BackupKind::Log,
            "39000000058800001",
            "39000000060800001",
        ),
        (
            LOGS_AFTER_DIFF[1],
            BackupKind::Log,
            "39000000060800001",
            "39000000062500001",
        ),
        (
            LOGS_AFTER_DIFF[2],
            BackupKind::Log,
            "39000000062500001",
            "39000000064200001",
        ),
    ];
    for (name, kind, first, last) in expect {
        let h = &by_name[name].header;
        assert_eq!(
            (h.backup_type, h.first_lsn, h.last_lsn),
            (kind, lsn(first), lsn(last)),
            "{name}"
        );
    }
    assert_eq!(
        by_name[DIFF].header.differential_base_guid,
        Some(by_name[FULL].header.backup_set_guid)
    );
}

#[test]
fn the_2016_chain_plans_full_then_differential_then_the_logs_taken_after_it() {
    let all = plan_all(&chain_2016());
    assert_eq!(
        first_files(&all.steps),
        [
            FULL,
            DIFF,
            LOGS_AFTER_DIFF[0],
            LOGS_AFTER_DIFF[1],
            LOGS_AFTER_DIFF[2]
        ]
    );
    assert_eq!(
        all.steps.iter().map(|s| s.kind).collect::<Vec<_>>(),
        [
            BackupKind::Full,
            BackupKind::Differential,
            BackupKind::Log,
            BackupKind::Log,
            BackupKind::Log
        ]
    );
    let superseded = SkipReason::Superseded {
        by: DIFF.to_owned(),
        kind: BackupKind::Differential,
        restored_to: lsn("39000000059800001"),
    };
    let mut skipped = all.skipped.clone();
    skipped.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        skipped,
        LOGS_BEFORE_DIFF
            .iter()
            .map(|n| ((*n).to_owned(), superseded.clone()))
            .collect::<Vec<_>>()
    );
    assert!(all.waiting.is_empty() && all.failures.is_empty(), "{all:?}");
    assert_eq!(
        all.steps.last().map(|s| s.last_lsn),
        Some(lsn("39000000064200001"))
    );
}

/// Delivers files one at a time in `order`, planning and applying after each arrival as the
/// worker does, checking each applied step against SQL Server's rules. Returns the final LSN.
fn deliver(files: &[&Candidate]) -> Lsn {
    let mut state = ChainState::default();
    let mut pending: Vec<Candidate> = Vec::new();
    let mut full = None;
    for file in files {
        pending.push((*file).clone());
        loop {
            let p = plan(&state, &pending);
            assert_eq!(p.decisions.len(), pending.len());
            let mut gone: Vec<String> = Vec::new();
            for d in &p.decisions {
                match &d.decision {
                    Decision::Skip { .. } => gone.push(d.file_id.clone()),
                    Decision::Fail { reason } => panic!("{}: {reason}", d.file_id),
                    Decision::ApplyNow | Decision::Wait { .. } => {}
                }
            }
            let Some(step) = p.next else {
                pending.retain(|c| !gone.contains(&c.file_id));
                break;
            };
            let h = &pending
                .iter()
                .find(|c| c.file_id == step.files[0])
                .expect("the step's file is a candidate")
                .header;
            let reach = state.last_lsn.unwrap_or(Lsn::ZERO);
            match step.kind {
                BackupKind::Full => {
                    assert!(full.is_none(), "second full");
                    full = Some(h.backup_set_guid);
                }
                BackupKind::Differential => {
                    assert_eq!(h.differential_base_guid, full, "differential off its base");
                    assert!(h.last_lsn > reach);
                }
                BackupKind::Log => {
                    assert!(full.is_some(), "log before the full");
                    assert!(
                        h.first_lsn <= reach && reach < h.last_lsn,
                        "log does not continue"
                    );
                }
            }
            state.apply(&step);
            gone.extend(step.files.iter().cloned());
            pending.retain(|c| !gone.contains(&c.file_id));
        }
    }
    assert!(pending.is_empty(), "left waiting: {pending:?}");
    state.last_lsn.unwrap_or(Lsn::ZERO)
}

#[test]
fn every_arrival_order_of_the_2016_chain_reaches_the_same_final_lsn() {
    let files = chain_2016();
    let mut order: Vec<&Candidate> = files.iter().collect();
    // Heap's algorithm: all 8! = 40320 arrival orders.
    let n = order.len();
    let mut c = vec![0usize; n];
    let mut runs = 0;
    assert_eq!(deliver(&order), lsn("39000000064200001"));
    runs += 1;
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                order.swap(0, i);
            } else {
                order.swap(c[i], i);
            }
            assert_eq!(
                deliver(&order),
                lsn("39000000064200001"),
                "order {:?}",
                order.iter().map(|c| c.file_id.as_str()).collect::<Vec<_>>()
            );
            runs += 1;
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    assert_eq!(runs, 40320);
}

#[test]
fn a_missing_2016_log_makes_the_later_logs_wait_for_exactly_its_lsn_range() {
    let files: Vec<Candidate> = chain_2016()
        .into_iter()
        .filter(|c| c.file_id != LOGS_AFTER_DIFF[1])
        .collect();
    let all = plan_all(&files);
    assert_eq!(first_files(&all.steps), [FULL, DIFF, LOGS_AFTER_DIFF[0]]);
    assert_eq!(
        all.waiting,
        vec![(
            LOGS_AFTER_DIFF[2].to_owned(),
            WaitReason::MissingLogs {
                from: lsn("39000000060800001"),
                to: lsn("39000000062500001"),
            }
        )]
    );
}

#[test]
fn without_the_differential_the_2016_logs_restore_one_after_another() {
    let files: Vec<Candidate> = chain_2016()
        .into_iter()
        .filter(|c| c.file_id != DIFF)
        .collect();
    let all = plan_all(&files);
    let mut expected = vec![FULL];
    expected.extend(LOGS_BEFORE_DIFF);
    expected.extend(LOGS_AFTER_DIFF);
    assert_eq!(first_files(&all.steps), expected);
    assert!(all.skipped.is_empty() && all.waiting.is_empty());
}

#[test]
fn the_striped_2008r2_full_is_one_step_over_both_files_in_family_order() {
    let files = [candidate(STRIPE_2), candidate(STRIPE_1)];
    assert_eq!(
        files
            .iter()
            .map(|c| (c.header.family_sequence, c.header.family_count))
            .collect::<Vec<_>>(),
        [(2, 2), (1, 2)]
    );
    let p = plan(&ChainState::default(), &files);
    let step = p.next.expect("the striped full");
    assert_eq!(step.kind, BackupKind::Full);
    assert_eq!(step.files, [STRIPE_1, STRIPE_2]);
    assert_eq!(
        step.backup_set_guid.to_string(),
        "54a4e82d-bd4b-4887-885b-3ae8459d489d"
    );
    assert_eq!(
        (step.first_lsn, step.last_lsn),
        (lsn("20000000007400170"), lsn("20000000014400001"))
    );
    assert!(p.decisions.iter().all(|d| d.decision == Decision::ApplyNow));
}

#[test]
fn with_one_stripe_of_the_2008r2_full_the_plan_waits_naming_the_other_family() {
    for (present, missing) in [(STRIPE_1, 2), (STRIPE_2, 1)] {
        let p = plan(&ChainState::default(), &[candidate(present)]);
        assert_eq!(p.next, None);
        let Decision::Wait {
            reason:
                WaitReason::MissingStripes {
                    backup_set_guid,
                    family_count,
                    missing_families,
                },
        } = &p.decisions[0].decision
        else {
            panic!("{present}: {:?}", p.decisions);
        };
        assert_eq!(
            backup_set_guid.to_string(),
            "54a4e82d-bd4b-4887-885b-3ae8459d489d"
        );
        assert_eq!(
            (*family_count, missing_families.as_slice()),
            (2, [missing].as_slice())
        );
        let text = p.decisions[0].decision.clone();
        if let Decision::Wait { reason } = text {
            assert!(reason
                .to_string()
                .contains(&format!("stripe file(s) {missing} of 2")));
        }
    }
}

#[test]
fn the_2008r2_difftest_full_and_its_differential_restore_in_that_order_whatever_arrives_first() {
    let full = candidate("sql2008r2_full_difftest.bak");
    let diff = candidate("sql2008r2_diff_difftest-diff1.bak");
    assert_eq!(
        diff.header.differential_base_guid,
        Some(full.header.backup_set_guid)
    );
    for files in [[full.clone(), diff.clone()], [diff.clone(), full.clone()]] {
        let all = plan_all(&files);
        assert_eq!(
            first_files(&all.steps),
            [
                "sql2008r2_full_difftest.bak",
                "sql2008r2_diff_difftest-diff1.bak"
            ]
        );
        assert_eq!(all.steps[1].last_lsn, lsn("24000000013200001"));
    }
    // The differential alone waits for its full.
    let p = plan(&ChainState::default(), &[diff]);
    assert_eq!(
        p.decisions[0].decision,
        Decision::Wait {
            reason: WaitReason::NoFullYet
        }
    );
}
