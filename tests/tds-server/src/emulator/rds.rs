//! Amazon RDS native restore tasks: submitting (`rds_restore_database`, `rds_restore_log`,
//! `rds_finish_restore`), cancelling, and the task queue over simulated time (`[S3I]`: tasks share
//! one queue with at most two in progress; the rest stay CREATED until a slot frees).

use super::exec::Ctx;
use super::restore::{self, Dialect, RestoreRequest};
use super::state::{BackupKind, DatabaseState, Lifecycle, RdsTask, RestoreOp, State};
use super::tables;
use crate::protocol::{Column, Reply, ResultSet, ServerMessage, SqlType, Value};
use std::time::Duration;

/// An RDS procedure's refusal. RDS does not document the number; 50000 (RAISERROR's) is assumed.
pub fn rds_error(message: impl Into<String>) -> ServerMessage {
    ServerMessage::error(50000, message)
}

const RESERVED: &[&str] = &["master", "model", "msdb", "tempdb"];

/// System databases and `rdsadmin` cannot be restored or dropped (text assumed).
///
/// # Errors
/// 50000 for a reserved name.
pub fn check_db_name(name: &str) -> Result<(), ServerMessage> {
    let lower = name.to_lowercase();
    if name.is_empty() || RESERVED.contains(&lower.as_str()) || lower.starts_with("rdsadmin") {
        return Err(rds_error(format!(
            "Database name '{name}' is not valid for this operation."
        )));
    }
    Ok(())
}

/// Whether a task on `database` that ends WITH RECOVERY is still pending (a restore with
/// `@with_norecovery=0`, or `FINISH_RESTORE`).
fn recovery_pending(state: &State, database: &str) -> bool {
    state.rds_tasks.iter().any(|t| {
        t.lifecycle.is_active() && t.op.recovery && t.op.database.eq_ignore_ascii_case(database)
    })
}

fn stamp(state: &State, at: Duration) -> String {
    let dt = state.datetime(at);
    format!(
        "[{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}]",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Submits a restore task.
///
/// # Errors
/// 50000: a reserved database name, an empty ARN (`[RDS]` "S3 ARN prefix cannot be empty"), an ARN
/// outside the Region's partition, a database with a pending task WITH RECOVERY (`[RDS]` "You can't
/// submit a restore task for a database that already has a pending restore task with
/// RECOVERY"; texts assumed except the first documented one).
pub fn submit(
    ctx: &mut Ctx<'_>,
    req: RestoreRequest,
    task_type: &str,
    kms: Option<String>,
) -> Result<Reply, ServerMessage> {
    check_db_name(&req.database)?;
    let arn = req.sources.first().cloned().unwrap_or_default();
    if arn.is_empty() {
        return Err(rds_error("S3 ARN prefix cannot be empty"));
    }
    let prefix = format!("arn:{}:s3:::", ctx.state.server.arn_partition());
    if !arn.starts_with(&prefix) {
        return Err(rds_error(format!(
            "The S3 ARN '{arn}' is not valid in this Region. Specify an ARN of the form {prefix}bucket/key."
        )));
    }
    if recovery_pending(ctx.state, &req.database) {
        return Err(rds_error(format!(
            "Database '{}' already has a pending restore task with RECOVERY or a pending finish restore task. Wait for it to finish and try again.",
            req.database
        )));
    }
    let duration = ctx.state.restore_duration_of(&req.database, &req.sources);
    let op = restore::plan(ctx.state, &req, Dialect::Rds, duration);
    let now = ctx.state.now();
    let task = push_task(ctx.state, task_type, arn, kms, op);
    if !ctx.state.rds_submit_returns_row {
        return Ok(Reply::empty());
    }
    let mut rs = ResultSet::new(vec![
        Column::new("task_id", SqlType::Int),
        Column::new("task_type", SqlType::NVarChar),
        Column::new("lifecycle", SqlType::NVarChar),
        Column::new("created_at", SqlType::DateTime),
        Column::new("last_updated", SqlType::DateTime),
        Column::new("database_name", SqlType::NVarChar),
        Column::new("S3_object_arn", SqlType::NVarChar),
        Column::new("overwrite_s3_backup_file", SqlType::Int),
        Column::new("KMS_master_key_arn", SqlType::NVarChar),
        Column::new("task_progress", SqlType::Int),
        Column::new("task_info", SqlType::NVarChar),
    ]);
    rs.push(vec![
        Value::Int(task.task_id),
        Value::text(task.task_type.clone()),
        Value::text(task.lifecycle.as_str()),
        Value::DateTime(ctx.state.datetime(now)),
        Value::DateTime(ctx.state.datetime(now)),
        Value::text(task.op.database.clone()),
        Value::text(task.s3_object_arn.clone()),
        Value::Int(0),
        task.kms_master_key_arn
            .clone()
            .map_or(Value::Null, Value::text),
        Value::Int(0),
        Value::Null,
    ]);
    Ok(Reply::rows(rs))
}

fn push_task(
    state: &mut State,
    task_type: &str,
    arn: String,
    kms: Option<String>,
    op: RestoreOp,
) -> RdsTask {
    let now = state.now();
    let task_id = state.next_task_id;
    state.next_task_id += 1;
    let task = RdsTask {
        task_id,
        task_type: task_type.to_string(),
        lifecycle: Lifecycle::Created,
        percent: 0,
        task_info: String::new(),
        s3_object_arn: arn,
        kms_master_key_arn: kms,
        created_at: now,
        last_updated: now,
        started: false,
        op,
    };
    state.rds_tasks.push(task.clone());
    task
}

/// `rds_finish_restore`: starts a `FINISH_RESTORE` task; the database stays RESTORING until it
/// succeeds. No result set (RDS documents none).
///
/// # Errors
/// 911 missing database, 50000 while a task on it is pending (texts assumed), 3117 when it is
/// not RESTORING (assumed: the engine's text for a recovery of a database with nothing to roll
/// forward).
pub fn finish(ctx: &mut Ctx<'_>, db: &str) -> Result<Reply, ServerMessage> {
    check_db_name(db)?;
    let Some(state_now) = ctx.state.database(db).map(|d| d.state) else {
        return Err(ServerMessage::error(
            911,
            format!(
                "Database '{db}' does not exist. Make sure that the name is entered correctly."
            ),
        ));
    };
    if ctx
        .state
        .rds_tasks
        .iter()
        .any(|t| t.lifecycle.is_active() && t.op.database.eq_ignore_ascii_case(db))
    {
        return Err(rds_error(format!(
            "Database '{db}' has a pending restore or finish restore task. Wait for it to finish and try again."
        )));
    }
    if state_now != DatabaseState::Restoring {
        return Err(ServerMessage::error(
            3117,
            "The log or differential backup cannot be restored because no files are ready to rollforward.",
        ));
    }
    let name = ctx
        .state
        .database(db)
        .map_or(db.to_string(), |d| d.name.clone());
    let session_id = ctx.state.new_session_id();
    let op = RestoreOp {
        database: name,
        kind: BackupKind::Full,
        sources: Vec::new(),
        recovery: true,
        replace: false,
        outcome: Ok(()),
        created_db: false,
        started_at: ctx.state.now(),
        duration: ctx.state.finish_duration,
        session_id,
    };
    push_task(ctx.state, "FINISH_RESTORE", String::new(), None, op);
    Ok(Reply::empty())
}

/// `rds_cancel_task`.
///
/// # Errors
/// 50000: unknown task, a task no longer active, a `FINISH_RESTORE` task (`[RDS]` "You can't cancel
/// a FINISH_RESTORE task"; texts assumed).
pub fn cancel(ctx: &mut Ctx<'_>, id: i64) -> Result<Reply, ServerMessage> {
    let now = ctx.state.now();
    let Some(t) = ctx
        .state
        .rds_tasks
        .iter_mut()
        .find(|t| i64::from(t.task_id) == id)
    else {
        return Err(rds_error(format!("Task {id} does not exist.")));
    };
    if t.is_finish() {
        return Err(rds_error(format!(
            "Task {id} is a FINISH_RESTORE task, which can't be cancelled."
        )));
    }
    if !t.lifecycle.is_active() {
        return Err(rds_error(format!(
            "Task {id} cannot be cancelled because its lifecycle is {}.",
            t.lifecycle.as_str()
        )));
    }
    t.lifecycle = Lifecycle::CancelRequested;
    t.last_updated = now;
    let mut reply = Reply::empty();
    reply.push(crate::protocol::ReplyPart::Info(ServerMessage::info(
        0,
        format!("Task {id} cancellation requested."),
    )));
    Ok(reply)
}

/// What happens next to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Cancel,
    End,
    Start,
}

fn in_progress(state: &State) -> usize {
    state
        .rds_tasks
        .iter()
        .filter(|t| {
            t.started
                && matches!(
                    t.lifecycle,
                    Lifecycle::InProgress | Lifecycle::CancelRequested
                )
        })
        .count()
}

/// The earliest next event at or before `now`, after `clock` for starts.
fn next_event(state: &State, clock: Duration, now: Duration) -> Option<(Duration, usize, Event)> {
    let slots_free = in_progress(state) < state.rds_max_concurrent_tasks;
    let mut best: Option<(Duration, usize, Event)> = None;
    let mut consider = |at: Duration, i: usize, ev: Event| {
        if at > now {
            return;
        }
        // Ends and cancels before starts at the same instant: a slot freed at T is taken at T.
        let rank = |e: Event| u8::from(e == Event::Start);
        if best.is_none_or(|(b, _, be)| (at, rank(ev)) < (b, rank(be))) {
            best = Some((at, i, ev));
        }
    };
    let mut first_queued = true;
    for (i, t) in state.rds_tasks.iter().enumerate() {
        match t.lifecycle {
            Lifecycle::CancelRequested => {
                consider(t.last_updated + state.rds_queue_delay, i, Event::Cancel)
            }
            Lifecycle::InProgress => consider(t.op.started_at + t.op.duration, i, Event::End),
            Lifecycle::Created if slots_free && first_queued => {
                first_queued = false;
                consider(
                    (t.created_at + state.rds_queue_delay).max(clock),
                    i,
                    Event::Start,
                );
            }
            _ => {}
        }
    }
    best
}

fn end_task(state: &mut State, i: usize, end: Duration) {
    let task = state.rds_tasks[i].clone();
    let mut info = task.task_info.clone();
    let result = if task.is_finish() {
        let key = task.op.database.to_lowercase();
        match state.databases.get_mut(&key) {
            Some(db) if db.state == DatabaseState::Restoring => {
                db.state = DatabaseState::Online;
                Ok(())
            }
            _ => Err(vec![rds_error(format!(
                "Database '{}' is not in the RESTORING state.",
                task.op.database
            ))]),
        }
    } else {
        let via = format!("rds task {}", task.task_id);
        restore::complete(state, &task.op, &via).map(|_| ())
    };
    let (lifecycle, percent) = match &result {
        Ok(()) => {
            info.push_str(&format!(
                "{} {} completed successfully.\n{} Task has been completed.\n",
                stamp(state, end),
                task.task_type,
                stamp(state, end)
            ));
            (Lifecycle::Success, 100)
        }
        Err(errors) => {
            info.push_str(&format!(
                "{} Aborted the task because of a task failure or a concurrent RESTORE_DB request.\n",
                stamp(state, end)
            ));
            for e in errors {
                info.push_str(&format!("{} {}\n", stamp(state, end), e.message));
            }
            info.push_str(&format!("{} Task has been aborted\n", stamp(state, end)));
            (Lifecycle::Error, task.percent)
        }
    };
    let t = &mut state.rds_tasks[i];
    t.lifecycle = lifecycle;
    t.percent = percent;
    t.last_updated = end;
    t.task_info = info;
}

/// Moves RDS tasks along to the current simulated time, in the order their events happen.
pub fn advance(state: &mut State) {
    let now = state.now();
    let mut clock = Duration::ZERO;
    while let Some((at, i, event)) = next_event(state, clock, now) {
        clock = clock.max(at);
        match event {
            Event::Cancel => {
                let task = state.rds_tasks[i].clone();
                if task.op.created_db {
                    state.databases.remove(&task.op.database.to_lowercase());
                }
                let info = format!(
                    "{}{} Task has been cancelled.\n",
                    task.task_info,
                    stamp(state, at)
                );
                let t = &mut state.rds_tasks[i];
                t.lifecycle = Lifecycle::Cancelled;
                t.last_updated = at;
                t.task_info = info;
            }
            Event::Start => {
                let info = format!(
                    "{}{} Task execution has started.\n",
                    state.rds_tasks[i].task_info,
                    stamp(state, at)
                );
                let t = &mut state.rds_tasks[i];
                t.lifecycle = Lifecycle::InProgress;
                t.started = true;
                t.op.started_at = at;
                t.last_updated = at;
                t.task_info = info;
            }
            Event::End => {
                let end = state.rds_tasks[i].op.started_at + state.rds_tasks[i].op.duration;
                end_task(state, i, end);
            }
        }
    }
    for t in state.rds_tasks.iter_mut() {
        if t.lifecycle == Lifecycle::InProgress {
            t.percent = tables::percent(&t.op, now) as i32;
            t.last_updated = now;
        }
    }
}
