//! complete-migration: wires the Complete/Cancel handler to DynamoDB and the target SQL Server.

use bakdrop_aws::{
    config, dynamo::DynamoStatusStore, s3::S3ObjectReader, secrets, sqs::SqsJobQueue,
};
use bakdrop_core::validate::ValidateConfig;
use std::sync::Arc;

use bakdrop_mssql::settings::{TargetLogin, TargetSettings};
use bakdrop_mssql::target::LoginRefresh;
use bakdrop_mssql::TiberiusTarget;
use complete_migration::handler::{self, Followup, Revalidation};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let get = |name: &str| std::env::var(name).ok();
    let table = get("STATUS_TABLE").ok_or("configuration: STATUS_TABLE is not set")?;
    let queue_url =
        get("RESTORE_QUEUE_URL").ok_or("configuration: RESTORE_QUEUE_URL is not set")?;
    let poll = get("POLL_INTERVAL_SECONDS")
        .map(|s| s.parse::<u64>())
        .transpose()
        .map_err(|e| format!("configuration: POLL_INTERVAL_SECONDS: {e}"))?
        .unwrap_or(60);
    let target = TargetSettings::from_lookup(&get).map_err(|e| format!("configuration: {e}"))?;
    // The revalidate action validates as the validate-upload function does.
    let validation = ValidateConfig::from_lookup(get).map_err(|e| format!("configuration: {e}"))?;
    let sdk = config::load().await;
    let secrets_client = aws_sdk_secretsmanager::Client::new(&sdk);
    let login = target_login(secrets_client.clone(), target.clone()).await?;
    // A rotated secret: SQL Server refuses the login in use (18456) and the target reads it again.
    let refresh: LoginRefresh = {
        let (client, target) = (secrets_client, target.clone());
        Arc::new(move || Box::pin(target_login(client.clone(), target.clone())))
    };
    let store = DynamoStatusStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let target = TiberiusTarget::new(login.config(), target.dialect).with_login_refresh(refresh);
    let queue = SqsJobQueue::new(aws_sdk_sqs::Client::new(&sdk), &queue_url);
    // A finish task is followed here for up to 10 s (a quarter-second apart), then by the
    // restore worker.
    let followup = Followup {
        queue: &queue,
        delay: std::time::Duration::from_secs(poll),
        wait: std::time::Duration::from_secs(10),
        look_every: std::time::Duration::from_millis(250),
    };
    let reader = S3ObjectReader::new(config::s3_client(&sdk));
    let revalidation = Revalidation {
        reader: &reader,
        config: &validation,
    };
    let (store, target, followup, revalidation) = (&store, &target, &followup, &revalidation);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler::handle(
            store,
            target,
            followup,
            revalidation,
            event.payload,
            time::OffsetDateTime::now_utc(),
        )
        .await
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
