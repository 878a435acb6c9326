//! bakdrop's core: everything that decides, nothing that talks to AWS or SQL Server.
//!
//! # Layers
//! Each layer imports only the layers above it in this list (no import cycle):
//! 1. [`model`]: records, restore steps and chain state, task ids, queue messages, names, LSNs,
//!    object identities, SQL Server versions.
//! 2. [`backup`]: reads SQL Server native backups (MTF / compressed MSSQLBAK) from a bounded
//!    head and tail, without a SQL Server, and the file-level preconditions on what it read.
//! 3. [`plan`]: the restore-chain planner (which file to apply, wait for, skip).
//! 4. [`tsql`]: the T-SQL of both target dialects (RDS procedures, native RESTORE in Agent
//!    jobs) and where the target reads a backup from.
//! 5. [`report`]: what people and subscribers read of the records: the status document and
//!    the events of each write.
//! 6. [`ports`]: the traits adapters implement (object reader, status store, job queue,
//!    target, event bus), the store's compare-and-set rule, and in-memory fakes for tests
//!    (feature `test-support`).
//! 7. [`services`]: [`validate`] (one uploaded object), [`restore`] (the worker: its rules as
//!    pure functions in `decide`, performed by its executor), [`cutover`] (Complete, Cancel,
//!    Reset), [`retry`] (the read-modify-write every service writes its records with),
//!    [`files`] (a migration's files by state, and its report read from the store), [`pace`]
//!    (when to look at a running restore again). Each service is also reachable at the crate's
//!    root (`bakdrop_core::validate`, …).

pub mod model;

pub mod backup;

pub mod plan;

pub mod tsql;

pub mod report;

pub mod ports;

pub mod services;
pub use services::{cutover, files, pace, restore, retry, validate};

pub use model::lsn::Lsn;
pub use model::names::DatabaseName;
