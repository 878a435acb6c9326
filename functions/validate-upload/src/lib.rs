//! The validate-upload function: S3 ObjectCreated events → validated, recorded, queued files.
//!
//! # Layout
//! - [`handler`]: turns an S3 event into calls of the core's validation service.
//! - [`settings`]: the function's configuration from its environment.

pub mod handler;
pub mod settings;
