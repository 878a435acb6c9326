//! `bakdrop status`, `complete` and `cancel` on the local state file that `bakdrop run` keeps,
//! through the same core code as the migration-status and complete-migration functions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bakdrop_core::cutover::{self, CompleteRequest, CutoverError};
use bakdrop_core::model::status::{FileRecord, MigrationState};
use bakdrop_core::model::version::RELEASES;
use bakdrop_core::ports::{RestoreTarget, StatusStore};
use bakdrop_core::report::{self, StatusReport};
use bakdrop_core::tsql::Dialect;
use bakdrop_mssql::TiberiusTarget;

use crate::adapters::store::{JsonFileStore, RememberedTarget};
use crate::adapters::target::{parse_connection, CliTarget, ScriptTarget};
use crate::status_text::report_text;

/// Where the state is: `--state FILE`, else `DIR/.bakdrop/status.json` for `--dir DIR`
/// (default: the current folder).
pub fn state_file(state: Option<PathBuf>, dir: Option<PathBuf>) -> PathBuf {
    state.unwrap_or_else(|| {
        crate::adapters::store::default_state(&dir.unwrap_or_else(|| ".".into()))
    })
}

fn open(path: &Path) -> anyhow::Result<JsonFileStore> {
    let store = JsonFileStore::new(path);
    if !store.exists() {
        anyhow::bail!(
            "no state file at {}: run `bakdrop run DIR` first, or pass --state FILE / --dir DIR",
            path.display()
        );
    }
    Ok(store)
}

/// Which files a status shows, besides the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// Every file (the local state file holds them all in memory anyway).
    All,
    /// The files still in play; the report lists the latest of the others (a status table may
    /// hold thousands of a migration's files).
    InPlay,
}

async fn report_of<S: StatusStore>(
    store: &S,
    name: &str,
    shown: Shown,
) -> anyhow::Result<Option<(StatusReport, Vec<FileRecord>)>> {
    if shown == Shown::InPlay {
        let Some(report) = bakdrop_core::files::report(store, name).await? else {
            return Ok(None);
        };
        let migration = store.get_migration(name).await?.map(|v| v.record);
        let files = bakdrop_core::files::in_play(store, name, migration.as_ref())
            .await?
            .into_iter()
            .map(|v| v.record)
            .collect();
        return Ok(Some((report, files)));
    }
    let migration = store.get_migration(name).await?.map(|v| v.record);
    let files: Vec<FileRecord> = store
        .list_files(name)
        .await?
        .into_iter()
        .map(|v| v.record)
        .collect();
    if migration.is_none() && files.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        report::build(name, migration.as_ref(), &files),
        files,
    )))
}

/// `bakdrop status`: exit status 1 when the named database is unknown.
///
/// # Errors
/// When the state file cannot be read.
pub async fn status(
    path: &Path,
    database: Option<&str>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open(path)?;
    let names = match database {
        Some(db) => vec![db.to_owned()],
        None => store.databases()?,
    };
    print_status(&store, database, &names, as_json, Shown::All).await
}

/// `bakdrop status --watch`: the status again every `every`, until Ctrl-C. On a terminal the
/// screen is redrawn in place (percent complete of the restore in flight, what comes next);
/// otherwise a status is printed again only when it changed.
///
/// # Errors
/// When the state file cannot be read.
pub async fn status_watch(
    path: &Path,
    database: Option<&str>,
    every: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let store = open(path)?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    let mut last = String::new();
    loop {
        let names = match database {
            Some(db) => vec![db.to_owned()],
            None => store.databases()?,
        };
        let mut text = String::new();
        let mut document = Vec::new();
        for name in &names {
            match report_of(&store, name, Shown::All).await? {
                Some((r, files)) => {
                    document.push(serde_json::to_string(&r)?);
                    text.push_str(&report_text(&r, &files, "files"));
                }
                None => {
                    eprintln!("bakdrop: no migration and no uploaded file for database {name:?}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
        let document = document.join("\n");
        if terminal {
            crate::out!(
                "\x1b[2J\x1b[H{text}[watching {}; Ctrl-C to stop]\n",
                path.display()
            );
        } else if document != last {
            crate::out!("{text}");
        }
        last = document;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `bakdrop status --table T`: the status table of a deployed stack (or of the local AWS
/// endpoint, with `AWS_ENDPOINT_URL`), read through the AWS SDK with the caller's credentials.
///
/// # Errors
/// When the table cannot be read.
pub async fn status_in_table(
    table: &str,
    database: Option<&str>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let store = table_store(table).await;
    let names = match database {
        Some(db) => vec![db.to_owned()],
        None => {
            let mut names = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store.list_migrations(after.as_deref(), 100).await?;
                let done = page.len() < 100;
                after = page.last().map(|m| m.database.to_string());
                names.extend(page.into_iter().map(|m| m.database.to_string()));
                if done {
                    break;
                }
            }
            names
        }
    };
    print_status(&store, database, &names, as_json, Shown::InPlay).await
}

/// The DynamoDB status table `table`.
pub async fn table_store(table: &str) -> bakdrop_aws::dynamo::DynamoStatusStore {
    let sdk = bakdrop_aws::config::load().await;
    bakdrop_aws::dynamo::DynamoStatusStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
}

async fn print_status<S: StatusStore>(
    store: &S,
    database: Option<&str>,
    names: &[String],
    as_json: bool,
    shown: Shown,
) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for name in names {
        match report_of(store, name, shown).await? {
            Some(r) => reports.push(r),
            None => {
                eprintln!("bakdrop: no migration and no uploaded file for database {name:?}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    if as_json {
        let value = match (database, reports.as_slice()) {
            (Some(_), [(one, _)]) => serde_json::to_value(one)?,
            _ => serde_json::to_value(reports.iter().map(|(r, _)| r).collect::<Vec<_>>())?,
        };
        crate::outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let heading = match shown {
            Shown::All => "files",
            Shown::InPlay => "files in play",
        };
        for (r, files) in &reports {
            crate::out!("{}", report_text(r, files, heading));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Which target Complete and Cancel talk to: the one given, else the one `bakdrop run` recorded.
#[derive(Debug)]
pub struct TargetChoice {
    pub connection: Option<String>,
    pub dialect: Option<Dialect>,
}

async fn target_for(
    choice: &TargetChoice,
    store: &JsonFileStore,
    database: &str,
) -> anyhow::Result<CliTarget> {
    let remembered = store.remembered_target()?;
    let dialect = match (choice.dialect, remembered.as_ref().map(RememberedTarget::dialect)) {
        (Some(given), Some(recorded)) if given != recorded => anyhow::bail!(
            "this folder was migrated with the {recorded} dialect; --dialect {given} contradicts it (nothing was changed)"
        ),
        (Some(given), _) => given,
        (None, Some(recorded)) => recorded,
        (None, None) => Dialect::Rds,
    };
    let connection = match (&choice.connection, &remembered) {
        (Some(given), Some(RememberedTarget::Server { host, port, .. })) => {
            let login = parse_connection(given)?;
            if !login.host.eq_ignore_ascii_case(host) || login.port != *port {
                anyhow::bail!(
                    "this folder's migrations are on {host}:{port}; --target names {}:{} (nothing was changed)",
                    login.host,
                    login.port
                );
            }
            Some(given.clone())
        }
        (Some(given), _) => Some(given.clone()),
        (
            None,
            Some(RememberedTarget::Server {
                host,
                port,
                user,
                tls,
                password_from: Some(source),
                ..
            }),
        ) => Some(format!(
            "host={host};port={port};user={user};tls={tls};{source}"
        )),
        (
            None,
            Some(
                recorded @ RememberedTarget::Server {
                    host, port, user, ..
                },
            ),
        ) => {
            anyhow::bail!(
                "this folder's migrations are on {recorded}, whose password bakdrop does not keep: give --target 'host={host};port={port};user={user};password-env=NAME' (or password=… / password-file=PATH) to act there (nothing was changed)"
            )
        }
        (None, _) => None,
    };
    if let Some(connection) = connection {
        let login = parse_connection(&connection)?;
        return Ok(CliTarget::Server(Box::new(TiberiusTarget::new(
            login.config(),
            dialect,
        ))));
    }
    let dir = store
        .path()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let newest = RELEASES
        .last()
        .copied()
        .context("no SQL Server release is known")?;
    let script = ScriptTarget::new(
        dialect,
        Some(newest),
        dir.join("restore.sql"),
        bakdrop_core::tsql::TargetPaths::linux_default(),
    );
    if let Some(m) = store.get_migration(database).await? {
        match m.record.state {
            MigrationState::Succeeded => script.assume_database(database, "ONLINE"),
            _ if !m.record.chain.is_empty() => script.assume_database(database, "RESTORING"),
            _ => {}
        }
    }
    crate::outln!(
        "script-only mode: no --target; the T-SQL is appended to {} (NOT EXECUTED)",
        dir.join("restore.sql").display()
    );
    Ok(CliTarget::Script(script))
}

fn refused(e: &CutoverError) -> ExitCode {
    eprintln!("bakdrop: refused ({}): {e}", e.error_type());
    ExitCode::from(1)
}

/// `bakdrop complete`.
///
/// # Errors
/// When the state file or the target cannot be used.
pub async fn complete(
    path: &Path,
    request: CompleteRequest,
    choice: &TargetChoice,
) -> anyhow::Result<ExitCode> {
    let store = open(path)?;
    let target = target_for(choice, &store, &request.database).await?;
    match complete_and_wait(&store, &target, &request).await {
        Ok(state) => {
            crate::outln!("{}: {state}", request.database);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(refused(&e)),
    }
}

/// How often the command line looks at a task bringing a database online.
const FINISH_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// Complete, then, while the target brings the database online in a task of its own (RDS
/// `FINISH_RESTORE`, a native Agent job running `WITH RECOVERY`), follow that task until it ends: a person at a terminal waits for the
/// outcome where a Lambda would queue the polls.
async fn complete_and_wait<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    request: &CompleteRequest,
) -> Result<MigrationState, CutoverError> {
    let mut state =
        cutover::complete(store, target, request, time::OffsetDateTime::now_utc()).await?;
    while state == MigrationState::Completing {
        crate::outln!(
            "{}: Completing — the target is bringing the database online; looking again in {} s",
            request.database,
            FINISH_POLL.as_secs()
        );
        tokio::time::sleep(FINISH_POLL).await;
        state = cutover::follow_finish(
            store,
            target,
            &request.database,
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    }
    Ok(state)
}

/// `bakdrop cancel`.
///
/// # Errors
/// When the state file or the target cannot be used.
pub async fn cancel(
    path: &Path,
    database: &str,
    choice: &TargetChoice,
) -> anyhow::Result<ExitCode> {
    let store = open(path)?;
    let target = target_for(choice, &store, database).await?;
    match cutover::cancel(&store, &target, database, time::OffsetDateTime::now_utc()).await {
        Ok(state) => {
            crate::outln!("{database}: {state}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(refused(&e)),
    }
}

/// `bakdrop reset`.
///
/// # Errors
/// When the state file cannot be used.
pub async fn reset(path: &Path, database: &str) -> anyhow::Result<ExitCode> {
    let store = open(path)?;
    match cutover::reset(&store, database, time::OffsetDateTime::now_utc()).await {
        Ok(state) => {
            crate::outln!("{database}: {state}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(refused(&e)),
    }
}

/// What `bakdrop complete|cancel|reset` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutoverAction {
    Complete,
    /// Complete by itself once `last_backup` is restored.
    Arm,
    /// Cancel an armed Complete.
    Disarm,
    Cancel,
    Reset,
}

impl std::fmt::Display for CutoverAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CutoverAction::Complete => "Complete",
            CutoverAction::Arm => "Arm",
            CutoverAction::Disarm => "Disarm",
            CutoverAction::Cancel => "Cancel",
            CutoverAction::Reset => "Reset",
        })
    }
}

/// `bakdrop complete|cancel|reset --table T [--target CONN]`: the same Complete / Cancel / Reset
/// as the complete-migration function, on a deployed stack's status table and (but for Reset,
/// which only touches the table) its target.
///
/// # Errors
/// When the table or the target cannot be used.
pub async fn cutover_in_table(
    table: &str,
    connection: Option<&str>,
    dialect: Dialect,
    request: CompleteRequest,
    action: CutoverAction,
) -> anyhow::Result<ExitCode> {
    let store = table_store(table).await;
    let now = time::OffsetDateTime::now_utc();
    let target = match connection {
        Some(connection) => Some(TiberiusTarget::new(
            parse_connection(connection)?.config(),
            dialect,
        )),
        None => None,
    };
    let result = match (action, &target) {
        (CutoverAction::Reset, _) => cutover::reset(&store, &request.database, now).await,
        (CutoverAction::Disarm, _) => cutover::disarm(&store, &request.database, now).await,
        (CutoverAction::Arm, target) => arm_and_fire(&store, target.as_ref(), &request).await,
        (CutoverAction::Cancel, Some(target)) => {
            cutover::cancel(&store, target, &request.database, now).await
        }
        (CutoverAction::Complete, Some(target)) => {
            complete_and_wait(&store, target, &request).await
        }
        (_, None) => anyhow::bail!("{action} needs --target"),
    };
    match result {
        Ok(state) => {
            crate::outln!("{}: {state}", request.database);
            if matches!(action, CutoverAction::Arm | CutoverAction::Disarm) {
                print_headline(&store, &request.database).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(refused(&e)),
    }
}

/// The migration's status line (what an armed Complete waits for).
async fn print_headline<S: StatusStore>(store: &S, database: &str) -> anyhow::Result<()> {
    if let Some(report) = bakdrop_core::files::report(store, database).await? {
        crate::outln!("{}", crate::out::Shown(&report.summary));
    }
    Ok(())
}

/// Arms Complete; when its backup is already the last one restored, runs it now on `target`
/// (and waits, as `complete` does). Without a target, a due arm is refused with what to add.
async fn arm_and_fire<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: Option<&T>,
    request: &CompleteRequest,
) -> Result<MigrationState, CutoverError> {
    let now = time::OffsetDateTime::now_utc();
    let armed = cutover::arm(
        store,
        &request.database,
        request.last_backup.as_deref().unwrap_or_default(),
        request.require_tail_log,
        "cli",
        now,
    )
    .await?;
    if !cutover::armed_due(&armed) {
        return Ok(armed.state);
    }
    let Some(target) = target else {
        return Err(CutoverError::Refused {
            code: "TargetNeeded",
            message: format!(
                "Complete of {} is armed and due now (its backup is the last one restored): give --target to run it, or invoke the complete-migration function",
                request.database
            ),
        });
    };
    let mut state = cutover::fire_armed(store, target, &request.database, now)
        .await?
        .unwrap_or(armed.state);
    while state == MigrationState::Completing {
        tokio::time::sleep(FINISH_POLL).await;
        state = cutover::follow_finish(
            store,
            target,
            &request.database,
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    }
    Ok(state)
}

/// `bakdrop complete --when-restored FILE`: arms Complete on the local state file; when the
/// file is already the last one restored, Complete runs now where the folder was migrated.
///
/// # Errors
/// When the state file or the target cannot be used.
pub async fn arm(
    path: &Path,
    request: CompleteRequest,
    choice: &TargetChoice,
) -> anyhow::Result<ExitCode> {
    let store = open(path)?;
    let now = time::OffsetDateTime::now_utc();
    let armed = match cutover::arm(
        &store,
        &request.database,
        request.last_backup.as_deref().unwrap_or_default(),
        request.require_tail_log,
        "cli",
        now,
    )
    .await
    {
        Ok(armed) => armed,
        Err(e) => return Ok(refused(&e)),
    };
    let state = if cutover::armed_due(&armed) {
        let target = target_for(choice, &store, &request.database).await?;
        match arm_and_fire(&store, Some(&target), &request).await {
            Ok(state) => state,
            Err(e) => return Ok(refused(&e)),
        }
    } else {
        armed.state
    };
    crate::outln!("{}: {state}", request.database);
    print_headline(&store, &request.database).await?;
    Ok(ExitCode::SUCCESS)
}

/// `bakdrop complete --disarm`.
///
/// # Errors
/// When the state file cannot be used.
pub async fn disarm(path: &Path, database: &str) -> anyhow::Result<ExitCode> {
    let store = open(path)?;
    match cutover::disarm(&store, database, time::OffsetDateTime::now_utc()).await {
        Ok(state) => {
            crate::outln!("{database}: {state}");
            print_headline(&store, database).await?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(refused(&e)),
    }
}
