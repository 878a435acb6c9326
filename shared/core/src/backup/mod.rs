//! Reading SQL Server native backups without a SQL Server (placeholder until the parser lands).

/// Why a backup could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the backup parser is not implemented yet")]
    NotImplemented,
}
