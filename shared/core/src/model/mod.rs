//! The model: what bakdrop records and passes around, at the bottom of the core (it imports
//! nothing else of the crate).
//!
//! - [`lsn`]: log sequence numbers as `RESTORE HEADERONLY` prints them.
//! - [`names`]: validated target database names, how they are quoted in T-SQL, and the task
//!   names derived from them.
//! - [`object`]: uploaded object identity and the `<prefix>/<TargetDatabase>/<file>` convention.
//! - [`version`]: SQL Server releases and the version policy (`same` / `not-newer`).
//! - [`header`]: what bakdrop keeps of a backup's header (type, LSNs, GUIDs, files).
//! - [`status`]: migration and file records, their states and reasons.
//! - [`chain`]: a restore step and what a migration has restored so far.
//! - [`task`]: the identity of a server-side task on the target.
//! - [`job`]: the versioned restore-queue message.

pub mod chain;
pub mod header;
pub mod job;
pub mod lsn;
pub mod names;
pub mod object;
pub mod status;
pub mod task;
pub mod version;
