//! complete-migration: wires the Complete/Cancel handler to DynamoDB and the target SQL Server.

use bakdrop_aws::{config, dynamo::DynamoStatusStore, secrets, sqs::SqsJobQueue};
use bakdrop_mssql::settings::TargetSettings;
use bakdrop_mssql::TiberiusTarget;
use complete_migration::handler::{self, Followup};
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
    let sdk = config::load().await;
    let secret = secrets::read_login(
        &aws_sdk_secretsmanager::Client::new(&sdk),
        &target.secret_id,
    )
    .await?;
    let login = target.login(
        &secret.username,
        &secret.password,
        secret.host.as_deref(),
        secret.port,
    )?;
    let store = DynamoStatusStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let target = TiberiusTarget::new(login.config(), target.dialect);
    let queue = SqsJobQueue::new(aws_sdk_sqs::Client::new(&sdk), &queue_url);
    let followup = Followup {
        queue: &queue,
        delay: std::time::Duration::from_secs(poll),
    };
    let (store, target, followup) = (&store, &target, &followup);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler::handle(
            store,
            target,
            followup,
            event.payload,
            time::OffsetDateTime::now_utc(),
        )
        .await
    }))
    .await
}
