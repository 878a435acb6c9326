//! Writes of the migration and file records ([`retry::update`]): claims released, files and
//! migrations failed.

use super::*;
use crate::services::retry::{self, Updated};

/// What an attempt does with the claim it holds (without a recorded task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OwnClaim {
    /// Let go of it: the step is planned again from scratch.
    Release,
    /// End its lease, keeping the claim: whoever comes next takes it over and asks the target
    /// for its task first.
    EndLease,
}

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
            self.update_file(name, file_id, now, |f| decide::failed(f, &reason, now))
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

    /// Lets go of the claim this attempt holds without a recorded task ([`OwnClaim`]);
    /// whether there was one.
    pub(super) async fn own_claim(
        &self,
        name: &DatabaseName,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
        what: OwnClaim,
    ) -> Result<bool, WorkError> {
        self.update_migration(name, now, |m| {
            let f = m
                .in_flight
                .as_mut()
                .filter(|f| f.task.is_none() && attempt.holds(&f.claim))?;
            match what {
                OwnClaim::Release => m.in_flight = None,
                OwnClaim::EndLease if f.claim.until > now => f.claim.until = now,
                OwnClaim::EndLease => return None,
            }
            Some(())
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
        let changed = self
            .update_migration_to(name, |m| {
                change(m)?;
                m.updated_at = now;
                Some(())
            })
            .await?;
        Ok(changed.is_some())
    }

    /// Read-modify-write of the migration; `change` returns `None` to leave it as it is (and
    /// sets `updated_at` itself). Returns the record written, if it was.
    pub(super) async fn update_migration_to(
        &self,
        name: &DatabaseName,
        change: impl Fn(&mut MigrationRecord) -> Option<()>,
    ) -> Result<Option<MigrationRecord>, WorkError> {
        let updated = retry::update(
            || self.store.get_migration(name),
            |m| change(m).is_some(),
            |m, version| async move { self.store.put_migration(&m, Some(version)).await },
        )
        .await;
        match updated.map_err(|e| contended(e, name))? {
            Updated::Missing => Err(WorkError::Unknown(format!("migration {name}"))),
            Updated::Unchanged(_) => Ok(None),
            Updated::Changed(m) => Ok(Some(m)),
        }
    }

    /// Read-modify-write of a file record, as [`Worker::update_migration`].
    pub(super) async fn update_file(
        &self,
        migration: &DatabaseName,
        file_id: &str,
        now: OffsetDateTime,
        change: impl Fn(&mut FileRecord) -> Option<()>,
    ) -> Result<bool, WorkError> {
        let updated = retry::update(
            || self.store.get_file(migration, file_id),
            |f| {
                change(f).is_some() && {
                    f.updated_at = now;
                    true
                }
            },
            |f, version| async move { self.store.put_file(&f, Some(version)).await },
        )
        .await;
        match updated.map_err(|e| contended(e, migration))? {
            Updated::Missing => Err(WorkError::Unknown(format!("file {file_id}"))),
            Updated::Unchanged(_) => Ok(false),
            Updated::Changed(_) => Ok(true),
        }
    }
}

/// A store error of a read-modify-write: every try lost is contention on the migration.
fn contended(error: StoreError, name: &DatabaseName) -> WorkError {
    match error {
        StoreError::Conflict { .. } => WorkError::Contended(name.to_string()),
        e => WorkError::Store(e),
    }
}
