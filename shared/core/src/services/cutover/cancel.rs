//! Cancel, every rule of it: the request ([`cancel`]) stops the task in flight where the target
//! allows it, drops the half-restored database and marks the migration Cancelled; what the
//! request cannot finish at once (a task still stopping, a submit's claim still live) the
//! restore worker finishes with [`stop_task`], [`record_task_to_stop`] and [`let_go`] when it
//! meets the cancelled migration.

use super::*;

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
    let migration = migration.as_ref();
    let once = || async move {
        let mut restoring =
            crate::services::files::in_states(store, name, migration, &[FileState::Restoring])
                .await?;
        // The step in flight's files, read directly (the index may not list them yet).
        let in_flight = migration
            .and_then(|m| m.in_flight.as_ref())
            .map(|f| f.step.files.clone())
            .unwrap_or_default();
        for id in in_flight {
            if !restoring.iter().any(|f| f.record.file_id == id) {
                restoring.extend(
                    crate::services::files::if_in(store, name, &id, &[FileState::Restoring])
                        .await?,
                );
            }
        }
        let mut all = Cas::Done(());
        for file in restoring {
            let mut record = file.record;
            record.state = FileState::Failed;
            record.reason = Some(Reason::new(
                "RestoreCancelled",
                "the migration was cancelled while this backup was being restored",
            ));
            record.restore_finished_at = Some(now);
            record.updated_at = now;
            if cas(store.put_file(&record, Some(file.version)).await)? == Cas::Lost {
                all = Cas::Lost;
            }
        }
        Ok(all)
    };
    retry(once)
        .await?
        .ok_or(StoreError::Conflict { expected: None })
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

/// Asks the target to stop a cancelled migration's task while it still runs (a task submitted
/// just as the migration was cancelled was never asked). True once it no longer runs: its
/// database can then be dropped ([`let_go`]).
///
/// # Errors
/// [`TargetError`] when the target could not say how the task stands.
pub async fn stop_task<T: RestoreTarget>(
    target: &T,
    database: &DatabaseName,
    task: &TaskId,
) -> Result<bool, TargetError> {
    if !matches!(
        target.poll(database, task).await?,
        TaskStatus::Running { .. }
    ) {
        return Ok(true);
    }
    if let Err(e) = target.cancel_task(task).await {
        tracing::info!(migration = %database, %task, error.message = %e,
            "asking the target again to stop the cancelled migration's task");
    }
    Ok(false)
}

/// The end of a cancelled migration's task `task_name` (stopped, or never started): drops the
/// half-restored database, ends its restoring files and lets go of the task.
///
/// # Errors
/// [`CutoverError`] when the store or the target failed; doing it again continues.
pub async fn let_go<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    database: &DatabaseName,
    task_name: &str,
    now: OffsetDateTime,
) -> Result<(), CutoverError> {
    drop_restoring(target, database).await?;
    end_restoring_files(store, database, now).await?;
    set_state(store, database, now, |m| {
        let ours = m
            .in_flight
            .as_ref()
            .is_some_and(|f| f.task_name == task_name);
        if ours {
            m.in_flight = None;
        }
        ours
    })
    .await?;
    Ok(())
}

/// Records on a cancelled migration's claim the task the target has for it (found after its
/// submitter failed), so that the restore worker's polls stop it and then [`let_go`].
///
/// # Errors
/// [`CutoverError`] when the store failed.
pub async fn record_task_to_stop<S: StatusStore>(
    store: &S,
    database: &DatabaseName,
    task_name: &str,
    task: &TaskId,
    now: OffsetDateTime,
) -> Result<(), CutoverError> {
    set_state(store, database, now, |m| {
        m.in_flight
            .as_mut()
            .filter(|f| f.task_name == task_name && f.task.is_none())
            .map(|f| f.task = Some(task.clone()))
            .is_some()
    })
    .await?;
    Ok(())
}
