//! What each subcommand does: the parsed command line handed to the module that carries it out.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bakdrop_core::cutover::CompleteRequest;
use bakdrop_core::tsql::Dialect;

use crate::args::{Command, CompleteArgs, PlanArgs, RunArgs, StateArgs, TargetArgs};
use crate::manage::{self, CutoverAction};
use crate::{inspect, invoke, pipeline, planning};

/// Runs one command: `inspect` as it is, the others on a single-threaded runtime.
///
/// # Errors
/// When the command cannot run at all (exit status 2).
pub fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Inspect {
            paths,
            json,
            target,
            policy,
        } => inspect::run(&paths, json, target.as_deref(), &policy),
        other => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run_async(other)),
    }
}

/// The commands that run on the runtime, each to its own group.
async fn run_async(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => pipeline::run(run_options(args)).await,
        Command::Plan(args) => plan(args).await,
        Command::Status {
            database,
            json,
            watch,
            state,
        } => status(database.as_deref(), json, watch, state).await,
        Command::Complete(args) => complete(args).await,
        Command::Cancel {
            database,
            state,
            target,
        } => {
            cutover(
                plain_request(database),
                CutoverAction::Cancel,
                state,
                target,
            )
            .await
        }
        Command::Reset { database, state } => {
            let target = TargetArgs {
                target: None,
                dialect: None,
            };
            cutover(plain_request(database), CutoverAction::Reset, state, target).await
        }
        Command::Inspect { .. } => {
            anyhow::bail!("internal: synchronous command routed to the async runner")
        }
    }
}

/// `bakdrop run`'s options from its arguments.
fn run_options(args: RunArgs) -> pipeline::RunOptions {
    pipeline::RunOptions {
        complete_by_upload: args.complete_by_upload,
        paths: args.directories.given(),
        dir: args.dir,
        target: args.target,
        dialect: args.dialect,
        watch: args.watch,
        state: args.state,
        target_version: args.target_version,
        policy: args.policy,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
    }
}

/// `bakdrop plan`: the target version checked, then the plan.
async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let target_version = args
        .target_version
        .map(|v| v.parse().context("--target-version"))
        .transpose()?;
    let options = planning::PlanOptions {
        dialect: args.dialect,
        bucket: args.bucket,
        database: args.database,
        paths: args.directories.or_default(),
        target_version,
        policy: args.policy,
    };
    planning::run(&args.paths, &options, args.json).await
}

/// `bakdrop complete`: Complete now, arm it for a file, or disarm it.
async fn complete(args: CompleteArgs) -> anyhow::Result<ExitCode> {
    let action = match (&args.when_restored, args.disarm) {
        (Some(_), _) => CutoverAction::Arm,
        (None, true) => CutoverAction::Disarm,
        (None, false) => CutoverAction::Complete,
    };
    let request = CompleteRequest {
        database: args.database,
        last_backup: args.when_restored.or(args.last_backup),
        require_tail_log: args.require_tail_log,
    };
    cutover(request, action, args.state, args.target).await
}

/// The request of a cancel or reset: the database alone.
fn plain_request(database: String) -> CompleteRequest {
    CompleteRequest {
        database,
        last_backup: None,
        require_tail_log: false,
    }
}

/// `bakdrop status` from a stack's function, a stack's table or the local state file (once, or
/// followed with `--watch`).
async fn status(
    database: Option<&str>,
    json: bool,
    watch: bool,
    state: StateArgs,
) -> anyhow::Result<ExitCode> {
    match (state.function, state.table) {
        (None, None) if watch => {
            let path = manage::state_file(state.state, state.dir);
            manage::status_watch(&path, database, Duration::from_secs(2)).await
        }
        (Some(_), _) | (_, Some(_)) if watch => anyhow::bail!(
            "--watch follows the local state file (--dir/--state); for a deployed stack, run status again"
        ),
        (Some(function), _) => invoke::status(&function, database, json).await,
        (None, Some(table)) => manage::status_in_table(&table, database, json).await,
        (None, None) => {
            let path = manage::state_file(state.state, state.dir);
            manage::status(&path, database, json).await
        }
    }
}

/// Complete, Cancel or Reset through a stack's function, a stack's table (and a target), or the
/// local state file.
async fn cutover(
    request: CompleteRequest,
    action: CutoverAction,
    state: StateArgs,
    target: TargetArgs,
) -> anyhow::Result<ExitCode> {
    if let Some(function) = state.function {
        anyhow::ensure!(
            target.target.is_none(),
            "--function runs {action} where the stack runs it: drop --target"
        );
        return invoke::cutover(&function, &request, action).await;
    }
    if let Some(table) = state.table {
        let connection = match action {
            CutoverAction::Reset | CutoverAction::Disarm => None,
            // Only when the armed backup is already the last one restored.
            CutoverAction::Arm => target.target,
            _ => Some(target.target.with_context(|| {
                format!("--table needs --target: {action} runs on the target SQL Server")
            })?),
        };
        return manage::cutover_in_table(
            &table,
            connection.as_deref(),
            target.dialect.unwrap_or(Dialect::Rds),
            request,
            action,
        )
        .await;
    }
    let path = manage::state_file(state.state, state.dir);
    let choice = manage::TargetChoice {
        connection: target.target,
        dialect: target.dialect,
    };
    match action {
        CutoverAction::Complete => manage::complete(&path, request, &choice).await,
        CutoverAction::Arm => manage::arm(&path, request, &choice).await,
        CutoverAction::Disarm => manage::disarm(&path, &request.database).await,
        CutoverAction::Cancel => manage::cancel(&path, &request.database, &choice).await,
        CutoverAction::Reset => manage::reset(&path, &request.database).await,
    }
}
