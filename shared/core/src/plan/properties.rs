//! Properties over generated chains: files arrive one at a time in any order, a worker plans and
//! applies after each arrival, and what it applies is always a valid restore sequence that ends
//! where the chain ends. A missing log always shows as a wait naming exactly its range.

use proptest::prelude::*;

use super::testkit::*;
use super::*;

/// A generated backup history of one database and what a complete restore must reach.
#[derive(Debug, Clone)]
struct Chain {
    files: Vec<Candidate>,
    /// LSN points p0 < p1 < … < pk: log i covers [p_i, p_{i+1}).
    points: Vec<u64>,
    /// File ids of log i (all its stripes).
    logs: Vec<Vec<String>>,
    end: u64,
}

#[derive(Debug, Clone)]
struct Shape {
    steps: Vec<u64>,
    /// For points 1..=k: a differential taken there.
    diffs: Vec<bool>,
    stale_logs: usize,
    /// Stripe count per backup set, cycled.
    stripes: Vec<u32>,
}

fn shape(max_logs: usize, with_diffs: bool) -> impl Strategy<Value = Shape> {
    (1..=max_logs).prop_flat_map(move |k| {
        (
            prop::collection::vec(10u64..10_000, k),
            prop::collection::vec(prop::bool::weighted(if with_diffs { 0.3 } else { 0.0 }), k),
            0usize..=2,
            prop::collection::vec(
                prop_oneof![6 => Just(1u32), 2 => Just(2u32), 1 => Just(3u32)],
                1..6,
            ),
        )
            .prop_map(|(steps, diffs, stale_logs, stripes)| Shape {
                steps,
                diffs,
                stale_logs,
                stripes,
            })
    })
}

fn build(shape: &Shape) -> Chain {
    let mut files = Vec::new();
    let mut set: u128 = 100;
    let mut stripe_counts = shape.stripes.iter().cycle();
    let mut add = |c: Candidate, files: &mut Vec<Candidate>| -> Vec<String> {
        let count = stripe_counts.next().copied().unwrap_or(1);
        if count == 1 {
            files.push(c.clone());
            return vec![c.file_id];
        }
        (1..=count)
            .map(|n| {
                let s = stripe(c.clone(), n, count);
                files.push(s.clone());
                s.file_id
            })
            .collect()
    };
    let mut points = vec![1_000u64];
    for step in &shape.steps {
        let last = points.last().copied().unwrap_or(1_000);
        points.push(last + step);
    }
    let p0 = points[0];
    set += 1;
    let full_set = set;
    add(full("full", full_set, p0 + 1, p0 + 3), &mut files);
    for s in 0..shape.stale_logs {
        set += 1;
        let s = s as u64;
        add(
            log(&format!("stale{s}"), set, p0 - 100 * (s + 1), p0 - 100 * s),
            &mut files,
        );
    }
    let mut logs = Vec::new();
    for i in 0..shape.steps.len() {
        set += 1;
        logs.push(add(
            log(&format!("log{i}"), set, points[i], points[i + 1]),
            &mut files,
        ));
    }
    let mut end = *points.last().unwrap_or(&p0);
    for (j, taken) in shape.diffs.iter().enumerate() {
        if *taken {
            let at = points[j + 1];
            set += 1;
            add(
                diff(&format!("diff{}", j + 1), set, full_set, at + 1, at + 3),
                &mut files,
            );
            end = end.max(at + 3);
        }
    }
    Chain {
        files,
        points,
        logs,
        end,
    }
}

/// A chain and one arrival order of its files.
fn chain_and_arrivals(
    max_logs: usize,
    with_diffs: bool,
) -> impl Strategy<Value = (Chain, Vec<Candidate>)> {
    shape(max_logs, with_diffs).prop_flat_map(|s| {
        let chain = build(&s);
        let files = chain.files.clone();
        (Just(chain), Just(files).prop_shuffle())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn files_arriving_in_any_order_are_applied_as_a_valid_sequence_that_reaches_the_chain_end(
        (chain, arrivals) in chain_and_arrivals(8, true),
        with_fork in any::<bool>(),
    ) {
        let run = run_worker(&arrivals, with_fork).map_err(TestCaseError::fail)?;
        prop_assert_eq!(check_sequence(&run.applied, &chain.files), Ok(()));
        prop_assert_eq!(run.state.last_lsn, Some(lsn(chain.end)));
        prop_assert!(run.waiting.is_empty(), "still waiting: {:?}", run.last_plan);
        prop_assert_eq!(run.applied.first().map(|s| s.kind), Some(BackupKind::Full));
    }

    #[test]
    fn plan_all_over_a_whole_chain_reaches_its_end_and_leaves_nothing_waiting(
        (chain, arrivals) in chain_and_arrivals(8, true),
    ) {
        let all = plan_all(&arrivals);
        prop_assert_eq!(check_sequence(&all.steps, &chain.files), Ok(()));
        prop_assert_eq!(all.steps.last().map(|s| s.last_lsn), Some(lsn(chain.end)));
        prop_assert!(all.waiting.is_empty() && all.failures.is_empty(), "{:?}", all);
        let applied: usize = all.steps.iter().map(|s| s.files.len()).sum();
        prop_assert_eq!(applied + all.skipped.len(), chain.files.len());
    }

    #[test]
    fn the_plan_does_not_depend_on_the_order_of_candidates(
        (chain, arrivals) in chain_and_arrivals(6, true),
        applied_steps in 0usize..4,
    ) {
        // Some prefix of the chain is restored; the rest are candidates in two orders.
        let reference = plan_all(&chain.files);
        let mut state = ChainState::default();
        for step in reference.steps.iter().take(applied_steps) {
            state.apply_on_fork(step, FORK);
        }
        let done = &reference.steps[..applied_steps.min(reference.steps.len())];
        let left: Vec<Candidate> = arrivals.iter().filter(|c| !done.iter().any(|s| s.files.contains(&c.file_id))).cloned().collect();
        let mut sorted = left.clone();
        sorted.sort_by(|a, b| a.file_id.cmp(&b.file_id));
        prop_assert_eq!(plan(&state, &left), plan(&state, &sorted));
    }

    #[test]
    fn a_missing_middle_log_leads_to_a_wait_naming_exactly_its_range_never_to_a_wrong_apply(
        ((chain, arrivals), pick) in (chain_and_arrivals(8, false), any::<prop::sample::Index>())
            .prop_filter("at least three logs", |((c, _), _)| c.logs.len() >= 3),
        with_fork in any::<bool>(),
    ) {
        let k = chain.logs.len();
        let m = 1 + pick.index(k - 2); // a middle log: 1..=k-2
        let removed = &chain.logs[m];
        let delivered: Vec<Candidate> =
            arrivals.iter().filter(|c| !removed.contains(&c.file_id)).cloned().collect();
        let run = run_worker(&delivered, with_fork).map_err(TestCaseError::fail)?;
        prop_assert_eq!(check_sequence(&run.applied, &chain.files), Ok(()));
        prop_assert_eq!(run.state.last_lsn, Some(lsn(chain.points[m])));
        let gap = WaitReason::MissingLogs { from: lsn(chain.points[m]), to: lsn(chain.points[m + 1]) };
        let p = run.last_plan.ok_or_else(|| TestCaseError::fail("no plan"))?;
        let stranded: Vec<&String> = chain.logs[m + 1..].iter().flatten().collect();
        prop_assert_eq!(run.waiting.len(), stranded.len());
        for id in stranded {
            prop_assert_eq!(decision_of(&p, id), &Decision::Wait { reason: gap.clone() });
        }
    }
}
