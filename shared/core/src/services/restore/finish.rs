//! Following the task that brings a Completing migration online, and the Complete armed in
//! advance once its backup is restored.

use super::*;

impl<S: StatusStore, Q: JobQueue, T: RestoreTarget, O: ObjectReader> Worker<S, Q, T, O> {
    /// Follows the task bringing a Completing migration online (started at `since`); looks again
    /// later while it runs, paced by its percent complete as restores are (without `since`,
    /// every poll interval), and waits in the invocation for one about to end.
    pub(super) async fn finish(
        &self,
        name: &DatabaseName,
        since: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        use crate::services::cutover::CutoverError;
        let mut now = now;
        let mut waited = Duration::ZERO;
        let (state, delay) = loop {
            let (state, percent) = match crate::services::cutover::look_at_finish(
                &self.store,
                &self.target,
                name,
                now,
            )
            .await
            {
                Ok(looked) => looked,
                Err(CutoverError::Store(e)) => return Err(e.into()),
                Err(CutoverError::Target(e)) => return Err(e.into()),
                Err(CutoverError::NotFound(_) | CutoverError::Refused { .. }) => {
                    return Ok(WorkOutcome::Stale {
                        migration: name.to_owned(),
                    })
                }
            };
            let Some(since) = since.filter(|_| state == MigrationState::Completing) else {
                break (state, self.config.poll_interval);
            };
            let progress = pace::Progress {
                elapsed: Duration::try_from(now - since).unwrap_or(Duration::ZERO),
                percent,
                ..pace::Progress::default()
            };
            let pause = pace::remaining(&progress).max(SETTLE_STEP);
            match &self.config.settle {
                Some(settle) if progress.is_estimated() && waited + pause <= settle.longest => {
                    (settle.pause)(pause).await;
                    waited += pause;
                    now += pause;
                }
                _ => break (state, self.look_delay(&progress)),
            }
        };
        if state == MigrationState::Completing {
            let message = QueueMessage::Finish {
                migration: name.to_owned(),
                since,
            };
            self.queue.send(&message, delay).await?;
        }
        Ok(WorkOutcome::Idle {
            migration: name.to_owned(),
            state,
        })
    }

    /// Runs the migration's armed Complete (its backup is restored, nothing is in flight), with
    /// the guards of a manual one; a refusal is recorded on the arm. The migration is then
    /// Completing: its finish task (never run in this invocation) is followed like one a manual
    /// Complete started. A fault of the moment after the migration became Completing is retried
    /// as a `Finish` message: no other message moves a Completing migration.
    pub(super) async fn fire_armed(
        &self,
        name: &DatabaseName,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        use crate::services::cutover::CutoverError;
        let state = match crate::services::cutover::fire_armed(&self.store, &self.target, name, now)
            .await
        {
            Ok(Some(state)) => state,
            Ok(None) => self.migration(name).await?.record.state,
            Err(CutoverError::Store(e)) => {
                return self.resume_completing_later(name, e.into(), now).await
            }
            Err(CutoverError::Target(e)) => {
                return self.resume_completing_later(name, e.into(), now).await
            }
            Err(CutoverError::NotFound(_) | CutoverError::Refused { .. }) => {
                return Ok(WorkOutcome::Stale {
                    migration: name.to_owned(),
                })
            }
        };
        if state == MigrationState::Completing {
            // Followed as a manual Complete's task is: looks at 1, 2, 3, 5 … s after it started.
            let message = QueueMessage::Finish {
                migration: name.to_owned(),
                since: Some(now),
            };
            let delay = pace::backoff(Duration::ZERO, self.config.poll_interval);
            self.queue.send(&message, delay).await?;
        }
        Ok(WorkOutcome::Idle {
            migration: name.to_owned(),
            state,
        })
    }

    /// After an armed Complete failed with `error`: when the fault is of the moment and the
    /// migration is Completing, a `Finish` message resumes it later (it starts the finish task
    /// if none is recorded); otherwise the error, as the message's own.
    pub(super) async fn resume_completing_later(
        &self,
        name: &DatabaseName,
        error: WorkError,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        if !error.is_transient() {
            return Err(error);
        }
        let completing = match self.store.get_migration(name).await {
            Ok(m) => m.is_some_and(|m| m.record.state == MigrationState::Completing),
            Err(_) => false,
        };
        if !completing {
            return Err(error);
        }
        let message = QueueMessage::Finish {
            migration: name.to_owned(),
            since: Some(now),
        };
        let delay = self.config.busy_retry.min(MAX_QUEUE_DELAY);
        self.queue.send(&message, delay).await?;
        tracing::warn!(migration = %name, error.message = %error, delay_seconds = delay.as_secs(),
            "the armed Complete stopped half-way; bringing the database online resumes later");
        Ok(WorkOutcome::Deferred {
            migration: name.to_owned(),
        })
    }
}
