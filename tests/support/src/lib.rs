//! What bakdrop's tests and benchmarks share: clients for the local AWS endpoint and resource
//! helpers, a local Lambda service, the TDS test server's media, a connection-breaking proxy.
//!
//! # Layout
//! - [`aws`]: [`aws::LocalAws`], the SDK pointed at the local endpoint that `infra/test.sh`
//!   starts (moto server), with per-test resource names.
//! - [`lambda`]: [`lambda::LocalLambda`], a local Lambda service (Invoke API in front of real
//!   function binaries on a local Runtime API, or in-process handlers).
//! - [`tds`]: the TDS test server as the tests use it (worker configuration, media).
//! - [`proxy`]: [`proxy::TcpProxy`], a loopback TCP proxy that cuts connections and refuses new
//!   ones on command, to break the network between a client and a server on purpose.

pub mod aws;
pub mod lambda;
pub mod proxy;
pub mod tds;

/// A Lambda request id for one invocation of a handler: unique in the test process, as Lambda's
/// are (two invocations holding one SQS message have different ones).
pub fn invocation() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "invocation-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
