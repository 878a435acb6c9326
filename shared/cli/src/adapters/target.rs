//! The target SQL Server of the command line: a real one through tiberius
//! ([`bakdrop_mssql::TiberiusTarget`]), or [`ScriptTarget`], which writes the T-SQL it would run
//! to a script and reports every task as succeeded (script-only mode), so that validation,
//! planning and status transitions run exactly as with a server.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bakdrop_core::model::header::BackupKind;
use bakdrop_core::model::names::DatabaseName;
use bakdrop_core::model::task::TaskId;
use bakdrop_core::model::version::SqlServerRelease;
use bakdrop_core::ports::{Online, RestoreTarget, TargetError, TaskStatus};
use bakdrop_core::tsql::{self, Dialect, RestoreRequest, TargetPaths};
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
    /// The version it claims; `None`: none (the worker is told not to check versions).
    release: Option<SqlServerRelease>,
    script: PathBuf,
    /// Where the script's native full restores move the database's files.
    paths: TargetPaths,
    databases: Mutex<BTreeMap<String, String>>,
    next_task: Mutex<i64>,
}

impl ScriptTarget {
    /// A script-only target claiming to run `release` (or no version in particular), appending
    /// to `script`; native full restores move the files to `paths`.
    pub fn new(
        dialect: Dialect,
        release: Option<SqlServerRelease>,
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
    /// The version claimed; without one, the newest bakdrop knows (asked only by a worker
    /// told not to check versions, e.g. for what it prints).
    async fn product_version(&self) -> Result<String, TargetError> {
        let release = self.release.unwrap_or(bakdrop_core::model::version::NEWEST);
        Ok(format!("{}.{}.0.0", release.major, release.minor))
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

    /// The script's `WITH RECOVERY` runs in the DBA's own session, to its end: online once run.
    async fn bring_online(
        &self,
        database: &DatabaseName,
        _task_name: &str,
    ) -> Result<Online, TargetError> {
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
    async fn bring_online(
        &self,
        database: &DatabaseName,
        task_name: &str,
    ) -> Result<Online, TargetError> {
        match self {
            CliTarget::Script(t) => t.bring_online(database, task_name).await,
            CliTarget::Server(t) => t.bring_online(database, task_name).await,
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

/// The hint every error about a part after an inline password ends with.
const SEMICOLON_HINT: &str =
    "a password holding ';' goes in password-env=NAME or password-file=PATH";

/// Why a `--target` connection string is not usable.
///
/// No variant holds any text of the password: a part that comes after an inline `password=` may
/// be the rest of a password holding `;`, so such a part is named by its position only.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("--target part {position} ({part:?}) is not key=value")]
    NotKeyValue { position: usize, part: String },
    #[error("--target part {0} is not key=value ({SEMICOLON_HINT})")]
    NotKeyValueAfterPassword(usize),
    /// A part like `passwordhunter2`: the text may be the password, so it is not shown.
    #[error("--target part {0} starts with \"password\" but has no '=' (password=..., password-env=NAME or password-file=PATH)")]
    PasswordNotKeyValue(usize),
    #[error("--target has an unknown key {key:?} in part {position} (use host, port, user, password, password-env, password-file, tls)")]
    UnknownKey { position: usize, key: String },
    #[error("--target part {0} has an unknown key ({SEMICOLON_HINT}; the keys are host, port, user, password, password-env, password-file, tls)")]
    UnknownKeyAfterPassword(usize),
    #[error("--target part {0} gives a key that an earlier part gave already ({SEMICOLON_HINT})")]
    Repeated(usize),
    #[error("--target gives the password more than once: use one of password, password-env, password-file")]
    PasswordTwice,
    #[error("--target is missing {0}")]
    Missing(&'static str),
    #[error("--target port {0:?} is not a port number")]
    BadPort(String),
    #[error("--target port (part {0}) is not a port number ({SEMICOLON_HINT})")]
    BadPortAfterPassword(usize),
    #[error("--target tls: {0}")]
    BadTls(String),
    #[error("--target tls (part {0}) is not off, verify, trust-server-certificate or ca:<file> ({SEMICOLON_HINT})")]
    BadTlsAfterPassword(usize),
    #[error("--target password-env: the environment variable {0} is not set")]
    PasswordEnvUnset(String),
    #[error("--target password-env: the environment variable {0} is not valid Unicode")]
    PasswordEnvNotUnicode(String),
    #[error("--target password-file: cannot read {path}")]
    PasswordFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--target password-file: {0} is not UTF-8 text")]
    PasswordFileNotUtf8(String),
    #[error("--target {0}: the password there is empty")]
    PasswordEmpty(&'static str),
}

/// What of a `--target` string may be kept on disk: the parts but an inline password (whose
/// value is never stored); `password-env=` and `password-file=` name where it comes from.
/// `None` when the string has an inline password, else the source part.
pub fn password_source(text: &str) -> Option<String> {
    text.split(';').map(str::trim).find_map(|part| {
        let (key, _) = part.split_once('=')?;
        matches!(
            key.trim().to_ascii_lowercase().as_str(),
            "password-env" | "password-file"
        )
        .then(|| part.to_owned())
    })
}

/// Where the password comes from.
#[derive(Debug)]
enum PasswordSource {
    Inline(String),
    Env(String),
    File(String),
}

/// Parses `host=..;port=..;user=..;password=..;tls=off|verify|trust-server-certificate|ca:<file>`
/// (port defaults to 1433, tls to verify). Instead of `password=`, `password-env=NAME` reads the
/// password from the environment variable NAME (as it is) and `password-file=PATH` from a file
/// (its text, less one final line break): the way to pass a password that holds `;`, and to keep
/// it out of the shell's history and the process list. The error never contains any part of the
/// password.
///
/// # Errors
/// [`ConnectionError`].
pub fn parse_connection(text: &str) -> Result<TargetLogin, ConnectionError> {
    parse_connection_with(text, |name| std::env::var_os(name))
}

/// [`parse_connection`] with the environment given as a lookup.
///
/// # Errors
/// [`ConnectionError`].
pub fn parse_connection_with(
    text: &str,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<TargetLogin, ConnectionError> {
    let parts = parse_parts(text)?;
    let host = parts
        .host
        .filter(|h| !h.is_empty())
        .ok_or(ConnectionError::Missing("host"))?;
    let username = parts.user.ok_or(ConnectionError::Missing("user"))?;
    let source = parts.password.ok_or(ConnectionError::Missing(
        "password (password=, password-env=NAME or password-file=PATH)",
    ))?;
    Ok(TargetLogin {
        host,
        port: parts.port,
        username,
        password: read_password(source, env)?,
        tls: parts.tls,
    })
}

/// The parts of a `--target` string as given, the password not yet read from its source (no
/// `Debug`: it may hold the password).
struct Parts {
    host: Option<String>,
    port: u16,
    user: Option<String>,
    password: Option<PasswordSource>,
    tls: Tls,
}

/// Splits a `--target` string into its parts, checking each key and value.
fn parse_parts(text: &str) -> Result<Parts, ConnectionError> {
    let mut parts = Parts {
        host: None,
        port: 1433,
        user: None,
        password: None,
        tls: Tls::Verify,
    };
    // Once an inline password was given, any later part may be the rest of it (a password
    // holding ';'): errors then name the part by its position only.
    let mut after_password = false;
    let mut seen: Vec<&str> = Vec::new();
    let pieces = text.split(';').map(str::trim).filter(|p| !p.is_empty());
    for (i, part) in pieces.enumerate() {
        let position = i + 1;
        let Some((key, value)) = part.split_once('=') else {
            return Err(not_key_value(part, position, after_password));
        };
        let value = value.trim();
        let key = known_key(key, position, after_password, parts.password.is_some())?;
        if seen.contains(&key) {
            return Err(ConnectionError::Repeated(position));
        }
        seen.push(key);
        match key {
            "host" => parts.host = Some(value.to_owned()),
            "port" => {
                parts.port = value.parse().map_err(|_| {
                    if after_password {
                        ConnectionError::BadPortAfterPassword(position)
                    } else {
                        ConnectionError::BadPort(value.to_owned())
                    }
                })?;
            }
            "user" => parts.user = Some(value.to_owned()),
            "password" => {
                parts.password = Some(PasswordSource::Inline(value.to_owned()));
                after_password = true;
            }
            "password-env" => parts.password = Some(PasswordSource::Env(value.to_owned())),
            "password-file" => parts.password = Some(PasswordSource::File(value.to_owned())),
            _ => {
                parts.tls = value.parse().map_err(|e: String| {
                    if after_password {
                        ConnectionError::BadTlsAfterPassword(position)
                    } else {
                        ConnectionError::BadTls(e)
                    }
                })?;
            }
        }
    }
    Ok(parts)
}

/// The error for a part without `=` (after an inline password, or one that starts like a
/// password, named by its position only).
fn not_key_value(part: &str, position: usize, after_password: bool) -> ConnectionError {
    if after_password {
        ConnectionError::NotKeyValueAfterPassword(position)
    } else if part.to_ascii_lowercase().starts_with("password") {
        ConnectionError::PasswordNotKeyValue(position)
    } else {
        ConnectionError::NotKeyValue {
            position,
            part: part.to_owned(),
        }
    }
}

/// A part's key under its one name (`server` is `host`, `username` is `user`); an unknown key
/// or a second password is an error.
fn known_key(
    key: &str,
    position: usize,
    after_password: bool,
    has_password: bool,
) -> Result<&'static str, ConnectionError> {
    Ok(match key.trim().to_ascii_lowercase().as_str() {
        "host" | "server" => "host",
        "port" => "port",
        "user" | "username" => "user",
        "password" | "password-env" | "password-file" if has_password => {
            return Err(if after_password {
                ConnectionError::Repeated(position)
            } else {
                ConnectionError::PasswordTwice
            });
        }
        "password" => "password",
        "password-env" => "password-env",
        "password-file" => "password-file",
        "tls" => "tls",
        other => {
            return Err(if after_password {
                ConnectionError::UnknownKeyAfterPassword(position)
            } else {
                ConnectionError::UnknownKey {
                    position,
                    key: other.to_owned(),
                }
            })
        }
    })
}

/// The password from where it comes: as given, an environment variable, or a file (less one
/// final line break). Empty is an error.
fn read_password(
    source: PasswordSource,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<String, ConnectionError> {
    Ok(match source {
        PasswordSource::Inline(p) => p,
        PasswordSource::Env(name) => {
            let value =
                env(&name).ok_or_else(|| ConnectionError::PasswordEnvUnset(name.clone()))?;
            let value = value
                .into_string()
                .map_err(|_| ConnectionError::PasswordEnvNotUnicode(name))?;
            if value.is_empty() {
                return Err(ConnectionError::PasswordEmpty("password-env"));
            }
            value
        }
        PasswordSource::File(path) => {
            let bytes = std::fs::read(&path).map_err(|source| ConnectionError::PasswordFile {
                path: path.clone(),
                source,
            })?;
            let mut value =
                String::from_utf8(bytes).map_err(|_| ConnectionError::PasswordFileNotUtf8(path))?;
            // `echo secret > file` adds a line break that is not part of the password.
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                return Err(ConnectionError::PasswordEmpty("password-file"));
            }
            value
        }
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

    /// Every text an error shows: its message, its debug form and its sources'.
    fn everything_shown(err: &ConnectionError) -> String {
        let mut all = format!("{err} {err:?}");
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            all.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        all.to_lowercase()
    }

    #[test]
    fn connection_errors_never_show_any_part_of_the_password() {
        // (connection string, the password's pieces that must not appear, in any case)
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                "host=db;user=u;password=hunter2;colour=blue".into(),
                vec!["hunter2"],
            ),
            ("host=db;user=u;passwordhunter2".into(), vec!["hunter2"]),
            (
                "host=db;user=u;password=hunter2;port=x".into(),
                vec!["hunter2"],
            ),
            ("user=u;password=hunter2".into(), vec!["hunter2"]),
            // Passwords holding ';' (today's leak: the part after it was printed), '=' and
            // spaces, whatever follows.
            ("host=db;user=u;password=Hq7;Tz4".into(), vec!["hq7", "tz4"]),
            (
                "host=db;user=u;password=Hq7;Tz4=Vb2 Wm4;Jp6".into(),
                vec!["hq7", "tz4", "vb2", "wm4", "jp6"],
            ),
            (
                "host=db;user=u;password=Hq7 Xr5;port=Kz9".into(),
                vec!["hq7", "xr5", "kz9"],
            ),
            (
                "host=db;user=u;password=Hq7;tls=Qv7".into(),
                vec!["hq7", "qv7"],
            ),
            (
                "host=db;user=u;password=Hq7;user=Jw2".into(),
                vec!["hq7", "jw2"],
            ),
            (
                "host=db;user=u;password=Hq7;password=Pq3".into(),
                vec!["hq7", "pq3"],
            ),
            (
                "host=db;user=u;password=Hq7;host=Nd5".into(),
                vec!["hq7", "nd5"],
            ),
            (
                "host=db;user=u;password=Hq7;password-file=Fz1".into(),
                vec!["hq7", "fz1"],
            ),
            ("host=db;password=Hq7;;Zy3".into(), vec!["hq7", "zy3"]),
            ("password=Hq7=Rt6;port=".into(), vec!["hq7", "rt6"]),
        ];
        for (text, pieces) in cases {
            let err = parse_connection_with(&text, |_| None).expect_err(&text);
            let shown = everything_shown(&err);
            for piece in pieces {
                assert!(!shown.contains(piece), "{text}: {piece} in {shown}");
            }
        }
    }

    #[test]
    fn errors_before_any_password_still_name_what_is_wrong() {
        let err = parse_connection_with("host=db;colour=blue;user=u;password=p", |_| None)
            .expect_err("unknown key");
        assert!(err.to_string().contains("\"colour\""), "{err}");
        let err = parse_connection_with("host=db;port=x;user=u;password=p", |_| None)
            .expect_err("bad port");
        assert!(err.to_string().contains("\"x\""), "{err}");
    }

    #[test]
    fn the_password_comes_from_an_environment_variable_as_it_is() {
        let secret = " Se;cr=et pass;word ";
        let env = |name: &str| (name == "BAKDROP_PW").then(|| secret.into());
        let login = parse_connection_with("host=db;user=sa;password-env=BAKDROP_PW;tls=off", env)
            .expect("valid");
        assert_eq!(login.password, secret);
        assert_eq!((login.host.as_str(), login.username.as_str()), ("db", "sa"));
        let err =
            parse_connection_with("host=db;user=sa;password-env=NOPE", env).expect_err("unset");
        assert!(err.to_string().contains("NOPE"), "{err}");
        let err = parse_connection_with("host=db;user=sa;password-env=EMPTY", |_| {
            Some(String::new().into())
        })
        .expect_err("empty");
        assert!(matches!(err, ConnectionError::PasswordEmpty(_)), "{err}");
    }

    #[test]
    fn the_password_comes_from_a_file_less_its_final_line_break() {
        let dir = std::env::temp_dir().join(format!("bakdrop-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (content, password) in [
            ("Se;cr=et pass;word\n", "Se;cr=et pass;word"),
            ("Se;cr=et pass;word\r\n", "Se;cr=et pass;word"),
            (" spaced ", " spaced "),
            ("two lines\n\n", "two lines\n"),
        ] {
            let file = dir.join("pw");
            std::fs::write(&file, content).expect("write");
            let login = parse_connection_with(
                &format!("host=db;user=sa;password-file={}", file.display()),
                |_| None,
            )
            .expect("valid");
            assert_eq!(login.password, password, "{content:?}");
        }
        let missing = dir.join("missing");
        let err = parse_connection_with(
            &format!("host=db;user=sa;password-file={}", missing.display()),
            |_| None,
        )
        .expect_err("missing");
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::write(dir.join("pw"), "\n").expect("write");
        let err = parse_connection_with(
            &format!("host=db;user=sa;password-file={}", dir.join("pw").display()),
            |_| None,
        )
        .expect_err("empty");
        assert!(matches!(err, ConnectionError::PasswordEmpty(_)), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_password_is_given_once() {
        for text in [
            "host=db;user=u;password-env=A;password=p",
            "host=db;user=u;password-file=/x;password-env=A",
        ] {
            let err = parse_connection_with(text, |_| Some("x".into())).expect_err(text);
            assert!(
                matches!(err, ConnectionError::PasswordTwice),
                "{text}: {err}"
            );
        }
    }
}
