//! restore-worker: wires the SQS handler to DynamoDB, SQS and the target SQL Server.

use aws_lambda_events::event::sqs::SqsEvent;
use bakdrop_aws::{
    config, dynamo::DynamoStatusStore, s3::S3ObjectReader, secrets, sqs::SqsJobQueue,
    staging::S3StripeStaging,
};
use bakdrop_core::restore::Worker;
use std::sync::Arc;

use bakdrop_mssql::settings::{TargetLogin, TargetSettings};
use bakdrop_mssql::target::LoginRefresh;
use bakdrop_mssql::TiberiusTarget;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use restore_worker::{handler, settings::Settings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let sdk = config::load().await;
    let secrets_client = aws_sdk_secretsmanager::Client::new(&sdk);
    let login = target_login(secrets_client.clone(), settings.target.clone()).await?;
    // A rotated secret: SQL Server refuses the login in use (18456) and the target reads it again.
    let refresh: LoginRefresh = {
        let (client, target) = (secrets_client, settings.target.clone());
        Arc::new(move || Box::pin(target_login(client.clone(), target.clone())))
    };
    let worker = Worker {
        objects: S3ObjectReader::new(config::s3_client(&sdk)),
        store: DynamoStatusStore::new(aws_sdk_dynamodb::Client::new(&sdk), &settings.status_table),
        queue: SqsJobQueue::new(aws_sdk_sqs::Client::new(&sdk), &settings.restore_queue_url),
        // Striped sets reach RDS as one prefix of staged copies; other requests pass through.
        target: S3StripeStaging::new(
            config::s3_client(&sdk),
            TiberiusTarget::new(login.config(), settings.restore.dialect)
                .with_paths(settings.target.paths.clone())
                .with_login_refresh(refresh),
        ),
        config: settings.restore.clone(),
    };
    let worker = &worker;
    let max_receives = settings.max_receives;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let now = time::OffsetDateTime::now_utc();
        let limits = handler::Limits::for_deadline(event.context.deadline, max_receives);
        let response = handler::handle_within(
            worker,
            event.payload,
            &event.context.request_id,
            now,
            limits,
        )
        .await;
        Ok::<_, Error>(response)
    }))
    .await
}

/// The target login from the secret (and the settings' host, port and TLS).
async fn target_login(
    client: aws_sdk_secretsmanager::Client,
    target: TargetSettings,
) -> Result<TargetLogin, String> {
    let secret = secrets::read_login(&client, &target.secret_id)
        .await
        .map_err(|e| e.to_string())?;
    target.login(
        &secret.username,
        &secret.password,
        secret.host.as_deref(),
        secret.port,
    )
}
