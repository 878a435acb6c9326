//! SQL Server Agent: running a job's T-SQL step (token replacement first, then the batch in its
//! own session and database), `sysjobactivity` rows per Agent session, `sysjobhistory` rows in
//! the shape Agent writes them, and moving running jobs along simulated time.

use super::exec::{self, Ctx, StepRestore};
use super::restore;
use super::state::{AgentJob, JobActivity, JobHistory, JobRun, JobStep, State};
use crate::protocol::{ReplyPart, ServerMessage, Session};
use std::time::Duration;

/// The login Agent's sessions and job steps run as.
pub const AGENT_LOGIN: &str = "NT SERVICE\\SQLSERVERAGENT";

/// `program_name` of SQL Server Agent's own sessions while it runs.
pub const AGENT_PROGRAMS: [&str; 2] = [
    "SQLAgent - Generic Refresher",
    "SQLAgent - Job invocation engine",
];

/// The reason Agent gives for a step holding a token without an escape macro ([Use Tokens in Job
/// Steps]: such steps "fail and return an error message indicating the job step contains one or
/// more tokens that must be updated with a macro before the job can run"; the wording is
/// Microsoft Knowledge Base article 915845's).
pub const TOKEN_WITHOUT_MACRO: &str = "The job step contains one or more tokens. For SQL Server 2005 Service Pack 1 or later, all job steps with tokens must be updated with a macro before the job can run.";

/// `program_name` of the session running a T-SQL job step: the job id as SQL Server's
/// `binary(16)` (the GUID bytes in wire order), in upper-case hex.
pub fn step_program_name(job_id: &[u8; 16], step_id: i32) -> String {
    let hex: String = job_id.iter().map(|b| format!("{b:02X}")).collect();
    format!("SQLAgent - TSQL JobStep (Job 0x{hex} : Step {step_id})")
}

fn escape(macro_name: &str, value: &str) -> Option<String> {
    Some(match macro_name {
        "ESCAPE_SQUOTE" => value.replace('\'', "''"),
        "ESCAPE_DQUOTE" => value.replace('"', "\"\""),
        "ESCAPE_RBRACKET" => value.replace(']', "]]"),
        "ESCAPE_NONE" => value.to_string(),
        _ => return None,
    })
}

/// Tokens that only jobs run by alerts get; with alert token replacement off (the default)
/// Agent leaves them unreplaced.
fn is_alert_token(name: &str) -> bool {
    name.starts_with("A-") || name.starts_with("WMI(")
}

fn token_value(state: &State, job: &AgentJob, step: &JobStep, name: &str) -> Option<String> {
    let now = state.datetime(state.now());
    let date = |d: time::PrimitiveDateTime| {
        format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let clock =
        |d: time::PrimitiveDateTime| format!("{:02}{:02}{:02}", d.hour(), d.minute(), d.second());
    let started = state.datetime(job.last_start.unwrap_or(state.now()));
    let linux = state.server.platform == super::state::Platform::Linux;
    Some(match name {
        "JOBID" => format!(
            "0x{}",
            job.job_id
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        ),
        "JOBNAME" => job.name.clone(),
        "STEPNAME" => step.step_name.clone(),
        "STEPID" => step.step_id.to_string(),
        "STEPCT" => "1".to_string(),
        "DATE" => date(now),
        "TIME" => clock(now),
        "STRTDT" => date(started),
        "STRTTM" => clock(started),
        "INST" => "MSSQLSERVER".to_string(),
        "MACH" | "SRVR" => state.server.server_name.clone(),
        "MSSA" => "SQLServerAgent".to_string(),
        "OSCMD" => "cmd.exe /c".to_string(),
        "SQLDIR" if linux => "/var/opt/mssql".to_string(),
        "SQLLOGDIR" if linux => "/var/opt/mssql/log".to_string(),
        "SQLDIR" => format!(
            "C:\\Program Files\\Microsoft SQL Server\\MSSQL{}.MSSQLSERVER\\MSSQL",
            state.server.major()
        ),
        "SQLLOGDIR" => format!(
            "C:\\Program Files\\Microsoft SQL Server\\MSSQL{}.MSSQLSERVER\\MSSQL\\Log",
            state.server.major()
        ),
        _ => return None,
    })
}

/// Replaces the tokens of a T-SQL step command the way Agent does before the step runs, on the
/// text as stored (inside string literals too).
///
/// # Errors
/// The reason the step cannot start: [`TOKEN_WITHOUT_MACRO`] when any `$(` starts a token that
/// is not wrapped in an `ESCAPE_*` macro; "Variable X not found" for an unknown token.
pub fn replace_tokens(
    state: &State,
    job: &AgentJob,
    step: &JobStep,
    command: &str,
) -> Result<String, String> {
    // First pass: every token must use a macro.
    let mut parsed = Vec::new();
    let mut rest = command;
    let mut offset = 0;
    while let Some(i) = rest.find("$(") {
        let start = offset + i;
        let after = &rest[i + 2..];
        let Some((macro_name, inner)) = after.split_once('(') else {
            return Err(TOKEN_WITHOUT_MACRO.to_string());
        };
        if !macro_name.starts_with("ESCAPE_") || macro_name.contains(')') {
            return Err(TOKEN_WITHOUT_MACRO.to_string());
        }
        // The token name runs to the `))` that closes token and macro (WMI(p) nests once more).
        let Some(end) = inner.find("))") else {
            return Err(TOKEN_WITHOUT_MACRO.to_string());
        };
        let mut name = &inner[..end];
        let mut close = end + 2;
        if name.starts_with("WMI(") && !name.ends_with(')') {
            name = &inner[..=end];
            close = end + 3;
        }
        let len = 2 + macro_name.len() + 1 + close;
        parsed.push((start, len, macro_name.to_string(), name.to_string()));
        offset = start + len;
        rest = &command[offset..];
    }
    let mut out = String::with_capacity(command.len());
    let mut at = 0;
    for (start, len, macro_name, name) in parsed {
        out.push_str(&command[at..start]);
        let original = &command[start..start + len];
        if is_alert_token(&name) {
            out.push_str(original);
        } else {
            let value = token_value(state, job, step, &name)
                .ok_or_else(|| format!("Variable {name} not found"))?;
            let escaped =
                escape(&macro_name, &value).ok_or_else(|| TOKEN_WITHOUT_MACRO.to_string())?;
            out.push_str(&escaped);
        }
        at = start + len;
    }
    out.push_str(&command[at..]);
    Ok(out)
}

/// The activity row of a job in the current Agent session (created when missing).
fn activity_mut(state: &mut State, job_id: [u8; 16]) -> Option<&mut JobActivity> {
    let session_id = state.agent_session_id()?;
    let pos = state
        .job_activity
        .iter()
        .position(|a| a.session_id == session_id && a.job_id == job_id);
    let i = match pos {
        Some(i) => i,
        None => {
            state.job_activity.push(JobActivity {
                session_id,
                job_id,
                run_requested: None,
                start_execution: None,
                last_executed_step_id: None,
                last_executed_step_date: None,
                stop_execution: None,
                job_history_id: None,
            });
            state.job_activity.len() - 1
        }
    };
    state.job_activity.get_mut(i)
}

/// Agent learns of a new job: its activity row in the current session (when Agent runs).
pub fn job_added(state: &mut State, job_id: [u8; 16]) {
    if state.agent_running {
        let _ = activity_mut(state, job_id);
    }
}

/// Starts a job's first step: tokens, then the step's batch in its own session; a `RESTORE …
/// FROM` in it runs over simulated time.
pub fn start_job(state: &mut State, key: &str) {
    let Some(job) = state.jobs.get(key).cloned() else {
        return;
    };
    let Some(step) = job.steps.first().cloned() else {
        return;
    };
    let now = state.now();
    if let Some(j) = state.jobs.get_mut(key) {
        j.last_requested = Some(now);
        j.last_start = Some(now);
    }
    let job = state.jobs.get(key).cloned().unwrap_or(job);
    let (op, immediate, start_failure) = match replace_tokens(state, &job, &step, &step.command) {
        Err(reason) => (None, Ok(()), Some(reason)),
        Ok(command) => {
            let mut session = Session {
                spid: 0,
                user: AGENT_LOGIN.to_string(),
                database: state
                    .database(&step.database_name)
                    .map_or_else(|| "master".to_string(), |d| d.name.clone()),
                app_name: step_program_name(&job.job_id, step.step_id),
                host_name: state.server.server_name.clone(),
                ..Session::default()
            };
            let mut ctx = Ctx::new(state, &mut session, None);
            ctx.step = Some(StepRestore::default());
            let reply = exec::run_batch(&mut ctx, &command);
            let op = ctx.step.take().and_then(|s| s.op);
            let errors: Vec<ServerMessage> = reply
                .parts
                .into_iter()
                .filter_map(|p| match p {
                    ReplyPart::Error(e) if e.class > 10 => Some(e),
                    _ => None,
                })
                .collect();
            (
                op,
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors)
                },
                None,
            )
        }
    };
    if let Some(j) = state.jobs.get_mut(key) {
        j.running = Some(JobRun {
            requested_at: now,
            op,
            immediate,
            start_failure,
        });
    }
    if let Some(a) = activity_mut(state, job.job_id) {
        *a = JobActivity {
            run_requested: Some(now),
            start_execution: Some(now),
            last_executed_step_id: None,
            last_executed_step_date: None,
            stop_execution: None,
            job_history_id: None,
            ..a.clone()
        };
    }
}

fn history_id(state: &mut State) -> i32 {
    let id = state.next_history_id;
    state.next_history_id += 1;
    id
}

/// Ends a job run: writes the step and outcome rows to `sysjobhistory` and the stop to
/// `sysjobactivity`.
pub fn finish_job(
    state: &mut State,
    key: &str,
    end: Duration,
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
    let secs = end.saturating_sub(run.requested_at).as_secs();
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
    let started = run.requested_at;
    if let Some(j) = state.jobs.get_mut(key) {
        j.running = None;
        j.last_stop = Some(end);
        j.last_history_id = Some(outcome_row);
        j.last_outcome = run_status;
    }
    if let Some(a) = activity_mut(state, job.job_id) {
        a.last_executed_step_id = Some(step.step_id);
        a.last_executed_step_date = Some(started);
        a.stop_execution = Some(end);
        a.job_history_id = Some(outcome_row);
    }
}

/// The step row's `message` for a failed step: every error as Agent lists them, then "The step
/// failed." (shape of real Agent output: third-party reports, not a Microsoft page).
pub fn step_failure_text(errors: &[ServerMessage]) -> String {
    let listed: Vec<String> = errors
        .iter()
        .map(|e| format!("{} [SQLSTATE 42000] (Error {})", e.message, e.number))
        .collect();
    format!(
        "Executed as user: {AGENT_LOGIN}. {}.  The step failed.",
        listed.join("  ")
    )
}

fn step_success_text(infos: &[ServerMessage]) -> String {
    if infos.is_empty() {
        return format!("Executed as user: {AGENT_LOGIN}. The step succeeded.");
    }
    let listed: Vec<String> = infos
        .iter()
        .map(|m| format!("{} [SQLSTATE 01000] (Message {})", m.message, m.number))
        .collect();
    format!(
        "Executed as user: {AGENT_LOGIN}. {}.  The step succeeded.",
        listed.join("  ")
    )
}

/// Moves running Agent jobs along to the current simulated time.
pub fn advance(state: &mut State) {
    let now = state.now();
    let mut keys: Vec<String> = state
        .jobs
        .iter()
        .filter(|(_, j)| j.running.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    for key in keys {
        let Some(run) = state.jobs.get(&key).and_then(|j| j.running.clone()) else {
            continue;
        };
        let step_id = state
            .jobs
            .get(&key)
            .and_then(|j| j.steps.first())
            .map_or(1, |s| s.step_id);
        if let Some(reason) = &run.start_failure {
            let text = format!(
                "Unable to start execution of step {step_id} (reason: {reason}).  The step failed."
            );
            finish_job(state, &key, run.requested_at, 0, 0, 0, text);
            continue;
        }
        let mut errors = run.immediate.clone().err().unwrap_or_default();
        let (end, infos) = match &run.op {
            None => (run.requested_at, Vec::new()),
            Some(op) => {
                if now < op.started_at + op.duration {
                    continue;
                }
                let via = format!("agent job {key}");
                match restore::complete(state, op, &via) {
                    Ok(infos) => (op.started_at + op.duration, infos),
                    Err(e) => {
                        errors.extend(e);
                        (op.started_at + op.duration, Vec::new())
                    }
                }
            }
        };
        match errors.last() {
            None => finish_job(state, &key, end, 1, 0, 0, step_success_text(&infos)),
            Some(last) => {
                // sysjobhistory.sql_message_id: the last error Agent received (3013 for a failed
                // RESTORE); which one Agent records is not documented.
                let (id, sev) = (last.number as i32, i32::from(last.class));
                finish_job(state, &key, end, 0, id, sev, step_failure_text(&errors));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::state::ServerInfo;

    fn job() -> (State, AgentJob, JobStep) {
        let state = State::new(ServerInfo::native_2022());
        let step = JobStep {
            step_id: 1,
            step_name: "restore".to_string(),
            subsystem: "TSQL".to_string(),
            command: String::new(),
            database_name: "master".to_string(),
        };
        let job = AgentJob {
            job_id: [0xAB; 16],
            name: "it's".to_string(),
            enabled: true,
            steps: vec![step.clone()],
            servers: Vec::new(),
            running: None,
            last_start: None,
            last_requested: None,
            last_stop: None,
            last_history_id: None,
            last_outcome: 5,
        };
        (state, job, step)
    }

    #[test]
    fn a_token_without_a_macro_stops_the_step_even_inside_a_literal() {
        let (state, job, step) = job();
        assert_eq!(
            replace_tokens(&state, &job, &step, "SELECT N'Sales/$(JOBNAME)x.bak'"),
            Err(TOKEN_WITHOUT_MACRO.to_string())
        );
        assert_eq!(
            replace_tokens(&state, &job, &step, "SELECT N'a$' + N'(b'"),
            Ok("SELECT N'a$' + N'(b'".to_string())
        );
    }

    #[test]
    fn escaped_tokens_are_replaced_and_unknown_ones_refused() {
        let (state, job, step) = job();
        assert_eq!(
            replace_tokens(
                &state,
                &job,
                &step,
                "PRINT N'$(ESCAPE_SQUOTE(JOBNAME)) $(ESCAPE_NONE(STEPID))'"
            ),
            Ok("PRINT N'it''s 1'".to_string())
        );
        assert_eq!(
            replace_tokens(&state, &job, &step, "$(ESCAPE_NONE(JOBID))"),
            Ok(format!("0x{}", "AB".repeat(16)))
        );
        assert_eq!(
            replace_tokens(&state, &job, &step, "$(ESCAPE_NONE(NOPE))"),
            Err("Variable NOPE not found".to_string())
        );
        assert_eq!(
            replace_tokens(&state, &job, &step, "$(ESCAPE_SQUOTE(A-DBN))"),
            Ok("$(ESCAPE_SQUOTE(A-DBN))".to_string())
        );
    }

    #[test]
    fn the_step_program_name_carries_the_job_id_bytes_in_upper_case_hex() {
        let mut id = [0u8; 16];
        id[0] = 0x1a;
        id[15] = 0xff;
        assert_eq!(
            step_program_name(&id, 1),
            "SQLAgent - TSQL JobStep (Job 0x1A0000000000000000000000000000FF : Step 1)"
        );
    }
}
