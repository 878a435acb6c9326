//! `bakdrop plan`: what `bakdrop run` would restore from the backups under some paths, per
//! target database, with the files it would reject or skip and the T-SQL to run by hand.
//!
//! The preview is what runs: every file goes through the same [`Validator`] as `run` (in memory,
//! nothing written), files are keyed as `run` keys them, and each database's chain comes from
//! [`plan::plan_all`], which plans with the restore worker's own [`plan::plan`].
//!
//! Keys: a folder's files are keyed from the folder down (`Sales/log.trn`,
//! `SQL01$PROD/Sales/FULL/full.bak`), as `run` keys them; a file right in the folder given (or
//! under a backup-type folder right in it) is keyed under the folder's own name, so a database
//! folder may be given itself. Files given one by one are keyed under the database inside them
//! (`--database` names another).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bakdrop_core::model::chain::Step;
use bakdrop_core::model::header::BackupKind;
use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::model::names::DatabaseName;
use bakdrop_core::model::object::{KeyError, MigrationKey, ObjectRef};
use bakdrop_core::model::status::{FileRecord, FileState};
use bakdrop_core::model::version::{SqlServerRelease, VersionPolicy};
use bakdrop_core::plan::{self, Candidate};
use bakdrop_core::ports::{JobQueue, QueueError, StatusStore};
use bakdrop_core::tsql::source::SourceLocation;
use bakdrop_core::tsql::{self, Dialect, RestoreRequest, RestoreSource, S3Arn, TargetPaths};
use bakdrop_core::validate::{ValidateConfig, Validator};
use serde::Serialize;

use crate::adapters::local::{read_head_tail, scan, PathObjects};
use crate::adapters::store::JsonFileStore;
use crate::out::Shown;

/// One database's plan, as `--json` prints it (schema: `schemas/plan.schema.json`).
#[derive(Debug, Serialize)]
pub struct DatabasePlan {
    /// The target database ("" for files whose key names none: see their `rejected` codes).
    pub database: String,
    pub steps: Vec<PlannedStep>,
    /// Files the chain does not need (superseded, covered, another full chosen …).
    pub skipped: Vec<FileNote>,
    /// Files validation rejects, as `run` would.
    pub rejected: Vec<FileNote>,
    /// Why the database cannot proceed, or not as planned.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub files: Vec<String>,
    pub backup_type: BackupKind,
    pub first_lsn: String,
    pub last_lsn: String,
    pub sql: String,
}

/// A file and why it is where it is: a stable `code` and the sentence.
#[derive(Debug, Serialize)]
pub struct FileNote {
    pub file: String,
    pub code: String,
    pub reason: String,
}

/// Something that stops a database (or a file) from proceeding: a stable `code` and the
/// sentence, and the file when it is about one.
#[derive(Debug, Serialize)]
pub struct Problem {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Problem {
    /// True when the database cannot proceed past it (anything but a file in line).
    fn blocks(&self) -> bool {
        self.code != "Queued"
    }
}

/// How to validate and write the plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub dialect: Dialect,
    /// Bucket name in RDS ARNs.
    pub bucket: String,
    /// Plan every file as this target database.
    pub database: Option<String>,
    /// Where native full restores move the files.
    pub paths: TargetPaths,
    /// The target's version; `None`: no version check (said once).
    pub target_version: Option<SqlServerRelease>,
    pub policy: VersionPolicy,
}

/// Entries under the paths that are no files: they stop `plan` like a rejected file.
const UNREADABLE_CODE: &str = "Unreadable";

/// Plans every backup under `paths`; exit status 2 when a file would be rejected, a database
/// cannot proceed (no full, a gap, a broken chain) or an entry cannot be read.
///
/// # Errors
/// When a path cannot be read.
pub async fn run(
    paths: &[PathBuf],
    options: &PlanOptions,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    if options.target_version.is_none() {
        if as_json {
            eprintln!("bakdrop: {}", crate::pipeline::NO_VERSION);
        } else {
            crate::outln!("{}\n", crate::pipeline::NO_VERSION);
        }
    }
    let plans = plan_paths(paths, options).await?;
    if as_json {
        crate::outln!("{}", serde_json::to_string_pretty(&plans)?);
    } else {
        for p in &plans {
            crate::out!("{}", text(p, options));
        }
    }
    let stopped = plans.is_empty()
        || plans.iter().any(|p| {
            !p.rejected.is_empty()
                || p.problems.iter().any(Problem::blocks)
                || (p.steps.is_empty() && !p.database.is_empty())
        });
    Ok(if stopped {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// A file to plan: its key and where it is.
struct Input {
    key: String,
    path: PathBuf,
}

/// `relative` (a file's path in `dir`, with `/`) under `dir`'s own name.
fn under_folder_name(dir: &Path, relative: &str) -> String {
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if name.is_empty() {
        relative.to_owned()
    } else {
        format!("{name}/{relative}")
    }
}

/// True when `relative` names no database folder (the file is right in the folder given, or
/// under a backup-type folder right in it).
fn names_no_database(relative: &str) -> bool {
    matches!(
        MigrationKey::parse(relative),
        Err(KeyError::NoFolder(_) | KeyError::NoDatabaseAboveTypeFolder { .. })
    )
}

/// The inputs under `paths`, in the order `run` meets them, and the entries that are no files.
fn inputs(
    paths: &[PathBuf],
    database: Option<&str>,
) -> anyhow::Result<(Vec<Input>, crate::adapters::local::Unreadable)> {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        let scanned = scan(std::slice::from_ref(path))?;
        for (entry, why) in scanned.unreadable {
            unreadable.push((entry.display().to_string(), why));
        }
        let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        let relative = |file: &Path| -> String {
            file.strip_prefix(path)
                .unwrap_or(file)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        };
        // A folder none of whose files has a database folder is itself one (`plan Sales/`);
        // otherwise its files are keyed exactly as `run` keys them.
        let database_folder = is_dir
            && scanned
                .files
                .iter()
                .all(|f| names_no_database(&relative(f)));
        for file in scanned.files {
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = match (database, is_dir) {
                (Some(db), _) => format!("{db}/{file_name}"),
                (None, true) if database_folder => under_folder_name(path, &relative(&file)),
                (None, true) => relative(&file),
                (None, false) => {
                    // A loose file: under the database inside it, as a DBA restores it by hand.
                    let data = read_head_tail(&file)?;
                    let inside =
                        bakdrop_core::backup::parse(&data.head, data.tail.as_deref(), data.size)
                            .ok()
                            .and_then(|f| f.sets.first().map(|s| s.database_name.clone()))
                            .filter(|n| !n.is_empty() && !n.contains('/'));
                    match inside {
                        Some(db) => format!("{db}/{file_name}"),
                        None => {
                            under_folder_name(file.parent().unwrap_or(Path::new(".")), &file_name)
                        }
                    }
                }
            };
            found.push(Input { key, path: file });
        }
    }
    Ok((found, unreadable))
}

/// A queue that keeps nothing: the preview validates and plans, it restores nothing.
#[derive(Debug)]
struct NoQueue;

impl JobQueue for NoQueue {
    async fn send(
        &self,
        _message: &QueueMessage,
        _delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Reads, validates (as `run` does) and plans.
///
/// # Errors
/// When a path cannot be read.
pub async fn plan_paths(
    paths: &[PathBuf],
    options: &PlanOptions,
) -> anyhow::Result<Vec<DatabasePlan>> {
    let (inputs, unreadable) = inputs(paths, options.database.as_deref())?;
    let directory = paths
        .iter()
        .find(|p| p.is_dir())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map_or_else(|| "/".to_owned(), |p| p.display().to_string());
    let location = match options.dialect {
        Dialect::Rds => SourceLocation::rds(None),
        Dialect::Native => SourceLocation::Disk { directory },
    };
    let mut objects = PathObjects::default();
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut listed = Vec::new();
    for input in &inputs {
        let object = objects.add(&options.bucket, &input.key, &input.path)?;
        shown.insert(object.file_id(), input.path.display().to_string());
        listed.push(object);
    }
    let validator = Validator {
        reader: objects,
        store: JsonFileStore::in_memory(),
        queue: NoQueue,
        config: ValidateConfig {
            // The preview plans restores; an arm request changes no chain.
            arm_by_upload: false,
            target: options.target_version,
            policy: options.policy,
            location,
        },
    };
    let now = time::OffsetDateTime::now_utc();
    for (i, object) in listed.iter().enumerate() {
        Box::pin(validator.validate(object, &format!("plan-{i}"), now))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    }
    let mut plans = Vec::new();
    for name in validator.store.databases()? {
        let files: Vec<FileRecord> = validator
            .store
            .list_files(&name)
            .await?
            .into_iter()
            .map(|v| v.record)
            .collect();
        plans.push(plan_database(
            &name,
            &files,
            options,
            &validator.reader,
            &shown,
        ));
    }
    if !unreadable.is_empty() {
        plans.push(DatabasePlan {
            database: String::new(),
            steps: Vec::new(),
            skipped: Vec::new(),
            rejected: unreadable
                .into_iter()
                .map(|(file, reason)| FileNote {
                    file,
                    code: UNREADABLE_CODE.to_owned(),
                    reason,
                })
                .collect(),
            problems: Vec::new(),
        });
    }
    Ok(plans)
}

/// One database's plan: the files validation rejected and, for a named database, the restore
/// sequence with its T-SQL, the files the chain skips and what stops it.
fn plan_database(
    name: &str,
    files: &[FileRecord],
    options: &PlanOptions,
    objects: &PathObjects,
    shown: &BTreeMap<String, String>,
) -> DatabasePlan {
    let show = |file_id: &str| shown_as(shown, file_id);
    let (rejected, candidates) = sort_files(files, &show);
    let mut out = DatabasePlan {
        database: name.to_owned(),
        steps: Vec::new(),
        skipped: Vec::new(),
        rejected,
        problems: Vec::new(),
    };
    if name.is_empty() {
        return out;
    }
    let offline = plan::plan_all(&candidates);
    let database = DatabaseName::parse(name).ok();
    for step in &offline.steps {
        let sql = match &database {
            Some(db) => match step_sql(db, step, &candidates, options, objects, files) {
                Ok(sql) => sql,
                Err(e) => {
                    out.problems.push(unusable_name(step, &e, &show));
                    String::new()
                }
            },
            None => String::new(),
        };
        out.steps.push(PlannedStep {
            files: step.files.iter().map(|f| show(f)).collect(),
            backup_type: step.kind,
            first_lsn: step.first_lsn.to_string(),
            last_lsn: step.last_lsn.to_string(),
            sql,
        });
    }
    note_chain(&offline, &mut out, &show);
    out
}

/// How a file is shown: the path it was read from, else its id.
fn shown_as(shown: &BTreeMap<String, String>, file_id: &str) -> String {
    shown
        .get(file_id)
        .cloned()
        .unwrap_or_else(|| file_id.to_owned())
}

/// The files validation rejected (or left without a header), as notes, and the others as the
/// planner's candidates.
fn sort_files(
    files: &[FileRecord],
    show: &impl Fn(&str) -> String,
) -> (Vec<FileNote>, Vec<Candidate>) {
    let mut rejected = Vec::new();
    let mut candidates = Vec::new();
    for f in files {
        match (f.state, &f.header) {
            (FileState::Rejected, _) | (_, None) => {
                let (code, reason) = f
                    .reason
                    .as_ref()
                    .map(|r| (r.code.clone(), r.to_string()))
                    .unwrap_or_else(|| ("Rejected".into(), "rejected".into()));
                rejected.push(FileNote {
                    file: show(&f.file_id),
                    code,
                    reason,
                });
            }
            (_, Some(header)) => candidates.push(Candidate {
                file_id: f.file_id.clone(),
                file_name: f.object.file_name().to_owned(),
                header: header.clone(),
            }),
        }
    }
    (rejected, candidates)
}

/// The problem of a step whose file names the target adapter refuses.
fn unusable_name(step: &Step, e: &tsql::SourceError, show: &impl Fn(&str) -> String) -> Problem {
    Problem {
        code: "UnusableFileName".into(),
        message: format!(
            "{} cannot be restored as it is named ({e}); rename it",
            step.files
                .iter()
                .map(|f| show(f))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        file: step.files.first().map(|f| show(f)),
    }
}

/// Adds what the chain skips, waits for and breaks on to the plan, and that there is no chain
/// at all when no step was planned.
fn note_chain(offline: &plan::OfflinePlan, out: &mut DatabasePlan, show: &impl Fn(&str) -> String) {
    for (file, reason) in &offline.skipped {
        out.skipped.push(FileNote {
            file: show(file),
            code: reason.code().to_owned(),
            reason: reason.to_string(),
        });
    }
    for (file, reason) in &offline.waiting {
        out.problems.push(Problem {
            code: reason.code().to_owned(),
            message: format!("{} cannot be applied: {reason}", show(file)),
            file: Some(show(file)),
        });
    }
    for (file, reason) in &offline.failures {
        out.problems.push(Problem {
            code: reason.code().to_owned(),
            message: format!("{} breaks the chain: {reason}", show(file)),
            file: Some(show(file)),
        });
    }
    if offline.steps.is_empty() {
        out.problems.push(Problem {
            code: "NoFullBackup".into(),
            message: "no usable restore chain: there is no usable full backup of this database among these files".into(),
            file: None,
        });
    }
}

/// The T-SQL of one step in the chosen dialect: the RDS procedure on the objects' ARN (one
/// prefix for a striped set), or `RESTORE` from the local files.
fn step_sql(
    database: &DatabaseName,
    step: &Step,
    candidates: &[Candidate],
    options: &PlanOptions,
    objects: &PathObjects,
    files: &[FileRecord],
) -> Result<String, tsql::SourceError> {
    let object_of = |file_id: &str| -> Option<&ObjectRef> {
        files
            .iter()
            .find(|f| f.file_id == file_id)
            .map(|f| &f.object)
    };
    let sources = match options.dialect {
        Dialect::Rds => {
            let keys: Vec<String> = step
                .files
                .iter()
                .map(|f| object_of(f).map_or_else(|| f.clone(), |o| o.key.clone()))
                .collect();
            let arn = match keys.as_slice() {
                [one] => S3Arn::object("aws", &options.bucket, one),
                // A striped set: RDS reads every object under one prefix ending in '*'.
                many => S3Arn::under("aws", &options.bucket, &common_prefix(many)),
            };
            vec![RestoreSource::S3Arn(arn)]
        }
        Dialect::Native => step
            .files
            .iter()
            .map(|f| {
                let path = objects.path(f).map_or_else(|| PathBuf::from(f), absolute);
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
    Ok(match options.dialect {
        Dialect::Rds => tsql::rds::restore(&request).to_string(),
        Dialect::Native => format!(
            "{};",
            tsql::native::restore_command(&request, Some(&options.paths))
        ),
    })
}

/// `path` made absolute when it exists.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The longest prefix every name shares.
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

/// One database's plan as a person reads it.
fn text(p: &DatabasePlan, options: &PlanOptions) -> String {
    let (dialect, bucket) = (options.dialect, options.bucket.as_str());
    use std::fmt::Write as _;
    let mut s = String::new();
    if p.database.is_empty() {
        let _ = writeln!(s, "== files outside any database folder, or unreadable");
    } else {
        let _ = writeln!(s, "== {}", Shown(&p.database));
    }
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
    if !p.rejected.is_empty() {
        let _ = writeln!(s, "Rejected (as `bakdrop run` would reject them):");
        for k in &p.rejected {
            let _ = writeln!(s, "  {}: {}: {}", Shown(&k.file), k.code, Shown(&k.reason));
        }
    }
    if !p.skipped.is_empty() {
        let _ = writeln!(s, "Skipped:");
        for k in &p.skipped {
            let _ = writeln!(s, "  {}: {}", Shown(&k.file), Shown(&k.reason));
        }
    }
    if !p.problems.is_empty() {
        let _ = writeln!(s, "Problems:");
        for k in &p.problems {
            let _ = writeln!(s, "  {}: {}", k.code, Shown(&k.message));
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
