//! Runs the SQL Server emulator on a TDS port so a person can point a client at it.
fn main() {}
