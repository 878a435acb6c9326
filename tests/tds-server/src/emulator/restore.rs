//! Restore semantics shared by RDS tasks, Agent job steps and direct `RESTORE`: deciding the
//! outcome at submit time (scripted failures, existence, state, version and LSN-chain checks)
//! and applying it when the simulated restore ends.

use super::state::{BackupKind, DatabaseState, RestoreOp, RestoreRecord, State};
use crate::protocol::ServerMessage;
use std::time::Duration;

/// Which server flavour phrases the "database exists" failure.
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
    /// Sources.
    pub sources: Vec<String>,
    /// WITH RECOVERY.
    pub recovery: bool,
    /// WITH REPLACE.
    pub replace: bool,
}

fn terminating(is_log: bool) -> ServerMessage {
    let what = if is_log { "LOG" } else { "DATABASE" };
    ServerMessage::error(3013, format!("RESTORE {what} is terminating abnormally."))
}

/// Decides the outcome of a restore and, for a new database, creates it in RESTORING state.
pub fn plan(
    state: &mut State,
    req: &RestoreRequest,
    dialect: Dialect,
    duration: Duration,
) -> RestoreOp {
    let db_key = req.database.to_lowercase();
    let existing = state.database(&req.database).map(|d| (d.state, d.last_lsn));
    let info = req
        .sources
        .first()
        .and_then(|s| state.backups.get(s))
        .cloned();
    let kind = if req.is_log {
        BackupKind::Log
    } else if let Some(i) = &info {
        i.kind
    } else if let Some(k) = req.declared {
        k
    } else if matches!(existing, Some((DatabaseState::Restoring, _))) && !req.replace {
        BackupKind::Differential
    } else {
        BackupKind::Full
    };
    let fail = |number: u32, message: String| -> Result<(), Vec<ServerMessage>> {
        Err(vec![
            ServerMessage::error(number, message),
            terminating(req.is_log),
        ])
    };
    let outcome = if let Some(f) = state.take_scripted_failure(&req.database) {
        fail(f.number, f.message)
    } else if let Some(i) = info
        .as_ref()
        .filter(|i| i.database_version > state.server.database_version)
    {
        fail(
            3169,
            format!(
                "The database was backed up on a server running version {}. That version is incompatible with this server, which is running version {}. Either restore the database on a server that supports the backup, or use a backup that is compatible with this server.",
                i.software_version,
                short_version(&state.server.product_version)
            ),
        )
    } else {
        match (kind, existing) {
            (BackupKind::Full, Some(_)) if !req.replace => match dialect {
                Dialect::Rds => fail(
                    1801,
                    format!(
                        "Database '{}' already exists. Two databases that differ only by case or accent are not allowed. Choose a different database name.",
                        req.database
                    ),
                ),
                Dialect::Native => fail(
                    3154,
                    format!(
                        "The backup set holds a backup of a database other than the existing '{}' database.",
                        req.database
                    ),
                ),
            },
            (BackupKind::Full, _) => Ok(()),
            (BackupKind::Differential, None) => fail(
                3136,
                "This differential backup cannot be restored because the database has not been restored to the correct earlier state.".to_string(),
            ),
            (BackupKind::Differential | BackupKind::Log, Some((state, _))) if state != DatabaseState::Restoring => fail(
                3117,
                "The log or differential backup cannot be restored because no files are ready to rollforward.".to_string(),
            ),
            (BackupKind::Log, None) => fail(
                3701,
                format!(
                    "Cannot restore the log of database '{}' because it does not exist.",
                    req.database
                ),
            ),
            (BackupKind::Log, Some((_, Some(last)))) => match &info {
                Some(i) if i.first_lsn > last => fail(
                    4305,
                    format!(
                        "The log in this backup set begins at LSN {}, which is too recent to apply to the database. An earlier log backup that includes LSN {} can be restored.",
                        i.first_lsn, last
                    ),
                ),
                Some(i) if i.last_lsn <= last => fail(
                    4326,
                    format!(
                        "The log in this backup set terminates at LSN {}, which is too early to apply to the database. A more recent log backup that includes LSN {} can be restored.",
                        i.last_lsn, last
                    ),
                ),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    };
    let created_db = outcome.is_ok() && kind == BackupKind::Full && existing.is_none();
    if created_db {
        state.add_database(&req.database, DatabaseState::Restoring);
    } else if outcome.is_ok() && kind == BackupKind::Full {
        if let Some(db) = state.databases.get_mut(&db_key) {
            db.state = DatabaseState::Restoring;
        }
    }
    let session_id = state.new_session_id();
    RestoreOp {
        database: req.database.clone(),
        kind,
        sources: req.sources.clone(),
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
