//! Translates a batch of the status table's stream records into bakdrop's events and publishes
//! them, in the stream's order.
//!
//! Each record carries the item before and after one write (`NEW_AND_OLD_IMAGES`): migration
//! and file items give their events ([`bakdrop_core::report::events`]; their `sequence` is the record's
//! sequence number), name claims and deletions none. Delivery is at least once: when the bus
//! fails, or a record cannot be read, the answer names that record (`batchItemFailures`, its
//! sequence number) and nothing after it is published, so that Lambda checkpoints the records
//! before it and delivers the batch again from it, in order; events published twice keep their
//! `detail.id`.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use bakdrop_core::model::status::{FileRecord, MigrationRecord};
use bakdrop_core::ports::EventBus;
use bakdrop_core::report::events::{self, Event};
use serde::Deserialize;

/// Why a stream record gives no events to publish.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the stream record has no usable sequence number ({0:?})")]
    Sequence(Option<String>),
    #[error("the item image cannot be read: {0}")]
    Image(#[source] serde_dynamo::Error),
    #[error("the {kind} item's record cannot be read: {source}")]
    Record {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the {0} item has no record or no version")]
    Incomplete(String),
}

/// The attributes of a status-table item that events need (shared/aws/src/dynamo.rs).
#[derive(Debug, Deserialize)]
struct Image {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    record: Option<String>,
}

fn image(item: &serde_dynamo::Item) -> Result<Option<Image>, RecordError> {
    if item.is_empty() {
        return Ok(None);
    }
    serde_dynamo::from_item(item.clone())
        .map(Some)
        .map_err(RecordError::Image)
}

fn decode<T: serde::de::DeserializeOwned>(kind: &str, json: &str) -> Result<T, RecordError> {
    serde_json::from_str(json).map_err(|source| RecordError::Record {
        kind: kind.to_owned(),
        source,
    })
}

/// The events of one stream record.
///
/// # Errors
/// [`RecordError`] when the record cannot be read.
pub fn events_of(record: &EventRecord) -> Result<Vec<Event>, RecordError> {
    let change = &record.change;
    let sequence = change
        .sequence_number
        .as_deref()
        .and_then(events::sequence)
        .ok_or_else(|| RecordError::Sequence(change.sequence_number.clone()))?;
    if record.event_name == "REMOVE" {
        return Ok(Vec::new());
    }
    let Some(new) = image(&change.new_image)? else {
        return Ok(Vec::new());
    };
    let old = image(&change.old_image)?;
    let kind = new.kind.clone().unwrap_or_default();
    if kind != "migration" && kind != "file" {
        return Ok(Vec::new());
    }
    let (Some(version), Some(json)) = (new.version, new.record.as_deref()) else {
        return Err(RecordError::Incomplete(kind));
    };
    let old_json = old.as_ref().and_then(|o| o.record.as_deref());
    Ok(if kind == "migration" {
        let new: MigrationRecord = decode(&kind, json)?;
        let old: Option<MigrationRecord> = old_json.map(|j| decode(&kind, j)).transpose()?;
        events::migration_events(old.as_ref(), &new, version, &sequence)
    } else {
        let new: FileRecord = decode(&kind, json)?;
        let old: Option<FileRecord> = old_json.map(|j| decode(&kind, j)).transpose()?;
        events::file_events(old.as_ref(), &new, version, &sequence)
    })
}

fn failure(record: &EventRecord) -> DynamoDbEventResponse {
    let mut item = DynamoDbBatchItemFailure::default();
    // Lambda takes the sequence number; an event id keeps the identifier non-empty otherwise.
    item.item_identifier = Some(
        record
            .change
            .sequence_number
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| record.event_id.clone()),
    );
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures.push(item);
    response
}

/// Publishes the events of a batch of stream records, in order; the answer names the first
/// record whose events were not all published (none when all were).
pub async fn handle<B: EventBus>(bus: &B, batch: StreamEvent) -> DynamoDbEventResponse {
    let mut owners: Vec<usize> = Vec::new();
    let mut pending: Vec<Event> = Vec::new();
    let mut unreadable: Option<usize> = None;
    for (n, record) in batch.records.iter().enumerate() {
        match events_of(record) {
            Ok(events) => {
                owners.extend(std::iter::repeat_n(n, events.len()));
                pending.extend(events);
            }
            Err(e) => {
                // Left for Lambda's retries, then its on-failure destination (an operator).
                tracing::error!(
                    sequence = ?record.change.sequence_number, event.id = %record.event_id,
                    error.message = %e, error.cause_chain = ?e,
                    "a stream record cannot be read; it and the records after it are retried"
                );
                unreadable = Some(n);
                break;
            }
        }
    }
    if let Err(e) = bus.publish(&pending).await {
        let n = owners.get(e.published).copied().unwrap_or(0);
        tracing::warn!(published = e.published, of = pending.len(),
            error.message = %e, error.cause_chain = ?e,
            "the event bus failed; the batch is delivered again from the first record not published");
        return batch.records.get(n).map(failure).unwrap_or_default();
    }
    tracing::info!(
        records = batch.records.len(),
        events = pending.len(),
        "published"
    );
    unreadable
        .and_then(|n| batch.records.get(n))
        .map(failure)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_core::ports::fakes::MemoryBus;
    use bakdrop_core::report::events::DetailType;

    /// A stream batch as Lambda delivers it (infra/events): a migration created, the two-set
    /// file rejected, a name claim, then the migration Restoring.
    const BATCH: &str = include_str!("../../../infra/events/publish-events-stream.json");

    fn batch() -> StreamEvent {
        serde_json::from_str(BATCH).expect("a DynamoDB stream event")
    }

    fn published(bus: &MemoryBus) -> Vec<(DetailType, String)> {
        bus.published
            .lock()
            .map(|p| {
                p.iter()
                    .map(|e| (e.detail_type, e.detail.new_state.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_batch_publishes_the_events_of_its_migration_and_file_writes_in_order() {
        let bus = MemoryBus::default();
        let response = handle(&bus, batch()).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert_eq!(
            published(&bus),
            [
                (DetailType::MigrationStateChanged, "AwaitingFull".to_owned()),
                (DetailType::FileRejected, "Rejected".to_owned()),
                (DetailType::MigrationStateChanged, "Restoring".to_owned()),
            ]
        );
        let events = bus.published.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(
            events[0].detail.sequence,
            format!("{:0>40}", "1100000000017454423009")
        );
        assert_eq!(events[2].detail.old_state.as_deref(), Some("AwaitingFull"));
        assert_eq!(events[2].detail.version, 2);
        let schema = bakdrop_core::report::events::SchemaValidator::new();
        for e in &events {
            let json = serde_json::to_value(e.envelope()).expect("json");
            assert_eq!(schema.check(&json), Ok(()), "{json}");
        }
    }

    #[tokio::test]
    async fn when_the_bus_fails_the_first_record_not_published_is_named_and_nothing_after_it() {
        let bus = MemoryBus::default();
        *bus.fail_after.lock().expect("lock") = Some(1);
        let response = handle(&bus, batch()).await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        // The file's rejection (the second record) was not published.
        assert_eq!(ids, [Some("1100000000017454423010".to_owned())]);
        assert_eq!(published(&bus).len(), 1);
        // Delivered again from that record, by a bus that works again: the rest, same ids.
        *bus.fail_after.lock().expect("lock") = None;
        let mut again = batch();
        again.records.remove(0);
        let response = handle(&bus, again).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(published(&bus).len(), 3);
    }

    #[tokio::test]
    async fn an_unreadable_record_is_named_after_the_records_before_it_are_published() {
        let mut batch = batch();
        if let Some(serde_dynamo::AttributeValue::S(json)) =
            batch.records[1].change.new_image.get_mut("record")
        {
            *json = "{not json".to_owned();
        }
        let bus = MemoryBus::default();
        let response = handle(&bus, batch).await;
        assert_eq!(
            response.batch_item_failures[0].item_identifier.as_deref(),
            Some("1100000000017454423010")
        );
        assert_eq!(published(&bus).len(), 1, "only the record before it");
    }

    #[tokio::test]
    async fn a_redelivered_batch_publishes_the_same_ids_again() {
        let bus = MemoryBus::default();
        handle(&bus, batch()).await;
        handle(&bus, batch()).await;
        let events = bus.published.lock().map(|p| p.clone()).unwrap_or_default();
        let (first, second) = events.split_at(events.len() / 2);
        let ids = |e: &[Event]| e.iter().map(|e| e.detail.id).collect::<Vec<_>>();
        assert_eq!(ids(first), ids(second));
    }
}
