//! Translates an SQS batch into worker calls: each message parsed on its own, only transient
//! failures reported back (partial batch response) so that SQS redelivers just those, and after
//! the queue's maxReceiveCount moves a poison message to the dead-letter queue. A malformed
//! message is logged with its id and acknowledged: it will not parse on a second try.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use bakdrop_core::job::QueueMessage;
use bakdrop_core::ports::{JobQueue, RestoreTarget, StatusStore};
use bakdrop_core::restore::Worker;
use time::OffsetDateTime;

/// Handles one batch. Never fails as a whole: every message is answered on its own.
pub async fn handle<S: StatusStore, Q: JobQueue, T: RestoreTarget>(
    worker: &Worker<S, Q, T>,
    event: SqsEvent,
    now: OffsetDateTime,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (index, record) in event.records.into_iter().enumerate() {
        let id = record
            .message_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("missing-message-id-{index}"));
        let body = record.body.unwrap_or_default();
        let message = match QueueMessage::from_json(&body) {
            Ok(m) => m,
            Err(e) => {
                let preview: String = body.chars().take(200).collect();
                tracing::error!(message_id = %id, error.message = %e, body.preview = %preview,
                    "malformed restore-queue message acknowledged and dropped");
                continue;
            }
        };
        match worker.handle(&message, &id, now).await {
            Ok(outcome) => tracing::info!(message_id = %id, ?outcome, "handled"),
            Err(e) if e.is_transient() => {
                tracing::warn!(message_id = %id, error.message = %e, error.cause_chain = ?e,
                    "transient failure; the message will be redelivered");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            Err(e) => {
                tracing::error!(message_id = %id, error.message = %e, error.cause_chain = ?e,
                    "message cannot be handled; acknowledged")
            }
        }
    }
    response
}
