//! Stored procedures the emulator knows (the RDS restore procedures and the SQL Server Agent
//! job procedures), their parameter binding, and [`refresh`], which moves RDS tasks and Agent
//! jobs along simulated time.

use super::exec::{self, Ctx};
use super::restore::{self, Dialect, RestoreRequest};
use super::sql::ObjName;
use super::state::{
    AgentJob, BackupKind, JobHistory, JobRun, JobStep, Lifecycle, RdsTask, RestoreOp, State,
};
use super::tables;
use crate::protocol::{Column, Reply, ReplyPart, ResultSet, ServerMessage, SqlType, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Procedure signature: name and parameters in declaration order, required ones marked.
struct Proc {
    name: &'static str,
    rds_only: bool,
    params: &'static [(&'static str, bool)],
    run: fn(&mut Ctx<'_>, &Args) -> Result<Reply, ServerMessage>,
}

/// Bound arguments by lower-cased parameter name (without `@`).
type Args = HashMap<String, Value>;

const PROCS: &[Proc] = &[
    Proc {
        name: "rds_restore_database",
        rds_only: true,
        params: &[
            ("restore_db_name", true),
            ("s3_arn_to_restore_from", true),
            ("kms_master_key_arn", false),
            ("with_norecovery", false),
            ("type", false),
            ("keep_cdc", false),
            ("data_file_volume", false),
            ("log_file_volume", false),
        ],
        run: rds_restore_database,
    },
    Proc {
        name: "rds_restore_log",
        rds_only: true,
        params: &[
            ("restore_db_name", true),
            ("s3_arn_to_restore_from", true),
            ("kms_master_key_arn", false),
            ("with_norecovery", false),
            ("stopat", false),
        ],
        run: rds_restore_log,
    },
    Proc {
        name: "rds_task_status",
        rds_only: true,
        params: &[("db_name", false), ("task_id", false)],
        run: rds_task_status,
    },
    Proc {
        name: "rds_finish_restore",
        rds_only: true,
        params: &[("db_name", true)],
        run: rds_finish_restore,
    },
    Proc {
        name: "rds_cancel_task",
        rds_only: true,
        params: &[("task_id", true)],
        run: rds_cancel_task,
    },
    Proc {
        name: "rds_drop_database",
        rds_only: true,
        params: &[("db_name", true)],
        run: rds_drop_database,
    },
    Proc {
        name: "sp_add_job",
        rds_only: false,
        params: &[
            ("job_name", true),
            ("enabled", false),
            ("description", false),
            ("start_step_id", false),
            ("category_name", false),
            ("category_id", false),
            ("owner_login_name", false),
            ("notify_level_eventlog", false),
            ("notify_level_email", false),
            ("delete_level", false),
            ("job_id", false),
        ],
        run: sp_add_job,
    },
    Proc {
        name: "sp_add_jobstep",
        rds_only: false,
        params: &[
            ("job_id", false),
            ("job_name", false),
            ("step_id", false),
            ("step_name", true),
            ("subsystem", false),
            ("command", false),
            ("additional_parameters", false),
            ("cmdexec_success_code", false),
            ("on_success_action", false),
            ("on_success_step_id", false),
            ("on_fail_action", false),
            ("on_fail_step_id", false),
            ("server", false),
            ("database_name", false),
            ("database_user_name", false),
            ("retry_attempts", false),
            ("retry_interval", false),
            ("os_run_priority", false),
            ("output_file_name", false),
            ("flags", false),
        ],
        run: sp_add_jobstep,
    },
    Proc {
        name: "sp_add_jobserver",
        rds_only: false,
        params: &[
            ("job_id", false),
            ("job_name", false),
            ("server_name", false),
        ],
        run: sp_add_jobserver,
    },
    Proc {
        name: "sp_start_job",
        rds_only: false,
        params: &[
            ("job_name", false),
            ("job_id", false),
            ("error_flag", false),
            ("server_name", false),
            ("step_name", false),
            ("output_flag", false),
        ],
        run: sp_start_job,
    },
    Proc {
        name: "sp_stop_job",
        rds_only: false,
        params: &[("job_name", false), ("job_id", false)],
        run: sp_stop_job,
    },
    Proc {
        name: "sp_delete_job",
        rds_only: false,
        params: &[
            ("job_id", false),
            ("job_name", false),
            ("originating_server", false),
            ("delete_history", false),
            ("delete_unused_schedule", false),
        ],
        run: sp_delete_job,
    },
    Proc {
        name: "sp_help_job",
        rds_only: false,
        params: &[
            ("job_id", false),
            ("job_name", false),
            ("job_aspect", false),
        ],
        run: sp_help_job,
    },
];

/// Names of the procedures the emulator knows (for docs and error messages).
pub fn known_procedures() -> Vec<&'static str> {
    PROCS.iter().map(|p| p.name).collect()
}

fn not_found(proc: &ObjName) -> ServerMessage {
    ServerMessage::error(
        2812,
        format!("Could not find stored procedure '{}'.", proc.written()),
    )
    .with_class(16)
    .with_state(62)
}

/// Calls a procedure with evaluated arguments.
///
/// # Errors
/// 2812 unknown procedure, 8145 unknown parameter, 201 missing parameter, and each procedure's own errors.
pub fn call(
    ctx: &mut Ctx<'_>,
    proc: &ObjName,
    args: &[(Option<String>, Value)],
) -> Result<Reply, ServerMessage> {
    let parts: Vec<String> = proc.parts.iter().map(|p| p.to_lowercase()).collect();
    let last = parts.last().cloned().unwrap_or_default();
    let db_ok = match parts.len() {
        1 => ctx.session.database.eq_ignore_ascii_case("msdb"),
        2 => parts[0] == "dbo" && ctx.session.database.eq_ignore_ascii_case("msdb"),
        3 => parts[0] == "msdb" && (parts[1] == "dbo" || parts[1].is_empty()),
        _ => false,
    };
    let Some(p) = PROCS.iter().find(|p| p.name == last) else {
        return Err(not_found(proc));
    };
    if !db_ok || (p.rds_only && !ctx.state.server.rds) {
        return Err(not_found(proc));
    }
    let mut bound = Args::new();
    for (i, (name, value)) in args.iter().enumerate() {
        let key = match name {
            Some(n) => {
                let k = n.trim_start_matches('@').to_lowercase();
                if !p.params.iter().any(|(pn, _)| *pn == k) {
                    return Err(ServerMessage::error(
                        8145,
                        format!("{n} is not a parameter for procedure {}.", p.name),
                    ));
                }
                k
            }
            None => match p.params.get(i) {
                Some((pn, _)) => (*pn).to_string(),
                None => {
                    return Err(ServerMessage::error(
                        8144,
                        format!(
                            "Procedure or function {} has too many arguments specified.",
                            p.name
                        ),
                    ))
                }
            },
        };
        bound.insert(key, value.clone());
    }
    for (pn, required) in p.params {
        if *required && !bound.contains_key(*pn) {
            return Err(ServerMessage::error(
                201,
                format!(
                    "Procedure or function '{}' expects parameter '@{pn}', which was not supplied.",
                    p.name
                ),
            )
            .with_state(4)
            .with_procedure(p.name));
        }
    }
    (p.run)(ctx, &bound).map_err(|e| {
        if e.procedure.is_empty() {
            e.with_procedure(p.name)
        } else {
            e
        }
    })
}

fn text_arg(args: &Args, name: &str) -> Option<String> {
    match args.get(name) {
        Some(Value::Null) | None => None,
        Some(Value::NVarChar(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

fn int_arg(args: &Args, name: &str) -> Option<i64> {
    args.get(name).and_then(Value::as_i64)
}

/// `true` while an RDS task or a job step is restoring this database.
pub fn restore_running_on(state: &State, name: &str) -> bool {
    state
        .rds_tasks
        .iter()
        .any(|t| t.lifecycle.is_active() && t.op.database.eq_ignore_ascii_case(name))
        || state.jobs.values().any(|j| {
            j.running
                .as_ref()
                .and_then(|r| r.op.as_ref())
                .is_some_and(|op| op.database.eq_ignore_ascii_case(name))
        })
}

fn rds_error(message: impl Into<String>) -> ServerMessage {
    ServerMessage::error(50000, message)
}

const RESERVED: &[&str] = &["master", "model", "msdb", "tempdb"];

fn check_rds_db_name(name: &str) -> Result<(), ServerMessage> {
    let lower = name.to_lowercase();
    if name.is_empty() || RESERVED.contains(&lower.as_str()) || lower.starts_with("rdsadmin") {
        return Err(rds_error(format!(
            "Database name '{name}' is not valid for this operation."
        )));
    }
    Ok(())
}

fn submit_rds(
    ctx: &mut Ctx<'_>,
    req: RestoreRequest,
    task_type: String,
    kms: Option<String>,
) -> Result<Reply, ServerMessage> {
    check_rds_db_name(&req.database)?;
    let arn = req.sources.first().cloned().unwrap_or_default();
    if !arn.starts_with("arn:aws:s3:::") {
        return Err(rds_error(format!(
            "The S3 ARN '{arn}' is not valid. Specify an ARN of the form arn:aws:s3:::bucket/key."
        )));
    }
    let active = ctx
        .state
        .rds_tasks
        .iter()
        .filter(|t| t.lifecycle.is_active())
        .count();
    if active >= ctx.state.rds_max_concurrent_tasks {
        return Err(rds_error(format!(
            "Cannot start a new task: {active} tasks are already in progress on this instance, the maximum is {}. Wait for a task to finish and try again.",
            ctx.state.rds_max_concurrent_tasks
        )));
    }
    if restore_running_on(ctx.state, &req.database) {
        return Err(rds_error(format!(
            "A task is already running on database '{}'. Wait for it to finish and try again.",
            req.database
        )));
    }
    let duration = ctx.state.restore_duration(&req.database);
    let op = restore::plan(ctx.state, &req, Dialect::Rds, duration);
    let now = ctx.state.now();
    let task_id = ctx.state.next_task_id;
    ctx.state.next_task_id += 1;
    let task = RdsTask {
        task_id,
        task_type,
        lifecycle: Lifecycle::Created,
        percent: 0,
        task_info: String::new(),
        s3_object_arn: arn,
        kms_master_key_arn: kms,
        created_at: now,
        last_updated: now,
        op: RestoreOp {
            started_at: now + ctx.state.rds_queue_delay,
            ..op
        },
    };
    let mut rs = ResultSet::new(vec![
        Column::new("task_id", SqlType::Int),
        Column::new("task_type", SqlType::NVarChar),
        Column::new("lifecycle", SqlType::NVarChar),
        Column::new("created_at", SqlType::DateTime),
        Column::new("last_updated", SqlType::DateTime),
        Column::new("database_name", SqlType::NVarChar),
        Column::new("S3_object_arn", SqlType::NVarChar),
        Column::new("overwrite_S3_backup_file", SqlType::Int),
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
    ctx.state.rds_tasks.push(task);
    Ok(Reply::rows(rs))
}

fn rds_restore_database(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let db = text_arg(args, "restore_db_name").unwrap_or_default();
    let arn = text_arg(args, "s3_arn_to_restore_from").unwrap_or_default();
    let norecovery = int_arg(args, "with_norecovery").unwrap_or(0) != 0;
    let ty = text_arg(args, "type").unwrap_or_else(|| "FULL".to_string());
    let Some(kind) = exec::rds_type(&ty) else {
        return Err(rds_error(format!(
            "Invalid @type '{ty}'. Valid values are FULL and DIFFERENTIAL."
        )));
    };
    let task_type = match (kind, norecovery) {
        (BackupKind::Differential, true) => "RESTORE_DB_DIFFERENTIAL_NORECOVERY",
        (BackupKind::Differential, false) => "RESTORE_DB_DIFFERENTIAL",
        (_, true) => "RESTORE_DB_NORECOVERY",
        (_, false) => "RESTORE_DB",
    };
    let req = RestoreRequest {
        database: db,
        is_log: false,
        declared: Some(kind),
        sources: vec![arn],
        recovery: !norecovery,
        replace: false,
    };
    submit_rds(
        ctx,
        req,
        task_type.to_string(),
        text_arg(args, "kms_master_key_arn"),
    )
}

fn rds_restore_log(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let db = text_arg(args, "restore_db_name").unwrap_or_default();
    let arn = text_arg(args, "s3_arn_to_restore_from").unwrap_or_default();
    let norecovery = int_arg(args, "with_norecovery").unwrap_or(0) != 0;
    let req = RestoreRequest {
        database: db,
        is_log: true,
        declared: Some(BackupKind::Log),
        sources: vec![arn],
        recovery: !norecovery,
        replace: false,
    };
    let task_type = if norecovery {
        "RESTORE_DB_LOG_NORECOVERY"
    } else {
        "RESTORE_DB_LOG"
    };
    submit_rds(
        ctx,
        req,
        task_type.to_string(),
        text_arg(args, "kms_master_key_arn"),
    )
}

/// The `rds_task_status` columns.
pub fn task_status_columns() -> Vec<Column> {
    vec![
        Column::new("task_id", SqlType::Int),
        Column::new("task_type", SqlType::NVarChar),
        Column::new("database_name", SqlType::NVarChar),
        Column::new("% complete", SqlType::Int),
        Column::new("duration(mins)", SqlType::Int),
        Column::new("lifecycle", SqlType::NVarChar),
        Column::new("task_info", SqlType::NVarChar),
        Column::new("last_updated", SqlType::DateTime),
        Column::new("created_at", SqlType::DateTime),
        Column::new("S3_object_arn", SqlType::NVarChar),
        Column::new("overwrite_S3_backup_file", SqlType::Int),
        Column::new("KMS_master_key_arn", SqlType::NVarChar),
        Column::new("filepath", SqlType::NVarChar),
        Column::new("overwrite_file", SqlType::Int),
    ]
}

fn rds_task_status(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let db = text_arg(args, "db_name");
    let id = int_arg(args, "task_id");
    let mut rs = ResultSet::new(task_status_columns());
    for t in &ctx.state.rds_tasks {
        if db
            .as_ref()
            .is_some_and(|d| !d.eq_ignore_ascii_case(&t.op.database))
        {
            continue;
        }
        if id.is_some_and(|i| i != i64::from(t.task_id)) {
            continue;
        }
        let mins = t.last_updated.saturating_sub(t.created_at).as_secs() / 60;
        rs.push(vec![
            Value::Int(t.task_id),
            Value::text(t.task_type.clone()),
            Value::text(t.op.database.clone()),
            Value::Int(t.percent),
            Value::Int(mins as i32),
            Value::text(t.lifecycle.as_str()),
            if t.task_info.is_empty() {
                Value::Null
            } else {
                Value::text(t.task_info.clone())
            },
            Value::DateTime(ctx.state.datetime(t.last_updated)),
            Value::DateTime(ctx.state.datetime(t.created_at)),
            Value::text(t.s3_object_arn.clone()),
            Value::Int(0),
            t.kms_master_key_arn
                .clone()
                .map_or(Value::Null, Value::text),
            Value::Null,
            Value::Int(0),
        ]);
    }
    Ok(Reply::rows(rs))
}

fn rds_finish_restore(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let db = text_arg(args, "db_name").unwrap_or_default();
    check_rds_db_name(&db)?;
    if restore_running_on(ctx.state, &db) {
        return Err(rds_error(format!(
            "Cannot finish the restore of database '{db}' while a restore task is running on it."
        )));
    }
    let msgs = exec::recover(ctx.state, &db, true)?;
    let mut reply = Reply::empty();
    for m in msgs {
        reply.push(ReplyPart::Info(m));
    }
    Ok(reply)
}

fn rds_cancel_task(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let id = int_arg(args, "task_id").unwrap_or(-1);
    let now = ctx.state.now();
    let Some(t) = ctx
        .state
        .rds_tasks
        .iter_mut()
        .find(|t| i64::from(t.task_id) == id)
    else {
        return Err(rds_error(format!("Task {id} does not exist.")));
    };
    if !t.lifecycle.is_active() {
        return Err(rds_error(format!(
            "Task {id} cannot be cancelled because its lifecycle is {}.",
            t.lifecycle.as_str()
        )));
    }
    t.lifecycle = Lifecycle::CancelRequested;
    t.last_updated = now;
    let mut reply = Reply::empty();
    reply.push(ReplyPart::Info(ServerMessage::info(
        0,
        format!("Task {id} cancellation requested."),
    )));
    Ok(reply)
}

fn rds_drop_database(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let db = text_arg(args, "db_name").unwrap_or_default();
    check_rds_db_name(&db)?;
    exec::drop_database(ctx.state, &db, false)?;
    let mut reply = Reply::empty();
    reply.push(ReplyPart::Info(ServerMessage::info(
        0,
        format!("Dropped database {db}."),
    )));
    Ok(reply)
}

fn find_job_key(state: &State, args: &Args) -> Result<String, ServerMessage> {
    if let Some(name) = text_arg(args, "job_name") {
        let key = name.to_lowercase();
        return if state.jobs.contains_key(&key) {
            Ok(key)
        } else {
            Err(ServerMessage::error(
                14262,
                format!("The specified @job_name ('{name}') does not exist."),
            ))
        };
    }
    if let Some(Value::Guid(g)) = args.get("job_id") {
        return state
            .jobs
            .iter()
            .find(|(_, j)| j.job_id == *g)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| {
                ServerMessage::error(
                    14262,
                    format!(
                        "The specified @job_id ('{}') does not exist.",
                        Value::Guid(*g)
                    ),
                )
            });
    }
    Err(ServerMessage::error(
        14294,
        "Supply either @job_id or @job_name to identify the job.",
    ))
}

fn sp_add_job(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let name = text_arg(args, "job_name").unwrap_or_default();
    let key = name.to_lowercase();
    if ctx.state.jobs.contains_key(&key) {
        return Err(ServerMessage::error(
            14261,
            format!("The specified @job_name ('{name}') already exists."),
        ));
    }
    let job_id = ctx.state.new_guid();
    ctx.outputs
        .insert("job_id".to_string(), Value::Guid(job_id));
    ctx.state.jobs.insert(
        key,
        AgentJob {
            job_id,
            name,
            enabled: int_arg(args, "enabled").unwrap_or(1) != 0,
            steps: Vec::new(),
            servers: Vec::new(),
            running: None,
            last_start: None,
            last_requested: None,
            last_stop: None,
            last_history_id: None,
            last_outcome: 5,
        },
    );
    Ok(Reply::empty())
}

fn sp_add_jobstep(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let key = find_job_key(ctx.state, args)?;
    let Some(job) = ctx.state.jobs.get_mut(&key) else {
        return Err(ServerMessage::error(
            14262,
            "The specified job does not exist.",
        ));
    };
    let step_id = int_arg(args, "step_id").map_or(job.steps.len() as i32 + 1, |v| v as i32);
    job.steps.push(JobStep {
        step_id,
        step_name: text_arg(args, "step_name").unwrap_or_default(),
        subsystem: text_arg(args, "subsystem").unwrap_or_else(|| "TSQL".to_string()),
        command: text_arg(args, "command").unwrap_or_default(),
        database_name: text_arg(args, "database_name").unwrap_or_else(|| "master".to_string()),
    });
    job.steps.sort_by_key(|s| s.step_id);
    Ok(Reply::empty())
}

fn sp_add_jobserver(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let key = find_job_key(ctx.state, args)?;
    if let Some(job) = ctx.state.jobs.get_mut(&key) {
        job.servers
            .push(text_arg(args, "server_name").unwrap_or_else(|| "(local)".to_string()));
    }
    Ok(Reply::empty())
}

fn sp_start_job(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let key = find_job_key(ctx.state, args)?;
    let user = if ctx.session.user.is_empty() {
        "sa".to_string()
    } else {
        ctx.session.user.clone()
    };
    let Some(job) = ctx.state.jobs.get(&key).cloned() else {
        return Err(ServerMessage::error(
            14262,
            "The specified job does not exist.",
        ));
    };
    if job.servers.is_empty() {
        return Err(ServerMessage::error(
            14256,
            format!(
                "Cannot start job '{}' (ID {}) because it does not have any job server or servers defined. Associate the job with a job server by calling sp_add_jobserver.",
                job.name,
                Value::Guid(job.job_id)
            ),
        ));
    }
    if job.running.is_some() {
        return Err(ServerMessage::error(
            22022,
            format!(
                "SQLServerAgent Error: Request to run job {} (from User {user}) refused because the job is already running from a request by User {user}.",
                job.name
            ),
        ));
    }
    let Some(step) = job.steps.first() else {
        return Err(ServerMessage::error(
            14268,
            format!("There are no steps defined for job '{}'.", job.name),
        ));
    };
    let now = ctx.state.now();
    // The step runs in its own context: no request parameters.
    let (op, immediate) = match exec::parse_batch(&step.command) {
        Err(e) => (None, Err(vec![e])),
        Ok(stmts) => {
            let restore_stmt = stmts.iter().find_map(|s| match s {
                exec::Stmt::Restore(r) if !r.sources.is_empty() => Some(r.clone()),
                _ => None,
            });
            match restore_stmt {
                Some(r) => {
                    let mut step_ctx = Ctx::new(&mut *ctx.state, &mut *ctx.session, None);
                    match exec::restore_request(&mut step_ctx, &r) {
                        Ok(req) => {
                            let duration = ctx.state.restore_duration(&req.database);
                            (
                                Some(restore::plan(ctx.state, &req, Dialect::Native, duration)),
                                Ok(()),
                            )
                        }
                        Err(e) => (None, Err(vec![e])),
                    }
                }
                None => {
                    let mut step_ctx = Ctx::new(&mut *ctx.state, &mut *ctx.session, None);
                    let reply = exec::run_batch(&mut step_ctx, &step.command);
                    let errors: Vec<ServerMessage> = reply
                        .parts
                        .into_iter()
                        .filter_map(|p| match p {
                            ReplyPart::Error(e) => Some(e),
                            _ => None,
                        })
                        .collect();
                    (
                        None,
                        if errors.is_empty() {
                            Ok(())
                        } else {
                            Err(errors)
                        },
                    )
                }
            }
        }
    };
    if let Some(j) = ctx.state.jobs.get_mut(&key) {
        j.running = Some(JobRun {
            requested_at: now,
            op,
            immediate,
        });
        j.last_requested = Some(now);
        j.last_start = Some(now);
    }
    let mut reply = Reply::empty();
    reply.push(ReplyPart::Info(ServerMessage::info(
        14243,
        format!("Job '{}' started successfully.", job.name),
    )));
    Ok(reply)
}

fn sp_stop_job(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let key = find_job_key(ctx.state, args)?;
    let now = ctx.state.now();
    let user = ctx.session.user.clone();
    let Some(job) = ctx.state.jobs.get(&key).cloned() else {
        return Err(ServerMessage::error(
            14262,
            "The specified job does not exist.",
        ));
    };
    let Some(run) = job.running.clone() else {
        return Err(ServerMessage::error(
            22022,
            format!("SQLServerAgent Error: Request to stop job {} (from User {user}) refused because the job is not currently running.", job.name),
        ));
    };
    if let Some(op) = &run.op {
        if op.created_db {
            ctx.state.databases.remove(&op.database.to_lowercase());
        }
    }
    finish_job(
        ctx.state,
        &key,
        now,
        3,
        0,
        0,
        format!("The job was stopped prior to completion by User {user}."),
    );
    let mut reply = Reply::empty();
    reply.push(ReplyPart::Info(ServerMessage::info(
        14245,
        format!("Job '{}' stopped successfully.", job.name),
    )));
    Ok(reply)
}

fn sp_delete_job(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let key = find_job_key(ctx.state, args)?;
    if let Some(job) = ctx.state.jobs.remove(&key) {
        if int_arg(args, "delete_history").unwrap_or(1) != 0 {
            ctx.state.job_history.retain(|h| h.job_id != job.job_id);
        }
    }
    Ok(Reply::empty())
}

fn sp_help_job(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let keys: Vec<String> = if args.contains_key("job_name") || args.contains_key("job_id") {
        vec![find_job_key(ctx.state, args)?]
    } else {
        let mut k: Vec<String> = ctx.state.jobs.keys().cloned().collect();
        k.sort();
        k
    };
    let mut rs = ResultSet::new(vec![
        Column::new("job_id", SqlType::Guid),
        Column::new("name", SqlType::NVarChar),
        Column::new("enabled", SqlType::Int),
        Column::new("current_execution_status", SqlType::Int),
        Column::new("current_execution_step", SqlType::NVarChar),
        Column::new("last_run_outcome", SqlType::Int),
        Column::new("last_run_date", SqlType::Int),
        Column::new("last_run_time", SqlType::Int),
    ]);
    for k in keys {
        if let Some(j) = ctx.state.jobs.get(&k) {
            let running = j.running.is_some();
            let (d, t) = match j.last_start {
                Some(at) => {
                    let dt = ctx.state.datetime(at);
                    (
                        dt.year() * 10000
                            + i32::from(u8::from(dt.month())) * 100
                            + i32::from(dt.day()),
                        i32::from(dt.hour()) * 10000
                            + i32::from(dt.minute()) * 100
                            + i32::from(dt.second()),
                    )
                }
                None => (0, 0),
            };
            rs.push(vec![
                Value::Guid(j.job_id),
                Value::text(j.name.clone()),
                Value::Int(i32::from(j.enabled)),
                Value::Int(if running { 1 } else { 4 }),
                Value::text(match (running, j.steps.first()) {
                    (true, Some(s)) => format!("{} ({})", s.step_id, s.step_name),
                    _ => "0 (unknown)".to_string(),
                }),
                Value::Int(j.last_outcome),
                Value::Int(d),
                Value::Int(t),
            ]);
        }
    }
    Ok(Reply::rows(rs))
}

fn history_id(state: &mut State) -> i32 {
    let id = state.next_history_id;
    state.next_history_id += 1;
    id
}

/// Ends a job run: writes the step and outcome rows to `sysjobhistory`.
fn finish_job(
    state: &mut State,
    key: &str,
    now: Duration,
    run_status: i32,
    msg_id: i32,
    severity: i32,
    step_message: String,
) {
    let Some(job) = state.jobs.get(key).cloned() else {
        return;
    };
    let Some(run) = job.running.as_ref() else {
        return;
    };
    let step = job.steps.first().cloned().unwrap_or(JobStep {
        step_id: 1,
        step_name: String::new(),
        subsystem: "TSQL".to_string(),
        command: String::new(),
        database_name: "master".to_string(),
    });
    let secs = now.saturating_sub(run.requested_at).as_secs();
    let step_row = history_id(state);
    state.job_history.push(JobHistory {
        instance_id: step_row,
        job_id: job.job_id,
        step_id: step.step_id,
        step_name: step.step_name.clone(),
        sql_message_id: msg_id,
        sql_severity: severity,
        message: step_message,
        run_status,
        run_at: run.requested_at,
        run_duration: secs,
    });
    let outcome_row = history_id(state);
    let outcome = match run_status {
        1 => "succeeded",
        3 => "was cancelled",
        _ => "failed",
    };
    state.job_history.push(JobHistory {
        instance_id: outcome_row,
        job_id: job.job_id,
        step_id: 0,
        step_name: "(Job outcome)".to_string(),
        sql_message_id: 0,
        sql_severity: 0,
        message: format!(
            "The job {outcome}.  The Job was invoked by User sa.  The last step to run was step {} ({}).",
            step.step_id, step.step_name
        ),
        run_status,
        run_at: run.requested_at,
        run_duration: secs,
    });
    if let Some(j) = state.jobs.get_mut(key) {
        j.running = None;
        j.last_stop = Some(now);
        j.last_history_id = Some(outcome_row);
        j.last_outcome = run_status;
    }
}

fn step_failure_text(errors: &[ServerMessage]) -> String {
    let mut s = String::from("Executed as user: NT SERVICE\\SQLSERVERAGENT. ");
    for e in errors {
        s.push_str(&format!(
            "{} [SQLSTATE 42000] (Error {})  ",
            e.message, e.number
        ));
    }
    s.push_str("The step failed.");
    s
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

/// Moves RDS tasks and Agent jobs along to the current simulated time.
pub fn refresh(state: &mut State) {
    let now = state.now();
    for i in 0..state.rds_tasks.len() {
        let task = state.rds_tasks[i].clone();
        match task.lifecycle {
            Lifecycle::CancelRequested
                if now.saturating_sub(task.last_updated) >= state.rds_queue_delay =>
            {
                if task.op.created_db {
                    state.databases.remove(&task.op.database.to_lowercase());
                }
                let info = format!(
                    "{}{} Task has been cancelled.\n",
                    task.task_info,
                    stamp(state, now)
                );
                let t = &mut state.rds_tasks[i];
                t.lifecycle = Lifecycle::Cancelled;
                t.last_updated = now;
                t.task_info = info;
            }
            Lifecycle::Created | Lifecycle::InProgress => {
                let op = &task.op;
                if now < op.started_at {
                    continue;
                }
                let mut info = task.task_info.clone();
                if task.lifecycle == Lifecycle::Created {
                    info.push_str(&format!(
                        "{} Task execution has started.\n",
                        stamp(state, op.started_at)
                    ));
                }
                if now < op.started_at + op.duration {
                    let pct = tables::percent(op, now) as i32;
                    let t = &mut state.rds_tasks[i];
                    t.lifecycle = Lifecycle::InProgress;
                    t.percent = pct;
                    t.last_updated = now;
                    t.task_info = info;
                    continue;
                }
                let end = op.started_at + op.duration;
                let via = format!("rds task {}", task.task_id);
                let result = restore::complete(state, op, &via);
                let (lifecycle, percent) = match &result {
                    Ok(_) => {
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
                            info.push_str(&format!(
                                "Msg {}, Level {}, State {}, Line {}\n{}\n",
                                e.number, e.class, e.state, e.line, e.message
                            ));
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
            _ => {}
        }
    }
    let keys: Vec<String> = state
        .jobs
        .iter()
        .filter(|(_, j)| j.running.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    for key in keys {
        let Some(run) = state.jobs.get(&key).and_then(|j| j.running.clone()) else {
            continue;
        };
        match &run.op {
            None => {
                let (status, id, sev, msg) = match &run.immediate {
                    Ok(()) => (
                        1,
                        0,
                        0,
                        "Executed as user: NT SERVICE\\SQLSERVERAGENT. The step succeeded."
                            .to_string(),
                    ),
                    Err(errors) => (
                        0,
                        errors.first().map_or(0, |e| e.number as i32),
                        16,
                        step_failure_text(errors),
                    ),
                };
                finish_job(state, &key, now, status, id, sev, msg);
            }
            Some(op) => {
                if now < op.started_at + op.duration {
                    continue;
                }
                let end = op.started_at + op.duration;
                let via = format!("agent job {key}");
                match restore::complete(state, op, &via) {
                    Ok(infos) => {
                        let text = infos
                            .iter()
                            .map(|m| {
                                format!("{} [SQLSTATE 01000] (Message {})", m.message, m.number)
                            })
                            .collect::<Vec<_>>()
                            .join("  ");
                        finish_job(
                            state,
                            &key,
                            end,
                            1,
                            0,
                            0,
                            format!("Executed as user: NT SERVICE\\SQLSERVERAGENT. {text}.  The step succeeded."),
                        );
                    }
                    Err(errors) => {
                        let id = errors.first().map_or(0, |e| e.number as i32);
                        finish_job(state, &key, end, 0, id, 16, step_failure_text(&errors));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_procedure_has_unique_lowercase_parameters() {
        for p in PROCS {
            let mut names: Vec<&str> = p.params.iter().map(|(n, _)| *n).collect();
            assert!(names
                .iter()
                .all(|n| n.chars().all(|c| !c.is_ascii_uppercase())));
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), p.params.len(), "{}", p.name);
        }
    }
}
