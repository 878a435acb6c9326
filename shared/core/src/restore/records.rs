//! Writes of the migration and file records: read-modify-write with compare-and-set, claims
//! released, files and migrations failed.

use super::*;

impl<S: StatusStore, Q: JobQueue, T: RestoreTarget, O: ObjectReader> Worker<S, Q, T, O> {
    /// Marks files Failed, then the migration, with one reason.
    pub(super) async fn fail_files(
        &self,
        name: &DatabaseName,
        files: &[String],
        reason: Reason,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        for file_id in files {
            self.update_file(name, file_id, now, |f| {
                f.state = FileState::Failed;
                f.reason = Some(reason.clone());
                f.restore_finished_at = Some(now);
                Some(())
            })
            .await?;
        }
        self.fail(name, reason, now).await
    }

    /// Marks the migration Failed with a reason (keeps an earlier terminal state).
    pub(super) async fn fail(
        &self,
        name: &DatabaseName,
        reason: Reason,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        self.update_migration(name, now, |m| {
            m.state.accepts_uploads().then(|| {
                m.state = MigrationState::Failed;
                m.reason = Some(reason.clone());
                m.in_flight = None;
            })
        })
        .await?;
        Ok(WorkOutcome::Failed {
            migration: name.to_owned(),
            reason,
        })
    }

    pub(super) async fn release_claim(
        &self,
        name: &DatabaseName,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<bool, WorkError> {
        self.update_migration(name, now, |m| {
            let mine = m
                .in_flight
                .as_ref()
                .is_some_and(|f| f.task.is_none() && attempt.holds(&f.claim));
            mine.then(|| {
                m.in_flight = None;
            })
        })
        .await
    }

    /// Ends the lease of a claim this attempt holds (without a recorded task), keeping the
    /// claim: whoever comes next takes it over and asks the target for its task first.
    pub(super) async fn end_own_lease(
        &self,
        name: &DatabaseName,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<bool, WorkError> {
        self.update_migration(name, now, |m| {
            m.in_flight
                .as_mut()
                .filter(|f| f.task.is_none() && attempt.holds(&f.claim) && f.claim.until > now)
                .map(|f| f.claim.until = now)
        })
        .await
    }

    /// Read-modify-write of the migration; `change` returns `None` to leave it as it is.
    /// Returns whether it was changed.
    pub(super) async fn update_migration(
        &self,
        name: &DatabaseName,
        now: OffsetDateTime,
        change: impl Fn(&mut MigrationRecord) -> Option<()>,
    ) -> Result<bool, WorkError> {
        for _ in 0..MAX_ATTEMPTS {
            let Versioned {
                mut record,
                version,
            } = self.migration(name).await?;
            if change(&mut record).is_none() {
                return Ok(false);
            }
            record.updated_at = now;
            match self.store.put_migration(&record, Some(version)).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(WorkError::Contended(name.to_string()))
    }

    /// Read-modify-write of a file record, as [`Worker::update_migration`].
    pub(super) async fn update_file(
        &self,
        migration: &DatabaseName,
        file_id: &str,
        now: OffsetDateTime,
        change: impl Fn(&mut FileRecord) -> Option<()>,
    ) -> Result<bool, WorkError> {
        for _ in 0..MAX_ATTEMPTS {
            let Versioned {
                mut record,
                version,
            } = self
                .store
                .get_file(migration, file_id)
                .await?
                .ok_or_else(|| WorkError::Unknown(format!("file {file_id}")))?;
            if change(&mut record).is_none() {
                return Ok(false);
            }
            record.updated_at = now;
            match self.store.put_file(&record, Some(version)).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(WorkError::Contended(migration.to_string()))
    }
}
