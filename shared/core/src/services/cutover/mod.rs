//! Complete, Cancel and Reset: the explicit end of a migration, and a new start; Complete armed
//! in advance ([`arm`], [`fire_armed`]).
//!
//! Complete is the moment of downtime, so it is guarded: it is refused, with a stable code and a
//! sentence, unless the migration is Synchronizing with nothing queued, waiting or restoring (a
//! waiting file means a gap in the chain), and — when the caller says so — the last restored file
//! is the one they expect. Completing twice is harmless: it answers with the current state.
//! Cancel stops the task in flight where the target allows it, drops the half-restored database
//! and ends Cancelled; Reset then forgets the cancelled migration, so the DBA can fix the
//! backups and migrate again into the same database name.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::header::BackupKind;
use crate::model::names::DatabaseName;
use crate::model::status::{
    ArmedComplete, FileRecord, FileState, MigrationRecord, MigrationState, Reason, SqlError,
    Versioned,
};
use crate::model::task::TaskId;
use crate::ports::{Online, RestoreTarget, StatusStore, StoreError, TargetError, TaskStatus};
use crate::services::retry::{self, cas, retry, Cas, Updated};

/// The Complete invoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteRequest {
    pub database: String,
    /// The file name the caller expects to be the last one restored.
    #[serde(default)]
    pub last_backup: Option<String>,
    /// Require the last restored backup to be a tail-log backup.
    #[serde(default)]
    pub require_tail_log: bool,
}

/// Why Complete or Cancel did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error("no migration of database {0:?}")]
    NotFound(String),
    /// Refused on purpose: `code` is stable (e.g. `FilesInFlight`, `NotSynchronizing`).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("the status store failed")]
    Store(#[from] StoreError),
    #[error("the target SQL Server failed")]
    Target(#[from] TargetError),
}

impl CutoverError {
    /// True when the same request may succeed later without anything changing.
    pub fn is_transient(&self) -> bool {
        match self {
            CutoverError::Store(e) => e.is_transient() || matches!(e, StoreError::Conflict { .. }),
            CutoverError::Target(e) => e.is_transient(),
            CutoverError::NotFound(_) | CutoverError::Refused { .. } => false,
        }
    }

    /// A stable error type for API callers.
    pub fn error_type(&self) -> &'static str {
        match self {
            CutoverError::NotFound(_) => "MigrationNotFound",
            CutoverError::Refused { code, .. } => code,
            CutoverError::Store(_) => "StatusStoreUnavailable",
            CutoverError::Target(e) if e.is_transient() => "TargetUnavailable",
            CutoverError::Target(_) => "TargetRefused",
        }
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> CutoverError {
    CutoverError::Refused {
        code,
        message: message.into(),
    }
}

async fn load<S: StatusStore>(
    store: &S,
    name: &str,
) -> Result<Versioned<MigrationRecord>, CutoverError> {
    store
        .get_migration(name)
        .await?
        .ok_or_else(|| CutoverError::NotFound(name.to_owned()))
}

async fn set_state<S: StatusStore>(
    store: &S,
    name: &str,
    now: OffsetDateTime,
    change: impl Fn(&mut MigrationRecord) -> bool,
) -> Result<MigrationRecord, CutoverError> {
    let updated = retry::update(
        || store.get_migration(name),
        |m| {
            change(m) && {
                m.updated_at = now;
                true
            }
        },
        |m, version| async move { store.put_migration(&m, Some(version)).await },
    )
    .await?;
    match updated {
        Updated::Missing => Err(CutoverError::NotFound(name.to_owned())),
        Updated::Unchanged(m) | Updated::Changed(m) => Ok(m),
    }
}

/// Checks a database name that came with a request, refused as `InvalidDatabaseName`.
///
/// # Errors
/// [`CutoverError::Refused`] saying which rule the name breaks.
pub fn parse_name(name: &str) -> Result<DatabaseName, CutoverError> {
    DatabaseName::parse(name).map_err(|e| refused("InvalidDatabaseName", e.to_string()))
}

/// The refusal of `action` for a database none of whose files was accepted (or of which
/// nothing is known: [`CutoverError::NotFound`]).
async fn nothing_accepted<S: StatusStore>(
    store: &S,
    name: &str,
    action: &str,
) -> Result<CutoverError, CutoverError> {
    let files = store.list_files(name).await?;
    if files.is_empty() {
        return Ok(CutoverError::NotFound(name.to_owned()));
    }
    Ok(refused(
        "NothingAccepted",
        format!("no backup uploaded for {name} was accepted ({} rejected: see its status), so there is nothing to {action}; reset it to forget the rejected files, which are then validated again (`bakdrop run` re-reads its folder; in a bucket, upload them again)", files.len()),
    ))
}

mod cancel;
mod complete;
mod reset;
#[cfg(test)]
mod tests;

pub use cancel::*;
pub use complete::*;
pub use reset::*;
