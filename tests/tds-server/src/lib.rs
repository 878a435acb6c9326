//! A TDS server on loopback that tiberius can log in to, emulating the SQL Server statements
//! bakdrop sends, for tests.
//!
//! # Layout
//! - [`protocol`]: the TDS server (framing, login, batch/RPC decoding, reply encoding, faults).
//! - [`emulator`]: [`SqlServerEmulator`], a [`protocol::Handler`] with seedable state that
//!   understands version queries, system views, the RDS restore procedures, native `RESTORE`
//!   and SQL Server Agent jobs, and refuses what SQL Server and RDS document they refuse
//!   (`BEHAVIOURS.md` beside this crate lists each behaviour and its source).

//!
//! # Quick start
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use bakdrop_tds_server::emulator::{ClockMode, DatabaseState};
//! use bakdrop_tds_server::{FaultTiming, SqlServerEmulator};
//! use std::time::Duration;
//!
//! let emulator = SqlServerEmulator::rds();
//! emulator.set_clock_mode(ClockMode::Manual);
//! emulator.add_database("AlreadyThere", DatabaseState::Online);
//! emulator.fail_next_restore("Sales", 3169, "The database was backed up on a server running version ...");
//! // A medium exists only once registered.
//! emulator.register_backup(
//!     "arn:aws:s3:::bucket/Sales/full.bak",
//!     bakdrop_tds_server::emulator::BackupInfo::new(bakdrop_tds_server::emulator::BackupKind::Full, "Sales"),
//! );
//! let (addr, handle) = emulator.start().await?;
//! // Point tiberius at `addr` with `EncryptionLevel::NotSupported`, then:
//! handle.cut_connection_on_sql(FaultTiming::AfterHandler, "rds_task_status");
//! emulator.advance(Duration::from_secs(60));
//! assert!(emulator.unquoted_database_identifiers().is_empty());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The statement forms the emulator understands are listed in [`emulator`].

pub mod emulator;
pub mod protocol;

pub use emulator::SqlServerEmulator;
pub use protocol::{FaultTiming, Handler, ServerHandle, TdsServer};
