//! The migration-status function: the status table, read only, as one JSON document.
//!
//! # Layout
//! - [`handler`]: direct invokes and Function URL requests → status documents.

pub mod handler;
