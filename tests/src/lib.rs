//! Support for the end-to-end tests: clients for the local AWS endpoint and resource helpers.
//!
//! # Layout
//! - [`aws`]: [`aws::LocalAws`], the SDK pointed at the local endpoint that `infra/test.sh`
//!   starts (moto server), with per-test resource names.

pub mod aws;
