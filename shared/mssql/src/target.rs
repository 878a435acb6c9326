//! [`TiberiusTarget`]: the `RestoreTarget` port over tiberius, in the RDS or the native dialect.
//!
//! - RDS: restores are RDS tasks (`rds_restore_database` / `rds_restore_log`, followed with
//!   `rds_task_status`). RDS runs at most two such tasks at once; before submitting, the target
//!   counts the tasks in CREATED / IN_PROGRESS and answers [`TargetError::Busy`] at the limit.
//! - Native (SQL Server 2022+): the `RESTORE` runs as a one-off SQL Server Agent job named after
//!   the step, so it outlives the connection; the job's history gives the outcome. Complete's
//!   `RESTORE … WITH RECOVERY` runs as such a job too. A full
//!   restore moves every file of the backup to the target's default data and log directories
//!   (`SERVERPROPERTY('InstanceDefaultDataPath')`, `'InstanceDefaultLogPath'`) unless the
//!   settings name directories. Before a migration's first restore the target must have SQL
//!   Server Agent running (not an Express edition) and, for `s3://` sources, a credential.
//!
//! One connection per call: a Lambda invocation makes a handful of calls, and a connection that
//! outlives a frozen Lambda environment would be cut anyway.

use bakdrop_core::model::names::DatabaseName;
use bakdrop_core::model::status::SqlError;
use bakdrop_core::model::task::TaskId;
use bakdrop_core::ports::{NotReady, Online, RestoreTarget, TargetError, TaskStatus};
use bakdrop_core::tsql::{self, Dialect, RestoreRequest, RestoreSource, TargetPaths};
use tiberius::{Config, Row};

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};

use crate::connection::{
    connect_within, guid, integer, number, run_within, text, Connection, Timeouts,
};
use crate::settings::TargetLogin;

/// Reads the login again (e.g. from Secrets Manager) after SQL Server refused the one in use.
pub type LoginRefresh = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<TargetLogin, String>> + Send>> + Send + Sync,
>;

/// RDS runs at most this many restore tasks at once.
pub const RDS_MAX_CONCURRENT_TASKS: usize = 2;

/// The target SQL Server.
#[derive(Clone)]
pub struct TiberiusTarget {
    config: Arc<RwLock<Config>>,
    dialect: Dialect,
    /// Where native restores put the files; `None`: the target's default directories.
    paths: Option<TargetPaths>,
    timeouts: Timeouts,
    refresh: Option<LoginRefresh>,
}

impl std::fmt::Debug for TiberiusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiberiusTarget")
            .field("dialect", &self.dialect)
            .field("paths", &self.paths)
            .field("timeouts", &self.timeouts)
            .field("refreshes_login", &self.refresh.is_some())
            .finish_non_exhaustive()
    }
}

/// SQL Server's EngineEdition of Express editions, which have no SQL Server Agent.
const EXPRESS: i64 = 4;

/// The `RESTORE` of a job step failed with this after the error that tells why.
const RESTORE_TERMINATING: u32 = 3013;

impl TiberiusTarget {
    pub fn new(config: Config, dialect: Dialect) -> TiberiusTarget {
        TiberiusTarget {
            config: Arc::new(RwLock::new(config)),
            dialect,
            paths: None,
            timeouts: Timeouts::default(),
            refresh: None,
        }
    }

    /// Connect and statement timeouts other than the defaults.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> TiberiusTarget {
        self.timeouts = timeouts;
        self
    }

    /// When SQL Server refuses the login (18456: the secret was rotated), read the login again
    /// through `refresh` and connect once more with it.
    pub fn with_login_refresh(mut self, refresh: LoginRefresh) -> TiberiusTarget {
        self.refresh = Some(refresh);
        self
    }

    /// A connection, within the connect timeout; a refused login is read again once.
    async fn connect(&self) -> Result<Connection, TargetError> {
        let config = self
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match connect_within(&config, self.timeouts.connect).await {
            Err(TargetError::Sql {
                number: 18456,
                message,
            }) if self.refresh.is_some() => {
                let refresh = self.refresh.as_ref().map(|r| r());
                let Some(fresh) = refresh else {
                    return Err(TargetError::Sql {
                        number: 18456,
                        message,
                    });
                };
                let login = match fresh.await {
                    Ok(login) => login,
                    Err(e) => {
                        tracing::warn!(error.message = %e, "could not read the target login again");
                        return Err(TargetError::Sql {
                            number: 18456,
                            message,
                        });
                    }
                };
                let config = login.config();
                *self.config.write().unwrap_or_else(PoisonError::into_inner) = config.clone();
                tracing::info!(
                    "the target refused the login; connecting with the login read again"
                );
                connect_within(&config, self.timeouts.connect).await
            }
            other => other,
        }
    }

    /// Runs one statement on `client` within the statement timeout.
    async fn run(
        &self,
        client: &mut Connection,
        statement: &tsql::Statement,
    ) -> Result<Vec<Vec<Row>>, TargetError> {
        run_within(client, statement, self.timeouts.query).await
    }

    /// Native restores put the database's files in these directories instead of the target's
    /// defaults.
    pub fn with_paths(mut self, paths: Option<TargetPaths>) -> TiberiusTarget {
        self.paths = paths;
        self
    }

    /// The directories a native full restore moves the files to.
    async fn target_paths(&self) -> Result<TargetPaths, TargetError> {
        if let Some(paths) = &self.paths {
            return Ok(paths.clone());
        }
        let rows = self.rows(&tsql::common::server_version()).await?;
        let row = rows.first();
        let data = row.and_then(|r| text(r, "data_path"));
        let log = row.and_then(|r| text(r, "log_path"));
        match (data, log) {
            (Some(data), Some(log)) if !data.is_empty() && !log.is_empty() => {
                Ok(TargetPaths { data, log })
            }
            _ => Err(TargetError::Protocol(
                "the target reports no InstanceDefaultDataPath/InstanceDefaultLogPath; set TargetDataPath and TargetLogPath (TARGET_DATA_PATH, TARGET_LOG_PATH)".into(),
            )),
        }
    }

    /// Whether SQL Server Agent runs: its row in `sys.dm_server_services`, or, without one, its
    /// sessions. `None` when this login may not see either (VIEW SERVER STATE): the submit then
    /// tells (22022).
    async fn agent_running(&self) -> Result<Option<bool>, TargetError> {
        let services = match self.rows(&tsql::native::services()).await {
            Ok(rows) => rows,
            Err(TargetError::Sql { number, message }) if is_permission_error(number) => {
                tracing::warn!(error.number = number, error.message = %message,
                    "cannot read sys.dm_server_services (grant VIEW SERVER STATE); Agent is checked at submit");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let agent = services
            .iter()
            .find(|r| text(r, "servicename").is_some_and(|n| n.starts_with("SQL Server Agent")));
        if let Some(row) = agent {
            return Ok(Some(text(row, "status_desc").as_deref() == Some("Running")));
        }
        let sessions = self.rows(&tsql::native::agent_sessions()).await?;
        Ok(Some(
            sessions
                .first()
                .and_then(|r| integer(r, "agent_sessions"))
                .unwrap_or(0)
                > 0,
        ))
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn job_id(&self, name: &str) -> Result<Option<tiberius::Uuid>, TargetError> {
        let rows = self.rows(&tsql::native::job_id(name)).await?;
        Ok(rows.first().and_then(|r| guid(r, "job_id")))
    }

    /// The newest `FINISH_RESTORE` task of the database (only one still under way, if
    /// `active_only`).
    async fn rds_finish_task(
        &self,
        database: &DatabaseName,
        active_only: bool,
    ) -> Result<Option<TaskId>, TargetError> {
        Ok(self
            .rows(&tsql::rds::tasks_of(database))
            .await?
            .iter()
            .filter(|r| text(r, "task_type").as_deref() == Some("FINISH_RESTORE"))
            .filter(|r| {
                !active_only
                    || matches!(
                        text(r, "lifecycle").as_deref(),
                        Some("CREATED" | "IN_PROGRESS")
                    )
            })
            .filter_map(|r| integer(r, "task_id"))
            .max()
            .map(TaskId::Rds))
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
            let mut client = self.connect().await?;
            let sets = self.run(&mut client, statement).await?;
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
                    // The busy check above and the submit are two calls; the limit is RDS's.
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
                if let Some(id) = rows.first().and_then(|r| integer(r, "task_id")) {
                    return Ok(TaskId::Rds(id));
                }
                // The result set of rds_restore_* is not documented: find the task by its
                // object, as after a crash.
                self.find_task(request, task_name).await?.ok_or_else(|| {
                    TargetError::Protocol(
                        "the RDS restore procedure returned no task_id, and rds_task_status lists no task for the object".into(),
                    )
                })
            }
            Dialect::Native => {
                let paths = match request.kind {
                    bakdrop_core::model::header::BackupKind::Full => {
                        Some(self.target_paths().await?)
                    }
                    _ => None,
                };
                let command = tsql::native::restore_command(request, paths.as_ref());
                match self
                    .rows(&tsql::native::submit_job(task_name, &command))
                    .await
                {
                    Ok(_) => Ok(TaskId::AgentJob(task_name.to_owned())),
                    // The submission deleted its job again (TRY/CATCH): nothing was started.
                    Err(TargetError::Sql { number: 22022, .. }) => {
                        Err(TargetError::NotReady(NotReady::AgentNotRunning))
                    }
                    Err(e) => Err(e),
                }
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
                let arn = request.sources.first().map(|s| s.text().into_owned());
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
                let mut client = self.connect().await?;
                let first = |sets: Vec<Vec<Row>>| sets.into_iter().flatten().next();
                let session = first(
                    self.run(&mut client, &tsql::native::agent_session())
                        .await?,
                )
                .and_then(|r| integer(&r, "session_id"))
                .and_then(|n| i32::try_from(n).ok());
                let running = match session {
                    Some(session) => {
                        first(
                            self.run(&mut client, &tsql::native::job_running(job_id, session))
                                .await?,
                        )
                        .and_then(|r| integer(&r, "running"))
                        .unwrap_or(0)
                            > 0
                    }
                    None => false,
                };
                let outcome = first(
                    self.run(&mut client, &tsql::native::job_outcome(job_id))
                        .await?,
                );
                if let (false, None, Some(session)) = (running, &outcome, session) {
                    let interrupted = first(
                        self.run(&mut client, &tsql::native::job_interrupted(job_id, session))
                            .await?,
                    )
                    .and_then(|r| integer(&r, "interrupted"))
                    .unwrap_or(0)
                        > 0;
                    if interrupted {
                        return Ok(TaskStatus::Failed {
                            sql_error: None,
                            message: format!("the Agent job {name} was running when SQL Server Agent stopped, and has no outcome: its RESTORE was interrupted. Cancel the migration, reset it and upload the backups again"),
                        });
                    }
                }
                let mut percent = None;
                if running {
                    let step_session = first(
                        self.run(&mut client, &tsql::native::job_step_session(job_id))
                            .await?,
                    )
                    .and_then(|r| integer(&r, "session_id"))
                    .and_then(|n| i32::try_from(n).ok());
                    if let Some(step_session) = step_session {
                        percent = first(
                            self.run(&mut client, &tsql::native::restore_progress(step_session))
                                .await?,
                        )
                        .and_then(|r| number(&r, "percent_complete"));
                    }
                }
                Ok(job_status(running, percent, outcome.as_ref()))
            }
        }
    }

    async fn check_ready(&self, request: &RestoreRequest) -> Result<(), TargetError> {
        if self.dialect == Dialect::Rds {
            return Ok(());
        }
        let rows = self.rows(&tsql::common::server_version()).await?;
        let row = rows.first();
        if row.and_then(|r| integer(r, "engine_edition")) == Some(EXPRESS) {
            let edition = row
                .and_then(|r| text(r, "edition"))
                .unwrap_or_else(|| "Express Edition".into());
            return Err(TargetError::NotReady(NotReady::EditionWithoutAgent {
                edition,
            }));
        }
        if self.agent_running().await? == Some(false) {
            return Err(TargetError::NotReady(NotReady::AgentNotRunning));
        }
        let urls: Vec<&str> = request
            .sources
            .iter()
            .filter_map(|s| match s {
                RestoreSource::Url(url) => Some(url.as_str()),
                _ => None,
            })
            .collect();
        if urls.is_empty() {
            return Ok(());
        }
        let credentials: Vec<String> = self
            .rows(&tsql::native::s3_credentials())
            .await?
            .iter()
            .filter_map(|r| text(r, "name"))
            .collect();
        for url in urls {
            let covered = credentials.iter().any(|name| {
                url.get(..name.len())
                    .is_some_and(|prefix| prefix.eq_ignore_ascii_case(name))
            });
            if !covered {
                return Err(TargetError::NotReady(NotReady::NoCredential {
                    url: bucket_prefix(url).to_owned(),
                }));
            }
        }
        Ok(())
    }

    async fn bring_online(
        &self,
        database: &DatabaseName,
        task_name: &str,
    ) -> Result<Online, TargetError> {
        match self.dialect {
            Dialect::Rds => {
                if let Some(task) = self.rds_finish_task(database, true).await? {
                    return Ok(Online::Finishing(task));
                }
                let rows = self.rows(&tsql::rds::finish(database)).await?;
                if let Some(id) = rows.first().and_then(|r| integer(r, "task_id")) {
                    return Ok(Online::Finishing(TaskId::Rds(id)));
                }
                self.rds_finish_task(database, false)
                    .await?
                    .map(Online::Finishing)
                    .ok_or_else(|| {
                        TargetError::Protocol(format!(
                            "rds_finish_restore started no FINISH_RESTORE task that rds_task_status lists for {database}"
                        ))
                    })
            }
            Dialect::Native => {
                // Recovery (its undo phase, any upgrade of the database) can take longer than
                // the caller lives: it runs as an Agent job, as restores do, and is polled.
                let job = Online::Finishing(TaskId::AgentJob(task_name.to_owned()));
                if self.job_id(task_name).await?.is_some() {
                    return Ok(job);
                }
                let command = tsql::native::recover_command(database);
                match self
                    .rows(&tsql::native::submit_job(task_name, &command))
                    .await
                {
                    Ok(_) => Ok(job),
                    // Started meanwhile by another caller of this Complete: the same job.
                    Err(TargetError::Sql { number: 14261, .. }) => Ok(job),
                    Err(TargetError::Sql { number: 22022, .. }) => {
                        Err(TargetError::NotReady(NotReady::AgentNotRunning))
                    }
                    Err(e) => Err(e),
                }
            }
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
        // RDS documents texts, not error numbers, for failed tasks ("Importing and exporting SQL
        // Server databases using native backup and restore", Troubleshooting): the core keys its
        // remedies on the text.
        Some("ERROR") => TaskStatus::Failed {
            sql_error: None,
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
            // The step message lists every error as "(Error n)"; the first that is not 3013
            // ("RESTORE … is terminating abnormally") says why. sql_message_id holds one error
            // only, which one is not documented ("dbo.sysjobhistory").
            let number = agent_error_in(&message).or_else(|| {
                integer(row, "sql_message_id")
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n != 0)
            });
            TaskStatus::Failed {
                sql_error: number.map(|number| SqlError {
                    number,
                    message: message.clone(),
                }),
                message,
            }
        }
        // Retrying or in an unknown state: still running as far as we are concerned.
        _ => TaskStatus::Running { percent },
    }
}

/// The error number an Agent job step's message gives for its failure: the first
/// `(Error n)` that is not 3013, else 3013 itself.
pub fn agent_error_in(message: &str) -> Option<u32> {
    let mut terminating = false;
    for (at, _) in message.match_indices("(Error ") {
        let digits: String = message[at + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        match digits.parse::<u32>() {
            Ok(RESTORE_TERMINATING) => terminating = true,
            Ok(number) => return Some(number),
            Err(_) => {}
        }
    }
    terminating.then_some(RESTORE_TERMINATING)
}

/// `s3://endpoint/bucket` of a path-style URL (what a credential is named after).
fn bucket_prefix(url: &str) -> &str {
    let rest = url.strip_prefix("s3://").unwrap_or(url);
    let end = rest
        .match_indices('/')
        .nth(1)
        .map_or(rest.len(), |(i, _)| i);
    &url[..url.len() - rest.len() + end]
}

/// "… permission was denied" (VIEW SERVER STATE missing): 297 / 300.
fn is_permission_error(number: u32) -> bool {
    matches!(number, 297 | 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_step_message_names_the_error_before_3013() {
        let message = "Executed as user: NT SERVICE\\SQLSERVERAGENT. Cannot open backup device 's3://h/b/k.bak'. Operating system error 50(The request is not supported.). [SQLSTATE 42000] (Error 3201)  RESTORE DATABASE is terminating abnormally. [SQLSTATE 42000] (Error 3013).  The step failed.";
        assert_eq!(agent_error_in(message), Some(3201));
        assert_eq!(
            agent_error_in("RESTORE LOG is terminating abnormally. [SQLSTATE 42000] (Error 3013).  The step failed."),
            Some(3013)
        );
        assert_eq!(agent_error_in("The step failed."), None);
    }

    #[test]
    fn credentials_are_named_after_the_bucket_of_the_url() {
        assert_eq!(
            bucket_prefix("s3://s3.eu-west-1.amazonaws.com/uploads/Sales/full.bak"),
            "s3://s3.eu-west-1.amazonaws.com/uploads"
        );
        assert_eq!(bucket_prefix("s3://minio:9000/b"), "s3://minio:9000/b");
    }
}
