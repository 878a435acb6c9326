//! Values, requests and replies exchanged between the TDS server and its [`Handler`](super::Handler).

use std::fmt;
use time::PrimitiveDateTime;

/// A SQL value as it arrived in an RPC parameter or as it is sent in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL` (of any type).
    Null,
    /// `bit`.
    Bit(bool),
    /// `tinyint`, `smallint` or `int`.
    Int(i32),
    /// `bigint`.
    BigInt(i64),
    /// `real` or `float`.
    Float(f64),
    /// `decimal`/`numeric`: `value / 10^scale`.
    Decimal {
        /// The unscaled value.
        value: i128,
        /// Digits after the decimal point.
        scale: u8,
    },
    /// `nvarchar`, `nchar`, `varchar`, `char` (all kept as Rust strings).
    NVarChar(String),
    /// `varbinary`/`binary`.
    Binary(Vec<u8>),
    /// `uniqueidentifier`, in wire byte order.
    Guid([u8; 16]),
    /// `datetime` / `smalldatetime`.
    DateTime(PrimitiveDateTime),
    /// `datetime2` / `date`.
    DateTime2(PrimitiveDateTime),
}

impl Value {
    /// Builds an `NVarChar` value.
    pub fn text(s: impl Into<String>) -> Self {
        Value::NVarChar(s.into())
    }

    /// `true` for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string inside an `NVarChar` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::NVarChar(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a signed integer, for integer, bit and integral decimal values.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(i64::from(*v)),
            Value::BigInt(v) => Some(*v),
            Value::Bit(b) => Some(i64::from(*b)),
            Value::Decimal { value, scale: 0 } => i64::try_from(*value).ok(),
            Value::NVarChar(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a boolean (`bit`, or an integer 0/1).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bit(b) => Some(*b),
            other => other.as_i64().map(|v| v != 0),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "NULL"),
            Value::Bit(b) => write!(f, "{}", u8::from(*b)),
            Value::Int(v) => write!(f, "{v}"),
            Value::BigInt(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Decimal { value, scale } => {
                if *scale == 0 {
                    write!(f, "{value}")
                } else {
                    let s = value.unsigned_abs().to_string();
                    let scale = usize::from(*scale);
                    let padded = format!("{s:0>width$}", width = scale + 1);
                    let (int, frac) = padded.split_at(padded.len() - scale);
                    let sign = if *value < 0 { "-" } else { "" };
                    write!(f, "{sign}{int}.{frac}")
                }
            }
            Value::NVarChar(s) => write!(f, "N'{}'", s.replace('\'', "''")),
            Value::Binary(b) => {
                write!(f, "0x")?;
                b.iter().try_for_each(|x| write!(f, "{x:02X}"))
            }
            Value::Guid(g) => g.iter().try_for_each(|x| write!(f, "{x:02x}")),
            Value::DateTime(d) | Value::DateTime2(d) => write!(f, "'{d}'"),
        }
    }
}

/// The column types the server can send in a result set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `int` (sent as INTN, 4 bytes).
    Int,
    /// `bigint` (sent as INTN, 8 bytes).
    BigInt,
    /// `bit` (sent as BITN).
    Bit,
    /// `float` (sent as FLOATN, 8 bytes).
    Float,
    /// `decimal(precision, scale)` (sent as NUMERICN, 17 bytes).
    Decimal {
        /// Total digits (1..=38).
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// `nvarchar(4000)`, or `nvarchar(max)` when a value in the result set is longer.
    NVarChar,
    /// `uniqueidentifier`.
    Guid,
    /// `datetime` (sent as DATETIMEN, 8 bytes).
    DateTime,
    /// `datetime2(7)`.
    DateTime2,
}

/// One column of a result set.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column name ("" for an unnamed expression).
    pub name: String,
    /// Its type.
    pub ty: SqlType,
}

impl Column {
    /// A column with a name and a type.
    pub fn new(name: impl Into<String>, ty: SqlType) -> Self {
        Self {
            name: name.into(),
            ty,
        }
    }
}

/// A result set: columns and rows (every row has one value per column; NULLs allowed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultSet {
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows.
    pub rows: Vec<Vec<Value>>,
}

impl ResultSet {
    /// An empty result set with these columns.
    pub fn new(columns: Vec<Column>) -> Self {
        Self {
            columns,
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }
}

/// An ERROR or INFO message, laid out like SQL Server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    /// Error number (e.g. 2812).
    pub number: u32,
    /// State.
    pub state: u8,
    /// Class (severity): 0–10 informational, 11+ errors.
    pub class: u8,
    /// The message text.
    pub message: String,
    /// Server name.
    pub server: String,
    /// Procedure name ("" when none).
    pub procedure: String,
    /// Line number.
    pub line: u32,
}

impl ServerMessage {
    /// An error with class 16, state 1, line 1.
    pub fn error(number: u32, message: impl Into<String>) -> Self {
        Self {
            number,
            state: 1,
            class: 16,
            message: message.into(),
            server: String::new(),
            procedure: String::new(),
            line: 1,
        }
    }

    /// An informational message (class 0).
    pub fn info(number: u32, message: impl Into<String>) -> Self {
        Self {
            class: 0,
            ..Self::error(number, message)
        }
    }

    /// Sets the state.
    pub fn with_state(mut self, state: u8) -> Self {
        self.state = state;
        self
    }

    /// Sets the class (severity).
    pub fn with_class(mut self, class: u8) -> Self {
        self.class = class;
        self
    }

    /// Sets the procedure name.
    pub fn with_procedure(mut self, procedure: impl Into<String>) -> Self {
        self.procedure = procedure.into();
        self
    }

    /// Sets the line number.
    pub fn with_line(mut self, line: u32) -> Self {
        self.line = line;
        self
    }
}

/// One statement's outcome inside a [`Reply`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyPart {
    /// A result set (followed by a DONE with its row count).
    Rows(ResultSet),
    /// A statement without a result set that affected this many rows (`None`: no count).
    Done(Option<u64>),
    /// An error, ending its statement (ERROR token then a DONE with the error bit).
    Error(ServerMessage),
    /// An informational message (INFO token; no DONE of its own).
    Info(ServerMessage),
}

/// What the server sends back for one request: statements' outcomes in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    /// The parts, in order.
    pub parts: Vec<ReplyPart>,
}

impl Reply {
    /// A reply with no parts (the client sees a bare final DONE).
    pub fn empty() -> Self {
        Self::default()
    }

    /// One result set.
    pub fn rows(rs: ResultSet) -> Self {
        Self {
            parts: vec![ReplyPart::Rows(rs)],
        }
    }

    /// One error.
    pub fn error(msg: ServerMessage) -> Self {
        Self {
            parts: vec![ReplyPart::Error(msg)],
        }
    }

    /// One "n rows affected".
    pub fn row_count(n: u64) -> Self {
        Self {
            parts: vec![ReplyPart::Done(Some(n))],
        }
    }

    /// Appends a part.
    pub fn push(&mut self, part: ReplyPart) {
        self.parts.push(part);
    }

    /// Appends all parts of another reply.
    pub fn extend(&mut self, other: Reply) {
        self.parts.extend(other.parts);
    }

    /// `true` when any part is an error.
    pub fn has_error(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, ReplyPart::Error(_)))
    }
}

/// How a request reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// A SQL batch (tiberius `simple_query`, `execute` without parameters is still RPC).
    Batch,
    /// An RPC to `sp_executesql` (tiberius `query`/`execute`).
    ExecuteSql,
    /// An RPC to another procedure (by name, or by well-known id as `#<id>`); `sql` is `EXEC <name>`.
    Procedure(String),
}

/// A decoded client request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// How it arrived.
    pub kind: RequestKind,
    /// The statement text (batch text, or `sp_executesql`'s first parameter).
    pub sql: String,
    /// Named parameters in order (`@P1`, `@P2`, ... for tiberius).
    pub params: Vec<(String, Value)>,
}

impl Request {
    /// The parameter with this name (case-insensitive, `@` optional).
    pub fn param(&self, name: &str) -> Option<&Value> {
        let want = name.trim_start_matches('@');
        self.params
            .iter()
            .find(|(n, _)| n.trim_start_matches('@').eq_ignore_ascii_case(want))
            .map(|(_, v)| v)
    }
}

/// What the server knows about a logged-in connection; handlers may keep notes in it.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// Server process id given to this connection.
    pub spid: u16,
    /// Login name from LOGIN7.
    pub user: String,
    /// Current database (LOGIN7's, or `master`).
    pub database: String,
    /// Application name from LOGIN7.
    pub app_name: String,
    /// Client host name from LOGIN7.
    pub host_name: String,
    /// Negotiated packet size.
    pub packet_size: u32,
    /// Free-form notes a handler may keep between requests of this connection.
    pub notes: Vec<(String, String)>,
}
