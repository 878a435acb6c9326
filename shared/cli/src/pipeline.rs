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
use bakdrop_mssql::settings::TargetLogin;
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
    let place = Place::open(&options)?;
    let login = options
        .target
        .as_deref()
        .map(parse_connection)
        .transpose()?;
    keep_to_one_target(&place.store, remembered(&options, login.as_ref()))?;
    let (target, release) = match &login {
        Some(login) => server_target(&options, login).await?,
        None => script_target(&options, &place).await?,
    };
    crate::outln!("state file: {}", place.state_path.display());
    let pipeline = Pipeline::new(place, target, release, &options);
    let unreadable = pipeline.drive(&options).await?;
    pipeline.finish(&unreadable).await
}

/// Where a run keeps things: the folder (the bucket), the state file and, in script-only mode,
/// the script.
struct Place {
    bucket: LocalBucket,
    root: PathBuf,
    state_path: PathBuf,
    script_path: PathBuf,
    store: Arc<JsonFileStore>,
}

impl Place {
    /// Opens the folder; the state file defaults to one inside it.
    fn open(options: &RunOptions) -> anyhow::Result<Place> {
        let bucket = LocalBucket::open(&options.dir)?;
        let root = bucket.root().to_path_buf();
        let state_path = options
            .state
            .clone()
            .unwrap_or_else(|| crate::adapters::store::default_state(&root));
        Ok(Place {
            script_path: root.join(".bakdrop").join("restore.sql"),
            store: Arc::new(JsonFileStore::new(&state_path)),
            bucket,
            root,
            state_path,
        })
    }
}

/// The target this run names, as the state file remembers it.
fn remembered(options: &RunOptions, login: Option<&TargetLogin>) -> RememberedTarget {
    match (login, &options.target) {
        (Some(login), Some(connection)) => RememberedTarget::Server {
            host: login.host.clone(),
            port: login.port,
            user: login.username.clone(),
            tls: login.tls.to_string(),
            dialect: options.dialect,
            password_from: password_source(connection),
        },
        _ => RememberedTarget::Script {
            dialect: options.dialect,
        },
    }
}

/// Refuses a target other than the one the state file's migrations ran against, then remembers
/// this one: one folder's migrations live on one target, and a run elsewhere would record
/// restores that are not where the first ones are.
fn keep_to_one_target(store: &JsonFileStore, wanted: RememberedTarget) -> anyhow::Result<()> {
    if let Some(before) = store.remembered_target()? {
        if !before.same_place(&wanted) {
            anyhow::bail!(
                "the migrations of this state file were run against {before}; this run names {wanted}. Run against the same target, or give another --state for another target"
            );
        }
    }
    store.remember_target(wanted)?;
    Ok(())
}

/// The SQL Server named by `--target`, and the version to validate against: `--target-version`,
/// else the server's own. Says both.
async fn server_target(
    options: &RunOptions,
    login: &TargetLogin,
) -> anyhow::Result<(CliTarget, Option<SqlServerRelease>)> {
    crate::outln!(
        "target: {}:{} as {} ({} dialect, tls {:?})",
        login.host,
        login.port,
        login.username,
        options.dialect,
        login.tls
    );
    let server =
        TiberiusTarget::new(login.config(), options.dialect).with_paths(options.paths.clone());
    let release = match &options.target_version {
        Some(v) => given_version(v)?,
        None => server_version(&server).await?,
    };
    Ok((CliTarget::Server(Box::new(server)), Some(release)))
}

/// The target's own version, said.
async fn server_version(server: &TiberiusTarget) -> anyhow::Result<SqlServerRelease> {
    let product = server
        .product_version()
        .await
        .context("cannot read the target's version")?;
    let release: SqlServerRelease = product
        .parse()
        .with_context(|| format!("the target reports version {product}"))?;
    crate::outln!(
        "validating against the target's own version: {release} (product version {product})"
    );
    Ok(release)
}

/// Script-only mode: the T-SQL goes to the script, nothing is executed; the version is
/// `--target-version` or none. Says both.
async fn script_target(
    options: &RunOptions,
    place: &Place,
) -> anyhow::Result<(CliTarget, Option<SqlServerRelease>)> {
    let release = match &options.target_version {
        Some(v) => Some(given_version(v)?),
        None => {
            crate::outln!("{NO_VERSION}");
            None
        }
    };
    crate::outln!(
        "script-only mode: no --target, nothing is executed; the T-SQL goes to {}",
        place.script_path.display()
    );
    let script = ScriptTarget::new(
        options.dialect,
        release,
        place.script_path.clone(),
        options
            .paths
            .clone()
            .unwrap_or_else(TargetPaths::linux_default),
    );
    assume_databases(&script, &place.store).await?;
    Ok((CliTarget::Script(script), release))
}

/// Tells the script-only target the state of the databases earlier runs restored, as a server
/// would know them: a succeeded migration's online, one with a chain restoring.
async fn assume_databases(script: &ScriptTarget, store: &JsonFileStore) -> anyhow::Result<()> {
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
    Ok(())
}

/// The validator and the restore worker over one store and one in-memory queue, on one clock
/// (simulated in script-only mode, where nothing takes time).
struct Pipeline {
    place: Place,
    queue: Arc<LocalQueue>,
    clock: Arc<Clock>,
    simulated: bool,
    validator: Validator<LocalBucket, Arc<JsonFileStore>, Arc<LocalQueue>>,
    worker: Worker<Arc<JsonFileStore>, Arc<LocalQueue>, CliTarget, LocalBucket>,
}

/// What the event loop has met so far.
#[derive(Debug, Default)]
struct Events {
    progress: Progress,
    /// Each key's ETag when last handled: a new or changed one is a new event.
    seen: BTreeMap<String, String>,
    /// Events numbered so far.
    event: u64,
    /// Deliveries made so far, each its own invocation.
    deliveries: u64,
    /// The entries that cannot be read, and why (each said once).
    unreadable: BTreeMap<String, String>,
}

impl Pipeline {
    /// Wires the validator and the worker to the place and the target.
    fn new(
        place: Place,
        target: CliTarget,
        release: Option<SqlServerRelease>,
        options: &RunOptions,
    ) -> Pipeline {
        let location = match options.dialect {
            Dialect::Rds => SourceLocation::rds(None),
            Dialect::Native => SourceLocation::Disk {
                directory: place.root.display().to_string(),
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
            reader: place.bucket.clone(),
            store: place.store.clone(),
            queue: queue.clone(),
            config: ValidateConfig {
                arm_by_upload: options.complete_by_upload,
                target: release,
                policy: options.policy,
                location: location.clone(),
            },
        };
        let worker = Worker {
            store: place.store.clone(),
            queue: queue.clone(),
            target,
            objects: place.bucket.clone(),
            config: RestoreConfig {
                dialect: options.dialect,
                location,
                policy: options.policy,
                check_version: release.is_some(),
                poll_interval: options.poll_interval,
                busy_retry: retry_delay(options),
                settle: None,
            },
        };
        Pipeline {
            place,
            queue,
            clock,
            simulated,
            validator,
            worker,
        }
    }

    /// The event loop: validates new or changed files, delivers what is due, and waits for the
    /// next due message (or, with `--watch`, the next scan) until nothing is left or Ctrl-C.
    /// Returns the entries that could not be read.
    async fn drive(&self, options: &RunOptions) -> anyhow::Result<BTreeMap<String, String>> {
        let mut events = Events::default();
        let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
        // On a terminal, --watch keeps one live line of progress under the events, redrawn in
        // place.
        let live = options.watch && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let mut live_shown = false;
        loop {
            if live_shown {
                crate::out!("\r\x1b[K");
                live_shown = false;
            }
            self.validate_new(&mut events).await?;
            self.deliver_due(&mut events, options).await?;
            let next = self.queue.until_next();
            if next.is_none() && !options.watch {
                break;
            }
            let wait = match next {
                Some(d) if self.simulated && !options.watch => {
                    self.clock.wait(d).await;
                    continue;
                }
                Some(d) => d.min(Duration::from_secs(1)),
                None => Duration::from_secs(1),
            };
            if live {
                crate::out!("{}", live_line(self.place.store.as_ref()).await?);
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
                self.clock.wait(wait).await;
            }
        }
        Ok(events.unreadable)
    }

    /// Validates every new or changed file of the folder, each an `ObjectCreated` event; says
    /// once what cannot be read. A file whose validation failed for a moment is tried again on
    /// the next scan.
    async fn validate_new(&self, events: &mut Events) -> anyhow::Result<()> {
        let (objects, cannot) = self.place.bucket.contents()?;
        for (key, why) in cannot {
            if events.unreadable.insert(key.clone(), why.clone()).is_none() {
                crate::outln!("unreadable {}: {why}", crate::out::Shown(&key));
            }
        }
        for object in objects {
            let etag = object.etag.clone().unwrap_or_default();
            if events.seen.get(&object.key) == Some(&etag) {
                continue;
            }
            events.event += 1;
            let request = format!("local-event-{}", events.event);
            match self
                .validator
                .validate(&object, &request, self.clock.now())
                .await
            {
                Ok(outcome) => {
                    events.seen.insert(object.key.clone(), etag);
                    events.progress.validated(&object.key, &outcome);
                }
                Err(e) if e.is_transient() => {
                    crate::outln!(
                        "retry      {}: {e:#} (tried again on the next scan)",
                        object.key
                    );
                }
                Err(e) => {
                    events.seen.insert(object.key.clone(), etag);
                    crate::outln!("error      {}: {e:#}", object.key);
                }
            }
        }
        Ok(())
    }

    /// Hands every message that is due to the worker, each delivery its own invocation as a
    /// Lambda's would be; a transient failure is delivered again later, up to
    /// [`MAX_DELIVERIES`].
    async fn deliver_due(&self, events: &mut Events, options: &RunOptions) -> anyhow::Result<()> {
        while let Some(delivery) = self.queue.take_due() {
            let migration = delivery.message.migration().to_owned();
            events.deliveries += 1;
            let invocation = format!("bakdrop-{}-{}", std::process::id(), events.deliveries);
            let attempt = Attempt {
                message_id: &delivery.id,
                invocation: &invocation,
            };
            match self
                .worker
                .handle(&delivery.message, attempt, self.clock.now())
                .await
            {
                Ok(outcome) => {
                    let store = self.place.store.as_ref();
                    events.progress.restored(store, &migration).await?;
                    events.progress.worked(&outcome);
                }
                Err(e) if e.is_transient() && delivery.attempts + 1 < MAX_DELIVERIES => {
                    crate::outln!("retry      {migration}: {e:#}");
                    self.queue.retry(delivery, retry_delay(options));
                }
                Err(e) => crate::outln!("error      {migration}: {e:#} (message dropped)"),
            }
        }
        Ok(())
    }

    /// Prints the summary, the entries that could not be read and, in script-only mode, where
    /// the T-SQL is; exit status 1 when something cannot proceed or could not be read.
    async fn finish(&self, unreadable: &BTreeMap<String, String>) -> anyhow::Result<ExitCode> {
        let stopped = summary_text(self.place.store.as_ref()).await?;
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
        if self.simulated && self.place.script_path.exists() {
            crate::outln!(
                "\nscript-only mode: the T-SQL above was NOT executed; it is in {}",
                self.place.script_path.display()
            );
        }
        Ok(if stopped || !unreadable.is_empty() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// How long a busy target or a transiently failed delivery waits: the poll interval, at least
/// a second.
fn retry_delay(options: &RunOptions) -> Duration {
    options.poll_interval.max(Duration::from_secs(1))
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
