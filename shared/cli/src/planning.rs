//! `bakdrop plan`: the restore sequence the worker would apply to the backups under some paths,
//! per source database (FamilyGUID), with the files it would skip and the T-SQL to run by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bakdrop_core::names::DatabaseName;
use bakdrop_core::plan::{self, Candidate, Step};
use bakdrop_core::status::BackupKind;
use bakdrop_core::tsql::{self, Dialect, RestoreRequest, RestoreSource, TargetPaths};
use bakdrop_core::{backup, summary};
use serde::Serialize;

use crate::local::{read_head_tail, scan};
use crate::out::Shown;

/// One database's plan, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct DatabasePlan {
    pub database: String,
    pub steps: Vec<PlannedStep>,
    pub skipped: Vec<Skipped>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub files: Vec<String>,
    pub backup_type: BackupKind,
    pub first_lsn: String,
    pub last_lsn: String,
    pub sql: String,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// The group a file falls into: its FamilyGUID when the header could be read.
#[derive(Debug, Default)]
struct Group {
    database: String,
    candidates: Vec<Candidate>,
    skipped: Vec<Skipped>,
}

/// Groups files without a readable header apart from every database.
const UNREADABLE_KEY: &str = "~unreadable";

fn family_key(guid: impl std::fmt::Display) -> String {
    guid.to_string()
}

/// How to write the plan's T-SQL.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub dialect: Dialect,
    /// Bucket name in RDS ARNs.
    pub bucket: String,
    /// Restore as this database (default: each backup's own database name).
    pub database: Option<String>,
    /// Where native full restores move the files.
    pub paths: TargetPaths,
}

/// Plans every backup under `paths`; exit status 2 when a database has no usable chain.
///
/// # Errors
/// When a path cannot be read.
pub fn run(paths: &[PathBuf], options: &PlanOptions, as_json: bool) -> anyhow::Result<ExitCode> {
    let plans = plan_paths(paths, options)?;
    if as_json {
        crate::outln!("{}", serde_json::to_string_pretty(&plans)?);
    } else {
        for p in &plans {
            crate::out!("{}", text(p, options));
        }
    }
    // A database without a chain, or nothing usable at all.
    // A database without a chain, a file that is no usable backup (or cannot be read at all),
    // or nothing usable at all.
    let unusable = plans
        .iter()
        .any(|p| p.steps.is_empty() && p.database != UNREADABLE_NAME)
        || plans
            .iter()
            .any(|p| p.database == UNREADABLE_NAME && !p.skipped.is_empty())
        || plans.iter().all(|p| p.steps.is_empty());
    Ok(if unusable {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

const UNREADABLE_NAME: &str = "(not a usable backup)";

/// Reads, groups and plans.
///
/// # Errors
/// When a path cannot be read.
pub fn plan_paths(paths: &[PathBuf], options: &PlanOptions) -> anyhow::Result<Vec<DatabasePlan>> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut locations: BTreeMap<String, PathBuf> = BTreeMap::new();
    let scanned = scan(paths)?;
    if !scanned.unreadable.is_empty() {
        let group = groups.entry(UNREADABLE_KEY.to_owned()).or_default();
        group.database = UNREADABLE_NAME.to_owned();
        for (path, why) in &scanned.unreadable {
            group.skipped.push(Skipped {
                file: path.display().to_string(),
                reason: why.clone(),
            });
        }
    }
    for path in scanned.files {
        let shown = path.display().to_string();
        let data = read_head_tail(&path)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        match summary::summarize(&data.head, data.tail.as_deref(), data.size) {
            Ok(header) => {
                let group = groups.entry(family_key(header.family_guid)).or_default();
                if group.database.is_empty() {
                    group.database = header.source_database.clone();
                }
                locations.insert(shown.clone(), path.clone());
                group.candidates.push(Candidate {
                    file_id: shown,
                    file_name,
                    header,
                });
            }
            Err(reason) => {
                // Still group by the database inside when the header itself is readable.
                let parsed = backup::parse(&data.head, data.tail.as_deref(), data.size).ok();
                let set = parsed.as_ref().and_then(|f| f.sets.first());
                let (key, name) = match set {
                    Some(s) => (family_key(s.family_guid), s.database_name.clone()),
                    None => (UNREADABLE_KEY.to_owned(), UNREADABLE_NAME.to_owned()),
                };
                let group = groups.entry(key).or_default();
                if group.database.is_empty() {
                    group.database = name;
                }
                group.skipped.push(Skipped {
                    file: shown,
                    reason: reason.to_string(),
                });
            }
        }
    }
    Ok(groups
        .into_values()
        .map(|g| plan_group(g, options, &locations))
        .collect())
}

fn plan_group(
    group: Group,
    options: &PlanOptions,
    locations: &BTreeMap<String, PathBuf>,
) -> DatabasePlan {
    let source = group.database;
    let mut out = DatabasePlan {
        database: match &options.database {
            Some(target) if source != UNREADABLE_NAME => target.clone(),
            _ => source,
        },
        steps: Vec::new(),
        skipped: group.skipped,
        problems: Vec::new(),
    };
    if out.database == UNREADABLE_NAME {
        return out;
    }
    let offline = plan::plan_all(&group.candidates);
    let name = DatabaseName::parse(&out.database);
    if let Err(e) = &name {
        out.problems.push(format!(
            "the database name cannot be restored as it is ({e}); upload under another <TargetDatabase> folder"
        ));
    }
    for step in &offline.steps {
        let sql = match &name {
            Ok(db) => match step_sql(db, step, &group.candidates, options, locations) {
                Ok(sql) => sql,
                Err(e) => {
                    out.problems.push(format!(
                        "{} cannot be restored as it is named ({e}); rename it",
                        step.files.join(" + ")
                    ));
                    String::new()
                }
            },
            Err(_) => String::new(),
        };
        out.steps.push(PlannedStep {
            files: step.files.clone(),
            backup_type: step.kind,
            first_lsn: step.first_lsn.to_string(),
            last_lsn: step.last_lsn.to_string(),
            sql,
        });
    }
    for (file, reason) in &offline.skipped {
        out.skipped.push(Skipped {
            file: file.clone(),
            reason: reason.to_string(),
        });
    }
    for (file, reason) in &offline.waiting {
        out.problems
            .push(format!("{file} cannot be applied: {reason}"));
    }
    for (file, reason) in &offline.failures {
        out.problems
            .push(format!("{file} breaks the chain: {reason}"));
    }
    if offline.steps.is_empty() {
        out.problems.push(
            "no usable restore chain: there is no usable full backup of this database among these files"
                .to_owned(),
        );
    }
    out
}

fn file_name(file: &str, locations: &BTreeMap<String, PathBuf>) -> String {
    locations
        .get(file)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_owned())
}

fn step_sql(
    database: &DatabaseName,
    step: &Step,
    candidates: &[Candidate],
    options: &PlanOptions,
    locations: &BTreeMap<String, PathBuf>,
) -> Result<String, tsql::SourceError> {
    let (dialect, bucket) = (options.dialect, options.bucket.as_str());
    let sources = match dialect {
        Dialect::Rds => {
            let names: Vec<String> = step.files.iter().map(|f| file_name(f, locations)).collect();
            let object = match names.as_slice() {
                [one] => one.clone(),
                // A striped set: RDS reads every object under one prefix ending in '*'.
                many => format!("{}*", common_prefix(many)),
            };
            vec![RestoreSource::S3Arn(format!(
                "arn:aws:s3:::{bucket}/{}/{object}",
                database.as_str()
            ))]
        }
        Dialect::Native => step
            .files
            .iter()
            .map(|f| {
                let path = locations
                    .get(f)
                    .map_or_else(|| PathBuf::from(f), |p| absolute(p));
                RestoreSource::Disk(path.display().to_string())
            })
            .collect(),
    };
    // What the target adapter refuses (and `bakdrop run` rejects at validation).
    for source in &sources {
        source.validate()?;
    }
    let mut request = RestoreRequest::new(database.clone(), step.kind, sources);
    // The stripes of a set share one header: its file list and whether it has checksums.
    if let Some(header) = candidates
        .iter()
        .find(|c| step.files.contains(&c.file_id))
        .map(|c| &c.header)
    {
        request.files = header.files.clone();
        request.checksums = header.has_checksums;
    }
    Ok(match dialect {
        Dialect::Rds => tsql::rds::restore(&request).to_string(),
        Dialect::Native => format!(
            "{};",
            tsql::native::restore_command(&request, Some(&options.paths))
        ),
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn common_prefix(names: &[String]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut len = first.len();
    for n in names {
        len = first
            .char_indices()
            .zip(n.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8())
            .min(len);
    }
    first.get(..len).unwrap_or_default().to_owned()
}

fn text(p: &DatabasePlan, options: &PlanOptions) -> String {
    let (dialect, bucket) = (options.dialect, options.bucket.as_str());
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "== {}", Shown(&p.database));
    if !p.steps.is_empty() {
        let _ = writeln!(s, "Restore sequence:");
        for (i, step) in p.steps.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {}. {:<12} {}  LSN {} → {}",
                i + 1,
                step.backup_type.to_string(),
                Shown(&step.files.join(" + ")),
                step.first_lsn,
                step.last_lsn
            );
        }
    }
    if !p.skipped.is_empty() {
        let _ = writeln!(s, "Skipped or not usable:");
        for k in &p.skipped {
            let _ = writeln!(s, "  {}: {}", Shown(&k.file), Shown(&k.reason));
        }
    }
    if !p.problems.is_empty() {
        let _ = writeln!(s, "Problems:");
        for k in &p.problems {
            let _ = writeln!(s, "  {}", Shown(k));
        }
    }
    if !p.steps.is_empty() {
        match dialect {
            Dialect::Rds if bucket == DEFAULT_BUCKET => {
                let _ = writeln!(s, "T-SQL (Amazon RDS; {DEFAULT_BUCKET} is a placeholder: replace it with your bucket, or pass --bucket):");
            }
            Dialect::Rds => {
                let _ = writeln!(s, "T-SQL (Amazon RDS):");
            }
            Dialect::Native => {
                let _ = writeln!(
                    s,
                    "T-SQL (SQL Server 2022, RESTORE FROM DISK = the local files; each a SQL Server Agent job step when bakdrop runs it; files moved to {} and {}: --data-dir/--log-dir for your server's InstanceDefaultDataPath/InstanceDefaultLogPath):",
                    Shown(&options.paths.data),
                    Shown(&options.paths.log)
                );
            }
        }
        for step in p.steps.iter().filter(|step| !step.sql.is_empty()) {
            let _ = writeln!(s, "{}\nGO", Shown(&step.sql));
        }
    }
    s.push('\n');
    s
}

/// The bucket placeholder in RDS ARNs when `--bucket` is not given.
pub const DEFAULT_BUCKET: &str = "<bucket>";
