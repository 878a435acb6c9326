//! Validation of one uploaded object: the core of the `validate-upload` function.
//!
//! Reads the head and the tail of the object concurrently (never the whole object), parses the
//! backup, checks the preconditions (one backup set, version policy, database name, same source
//! database), records the file and its migration with compare-and-set, and
//! queues a restore job. Every rejection is recorded with a reason; infrastructure failures are
//! returned as errors so that the caller (Lambda) retries, and a retry continues where the failed
//! attempt stopped: a file is recorded once and queued once however often its event arrives.

use std::time::Duration;

use time::OffsetDateTime;

use crate::backup;
use crate::backup::summary;
use crate::model::header::{BackupKind, HeaderSummary};
use crate::model::job::{QueueMessage, RestoreJob};
use crate::model::names::DatabaseName;
use crate::model::object::{KeyError, MigrationKey, ObjectRef};
use crate::model::status::{
    Claim, FileRecord, FileState, MigrationRecord, MigrationState, Reason, Versioned,
};
use crate::model::version::{SqlServerRelease, VersionPolicy};
use crate::ports::{
    ByteRange, JobQueue, ObjectReader, QueueError, ReadError, StatusStore, StoreError,
};
use crate::services::retry::{cas, retry, Cas};

/// How long a validation attempt owns a file record before another delivery may take it over.
pub const CLAIM_DURATION: time::Duration = time::Duration::seconds(120);

/// What validation needs to know about the target.
#[derive(Debug, Clone)]
pub struct ValidateConfig {
    /// The target's version; `None` skips the version check (a preview without a target: each
    /// folder's backups are taken at their own version, and the check is left to the worker's
    /// look at the live target before the first restore).
    pub target: Option<SqlServerRelease>,
    pub policy: VersionPolicy,
    /// Where the target will read the backup: an upload it could never read (a wildcard in an
    /// RDS key, a URL over SQL Server's length limit, too many stripes) is rejected now.
    pub location: crate::tsql::source::SourceLocation,
    /// An uploaded [`ARM_REQUEST_FILE`] arms (or disarms) its migration's Complete. Off by
    /// default: anyone who may upload could then cut over. Off, such an object is ignored
    /// (never validated as a backup, never recorded).
    pub arm_by_upload: bool,
}

/// The name (any case) of the object that arms Complete by upload, next to the backups:
/// `<prefix>/<TargetDatabase>/bakdrop-complete.json` holding `{"last_backup": "<file name>",
/// "require_tail_log": false}` (arm) or `{"disarm": true}`. See [`ValidateConfig::arm_by_upload`].
pub const ARM_REQUEST_FILE: &str = "bakdrop-complete.json";

/// The largest arm request read (it is a few dozen bytes).
const ARM_REQUEST_MAX: u64 = 4096;

/// What an uploaded [`ARM_REQUEST_FILE`] asks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmRequest {
    #[serde(default)]
    last_backup: Option<String>,
    #[serde(default)]
    require_tail_log: bool,
    #[serde(default)]
    disarm: bool,
}

/// True when `object` is an arm request by its name ([`ARM_REQUEST_FILE`], any case).
pub fn is_arm_request(object: &ObjectRef) -> bool {
    object.file_name().eq_ignore_ascii_case(ARM_REQUEST_FILE)
}

/// The codes of rejections that depend only on the settings (the target's version, the version
/// policy, where the target reads the backups), not on the file: a file rejected with one of
/// them keeps its header and is checked again under other settings ([`Validator::validate`] of
/// the same object again, [`Validator::revalidate`] for a migration's files).
pub const SETTINGS_CODES: [&str; 7] = [
    "VersionNotSame",
    "BackupNewerThanTarget",
    "BackupTooOld",
    "WildcardInKey",
    "TooManyStripes",
    "SourceUrlTooLong",
    "InvalidSource",
];

impl ValidateConfig {
    /// The settings a function reads (through `get`, the process environment in production):
    /// `TARGET_SQLSERVER_VERSION` (required: a deployed stack names its target's version),
    /// `VERSION_POLICY` (`same` by default), `TARGET_DIALECT` (`rds` by default),
    /// `SOURCE_LOCATION`, `AWS_REGION`, `COMPLETE_BY_UPLOAD` (`enabled` or `disabled`, the default).
    ///
    /// # Errors
    /// A sentence naming the missing or invalid variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<ValidateConfig, String> {
        let optional = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let target = optional("TARGET_SQLSERVER_VERSION")
            .ok_or("TARGET_SQLSERVER_VERSION is not set")?
            .parse::<SqlServerRelease>()
            .map_err(|e| format!("TARGET_SQLSERVER_VERSION: {e}"))?;
        let policy = match optional("VERSION_POLICY") {
            Some(text) => text.parse().map_err(|e| format!("VERSION_POLICY: {e}"))?,
            None => VersionPolicy::Same,
        };
        let dialect: crate::tsql::Dialect = optional("TARGET_DIALECT")
            .unwrap_or_else(|| "rds".into())
            .parse()
            .map_err(|e| format!("TARGET_DIALECT: {e}"))?;
        let location = crate::tsql::source::SourceLocation::from_settings(
            dialect,
            optional("SOURCE_LOCATION").as_deref(),
            optional("AWS_REGION").as_deref(),
        )?;
        let arm_by_upload = match optional("COMPLETE_BY_UPLOAD").as_deref() {
            None | Some("disabled") => false,
            Some("enabled") => true,
            Some(other) => {
                return Err(format!(
                    "COMPLETE_BY_UPLOAD: {other:?} is neither enabled nor disabled"
                ))
            }
        };
        Ok(ValidateConfig {
            arm_by_upload,
            target: Some(target),
            policy,
            location,
        })
    }

    /// The checks that depend on these settings: where the target reads the object, and the
    /// backup's version against the target's (when one is known).
    ///
    /// # Errors
    /// The rejection, with one of [`SETTINGS_CODES`].
    pub fn check_settings(&self, object: &ObjectRef, header: &HeaderSummary) -> Result<(), Reason> {
        self.location
            .check(object, header.family_count)
            .map_err(|refusal| refusal.reason())?;
        if let Some(target) = self.target {
            self.policy
                .check(header.database_version, target)
                .map_err(|e| Reason::new(e.code(), e.to_string()))?;
        }
        Ok(())
    }
}

/// What one try at a file's record came to.
enum Taken {
    /// Answered without restoring anything (a duplicate, a rejection).
    Done(Outcome),
    /// Validated and claimed by this attempt, at this version: joins its migration next.
    Claimed(Box<FileRecord>, u64),
}

/// What re-checking a file rejected under other settings came to.
enum Recheck {
    /// Not a settings rejection, or the same verdict: nothing to do.
    Unchanged,
    /// Rejected again, for another reason (recorded).
    Rejected(Reason),
    /// Accepted now: the record is Validated and claimed, at this version.
    Accepted(Box<FileRecord>, u64),
}

/// What [`Validator::revalidate`] did to a migration's rejected files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Revalidated {
    /// Files rejected only because of the settings, checked again.
    pub rechecked: usize,
    /// Of those, accepted and queued now.
    pub queued: usize,
    /// Of those, still rejected (possibly for another reason).
    pub still_rejected: usize,
    /// Files rejected for what they are (not the settings): left as they are.
    pub left: usize,
}

/// What became of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Recorded and queued for restore.
    Queued { migration: String, file_id: String },
    /// Recorded as rejected, with the reason.
    Rejected {
        migration: String,
        file_id: String,
        reason: Reason,
    },
    /// Already handled by an earlier delivery of the same event; nothing was done.
    Duplicate { file_id: String, state: FileState },
    /// An arm request ([`ARM_REQUEST_FILE`]) armed the migration's Complete for `last_backup`,
    /// or disarmed it (`None`).
    Armed {
        migration: String,
        last_backup: Option<String>,
    },
    /// Not a backup and not handled: an arm request while arming by upload is off.
    Ignored { reason: Reason },
}

/// Why validation could not finish: the event must be retried.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("reading the object failed")]
    Read(#[from] ReadError),
    #[error("the status store failed")]
    Store(#[from] StoreError),
    #[error("queueing the restore job failed")]
    Queue(#[from] QueueError),
    #[error("another delivery of this event is validating {file_id} right now; retry later")]
    InProgress { file_id: String },
    #[error("the records of {file_id} kept changing under us; retry later")]
    Contended { file_id: String },
}

impl ValidateError {
    /// True when retrying the event later may succeed. Everything here is; bad input never ends
    /// up as an error (it is a recorded rejection).
    pub fn is_transient(&self) -> bool {
        match self {
            ValidateError::Read(e) => e.is_transient(),
            ValidateError::Store(e) => e.is_transient() || matches!(e, StoreError::Conflict { .. }),
            ValidateError::Queue(e) => e.is_transient(),
            ValidateError::InProgress { .. } | ValidateError::Contended { .. } => true,
        }
    }
}

/// The validation service over its ports.
#[derive(Debug)]
pub struct Validator<R, S, Q> {
    pub reader: R,
    pub store: S,
    pub queue: Q,
    pub config: ValidateConfig,
}

/// The most rejected files of one migration [`Validator::revalidate`] looks at in one call.
pub const REVALIDATE_LIMIT: usize = 1000;

/// The head bytes read first, beside the tail: enough for a plain backup's metadata in every
/// fixture; the parser asks for more when a file's metadata is larger.
pub const FIRST_HEAD: usize = 64 << 10;

/// A backup read as validation reads it, and what reading it took.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRead {
    pub parsed: Result<backup::BackupFile, backup::ParseError>,
    /// Bytes read from the object, every range counted (a head read again longer counts twice).
    pub bytes_read: u64,
    /// Ranged reads made.
    pub reads: u32,
}

/// Reads the first [`FIRST_HEAD`] bytes and the last [`backup::TAIL_LIMIT`] bytes concurrently
/// and parses them; reads a longer head only when the parser asks for it (a backup whose header
/// blocks do not fit the first read), at most twice. Never reads the whole object unless it is
/// that small. What `validate-upload` and `bakdrop inspect` read.
///
/// # Errors
/// [`ReadError`] when a read failed.
pub async fn read_backup<R: ObjectReader>(
    reader: &R,
    object: &ObjectRef,
) -> Result<BackupRead, ReadError> {
    let head_len = (FIRST_HEAD as u64).min(object.size);
    let tail_len = (backup::TAIL_LIMIT as u64).min(object.size.saturating_sub(head_len));
    let head = reader.read(object, ByteRange::Head(head_len));
    let tail = async {
        if tail_len == 0 {
            Ok(None)
        } else {
            reader
                .read(object, ByteRange::Tail(tail_len))
                .await
                .map(Some)
        }
    };
    let (mut head, tail) = match futures_util::future::join(head, tail).await {
        (Ok(h), Ok(t)) => (h, t),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let mut bytes_read = head.len() as u64 + tail.as_ref().map_or(0, |t| t.len() as u64);
    let mut reads = 1 + u32::from(tail.is_some());
    let whole_head = (backup::HEAD_LIMIT as u64).min(object.size);
    // The parser names the head length it needs; a well-formed file asks at most twice.
    let mut parsed = backup::parse(&head, tail.as_deref(), object.size);
    for _ in 0..2 {
        match parsed {
            Err(backup::ParseError::NeedMoreHead { needed })
                if needed > head.len() && needed as u64 <= whole_head =>
            {
                head = reader.read(object, ByteRange::Head(needed as u64)).await?;
                bytes_read += head.len() as u64;
                reads += 1;
                parsed = backup::parse(&head, tail.as_deref(), object.size);
            }
            _ => break,
        }
    }
    Ok(BackupRead {
        parsed,
        bytes_read,
        reads,
    })
}

impl<R: ObjectReader, S: StatusStore, Q: JobQueue> Validator<R, S, Q> {
    /// Validates one object version. `attempt_id` identifies this delivery (Lambda's request id,
    /// which Lambda keeps across its own retries of the same event).
    ///
    /// # Errors
    /// [`ValidateError`] when an infrastructure step failed; the event should be retried.
    pub async fn validate(
        &self,
        object: &ObjectRef,
        attempt_id: &str,
        now: OffsetDateTime,
    ) -> Result<Outcome, ValidateError> {
        if is_arm_request(object) {
            return Box::pin(self.arm_request(object, attempt_id, now)).await;
        }
        let file_id = object.file_id();
        let key = MigrationKey::parse(&object.key);
        // Boxed: reading and parsing a new file makes a large future (deep in debug builds).
        let taken = retry(|| Box::pin(self.take(object, &key, &file_id, attempt_id, now)))
            .await?
            .ok_or_else(|| ValidateError::Contended {
                file_id: file_id.clone(),
            })?;
        match taken {
            Taken::Done(outcome) => Ok(outcome),
            Taken::Claimed(record, version) => self.register_and_queue(*record, version, now).await,
        }
    }

    /// One try at the file's record: a file validated before is checked again under the
    /// settings of now (or answered as a duplicate), a file another delivery validates is in
    /// progress unless its claim is this attempt's or ran out, and a new file is read and checked.
    async fn take(
        &self,
        object: &ObjectRef,
        key: &Result<MigrationKey, KeyError>,
        file_id: &str,
        attempt_id: &str,
        now: OffsetDateTime,
    ) -> Result<Cas<Taken>, ValidateError> {
        let migration = key.as_ref().ok().map(|k| &k.database);
        let store_key = migration.map(|m| m.as_str()).unwrap_or_default();
        let rejected = |reason| Outcome::Rejected {
            migration: store_key.to_owned(),
            file_id: file_id.to_owned(),
            reason,
        };
        match self.store.get_file(store_key, file_id).await? {
            Some(Versioned { record, version }) if record.state.validation_done() => {
                let state = record.state;
                let rechecked = self.recheck(record, version, attempt_id, now).await?;
                Ok(rechecked.map(|r| match r {
                    Recheck::Unchanged => Taken::Done(Outcome::Duplicate {
                        file_id: file_id.to_owned(),
                        state,
                    }),
                    Recheck::Rejected(reason) => Taken::Done(rejected(reason)),
                    Recheck::Accepted(record, version) => Taken::Claimed(record, version),
                }))
            }
            Some(Versioned {
                mut record,
                version,
            }) => {
                let claim_is_mine_or_stale = record
                    .claim
                    .as_ref()
                    .is_none_or(|c| c.owner == attempt_id || c.until <= now);
                if !claim_is_mine_or_stale {
                    return Err(ValidateError::InProgress {
                        file_id: file_id.to_owned(),
                    });
                }
                record.claim = Some(claim(attempt_id, now));
                record.updated_at = now;
                let written = cas(self.store.put_file(&record, Some(version)).await)?;
                Ok(written.map(|v| Taken::Claimed(Box::new(record), v)))
            }
            None => {
                let record = self
                    .record_new(object, key, file_id, attempt_id, now)
                    .await?;
                let written = cas(self.store.put_file(&record, None).await)?;
                Ok(written.map(|v| {
                    if record.state == FileState::Rejected {
                        let reason = record
                            .reason
                            .unwrap_or_else(|| Reason::new("Unknown", "rejected without a reason"));
                        Taken::Done(rejected(reason))
                    } else {
                        Taken::Claimed(Box::new(record), v)
                    }
                }))
            }
        }
    }

    /// The record of a file seen for the first time: read, parsed and checked under the
    /// settings; Validated and claimed by `attempt_id`, or Rejected with why.
    async fn record_new(
        &self,
        object: &ObjectRef,
        key: &Result<MigrationKey, KeyError>,
        file_id: &str,
        attempt_id: &str,
        now: OffsetDateTime,
    ) -> Result<FileRecord, ValidateError> {
        let (header, checked) = match key {
            // Boxed: the reads and the parse make a large future (deep in debug builds).
            Ok(_) => match Box::pin(self.read_header(object)).await? {
                Ok(header) => {
                    let verdict = self.config.check_settings(object, &header);
                    (Some(header), verdict)
                }
                Err(reason) => (None, Err(reason)),
            },
            Err(e) => (None, Err(Reason::new("InvalidKey", e.to_string()))),
        };
        let mut record = FileRecord {
            migration: key.as_ref().ok().map(|k| k.database.clone()),
            file_id: file_id.to_owned(),
            object: object.clone(),
            state: FileState::Validated,
            reason: None,
            // A file rejected for the settings keeps its header: it is checked again under
            // other settings without reading it again.
            header,
            claim: Some(claim(attempt_id, now)),
            restore_started_at: None,
            restore_finished_at: None,
            created_at: now,
            updated_at: now,
        };
        if let Err(reason) = checked {
            record.state = FileState::Rejected;
            record.reason = Some(reason);
            record.claim = None;
        }
        Ok(record)
    }

    /// Reads the backup ([`read_backup`]), parses it and checks what needs only the file itself
    /// (the settings' checks are [`ValidateConfig::check_settings`]). `Ok(Err(reason))` is a
    /// rejection; `Err` an infrastructure failure.
    async fn read_header(
        &self,
        object: &ObjectRef,
    ) -> Result<Result<HeaderSummary, Reason>, ValidateError> {
        let parsed = match read_backup(&self.reader, object).await {
            Ok(read) => read.parsed,
            Err(e) => return read_failure(e),
        };
        Ok(parsed
            .map_err(|e| summary::parse_reason(&e))
            .and_then(|file| summary::check_file(&file)))
    }

    /// Checks again a file rejected only because of the settings ([`SETTINGS_CODES`]), under
    /// the settings of now: accepted (Validated and claimed by `attempt_id`), rejected for
    /// another reason, or unchanged.
    async fn recheck(
        &self,
        mut record: FileRecord,
        version: u64,
        attempt_id: &str,
        now: OffsetDateTime,
    ) -> Result<Cas<Recheck>, ValidateError> {
        let settings_only = record.state == FileState::Rejected
            && record
                .reason
                .as_ref()
                .is_some_and(|r| SETTINGS_CODES.contains(&r.code.as_str()));
        let Some(header) = record.header.as_ref().filter(|_| settings_only) else {
            return Ok(Cas::Done(Recheck::Unchanged));
        };
        let verdict = self.config.check_settings(&record.object, header);
        match verdict {
            Err(reason) if Some(&reason) == record.reason.as_ref() => {
                Ok(Cas::Done(Recheck::Unchanged))
            }
            Err(reason) => {
                record.reason = Some(reason.clone());
                record.updated_at = now;
                let written = cas(self.store.put_file(&record, Some(version)).await)?;
                Ok(written.map(|_| Recheck::Rejected(reason)))
            }
            Ok(()) => {
                record.state = FileState::Validated;
                record.reason = None;
                record.claim = Some(claim(attempt_id, now));
                record.updated_at = now;
                let written = cas(self.store.put_file(&record, Some(version)).await)?;
                Ok(written.map(|v| Recheck::Accepted(Box::new(record), v)))
            }
        }
    }

    /// Checks again, under the settings of now, the files of `database` that were rejected only
    /// because of the settings (the target's version, the version policy, where the target
    /// reads them): those the settings now allow are queued, as a new upload would be. Reads no
    /// object (such files keep their header). What the complete-migration function's
    /// `revalidate` action runs after the stack's settings changed.
    ///
    /// # Errors
    /// [`ValidateError`] when the store or the queue failed; running it again continues.
    pub async fn revalidate(
        &self,
        database: &str,
        now: OffsetDateTime,
    ) -> Result<Revalidated, ValidateError> {
        let mut done = Revalidated::default();
        let rejected = self
            .store
            .list_files_in(database, FileState::Rejected, REVALIDATE_LIMIT)
            .await?;
        let attempt = format!("revalidate-{}", now.unix_timestamp_nanos());
        for file in rejected {
            let settings_only = file.record.header.is_some()
                && file
                    .record
                    .reason
                    .as_ref()
                    .is_some_and(|r| SETTINGS_CODES.contains(&r.code.as_str()));
            if !settings_only {
                done.left += 1;
                continue;
            }
            done.rechecked += 1;
            match self.validate(&file.record.object, &attempt, now).await? {
                Outcome::Queued { .. } => done.queued += 1,
                // An arm request is never recorded as a rejected file (it has no header), so
                // `Armed` and `Ignored` do not come back here; were one to, it is not queued.
                Outcome::Rejected { .. }
                | Outcome::Duplicate { .. }
                | Outcome::Armed { .. }
                | Outcome::Ignored { .. } => done.still_rejected += 1,
            }
        }
        Ok(done)
    }

    /// Joins the file to its migration (creating it), then queues the job and marks it Queued.
    async fn register_and_queue(
        &self,
        mut file: FileRecord,
        mut file_version: u64,
        now: OffsetDateTime,
    ) -> Result<Outcome, ValidateError> {
        let Some(header) = file.header.clone() else {
            return Err(ValidateError::Store(StoreError::Corrupt(format!(
                "file record {} is Validated but has no header",
                file.file_id
            ))));
        };
        let Some(database) = file.migration.clone() else {
            return Err(ValidateError::Store(StoreError::Corrupt(format!(
                "file record {} is Validated but names no migration",
                file.file_id
            ))));
        };
        if let Err(reason) = self.join_migration(&database, &header, now).await? {
            file.state = FileState::Rejected;
            file.reason = Some(reason.clone());
            file.claim = None;
            file.updated_at = now;
            self.store.put_file(&file, Some(file_version)).await?;
            return Ok(Outcome::Rejected {
                migration: database.to_string(),
                file_id: file.file_id,
                reason,
            });
        }
        let message = QueueMessage::Restore(Box::new(RestoreJob {
            migration: database.clone(),
            file_id: file.file_id.clone(),
            object: file.object.clone(),
            header,
        }));
        self.queue.send(&message, Duration::ZERO).await?;
        file.state = FileState::Queued;
        file.claim = None;
        file.updated_at = now;
        loop {
            match self.store.put_file(&file, Some(file_version)).await {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => {
                    // Someone moved the record on (e.g. a worker already picked the job up).
                    match self.store.get_file(&database, &file.file_id).await? {
                        Some(current) if current.record.state.validation_done() => break,
                        Some(current) => file_version = current.version,
                        None => {
                            return Err(StoreError::Conflict {
                                expected: Some(file_version),
                            }
                            .into())
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Outcome::Queued {
            migration: database.to_string(),
            file_id: file.file_id,
        })
    }

    /// An uploaded [`ARM_REQUEST_FILE`]: ignored while arming by upload is off; else it arms or
    /// disarms Complete of its folder's migration (created, as a backup would create it, when
    /// the request comes first). A request that cannot be read or is refused is recorded as a
    /// rejected file, with its reason.
    async fn arm_request(
        &self,
        object: &ObjectRef,
        attempt_id: &str,
        now: OffsetDateTime,
    ) -> Result<Outcome, ValidateError> {
        if !self.config.arm_by_upload {
            return Ok(Outcome::Ignored {
                reason: Reason::new(
                    "ArmByUploadDisabled",
                    format!("{ARM_REQUEST_FILE} arms Complete only when the stack enables it (parameter CompleteByUpload); ignored, not a backup"),
                ),
            });
        }
        let key = match MigrationKey::parse(&object.key) {
            Ok(key) => key,
            Err(e) => {
                return self
                    .reject_request(object, None, Reason::new("InvalidKey", e.to_string()), now)
                    .await
            }
        };
        let database = key.database;
        let request = match self.read_arm_request(object).await? {
            Ok(request) => request,
            Err(reason) => {
                return self
                    .reject_request(object, Some(&database), reason, now)
                    .await
            }
        };
        use crate::services::cutover::{self, CutoverError};
        let result = if request.disarm {
            match self.store.get_migration(&database).await? {
                Some(_) => cutover::disarm(&self.store, &database, now)
                    .await
                    .map(|_| None),
                None => Ok(None),
            }
        } else {
            let last_backup = request.last_backup.clone().unwrap_or_default();
            if let Err(reason) = self.ensure_migration(&database, now).await? {
                return self
                    .reject_request(object, Some(&database), reason, now)
                    .await;
            }
            match cutover::arm(
                &self.store,
                &database,
                &last_backup,
                request.require_tail_log,
                &object.key,
                now,
            )
            .await
            {
                // Due at once (its backup is the last one restored): the worker runs it.
                Ok(armed) if cutover::armed_due(&armed) => {
                    let advance = QueueMessage::Advance {
                        migration: database.clone(),
                    };
                    self.queue.send(&advance, Duration::ZERO).await?;
                    Ok(Some(last_backup))
                }
                Ok(_) => Ok(Some(last_backup)),
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(last_backup) => {
                tracing::info!(migration = %database, key = %object.key, attempt = attempt_id,
                    armed = ?last_backup, "Complete armed by upload");
                Ok(Outcome::Armed {
                    migration: database.to_string(),
                    last_backup,
                })
            }
            Err(CutoverError::Store(e)) => Err(e.into()),
            Err(e @ (CutoverError::Target(_) | CutoverError::NotFound(_))) => {
                let reason = Reason::new(e.error_type(), e.to_string());
                self.reject_request(object, Some(&database), reason, now)
                    .await
            }
            Err(CutoverError::Refused { code, message }) => {
                self.reject_request(object, Some(&database), Reason::new(code, message), now)
                    .await
            }
        }
    }

    /// The arm request's JSON, or why it is not one.
    async fn read_arm_request(
        &self,
        object: &ObjectRef,
    ) -> Result<Result<ArmRequest, Reason>, ValidateError> {
        let invalid = |why: String| {
            Reason::new(
                "InvalidArmRequest",
                format!("{ARM_REQUEST_FILE} must hold {{\"last_backup\": \"<file name>\", \"require_tail_log\": false}} or {{\"disarm\": true}}: {why}"),
            )
        };
        if object.size > ARM_REQUEST_MAX {
            return Ok(Err(invalid(format!(
                "it has {} bytes (at most {ARM_REQUEST_MAX})",
                object.size
            ))));
        }
        let body = match self.reader.read(object, ByteRange::Head(object.size)).await {
            Ok(body) => body,
            Err(e @ (ReadError::NotFound(_) | ReadError::Changed(_))) => {
                return Ok(Err(Reason::new("ObjectGone", e.to_string())))
            }
            Err(e) => return Err(e.into()),
        };
        let request: ArmRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return Ok(Err(invalid(e.to_string()))),
        };
        if request.disarm == request.last_backup.is_some() {
            return Ok(Err(invalid("give either last_backup or disarm".to_owned())));
        }
        Ok(Ok(request))
    }

    /// Records a refused arm request as a rejected file (its status shows why).
    async fn reject_request(
        &self,
        object: &ObjectRef,
        database: Option<&DatabaseName>,
        reason: Reason,
        now: OffsetDateTime,
    ) -> Result<Outcome, ValidateError> {
        let file_id = object.file_id();
        let record = FileRecord {
            migration: database.cloned(),
            file_id: file_id.clone(),
            object: object.clone(),
            state: FileState::Rejected,
            reason: Some(reason.clone()),
            header: None,
            claim: None,
            restore_started_at: None,
            restore_finished_at: None,
            created_at: now,
            updated_at: now,
        };
        match self.store.put_file(&record, None).await {
            Ok(_) => Ok(Outcome::Rejected {
                migration: database.map(ToString::to_string).unwrap_or_default(),
                file_id,
                reason,
            }),
            Err(StoreError::Conflict { .. }) => Ok(Outcome::Duplicate {
                file_id,
                state: FileState::Rejected,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The migration of `database`, created (its name claimed) when it does not exist yet.
    async fn ensure_migration(
        &self,
        database: &DatabaseName,
        now: OffsetDateTime,
    ) -> Result<Result<(), Reason>, ValidateError> {
        let holder = self
            .store
            .claim_name(&crate::model::names::fold(database), database)
            .await?;
        if holder != database.as_str() {
            return Ok(Err(Reason::new(
                "SameDatabaseName",
                format!("the folder {database} names the same database as the folder {holder}, which migrates it: upload {ARM_REQUEST_FILE} to the folder {holder}"),
            )));
        }
        if self.store.get_migration(database).await?.is_some() {
            return Ok(Ok(()));
        }
        match self
            .store
            .put_migration(&MigrationRecord::new(database.clone(), now), None)
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(Ok(())),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or updates the migration record for a validated file. `Ok(Err(reason))` when the
    /// migration cannot take the file.
    async fn join_migration(
        &self,
        database: &DatabaseName,
        header: &HeaderSummary,
        now: OffsetDateTime,
    ) -> Result<Result<(), Reason>, ValidateError> {
        let folded = crate::model::names::fold(database);
        let holder = self.store.claim_name(&folded, database).await?;
        if holder != database.as_str() {
            return Ok(Err(Reason::new(
                "SameDatabaseName",
                format!(
                    "the folder {database} names the same database as the folder {holder} for SQL Server (names that differ only in case or accents are one database), and {holder} migrates it: upload to the folder {holder}, or to a folder with another name"
                ),
            )));
        }
        let once = || async move {
            let current = self.store.get_migration(database).await?;
            let (mut record, version) = match current {
                Some(v) => (v.record, Some(v.version)),
                None => (MigrationRecord::new(database.clone(), now), None),
            };
            if let Err(reason) = admit(&record, header) {
                return Ok(Cas::Done(Err(reason)));
            }
            let before = record.clone();
            record.family_guid = Some(header.family_guid);
            record.source_database = Some(header.source_database.clone());
            if header.backup_type == BackupKind::Full && record.full_backup_set_guid.is_none() {
                record.full_backup_set_guid = Some(header.backup_set_guid);
            }
            if version.is_some() && record == before {
                return Ok(Cas::Done(Ok(())));
            }
            record.updated_at = now;
            Ok::<_, ValidateError>(
                cas(self.store.put_migration(&record, version).await)?.map(|_| Ok(())),
            )
        };
        retry(once).await?.ok_or_else(|| ValidateError::Contended {
            file_id: format!("migration {database}"),
        })
    }
}

/// The migration-level preconditions for a file.
fn admit(migration: &MigrationRecord, header: &HeaderSummary) -> Result<(), Reason> {
    if !migration.state.accepts_uploads() {
        let (code, hint) = match migration.state {
            MigrationState::Succeeded => (
                "MigrationCompleted",
                "it is online; upload to a new database folder to migrate again",
            ),
            MigrationState::Cancelled => (
                "MigrationCancelled",
                "it was cancelled; reset it (`bakdrop reset`, or the complete-migration function with action reset) and upload the backups again, or upload to a new database folder",
            ),
            MigrationState::Completing => ("MigrationCompleting", "it is being brought online"),
            _ => (
                "MigrationFailed",
                "it failed; cancel it (which drops the half-restored database), reset it and upload the backups again",
            ),
        };
        return Err(Reason::new(
            code,
            format!(
                "the migration of {} is {} and takes no more backups: {hint}",
                migration.database, migration.state
            ),
        ));
    }
    if let Some(family) = migration.family_guid {
        if family != header.family_guid {
            return Err(Reason::new(
                "DifferentDatabase",
                format!(
                    "this backup is of database {:?} (FamilyGUID {}), but the migration of {} restores a different database (FamilyGUID {family}); upload it to its own database folder",
                    header.source_database, header.family_guid, migration.database
                ),
            ));
        }
    }
    // A second full backup is not refused here: which full starts the chain is the planner's
    // decision (plan::plan), the same for `bakdrop plan`, `bakdrop run` and the restore worker.
    Ok(())
}

fn claim(owner: &str, now: OffsetDateTime) -> Claim {
    Claim {
        owner: owner.to_owned(),
        holder: None,
        until: now + CLAIM_DURATION,
    }
}

/// A read that failed: the object's being gone or replaced is the file's fate (a rejection with a
/// reason), anything else an infrastructure failure to retry.
fn read_failure(e: ReadError) -> Result<Result<HeaderSummary, Reason>, ValidateError> {
    match e {
        ReadError::NotFound(_) => Ok(Err(Reason::new(
            "ObjectGone",
            format!("{e}: it was deleted before it could be validated"),
        ))),
        ReadError::Changed(_) => Ok(Err(Reason::new(
            "ObjectReplaced",
            format!("{e}; the newer upload is validated on its own"),
        ))),
        other => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::fakes::{block_on, MemoryObjects, MemoryQueue, MemoryStore};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak/");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn validator(
        target: &str,
        policy: VersionPolicy,
    ) -> Validator<MemoryObjects, MemoryStore, MemoryQueue> {
        Validator {
            reader: MemoryObjects::default(),
            store: MemoryStore::default(),
            queue: MemoryQueue::default(),
            config: ValidateConfig {
                arm_by_upload: false,
                target: Some(target.parse().unwrap_or_else(|e| panic!("{e}"))),
                policy,
                location: crate::tsql::source::SourceLocation::rds(None),
            },
        }
    }

    fn upload(
        v: &Validator<MemoryObjects, MemoryStore, MemoryQueue>,
        key: &str,
        body: Vec<u8>,
    ) -> ObjectRef {
        let size = body.len() as u64;
        v.reader.put("bucket", key, body);
        ObjectRef {
            bucket: "bucket".into(),
            key: key.into(),
            version_id: None,
            etag: Some(format!("etag-{key}")),
            size,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn reason_code(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::Rejected { reason, .. } => &reason.code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_full_backup_is_recorded_queued_and_its_migration_created() {
        let v = validator("2016", VersionPolicy::Same);
        let object = upload(
            &v,
            "in/Clean/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
        );
        let outcome = block_on(v.validate(&object, "req-1", now())).expect("validated");
        assert!(
            matches!(outcome, Outcome::Queued { ref migration, .. } if migration == "Clean"),
            "{outcome:?}"
        );
        let files = v.store.all_files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].state, FileState::Queued);
        let header = files[0].header.as_ref().expect("header kept");
        assert_eq!(header.backup_type, BackupKind::Full);
        assert_eq!(header.first_lsn.to_string(), "39000000048800071");
        let migration = block_on(v.store.get_migration("Clean"))
            .ok()
            .flatten()
            .expect("migration");
        assert_eq!(migration.record.state, MigrationState::AwaitingFull);
        assert_eq!(
            migration.record.full_backup_set_guid,
            Some(header.backup_set_guid)
        );
        let messages = v.queue.messages();
        assert_eq!(messages.len(), 1);
        let QueueMessage::Restore(job) = &messages[0] else {
            panic!("expected a restore job, got {:?}", messages[0]);
        };
        assert_eq!(job.header.last_lsn.to_string(), "39000000051800001");
    }

    #[test]
    fn validation_reads_only_the_head_and_the_tail() {
        let v = validator("2016", VersionPolicy::Same);
        let body = fixture("sql2016_full_RestoreTimeClean.bak");
        let size = body.len() as u64;
        let object = upload(&v, "Clean/full.bak", body);
        block_on(v.validate(&object, "req-1", now())).expect("validated");
        assert_eq!(v.reader.reads(), 2);
        assert_eq!(
            v.reader.bytes_read(),
            (FIRST_HEAD + backup::TAIL_LIMIT) as u64
        );
        assert!(v.reader.bytes_read() < size);
    }

    #[test]
    fn a_compressed_backup_is_read_from_the_first_head_and_the_tail_alone() {
        for (fixture_name, version) in [
            ("sql2014_compressed_full_1set_SharePoint_Config.bak", "2014"),
            (
                "sql2014_compressed_full_2sets_SharePoint_Config.bak",
                "2014",
            ),
            ("sql2022_compressed_full_Library.bak", "2022"),
        ] {
            let v = validator(version, VersionPolicy::Same);
            let body = fixture(fixture_name);
            let object = upload(&v, "Farm/full.bak", body);
            let read = block_on(read_backup(&v.reader, &object)).expect("read");
            assert!(read.parsed.is_ok(), "{fixture_name}: {:?}", read.parsed);
            assert_eq!(read.reads, 2, "{fixture_name}");
            assert_eq!(
                read.bytes_read,
                (FIRST_HEAD + backup::TAIL_LIMIT) as u64,
                "{fixture_name}"
            );
            assert!(read.bytes_read <= 256 << 10);
        }
    }

    #[test]
    fn every_fixture_reads_from_a_short_first_head_as_from_a_whole_one() {
        let dir = std::fs::read_dir(FIXTURES).expect("fixtures");
        let mut checked = 0;
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".bak") || name.ends_with(".trn")) {
                continue;
            }
            let body = fixture(&name);
            let size = body.len() as u64;
            let head = &body[..body.len().min(backup::HEAD_LIMIT)];
            let tail = &body[body.len().saturating_sub(backup::TAIL_LIMIT)..];
            let expected = summary::summarize(head, Some(tail), size);
            let v = validator("2022", VersionPolicy::NotNewer);
            let object = upload(&v, &format!("Db/{name}"), body);
            let got = block_on(v.read_header(&object)).expect("read");
            // Every fixture is at most a 2022 backup, fine for a 2022 target with NotNewer;
            // what matters is the same header or the same reason. Except where reading the
            // whole file reads its end worse: the 2022 compressed fixture (639 KB) read whole
            // has its end found in the whole decoded stream, which does not find its set count;
            // read as validation reads it, from its last 64 KiB, it does.
            let whole_reads_worse = name == "sql2022_compressed_full_Library.bak"
                && got.is_ok()
                && matches!(&expected, Err(r) if r.code == "BackupSetCountUnknown");
            if !whole_reads_worse {
                assert_eq!(got, expected, "{name}");
            }
            assert!(v.reader.reads() <= 3, "{name}: {} reads", v.reader.reads());
            checked += 1;
        }
        assert_eq!(checked, 23);
    }

    #[test]
    fn the_same_event_three_times_records_and_queues_once() {
        let v = validator("2016", VersionPolicy::Same);
        let object = upload(
            &v,
            "Clean/log1.trn",
            fixture("sql2016_log_RestoreTimeClean_1.trn"),
        );
        let first = block_on(v.validate(&object, "req-1", now())).expect("first");
        assert!(matches!(first, Outcome::Queued { .. }));
        for attempt in ["req-2", "req-3"] {
            let again = block_on(v.validate(&object, attempt, now())).expect("again");
            assert_eq!(
                again,
                Outcome::Duplicate {
                    file_id: object.file_id(),
                    state: FileState::Queued
                }
            );
        }
        assert_eq!(v.store.all_files().len(), 1);
        assert_eq!(v.queue.messages().len(), 1);
    }

    #[test]
    fn a_queue_outage_fails_the_event_and_the_retry_queues_exactly_once() {
        let v = validator("2016", VersionPolicy::Same);
        let object = upload(
            &v,
            "Clean/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
        );
        v.queue.fail_next(1);
        let err = block_on(v.validate(&object, "req-1", now())).expect_err("queue down");
        assert!(err.is_transient(), "{err}");
        assert_eq!(v.store.all_files()[0].state, FileState::Validated);
        // Another delivery while the first attempt's claim runs is told to come back later.
        let busy = block_on(v.validate(&object, "req-2", now())).expect_err("claimed");
        assert!(matches!(busy, ValidateError::InProgress { .. }));
        // Lambda's own retry keeps the request id and takes over at once.
        let retried = block_on(v.validate(&object, "req-1", now())).expect("retried");
        assert!(matches!(retried, Outcome::Queued { .. }));
        assert_eq!(v.queue.messages().len(), 1);
        // A crashed attempt's claim runs out; a later delivery finds the file queued.
        let later = block_on(v.validate(&object, "req-9", now() + CLAIM_DURATION)).expect("later");
        assert!(matches!(later, Outcome::Duplicate { .. }));
    }

    #[test]
    fn a_store_outage_fails_the_event_without_recording_anything() {
        let v = validator("2016", VersionPolicy::Same);
        let object = upload(
            &v,
            "Clean/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
        );
        v.store.fail_next_puts(1);
        let err = block_on(v.validate(&object, "req-1", now())).expect_err("store down");
        assert!(err.is_transient());
        assert!(v.store.all_files().is_empty());
        assert!(v.queue.messages().is_empty());
    }

    #[test]
    fn an_object_store_outage_is_transient_and_records_nothing() {
        let v = validator("2016", VersionPolicy::Same);
        let object = upload(
            &v,
            "Clean/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
        );
        v.reader.fail_next(1);
        let err = block_on(v.validate(&object, "req-1", now())).expect_err("s3 down");
        assert!(err.is_transient());
        assert!(v.store.all_files().is_empty());
    }

    #[test]
    fn a_file_with_two_backup_sets_is_rejected() {
        let v = validator("2014", VersionPolicy::Same);
        let object = upload(
            &v,
            "SP/two.bak",
            fixture("sql2014_compressed_full_2sets_SharePoint_Config.bak"),
        );
        let outcome = block_on(v.validate(&object, "r", now())).expect("recorded");
        assert_eq!(reason_code(&outcome), "MoreThanOneBackupSet");
        assert!(v.queue.messages().is_empty());
        assert_eq!(v.store.all_files()[0].state, FileState::Rejected);
    }

    #[test]
    fn a_backup_of_another_version_is_rejected_under_the_same_policy_and_taken_under_not_newer() {
        let same = validator("2016", VersionPolicy::Same);
        let object = upload(
            &same,
            "Single/full.bak",
            fixture("sql2008r2_full_singlerestore.bak"),
        );
        let outcome = block_on(same.validate(&object, "r", now())).expect("recorded");
        assert_eq!(reason_code(&outcome), "VersionNotSame");
        let upgrade = validator("2016", VersionPolicy::NotNewer);
        let object = upload(
            &upgrade,
            "Single/full.bak",
            fixture("sql2008r2_full_singlerestore.bak"),
        );
        let outcome = block_on(upgrade.validate(&object, "r", now())).expect("queued");
        assert!(matches!(outcome, Outcome::Queued { .. }), "{outcome:?}");
    }

    #[test]
    fn a_backup_newer_than_the_target_is_rejected() {
        let v = validator("2012", VersionPolicy::NotNewer);
        let object = upload(
            &v,
            "Clean/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
        );
        let outcome = block_on(v.validate(&object, "r", now())).expect("recorded");
        assert_eq!(reason_code(&outcome), "BackupNewerThanTarget");
    }

    #[test]
    fn keys_outside_the_convention_and_reserved_names_are_rejected() {
        let v = validator("2016", VersionPolicy::Same);
        for key in ["full.bak", "x/master/full.bak", "x/rdsadmin/full.bak"] {
            let object = upload(&v, key, fixture("sql2016_log_RestoreTimeClean_1.trn"));
            let outcome = block_on(v.validate(&object, "r", now())).expect("recorded");
            assert_eq!(reason_code(&outcome), "InvalidKey", "{key}");
        }
        assert_eq!(
            v.reader.reads(),
            0,
            "an invalid key is rejected before reading"
        );
    }

    #[test]
    fn an_ola_hallengren_tree_migrates_the_database_folder_above_full_diff_and_log() {
        let v = validator("2016", VersionPolicy::Same);
        for (key, file) in [
            (
                "SQL01$PROD/RestoreTimeClean/FULL/full.bak",
                "sql2016_full_RestoreTimeClean.bak",
            ),
            (
                "SQL01$PROD/RestoreTimeClean/DIFF/diff.bak",
                "sql2016_diff_RestoreTimeClean2.bak",
            ),
            (
                "SQL01$PROD/RestoreTimeClean/LOG/log1.trn",
                "sql2016_log_RestoreTimeClean_1.trn",
            ),
        ] {
            let object = upload(&v, key, fixture(file));
            let outcome = block_on(v.validate(&object, key, now())).expect("validated");
            assert!(
                matches!(outcome, Outcome::Queued { ref migration, .. } if migration == "RestoreTimeClean"),
                "{key}: {outcome:?}"
            );
        }
        for kind in ["FULL", "DIFF", "LOG"] {
            assert!(
                block_on(v.store.get_migration(kind))
                    .ok()
                    .flatten()
                    .is_none(),
                "no migration named {kind}"
            );
        }
        let stray = upload(
            &v,
            "LOG/log2.trn",
            fixture("sql2016_log_RestoreTimeClean_2.trn"),
        );
        let outcome = block_on(v.validate(&stray, "r", now())).expect("recorded");
        assert_eq!(reason_code(&outcome), "InvalidKey");
    }

    #[test]
    fn a_file_rejected_for_the_settings_is_taken_when_validated_again_under_other_settings() {
        let mut v = validator("2012", VersionPolicy::NotNewer);
        let object = upload(
            &v,
            "Clean/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
        );
        let outcome = block_on(v.validate(&object, "r1", now())).expect("recorded");
        assert_eq!(reason_code(&outcome), "BackupNewerThanTarget");
        let kept = &v.store.all_files()[0];
        assert!(
            kept.header.is_some(),
            "a settings rejection keeps the header"
        );
        // The same event again, same settings: nothing changes.
        let again = block_on(v.validate(&object, "r2", now())).expect("again");
        assert!(
            matches!(
                again,
                Outcome::Duplicate {
                    state: FileState::Rejected,
                    ..
                }
            ),
            "{again:?}"
        );
        // Other settings: a wrong one gives the new reason, the right one queues the file.
        v.config.policy = VersionPolicy::Same;
        v.config.target = Some("2019".parse().unwrap_or_else(|e| panic!("{e}")));
        let other = block_on(v.validate(&object, "r3", now())).expect("other");
        assert_eq!(reason_code(&other), "VersionNotSame");
        v.config.target = Some("2016".parse().unwrap_or_else(|e| panic!("{e}")));
        let reads = v.reader.reads();
        let right = block_on(v.validate(&object, "r4", now())).expect("right");
        assert!(matches!(right, Outcome::Queued { .. }), "{right:?}");
        assert_eq!(
            v.reader.reads(),
            reads,
            "the kept header is checked, the object not read"
        );
        assert_eq!(v.store.all_files()[0].state, FileState::Queued);
        assert_eq!(v.queue.messages().len(), 1);
        // A file rejected for what it is stays rejected.
        let garbage = upload(&v, "Clean/notes.bak", b"not a backup".repeat(50));
        block_on(v.validate(&garbage, "r5", now())).expect("recorded");
        v.config.target = None;
        let still = block_on(v.validate(&garbage, "r6", now())).expect("again");
        assert!(
            matches!(
                still,
                Outcome::Duplicate {
                    state: FileState::Rejected,
                    ..
                }
            ),
            "{still:?}"
        );
    }

    #[test]
    fn without_a_target_version_folders_of_different_versions_are_both_taken() {
        let mut v = validator("2016", VersionPolicy::Same);
        v.config.target = None;
        for (key, file) in [
            ("Clean/full.bak", "sql2016_full_RestoreTimeClean.bak"),
            ("School/full.bak", "sql2019_full_School.bak"),
            ("Library/full.bak", "sql2022_compressed_full_Library.bak"),
        ] {
            let object = upload(&v, key, fixture(file));
            let outcome = block_on(v.validate(&object, key, now())).expect("validated");
            assert!(
                matches!(outcome, Outcome::Queued { .. }),
                "{key}: {outcome:?}"
            );
        }
    }

    #[test]
    fn revalidate_queues_the_files_of_a_migration_rejected_only_for_the_settings() {
        let mut v = validator("2014", VersionPolicy::Same);
        for (key, body) in [
            (
                "Clean/full.bak",
                fixture("sql2016_full_RestoreTimeClean.bak"),
            ),
            (
                "Clean/log1.trn",
                fixture("sql2016_log_RestoreTimeClean_1.trn"),
            ),
            ("Clean/notes.bak", b"not a backup".repeat(50)),
        ] {
            let object = upload(&v, key, body);
            block_on(v.validate(&object, key, now())).expect("recorded");
        }
        assert!(v
            .store
            .all_files()
            .iter()
            .all(|f| f.state == FileState::Rejected));
        assert!(block_on(v.store.get_migration("Clean"))
            .ok()
            .flatten()
            .is_none());
        v.config.target = Some("2016".parse().unwrap_or_else(|e| panic!("{e}")));
        let done = block_on(v.revalidate("Clean", now())).expect("revalidated");
        assert_eq!(
            done,
            Revalidated {
                rechecked: 2,
                queued: 2,
                still_rejected: 0,
                left: 1
            }
        );
        assert_eq!(v.queue.messages().len(), 2);
        let again = block_on(v.revalidate("Clean", now())).expect("again");
        assert_eq!(again.rechecked, 0, "{again:?}");
    }

    #[test]
    fn a_folder_whose_files_were_all_rejected_can_be_reset_and_not_cancelled() {
        let v = validator("2014", VersionPolicy::Same);
        let object = upload(
            &v,
            "Clean/full.bak",
            fixture("sql2016_full_RestoreTimeClean.bak"),
        );
        block_on(v.validate(&object, "r", now())).expect("recorded");
        let target = crate::ports::fakes::MemoryTarget::new("12.0.2000.8");
        let cancel = block_on(crate::services::cutover::cancel(
            &v.store,
            &target,
            "Clean",
            now(),
        ));
        assert!(
            matches!(
                cancel,
                Err(crate::services::cutover::CutoverError::Refused {
                    code: "NothingAccepted",
                    ..
                })
            ),
            "{cancel:?}"
        );
        let reset = block_on(crate::services::cutover::reset(&v.store, "Clean", now()));
        assert_eq!(reset.ok(), Some(MigrationState::AwaitingFull));
        assert!(
            v.store.all_files().is_empty(),
            "the rejected files are forgotten"
        );
        // Validated again afresh (here under the same settings: rejected again).
        let outcome = block_on(v.validate(&object, "r2", now())).expect("recorded");
        assert_eq!(reason_code(&outcome), "BackupNewerThanTarget");
        let unknown = block_on(crate::services::cutover::reset(&v.store, "Nobody", now()));
        assert!(
            matches!(
                unknown,
                Err(crate::services::cutover::CutoverError::NotFound(_))
            ),
            "{unknown:?}"
        );
    }

    #[test]
    fn garbage_is_rejected_as_unreadable() {
        let v = validator("2016", VersionPolicy::Same);
        let object = upload(&v, "Clean/notes.bak", b"this is not a backup".repeat(100));
        let outcome = block_on(v.validate(&object, "r", now())).expect("recorded");
        assert_eq!(reason_code(&outcome), "NotABackup");
    }

    #[test]
    fn a_full_of_another_database_in_the_folder_is_refused() {
        let v = validator("2008R2", VersionPolicy::Same);
        let full = upload(
            &v,
            "DiffTest/full.bak",
            fixture("sql2008r2_full_difftest.bak"),
        );
        assert!(matches!(
            block_on(v.validate(&full, "r1", now())),
            Ok(Outcome::Queued { .. })
        ));
        let other = upload(
            &v,
            "DiffTest/other-full.bak",
            fixture("sql2008r2_full_singlerestore.bak"),
        );
        let outcome = block_on(v.validate(&other, "r2", now())).expect("recorded");
        assert_eq!(reason_code(&outcome), "DifferentDatabase");
    }

    #[test]
    fn admit_takes_a_second_full_of_the_same_database_the_planner_decides() {
        let mut migration =
            MigrationRecord::new(crate::DatabaseName::parse("Clean").expect("name"), now());
        let header = sample_header(BackupKind::Full);
        migration.family_guid = Some(header.family_guid);
        migration.full_backup_set_guid = Some(uuid::Uuid::from_u128(1));
        assert_eq!(admit(&migration, &header), Ok(()));
        migration.state = MigrationState::Succeeded;
        assert_eq!(
            admit(&migration, &header).map_err(|r| r.code),
            Err("MigrationCompleted".into())
        );
        migration.state = MigrationState::Cancelled;
        assert_eq!(
            admit(&migration, &header).map_err(|r| r.code),
            Err("MigrationCancelled".into())
        );
    }

    #[test]
    fn striped_families_of_one_full_are_both_accepted() {
        let v = validator("2008R2", VersionPolicy::Same);
        let one = upload(
            &v,
            "Stripe/1.bak",
            fixture("sql2008r2_full_stripe1of2_RestoreTimeStripe.bak"),
        );
        let two = upload(
            &v,
            "Stripe/2.bak",
            fixture("sql2008r2_full_stripe2of2_RestoreTimeStripe1.bak"),
        );
        for (o, r) in [(one, "a"), (two, "b")] {
            let outcome = block_on(v.validate(&o, r, now())).expect("ok");
            assert!(matches!(outcome, Outcome::Queued { .. }), "{outcome:?}");
        }
        let families: Vec<u32> = v
            .queue
            .messages()
            .iter()
            .filter_map(|m| match m {
                QueueMessage::Restore(j) => Some(j.header.family_sequence),
                _ => None,
            })
            .collect();
        assert_eq!(families, vec![1, 2]);
    }

    fn sample_header(kind: BackupKind) -> HeaderSummary {
        HeaderSummary {
            files: Vec::new(),
            backup_type: kind,
            copy_only: None,
            source_database: "Clean".into(),
            server_name: "S".into(),
            software_version: "13.0.5081".into(),
            database_version: 852,
            compressed: false,
            has_checksums: false,
            tail_log: Some(false),
            first_lsn: crate::Lsn::from_parts(1, 0, 1),
            last_lsn: crate::Lsn::from_parts(2, 0, 1),
            checkpoint_lsn: crate::Lsn::from_parts(1, 0, 1),
            database_backup_lsn: crate::Lsn::ZERO,
            differential_base_lsn: None,
            differential_base_guid: None,
            backup_set_guid: uuid::Uuid::from_u128(7),
            family_guid: uuid::Uuid::from_u128(8),
            recovery_fork_id: uuid::Uuid::from_u128(8),
            family_count: 1,
            family_sequence: 1,
            backup_start_date: None,
            backup_finish_date: None,
            backup_size: None,
        }
    }

    #[test]
    fn an_arm_request_is_ignored_while_arming_by_upload_is_off() {
        let v = validator("2016", VersionPolicy::Same);
        let object = upload(
            &v,
            "in/Clean/bakdrop-complete.json",
            br#"{"last_backup": "log.trn"}"#.to_vec(),
        );
        let outcome = block_on(v.validate(&object, "a", now())).expect("handled");
        assert!(
            matches!(&outcome, Outcome::Ignored { reason } if reason.code == "ArmByUploadDisabled"),
            "{outcome:?}"
        );
        // Never mistaken for a backup, never recorded, nothing queued.
        assert!(block_on(v.store.list_files("Clean"))
            .unwrap_or_default()
            .is_empty());
        assert!(block_on(v.store.get_migration("Clean"))
            .ok()
            .flatten()
            .is_none());
        assert!(v.queue.drain_sent().is_empty());
    }

    #[test]
    fn an_uploaded_arm_request_arms_and_disarms_when_enabled_and_a_bad_one_is_rejected() {
        let mut v = validator("2016", VersionPolicy::Same);
        v.config.arm_by_upload = true;
        let object = upload(
            &v,
            "in/Clean/Bakdrop-Complete.JSON",
            br#"{"last_backup": "log9.trn", "require_tail_log": true}"#.to_vec(),
        );
        let outcome = block_on(v.validate(&object, "a", now())).expect("handled");
        assert_eq!(
            outcome,
            Outcome::Armed {
                migration: "Clean".into(),
                last_backup: Some("log9.trn".into())
            }
        );
        let armed = block_on(v.store.get_migration("Clean"))
            .ok()
            .flatten()
            .and_then(|m| m.record.armed)
            .expect("armed");
        assert_eq!(
            (armed.last_backup.as_str(), armed.require_tail_log),
            ("log9.trn", true)
        );
        assert_eq!(armed.by, "in/Clean/Bakdrop-Complete.JSON");
        let disarm = upload(
            &v,
            "in/Clean/bakdrop-complete.json",
            br#"{"disarm": true}"#.to_vec(),
        );
        let outcome = block_on(v.validate(&disarm, "b", now())).expect("handled");
        assert!(
            matches!(
                outcome,
                Outcome::Armed {
                    last_backup: None,
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert!(block_on(v.store.get_migration("Clean"))
            .ok()
            .flatten()
            .is_some_and(|m| m.record.armed.is_none()));
        for body in [
            &br#"{"last_backup": "log9.trn", "when": "now"}"#[..],
            b"not json",
            br#"{"require_tail_log": true}"#,
        ] {
            let bad = upload(&v, "in/Other/bakdrop-complete.json", body.to_vec());
            let outcome = block_on(v.validate(&bad, "c", now())).expect("handled");
            assert_eq!(reason_code(&outcome), "InvalidArmRequest", "{outcome:?}");
            // Each body is another object version in real S3; here: forget the record.
            for f in block_on(v.store.list_files("Other")).unwrap_or_default() {
                let _ = block_on(v.store.delete_file("Other", &f.record.file_id, f.version));
            }
        }
    }
}
