//! Translates an S3 event into validations: every record, keys URL-decoded, test events skipped,
//! anything but ObjectCreated ignored. A transient failure of any record fails the invocation so
//! that Lambda retries the event (and, after its retries, hands it to the on-failure
//! destination); records already handled are recognised as duplicates on the retry.

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use bakdrop_core::model::object::{decode_event_key, is_staging_key, ObjectRef};
use bakdrop_core::ports::{JobQueue, ObjectReader, StatusStore};
use bakdrop_core::validate::{Outcome, ValidateError, Validator};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

/// What the invocation did, per record (the function's response, also logged).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub queued: usize,
    pub rejected: usize,
    pub duplicates: usize,
    pub ignored: usize,
    pub results: Vec<RecordResult>,
}

/// The outcome for one record.
#[derive(Debug, Serialize, PartialEq)]
pub struct RecordResult {
    pub key: String,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why the invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("the event is not an S3 event: {0}")]
    NotAnS3Event(#[source] serde_json::Error),
    #[error("validating s3://{bucket}/{key} failed; the event will be retried")]
    Validate {
        bucket: String,
        key: String,
        #[source]
        source: ValidateError,
    },
}

impl HandlerError {
    /// True when a retry of the event may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            HandlerError::NotAnS3Event(_) => false,
            HandlerError::Validate { source, .. } => source.is_transient(),
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            HandlerError::NotAnS3Event(_) => "NotAnS3Event",
            HandlerError::Validate { .. } => "ValidationUnavailable",
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// Handles one invocation payload (an S3 event, or S3's `s3:TestEvent`).
///
/// # Errors
/// [`HandlerError`] when the payload is not an S3 event or a record could not be validated for
/// an infrastructure reason.
pub async fn handle<R: ObjectReader, S: StatusStore, Q: JobQueue>(
    validator: &Validator<R, S, Q>,
    payload: Value,
    request_id: &str,
    now: OffsetDateTime,
) -> Result<Summary, HandlerError> {
    let mut summary = Summary::default();
    if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        tracing::info!("s3:TestEvent skipped");
        return Ok(summary);
    }
    let event: S3Event = serde_json::from_value(payload).map_err(HandlerError::NotAnS3Event)?;
    for record in &event.records {
        let Some(object) = object_of(record) else {
            summary.ignored += 1;
            summary.results.push(RecordResult {
                key: record.s3.object.key.clone().unwrap_or_default(),
                outcome: "ignored",
                migration: None,
                reason: Some(format!(
                    "event {} is not an ObjectCreated event of an uploaded object",
                    record.event_name.as_deref().unwrap_or("(unnamed)")
                )),
            });
            continue;
        };
        let outcome = validator
            .validate(&object, request_id, now)
            .await
            .map_err(|source| {
                tracing::error!(
                    bucket = %object.bucket, key = %object.key,
                    error.message = %source, error.cause_chain = ?source,
                    "validation failed; the event will be retried"
                );
                HandlerError::Validate {
                    bucket: object.bucket.clone(),
                    key: object.key.clone(),
                    source,
                }
            })?;
        let result = record_result(&mut summary, object.key, outcome);
        summary.results.push(result);
    }
    Ok(summary)
}

/// Counts `outcome` in `summary` and says it as the record's result.
fn record_result(summary: &mut Summary, key: String, outcome: Outcome) -> RecordResult {
    match outcome {
        Outcome::Queued { migration, .. } => {
            summary.queued += 1;
            tracing::info!(%key, %migration, "validated and queued");
            RecordResult {
                key,
                outcome: "queued",
                migration: Some(migration),
                reason: None,
            }
        }
        Outcome::Rejected {
            migration, reason, ..
        } => {
            summary.rejected += 1;
            tracing::warn!(%key, %migration, reason.code = %reason.code, reason.message = %reason.message, "rejected");
            RecordResult {
                key,
                outcome: "rejected",
                migration: Some(migration).filter(|m| !m.is_empty()),
                reason: Some(format!("{}: {}", reason.code, reason.message)),
            }
        }
        Outcome::Armed {
            migration,
            last_backup,
        } => {
            tracing::info!(%key, %migration, armed = ?last_backup, "arm request applied");
            RecordResult {
                key,
                outcome: if last_backup.is_some() {
                    "armed"
                } else {
                    "disarmed"
                },
                migration: Some(migration),
                reason: last_backup.map(|b| format!("Complete runs once {b} is restored")),
            }
        }
        Outcome::Ignored { reason } => {
            summary.ignored += 1;
            tracing::info!(%key, reason.code = %reason.code, "ignored");
            RecordResult {
                key,
                outcome: "ignored",
                migration: None,
                reason: Some(format!("{}: {}", reason.code, reason.message)),
            }
        }
        Outcome::Duplicate { state, .. } => {
            summary.duplicates += 1;
            tracing::info!(%key, %state, "duplicate delivery ignored");
            RecordResult {
                key,
                outcome: "duplicate",
                migration: None,
                reason: Some(format!("already {state}")),
            }
        }
    }
}

/// The object an ObjectCreated record names, key URL-decoded; `None` for other events and for
/// bakdrop's own staging copies.
fn object_of(record: &S3EventRecord) -> Option<ObjectRef> {
    let name = record.event_name.as_deref()?;
    if !(name.starts_with("ObjectCreated:") || name.starts_with("s3:ObjectCreated:")) {
        return None;
    }
    let bucket = record.s3.bucket.name.clone()?;
    let key = decode_event_key(record.s3.object.key.as_deref()?);
    if is_staging_key(&key) {
        return None;
    }
    let size = u64::try_from(record.s3.object.size.unwrap_or(0)).unwrap_or(0);
    Some(ObjectRef {
        bucket,
        key,
        version_id: record
            .s3
            .object
            .version_id
            .clone()
            .filter(|v| !v.is_empty() && v != "null"),
        etag: record
            .s3
            .object
            .e_tag
            .as_deref()
            .map(|e| e.trim_matches('"').to_owned())
            .filter(|e| !e.is_empty()),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_core::model::status::FileState;
    use bakdrop_core::model::version::VersionPolicy;
    use bakdrop_core::ports::fakes::{MemoryObjects, MemoryQueue, MemoryStore};
    use bakdrop_core::validate::ValidateConfig;

    const PUT: &str = include_str!("../../../infra/events/validate-upload-s3-put.json");
    const TEST_EVENT: &str =
        include_str!("../../../infra/events/validate-upload-s3-test-event.json");
    const DELETE: &str = include_str!("../../../infra/events/validate-upload-s3-delete.json");
    const FULL: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/bak/sql2016_full_RestoreTimeClean.bak"
    );

    fn validator() -> Validator<MemoryObjects, MemoryStore, MemoryQueue> {
        Validator {
            reader: MemoryObjects::default(),
            store: MemoryStore::default(),
            queue: MemoryQueue::default(),
            config: ValidateConfig {
                arm_by_upload: false,
                target: Some("2016".parse().unwrap_or_else(|e| panic!("{e}"))),
                policy: VersionPolicy::Same,
                location: bakdrop_core::tsql::source::SourceLocation::rds(None),
            },
        }
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A validator whose bucket holds the object of the PUT event fixture.
    fn validator_with_the_put_events_object() -> Validator<MemoryObjects, MemoryStore, MemoryQueue>
    {
        let v = validator();
        let body = std::fs::read(FULL).unwrap_or_else(|e| panic!("{e}"));
        v.reader.put(
            "bakdrop-uploads-example",
            "migrations/RestoreTimeClean/sql2016_full_RestoreTimeClean.bak",
            body,
        );
        v
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000)
    }

    #[tokio::test]
    async fn the_put_event_fixture_is_validated_and_queued() {
        let v = validator_with_the_put_events_object();
        let summary = handle(&v, json(PUT), "req-1", now())
            .await
            .expect("handled");
        assert_eq!((summary.queued, summary.rejected), (1, 0), "{summary:?}");
        assert_eq!(
            summary.results[0].migration.as_deref(),
            Some("RestoreTimeClean")
        );
        assert_eq!(v.queue.messages().len(), 1);
    }

    #[tokio::test]
    async fn the_s3_test_event_is_skipped() {
        let v = validator();
        let summary = handle(&v, json(TEST_EVENT), "req-1", now())
            .await
            .expect("handled");
        assert_eq!(summary, Summary::default());
    }

    #[tokio::test]
    async fn events_other_than_object_created_are_ignored() {
        let v = validator();
        let summary = handle(&v, json(DELETE), "req-1", now())
            .await
            .expect("handled");
        assert_eq!(summary.ignored, 1);
        assert_eq!(v.reader.reads(), 0);
        assert!(v.store.all_files().is_empty());
    }

    #[tokio::test]
    async fn bakdrops_own_staging_copies_are_ignored() {
        let v = validator();
        let mut event = json(PUT);
        event["Records"][0]["s3"]["object"]["key"] =
            "_bakdrop/stripes/bakdrop_Sales_full_1/001-a.bak".into();
        let summary = handle(&v, event, "req-1", now()).await.expect("handled");
        assert_eq!(summary.ignored, 1, "{summary:?}");
        assert_eq!(v.reader.reads(), 0);
        assert!(v.store.all_files().is_empty());
    }

    #[tokio::test]
    async fn every_record_is_handled_and_keys_are_url_decoded() {
        let v = validator();
        let body = std::fs::read(FULL).unwrap_or_else(|e| panic!("{e}"));
        v.reader
            .put("bakdrop-uploads-example", "in/Clean DB/full+1.bak", body);
        v.reader.put(
            "bakdrop-uploads-example",
            "in/Other/notes.bak",
            b"not a backup".to_vec(),
        );
        let mut event = json(PUT);
        let record = event["Records"][0].clone();
        let mut second = record.clone();
        event["Records"][0]["s3"]["object"]["key"] = "in/Clean+DB/full%2B1.bak".into();
        second["s3"]["object"]["key"] = "in/Other/notes.bak".into();
        second["s3"]["object"]["size"] = 12.into();
        event["Records"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("records"))
            .push(second);
        let summary = handle(&v, event, "req-1", now()).await.expect("handled");
        assert_eq!((summary.queued, summary.rejected), (1, 1), "{summary:?}");
        assert_eq!(summary.results[0].key, "in/Clean DB/full+1.bak");
        assert_eq!(summary.results[0].migration.as_deref(), Some("Clean DB"));
        let rejected = v
            .store
            .all_files()
            .into_iter()
            .find(|f| f.state == FileState::Rejected)
            .expect("rejected file recorded");
        assert_eq!(
            rejected.reason.map(|r| r.code).as_deref(),
            Some("NotABackup")
        );
    }

    #[tokio::test]
    async fn an_unavailable_queue_fails_the_invocation_for_a_retry() {
        let v = validator_with_the_put_events_object();
        v.queue.fail_next(1);
        let err = handle(&v, json(PUT), "req-1", now())
            .await
            .expect_err("fails");
        assert!(err.is_transient());
        assert_eq!(Diagnostic::from(err).error_type, "ValidationUnavailable");
        let retried = handle(&v, json(PUT), "req-1", now())
            .await
            .expect("retried");
        assert_eq!(retried.queued, 1);
        assert_eq!(v.queue.messages().len(), 1);
    }

    #[tokio::test]
    async fn a_payload_that_is_no_s3_event_is_a_stable_error() {
        let v = validator();
        let err = handle(&v, json(r#"{"hello": 1}"#), "r", now())
            .await
            .expect_err("refused");
        assert!(!err.is_transient());
        assert_eq!(Diagnostic::from(err).error_type, "NotAnS3Event");
    }
}
