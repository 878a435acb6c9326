//! The emulated server's state: identity and platform, databases and the files they use, the
//! directories that exist, credentials, RDS tasks, SQL Server Agent (sessions, jobs, activity),
//! the simulated clock, scripted failures and the backup catalog (the media that exist).

use crate::protocol::{Request, ServerMessage};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use time::{OffsetDateTime, PrimitiveDateTime};

/// The operating system the emulated server runs on: it decides how paths compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// SQL Server on Linux: paths compare case-sensitively.
    Linux,
    /// SQL Server on Windows (and Amazon RDS): paths compare case-insensitively.
    Windows,
}

impl Platform {
    /// As the startup banner and `@@VERSION` name it.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Linux => "Linux",
            Platform::Windows => "Windows",
        }
    }
}

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
    /// `SERVERPROPERTY('EngineEdition')` (2 Standard, 3 Enterprise/Developer, 4 Express).
    pub engine_edition: i32,
    /// `@@SERVERNAME` / `SERVERPROPERTY('ServerName')`.
    pub server_name: String,
    /// The internal database version this server writes (957 for 2022, 904 for 2019).
    pub database_version: u32,
    /// Whether the `msdb.dbo.rds_*` procedures exist (Amazon RDS).
    pub rds: bool,
    /// The operating system.
    pub platform: Platform,
    /// `SERVERPROPERTY('InstanceDefaultDataPath')`, with its trailing separator.
    pub default_data_path: String,
    /// `SERVERPROPERTY('InstanceDefaultLogPath')`, with its trailing separator.
    pub default_log_path: String,
    /// `SERVERPROPERTY('InstanceDefaultBackupPath')`, with its trailing separator.
    pub default_backup_path: String,
    /// The AWS Region the server runs in (RDS ARN partition and same-Region bucket rule;
    /// the Region an S3 bucket is in when no other is set).
    pub region: String,
}

/// A SQL Server release the emulator can present itself as (`ServerInfo::with_release`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The year in the product name (2016, 2017, 2019, 2022, 2025).
    pub year: u16,
    /// `ProductVersion`.
    pub product_version: &'static str,
    /// `ProductLevel`.
    pub product_level: &'static str,
    /// `ProductUpdateLevel`.
    pub product_update_level: &'static str,
    /// The internal database version (`DatabaseVersion` in RESTORE HEADERONLY).
    pub database_version: u32,
}

/// The releases `--version` accepts. DatabaseVersion 852/869/904/957 as listed by
/// sqlserverbuilds.blogspot.com ("Internal Database Versions") and, for 852, the shared 2016
/// fixtures; 998 for SQL Server 2025 is taken from the project brief and not verified.
pub const RELEASES: &[Release] = &[
    Release {
        year: 2016,
        product_version: "13.0.6300.2",
        product_level: "SP3",
        product_update_level: "",
        database_version: 852,
    },
    Release {
        year: 2017,
        product_version: "14.0.3456.2",
        product_level: "RTM",
        product_update_level: "CU31",
        database_version: 869,
    },
    Release {
        year: 2019,
        product_version: "15.0.4355.3",
        product_level: "RTM",
        product_update_level: "CU25",
        database_version: 904,
    },
    Release {
        year: 2022,
        product_version: "16.0.4135.4",
        product_level: "RTM",
        product_update_level: "CU12",
        database_version: 957,
    },
    Release {
        year: 2025,
        product_version: "17.0.1000.7",
        product_level: "RTM",
        product_update_level: "",
        database_version: 998,
    },
];

const LINUX_DATA: &str = "/var/opt/mssql/data/";
const RDS_DATA: &str = "D:\\rdsdbdata\\DATA\\";
const RDS_BACKUP: &str = "D:\\rdsdbdata\\BACKUP\\";

impl ServerInfo {
    /// SQL Server 2022 CU12 Standard on Amazon RDS (Windows, `D:\rdsdbdata\DATA\`).
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
            platform: Platform::Windows,
            default_data_path: RDS_DATA.to_string(),
            default_log_path: RDS_DATA.to_string(),
            default_backup_path: RDS_BACKUP.to_string(),
            region: "us-east-1".to_string(),
        }
    }

    /// SQL Server 2022 CU12 Developer on Linux (EC2 or on premises: native RESTORE and Agent
    /// jobs, no RDS procedures), with its files in `/var/opt/mssql/data/`.
    pub fn native_2022() -> Self {
        Self {
            edition: "Developer Edition (64-bit)".to_string(),
            engine_edition: 3,
            server_name: "SQL2022".to_string(),
            rds: false,
            platform: Platform::Linux,
            default_data_path: LINUX_DATA.to_string(),
            default_log_path: LINUX_DATA.to_string(),
            default_backup_path: LINUX_DATA.to_string(),
            ..Self::rds_2022()
        }
    }

    /// SQL Server 2022 Express on Linux: `EngineEdition` 4, no SQL Server Agent.
    pub fn native_2022_express() -> Self {
        Self {
            edition: "Express Edition (64-bit)".to_string(),
            engine_edition: 4,
            ..Self::native_2022()
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

    /// This server presenting itself as another release (`None` for an unknown year). A native
    /// SQL Server 2016 runs on Windows (SQL Server on Linux starts with 2017), with the default
    /// paths of a default instance.
    pub fn with_release(mut self, year: u16) -> Option<Self> {
        let r = RELEASES.iter().find(|r| r.year == year)?;
        self.product_version = r.product_version.to_string();
        self.product_level = r.product_level.to_string();
        self.product_update_level = r.product_update_level.to_string();
        self.database_version = r.database_version;
        if !self.rds && year < 2017 {
            let data = format!(
                "C:\\Program Files\\Microsoft SQL Server\\MSSQL{}.MSSQLSERVER\\MSSQL\\DATA\\",
                self.major()
            );
            self.platform = Platform::Windows;
            self.default_data_path = data.clone();
            self.default_log_path = data;
            self.default_backup_path = format!(
                "C:\\Program Files\\Microsoft SQL Server\\MSSQL{}.MSSQLSERVER\\MSSQL\\Backup\\",
                self.major()
            );
        }
        Some(self)
    }

    /// `true` for an edition without SQL Server Agent (Express, `EngineEdition` 4).
    pub fn has_agent(&self) -> bool {
        self.engine_edition != 4
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

    /// The year in the product name ("2022" for major 16).
    pub fn year(&self) -> &'static str {
        match self.major() {
            17 => "2025",
            16 => "2022",
            15 => "2019",
            14 => "2017",
            13 => "2016",
            _ => "",
        }
    }

    /// The ARN partition of the server's Region (`aws`, `aws-cn`, `aws-us-gov`, `aws-eusc`).
    pub fn arn_partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else if self.region.starts_with("eusc-") {
            "aws-eusc"
        } else {
            "aws"
        }
    }

    /// `@@VERSION`.
    pub fn version_string(&self) -> String {
        let level = if self.product_update_level.is_empty() {
            self.product_level.clone()
        } else {
            format!("{}-{}", self.product_level, self.product_update_level)
        };
        let os = match self.platform {
            Platform::Linux => "Linux (Ubuntu 22.04.4 LTS) <X64>".to_string(),
            Platform::Windows => {
                "Windows Server 2022 Datacenter 10.0 <X64> (Build 20348: ) (Hypervisor)".to_string()
            }
        };
        format!(
            "Microsoft SQL Server {} ({level}) - {} (X64) \n\tMar 1 2024 00:00:00 \n\tCopyright (C) 2022 Microsoft Corporation\n\t{} on {os}\n",
            self.year(),
            self.product_version,
            self.edition
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
    /// The physical files it uses (`sys.master_files.physical_name`), as placed.
    pub files: Vec<String>,
}

/// What kind of file a backup holds (`Type` in `RESTORE FILELISTONLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A data file (`D`).
    Data,
    /// A log file (`L`).
    Log,
    /// A FILESTREAM container (`S`): a directory.
    Filestream,
    /// A full-text catalog (`F`).
    FullText,
}

impl FileKind {
    /// The `Type` letter `RESTORE FILELISTONLY` prints.
    pub fn letter(self) -> &'static str {
        match self {
            FileKind::Data => "D",
            FileKind::Log => "L",
            FileKind::Filestream => "S",
            FileKind::FullText => "F",
        }
    }
}

/// One row of `RESTORE FILELISTONLY`: a file of the backed-up database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFileInfo {
    /// `LogicalName` (what `MOVE` names).
    pub logical_name: String,
    /// `PhysicalName`: where the file was on the source server (where a restore without
    /// `MOVE` puts it).
    pub physical_name: String,
    /// `Type`.
    pub file_type: FileKind,
}

impl BackupFileInfo {
    /// A data file.
    pub fn data(logical_name: &str, physical_name: &str) -> Self {
        Self {
            logical_name: logical_name.to_string(),
            physical_name: physical_name.to_string(),
            file_type: FileKind::Data,
        }
    }

    /// A log file.
    pub fn log(logical_name: &str, physical_name: &str) -> Self {
        Self {
            logical_name: logical_name.to_string(),
            physical_name: physical_name.to_string(),
            file_type: FileKind::Log,
        }
    }

    /// A FILESTREAM container (a directory).
    pub fn filestream(logical_name: &str, physical_name: &str) -> Self {
        Self {
            logical_name: logical_name.to_string(),
            physical_name: physical_name.to_string(),
            file_type: FileKind::Filestream,
        }
    }
}

/// What one backup medium holds: what `RESTORE HEADERONLY` and `RESTORE FILELISTONLY` would
/// say of it. SQL Server reads this from the medium itself; the emulator cannot, so tests
/// register it ([`crate::SqlServerEmulator::register_backup`]). A source nobody registered is a
/// medium that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Full, differential or log (`BackupType`).
    pub kind: BackupKind,
    /// `DatabaseName`: the database that was backed up.
    pub database_name: String,
    /// `FirstLSN`.
    pub first_lsn: u128,
    /// `LastLSN`.
    pub last_lsn: u128,
    /// `DatabaseVersion` (957 for 2022).
    pub database_version: u32,
    /// Software version as SQL Server prints it in 3169 (e.g. "16.00.4135").
    pub software_version: String,
    /// `HasBackupChecksums`.
    pub has_checksums: bool,
    /// `FamilyCount`: how many media families (stripes) the media set has.
    pub family_count: u32,
    /// `FamilySequenceNumber` of this medium (1-based).
    pub family_sequence: u32,
    /// `BackupSetGUID`: the stripes of one backup share it.
    pub backup_set_guid: [u8; 16],
    /// `RESTORE FILELISTONLY`, in file order.
    pub files: Vec<BackupFileInfo>,
}

impl BackupInfo {
    /// A single-medium backup of `database_name` taken by SQL Server 2022 on Windows without
    /// checksums, with a data and a log file in the default instance's `DATA` directory
    /// (logical names `<db>` and `<db>_log`); adjust the fields for other cases.
    pub fn new(kind: BackupKind, database_name: &str) -> Self {
        let dir = "C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\DATA\\";
        let mut guid = [0u8; 16];
        for (i, b) in database_name
            .bytes()
            .chain(kind_tag(kind).bytes())
            .enumerate()
        {
            guid[i % 16] = guid[i % 16].wrapping_mul(31).wrapping_add(b);
        }
        Self {
            kind,
            database_name: database_name.to_string(),
            first_lsn: 0,
            last_lsn: 0,
            database_version: 957,
            software_version: "16.00.4135".to_string(),
            has_checksums: false,
            family_count: 1,
            family_sequence: 1,
            backup_set_guid: guid,
            files: vec![
                BackupFileInfo::data(database_name, &format!("{dir}{database_name}.mdf")),
                BackupFileInfo::log(
                    &format!("{database_name}_log"),
                    &format!("{dir}{database_name}_log.ldf"),
                ),
            ],
        }
    }

    /// The same backup with these LSNs.
    pub fn with_lsns(mut self, first_lsn: u128, last_lsn: u128) -> Self {
        self.first_lsn = first_lsn;
        self.last_lsn = last_lsn;
        self
    }
}

fn kind_tag(kind: BackupKind) -> &'static str {
    match kind {
        BackupKind::Full => "D",
        BackupKind::Differential => "I",
        BackupKind::Log => "L",
    }
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
    /// Whether it left the queue (CREATED) and took one of the in-progress slots.
    pub started: bool,
    /// The restore it runs (for `FINISH_RESTORE`: the recovery, with no sources).
    pub op: RestoreOp,
}

impl RdsTask {
    /// `true` for the `FINISH_RESTORE` task `rds_finish_restore` starts.
    pub fn is_finish(&self) -> bool {
        self.task_type == "FINISH_RESTORE"
    }
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
    /// Errors of the step's statements that ran at once (before its restore, if any).
    pub immediate: Result<(), Vec<ServerMessage>>,
    /// Why the step could not start (a token without an escape macro), if so.
    pub start_failure: Option<String>,
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

/// A row of `msdb.dbo.syssessions`: one SQL Server Agent start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSession {
    /// `session_id`.
    pub session_id: i32,
    /// `agent_start_date` (simulated).
    pub started_at: Duration,
}

/// A row of `msdb.dbo.sysjobactivity`: a job's state within one Agent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobActivity {
    /// `session_id`: the Agent session ([`AgentSession`]) the row belongs to.
    pub session_id: i32,
    /// `job_id`.
    pub job_id: [u8; 16],
    /// `run_requested_date`.
    pub run_requested: Option<Duration>,
    /// `start_execution_date`.
    pub start_execution: Option<Duration>,
    /// `last_executed_step_id`.
    pub last_executed_step_id: Option<i32>,
    /// `last_executed_step_date`.
    pub last_executed_step_date: Option<Duration>,
    /// `stop_execution_date`.
    pub stop_execution: Option<Duration>,
    /// `job_history_id`.
    pub job_history_id: Option<i32>,
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
    /// When it arrived, on the emulator's clock ([`State::now`]).
    pub at: Duration,
}

/// Describes a medium from its source text (a path, a URL, an ARN), or `None` when there is none.
pub type MediaResolver = std::sync::Arc<dyn Fn(&str) -> Option<BackupInfo> + Send + Sync>;

/// Everything the emulator knows; tests read and seed it through [`crate::SqlServerEmulator`].
pub struct State {
    /// Reads a medium nobody registered (the test-server binary: a backup file on this
    /// machine's disk), as SQL Server reads a device it is given.
    pub media_resolver: Option<MediaResolver>,
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
    /// Per-backup restore length, by source (ARN, URL or disk path) as given: before the
    /// database's (a model of a restore's time from its backup's size, e.g.).
    pub source_restore_durations: HashMap<String, Duration>,
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
    /// Directories that exist on the server's file system (as given; the default data, log and
    /// backup paths are there from the start).
    pub directories: Vec<String>,
    /// `sys.credentials` names.
    pub credentials: Vec<String>,
    /// The Region each S3 bucket is in (bucket name → Region); others are in the server's.
    pub bucket_regions: HashMap<String, String>,
    /// Whether SQL Server Agent runs (never on Express).
    pub agent_running: bool,
    /// `msdb.dbo.syssessions`, oldest first.
    pub agent_sessions: Vec<AgentSession>,
    /// `msdb.dbo.sysjobactivity`.
    pub job_activity: Vec<JobActivity>,
    /// Whether the login has VIEW SERVER STATE (sees every session in the DMVs).
    pub view_server_state: bool,
    /// Whether `rds_restore_database`/`rds_restore_log` return a row describing the new task.
    pub rds_submit_returns_row: bool,
    /// How long bringing a database online takes: an RDS `FINISH_RESTORE` task IN_PROGRESS, an
    /// Agent job step's `RESTORE DATABASE … WITH RECOVERY`.
    pub finish_duration: Duration,
    /// Session ids of SQL Server Agent's own connections while it runs.
    pub agent_spids: Vec<i32>,
    pub(crate) origin: Instant,
    pub(crate) advanced: Duration,
    pub(crate) start_utc: PrimitiveDateTime,
    pub(crate) next_database_id: i32,
    pub(crate) next_task_id: i32,
    pub(crate) next_history_id: i32,
    pub(crate) next_session_id: i32,
    pub(crate) next_guid: u64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("server", &self.server)
            .field("databases", &self.databases.len())
            .field("backups", &self.backups.len())
            .field("resolves_media", &self.media_resolver.is_some())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Describes, through the media resolver, every source of a restore nobody registered.
    pub fn resolve_media(&mut self, sources: &[String]) {
        let Some(resolver) = self.media_resolver.clone() else {
            return;
        };
        for source in sources {
            if !self.backups.contains_key(source) {
                if let Some(info) = resolver(source) {
                    self.backups.insert(source.clone(), info);
                }
            }
        }
    }

    /// A fresh server with the system databases.
    pub fn new(server: ServerInfo) -> Self {
        let now = OffsetDateTime::now_utc();
        let start_utc = PrimitiveDateTime::new(now.date(), now.time());
        let mut s = Self {
            media_resolver: None,
            server,
            databases: HashMap::new(),
            rds_tasks: Vec::new(),
            jobs: HashMap::new(),
            job_history: Vec::new(),
            backups: HashMap::new(),
            scripted_failures: Vec::new(),
            default_restore_duration: Duration::from_secs(2),
            restore_durations: HashMap::new(),
            source_restore_durations: HashMap::new(),
            rds_queue_delay: Duration::from_millis(100),
            rds_max_concurrent_tasks: 2,
            requests: Vec::new(),
            logins: HashMap::new(),
            clock_mode: ClockMode::Wall,
            directories: Vec::new(),
            credentials: Vec::new(),
            bucket_regions: HashMap::new(),
            agent_running: false,
            agent_sessions: Vec::new(),
            job_activity: Vec::new(),
            view_server_state: true,
            rds_submit_returns_row: true,
            finish_duration: Duration::from_secs(2),
            agent_spids: Vec::new(),
            origin: Instant::now(),
            advanced: Duration::ZERO,
            start_utc,
            next_database_id: 1,
            next_task_id: 1,
            next_history_id: 1,
            next_session_id: 60,
            next_guid: 1,
        };
        for dir in [
            s.server.default_data_path.clone(),
            s.server.default_log_path.clone(),
            s.server.default_backup_path.clone(),
        ] {
            s.add_directory(&dir);
        }
        let (data, log) = (
            s.server.default_data_path.clone(),
            s.server.default_log_path.clone(),
        );
        for (name, mdf, ldf) in [
            ("master", "master.mdf", "mastlog.ldf"),
            ("tempdb", "tempdb.mdf", "templog.ldf"),
            ("model", "model.mdf", "modellog.ldf"),
            ("msdb", "MSDBData.mdf", "MSDBLog.ldf"),
        ] {
            s.add_database(name, DatabaseState::Online).files =
                vec![format!("{data}{mdf}"), format!("{log}{ldf}")];
        }
        if s.server.rds {
            s.add_database("rdsadmin", DatabaseState::Online);
        }
        if s.server.has_agent() {
            s.start_agent();
        }
        s
    }

    /// Adds a directory (and its parents) to the server's file system.
    pub fn add_directory(&mut self, path: &str) {
        let mut dir = super::fs::normalise(self.server.platform, path);
        loop {
            if !self.directory_exists(&dir) {
                self.directories.push(dir.clone());
            }
            match super::fs::parent(&dir) {
                Some(p) if !p.is_empty() && p != dir => dir = p,
                _ => break,
            }
        }
    }

    /// Whether a directory exists (either separator; case rules of the platform).
    pub fn directory_exists(&self, path: &str) -> bool {
        let want = super::fs::normalise(self.server.platform, path);
        self.directories.contains(&want)
    }

    /// The database using this physical file (or FILESTREAM directory), if any.
    pub fn file_owner(&self, path: &str) -> Option<&Database> {
        let want = super::fs::normalise(self.server.platform, path);
        self.databases.values().find(|d| {
            d.files
                .iter()
                .any(|f| super::fs::normalise(self.server.platform, f) == want)
        })
    }

    /// The Region an S3 bucket is in.
    pub fn bucket_region(&self, bucket: &str) -> String {
        self.bucket_regions
            .get(bucket)
            .cloned()
            .unwrap_or_else(|| self.server.region.clone())
    }

    /// The current Agent session id (the last `syssessions` row), if Agent ever started.
    pub fn agent_session_id(&self) -> Option<i32> {
        self.agent_sessions.last().map(|a| a.session_id)
    }

    /// Starts SQL Server Agent: a new `syssessions` row, an activity row for every job in the
    /// new session, and Agent's own connections.
    pub fn start_agent(&mut self) {
        if !self.server.has_agent() {
            return;
        }
        let session_id = self.agent_session_id().unwrap_or(0) + 1;
        let started_at = self.now();
        self.agent_sessions.push(AgentSession {
            session_id,
            started_at,
        });
        let mut jobs: Vec<[u8; 16]> = self.jobs.values().map(|j| j.job_id).collect();
        jobs.sort_unstable();
        for job_id in jobs {
            self.job_activity.push(JobActivity {
                session_id,
                job_id,
                run_requested: None,
                start_execution: None,
                last_executed_step_id: None,
                last_executed_step_date: None,
                stop_execution: None,
                job_history_id: None,
            });
        }
        self.agent_spids = vec![self.new_session_id(), self.new_session_id()];
        self.agent_running = true;
    }

    /// Stops SQL Server Agent the way a crash or an unplanned service stop does: running jobs
    /// die without a history row, leaving their activity rows without a stop date, and the
    /// restores their steps ran are aborted.
    pub fn stop_agent(&mut self) {
        self.agent_running = false;
        self.agent_spids.clear();
        let keys: Vec<String> = self.jobs.keys().cloned().collect();
        for key in keys {
            let run = self.jobs.get_mut(&key).and_then(|j| j.running.take());
            if let Some(op) = run.and_then(|r| r.op) {
                if op.created_db {
                    self.databases.remove(&op.database.to_lowercase());
                }
            }
        }
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
            files: vec![
                format!("{}{name}.mdf", self.server.default_data_path),
                format!("{}{name}_log.ldf", self.server.default_log_path),
            ],
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

    /// Restore length of a restore from `sources` into `database`: the longest set for one of
    /// its sources (stripes are read side by side), else the database's.
    pub fn restore_duration_of(&self, database: &str, sources: &[String]) -> Duration {
        sources
            .iter()
            .filter_map(|s| self.source_restore_durations.get(s).copied())
            .max()
            .unwrap_or_else(|| self.restore_duration(database))
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
