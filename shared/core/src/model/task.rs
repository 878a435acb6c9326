//! The identity of a server-side task on the target (an RDS task or an Agent job), as the
//! migration record keeps it.

/// A server-side task: an RDS task id or an Agent job name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum TaskId {
    Rds(i64),
    AgentJob(String),
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskId::Rds(id) => write!(f, "RDS task {id}"),
            TaskId::AgentJob(name) => write!(f, "Agent job {name}"),
        }
    }
}
