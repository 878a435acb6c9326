//! bakdrop's core: everything that decides, nothing that talks to AWS or SQL Server.
//!
//! # Layout
//! - [`backup`]: reads SQL Server native backups (MTF / compressed MSSQLBAK) from a bounded head
//!   and tail, without a SQL Server.
//! - [`lsn`]: log sequence numbers as `RESTORE HEADERONLY` prints them.
//! - [`names`]: validated target database names and how they are quoted in T-SQL.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod backup;
pub mod lsn;
pub mod names;

pub use lsn::Lsn;
pub use names::DatabaseName;
