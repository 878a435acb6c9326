//! Reset: a cancelled migration forgotten, so that its folder migrates again under the same
//! name.

use super::*;

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
    retry(|| reset_once(store, name, now))
        .await?
        .ok_or(CutoverError::Store(StoreError::Conflict { expected: None }))
}

/// One try of [`reset`] on the migration as read now.
async fn reset_once<S: StatusStore>(
    store: &S,
    name: &str,
    now: OffsetDateTime,
) -> Result<Cas<MigrationState>, CutoverError> {
    let Some(Versioned { record, version }) = store.get_migration(name).await? else {
        // No file was ever accepted: the folder's files were all rejected. Forgetting them
        // lets them be validated again (a run re-reads its folder; upload them again).
        if store.list_files(name).await?.is_empty() {
            return Err(CutoverError::NotFound(name.to_owned()));
        }
        forget_files(store, name, |f| f.state == FileState::Rejected).await?;
        return Ok(Cas::Done(MigrationState::AwaitingFull));
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
            return Ok(Cas::Done(MigrationState::AwaitingFull));
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
            Ok(Cas::Done(MigrationState::AwaitingFull))
        }
        Err(StoreError::Conflict { .. }) => Ok(Cas::Lost),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the migration's file records that `which` selects; a record changed meanwhile is
/// read again.
async fn forget_files<S: StatusStore>(
    store: &S,
    name: &str,
    which: impl Fn(&FileRecord) -> bool,
) -> Result<(), CutoverError> {
    let which = &which;
    let once = || async move {
        let mut all = Cas::Done(());
        for file in store.list_files(name).await? {
            if !which(&file.record) {
                continue;
            }
            let deleted = store
                .delete_file(name, &file.record.file_id, file.version)
                .await;
            if cas(deleted)? == Cas::Lost {
                all = Cas::Lost;
            }
        }
        Ok::<_, StoreError>(all)
    };
    Ok(retry(once)
        .await?
        .ok_or(StoreError::Conflict { expected: None })?)
}
