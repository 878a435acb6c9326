//! [`EventBridgeBus`]: bakdrop's events ([`bakdrop_core::report::events`]) on an Amazon EventBridge bus,
//! `PutEvents` of at most [`ENTRIES_PER_CALL`] entries at a time, in order.
//!
//! `PutEvents` may take part of a call (`FailedEntryCount`, e.g. throttled entries): the
//! entries it did not take are sent again, a few times, before the call counts as failed. The
//! error then says how many of the first events were taken, so that the caller knows where to
//! start again (entries after a failed one may have been taken too: harmless, each event keeps
//! its `detail.id`).

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use bakdrop_core::ports::{EventBus, PublishError};
use bakdrop_core::report::events::{Event, SOURCE};

/// `PutEvents` takes at most this many entries.
pub const ENTRIES_PER_CALL: usize = 10;

/// Rounds of sending again the entries a `PutEvents` did not take.
const ROUNDS: usize = 3;

/// bakdrop's events on one EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeBus {
    /// Events to `bus` (a name or an ARN; `default` for the account's default bus).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> EventBridgeBus {
        EventBridgeBus {
            client,
            bus: bus.into(),
        }
    }

    fn entry(&self, event: &Event) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(event.detail_type.as_str())
            .detail(event.detail_json())
            .time(
                aws_sdk_eventbridge::primitives::DateTime::from_nanos(
                    event.time.unix_timestamp_nanos(),
                )
                .unwrap_or_else(|_| aws_sdk_eventbridge::primitives::DateTime::from_secs(0)),
            )
            .event_bus_name(&self.bus)
            .build()
    }

    /// Sends one chunk; `Err` with the index (in the chunk) of the first entry not taken.
    async fn put(&self, chunk: &[Event]) -> Result<(), (usize, PublishError)> {
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        let mut last = String::new();
        for _ in 0..ROUNDS {
            let entries = pending.iter().map(|&i| self.entry(&chunk[i])).collect();
            let out = match self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let first = pending.first().copied().unwrap_or(0);
                    return Err((
                        first,
                        PublishError {
                            published: 0,
                            source: Box::new(aws_sdk_eventbridge::Error::from(e)),
                        },
                    ));
                }
            };
            if out.failed_entry_count() == 0 {
                return Ok(());
            }
            // The answer's entries are in the request's order: keep the ones without an id.
            let answers = out.entries();
            let mut still = Vec::new();
            for (n, &i) in pending.iter().enumerate() {
                match answers.get(n) {
                    Some(a) if a.event_id().is_some() && a.error_code().is_none() => {}
                    a => {
                        if let Some(a) = a {
                            last = format!(
                                "{}: {}",
                                a.error_code().unwrap_or("error"),
                                a.error_message().unwrap_or_default()
                            );
                        }
                        still.push(i);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
        }
        let first = pending.first().copied().unwrap_or(0);
        Err((
            first,
            PublishError {
                published: 0,
                source: format!("PutEvents did not take an entry after {ROUNDS} tries: {last}")
                    .into(),
            },
        ))
    }
}

impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[Event]) -> Result<(), PublishError> {
        for (n, chunk) in events.chunks(ENTRIES_PER_CALL).enumerate() {
            if let Err((first, mut error)) = self.put(chunk).await {
                error.published = n * ENTRIES_PER_CALL + first;
                return Err(error);
            }
        }
        Ok(())
    }
}
