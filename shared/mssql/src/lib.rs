//! The target SQL Server over TDS (tiberius): [`TiberiusTarget`] implements the core's
//! `RestoreTarget` port for both dialects.
//!
//! # Layout
//! - [`connection`]: connecting, running a [`bakdrop_core::tsql::Statement`], error translation.
//! - [`settings`]: host, port, login and TLS as a tiberius configuration.
//! - [`target`]: [`TiberiusTarget`], the port over the two dialects' statements.

pub mod connection;
pub mod settings;
pub mod target;

pub use target::TiberiusTarget;
