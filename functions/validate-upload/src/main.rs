//! validate-upload: wires the S3 event handler to S3, DynamoDB and SQS.

use bakdrop_aws::{config, dynamo::DynamoStatusStore, s3::S3ObjectReader, sqs::SqsJobQueue};
use bakdrop_core::validate::{ValidateConfig, Validator};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use validate_upload::{handler, settings::Settings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let sdk = config::load().await;
    let validator = Validator {
        reader: S3ObjectReader::new(config::s3_client(&sdk)),
        store: DynamoStatusStore::new(aws_sdk_dynamodb::Client::new(&sdk), &settings.status_table),
        queue: SqsJobQueue::new(aws_sdk_sqs::Client::new(&sdk), &settings.restore_queue_url),
        config: ValidateConfig {
            arm_by_upload: settings.arm_by_upload,
            target: Some(settings.target),
            policy: settings.policy,
            location: settings.location.clone(),
        },
    };
    let validator = &validator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let now = time::OffsetDateTime::now_utc();
        handler::handle(validator, event.payload, &event.context.request_id, now).await
    }))
    .await
}
