//! migration-status: wires the status handler to the DynamoDB status table.

use bakdrop_aws::{config, dynamo::DynamoStatusStore};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use migration_status::handler;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let table =
        std::env::var("STATUS_TABLE").map_err(|_| "configuration: STATUS_TABLE is not set")?;
    let sdk = config::load().await;
    let store = DynamoStatusStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler::handle(store, event.payload).await
    }))
    .await
}
