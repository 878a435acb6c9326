//! Advancing a migration: the planner's next step, the checks of the live target before the
//! first restore, the claim, the submission of the step as a server-side task.

use super::*;

impl<S: StatusStore, Q: JobQueue, T: RestoreTarget, O: ObjectReader> Worker<S, Q, T, O> {
    /// Plans and, when a step is due, submits it.
    pub(super) async fn advance(
        &self,
        name: &DatabaseName,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        self.advance_with(name, None, attempt, now).await
    }

    /// Plans and, when a step is due, submits it; `joined` is the file that has just joined the
    /// candidates (read directly: the store's files-by-state index may not list it yet).
    pub(super) async fn advance_with(
        &self,
        name: &DatabaseName,
        joined: Option<&str>,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        for _ in 0..MAX_ATTEMPTS {
            let Versioned {
                record: mut migration,
                version,
            } = self.migration(name).await?;
            if migration.state == MigrationState::Cancelled {
                if let Some(in_flight) = migration
                    .in_flight
                    .as_ref()
                    .filter(|f| f.task.is_none() && f.claim.until <= now)
                {
                    // Cancelled while a submit was in progress, whose invocation then failed:
                    // settle the claim (take it over, then stop what it submitted, if anything).
                    let (step, task_name) = (in_flight.step.clone(), in_flight.task_name.clone());
                    let mut taken = migration.clone();
                    if let Some(f) = taken.in_flight.as_mut() {
                        f.claim = attempt.claim(now);
                    }
                    match self.store.put_migration(&taken, Some(version)).await {
                        Ok(_) => {
                            return self
                                .settle_cancelled(
                                    name,
                                    &step,
                                    &task_name,
                                    migration.task_floor,
                                    now,
                                )
                                .await
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if migration.state == MigrationState::Completing && migration.finishing.is_none() {
                // The delivery again of a message whose armed Complete stopped half-way (the
                // invocation ended before it queued the follow-up): resume it.
                return Box::pin(self.finish(name, Some(now), now)).await;
            }
            if !migration.state.accepts_uploads() {
                return Ok(WorkOutcome::Idle {
                    migration: name.to_owned(),
                    state: migration.state,
                });
            }
            if let Some(in_flight) = &migration.in_flight {
                if in_flight.task.is_some() {
                    if in_flight.claim.owner == attempt.message_id {
                        // This message submitted the task, then failed before its first poll
                        // was queued (or while queueing it): nothing else would ever poll the
                        // task, so queue the poll (again; a duplicate poll is harmless).
                        let delay = self.unknown_progress(in_flight, now);
                        self.poll_later(name, &in_flight.task_name, delay).await?;
                    }
                    return Ok(WorkOutcome::Idle {
                        migration: name.to_owned(),
                        state: migration.state,
                    });
                }
                let claimed = Claimed {
                    step: in_flight.step.clone(),
                    task_name: in_flight.task_name.clone(),
                    task_floor: migration.task_floor,
                };
                if attempt.holds(&in_flight.claim) {
                    return self.submit(name, claimed, attempt, now, true).await;
                }
                if in_flight.claim.until <= now {
                    // Its holder failed or vanished: take the claim over (one taker wins the
                    // compare-and-set), then find its task or submit it.
                    let mut taken = migration.clone();
                    if let Some(f) = taken.in_flight.as_mut() {
                        f.claim = attempt.claim(now);
                    }
                    taken.updated_at = now;
                    match self.store.put_migration(&taken, Some(version)).await {
                        Ok(_) => return self.submit(name, claimed, attempt, now, true).await,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                if in_flight.claim.owner == attempt.message_id {
                    // This very message, held by another invocation right now (SQS delivers at
                    // least once). Never act beside it; come back when its lease ends, in case
                    // it fails after this delivery has been acknowledged.
                    let left = in_flight.claim.until - now + time::Duration::SECOND;
                    let delay = Duration::try_from(left)
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_QUEUE_DELAY);
                    self.queue
                        .send(
                            &QueueMessage::Advance {
                                migration: name.to_owned(),
                            },
                            delay,
                        )
                        .await?;
                    return Ok(WorkOutcome::Deferred {
                        migration: name.to_owned(),
                    });
                }
                return Ok(WorkOutcome::Idle {
                    migration: name.to_owned(),
                    state: migration.state,
                });
            }

            // Only the files still to plan (not every file the migration restored).
            let mut files =
                crate::files::in_states(&self.store, name, Some(&migration), &TO_PLAN).await?;
            if let Some(id) = joined.filter(|id| !files.iter().any(|f| f.record.file_id == *id)) {
                files.extend(crate::files::if_in(&self.store, name, id, &TO_PLAN).await?);
            }
            let candidates: Vec<Candidate> = files
                .iter()
                .filter_map(|f| {
                    f.record.header.clone().map(|header| Candidate {
                        file_id: f.record.file_id.clone(),
                        file_name: f.record.object.file_name().to_owned(),
                        header,
                    })
                })
                .collect();
            let planned = plan::plan(&migration.chain, &candidates);
            for d in &planned.decisions {
                match &d.decision {
                    Decision::ApplyNow => {}
                    Decision::Wait { reason } => {
                        let text = reason.to_string();
                        let changed = |f: &FileRecord| {
                            f.state != FileState::Waiting
                                || f.reason.as_ref().map(|r| (r.code.as_str(), &r.message))
                                    != Some((reason.code(), &text))
                        };
                        // The records just read say whether anything changes: a long line of
                        // waiting logs is not read again at every step.
                        let unchanged = files
                            .iter()
                            .find(|f| f.record.file_id == d.file_id)
                            .is_some_and(|f| !changed(&f.record));
                        if unchanged {
                            continue;
                        }
                        self.update_file(name, &d.file_id, now, |f| {
                            (changed(f) && TO_PLAN.contains(&f.state)).then(|| {
                                f.state = FileState::Waiting;
                                f.reason = Some(Reason::new(reason.code(), text.clone()));
                            })
                        })
                        .await?;
                    }
                    Decision::Skip { reason } => {
                        let text = reason.to_string();
                        self.update_file(name, &d.file_id, now, |f| {
                            TO_PLAN.contains(&f.state).then(|| {
                                f.state = FileState::Skipped;
                                f.reason = Some(Reason::new(reason.code(), text.clone()));
                                f.restore_finished_at = Some(now);
                            })
                        })
                        .await?;
                    }
                    Decision::Fail { reason } => {
                        let reason = Reason::new("BrokenChain", reason.to_string());
                        return self
                            .fail_files(name, std::slice::from_ref(&d.file_id), reason, now)
                            .await;
                    }
                }
            }
            let Some(step) = planned.next else {
                let waits = planned
                    .decisions
                    .iter()
                    .any(|d| matches!(d.decision, Decision::Wait { .. }));
                if joined.is_some() && waits && migration.files_indexed && self.store.lists_lag() {
                    // A file that joined at the same moment (the other stripe of a set, the
                    // log that fills a gap) may not be listed by the index yet, and its own
                    // advance may miss this one: plan again once the index has caught up.
                    self.queue
                        .send(
                            &QueueMessage::Advance {
                                migration: name.to_owned(),
                            },
                            self.config.poll_interval,
                        )
                        .await?;
                }
                let synced = !migration.chain.is_empty();
                if synced && migration.state != MigrationState::Synchronizing {
                    migration.state = MigrationState::Synchronizing;
                    migration.updated_at = now;
                    match self.store.put_migration(&migration, Some(version)).await {
                        Ok(_) => {}
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                if crate::cutover::armed_due(&migration) {
                    return Box::pin(self.fire_armed(name, now)).await;
                }
                return Ok(WorkOutcome::Idle {
                    migration: name.to_owned(),
                    state: migration.state,
                });
            };

            if migration.chain.is_empty() {
                let checked = match self.preconditions(name, &candidates, &step).await {
                    Err(WorkError::Target(TargetError::NotReady(not_ready)))
                        if !not_ready.is_permanent() =>
                    {
                        return self.not_ready(name, not_ready, now).await;
                    }
                    other => other?,
                };
                if let Err(reason) = checked {
                    // Only against the record we planned from: a concurrent delivery may have
                    // claimed and submitted this very step meanwhile, creating the database
                    // the check just found. Then re-read and see its claim.
                    migration.state = MigrationState::Failed;
                    migration.reason = Some(reason.clone());
                    migration.in_flight = None;
                    migration.updated_at = now;
                    match self.store.put_migration(&migration, Some(version)).await {
                        Ok(_) => {
                            return Ok(WorkOutcome::Failed {
                                migration: name.to_owned(),
                                reason,
                            })
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let claimed = Claimed {
                step: step.clone(),
                task_name: task_name(name, migration.generation, &step),
                task_floor: migration.task_floor,
            };
            migration.in_flight = Some(InFlight {
                task_name: claimed.task_name.clone(),
                step: step.clone(),
                task: None,
                claim: attempt.claim(now),
                percent_complete: None,
                seen_running_at: None,
                looks: 0,
                bytes: None,
                submitted_at: now,
            });
            migration.restores_submitted = true;
            migration.state = MigrationState::Restoring;
            migration.updated_at = now;
            match self.store.put_migration(&migration, Some(version)).await {
                Ok(_) => return self.submit(name, claimed, attempt, now, false).await,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(WorkError::Contended(name.to_string()))
    }

    /// The live-target checks before the first RESTORE of a migration.
    pub(super) async fn preconditions(
        &self,
        name: &DatabaseName,
        candidates: &[Candidate],
        step: &Step,
    ) -> Result<Result<(), Reason>, WorkError> {
        let database = name.clone();
        if let Some(state) = self.target.database_state(&database).await? {
            return Ok(Err(Reason::new(
                "TargetDatabaseExists",
                format!(
                    "a database named {name} already exists on the target (state {state}); bakdrop never restores over an existing database. Drop or rename it, or upload to another database folder"
                ),
            )));
        }
        if self.config.check_version {
            let product = self.target.product_version().await?;
            let release: SqlServerRelease = match product.parse() {
                Ok(r) => r,
                Err(_) => {
                    return Ok(Err(Reason::new(
                        "UnknownTargetVersion",
                        format!(
                        "the target reports ProductVersion {product}, which bakdrop does not know"
                    ),
                    )))
                }
            };
            let backup_version = candidates
                .iter()
                .find(|c| step.files.contains(&c.file_id))
                .map(|c| c.header.database_version);
            if let Some(v) = backup_version {
                if let Err(e) = self.config.policy.check(v, release) {
                    return Ok(Err(Reason::new("TargetVersionMismatch", e.to_string())));
                }
            }
        }
        match self
            .target
            .check_ready(&self.request(name, step).await?)
            .await
        {
            Ok(()) => Ok(Ok(())),
            Err(TargetError::NotReady(n)) if n.is_permanent() => Ok(Err(not_ready_reason(&n))),
            Err(e) => Err(e.into()),
        }
    }

    /// The target cannot run restores until the DBA fixes it (Agent stopped, no credential):
    /// the migration shows why, its state unchanged, and plans again after the busy delay.
    pub(super) async fn not_ready(
        &self,
        name: &DatabaseName,
        not_ready: crate::ports::NotReady,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        self.note_target_error(name, &TargetError::NotReady(not_ready), now)
            .await?;
        self.queue
            .send(
                &QueueMessage::Advance {
                    migration: name.to_owned(),
                },
                self.config.busy_retry,
            )
            .await?;
        Ok(WorkOutcome::Deferred {
            migration: name.to_owned(),
        })
    }

    /// Submits the claimed step (or, resuming a claim, finds the task submitted before).
    pub(super) async fn submit(
        &self,
        name: &DatabaseName,
        claimed: Claimed,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
        resuming: bool,
    ) -> Result<WorkOutcome, WorkError> {
        let Claimed {
            step,
            task_name,
            task_floor,
        } = claimed;
        let (request, bytes) = self.request_sized(name, &step).await?;
        let found = if resuming {
            match self.target.find_task(&request, &task_name).await? {
                // A task of the migration before a reset (same S3 object), not this one's.
                Some(TaskId::Rds(id)) if task_floor.is_some_and(|floor| id <= floor) => None,
                found => found,
            }
        } else {
            None
        };
        if found.is_none() {
            let stale = self.stale_files(name, &step).await?;
            if !stale.is_empty() {
                return self.set_aside_stale(name, stale, attempt, now).await;
            }
        }
        let task = match found {
            Some(task) => task,
            None => match self.target.submit(&request, &task_name).await {
                Ok(task) => task,
                Err(TargetError::NotReady(not_ready)) if !not_ready.is_permanent() => {
                    self.release_claim(name, attempt, now).await?;
                    return self.not_ready(name, not_ready, now).await;
                }
                Err(TargetError::Busy) => {
                    self.release_claim(name, attempt, now).await?;
                    self.queue
                        .send(
                            &QueueMessage::Advance {
                                migration: name.to_owned(),
                            },
                            self.config.busy_retry,
                        )
                        .await?;
                    return Ok(WorkOutcome::Deferred {
                        migration: name.to_owned(),
                    });
                }
                // A fault of the moment (login refused, connection lost, …): recorded and
                // retried by `handle`, never failing the migration.
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(TargetError::Sql { number, message }) => {
                    let reason = sql_reason(number, &message);
                    return self.fail_files(name, &step.files, reason, now).await;
                }
                Err(e) => {
                    let reason = Reason::new(
                        "TargetRefused",
                        format!("the restore could not be submitted: {e}"),
                    );
                    return self.fail_files(name, &step.files, reason, now).await;
                }
            },
        };
        // Record the task on the claim.
        let mut first_look = pace::MIN_DELAY;
        for _ in 0..MAX_ATTEMPTS {
            let Versioned {
                mut record,
                version,
            } = self.migration(name).await?;
            let expected = record.rates.expected(step.kind, bytes);
            let Some(in_flight) = record.in_flight.as_mut() else {
                return Ok(WorkOutcome::Stale {
                    migration: name.to_owned(),
                });
            };
            in_flight.task = Some(task.clone());
            in_flight.submitted_at = now;
            in_flight.bytes = Some(bytes);
            first_look = self.look_delay(&pace::Progress {
                expected,
                ..pace::Progress::default()
            });
            if let TaskId::Rds(id) = task {
                record.highest_task = record.highest_task.max(Some(id));
            }
            clear_target_reason(&mut record);
            record.updated_at = now;
            match self.store.put_migration(&record, Some(version)).await {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        for file_id in &step.files {
            self.update_file(name, file_id, now, |f| {
                f.state = FileState::Restoring;
                f.reason = None;
                f.restore_started_at = Some(now);
                Some(())
            })
            .await?;
        }
        self.poll_later(name, &task_name, first_look).await?;
        Ok(WorkOutcome::Submitted {
            migration: name.to_owned(),
            task: task.to_string(),
        })
    }

    /// The step's files whose object is no longer the version validated (replaced or deleted),
    /// with why.
    pub(super) async fn stale_files(
        &self,
        name: &DatabaseName,
        step: &Step,
    ) -> Result<Vec<(String, Reason)>, WorkError> {
        let mut stale = Vec::new();
        for file_id in &step.files {
            let Some(file) = self.store.get_file(name, file_id).await? else {
                continue;
            };
            let object = &file.record.object;
            let reason = match self.objects.check_current(object).await {
                Ok(()) => continue,
                Err(ReadError::Changed(_)) => Reason::new(
                    "ObjectReplaced",
                    format!("{object} was replaced by another upload after it was validated, and the target would read the new one: bakdrop restores only bytes it validated. The new upload is validated as a file of its own; if this backup is still needed, upload it again"),
                ),
                Err(ReadError::NotFound(_)) => Reason::new(
                    "ObjectDeleted",
                    format!("{object} was deleted after it was validated: upload it again to restore it"),
                ),
                Err(e @ ReadError::Unavailable(_)) => return Err(WorkError::Objects(e)),
            };
            stale.push((file_id.clone(), reason));
        }
        Ok(stale)
    }

    /// Fails the files whose objects changed, lets go of the claim and plans again without them
    /// (another upload may take their place; until then the chain waits).
    pub(super) async fn set_aside_stale(
        &self,
        name: &DatabaseName,
        stale: Vec<(String, Reason)>,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        for (file_id, reason) in &stale {
            self.update_file(name, file_id, now, |f| {
                f.state = FileState::Failed;
                f.reason = Some(reason.clone());
                f.restore_finished_at = Some(now);
                Some(())
            })
            .await?;
        }
        self.release_claim(name, attempt, now).await?;
        Box::pin(self.advance(name, attempt, now)).await
    }

    /// What the target is asked to restore for `step`.
    pub(super) async fn request(
        &self,
        name: &DatabaseName,
        step: &Step,
    ) -> Result<RestoreRequest, WorkError> {
        Ok(self.request_sized(name, step).await?.0)
    }

    /// What the target is asked to restore for `step`, and the bytes of its backup files.
    pub(super) async fn request_sized(
        &self,
        name: &DatabaseName,
        step: &Step,
    ) -> Result<(RestoreRequest, u64), WorkError> {
        let mut bytes = 0u64;
        let mut request = RestoreRequest::new(name.clone(), step.kind, Vec::new());
        request.s3_region = self.config.location.s3_region().cloned();
        for file_id in &step.files {
            let file = self
                .store
                .get_file(name, file_id)
                .await?
                .ok_or_else(|| WorkError::Unknown(format!("file {file_id}")))?;
            bytes = bytes.saturating_add(file.record.object.size);
            request
                .sources
                .push(self.config.location.source(&file.record.object));
            // The stripes of a set share one header: its file list and checksum flag.
            if let Some(header) = &file.record.header {
                request.checksums = header.has_checksums;
                if request.files.is_empty() {
                    request.files = header.files.clone();
                }
            }
        }
        Ok((request, bytes))
    }
}
