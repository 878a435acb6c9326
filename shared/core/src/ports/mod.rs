//! Ports: the small traits the core needs from the outside world, each with its error contract.
//!
//! Adapters live in other crates (`bakdrop-aws`: S3, SQS, DynamoDB, EventBridge). In-memory fakes for unit
//! tests are in [`crate::ports::fakes`] (feature `test-support`). Dependency injection style for the
//! whole workspace: generics over these traits, methods returning `impl Future + Send`.

pub mod conditional;
#[cfg(any(test, feature = "test-support"))]
pub mod fakes;

use std::future::Future;
use std::time::Duration;

use crate::model::job::QueueMessage;
use crate::model::object::ObjectRef;
use crate::model::status::{FileRecord, FileState, MigrationRecord, Versioned};
use crate::model::task::TaskId;

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

    /// Checks that the object's key still holds exactly the version `object` names (targets
    /// read a key's latest version, never a pinned one).
    ///
    /// # Errors
    /// [`ReadError::Changed`] when the key now holds another object, [`ReadError::NotFound`]
    /// when it holds none, [`ReadError::Unavailable`] when the store could not answer.
    fn check_current(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<(), ReadError>> + Send;
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

    /// Deletes a file record whose stored version is still `expected` (a reset forgets the
    /// migration's files; the uploaded objects stay where they are).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the record changed or is gone, else as `get_file`.
    fn delete_file(
        &self,
        migration: &str,
        file_id: &str,
        expected: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Claims the database name `folded` (see [`crate::model::names::fold`]) for the migration
    /// `database`, once and for good; returns the migration that holds it: `database` itself
    /// when it claimed it now or before, another folder's name when that one did (two folders
    /// whose names SQL Server takes for one database never both migrate).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn claim_name(
        &self,
        folded: &str,
        database: &str,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Migrations in name order, at most `limit`, after the migration named `after`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn list_migrations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<MigrationRecord>, StoreError>> + Send;

    /// Every file record of a migration, oldest first. Reads them all: for what is in play,
    /// prefer [`StatusStore::list_files_in`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn list_files(
        &self,
        migration: &str,
    ) -> impl Future<Output = Result<Vec<Versioned<FileRecord>>, StoreError>> + Send;

    /// The migration's files now in `state`, most recently updated first, at most `limit`:
    /// what it reads follows how many files are in that state, not how many the migration has
    /// (DynamoDB: a query of the table's files-by-state index). Each record returned is as
    /// stored now, in `state`. A file that entered `state` a moment ago may be missing (the
    /// index is eventually consistent): a caller that just moved a file reads it with
    /// [`StatusStore::get_file`]. Files recorded before the store kept this index are not
    /// found ([`MigrationRecord::files_indexed`] says whether a migration's are).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn list_files_in(
        &self,
        migration: &str,
        state: FileState,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Versioned<FileRecord>>, StoreError>> + Send;

    /// How many of the migration's files are now in `state`, as [`StatusStore::list_files_in`]
    /// finds them (DynamoDB: a count of index keys, no record read).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    fn count_files_in(
        &self,
        migration: &str,
        state: FileState,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// True when [`StatusStore::list_files_in`] may not list yet a file that entered its state
    /// a moment ago (DynamoDB: the index is eventually consistent). The restore worker then
    /// plans again a little later when a file joined and had to wait, in case another file
    /// joined at the same moment and each missed the other. False unless said otherwise.
    fn lists_lag(&self) -> bool {
        false
    }
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
    /// The store refused the request itself (e.g. a key over its size limit): trying again
    /// cannot help.
    #[error("the status store refused the request: {0}")]
    Rejected(String),
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

/// Publishes events (Amazon EventBridge in production).
pub trait EventBus: Send + Sync {
    /// Publishes `events`, in their order as far as the bus keeps one.
    ///
    /// # Errors
    /// [`PublishError`] saying how many of the first events were published before it failed
    /// (those after may have been too: publishing again is harmless, each event keeps its
    /// `detail.id`).
    fn publish(
        &self,
        events: &[crate::report::events::Event],
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// Why events were not all published.
#[derive(Debug, thiserror::Error)]
#[error("the event bus took {published} event(s), then failed")]
pub struct PublishError {
    /// The first `published` events were published.
    pub published: usize,
    #[source]
    pub source: BoxError,
}

impl PublishError {
    /// Always: the bus refused for the moment (our events are well-formed), so publishing again
    /// later may succeed.
    pub fn is_transient(&self) -> bool {
        true
    }
}

/// The target SQL Server, in either dialect (`bakdrop-mssql` over tiberius in production).
///
/// Restores run as server-side tasks (an RDS task, or a SQL Server Agent job) that outlive the
/// connection: [`RestoreTarget::submit`] returns at once with a task id that
/// [`RestoreTarget::poll`] follows.
pub trait RestoreTarget: Send + Sync {
    /// The target's product version, e.g. "16.0.4135.4".
    ///
    /// # Errors
    /// [`TargetError`].
    fn product_version(&self) -> impl Future<Output = Result<String, TargetError>> + Send;

    /// The database's `state_desc` (e.g. "ONLINE", "RESTORING"), `None` when it does not exist.
    ///
    /// # Errors
    /// [`TargetError`].
    fn database_state(
        &self,
        database: &crate::model::names::DatabaseName,
    ) -> impl Future<Output = Result<Option<String>, TargetError>> + Send;

    /// Starts a restore task; returns its id.
    ///
    /// # Errors
    /// [`TargetError::Busy`] when the target runs as many tasks as it allows (retry later),
    /// [`TargetError::Sql`] when SQL Server refused, else as the others.
    fn submit(
        &self,
        request: &crate::tsql::RestoreRequest,
        task_name: &str,
    ) -> impl Future<Output = Result<TaskId, TargetError>> + Send;

    /// Finds a task submitted earlier for `request` under `task_name` (after a crash between
    /// submitting and recording), `None` if there is none.
    ///
    /// # Errors
    /// [`TargetError`].
    fn find_task(
        &self,
        request: &crate::tsql::RestoreRequest,
        task_name: &str,
    ) -> impl Future<Output = Result<Option<TaskId>, TargetError>> + Send;

    /// The task's state.
    ///
    /// # Errors
    /// [`TargetError`].
    fn poll(
        &self,
        database: &crate::model::names::DatabaseName,
        task: &TaskId,
    ) -> impl Future<Output = Result<TaskStatus, TargetError>> + Send;

    /// Whether the target can run `request` at all, before the first restore of a migration
    /// (native: an edition with SQL Server Agent, Agent running, a credential for `s3://`
    /// sources).
    ///
    /// # Errors
    /// [`TargetError::NotReady`] naming what is missing, else as the others.
    fn check_ready(
        &self,
        request: &crate::tsql::RestoreRequest,
    ) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Starts bringing a database restored WITH NORECOVERY online, as a server-side task
    /// ([`Online::Finishing`]) followed with [`RestoreTarget::poll`] and, once its success is
    /// recorded, forgotten with [`RestoreTarget::release_task`]: RDS `rds_finish_restore` starts a
    /// `FINISH_RESTORE` task; native runs `RESTORE DATABASE … WITH RECOVERY` as an Agent job
    /// named `task_name`. A finish task already under way for the database (native: the job of
    /// that name) is returned rather than started again. [`Online::Now`] when nothing was left
    /// to run.
    ///
    /// # Errors
    /// [`TargetError`]: `NotReady` when native SQL Server Agent is not running, `Sql` when SQL
    /// Server refused to start the task.
    fn bring_online(
        &self,
        database: &crate::model::names::DatabaseName,
        task_name: &str,
    ) -> impl Future<Output = Result<Online, TargetError>> + Send;

    /// Asks the target to stop a task (RDS `rds_cancel_task`, native `sp_stop_job`).
    ///
    /// # Errors
    /// [`TargetError`].
    fn cancel_task(&self, task: &TaskId) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Forgets a task `task_name` (submitted for `request`) that succeeded and whose outcome is
    /// recorded: native deletes its
    /// Agent job (`sp_delete_job`), so that msdb does not keep a job per restored backup; RDS
    /// keeps its own task list (staged stripe copies, if any, are deleted).
    ///
    /// # Errors
    /// [`TargetError`].
    fn release_task(
        &self,
        request: &crate::tsql::RestoreRequest,
        task: &TaskId,
        task_name: &str,
    ) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Drops a (half-restored) database (RDS `rds_drop_database`, native `DROP DATABASE`).
    ///
    /// # Errors
    /// [`TargetError`].
    fn drop_database(
        &self,
        database: &crate::model::names::DatabaseName,
    ) -> impl Future<Output = Result<(), TargetError>> + Send;
}

/// What [`RestoreTarget::bring_online`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Online {
    /// The database is online.
    Now,
    /// The target brings it online in this task (RDS `FINISH_RESTORE`, a native Agent job).
    Finishing(TaskId),
}

/// What keeps a target from running bakdrop's restores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// Native restores run as SQL Server Agent jobs; this edition (Express) has no Agent.
    #[error("SQL Server {edition} has no SQL Server Agent")]
    EditionWithoutAgent { edition: String },
    /// SQL Server Agent is installed but not running.
    #[error("SQL Server Agent is not running on the target")]
    AgentNotRunning,
    /// No credential's name is a prefix of the backup URL.
    #[error("the target has no credential for {url}")]
    NoCredential { url: String },
}

impl NotReady {
    /// True when only another target could help (the migration fails); otherwise the DBA fixes
    /// the target and the restore goes on by itself.
    pub fn is_permanent(&self) -> bool {
        matches!(self, NotReady::EditionWithoutAgent { .. })
    }
}

/// Where a task is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TaskStatus {
    /// Created or in progress, with percent complete where known.
    Running {
        percent: Option<f64>,
    },
    Succeeded,
    /// Failed, with SQL Server's error where the target reported one.
    Failed {
        sql_error: Option<crate::model::status::SqlError>,
        message: String,
    },
    Cancelled,
}

/// SQL Server errors that say nothing about the request: see [`TargetError::is_transient`].
pub const TRANSIENT_SQL_ERRORS: [u32; 14] = [
    233, 952, 1205, 1222, 4060, 10053, 10054, 10060, 10061, 18452, 18456, 40197, 40501, 40613,
];

/// Why the target could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("SQL Server error {number}: {message}")]
    Sql { number: u32, message: String },
    #[error("the target runs as many restore tasks as it allows; retry later")]
    Busy,
    #[error("cannot reach the target SQL Server")]
    Connection(#[source] BoxError),
    #[error("the target answered something unexpected: {0}")]
    Protocol(String),
    #[error("{0}")]
    NotReady(NotReady),
}

impl TargetError {
    /// True when trying again later may succeed: connection problems, a busy target, and SQL
    /// Server errors that are about the moment, not the request: a login refused (18456, 18452:
    /// a rotated secret is read again), the login's database unavailable (4060), a database in
    /// transition (952), connections broken or refused (233, 10053, 10054, 10060, 10061),
    /// deadlock and lock timeout (1205, 1222), Azure SQL's throttling (40197, 40501, 40613).
    pub fn is_transient(&self) -> bool {
        match self {
            TargetError::Busy | TargetError::Connection(_) => true,
            TargetError::Sql { number, .. } => TRANSIENT_SQL_ERRORS.contains(number),
            TargetError::Protocol(_) => false,
            TargetError::NotReady(n) => !n.is_permanent(),
        }
    }
}

// Shared ports (one store or queue behind several services, e.g. validation and the worker in
// one process, `bakdrop run`) and borrowed ones (a service built for one call over ports owned
// elsewhere, e.g. the complete-migration function's revalidation over its store and queue): a
// pointer to a port is the port.
macro_rules! port_through_pointers {
    ($trait:ident { $($items:tt)* }) => {
        impl<T: $trait + ?Sized> $trait for std::sync::Arc<T> {
            $($items)*
        }
        impl<T: $trait + ?Sized> $trait for &T {
            $($items)*
        }
    };
}

port_through_pointers!(ObjectReader {
    fn read(
        &self,
        object: &ObjectRef,
        range: ByteRange,
    ) -> impl Future<Output = Result<Vec<u8>, ReadError>> + Send {
        T::read(self, object, range)
    }
    fn check_current(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<(), ReadError>> + Send {
        T::check_current(self, object)
    }
});

port_through_pointers!(StatusStore {
    fn get_migration(
        &self,
        database: &str,
    ) -> impl Future<Output = Result<Option<Versioned<MigrationRecord>>, StoreError>> + Send {
        T::get_migration(self, database)
    }
    fn put_migration(
        &self,
        record: &MigrationRecord,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        T::put_migration(self, record, expected)
    }
    fn get_file(
        &self,
        migration: &str,
        file_id: &str,
    ) -> impl Future<Output = Result<Option<Versioned<FileRecord>>, StoreError>> + Send {
        T::get_file(self, migration, file_id)
    }
    fn put_file(
        &self,
        record: &FileRecord,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        T::put_file(self, record, expected)
    }
    fn delete_file(
        &self,
        migration: &str,
        file_id: &str,
        expected: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::delete_file(self, migration, file_id, expected)
    }
    fn list_files(
        &self,
        migration: &str,
    ) -> impl Future<Output = Result<Vec<Versioned<FileRecord>>, StoreError>> + Send {
        T::list_files(self, migration)
    }
    fn claim_name(
        &self,
        folded: &str,
        database: &str,
    ) -> impl Future<Output = Result<String, StoreError>> + Send {
        T::claim_name(self, folded, database)
    }
    fn list_migrations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<MigrationRecord>, StoreError>> + Send {
        T::list_migrations(self, after, limit)
    }
    fn list_files_in(
        &self,
        migration: &str,
        state: FileState,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Versioned<FileRecord>>, StoreError>> + Send {
        T::list_files_in(self, migration, state, limit)
    }
    fn count_files_in(
        &self,
        migration: &str,
        state: FileState,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        T::count_files_in(self, migration, state)
    }
    fn lists_lag(&self) -> bool {
        T::lists_lag(self)
    }
});

port_through_pointers!(JobQueue {
    fn send(
        &self,
        message: &QueueMessage,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        T::send(self, message, delay)
    }
});

port_through_pointers!(RestoreTarget {
    fn product_version(&self) -> impl Future<Output = Result<String, TargetError>> + Send {
        T::product_version(self)
    }
    fn database_state(
        &self,
        database: &crate::model::names::DatabaseName,
    ) -> impl Future<Output = Result<Option<String>, TargetError>> + Send {
        T::database_state(self, database)
    }
    fn submit(
        &self,
        request: &crate::tsql::RestoreRequest,
        task_name: &str,
    ) -> impl Future<Output = Result<TaskId, TargetError>> + Send {
        T::submit(self, request, task_name)
    }
    fn find_task(
        &self,
        request: &crate::tsql::RestoreRequest,
        task_name: &str,
    ) -> impl Future<Output = Result<Option<TaskId>, TargetError>> + Send {
        T::find_task(self, request, task_name)
    }
    fn poll(
        &self,
        database: &crate::model::names::DatabaseName,
        task: &TaskId,
    ) -> impl Future<Output = Result<TaskStatus, TargetError>> + Send {
        T::poll(self, database, task)
    }
    fn check_ready(
        &self,
        request: &crate::tsql::RestoreRequest,
    ) -> impl Future<Output = Result<(), TargetError>> + Send {
        T::check_ready(self, request)
    }
    fn bring_online(
        &self,
        database: &crate::model::names::DatabaseName,
        task_name: &str,
    ) -> impl Future<Output = Result<Online, TargetError>> + Send {
        T::bring_online(self, database, task_name)
    }
    fn cancel_task(&self, task: &TaskId) -> impl Future<Output = Result<(), TargetError>> + Send {
        T::cancel_task(self, task)
    }
    fn release_task(
        &self,
        request: &crate::tsql::RestoreRequest,
        task: &TaskId,
        task_name: &str,
    ) -> impl Future<Output = Result<(), TargetError>> + Send {
        T::release_task(self, request, task, task_name)
    }
    fn drop_database(
        &self,
        database: &crate::model::names::DatabaseName,
    ) -> impl Future<Output = Result<(), TargetError>> + Send {
        T::drop_database(self, database)
    }
});
