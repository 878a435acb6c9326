//! The complete-migration function: the explicit Complete (and Cancel) of a migration.
//!
//! # Layout
//! - [`handler`]: an invoke payload → `cutover::complete` or `cutover::cancel`.

pub mod handler;
