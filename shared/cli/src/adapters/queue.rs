//! [`LocalQueue`]: the restore queue inside one process, honouring delivery delays on a
//! [`Clock`] that is either real (sleep until due) or simulated (jump to the due time at once,
//! for script-only runs where nothing real is waited for).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::ports::{JobQueue, QueueError};
use time::OffsetDateTime;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The time the pipeline runs on.
#[derive(Debug)]
pub struct Clock {
    simulated: bool,
    offset: Mutex<time::Duration>,
}

impl Clock {
    /// Wall-clock time; waiting sleeps.
    pub fn real() -> Clock {
        Clock {
            simulated: false,
            offset: Mutex::new(time::Duration::ZERO),
        }
    }

    /// Wall-clock time plus the simulated waits so far; waiting returns at once.
    pub fn simulated() -> Clock {
        Clock {
            simulated: true,
            offset: Mutex::new(time::Duration::ZERO),
        }
    }

    /// Now.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *lock(&self.offset)
    }

    /// Lets `by` pass.
    pub async fn wait(&self, by: Duration) {
        if by.is_zero() {
            return;
        }
        if self.simulated {
            let by = time::Duration::try_from(by).unwrap_or(time::Duration::ZERO);
            *lock(&self.offset) += by;
        } else {
            tokio::time::sleep(by).await;
        }
    }
}

/// A message waiting for delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Stays the same across redeliveries (like an SQS message id).
    pub id: String,
    pub message: QueueMessage,
    pub due: OffsetDateTime,
    /// How often it was delivered before.
    pub attempts: u32,
}

/// A queue in memory, ordered by due time.
#[derive(Debug)]
pub struct LocalQueue {
    clock: std::sync::Arc<Clock>,
    pending: Mutex<(u64, Vec<Delivery>)>,
}

impl LocalQueue {
    pub fn new(clock: std::sync::Arc<Clock>) -> LocalQueue {
        LocalQueue {
            clock,
            pending: Mutex::new((0, Vec::new())),
        }
    }

    /// Takes the message due first, if it is due now.
    pub fn take_due(&self) -> Option<Delivery> {
        let now = self.clock.now();
        let mut pending = lock(&self.pending);
        let index = pending
            .1
            .iter()
            .enumerate()
            .filter(|(_, d)| d.due <= now)
            .min_by_key(|(_, d)| d.due)
            .map(|(i, _)| i)?;
        Some(pending.1.remove(index))
    }

    /// How long until the next message is due (zero when one is due), `None` when empty.
    pub fn until_next(&self) -> Option<Duration> {
        let now = self.clock.now();
        lock(&self.pending)
            .1
            .iter()
            .map(|d| d.due)
            .min()
            .map(|due| Duration::try_from(due - now).unwrap_or(Duration::ZERO))
    }

    /// Puts a delivery back for another attempt after `delay` (a transient failure).
    pub fn retry(&self, mut delivery: Delivery, delay: Duration) {
        delivery.attempts += 1;
        delivery.due = self.clock.now() + delay;
        lock(&self.pending).1.push(delivery);
    }
}

impl JobQueue for LocalQueue {
    async fn send(&self, message: &QueueMessage, delay: Duration) -> Result<(), QueueError> {
        let due = self.clock.now() + delay;
        let mut pending = lock(&self.pending);
        pending.0 += 1;
        let id = format!("local-{}", pending.0);
        pending.1.push(Delivery {
            id,
            message: message.clone(),
            due,
            attempts: 0,
        });
        Ok(())
    }
}
