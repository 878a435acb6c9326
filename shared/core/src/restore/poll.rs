//! Looking at a task in flight: its progress, when to look again, and what its end means for
//! the chain (the files restored, the next step, or the migration failed).

use super::*;

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
    pub(super) fn unknown_progress(&self, in_flight: &InFlight, now: OffsetDateTime) -> Duration {
        let elapsed = Duration::try_from(now - in_flight.submitted_at).unwrap_or(Duration::ZERO);
        pace::backoff(elapsed, self.config.poll_interval)
    }

    pub(super) async fn poll(
        &self,
        name: &DatabaseName,
        task_name: &str,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        let Versioned { record, .. } = self.migration(name).await?;
        let Some(in_flight) = record
            .in_flight
            .clone()
            .filter(|f| f.task_name == task_name)
        else {
            if record
                .in_flight
                .as_ref()
                .is_some_and(|f| f.claim.owner == attempt.message_id)
            {
                // This poll found its task done and claimed the next step, then failed before
                // that step's first poll was queued: resume the claim (find or submit the
                // task, queue its poll).
                return self.advance(name, attempt, now).await;
            }
            return Ok(WorkOutcome::Stale {
                migration: name.to_owned(),
            });
        };
        let Some(task) = in_flight.task.clone() else {
            return self.advance(name, attempt, now).await;
        };
        let database = name.clone();
        if record.state == MigrationState::Cancelled {
            return self.finish_cancel(name, task_name, &task, now).await;
        }
        let expected = in_flight
            .bytes
            .and_then(|b| record.rates.expected(in_flight.step.kind, b));
        let mut previous = in_flight.percent_complete.zip(in_flight.seen_running_at);
        let mut seen_running = in_flight.seen_running_at;
        let mut status = self.target.poll(&database, &task).await?;
        let mut now = now;
        let mut waited = Duration::ZERO;
        let progress = loop {
            let since = |at: OffsetDateTime| Duration::try_from(now - at).unwrap_or_default();
            let TaskStatus::Running { percent } = status else {
                break None;
            };
            seen_running = Some(now);
            let progress = pace::Progress {
                elapsed: since(in_flight.submitted_at),
                percent,
                previous: previous.map(|(p, at)| (p, since(at))),
                expected,
            };
            let Some(settle) = self
                .config
                .settle
                .as_ref()
                .filter(|_| progress.is_estimated())
            else {
                break Some(progress);
            };
            let pause = pace::remaining(&progress).max(SETTLE_STEP);
            if waited + pause > settle.longest {
                break Some(progress);
            }
            // About to end: wait for it here.
            (settle.pause)(pause).await;
            waited += pause;
            if let Some(p) = percent {
                previous = Some((p, now));
            }
            now += pause;
            status = self.target.poll(&database, &task).await?;
        };
        match status {
            TaskStatus::Running { percent } => {
                let progress = progress.unwrap_or_default();
                self.update_migration(name, now, |m| {
                    m.in_flight
                        .as_mut()
                        .filter(|f| f.task_name == task_name)
                        .map(|f| {
                            f.percent_complete = percent;
                            f.seen_running_at = Some(now);
                            f.looks = f.looks.saturating_add(1);
                        })
                })
                .await?;
                let delay = self.look_delay(&progress);
                self.poll_later(name, task_name, delay).await?;
                Ok(WorkOutcome::Running {
                    migration: name.to_owned(),
                    percent,
                })
            }
            TaskStatus::Succeeded => {
                let step = in_flight.step.clone();
                let mut fork = None;
                // The step's file names: a Complete armed with one of them is due once recorded.
                let mut names = Vec::new();
                for file_id in &step.files {
                    if let Some(file) = self.store.get_file(name, file_id).await? {
                        names.push(file.record.object.file_name().to_owned());
                        if fork.is_none() {
                            fork = file.record.header.map(|h| h.recovery_fork_id);
                        }
                    }
                }
                let applied = self
                    .update_migration(name, now, |m| {
                        let ours = m
                            .in_flight
                            .as_ref()
                            .is_some_and(|f| f.task_name == task_name);
                        ours.then(|| {
                            m.chain.record_restored(&step, fork);
                            if let Some(f) = m.in_flight.as_ref() {
                                let since = |at: OffsetDateTime| {
                                    Duration::try_from(at - f.submitted_at).unwrap_or_default()
                                };
                                let running = seen_running.map(since).unwrap_or_default();
                                let bytes = f.bytes.unwrap_or(0);
                                m.rates.learn(step.kind, bytes, running, since(now));
                            }
                            m.in_flight = None;
                            m.state = MigrationState::Synchronizing;
                            clear_target_reason(m);
                            if let Some(armed) = m
                                .armed
                                .as_mut()
                                .filter(|a| a.pending() && names.contains(&a.last_backup))
                            {
                                armed.reached = true;
                            }
                        })
                    })
                    .await?;
                if applied {
                    for file_id in &step.files {
                        self.update_file(name, file_id, now, |f| {
                            f.state = FileState::Restored;
                            f.reason = None;
                            f.restore_finished_at = Some(now);
                            Some(())
                        })
                        .await?;
                    }
                    // Recorded: the target may forget the task (a job left behind costs a row
                    // in msdb, not the migration).
                    let released = match self.request(name, &step).await {
                        Ok(request) => self
                            .target
                            .release_task(&request, &task, task_name)
                            .await
                            .map_err(WorkError::from),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = released {
                        tracing::warn!(migration = %name, %task, error.message = %e,
                            "the finished task could not be released; it stays on the target");
                    }
                }
                self.advance(name, attempt, now).await
            }
            TaskStatus::Failed { sql_error, message } => {
                let reason = match sql_error {
                    Some(SqlError { number, message }) => sql_reason(number, &message),
                    None => task_failure_reason(&message),
                };
                self.fail_files(name, &in_flight.step.files, reason, now)
                    .await
            }
            TaskStatus::Cancelled => {
                let reason = Reason::new(
                    "RestoreCancelled",
                    format!("{task} was cancelled on the target"),
                );
                self.fail(name, reason, now).await
            }
        }
    }
}
