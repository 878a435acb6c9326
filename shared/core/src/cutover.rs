//! Complete and Cancel: the explicit end of a migration.
//!
//! Complete is the moment of downtime, so it is guarded: it is refused, with a stable code and a
//! sentence, unless the migration is Synchronizing with nothing queued, waiting or restoring (a
//! waiting file means a gap in the chain), and — when the caller says so — the last restored file
//! is the one they expect. Completing twice is harmless: it answers with the current state.
//! Cancel stops the task in flight where the target allows it, drops the half-restored database
//! and ends Cancelled, so the DBA can fix the backups and migrate again.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::names::DatabaseName;
use crate::ports::{RestoreTarget, StatusStore, StoreError, TargetError};
use crate::status::{
    BackupKind, FileState, MigrationRecord, MigrationState, Reason, SqlError, Versioned,
};

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
    for _ in 0..8 {
        let Versioned {
            mut record,
            version,
        } = load(store, name).await?;
        if !change(&mut record) {
            return Ok(record);
        }
        record.updated_at = now;
        match store.put_migration(&record, Some(version)).await {
            Ok(_) => return Ok(record),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CutoverError::Store(StoreError::Conflict { expected: None }))
}

fn parse_name(name: &str) -> Result<DatabaseName, CutoverError> {
    DatabaseName::parse(name).map_err(|e| refused("InvalidDatabaseName", e.to_string()))
}

/// Completes a migration: brings the database online.
///
/// # Errors
/// [`CutoverError::Refused`] when the guard says no; others when a component failed.
pub async fn complete<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    request: &CompleteRequest,
    now: OffsetDateTime,
) -> Result<MigrationState, CutoverError> {
    let name = request.database.as_str();
    let database = parse_name(name)?;
    let migration = load(store, name).await?.record;
    match migration.state {
        MigrationState::Succeeded => return Ok(MigrationState::Succeeded),
        MigrationState::Completing => {} // an earlier Complete stopped half-way: finish it
        MigrationState::Synchronizing => {
            let files = store.list_files(name).await?;
            let busy: Vec<String> = files
                .iter()
                .filter(|f| matches!(f.record.state, FileState::Received | FileState::Validated | FileState::Queued | FileState::Waiting | FileState::Restoring))
                .map(|f| format!("{} ({})", f.record.object.file_name(), f.record.state))
                .collect();
            if !busy.is_empty() || migration.in_flight.is_some() {
                return Err(refused(
                    "FilesInFlight",
                    format!(
                        "cannot complete {name}: files are still queued, waiting (a gap in the chain) or restoring: {}",
                        busy.join(", ")
                    ),
                ));
            }
            let mut restored: Vec<_> = files
                .iter()
                .filter(|f| f.record.state == FileState::Restored)
                .collect();
            restored.sort_by_key(|f| f.record.header.as_ref().map(|h| h.last_lsn));
            let last = restored.last();
            if let Some(expected) = &request.last_backup {
                let actual = last.map(|f| f.record.object.file_name().to_owned());
                if actual.as_deref() != Some(expected.as_str()) {
                    return Err(refused(
                        "NotLastBackup",
                        format!(
                            "cannot complete {name}: the last restored backup is {}, not {expected}",
                            actual.as_deref().unwrap_or("(none)")
                        ),
                    ));
                }
            }
            if request.require_tail_log {
                let is_log = last
                    .and_then(|f| f.record.header.as_ref())
                    .is_some_and(|h| h.backup_type == BackupKind::Log);
                let message = if is_log {
                    format!("cannot complete {name}: a tail-log backup was required, and bakdrop cannot yet tell a tail-log backup from another log backup by its header; complete with last_backup naming your tail-log file instead")
                } else {
                    format!("cannot complete {name}: a tail-log backup was required, but the last restored backup is not a log backup")
                };
                return Err(refused("NotTailLog", message));
            }
            set_state(store, name, now, |m| {
                (m.state == MigrationState::Synchronizing).then(|| m.state = MigrationState::Completing).is_some()
            })
            .await?;
        }
        other => {
            return Err(refused(
                "NotSynchronizing",
                format!("cannot complete {name}: the migration is {other}; Complete is allowed only while it is Synchronizing"),
            ))
        }
    }
    let result = match target.database_state(&database).await? {
        Some(state) if state == "ONLINE" => Ok(()),
        _ => target.bring_online(&database).await,
    };
    match result {
        Ok(()) => {
            let record = set_state(store, name, now, |m| {
                (m.state == MigrationState::Completing)
                    .then(|| m.state = MigrationState::Succeeded)
                    .is_some()
            })
            .await?;
            Ok(record.state)
        }
        Err(TargetError::Sql { number, message }) => {
            let mut reason = Reason::new(
                "CompleteFailed",
                "SQL Server could not bring the database online",
            );
            reason.sql_error = Some(SqlError { number, message });
            set_state(store, name, now, |m| {
                (m.state == MigrationState::Completing)
                    .then(|| {
                        m.state = MigrationState::Failed;
                        m.reason = Some(reason.clone());
                    })
                    .is_some()
            })
            .await?;
            Ok(MigrationState::Failed)
        }
        Err(e) => Err(e.into()),
    }
}

/// Cancels a migration: stops its task, drops the half-restored database, ends Cancelled.
///
/// # Errors
/// [`CutoverError::Refused`] for a migration that is online (Succeeded); others when a component
/// failed (nothing is marked Cancelled then).
pub async fn cancel<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    name: &str,
    now: OffsetDateTime,
) -> Result<MigrationState, CutoverError> {
    let database = parse_name(name)?;
    let migration = load(store, name).await?.record;
    match migration.state {
        MigrationState::Cancelled => return Ok(MigrationState::Cancelled),
        MigrationState::Succeeded => {
            return Err(refused(
                "AlreadyOnline",
                format!("{name} is online (Succeeded); bakdrop does not drop an online database"),
            ))
        }
        _ => {}
    }
    if let Some(task) = migration.in_flight.as_ref().and_then(|f| f.task.clone()) {
        target.cancel_task(&task).await?;
    }
    // Only a database this migration created, i.e. one that is not online.
    match target.database_state(&database).await? {
        Some(state) if state != "ONLINE" => target.drop_database(&database).await?,
        _ => {}
    }
    let record = set_state(store, name, now, |m| {
        (m.state != MigrationState::Cancelled && m.state != MigrationState::Succeeded)
            .then(|| {
                m.state = MigrationState::Cancelled;
                m.in_flight = None;
            })
            .is_some()
    })
    .await?;
    Ok(record.state)
}
