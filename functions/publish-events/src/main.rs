//! publish-events: wires the stream handler to EventBridge.

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use bakdrop_aws::{config, eventbridge::EventBridgeBus};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use publish_events::handler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let bus = std::env::var("EVENT_BUS_NAME")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let sdk = config::load().await;
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), bus);
    let bus = &bus;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StreamEvent>| async move {
            Ok::<_, Error>(handler::handle(bus, event.payload).await)
        },
    ))
    .await
}
