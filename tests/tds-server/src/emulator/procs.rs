//! Stored procedures the emulator knows (the RDS restore procedures and the SQL Server Agent
//! job procedures), their parameter binding, and [`refresh`], which moves RDS tasks and Agent
//! jobs along simulated time.

use super::agent;
use super::exec::{self, Ctx};
use super::rds;
use super::restore::RestoreRequest;
use super::sql::ObjName;
use super::state::{AgentJob, BackupKind, JobStep, State};
use crate::protocol::{Column, Reply, ReplyPart, ResultSet, ServerMessage, SqlType, Value};
use std::collections::HashMap;

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

/// `true` while an RDS task (restore or finish) is pending on this database or a job step is
/// restoring it.
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

fn rds_restore_database(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let db = text_arg(args, "restore_db_name").unwrap_or_default();
    let arn = text_arg(args, "s3_arn_to_restore_from").unwrap_or_default();
    let norecovery = int_arg(args, "with_norecovery").unwrap_or(0) != 0;
    let ty = text_arg(args, "type").unwrap_or_else(|| "FULL".to_string());
    let Some(kind) = exec::rds_type(&ty) else {
        return Err(rds::rds_error(format!(
            "Invalid @type '{ty}'. Valid values are FULL and DIFFERENTIAL."
        )));
    };
    let task_type = match (kind, norecovery) {
        (BackupKind::Differential, true) => "RESTORE_DB_DIFFERENTIAL_NORECOVERY",
        (BackupKind::Differential, false) => "RESTORE_DB_DIFFERENTIAL",
        (_, true) => "RESTORE_DB_NORECOVERY",
        (_, false) => "RESTORE_DB",
    };
    let mut req = RestoreRequest::new(&db, false, vec![arn], !norecovery);
    req.declared = Some(kind);
    rds::submit(ctx, req, task_type, text_arg(args, "kms_master_key_arn"))
}

fn rds_restore_log(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let db = text_arg(args, "restore_db_name").unwrap_or_default();
    let arn = text_arg(args, "s3_arn_to_restore_from").unwrap_or_default();
    // `[RDS]`: `@with_norecovery` "defaults to 1" for rds_restore_log.
    let norecovery = int_arg(args, "with_norecovery").unwrap_or(1) != 0;
    let mut req = RestoreRequest::new(&db, true, vec![arn], !norecovery);
    req.declared = Some(BackupKind::Log);
    let task_type = if norecovery {
        "RESTORE_DB_LOG_NORECOVERY"
    } else {
        "RESTORE_DB_LOG"
    };
    rds::submit(ctx, req, task_type, text_arg(args, "kms_master_key_arn"))
}

/// The `rds_task_status` columns.
pub fn task_status_columns() -> Vec<Column> {
    vec![
        Column::new("task_id", SqlType::Int),
        Column::new("task_type", SqlType::NVarChar),
        Column::new("database_name", SqlType::NVarChar),
        Column::new("% complete", SqlType::Int),
        Column::new("duration (mins)", SqlType::Int),
        Column::new("lifecycle", SqlType::NVarChar),
        Column::new("task_info", SqlType::NVarChar),
        Column::new("last_updated", SqlType::DateTime),
        Column::new("created_at", SqlType::DateTime),
        Column::new("S3_object_arn", SqlType::NVarChar),
        Column::new("overwrite_s3_backup_file", SqlType::Int),
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
    rds::finish(ctx, &db)
}

fn rds_cancel_task(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let id = int_arg(args, "task_id").unwrap_or(-1);
    rds::cancel(ctx, id)
}

fn rds_drop_database(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let db = text_arg(args, "db_name").unwrap_or_default();
    rds::check_db_name(&db)?;
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
    agent::job_added(ctx.state, job_id);
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
                "Cannot start the job \"{}\" (ID {}) because it does not have any job server or servers defined. Associate the job with a job server by calling sp_add_jobserver.",
                job.name,
                Value::Guid(job.job_id)
            ),
        ));
    }
    if !ctx.state.agent_running {
        // Not on a Microsoft page; the text is the one third-party reports quote for a stopped
        // Agent (and for Express, which has none).
        return Err(ServerMessage::error(
            22022,
            "SQLServerAgent is not currently running so it cannot be notified of this action.",
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
    if job.steps.is_empty() {
        // Not documented: assumed to be refused by Agent like a running job is.
        return Err(ServerMessage::error(
            22022,
            format!(
                "SQLServerAgent Error: Request to run job {} (from User {user}) refused because the job has no steps.",
                job.name
            ),
        ));
    }
    agent::start_job(ctx.state, &key);
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
    agent::finish_job(
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
        14254,
        format!("Job '{}' stopped successfully.", job.name),
    )));
    Ok(reply)
}

fn sp_delete_job(ctx: &mut Ctx<'_>, args: &Args) -> Result<Reply, ServerMessage> {
    let key = find_job_key(ctx.state, args)?;
    if let Some(job) = ctx.state.jobs.remove(&key) {
        // A running job is stopped first: its restore is aborted.
        if let Some(op) = job.running.and_then(|r| r.op) {
            if op.created_db {
                ctx.state.databases.remove(&op.database.to_lowercase());
            }
        }
        ctx.state.job_activity.retain(|a| a.job_id != job.job_id);
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

/// Moves RDS tasks and Agent jobs along to the current simulated time.
pub fn refresh(state: &mut State) {
    rds::advance(state);
    agent::advance(state);
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
