//! Complete: the guarded end of a migration, armed in advance or not, and the task that brings
//! the database online.

use super::*;

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
            let busy: Vec<String> = crate::services::files::in_play(store, name, Some(&migration))
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
        return Err(not_armable(name, migration.state));
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
        return Err(not_armable(name, record.state));
    }
    Ok(record)
}

/// The refusal to arm Complete of a migration in `state`, which takes no more backups.
fn not_armable(name: &str, state: MigrationState) -> CutoverError {
    refused(
        "NotArmable",
        format!("cannot arm Complete of {name}: the migration is {state}; Complete is armed while backups are still being restored"),
    )
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
