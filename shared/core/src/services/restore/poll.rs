//! Looking at a task in flight: its progress, when to look again, and what its end means for
//! the chain (the files restored, the next step, or the migration failed).

use super::advance::idle;
use super::decide::{self, PollTarget};
use super::*;
use crate::services::cutover;

impl<S: StatusStore, Q: JobQueue, T: RestoreTarget, O: ObjectReader> Worker<S, Q, T, O> {
    /// Queues a poll of the task `task_name` after `delay`.
    pub(super) async fn poll_later(
        &self,
        name: &DatabaseName,
        task_name: &str,
        delay: Duration,
    ) -> Result<(), WorkError> {
        let poll = QueueMessage::Poll {
            migration: name.to_owned(),
            task_name: task_name.to_owned(),
        };
        Ok(self.queue.send(&poll, delay).await?)
    }

    /// The next look at a task in flight: when a look may wait in its invocation, a second
    /// before the expected end (it waits out the rest), else at the expected end.
    pub(super) fn look_delay(&self, progress: &pace::Progress) -> Duration {
        match &self.config.settle {
            Some(settle) => {
                pace::next_look_ahead(progress, self.config.poll_interval, settle.longest / 2)
            }
            None => pace::next_look(progress, self.config.poll_interval),
        }
    }

    /// The next look at a task in flight whose progress this look did not read.
    pub(super) fn unknown_progress(
        &self,
        submitted_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Duration {
        let elapsed = Duration::try_from(now - submitted_at).unwrap_or(Duration::ZERO);
        pace::backoff(elapsed, self.config.poll_interval)
    }

    /// Looks at the task `task_name` and performs what its status means ([`decide::verdict`]).
    pub(super) async fn poll(
        &self,
        name: &DatabaseName,
        task_name: &str,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        let Versioned { record, .. } = self.migration(name).await?;
        let (in_flight, task) = match decide::poll_target(&record, task_name, attempt) {
            PollTarget::Stale => {
                return Ok(WorkOutcome::Stale {
                    migration: name.to_owned(),
                })
            }
            PollTarget::Advance => return self.advance(name, attempt, now).await,
            PollTarget::Cancelled(task) => {
                return self.finish_cancel(name, task_name, &task, now).await
            }
            PollTarget::Look { in_flight, task } => (in_flight, task),
        };
        let expected = in_flight
            .bytes
            .and_then(|b| record.rates.expected(in_flight.step.kind, b));
        let look = self.look(name, &in_flight, &task, expected, now).await?;
        let now = look.now;
        match decide::verdict(&look.status, &task) {
            decide::Verdict::Running(percent) => {
                self.update_migration(name, now, |m| {
                    decide::record_running(m, task_name, percent, now)
                })
                .await?;
                let delay = self.look_delay(&look.progress.unwrap_or_default());
                self.poll_later(name, task_name, delay).await?;
                Ok(WorkOutcome::Running {
                    migration: name.to_owned(),
                    percent,
                })
            }
            decide::Verdict::Restored => {
                let step = &in_flight.step;
                self.record_step_restored(name, task_name, &task, step, look.seen_running, now)
                    .await?;
                self.advance(name, attempt, now).await
            }
            decide::Verdict::FilesFailed(reason) => {
                self.fail_files(name, &in_flight.step.files, reason, now)
                    .await
            }
            decide::Verdict::Failed(reason) => self.fail(name, reason, now).await,
        }
    }

    /// A migration cancelled while its task ran: once the target has stopped the task, drop the
    /// half-restored database and let go of the task; until then, ask again and poll later.
    async fn finish_cancel(
        &self,
        name: &DatabaseName,
        task_name: &str,
        task: &TaskId,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        if cutover::stop_task(&self.target, name, task).await? {
            cutover::let_go(&self.store, &self.target, name, task_name, now)
                .await
                .map_err(|e| cancel_failed(e, name))?;
        } else {
            self.poll_later(name, task_name, self.config.poll_interval)
                .await?;
        }
        Ok(idle(name, MigrationState::Cancelled))
    }

    /// Reads the task's status; while it runs and its progress says it ends within the settle
    /// time, waits for it in this invocation and reads it again.
    async fn look(
        &self,
        name: &DatabaseName,
        in_flight: &InFlight,
        task: &TaskId,
        expected: Option<Duration>,
        now: OffsetDateTime,
    ) -> Result<Look, WorkError> {
        let mut previous = in_flight.percent_complete.zip(in_flight.seen_running_at);
        let mut look = Look {
            status: self.target.poll(name, task).await?,
            progress: None,
            seen_running: in_flight.seen_running_at,
            now,
        };
        let mut waited = Duration::ZERO;
        loop {
            let TaskStatus::Running { percent } = look.status else {
                return Ok(look);
            };
            let now = look.now;
            let since = |at: OffsetDateTime| Duration::try_from(now - at).unwrap_or_default();
            look.seen_running = Some(now);
            let progress = pace::Progress {
                elapsed: since(in_flight.submitted_at),
                percent,
                previous: previous.map(|(p, at)| (p, since(at))),
                expected,
            };
            look.progress = Some(progress);
            let Some(settle) = self
                .config
                .settle
                .as_ref()
                .filter(|_| progress.is_estimated())
            else {
                return Ok(look);
            };
            let pause = pace::remaining(&progress).max(SETTLE_STEP);
            if waited + pause > settle.longest {
                return Ok(look);
            }
            // About to end: wait for it here.
            (settle.pause)(pause).await;
            waited += pause;
            if let Some(p) = percent {
                previous = Some((p, now));
            }
            look.now = now + pause;
            look.status = self.target.poll(name, task).await?;
        }
    }

    /// Records a restored step ([`decide::record_restored`]) and its files Restored, then lets
    /// the target forget the task.
    async fn record_step_restored(
        &self,
        name: &DatabaseName,
        task_name: &str,
        task: &TaskId,
        step: &Step,
        seen_running: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(), WorkError> {
        let mut fork = None;
        let mut names = Vec::new();
        for file_id in &step.files {
            if let Some(file) = self.store.get_file(name, file_id).await? {
                names.push(file.record.object.file_name().to_owned());
                if fork.is_none() {
                    fork = file.record.header.map(|h| h.recovery_fork_id);
                }
            }
        }
        let restored = decide::RestoredStep {
            task_name,
            step,
            fork,
            names: &names,
            seen_running,
        };
        let applied = self
            .update_migration(name, now, |m| decide::record_restored(m, &restored, now))
            .await?;
        if !applied {
            return Ok(());
        }
        for file_id in &step.files {
            self.update_file(name, file_id, now, |f| decide::restored(f, now))
                .await?;
        }
        // Recorded: the target may forget the task (a job left behind costs a row in msdb,
        // not the migration).
        let released = match self.request(name, step).await {
            Ok(request) => self
                .target
                .release_task(&request, task, task_name)
                .await
                .map_err(WorkError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::warn!(migration = %name, %task, error.message = %e,
                "the finished task could not be released; it stays on the target");
        }
        Ok(())
    }
}

/// What a look at a task read.
struct Look {
    status: TaskStatus,
    /// The task's progress, when it runs.
    progress: Option<pace::Progress>,
    /// When it was last seen running.
    seen_running: Option<OffsetDateTime>,
    /// The time after the look (later than the poll's own when it waited).
    now: OffsetDateTime,
}
