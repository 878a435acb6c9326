//! [`SqlServerEmulator`]: a [`Handler`] with shared, seedable state that answers the SQL Server
//! statements bakdrop sends, with SQL Server's error numbers, and refuses what SQL Server 2022
//! or Amazon RDS would refuse. Every behaviour and error is listed, with the documentation page
//! it follows (or why it is assumed), in `tests/tds-server/BEHAVIOURS.md`.
//!
//! # Layout
//! - `sql`: tokenizer, cursor, expressions (`+` concatenation), [`normalise`](sql::normalise).
//! - `parse`: a batch into statement forms (compile errors fail the whole batch).
//! - `exec`: running a batch: TRY/CATCH, IF, THROW, blocks, and each statement.
//! - `query`: expressions, built-in functions, conditions (`LIKE`), the SELECT engine.
//! - `tables`: the virtual tables `SELECT` reads.
//! - `procs`: the RDS and Agent procedures and their parameter binding.
//! - `rds`: RDS tasks (submit, finish, cancel) and their queue over simulated time.
//! - `agent`: SQL Server Agent: job steps (tokens first), sessions, activity, history.
//! - `restore`: reading the media (the backup catalog) and deciding a restore's outcome.
//! - `fs`: the server's own file system (how paths compare).
//! - `state`: the state tests seed and read.
//!
//! # The server's world
//!
//! - **Media**: a source (disk path, URL or S3 ARN, matched exactly as sent) exists only when a
//!   test registered it ([`SqlServerEmulator::register_backup`] with a [`BackupInfo`]: what
//!   RESTORE HEADERONLY/FILELISTONLY would say: type, database name, LSNs, versions,
//!   checksums, media family, file list).
//! - **Files**: [`ServerInfo`] has a platform ([`ServerInfo::native_2022`]: Linux,
//!   `/var/opt/mssql/data/`; [`ServerInfo::rds_2022`]: Windows, `D:\rdsdbdata\DATA\`). The
//!   default directories exist ([`SqlServerEmulator::add_directory`] adds more); every database,
//!   system ones included, uses its physical files until it is dropped. Paths compare
//!   case-insensitively on Windows and case-sensitively on Linux; either separator is read.
//! - **Credentials** ([`SqlServerEmulator::add_credential`]), **bucket Regions**
//!   ([`SqlServerEmulator::set_bucket_region`]; others are in `ServerInfo::region`).
//! - **SQL Server Agent** runs except on Express ([`SqlServerEmulator::set_agent_running`],
//!   [`SqlServerEmulator::restart_agent`]): each start is a `syssessions` row.
//! - **Permissions**: one switch, VIEW SERVER STATE ([`SqlServerEmulator::set_view_server_state`]).
//!
//! # Statement forms understood
//!
//! Text is tokenized (case-insensitive keywords, `[quoted]` identifiers with `]]`, `N'...'`
//! literals, comments dropped); a batch may hold several statements separated by `;` or simply
//! following each other. A batch that does not parse fails whole with **102** "Incorrect syntax
//! near ..." (**105** unclosed quote, **155** an unknown RESTORE option) before anything runs.
//! Values may be literals, parameters (`@P1`) or variables; an unknown one is **137**.
//!
//! - `SELECT expr [AS alias], ...` without `FROM`: `SERVERPROPERTY('ProductVersion' |
//!   'ProductMajorVersion' | 'ProductMinorVersion' | 'ProductBuild' | 'ProductLevel' |
//!   'ProductUpdateLevel' | 'Edition' | 'EngineEdition' | 'ServerName' | 'MachineName' |
//!   'Collation' | 'InstanceDefaultDataPath' | 'InstanceDefaultLogPath' |
//!   'InstanceDefaultBackupPath')`, `@@VERSION`, `@@SERVERNAME`, `@@SPID`,
//!   `@@MICROSOFTVERSION`, `DB_ID(x)`, `DB_NAME([id])`, `DATABASEPROPERTYEX(db, 'Status')`,
//!   `SYSUTCDATETIME()`, `ISNULL`, `CAST`, `ERROR_NUMBER()`/`ERROR_MESSAGE()`, `a + b`.
//!   Unknown functions are **195**.
//! - `SELECT [TOP n] items FROM table [alias] [WHERE c AND c ...] [ORDER BY col [DESC], ...]`
//!   where items are `*`, columns, expressions, or only aggregates (`COUNT(*)`, `COUNT(x)`,
//!   `MAX(x)`, `MIN(x)`; a column beside them is **8120**), and each condition is `=`, `<>`,
//!   `<`, `<=`, `>`, `>=`, `[NOT] IN (...)`, `IS [NOT] NULL`, `[NOT] LIKE` (`%`, `_`, `[set]`);
//!   strings compare case-insensitively, NULL never matches. Tables (`msdb.dbo.`/`msdb..`):
//!   `sys.databases`, `sys.credentials`, `sys.dm_exec_requests` (the caller's request and each
//!   running restore: `database_id` is the database the request runs in, an Agent step's
//!   `@database_name`), `sys.dm_exec_sessions` (the caller, Agent's own `SQLAgent - …` sessions
//!   while it runs, `SQLAgent - TSQL JobStep (Job 0x… : Step 1)` for a step running a restore),
//!   `sys.dm_server_services` (**300** + **297** without VIEW SERVER STATE), `msdb.dbo.sysjobs`,
//!   `sysjobsteps`, `sysjobhistory`, `sysjobactivity`, `syssessions`, `restorehistory`. Without
//!   VIEW SERVER STATE the two session DMVs show the caller's session only. Joins and subqueries
//!   are not supported. Unknown table **208**, unknown column **207**.
//! - `EXEC[UTE] [@rc =] proc [@name =] value [OUTPUT], ...` (values are constants, variables or
//!   bare words; an expression is **102**). Unknown procedure **2812**, parameter **8145**,
//!   missing one **201**. Procedures are `msdb.dbo.x` (or unqualified after `USE msdb`):
//!   - RDS (only when [`ServerInfo::rds`]): `rds_restore_database`, `rds_restore_log` (a row
//!     describing the task unless [`SqlServerEmulator::set_rds_submit_returns_row`] is off),
//!     `rds_task_status`, `rds_finish_restore` (a `FINISH_RESTORE` task, no result set),
//!     `rds_cancel_task`, `rds_drop_database`. Tasks queue: at most two IN_PROGRESS, the rest
//!     CREATED; failures end in ERROR with RDS's documented texts in `task_info`.
//!   - Agent: `sp_add_job`, `sp_add_jobstep`, `sp_add_jobserver`, `sp_start_job` (**22022**
//!     when Agent is not running), `sp_stop_job`, `sp_delete_job` (`@job_id` or `@job_name`),
//!     `sp_help_job`. A T-SQL step has its `$(…)` tokens replaced first (a token without an
//!     `ESCAPE_*` macro fails the step), then runs in its own session and database; its
//!     `RESTORE … FROM` runs over simulated time. `sysjobhistory` lists every error
//!     ("… (Error 3201)  … (Error 3013).  The step failed.", `sql_message_id` the last one).
//! - `RESTORE DATABASE|LOG { [db] | @var } FROM { URL | DISK } = { 'x' | @var } [, …] [WITH
//!   NORECOVERY | RECOVERY | STANDBY = f, REPLACE, CHECKSUM, STATS [= n], MOVE { 'l' | @v } TO
//!   { 'p' | @v }, CREDENTIAL = c, RESTORE_OPTIONS = '{"s3": {"region":"…"}}', FILE = n, …]`
//!   runs at once when sent directly (INFO 4035/3014, or the errors then **3013**). The order
//!   of refusals is in [`restore`]. `RESTORE DATABASE [db] WITH RECOVERY` (no FROM) brings a
//!   RESTORING database ONLINE (3117 if it is not restoring, 911 if missing, then 3013): at
//!   once when sent directly, over the finish duration in an Agent job step.
//! - `DROP DATABASE [IF EXISTS] [a], [b]` (3701 missing, 3708 system, 3702 restore running),
//!   `USE [db]` (911), `SET option ...` (no effect), `PRINT x` (INFO).
//! - `DECLARE @v type [= expr], ...`, `SET @v = expr`, OUTPUT arguments, `IF cond stmt [ELSE
//!   stmt]`, `BEGIN … END`, `BEGIN TRY … END TRY BEGIN CATCH … END CATCH` (an error inside TRY
//!   reaches no client; CATCH sees the failed statement's last error), `THROW;` (re-raises it
//!   and ends the batch; outside CATCH **10704**), `THROW n, 'text', state;`.

pub mod agent;
pub mod exec;
pub mod fs;
pub mod parse;
pub mod procs;
pub mod query;
pub mod rds;
pub mod restore;
pub mod sql;
pub mod state;
pub mod tables;

pub use state::{
    AgentJob, AgentSession, BackupFileInfo, BackupInfo, BackupKind, ClockMode, Database,
    DatabaseState, FileKind, JobActivity, JobHistory, Lifecycle, Platform, RdsTask,
    RecordedRequest, Release, RestoreRecord, ScriptedFailure, ServerInfo, State, RELEASES,
};

use crate::protocol::{
    Handler, Reply, Request, RequestKind, ServerHandle, ServerMessage, ServerVersion, Session,
    StartError, TdsServer, Value,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The SQL Server emulator; cheap to clone (clones share state).
#[derive(Debug, Clone)]
pub struct SqlServerEmulator {
    state: Arc<Mutex<State>>,
}

impl SqlServerEmulator {
    /// An emulator with this server identity.
    pub fn new(server: ServerInfo) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new(server))),
        }
    }

    /// SQL Server 2022 on Amazon RDS.
    pub fn rds() -> Self {
        Self::new(ServerInfo::rds_2022())
    }

    /// SQL Server 2022 on Linux, EC2 or on premises (native RESTORE and Agent jobs, no RDS
    /// procedures).
    pub fn native() -> Self {
        Self::new(ServerInfo::native_2022())
    }

    /// SQL Server 2022 Express on Linux (`EngineEdition` 4): no SQL Server Agent.
    pub fn native_express() -> Self {
        Self::new(ServerInfo::native_2022_express())
    }

    /// What the server says about itself.
    pub fn server_info(&self) -> ServerInfo {
        self.lock().server.clone()
    }

    /// Starts a TDS server on `127.0.0.1:0` answering with this emulator.
    ///
    /// # Errors
    /// [`StartError`] when the socket cannot be bound.
    pub async fn start(&self) -> Result<(SocketAddr, ServerHandle), StartError> {
        TdsServer::start(Arc::new(self.clone())).await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state after moving tasks and jobs to the current simulated time.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.lock();
        procs::refresh(&mut s);
        f(&mut s)
    }

    /// Moves simulated time forward (tasks and jobs progress accordingly).
    pub fn advance(&self, by: Duration) {
        self.with_state(|s| {
            s.advanced += by;
            procs::refresh(s);
        });
    }

    /// Chooses wall-clock or manual simulated time.
    pub fn set_clock_mode(&self, mode: ClockMode) {
        self.with_state(|s| {
            let now = s.now();
            s.clock_mode = mode;
            // Keep simulated time continuous across the switch.
            s.advanced = match mode {
                ClockMode::Manual => now,
                ClockMode::Wall => now.saturating_sub(s.origin.elapsed()),
            };
        });
    }

    /// Sets how long restores take: for one database, or the default (`None`).
    pub fn set_restore_duration(&self, database: Option<&str>, duration: Duration) {
        self.with_state(|s| match database {
            Some(db) => {
                s.restore_durations.insert(db.to_lowercase(), duration);
            }
            None => s.default_restore_duration = duration,
        });
    }

    /// Sets how long a restore from `source` (an ARN, URL or disk path as the restore names it)
    /// takes, whatever the database: a model of each backup's own restore time.
    pub fn set_restore_duration_of(&self, source: &str, duration: Duration) {
        self.with_state(|s| {
            s.source_restore_durations
                .insert(source.to_owned(), duration);
        });
    }

    /// Adds a database (e.g. one that already exists on the target).
    pub fn add_database(&self, name: &str, state: DatabaseState) {
        self.with_state(|s| {
            s.add_database(name, state);
        });
    }

    /// A database by name (case-insensitive).
    pub fn database(&self, name: &str) -> Option<Database> {
        self.with_state(|s| s.database(name).cloned())
    }

    /// RDS tasks in creation order.
    pub fn rds_tasks(&self) -> Vec<RdsTask> {
        self.with_state(|s| s.rds_tasks.clone())
    }

    /// An Agent job by name.
    pub fn job(&self, name: &str) -> Option<AgentJob> {
        self.with_state(|s| s.jobs.get(&name.to_lowercase()).cloned())
    }

    /// `msdb.dbo.sysjobhistory` rows.
    pub fn job_history(&self) -> Vec<JobHistory> {
        self.with_state(|s| s.job_history.clone())
    }

    /// Makes the next restore of `database` (RDS, Agent or direct) fail with this error.
    pub fn fail_next_restore(&self, database: &str, number: u32, message: &str) {
        self.with_state(|s| {
            s.scripted_failures.push(ScriptedFailure {
                database: database.to_string(),
                number,
                message: message.to_string(),
            })
        });
    }

    /// Makes a backup medium exist: what a source (disk path, URL or S3 ARN, matched exactly as
    /// it will be sent) holds, as RESTORE HEADERONLY and FILELISTONLY would describe it. A source
    /// that is not registered does not exist (3201, or an RDS task in ERROR).
    pub fn register_backup(&self, source: &str, info: BackupInfo) {
        self.with_state(|s| {
            s.backups.insert(source.to_string(), info);
        });
    }

    /// Adds a directory (and its parents) to the server's file system.
    pub fn add_directory(&self, path: &str) {
        self.with_state(|s| s.add_directory(path));
    }

    /// Sets the physical files a database uses (they are then in use: error 1834 for a restore
    /// that would overwrite them).
    pub fn set_database_files(&self, database: &str, files: &[&str]) {
        self.with_state(|s| {
            if let Some(db) = s.databases.get_mut(&database.to_lowercase()) {
                db.files = files.iter().map(|f| (*f).to_string()).collect();
            }
        });
    }

    /// Adds a server credential (`sys.credentials`), e.g. `s3://host:9000/bucket`.
    pub fn add_credential(&self, name: &str) {
        self.with_state(|s| {
            if !s.credentials.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                s.credentials.push(name.to_string());
            }
        });
    }

    /// Places an S3 bucket in a Region (others are in the server's Region).
    pub fn set_bucket_region(&self, bucket: &str, region: &str) {
        self.with_state(|s| {
            s.bucket_regions
                .insert(bucket.to_string(), region.to_string());
        });
    }

    /// Starts or stops SQL Server Agent. Starting begins a new Agent session (a `syssessions`
    /// row); stopping kills running jobs (their activity rows keep no stop date). An edition
    /// without Agent (Express) ignores a start.
    pub fn set_agent_running(&self, running: bool) {
        self.with_state(|s| match (running, s.agent_running) {
            (true, false) => s.start_agent(),
            (false, true) => s.stop_agent(),
            _ => {}
        });
    }

    /// Restarts SQL Server Agent the way an unplanned stop and a start do: a new Agent session;
    /// jobs that were running die, leaving stale activity rows in the old session.
    pub fn restart_agent(&self) {
        self.with_state(|s| {
            s.stop_agent();
            s.start_agent();
        });
    }

    /// Gives or takes the login's VIEW SERVER STATE: without it, `sys.dm_exec_requests` and
    /// `sys.dm_exec_sessions` show only the caller's own session and `sys.dm_server_services`
    /// is refused (300).
    pub fn set_view_server_state(&self, granted: bool) {
        self.with_state(|s| s.view_server_state = granted);
    }

    /// Whether `rds_restore_database`/`rds_restore_log` return a row describing the new task
    /// (RDS does not document a result set; default `true`).
    pub fn set_rds_submit_returns_row(&self, returns_row: bool) {
        self.with_state(|s| s.rds_submit_returns_row = returns_row);
    }

    /// How long bringing a database online takes (default 2 s): an RDS `FINISH_RESTORE` task
    /// stays IN_PROGRESS, an Agent job step's `RESTORE DATABASE … WITH RECOVERY` runs, that long.
    pub fn set_finish_duration(&self, duration: Duration) {
        self.with_state(|s| s.finish_duration = duration);
    }

    /// `msdb.dbo.syssessions` rows.
    pub fn agent_sessions(&self) -> Vec<AgentSession> {
        self.with_state(|s| s.agent_sessions.clone())
    }

    /// `msdb.dbo.sysjobactivity` rows.
    pub fn job_activity(&self) -> Vec<JobActivity> {
        self.with_state(|s| s.job_activity.clone())
    }

    /// Describes media nobody registered: called with a restore's source text (a path, URL or
    /// ARN) the first time it is read; `None` is a medium that does not exist.
    pub fn set_media_resolver(&self, resolver: state::MediaResolver) {
        self.with_state(|s| s.media_resolver = Some(resolver));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.with_state(|s| s.requests.clone())
    }

    /// Database names that reached the server as unquoted identifiers (not `[bracketed]`) in
    /// `RESTORE`, `DROP DATABASE` or `USE`, including inside Agent job step commands sent as
    /// parameters. bakdrop always bracket-quotes names, so tests expect this to be empty.
    pub fn unquoted_database_identifiers(&self) -> Vec<String> {
        let mut texts = Vec::new();
        for r in self.requests() {
            texts.push(r.request.sql.clone());
            for (_, v) in &r.request.params {
                if let Value::NVarChar(s) = v {
                    texts.push(s.clone());
                }
            }
        }
        let mut out = Vec::new();
        for t in texts {
            let Ok(stmts) = exec::parse_batch(&t) else {
                continue;
            };
            for n in exec::database_names(&stmts) {
                if n.quoted.last() == Some(&false) {
                    out.push(n.last().to_string());
                }
            }
        }
        out
    }

    /// From now on only `user` with `password` may log in (SQL Server's 18456 for others).
    pub fn require_login(&self, user: &str, password: &str) {
        self.lock()
            .logins
            .insert(user.to_owned(), password.to_owned());
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        self.with_state(|s| s.requests.clear());
    }
}

impl Handler for SqlServerEmulator {
    /// SQL Server's 18456 for a user or password it does not know, when logins are set
    /// ([`SqlServerEmulator::require_login`]); otherwise any login.
    fn login(&self, session: &Session, password: &str) -> Result<(), ServerMessage> {
        let state = self.lock();
        if state.logins.is_empty()
            || state
                .logins
                .get(&session.user)
                .is_some_and(|p| p == password)
        {
            return Ok(());
        }
        Err(ServerMessage::error(
            18456,
            format!("Login failed for user '{}'.", session.user),
        ))
    }

    fn handle(&self, session: &mut Session, req: &Request) -> Reply {
        let mut state = self.lock();
        procs::refresh(&mut state);
        let at = state.now();
        state.requests.push(RecordedRequest {
            request: req.clone(),
            normalised: sql::normalise(&req.sql),
            spid: session.spid,
            at,
        });
        let mut ctx = exec::Ctx::new(&mut state, session, Some(req));
        match &req.kind {
            RequestKind::Procedure(name) => {
                // An RPC by procedure name: its parameters are the procedure's arguments.
                let proc = sql::tokenize(name)
                    .ok()
                    .and_then(|toks| sql::Cursor::new(&toks).name().ok());
                let Some(proc) = proc else {
                    return Reply::error(ServerMessage::error(
                        2812,
                        format!("Could not find stored procedure '{name}'."),
                    ));
                };
                let args: Vec<(Option<String>, Value)> = req
                    .params
                    .iter()
                    .map(|(n, v)| ((!n.is_empty()).then(|| n.clone()), v.clone()))
                    .collect();
                procs::call(&mut ctx, &proc, &args).unwrap_or_else(Reply::error)
            }
            RequestKind::Batch | RequestKind::ExecuteSql => exec::run_batch(&mut ctx, &req.sql),
        }
    }

    fn version(&self) -> ServerVersion {
        let s = self.lock();
        ServerVersion {
            major: s.server.major(),
            minor: s.server.part(1) as u8,
            build: s.server.part(2) as u16,
        }
    }

    fn server_name(&self) -> String {
        self.lock().server.server_name.clone()
    }
}
