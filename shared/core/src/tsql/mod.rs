//! The T-SQL bakdrop sends, for both target dialects, as text plus parameters.
//!
//! Rules: the database name is the only identifier and is always emitted through
//! [`DatabaseName::quoted`]; every other value is a parameter (`@P1`, `@P2`, … in tiberius'
//! numbering). The one place a value must become literal text is the command of a SQL Server
//! Agent job step (a job step takes no parameters): there the value is a validated
//! [`RestoreSource`] emitted as an `N'…'` literal with every `'` doubled, and the whole command is
//! itself passed to `sp_add_jobstep` as a parameter.

pub mod source;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::header::{BackupKind, DatabaseFile, DatabaseFileKind};
use crate::model::names::DatabaseName;

/// Which kind of SQL Server the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Amazon RDS for SQL Server: `msdb.dbo.rds_*` procedures, objects read by S3 ARN.
    Rds,
    /// SQL Server 2022+ on EC2 or on premises: `RESTORE … FROM URL|DISK` in an Agent job.
    Native,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "rds" => Ok(Dialect::Rds),
            "native" => Ok(Dialect::Native),
            other => Err(format!(
                "unknown dialect {other:?}: use \"rds\" or \"native\""
            )),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Rds => "rds",
            Dialect::Native => "native",
        })
    }
}

/// Where the target reads a backup from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreSource {
    /// An S3 object or prefix, which RDS reads as `arn:<partition>:s3:::bucket/key`.
    S3Arn(S3Arn),
    /// `s3://endpoint/bucket/key` for `RESTORE … FROM URL` (SQL Server 2022).
    Url(String),
    /// A path on the server for `RESTORE … FROM DISK` (local testing).
    Disk(String),
}

/// Why a source cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("backup source {0:?} contains a control character")]
    ControlCharacter(String),
    #[error("backup source is empty")]
    Empty,
    #[error("backup source {0:?} is longer than 1024 characters")]
    TooLong(String),
    /// SQL Server 2022 reads `s3://` URLs of at most [`MAX_URL_LENGTH`] characters, `s3://`
    /// included ("SQL Server backup to URL for S3-compatible object storage", Limitations).
    #[error("the backup URL is {length} characters long; SQL Server reads s3:// URLs of at most {MAX_URL_LENGTH} characters (s3:// included): shorten the bucket, folder or file name")]
    UrlTooLong { length: usize },
}

/// The longest `s3://` URL SQL Server 2022 reads, `s3://` included.
pub const MAX_URL_LENGTH: usize = 259;

/// An S3 object, or every object under a key prefix, as Amazon RDS reads it: rendered
/// `arn:<partition>:s3:::bucket/key`, a prefix with `*` after it (a striped set's files).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct S3Arn {
    /// The ARN partition (`aws`, `aws-cn`, …: [`source::partition_of`]).
    pub partition: String,
    pub bucket: String,
    /// The object's key, or the prefix.
    pub key: String,
    /// True: every object whose key starts with `key`.
    pub prefix: bool,
}

impl S3Arn {
    /// One object.
    pub fn object(partition: &str, bucket: &str, key: &str) -> Self {
        S3Arn {
            partition: partition.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            prefix: false,
        }
    }

    /// Every object under `prefix`.
    pub fn under(partition: &str, bucket: &str, prefix: &str) -> Self {
        S3Arn {
            prefix: true,
            ..S3Arn::object(partition, bucket, prefix)
        }
    }
}

impl std::fmt::Display for S3Arn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let star = if self.prefix { "*" } else { "" };
        write!(
            f,
            "arn:{}:s3:::{}/{}{star}",
            self.partition, self.bucket, self.key
        )
    }
}

impl RestoreSource {
    /// What the target reads: the ARN, the URL or the path.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            RestoreSource::S3Arn(arn) => arn.to_string().into(),
            RestoreSource::Url(t) | RestoreSource::Disk(t) => t.as_str().into(),
        }
    }

    /// Checks what every source must satisfy before it reaches any statement.
    ///
    /// # Errors
    /// [`SourceError`] when the text is empty, too long or holds control characters.
    pub fn validate(&self) -> Result<(), SourceError> {
        let text = self.text();
        if text.is_empty() {
            return Err(SourceError::Empty);
        }
        if text.chars().count() > 1024 {
            return Err(SourceError::TooLong(text.into_owned()));
        }
        // The documented limit counts characters; UTF-16 units are the stricter reading.
        let length = text.encode_utf16().count();
        if matches!(self, RestoreSource::Url(_)) && length > MAX_URL_LENGTH {
            return Err(SourceError::UrlTooLong { length });
        }
        if text.chars().any(char::is_control) {
            return Err(SourceError::ControlCharacter(text.into_owned()));
        }
        Ok(())
    }
}

/// A value as an `N'…'` literal for the one place a literal is unavoidable (an Agent job step):
/// every `'` doubled, and every `$(` split into `$' + N'(` so that SQL Server Agent never sees a
/// job-step token in it ("Use Tokens in Job Steps": an unescaped token fails the step, an
/// escaped one is replaced). The result is an expression, valid where T-SQL takes one (a
/// `DECLARE` initialiser), which is why the step declares its values as variables first.
fn step_literal(value: &str) -> String {
    format!("N'{}'", value.replace('\'', "''").replace("$(", "$' + N'("))
}

/// A statement and its parameter values, in `@P1…` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Param {
    Text(String),
    Int(i32),
    BigInt(i64),
    Guid(uuid::Uuid),
}

impl fmt::Display for Statement {
    /// The statement as a DBA would run it by hand: parameters shown as `DECLARE`s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.params.iter().enumerate() {
            match p {
                Param::Text(t) => writeln!(
                    f,
                    "DECLARE @P{} nvarchar(max) = N'{}';",
                    i + 1,
                    t.replace('\'', "''")
                )?,
                Param::Int(v) => writeln!(f, "DECLARE @P{} int = {v};", i + 1)?,
                Param::BigInt(v) => writeln!(f, "DECLARE @P{} bigint = {v};", i + 1)?,
                Param::Guid(v) => writeln!(f, "DECLARE @P{} uniqueidentifier = '{v}';", i + 1)?,
            }
        }
        write!(f, "{};", self.sql)
    }
}

fn text(value: &str) -> Param {
    Param::Text(value.to_owned())
}

/// One restore: a full or differential (`RESTORE DATABASE`) or a log (`RESTORE LOG`) from one or
/// more sources (stripes), always `WITH NORECOVERY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub database: DatabaseName,
    pub kind: BackupKind,
    pub sources: Vec<RestoreSource>,
    /// The backup's files (its header's file list): a native full restore moves each of them to
    /// the target's own directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<DatabaseFile>,
    /// The backup carries checksums: a native restore verifies them (`WITH CHECKSUM` on a backup
    /// without checksums fails with error 3187).
    #[serde(default)]
    pub checksums: bool,
    /// The S3 region of the bucket of `s3://` sources, when it is not SQL Server's default
    /// (`us-east-1`): `RESTORE_OPTIONS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<S3Region>,
}

impl RestoreRequest {
    /// A request without file list, checksums or region (RDS reads all of that itself).
    pub fn new(database: DatabaseName, kind: BackupKind, sources: Vec<RestoreSource>) -> Self {
        RestoreRequest {
            database,
            kind,
            sources,
            files: Vec::new(),
            checksums: false,
            s3_region: None,
        }
    }
}

/// An AWS region name (`eu-west-1`): lower-case letters, digits and dashes only, so that it can
/// stand in the one JSON literal of `RESTORE_OPTIONS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct S3Region(String);

impl S3Region {
    /// Checks a region name.
    ///
    /// # Errors
    /// A sentence when the name is empty, longer than 32 characters or holds anything but
    /// `a-z`, `0-9` and `-`.
    pub fn parse(text: &str) -> Result<S3Region, String> {
        let ok = !text.is_empty()
            && text.len() <= 32
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(S3Region(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not an AWS region name (lower-case letters, digits and dashes, e.g. eu-west-1)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SQL Server's S3 connector assumes this region when none is given.
    pub fn is_sql_server_default(&self) -> bool {
        self.0 == "us-east-1"
    }
}

impl TryFrom<String> for S3Region {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        S3Region::parse(&text)
    }
}

impl From<S3Region> for String {
    fn from(region: S3Region) -> String {
        region.0
    }
}

impl fmt::Display for S3Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a native restore puts the database's files: the target's default data and log
/// directories (`SERVERPROPERTY('InstanceDefaultDataPath')`, `'InstanceDefaultLogPath'`) or the
/// directories the settings name instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetPaths {
    pub data: String,
    pub log: String,
}

impl TargetPaths {
    /// SQL Server on Linux's default for both (`/var/opt/mssql/data/`), for scripts written
    /// without a server to ask.
    pub fn linux_default() -> TargetPaths {
        TargetPaths {
            data: "/var/opt/mssql/data/".into(),
            log: "/var/opt/mssql/data/".into(),
        }
    }
}

/// One `MOVE 'logical' TO 'physical'` of a native restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMove {
    pub logical_name: String,
    pub physical_name: String,
}

/// Up to 50 characters of `name` that any file system takes: letters and digits (any script),
/// `_`, `-` and `.`; everything else becomes `_`.
fn file_name_part(name: &str) -> String {
    name.chars()
        .take(50)
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u32 {
    crate::model::names::stable_hash(bytes)
}

/// `directory` + `name`, with the directory's own separator (`\` for a Windows path, else `/`).
fn join_path(directory: &str, name: &str) -> String {
    let windows = directory.contains('\\') && !directory.contains('/');
    let separator = if windows { '\\' } else { '/' };
    if directory.ends_with(['/', '\\']) {
        format!("{directory}{name}")
    } else {
        format!("{directory}{separator}{name}")
    }
}

/// Statements for the Amazon RDS dialect.
pub mod rds {
    use super::*;

    /// `rds_restore_database` (full / differential) or `rds_restore_log`, `@with_norecovery=1`.
    /// A striped set is restored from one prefix ARN ending in `*`: pass exactly one source.
    pub fn restore(request: &RestoreRequest) -> Statement {
        let arn = request
            .sources
            .first()
            .map(|s| s.text().into_owned())
            .unwrap_or_default();
        match request.kind {
            BackupKind::Log => Statement {
                sql: "exec msdb.dbo.rds_restore_log @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1".into(),
                params: vec![text(request.database.as_str()), text(&arn)],
            },
            kind => Statement {
                sql: "exec msdb.dbo.rds_restore_database @restore_db_name=@P1, @s3_arn_to_restore_from=@P2, @with_norecovery=1, @type=@P3".into(),
                params: vec![
                    text(request.database.as_str()),
                    text(&arn),
                    text(if kind == BackupKind::Full { "FULL" } else { "DIFFERENTIAL" }),
                ],
            },
        }
    }

    /// `rds_task_status` for one task.
    pub fn task_status(database: &DatabaseName, task_id: i64) -> Statement {
        Statement {
            sql: "exec msdb.dbo.rds_task_status @db_name=@P1, @task_id=@P2".into(),
            params: vec![text(database.as_str()), Param::BigInt(task_id)],
        }
    }

    /// Every task on the instance (to count the ones running against RDS's limit).
    pub fn all_tasks() -> Statement {
        Statement {
            sql: "exec msdb.dbo.rds_task_status".into(),
            params: vec![],
        }
    }

    /// Every task of a database (to find a task submitted before a crash).
    pub fn tasks_of(database: &DatabaseName) -> Statement {
        Statement {
            sql: "exec msdb.dbo.rds_task_status @db_name=@P1".into(),
            params: vec![text(database.as_str())],
        }
    }

    /// `rds_finish_restore`: bring the database online.
    pub fn finish(database: &DatabaseName) -> Statement {
        Statement {
            sql: "exec msdb.dbo.rds_finish_restore @db_name=@P1".into(),
            params: vec![text(database.as_str())],
        }
    }

    /// `rds_cancel_task`.
    pub fn cancel(task_id: i64) -> Statement {
        Statement {
            sql: "exec msdb.dbo.rds_cancel_task @task_id=@P1".into(),
            params: vec![Param::BigInt(task_id)],
        }
    }

    /// `rds_drop_database`.
    pub fn drop_database(database: &DatabaseName) -> Statement {
        Statement {
            sql: "exec msdb.dbo.rds_drop_database @db_name=@P1".into(),
            params: vec![text(database.as_str())],
        }
    }
}

/// Statements for SQL Server 2022+ (EC2 / on premises).
pub mod native {
    use super::*;

    /// Where each file of `request`'s backup goes on the target: into `paths.data` (data
    /// files, FILESTREAM and full-text containers) or `paths.log` (the log), under a name made of
    /// the *target* database's name and the logical name (each cut to 50 characters and kept to
    /// letters, digits, `_`, `-` and `.`), plus a hash of both. Two migrations of one source
    /// database into two names therefore never share a file (error 1834), and a Windows path in
    /// the backup never reaches a Linux target (errors 5133/3156). Extensions: `.mdf` for the
    /// primary file (file id 1), `.ndf` for other data files, `.ldf` for the log.
    pub fn file_moves(request: &RestoreRequest, paths: &TargetPaths) -> Vec<FileMove> {
        request
            .files
            .iter()
            .map(|file| {
                let (directory, extension) = match file.kind {
                    DatabaseFileKind::Log => (&paths.log, "ldf"),
                    DatabaseFileKind::Data if file.file_id == 1 => (&paths.data, "mdf"),
                    DatabaseFileKind::Data => (&paths.data, "ndf"),
                };
                let owner = request.database.as_str();
                let hash = fnv1a(format!("{owner}\0{}", file.logical_name).as_bytes());
                let name = format!(
                    "{}_{}_{hash:08x}.{extension}",
                    file_name_part(owner),
                    file_name_part(&file.logical_name)
                );
                FileMove {
                    logical_name: file.logical_name.clone(),
                    physical_name: join_path(directory, &name),
                }
            })
            .collect()
    }

    /// The `RESTORE` the Agent job step runs: every value declared first as a variable from an
    /// escaped literal (see [`step_literal`]), then `RESTORE DATABASE|LOG @db FROM DISK|URL = @s1
    /// [, …] WITH NORECOVERY[, CHECKSUM][, MOVE @m1 TO @p1, …], STATS = 5[, RESTORE_OPTIONS]`.
    /// `MOVE` only for a full restore (it creates the files; later restores use them), and only
    /// when `paths` is given; `CHECKSUM` only when the backup has checksums; `RESTORE_OPTIONS`
    /// only for `s3://` sources in a region other than SQL Server's default.
    pub fn restore_command(request: &RestoreRequest, paths: Option<&TargetPaths>) -> String {
        let mut declared = vec![format!(
            "@db sysname = {}",
            step_literal(request.database.as_str())
        )];
        let mut from = Vec::new();
        let mut url = false;
        for (i, source) in request.sources.iter().enumerate() {
            let n = i + 1;
            declared.push(format!(
                "@s{n} nvarchar(4000) = {}",
                step_literal(&source.text())
            ));
            let device = match source {
                RestoreSource::Disk(_) => "DISK",
                RestoreSource::Url(_) | RestoreSource::S3Arn(_) => {
                    url = true;
                    "URL"
                }
            };
            from.push(format!("{device} = @s{n}"));
        }
        let mut with = vec!["NORECOVERY".to_owned()];
        if request.checksums {
            with.push("CHECKSUM".into());
        }
        if let (BackupKind::Full, Some(paths)) = (request.kind, paths) {
            for (i, m) in file_moves(request, paths).iter().enumerate() {
                let n = i + 1;
                declared.push(format!("@m{n} sysname = {}", step_literal(&m.logical_name)));
                declared.push(format!(
                    "@p{n} nvarchar(4000) = {}",
                    step_literal(&m.physical_name)
                ));
                with.push(format!("MOVE @m{n} TO @p{n}"));
            }
        }
        with.push("STATS = 5".into());
        if let Some(region) = request
            .s3_region
            .as_ref()
            .filter(|r| url && !r.is_sql_server_default())
        {
            // The region is checked to be [a-z0-9-]: the one literal here holds nothing else.
            with.push(format!(
                "RESTORE_OPTIONS = '{{\"s3\": {{\"region\":\"{region}\"}}}}'"
            ));
        }
        let verb = if request.kind == BackupKind::Log {
            "RESTORE LOG"
        } else {
            "RESTORE DATABASE"
        };
        format!(
            "DECLARE {}; {verb} @db FROM {} WITH {}",
            declared.join(", "),
            from.join(", "),
            with.join(", ")
        )
    }

    /// Creates and starts a one-off Agent job running `command`, named `job_name`, in one batch:
    /// if any step of the submission fails (e.g. 22022, Agent not running), the job it created
    /// is deleted again and the error re-raised, so that no job is left that was never started.
    /// A job that exists already (14261) is not this submission's and is left alone. The job
    /// is kept once started (sp_add_job's default `@delete_level = 0`) so that its outcome can be
    /// read, and so that a worker that crashed after submitting finds it by name instead of
    /// submitting a second RESTORE.
    pub fn submit_job(job_name: &str, command: &str) -> Statement {
        Statement {
            sql: [
                "DECLARE @job_id uniqueidentifier;",
                "BEGIN TRY",
                "EXEC msdb.dbo.sp_add_job @job_name=@P1, @job_id=@job_id OUTPUT;",
                "EXEC msdb.dbo.sp_add_jobstep @job_id=@job_id, @step_name=N'restore', @subsystem=N'TSQL', @database_name=N'master', @command=@P2;",
                "EXEC msdb.dbo.sp_add_jobserver @job_id=@job_id;",
                "EXEC msdb.dbo.sp_start_job @job_id=@job_id;",
                "END TRY",
                "BEGIN CATCH",
                "IF @job_id IS NOT NULL EXEC msdb.dbo.sp_delete_job @job_id=@job_id;",
                "THROW;",
                "END CATCH;",
                "SELECT @job_id AS job_id",
            ]
            .join(" "),
            params: vec![text(job_name), text(command)],
        }
    }

    /// The job's id, by name (no row: no such job).
    pub fn job_id(job_name: &str) -> Statement {
        Statement {
            sql: "SELECT job_id FROM msdb.dbo.sysjobs WHERE name = @P1".into(),
            params: vec![text(job_name)],
        }
    }

    /// The current SQL Server Agent session (`msdb.dbo.syssessions`: a row per Agent start).
    pub fn agent_session() -> Statement {
        Statement {
            sql: "SELECT MAX(session_id) AS session_id FROM msdb.dbo.syssessions".into(),
            params: vec![],
        }
    }

    /// Whether the job runs now: an activity row of the current Agent session (`session`, from
    /// [`agent_session`]) started and not stopped. Rows of earlier Agent sessions can stay without
    /// a stop date when Agent stopped under a running job ("dbo.sysjobactivity").
    pub fn job_running(job_id: uuid::Uuid, session: i32) -> Statement {
        Statement {
            sql: "SELECT COUNT(*) AS running FROM msdb.dbo.sysjobactivity WHERE job_id = @P1 AND session_id = @P2 AND start_execution_date IS NOT NULL AND stop_execution_date IS NULL".into(),
            params: vec![Param::Guid(job_id), Param::Int(session)],
        }
    }

    /// Whether the job was running when SQL Server Agent last stopped: an activity row of an
    /// earlier Agent session (before `session`) started and never stopped. Such a job's RESTORE
    /// was interrupted and it has no outcome.
    pub fn job_interrupted(job_id: uuid::Uuid, session: i32) -> Statement {
        Statement {
            sql: "SELECT COUNT(*) AS interrupted FROM msdb.dbo.sysjobactivity WHERE job_id = @P1 AND session_id < @P2 AND start_execution_date IS NOT NULL AND stop_execution_date IS NULL".into(),
            params: vec![Param::Guid(job_id), Param::Int(session)],
        }
    }

    /// The outcome of the job's restore step, newest first (`run_status` 1 succeeded, 0 failed,
    /// 3 cancelled; `sql_message_id` SQL Server's error number).
    pub fn job_outcome(job_id: uuid::Uuid) -> Statement {
        Statement {
            sql: "SELECT TOP 1 run_status, sql_message_id, message FROM msdb.dbo.sysjobhistory WHERE job_id = @P1 AND step_id = 1 ORDER BY instance_id DESC".into(),
            params: vec![Param::Guid(job_id)],
        }
    }

    /// The session running the job's step: SQL Server Agent names it `SQLAgent - TSQL JobStep
    /// (Job 0x<job_id as binary(16)> : Step 1)`. Seeing other sessions needs VIEW SERVER STATE
    /// ("sys.dm_exec_sessions").
    pub fn job_step_session(job_id: uuid::Uuid) -> Statement {
        Statement {
            sql: "SELECT session_id FROM sys.dm_exec_sessions WHERE program_name = @P1".into(),
            params: vec![text(&job_step_program_name(job_id))],
        }
    }

    /// `program_name` of the session running step 1 of the job: the job id in SQL Server's
    /// `binary(16)` byte order (the first three groups little-endian), upper-case hex.
    pub fn job_step_program_name(job_id: uuid::Uuid) -> String {
        let hex: String = job_id
            .to_bytes_le()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        format!("SQLAgent - TSQL JobStep (Job 0x{hex} : Step 1)")
    }

    /// How far the restore running in `session` is. The step runs in `master`, so its request's
    /// `database_id` is master's, not the restored database's ("sys.dm_exec_requests"); the
    /// session identifies it.
    pub fn restore_progress(session: i32) -> Statement {
        Statement {
            sql: "SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id = @P1 AND command IN (N'RESTORE DATABASE', N'RESTORE LOG')".into(),
            params: vec![Param::Int(session)],
        }
    }

    /// The services of the instance and their state ("sys.dm_server_services"; needs VIEW SERVER
    /// STATE): SQL Server Agent's row says whether restores can run as jobs.
    pub fn services() -> Statement {
        Statement {
            sql: "SELECT servicename, status_desc FROM sys.dm_server_services".into(),
            params: vec![],
        }
    }

    /// Sessions SQL Server Agent holds while it runs (`program_name` `SQLAgent - …`): the
    /// fallback when `sys.dm_server_services` has no Agent row.
    pub fn agent_sessions() -> Statement {
        Statement {
            sql: "SELECT COUNT(*) AS agent_sessions FROM sys.dm_exec_sessions WHERE program_name LIKE N'SQLAgent - %'".into(),
            params: vec![],
        }
    }

    /// Credentials named like an `s3://` URL: SQL Server uses the one whose name is the longest
    /// prefix of the backup URL ("SQL Server backup to URL for S3-compatible object storage").
    pub fn s3_credentials() -> Statement {
        Statement {
            sql: "SELECT name FROM sys.credentials WHERE name LIKE N's3://%'".into(),
            params: vec![],
        }
    }

    /// Deletes an Agent job and its history (a finished restore's, once its outcome is recorded).
    pub fn delete_job(job_name: &str) -> Statement {
        Statement {
            sql: "EXEC msdb.dbo.sp_delete_job @job_name=@P1".into(),
            params: vec![text(job_name)],
        }
    }

    /// Stops a running Agent job (the RESTORE it runs is aborted).
    pub fn stop_job(job_name: &str) -> Statement {
        Statement {
            sql: "EXEC msdb.dbo.sp_stop_job @job_name=@P1".into(),
            params: vec![text(job_name)],
        }
    }

    /// The command of the Agent job step that brings the database online: `RESTORE DATABASE @db
    /// WITH RECOVERY`, the name declared first from an escaped literal as in
    /// [`restore_command`] (a bracket-quoted name in the step's text would still be open to
    /// Agent's tokens). Recovery runs the undo phase and any upgrade of the database, which can
    /// take minutes: as a job it outlives the caller, and its outcome is in the job history.
    pub fn recover_command(database: &DatabaseName) -> String {
        format!(
            "DECLARE @db sysname = {}; RESTORE DATABASE @db WITH RECOVERY",
            step_literal(database.as_str())
        )
    }

    /// Bring the database online, in the caller's session (a script a DBA runs by hand).
    pub fn recover(database: &DatabaseName) -> Statement {
        Statement {
            sql: format!("RESTORE DATABASE {} WITH RECOVERY", database.quoted()),
            params: vec![],
        }
    }

    /// Drop a half-restored database.
    pub fn drop_database(database: &DatabaseName) -> Statement {
        Statement {
            sql: format!("DROP DATABASE {}", database.quoted()),
            params: vec![],
        }
    }
}

/// Statements both dialects use.
pub mod common {
    use super::*;

    /// The target's version and edition.
    pub fn server_version() -> Statement {
        Statement {
            sql: "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition, CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition, CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(260)) AS data_path, CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(260)) AS log_path".into(),
            params: vec![],
        }
    }

    /// Whether a database exists, and its state.
    pub fn database_state(database: &DatabaseName) -> Statement {
        Statement {
            sql: "SELECT name, state_desc FROM sys.databases WHERE name = @P1".into(),
            params: vec![text(database.as_str())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> DatabaseName {
        DatabaseName::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rds_restores_pass_every_value_as_a_parameter() {
        let request = RestoreRequest::new(
            db("Sales'; DROP TABLE x --"),
            BackupKind::Differential,
            vec![RestoreSource::S3Arn(S3Arn::object(
                "aws",
                "b",
                "Sales/diff.bak",
            ))],
        );
        let stmt = rds::restore(&request);
        assert!(!stmt.sql.contains("Sales"), "{}", stmt.sql);
        assert_eq!(
            stmt.params[0],
            Param::Text("Sales'; DROP TABLE x --".into())
        );
        assert_eq!(stmt.params[2], Param::Text("DIFFERENTIAL".into()));
        let log = rds::restore(&RestoreRequest {
            kind: BackupKind::Log,
            ..request
        });
        assert!(log.sql.starts_with("exec msdb.dbo.rds_restore_log"));
    }

    fn sales_files() -> Vec<DatabaseFile> {
        vec![
            DatabaseFile {
                logical_name: "Sales".into(),
                physical_name: r"C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\Sales.mdf".into(),
                kind: DatabaseFileKind::Data,
                file_id: 1,
            },
            DatabaseFile {
                logical_name: "Sales_log".into(),
                physical_name: r"C:\Program Files\Microsoft SQL Server\MSSQL13.MSSQLSERVER\MSSQL\DATA\Sales_log.ldf".into(),
                kind: DatabaseFileKind::Log,
                file_id: 2,
            },
            DatabaseFile {
                logical_name: "Sales archive".into(),
                physical_name: r"D:\data\Sales_2.ndf".into(),
                kind: DatabaseFileKind::Data,
                file_id: 3,
            },
        ]
    }

    fn full(database: &str, sources: Vec<RestoreSource>) -> RestoreRequest {
        RestoreRequest {
            files: sales_files(),
            ..RestoreRequest::new(db(database), BackupKind::Full, sources)
        }
    }

    #[test]
    fn native_restore_declares_every_value_and_escapes_its_literal() {
        let request = full(
            "a]b",
            vec![
                RestoreSource::Url("s3://h/b/it's 1.bak".into()),
                RestoreSource::Url("s3://h/b/2.bak".into()),
            ],
        );
        let command = native::restore_command(&request, None);
        assert_eq!(
            command,
            "DECLARE @db sysname = N'a]b', @s1 nvarchar(4000) = N's3://h/b/it''s 1.bak', @s2 nvarchar(4000) = N's3://h/b/2.bak'; RESTORE DATABASE @db FROM URL = @s1, URL = @s2 WITH NORECOVERY, STATS = 5"
        );
        let log = RestoreRequest {
            kind: BackupKind::Log,
            sources: vec![RestoreSource::Disk("/var/opt/mssql/backup/log.trn".into())],
            ..request
        };
        assert!(
            native::restore_command(&log, Some(&TargetPaths::linux_default()))
                .ends_with("RESTORE LOG @db FROM DISK = @s1 WITH NORECOVERY, STATS = 5")
        );
    }

    #[test]
    fn native_restore_verifies_checksums_only_when_the_backup_has_them() {
        let without = full("Sales", vec![RestoreSource::Disk("/b/full.bak".into())]);
        assert!(!native::restore_command(&without, None).contains("CHECKSUM"));
        let with = RestoreRequest {
            checksums: true,
            ..without
        };
        assert!(native::restore_command(&with, None).contains("WITH NORECOVERY, CHECKSUM, "));
    }

    #[test]
    fn a_native_full_restore_moves_every_file_under_names_of_the_target_database() {
        let paths = TargetPaths {
            data: "/var/opt/mssql/data/".into(),
            log: "/var/opt/mssql/log".into(),
        };
        let request = full("Sales EU", vec![RestoreSource::Disk("/b/full.bak".into())]);
        let moves = native::file_moves(&request, &paths);
        let logical: Vec<&str> = moves.iter().map(|m| m.logical_name.as_str()).collect();
        assert_eq!(logical, ["Sales", "Sales_log", "Sales archive"]);
        assert!(moves[0]
            .physical_name
            .starts_with("/var/opt/mssql/data/Sales_EU_Sales_"));
        assert!(moves[0].physical_name.ends_with(".mdf"));
        assert!(moves[1]
            .physical_name
            .starts_with("/var/opt/mssql/log/Sales_EU_Sales_log_"));
        assert!(moves[1].physical_name.ends_with(".ldf"));
        assert!(moves[2].physical_name.ends_with(".ndf"));
        assert!(moves.iter().all(|m| !m.physical_name.contains('\\')));
        let command = native::restore_command(&request, Some(&paths));
        assert!(
            command.contains("MOVE @m1 TO @p1, MOVE @m2 TO @p2, MOVE @m3 TO @p3, STATS = 5"),
            "{command}"
        );
        assert!(
            command.contains("@m3 sysname = N'Sales archive'"),
            "{command}"
        );

        // The same backup into another database: no file name in common.
        let other = native::file_moves(&full("Sales_copy", request.sources.clone()), &paths);
        for (a, b) in moves.iter().zip(&other) {
            assert_ne!(a.physical_name, b.physical_name);
        }
        // Names that differ only in characters a file name cannot hold differ by their hash.
        let a = native::file_moves(&full("a:b", vec![]), &paths);
        let b = native::file_moves(&full("a?b", vec![]), &paths);
        assert_ne!(a[0].physical_name, b[0].physical_name);
    }

    #[test]
    fn moves_keep_a_windows_targets_separator() {
        let paths = TargetPaths {
            data: r"D:\rdsdbdata\DATA".into(),
            log: r"D:\rdsdbdata\DATA\".into(),
        };
        let moves = native::file_moves(&full("Sales", vec![]), &paths);
        assert!(moves[0]
            .physical_name
            .starts_with(r"D:\rdsdbdata\DATA\Sales_Sales_"));
        assert!(moves[1]
            .physical_name
            .starts_with(r"D:\rdsdbdata\DATA\Sales_Sales_log_"));
    }

    #[test]
    fn only_later_restores_skip_the_moves() {
        let paths = TargetPaths::linux_default();
        let diff = RestoreRequest {
            kind: BackupKind::Differential,
            ..full("Sales", vec![RestoreSource::Disk("/b/diff.bak".into())])
        };
        assert!(!native::restore_command(&diff, Some(&paths)).contains("MOVE"));
    }

    #[test]
    fn agent_tokens_never_reach_a_job_step() {
        let request = full(
            "x$(JOBNAME)",
            vec![RestoreSource::Disk(
                "/b/$(ESCAPE_SQUOTE(JOBID))'.bak".into(),
            )],
        );
        let command = native::restore_command(&request, Some(&TargetPaths::linux_default()));
        assert!(!command.contains("$("), "{command}");
        assert!(
            command.contains("@db sysname = N'x$' + N'(JOBNAME)'"),
            "{command}"
        );
        assert!(
            command.contains("N'/b/$' + N'(ESCAPE_SQUOTE(JOBID))''.bak'"),
            "{command}"
        );
    }

    #[test]
    fn the_bucket_region_is_given_only_for_urls_outside_the_default_region() {
        let url = |region: &str| RestoreRequest {
            s3_region: Some(S3Region::parse(region).expect("region")),
            ..full(
                "Sales",
                vec![RestoreSource::Url(
                    "s3://s3.eu-west-1.amazonaws.com/b/k.bak".into(),
                )],
            )
        };
        assert!(native::restore_command(&url("eu-west-1"), None)
            .ends_with(r#"STATS = 5, RESTORE_OPTIONS = '{"s3": {"region":"eu-west-1"}}'"#));
        assert!(!native::restore_command(&url("us-east-1"), None).contains("RESTORE_OPTIONS"));
        let disk = RestoreRequest {
            sources: vec![RestoreSource::Disk("/b/k.bak".into())],
            ..url("eu-west-1")
        };
        assert!(!native::restore_command(&disk, None).contains("RESTORE_OPTIONS"));
        assert!(S3Region::parse("eu-west-1'; --").is_err());
    }

    #[test]
    fn urls_longer_than_sql_servers_limit_are_refused() {
        let at_limit = format!("s3://h/b/{}", "k".repeat(MAX_URL_LENGTH - 9));
        assert_eq!(at_limit.len(), MAX_URL_LENGTH);
        assert!(RestoreSource::Url(at_limit.clone()).validate().is_ok());
        let over = format!("{at_limit}x");
        assert!(matches!(
            RestoreSource::Url(over.clone()).validate(),
            Err(SourceError::UrlTooLong { length: 260 })
        ));
        assert!(RestoreSource::Disk(over).validate().is_ok());
    }

    #[test]
    fn the_recovery_step_declares_the_name_from_an_escaped_literal() {
        assert_eq!(
            native::recover_command(&db("it's $(JOBNAME)]")),
            "DECLARE @db sysname = N'it''s $' + N'(JOBNAME)]'; RESTORE DATABASE @db WITH RECOVERY"
        );
    }

    #[test]
    fn the_job_step_session_names_the_job_in_sql_servers_byte_order() {
        let id = uuid::Uuid::parse_str("01020304-0506-0708-090a-0b0c0d0e0f10").expect("uuid");
        assert_eq!(
            native::job_step_program_name(id),
            "SQLAgent - TSQL JobStep (Job 0x0403020106050807090A0B0C0D0E0F10 : Step 1)"
        );
    }

    #[test]
    fn sources_with_control_characters_are_refused() {
        assert!(RestoreSource::Url("s3://h/b/a\n.bak".into())
            .validate()
            .is_err());
        assert!(RestoreSource::Disk(String::new()).validate().is_err());
        assert!(RestoreSource::Disk("/x/y.bak".into()).validate().is_ok());
    }

    #[test]
    fn statements_print_as_runnable_scripts() {
        let stmt = rds::finish(&db("O'Brien"));
        assert_eq!(
            stmt.to_string(),
            "DECLARE @P1 nvarchar(max) = N'O''Brien';\nexec msdb.dbo.rds_finish_restore @db_name=@P1;"
        );
    }
}
