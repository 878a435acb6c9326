//! Virtual tables the emulator can `SELECT` from, built from [`State`] on
//! each query: `sys.databases`, `sys.credentials`, `sys.dm_exec_requests`,
//! `sys.dm_exec_sessions`, `sys.dm_server_services`, `msdb.dbo.sysjobs`, `sysjobsteps`,
//! `sysjobhistory`, `sysjobactivity`, `syssessions` and `restorehistory`.

use super::agent;
use super::exec::Ctx;
use super::sql::ObjName;
use super::state::{BackupKind, Lifecycle, RestoreOp, State};
use crate::protocol::{Column, ServerMessage, SqlType, Value};
use std::time::Duration;

/// A materialised virtual table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
}

fn cols(spec: &[(&str, SqlType)]) -> Vec<Column> {
    spec.iter().map(|(n, t)| Column::new(*n, *t)).collect()
}

/// `yyyymmdd` and `hhmmss` integers as `sysjobhistory` stores them.
fn agent_date_time(ctx: &Ctx<'_>, at: Duration) -> (i32, i32) {
    let dt = ctx.state.datetime(at);
    let d = dt.date();
    let t = dt.time();
    (
        d.year() * 10000 + i32::from(u8::from(d.month())) * 100 + i32::from(d.day()),
        i32::from(t.hour()) * 10000 + i32::from(t.minute()) * 100 + i32::from(t.second()),
    )
}

/// A restore running on its own session: an RDS task in progress or an Agent job step.
#[derive(Debug, Clone)]
pub struct Running {
    /// The restore (its `session_id` is the session's).
    pub op: RestoreOp,
    /// The database the request executes in (`[DMV]` `database_id`): the job step's
    /// `@database_name`; for RDS (not documented) assumed `master`.
    pub context: String,
    /// `program_name` of the session (`None` for RDS's own sessions, not documented).
    pub program_name: Option<String>,
    /// `login_name` of the session.
    pub login_name: String,
}

/// The running restores, for `sys.dm_exec_requests` and `sys.dm_exec_sessions`.
pub fn running(state: &State) -> Vec<Running> {
    let mut out: Vec<Running> = state
        .rds_tasks
        .iter()
        .filter(|t| t.lifecycle == Lifecycle::InProgress && !t.is_finish())
        .map(|t| Running {
            op: t.op.clone(),
            context: "master".to_string(),
            program_name: None,
            login_name: "rdsa".to_string(),
        })
        .collect();
    let mut jobs: Vec<_> = state.jobs.values().collect();
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    for j in jobs {
        let Some(op) = j.running.as_ref().and_then(|r| r.op.clone()) else {
            continue;
        };
        let step = j.steps.first();
        out.push(Running {
            op,
            context: step.map_or_else(|| "master".to_string(), |s| s.database_name.clone()),
            program_name: Some(agent::step_program_name(
                &j.job_id,
                step.map_or(1, |s| s.step_id),
            )),
            login_name: agent::AGENT_LOGIN.to_string(),
        });
    }
    out
}

/// Percent complete of an op at `now`.
pub fn percent(op: &RestoreOp, now: Duration) -> f64 {
    if op.duration.is_zero() {
        return 100.0;
    }
    let done = now.saturating_sub(op.started_at).as_secs_f64() / op.duration.as_secs_f64();
    (done * 100.0).clamp(0.0, 99.9)
}

fn db_id(ctx: &Ctx<'_>, name: &str) -> Value {
    ctx.state
        .database(name)
        .map_or(Value::Null, |d| Value::Int(d.database_id))
}

/// `[DMV]`: "If the user has VIEW SERVER STATE permission on the server, the user will see all
/// executing sessions … otherwise, the user will see only the current session."
fn visible(ctx: &Ctx<'_>, session_id: i32) -> bool {
    ctx.state.view_server_state || session_id == i32::from(ctx.session.spid)
}

/// The table named `name`, if the emulator has it.
///
/// # Errors
/// 300 for `sys.dm_server_services` without VIEW SERVER STATE.
pub fn table(ctx: &Ctx<'_>, name: &ObjName) -> Result<Option<Table>, ServerMessage> {
    let canonical = name.canonical();
    // msdb tables answer to `msdb.dbo.x` / `msdb..x`, or `dbo.x` / `x` while in msdb.
    let in_msdb = ctx.session.database.eq_ignore_ascii_case("msdb");
    let msdb_table = match canonical.strip_prefix("msdb.dbo.") {
        Some(t) => Some(t),
        None if in_msdb => Some(canonical.strip_prefix("dbo.").unwrap_or(&canonical)),
        None => None,
    };
    let key = match msdb_table {
        Some(t) if !t.starts_with("sys.") => format!("msdb:{t}"),
        _ => canonical.clone(),
    };
    let now = ctx.state.now();
    Ok(match key.as_str() {
        "sys.databases" | "sys.sysdatabases" => {
            let mut dbs: Vec<_> = ctx.state.databases.values().collect();
            dbs.sort_by_key(|d| d.database_id);
            Some(Table {
                columns: cols(&[
                    ("name", SqlType::NVarChar),
                    ("database_id", SqlType::Int),
                    ("state", SqlType::Int),
                    ("state_desc", SqlType::NVarChar),
                    ("recovery_model_desc", SqlType::NVarChar),
                    ("user_access_desc", SqlType::NVarChar),
                    ("is_read_only", SqlType::Bit),
                    ("compatibility_level", SqlType::Int),
                    ("create_date", SqlType::DateTime),
                ]),
                rows: dbs
                    .into_iter()
                    .map(|d| {
                        vec![
                            Value::text(d.name.clone()),
                            Value::Int(d.database_id),
                            Value::Int(d.state.code()),
                            Value::text(d.state.desc()),
                            Value::text("FULL"),
                            Value::text("MULTI_USER"),
                            Value::Bit(false),
                            Value::Int(i32::from(ctx.state.server.major()) * 10),
                            Value::DateTime(d.created_at),
                        ]
                    })
                    .collect(),
            })
        }
        "sys.dm_exec_requests" => {
            let mut rows = vec![vec![
                Value::Int(i32::from(ctx.session.spid)),
                Value::Int(0),
                Value::DateTime(ctx.state.datetime(now)),
                Value::text("running"),
                Value::text("SELECT"),
                db_id(ctx, &ctx.session.database),
                Value::Float(0.0),
                Value::BigInt(0),
                Value::Null,
            ]];
            for r in running(ctx.state) {
                if !visible(ctx, r.op.session_id) {
                    continue;
                }
                let op = &r.op;
                let pct = percent(op, now);
                let remaining = op
                    .duration
                    .saturating_sub(now.saturating_sub(op.started_at));
                rows.push(vec![
                    Value::Int(op.session_id),
                    Value::Int(0),
                    Value::DateTime(ctx.state.datetime(op.started_at)),
                    Value::text("suspended"),
                    Value::text(if op.kind == BackupKind::Log {
                        "RESTORE LOG"
                    } else {
                        "RESTORE DATABASE"
                    }),
                    db_id(ctx, &r.context),
                    Value::Float(pct),
                    Value::BigInt(remaining.as_millis() as i64),
                    Value::text("BACKUPTHREAD"),
                ]);
            }
            Some(Table {
                columns: cols(&[
                    ("session_id", SqlType::Int),
                    ("request_id", SqlType::Int),
                    ("start_time", SqlType::DateTime),
                    ("status", SqlType::NVarChar),
                    ("command", SqlType::NVarChar),
                    ("database_id", SqlType::Int),
                    ("percent_complete", SqlType::Float),
                    ("estimated_completion_time", SqlType::BigInt),
                    ("wait_type", SqlType::NVarChar),
                ]),
                rows,
            })
        }
        "sys.dm_exec_sessions" => {
            let login = Value::DateTime(ctx.state.datetime(Duration::ZERO));
            let mut rows = vec![vec![
                Value::Int(i32::from(ctx.session.spid)),
                login.clone(),
                Value::text(ctx.session.host_name.clone()),
                Value::text(ctx.session.app_name.clone()),
                Value::text(ctx.session.user.clone()),
                Value::text("running"),
                db_id(ctx, &ctx.session.database),
                Value::Bit(true),
            ]];
            let agent_start = ctx.state.agent_sessions.last().map_or(login.clone(), |a| {
                Value::DateTime(ctx.state.datetime(a.started_at))
            });
            for (spid, program) in ctx.state.agent_spids.iter().zip(agent::AGENT_PROGRAMS) {
                if visible(ctx, *spid) {
                    rows.push(vec![
                        Value::Int(*spid),
                        agent_start.clone(),
                        Value::text(ctx.state.server.server_name.clone()),
                        Value::text(program),
                        Value::text(agent::AGENT_LOGIN),
                        Value::text("sleeping"),
                        db_id(ctx, "msdb"),
                        Value::Bit(true),
                    ]);
                }
            }
            for r in running(ctx.state) {
                if visible(ctx, r.op.session_id) {
                    rows.push(vec![
                        Value::Int(r.op.session_id),
                        Value::DateTime(ctx.state.datetime(r.op.started_at)),
                        Value::text(ctx.state.server.server_name.clone()),
                        r.program_name.clone().map_or(Value::Null, Value::text),
                        Value::text(r.login_name.clone()),
                        Value::text("running"),
                        db_id(ctx, &r.context),
                        Value::Bit(true),
                    ]);
                }
            }
            Some(Table {
                columns: cols(&[
                    ("session_id", SqlType::Int),
                    ("login_time", SqlType::DateTime),
                    ("host_name", SqlType::NVarChar),
                    ("program_name", SqlType::NVarChar),
                    ("login_name", SqlType::NVarChar),
                    ("status", SqlType::NVarChar),
                    ("database_id", SqlType::Int),
                    ("is_user_process", SqlType::Bit),
                ]),
                rows,
            })
        }
        "sys.dm_server_services" => {
            if !ctx.state.view_server_state {
                return Err(ServerMessage::error(
                    300,
                    "VIEW SERVER STATE permission was denied on object 'server', database 'master'.",
                )
                .with_class(14));
            }
            let s = &*ctx.state;
            let started = Value::DateTime(s.datetime(Duration::ZERO));
            let agent_started = s
                .agent_sessions
                .last()
                .filter(|_| s.agent_running)
                .map_or(Value::Null, |a| Value::DateTime(s.datetime(a.started_at)));
            let (agent_startup, agent_startup_desc) = if s.server.has_agent() {
                (2, "Automatic")
            } else {
                (4, "Disabled")
            };
            let (agent_status, agent_desc) = if s.agent_running {
                (4, "Running")
            } else {
                (1, "Stopped")
            };
            Some(Table {
                columns: cols(&[
                    ("servicename", SqlType::NVarChar),
                    ("startup_type", SqlType::Int),
                    ("startup_type_desc", SqlType::NVarChar),
                    ("status", SqlType::Int),
                    ("status_desc", SqlType::NVarChar),
                    ("process_id", SqlType::Int),
                    ("last_startup_time", SqlType::DateTime),
                    ("service_account", SqlType::NVarChar),
                ]),
                rows: vec![
                    vec![
                        Value::text("SQL Server (MSSQLSERVER)"),
                        Value::Int(2),
                        Value::text("Automatic"),
                        Value::Int(4),
                        Value::text("Running"),
                        Value::Int(4242),
                        started,
                        Value::text("NT Service\\MSSQLSERVER"),
                    ],
                    vec![
                        Value::text("SQL Server Agent (MSSQLSERVER)"),
                        Value::Int(agent_startup),
                        Value::text(agent_startup_desc),
                        Value::Int(agent_status),
                        Value::text(agent_desc),
                        if s.agent_running {
                            Value::Int(4343)
                        } else {
                            Value::Null
                        },
                        agent_started,
                        Value::text("NT Service\\SQLSERVERAGENT"),
                    ],
                ],
            })
        }
        "sys.credentials" => Some(Table {
            columns: cols(&[
                ("credential_id", SqlType::Int),
                ("name", SqlType::NVarChar),
                ("credential_identity", SqlType::NVarChar),
                ("create_date", SqlType::DateTime),
                ("modify_date", SqlType::DateTime),
                ("target_type", SqlType::NVarChar),
                ("target_id", SqlType::Int),
            ]),
            rows: ctx
                .state
                .credentials
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let at = Value::DateTime(ctx.state.datetime(Duration::ZERO));
                    vec![
                        Value::Int(65536 + i as i32),
                        Value::text(name.clone()),
                        Value::text(if name.to_ascii_lowercase().starts_with("s3://") {
                            "S3 Access Key"
                        } else {
                            "SHARED ACCESS SIGNATURE"
                        }),
                        at.clone(),
                        at,
                        Value::Null,
                        Value::Null,
                    ]
                })
                .collect(),
        }),
        "msdb:syssessions" => Some(Table {
            columns: cols(&[
                ("session_id", SqlType::Int),
                ("agent_start_date", SqlType::DateTime),
            ]),
            rows: ctx
                .state
                .agent_sessions
                .iter()
                .map(|a| {
                    vec![
                        Value::Int(a.session_id),
                        Value::DateTime(ctx.state.datetime(a.started_at)),
                    ]
                })
                .collect(),
        }),
        "msdb:sysjobs" => {
            let mut jobs: Vec<_> = ctx.state.jobs.values().collect();
            jobs.sort_by(|a, b| a.name.cmp(&b.name));
            Some(Table {
                columns: cols(&[
                    ("job_id", SqlType::Guid),
                    ("name", SqlType::NVarChar),
                    ("enabled", SqlType::Int),
                    ("description", SqlType::NVarChar),
                    ("start_step_id", SqlType::Int),
                ]),
                rows: jobs
                    .into_iter()
                    .map(|j| {
                        vec![
                            Value::Guid(j.job_id),
                            Value::text(j.name.clone()),
                            Value::Int(i32::from(j.enabled)),
                            Value::text(""),
                            Value::Int(1),
                        ]
                    })
                    .collect(),
            })
        }
        "msdb:sysjobsteps" => {
            let mut rows = Vec::new();
            for j in ctx.state.jobs.values() {
                for s in &j.steps {
                    rows.push(vec![
                        Value::Guid(j.job_id),
                        Value::Int(s.step_id),
                        Value::text(s.step_name.clone()),
                        Value::text(s.subsystem.clone()),
                        Value::text(s.command.clone()),
                        Value::text(s.database_name.clone()),
                    ]);
                }
            }
            Some(Table {
                columns: cols(&[
                    ("job_id", SqlType::Guid),
                    ("step_id", SqlType::Int),
                    ("step_name", SqlType::NVarChar),
                    ("subsystem", SqlType::NVarChar),
                    ("command", SqlType::NVarChar),
                    ("database_name", SqlType::NVarChar),
                ]),
                rows,
            })
        }
        "msdb:sysjobhistory" => Some(Table {
            columns: cols(&[
                ("instance_id", SqlType::Int),
                ("job_id", SqlType::Guid),
                ("step_id", SqlType::Int),
                ("step_name", SqlType::NVarChar),
                ("sql_message_id", SqlType::Int),
                ("sql_severity", SqlType::Int),
                ("message", SqlType::NVarChar),
                ("run_status", SqlType::Int),
                ("run_date", SqlType::Int),
                ("run_time", SqlType::Int),
                ("run_duration", SqlType::Int),
                ("server", SqlType::NVarChar),
            ]),
            rows: ctx
                .state
                .job_history
                .iter()
                .map(|h| {
                    let (d, t) = agent_date_time(ctx, h.run_at);
                    let secs = h.run_duration as i32;
                    vec![
                        Value::Int(h.instance_id),
                        Value::Guid(h.job_id),
                        Value::Int(h.step_id),
                        Value::text(h.step_name.clone()),
                        Value::Int(h.sql_message_id),
                        Value::Int(h.sql_severity),
                        Value::text(h.message.clone()),
                        Value::Int(h.run_status),
                        Value::Int(d),
                        Value::Int(t),
                        Value::Int((secs / 3600) * 10000 + (secs / 60 % 60) * 100 + secs % 60),
                        Value::text(ctx.state.server.server_name.clone()),
                    ]
                })
                .collect(),
        }),
        "msdb:sysjobactivity" => {
            let dt = |d: Option<Duration>| {
                d.map_or(Value::Null, |d| Value::DateTime(ctx.state.datetime(d)))
            };
            Some(Table {
                columns: cols(&[
                    ("session_id", SqlType::Int),
                    ("job_id", SqlType::Guid),
                    ("run_requested_date", SqlType::DateTime),
                    ("run_requested_source", SqlType::NVarChar),
                    ("queued_date", SqlType::DateTime),
                    ("start_execution_date", SqlType::DateTime),
                    ("last_executed_step_id", SqlType::Int),
                    ("last_executed_step_date", SqlType::DateTime),
                    ("stop_execution_date", SqlType::DateTime),
                    ("job_history_id", SqlType::Int),
                    ("next_scheduled_run_date", SqlType::DateTime),
                ]),
                rows: ctx
                    .state
                    .job_activity
                    .iter()
                    .map(|a| {
                        vec![
                            Value::Int(a.session_id),
                            Value::Guid(a.job_id),
                            dt(a.run_requested),
                            if a.run_requested.is_some() {
                                Value::text("4")
                            } else {
                                Value::Null
                            },
                            Value::Null,
                            dt(a.start_execution),
                            a.last_executed_step_id.map_or(Value::Null, Value::Int),
                            dt(a.last_executed_step_date),
                            dt(a.stop_execution),
                            a.job_history_id.map_or(Value::Null, Value::Int),
                            Value::Null,
                        ]
                    })
                    .collect(),
            })
        }
        "msdb:restorehistory" => {
            let mut rows = Vec::new();
            let mut id = 1;
            let mut dbs: Vec<_> = ctx.state.databases.values().collect();
            dbs.sort_by_key(|d| d.database_id);
            for d in dbs {
                for r in &d.restored_from {
                    rows.push(vec![
                        Value::Int(id),
                        Value::text(d.name.clone()),
                        Value::text(match r.kind {
                            BackupKind::Full => "D",
                            BackupKind::Differential => "I",
                            BackupKind::Log => "L",
                        }),
                        Value::Bit(r.recovery),
                        Value::text(r.sources.join(", ")),
                    ]);
                    id += 1;
                }
            }
            Some(Table {
                columns: cols(&[
                    ("restore_history_id", SqlType::Int),
                    ("destination_database_name", SqlType::NVarChar),
                    ("restore_type", SqlType::NVarChar),
                    ("recovery", SqlType::Bit),
                    ("source", SqlType::NVarChar),
                ]),
                rows,
            })
        }
        _ => None,
    })
}
