//! The command line's stand-ins for the stack's components, each implementing a port of the
//! core as the Lambda functions' adapters do: backups read from local files in place of S3
//! (`local`), the restore queue inside the process (`queue`), the status table as a JSON file
//! (`store`), and the target SQL Server through tiberius or as a script (`target`).

pub mod local;
pub mod queue;
pub mod store;
pub mod target;
