//! Virtual tables the emulator can `SELECT` from, built from [`State`](super::state::State) on
//! each query: `sys.databases`, `sys.dm_exec_requests`, `msdb.dbo.sysjobs`, `sysjobsteps`,
//! `sysjobhistory`, `sysjobactivity` and `restorehistory`.

use super::exec::Ctx;
use super::sql::ObjName;
use super::state::{BackupKind, Lifecycle, RestoreOp};
use crate::protocol::{Column, SqlType, Value};
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

fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::text)
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

/// The running restores, for `sys.dm_exec_requests`.
pub fn running_ops(ctx: &Ctx<'_>) -> Vec<RestoreOp> {
    let mut ops: Vec<RestoreOp> = ctx
        .state
        .rds_tasks
        .iter()
        .filter(|t| t.lifecycle == Lifecycle::InProgress)
        .map(|t| t.op.clone())
        .collect();
    ops.extend(
        ctx.state
            .jobs
            .values()
            .filter_map(|j| j.running.as_ref().and_then(|r| r.op.clone())),
    );
    ops
}

/// Percent complete of an op at `now`.
pub fn percent(op: &RestoreOp, now: Duration) -> f64 {
    if op.duration.is_zero() {
        return 100.0;
    }
    let done = now.saturating_sub(op.started_at).as_secs_f64() / op.duration.as_secs_f64();
    (done * 100.0).clamp(0.0, 99.9)
}

/// The table named `name`, if the emulator has it.
pub fn table(ctx: &Ctx<'_>, name: &ObjName) -> Option<Table> {
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
    match key.as_str() {
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
                ctx.state
                    .database(&ctx.session.database)
                    .map_or(Value::Null, |d| Value::Int(d.database_id)),
                Value::Float(0.0),
                Value::BigInt(0),
                Value::Null,
            ]];
            for op in running_ops(ctx) {
                let pct = percent(&op, now);
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
                    ctx.state
                        .database(&op.database)
                        .map_or(Value::Null, |d| Value::Int(d.database_id)),
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
                    ("start_execution_date", SqlType::DateTime),
                    ("last_executed_step_id", SqlType::Int),
                    ("last_executed_step_date", SqlType::DateTime),
                    ("stop_execution_date", SqlType::DateTime),
                    ("job_history_id", SqlType::Int),
                ]),
                rows: ctx
                    .state
                    .jobs
                    .values()
                    .filter(|j| j.last_requested.is_some())
                    .map(|j| {
                        let finished = j.running.is_none();
                        vec![
                            Value::Int(1),
                            Value::Guid(j.job_id),
                            dt(j.last_requested),
                            opt_text(Some("4")),
                            dt(j.last_start),
                            if finished { Value::Int(1) } else { Value::Null },
                            if finished {
                                dt(j.last_stop)
                            } else {
                                Value::Null
                            },
                            if finished {
                                dt(j.last_stop)
                            } else {
                                Value::Null
                            },
                            j.last_history_id.map_or(Value::Null, Value::Int),
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
    }
}
