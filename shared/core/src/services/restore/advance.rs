//! Advancing a migration, the executor of [`decide`]'s rules: the claim arbitration, the
//! planner's next step, the checks of the live target before the first restore, the claim, the
//! submission of the step as a server-side task.

use super::decide::{self, Arbitration, Refusal};
use super::*;
use crate::plan::Plan;
use crate::services::cutover;
use crate::services::retry::{cas, retry, Cas};

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
        retry(|| async move { self.advance_once(name, joined, attempt, now).await })
            .await?
            .ok_or_else(|| WorkError::Contended(name.to_string()))
    }

    /// One try of [`Worker::advance_with`] on the migration as read now: performs what
    /// [`decide::arbitrate`] decides.
    async fn advance_once(
        &self,
        name: &DatabaseName,
        joined: Option<&str>,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<Cas<WorkOutcome>, WorkError> {
        let Versioned {
            record: migration,
            version,
        } = self.migration(name).await?;
        let outcome = match decide::arbitrate(&migration, attempt, now) {
            Arbitration::Plan => {
                return self
                    .plan_and_claim(name, migration, version, joined, attempt, now)
                    .await
            }
            Arbitration::SettleCancelled(claimed) => {
                let taken = decide::taken_over(&migration, attempt, now);
                if self.put(&taken, version).await? == Cas::Lost {
                    return Ok(Cas::Lost);
                }
                self.settle_cancelled(name, &claimed, now).await?
            }
            Arbitration::TakeOver(claimed) => {
                let taken = decide::taken_over(&migration, attempt, now);
                if self.put(&taken, version).await? == Cas::Lost {
                    return Ok(Cas::Lost);
                }
                self.submit(name, claimed, attempt, now, true).await?
            }
            Arbitration::Resume(claimed) => self.submit(name, claimed, attempt, now, true).await?,
            Arbitration::ResumeFinish => Box::pin(self.finish(name, Some(now), now)).await?,
            Arbitration::Repoll {
                task_name,
                submitted_at,
            } => {
                let delay = self.unknown_progress(submitted_at, now);
                self.poll_later(name, &task_name, delay).await?;
                idle(name, migration.state)
            }
            Arbitration::Defer(delay) => self.advance_later(name, delay).await?,
            Arbitration::Rest => idle(name, migration.state),
        };
        Ok(Cas::Done(outcome))
    }

    /// Plans the files still to plan, records the planner's verdicts, and claims and submits the
    /// next step (checking the live target before the first one), or rests.
    async fn plan_and_claim(
        &self,
        name: &DatabaseName,
        mut migration: MigrationRecord,
        version: u64,
        joined: Option<&str>,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<Cas<WorkOutcome>, WorkError> {
        let files = self.files_to_plan(name, &migration, joined).await?;
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
        if let Some(failed) = self.record_verdicts(name, &files, &planned, now).await? {
            return Ok(Cas::Done(failed));
        }
        let Some(step) = planned.next.clone() else {
            return self
                .rest(name, migration, version, &planned, joined.is_some(), now)
                .await;
        };
        if migration.chain.is_empty() {
            let checked = match self.preconditions(name, &candidates, &step).await {
                Err(WorkError::Target(TargetError::NotReady(not_ready)))
                    if !not_ready.is_permanent() =>
                {
                    return Ok(Cas::Done(self.not_ready(name, not_ready, now).await?));
                }
                other => other?,
            };
            if let Err(reason) = checked {
                decide::fail_before_first(&mut migration, reason.clone(), now);
                return Ok(self
                    .put(&migration, version)
                    .await?
                    .map(|_| WorkOutcome::Failed {
                        migration: name.to_owned(),
                        reason,
                    }));
            }
        }
        let claimed = decide::claim_step(&mut migration, name, &step, attempt, now);
        if self.put(&migration, version).await? == Cas::Lost {
            return Ok(Cas::Lost);
        }
        Ok(Cas::Done(
            self.submit(name, claimed, attempt, now, false).await?,
        ))
    }

    /// The files still to plan (not every file the migration restored), with `joined`.
    async fn files_to_plan(
        &self,
        name: &DatabaseName,
        migration: &MigrationRecord,
        joined: Option<&str>,
    ) -> Result<Vec<Versioned<FileRecord>>, WorkError> {
        let mut files =
            crate::services::files::in_states(&self.store, name, Some(migration), &TO_PLAN).await?;
        if let Some(id) = joined.filter(|id| !files.iter().any(|f| f.record.file_id == *id)) {
            files.extend(crate::services::files::if_in(&self.store, name, id, &TO_PLAN).await?);
        }
        Ok(files)
    }

    /// Records the planner's verdict on each file ([`decide::verdict_change`]); a broken chain
    /// fails its file and the migration, and that is the outcome.
    async fn record_verdicts(
        &self,
        name: &DatabaseName,
        files: &[Versioned<FileRecord>],
        planned: &Plan,
        now: OffsetDateTime,
    ) -> Result<Option<WorkOutcome>, WorkError> {
        for d in &planned.decisions {
            if let Decision::Fail { reason } = &d.decision {
                let reason = Reason::new("BrokenChain", reason.to_string());
                let failed = self
                    .fail_files(name, std::slice::from_ref(&d.file_id), reason, now)
                    .await?;
                return Ok(Some(failed));
            }
            // The records just read say whether anything changes: a long line of waiting logs
            // is not read again at every step.
            let unchanged = files
                .iter()
                .find(|f| f.record.file_id == d.file_id)
                .is_some_and(|f| {
                    decide::verdict_change(&d.decision, &mut f.record.clone(), now).is_none()
                });
            if !unchanged {
                self.update_file(name, &d.file_id, now, |f| {
                    decide::verdict_change(&d.decision, f, now)
                })
                .await?;
            }
        }
        Ok(None)
    }

    /// Nothing to submit: the migration reads Synchronizing once something is restored, plans
    /// again when a file that joined may not be listed yet, and runs its armed Complete when due.
    async fn rest(
        &self,
        name: &DatabaseName,
        mut migration: MigrationRecord,
        version: u64,
        planned: &Plan,
        joined: bool,
        now: OffsetDateTime,
    ) -> Result<Cas<WorkOutcome>, WorkError> {
        let at_rest = decide::at_rest(&migration, planned, joined, self.store.lists_lag());
        if at_rest.replan {
            self.queue
                .send(
                    &QueueMessage::Advance {
                        migration: name.to_owned(),
                    },
                    self.config.poll_interval,
                )
                .await?;
        }
        if at_rest.synchronize {
            migration.state = MigrationState::Synchronizing;
            migration.updated_at = now;
            if self.put(&migration, version).await? == Cas::Lost {
                return Ok(Cas::Lost);
            }
        }
        if crate::services::cutover::armed_due(&migration) {
            return Ok(Cas::Done(Box::pin(self.fire_armed(name, now)).await?));
        }
        Ok(Cas::Done(idle(name, migration.state)))
    }

    /// Writes the migration over the version read, as a try of a read-modify-write.
    pub(super) async fn put(
        &self,
        migration: &MigrationRecord,
        version: u64,
    ) -> Result<Cas<u64>, WorkError> {
        Ok(cas(self
            .store
            .put_migration(migration, Some(version))
            .await)?)
    }

    /// Queues an `Advance` of the migration after `delay`.
    pub(super) async fn advance_later(
        &self,
        name: &DatabaseName,
        delay: Duration,
    ) -> Result<WorkOutcome, WorkError> {
        self.queue
            .send(
                &QueueMessage::Advance {
                    migration: name.to_owned(),
                },
                delay,
            )
            .await?;
        Ok(WorkOutcome::Deferred {
            migration: name.to_owned(),
        })
    }

    /// A cancelled migration's claim without a task, taken over: if the target has the task,
    /// record it and poll it (the poll stops it and drops the database); if not, let go of the
    /// claim and drop whatever database is left ([`crate::services::cutover::let_go`]).
    async fn settle_cancelled(
        &self,
        name: &DatabaseName,
        claimed: &Claimed,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        let task_name = claimed.task_name.as_str();
        let request = self.request(name, &claimed.step).await?;
        let found = self.target.find_task(&request, task_name).await?;
        match decide::found_task(found, claimed.task_floor) {
            Some(task) => {
                cutover::record_task_to_stop(&self.store, name, task_name, &task, now)
                    .await
                    .map_err(|e| cancel_failed(e, name))?;
                self.poll_later(name, task_name, self.config.poll_interval)
                    .await?;
            }
            None => cutover::let_go(&self.store, &self.target, name, task_name, now)
                .await
                .map_err(|e| cancel_failed(e, name))?,
        }
        Ok(idle(name, MigrationState::Cancelled))
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
        self.advance_later(name, self.config.busy_retry).await
    }

    /// Submits the claimed step (or, resuming a claim, finds the task submitted before), then
    /// records its task.
    pub(super) async fn submit(
        &self,
        name: &DatabaseName,
        claimed: Claimed,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
        resuming: bool,
    ) -> Result<WorkOutcome, WorkError> {
        let (request, bytes) = self.request_sized(name, &claimed.step).await?;
        let found = if resuming {
            let found = self.target.find_task(&request, &claimed.task_name).await?;
            decide::found_task(found, claimed.task_floor)
        } else {
            None
        };
        let task = match found {
            Some(task) => task,
            None => {
                let stale = self.stale_files(name, &claimed.step).await?;
                if !stale.is_empty() {
                    return self.set_aside_stale(name, stale, attempt, now).await;
                }
                match self.target.submit(&request, &claimed.task_name).await {
                    Ok(task) => task,
                    Err(e) => {
                        let refusal = decide::refusal(e);
                        return self
                            .refused(name, &claimed.step, refusal, attempt, now)
                            .await;
                    }
                }
            }
        };
        self.record_submitted(name, &claimed, task, bytes, now)
            .await
    }

    /// Performs what a refused submission means ([`decide::refusal`]).
    async fn refused(
        &self,
        name: &DatabaseName,
        step: &Step,
        refusal: Refusal,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        match refusal {
            Refusal::NotReady(not_ready) => {
                self.own_claim(name, attempt, now, OwnClaim::Release)
                    .await?;
                self.not_ready(name, not_ready, now).await
            }
            Refusal::Busy => {
                self.own_claim(name, attempt, now, OwnClaim::Release)
                    .await?;
                self.advance_later(name, self.config.busy_retry).await
            }
            // Recorded and retried by `handle`, never failing the migration.
            Refusal::Transient(e) => Err(e.into()),
            Refusal::Fail(reason) => self.fail_files(name, &step.files, reason, now).await,
        }
    }

    /// Records the submitted task on the claim and its files as Restoring, and queues the first
    /// look at it.
    async fn record_submitted(
        &self,
        name: &DatabaseName,
        claimed: &Claimed,
        task: TaskId,
        bytes: u64,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        let recorded = self
            .update_migration_to(name, |m| decide::record_task(m, &task, bytes, now))
            .await?;
        let Some(migration) = recorded else {
            return Ok(WorkOutcome::Stale {
                migration: name.to_owned(),
            });
        };
        let first_look = self.look_delay(&pace::Progress {
            expected: migration.rates.expected(claimed.step.kind, bytes),
            ..pace::Progress::default()
        });
        for file_id in &claimed.step.files {
            self.update_file(name, file_id, now, |f| decide::restoring(f, now))
                .await?;
        }
        self.poll_later(name, &claimed.task_name, first_look)
            .await?;
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
            self.update_file(name, file_id, now, |f| decide::failed(f, reason, now))
                .await?;
        }
        self.own_claim(name, attempt, now, OwnClaim::Release)
            .await?;
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

/// The outcome of a delivery that has nothing to do.
pub(super) fn idle(name: &DatabaseName, state: MigrationState) -> WorkOutcome {
    WorkOutcome::Idle {
        migration: name.to_owned(),
        state,
    }
}
