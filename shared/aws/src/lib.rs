//! AWS adapters for the core's ports, and the SDK configuration they share.
//!
//! # Layout
//! - [`config`]: loads the SDK configuration once per cold start; path-style S3 when an endpoint
//!   override (`AWS_ENDPOINT_URL`, the local stack) is set.
//! - [`s3`]: [`s3::S3ObjectReader`], ranged GETs of one object version.
//! - [`secrets`]: the target login from Secrets Manager.
//! - [`staging`]: [`staging::S3StripeStaging`], striped sets staged for RDS.
//! - [`sqs`]: [`sqs::SqsJobQueue`], the restore queue.
//! - [`dynamo`]: [`dynamo::DynamoStatusStore`], migration and file records with compare-and-set.
//! - [`eventbridge`]: [`eventbridge::EventBridgeBus`], bakdrop's events on an EventBridge bus.

pub mod config;
pub mod dynamo;
pub mod eventbridge;
pub mod s3;
pub mod secrets;
pub mod sqs;
pub mod staging;
