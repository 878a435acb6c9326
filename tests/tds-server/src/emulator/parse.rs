//! Parsing a batch into the statement forms the emulator knows. A batch that does not parse
//! fails whole before anything runs, as on SQL Server.

use super::sql::{self, Cursor, Expr, ObjName, Tok};
use crate::protocol::ServerMessage;

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
    /// `BEGIN TRY ... END TRY BEGIN CATCH ... END CATCH`.
    Try {
        /// The TRY block.
        body: Vec<Stmt>,
        /// The CATCH block.
        catch: Vec<Stmt>,
    },
    /// `IF cond [AND cond ...] stmt [ELSE stmt]`.
    If {
        /// Conjunctive conditions.
        conds: Vec<Cond>,
        /// Run when they hold.
        then: Box<Stmt>,
        /// Run otherwise.
        otherwise: Option<Box<Stmt>>,
    },
    /// `BEGIN ... END`.
    Block(Vec<Stmt>),
    /// `THROW;` (re-raise in CATCH) or `THROW number, message, state;`.
    Throw(Option<(Expr, Expr, Expr)>),
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

/// A `WHERE` (or `IF`) condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `a = b`, `a <> b`, `a < b`, ...
    Cmp(Expr, String, Expr),
    /// `a [NOT] IN (...)`.
    In(Expr, Vec<Expr>, bool),
    /// `a IS [NOT] NULL`.
    IsNull(Expr, bool),
    /// `a [NOT] LIKE pattern` (`%`, `_`, `[set]`).
    Like(Expr, Expr, bool),
}

/// The database a `RESTORE` names.
#[derive(Debug, Clone, PartialEq)]
pub enum RestoreTarget {
    /// `[name]` or `name`.
    Name(ObjName),
    /// `@variable`.
    Var(String),
}

/// A parsed `RESTORE`.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreStmt {
    /// LOG rather than DATABASE.
    pub is_log: bool,
    /// Target database.
    pub database: RestoreTarget,
    /// `FROM URL` (rather than `DISK`/`TAPE`).
    pub from_url: bool,
    /// The devices' values (`FROM URL = x, URL = y` / `DISK = x`).
    pub sources: Vec<Expr>,
    /// WITH options other than MOVE, lower-cased names with optional values.
    pub options: Vec<(String, Option<Expr>)>,
    /// `WITH MOVE logical TO physical`, in order.
    pub moves: Vec<(Expr, Expr)>,
}

impl RestoreStmt {
    /// The database name when written as an identifier.
    pub fn named(&self) -> Option<&ObjName> {
        match &self.database {
            RestoreTarget::Name(n) => Some(n),
            RestoreTarget::Var(_) => None,
        }
    }
}

/// The `WITH` options of `RESTORE` in RESTORE Arguments (Transact-SQL), plus `RESTORE_OPTIONS`
/// and `RESTORE_OPTION` (both spellings appear in `[S3]`).
const RESTORE_OPTIONS: &[&str] = &[
    "recovery",
    "norecovery",
    "standby",
    "move",
    "replace",
    "restart",
    "restricted_user",
    "credential",
    "file",
    "password",
    "metadata_only",
    "snapshot",
    "dbname",
    "medianame",
    "mediapassword",
    "blocksize",
    "buffercount",
    "maxtransfersize",
    "checksum",
    "no_checksum",
    "stop_on_error",
    "continue_after_error",
    "stats",
    "rewind",
    "norewind",
    "unload",
    "nounload",
    "keep_replication",
    "keep_cdc",
    "filestream",
    "enable_broker",
    "error_broker_conversations",
    "new_broker",
    "stopat",
    "stopatmark",
    "stopbeforemark",
    "partial",
    "loadhistory",
    "restore_options",
    "restore_option",
];

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
    "with", "to", "on", "not", "in", "is", "like", "desc", "asc", "by", "else",
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
/// SQL Server's syntax errors (102, 105, 155, 156).
pub fn parse_batch(text: &str) -> Result<Vec<Stmt>, ServerMessage> {
    let toks = sql::tokenize(text)?;
    let mut c = Cursor::new(&toks);
    let mut out = Vec::new();
    let mut terminated = true;
    loop {
        while c.punct(';') {
            terminated = true;
        }
        if c.at_end() {
            break;
        }
        throw_needs_semicolon(&c, terminated)?;
        out.push(statement(&mut c)?);
        terminated = after_statement(&mut c)?;
    }
    rethrow_only_in_catch(&out, false)?;
    Ok(out)
}

/// `THROW;` outside a CATCH block is a compile error (10704, level 15).
fn rethrow_only_in_catch(stmts: &[Stmt], in_catch: bool) -> Result<(), ServerMessage> {
    for st in stmts {
        match st {
            Stmt::Throw(None) if !in_catch => {
                return Err(ServerMessage::error(10704, "To rethrow an error, a THROW statement must be used inside a CATCH block. Insert the THROW statement inside a CATCH block, or add error parameters to the THROW statement.").with_class(15));
            }
            Stmt::Try { body, catch } => {
                rethrow_only_in_catch(body, in_catch)?;
                rethrow_only_in_catch(catch, true)?;
            }
            Stmt::Block(b) => rethrow_only_in_catch(b, in_catch)?,
            Stmt::If {
                then, otherwise, ..
            } => {
                rethrow_only_in_catch(std::slice::from_ref(then), in_catch)?;
                if let Some(o) = otherwise {
                    rethrow_only_in_catch(std::slice::from_ref(o), in_catch)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the statement just parsed ended with `;` (the next one must start otherwise).
fn after_statement(c: &mut Cursor<'_>) -> Result<bool, ServerMessage> {
    if c.punct(';') {
        return Ok(true);
    }
    if !c.at_end() && !c.peek().is_some_and(starts_statement) {
        return Err(c.error_here());
    }
    Ok(false)
}

/// THROW: "The statement before the THROW statement must be followed by the semicolon (;)
/// statement terminator."
fn throw_needs_semicolon(c: &Cursor<'_>, terminated: bool) -> Result<(), ServerMessage> {
    if !terminated && c.peek().is_some_and(|t| t.is_kw("throw")) {
        return Err(c.error_here());
    }
    Ok(())
}

/// Statements up to `END` (`END TRY` / `END CATCH` when `word` is given), which is consumed.
fn block(c: &mut Cursor<'_>, word: Option<&str>) -> Result<Vec<Stmt>, ServerMessage> {
    let mut out = Vec::new();
    let mut terminated = true;
    loop {
        while c.punct(';') {
            terminated = true;
        }
        if c.at_end() {
            return Err(c.error_here());
        }
        if c.peek().is_some_and(|t| t.is_kw("end")) {
            match word {
                Some(w) if c.peek2().is_some_and(|t| t.is_kw(w)) => {
                    c.next_tok();
                    c.next_tok();
                    return Ok(out);
                }
                None => {
                    c.next_tok();
                    return Ok(out);
                }
                Some(_) => return Err(c.error_here()),
            }
        }
        throw_needs_semicolon(c, terminated)?;
        out.push(statement(c)?);
        terminated = after_statement(c)?;
    }
}

fn statement(c: &mut Cursor<'_>) -> Result<Stmt, ServerMessage> {
    if c.kw("exec") || c.kw("execute") {
        return exec_stmt(c);
    }
    if c.kw("select") {
        return select(c).map(Stmt::Select);
    }
    if c.kw("restore") {
        return restore_stmt(c).map(Stmt::Restore);
    }
    if c.kw("begin") {
        if c.kw("try") {
            let body = block(c, Some("try"))?;
            while c.punct(';') {}
            c.expect_kw("begin")?;
            c.expect_kw("catch")?;
            let catch = block(c, Some("catch"))?;
            return Ok(Stmt::Try { body, catch });
        }
        if c.peek().is_some_and(|t| t.is_kw("catch")) {
            return Err(c.error_here());
        }
        return block(c, None).map(Stmt::Block);
    }
    if c.kw("if") {
        let mut conds = vec![cond(c)?];
        while c.kw("and") {
            conds.push(cond(c)?);
        }
        let then = Box::new(statement(c)?);
        let save = c.peek().is_some_and(|t| t.is_kw("else"))
            || (c.peek() == Some(&Tok::Punct(';')) && c.peek2().is_some_and(|t| t.is_kw("else")));
        let otherwise = if save {
            c.punct(';');
            c.expect_kw("else")?;
            Some(Box::new(statement(c)?))
        } else {
            None
        };
        return Ok(Stmt::If {
            conds,
            then,
            otherwise,
        });
    }
    if c.kw("throw") {
        if c.at_stmt_end() {
            return Ok(Stmt::Throw(None));
        }
        let n = sql::expr(c)?;
        c.expect_punct(',')?;
        let m = sql::expr(c)?;
        c.expect_punct(',')?;
        let s = sql::expr(c)?;
        return Ok(Stmt::Throw(Some((n, m, s))));
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
        return declare(c);
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

fn exec_stmt(c: &mut Cursor<'_>) -> Result<Stmt, ServerMessage> {
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
            // A procedure argument is a constant, a variable or a bare word (read as a string);
            // SQL Server refuses expressions there.
            let value = match c.peek() {
                Some(Tok::Ident(w))
                    if !w.eq_ignore_ascii_case("null")
                        && c.peek2() != Some(&Tok::Punct('('))
                        && c.peek2() != Some(&Tok::Punct('.')) =>
                {
                    let w = w.clone();
                    c.next_tok();
                    Expr::Lit(crate::protocol::Value::text(w))
                }
                _ => sql::expr(c)?,
            };
            if matches!(value, Expr::Add(..) | Expr::Call(..)) {
                return Err(c.error_here());
            }
            let output = c.kw("output") || c.kw("out");
            args.push((name, value, output));
            if !c.punct(',') {
                break;
            }
        }
    }
    Ok(Stmt::Exec { proc, args })
}

fn declare(c: &mut Cursor<'_>) -> Result<Stmt, ServerMessage> {
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
    Ok(Stmt::Declare(vars))
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
    if c.kw("like") {
        return Ok(Cond::Like(left, sql::expr(c)?, not));
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

/// A value in RESTORE: a literal or a variable.
fn restore_value(c: &mut Cursor<'_>) -> Result<Expr, ServerMessage> {
    match c.peek() {
        Some(Tok::Str(_) | Tok::Var(_) | Tok::Num(_)) => sql::expr(c),
        _ => Err(c.error_here()),
    }
}

fn restore_stmt(c: &mut Cursor<'_>) -> Result<RestoreStmt, ServerMessage> {
    let is_log = if c.kw("log") {
        true
    } else {
        c.expect_kw("database")?;
        false
    };
    let database = match c.peek() {
        Some(Tok::Var(v)) if !v.starts_with("@@") => {
            let v = v.clone();
            c.next_tok();
            RestoreTarget::Var(v)
        }
        _ => RestoreTarget::Name(c.name()?),
    };
    let mut sources = Vec::new();
    let mut from_url = false;
    if c.kw("from") {
        loop {
            if c.kw("url") {
                from_url = true;
            } else if !(c.kw("disk") || c.kw("tape")) {
                return Err(c.error_here());
            }
            c.expect_punct('=')?;
            sources.push(restore_value(c)?);
            if !c.punct(',') {
                break;
            }
        }
    }
    let mut options = Vec::new();
    let mut moves = Vec::new();
    if c.kw("with") {
        loop {
            let (name, written) = match c.next_tok() {
                Some(Tok::Ident(s)) => (s.to_lowercase(), s.clone()),
                other => return Err(sql::syntax_error_near(other)),
            };
            if !RESTORE_OPTIONS.contains(&name.as_str()) {
                return Err(ServerMessage::error(
                    155,
                    format!("'{written}' is not a recognized RESTORE option."),
                )
                .with_class(15));
            }
            if name == "move" {
                let from = restore_value(c)?;
                c.expect_kw("to")?;
                let to = restore_value(c)?;
                moves.push((from, to));
            } else if c.punct('=') {
                options.push((name, Some(restore_value(c)?)));
            } else if c.punct('(') {
                // FILESTREAM ( DIRECTORY_NAME = x ).
                let mut depth = 1;
                while depth > 0 {
                    match c.next_tok() {
                        Some(Tok::Punct('(')) => depth += 1,
                        Some(Tok::Punct(')')) => depth -= 1,
                        Some(_) => {}
                        None => return Err(c.error_here()),
                    }
                }
                options.push((name, None));
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
        from_url,
        sources,
        options,
        moves,
    })
}

/// The database names written as identifiers in `RESTORE`, `DROP DATABASE` and `USE`, including
/// inside blocks.
pub fn database_names(stmts: &[Stmt]) -> Vec<ObjName> {
    let mut out = Vec::new();
    for st in stmts {
        match st {
            Stmt::Restore(r) => out.extend(r.named().cloned()),
            Stmt::DropDatabase { names, .. } => out.extend(names.iter().cloned()),
            Stmt::Use(n) => out.push(n.clone()),
            Stmt::Try { body, catch } => {
                out.extend(database_names(body));
                out.extend(database_names(catch));
            }
            Stmt::Block(b) => out.extend(database_names(b)),
            Stmt::If {
                then, otherwise, ..
            } => {
                out.extend(database_names(std::slice::from_ref(then)));
                if let Some(o) = otherwise {
                    out.extend(database_names(std::slice::from_ref(o)));
                }
            }
            _ => {}
        }
    }
    out
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
            "selct frmwhe@P1[]]'N;.,()=*<>!-/+ 0123 exec restore database log url disk with begin try end catch if throw"
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
            "RESTORE DATABASE [Sales] FROM URL = @P1, URL = @P2 WITH NORECOVERY, CHECKSUM, MOVE N'a' TO @p, STATS = 5, RESTORE_OPTIONS = '{\"s3\": {\"region\":\"eu-west-1\"}}'",
        )
        .expect("parse");
        let Stmt::Restore(r) = &stmts[0] else {
            panic!("not a restore: {stmts:?}");
        };
        assert_eq!(r.named().map(ObjName::last), Some("Sales"));
        assert!(r.from_url);
        assert_eq!(r.sources.len(), 2);
        assert_eq!(r.moves.len(), 1);
        let names: Vec<&str> = r.options.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec!["norecovery", "checksum", "stats", "restore_options"]
        );
    }

    #[test]
    fn an_unknown_restore_option_is_155() {
        let e = parse_batch("RESTORE DATABASE [a] FROM DISK = N'x' WITH REGION = 'eu-west-1'")
            .expect_err("refused");
        assert_eq!(e.number, 155);
        assert_eq!(e.message, "'REGION' is not a recognized RESTORE option.");
    }

    #[test]
    fn try_catch_if_and_throw_parse_into_blocks() {
        let stmts = parse_batch(
            "DECLARE @job_id uniqueidentifier; BEGIN TRY EXEC msdb.dbo.sp_add_job @job_name=@P1, @job_id=@job_id OUTPUT; END TRY BEGIN CATCH IF @job_id IS NOT NULL EXEC msdb.dbo.sp_delete_job @job_id=@job_id; THROW; END CATCH; SELECT @job_id AS job_id",
        )
        .expect("parse");
        assert_eq!(stmts.len(), 3);
        let Stmt::Try { body, catch } = &stmts[1] else {
            panic!("{stmts:?}");
        };
        assert_eq!(body.len(), 1);
        assert!(matches!(catch[0], Stmt::If { .. }));
        assert_eq!(catch[1], Stmt::Throw(None));
        assert!(
            parse_batch("BEGIN TRY PRINT 1 END TRY BEGIN CATCH PRINT 2 THROW; END CATCH").is_err(),
            "the statement before THROW needs its semicolon"
        );
    }

    #[test]
    fn procedure_arguments_cannot_be_expressions() {
        assert!(parse_batch("EXEC msdb.dbo.sp_add_job @job_name = N'a' + N'b'").is_err());
        assert!(parse_batch(
            "EXEC msdb.dbo.sp_add_jobstep @job_name = N'a', @subsystem = TSQL, @step_name = N's'"
        )
        .is_ok());
    }
}
