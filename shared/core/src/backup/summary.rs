//! From parsed backup bytes to what the pipeline keeps: the file-level preconditions.
//!
//! A file is usable when it is a readable SQL Server backup holding exactly one backup set of a
//! full, differential or log backup of one database. Everything else is a [`Reason`] a DBA can
//! act on. Version and migration checks come later (they need configuration and state).

use crate::backup::{self, BackupFile, BackupType, ParseError};
use crate::model::header::{BackupKind, DatabaseFile, DatabaseFileKind, HeaderSummary};
use crate::model::status::Reason;

/// Parses head and tail bytes of an object of `total_size` bytes and checks the file itself.
///
/// # Errors
/// A [`Reason`] when the file is not a usable backup (not a backup, damaged, several backup
/// sets, unsupported backup type, media password).
pub fn summarize(
    head: &[u8],
    tail: Option<&[u8]>,
    total_size: u64,
) -> Result<HeaderSummary, Reason> {
    let file = backup::parse(head, tail, total_size).map_err(|e| parse_reason(&e))?;
    check_file(&file)
}

/// The file-level checks on a parsed backup.
///
/// # Errors
/// As [`summarize`].
pub fn check_file(file: &BackupFile) -> Result<HeaderSummary, Reason> {
    let sets = file
        .set_count
        .map_or(file.sets.len(), |n| n as usize)
        .max(file.sets.len());
    if sets > 1 {
        return Err(Reason::new(
            "MoreThanOneBackupSet",
            format!(
                "the file holds {sets} backup sets; bakdrop restores one database per file from one backup set. Back up each database (and each backup) to its own file (BACKUP ... TO DISK = 'new file' WITH FORMAT; or WITH INIT, which overwrites the sets in the file: NOINIT, the default, appends)"
            ),
        ));
    }
    if file.set_count.is_none() {
        return Err(Reason::new(
            "BackupSetCountUnknown",
            "the end of the file could not be read, so the number of backup sets in it is unknown; upload the whole file again",
        ));
    }
    let Some(set) = file.sets.first() else {
        return Err(Reason::new(
            "NoBackupSet",
            "the file is SQL Server backup media but holds no backup set",
        ));
    };
    if file.media.password_protected {
        return Err(Reason::new(
            "MediaPasswordProtected",
            "the backup was written WITH MEDIAPASSWORD; neither RDS nor bakdrop can supply the password. Take the backup again without a media password",
        ));
    }
    crate::model::version::check_known(u32::from(set.database_version))
        .map_err(|e| Reason::new(e.code(), e.to_string()))?;
    let backup_type = match set.backup_type {
        BackupType::Full => BackupKind::Full,
        BackupType::Differential => BackupKind::Differential,
        BackupType::Log => BackupKind::Log,
        other => {
            return Err(Reason::new(
                "UnsupportedBackupType",
                format!(
                    "the file is a {other:?} backup (type {}); bakdrop migrates full, differential and log backups of a whole database",
                    other.code()
                ),
            ))
        }
    };
    Ok(HeaderSummary {
        backup_type,
        copy_only: set.copy_only,
        source_database: set.database_name.clone(),
        server_name: set.server_name.clone(),
        software_version: set.software_version.to_string(),
        database_version: u32::from(set.database_version),
        compressed: set.compressed,
        has_checksums: set.has_checksums,
        tail_log: Some(set.tail_log),
        first_lsn: set.first_lsn,
        last_lsn: set.last_lsn,
        checkpoint_lsn: set.checkpoint_lsn,
        database_backup_lsn: set.database_backup_lsn,
        differential_base_lsn: set.differential_base_lsn,
        differential_base_guid: set.differential_base_guid,
        backup_set_guid: set.backup_set_guid,
        family_guid: set.family_guid,
        recovery_fork_id: set.recovery_fork_id,
        family_count: u32::from(file.media.family_count),
        family_sequence: u32::from(file.media.family_sequence),
        backup_start_date: Some(set.backup_start_date.to_string()),
        backup_finish_date: set.backup_finish_date.map(|d| d.to_string()),
        backup_size: set.backup_size,
        files: set
            .files
            .iter()
            .map(|f| DatabaseFile {
                logical_name: f.logical_name.clone(),
                physical_name: f.physical_name.clone(),
                kind: match f.file_type {
                    backup::FileType::Data => DatabaseFileKind::Data,
                    backup::FileType::Log => DatabaseFileKind::Log,
                },
                file_id: f.file_id,
            })
            .collect(),
    })
}

/// A parse failure as a rejection reason with a stable code.
pub fn parse_reason(error: &ParseError) -> Reason {
    let code = match error {
        ParseError::NotABackup => "NotABackup",
        ParseError::NeedMoreHead { .. } => "HeaderTooLarge",
        ParseError::Truncated => "TruncatedBackup",
        ParseError::UnsupportedContainer(_) => "UnsupportedContainer",
        ParseError::Damaged { .. } => "DamagedBackup",
        ParseError::TooManySets { .. } => "MoreThanOneBackupSet",
    };
    Reason::new(code, error.to_string())
}
