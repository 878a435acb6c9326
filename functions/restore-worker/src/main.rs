//! restore-worker: wires the SQS handler to DynamoDB, SQS and the target SQL Server.

use aws_lambda_events::event::sqs::SqsEvent;
use bakdrop_aws::{
    config, dynamo::DynamoStatusStore, s3::S3ObjectReader, secrets, sqs::SqsJobQueue,
    staging::S3StripeStaging,
};
use bakdrop_core::restore::Worker;
use bakdrop_mssql::TiberiusTarget;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use restore_worker::{handler, settings::Settings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let sdk = config::load().await;
    let secret = secrets::read_login(
        &aws_sdk_secretsmanager::Client::new(&sdk),
        &settings.target.secret_id,
    )
    .await?;
    let login = settings.target.login(
        &secret.username,
        &secret.password,
        secret.host.as_deref(),
        secret.port,
    )?;
    let worker = Worker {
        objects: S3ObjectReader::new(config::s3_client(&sdk)),
        store: DynamoStatusStore::new(aws_sdk_dynamodb::Client::new(&sdk), &settings.status_table),
        queue: SqsJobQueue::new(aws_sdk_sqs::Client::new(&sdk), &settings.restore_queue_url),
        // Striped sets reach RDS as one prefix of staged copies; other requests pass through.
        target: S3StripeStaging::new(
            config::s3_client(&sdk),
            TiberiusTarget::new(login.config(), settings.restore.dialect)
                .with_paths(settings.target.paths.clone()),
        ),
        config: settings.restore.clone(),
    };
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let now = time::OffsetDateTime::now_utc();
        let response = handler::handle(worker, event.payload, &event.context.request_id, now).await;
        Ok::<_, Error>(response)
    }))
    .await
}
