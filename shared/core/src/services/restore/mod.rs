//! The restore worker's core: turns restore-queue messages into restores on the target, one
//! step at a time, never waiting for a restore to finish.
//!
//! - `Restore(job)`: the file joins the migration's candidates (Waiting), then the migration
//!   advances.
//! - Advancing: the planner picks the next step; before the first RESTORE of a migration the
//!   live target is checked (the database must not exist, its version must satisfy the policy);
//!   the step is claimed on the migration record (compare-and-set), submitted as a server-side
//!   task, the task recorded, and a delayed `Poll` scheduled.
//! - `Poll`: reads the task; running → progress and another delayed poll; succeeded → the chain
//!   grows, files are Restored and the migration advances; failed → the migration is Failed with
//!   SQL Server's number and message.
//!
//! A redelivered message never submits a second RESTORE: the claim is recorded before
//! submitting, and a claim without a recorded task is resolved by asking the target for the task
//! by name before anything is submitted again.
//!
//! A claim names its message (owner) and the one invocation acting on it (holder). Only the
//! holder acts on a live claim; anyone may take over a claim whose lease ran out (compare-and-set,
//! so one does). An invocation that fails ends its own lease at once, so that the redelivery of
//! its message resumes without waiting. Two invocations holding one SQS message at once (SQS
//! delivers at least once) share the owner but not the holder: the second defers, queueing an
//! `Advance` for when the first one's lease ends, and never submits beside it.

use std::time::Duration;

use time::OffsetDateTime;

use crate::model::chain::Step;
use crate::model::job::QueueMessage;
use crate::model::names::DatabaseName;
use crate::model::status::{
    Claim, FileRecord, FileState, InFlight, MigrationRecord, MigrationState, Reason, SqlError,
    Versioned,
};
use crate::model::task::TaskId;
use crate::model::version::{SqlServerRelease, VersionPolicy};
use crate::plan::{self, Candidate, Decision};
use crate::ports::{
    JobQueue, ObjectReader, QueueError, ReadError, RestoreTarget, StatusStore, StoreError,
    TargetError, TaskStatus,
};
use crate::services::pace;
use crate::tsql::{Dialect, RestoreRequest};

/// The states of the files the planner decides on.
const TO_PLAN: [FileState; 2] = [FileState::Queued, FileState::Waiting];

/// How long a submitter owns an in-flight claim before another delivery may resolve it.
pub const SUBMIT_CLAIM: time::Duration = time::Duration::minutes(5);

pub use crate::tsql::source::SourceLocation;

/// What the worker needs to know.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    pub dialect: Dialect,
    pub location: SourceLocation,
    pub policy: VersionPolicy,
    /// Check the backup's `DatabaseVersion` against the live target's own version before the
    /// first restore of a migration. False only for a target without a version: `bakdrop run`'s
    /// script-only preview without `--target-version`.
    pub check_version: bool,
    /// The longest delay between polls of a task in flight (they come sooner when the task's
    /// progress says it ends sooner: [`pace`]).
    pub poll_interval: Duration,
    /// Delay before planning again when the target is busy.
    pub busy_retry: Duration,
    /// Waiting in the invocation for a restore about to end; `None`: never.
    pub settle: Option<Settle>,
}

/// How a poll that finds a restore about to end waits for it in the same invocation instead of
/// queueing its next look (SQS delays are whole seconds, and a look is an invocation): when the
/// progress says it ends within `longest`, the poll pauses until then and looks again, for at
/// most `longest` in all; the next restore is then submitted moments after the last one ended.
#[derive(Clone)]
pub struct Settle {
    pub longest: Duration,
    /// Waits this long (the Lambda's runtime timer; the core has no clock of its own).
    pub pause: std::sync::Arc<
        dyn Fn(Duration) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync,
    >,
}

impl std::fmt::Debug for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settle")
            .field("longest", &self.longest)
            .finish_non_exhaustive()
    }
}

/// The shortest pause of a settling poll: looks closer together than this would only load the
/// target.
const SETTLE_STEP: Duration = Duration::from_millis(200);

/// What handling one message did.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkOutcome {
    /// A restore was submitted.
    Submitted {
        migration: DatabaseName,
        task: String,
    },
    /// A task is still running.
    Running {
        migration: DatabaseName,
        percent: Option<f64>,
    },
    /// Nothing to do now (waiting for files, in flight elsewhere, or synchronizing).
    Idle {
        migration: DatabaseName,
        state: MigrationState,
    },
    /// The target was busy; planning again later.
    Deferred { migration: DatabaseName },
    /// The message was about something already handled.
    Stale { migration: DatabaseName },
    /// The migration failed (recorded, with its reason).
    Failed {
        migration: DatabaseName,
        reason: Reason,
    },
}

/// Why a message could not be handled; the message stays on the queue when transient.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("the status store failed")]
    Store(#[from] StoreError),
    #[error("the restore queue failed")]
    Queue(#[from] QueueError),
    #[error("the target SQL Server failed")]
    Target(#[from] TargetError),
    #[error("the object store failed")]
    Objects(#[source] ReadError),
    #[error("no record of {0}: the status table does not know this migration or file")]
    Unknown(String),
    #[error("the records of migration {0} kept changing under us")]
    Contended(String),
}

impl WorkError {
    /// True when the message should be retried (left on the queue).
    pub fn is_transient(&self) -> bool {
        match self {
            // A compare-and-set lost on every try (a write through the shared helpers of
            // cutover or files): read again later, as validation and cutover do.
            WorkError::Store(e) => e.is_transient() || matches!(e, StoreError::Conflict { .. }),
            WorkError::Queue(e) => e.is_transient(),
            WorkError::Target(e) => e.is_transient(),
            WorkError::Objects(e) => e.is_transient(),
            WorkError::Unknown(_) => false,
            WorkError::Contended(_) => true,
        }
    }
}

/// A failure of Cancel's rules the worker performs ([`crate::services::cutover::let_go`] …) on the
/// migration `name`.
fn cancel_failed(error: crate::services::cutover::CutoverError, name: &DatabaseName) -> WorkError {
    use crate::services::cutover::CutoverError;
    match error {
        CutoverError::Store(e) => WorkError::Store(e),
        CutoverError::Target(e) => WorkError::Target(e),
        CutoverError::NotFound(_) | CutoverError::Refused { .. } => {
            WorkError::Unknown(format!("migration {name}"))
        }
    }
}

/// Who handles a message: the SQS message, whose id SQS keeps across redeliveries, and this
/// invocation (Lambda's request id), which two deliveries of the message at once do not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt<'a> {
    pub message_id: &'a str,
    pub invocation: &'a str,
}

impl Attempt<'_> {
    /// The claim holder's name: unique per message and invocation (one invocation handles a
    /// batch of messages, each its own holder).
    fn holder(&self) -> String {
        format!("{}/{}", self.invocation, self.message_id)
    }

    fn holds(&self, claim: &Claim) -> bool {
        claim.holder.as_deref() == Some(self.holder().as_str())
    }

    fn claim(&self, now: OffsetDateTime) -> Claim {
        Claim {
            owner: self.message_id.to_owned(),
            holder: Some(self.holder()),
            until: now + SUBMIT_CLAIM,
        }
    }
}

/// A claimed step: what to submit or find, under which name.
#[derive(Debug, Clone, PartialEq)]
struct Claimed {
    step: Step,
    task_name: String,
    task_floor: Option<i64>,
}

/// The worker over its ports. `objects` tells whether an uploaded object is still the version
/// that was validated (the target reads a key's latest version).
#[derive(Debug)]
pub struct Worker<S, Q, T, O> {
    pub store: S,
    pub queue: Q,
    pub target: T,
    pub objects: O,
    pub config: RestoreConfig,
}

/// SQS's longest delivery delay.
const MAX_QUEUE_DELAY: Duration = Duration::from_secs(900);

impl<S: StatusStore, Q: JobQueue, T: RestoreTarget, O: ObjectReader> Worker<S, Q, T, O> {
    /// Handles one message delivered to this `attempt`. When it fails, the attempt's own claim
    /// (if it holds one without a recorded task) ends at once, so that the message's
    /// redelivery resumes it instead of waiting out the lease.
    ///
    /// # Errors
    /// [`WorkError`]; retry the message when [`WorkError::is_transient`].
    pub async fn handle(
        &self,
        message: &QueueMessage,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        let result = self.handle_message(message, attempt, now).await;
        if let Err(error) = &result {
            let migration = message.migration();
            // Best effort: if this write fails too, the lease runs out on its own.
            if let Err(e) = self
                .own_claim(migration, attempt, now, OwnClaim::EndLease)
                .await
            {
                tracing::warn!(migration = %migration, error.message = %e,
                    "could not end this attempt's claim; it runs out with its lease");
            }
            if let WorkError::Target(e) = error {
                if let Err(e) = self.note_target_error(migration, e, now).await {
                    tracing::warn!(migration = %migration, error.message = %e,
                        "could not record the target's error on the migration");
                }
                if e.is_transient() {
                    // A fault of the moment: try the message again later, spaced as long as the
                    // fault has lasted, instead of letting SQS redeliver it into the DLQ.
                    let delay = self.fault_backoff(migration, now).await;
                    match self.queue.send(&retry_of(message), delay).await {
                        Ok(()) => {
                            tracing::warn!(migration = %migration, error.message = %e,
                                delay_seconds = delay.as_secs(), "target fault; retrying later");
                            return Ok(WorkOutcome::Deferred {
                                migration: migration.to_owned(),
                            });
                        }
                        Err(q) => tracing::warn!(migration = %migration, error.message = %q,
                            "could not queue the retry; the message is redelivered instead"),
                    }
                }
            }
        }
        result
    }

    /// How long to wait before retrying after a target fault: as long as the fault has lasted
    /// (so retries space out as 1, 2, 4, … times the busy delay), at least the busy delay, at
    /// most SQS's longest delay.
    async fn fault_backoff(&self, name: &DatabaseName, now: OffsetDateTime) -> Duration {
        let since = match self.store.get_migration(name).await {
            Ok(Some(m)) => m.record.target_fault_since,
            _ => None,
        };
        let lasted = since
            .map(|s| Duration::try_from(now - s).unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::ZERO);
        lasted.max(self.config.busy_retry).min(MAX_QUEUE_DELAY)
    }

    /// Records on the migration that one of its messages failed for the last time and is going
    /// to the restore dead-letter queue: nothing moves the migration until it is sent back.
    ///
    /// # Errors
    /// [`WorkError`] when the store failed.
    pub async fn note_dead_letter(
        &self,
        name: &DatabaseName,
        error: &str,
        now: OffsetDateTime,
    ) -> Result<bool, WorkError> {
        let reason = Reason::new(
            "MessageDeadLettered",
            format!("a restore-queue message of this migration failed on its last delivery ({error}) and went to the restore dead-letter queue; the migration does not move until it is sent back: fix the cause, then move the queue's messages back (README, \"When a message ends in a dead-letter queue\")"),
        );
        self.update_migration(name, now, |m| {
            let live = m.state.accepts_uploads() || m.state == MigrationState::Completing;
            live.then(|| m.reason = Some(reason.clone()))
        })
        .await
    }

    /// Records why the target could not be used (login refused, unreachable, certificate not
    /// trusted …) on a migration in progress, so that its status shows it while the message is
    /// retried; the state is left as it is, and the next restore recorded clears it.
    async fn note_target_error(
        &self,
        name: &DatabaseName,
        error: &TargetError,
        now: OffsetDateTime,
    ) -> Result<bool, WorkError> {
        let reason = target_reason(error);
        self.update_migration(name, now, |m| {
            let fresh = m.reason.as_ref().map(|r| (&r.code, &r.message))
                != Some((&reason.code, &reason.message));
            let first = m.target_fault_since.is_none() && error.is_transient();
            (m.state.accepts_uploads() && (fresh || first)).then(|| {
                m.reason = Some(reason.clone());
                if error.is_transient() {
                    m.target_fault_since.get_or_insert(now);
                }
            })
        })
        .await
    }

    async fn handle_message(
        &self,
        message: &QueueMessage,
        attempt: Attempt<'_>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        match message {
            QueueMessage::Restore(job) => {
                let Some(file) = self.store.get_file(&job.migration, &job.file_id).await? else {
                    // A job queued before its migration was reset: the reset forgot the file.
                    let migration = self.migration(&job.migration).await?;
                    if migration.record.generation > 0 {
                        return Ok(WorkOutcome::Stale {
                            migration: job.migration.clone(),
                        });
                    }
                    return Err(WorkError::Unknown(format!("file {}", job.file_id)));
                };
                // Validated too: the job can arrive before validation marked the file Queued
                // (validation marks it after sending); the job's existence is what counts.
                let joining = |s: FileState| matches!(s, FileState::Queued | FileState::Validated);
                if joining(file.record.state) {
                    self.update_file(&job.migration, &job.file_id, now, |f| {
                        joining(f.state).then(|| {
                            f.state = FileState::Waiting;
                            f.reason = None;
                            f.claim = None;
                        })
                    })
                    .await?;
                }
                Box::pin(self.advance_with(&job.migration, Some(&job.file_id), attempt, now)).await
            }
            // Boxed: planning, submitting and polling make large futures; the handler's stays small.
            QueueMessage::Advance { migration } => {
                Box::pin(self.advance(migration, attempt, now)).await
            }
            QueueMessage::Poll {
                migration,
                task_name,
            } => Box::pin(self.poll(migration, task_name, attempt, now)).await,
            QueueMessage::Finish { migration, since } => {
                Box::pin(self.finish(migration, *since, now)).await
            }
        }
    }

    async fn migration(
        &self,
        name: &DatabaseName,
    ) -> Result<Versioned<MigrationRecord>, WorkError> {
        self.store
            .get_migration(name)
            .await?
            .ok_or_else(|| WorkError::Unknown(format!("migration {name}")))
    }
}

/// The message that tries `message` again: a restore job's file has joined its migration
/// already, so planning again is enough; a poll or a finish is looked at again.
fn retry_of(message: &QueueMessage) -> QueueMessage {
    match message {
        QueueMessage::Restore(job) => QueueMessage::Advance {
            migration: job.migration.clone(),
        },
        other => other.clone(),
    }
}

/// A task name that is the same for the same step of the same migration (so a redelivery finds
/// it), differs between migrations (the name's letters and digits, which Agent job names allow,
/// plus a hash of the whole name: `a]b` and `ab` would otherwise share a job), and fits an Agent
/// job name (128 characters). After a reset (`generation` > 0) the names carry the generation,
/// so the same backup restored again never meets the Agent job of the migration before.
pub fn task_name(migration: &str, generation: u32, step: &Step) -> String {
    format!(
        "{}_{}_{}",
        crate::model::names::task_name_stem(migration, generation),
        step.kind,
        step.backup_set_guid.simple()
    )
}

mod advance;
mod decide;
mod finish;
mod poll;
mod reasons;
mod records;
#[cfg(test)]
mod tests;

use reasons::*;
use records::OwnClaim;
