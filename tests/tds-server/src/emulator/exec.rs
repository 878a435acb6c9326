//! Running a parsed batch against [`State`]: control flow (`BEGIN TRY … END TRY BEGIN CATCH …
//! END CATCH`, `IF`, `THROW`, `BEGIN … END`) and the statements (`SELECT`, `EXEC` of the RDS and
//! Agent procedures, `RESTORE`, `DROP DATABASE`, `USE`, `SET`, `PRINT`, `DECLARE`).

pub use super::parse::{
    database_names, parse_batch, Cond, RestoreStmt, RestoreTarget, Select, Stmt,
};
pub use super::query::{compare, eval, type_of};

use super::procs;
use super::query;
use super::restore::{self, Dialect, RestoreRequest};
use super::sql::Expr;
use super::state::{BackupKind, DatabaseState, RestoreOp, State};
use crate::protocol::{Reply, ReplyPart, Request, ServerMessage, Session, Value};
use std::collections::HashMap;
use std::time::Duration;

/// What a statement runs in.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Server state.
    pub state: &'a mut State,
    /// The connection (for an Agent job step: the step's own session).
    pub session: &'a mut Session,
    /// The request (for parameters); `None` inside an Agent job step.
    pub req: Option<&'a Request>,
    /// Variables from `DECLARE`, by lower-cased name (with `@`).
    pub locals: HashMap<String, Value>,
    /// OUTPUT values the last procedure produced, by lower-cased parameter name (without `@`).
    pub outputs: HashMap<String, Value>,
    /// The error the enclosing CATCH block handles (`THROW;`, `ERROR_NUMBER()`).
    pub caught: Option<ServerMessage>,
    /// Inside an Agent job step: the restore the step started, which runs over simulated time
    /// (the batch stops there).
    pub step: Option<StepRestore>,
}

/// The restore an Agent job step started.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StepRestore {
    /// The restore, once the step reached its `RESTORE … FROM`.
    pub op: Option<RestoreOp>,
}

impl<'a> Ctx<'a> {
    /// A context with no variables.
    pub fn new(state: &'a mut State, session: &'a mut Session, req: Option<&'a Request>) -> Self {
        Self {
            state,
            session,
            req,
            locals: HashMap::new(),
            outputs: HashMap::new(),
            caught: None,
            step: None,
        }
    }
}

/// Where running statements left the batch.
#[derive(Debug)]
enum Flow {
    /// Go on with the next statement.
    Next,
    /// A statement inside TRY failed with these errors: CATCH takes over.
    Caught(Vec<ServerMessage>),
    /// The batch ends (THROW outside TRY, or an Agent step reached its restore).
    Stop,
}

/// Runs a batch and returns its reply.
pub fn run_batch(ctx: &mut Ctx<'_>, text: &str) -> Reply {
    let stmts = match parse_batch(text) {
        Ok(s) => s,
        Err(e) => return Reply::error(e),
    };
    let mut reply = Reply::empty();
    let _ = run_stmts(ctx, &stmts, false, &mut reply);
    reply
}

fn run_stmts(ctx: &mut Ctx<'_>, stmts: &[Stmt], in_try: bool, reply: &mut Reply) -> Flow {
    for stmt in stmts {
        match run_stmt(ctx, stmt, in_try, reply) {
            Flow::Next => {}
            other => return other,
        }
        if ctx.step.as_ref().is_some_and(|s| s.op.is_some()) {
            return Flow::Stop;
        }
    }
    Flow::Next
}

/// An error raised by the batch itself (THROW): to CATCH inside TRY, else to the client, ending
/// the batch (`[THROW]`: "If a TRY...CATCH construct isn't available, the statement batch is
/// terminated").
fn raise(error: ServerMessage, in_try: bool, reply: &mut Reply) -> Flow {
    if in_try {
        Flow::Caught(vec![error])
    } else {
        reply.push(ReplyPart::Error(error));
        Flow::Stop
    }
}

fn run_stmt(ctx: &mut Ctx<'_>, stmt: &Stmt, in_try: bool, reply: &mut Reply) -> Flow {
    match stmt {
        Stmt::Try { body, catch } => match run_stmts(ctx, body, true, reply) {
            Flow::Caught(errors) => {
                // In CATCH, ERROR_NUMBER() and THROW see the last error of the failed statement
                // (for RESTORE: 3013).
                let previous = ctx.caught.take();
                ctx.caught = errors.last().cloned();
                let flow = run_stmts(ctx, catch, in_try, reply);
                ctx.caught = previous;
                flow
            }
            other => other,
        },
        Stmt::Block(stmts) => run_stmts(ctx, stmts, in_try, reply),
        Stmt::If {
            conds,
            then,
            otherwise,
        } => {
            let mut holds = true;
            for c in conds {
                match query::cond_holds(ctx, c, None) {
                    Ok(h) => holds &= h,
                    Err(e) => return statement_failed(vec![e], in_try, Reply::empty(), reply),
                }
            }
            match (holds, otherwise) {
                (true, _) => run_stmt(ctx, then, in_try, reply),
                (false, Some(o)) => run_stmt(ctx, o, in_try, reply),
                (false, None) => Flow::Next,
            }
        }
        Stmt::Throw(None) => match ctx.caught.clone() {
            Some(e) => raise(e, in_try, reply),
            None => raise(
                ServerMessage::error(10704, "To rethrow an error, a THROW statement must be used inside a CATCH block. Insert the THROW statement inside a CATCH block, or add error parameters to the THROW statement.").with_class(15),
                in_try,
                reply,
            ),
        },
        Stmt::Throw(Some((n, m, s))) => {
            let error = (|| {
                let number = eval(ctx, n, None)?.as_i64().unwrap_or(50000);
                let message = match eval(ctx, m, None)? {
                    Value::NVarChar(s) => s,
                    other => other.to_string(),
                };
                let state = eval(ctx, s, None)?.as_i64().unwrap_or(1);
                if !(50000..=i64::from(i32::MAX)).contains(&number) {
                    return Err(ServerMessage::error(35100, format!("Error number {number} in the THROW statement is outside the valid range. Specify an error number in the valid range of 50000 to 2147483647.")));
                }
                Ok::<_, ServerMessage>(
                    ServerMessage::error(u32::try_from(number).unwrap_or(50000), message)
                        .with_state(u8::try_from(state).unwrap_or(1)),
                )
            })();
            match error {
                Ok(e) | Err(e) => raise(e, in_try, reply),
            }
        }
        other => {
            let r = execute(ctx, other);
            let errors: Vec<ServerMessage> = r
                .parts
                .iter()
                .filter_map(|p| match p {
                    ReplyPart::Error(e) if e.class > 10 => Some(e.clone()),
                    _ => None,
                })
                .collect();
            if errors.is_empty() {
                reply.extend(r);
                Flow::Next
            } else {
                statement_failed(errors, in_try, r, reply)
            }
        }
    }
}

/// A statement failed: inside TRY its errors go to CATCH (and nothing of them to the client);
/// outside, the client sees them and the batch goes on.
fn statement_failed(errors: Vec<ServerMessage>, in_try: bool, r: Reply, reply: &mut Reply) -> Flow {
    if in_try {
        for p in r.parts {
            if !matches!(p, ReplyPart::Error(_)) {
                reply.push(p);
            }
        }
        Flow::Caught(errors)
    } else if r.parts.is_empty() {
        for e in errors {
            reply.push(ReplyPart::Error(e));
        }
        Flow::Next
    } else {
        reply.extend(r);
        Flow::Next
    }
}

fn execute(ctx: &mut Ctx<'_>, stmt: &Stmt) -> Reply {
    match stmt {
        Stmt::Select(s) => match query::select_exec(ctx, s) {
            Ok(rs) => Reply::rows(rs),
            Err(e) if e.number == 300 => {
                let mut r = Reply::error(e);
                r.push(ReplyPart::Error(ServerMessage::error(
                    297,
                    "The user does not have permission to perform this action.",
                )));
                r
            }
            Err(e) => Reply::error(e),
        },
        Stmt::Restore(r) => restore_exec(ctx, r),
        other => simple(ctx, other).unwrap_or_else(Reply::error),
    }
}

fn simple(ctx: &mut Ctx<'_>, stmt: &Stmt) -> Result<Reply, ServerMessage> {
    match stmt {
        Stmt::Print(e) => {
            let v = eval(ctx, e, None)?;
            let text = match v {
                Value::NVarChar(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let mut r = Reply::empty();
            r.push(ReplyPart::Info(ServerMessage::info(0, text)));
            Ok(r)
        }
        Stmt::Use(name) => {
            let n = name.last().to_string();
            match ctx.state.database(&n) {
                Some(db) => {
                    ctx.session.database = db.name.clone();
                    Ok(Reply::empty())
                }
                None => Err(ServerMessage::error(
                    911,
                    format!("Database '{n}' does not exist. Make sure that the name is entered correctly."),
                )),
            }
        }
        Stmt::DropDatabase { names, if_exists } => {
            for n in names {
                drop_database(ctx.state, n.last(), *if_exists)?;
            }
            Ok(Reply::empty())
        }
        Stmt::Exec { proc, args } => {
            let mut values = Vec::with_capacity(args.len());
            for (name, e, _) in args {
                values.push((name.clone(), eval(ctx, e, None)?));
            }
            ctx.outputs.clear();
            let reply = procs::call(ctx, proc, &values)?;
            for (name, e, output) in args {
                if let (true, Some(name), Expr::Var(var)) = (output, name, e) {
                    let key = name.trim_start_matches('@').to_lowercase();
                    if let Some(v) = ctx.outputs.get(&key).cloned() {
                        ctx.locals.insert(var.to_lowercase(), v);
                    }
                }
            }
            Ok(reply)
        }
        Stmt::Declare(vars) => {
            for (var, init) in vars {
                let v = match init {
                    Some(e) => eval(ctx, e, None)?,
                    None => Value::Null,
                };
                ctx.locals.insert(var.clone(), v);
            }
            Ok(Reply::empty())
        }
        Stmt::SetVar(var, e) => {
            if !ctx.locals.contains_key(var) {
                return Err(ServerMessage::error(
                    137,
                    format!("Must declare the scalar variable \"{var}\"."),
                )
                .with_class(15));
            }
            let v = eval(ctx, e, None)?;
            ctx.locals.insert(var.clone(), v);
            Ok(Reply::empty())
        }
        _ => Ok(Reply::empty()),
    }
}

/// `DROP DATABASE` semantics; dropping a database frees its files.
///
/// # Errors
/// 3701 (missing), 3708 (system database), 3702 (a restore or an RDS task is running on it).
pub fn drop_database(state: &mut State, name: &str, if_exists: bool) -> Result<(), ServerMessage> {
    let key = name.to_lowercase();
    if ["master", "model", "msdb", "tempdb"].contains(&key.as_str()) {
        return Err(ServerMessage::error(
            3708,
            format!("Cannot drop the database '{name}' because it is a system database."),
        ));
    }
    if !state.databases.contains_key(&key) {
        if if_exists {
            return Ok(());
        }
        return Err(ServerMessage::error(
            3701,
            format!("Cannot drop the database '{name}', because it does not exist or you do not have permission."),
        ));
    }
    if procs::restore_running_on(state, name) {
        return Err(ServerMessage::error(
            3702,
            format!("Cannot drop database \"{name}\" because it is currently in use."),
        ));
    }
    state.databases.remove(&key);
    Ok(())
}

fn restore_exec(ctx: &mut Ctx<'_>, r: &RestoreStmt) -> Reply {
    let req = match restore_request(ctx, r) {
        Ok(req) => req,
        Err(e) => return Reply::error(e),
    };
    if req.sources.is_empty() && req.recovery && ctx.step.is_some() {
        // An Agent job step: the recovery runs over simulated time, as a restore does.
        let op = match recovery_op(ctx.state, &req.database) {
            Ok(op) => op,
            Err(e) => {
                let mut reply = Reply::error(e);
                reply.push(ReplyPart::Error(restore::terminating(false)));
                return reply;
            }
        };
        if let Some(step) = ctx.step.as_mut() {
            step.op = Some(op);
        }
        return Reply::empty();
    }
    if req.sources.is_empty() {
        return match recover(ctx.state, &req.database, req.recovery) {
            Ok(msgs) => {
                let mut reply = Reply::empty();
                for m in msgs {
                    reply.push(ReplyPart::Info(m));
                }
                reply
            }
            Err(e) => {
                let mut reply = Reply::error(e);
                reply.push(ReplyPart::Error(restore::terminating(false)));
                reply
            }
        };
    }
    if let Some(step) = ctx.step.as_mut() {
        // An Agent job step: the restore runs over simulated time.
        let duration = ctx.state.restore_duration_of(&req.database, &req.sources);
        step.op = Some(restore::plan(ctx.state, &req, Dialect::Native, duration));
        return Reply::empty();
    }
    let op = restore::plan(ctx.state, &req, Dialect::Native, Duration::ZERO);
    let mut reply = Reply::empty();
    match restore::complete(ctx.state, &op, "direct") {
        Ok(infos) => {
            for m in infos {
                reply.push(ReplyPart::Info(m));
            }
        }
        Err(errors) => {
            for e in errors {
                reply.push(ReplyPart::Error(e));
            }
        }
    }
    reply
}

fn text_of(v: Value) -> String {
    match v {
        Value::NVarChar(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The Region in `RESTORE_OPTIONS = '{"s3": {"region":"…"}}'`.
///
/// # Errors
/// 3217 when the value is not such a JSON object (the number is `[E3]`'s "Invalid value specified
/// for %ls parameter."; that SQL Server uses it here is assumed).
pub fn options_region(json: &str) -> Result<Option<String>, ServerMessage> {
    let invalid = || {
        ServerMessage::error(
            3217,
            "Invalid value specified for RESTORE_OPTIONS parameter.",
        )
    };
    let t = json.trim();
    if !(t.starts_with('{') && t.ends_with('}')) {
        return Err(invalid());
    }
    let Some(i) = t.find("\"region\"") else {
        return Ok(None);
    };
    let rest = t[i + "\"region\"".len()..].trim_start();
    let rest = rest.strip_prefix(':').ok_or_else(invalid)?.trim_start();
    let rest = rest.strip_prefix('"').ok_or_else(invalid)?;
    let end = rest.find('"').ok_or_else(invalid)?;
    Ok(Some(rest[..end].to_string()))
}

/// Builds a restore request from a parsed `RESTORE` statement, evaluating its variables.
///
/// # Errors
/// Evaluation errors (137 unknown variable), 3217 for a malformed `RESTORE_OPTIONS`.
pub fn restore_request(
    ctx: &mut Ctx<'_>,
    r: &RestoreStmt,
) -> Result<RestoreRequest, ServerMessage> {
    let database = match &r.database {
        RestoreTarget::Name(n) => n.last().to_string(),
        RestoreTarget::Var(v) => text_of(eval(ctx, &Expr::Var(v.clone()), None)?),
    };
    let mut sources = Vec::new();
    for e in &r.sources {
        sources.push(text_of(eval(ctx, e, None)?));
    }
    let mut moves = Vec::new();
    for (l, p) in &r.moves {
        moves.push((text_of(eval(ctx, l, None)?), text_of(eval(ctx, p, None)?)));
    }
    let has = |n: &str| r.options.iter().any(|(o, _)| o == n);
    let value = |ctx: &Ctx<'_>, n: &str| -> Result<Option<String>, ServerMessage> {
        match r.options.iter().find(|(o, _)| o == n) {
            Some((_, Some(e))) => Ok(Some(text_of(eval(ctx, e, None)?))),
            _ => Ok(None),
        }
    };
    let region = match value(ctx, "restore_options")?.or(value(ctx, "restore_option")?) {
        Some(json) => options_region(&json)?,
        None => None,
    };
    Ok(RestoreRequest {
        database,
        is_log: r.is_log,
        declared: None,
        sources,
        from_url: r.from_url,
        recovery: !(has("norecovery") || has("standby")),
        replace: has("replace"),
        checksum: has("checksum") && !has("no_checksum"),
        moves,
        credential: value(ctx, "credential")?,
        region,
    })
}

/// Whether `RESTORE DATABASE name WITH RECOVERY` (no FROM) may start.
///
/// # Errors
/// 3101 while a restore runs on the database, 911 when it is missing, 3117 when it is not
/// RESTORING.
fn check_recover(state: &State, name: &str) -> Result<(), ServerMessage> {
    if procs::restore_running_on(state, name) {
        return Err(ServerMessage::error(
            3101,
            "Exclusive access could not be obtained because the database is in use.",
        ));
    }
    let Some(db) = state.databases.get(&name.to_lowercase()) else {
        return Err(ServerMessage::error(
            911,
            format!(
                "Database '{name}' does not exist. Make sure that the name is entered correctly."
            ),
        ));
    };
    if db.state != DatabaseState::Restoring {
        return Err(ServerMessage::error(
            3117,
            "The log or differential backup cannot be restored because no files are ready to rollforward.",
        ));
    }
    Ok(())
}

/// The recovery an Agent job step's `RESTORE DATABASE name WITH RECOVERY` starts: it runs for
/// the server's finish duration (the database stays RESTORING, and in use, until it ends), then
/// the database is ONLINE.
///
/// # Errors
/// As [`check_recover`].
fn recovery_op(state: &mut State, name: &str) -> Result<RestoreOp, ServerMessage> {
    check_recover(state, name)?;
    let database = state
        .database(name)
        .map_or_else(|| name.to_string(), |d| d.name.clone());
    let session_id = state.new_session_id();
    Ok(RestoreOp {
        database,
        kind: BackupKind::Full,
        sources: Vec::new(),
        recovery: true,
        replace: false,
        outcome: Ok(()),
        created_db: false,
        started_at: state.now(),
        duration: state.finish_duration,
        session_id,
    })
}

/// `RESTORE DATABASE x WITH RECOVERY` (no FROM), sent directly: at once.
///
/// # Errors
/// As [`check_recover`].
pub fn recover(
    state: &mut State,
    name: &str,
    recovery: bool,
) -> Result<Vec<ServerMessage>, ServerMessage> {
    check_recover(state, name)?;
    if let Some(db) = state.databases.get_mut(&name.to_lowercase()) {
        if recovery {
            db.state = DatabaseState::Online;
        }
    }
    Ok(vec![ServerMessage::info(
        3014,
        "RESTORE DATABASE successfully processed 0 pages in 0.010 seconds (0.000 MB/sec).",
    )])
}

/// Converts an RDS `@type`.
pub fn rds_type(t: &str) -> Option<BackupKind> {
    match t.to_ascii_uppercase().as_str() {
        "FULL" => Some(BackupKind::Full),
        "DIFFERENTIAL" => Some(BackupKind::Differential),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_from_restore_options() {
        assert_eq!(
            options_region("{\"s3\": {\"region\":\"eu-west-1\"}}"),
            Ok(Some("eu-west-1".to_string()))
        );
        assert_eq!(options_region("{\"s3\": {}}"), Ok(None));
        assert_eq!(options_region("eu-west-1").map_err(|e| e.number), Err(3217));
    }
}
