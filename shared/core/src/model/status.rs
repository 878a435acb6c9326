//! The status model: one record per migration (target database) and one per uploaded file.
//!
//! Every step of the pipeline reads a record, decides, and writes it back only if nobody wrote it
//! in between (the store's compare-and-set on `version`). That is what makes redelivered events
//! and messages harmless: a record never moves backwards and a file is never applied twice.
//! The state machines are in DESIGN.md section 3.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::chain::{ChainState, Step};
use crate::model::header::{BackupKind, HeaderSummary};
use crate::model::names::DatabaseName;
use crate::model::object::ObjectRef;
use crate::model::task::TaskId;

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationState {
    /// Files may have arrived, but no full backup has been restored yet.
    AwaitingFull,
    /// A restore is in flight.
    Restoring,
    /// At least the full is restored WITH NORECOVERY and nothing is in flight: Complete is allowed.
    Synchronizing,
    /// The database is being brought online.
    Completing,
    /// The database is online.
    Succeeded,
    /// The migration stopped on an error (see the reason).
    Failed,
    /// The migration was cancelled on request.
    Cancelled,
}

impl MigrationState {
    /// True when new backups for this database may still be accepted.
    pub fn accepts_uploads(self) -> bool {
        matches!(
            self,
            MigrationState::AwaitingFull
                | MigrationState::Restoring
                | MigrationState::Synchronizing
        )
    }
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Where one uploaded file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileState {
    Received,
    Validated,
    Queued,
    /// Waiting for a predecessor in the restore chain.
    Waiting,
    Restoring,
    Restored,
    /// Already covered by what was restored.
    Skipped,
    Rejected,
    Failed,
}

impl FileState {
    /// Every state, in the order of the pipeline.
    pub const ALL: [FileState; 9] = [
        FileState::Received,
        FileState::Validated,
        FileState::Queued,
        FileState::Waiting,
        FileState::Restoring,
        FileState::Restored,
        FileState::Skipped,
        FileState::Rejected,
        FileState::Failed,
    ];

    /// The states of a file still in play: not yet restored, skipped, rejected or failed.
    pub const IN_PLAY: [FileState; 5] = [
        FileState::Received,
        FileState::Validated,
        FileState::Queued,
        FileState::Waiting,
        FileState::Restoring,
    ];

    /// True once validation is over for this file (it was queued or rejected, or went further).
    pub fn validation_done(self) -> bool {
        !matches!(self, FileState::Received | FileState::Validated)
    }
}

impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// SQL Server's own error, when it gave one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlError {
    pub number: u32,
    pub message: String,
}

/// Why a file was rejected or a migration failed: a stable code and a sentence for the DBA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable, machine-readable (e.g. `MoreThanOneBackupSet`, `BackupNewerThanTarget`).
    pub code: String,
    /// What happened and what to do about it.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_error: Option<SqlError>,
}

impl Reason {
    pub fn new(code: &str, message: impl Into<String>) -> Reason {
        Reason {
            code: code.to_owned(),
            message: message.into(),
            sql_error: None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sql_error {
            Some(e) => write!(
                f,
                "{} (SQL Server error {}: {})",
                self.message, e.number, e.message
            ),
            None => f.write_str(&self.message),
        }
    }
}

/// Who is working on a record, until when (a lease: a crashed worker's claim runs out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Who the claim is for: the restore worker's SQS message id (kept across redeliveries),
    /// validation's Lambda request id.
    pub owner: String,
    /// The one invocation acting on the claim now (restore worker: request id and message id).
    /// Two invocations holding one SQS message at once share the owner, never the holder.
    /// `None` on records written before holders were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// One uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The migration (target database) the key names; `None` when the key names none (stored
    /// as `""`).
    #[serde(with = "crate::model::names::or_empty")]
    pub migration: Option<DatabaseName>,
    /// [`ObjectRef::file_id`].
    pub file_id: String,
    pub object: ObjectRef,
    pub state: FileState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// When its restore was submitted.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub restore_started_at: Option<OffsetDateTime>,
    /// When its restore finished (restored, failed or skipped).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub restore_finished_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl FileRecord {
    /// The migration's name as the status store keys the file (`""` when the key names none).
    pub fn migration_key(&self) -> &str {
        self.migration.as_deref().unwrap_or_default()
    }
}

/// The restore the migration has in flight on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    pub step: Step,
    /// Name of the task (Agent job name; also what finds an RDS task again after a crash).
    pub task_name: String,
    /// The target's task, once submitted and recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// Who claimed the submission, until when (a crashed submitter's claim runs out).
    pub claim: Claim,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_complete: Option<f64>,
    /// When the task was last seen running (and `percent_complete` read).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub seen_running_at: Option<OffsetDateTime>,
    /// Looks at the task that found it running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub looks: u32,
    /// Bytes of the backup files the step restores (what its expected time is reckoned from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
}

/// Restore speed this migration's target showed, per backup type, in bytes per second of the
/// backup files restored (a full copies pages, a log replays them: their speeds differ).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Rates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<f64>,
}

impl Rates {
    fn is_empty(&self) -> bool {
        *self == Rates::default()
    }

    fn of(&mut self, kind: BackupKind) -> &mut Option<f64> {
        match kind {
            BackupKind::Full => &mut self.full,
            BackupKind::Differential => &mut self.differential,
            BackupKind::Log => &mut self.log,
        }
    }

    /// How long restoring `bytes` of `kind` should take, once a restore of that type was seen.
    pub fn expected(&self, kind: BackupKind, bytes: u64) -> Option<Duration> {
        let rate = match kind {
            BackupKind::Full => self.full,
            BackupKind::Differential => self.differential,
            BackupKind::Log => self.log,
        }?;
        (rate > 0.0 && rate.is_finite()).then(|| Duration::from_secs_f64(bytes as f64 / rate))
    }

    /// Learns from a restore of `bytes` of `kind` that ended between `seen_running` (the last
    /// look that found it running, or its submission) and `seen_done` after its submission:
    /// the end is taken at the first of the two (a later end would make every next look late),
    /// and the new rate weighs as much as those before.
    pub fn learn(
        &mut self,
        kind: BackupKind,
        bytes: u64,
        seen_running: Duration,
        seen_done: Duration,
    ) {
        let took = if seen_running.is_zero() {
            seen_done
        } else {
            seen_running
        };
        if bytes == 0 || took.is_zero() {
            return;
        }
        let observed = bytes as f64 / took.as_secs_f64();
        let rate = self.of(kind);
        *rate = Some(match *rate {
            Some(before) if before.is_finite() && before > 0.0 => (before + observed) / 2.0,
            _ => observed,
        });
    }
}

/// One migration (one target database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRecord {
    pub database: DatabaseName,
    pub state: MigrationState,
    /// The source database's FamilyGUID: every file must share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_guid: Option<Uuid>,
    /// The first full backup accepted (its BackupSetGUID): it starts the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_backup_set_guid: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// What has been restored on the target so far.
    #[serde(default)]
    pub chain: ChainState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
    /// Since when the target has been failing this migration with faults of the moment (login
    /// refused, unreachable, …); cleared by the next restore recorded. Spaces the retries.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub target_fault_since: Option<OffsetDateTime>,
    /// This generation of the migration claimed a restore on the target (so the target's
    /// database of this name may be its own). Cancel drops a database only then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restores_submitted: bool,
    /// While Completing: the target's task bringing the database online (RDS
    /// `FINISH_RESTORE`, a native Agent job running `WITH RECOVERY`), polled until it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finishing: Option<TaskId>,
    /// How many times the migration was reset (0 at first). Part of its task names, so that a
    /// migration after a reset never meets the Agent jobs of the one before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    /// RDS task ids up to this one belong to the generations before a reset: finding a task by
    /// its S3 object, the worker never takes one of them for this generation's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_floor: Option<i64>,
    /// The highest RDS task id this generation recorded (the next generation's floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_task: Option<i64>,
    /// Every file record of this migration was written with the store's files-by-state index
    /// ([`crate::ports::StatusStore::list_files_in`]): true for migrations created since the
    /// store keeps it; those from before read their files in full ([`crate::files`]).
    #[serde(default)]
    pub files_indexed: bool,
    /// How fast the target restored this migration's backups so far (when to look at the next).
    #[serde(default, skip_serializing_if = "Rates::is_empty")]
    pub rates: Rates,
    /// Complete armed in advance: it runs by itself, with the guards of a manual Complete, once
    /// the named backup is restored and nothing is in flight ([`crate::cutover::arm`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed: Option<ArmedComplete>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A Complete armed in advance with the name of the migration's last backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedComplete {
    /// The file name (the key's last segment) of the last backup: Complete runs once it is
    /// restored, and only if it is then the last one restored (`last_backup` of a manual one).
    pub last_backup: String,
    /// Complete only if that backup is a tail-log backup.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_tail_log: bool,
    /// Who armed it: `invoke` (complete-migration), `cli`, or the key of the uploaded request.
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub armed_at: OffsetDateTime,
    /// The named backup has been restored: Complete runs when nothing is in flight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reached: bool,
    /// The armed Complete ran and was refused (its guard's code and sentence): the arm is
    /// spent; arm again, or complete by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Reason>,
}

impl ArmedComplete {
    /// Waiting for its backup, or due: not yet run.
    pub fn pending(&self) -> bool {
        self.refused.is_none()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl MigrationRecord {
    /// A migration that has seen no full backup yet.
    pub fn new(database: DatabaseName, now: OffsetDateTime) -> MigrationRecord {
        MigrationRecord {
            database,
            state: MigrationState::AwaitingFull,
            family_guid: None,
            full_backup_set_guid: None,
            source_database: None,
            reason: None,
            chain: ChainState::default(),
            in_flight: None,
            target_fault_since: None,
            restores_submitted: false,
            finishing: None,
            generation: 0,
            task_floor: None,
            highest_task: None,
            files_indexed: true,
            rates: Rates::default(),
            armed: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether the target's database of this name can be this migration's own: it claimed a
    /// restore (records written before the flag: it restored something or has one in flight).
    pub fn owns_target_database(&self) -> bool {
        self.restores_submitted
            || self.in_flight.is_some()
            || self.chain != crate::model::chain::ChainState::default()
    }

    /// The migration that replaces this one after a reset: nothing restored, the next
    /// generation, tasks up to this one's highest not its own.
    pub fn next_generation(&self, now: OffsetDateTime) -> MigrationRecord {
        let mut next = MigrationRecord::new(self.database.clone(), now);
        next.generation = self.generation.saturating_add(1);
        next.task_floor = self.task_floor.max(self.highest_task);
        next
    }
}

/// A record and the store version it was read at (for compare-and-set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub record: T,
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn rates_are_learnt_per_backup_type_from_the_first_end_seen() {
        let mut rates = Rates::default();
        assert_eq!(rates.expected(BackupKind::Log, 1000), None);
        // 100 MB seen running at 9 s, done at 10 s: 100 MB / 9 s.
        rates.learn(BackupKind::Log, 100_000_000, secs(9.0), secs(10.0));
        let expected = rates.expected(BackupKind::Log, 50_000_000).expect("learnt");
        assert!((expected.as_secs_f64() - 4.5).abs() < 1e-6, "{expected:?}");
        assert_eq!(rates.expected(BackupKind::Full, 1000), None);
        // Never seen running (done at the first look): the look's time.
        rates.learn(BackupKind::Full, 4_000, Duration::ZERO, secs(2.0));
        assert_eq!(rates.expected(BackupKind::Full, 2_000), Some(secs(1.0)));
        // A second log restore at twice the speed: the mean of the two rates.
        rates.learn(BackupKind::Log, 100_000_000, secs(4.5), secs(5.0));
        let expected = rates
            .expected(BackupKind::Log, 100_000_000)
            .expect("learnt");
        assert!((expected.as_secs_f64() - 6.0).abs() < 1e-6, "{expected:?}");
        // Nothing learnt from nothing.
        rates.learn(BackupKind::Differential, 0, secs(1.0), secs(2.0));
        assert_eq!(rates.differential, None);
    }
}
