//! Parsing a batch into the statement forms the emulator knows and executing them against
//! [`State`]: `SELECT` over scalar expressions and virtual tables, `EXEC` of the RDS and Agent
//! procedures, `RESTORE`, `DROP DATABASE`, `USE`, `SET`, `PRINT`.

use super::procs;
use super::restore::{self, Dialect, RestoreRequest};
use super::sql::{self, Cursor, Expr, ObjName, Tok};
use super::state::{BackupKind, State};
use super::tables;
use crate::protocol::{
    Column, Reply, ReplyPart, Request, ResultSet, ServerMessage, Session, SqlType, Value,
};
use std::cmp::Ordering;
use std::collections::HashMap;

/// What a statement runs in.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// Server state.
    pub state: &'a mut State,
    /// The connection.
    pub session: &'a mut Session,
    /// The request (for parameters); `None` inside an Agent job step.
    pub req: Option<&'a Request>,
    /// Variables from `DECLARE`, by lower-cased name (with `@`).
    pub locals: HashMap<String, Value>,
    /// OUTPUT values the last procedure produced, by lower-cased parameter name (without `@`).
    pub outputs: HashMap<String, Value>,
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
        }
    }
}

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `EXEC proc args`.
    Exec {
        /// Procedure name.
        proc: ObjName,
        /// `(name, value, OUTPUT)`; name `None` for positional.
        args: Vec<(Option<String>, Expr, bool)>,
    },
    /// `DECLARE @a type [= expr], ...`.
    Declare(Vec<(String, Option<Expr>)>),
    /// `SET @a = expr`.
    SetVar(String, Expr),
    /// `SELECT`.
    Select(Select),
    /// `RESTORE DATABASE|LOG`.
    Restore(RestoreStmt),
    /// `DROP DATABASE [IF EXISTS] a, b`.
    DropDatabase {
        /// Names.
        names: Vec<ObjName>,
        /// IF EXISTS.
        if_exists: bool,
    },
    /// `USE db`.
    Use(ObjName),
    /// `PRINT expr`.
    Print(Expr),
    /// `SET option ON|OFF` and the like: accepted, no effect.
    Set,
}

/// A parsed `SELECT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// `TOP n`.
    pub top: Option<usize>,
    /// Items with optional aliases.
    pub items: Vec<(Expr, Option<String>)>,
    /// Table.
    pub from: Option<ObjName>,
    /// Conjunctive conditions.
    pub conds: Vec<Cond>,
    /// `ORDER BY col [DESC]`.
    pub order: Vec<(String, bool)>,
}

/// A `WHERE` condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `a = b`, `a <> b`, `a < b`, ...
    Cmp(Expr, String, Expr),
    /// `a [NOT] IN (...)`.
    In(Expr, Vec<Expr>, bool),
    /// `a IS [NOT] NULL`.
    IsNull(Expr, bool),
}

/// A parsed `RESTORE`.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreStmt {
    /// LOG rather than DATABASE.
    pub is_log: bool,
    /// Target database.
    pub database: ObjName,
    /// `FROM URL = x, URL = y` / `DISK = x`.
    pub sources: Vec<Expr>,
    /// WITH options, lower-cased names with optional values.
    pub options: Vec<(String, Option<Expr>)>,
}

const STATEMENT_STARTS: &[&str] = &[
    "select",
    "exec",
    "execute",
    "restore",
    "drop",
    "use",
    "set",
    "print",
    "declare",
    "if",
    "begin",
    "end",
    "insert",
    "update",
    "delete",
    "alter",
    "create",
    "go",
    "waitfor",
    "raiserror",
    "throw",
];
const CLAUSE_WORDS: &[&str] = &[
    "from", "where", "order", "group", "having", "union", "and", "or", "as", "into", "option",
    "with", "to", "on", "not", "in", "is", "like", "desc", "asc", "by",
];

fn starts_statement(t: &Tok) -> bool {
    matches!(t, Tok::Ident(s) if STATEMENT_STARTS.contains(&s.to_lowercase().as_str()))
}

fn is_reserved(t: &Tok) -> bool {
    match t {
        Tok::Ident(s) => {
            let s = s.to_lowercase();
            STATEMENT_STARTS.contains(&s.as_str()) || CLAUSE_WORDS.contains(&s.as_str())
        }
        _ => false,
    }
}

/// Parses a whole batch (compile errors fail the batch before anything runs, as on SQL Server).
///
/// # Errors
/// SQL Server's syntax errors (102, 105, 156).
pub fn parse_batch(text: &str) -> Result<Vec<Stmt>, ServerMessage> {
    let toks = sql::tokenize(text)?;
    let mut c = Cursor::new(&toks);
    let mut out = Vec::new();
    loop {
        while c.punct(';') {}
        if c.at_end() {
            break;
        }
        out.push(statement(&mut c)?);
        if !c.at_end() && !c.punct(';') && !c.peek().is_some_and(starts_statement) {
            return Err(c.error_here());
        }
    }
    Ok(out)
}

fn statement(c: &mut Cursor<'_>) -> Result<Stmt, ServerMessage> {
    if c.kw("exec") || c.kw("execute") {
        // `EXEC @rc = proc ...`: the return code variable is ignored.
        if matches!(c.peek(), Some(Tok::Var(_))) && c.peek2() == Some(&Tok::Punct('=')) {
            c.next_tok();
            c.next_tok();
        }
        let proc = c.name()?;
        let mut args = Vec::new();
        if !c.at_stmt_end() && !c.peek().is_some_and(is_reserved) {
            loop {
                let name = match (c.peek(), c.peek2()) {
                    (Some(Tok::Var(v)), Some(Tok::Punct('='))) => {
                        let v = v.clone();
                        c.next_tok();
                        c.next_tok();
                        Some(v)
                    }
                    _ => None,
                };
                let value = sql::expr(c)?;
                let output = c.kw("output") || c.kw("out");
                args.push((name, value, output));
                if !c.punct(',') {
                    break;
                }
            }
        }
        return Ok(Stmt::Exec { proc, args });
    }
    if c.kw("select") {
        return select(c).map(Stmt::Select);
    }
    if c.kw("restore") {
        return restore_stmt(c).map(Stmt::Restore);
    }
    if c.kw("drop") {
        c.expect_kw("database")?;
        let if_exists = if c.kw("if") {
            c.expect_kw("exists")?;
            true
        } else {
            false
        };
        let mut names = vec![c.name()?];
        while c.punct(',') {
            names.push(c.name()?);
        }
        return Ok(Stmt::DropDatabase { names, if_exists });
    }
    if c.kw("use") {
        return c.name().map(Stmt::Use);
    }
    if c.kw("print") {
        return sql::expr(c).map(Stmt::Print);
    }
    if c.kw("declare") {
        let mut vars = Vec::new();
        loop {
            let var = match c.next_tok() {
                Some(Tok::Var(v)) if !v.starts_with("@@") => v.to_lowercase(),
                other => return Err(sql::syntax_error_near(other)),
            };
            let _ = c.kw("as");
            let _type_name = c.name()?;
            if c.punct('(') {
                while !c.punct(')') {
                    if c.next_tok().is_none() {
                        return Err(c.error_here());
                    }
                }
            }
            let init = if c.punct('=') {
                Some(sql::expr(c)?)
            } else {
                None
            };
            vars.push((var, init));
            if !c.punct(',') {
                break;
            }
        }
        return Ok(Stmt::Declare(vars));
    }
    if c.kw("set") {
        if let Some(Tok::Var(v)) = c.peek() {
            let v = v.to_lowercase();
            c.next_tok();
            c.expect_punct('=')?;
            return Ok(Stmt::SetVar(v, sql::expr(c)?));
        }
        let _ = c.name()?;
        while !c.at_stmt_end() && !c.peek().is_some_and(starts_statement) {
            c.next_tok();
        }
        return Ok(Stmt::Set);
    }
    Err(c.error_here())
}

fn alias(c: &mut Cursor<'_>) -> Result<Option<String>, ServerMessage> {
    if c.kw("as") {
        return match c.next_tok() {
            Some(Tok::Ident(s) | Tok::Quoted(s) | Tok::Str(s)) => Ok(Some(s.clone())),
            other => Err(sql::syntax_error_near(other)),
        };
    }
    match c.peek() {
        Some(Tok::Quoted(s) | Tok::Str(s)) => {
            let s = s.clone();
            c.next_tok();
            Ok(Some(s))
        }
        Some(t @ Tok::Ident(s)) if !is_reserved(t) => {
            let s = s.clone();
            c.next_tok();
            Ok(Some(s))
        }
        _ => Ok(None),
    }
}

fn select(c: &mut Cursor<'_>) -> Result<Select, ServerMessage> {
    let mut top = None;
    if c.kw("top") {
        let paren = c.punct('(');
        match c.next_tok() {
            Some(Tok::Num(n)) => top = n.parse().ok(),
            other => return Err(sql::syntax_error_near(other)),
        }
        if paren {
            c.expect_punct(')')?;
        }
    }
    let mut items = Vec::new();
    loop {
        // `alias = expr`.
        let item = match (c.peek(), c.peek2()) {
            (Some(Tok::Ident(a) | Tok::Quoted(a)), Some(Tok::Punct('='))) => {
                let a = a.clone();
                c.next_tok();
                c.next_tok();
                (sql::expr(c)?, Some(a))
            }
            _ => {
                let e = sql::expr(c)?;
                let a = alias(c)?;
                (e, a)
            }
        };
        items.push(item);
        if !c.punct(',') {
            break;
        }
    }
    let mut from = None;
    if c.kw("from") {
        from = Some(c.name()?);
        // Table alias.
        let _ = alias(c)?;
        if c.kw("with") {
            c.expect_punct('(')?;
            while !c.punct(')') {
                if c.next_tok().is_none() {
                    return Err(c.error_here());
                }
            }
        }
    }
    let mut conds = Vec::new();
    if c.kw("where") {
        loop {
            conds.push(cond(c)?);
            if !c.kw("and") {
                break;
            }
        }
    }
    let mut order = Vec::new();
    if c.kw("order") {
        c.expect_kw("by")?;
        loop {
            let col = match sql::expr(c)? {
                Expr::Col(n) => n,
                _ => return Err(c.error_here()),
            };
            let desc = if c.kw("desc") {
                true
            } else {
                let _ = c.kw("asc");
                false
            };
            order.push((col, desc));
            if !c.punct(',') {
                break;
            }
        }
    }
    Ok(Select {
        top,
        items,
        from,
        conds,
        order,
    })
}

fn cond(c: &mut Cursor<'_>) -> Result<Cond, ServerMessage> {
    let left = sql::expr(c)?;
    if c.kw("is") {
        let not = c.kw("not");
        c.expect_kw("null")?;
        return Ok(Cond::IsNull(left, not));
    }
    let not = c.kw("not");
    if c.kw("in") {
        c.expect_punct('(')?;
        let mut list = vec![sql::expr(c)?];
        while c.punct(',') {
            list.push(sql::expr(c)?);
        }
        c.expect_punct(')')?;
        return Ok(Cond::In(left, list, not));
    }
    if not {
        return Err(c.error_here());
    }
    let op = match c.next_tok() {
        Some(Tok::Punct('=')) => "=".to_string(),
        Some(Tok::Punct('<')) => {
            if c.punct('>') {
                "<>".to_string()
            } else if c.punct('=') {
                "<=".to_string()
            } else {
                "<".to_string()
            }
        }
        Some(Tok::Punct('>')) => {
            if c.punct('=') {
                ">=".to_string()
            } else {
                ">".to_string()
            }
        }
        Some(Tok::Punct('!')) => {
            c.expect_punct('=')?;
            "<>".to_string()
        }
        other => return Err(sql::syntax_error_near(other)),
    };
    let right = sql::expr(c)?;
    Ok(Cond::Cmp(left, op, right))
}

fn restore_stmt(c: &mut Cursor<'_>) -> Result<RestoreStmt, ServerMessage> {
    let is_log = if c.kw("log") {
        true
    } else {
        c.expect_kw("database")?;
        false
    };
    let database = c.name()?;
    let mut sources = Vec::new();
    if c.kw("from") {
        loop {
            if !(c.kw("url") || c.kw("disk") || c.kw("tape")) {
                return Err(c.error_here());
            }
            c.expect_punct('=')?;
            sources.push(sql::expr(c)?);
            if !c.punct(',') {
                break;
            }
        }
    }
    let mut options = Vec::new();
    if c.kw("with") {
        loop {
            let name = match c.next_tok() {
                Some(Tok::Ident(s)) => s.to_lowercase(),
                other => return Err(sql::syntax_error_near(other)),
            };
            if name == "move" {
                let from = sql::expr(c)?;
                c.expect_kw("to")?;
                let _to = sql::expr(c)?;
                options.push((name, Some(from)));
            } else if c.punct('=') {
                options.push((name, Some(sql::expr(c)?)));
            } else {
                options.push((name, None));
            }
            if !c.punct(',') {
                break;
            }
        }
    }
    Ok(RestoreStmt {
        is_log,
        database,
        sources,
        options,
    })
}

/// Runs a batch and returns its reply.
pub fn run_batch(ctx: &mut Ctx<'_>, text: &str) -> Reply {
    let stmts = match parse_batch(text) {
        Ok(s) => s,
        Err(e) => return Reply::error(e),
    };
    let mut reply = Reply::empty();
    for stmt in &stmts {
        match execute(ctx, stmt) {
            Ok(r) => reply.extend(r),
            Err(e) => reply.push(ReplyPart::Error(e)),
        }
    }
    reply
}

fn execute(ctx: &mut Ctx<'_>, stmt: &Stmt) -> Result<Reply, ServerMessage> {
    match stmt {
        Stmt::Set => Ok(Reply::empty()),
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
        Stmt::Select(s) => select_exec(ctx, s).map(Reply::rows),
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
        Stmt::Restore(r) => restore_exec(ctx, r),
    }
}

/// `DROP DATABASE` semantics.
///
/// # Errors
/// 3701 (missing), 3708 (system database), 3702 (a restore is running on it).
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

fn restore_exec(ctx: &mut Ctx<'_>, r: &RestoreStmt) -> Result<Reply, ServerMessage> {
    let req = restore_request(ctx, r)?;
    if req.sources.is_empty() {
        return recover(ctx.state, &req.database, req.recovery).map(|msgs| {
            let mut reply = Reply::empty();
            for m in msgs {
                reply.push(ReplyPart::Info(m));
            }
            reply
        });
    }
    let op = restore::plan(ctx.state, &req, Dialect::Native, std::time::Duration::ZERO);
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
    Ok(reply)
}

/// Builds a restore request from a parsed `RESTORE` statement.
///
/// # Errors
/// Evaluation errors (unknown parameter).
pub fn restore_request(
    ctx: &mut Ctx<'_>,
    r: &RestoreStmt,
) -> Result<RestoreRequest, ServerMessage> {
    let mut sources = Vec::new();
    for e in &r.sources {
        match eval(ctx, e, None)? {
            Value::NVarChar(s) => sources.push(s),
            other => sources.push(other.to_string()),
        }
    }
    let has = |n: &str| r.options.iter().any(|(o, _)| o == n);
    Ok(RestoreRequest {
        database: r.database.last().to_string(),
        is_log: r.is_log,
        declared: None,
        sources,
        recovery: !(has("norecovery") || has("standby")),
        replace: has("replace"),
    })
}

/// `RESTORE DATABASE x WITH RECOVERY` (no FROM).
///
/// # Errors
/// 911-style when missing, 3117 when not restoring, 3702 while a restore runs.
pub fn recover(
    state: &mut State,
    name: &str,
    recovery: bool,
) -> Result<Vec<ServerMessage>, ServerMessage> {
    if procs::restore_running_on(state, name) {
        return Err(ServerMessage::error(
            3101,
            format!(
                "Exclusive access could not be obtained because the database '{name}' is in use."
            ),
        ));
    }
    let Some(db) = state.databases.get_mut(&name.to_lowercase()) else {
        return Err(ServerMessage::error(
            911,
            format!(
                "Database '{name}' does not exist. Make sure that the name is entered correctly."
            ),
        ));
    };
    if db.state != super::state::DatabaseState::Restoring {
        return Err(ServerMessage::error(
            3117,
            "The log or differential backup cannot be restored because no files are ready to rollforward.",
        ));
    }
    if recovery {
        db.state = super::state::DatabaseState::Online;
    }
    Ok(vec![ServerMessage::info(
        3014,
        "RESTORE DATABASE successfully processed 0 pages in 0.010 seconds (0.000 MB/sec).",
    )])
}

/// Evaluates an expression, with an optional row (columns, values) for column references.
///
/// # Errors
/// 137 unknown variable, 207 unknown column, 195 unknown function.
pub fn eval(
    ctx: &Ctx<'_>,
    e: &Expr,
    row: Option<(&[Column], &[Value])>,
) -> Result<Value, ServerMessage> {
    match e {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Var(name) => ctx
            .locals
            .get(&name.to_lowercase())
            .or_else(|| ctx.req.and_then(|r| r.param(name)))
            .cloned()
            .ok_or_else(|| {
                ServerMessage::error(137, format!("Must declare the scalar variable \"{name}\"."))
                    .with_class(15)
            }),
        Expr::Global(g) => {
            let s = &ctx.state.server;
            match g.as_str() {
                "@@version" => Ok(Value::text(s.version_string())),
                "@@servername" => Ok(Value::text(s.server_name.clone())),
                "@@spid" => Ok(Value::Int(i32::from(ctx.session.spid))),
                "@@language" => Ok(Value::text("us_english")),
                "@@rowcount" | "@@error" | "@@trancount" => Ok(Value::Int(0)),
                "@@microsoftversion" => Ok(Value::Int(
                    ((s.part(0) << 24) | (s.part(1) << 16) | s.part(2)) as i32,
                )),
                _ => Err(ServerMessage::error(
                    137,
                    format!("Must declare the scalar variable \"{g}\"."),
                )
                .with_class(15)),
            }
        }
        Expr::Col(name) => {
            if let Some((cols, vals)) = row {
                if let Some(i) = cols.iter().position(|c| c.name.eq_ignore_ascii_case(name)) {
                    return Ok(vals[i].clone());
                }
            }
            Err(ServerMessage::error(
                207,
                format!("Invalid column name '{name}'."),
            ))
        }
        Expr::Star => Err(sql::syntax_error_near(Some(&Tok::Punct('*')))),
        Expr::Call(f, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(ctx, a, row)?);
            }
            call_function(ctx, f, &vals)
        }
    }
}

/// `CAST(value AS ty)` for the types bakdrop casts to (text and numbers).
fn cast(value: Value, ty: &str) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    match ty {
        "nvarchar" | "varchar" | "sysname" => match &value {
            Value::NVarChar(_) => value,
            other => other
                .as_i64()
                .map_or(value.clone(), |v| Value::text(v.to_string())),
        },
        "int" => value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .and_then(|v| i32::try_from(v).ok())
            .map_or(Value::Null, Value::Int),
        "bigint" => value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .map_or(Value::Null, Value::BigInt),
        _ => value,
    }
}

fn call_function(ctx: &Ctx<'_>, f: &str, args: &[Value]) -> Result<Value, ServerMessage> {
    let s = &ctx.state.server;
    let arg_str = |i: usize| {
        args.get(i)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if let Some(ty) = f.strip_prefix("cast:") {
        return Ok(cast(args.first().cloned().unwrap_or(Value::Null), ty));
    }
    match f {
        "serverproperty" => {
            let p = arg_str(0).to_lowercase();
            Ok(match p.as_str() {
                "productversion" => Value::text(s.product_version.clone()),
                "productmajorversion" => Value::text(s.part(0).to_string()),
                "productminorversion" => Value::text(s.part(1).to_string()),
                "productbuild" => Value::text(s.part(2).to_string()),
                "productlevel" => Value::text(s.product_level.clone()),
                "productupdatelevel" => Value::text(s.product_update_level.clone()),
                "edition" => Value::text(s.edition.clone()),
                "engineedition" => Value::Int(s.engine_edition),
                "servername" | "machinename" => Value::text(s.server_name.clone()),
                "collation" => Value::text("SQL_Latin1_General_CP1_CI_AS"),
                "isclustered" | "ishadrenabled" => Value::Int(0),
                _ => Value::Null,
            })
        }
        "db_id" => Ok(match args.first() {
            None | Some(Value::Null) if args.is_empty() => ctx
                .state
                .database(&ctx.session.database)
                .map_or(Value::Null, |d| Value::Int(d.database_id)),
            _ => ctx
                .state
                .database(&arg_str(0))
                .map_or(Value::Null, |d| Value::Int(d.database_id)),
        }),
        "db_name" => Ok(match args.first().and_then(Value::as_i64) {
            None => Value::text(ctx.session.database.clone()),
            Some(id) => ctx
                .state
                .databases
                .values()
                .find(|d| i64::from(d.database_id) == id)
                .map_or(Value::Null, |d| Value::text(d.name.clone())),
        }),
        "databasepropertyex" => {
            let db = ctx.state.database(&arg_str(0));
            Ok(match (db, arg_str(1).to_lowercase().as_str()) {
                (None, _) => Value::Null,
                (Some(d), "status") => Value::text(d.state.desc()),
                (Some(_), "recovery") => Value::text("FULL"),
                (Some(_), "updateability") => Value::text("READ_WRITE"),
                _ => Value::Null,
            })
        }
        "getdate" | "getutcdate" | "sysdatetime" | "sysutcdatetime" => {
            Ok(Value::DateTime2(ctx.state.datetime(ctx.state.now())))
        }
        "isnull" | "coalesce" => Ok(args
            .iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null)),
        "upper" => Ok(args
            .first()
            .and_then(Value::as_str)
            .map_or(Value::Null, |s| Value::text(s.to_uppercase()))),
        "lower" => Ok(args
            .first()
            .and_then(Value::as_str)
            .map_or(Value::Null, |s| Value::text(s.to_lowercase()))),
        _ => Err(ServerMessage::error(
            195,
            format!("'{f}' is not a recognized built-in function name."),
        )
        .with_class(15)),
    }
}

/// SQL comparison: `None` when either side is NULL; strings compare case-insensitively.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::NVarChar(x), Value::NVarChar(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Guid(x), Value::Guid(y)) => Some(x.cmp(y)),
        (Value::Float(x), y) => y
            .as_i64()
            .map(|y| y as f64)
            .or(match y {
                Value::Float(f) => Some(*f),
                _ => None,
            })
            .and_then(|y| x.partial_cmp(&y)),
        (x, Value::Float(y)) => x.as_i64().and_then(|x| (x as f64).partial_cmp(y)),
        (Value::DateTime(x) | Value::DateTime2(x), Value::DateTime(y) | Value::DateTime2(y)) => {
            Some(x.cmp(y))
        }
        (Value::NVarChar(s), other) | (other, Value::NVarChar(s)) if other.as_i64().is_some() => {
            let n = s.trim().parse::<i64>().ok()?;
            let o = other.as_i64()?;
            if matches!(a, Value::NVarChar(_)) {
                Some(n.cmp(&o))
            } else {
                Some(o.cmp(&n))
            }
        }
        (x, y) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => None,
        },
    }
}

fn cond_holds(
    ctx: &Ctx<'_>,
    c: &Cond,
    row: Option<(&[Column], &[Value])>,
) -> Result<bool, ServerMessage> {
    Ok(match c {
        Cond::IsNull(e, not) => eval(ctx, e, row)?.is_null() != *not,
        Cond::In(e, list, not) => {
            let v = eval(ctx, e, row)?;
            let mut found = false;
            for item in list {
                if compare(&v, &eval(ctx, item, row)?) == Some(Ordering::Equal) {
                    found = true;
                }
            }
            !v.is_null() && (found != *not)
        }
        Cond::Cmp(l, op, r) => {
            let ord = compare(&eval(ctx, l, row)?, &eval(ctx, r, row)?);
            match (op.as_str(), ord) {
                (_, None) => false,
                ("=", Some(o)) => o == Ordering::Equal,
                ("<>", Some(o)) => o != Ordering::Equal,
                ("<", Some(o)) => o == Ordering::Less,
                ("<=", Some(o)) => o != Ordering::Greater,
                (">", Some(o)) => o == Ordering::Greater,
                (">=", Some(o)) => o != Ordering::Less,
                _ => false,
            }
        }
    })
}

/// The column type a value implies (for expressions without a table).
pub fn type_of(v: &Value) -> SqlType {
    match v {
        Value::Null | Value::NVarChar(_) | Value::Binary(_) => SqlType::NVarChar,
        Value::Bit(_) => SqlType::Bit,
        Value::Int(_) => SqlType::Int,
        Value::BigInt(_) => SqlType::BigInt,
        Value::Float(_) => SqlType::Float,
        Value::Decimal { scale, .. } => SqlType::Decimal {
            precision: 38,
            scale: *scale,
        },
        Value::Guid(_) => SqlType::Guid,
        Value::DateTime(_) => SqlType::DateTime,
        Value::DateTime2(_) => SqlType::DateTime2,
    }
}

fn fit(v: Value) -> Value {
    match v {
        Value::Binary(b) => Value::text(Value::Binary(b).to_string()),
        other => other,
    }
}

fn item_name(e: &Expr, alias: &Option<String>) -> String {
    match (alias, e) {
        (Some(a), _) => a.clone(),
        (None, Expr::Col(c)) => c.clone(),
        _ => String::new(),
    }
}

fn select_exec(ctx: &mut Ctx<'_>, s: &Select) -> Result<ResultSet, ServerMessage> {
    let Some(from) = &s.from else {
        for c in &s.conds {
            if !cond_holds(ctx, c, None)? {
                let cols = s
                    .items
                    .iter()
                    .map(|(e, a)| Ok(Column::new(item_name(e, a), type_of(&eval(ctx, e, None)?))))
                    .collect::<Result<Vec<_>, ServerMessage>>()?;
                return Ok(ResultSet::new(cols));
            }
        }
        let mut cols = Vec::new();
        let mut row = Vec::new();
        for (e, a) in &s.items {
            let v = fit(eval(ctx, e, None)?);
            cols.push(Column::new(item_name(e, a), type_of(&v)));
            row.push(v);
        }
        let mut rs = ResultSet::new(cols);
        rs.push(row);
        return Ok(rs);
    };
    let Some(table) = tables::table(ctx, from) else {
        return Err(ServerMessage::error(
            208,
            format!("Invalid object name '{}'.", from.written()),
        ));
    };
    let mut rows = Vec::new();
    for r in &table.rows {
        let mut keep = true;
        for c in &s.conds {
            if !cond_holds(ctx, c, Some((&table.columns, r)))? {
                keep = false;
                break;
            }
        }
        if keep {
            rows.push(r.clone());
        }
    }
    for (col, desc) in s.order.iter().rev() {
        let Some(i) = table
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(col))
        else {
            return Err(ServerMessage::error(
                207,
                format!("Invalid column name '{col}'."),
            ));
        };
        rows.sort_by(|a, b| {
            let o = match (&a[i], &b[i]) {
                (Value::Null, Value::Null) => Ordering::Equal,
                (Value::Null, _) => Ordering::Less,
                (_, Value::Null) => Ordering::Greater,
                (x, y) => compare(x, y).unwrap_or(Ordering::Equal),
            };
            if *desc {
                o.reverse()
            } else {
                o
            }
        });
    }
    // COUNT(*) makes a one-row aggregate.
    let is_count = |e: &Expr| matches!(e, Expr::Call(f, a) if f == "count" && a.len() == 1);
    if s.items.iter().any(|(e, _)| is_count(e)) {
        let mut cols = Vec::new();
        let mut row = Vec::new();
        for (e, a) in &s.items {
            if is_count(e) {
                cols.push(Column::new(item_name(e, a), SqlType::Int));
                row.push(Value::Int(rows.len() as i32));
            } else {
                return Err(ServerMessage::error(
                    8120,
                    "Column is invalid in the select list because it is not contained in either an aggregate function or the GROUP BY clause.",
                ));
            }
        }
        let mut rs = ResultSet::new(cols);
        rs.push(row);
        return Ok(rs);
    }
    if let Some(n) = s.top {
        rows.truncate(n);
    }
    // Projection.
    let mut cols = Vec::new();
    enum Src {
        Col(usize),
        Expr(usize),
    }
    let mut srcs = Vec::new();
    for (i, (e, a)) in s.items.iter().enumerate() {
        match e {
            Expr::Star => {
                for (j, c) in table.columns.iter().enumerate() {
                    cols.push(c.clone());
                    srcs.push(Src::Col(j));
                }
            }
            Expr::Col(name) => {
                let Some(j) = table
                    .columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name))
                else {
                    return Err(ServerMessage::error(
                        207,
                        format!("Invalid column name '{name}'."),
                    ));
                };
                let mut c = table.columns[j].clone();
                if let Some(a) = a {
                    c.name = a.clone();
                }
                cols.push(c);
                srcs.push(Src::Col(j));
            }
            other => {
                // Type from the first row, or from evaluating without a row.
                let sample = match rows.first() {
                    Some(r) => eval(ctx, other, Some((&table.columns, r)))?,
                    None => eval(ctx, other, None).unwrap_or(Value::Null),
                };
                cols.push(Column::new(item_name(other, a), type_of(&fit(sample))));
                srcs.push(Src::Expr(i));
            }
        }
    }
    let mut rs = ResultSet::new(cols);
    for r in &rows {
        let mut out = Vec::with_capacity(srcs.len());
        for src in &srcs {
            out.push(match src {
                Src::Col(j) => r[*j].clone(),
                Src::Expr(i) => fit(eval(ctx, &s.items[*i].0, Some((&table.columns, r)))?),
            });
        }
        rs.push(out);
    }
    Ok(rs)
}

/// Converts a RESTORE kind for RDS `@type`.
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
    fn a_batch_with_a_syntax_error_is_rejected_whole() {
        assert!(parse_batch("select 1; frobnicate the database").is_err());
        assert_eq!(
            parse_batch("SET NOCOUNT ON; SELECT 1 AS x").map(|s| s.len()),
            Ok(2)
        );
    }

    #[test]
    fn random_text_never_panics_the_parser() {
        let alphabet: Vec<char> =
            "selct frmwhe@P1[]]'N;.,()=*<>!-/ 0123 exec restore database log url disk with"
                .chars()
                .collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 60) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            let _ = parse_batch(&text);
        }
    }

    #[test]
    fn restore_options_are_parsed() {
        let stmts = parse_batch(
            "RESTORE DATABASE [Sales] FROM URL = @P1, URL = @P2 WITH NORECOVERY, CHECKSUM, STATS = 5",
        )
        .expect("parse");
        let Stmt::Restore(r) = &stmts[0] else {
            panic!("not a restore: {stmts:?}");
        };
        assert_eq!(r.database.last(), "Sales");
        assert_eq!(r.sources.len(), 2);
        let names: Vec<&str> = r.options.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["norecovery", "checksum", "stats"]);
    }
}
