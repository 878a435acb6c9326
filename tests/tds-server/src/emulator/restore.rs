//! Restore semantics shared by RDS tasks, Agent job steps and direct `RESTORE`: reading the media
//! (the backup catalog), deciding the outcome at submit time in SQL Server's order (media, media
//! set, version, checksum, existence, file placement, LSN chain) and applying it when the
//! simulated restore ends.
//!
//! Native order of checks, each failure ending with **3013**: a scripted failure; per source
//! the URL length (3057), the S3 credential and Region (3201, OS errors 50 and 5) and the medium
//! itself (3201, OS error 2); the media set (3227 twice the same family, 3132 missing families);
//! the backup type against the statement (3135); 3169; 3187; the database (3154/3159 for a full
//! backup over an existing one, 3118 missing, 3117 not restoring); for a full restore that places
//! files, 3234 (then nothing else), else 5133/1834/3176 with 3156 per file, then 3119; the LSN
//! chain of a log (4305/4326).

use super::fs;
use super::state::{
    BackupInfo, BackupKind, DatabaseState, FileKind, RestoreOp, RestoreRecord, State,
};
use crate::protocol::ServerMessage;
use std::time::Duration;

/// Which server flavour runs the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Amazon RDS procedures.
    Rds,
    /// Native `RESTORE`.
    Native,
}

/// A restore as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    /// Target database.
    pub database: String,
    /// `RESTORE LOG` / `rds_restore_log`.
    pub is_log: bool,
    /// RDS `@type` (FULL / DIFFERENTIAL), when given.
    pub declared: Option<BackupKind>,
    /// Sources, as sent (for RDS: the one ARN or ARN prefix ending in `*`).
    pub sources: Vec<String>,
    /// `FROM URL` (rather than `DISK`).
    pub from_url: bool,
    /// WITH RECOVERY.
    pub recovery: bool,
    /// WITH REPLACE.
    pub replace: bool,
    /// WITH CHECKSUM.
    pub checksum: bool,
    /// WITH MOVE logical TO physical, in order.
    pub moves: Vec<(String, String)>,
    /// WITH CREDENTIAL.
    pub credential: Option<String>,
    /// The S3 Region from `RESTORE_OPTIONS` (us-east-1 when absent).
    pub region: Option<String>,
}

impl RestoreRequest {
    /// A plain request: NORECOVERY unless `recovery`, no options.
    pub fn new(database: &str, is_log: bool, sources: Vec<String>, recovery: bool) -> Self {
        Self {
            database: database.to_string(),
            is_log,
            declared: None,
            sources,
            from_url: false,
            recovery,
            replace: false,
            checksum: false,
            moves: Vec::new(),
            credential: None,
            region: None,
        }
    }
}

/// The Region S3 URLs are read from when `RESTORE_OPTIONS` names none (`[S3]`: "Default value is
/// us-east-1").
pub const DEFAULT_S3_REGION: &str = "us-east-1";
/// `[S3]` "The total URL length is limited to 259 characters".
pub const MAX_URL_CHARS: usize = 259;
/// `[RDSL]` "You can't back up to or restore from more than 10 backup files at the same time".
pub const RDS_MAX_FILES: usize = 10;

/// `[RDSL]` troubleshooting table.
pub const RDS_SAME_REGION: &str =
    "Please specify a bucket that is in the same region as RDS instance";
/// `[RDSL]` troubleshooting table.
pub const RDS_TOO_MANY_FILES: &str = "The Restore task is unable to restore from more than 10 backup file(s). Please reduce the number of files matched and try again.";
/// Not documented: assumed to be S3's NoSuchKey text, as `[RDSL]` documents S3's NoSuchBucket
/// text ("The specified bucket does not exist") for a missing bucket.
pub const RDS_NO_SUCH_KEY: &str = "The specified key does not exist.";
/// Not documented as a message: assumed to be `[RDSL]`'s limitation sentence.
pub const RDS_FILESTREAM: &str =
    "You can't restore a database that contains a FILESTREAM file group.";

/// `[RDSL]` troubleshooting table.
pub fn rds_already_exists(database: &str) -> String {
    format!("Database '{database}' already exists. Two databases that differ only by case or accent are not allowed. Choose a different database name.")
}

/// 3013 for this statement.
pub fn terminating(is_log: bool) -> ServerMessage {
    let what = if is_log { "LOG" } else { "DATABASE" };
    ServerMessage::error(3013, format!("RESTORE {what} is terminating abnormally."))
}

/// Why a restore cannot run.
#[derive(Debug, Clone, PartialEq)]
enum Failure {
    /// SQL Server's own errors (3013 is appended when reported).
    Engine(Vec<ServerMessage>),
    /// An RDS refusal, by its text (reported in `task_info`).
    Rds(String),
}

fn engine(number: u32, message: String) -> Failure {
    Failure::Engine(vec![ServerMessage::error(number, message)])
}

/// 3201 for a device with this operating-system error.
fn cannot_open(source: &str, os_error: &str) -> Failure {
    engine(
        3201,
        format!("Cannot open backup device '{source}'. Operating system error {os_error}."),
    )
}

/// The bucket of an S3 URL: path style (`s3://host[:port]/bucket/key`) when the first path
/// segment is a bucket the server knows a Region for, else virtual-host style
/// (`s3://bucket.host/key`) when the host starts with one, else the first path segment.
pub fn url_bucket(state: &State, url: &str) -> String {
    let rest = url.get(5..).unwrap_or_default();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let first = path.split('/').next().unwrap_or_default();
    if state.bucket_regions.contains_key(first) {
        return first.to_string();
    }
    if let Some(b) = state
        .bucket_regions
        .keys()
        .find(|b| host.starts_with(&format!("{b}.")))
    {
        return b.clone();
    }
    first.to_string()
}

/// The bucket of an S3 ARN (`arn:partition:s3:::bucket/key`).
pub fn arn_bucket(arn: &str) -> String {
    let after = arn.split_once(":::").map_or("", |(_, b)| b);
    after.split('/').next().unwrap_or_default().to_string()
}

/// The credential a URL uses (`[S3T]`: the most specific name that is the URL or a prefix of it
/// ending at a `/`), or the one named `WITH CREDENTIAL`, if it exists.
pub fn credential_for(state: &State, url: &str, named: Option<&str>) -> Option<String> {
    if let Some(n) = named {
        return state
            .credentials
            .iter()
            .find(|c| c.eq_ignore_ascii_case(n))
            .cloned();
    }
    let lower = url.to_lowercase();
    state
        .credentials
        .iter()
        .filter(|c| {
            let c = c.to_lowercase();
            lower == c || (lower.starts_with(&c) && lower[c.len()..].starts_with('/'))
        })
        .max_by_key(|c| c.len())
        .cloned()
}

/// Native: opens each device in order.
fn open_native(state: &State, req: &RestoreRequest) -> Result<Vec<(String, BackupInfo)>, Failure> {
    let mut media = Vec::new();
    for src in &req.sources {
        if req.from_url {
            if src.chars().count() > MAX_URL_CHARS {
                // `[S3T]` "Maximum length of URL" gives this text; the number is not documented
                // (3057 is `[E3]`'s device-name-length error).
                return Err(engine(3057, "SQL Server has a maximum limit of 259 characters for a backup device name. The BACKUP TO URL consumes 36 characters for the required elements used to specify the URL - 'https://.blob.core.windows.net//.bak', leaving 223 characters for account, container, and blob names put together'".to_string()));
            }
            if src.to_ascii_lowercase().starts_with("s3://") {
                if !state.server.has_agent() {
                    // `[S3]`: not supported in Express; the message is assumed.
                    return Err(cannot_open(src, "50(The request is not supported.)"));
                }
                if credential_for(state, src, req.credential.as_deref()).is_none() {
                    return Err(cannot_open(src, "50(The request is not supported.)"));
                }
                let wanted = req.region.as_deref().unwrap_or(DEFAULT_S3_REGION);
                let bucket = url_bucket(state, src);
                if !state.bucket_region(&bucket).eq_ignore_ascii_case(wanted) {
                    // Assumed: `[S3T]` reports S3's signature rejections as OS error 5, and a
                    // wrong Region fails signature validation.
                    return Err(cannot_open(src, "5(Access is denied.)"));
                }
            }
        }
        match state.backups.get(src) {
            Some(info) => media.push((src.clone(), info.clone())),
            None => {
                return Err(cannot_open(
                    src,
                    "2(The system cannot find the file specified.)",
                ))
            }
        }
    }
    Ok(media)
}

/// RDS: the ARN, or every registered ARN under a prefix ending in `*`.
fn open_rds(state: &State, req: &RestoreRequest) -> Result<Vec<(String, BackupInfo)>, Failure> {
    let arn = req.sources.first().cloned().unwrap_or_default();
    let bucket = arn_bucket(&arn);
    if !state
        .bucket_region(&bucket)
        .eq_ignore_ascii_case(&state.server.region)
    {
        return Err(Failure::Rds(RDS_SAME_REGION.to_string()));
    }
    let mut media: Vec<(String, BackupInfo)> = match arn.strip_suffix('*') {
        Some(prefix) => state
            .backups
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => state
            .backups
            .get(&arn)
            .map(|i| vec![(arn.clone(), i.clone())])
            .unwrap_or_default(),
    };
    media.sort_by(|a, b| a.0.cmp(&b.0));
    if media.len() > RDS_MAX_FILES {
        return Err(Failure::Rds(RDS_TOO_MANY_FILES.to_string()));
    }
    if media.is_empty() {
        return Err(Failure::Rds(RDS_NO_SUCH_KEY.to_string()));
    }
    Ok(media)
}

/// 3227 and 3132: the devices must be the whole media set, each family once.
fn check_media_set(media: &[(String, BackupInfo)]) -> Result<(), Failure> {
    let Some((first_src, first)) = media.first() else {
        return Ok(());
    };
    let mut seen: Vec<(u32, &str)> = Vec::new();
    for (src, info) in media {
        if info.backup_set_guid != first.backup_set_guid {
            continue;
        }
        if let Some((_, other)) = seen.iter().find(|(f, _)| *f == info.family_sequence) {
            return Err(engine(3227, format!("The backup media on \"{src}\" is part of media family {} which has already been processed on \"{other}\". Ensure that backup devices are correctly specified. For tape devices, ensure that the correct volumes are loaded.", info.family_sequence)));
        }
        seen.push((info.family_sequence, src));
    }
    let provided = seen.len() as u32;
    if first.family_count > provided {
        let _ = first_src;
        return Err(engine(
            3132,
            format!(
                "The media set has {} media families but only {provided} are provided. All members must be provided.",
                first.family_count
            ),
        ));
    }
    Ok(())
}

/// Whether `database` holds the database `info` was taken from: it was restored from a backup of
/// the same source database.
fn same_database(state: &State, database: &str, info: &BackupInfo) -> bool {
    state.database(database).is_some_and(|d| {
        d.restored_from.iter().any(|r| {
            r.sources.iter().any(|s| {
                state
                    .backups
                    .get(s)
                    .is_some_and(|b| b.database_name.eq_ignore_ascii_case(&info.database_name))
            })
        })
    })
}

/// Where each file of the backup goes on a native server, or the 3234/5133/1834/3176/3156/3119
/// errors SQL Server gives.
fn place_files(
    state: &State,
    req: &RestoreRequest,
    info: &BackupInfo,
) -> Result<Vec<String>, Failure> {
    for (logical, _) in &req.moves {
        if !info
            .files
            .iter()
            .any(|f| f.logical_name.eq_ignore_ascii_case(logical))
        {
            return Err(engine(3234, format!("Logical file '{logical}' is not part of database '{}'. Use RESTORE FILELISTONLY to list the logical file names.", req.database)));
        }
    }
    let platform = state.server.platform;
    let mut targets: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for (i, f) in info.files.iter().enumerate() {
        let target = req
            .moves
            .iter()
            .rev()
            .find(|(l, _)| l.eq_ignore_ascii_case(&f.logical_name))
            .map_or_else(|| f.physical_name.clone(), |(_, p)| p.clone());
        let cannot = || {
            ServerMessage::error(
                3156,
                format!(
                    "File '{}' cannot be restored to '{target}'. Use WITH MOVE to identify a valid location for the file.",
                    f.logical_name
                ),
            )
        };
        let dir_ok = fs::parent(&target).is_some_and(|d| state.directory_exists(&d));
        // The database being overwritten (REPLACE, or its own restore sequence again) frees its
        // files.
        let owner = state
            .file_owner(&target)
            .filter(|d| !d.name.eq_ignore_ascii_case(&req.database))
            .map(|d| d.name.clone());
        let twin = targets
            .iter()
            .position(|t| fs::normalise(platform, t) == fs::normalise(platform, &target));
        if !dir_ok {
            problems.push(ServerMessage::error(5133, format!("Directory lookup for the file \"{target}\" failed with the operating system error 2(The system cannot find the file specified.).")));
            problems.push(cannot());
        } else if let Some(owner) = owner {
            problems.push(ServerMessage::error(
                1834,
                format!("The file '{target}' cannot be overwritten. It is being used by database '{owner}'."),
            ));
            problems.push(cannot());
        } else if let Some(j) = twin {
            problems.push(ServerMessage::error(3176, format!("File '{target}' is claimed by '{}'({}) and '{}'({}). The WITH MOVE clause can be used to relocate one or more files.", f.logical_name, i + 1, info.files[j].logical_name, j + 1)));
        }
        targets.push(target);
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        problems.push(ServerMessage::error(
            3119,
            "Problems were identified while planning for the RESTORE statement. Previous messages provide details.",
        ));
        Err(Failure::Engine(problems))
    }
}

/// Where RDS puts the files of a new database (not documented: assumed to be its data directory
/// under names derived from the database name).
fn rds_files(state: &State, database: &str, info: &BackupInfo) -> Vec<String> {
    let (data, log) = (
        &state.server.default_data_path,
        &state.server.default_log_path,
    );
    let mut first_data = true;
    info.files
        .iter()
        .map(|f| match f.file_type {
            FileKind::Log => format!("{log}{database}_log.ldf"),
            _ if first_data => {
                first_data = false;
                format!("{data}{database}.mdf")
            }
            _ => format!("{data}{database}_{}.ndf", f.logical_name),
        })
        .collect()
}

/// What a restore that may run does: its backup type and, for a full restore, the files.
struct Plan {
    kind: BackupKind,
    files: Option<Vec<String>>,
}

fn check(state: &State, req: &RestoreRequest, dialect: Dialect) -> Result<Plan, Failure> {
    let media = match dialect {
        Dialect::Native => open_native(state, req)?,
        Dialect::Rds => open_rds(state, req)?,
    };
    check_media_set(&media)?;
    let (src, info) = &media[0];
    match (req.is_log, info.kind) {
        (true, BackupKind::Full | BackupKind::Differential) => {
            return Err(engine(3135, format!("The backup set in file '{src}' was created by BACKUP DATABASE and cannot be used for this restore operation.")))
        }
        (false, BackupKind::Log) => {
            return Err(engine(3135, format!("The backup set in file '{src}' was created by BACKUP LOG and cannot be used for this restore operation.")))
        }
        _ => {}
    }
    let kind = info.kind;
    if info.database_version > state.server.database_version {
        return Err(engine(3169, format!(
            "The database was backed up on a server running version {}. That version is incompatible with this server, which is running version {}. Either restore the database on a server that supports the backup, or use a backup that is compatible with this server.",
            info.software_version,
            short_version(&state.server.product_version)
        )));
    }
    if req.checksum && !info.has_checksums {
        return Err(engine(
            3187,
            "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.".to_string(),
        ));
    }
    let existing = state.database(&req.database).map(|d| (d.state, d.last_lsn));
    match (kind, existing) {
        (BackupKind::Full, Some((db_state, _))) if !req.replace => match dialect {
            Dialect::Rds => return Err(Failure::Rds(rds_already_exists(&req.database))),
            Dialect::Native if !same_database(state, &req.database, info) => {
                return Err(engine(3154, format!("The backup set holds a backup of a database other than the existing '{}' database.", req.database)))
            }
            Dialect::Native if db_state != DatabaseState::Restoring => {
                return Err(engine(3159, format!("The tail of the log for the database \"{}\" has not been backed up. Use BACKUP LOG WITH NORECOVERY to backup the log if it contains work you do not want to lose. Use the WITH REPLACE or WITH STOPAT clause of the RESTORE statement to just overwrite the contents of the log.", req.database)))
            }
            Dialect::Native => {}
        },
        (BackupKind::Differential | BackupKind::Log, None) => {
            return Err(engine(3118, format!("The database \"{}\" does not exist. RESTORE can only create a database when restoring either a full backup or a file backup of the primary file.", req.database)))
        }
        (BackupKind::Differential | BackupKind::Log, Some((s, _))) if s != DatabaseState::Restoring => {
            return Err(engine(
                3117,
                "The log or differential backup cannot be restored because no files are ready to rollforward.".to_string(),
            ))
        }
        _ => {}
    }
    let files = if kind == BackupKind::Full {
        match dialect {
            Dialect::Native => Some(place_files(state, req, info)?),
            Dialect::Rds => {
                if info
                    .files
                    .iter()
                    .any(|f| f.file_type == FileKind::Filestream)
                {
                    return Err(Failure::Rds(RDS_FILESTREAM.to_string()));
                }
                Some(rds_files(state, &req.database, info))
            }
        }
    } else {
        None
    };
    if let (BackupKind::Log, Some((_, Some(last)))) = (kind, existing) {
        if info.first_lsn > last {
            return Err(engine(4305, format!(
                "The log in this backup set begins at LSN {}, which is too recent to apply to the database. An earlier log backup that includes LSN {} can be restored.",
                info.first_lsn, last
            )));
        }
        if info.last_lsn <= last {
            return Err(engine(4326, format!(
                "The log in this backup set terminates at LSN {}, which is too early to apply to the database. A more recent log backup that includes LSN {} can be restored.",
                info.last_lsn, last
            )));
        }
    }
    Ok(Plan { kind, files })
}

/// The sources a request reads, for the record (an RDS prefix expands to its files).
fn resolved_sources(state: &State, req: &RestoreRequest, dialect: Dialect) -> Vec<String> {
    match dialect {
        Dialect::Rds => open_rds(state, req)
            .map(|m| m.into_iter().map(|(s, _)| s).collect())
            .unwrap_or_else(|_| req.sources.clone()),
        Dialect::Native => req.sources.clone(),
    }
}

/// Decides the outcome of a restore and, for a new database, creates it in RESTORING state with
/// its files. A restore refused while planning ends at once; a scripted failure and a restore
/// that runs take `duration`.
pub fn plan(
    state: &mut State,
    req: &RestoreRequest,
    dialect: Dialect,
    duration: Duration,
) -> RestoreOp {
    state.resolve_media(&req.sources);
    let scripted = state.take_scripted_failure(&req.database);
    let checked = match &scripted {
        Some(f) => Err(engine(f.number, f.message.clone())),
        None => check(state, req, dialect),
    };
    let fallback_kind = if req.is_log {
        BackupKind::Log
    } else {
        req.declared.unwrap_or(BackupKind::Full)
    };
    let kind = checked.as_ref().map_or(fallback_kind, |p| p.kind);
    let sources = resolved_sources(state, req, dialect);
    let (outcome, files) = match checked {
        Ok(p) => (Ok(()), p.files),
        Err(Failure::Engine(mut errors)) => {
            errors.push(terminating(req.is_log));
            (Err(errors), None)
        }
        Err(Failure::Rds(text)) => (Err(vec![ServerMessage::error(50000, text)]), None),
    };
    let db_key = req.database.to_lowercase();
    let created_db =
        outcome.is_ok() && kind == BackupKind::Full && state.database(&req.database).is_none();
    if outcome.is_ok() && kind == BackupKind::Full {
        if created_db {
            state.add_database(&req.database, DatabaseState::Restoring);
        }
        if let Some(db) = state.databases.get_mut(&db_key) {
            db.state = DatabaseState::Restoring;
            if let Some(files) = files {
                db.files = files;
            }
        }
    }
    let duration = if outcome.is_err() && scripted.is_none() {
        Duration::ZERO
    } else {
        duration
    };
    let session_id = state.new_session_id();
    RestoreOp {
        database: req.database.clone(),
        kind,
        sources,
        recovery: req.recovery,
        replace: req.replace,
        outcome,
        created_db,
        started_at: state.now(),
        duration,
        session_id,
    }
}

/// "16.00.4135" from "16.0.4135.4", the way SQL Server prints versions in 3169.
pub fn short_version(v: &str) -> String {
    let parts: Vec<&str> = v.split('.').collect();
    match parts.as_slice() {
        [major, minor, build, ..] => format!("{major}.{:0>2}.{build}", minor),
        _ => v.to_string(),
    }
}

/// Applies a finished restore; returns the messages a direct `RESTORE` would print.
///
/// # Errors
/// The op's SQL Server errors, after undoing a database it created.
pub fn complete(
    state: &mut State,
    op: &RestoreOp,
    via: &str,
) -> Result<Vec<ServerMessage>, Vec<ServerMessage>> {
    let key = op.database.to_lowercase();
    match &op.outcome {
        Err(errors) => {
            if op.created_db {
                state.databases.remove(&key);
            }
            Err(errors.clone())
        }
        Ok(()) => {
            let last_lsn = op
                .sources
                .first()
                .and_then(|s| state.backups.get(s))
                .map(|i| i.last_lsn);
            if !state.databases.contains_key(&key) {
                state.add_database(&op.database, DatabaseState::Restoring);
            }
            if let Some(db) = state.databases.get_mut(&key) {
                db.state = if op.recovery {
                    DatabaseState::Online
                } else {
                    DatabaseState::Restoring
                };
                if last_lsn.is_some() {
                    db.last_lsn = last_lsn;
                }
                db.restored_from.push(RestoreRecord {
                    kind: op.kind,
                    sources: op.sources.clone(),
                    recovery: op.recovery,
                    via: via.to_string(),
                });
            }
            if op.sources.is_empty() {
                // A recovery (no FROM): nothing read, the database brought online.
                return Ok(vec![ServerMessage::info(
                    3014,
                    format!(
                        "RESTORE DATABASE successfully processed 0 pages in {:.3} seconds (0.000 MB/sec).",
                        op.duration.as_secs_f64()
                    ),
                )]);
            }
            let what = if op.kind == BackupKind::Log {
                "LOG"
            } else {
                "DATABASE"
            };
            let pages = 2_000 + (op.sources.len() as u64) * 321;
            Ok(vec![
                ServerMessage::info(
                    4035,
                    format!(
                        "Processed {pages} pages for database '{}', file '{}' on file 1.",
                        op.database, op.database
                    ),
                ),
                ServerMessage::info(
                    3014,
                    format!(
                        "RESTORE {what} successfully processed {pages} pages in {:.3} seconds (40.000 MB/sec).",
                        op.duration.as_secs_f64()
                    ),
                ),
            ])
        }
    }
}
