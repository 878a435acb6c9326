//! The target SQL Server of the command line: a real one through tiberius
//! ([`bakdrop_mssql::TiberiusTarget`]), or [`ScriptTarget`], which writes the T-SQL it would run
//! to a script and reports every task as succeeded (script-only mode), so that validation,
//! planning and status transitions run exactly as with a server.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bakdrop_core::names::DatabaseName;
use bakdrop_core::ports::{Online, RestoreTarget, TargetError, TaskId, TaskStatus};
use bakdrop_core::status::BackupKind;
use bakdrop_core::tsql::{self, Dialect, RestoreRequest, TargetPaths};
use bakdrop_core::version::SqlServerRelease;
use bakdrop_mssql::settings::{TargetLogin, Tls};
use bakdrop_mssql::TiberiusTarget;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first line of a script written in script-only mode.
pub const SCRIPT_BANNER: &str =
    "-- NOT EXECUTED (script-only mode): the T-SQL bakdrop would have run on the target, in order.";

/// A target that only writes what it would run.
#[derive(Debug)]
pub struct ScriptTarget {
    dialect: Dialect,
    release: SqlServerRelease,
    script: PathBuf,
    /// Where the script's native full restores move the database's files.
    paths: TargetPaths,
    databases: Mutex<BTreeMap<String, String>>,
    next_task: Mutex<i64>,
}

impl ScriptTarget {
    /// A script-only target claiming to run `release`, appending to `script`; native full
    /// restores move the files to `paths`.
    pub fn new(
        dialect: Dialect,
        release: SqlServerRelease,
        script: PathBuf,
        paths: TargetPaths,
    ) -> ScriptTarget {
        ScriptTarget {
            dialect,
            release,
            script,
            paths,
            databases: Mutex::new(BTreeMap::new()),
            next_task: Mutex::new(1),
        }
    }

    /// Tells the target that `database` exists in `state` (e.g. "RESTORING" for a migration
    /// restored by an earlier run).
    pub fn assume_database(&self, database: &str, state: &str) {
        lock(&self.databases).insert(database.to_owned(), state.to_owned());
    }

    fn write(&self, title: &str, sql: &str) -> Result<(), TargetError> {
        let io = |e: std::io::Error| TargetError::Connection(Box::new(e));
        if let Some(dir) = self.script.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let fresh = !self.script.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.script)
            .map_err(io)?;
        let mut text = String::new();
        if fresh {
            text.push_str(SCRIPT_BANNER);
            text.push('\n');
        }
        let stamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        text.push_str(&format!(
            "\n-- NOT EXECUTED (script-only mode) {stamp}: {title}\n{sql}\nGO\n"
        ));
        file.write_all(text.as_bytes()).map_err(io)
    }
}

impl RestoreTarget for ScriptTarget {
    async fn product_version(&self) -> Result<String, TargetError> {
        Ok(format!("{}.{}.0.0", self.release.major, self.release.minor))
    }

    async fn database_state(&self, database: &DatabaseName) -> Result<Option<String>, TargetError> {
        Ok(lock(&self.databases).get(database.as_str()).cloned())
    }

    async fn submit(
        &self,
        request: &RestoreRequest,
        task_name: &str,
    ) -> Result<TaskId, TargetError> {
        let (sql, task) = match self.dialect {
            Dialect::Rds => {
                let mut next = lock(&self.next_task);
                let id = *next;
                *next += 1;
                (tsql::rds::restore(request).to_string(), TaskId::Rds(id))
            }
            Dialect::Native => (
                format!(
                    "{};",
                    tsql::native::restore_command(request, Some(&self.paths))
                ),
                TaskId::AgentJob(task_name.to_owned()),
            ),
        };
        self.write(task_name, &sql)?;
        if request.kind == BackupKind::Full {
            self.assume_database(request.database.as_str(), "RESTORING");
        }
        Ok(task)
    }

    async fn find_task(
        &self,
        _request: &RestoreRequest,
        _task_name: &str,
    ) -> Result<Option<TaskId>, TargetError> {
        Ok(None)
    }

    async fn poll(
        &self,
        _database: &DatabaseName,
        _task: &TaskId,
    ) -> Result<TaskStatus, TargetError> {
        Ok(TaskStatus::Succeeded)
    }

    async fn check_ready(&self, _request: &RestoreRequest) -> Result<(), TargetError> {
        Ok(())
    }

    async fn bring_online(&self, database: &DatabaseName) -> Result<Online, TargetError> {
        let sql = match self.dialect {
            Dialect::Rds => tsql::rds::finish(database).to_string(),
            Dialect::Native => tsql::native::recover(database).to_string(),
        };
        self.write(&format!("complete {database}"), &sql)?;
        self.assume_database(database.as_str(), "ONLINE");
        Ok(Online::Now)
    }

    async fn cancel_task(&self, task: &TaskId) -> Result<(), TargetError> {
        let sql = match task {
            TaskId::Rds(id) => tsql::rds::cancel(*id).to_string(),
            TaskId::AgentJob(name) => tsql::native::stop_job(name).to_string(),
        };
        self.write(&format!("cancel {task}"), &sql)
    }

    async fn release_task(
        &self,
        _request: &RestoreRequest,
        task: &TaskId,
        _task_name: &str,
    ) -> Result<(), TargetError> {
        match task {
            TaskId::Rds(_) => Ok(()),
            TaskId::AgentJob(name) => self.write(
                &format!("forget {task}"),
                &tsql::native::delete_job(name).to_string(),
            ),
        }
    }

    async fn drop_database(&self, database: &DatabaseName) -> Result<(), TargetError> {
        let sql = match self.dialect {
            Dialect::Rds => tsql::rds::drop_database(database).to_string(),
            Dialect::Native => tsql::native::drop_database(database).to_string(),
        };
        self.write(&format!("drop {database}"), &sql)?;
        lock(&self.databases).remove(database.as_str());
        Ok(())
    }
}

/// The target the command line talks to.
#[derive(Debug)]
pub enum CliTarget {
    Script(ScriptTarget),
    Server(Box<TiberiusTarget>),
}

impl RestoreTarget for CliTarget {
    async fn product_version(&self) -> Result<String, TargetError> {
        match self {
            CliTarget::Script(t) => t.product_version().await,
            CliTarget::Server(t) => t.product_version().await,
        }
    }
    async fn database_state(&self, database: &DatabaseName) -> Result<Option<String>, TargetError> {
        match self {
            CliTarget::Script(t) => t.database_state(database).await,
            CliTarget::Server(t) => t.database_state(database).await,
        }
    }
    async fn submit(
        &self,
        request: &RestoreRequest,
        task_name: &str,
    ) -> Result<TaskId, TargetError> {
        match self {
            CliTarget::Script(t) => t.submit(request, task_name).await,
            CliTarget::Server(t) => t.submit(request, task_name).await,
        }
    }
    async fn find_task(
        &self,
        request: &RestoreRequest,
        task_name: &str,
    ) -> Result<Option<TaskId>, TargetError> {
        match self {
            CliTarget::Script(t) => t.find_task(request, task_name).await,
            CliTarget::Server(t) => t.find_task(request, task_name).await,
        }
    }
    async fn poll(
        &self,
        database: &DatabaseName,
        task: &TaskId,
    ) -> Result<TaskStatus, TargetError> {
        match self {
            CliTarget::Script(t) => t.poll(database, task).await,
            CliTarget::Server(t) => t.poll(database, task).await,
        }
    }
    async fn check_ready(&self, request: &RestoreRequest) -> Result<(), TargetError> {
        match self {
            CliTarget::Script(t) => t.check_ready(request).await,
            CliTarget::Server(t) => t.check_ready(request).await,
        }
    }
    async fn bring_online(&self, database: &DatabaseName) -> Result<Online, TargetError> {
        match self {
            CliTarget::Script(t) => t.bring_online(database).await,
            CliTarget::Server(t) => t.bring_online(database).await,
        }
    }
    async fn cancel_task(&self, task: &TaskId) -> Result<(), TargetError> {
        match self {
            CliTarget::Script(t) => t.cancel_task(task).await,
            CliTarget::Server(t) => t.cancel_task(task).await,
        }
    }
    async fn release_task(
        &self,
        request: &RestoreRequest,
        task: &TaskId,
        task_name: &str,
    ) -> Result<(), TargetError> {
        match self {
            CliTarget::Script(t) => t.release_task(request, task, task_name).await,
            CliTarget::Server(t) => t.release_task(request, task, task_name).await,
        }
    }
    async fn drop_database(&self, database: &DatabaseName) -> Result<(), TargetError> {
        match self {
            CliTarget::Script(t) => t.drop_database(database).await,
            CliTarget::Server(t) => t.drop_database(database).await,
        }
    }
}

/// Why a `--target` connection string is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionError {
    #[error("--target part {0:?} is not key=value")]
    NotKeyValue(String),
    #[error("--target has an unknown key {0:?} (use host, port, user, password, tls)")]
    UnknownKey(String),
    #[error("--target is missing {0}")]
    Missing(&'static str),
    #[error("--target port {0:?} is not a port number")]
    BadPort(String),
    #[error("--target tls: {0}")]
    BadTls(String),
}

/// Parses `host=..;port=..;user=..;password=..;tls=off|verify|trust-server-certificate|ca:<file>`
/// (port defaults to 1433, tls to verify). The error never contains the password.
///
/// # Errors
/// [`ConnectionError`].
pub fn parse_connection(text: &str) -> Result<TargetLogin, ConnectionError> {
    let (mut host, mut port, mut user, mut password, mut tls) =
        (None, 1433u16, None, None, Tls::Verify);
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            let shown = if part.to_ascii_lowercase().starts_with("password") {
                "password…"
            } else {
                part
            };
            return Err(ConnectionError::NotKeyValue(shown.to_owned()));
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "host" | "server" => host = Some(value.to_owned()),
            "port" => {
                port = value
                    .parse()
                    .map_err(|_| ConnectionError::BadPort(value.to_owned()))?
            }
            "user" | "username" => user = Some(value.to_owned()),
            "password" => password = Some(value.to_owned()),
            "tls" => tls = value.parse().map_err(ConnectionError::BadTls)?,
            other => return Err(ConnectionError::UnknownKey(other.to_owned())),
        }
    }
    Ok(TargetLogin {
        host: host
            .filter(|h| !h.is_empty())
            .ok_or(ConnectionError::Missing("host"))?,
        port,
        username: user.ok_or(ConnectionError::Missing("user"))?,
        password: password.ok_or(ConnectionError::Missing("password"))?,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_string_becomes_a_login() {
        let login = parse_connection("host=127.0.0.1; port=14330;user=sa;password=a=b;tls=off")
            .expect("valid");
        assert_eq!(login.host, "127.0.0.1");
        assert_eq!(login.port, 14330);
        assert_eq!(login.username, "sa");
        assert_eq!(login.password, "a=b");
        assert_eq!(login.tls, Tls::Off);
        let default = parse_connection("host=db;user=u;password=p").expect("valid");
        assert_eq!((default.port, default.tls), (1433, Tls::Verify));
    }

    #[test]
    fn connection_errors_never_show_the_password() {
        for text in [
            "host=db;user=u;password=hunter2;colour=blue",
            "host=db;user=u;passwordhunter2",
            "host=db;user=u;password=hunter2;port=x",
            "user=u;password=hunter2",
        ] {
            let err = parse_connection(text).expect_err("invalid");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
