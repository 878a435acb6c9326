//! The local AWS endpoint for tests: SDK clients from the environment `infra/local-stack.sh`
//! writes (`.local/moto.env`), and per-test resources with unique names (tests run in parallel
//! against one endpoint, so none of them resets global state).
//!
//! The endpoint is moto's server started through `infra/moto_launcher.py`, which makes S3 event
//! notifications look like real S3's (see infra/README.md); [`LocalAws::receive_s3_events`]
//! insists on that shape by deserializing every body into `aws_lambda_events`' [`S3Event`].

use std::time::{Duration, Instant};

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_lambda_events::event::s3::S3Event;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;

/// How to start the endpoint, for error messages.
const HOW_TO_START: &str = "run the tests with infra/test.sh, or start the local AWS endpoint \
     (infra/local-stack.sh install && infra/local-stack.sh start) and `source .local/moto.env`";

/// Clients for the local endpoint.
#[derive(Debug, Clone)]
pub struct LocalAws {
    /// `AWS_ENDPOINT_URL`, e.g. `http://127.0.0.1:43117`.
    pub endpoint: String,
    /// The SDK configuration the clients were built from (region, credentials, endpoint).
    pub sdk: SdkConfig,
    /// S3 with path-style addressing (`<bucket>.127.0.0.1` does not resolve).
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

/// A call to the local endpoint that did not give what the test needs.
#[derive(Debug, thiserror::Error)]
pub enum LocalAwsError {
    /// The endpoint answered an operation with an error (or did not answer).
    #[error("the local AWS endpoint refused {operation}")]
    Refused {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The answer lacked a field the real service always sends.
    #[error("{operation} answered without {field}")]
    Incomplete {
        operation: &'static str,
        field: &'static str,
    },
    /// A message on an S3 event queue is neither S3's test event nor an `S3Event`.
    #[error("a message on {queue_url} is not an S3 event: {body}")]
    NotAnS3Event {
        queue_url: String,
        body: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Maps an SDK error of `operation` to [`LocalAwsError::Refused`].
fn refused<E>(operation: &'static str) -> impl FnOnce(E) -> LocalAwsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| LocalAwsError::Refused {
        operation,
        source: Box::new(e),
    }
}

impl LocalAws {
    /// Clients for `AWS_ENDPOINT_URL` (region from the environment, `us-east-1` otherwise).
    ///
    /// # Errors
    /// When `AWS_ENDPOINT_URL` is not set, or is not a loopback address: the message says how
    /// to start the local stack.
    pub async fn from_env() -> Result<LocalAws, String> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .map_err(|_| format!("AWS_ENDPOINT_URL is not set: {HOW_TO_START}"))?;
        if !endpoint.starts_with("http://127.") && !endpoint.starts_with("http://localhost") {
            return Err(format!(
                "refusing to run tests against AWS_ENDPOINT_URL={endpoint}: loopback only; \
                 {HOW_TO_START}"
            ));
        }
        let region = RegionProviderChain::default_provider().or_else("us-east-1");
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .endpoint_url(&endpoint)
            .load()
            .await;
        let s3_config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build();
        Ok(LocalAws {
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
            endpoint,
        })
    }

    /// The local endpoint, or a panic that says how to start it.
    pub async fn get() -> LocalAws {
        match LocalAws::from_env().await {
            Ok(aws) => aws,
            Err(e) => panic!("{e}"),
        }
    }

    /// A status table with bakdrop's key schema and indexes (as template.yaml defines them).
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn create_status_table(&self, name: &str) -> Result<(), LocalAwsError> {
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(refused("CreateTable (building the request)"))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sk")
                    .key_type(KeyType::Range)
                    .build()
                    .map_err(refused("CreateTable (building the request)"))?,
            )
            .set_attribute_definitions(Some(
                ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
                    .into_iter()
                    .map(|name| {
                        AttributeDefinition::builder()
                            .attribute_name(name)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(refused("CreateTable (building the request)"))?,
            ))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(bakdrop_aws::dynamo::MIGRATIONS_INDEX)
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name("gsi1pk")
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(refused("CreateTable (building the request)"))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name("gsi1sk")
                            .key_type(KeyType::Range)
                            .build()
                            .map_err(refused("CreateTable (building the request)"))?,
                    )
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(refused("CreateTable (building the request)"))?,
            )
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(bakdrop_aws::dynamo::FILES_INDEX)
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name("gsi2pk")
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(refused("CreateTable (building the request)"))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name("gsi2sk")
                            .key_type(KeyType::Range)
                            .build()
                            .map_err(refused("CreateTable (building the request)"))?,
                    )
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .map_err(refused("CreateTable (building the request)"))?,
            )
            .send()
            .await
            .map_err(refused("CreateTable"))?;
        Ok(())
    }

    /// A standard queue; returns its URL.
    ///
    /// # Errors
    /// When the endpoint refuses.
    /// Puts `body` at `bucket/key`; the object's reference as an S3 event of an unversioned bucket
    /// carries it (ETag and size, no version id).
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<bakdrop_core::model::object::ObjectRef, LocalAwsError> {
        let size = body.len() as u64;
        let out = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send()
            .await
            .map_err(refused("PutObject"))?;
        Ok(bakdrop_core::model::object::ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: None,
            etag: out.e_tag().map(|e| e.trim_matches('"').to_owned()),
            size,
        })
    }

    pub async fn create_queue(&self, name: &str) -> Result<String, LocalAwsError> {
        let out = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(refused("CreateQueue"))?;
        out.queue_url.ok_or(LocalAwsError::Incomplete {
            operation: "CreateQueue",
            field: "QueueUrl",
        })
    }

    /// A bucket whose ObjectCreated events go to a new standard queue named `queue` (the way S3
    /// reaches our function in these tests); returns the queue URL. S3 puts its `s3:TestEvent`
    /// on the queue first, as real S3 does; the receive functions below skip it.
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn create_bucket_with_queue_notification(
        &self,
        bucket: &str,
        queue: &str,
    ) -> Result<String, LocalAwsError> {
        self.s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(refused("CreateBucket"))?;
        let url = self.create_queue(queue).await?;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(refused("GetQueueAttributes"))?;
        let arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .ok_or(LocalAwsError::Incomplete {
                operation: "GetQueueAttributes",
                field: "QueueArn",
            })?;
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(arn)
                            .events(Event::S3ObjectCreated)
                            .build()
                            .map_err(refused("PutBucketNotificationConfiguration"))?,
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(refused("PutBucketNotificationConfiguration"))?;
        Ok(url)
    }

    /// [`LocalAws::create_bucket_with_queue_notification`] with the queue `<bucket>-events`.
    ///
    /// # Errors
    /// When the endpoint refuses.
    /// The resources template.yaml declares, under fresh names: the upload bucket with its
    /// events on a queue (standing in for the notification to validate-upload), the status
    /// table and the restore queue.
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn create_stack(&self) -> Result<StackResources, LocalAwsError> {
        let bucket = unique_name("uploads");
        let events = self.create_bucket_with_events(&bucket).await?;
        let table = unique_name("status");
        self.create_status_table(&table).await?;
        let restore_queue = self.create_queue(&unique_name("restore")).await?;
        Ok(StackResources {
            bucket,
            events,
            table,
            restore_queue,
        })
    }

    pub async fn create_bucket_with_events(&self, bucket: &str) -> Result<String, LocalAwsError> {
        self.create_bucket_with_queue_notification(bucket, &format!("{bucket}-events"))
            .await
    }

    /// Receives up to 10 messages waiting now (one short poll), as `(message id, body)`;
    /// deletes them.
    ///
    /// # Errors
    /// When the endpoint refuses.
    pub async fn receive_now(
        &self,
        queue_url: &str,
    ) -> Result<Vec<(String, String)>, LocalAwsError> {
        self.receive_batch(queue_url, 0).await
    }

    /// One ReceiveMessage (long poll of `wait_seconds`), deleting what it returned.
    async fn receive_batch(
        &self,
        queue_url: &str,
        wait_seconds: i32,
    ) -> Result<Vec<(String, String)>, LocalAwsError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .send()
            .await
            .map_err(refused("ReceiveMessage"))?;
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
                    .await
                    .map_err(refused("DeleteMessage"))?;
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
    ) -> Result<Vec<String>, LocalAwsError> {
        let deadline = Instant::now() + timeout;
        let mut bodies = Vec::new();
        while bodies.len() < count && Instant::now() < deadline {
            let batch = self.receive_batch(queue_url, 1).await?;
            bodies.extend(batch.into_iter().map(|(_, body)| body));
        }
        Ok(bodies)
    }

    /// S3 events on `queue_url` until `count` arrived or `timeout` passed (fewer then), each
    /// deserialized as `aws_lambda_events`' [`S3Event`] — what Lambda hands our handler. S3's
    /// `s3:TestEvent` is skipped; messages are deleted.
    ///
    /// # Errors
    /// When a body is neither the test event nor an `S3Event` (the local stack is not sending
    /// the real shape), or the endpoint refuses.
    pub async fn receive_s3_events(
        &self,
        queue_url: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<S3Event>, LocalAwsError> {
        let values = self
            .receive_s3_event_bodies(queue_url, count, timeout)
            .await?;
        values
            .into_iter()
            .map(|value| {
                serde_json::from_value(value.clone()).map_err(|source| {
                    LocalAwsError::NotAnS3Event {
                        queue_url: queue_url.to_owned(),
                        body: value.to_string(),
                        source,
                    }
                })
            })
            .collect()
    }

    /// The next `count` S3 events on `queue_url` (S3's test event skipped; waits up to 20 s)
    /// as JSON, each checked to deserialize as [`S3Event`] — for handlers that take the raw
    /// event.
    ///
    /// # Errors
    /// When a body is not an S3 event, or the endpoint refuses.
    pub async fn next_s3_events(
        &self,
        queue_url: &str,
        count: usize,
    ) -> Result<Vec<serde_json::Value>, LocalAwsError> {
        let values = self
            .receive_s3_event_bodies(queue_url, count, Duration::from_secs(20))
            .await?;
        for value in &values {
            if let Err(source) = serde_json::from_value::<S3Event>(value.clone()) {
                return Err(LocalAwsError::NotAnS3Event {
                    queue_url: queue_url.to_owned(),
                    body: value.to_string(),
                    source,
                });
            }
        }
        Ok(values)
    }

    /// Bodies on an S3 event queue as JSON, without S3's test event.
    async fn receive_s3_event_bodies(
        &self,
        queue_url: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<serde_json::Value>, LocalAwsError> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        while events.len() < count && Instant::now() < deadline {
            for (_, body) in self.receive_batch(queue_url, 1).await? {
                let value: serde_json::Value =
                    serde_json::from_str(&body).map_err(|source| LocalAwsError::NotAnS3Event {
                        queue_url: queue_url.to_owned(),
                        body: body.clone(),
                        source,
                    })?;
                if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
                    continue;
                }
                events.push(value);
            }
        }
        Ok(events)
    }
}

/// One test's copy of the stack's resources (see [`LocalAws::create_stack`]).
#[derive(Debug, Clone)]
pub struct StackResources {
    pub bucket: String,
    /// URL of the queue that receives the bucket's ObjectCreated events.
    pub events: String,
    pub table: String,
    /// URL of the restore queue.
    pub restore_queue: String,
}

/// A name no other test uses: `prefix-<12 hex>` (lower case, valid for buckets, queues and
/// tables when `prefix` is).
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}
