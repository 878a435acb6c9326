//! The restore-worker function: restore-queue messages → restores on the target SQL Server.
//!
//! # Layout
//! - [`handler`]: an SQS batch → one worker call per message, partial batch failures.
//! - [`settings`]: the function's configuration from its environment.

pub mod handler;
pub mod settings;
