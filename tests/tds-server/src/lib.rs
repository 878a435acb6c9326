//! A TDS server on loopback that tiberius can log in to, emulating the SQL Server statements
//! bakdrop sends, for tests.
//!
//! # Layout
//! - [`protocol`]: the TDS server (framing, login, batch/RPC decoding, reply encoding, faults).
//! - [`emulator`]: [`SqlServerEmulator`], a [`protocol::Handler`] with seedable state that
//!   understands version queries, `sys.databases`, the RDS restore procedures, native
//!   `RESTORE` and SQL Server Agent jobs.

pub mod emulator;
pub mod protocol;

pub use emulator::SqlServerEmulator;
pub use protocol::{FaultTiming, Handler, ServerHandle, TdsServer};
