//! bakdrop's core: everything that decides, nothing that talks to AWS or SQL Server.
//!
//! # Layout
//! - [`backup`]: reads SQL Server native backups (MTF / compressed MSSQLBAK) from a bounded head
//!   and tail, without a SQL Server.
//! - [`conditional`]: the status store's compare-and-set rule on a map held in memory.
//! - [`cutover`]: Complete (guarded, or armed in advance), Cancel and Reset.
//! - [`events`]: the events of each write (state changes, file verdicts), their JSON Schema.
//! - [`summary`]: the file-level preconditions on a parsed backup (one set, supported type).
//! - [`version`]: SQL Server releases and the version policy (`same` / `not-newer`).
//! - [`lsn`]: log sequence numbers as `RESTORE HEADERONLY` prints them.
//! - [`names`]: validated target database names, how they are quoted in T-SQL, and the task
//!   names derived from them.
//! - [`object`]: uploaded object identity and the `<prefix>/<TargetDatabase>/<file>` convention.
//! - [`status`]: migration and file records, their states and reasons.
//! - [`files`]: a migration's files by state, read without reading every file it ever had.
//! - [`job`]: the versioned restore-queue message.
//! - [`plan`]: the restore-chain planner (which file to apply, wait for, skip).
//! - [`pace`]: when to look at a running restore again (from its progress and earlier speeds).
//! - [`report`]: the status document a DBA reads.
//! - [`restore`]: the restore worker's core (submit, poll, advance the chain).
//! - [`source`]: where the target reads a backup (ARN, URL, path) and what each allows.
//! - [`ports`]: the traits adapters implement (object reader, status store, job queue).
//! - [`tsql`]: the T-SQL of both target dialects (RDS procedures, native RESTORE in Agent jobs).
//! - [`validate`]: validation of one uploaded object (the validate-upload function's core).
//! - [`fakes`]: in-memory ports for tests (feature `test-support`).

pub mod backup;
pub mod conditional;
pub mod cutover;
pub mod events;
#[cfg(any(test, feature = "test-support"))]
pub mod fakes;
pub mod files;
pub mod job;
pub mod lsn;
pub mod names;
pub mod object;
pub mod pace;
pub mod plan;
pub mod ports;
pub mod report;
pub mod restore;
pub mod source;
pub mod status;
pub mod summary;
pub mod tsql;
pub mod validate;
pub mod version;

pub use lsn::Lsn;
pub use names::DatabaseName;
