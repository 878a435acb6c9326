//! [`SqlServerEmulator`]: a [`Handler`] with shared, seedable state that answers the SQL Server
//! statements bakdrop sends, with SQL Server's error numbers.
//!
//! # Layout
//! - `sql`: tokenizer, cursor, expressions, [`normalise`](sql::normalise).
//! - `exec`: batch parsing into statement forms and their execution (SELECT engine, RESTORE, DROP).
//! - `tables`: the virtual tables `SELECT` reads.
//! - `procs`: the RDS and Agent procedures, and [`refresh`](procs::refresh) over simulated time.
//! - `restore`: restore outcome rules shared by RDS tasks, Agent jobs and direct `RESTORE`.
//! - `state`: the state tests seed and read.
//!
//! # Statement forms understood
//!
//! Text is tokenized (case-insensitive keywords, `[quoted]` identifiers with `]]`, `N'...'`
//! literals, comments dropped); a batch may hold several statements separated by `;` or simply
//! following each other. A batch that does not parse fails whole with **102** "Incorrect syntax
//! near ..." (or **105** for an unclosed quote) before anything runs, as SQL Server does.
//! Values may be literals or parameters (`@P1` from tiberius' `query`/`execute`); an unknown
//! parameter is **137** "Must declare the scalar variable".
//!
//! - `SELECT expr [AS alias], ...` without `FROM`: `SERVERPROPERTY('ProductVersion' |
//!   'ProductMajorVersion' | 'ProductMinorVersion' | 'ProductBuild' | 'ProductLevel' |
//!   'ProductUpdateLevel' | 'Edition' | 'EngineEdition' | 'ServerName' | 'MachineName' |
//!   'Collation')` (strings, EngineEdition an int, unknown properties NULL), `@@VERSION`,
//!   `@@SERVERNAME`, `@@SPID`, `@@MICROSOFTVERSION`, `DB_ID(x)`, `DB_NAME([id])`,
//!   `DATABASEPROPERTYEX(db, 'Status')`, `SYSUTCDATETIME()`, `ISNULL`, literals, parameters.
//!   Unknown functions are **195**.
//! - `SELECT [TOP n] items FROM table [alias] [WHERE c AND c ...] [ORDER BY col [DESC], ...]`
//!   where items are `*`, columns (with aliases), expressions or `COUNT(*)`, and each condition is
//!   `x = y`, `<>`, `<`, `<=`, `>`, `>=`, `x [NOT] IN (...)`, `x IS [NOT] NULL` (strings compare
//!   case-insensitively, NULL never matches). Tables (`msdb.dbo.` or `msdb..` prefixes):
//!   `sys.databases` (name, database_id, state, state_desc, recovery_model_desc,
//!   user_access_desc, is_read_only, compatibility_level, create_date),
//!   `sys.dm_exec_requests` (session_id, request_id, start_time, status, command
//!   — `RESTORE DATABASE`/`RESTORE LOG` for running restores —, database_id of the restored
//!   database, percent_complete, estimated_completion_time, wait_type),
//!   `msdb.dbo.sysjobs` (job_id, name, enabled, description, start_step_id),
//!   `msdb.dbo.sysjobsteps`, `msdb.dbo.sysjobhistory` (instance_id, job_id, step_id, step_name,
//!   sql_message_id, sql_severity, message, run_status, run_date, run_time, run_duration,
//!   server), `msdb.dbo.sysjobactivity` (session_id, job_id, run_requested_date,
//!   run_requested_source, start_execution_date, last_executed_step_id,
//!   last_executed_step_date, stop_execution_date, job_history_id), `msdb.dbo.restorehistory`
//!   (simplified: restore_history_id, destination_database_name, restore_type, recovery,
//!   source). Joins are not supported. Unknown table **208**, unknown column **207**.
//! - `EXEC[UTE] [@rc =] proc [@name =] value [OUTPUT], ...` (named or positional). Unknown
//!   procedure **2812**; unknown parameter **8145**; missing required one **201**. The
//!   procedures must be called as `msdb.dbo.x` (or unqualified after `USE msdb`):
//!   - RDS (only when [`ServerInfo::rds`]): `rds_restore_database @restore_db_name,
//!     @s3_arn_to_restore_from, [@with_norecovery], [@type = FULL|DIFFERENTIAL],
//!     [@kms_master_key_arn]` and `rds_restore_log @restore_db_name, @s3_arn_to_restore_from,
//!     [@with_norecovery]` return one row (task_id, task_type, lifecycle, created_at,
//!     last_updated, database_name, S3_object_arn, overwrite_S3_backup_file,
//!     KMS_master_key_arn, task_progress, task_info) and start a task: CREATED for
//!     [`State::rds_queue_delay`], IN_PROGRESS for the database's restore duration (`% complete`
//!     rising), then SUCCESS or ERROR (task_info ends with `Msg n, Level 16, ...` lines). At most
//!     [`State::rds_max_concurrent_tasks`] (2) active tasks; a third is refused with error
//!     50000. `rds_task_status [@db_name], [@task_id]` returns task_id, task_type,
//!     database_name, `% complete`, `duration(mins)`, lifecycle, task_info, last_updated,
//!     created_at, S3_object_arn, overwrite_S3_backup_file, KMS_master_key_arn, filepath,
//!     overwrite_file. `rds_finish_restore @db_name` (RESTORING → ONLINE),
//!     `rds_cancel_task @task_id` (CANCEL_REQUESTED → CANCELLED), `rds_drop_database @db_name`.
//!     ARNs must start with `arn:aws:s3:::`; system database names are refused.
//!   - Agent: `sp_add_job @job_name`, `sp_add_jobstep @job_name|@job_id, @step_name,
//!     [@subsystem], @command, [@database_name]`, `sp_add_jobserver @job_name`, `sp_start_job
//!     @job_name` (14262 unknown job, 14256 without a job server, 22022 already running; info
//!     14243 on success), `sp_stop_job`, `sp_delete_job`, `sp_help_job` (one result set). A step
//!     whose command holds a `RESTORE ... FROM ...` runs over simulated time and is visible in
//!     `sys.dm_exec_requests`; any other step command runs at once through the same executor.
//!     When it ends, `sysjobhistory` gets the step row (step_id 1, run_status 1/0,
//!     sql_message_id = the first error number, message "Executed as user: ... (Error n) ...
//!     The step failed.") and the outcome row (step_id 0).
//! - `RESTORE DATABASE|LOG [db] FROM URL|DISK = x [, URL|DISK = y] [WITH NORECOVERY | RECOVERY |
//!   STANDBY = f, REPLACE, CHECKSUM, STATS [= n], MOVE a TO b, FILE = n, ...]` runs at once when
//!   sent directly (INFO 4035/3014, or the error then **3013** "RESTORE DATABASE is terminating
//!   abnormally."). `RESTORE DATABASE [db] WITH RECOVERY` (no FROM) brings a RESTORING
//!   database ONLINE (3117 if it is not restoring, 911 if missing).
//! - `DROP DATABASE [IF EXISTS] [a], [b]` (3701 missing, 3708 system, 3702 restore running),
//!   `USE [db]` (911), `SET option ...` (no effect), `PRINT x` (INFO).
//! - Batch-local variables: `DECLARE @v type [= expr], ...`, `SET @v = expr`, and `OUTPUT`
//!   arguments (`sp_add_job` returns `@job_id`), e.g. `DECLARE @id uniqueidentifier; EXEC
//!   msdb.dbo.sp_add_job @job_name = @P1, @job_id = @id OUTPUT; SELECT @id AS job_id`.
//!
//! Restore rules (RDS, Agent and direct alike), decided at submit time: a scripted failure for
//! the database wins ([`SqlServerEmulator::fail_next_restore`]); a backup registered in the
//! catalog ([`SqlServerEmulator::register_backup`]) with a newer `DatabaseVersion` fails with
//! **3169**; a full restore over an existing database fails (**3154** natively, RDS's "already
//! exists" text as 1801 in task_info) unless `REPLACE`; a differential or log needs the database
//! RESTORING (**3117**, or **3136**/**3701** when missing); with catalog LSNs a log that starts
//! after the database's last LSN fails with **4305**, one that ends at or before it with
//! **4326**. A new database appears as RESTORING while its full restore runs and disappears if it
//! fails.

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

    /// How long a `FINISH_RESTORE` task stays IN_PROGRESS (default 2 s).
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
        state.requests.push(RecordedRequest {
            request: req.clone(),
            normalised: sql::normalise(&req.sql),
            spid: session.spid,
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
