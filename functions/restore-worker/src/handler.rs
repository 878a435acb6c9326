//! Translates an SQS batch into worker calls: each message parsed on its own, failures reported
//! back (partial batch response) so that SQS redelivers just those. A transient failure will
//! succeed on a later delivery; a malformed message or one the worker cannot handle will not, and
//! is kept rather than dropped: after the queue's maxReceiveCount SQS moves it to the dead-letter
//! queue, where an operator finds it (logged with its id, the error and a preview of its body).

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::ports::{JobQueue, ObjectReader, RestoreTarget, StatusStore};
use bakdrop_core::restore::{Attempt, Worker};
use time::OffsetDateTime;

/// What an invocation may spend: it takes no new message after `stop_taking_at` (the Lambda
/// deadline less [`RESERVE`]), and a message delivered `max_receives` times that fails again is
/// going to the dead-letter queue (the queue's `maxReceiveCount`): its migration says so.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub stop_taking_at: Option<Instant>,
    pub max_receives: Option<u32>,
}

/// Time kept back from the Lambda deadline: a message is not started with less left (a message
/// takes a few statements, each bounded by the target's connect and statement timeouts).
pub const RESERVE: Duration = Duration::from_secs(30);

impl Limits {
    /// The limits of an invocation whose deadline is `deadline_ms` (milliseconds since the Unix
    /// epoch, as Lambda's context gives it).
    pub fn for_deadline(deadline_ms: u64, max_receives: Option<u32>) -> Limits {
        let deadline = std::time::UNIX_EPOCH + Duration::from_millis(deadline_ms);
        let left = deadline
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Limits {
            stop_taking_at: Some(Instant::now() + left.saturating_sub(RESERVE)),
            max_receives,
        }
    }
}

/// Handles one batch in the invocation `invocation` (Lambda's request id), without limits.
pub async fn handle<S: StatusStore, Q: JobQueue, T: RestoreTarget, O: ObjectReader>(
    worker: &Worker<S, Q, T, O>,
    event: SqsEvent,
    invocation: &str,
    now: OffsetDateTime,
) -> SqsBatchResponse {
    handle_within(worker, event, invocation, now, Limits::default()).await
}

/// Handles one batch within `limits`. Never fails as a whole: every message is answered on its
/// own; messages not started before the deadline are reported as failures (SQS redelivers them).
pub async fn handle_within<S: StatusStore, Q: JobQueue, T: RestoreTarget, O: ObjectReader>(
    worker: &Worker<S, Q, T, O>,
    event: SqsEvent,
    invocation: &str,
    now: OffsetDateTime,
    limits: Limits,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (index, record) in event.records.into_iter().enumerate() {
        let id = record
            .message_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("missing-message-id-{index}"));
        if limits.stop_taking_at.is_some_and(|t| Instant::now() >= t) {
            tracing::warn!(message_id = %id, "too close to the deadline to start; redelivered");
            response.batch_item_failures.push(failure_of(id));
            continue;
        }
        let receives: Option<u32> = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok());
        let last_delivery = matches!((receives, limits.max_receives), (Some(r), Some(m)) if r >= m);
        let body = record.body.unwrap_or_default();
        let message = match QueueMessage::from_json(&body) {
            Ok(m) => m,
            Err(e) => {
                let preview: String = body.chars().take(200).collect();
                tracing::error!(message_id = %id, error.message = %e, body.preview = %preview,
                    "malformed restore-queue message kept for the dead-letter queue");
                response.batch_item_failures.push(failure_of(id));
                continue;
            }
        };
        let attempt = Attempt {
            message_id: &id,
            invocation,
        };
        match worker.handle(&message, attempt, now).await {
            Ok(outcome) => tracing::info!(message_id = %id, ?outcome, "handled"),
            Err(e) if e.is_transient() && !last_delivery => {
                tracing::warn!(message_id = %id, error.message = %e, error.cause_chain = ?e,
                    "transient failure; the message will be redelivered");
                response.batch_item_failures.push(failure_of(id));
            }
            Err(e) => {
                tracing::error!(message_id = %id, error.message = %e, error.cause_chain = ?e,
                    "message cannot be handled; kept for the dead-letter queue");
                response.batch_item_failures.push(failure_of(id.clone()));
                if last_delivery {
                    let note = worker
                        .note_dead_letter(message.migration(), &e.to_string(), now)
                        .await;
                    if let Err(n) = note {
                        tracing::error!(message_id = %id, error.message = %n,
                            "could not record the dead letter on the migration");
                    }
                }
            }
        }
    }
    response
}

fn failure_of(id: String) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = id;
    failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_core::model::status::MigrationRecord;
    use bakdrop_core::model::version::VersionPolicy;
    use bakdrop_core::ports::fakes::{MemoryObjects, MemoryQueue, MemoryStore, MemoryTarget};
    use bakdrop_core::restore::{RestoreConfig, SourceLocation};
    use bakdrop_core::tsql::Dialect;
    use serde_json::json;
    use std::time::Duration;

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000)
    }

    /// A worker whose store knows the migration `Sales`.
    async fn worker_of_sales() -> Worker<MemoryStore, MemoryQueue, MemoryTarget, MemoryObjects> {
        let w = worker();
        let sales = bakdrop_core::DatabaseName::parse("Sales").expect("name");
        w.store
            .put_migration(&MigrationRecord::new(sales, now()), None)
            .await
            .expect("stored");
        w
    }

    fn worker() -> Worker<MemoryStore, MemoryQueue, MemoryTarget, MemoryObjects> {
        Worker {
            store: MemoryStore::default(),
            queue: MemoryQueue::default(),
            target: MemoryTarget::new("16.0.4135.4"),
            objects: MemoryObjects::default(),
            config: RestoreConfig {
                dialect: Dialect::Rds,
                location: SourceLocation::rds(None),
                policy: VersionPolicy::Same,
                check_version: true,
                poll_interval: Duration::from_secs(60),
                busy_retry: Duration::from_secs(120),
                settle: None,
            },
        }
    }

    fn event(bodies: &[(&str, &str)]) -> SqsEvent {
        let records: Vec<_> = bodies
            .iter()
            .map(|(id, body)| json!({"messageId": id, "body": body, "attributes": {}, "messageAttributes": {}}))
            .collect();
        serde_json::from_value(json!({ "Records": records })).expect("sqs event")
    }

    #[tokio::test]
    async fn malformed_messages_and_unknown_migrations_are_kept_for_the_dead_letter_queue() {
        let w = worker();
        let advance = QueueMessage::Advance {
            migration: bakdrop_core::DatabaseName::parse("Nope").expect("name"),
        }
        .to_json();
        let response = handle(
            &w,
            event(&[
                ("m1", "not json"),
                ("m2", r#"{"schema": 99, "kind": "advance"}"#),
                ("m3", &advance),
            ]),
            "request-1",
            now(),
        )
        .await;
        let kept: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(kept, ["m1", "m2", "m3"], "{response:?}");
    }

    #[tokio::test]
    async fn only_the_failing_messages_are_reported_for_redelivery() {
        let w = worker_of_sales().await;
        let header: bakdrop_core::model::header::HeaderSummary = serde_json::from_value(json!({
            "backup_type": "full", "source_database": "Sales", "server_name": "S",
            "software_version": "16.0.4135", "database_version": 957, "compressed": false,
            "has_checksums": true, "first_lsn": "10", "last_lsn": "20", "checkpoint_lsn": "10",
            "database_backup_lsn": "0", "backup_set_guid": "00000000-0000-0000-0000-000000000007",
            "family_guid": "00000000-0000-0000-0000-000000000008",
            "recovery_fork_id": "00000000-0000-0000-0000-000000000008",
            "family_count": 1, "family_sequence": 1
        }))
        .expect("header");
        let object = bakdrop_core::model::object::ObjectRef {
            bucket: "b".into(),
            key: "Sales/full.bak".into(),
            version_id: None,
            etag: Some("e".into()),
            size: 10,
        };
        let file = bakdrop_core::model::status::FileRecord {
            migration: Some(bakdrop_core::DatabaseName::parse("Sales").expect("name")),
            file_id: object.file_id(),
            object: object.clone(),
            state: bakdrop_core::model::status::FileState::Queued,
            reason: None,
            header: Some(header.clone()),
            claim: None,
            restore_started_at: None,
            restore_finished_at: None,
            created_at: now(),
            updated_at: now(),
        };
        w.store.put_file(&file, None).await.expect("stored");
        let job = QueueMessage::Restore(Box::new(bakdrop_core::model::job::RestoreJob {
            migration: bakdrop_core::DatabaseName::parse("Sales").expect("name"),
            file_id: object.file_id(),
            object,
            header,
        }))
        .to_json();
        let idle = QueueMessage::Advance {
            migration: bakdrop_core::DatabaseName::parse("Sales").expect("name"),
        }
        .to_json();
        w.store.fail_next_puts(1);
        let response = handle(
            &w,
            event(&[("job-1", &job), ("idle-2", &idle)]),
            "request-1",
            now(),
        )
        .await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(
            ids,
            vec!["job-1".to_owned()],
            "the handled message is acknowledged"
        );
    }

    #[tokio::test]
    async fn messages_not_started_before_the_deadline_are_left_for_redelivery() {
        let w = worker_of_sales().await;
        let advance = QueueMessage::Advance {
            migration: bakdrop_core::DatabaseName::parse("Sales").expect("name"),
        }
        .to_json();
        let limits = Limits {
            stop_taking_at: Some(Instant::now()),
            max_receives: None,
        };
        let response = handle_within(
            &w,
            event(&[("m1", &advance), ("m2", &advance)]),
            "request-1",
            now(),
            limits,
        )
        .await;
        assert_eq!(response.batch_item_failures.len(), 2, "{response:?}");
        // A deadline still ahead lets them through.
        let ahead = Limits::for_deadline(
            u64::try_from(
                (std::time::SystemTime::now() + Duration::from_secs(120))
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("epoch")
                    .as_millis(),
            )
            .expect("ms"),
            None,
        );
        let response =
            handle_within(&w, event(&[("m3", &advance)]), "request-2", now(), ahead).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }

    #[tokio::test]
    async fn a_message_failing_on_its_last_delivery_is_recorded_on_its_migration() {
        let w = worker_of_sales().await;
        // A restore job for a file the table does not know: it fails on every delivery.
        let body = r#"{"schema": 1, "kind": "restore", "migration": "Sales", "file_id": "gone",
            "object": {"bucket": "b", "key": "Sales/x.bak", "size": 1},
            "header": {"backup_type": "full", "source_database": "Sales", "server_name": "S",
            "software_version": "16.0.4135", "database_version": 957, "compressed": false,
            "has_checksums": false, "first_lsn": "10", "last_lsn": "20", "checkpoint_lsn": "10",
            "database_backup_lsn": "0", "backup_set_guid": "00000000-0000-0000-0000-000000000007",
            "family_guid": "00000000-0000-0000-0000-000000000008",
            "recovery_fork_id": "00000000-0000-0000-0000-000000000008",
            "family_count": 1, "family_sequence": 1}}"#;
        let delivered = |count: u32| -> SqsEvent {
            serde_json::from_value(json!({"Records": [{
                "messageId": "m1", "body": body,
                "attributes": {"ApproximateReceiveCount": count.to_string()},
                "messageAttributes": {}
            }]}))
            .expect("sqs event")
        };
        let limits = Limits {
            stop_taking_at: None,
            max_receives: Some(5),
        };
        handle_within(&w, delivered(4), "r", now(), limits).await;
        let m = w
            .store
            .get_migration("Sales")
            .await
            .expect("read")
            .expect("m");
        assert_eq!(m.record.reason, None, "not yet the last delivery");
        let response = handle_within(&w, delivered(5), "r", now(), limits).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        let m = w
            .store
            .get_migration("Sales")
            .await
            .expect("read")
            .expect("m");
        let reason = m.record.reason.expect("recorded");
        assert_eq!(reason.code, "MessageDeadLettered");
        assert!(
            reason.message.contains("dead-letter queue"),
            "{}",
            reason.message
        );
    }
}
