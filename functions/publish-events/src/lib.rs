//! The publish-events function: every write of the status table, read from its stream, as
//! bakdrop's events on EventBridge.
//!
//! # Layout
//! - [`handler`]: DynamoDB stream batches → events (the core's [`bakdrop_core::report::events`]) →
//!   the bus, with the first record not published reported back for a retry.

pub mod handler;
