//! The local AWS endpoint for tests: SDK clients from the environment `infra/local-stack.sh`
//! writes (`.local/moto.env`), and per-test resources with unique names (tests run in parallel
//! against one endpoint, so none of them resets global state).

use std::time::{Duration, Instant};

use aws_lambda_events::event::s3::S3Event;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};

/// Clients for the local endpoint.
#[derive(Debug, Clone)]
pub struct LocalAws {
    pub endpoint: String,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl LocalAws {
    /// Clients for `AWS_ENDPOINT_URL`.
    ///
    /// # Errors
    /// When the endpoint is not configured: run the tests through `infra/test.sh`, or
    /// `infra/local-stack.sh start && source .local/moto.env` first.
    pub async fn from_env() -> Result<LocalAws, String> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
            "AWS_ENDPOINT_URL is not set: run the tests with infra/test.sh, or start the local \
             AWS endpoint (infra/local-stack.sh install && infra/local-stack.sh start) and \
             `source .local/moto.env`"
                .to_owned()
        })?;
        if !endpoint.starts_with("http://127.") && !endpoint.starts_with("http://localhost") {
            return Err(format!(
                "refusing to run tests against {endpoint}: loopback only"
            ));
        }
        let sdk = bakdrop_aws::config::load().await;
        Ok(LocalAws {
            endpoint,
            s3: bakdrop_aws::config::s3_client(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        })
    }

    /// The local endpoint, or a panic that says how to start it.
    pub async fn get() -> LocalAws {
        match LocalAws::from_env().await {
            Ok(aws) => aws,
            Err(e) => panic!("{e}"),
        }
    }

    /// A status table with bakdrop's key schema.
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn create_status_table(&self, name: &str) -> Result<(), Error> {
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("sk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sk")
                    .key_type(KeyType::Range)
                    .build()?,
            )
            .send()
            .await?;
        Ok(())
    }

    /// A standard queue; returns its URL.
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn create_queue(&self, name: &str) -> Result<String, Error> {
        let out = self.sqs.create_queue().queue_name(name).send().await?;
        out.queue_url.ok_or_else(|| "no queue URL".into())
    }

    /// A bucket whose ObjectCreated events go to a new queue (the way S3 reaches our function
    /// in these tests); returns the queue URL.
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn create_bucket_with_events(&self, bucket: &str) -> Result<String, Error> {
        self.s3.create_bucket().bucket(bucket).send().await?;
        let queue = format!("{bucket}-events");
        let url = self.create_queue(&queue).await?;
        let arn = format!("arn:aws:sqs:us-east-1:123456789012:{queue}");
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(arn)
                            .events(Event::from("s3:ObjectCreated:*"))
                            .build()?,
                    )
                    .build(),
            )
            .send()
            .await?;
        Ok(url)
    }

    /// Receives up to 10 messages waiting now (one short poll), as `(message id, body)`;
    /// deletes them.
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn receive_now(&self, queue_url: &str) -> Result<Vec<(String, String)>, Error> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await?;
        let mut messages = Vec::new();
        for m in out.messages() {
            messages.push((
                m.message_id().unwrap_or_default().to_owned(),
                m.body().unwrap_or_default().to_owned(),
            ));
            if let Some(handle) = m.receipt_handle() {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
        Ok(messages)
    }

    /// Receives message bodies until `count` arrived or `timeout` passed; deletes them.
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn receive(
        &self,
        queue_url: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, Error> {
        let deadline = Instant::now() + timeout;
        let mut bodies = Vec::new();
        while bodies.len() < count && Instant::now() < deadline {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            for m in out.messages() {
                if let Some(body) = m.body() {
                    bodies.push(body.to_owned());
                }
                if let Some(handle) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
        Ok(bodies)
    }

    /// The next `count` S3 events on `queue_url` (S3's test event skipped), in the real shape.
    ///
    /// # Errors
    /// When a body is not an S3 event, or the endpoint refuses.
    pub async fn next_s3_events(
        &self,
        queue_url: &str,
        count: usize,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while events.len() < count && Instant::now() < deadline {
            for body in self.receive(queue_url, 1, Duration::from_secs(2)).await? {
                let value: serde_json::Value = serde_json::from_str(&body)?;
                if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
                    continue;
                }
                // Must be what aws_lambda_events (and so our handler) accepts.
                let _: S3Event = serde_json::from_value(value.clone())?;
                events.push(value);
            }
        }
        Ok(events)
    }
}

/// A name no other test uses: `prefix-<8 hex>`.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..8])
}
