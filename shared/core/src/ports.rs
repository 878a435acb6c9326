//! Ports: the small traits the core needs from the outside world, each with its error contract.
//!
//! Adapters live in other crates (`bakdrop-aws`: S3, SQS, DynamoDB). In-memory fakes for unit
//! tests are in [`crate::fakes`] (feature `test-support`). Dependency injection style for the
//! whole workspace: generics over these traits, methods returning `impl Future + Send`.

use std::future::Future;
use std::time::Duration;

use crate::job::QueueMessage;
use crate::object::ObjectRef;
use crate::status::{FileRecord, MigrationRecord, Versioned};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which bytes of an object to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The first `n` bytes (fewer if the object is smaller).
    Head(u64),
    /// The last `n` bytes (fewer if the object is smaller).
    Tail(u64),
}

/// Reads byte ranges of uploaded objects (S3 in production).
pub trait ObjectReader: Send + Sync {
    /// Reads one range of exactly the object version named by `object`.
    ///
    /// # Errors
    /// [`ReadError::NotFound`] when the object (version) is gone, [`ReadError::Changed`] when the
    /// key now holds another object, [`ReadError::Unavailable`] when the store could not answer.
    fn read(
        &self,
        object: &ObjectRef,
        range: ByteRange,
    ) -> impl Future<Output = Result<Vec<u8>, ReadError>> + Send;
}

/// Why a range could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the object {0} no longer exists")]
    NotFound(String),
    #[error("the object {0} was replaced by a newer upload since the event")]
    Changed(String),
    #[error("the object store is unavailable")]
    Unavailable(#[source] BoxError),
}

impl ReadError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ReadError::Unavailable(_))
    }
}

/// Stores migration and file records with compare-and-set (DynamoDB in production).
///
/// `expected = None` means "create: the record must not exist"; `Some(v)` means "replace: the
/// stored version must still be `v`". A successful put returns the new version.
pub trait StatusStore: Send + Sync {
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn get_migration(
        &self,
        database: &str,
    ) -> impl Future<Output = Result<Option<Versioned<MigrationRecord>>, StoreError>> + Send;

    /// # Errors
    /// [`StoreError::Conflict`] when the version does not match, else as `get_migration`.
    fn put_migration(
        &self,
        record: &MigrationRecord,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn get_file(
        &self,
        migration: &str,
        file_id: &str,
    ) -> impl Future<Output = Result<Option<Versioned<FileRecord>>, StoreError>> + Send;

    /// # Errors
    /// [`StoreError::Conflict`] when the version does not match, else as `get_file`.
    fn put_file(
        &self,
        record: &FileRecord,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Every file record of a migration, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn list_files(
        &self,
        migration: &str,
    ) -> impl Future<Output = Result<Vec<Versioned<FileRecord>>, StoreError>> + Send;
}

/// Why the status store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the record was changed by someone else (expected version {expected:?})")]
    Conflict { expected: Option<u64> },
    #[error("a stored record cannot be read: {0}")]
    Corrupt(String),
    #[error("the status store is unavailable")]
    Unavailable(#[source] BoxError),
}

impl StoreError {
    /// True when trying again later may succeed (a conflict is retried by re-reading, not here).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Sends messages to the restore queue (SQS in production).
pub trait JobQueue: Send + Sync {
    /// Sends one message, delivered after `delay` (at most 15 minutes).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the queue could not take it.
    fn send(
        &self,
        message: &QueueMessage,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the restore queue is unavailable")]
    Unavailable(#[source] BoxError),
}

impl QueueError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        true
    }
}
