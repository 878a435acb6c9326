//! Support for the end-to-end tests: clients for the local AWS endpoint and resource helpers.
//!
//! # Layout
//! - [`aws`]: [`aws::LocalAws`], the SDK pointed at the local endpoint that `infra/test.sh`
//!   starts (moto server), with per-test resource names.
//! - [`lambda`]: [`lambda::LocalLambda`], a local Lambda service (Invoke API in front of real
//!   function binaries on a local Runtime API, or in-process handlers).

pub mod aws;
pub mod lambda;
