//! Expressions, built-in functions, conditions and the `SELECT` engine over the virtual tables.

use super::exec::Ctx;
use super::parse::{Cond, Select};
use super::sql::{self, Expr, Tok};
use super::tables;
use crate::protocol::{Column, ResultSet, ServerMessage, SqlType, Value};
use std::cmp::Ordering;

/// Evaluates an expression, with an optional row (columns, values) for column references.
///
/// # Errors
/// 137 unknown variable, 207 unknown column, 195 unknown function, 245 a failed conversion.
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
        Expr::Add(l, r) => add(eval(ctx, l, row)?, eval(ctx, r, row)?),
    }
}

/// `a + b`: concatenation of strings, addition of numbers (a string beside a number converts).
fn add(a: Value, b: Value) -> Result<Value, ServerMessage> {
    let number = |v: &Value| -> Result<i64, ServerMessage> {
        match v {
            Value::NVarChar(s) => s.trim().parse().map_err(|_| {
                ServerMessage::error(
                    245,
                    format!(
                        "Conversion failed when converting the nvarchar value '{s}' to data type int."
                    ),
                )
            }),
            other => Ok(other.as_i64().unwrap_or_default()),
        }
    };
    Ok(match (&a, &b) {
        (Value::Null, _) | (_, Value::Null) => Value::Null,
        (Value::NVarChar(x), Value::NVarChar(y)) => Value::text(format!("{x}{y}")),
        (Value::Float(x), other) | (other, Value::Float(x)) => {
            Value::Float(x + number(other)? as f64)
        }
        _ => {
            let sum = number(&a)? + number(&b)?;
            i32::try_from(sum).map_or(Value::BigInt(sum), Value::Int)
        }
    })
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
    let caught = |f: fn(&ServerMessage) -> Value| ctx.caught.as_ref().map_or(Value::Null, f);
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
                "instancedefaultdatapath" => Value::text(s.default_data_path.clone()),
                "instancedefaultlogpath" => Value::text(s.default_log_path.clone()),
                "instancedefaultbackuppath" => Value::text(s.default_backup_path.clone()),
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
        "error_number" => Ok(caught(|e| Value::Int(e.number as i32))),
        "error_message" => Ok(caught(|e| Value::text(e.message.clone()))),
        "error_severity" => Ok(caught(|e| Value::Int(i32::from(e.class)))),
        "error_state" => Ok(caught(|e| Value::Int(i32::from(e.state)))),
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

/// `LIKE` with `%` (any run), `_` (one character) and `[abc]`/`[a-z]`/`[^x]` sets,
/// case-insensitively (the default collation).
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    like_at(&t, &p)
}

fn like_at(t: &[char], p: &[char]) -> bool {
    let Some(&first) = p.first() else {
        return t.is_empty();
    };
    match first {
        '%' => (0..=t.len()).any(|i| like_at(&t[i..], &p[1..])),
        '_' => !t.is_empty() && like_at(&t[1..], &p[1..]),
        '[' => {
            let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|i| i + 1) else {
                return t.first() == Some(&'[') && like_at(&t[1..], &p[1..]);
            };
            let Some(&ch) = t.first() else {
                return false;
            };
            let set = &p[1..end];
            let (negate, set) = match set.first() {
                Some('^') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= (set[i]..=set[i + 2]).contains(&ch);
                    i += 3;
                } else {
                    hit |= set[i] == ch;
                    i += 1;
                }
            }
            hit != negate && like_at(&t[1..], &p[end + 1..])
        }
        c => t.first() == Some(&c) && like_at(&t[1..], &p[1..]),
    }
}

/// Whether a condition holds (NULL never matches).
///
/// # Errors
/// Evaluation errors.
pub fn cond_holds(
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
        Cond::Like(e, p, not) => match (eval(ctx, e, row)?, eval(ctx, p, row)?) {
            (Value::Null, _) | (_, Value::Null) => false,
            (v, p) => {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                let pattern = p.as_str().map_or_else(|| p.to_string(), str::to_string);
                like(&text, &pattern) != *not
            }
        },
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

fn is_aggregate(e: &Expr) -> bool {
    matches!(e, Expr::Call(f, a) if matches!(f.as_str(), "count" | "max" | "min") && a.len() == 1)
}

/// A one-row aggregate (`COUNT(*)`, `COUNT(x)`, `MAX(x)`, `MIN(x)`) over the selected rows.
fn aggregate(
    ctx: &Ctx<'_>,
    s: &Select,
    table: &str,
    columns: &[Column],
    rows: &[Vec<Value>],
) -> Result<ResultSet, ServerMessage> {
    let mut cols = Vec::new();
    let mut out = Vec::new();
    for (e, a) in &s.items {
        let (Expr::Call(f, args), true) = (e, is_aggregate(e)) else {
            let column = match e {
                Expr::Col(c) => c.clone(),
                _ => item_name(e, a),
            };
            return Err(ServerMessage::error(
                8120,
                format!("Column '{table}.{column}' is invalid in the select list because it is not contained in either an aggregate function or the GROUP BY clause."),
            ));
        };
        let arg = &args[0];
        let mut values = Vec::new();
        if *arg != Expr::Star {
            for r in rows {
                let v = eval(ctx, arg, Some((columns, r)))?;
                if !v.is_null() {
                    values.push(v);
                }
            }
        }
        let (ty, v) =
            match f.as_str() {
                "count" => {
                    let n = if *arg == Expr::Star {
                        rows.len()
                    } else {
                        values.len()
                    };
                    (SqlType::Int, Value::Int(n as i32))
                }
                f => {
                    let pick = if f == "max" {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    };
                    let best = values.into_iter().reduce(|x, y| {
                        if compare(&y, &x) == Some(pick) {
                            y
                        } else {
                            x
                        }
                    });
                    let ty = match arg {
                        Expr::Col(name) => columns
                            .iter()
                            .find(|c| c.name.eq_ignore_ascii_case(name))
                            .map(|c| c.ty)
                            .ok_or_else(|| {
                                ServerMessage::error(207, format!("Invalid column name '{name}'."))
                            })?,
                        _ => best.as_ref().map_or(SqlType::NVarChar, type_of),
                    };
                    (ty, best.unwrap_or(Value::Null))
                }
            };
        cols.push(Column::new(item_name(e, a), ty));
        out.push(v);
    }
    let mut rs = ResultSet::new(cols);
    rs.push(out);
    Ok(rs)
}

/// Runs a `SELECT`.
///
/// # Errors
/// 208 unknown table, 207 unknown column, 8120 a column beside an aggregate, the table's own
/// refusal (e.g. 300 without VIEW SERVER STATE), evaluation errors.
pub fn select_exec(ctx: &Ctx<'_>, s: &Select) -> Result<ResultSet, ServerMessage> {
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
    let Some(table) = tables::table(ctx, from)? else {
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
    if s.items.iter().any(|(e, _)| is_aggregate(e)) {
        return aggregate(ctx, s, from.last(), &table.columns, &rows);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_percent_underscore_and_sets() {
        assert!(like("s3://host/bucket", "s3://%"));
        assert!(like("S3://HOST", "s3://%"));
        assert!(!like("https://x", "s3://%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abbc", "a_c"));
        assert!(like("SQLAgent - Job invocation engine", "SQLAgent - %"));
        assert!(like("b", "[a-c]"));
        assert!(!like("b", "[^a-c]"));
        assert!(like("", "%"));
    }
}
