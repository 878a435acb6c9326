//! `bakdrop run`: the whole pipeline in one process, with the same core code the Lambda functions
//! run (the validator and the restore worker) over local stand-ins: the folder is the bucket
//! ([`LocalBucket`]), every file in it an `ObjectCreated` event, the queue lives in memory
//! ([`LocalQueue`]), the status table is a JSON file ([`JsonFileStore`]), and the target is a real
//! SQL Server or, without `--target`, [`ScriptTarget`] (script-only mode).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bakdrop_core::model::status::{FileState, MigrationState};
use bakdrop_core::model::version::{SqlServerRelease, VersionPolicy};
use bakdrop_core::ports::{RestoreTarget, StatusStore};
use bakdrop_core::report;
use bakdrop_core::restore::{Attempt, RestoreConfig, SourceLocation, WorkOutcome, Worker};
use bakdrop_core::tsql::{Dialect, TargetPaths};
use bakdrop_core::validate::{Outcome, ValidateConfig, Validator};
use bakdrop_mssql::TiberiusTarget;

use crate::adapters::local::LocalBucket;
use crate::adapters::queue::{Clock, LocalQueue};
use crate::adapters::store::{JsonFileStore, RememberedTarget};
use crate::adapters::target::{parse_connection, password_source, CliTarget, ScriptTarget};

/// What `bakdrop run` was asked.
#[derive(Debug)]
pub struct RunOptions {
    pub dir: PathBuf,
    pub target: Option<String>,
    pub dialect: Dialect,
    pub watch: bool,
    pub state: Option<PathBuf>,
    pub target_version: Option<String>,
    pub policy: VersionPolicy,
    pub poll_interval: Duration,
    /// Where native full restores put the files (default: the target's own directories; in
    /// script-only mode SQL Server on Linux's).
    pub paths: Option<TargetPaths>,
    /// `bakdrop-complete.json` arms Complete (else it is ignored).
    pub complete_by_upload: bool,
}

/// A redelivered message gives up after this many transient failures (the DLQ's role).
const MAX_DELIVERIES: u32 = 5;

/// Runs the pipeline; exit status 1 when a file was rejected, a migration failed or cannot
/// proceed (no full, a gap), or an entry of the folder cannot be read.
///
/// # Errors
/// When the folder, the state file or the target cannot be used at all.
pub async fn run(options: RunOptions) -> anyhow::Result<ExitCode> {
    let bucket = LocalBucket::open(&options.dir)?;
    let root = bucket.root().to_path_buf();
    let state_path = options
        .state
        .clone()
        .unwrap_or_else(|| crate::adapters::store::default_state(&root));
    let script_path = root.join(".bakdrop").join("restore.sql");
    let store = Arc::new(JsonFileStore::new(&state_path));

    // One folder's migrations live on one target: a run elsewhere would record restores that
    // are not where the first ones are.
    let wanted = match &options.target {
        Some(connection) => {
            let login = parse_connection(connection)?;
            RememberedTarget::Server {
                host: login.host.clone(),
                port: login.port,
                user: login.username.clone(),
                tls: login.tls.to_string(),
                dialect: options.dialect,
                password_from: password_source(connection),
            }
        }
        None => RememberedTarget::Script {
            dialect: options.dialect,
        },
    };
    if let Some(before) = store.remembered_target()? {
        if !before.same_place(&wanted) {
            anyhow::bail!(
                "the migrations of this state file were run against {before}; this run names {wanted}. Run against the same target, or give another --state for another target"
            );
        }
    }
    store.remember_target(wanted)?;
    let (target, release) = match &options.target {
        Some(connection) => {
            let login = parse_connection(connection)?;
            crate::outln!(
                "target: {}:{} as {} ({} dialect, tls {:?})",
                login.host,
                login.port,
                login.username,
                options.dialect,
                login.tls
            );
            let server = TiberiusTarget::new(login.config(), options.dialect)
                .with_paths(options.paths.clone());
            let release = match &options.target_version {
                Some(v) => given_version(v)?,
                None => {
                    let product = server
                        .product_version()
                        .await
                        .context("cannot read the target's version")?;
                    let release: SqlServerRelease = product
                        .parse()
                        .with_context(|| format!("the target reports version {product}"))?;
                    crate::outln!("validating against the target's own version: {release} (product version {product})");
                    release
                }
            };
            (CliTarget::Server(Box::new(server)), Some(release))
        }
        None => {
            let release = match &options.target_version {
                Some(v) => Some(given_version(v)?),
                None => {
                    crate::outln!("{NO_VERSION}");
                    None
                }
            };
            crate::outln!(
                "script-only mode: no --target, nothing is executed; the T-SQL goes to {}",
                script_path.display()
            );
            let script = ScriptTarget::new(
                options.dialect,
                release,
                script_path.clone(),
                options
                    .paths
                    .clone()
                    .unwrap_or_else(TargetPaths::linux_default),
            );
            for name in store.databases()? {
                if let Some(m) = store.get_migration(&name).await? {
                    match m.record.state {
                        MigrationState::Succeeded => script.assume_database(&name, "ONLINE"),
                        MigrationState::Cancelled => {}
                        _ if !m.record.chain.is_empty() => {
                            script.assume_database(&name, "RESTORING");
                        }
                        _ => {}
                    }
                }
            }
            (CliTarget::Script(script), release)
        }
    };
    crate::outln!("state file: {}", state_path.display());

    let location = match options.dialect {
        Dialect::Rds => SourceLocation::rds(None),
        Dialect::Native => SourceLocation::Disk {
            directory: root.display().to_string(),
        },
    };
    let simulated = matches!(target, CliTarget::Script(_));
    let clock = Arc::new(if simulated {
        Clock::simulated()
    } else {
        Clock::real()
    });
    let queue = Arc::new(LocalQueue::new(clock.clone()));
    let validator = Validator {
        reader: bucket.clone(),
        store: store.clone(),
        queue: queue.clone(),
        config: ValidateConfig {
            arm_by_upload: options.complete_by_upload,
            target: release,
            policy: options.policy,
            location: location.clone(),
        },
    };
    let worker = Worker {
        store: store.clone(),
        queue: queue.clone(),
        target,
        objects: bucket.clone(),
        config: RestoreConfig {
            dialect: options.dialect,
            location,
            policy: options.policy,
            check_version: release.is_some(),
            poll_interval: options.poll_interval,
            busy_retry: options.poll_interval.max(Duration::from_secs(1)),
            settle: None,
        },
    };

    let mut progress = Progress::default();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    let mut event = 0u64;
    let mut deliveries = 0u64;
    let mut unreadable: BTreeMap<String, String> = BTreeMap::new();
    // On a terminal, --watch keeps one live line of progress under the events, redrawn in place.
    let live = options.watch && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut live_shown = false;
    loop {
        if live_shown {
            crate::out!("\r\x1b[K");
            live_shown = false;
        }
        // New or changed files are new ObjectCreated events; what cannot be read is said once.
        let (objects, cannot) = bucket.contents()?;
        for (key, why) in cannot {
            if unreadable.insert(key.clone(), why.clone()).is_none() {
                crate::outln!("unreadable {}: {why}", crate::out::Shown(&key));
            }
        }
        for object in objects {
            let etag = object.etag.clone().unwrap_or_default();
            if seen.get(&object.key) == Some(&etag) {
                continue;
            }
            event += 1;
            match validator
                .validate(&object, &format!("local-event-{event}"), clock.now())
                .await
            {
                Ok(outcome) => {
                    seen.insert(object.key.clone(), etag);
                    progress.validated(&object.key, &outcome);
                }
                Err(e) if e.is_transient() => {
                    crate::outln!(
                        "retry      {}: {e:#} (tried again on the next scan)",
                        object.key
                    );
                }
                Err(e) => {
                    seen.insert(object.key.clone(), etag);
                    crate::outln!("error      {}: {e:#}", object.key);
                }
            }
        }
        // Deliver every message that is due.
        while let Some(delivery) = queue.take_due() {
            let migration = delivery.message.migration().to_owned();
            // Every delivery is its own invocation, as a Lambda's would be.
            deliveries += 1;
            let invocation = format!("bakdrop-{}-{deliveries}", std::process::id());
            let attempt = Attempt {
                message_id: &delivery.id,
                invocation: &invocation,
            };
            match worker.handle(&delivery.message, attempt, clock.now()).await {
                Ok(outcome) => {
                    progress.restored(store.as_ref(), &migration).await?;
                    progress.worked(&outcome);
                }
                Err(e) if e.is_transient() && delivery.attempts + 1 < MAX_DELIVERIES => {
                    crate::outln!("retry      {migration}: {e:#}");
                    queue.retry(delivery, options.poll_interval.max(Duration::from_secs(1)));
                }
                Err(e) => crate::outln!("error      {migration}: {e:#} (message dropped)"),
            }
        }
        let next = queue.until_next();
        if next.is_none() && !options.watch {
            break;
        }
        let wait = match next {
            Some(d) if simulated && !options.watch => {
                clock.wait(d).await;
                continue;
            }
            Some(d) => d.min(Duration::from_secs(1)),
            None => Duration::from_secs(1),
        };
        if live {
            crate::out!("{}", live_line(store.as_ref()).await?);
            live_shown = true;
        }
        if options.watch {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stop => {
                    crate::outln!("stopped (Ctrl-C)");
                    break;
                }
            }
        } else {
            clock.wait(wait).await;
        }
    }

    let stopped = summary_text(store.as_ref()).await?;
    if !unreadable.is_empty() {
        crate::outln!(
            "\n{} file(s) could not be read: {}",
            unreadable.len(),
            unreadable
                .keys()
                .map(|k| crate::out::Shown(k).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if simulated && script_path.exists() {
        crate::outln!(
            "\nscript-only mode: the T-SQL above was NOT executed; it is in {}",
            script_path.display()
        );
    }
    Ok(if stopped || !unreadable.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn given_version(text: &str) -> anyhow::Result<SqlServerRelease> {
    let release: SqlServerRelease = text.parse().context("--target-version")?;
    crate::outln!("validating against --target-version {release}");
    Ok(release)
}

/// What a run or plan without a target version says, once.
pub const NO_VERSION: &str = "no target version: the version check is skipped (each backup is taken at its own version); give --target-version (e.g. 2022), or --target to use the server's own";

/// Progress lines, one per event.
#[derive(Debug, Default)]
struct Progress {
    announced: BTreeSet<String>,
}

impl Progress {
    fn validated(&self, key: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Queued { .. } => crate::outln!("validated  {key}: queued for restore"),
            Outcome::Rejected { reason, .. } => crate::outln!("rejected   {key}: {reason}"),
            Outcome::Duplicate { state, .. } => {
                crate::outln!("unchanged  {key}: already handled ({state})");
            }
            Outcome::Armed {
                last_backup: Some(last),
                ..
            } => crate::outln!("armed      {key}: Complete runs once {last} is restored"),
            Outcome::Armed { .. } => {
                crate::outln!("disarmed   {key}: the armed Complete is cancelled")
            }
            Outcome::Ignored { reason } => {
                crate::outln!("ignored    {key}: {}", reason.message);
            }
        }
    }

    fn worked(&self, outcome: &WorkOutcome) {
        match outcome {
            WorkOutcome::Submitted { migration, task } => {
                crate::outln!("submitted  {migration}: {task}");
            }
            WorkOutcome::Running { migration, percent } => match percent {
                Some(p) => crate::outln!("restoring  {migration}: {p:.0}% complete"),
                None => crate::outln!("restoring  {migration}"),
            },
            WorkOutcome::Deferred { migration } => {
                crate::outln!("busy       {migration}: the target runs as many restores as it allows; planning again later");
            }
            WorkOutcome::Failed { migration, reason } => {
                crate::outln!("FAILED     {migration}: {reason}");
            }
            WorkOutcome::Idle { .. } | WorkOutcome::Stale { .. } => {}
        }
    }

    async fn restored(&mut self, store: &JsonFileStore, migration: &str) -> anyhow::Result<()> {
        for file in store.list_files(migration).await? {
            let f = file.record;
            if f.state == FileState::Restored && self.announced.insert(f.file_id.clone()) {
                let detail = f
                    .header
                    .as_ref()
                    .map(|h| format!(" ({}, LSN {} → {})", h.backup_type, h.first_lsn, h.last_lsn))
                    .unwrap_or_default();
                crate::outln!("restored   {}{detail}", f.object.key);
            }
        }
        Ok(())
    }
}

/// One line of progress for a terminal: each migration's state, the restore in flight with its
/// percent, and what comes next.
async fn live_line(store: &JsonFileStore) -> anyhow::Result<String> {
    let mut parts = Vec::new();
    for name in store.databases()? {
        if name.is_empty() {
            continue;
        }
        let migration = store.get_migration(&name).await?.map(|v| v.record);
        let files: Vec<_> = store
            .list_files(&name)
            .await?
            .into_iter()
            .map(|v| v.record)
            .collect();
        let r = report::build(&name, migration.as_ref(), &files);
        let state = r.state.map_or("rejected".to_owned(), |s| s.to_string());
        parts.push(match (&r.restoring, r.percent_complete) {
            (Some(file), Some(p)) => format!("{name}: restoring {file} {p:.0}%"),
            (Some(file), None) => format!("{name}: restoring {file}"),
            _ => format!("{name}: {state}, next {}", r.next),
        });
    }
    let mut line = format!("[watching, Ctrl-C to stop] {}", parts.join(" · "));
    if line.chars().count() > 200 {
        line = line.chars().take(199).collect::<String>() + "…";
    }
    Ok(crate::out::Shown(&line).to_string())
}

/// Prints the final summary of every migration in the store; true when a file was rejected or
/// a migration cannot proceed: it failed, has no full backup restored, or a file waits for
/// something that has not arrived (a gap, missing stripes) rather than for its turn.
async fn summary_text(store: &JsonFileStore) -> anyhow::Result<bool> {
    let mut stopped = false;
    crate::outln!("\nSummary");
    for name in store.databases()? {
        let migration = store.get_migration(&name).await?.map(|v| v.record);
        let files: Vec<_> = store
            .list_files(&name)
            .await?
            .into_iter()
            .map(|v| v.record)
            .collect();
        let report = report::build(&name, migration.as_ref(), &files);
        stopped |= cannot_proceed(migration.as_ref(), &files);
        crate::out!(
            "{}",
            crate::status_text::report_text(&report, &files, "files")
        );
    }
    Ok(stopped)
}

/// True when a file was rejected, the migration failed, nothing is restored, or a file waits
/// for a backup that has not arrived.
fn cannot_proceed(
    migration: Option<&bakdrop_core::model::status::MigrationRecord>,
    files: &[bakdrop_core::model::status::FileRecord],
) -> bool {
    let blocked = |f: &bakdrop_core::model::status::FileRecord| {
        f.state == FileState::Waiting && f.reason.as_ref().is_none_or(|r| r.code != "Queued")
    };
    files
        .iter()
        .any(|f| matches!(f.state, FileState::Rejected | FileState::Failed) || blocked(f))
        || migration.is_some_and(|m| {
            matches!(
                m.state,
                MigrationState::Failed | MigrationState::AwaitingFull
            )
        })
}
