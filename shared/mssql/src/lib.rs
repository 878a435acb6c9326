//! The target SQL Server over TDS (tiberius): [`TiberiusTarget`] implements the core's
//! `RestoreTarget` port for both dialects.
//!
//! # Layout
//! - [`connection`]: connecting, running a [`bakdrop_core::tsql::Statement`], error translation.
//! - [`settings`]: host, port, login and TLS as a tiberius configuration.
//! - [`target`]: [`TiberiusTarget`], the port over the two dialects' statements.
//! - `testing`: the adapter pointed at the TDS test server (feature `test-support`).

pub mod connection;
pub mod settings;
pub mod target;
#[cfg(feature = "test-support")]
pub mod testing;

pub use target::TiberiusTarget;
