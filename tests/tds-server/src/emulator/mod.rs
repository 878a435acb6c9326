//! SQL Server emulator (in progress).

/// Placeholder.
#[derive(Debug, Default)]
pub struct SqlServerEmulator;
