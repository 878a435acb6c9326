//! The TDS test server (tests/tds-server) as the tests use it: the restore worker's configuration
//! the end-to-end tests share, and the media the server may read (the adapter pointed at it is
//! `bakdrop_mssql::testing`).
//!
//! The test server reads no backup bytes: like a SQL Server that cannot open a device, it fails
//! a restore of a source nobody described (3201). Tests describe each upload with
//! [`register_upload`] from the backup's own header, as `RESTORE HEADERONLY` / `FILELISTONLY`
//! would report it, decoded by bakdrop's parser (whose values are checked against the fixtures'
//! MANIFEST.md in `shared/core/tests/fixtures.rs`).

use std::time::Duration;

use bakdrop_core::model::header::{BackupKind, DatabaseFileKind, HeaderSummary};
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::restore::{RestoreConfig, SourceLocation};
use bakdrop_core::tsql::Dialect;

/// Where the native dialect's target reads backups in the tests (`RESTORE … FROM DISK`).
pub const DISK: &str = "/var/opt/mssql/backup";

/// The worker's configuration against the TDS test server: S3 ARNs on RDS, [`DISK`] natively,
/// backups no newer than the target, polls and busy retries at once (the tests drive time).
pub fn emulator_restore_config(dialect: Dialect) -> RestoreConfig {
    RestoreConfig {
        dialect,
        location: match dialect {
            Dialect::Rds => SourceLocation::rds(None),
            Dialect::Native => SourceLocation::Disk {
                directory: DISK.into(),
            },
        },
        policy: VersionPolicy::NotNewer,
        check_version: true,
        poll_interval: Duration::ZERO,
        busy_retry: Duration::ZERO,
        settle: None,
    }
}

/// What the test server knows of a backup medium, from the backup's header.
pub fn backup_info(header: &HeaderSummary) -> bakdrop_tds_server::emulator::BackupInfo {
    use bakdrop_tds_server::emulator::{self as emu, BackupFileInfo, FileKind};
    let kind = match header.backup_type {
        BackupKind::Full => emu::BackupKind::Full,
        BackupKind::Differential => emu::BackupKind::Differential,
        BackupKind::Log => emu::BackupKind::Log,
    };
    // 3169 prints versions as "13.00.5081".
    let software_version = {
        let parts: Vec<&str> = header.software_version.split('.').collect();
        match parts.as_slice() {
            [major, minor, build, ..] => format!("{major}.{minor:0>2}.{build}"),
            _ => header.software_version.clone(),
        }
    };
    emu::BackupInfo {
        kind,
        database_name: header.source_database.clone(),
        first_lsn: header.first_lsn.value(),
        last_lsn: header.last_lsn.value(),
        database_version: header.database_version,
        software_version,
        has_checksums: header.has_checksums,
        family_count: header.family_count,
        family_sequence: header.family_sequence,
        backup_set_guid: *header.backup_set_guid.as_bytes(),
        files: header
            .files
            .iter()
            .map(|f| BackupFileInfo {
                logical_name: f.logical_name.clone(),
                physical_name: f.physical_name.clone(),
                file_type: match f.kind {
                    DatabaseFileKind::Data => FileKind::Data,
                    DatabaseFileKind::Log => FileKind::Log,
                },
            })
            .collect(),
    }
}

/// The header of a whole backup file.
///
/// # Panics
/// When the bytes are not a usable backup (tests register only fixtures they upload).
pub fn header_of(bytes: &[u8]) -> HeaderSummary {
    summarize(bytes).unwrap_or_else(|e| panic!("not a usable backup: {e}"))
}

fn summarize(bytes: &[u8]) -> Result<HeaderSummary, bakdrop_core::model::status::Reason> {
    let head = &bytes[..bytes.len().min(bakdrop_core::backup::HEAD_LIMIT)];
    let tail = &bytes[bytes.len().saturating_sub(bakdrop_core::backup::TAIL_LIMIT)..];
    bakdrop_core::backup::summary::summarize(head, Some(tail), bytes.len() as u64)
}

/// Tells the test server that the upload `bucket`/`key` holds `bytes`, under every name a
/// target reads it by: its RDS ARN and its path below [`DISK`]. Bytes that are not a usable
/// backup are not registered (a restore of them fails as on a server that cannot read them).
pub fn register_upload(
    emulator: &bakdrop_tds_server::SqlServerEmulator,
    bucket: &str,
    key: &str,
    bytes: &[u8],
) {
    let Ok(header) = summarize(bytes) else {
        return;
    };
    let info = backup_info(&header);
    let object = ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: None,
        etag: None,
        size: bytes.len() as u64,
    };
    for dialect in [Dialect::Rds, Dialect::Native] {
        let source = emulator_restore_config(dialect).location.source(&object);
        emulator.register_backup(&source.text(), info.clone());
    }
}

/// What the test server knows of a backup file on this machine's disk, read from its own header
/// (head and tail, as validation reads it); `None` when it is no usable backup.
pub fn describe_file(path: &std::path::Path) -> Option<bakdrop_tds_server::emulator::BackupInfo> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let head_len = size.min(bakdrop_core::backup::HEAD_LIMIT as u64);
    let mut head = vec![0; usize::try_from(head_len).ok()?];
    file.read_exact(&mut head).ok()?;
    let tail_len = size.min(bakdrop_core::backup::TAIL_LIMIT as u64);
    let mut tail = vec![0; usize::try_from(tail_len).ok()?];
    file.seek(SeekFrom::End(-i64::try_from(tail_len).ok()?))
        .ok()?;
    file.read_exact(&mut tail).ok()?;
    let header = bakdrop_core::backup::summary::summarize(&head, Some(&tail), size).ok()?;
    Some(backup_info(&header))
}
