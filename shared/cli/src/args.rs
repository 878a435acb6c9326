//! The command line as clap reads it: the subcommands, their arguments and their help text.

use std::path::PathBuf;

use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::tsql::Dialect;
use clap::{Parser, Subcommand};

use crate::planning;

/// Drop SQL Server native backups into S3; get the database restored on the target.
///
/// On one machine: `inspect` and `plan` read backups without a SQL Server; `run` drives the
/// whole pipeline over a folder (one sub-folder per target database), against a SQL Server or
/// in script-only mode; `status`, `complete` and `cancel` work on the state `run` leaves, or on a
/// deployed stack (`--function`: its functions; `--table`: its status table).
#[derive(Debug, Parser)]
#[command(name = "bakdrop", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const CONNECTION_HELP: &str = "Target SQL Server: host=..;port=..;user=..;password=..;tls=off|verify|trust-server-certificate|ca:<file> (port 1433 and tls verify by default). Instead of password=: password-env=NAME (from that environment variable) or password-file=PATH (the file's text less its final line break), for a password holding ';' and to keep it out of the shell's history; the password is never printed, in part or whole. Without --target: script-only mode";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read backup headers (head and tail of each file only) and say whether bakdrop takes them.
    ///
    /// Exit status 0 when every file is usable, 1 when one is not (its reason has a stable
    /// code), 2 when a path cannot be read at all.
    Inspect {
        /// Backup files (.bak, .trn) or folders (searched recursively; hidden entries skipped).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON (one object per file) instead of text.
        #[arg(long)]
        json: bool,
        /// Also check each file against this target SQL Server version (e.g. 2022, 16, 957).
        #[arg(long)]
        target: Option<String>,
        /// Version policy for --target: same (default) or not-newer.
        #[arg(long, default_value = "same")]
        policy: String,
    },
    /// Plan what `run` would restore from the backups under some paths, per target database.
    ///
    /// Reads every backup (head and tail only) and validates it as `run` does (nothing is
    /// written): a folder's files are keyed as `run` keys them (DIR/<TargetDatabase>/<file>, or
    /// the backup-type layout DIR/<Server$Instance>/<Database>/FULL|DIFF|LOG/<file>; a folder
    /// holding backups itself is their database folder); files given one by one are planned as
    /// the database inside them. Prints, per database, the restore sequence (file, type, LSN
    /// range) — the one the restore worker applies —, the files it would reject or skip and
    /// why (with stable codes), what stops it, and the T-SQL to run.
    /// Exit status 2 when a file would be rejected or a database cannot proceed (no full, a
    /// gap, a broken chain), 0 otherwise.
    Plan(PlanArgs),
    /// Run the whole pipeline on one machine over a folder standing in for the bucket.
    ///
    /// Exit status 0 when every migration proceeds and no file was rejected; 1 when a file was
    /// rejected, a migration failed or cannot proceed (no full, a gap), or an entry cannot be
    /// read; 2 when it could not run at all.
    ///
    /// Every file DIR/<TargetDatabase>/<file> is an upload event: it is validated (the same
    /// Validator as the validate-upload function), queued in memory, and restored by the same
    /// Worker as the restore-worker function. State goes to a JSON file (default
    /// DIR/.bakdrop/status.json) that `status`, `complete` and `cancel` read afterwards.
    /// Running twice re-applies nothing. Without --target (script-only mode) the T-SQL is written
    /// to DIR/.bakdrop/restore.sql, NOT executed, and every restore is reported as succeeded.
    Run(RunArgs),
    /// Show the status of one migration or of all (from the local state file).
    ///
    /// Exit status 1 when the named database is unknown.
    Status {
        /// Target database (default: every migration).
        database: Option<String>,
        /// Print the status document as JSON (as the migration-status function answers;
        /// schemas/status.schema.json).
        #[arg(long)]
        json: bool,
        /// Keep showing the status of the local state file (every 2 s; on a terminal redrawn in
        /// place, with the percent complete of the restore in flight) until Ctrl-C.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Complete a migration: bring the database online (WITH RECOVERY).
    ///
    /// Refused unless the migration is Synchronizing with nothing queued, waiting or restoring.
    /// With --when-restored FILE, Complete is armed instead: it runs by itself, with the same
    /// guards (FILE as --last-backup), once FILE is restored and nothing is in flight (the
    /// restore worker, or the next `bakdrop run`, runs it); --disarm cancels that.
    Complete(CompleteArgs),
    /// Cancel a migration: stop the restore in flight and drop the half-restored database.
    Cancel {
        /// Target database.
        database: String,
        #[command(flatten)]
        state: StateArgs,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Reset a cancelled migration: forget its files and chain, so that its database folder
    /// takes a new migration (upload the backups again; `bakdrop run` re-reads its folder).
    ///
    /// Refused unless the migration is Cancelled. Needs no target.
    Reset {
        /// Target database.
        database: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

/// What `bakdrop plan` is given.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Backup files or folders (searched recursively; hidden entries skipped).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// T-SQL dialect: rds (msdb.dbo.rds_restore_*, S3 ARNs) or native (RESTORE FROM DISK).
    #[arg(long, default_value = "rds")]
    pub dialect: Dialect,
    /// Bucket name in RDS ARNs (default: the placeholder <bucket>).
    #[arg(long, default_value = planning::DEFAULT_BUCKET)]
    pub bucket: String,
    /// Print JSON (schemas/plan.schema.json): [{"database", "steps": [{"files",
    /// "backup_type", "first_lsn", "last_lsn", "sql"}], "skipped"/"rejected": [{"file",
    /// "code", "reason"}], "problems": [{"code", "message", "file"}]}].
    #[arg(long)]
    pub json: bool,
    /// Restore every file as this target database. Native restores name the database's
    /// files after it.
    #[arg(long)]
    pub database: Option<String>,
    /// Validate against this SQL Server version, as `run --target-version` (default: no
    /// version check, said once).
    #[arg(long)]
    pub target_version: Option<String>,
    /// Version policy: same (default) or not-newer.
    #[arg(long, default_value = "same")]
    pub policy: VersionPolicy,
    #[command(flatten)]
    pub directories: PathArgs,
}

/// What `bakdrop run` is given.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The folder: one sub-folder per target database.
    pub dir: PathBuf,
    #[arg(long, help = CONNECTION_HELP)]
    pub target: Option<String>,
    /// rds (RDS procedures, S3 ARNs) or native (RESTORE FROM DISK = DIR's absolute path, for
    /// a local SQL Server 2022).
    #[arg(long, default_value = "rds")]
    pub dialect: Dialect,
    /// Keep watching DIR (every second; a new or changed file is a new event) until Ctrl-C;
    /// on a terminal, a live line shows each migration's progress.
    #[arg(long)]
    pub watch: bool,
    /// State file (default DIR/.bakdrop/status.json).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Validate against this SQL Server version (2017, 2019, 2022, 2025, 16, 957, ...).
    /// Default: the target's own version with --target; without --target, no version check
    /// (said once). Files rejected for the version or policy are checked again when a run
    /// gives other settings.
    #[arg(long)]
    pub target_version: Option<String>,
    /// Version policy: same (default) or not-newer.
    #[arg(long, default_value = "same")]
    pub policy: VersionPolicy,
    /// Delay between polls of a running restore, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub poll_interval_ms: u64,
    /// A file named bakdrop-complete.json in a database folder arms (or disarms) its
    /// Complete, as the stack's CompleteByUpload=enabled does; without this flag it is
    /// ignored.
    #[arg(long)]
    pub complete_by_upload: bool,
    #[command(flatten)]
    pub directories: PathArgs,
}

/// What `bakdrop complete` is given.
#[derive(Debug, clap::Args)]
pub struct CompleteArgs {
    /// Target database.
    pub database: String,
    /// Refuse unless this file name is the last one restored.
    #[arg(long, conflicts_with_all = ["when_restored", "disarm"])]
    pub last_backup: Option<String>,
    /// Arm Complete: run it by itself once this file (the last backup's file name) is
    /// restored.
    #[arg(long, value_name = "FILE", conflicts_with = "disarm")]
    pub when_restored: Option<String>,
    /// Cancel an armed Complete.
    #[arg(long)]
    pub disarm: bool,
    /// Refuse unless the last restored backup is a tail-log backup.
    #[arg(long, conflicts_with = "disarm")]
    pub require_tail_log: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// State file written by `bakdrop run`.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The folder given to `bakdrop run` (state file DIR/.bakdrop/status.json; default: the
    /// current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A deployed stack's DynamoDB status table (stack output StatusTableName), read with your
    /// AWS credentials; with AWS_ENDPOINT_URL set, the local AWS endpoint's. Complete and cancel
    /// then need --target (they run from this machine); prefer --function.
    #[arg(long, conflicts_with_all = ["state", "dir"])]
    pub table: Option<String>,
    /// A deployed stack's function, invoked with your AWS credentials: for status the
    /// migration-status function (stack output MigrationStatusFunctionName), for complete and
    /// cancel the complete-migration function (CompleteMigrationFunctionName), which runs them
    /// inside the stack's VPC. With AWS_ENDPOINT_URL_LAMBDA set, that endpoint's function.
    #[arg(long, conflicts_with_all = ["state", "dir", "table"])]
    pub function: Option<String>,
}

/// Where native full restores put the database's files.
#[derive(Debug, clap::Args)]
pub struct PathArgs {
    /// Directory for the data files (native; default: the target's InstanceDefaultDataPath,
    /// or /var/opt/mssql/data/ in scripts written without a server).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Directory for the log file (native; default: the target's InstanceDefaultLogPath, or
    /// the data directory given, or /var/opt/mssql/data/).
    #[arg(long)]
    pub log_dir: Option<String>,
}

impl PathArgs {
    /// The directories given, if any (the log's defaulting to the data's).
    pub fn given(&self) -> Option<bakdrop_core::tsql::TargetPaths> {
        let default = bakdrop_core::tsql::TargetPaths::linux_default();
        match (&self.data_dir, &self.log_dir) {
            (None, None) => None,
            (data, log) => {
                let data = data.clone().unwrap_or(default.data);
                Some(bakdrop_core::tsql::TargetPaths {
                    log: log.clone().unwrap_or_else(|| data.clone()),
                    data,
                })
            }
        }
    }

    /// The directories given, else SQL Server on Linux's default.
    pub fn or_default(&self) -> bakdrop_core::tsql::TargetPaths {
        self.given()
            .unwrap_or_else(bakdrop_core::tsql::TargetPaths::linux_default)
    }
}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    #[arg(long, help = CONNECTION_HELP)]
    pub target: Option<String>,
    /// rds or native (default: the dialect `bakdrop run` used for the folder, else rds).
    #[arg(long)]
    pub dialect: Option<Dialect>,
}
