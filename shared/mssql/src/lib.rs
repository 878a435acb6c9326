//! SQL Server adapters for the core ports (tiberius).
