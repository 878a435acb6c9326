//! PLACEHOLDER written by the lead so the crate compiles while the planner is being written:
//! the planner helper replaces this whole file. Kept contract: `ChainState` (Debug, Clone,
//! PartialEq, Default, Serialize, Deserialize; `fn apply(&mut self, &Step)`), `Step` (Debug,
//! Clone, PartialEq, Serialize, Deserialize; fields kind, files, backup_set_guid, first_lsn,
//! last_lsn), `Candidate`, `plan()`, `Plan { next, decisions }`, `FileDecision { file_id, decision }`,
//! `Decision { ApplyNow, Wait { reason }, Skip { reason }, Fail { reason } }` with Display reasons.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lsn::Lsn;
use crate::status::{BackupKind, HeaderSummary};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChainState {
    pub steps: Vec<Step>,
}

impl ChainState {
    pub fn apply(&mut self, step: &Step) {
        self.steps.push(step.clone());
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub kind: BackupKind,
    pub files: Vec<String>,
    pub backup_set_guid: Uuid,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub file_id: String,
    pub file_name: String,
    pub header: HeaderSummary,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub next: Option<Step>,
    pub decisions: Vec<FileDecision>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileDecision {
    pub file_id: String,
    pub decision: Decision,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    ApplyNow,
    Wait { reason: String },
    Skip { reason: String },
    Fail { reason: String },
}

pub fn plan(_state: &ChainState, candidates: &[Candidate]) -> Plan {
    Plan {
        next: None,
        decisions: candidates
            .iter()
            .map(|c| FileDecision {
                file_id: c.file_id.clone(),
                decision: Decision::Wait {
                    reason: "the restore-chain planner is not implemented yet".into(),
                },
            })
            .collect(),
    }
}
