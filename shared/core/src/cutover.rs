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

/// Checks a database name that came with a request, refused as `InvalidDatabaseName`.
///
/// # Errors
/// [`CutoverError::Refused`] saying which rule the name breaks.
pub fn parse_name(name: &str) -> Result<DatabaseName, CutoverError> {
    DatabaseName::parse(name).map_err(|e| refused("InvalidDatabaseName", e.to_string()))
}

/// Completes a migration: starts bringing the database online (a server-side task on both
/// dialects) and looks at the task once: Succeeded when it is done already, else Completing
/// (follow it with [`follow_finish`]).
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
        // An earlier Complete started the target's finish task: look at it.
        MigrationState::Completing if migration.finishing.is_some() => {
            return follow_finish(store, target, name, now).await
        }
        MigrationState::Completing => {} // an earlier Complete stopped half-way: finish it
        MigrationState::Synchronizing => {
            let busy: Vec<String> = crate::files::in_play(store, name, Some(&migration))
                .await?
                .iter()
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
            let last = last_restored(store, name, &migration).await?;
            if let Some(expected) = &request.last_backup {
                let actual = last.as_ref().map(|f| f.object.file_name().to_owned());
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
                if let Some(message) = not_tail_log(name, last.as_ref()) {
                    return Err(refused("NotTailLog", message));
                }
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
    match start_finish(store, target, name, &database, now).await? {
        MigrationState::Completing => follow_finish(store, target, name, now).await,
        state => Ok(state),
    }
}

/// Starts bringing a Completing migration's database online and records the target's task
/// (`finishing`): Succeeded at once when the database is ONLINE already, Failed when SQL Server
/// refused to start it. The task is named after the migration and its generation, so that a
/// Complete resumed after a crash or a fault meets the task it started before.
async fn start_finish<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    name: &str,
    database: &DatabaseName,
    now: OffsetDateTime,
) -> Result<MigrationState, CutoverError> {
    let generation = load(store, name).await?.record.generation;
    let task_name = crate::model::names::finish_task_name(name, generation);
    let result = match target.database_state(database).await? {
        Some(state) if state == "ONLINE" => Ok(Online::Now),
        _ => target.bring_online(database, &task_name).await,
    };
    match result {
        Ok(Online::Now) => {
            let record = set_state(store, name, now, |m| {
                (m.state == MigrationState::Completing)
                    .then(|| {
                        m.state = MigrationState::Succeeded;
                        m.finishing = None;
                    })
                    .is_some()
            })
            .await?;
            Ok(record.state)
        }
        Ok(Online::Finishing(task)) => {
            let record = set_state(store, name, now, |m| {
                (m.state == MigrationState::Completing && m.finishing.as_ref() != Some(&task))
                    .then(|| m.finishing = Some(task.clone()))
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
            complete_failed(store, name, reason, now).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Arms Complete in advance: it runs by itself, with exactly the guards of a manual Complete
/// (`last_backup` = the armed name, and `require_tail_log`), once the backup named
/// `last_backup` (a file name, the key's last segment) is restored and nothing is in flight
/// ([`fire_armed`], which the restore worker calls each time it has nothing left to restore).
/// Arming again replaces the arm; arming the same again changes nothing. When that backup is
/// already the last one restored, the arm is due at once: call [`fire_armed`].
///
/// # Errors
/// [`CutoverError::Refused`]: `InvalidLastBackup` for a name that cannot be a file name,
/// `NotArmable` for a migration that takes no more backups (Completing, Succeeded, Failed,
/// Cancelled); [`CutoverError::NotFound`]; others when the store failed.
pub async fn arm<S: StatusStore>(
    store: &S,
    name: &str,
    last_backup: &str,
    require_tail_log: bool,
    by: &str,
    now: OffsetDateTime,
) -> Result<MigrationRecord, CutoverError> {
    parse_name(name)?;
    if last_backup.is_empty()
        || last_backup.contains('/')
        || last_backup.len() > 1024
        || last_backup.chars().any(char::is_control)
    {
        return Err(refused(
            "InvalidLastBackup",
            format!("cannot arm Complete of {name}: {last_backup:?} is not the file name of a backup (the last part of its key)"),
        ));
    }
    let migration = load(store, name).await?.record;
    if !migration.state.accepts_uploads() {
        return Err(refused(
            "NotArmable",
            format!(
                "cannot arm Complete of {name}: the migration is {}; Complete is armed while backups are still being restored",
                migration.state
            ),
        ));
    }
    let reached = last_restored(store, name, &migration)
        .await?
        .is_some_and(|f| f.object.file_name() == last_backup);
    let record = set_state(store, name, now, |m| {
        if !m.state.accepts_uploads() {
            return false;
        }
        let same = m.armed.as_ref().is_some_and(|a| {
            a.pending() && a.last_backup == last_backup && a.require_tail_log == require_tail_log
        });
        if same {
            return false;
        }
        m.armed = Some(ArmedComplete {
            last_backup: last_backup.to_owned(),
            require_tail_log,
            by: by.to_owned(),
            armed_at: now,
            reached,
            refused: None,
        });
        true
    })
    .await?;
    if !record.state.accepts_uploads() {
        return Err(refused(
            "NotArmable",
            format!(
                "cannot arm Complete of {name}: the migration is {}; Complete is armed while backups are still being restored",
                record.state
            ),
        ));
    }
    Ok(record)
}

/// Cancels an armed Complete (harmless when none is armed).
///
/// # Errors
/// [`CutoverError::NotFound`]; others when the store failed.
pub async fn disarm<S: StatusStore>(
    store: &S,
    name: &str,
    now: OffsetDateTime,
) -> Result<MigrationState, CutoverError> {
    parse_name(name)?;
    load(store, name).await?;
    let record = set_state(store, name, now, |m| m.armed.take().is_some()).await?;
    Ok(record.state)
}

/// True when the migration's armed Complete is due: its backup is restored, the migration is
/// Synchronizing and no restore is in flight.
pub fn armed_due(migration: &MigrationRecord) -> bool {
    migration
        .armed
        .as_ref()
        .is_some_and(|a| a.pending() && a.reached)
        && migration.state == MigrationState::Synchronizing
        && migration.in_flight.is_none()
}

/// Runs the migration's armed Complete when it is due ([`armed_due`]): [`complete`] with the
/// armed name as `last_backup` and its `require_tail_log`, so exactly the guards of a manual
/// Complete. A refusal is recorded on the arm (`refused`, which spends it) and the state is
/// returned unchanged. `None` when nothing was due.
///
/// # Errors
/// [`CutoverError`] when the store or the target failed (the arm stays due: call again).
pub async fn fire_armed<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    name: &str,
    now: OffsetDateTime,
) -> Result<Option<MigrationState>, CutoverError> {
    let migration = load(store, name).await?.record;
    let Some(armed) = migration.armed.clone().filter(|_| armed_due(&migration)) else {
        return Ok(None);
    };
    let request = CompleteRequest {
        database: name.to_owned(),
        last_backup: Some(armed.last_backup.clone()),
        require_tail_log: armed.require_tail_log,
    };
    match complete(store, target, &request, now).await {
        Ok(state) => Ok(Some(state)),
        Err(CutoverError::Refused { code, message }) => {
            let reason = Reason::new(code, message);
            tracing::warn!(migration = %name, error.type = code, error.message = %reason.message,
                "the armed Complete was refused");
            let record = set_state(store, name, now, |m| {
                m.armed
                    .as_mut()
                    .filter(|a| a.pending() && a.last_backup == armed.last_backup)
                    .map(|a| a.refused = Some(reason.clone()))
                    .is_some()
            })
            .await?;
            Ok(Some(record.state))
        }
        Err(e) => Err(e),
    }
}

async fn complete_failed<S: StatusStore>(
    store: &S,
    name: &str,
    reason: Reason,
    now: OffsetDateTime,
) -> Result<MigrationState, CutoverError> {
    let record = set_state(store, name, now, |m| {
        (m.state == MigrationState::Completing)
            .then(|| {
                m.state = MigrationState::Failed;
                m.reason = Some(reason.clone());
                m.finishing = None;
            })
            .is_some()
    })
    .await?;
    Ok(record.state)
}

/// Looks once at the task bringing a Completing migration's database online (RDS
/// `FINISH_RESTORE`, the native Agent job running `WITH RECOVERY`): Succeeded once the task
/// succeeded and the database is ONLINE (the native job is then deleted); Failed, with the
/// target's text, when the task failed; Completing while it runs (call again later). A
/// Completing migration without a recorded task (its Complete stopped half-way) has the task
/// started first. Any other migration is left as it is and its state returned.
///
/// # Errors
/// [`CutoverError`] when the store or the target failed (nothing changed then).
pub async fn follow_finish<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    name: &str,
    now: OffsetDateTime,
) -> Result<MigrationState, CutoverError> {
    Ok(look_at_finish(store, target, name, now).await?.0)
}

/// [`follow_finish`], with the finish task's percent complete while it runs (when the target
/// reports it).
///
/// # Errors
/// [`CutoverError`] when the store or the target failed (nothing changed then).
pub async fn look_at_finish<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    name: &str,
    now: OffsetDateTime,
) -> Result<(MigrationState, Option<f64>), CutoverError> {
    let database = parse_name(name)?;
    let mut migration = load(store, name).await?.record;
    if migration.state == MigrationState::Completing && migration.finishing.is_none() {
        // A Complete that stopped between Completing and recording its task (a fault of the
        // target or the store, a crash): start the task now, or meet the one it started.
        if start_finish(store, target, name, &database, now).await? != MigrationState::Completing {
            return Ok((load(store, name).await?.record.state, None));
        }
        migration = load(store, name).await?.record;
    }
    let Some(task) = migration
        .finishing
        .clone()
        .filter(|_| migration.state == MigrationState::Completing)
    else {
        return Ok((migration.state, None));
    };
    let state = match target.poll(&database, &task).await? {
        TaskStatus::Running { percent } => return Ok((MigrationState::Completing, percent)),
        TaskStatus::Succeeded => {
            // The task's end and the database's state are two reads: wait for both.
            if target.database_state(&database).await?.as_deref() != Some("ONLINE") {
                return Ok((MigrationState::Completing, None));
            }
            let record = set_state(store, name, now, |m| {
                (m.state == MigrationState::Completing && m.finishing.as_ref() == Some(&task))
                    .then(|| {
                        m.state = MigrationState::Succeeded;
                        m.finishing = None;
                    })
                    .is_some()
            })
            .await?;
            if record.state == MigrationState::Succeeded {
                release_finish(target, &database, &task).await;
            }
            Ok(record.state)
        }
        TaskStatus::Failed { sql_error, message } => {
            let mut reason = Reason::new(
                "CompleteFailed",
                format!("{task} could not bring the database online: {message}"),
            );
            reason.sql_error = sql_error;
            complete_failed(store, name, reason, now).await
        }
        TaskStatus::Cancelled => {
            let reason = Reason::new(
                "CompleteFailed",
                format!("{task}, bringing the database online, was cancelled on the target"),
            );
            complete_failed(store, name, reason, now).await
        }
    }?;
    Ok((state, None))
}

/// Forgets the finish task whose success is recorded (native: deletes its Agent job, as a
/// restore's is). A job left behind costs a row in msdb, not the migration: a failure is logged.
async fn release_finish<T: RestoreTarget>(target: &T, database: &DatabaseName, task: &TaskId) {
    let TaskId::AgentJob(job) = task else {
        return;
    };
    // The finish task restores nothing: a request without sources (nothing was staged for it).
    let request = crate::tsql::RestoreRequest::new(database.clone(), BackupKind::Full, Vec::new());
    if let Err(e) = target.release_task(&request, task, job).await {
        tracing::warn!(%database, %task, error.message = %e,
            "the finished recovery job could not be deleted; it stays on the target");
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
    let Some(migration) = store.get_migration(name).await?.map(|v| v.record) else {
        return Err(nothing_accepted(store, name, "cancel").await?);
    };
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
    let submitting = migration
        .in_flight
        .as_ref()
        .is_some_and(|f| f.task.is_none() && f.claim.until > now);
    if submitting {
        // A worker is submitting a restore right now: the migration is Cancelled with the claim
        // kept, and the worker, recording the task, polls it; the poll of a Cancelled migration
        // stops the task and drops the database (or the claim is settled when it runs out).
        return mark_cancelled(store, name, now, false).await;
    }
    if let Some(task) = migration.in_flight.as_ref().and_then(|f| f.task.clone()) {
        // Stopping is asynchronous (RDS: CANCEL_REQUESTED, then CANCELLED; an Agent job's
        // RESTORE rolls back), and the database cannot be dropped while its restore runs
        // (error 3702). A task still running after the request stays on the Cancelled
        // migration: the restore worker, which polls it, drops the database once it stopped.
        let asked = target.cancel_task(&task).await;
        let stopped = !matches!(
            target.poll(&database, &task).await?,
            TaskStatus::Running { .. }
        );
        if !stopped {
            asked?;
            return mark_cancelled(store, name, now, false).await;
        }
    }
    // Only a database this generation may have created: a database of the same name that was
    // there before (the migration failed TargetDatabaseExists) is not bakdrop's to drop.
    if migration.owns_target_database() {
        drop_restoring(target, &database).await?;
    }
    end_restoring_files(store, name, now).await?;
    mark_cancelled(store, name, now, true).await
}

/// Marks the migration Cancelled (unless it already is, or Succeeded); `let_go` drops its
/// in-flight task or claim too.
async fn mark_cancelled<S: StatusStore>(
    store: &S,
    name: &str,
    now: OffsetDateTime,
    let_go: bool,
) -> Result<MigrationState, CutoverError> {
    let record = set_state(store, name, now, |m| {
        (m.state != MigrationState::Cancelled && m.state != MigrationState::Succeeded)
            .then(|| {
                m.state = MigrationState::Cancelled;
                if let_go {
                    m.in_flight = None;
                }
            })
            .is_some()
    })
    .await?;
    Ok(record.state)
}

/// Files whose restore was under way when the migration was cancelled end Failed, with the
/// reason, so that a cancelled migration shows nothing restoring.
///
/// # Errors
/// [`StoreError`].
pub async fn end_restoring_files<S: StatusStore>(
    store: &S,
    name: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let migration = store.get_migration(name).await?.map(|v| v.record);
    for _ in 0..8 {
        let mut conflicted = false;
        let mut restoring =
            crate::files::in_states(store, name, migration.as_ref(), &[FileState::Restoring])
                .await?;
        // The step in flight's files, read directly (the index may not list them yet).
        let in_flight = migration
            .as_ref()
            .and_then(|m| m.in_flight.as_ref())
            .map(|f| f.step.files.clone())
            .unwrap_or_default();
        for id in in_flight {
            if !restoring.iter().any(|f| f.record.file_id == id) {
                restoring
                    .extend(crate::files::if_in(store, name, &id, &[FileState::Restoring]).await?);
            }
        }
        for file in restoring {
            let mut record = file.record;
            record.state = FileState::Failed;
            record.reason = Some(Reason::new(
                "RestoreCancelled",
                "the migration was cancelled while this backup was being restored",
            ));
            record.restore_finished_at = Some(now);
            record.updated_at = now;
            match store.put_file(&record, Some(file.version)).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => conflicted = true,
                Err(e) => return Err(e),
            }
        }
        if !conflicted {
            return Ok(());
        }
    }
    Err(StoreError::Conflict { expected: None })
}

/// Drops the database if it exists and is not online (only a database a migration created).
///
/// # Errors
/// [`TargetError`].
pub async fn drop_restoring<T: RestoreTarget>(
    target: &T,
    database: &DatabaseName,
) -> Result<(), TargetError> {
    match target.database_state(database).await? {
        Some(state) if state != "ONLINE" => target.drop_database(database).await,
        _ => Ok(()),
    }
}

/// Resets a cancelled migration: forgets its files and its chain, so that its database folder
/// takes a new migration (the next generation, whose task names differ from this one's). The
/// uploaded objects stay in the bucket: upload the backups again to migrate again. Resetting a
/// migration that has nothing to forget is harmless.
///
/// # Errors
/// [`CutoverError::Refused`]: `AlreadyOnline` for a Succeeded migration, `NotCancelled` for any
/// other that is not Cancelled (cancel first: it drops the half-restored database),
/// `CancelInProgress` while the target is still stopping a cancelled restore (or a submit's
/// claim is live). Others when the store failed; resetting again then finishes the reset.
pub async fn reset<S: StatusStore>(
    store: &S,
    name: &str,
    now: OffsetDateTime,
) -> Result<MigrationState, CutoverError> {
    parse_name(name)?;
    for _ in 0..8 {
        let Some(Versioned { record, version }) = store.get_migration(name).await? else {
            // No file was ever accepted: the folder's files were all rejected. Forgetting them
            // lets them be validated again (a run re-reads its folder; upload them again).
            if store.list_files(name).await?.is_empty() {
                return Err(CutoverError::NotFound(name.to_owned()));
            }
            forget_files(store, name, |f| f.state == FileState::Rejected).await?;
            return Ok(MigrationState::AwaitingFull);
        };
        match record.state {
            MigrationState::Cancelled
                if record
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| f.task.is_some() || f.claim.until > now) =>
            {
                return Err(refused(
                    "CancelInProgress",
                    format!("cannot reset {name} yet: the target is still stopping its restore; the half-restored database is dropped once it has stopped, then reset"),
                ))
            }
            MigrationState::Cancelled => {}
            MigrationState::Succeeded => {
                return Err(refused(
                    "AlreadyOnline",
                    format!("cannot reset {name}: it is online (Succeeded) and bakdrop never restores over it; upload to a new database folder to migrate again"),
                ))
            }
            MigrationState::AwaitingFull
                if record.chain.is_empty()
                    && record.in_flight.is_none()
                    && store.list_files(name).await?.is_empty() =>
            {
                return Ok(MigrationState::AwaitingFull);
            }
            // Nothing restored, nothing in flight, every file rejected: nothing to cancel, and
            // a reset starts it afresh like a cancelled one.
            MigrationState::AwaitingFull
                if record.chain.is_empty()
                    && record.in_flight.is_none()
                    && !record.restores_submitted
                    && store
                        .list_files(name)
                        .await?
                        .iter()
                        .all(|f| f.record.state == FileState::Rejected) => {}
            other => {
                return Err(refused(
                    "NotCancelled",
                    format!("cannot reset {name}: the migration is {other}; cancel it first (Cancel stops its restore and drops the half-restored database), then reset"),
                ))
            }
        }
        // The files first: a reset that stops half-way leaves a Cancelled migration with fewer
        // files, and resetting again finishes it.
        forget_files(store, name, |_| true).await?;
        match store
            .put_migration(&record.next_generation(now), Some(version))
            .await
        {
            Ok(_) => {
                // Uploads refused while it was Cancelled, recorded after the files were listed.
                forget_files(store, name, |f| {
                    f.state == FileState::Rejected
                        && f.reason
                            .as_ref()
                            .is_some_and(|r| r.code == "MigrationCancelled")
                })
                .await?;
                return Ok(MigrationState::AwaitingFull);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CutoverError::Store(StoreError::Conflict { expected: None }))
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

/// Deletes the migration's file records that `which` selects; a record changed meanwhile is
/// read again.
async fn forget_files<S: StatusStore>(
    store: &S,
    name: &str,
    which: impl Fn(&FileRecord) -> bool,
) -> Result<(), CutoverError> {
    for _ in 0..8 {
        let mut changed = false;
        for file in store.list_files(name).await? {
            if !which(&file.record) {
                continue;
            }
            match store
                .delete_file(name, &file.record.file_id, file.version)
                .await
            {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => changed = true,
                Err(e) => return Err(e.into()),
            }
        }
        if !changed {
            return Ok(());
        }
    }
    Err(CutoverError::Store(StoreError::Conflict { expected: None }))
}

/// The last restored backup: of the chain's last step (the one reaching furthest), its file
/// reaching furthest, the newest of those on a tie (a striped set's files). Read from the step's
/// own files, not from every file the migration restored.
async fn last_restored<S: StatusStore>(
    store: &S,
    name: &str,
    migration: &MigrationRecord,
) -> Result<Option<FileRecord>, StoreError> {
    let Some(step) = migration.chain.last_step() else {
        return Ok(None);
    };
    let mut last: Option<FileRecord> = None;
    for file_id in &step.files {
        let Some(file) = store.get_file(name, file_id).await? else {
            continue;
        };
        let key = |f: &FileRecord| (f.header.as_ref().map(|h| h.last_lsn), f.created_at);
        if file.record.state == FileState::Restored
            && last.as_ref().is_none_or(|l| key(&file.record) >= key(l))
        {
            last = Some(file.record);
        }
    }
    Ok(last)
}

/// Why the last restored file is not a tail-log backup, or `None` when it is one.
fn not_tail_log(name: &str, last: Option<&FileRecord>) -> Option<String> {
    let Some(last) = last else {
        return Some(format!(
            "cannot complete {name}: a tail-log backup was required, but nothing is restored yet"
        ));
    };
    let file = last.object.file_name();
    let header = last.header.as_ref();
    match header.map(|h| (h.backup_type, h.tail_log)) {
        Some((BackupKind::Log, Some(true))) => None,
        Some((BackupKind::Log, Some(false))) => Some(format!(
            "cannot complete {name}: a tail-log backup was required, but the last restored backup, {file}, is a log backup that is not a tail-log backup; take one with BACKUP LOG … WITH NORECOVERY on the source, upload it, and complete once it is restored"
        )),
        Some((BackupKind::Log, None)) => Some(format!(
            "cannot complete {name}: a tail-log backup was required, but the last restored backup, {file}, was validated by a bakdrop that did not record the tail-log flag; complete with last_backup naming your tail-log file instead"
        )),
        Some((kind, _)) => Some(format!(
            "cannot complete {name}: a tail-log backup was required, but the last restored backup, {file}, is a {kind} backup, not a log backup"
        )),
        None => Some(format!(
            "cannot complete {name}: a tail-log backup was required, but the last restored backup, {file}, has no recorded header"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::header::HeaderSummary;
    use crate::model::object::ObjectRef;
    use crate::model::status::{Claim, FileRecord, InFlight};
    use crate::ports::fakes::{block_on, MemoryStore, MemoryTarget};
    use crate::ports::TaskStatus;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn header(kind: BackupKind, last: u32) -> HeaderSummary {
        HeaderSummary {
            files: Vec::new(),
            backup_type: kind,
            copy_only: None,
            source_database: "Sales".into(),
            server_name: "S".into(),
            software_version: "16.0.4135".into(),
            database_version: 957,
            compressed: false,
            has_checksums: true,
            tail_log: Some(false),
            first_lsn: crate::Lsn::from_parts(1, last - 1, 1),
            last_lsn: crate::Lsn::from_parts(1, last, 1),
            checkpoint_lsn: crate::Lsn::from_parts(1, last - 1, 1),
            database_backup_lsn: crate::Lsn::ZERO,
            differential_base_lsn: None,
            differential_base_guid: None,
            backup_set_guid: uuid::Uuid::from_u128(u128::from(last)),
            family_guid: uuid::Uuid::from_u128(1),
            recovery_fork_id: uuid::Uuid::from_u128(1),
            family_count: 1,
            family_sequence: 1,
            backup_start_date: None,
            backup_finish_date: None,
            backup_size: None,
        }
    }

    fn file(name: &str, state: FileState, kind: BackupKind, last: u32) -> FileRecord {
        FileRecord {
            migration: Some(crate::DatabaseName::parse("Sales").expect("name")),
            file_id: format!("b/Sales/{name}#etag=1"),
            object: ObjectRef {
                bucket: "b".into(),
                key: format!("Sales/{name}"),
                version_id: None,
                etag: Some("1".into()),
                size: 1,
            },
            state,
            reason: None,
            header: Some(header(kind, last)),
            claim: None,
            restore_started_at: None,
            restore_finished_at: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    /// A migration in `state` with `files`, and a target where the database is RESTORING.
    fn setup(state: MigrationState, files: &[FileRecord]) -> (MemoryStore, MemoryTarget) {
        let store = MemoryStore::default();
        let mut migration =
            MigrationRecord::new(crate::DatabaseName::parse("Sales").expect("name"), now());
        migration.state = state;
        // The chain of the restored files, in LSN order (as the worker records it).
        let mut restored: Vec<&FileRecord> = files
            .iter()
            .filter(|f| f.state == FileState::Restored)
            .collect();
        restored.sort_by_key(|f| f.header.as_ref().map(|h| h.last_lsn));
        for f in restored {
            if let Some(h) = &f.header {
                migration.chain.apply(&crate::model::chain::Step {
                    kind: h.backup_type,
                    files: vec![f.file_id.clone()],
                    backup_set_guid: h.backup_set_guid,
                    first_lsn: h.first_lsn,
                    last_lsn: h.last_lsn,
                });
            }
        }
        block_on(store.put_migration(&migration, None)).expect("stored");
        for f in files {
            block_on(store.put_file(f, None)).expect("stored");
        }
        let target = MemoryTarget::new("16.0.4135.4");
        target
            .databases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert("Sales".into(), "RESTORING".into());
        (store, target)
    }

    fn request(last_backup: Option<&str>, require_tail_log: bool) -> CompleteRequest {
        CompleteRequest {
            database: "Sales".into(),
            last_backup: last_backup.map(str::to_owned),
            require_tail_log,
        }
    }

    fn code(result: Result<MigrationState, CutoverError>) -> String {
        match result {
            Err(e) => e.error_type().to_owned(),
            Ok(state) => format!("Ok({state})"),
        }
    }

    fn synced() -> Vec<FileRecord> {
        vec![
            file("full.bak", FileState::Restored, BackupKind::Full, 10),
            file("log1.trn", FileState::Restored, BackupKind::Log, 20),
        ]
    }

    #[test]
    fn complete_brings_a_synchronizing_database_online_and_twice_is_harmless() {
        let (store, target) = setup(MigrationState::Synchronizing, &synced());
        let state = block_on(complete(
            &store,
            &target,
            &request(Some("log1.trn"), false),
            now(),
        ));
        assert_eq!(state.ok(), Some(MigrationState::Succeeded));
        assert_eq!(
            target
                .databases
                .lock()
                .ok()
                .and_then(|d| d.get("Sales").cloned())
                .as_deref(),
            Some("ONLINE")
        );
        let again = block_on(complete(&store, &target, &request(None, false), now()));
        assert_eq!(again.ok(), Some(MigrationState::Succeeded));
    }

    fn database_state(target: &MemoryTarget) -> Option<String> {
        target
            .databases
            .lock()
            .ok()
            .and_then(|d| d.get("Sales").cloned())
    }

    fn finishing(store: &MemoryStore) -> Option<TaskId> {
        block_on(store.get_migration("Sales"))
            .ok()
            .flatten()
            .and_then(|m| m.record.finishing)
    }

    #[test]
    fn a_native_recovery_runs_as_an_agent_job_that_complete_starts_once_and_follows() {
        let (store, target) = setup(MigrationState::Synchronizing, &synced());
        *target.slow_recovery.lock().expect("lock") = true;
        let state = block_on(complete(&store, &target, &request(None, false), now()));
        assert_eq!(state.ok(), Some(MigrationState::Completing));
        let job = crate::model::names::finish_task_name("Sales", 0);
        assert_eq!(finishing(&store), Some(TaskId::AgentJob(job.clone())));
        assert_eq!(database_state(&target).as_deref(), Some("RESTORING"));
        // Completing again looks at the same job.
        let again = block_on(complete(&store, &target, &request(None, false), now()));
        assert_eq!(again.ok(), Some(MigrationState::Completing));
        assert_eq!(target.submitted(), vec![job.clone()]);
        target.finish(&job, TaskStatus::Succeeded);
        let state = block_on(follow_finish(&store, &target, "Sales", now()));
        assert_eq!(state.ok(), Some(MigrationState::Succeeded));
        assert_eq!(finishing(&store), None);
        assert_eq!(database_state(&target).as_deref(), Some("ONLINE"));
        assert_eq!(*target.released.lock().expect("lock"), vec![job]);
    }

    #[test]
    fn a_recovery_job_of_a_migration_after_a_reset_carries_its_generation() {
        let (store, target) = setup(MigrationState::Synchronizing, &synced());
        let mut m = block_on(store.get_migration("Sales"))
            .ok()
            .flatten()
            .expect("m");
        m.record.generation = 2;
        block_on(store.put_migration(&m.record, Some(m.version))).expect("stored");
        *target.slow_recovery.lock().expect("lock") = true;
        block_on(complete(&store, &target, &request(None, false), now())).expect("complete");
        assert_eq!(
            finishing(&store),
            Some(TaskId::AgentJob(crate::model::names::finish_task_name(
                "Sales", 2
            )))
        );
    }

    #[test]
    fn a_complete_cut_off_before_its_task_started_is_resumed_by_the_next_look() {
        let (store, target) = setup(MigrationState::Synchronizing, &synced());
        *target.lose_next_online.lock().expect("lock") = 1;
        let failed = block_on(complete(&store, &target, &request(None, false), now()));
        assert!(matches!(&failed, Err(e) if e.is_transient()), "{failed:?}");
        let m = block_on(store.get_migration("Sales"))
            .ok()
            .flatten()
            .expect("m");
        assert_eq!(m.record.state, MigrationState::Completing);
        assert_eq!(m.record.finishing, None);
        let looked = block_on(look_at_finish(&store, &target, "Sales", now()));
        assert_eq!(
            looked.ok().map(|l| l.0),
            Some(MigrationState::Succeeded),
            "the look started the recovery, which was quick"
        );
        assert_eq!(database_state(&target).as_deref(), Some("ONLINE"));
    }

    #[test]
    fn complete_is_refused_while_a_file_waits_queues_or_restores() {
        for state in [FileState::Waiting, FileState::Queued, FileState::Restoring] {
            let mut files = synced();
            files.push(file("log3.trn", state, BackupKind::Log, 40));
            let (store, target) = setup(MigrationState::Synchronizing, &files);
            let result = block_on(complete(&store, &target, &request(None, false), now()));
            assert_eq!(code(result), "FilesInFlight", "{state}");
            assert_eq!(
                target
                    .databases
                    .lock()
                    .ok()
                    .and_then(|d| d.get("Sales").cloned())
                    .as_deref(),
                Some("RESTORING"),
                "nothing was brought online"
            );
        }
    }

    #[test]
    fn complete_is_refused_when_the_named_last_backup_is_not_the_last_restored() {
        let (store, target) = setup(MigrationState::Synchronizing, &synced());
        let result = block_on(complete(
            &store,
            &target,
            &request(Some("log2.trn"), false),
            now(),
        ));
        assert_eq!(code(result), "NotLastBackup");
    }

    #[test]
    fn complete_is_refused_unless_synchronizing() {
        for state in [
            MigrationState::AwaitingFull,
            MigrationState::Restoring,
            MigrationState::Failed,
            MigrationState::Cancelled,
        ] {
            let (store, target) = setup(state, &synced());
            let result = block_on(complete(&store, &target, &request(None, false), now()));
            assert_eq!(code(result), "NotSynchronizing", "{state}");
        }
        let store = MemoryStore::default();
        let target = MemoryTarget::new("16.0.4135.4");
        assert_eq!(
            code(block_on(complete(
                &store,
                &target,
                &request(None, false),
                now()
            ))),
            "MigrationNotFound"
        );
    }

    fn refusal(result: Result<MigrationState, CutoverError>) -> (String, String) {
        match result {
            Err(CutoverError::Refused { code, message }) => (code.to_owned(), message),
            other => (format!("{other:?}"), String::new()),
        }
    }

    /// Complete with `require_tail_log` on a synchronizing migration of `files`, the last
    /// restored one's tail-log flag set to `last_tail_log`.
    fn complete_requiring_tail_log(
        mut files: Vec<FileRecord>,
        last_tail_log: Option<bool>,
    ) -> (Result<MigrationState, CutoverError>, MemoryTarget) {
        if let Some(h) = files.last_mut().and_then(|f| f.header.as_mut()) {
            h.tail_log = last_tail_log;
        }
        let (store, target) = setup(MigrationState::Synchronizing, &files);
        let result = block_on(complete(&store, &target, &request(None, true), now()));
        (result, target)
    }

    #[test]
    fn a_required_tail_log_is_refused_when_the_last_log_is_an_ordinary_log_backup() {
        let (result, target) = complete_requiring_tail_log(synced(), Some(false));
        let (code, message) = refusal(result);
        assert_eq!(code, "NotTailLog");
        assert!(
            message.contains("log1.trn, is a log backup that is not a tail-log"),
            "{message}"
        );
        assert_eq!(
            target
                .databases
                .lock()
                .ok()
                .and_then(|d| d.get("Sales").cloned())
                .as_deref(),
            Some("RESTORING"),
            "a refused Complete leaves the database restoring"
        );
    }

    #[test]
    fn a_required_tail_log_is_refused_when_the_last_restored_file_is_a_full_backup() {
        let files = vec![file("full.bak", FileState::Restored, BackupKind::Full, 10)];
        let (code, message) = refusal(complete_requiring_tail_log(files, Some(true)).0);
        assert_eq!(code, "NotTailLog");
        assert!(message.contains("full.bak, is a full backup"), "{message}");
    }

    #[test]
    fn a_required_tail_log_recorded_before_the_flag_was_read_is_refused_with_a_way_out() {
        let (code, message) = refusal(complete_requiring_tail_log(synced(), None).0);
        assert_eq!(code, "NotTailLog");
        assert!(message.contains("last_backup"), "{message}");
    }

    #[test]
    fn a_required_tail_log_completes_when_the_last_restored_log_is_a_tail_log_backup() {
        let (result, _) = complete_requiring_tail_log(synced(), Some(true));
        assert_eq!(result.ok(), Some(MigrationState::Succeeded));
    }

    #[test]
    fn a_recovery_error_fails_the_migration_with_sql_servers_number() {
        let (store, target) = setup(MigrationState::Synchronizing, &synced());
        target
            .databases
            .lock()
            .ok()
            .map(|mut d| d.insert("Sales".into(), "SUSPECT".into()));
        let state = block_on(complete(&store, &target, &request(None, false), now()));
        assert_eq!(state.ok(), Some(MigrationState::Failed));
        let migration = block_on(store.get_migration("Sales"))
            .ok()
            .flatten()
            .expect("migration")
            .record;
        assert_eq!(
            migration.reason.and_then(|r| r.sql_error).map(|e| e.number),
            Some(3117)
        );
    }

    #[test]
    fn cancel_stops_the_task_drops_the_database_and_ends_cancelled() {
        let (store, target) = setup(MigrationState::Restoring, &synced());
        let mut migration = block_on(store.get_migration("Sales"))
            .ok()
            .flatten()
            .expect("m");
        migration.record.in_flight = Some(InFlight {
            step: crate::model::chain::Step {
                kind: BackupKind::Log,
                files: vec![],
                backup_set_guid: uuid::Uuid::from_u128(9),
                first_lsn: crate::Lsn::ZERO,
                last_lsn: crate::Lsn::ZERO,
            },
            task_name: "job".into(),
            task: Some(TaskId::AgentJob("job".into())),
            claim: Claim {
                owner: "x".into(),
                holder: None,
                until: now(),
            },
            percent_complete: None,
            seen_running_at: None,
            looks: 0,
            bytes: None,
            submitted_at: now(),
        });
        block_on(store.put_migration(&migration.record, Some(migration.version))).expect("stored");
        block_on(target.submit(
            &crate::tsql::RestoreRequest::new(
                DatabaseName::parse("Sales").expect("name"),
                BackupKind::Log,
                vec![],
            ),
            "job",
        ))
        .expect("task");
        let state = block_on(cancel(&store, &target, "Sales", now()));
        assert_eq!(state.ok(), Some(MigrationState::Cancelled));
        assert!(
            target
                .databases
                .lock()
                .ok()
                .is_some_and(|d| d.get("Sales").is_none()),
            "dropped"
        );
        assert_eq!(
            block_on(target.poll(
                &DatabaseName::parse("Sales").expect("n"),
                &TaskId::AgentJob("job".into())
            ))
            .ok(),
            Some(crate::ports::TaskStatus::Cancelled)
        );
        // Cancelling twice is harmless; completing a cancelled migration is refused.
        assert_eq!(
            block_on(cancel(&store, &target, "Sales", now())).ok(),
            Some(MigrationState::Cancelled)
        );
        assert_eq!(
            code(block_on(complete(
                &store,
                &target,
                &request(None, false),
                now()
            ))),
            "NotSynchronizing"
        );
    }

    #[test]
    fn cancel_never_drops_an_online_database() {
        let (store, target) = setup(MigrationState::Failed, &synced());
        target
            .databases
            .lock()
            .ok()
            .map(|mut d| d.insert("Sales".into(), "ONLINE".into()));
        assert_eq!(
            block_on(cancel(&store, &target, "Sales", now())).ok(),
            Some(MigrationState::Cancelled)
        );
        assert!(target
            .databases
            .lock()
            .ok()
            .is_some_and(|d| d.contains_key("Sales")));
        let (store, target) = setup(MigrationState::Succeeded, &synced());
        assert_eq!(
            code(block_on(cancel(&store, &target, "Sales", now()))),
            "AlreadyOnline"
        );
    }
}
