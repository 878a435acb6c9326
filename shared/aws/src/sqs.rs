//! [`SqsJobQueue`]: the restore queue on SQS.

use std::time::Duration;

use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::ports::{JobQueue, QueueError};

/// Sends restore-queue messages to one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> SqsJobQueue {
        SqsJobQueue {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// SQS delays a message by at most 15 minutes.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

impl JobQueue for SqsJobQueue {
    async fn send(&self, message: &QueueMessage, delay: Duration) -> Result<(), QueueError> {
        let delay = i32::try_from(delay.min(MAX_DELAY).as_secs()).unwrap_or(900);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message.to_json())
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable(Box::new(e)))?;
        Ok(())
    }
}
