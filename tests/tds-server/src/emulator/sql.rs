//! A small T-SQL tokenizer and cursor, enough to recognise the statement forms the emulator
//! understands, plus [`normalise`] (case-insensitive, whitespace-collapsed text).

use crate::protocol::{ServerMessage, Value};

/// One T-SQL token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An unquoted identifier or keyword, as written.
    Ident(String),
    /// A `[bracketed]` or `"quoted"` identifier, unescaped.
    Quoted(String),
    /// A string literal (`'x'` or `N'x'`), unescaped.
    Str(String),
    /// A numeric literal.
    Num(String),
    /// A variable or parameter (`@P1`, `@@VERSION`), as written.
    Var(String),
    /// Punctuation or an operator character.
    Punct(char),
}

impl Tok {
    /// `true` when this is the unquoted keyword `kw` (case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    /// How the token appears in SQL Server's "Incorrect syntax near" message.
    pub fn display(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Num(s) | Tok::Var(s) => s.clone(),
            Tok::Quoted(s) => s.clone(),
            Tok::Str(s) => s.clone(),
            Tok::Punct(c) => c.to_string(),
        }
    }
}

/// Tokenizes T-SQL; comments are dropped.
///
/// # Errors
/// SQL Server's 105 for an unclosed quotation mark, 102 for a stray character.
pub fn tokenize(sql: &str) -> Result<Vec<Tok>, ServerMessage> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || ((c == 'N' || c == 'n') && chars.get(i + 1) == Some(&'\'')) {
            if c != '\'' {
                i += 1;
            }
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(ServerMessage::error(
                            105,
                            format!("Unclosed quotation mark after the character string '{s}'."),
                        )
                        .with_class(15))
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c == '[' || c == '"' {
            let close = if c == '[' { ']' } else { '"' };
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(ServerMessage::error(
                            105,
                            format!("Unclosed quotation mark after the character string '{s}'."),
                        )
                        .with_class(15))
                    }
                    Some(ch) if *ch == close && chars.get(i + 1) == Some(&close) => {
                        s.push(close);
                        i += 2;
                    }
                    Some(ch) if *ch == close => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Quoted(s));
        } else if c == '@' {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '#' | '$'))
            {
                i += 1;
            }
            out.push(Tok::Var(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' || c == '#' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '#' | '$' | '@'))
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if ",.();=*<>!+-/%".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else {
            return Err(
                ServerMessage::error(102, format!("Incorrect syntax near '{c}'.")).with_class(15),
            );
        }
    }
    Ok(out)
}

/// Case-insensitive, whitespace-collapsed text of a statement: keywords and identifiers
/// lower-cased, `[quoted]` identifiers bracketed, literals kept as written (`N'...'`), comments dropped.
/// Falls back to lower-casing and collapsing whitespace when the text does not tokenize.
pub fn normalise(sql: &str) -> String {
    match tokenize(sql) {
        Ok(toks) => {
            let mut out = String::new();
            for (i, t) in toks.iter().enumerate() {
                let piece = match t {
                    Tok::Ident(s) | Tok::Var(s) | Tok::Num(s) => s.to_lowercase(),
                    Tok::Quoted(s) => format!("[{}]", s.to_lowercase().replace(']', "]]")),
                    Tok::Str(s) => format!("'{}'", s.replace('\'', "''")),
                    Tok::Punct(c) => c.to_string(),
                };
                let glue = matches!(t, Tok::Punct('.' | ')' | ',' | '('))
                    || matches!(toks.get(i.wrapping_sub(1)), Some(Tok::Punct('.' | '(')));
                if !out.is_empty() && !glue {
                    out.push(' ');
                }
                out.push_str(&piece);
            }
            out
        }
        Err(_) => sql
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    }
}

/// A possibly multi-part object name (`msdb.dbo.rds_task_status`, `[db]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjName {
    /// The parts, unescaped; an omitted part (`msdb..x`) is "".
    pub parts: Vec<String>,
    /// Whether each part was quoted.
    pub quoted: Vec<bool>,
}

impl ObjName {
    /// The last part (the object itself).
    pub fn last(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or_default()
    }

    /// Lower-cased dotted name with `master.` dropped for `sys` objects and `dbo` filled in.
    pub fn canonical(&self) -> String {
        let mut parts: Vec<String> = self.parts.iter().map(|p| p.to_lowercase()).collect();
        if parts.len() == 3 && parts[1].is_empty() {
            parts[1] = "dbo".to_string();
        }
        if parts.len() == 3 && parts[0] == "master" && parts[1] == "sys" {
            parts.remove(0);
        }
        parts.join(".")
    }

    /// The name as written back in messages (`a.b.c`).
    pub fn written(&self) -> String {
        self.parts.join(".")
    }
}

/// A cursor over tokens.
#[derive(Debug)]
pub struct Cursor<'a> {
    toks: &'a [Tok],
    pos: usize,
}

/// The 102 error SQL Server gives near a token (or at the end of the text).
pub fn syntax_error_near(tok: Option<&Tok>) -> ServerMessage {
    let near = tok.map(Tok::display).unwrap_or_default();
    ServerMessage::error(102, format!("Incorrect syntax near '{near}'.")).with_class(15)
}

impl<'a> Cursor<'a> {
    /// A cursor at the first token.
    pub fn new(toks: &'a [Tok]) -> Self {
        Self { toks, pos: 0 }
    }

    /// The next token without consuming it.
    pub fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos)
    }

    /// The token after the next.
    pub fn peek2(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos + 1)
    }

    /// Consumes and returns the next token.
    pub fn next_tok(&mut self) -> Option<&'a Tok> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// `true` at the end of the tokens.
    pub fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }

    /// `true` at the end of a statement (`;` or end of text).
    pub fn at_stmt_end(&self) -> bool {
        matches!(self.peek(), None | Some(Tok::Punct(';')))
    }

    /// Consumes the keyword `kw` if it is next.
    pub fn kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `c` if it is next.
    pub fn punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The 102 error near the next token.
    pub fn error_here(&self) -> ServerMessage {
        syntax_error_near(self.peek().or(self.toks.last()))
    }

    /// Requires the keyword `kw`.
    ///
    /// # Errors
    /// 102 near the next token.
    pub fn expect_kw(&mut self, kw: &str) -> Result<(), ServerMessage> {
        if self.kw(kw) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    /// Requires `c`.
    ///
    /// # Errors
    /// 102 near the next token.
    pub fn expect_punct(&mut self, c: char) -> Result<(), ServerMessage> {
        if self.punct(c) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    /// Reads a possibly multi-part name.
    ///
    /// # Errors
    /// 102 when no name is next.
    pub fn name(&mut self) -> Result<ObjName, ServerMessage> {
        let mut parts = Vec::new();
        let mut quoted = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Ident(s)) => {
                    parts.push(s.clone());
                    quoted.push(false);
                    self.pos += 1;
                }
                Some(Tok::Quoted(s)) => {
                    parts.push(s.clone());
                    quoted.push(true);
                    self.pos += 1;
                }
                Some(Tok::Punct('.')) if !parts.is_empty() => {
                    // An omitted part (`msdb..x`).
                    parts.push(String::new());
                    quoted.push(false);
                }
                _ => return Err(self.error_here()),
            }
            if !self.punct('.') {
                break;
            }
        }
        Ok(ObjName { parts, quoted })
    }
}

/// A scalar expression in the small subset the emulator evaluates.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// `@P1` or another variable.
    Var(String),
    /// `@@VERSION` and friends.
    Global(String),
    /// A column reference (last part of a possibly qualified name).
    Col(String),
    /// A function call `NAME(args)`.
    Call(String, Vec<Expr>),
    /// `*` (only as a select item or in `COUNT(*)`).
    Star,
    /// `a + b`: string concatenation or numeric addition.
    Add(Box<Expr>, Box<Expr>),
}

/// Parses one expression: operands joined by `+`.
///
/// # Errors
/// 102 when nothing recognisable is next.
pub fn expr(c: &mut Cursor<'_>) -> Result<Expr, ServerMessage> {
    let mut e = operand(c)?;
    while c.punct('+') {
        e = Expr::Add(Box::new(e), Box::new(operand(c)?));
    }
    Ok(e)
}

fn operand(c: &mut Cursor<'_>) -> Result<Expr, ServerMessage> {
    match c.peek() {
        Some(Tok::Str(s)) => {
            c.next_tok();
            Ok(Expr::Lit(Value::NVarChar(s.clone())))
        }
        Some(Tok::Num(n)) => {
            c.next_tok();
            Ok(Expr::Lit(number(n)))
        }
        Some(Tok::Punct('-')) if matches!(c.peek2(), Some(Tok::Num(_))) => {
            c.next_tok();
            let Some(Tok::Num(n)) = c.next_tok() else {
                return Err(c.error_here());
            };
            Ok(Expr::Lit(match number(n) {
                Value::Int(v) => Value::Int(-v),
                Value::BigInt(v) => Value::BigInt(-v),
                Value::Float(v) => Value::Float(-v),
                other => other,
            }))
        }
        Some(Tok::Var(v)) if v.starts_with("@@") => {
            c.next_tok();
            Ok(Expr::Global(v.to_lowercase()))
        }
        Some(Tok::Var(v)) => {
            c.next_tok();
            Ok(Expr::Var(v.clone()))
        }
        Some(Tok::Punct('*')) => {
            c.next_tok();
            Ok(Expr::Star)
        }
        Some(Tok::Punct('(')) => {
            c.next_tok();
            let e = expr(c)?;
            c.expect_punct(')')?;
            Ok(e)
        }
        Some(t) if t.is_kw("NULL") => {
            c.next_tok();
            Ok(Expr::Lit(Value::Null))
        }
        Some(Tok::Ident(_) | Tok::Quoted(_)) => {
            let name = c.name()?;
            let canonical = name.canonical();
            if canonical == "cast" && c.punct('(') {
                // CAST(expr AS type[(n[, m])]) becomes the call `cast:<type>`.
                let inner = expr(c)?;
                c.expect_kw("AS")?;
                let ty = c.name()?.last().to_lowercase();
                if c.punct('(') {
                    while !c.punct(')') {
                        if c.next_tok().is_none() {
                            return Err(c.error_here());
                        }
                    }
                }
                c.expect_punct(')')?;
                return Ok(Expr::Call(format!("cast:{ty}"), vec![inner]));
            }
            if c.punct('(') {
                let mut args = Vec::new();
                if !c.punct(')') {
                    loop {
                        args.push(expr(c)?);
                        if c.punct(')') {
                            break;
                        }
                        c.expect_punct(',')?;
                    }
                }
                Ok(Expr::Call(name.canonical(), args))
            } else {
                Ok(Expr::Col(name.last().to_string()))
            }
        }
        _ => Err(c.error_here()),
    }
}

fn number(n: &str) -> Value {
    if n.contains('.') {
        n.parse().map(Value::Float).unwrap_or(Value::Null)
    } else if let Ok(v) = n.parse::<i32>() {
        Value::Int(v)
    } else if let Ok(v) = n.parse::<i64>() {
        Value::BigInt(v)
    } else {
        n.parse::<i128>()
            .map(|value| Value::Decimal { value, scale: 0 })
            .unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_collapses_case_whitespace_and_comments() {
        assert_eq!(
            normalise("EXEC   msdb.dbo.rds_task_status\n  @db_name = @P1 -- poll\n"),
            "exec msdb.dbo.rds_task_status @db_name = @p1"
        );
        assert_eq!(
            normalise("SELECT name FROM [Sys].[Databases] WHERE name=N'It''s'"),
            "select name from [sys].[databases] where name = 'It''s'"
        );
    }

    #[test]
    fn bracketed_names_unescape_doubled_brackets() {
        let toks = tokenize("[a]]b].dbo.x").expect("tokens");
        let name = Cursor::new(&toks).name().expect("name");
        assert_eq!(name.parts, vec!["a]b", "dbo", "x"]);
        assert_eq!(name.quoted, vec![true, false, false]);
    }

    #[test]
    fn an_unclosed_literal_is_error_105() {
        assert_eq!(tokenize("select 'abc").map_err(|e| e.number), Err(105));
    }
}
