//! [`TiberiusTarget`]: the `RestoreTarget` port over tiberius, in the RDS or the native dialect.
//!
//! - RDS: restores are RDS tasks (`rds_restore_database` / `rds_restore_log`, followed with
//!   `rds_task_status`). RDS runs at most two such tasks at once; before submitting, the target
//!   counts the tasks in CREATED / IN_PROGRESS and answers [`TargetError::Busy`] at the limit.
//! - Native (SQL Server 2022+): the `RESTORE` runs as a one-off SQL Server Agent job named after
//!   the step, so it outlives the connection; the job's history gives the outcome.
//!
//! One connection per call: a Lambda invocation makes a handful of calls, and a connection that
//! outlives a frozen Lambda environment would be cut anyway.

use bakdrop_core::names::DatabaseName;
use bakdrop_core::ports::{RestoreTarget, TargetError, TaskId, TaskStatus};
use bakdrop_core::status::SqlError;
use bakdrop_core::tsql::{self, Dialect, RestoreRequest};
use tiberius::{Config, Row};

use crate::connection::{connect, guid, integer, number, run, text};

/// RDS runs at most this many restore tasks at once.
pub const RDS_MAX_CONCURRENT_TASKS: usize = 2;

/// The target SQL Server.
#[derive(Debug, Clone)]
pub struct TiberiusTarget {
    config: Config,
    dialect: Dialect,
}

impl TiberiusTarget {
    pub fn new(config: Config, dialect: Dialect) -> TiberiusTarget {
        TiberiusTarget { config, dialect }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn job_id(&self, name: &str) -> Result<Option<tiberius::Uuid>, TargetError> {
        let rows = self.rows(&tsql::native::job_id(name)).await?;
        Ok(rows.first().and_then(|r| guid(r, "job_id")))
    }

    /// RDS tasks of this instance in CREATED or IN_PROGRESS.
    async fn rds_active_tasks(&self) -> Result<usize, TargetError> {
        Ok(self
            .rows(&tsql::rds::all_tasks())
            .await?
            .iter()
            .filter(|r| {
                matches!(
                    text(r, "lifecycle").as_deref(),
                    Some("CREATED" | "IN_PROGRESS")
                )
            })
            .count())
    }

    async fn rows(&self, statement: &tsql::Statement) -> Result<Vec<Row>, TargetError> {
        // Boxed: a tiberius connection and query make a large future, and every target call
        // awaits this one (several times over, in debug builds, overflowed a test thread's stack).
        Box::pin(async move {
            let mut client = connect(&self.config).await?;
            let sets = run(&mut client, statement).await?;
            Ok(sets.into_iter().flatten().collect())
        })
        .await
    }
}

impl RestoreTarget for TiberiusTarget {
    async fn product_version(&self) -> Result<String, TargetError> {
        let rows = self.rows(&tsql::common::server_version()).await?;
        rows.first()
            .and_then(|r| text(r, "product_version"))
            .ok_or_else(|| {
                TargetError::Protocol("SERVERPROPERTY('ProductVersion') returned no row".into())
            })
    }

    async fn database_state(&self, database: &DatabaseName) -> Result<Option<String>, TargetError> {
        let rows = self.rows(&tsql::common::database_state(database)).await?;
        Ok(rows
            .first()
            .map(|r| text(r, "state_desc").unwrap_or_else(|| "UNKNOWN".to_owned())))
    }

    async fn submit(
        &self,
        request: &RestoreRequest,
        task_name: &str,
    ) -> Result<TaskId, TargetError> {
        for source in &request.sources {
            source
                .validate()
                .map_err(|e| TargetError::Protocol(e.to_string()))?;
        }
        match self.dialect {
            Dialect::Rds => {
                if request.sources.len() != 1 {
                    return Err(TargetError::Protocol(format!(
                        "RDS restores from exactly one S3 ARN (a striped set from one prefix ARN ending in '*' under which only its stripes lie), not {}; stage the stripes first",
                        request.sources.len()
                    )));
                }
                if self.rds_active_tasks().await? >= RDS_MAX_CONCURRENT_TASKS {
                    return Err(TargetError::Busy);
                }
                let rows = match self.rows(&tsql::rds::restore(request)).await {
                    Ok(rows) => rows,
                    // Another worker may have started a task between our count and our submit
                    // (workers of other migrations run concurrently): a refusal while the
                    // instance is at its limit is that limit, so try again later.
                    Err(e @ TargetError::Sql { .. }) => {
                        if self.rds_active_tasks().await? >= RDS_MAX_CONCURRENT_TASKS {
                            return Err(TargetError::Busy);
                        }
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                rows.first()
                    .and_then(|r| integer(r, "task_id"))
                    .map(TaskId::Rds)
                    .ok_or_else(|| {
                        TargetError::Protocol(
                            "the RDS restore procedure returned no task_id".into(),
                        )
                    })
            }
            Dialect::Native => {
                let command = tsql::native::restore_command(request);
                self.rows(&tsql::native::submit_job(task_name, &command))
                    .await?;
                Ok(TaskId::AgentJob(task_name.to_owned()))
            }
        }
    }

    async fn find_task(
        &self,
        request: &RestoreRequest,
        task_name: &str,
    ) -> Result<Option<TaskId>, TargetError> {
        match self.dialect {
            Dialect::Rds => {
                let arn = request.sources.first().map(|s| match s {
                    tsql::RestoreSource::S3Arn(t)
                    | tsql::RestoreSource::Url(t)
                    | tsql::RestoreSource::Disk(t) => t.clone(),
                });
                let rows = self.rows(&tsql::rds::tasks_of(&request.database)).await?;
                Ok(rows
                    .iter()
                    .filter(|r| text(r, "S3_object_arn") == arn)
                    .filter_map(|r| integer(r, "task_id"))
                    .max()
                    .map(TaskId::Rds))
            }
            Dialect::Native => Ok(self
                .job_id(task_name)
                .await?
                .map(|_| TaskId::AgentJob(task_name.to_owned()))),
        }
    }

    async fn poll(
        &self,
        database: &DatabaseName,
        task: &TaskId,
    ) -> Result<TaskStatus, TargetError> {
        match task {
            TaskId::Rds(id) => {
                let rows = self.rows(&tsql::rds::task_status(database, *id)).await?;
                let row = rows
                    .iter()
                    .find(|r| integer(r, "task_id") == Some(*id))
                    .or(rows.first())
                    .ok_or_else(|| TargetError::Protocol(format!("RDS reports no task {id}")))?;
                Ok(rds_status(row))
            }
            TaskId::AgentJob(name) => {
                let job_id = self
                    .job_id(name)
                    .await?
                    .ok_or_else(|| TargetError::Protocol(format!("no Agent job named {name}")))?;
                let mut client = connect(&self.config).await?;
                let running = run(&mut client, &tsql::native::job_running(job_id))
                    .await?
                    .into_iter()
                    .flatten()
                    .next()
                    .and_then(|r| integer(&r, "running"))
                    .unwrap_or(0)
                    > 0;
                let outcome = run(&mut client, &tsql::native::job_outcome(job_id))
                    .await?
                    .into_iter()
                    .flatten()
                    .next();
                let percent = if running {
                    run(&mut client, &tsql::native::restore_progress(database))
                        .await?
                        .into_iter()
                        .flatten()
                        .next()
                        .and_then(|r| number(&r, "percent_complete"))
                } else {
                    None
                };
                Ok(job_status(running, percent, outcome.as_ref()))
            }
        }
    }

    async fn bring_online(&self, database: &DatabaseName) -> Result<(), TargetError> {
        match self.dialect {
            Dialect::Rds => self.execute(&tsql::rds::finish(database)).await,
            Dialect::Native => self.execute(&tsql::native::recover(database)).await,
        }
    }

    async fn cancel_task(&self, task: &TaskId) -> Result<(), TargetError> {
        match task {
            TaskId::Rds(id) => self.execute(&tsql::rds::cancel(*id)).await,
            TaskId::AgentJob(name) => self.execute(&tsql::native::stop_job(name)).await,
        }
    }

    async fn release_task(
        &self,
        _request: &RestoreRequest,
        task: &TaskId,
        _task_name: &str,
    ) -> Result<(), TargetError> {
        match task {
            TaskId::Rds(_) => Ok(()),
            TaskId::AgentJob(name) => self.execute(&tsql::native::delete_job(name)).await,
        }
    }

    async fn drop_database(&self, database: &DatabaseName) -> Result<(), TargetError> {
        match self.dialect {
            Dialect::Rds => self.execute(&tsql::rds::drop_database(database)).await,
            Dialect::Native => self.execute(&tsql::native::drop_database(database)).await,
        }
    }
}

impl TiberiusTarget {
    async fn execute(&self, statement: &tsql::Statement) -> Result<(), TargetError> {
        self.rows(statement).await.map(|_| ())
    }
}

fn rds_status(row: &Row) -> TaskStatus {
    let info = text(row, "task_info").unwrap_or_default();
    match text(row, "lifecycle").as_deref() {
        Some("SUCCESS") => TaskStatus::Succeeded,
        Some("ERROR") => TaskStatus::Failed {
            sql_error: sql_error_in(&info),
            message: info,
        },
        Some("CANCELLED") => TaskStatus::Cancelled,
        // CANCEL_REQUESTED: the task still holds its database (rds_drop_database refuses, 3702)
        // until RDS has stopped it; it is running until CANCELLED.
        _ => TaskStatus::Running {
            percent: number(row, "% complete"),
        },
    }
}

fn job_status(running: bool, percent: Option<f64>, outcome: Option<&Row>) -> TaskStatus {
    if running {
        return TaskStatus::Running { percent };
    }
    let Some(row) = outcome else {
        // Started but no step outcome yet.
        return TaskStatus::Running { percent };
    };
    match integer(row, "run_status") {
        Some(1) => TaskStatus::Succeeded,
        Some(3) => TaskStatus::Cancelled,
        Some(0) => {
            let message = text(row, "message").unwrap_or_default();
            let number = integer(row, "sql_message_id")
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n != 0);
            TaskStatus::Failed {
                sql_error: number
                    .map(|number| SqlError {
                        number,
                        message: message.clone(),
                    })
                    .or_else(|| sql_error_in(&message)),
                message,
            }
        }
        // Retrying or in an unknown state: still running as far as we are concerned.
        _ => TaskStatus::Running { percent },
    }
}

/// Finds SQL Server's first "Msg NNNN" / "error NNNN" in a task's text, with the sentence after it.
pub fn sql_error_in(text: &str) -> Option<SqlError> {
    let lower = text.to_ascii_lowercase();
    for marker in ["msg ", "error: ", "error "] {
        let mut from = 0;
        while let Some(found) = lower[from..].find(marker) {
            let start = from + found + marker.len();
            let digits: String = text[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if digits.len() >= 3 {
                if let Ok(number) = digits.parse::<u32>() {
                    return Some(SqlError {
                        number,
                        message: text.trim().to_owned(),
                    });
                }
            }
            from = start;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_errors_are_found_in_rds_task_info() {
        let info = "[2026-11-29 03:00:00.000] Task execution has started.\n[2026-11-29 03:00:01.000] Aborted the task because of a task failure or a concurrent RESTORE_DB request.\nMsg 3154, Level 16, State 4: The backup set holds a backup of a database other than the existing 'Sales' database.";
        let error = sql_error_in(info).expect("found");
        assert_eq!(error.number, 3154);
        assert!(sql_error_in("Task execution has started.").is_none());
        assert_eq!(
            sql_error_in("RESTORE failed with error 4305.").map(|e| e.number),
            Some(4305)
        );
    }
}
