//! `bakdrop inspect`: header, file list and bakdrop's verdict for each backup file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bakdrop_core::backup::summary::{check_file, parse_reason};
use bakdrop_core::backup::{self, BackupFile, BackupSet};
use bakdrop_core::model::status::Reason;
use bakdrop_core::model::version::{SqlServerRelease, VersionPolicy};
use serde_json::json;

use crate::adapters::local::PathReader;
use crate::out::Shown;

/// Inspects every backup under `paths` (files as given, folders searched recursively); exit
/// status 0 when every file is usable, 1 otherwise (a file bakdrop would reject, or an entry that
/// cannot be read).
pub fn run(
    paths: &[PathBuf],
    as_json: bool,
    target: Option<&str>,
    policy: &str,
) -> anyhow::Result<ExitCode> {
    let target: Option<SqlServerRelease> =
        target.map(|t| t.parse().context("--target")).transpose()?;
    let policy: VersionPolicy = policy
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))
        .context("--policy")?;
    let found = crate::adapters::local::scan(paths)?;
    let mut all_usable = found.unreadable.is_empty();
    let mut reports = Vec::new();
    for path in &found.files {
        let report = inspect_one(path, target, policy)?;
        all_usable &= report.verdict.is_ok();
        if as_json {
            reports.push(report.to_json(path));
        } else {
            crate::out!("{}", report.to_text(path));
        }
    }
    for (path, why) in &found.unreadable {
        if as_json {
            reports.push(json!({
                "path": path.display().to_string(),
                "usable": false,
                "reason": {"code": "Unreadable", "message": why},
            }));
        } else {
            crate::outln!(
                "{}\n  verdict: rejected: Unreadable: {}\n",
                crate::out::path(path),
                Shown(why)
            );
        }
    }
    if as_json {
        crate::outln!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(if all_usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

struct Report {
    size: u64,
    /// Bytes read from the file (head and tail ranges, as validation reads an upload).
    bytes_read: u64,
    reads: u32,
    parsed: Result<BackupFile, backup::ParseError>,
    /// `Ok` when bakdrop would take the file, else the reason (a stable code and a sentence).
    verdict: Result<(), Reason>,
}

fn inspect_one(
    path: &Path,
    target: Option<SqlServerRelease>,
    policy: VersionPolicy,
) -> anyhow::Result<Report> {
    let reader = PathReader {
        path: path.to_owned(),
    };
    let object = reader.object()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the async runtime")?;
    let read = runtime
        .block_on(bakdrop_core::validate::read_backup(&reader, &object))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let parsed = read.parsed;
    let verdict = match &parsed {
        Err(e) => Err(parse_reason(e)),
        Ok(file) => check_file(file).and_then(|h| match target {
            Some(t) => policy
                .check(h.database_version, t)
                .map_err(|e| Reason::new(e.code(), e.to_string())),
            None => Ok(()),
        }),
    };
    Ok(Report {
        size: object.size,
        bytes_read: read.bytes_read,
        reads: read.reads,
        parsed,
        verdict,
    })
}

impl Report {
    fn to_json(&self, path: &Path) -> serde_json::Value {
        json!({
            "path": path.display().to_string(),
            "size": self.size,
            "bytes_read": self.bytes_read,
            "reads": self.reads,
            "usable": self.verdict.is_ok(),
            "reason": self.verdict.as_ref().err().map(|r| json!({"code": r.code, "message": r.to_string()})),
            "backup": self.parsed.as_ref().ok(),
            "error": self.parsed.as_ref().err().map(ToString::to_string),
        })
    }

    fn to_text(&self, path: &Path) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} ({} bytes)", crate::out::path(path), self.size);
        match &self.parsed {
            Err(e) => {
                let _ = writeln!(out, "  cannot read: {}", Shown(&e.to_string()));
            }
            Ok(file) => {
                let sets = file
                    .set_count
                    .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
                let _ = writeln!(
                    out,
                    "  media: {:?}, family {} of {}, backup sets in file: {sets}",
                    file.container, file.media.family_sequence, file.media.family_count
                );
                for set in &file.sets {
                    write_set(&mut out, set);
                }
            }
        }
        match &self.verdict {
            Ok(()) => {
                let _ = writeln!(out, "  verdict: usable");
            }
            Err(reason) => {
                let _ = writeln!(
                    out,
                    "  verdict: rejected: {}: {}",
                    reason.code,
                    Shown(&reason.to_string())
                );
            }
        }
        out.push('\n');
        out
    }
}

fn write_set(out: &mut String, set: &BackupSet) {
    let unknown = || "unknown (needs the tail)".to_owned();
    let _ = writeln!(
        out,
        "  set {}: {:?} backup of [{}] from {} (SQL Server {}, DatabaseVersion {}, compatibility {})",
        set.position,
        set.backup_type,
        Shown(&set.database_name),
        Shown(&set.server_name),
        set.software_version,
        set.database_version,
        set.compatibility_level
    );
    let _ = writeln!(
        out,
        "    FirstLSN {}  LastLSN {}  CheckpointLSN {}  DatabaseBackupLSN {}",
        set.first_lsn, set.last_lsn, set.checkpoint_lsn, set.database_backup_lsn
    );
    if let (Some(lsn), Some(guid)) = (set.differential_base_lsn, set.differential_base_guid) {
        let _ = writeln!(
            out,
            "    DifferentialBaseLSN {lsn}  DifferentialBaseGUID {guid}"
        );
    }
    let _ = writeln!(
        out,
        "    BackupSetGUID {}  FamilyGUID {}  RecoveryForkID {}",
        set.backup_set_guid, set.family_guid, set.recovery_fork_id
    );
    let _ = writeln!(
        out,
        "    started {}  finished {}  size {}  compressed {}  checksums {}  tail-log {}",
        set.backup_start_date,
        set.backup_finish_date
            .map_or_else(unknown, |d| d.to_string()),
        set.backup_size.map_or_else(unknown, |s| s.to_string()),
        set.compressed,
        set.has_checksums,
        set.tail_log
    );
    for file in &set.files {
        let _ = writeln!(
            out,
            "    file {} {:?} {} -> {}",
            file.file_id,
            file.file_type,
            Shown(&file.logical_name),
            Shown(&file.physical_name)
        );
    }
}
