//! Synthetic backup headers and a worker loop for the planner's tests, plus an independent check
//! that a sequence of steps is a valid SQL Server restore sequence.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{plan, Candidate, Decision};
use crate::model::chain::{ChainState, Step};
use crate::model::header::{BackupKind, HeaderSummary};
use crate::model::lsn::Lsn;

pub const FORK: Uuid = Uuid::from_u128(0xf0);
pub const FAMILY: Uuid = Uuid::from_u128(0xfa);

pub fn lsn(n: u64) -> Lsn {
    n.to_string().parse().unwrap_or(Lsn::ZERO)
}

pub fn guid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A header of one backup set (one file of `family_count`).
pub fn header(kind: BackupKind, set: u128, first: u64, last: u64) -> HeaderSummary {
    HeaderSummary {
        files: Vec::new(),
        backup_type: kind,
        copy_only: None,
        source_database: "src".into(),
        server_name: "srv".into(),
        software_version: "13.0.5081".into(),
        database_version: 852,
        compressed: false,
        has_checksums: false,
        tail_log: Some(false),
        first_lsn: lsn(first),
        last_lsn: lsn(last),
        checkpoint_lsn: lsn(first),
        database_backup_lsn: Lsn::ZERO,
        differential_base_lsn: None,
        differential_base_guid: None,
        backup_set_guid: guid(set),
        family_guid: FAMILY,
        recovery_fork_id: FORK,
        family_count: 1,
        family_sequence: 1,
        backup_start_date: None,
        backup_finish_date: None,
        backup_size: None,
    }
}

pub fn candidate(id: &str, header: HeaderSummary) -> Candidate {
    Candidate {
        file_id: id.to_owned(),
        file_name: format!("{id}.bak"),
        header,
    }
}

pub fn full(id: &str, set: u128, first: u64, last: u64) -> Candidate {
    candidate(id, header(BackupKind::Full, set, first, last))
}

pub fn log(id: &str, set: u128, first: u64, last: u64) -> Candidate {
    candidate(id, header(BackupKind::Log, set, first, last))
}

pub fn diff(id: &str, set: u128, base: u128, first: u64, last: u64) -> Candidate {
    let mut h = header(BackupKind::Differential, set, first, last);
    h.differential_base_guid = Some(guid(base));
    h.differential_base_lsn = Some(lsn(first));
    candidate(id, h)
}

/// Stripe `sequence` of `count` of a backup set.
pub fn stripe(mut c: Candidate, sequence: u32, count: u32) -> Candidate {
    c.file_id = format!("{}#{sequence}", c.file_id);
    c.file_name = format!("{}.stripe{sequence}of{count}", c.file_name);
    c.header.family_sequence = sequence;
    c.header.family_count = count;
    c
}

pub fn decision_of<'a>(p: &'a super::Plan, file_id: &str) -> &'a Decision {
    p.decisions
        .iter()
        .find(|d| d.file_id == file_id)
        .map(|d| &d.decision)
        .unwrap_or_else(|| panic!("no decision for {file_id}: {p:#?}"))
}

/// Checks, without the planner's code, that `steps` is a valid restore sequence of the files in
/// `files`. Returns the first violation.
pub fn check_sequence(steps: &[Step], files: &[Candidate]) -> Result<(), String> {
    let by_id: BTreeMap<&str, &Candidate> = files.iter().map(|c| (c.file_id.as_str(), c)).collect();
    let mut full: Option<Uuid> = None;
    let mut reach = Lsn::ZERO;
    let mut seen_sets = BTreeSet::new();
    let mut seen_files = BTreeSet::new();
    for (n, step) in steps.iter().enumerate() {
        if !seen_sets.insert(step.backup_set_guid) {
            return Err(format!("step {n}: backup set applied twice"));
        }
        let headers: Vec<&HeaderSummary> = step
            .files
            .iter()
            .map(|id| by_id.get(id.as_str()).map(|c| &c.header))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("step {n}: unknown file"))?;
        for id in &step.files {
            if !seen_files.insert(id.clone()) {
                return Err(format!("step {n}: file {id} applied twice"));
            }
        }
        let Some(h) = headers.first() else {
            return Err(format!("step {n}: no file"));
        };
        if headers.len() != h.family_count as usize {
            return Err(format!(
                "step {n}: {} of {} stripes",
                headers.len(),
                h.family_count
            ));
        }
        for (i, s) in headers.iter().enumerate() {
            if s.backup_set_guid != step.backup_set_guid
                || s.family_sequence as usize != i + 1
                || s.backup_type != step.kind
            {
                return Err(format!(
                    "step {n}: stripe {i} out of order or of another set"
                ));
            }
        }
        if (h.first_lsn, h.last_lsn) != (step.first_lsn, step.last_lsn) {
            return Err(format!("step {n}: LSNs differ from the files'"));
        }
        match (step.kind, full) {
            (BackupKind::Full, None) => full = Some(step.backup_set_guid),
            (BackupKind::Full, Some(_)) => return Err(format!("step {n}: second full")),
            (_, None) => return Err(format!("step {n}: {} before the full", step.kind)),
            (BackupKind::Differential, Some(f)) => {
                if h.differential_base_guid != Some(f) {
                    return Err(format!("step {n}: differential not on the restored full"));
                }
                if h.last_lsn <= reach {
                    return Err(format!("step {n}: differential not beyond {reach}"));
                }
            }
            (BackupKind::Log, Some(_)) => {
                if !(h.first_lsn <= reach && reach < h.last_lsn) {
                    return Err(format!(
                        "step {n}: log [{}, {}) does not continue from {reach}",
                        h.first_lsn, h.last_lsn
                    ));
                }
            }
        }
        reach = h.last_lsn;
    }
    Ok(())
}

/// What a worker saw: the steps it applied and the files still waiting at the end.
#[derive(Debug)]
pub struct WorkerRun {
    pub applied: Vec<Step>,
    pub state: ChainState,
    pub waiting: Vec<Candidate>,
    pub last_plan: Option<super::Plan>,
}

/// Delivers `arrivals` one at a time, planning and applying after each as the restore worker
/// does (skipped files leave the candidates, applied ones too). `with_fork` records the fork
/// with each step. Fails on any `Fail` decision or a plan missing a decision.
pub fn run_worker(arrivals: &[Candidate], with_fork: bool) -> Result<WorkerRun, String> {
    let mut state = ChainState::default();
    let mut pending: Vec<Candidate> = Vec::new();
    let mut applied = Vec::new();
    let mut last_plan = None;
    for file in arrivals {
        pending.push(file.clone());
        for _ in 0..=arrivals.len() {
            let p = plan(&state, &pending);
            let ids: BTreeSet<&str> = pending.iter().map(|c| c.file_id.as_str()).collect();
            let decided: Vec<&str> = p.decisions.iter().map(|d| d.file_id.as_str()).collect();
            if decided.len() != ids.len() || !decided.iter().all(|d| ids.contains(d)) {
                return Err(format!("decisions {decided:?} for files {ids:?}"));
            }
            let mut gone: BTreeSet<String> = BTreeSet::new();
            for d in &p.decisions {
                match &d.decision {
                    Decision::Skip { .. } => {
                        gone.insert(d.file_id.clone());
                    }
                    Decision::Fail { reason } => return Err(format!("{}: {reason}", d.file_id)),
                    Decision::ApplyNow => {
                        let in_step = p
                            .next
                            .as_ref()
                            .is_some_and(|s| s.files.contains(&d.file_id));
                        if !in_step {
                            return Err(format!("{} ApplyNow but not in next", d.file_id));
                        }
                    }
                    Decision::Wait { .. } => {}
                }
            }
            let next = p.next.clone();
            last_plan = Some(p);
            let Some(step) = next else {
                pending.retain(|c| !gone.contains(&c.file_id));
                break;
            };
            let fork = pending
                .iter()
                .find(|c| step.files.first() == Some(&c.file_id))
                .map(|c| c.header.recovery_fork_id);
            match (with_fork, fork) {
                (true, Some(fork)) => state.apply_on_fork(&step, fork),
                _ => state.apply(&step),
            }
            gone.extend(step.files.iter().cloned());
            applied.push(step);
            pending.retain(|c| !gone.contains(&c.file_id));
        }
    }
    Ok(WorkerRun {
        applied,
        state,
        waiting: pending,
        last_plan,
    })
}
