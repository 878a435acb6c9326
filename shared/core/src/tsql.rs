//! The T-SQL bakdrop sends, for both target dialects, as text plus parameters.
//!
//! Rules: the database name is the only identifier and is always emitted through
//! [`DatabaseName::quoted`]; every other value is a parameter (`@P1`, `@P2`, … in tiberius'
//! numbering). The one place a value must become literal text is the command of a SQL Server
//! Agent job step (a job step takes no parameters): there the value is a validated
//! [`RestoreSource`] emitted as an `N'…'` literal with every `'` doubled, and the whole command is
//! itself passed to `sp_add_jobstep` as a parameter.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::DatabaseName;
use crate::status::BackupKind;

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
    /// `arn:aws:s3:::bucket/key` (RDS; may end in `*` for a striped set's prefix).
    S3Arn(String),
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
}

impl RestoreSource {
    fn text(&self) -> &str {
        match self {
            RestoreSource::S3Arn(t) | RestoreSource::Url(t) | RestoreSource::Disk(t) => t,
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
            return Err(SourceError::TooLong(text.to_owned()));
        }
        if text.chars().any(char::is_control) {
            return Err(SourceError::ControlCharacter(text.to_owned()));
        }
        Ok(())
    }

    /// The value as an `N'…'` literal, for the one place a literal is unavoidable.
    fn literal(&self) -> String {
        format!("N'{}'", self.text().replace('\'', "''"))
    }
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
            .map(|s| s.text().to_owned())
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

    /// The `RESTORE` command itself (the text of the Agent job step).
    pub fn restore_command(request: &RestoreRequest) -> String {
        let verb = if request.kind == BackupKind::Log {
            "RESTORE LOG"
        } else {
            "RESTORE DATABASE"
        };
        let sources: Vec<String> = request
            .sources
            .iter()
            .map(|s| match s {
                RestoreSource::Disk(_) => format!("DISK = {}", s.literal()),
                RestoreSource::Url(_) | RestoreSource::S3Arn(_) => format!("URL = {}", s.literal()),
            })
            .collect();
        format!(
            "{verb} {} FROM {} WITH NORECOVERY, CHECKSUM, STATS = 5",
            request.database.quoted(),
            sources.join(", ")
        )
    }

    /// Creates and starts a one-off Agent job running `command`, named `job_name`. The job is
    /// kept (sp_add_job's default `@delete_level = 0`) so that its outcome can be read, and so that a worker that
    /// crashed after submitting finds it by name instead of submitting a second RESTORE.
    pub fn submit_job(job_name: &str, command: &str) -> Statement {
        Statement {
            sql: [
                "DECLARE @job_id uniqueidentifier",
                "EXEC msdb.dbo.sp_add_job @job_name=@P1, @job_id=@job_id OUTPUT",
                "EXEC msdb.dbo.sp_add_jobstep @job_id=@job_id, @step_name=N'restore', @subsystem=N'TSQL', @database_name=N'master', @command=@P2",
                "EXEC msdb.dbo.sp_add_jobserver @job_id=@job_id",
                "EXEC msdb.dbo.sp_start_job @job_id=@job_id",
                "SELECT @job_id AS job_id",
            ]
            .join("; "),
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

    /// Whether the job runs now (an activity row started and not stopped).
    pub fn job_running(job_id: uuid::Uuid) -> Statement {
        Statement {
            sql: "SELECT COUNT(*) AS running FROM msdb.dbo.sysjobactivity WHERE job_id = @P1 AND start_execution_date IS NOT NULL AND stop_execution_date IS NULL".into(),
            params: vec![Param::Guid(job_id)],
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

    /// How far a running restore of the database is.
    pub fn restore_progress(database: &DatabaseName) -> Statement {
        Statement {
            sql: "SELECT TOP 1 percent_complete FROM sys.dm_exec_requests WHERE database_id = DB_ID(@P1) AND command IN (N'RESTORE DATABASE', N'RESTORE LOG')".into(),
            params: vec![text(database.as_str())],
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

    /// Bring the database online.
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
            sql: "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition, CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition".into(),
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
        let request = RestoreRequest {
            database: db("Sales'; DROP TABLE x --"),
            kind: BackupKind::Differential,
            sources: vec![RestoreSource::S3Arn("arn:aws:s3:::b/Sales/diff.bak".into())],
        };
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

    #[test]
    fn native_restore_quotes_the_name_and_escapes_the_source_literal() {
        let request = RestoreRequest {
            database: db("a]b"),
            kind: BackupKind::Full,
            sources: vec![
                RestoreSource::Url("s3://h/b/it's 1.bak".into()),
                RestoreSource::Url("s3://h/b/2.bak".into()),
            ],
        };
        assert_eq!(
            native::restore_command(&request),
            "RESTORE DATABASE [a]]b] FROM URL = N's3://h/b/it''s 1.bak', URL = N's3://h/b/2.bak' WITH NORECOVERY, CHECKSUM, STATS = 5"
        );
        let log = RestoreRequest {
            kind: BackupKind::Log,
            sources: vec![RestoreSource::Disk("/var/opt/mssql/backup/log.trn".into())],
            ..request
        };
        assert!(
            native::restore_command(&log).starts_with("RESTORE LOG [a]]b] FROM DISK = N'/var/opt")
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
