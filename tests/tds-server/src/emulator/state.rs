//! The emulated server's state: version, databases, RDS tasks, Agent jobs, the simulated clock,
//! scripted failures and the optional backup catalog used for version and LSN-chain checks.

use crate::protocol::{Request, ServerMessage};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use time::{OffsetDateTime, PrimitiveDateTime};

/// What the server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `SERVERPROPERTY('ProductVersion')`, e.g. "16.0.4135.4".
    pub product_version: String,
    /// `SERVERPROPERTY('ProductLevel')`, e.g. "RTM".
    pub product_level: String,
    /// `SERVERPROPERTY('ProductUpdateLevel')`, e.g. "CU12".
    pub product_update_level: String,
    /// `SERVERPROPERTY('Edition')`.
    pub edition: String,
    /// `SERVERPROPERTY('EngineEdition')` (2 Standard, 3 Enterprise, 4 Express).
    pub engine_edition: i32,
    /// `@@SERVERNAME` / `SERVERPROPERTY('ServerName')`.
    pub server_name: String,
    /// The internal database version this server writes (957 for 2022, 904 for 2019).
    pub database_version: u32,
    /// Whether the `msdb.dbo.rds_*` procedures exist (Amazon RDS).
    pub rds: bool,
}

impl ServerInfo {
    /// SQL Server 2022 CU12 Standard on Amazon RDS.
    pub fn rds_2022() -> Self {
        Self {
            product_version: "16.0.4135.4".to_string(),
            product_level: "RTM".to_string(),
            product_update_level: "CU12".to_string(),
            edition: "Standard Edition (64-bit)".to_string(),
            engine_edition: 2,
            server_name: "EC2AMAZ-EMULATOR".to_string(),
            database_version: 957,
            rds: true,
        }
    }

    /// SQL Server 2022 CU12 Developer on EC2 or on premises (no RDS procedures).
    pub fn native_2022() -> Self {
        Self {
            edition: "Developer Edition (64-bit)".to_string(),
            engine_edition: 3,
            server_name: "SQL2022".to_string(),
            rds: false,
            ..Self::rds_2022()
        }
    }

    /// SQL Server 2019 CU25 Standard on Amazon RDS.
    pub fn rds_2019() -> Self {
        Self {
            product_version: "15.0.4355.3".to_string(),
            product_update_level: "CU25".to_string(),
            database_version: 904,
            ..Self::rds_2022()
        }
    }

    /// The major version (16 for "16.0.4135.4").
    pub fn major(&self) -> u8 {
        self.part(0) as u8
    }

    /// Component `i` of the product version.
    pub fn part(&self, i: usize) -> u32 {
        self.product_version
            .split('.')
            .nth(i)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// `@@VERSION`.
    pub fn version_string(&self) -> String {
        let year = match self.major() {
            16 => "2022",
            15 => "2019",
            14 => "2017",
            13 => "2016",
            _ => "",
        };
        format!(
            "Microsoft SQL Server {year} ({}-{}) - {} (X64) \n\tMar 1 2024 00:00:00 \n\tCopyright (C) 2022 Microsoft Corporation\n\t{} on Windows Server 2022 Datacenter 10.0 <X64> (Build 20348: ) (Hypervisor)\n",
            self.product_level, self.product_update_level, self.product_version, self.edition
        )
    }
}

/// A database's `state_desc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseState {
    /// ONLINE.
    Online,
    /// RESTORING (restored WITH NORECOVERY, or a restore is running).
    Restoring,
    /// OFFLINE.
    Offline,
}

impl DatabaseState {
    /// `sys.databases.state_desc`.
    pub fn desc(self) -> &'static str {
        match self {
            DatabaseState::Online => "ONLINE",
            DatabaseState::Restoring => "RESTORING",
            DatabaseState::Offline => "OFFLINE",
        }
    }

    /// `sys.databases.state`.
    pub fn code(self) -> i32 {
        match self {
            DatabaseState::Online => 0,
            DatabaseState::Restoring => 1,
            DatabaseState::Offline => 6,
        }
    }
}

/// What kind of backup a restore applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    /// Full database backup.
    Full,
    /// Differential backup.
    Differential,
    /// Transaction log backup.
    Log,
}

/// One restore applied to a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRecord {
    /// What was restored.
    pub kind: BackupKind,
    /// The sources (S3 ARN, URL or disk path), as given.
    pub sources: Vec<String>,
    /// Whether it was WITH RECOVERY.
    pub recovery: bool,
    /// How it ran ("rds task 3", "agent job x", "direct").
    pub via: String,
}

/// An emulated database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// Name as created.
    pub name: String,
    /// `database_id`.
    pub database_id: i32,
    /// State.
    pub state: DatabaseState,
    /// Restores applied, oldest first.
    pub restored_from: Vec<RestoreRecord>,
    /// `LastLSN` of the last applied backup, when the catalog knew it.
    pub last_lsn: Option<u128>,
    /// `create_date`.
    pub created_at: PrimitiveDateTime,
}

/// What a backup file holds, registered by tests for version and LSN-chain checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Full, differential or log.
    pub kind: BackupKind,
    /// `FirstLSN`.
    pub first_lsn: u128,
    /// `LastLSN`.
    pub last_lsn: u128,
    /// `DatabaseVersion` (957 for 2022).
    pub database_version: u32,
    /// Software version as SQL Server prints it in 3169 (e.g. "16.00.4135").
    pub software_version: String,
}

/// A restore failure a test scripted for the next restore of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedFailure {
    /// Database (case-insensitive).
    pub database: String,
    /// SQL Server error number (3169, 4305, 3154, 3201, ...).
    pub number: u32,
    /// Message text.
    pub message: String,
}

/// RDS task lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Submitted, not started.
    Created,
    /// Running.
    InProgress,
    /// Finished well.
    Success,
    /// Failed.
    Error,
    /// Cancel asked, not yet effective.
    CancelRequested,
    /// Cancelled.
    Cancelled,
}

impl Lifecycle {
    /// As `rds_task_status` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Created => "CREATED",
            Lifecycle::InProgress => "IN_PROGRESS",
            Lifecycle::Success => "SUCCESS",
            Lifecycle::Error => "ERROR",
            Lifecycle::CancelRequested => "CANCEL_REQUESTED",
            Lifecycle::Cancelled => "CANCELLED",
        }
    }

    /// `true` while the task counts against the concurrency limit.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Lifecycle::Created | Lifecycle::InProgress | Lifecycle::CancelRequested
        )
    }
}

/// A restore to run over simulated time (RDS task or Agent job step).
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreOp {
    /// Target database.
    pub database: String,
    /// What is restored.
    pub kind: BackupKind,
    /// Sources (ARN / URL / disk).
    pub sources: Vec<String>,
    /// WITH RECOVERY (false: NORECOVERY).
    pub recovery: bool,
    /// WITH REPLACE.
    pub replace: bool,
    /// Outcome decided at submit time (errors SQL Server would raise).
    pub outcome: Result<(), Vec<ServerMessage>>,
    /// Whether this op created the database entry (removed again on failure).
    pub created_db: bool,
    /// Simulated start.
    pub started_at: Duration,
    /// Simulated length.
    pub duration: Duration,
    /// Session id shown in `sys.dm_exec_requests`.
    pub session_id: i32,
}

/// An RDS task (`rds_restore_database`, `rds_restore_log`).
#[derive(Debug, Clone, PartialEq)]
pub struct RdsTask {
    /// `task_id`.
    pub task_id: i32,
    /// `task_type` (RESTORE_DB, RESTORE_DB_NORECOVERY, RESTORE_DB_LOG_NORECOVERY, ...).
    pub task_type: String,
    /// Lifecycle.
    pub lifecycle: Lifecycle,
    /// `% complete`.
    pub percent: i32,
    /// `task_info`.
    pub task_info: String,
    /// `S3_object_arn`.
    pub s3_object_arn: String,
    /// `KMS_master_key_arn`.
    pub kms_master_key_arn: Option<String>,
    /// Simulated creation time.
    pub created_at: Duration,
    /// Simulated last update.
    pub last_updated: Duration,
    /// The restore it runs.
    pub op: RestoreOp,
}

/// An Agent job step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStep {
    /// `step_id` (1-based).
    pub step_id: i32,
    /// `step_name`.
    pub step_name: String,
    /// `subsystem` (TSQL).
    pub subsystem: String,
    /// `command`.
    pub command: String,
    /// `database_name`.
    pub database_name: String,
}

/// A row of `msdb.dbo.sysjobhistory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobHistory {
    /// `instance_id`.
    pub instance_id: i32,
    /// `job_id`.
    pub job_id: [u8; 16],
    /// `step_id` (0: job outcome).
    pub step_id: i32,
    /// `step_name`.
    pub step_name: String,
    /// `sql_message_id`.
    pub sql_message_id: i32,
    /// `sql_severity`.
    pub sql_severity: i32,
    /// `message`.
    pub message: String,
    /// `run_status` (0 failed, 1 succeeded, 3 cancelled).
    pub run_status: i32,
    /// Simulated start.
    pub run_at: Duration,
    /// Seconds.
    pub run_duration: u64,
}

/// A running job's state.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// Simulated request time.
    pub requested_at: Duration,
    /// The restore the step runs (None: the step completed at once).
    pub op: Option<RestoreOp>,
    /// For a non-restore step: its immediate outcome.
    pub immediate: Result<(), Vec<ServerMessage>>,
}

/// A SQL Server Agent job.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentJob {
    /// `job_id`.
    pub job_id: [u8; 16],
    /// `name`.
    pub name: String,
    /// `enabled`.
    pub enabled: bool,
    /// Steps.
    pub steps: Vec<JobStep>,
    /// Target servers (from `sp_add_jobserver`).
    pub servers: Vec<String>,
    /// Current run.
    pub running: Option<JobRun>,
    /// `sysjobactivity`: last start, stop and history row.
    pub last_start: Option<Duration>,
    /// Last requested.
    pub last_requested: Option<Duration>,
    /// Last stop.
    pub last_stop: Option<Duration>,
    /// `job_history_id` of the last outcome row.
    pub last_history_id: Option<i32>,
    /// Last outcome (0 failed, 1 succeeded, 3 cancelled, 5 unknown).
    pub last_outcome: i32,
}

/// How simulated time moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// Wall-clock time plus explicit advances.
    Wall,
    /// Only explicit advances ([`crate::SqlServerEmulator::advance`]).
    Manual,
}

/// A request as the emulator recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The request.
    pub request: Request,
    /// Its [`normalise`](super::sql::normalise)d text.
    pub normalised: String,
    /// Connection it came on.
    pub spid: u16,
}

/// Everything the emulator knows; tests read and seed it through [`crate::SqlServerEmulator`].
#[derive(Debug)]
pub struct State {
    /// Server identity.
    pub server: ServerInfo,
    /// Databases by lower-cased name.
    pub databases: HashMap<String, Database>,
    /// RDS tasks in creation order.
    pub rds_tasks: Vec<RdsTask>,
    /// Agent jobs by lower-cased name.
    pub jobs: HashMap<String, AgentJob>,
    /// `sysjobhistory`.
    pub job_history: Vec<JobHistory>,
    /// Backups the catalog knows, by source (ARN, URL or disk path) as given.
    pub backups: HashMap<String, BackupInfo>,
    /// Failures for the next restore of a database.
    pub scripted_failures: Vec<ScriptedFailure>,
    /// Length of a restore when no per-database length is set.
    pub default_restore_duration: Duration,
    /// Per-database restore length (lower-cased name).
    pub restore_durations: HashMap<String, Duration>,
    /// How long an RDS task stays CREATED before IN_PROGRESS.
    pub rds_queue_delay: Duration,
    /// RDS's concurrent task limit.
    pub rds_max_concurrent_tasks: usize,
    /// Every request received, in order.
    pub requests: Vec<RecordedRequest>,
    /// Logins (user → password) the server accepts; empty: any login is accepted.
    pub logins: HashMap<String, String>,
    /// Clock mode.
    pub clock_mode: ClockMode,
    pub(crate) origin: Instant,
    pub(crate) advanced: Duration,
    pub(crate) start_utc: PrimitiveDateTime,
    pub(crate) next_database_id: i32,
    pub(crate) next_task_id: i32,
    pub(crate) next_history_id: i32,
    pub(crate) next_session_id: i32,
    pub(crate) next_guid: u64,
}

impl State {
    /// A fresh server with the system databases.
    pub fn new(server: ServerInfo) -> Self {
        let now = OffsetDateTime::now_utc();
        let start_utc = PrimitiveDateTime::new(now.date(), now.time());
        let mut s = Self {
            server,
            databases: HashMap::new(),
            rds_tasks: Vec::new(),
            jobs: HashMap::new(),
            job_history: Vec::new(),
            backups: HashMap::new(),
            scripted_failures: Vec::new(),
            default_restore_duration: Duration::from_secs(2),
            restore_durations: HashMap::new(),
            rds_queue_delay: Duration::from_millis(100),
            rds_max_concurrent_tasks: 2,
            requests: Vec::new(),
            logins: HashMap::new(),
            clock_mode: ClockMode::Wall,
            origin: Instant::now(),
            advanced: Duration::ZERO,
            start_utc,
            next_database_id: 1,
            next_task_id: 1,
            next_history_id: 1,
            next_session_id: 60,
            next_guid: 1,
        };
        for name in ["master", "tempdb", "model", "msdb"] {
            s.add_database(name, DatabaseState::Online);
        }
        if s.server.rds {
            s.add_database("rdsadmin", DatabaseState::Online);
        }
        s
    }

    /// Simulated time since the emulator started.
    pub fn now(&self) -> Duration {
        match self.clock_mode {
            ClockMode::Wall => self.origin.elapsed() + self.advanced,
            ClockMode::Manual => self.advanced,
        }
    }

    /// A simulated instant as a UTC date-time.
    pub fn datetime(&self, at: Duration) -> PrimitiveDateTime {
        self.start_utc + at
    }

    /// Adds (or replaces) a database.
    pub fn add_database(&mut self, name: &str, state: DatabaseState) -> &mut Database {
        let id = self.next_database_id;
        self.next_database_id += 1;
        let created_at = self.datetime(self.now());
        let db = Database {
            name: name.to_string(),
            database_id: id,
            state,
            restored_from: Vec::new(),
            last_lsn: None,
            created_at,
        };
        let slot = self
            .databases
            .entry(name.to_lowercase())
            .or_insert_with(|| db.clone());
        *slot = db;
        slot
    }

    /// The database with this name (case-insensitive).
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.get(&name.to_lowercase())
    }

    /// Restore length for a database.
    pub fn restore_duration(&self, database: &str) -> Duration {
        self.restore_durations
            .get(&database.to_lowercase())
            .copied()
            .unwrap_or(self.default_restore_duration)
    }

    /// Takes the scripted failure for a database, if any.
    pub fn take_scripted_failure(&mut self, database: &str) -> Option<ScriptedFailure> {
        let idx = self
            .scripted_failures
            .iter()
            .position(|f| f.database.eq_ignore_ascii_case(database))?;
        Some(self.scripted_failures.remove(idx))
    }

    pub(crate) fn new_guid(&mut self) -> [u8; 16] {
        let n = self.next_guid;
        self.next_guid += 1;
        let mut g = [0u8; 16];
        g[..8].copy_from_slice(&0x6261_6b64_726f_7000u64.to_be_bytes());
        g[8..].copy_from_slice(&n.to_be_bytes());
        g
    }

    pub(crate) fn new_session_id(&mut self) -> i32 {
        let s = self.next_session_id;
        self.next_session_id += 1;
        s
    }
}
