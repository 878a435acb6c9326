//! Encoding what the server sends: PRELOGIN reply, login tokens, and replies as TDS tokens.

use super::types::{Column, Reply, ReplyPart, ResultSet, ServerMessage, SqlType, Value};
use time::{Date, Month};

/// `SQL_Latin1_General_CP1_CI_AS`: LCID 0x0409 with flags 0xD0, sort id 52.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

const DONE_MORE: u16 = 0x01;
const DONE_ERROR: u16 = 0x02;
const DONE_COUNT: u16 = 0x10;

/// A reply could not be encoded because a value does not fit its column.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A row had a different number of values than the result set has columns.
    #[error("row {row} has {found} values for {expected} columns")]
    RowWidth {
        /// Row index.
        row: usize,
        /// Values found.
        found: usize,
        /// Columns declared.
        expected: usize,
    },
    /// A value's type does not match its column's type.
    #[error("column {column:?} of type {ty:?} cannot hold {value:?}")]
    TypeMismatch {
        /// Column name.
        column: String,
        /// Column type.
        ty: SqlType,
        /// The value.
        value: Value,
    },
}

/// Server version as major, minor, build (and sub-build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerVersion {
    /// Major version (16 for SQL Server 2022).
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u16,
}

/// A growing token buffer.
#[derive(Debug, Default)]
pub struct Tokens {
    buf: Vec<u8>,
}

fn put_utf16(buf: &mut Vec<u8>, s: &str) {
    for u in s.encode_utf16() {
        buf.extend_from_slice(&u.to_le_bytes());
    }
}

fn b_varchar(buf: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    buf.push(units.len() as u8);
    for u in units {
        buf.extend_from_slice(&u.to_le_bytes());
    }
}

fn us_varchar(buf: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(65535).collect();
    buf.extend_from_slice(&(units.len() as u16).to_le_bytes());
    for u in units {
        buf.extend_from_slice(&u.to_le_bytes());
    }
}

/// The PRELOGIN reply: VERSION, ENCRYPTION = NOT_SUP (0x02), INSTOPT, THREADID (empty), MARS off.
pub fn prelogin_reply(version: ServerVersion) -> Vec<u8> {
    let mut data = Vec::new();
    let mut table = Vec::new();
    let options: [(u8, Vec<u8>); 5] = [
        (0x00, {
            let mut v = vec![version.major, version.minor];
            v.extend_from_slice(&version.build.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
            v
        }),
        (0x01, vec![0x02]),
        (0x02, vec![0x00]),
        (0x03, vec![]),
        (0x04, vec![0x00]),
    ];
    let table_len = options.len() * 5 + 1;
    for (token, value) in options {
        let off = (table_len + data.len()) as u16;
        table.push(token);
        table.extend_from_slice(&off.to_be_bytes());
        table.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(&value);
    }
    table.push(0xFF);
    table.extend_from_slice(&data);
    table
}

impl Tokens {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn env_change(&mut self, body: &[u8]) {
        self.buf.push(0xE3);
        self.buf
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(body);
    }

    /// ENVCHANGE with two B_VARCHAR values (database = 1, packet size = 4, ...).
    pub fn env_change_text(&mut self, ty: u8, new: &str, old: &str) {
        let mut body = vec![ty];
        b_varchar(&mut body, new);
        b_varchar(&mut body, old);
        self.env_change(&body);
    }

    /// ENVCHANGE SQL collation (type 7).
    pub fn env_change_collation(&mut self) {
        let mut body = vec![7, 5];
        body.extend_from_slice(&COLLATION);
        body.push(0);
        self.env_change(&body);
    }

    /// LOGINACK for TDS 7.4.
    pub fn login_ack(&mut self, prog_name: &str, version: ServerVersion) {
        let mut body = vec![1];
        body.extend_from_slice(&0x7400_0004u32.to_be_bytes());
        b_varchar(&mut body, prog_name);
        body.push(version.major);
        body.push(version.minor);
        body.extend_from_slice(&version.build.to_be_bytes());
        self.buf.push(0xAD);
        self.buf
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&body);
    }

    /// ERROR (0xAA) or INFO (0xAB) by class.
    pub fn message(&mut self, msg: &ServerMessage, server: &str) {
        let mut body = Vec::new();
        body.extend_from_slice(&msg.number.to_le_bytes());
        body.push(msg.state);
        body.push(msg.class);
        us_varchar(&mut body, &msg.message);
        b_varchar(
            &mut body,
            if msg.server.is_empty() {
                server
            } else {
                &msg.server
            },
        );
        b_varchar(&mut body, &msg.procedure);
        body.extend_from_slice(&msg.line.to_le_bytes());
        self.buf.push(if msg.class > 10 { 0xAA } else { 0xAB });
        self.buf
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&body);
    }

    /// DONE (0xFD), DONEPROC (0xFE) or DONEINPROC (0xFF).
    pub fn done(&mut self, token: u8, status: u16, cur_cmd: u16, rows: u64) {
        self.buf.push(token);
        self.buf.extend_from_slice(&status.to_le_bytes());
        self.buf.extend_from_slice(&cur_cmd.to_le_bytes());
        self.buf.extend_from_slice(&rows.to_le_bytes());
    }

    /// RETURNSTATUS.
    pub fn return_status(&mut self, status: i32) {
        self.buf.push(0x79);
        self.buf.extend_from_slice(&status.to_le_bytes());
    }

    /// COLMETADATA then one ROW per row.
    ///
    /// # Errors
    /// [`EncodeError`] when a row does not fit the columns.
    pub fn result_set(&mut self, rs: &ResultSet) -> Result<(), EncodeError> {
        let long_text: Vec<bool> = rs
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.ty == SqlType::NVarChar
                    && rs.rows.iter().any(|row| {
                        matches!(row.get(i), Some(Value::NVarChar(s)) if s.encode_utf16().count() > 4000)
                    })
            })
            .collect();
        let mut meta = vec![0x81];
        meta.extend_from_slice(&(rs.columns.len() as u16).to_le_bytes());
        for (col, long) in rs.columns.iter().zip(&long_text) {
            meta.extend_from_slice(&0u32.to_le_bytes());
            meta.extend_from_slice(&0x0009u16.to_le_bytes()); // nullable, updateable unknown
            type_info(&mut meta, col.ty, *long);
            b_varchar(&mut meta, &col.name);
        }
        let mut rows = Vec::new();
        for (i, row) in rs.rows.iter().enumerate() {
            if row.len() != rs.columns.len() {
                return Err(EncodeError::RowWidth {
                    row: i,
                    found: row.len(),
                    expected: rs.columns.len(),
                });
            }
            rows.push(0xD1);
            for ((col, value), long) in rs.columns.iter().zip(row).zip(&long_text) {
                cell(&mut rows, col, value, *long)?;
            }
        }
        self.buf.extend_from_slice(&meta);
        self.buf.extend_from_slice(&rows);
        Ok(())
    }
}

fn type_info(buf: &mut Vec<u8>, ty: SqlType, long: bool) {
    match ty {
        SqlType::Int => buf.extend_from_slice(&[0x26, 4]),
        SqlType::BigInt => buf.extend_from_slice(&[0x26, 8]),
        SqlType::Bit => buf.extend_from_slice(&[0x68, 1]),
        SqlType::Float => buf.extend_from_slice(&[0x6D, 8]),
        SqlType::Decimal { precision, scale } => {
            buf.extend_from_slice(&[0x6C, 17, precision.clamp(1, 38), scale.min(precision)])
        }
        SqlType::NVarChar => {
            buf.push(0xE7);
            buf.extend_from_slice(&(if long { 0xFFFFu16 } else { 8000 }).to_le_bytes());
            buf.extend_from_slice(&COLLATION);
        }
        SqlType::Guid => buf.extend_from_slice(&[0x24, 16]),
        SqlType::DateTime => buf.extend_from_slice(&[0x6F, 8]),
        SqlType::DateTime2 => buf.extend_from_slice(&[0x2A, 7]),
    }
}

fn days_since(base_year: i32, d: Date) -> i64 {
    let base = Date::from_calendar_date(base_year, Month::January, 1).unwrap_or(Date::MIN);
    i64::from(d.to_julian_day() - base.to_julian_day())
}

fn cell(buf: &mut Vec<u8>, col: &Column, value: &Value, long: bool) -> Result<(), EncodeError> {
    let mismatch = || EncodeError::TypeMismatch {
        column: col.name.clone(),
        ty: col.ty,
        value: value.clone(),
    };
    match (col.ty, value) {
        (SqlType::NVarChar, Value::Null) if long => buf.extend_from_slice(&u64::MAX.to_le_bytes()),
        (SqlType::NVarChar, Value::Null) => buf.extend_from_slice(&0xFFFFu16.to_le_bytes()),
        (SqlType::Int | SqlType::BigInt | SqlType::Bit | SqlType::Float, Value::Null)
        | (SqlType::Guid | SqlType::DateTime | SqlType::DateTime2, Value::Null)
        | (SqlType::Decimal { .. }, Value::Null) => buf.push(0),
        (SqlType::Int, Value::Int(v)) => {
            buf.push(4);
            buf.extend_from_slice(&v.to_le_bytes());
        }
        (SqlType::BigInt, v @ (Value::Int(_) | Value::BigInt(_))) => {
            buf.push(8);
            buf.extend_from_slice(&v.as_i64().unwrap_or_default().to_le_bytes());
        }
        (SqlType::Bit, Value::Bit(b)) => buf.extend_from_slice(&[1, u8::from(*b)]),
        (SqlType::Float, v @ (Value::Float(_) | Value::Int(_) | Value::BigInt(_))) => {
            let f = match v {
                Value::Float(f) => *f,
                other => other.as_i64().unwrap_or_default() as f64,
            };
            buf.push(8);
            buf.extend_from_slice(&f.to_le_bytes());
        }
        (SqlType::Decimal { scale, .. }, v) => {
            let scaled = match v {
                Value::Decimal { value, scale: s } if *s <= scale => 10i128
                    .checked_pow(u32::from(scale - s))
                    .and_then(|f| value.checked_mul(f))
                    .ok_or_else(mismatch)?,
                Value::Int(_) | Value::BigInt(_) => 10i128
                    .checked_pow(u32::from(scale))
                    .and_then(|f| i128::from(v.as_i64().unwrap_or_default()).checked_mul(f))
                    .ok_or_else(mismatch)?,
                _ => return Err(mismatch()),
            };
            buf.push(17);
            buf.push(u8::from(scaled >= 0));
            buf.extend_from_slice(&scaled.unsigned_abs().to_le_bytes());
        }
        (SqlType::NVarChar, Value::NVarChar(s)) => {
            let mut bytes = Vec::with_capacity(s.len() * 2);
            put_utf16(&mut bytes, s);
            if long {
                buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                if !bytes.is_empty() {
                    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    buf.extend_from_slice(&bytes);
                }
                buf.extend_from_slice(&0u32.to_le_bytes());
            } else {
                buf.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                buf.extend_from_slice(&bytes);
            }
        }
        (SqlType::Guid, Value::Guid(g)) => {
            buf.push(16);
            buf.extend_from_slice(g);
        }
        (SqlType::DateTime, Value::DateTime(d) | Value::DateTime2(d)) => {
            buf.push(8);
            let days = days_since(1900, d.date()) as i32;
            let t = d.time();
            let nanos_of_day = u64::from(t.hour()) * 3_600_000_000_000
                + u64::from(t.minute()) * 60_000_000_000
                + u64::from(t.second()) * 1_000_000_000
                + u64::from(t.nanosecond());
            let ticks = (nanos_of_day * 3 / 10_000_000) as u32;
            buf.extend_from_slice(&days.to_le_bytes());
            buf.extend_from_slice(&ticks.to_le_bytes());
        }
        (SqlType::DateTime2, Value::DateTime2(d) | Value::DateTime(d)) => {
            buf.push(8);
            let t = d.time();
            let increments =
                (u64::from(t.hour()) * 3600 + u64::from(t.minute()) * 60 + u64::from(t.second()))
                    * 10_000_000
                    + u64::from(t.nanosecond()) / 100;
            buf.extend_from_slice(&increments.to_le_bytes()[..5]);
            let days = days_since(1, d.date()) as u32;
            buf.extend_from_slice(&days.to_le_bytes()[..3]);
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// Whether a reply answers a SQL batch (DONE tokens) or an RPC (DONEINPROC, RETURNSTATUS, DONEPROC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStyle {
    /// SQL batch.
    Batch,
    /// RPC.
    Rpc,
}

/// Encodes a reply; a row that does not fit its columns becomes an error 50000 for the client.
pub fn reply(reply: &Reply, style: ReplyStyle, server: &str) -> Vec<u8> {
    let mut t = Tokens::new();
    let stmt_done = match style {
        ReplyStyle::Batch => 0xFD,
        ReplyStyle::Rpc => 0xFF,
    };
    // Index of the last part that produces a DONE, to leave MORE off it in a batch; when INFO
    // messages come last, every statement DONE keeps MORE and a final DONE closes the batch.
    let trailing_info = matches!(reply.parts.last(), Some(ReplyPart::Info(_)));
    let last_done = if trailing_info {
        None
    } else {
        reply
            .parts
            .iter()
            .rposition(|p| !matches!(p, ReplyPart::Info(_)))
    };
    let mut any_error = false;
    let mut wrote_done = false;
    for (i, part) in reply.parts.iter().enumerate() {
        let more = if style == ReplyStyle::Rpc || Some(i) != last_done {
            DONE_MORE
        } else {
            0
        };
        match part {
            ReplyPart::Info(msg) => t.message(msg, server),
            ReplyPart::Error(msg) => {
                any_error = true;
                t.message(msg, server);
                t.done(stmt_done, more | DONE_ERROR, 0, 0);
                wrote_done = true;
            }
            ReplyPart::Done(count) => {
                let (status, rows) = match count {
                    Some(n) => (more | DONE_COUNT, *n),
                    None => (more, 0),
                };
                t.done(stmt_done, status, 0, rows);
                wrote_done = true;
            }
            ReplyPart::Rows(rs) => {
                let mut rs_tokens = Tokens::new();
                match rs_tokens.result_set(rs) {
                    Ok(()) => {
                        t.buf.extend_from_slice(&rs_tokens.buf);
                        t.done(stmt_done, more | DONE_COUNT, 0xC1, rs.rows.len() as u64);
                    }
                    Err(e) => {
                        any_error = true;
                        t.message(
                            &ServerMessage::error(
                                50000,
                                format!("emulator reply is malformed: {e}"),
                            ),
                            server,
                        );
                        t.done(stmt_done, more | DONE_ERROR, 0, 0);
                    }
                }
                wrote_done = true;
            }
        }
    }
    match style {
        ReplyStyle::Batch => {
            if !wrote_done || trailing_info {
                t.done(0xFD, 0, 0, 0);
            }
        }
        ReplyStyle::Rpc => {
            t.return_status(if any_error { 1 } else { 0 });
            t.done(0xFE, if any_error { DONE_ERROR } else { 0 }, 0, 0);
        }
    }
    t.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelogin_reply_says_encryption_not_supported() {
        let bytes = prelogin_reply(ServerVersion {
            major: 16,
            minor: 0,
            build: 4135,
        });
        // Second option entry is ENCRYPTION; its offset points at 0x02.
        assert_eq!(bytes[5], 0x01);
        let off = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
        assert_eq!(bytes[off], 0x02);
    }

    #[test]
    fn a_batch_ending_in_info_still_ends_with_a_final_done() {
        let mut r = Reply::row_count(1);
        r.push(ReplyPart::Info(ServerMessage::info(0, "x")));
        let bytes = reply(&r, ReplyStyle::Batch, "s");
        // First DONE keeps MORE; the last token is a DONE with status 0.
        assert_eq!(&bytes[..3], &[0xFD, 0x11, 0x00]);
        let tail = &bytes[bytes.len() - 13..];
        assert_eq!(&tail[..3], &[0xFD, 0x00, 0x00]);
    }

    #[test]
    fn a_row_narrower_than_its_columns_becomes_a_client_error() {
        let rs = ResultSet {
            columns: vec![Column::new("a", SqlType::Int)],
            rows: vec![vec![]],
        };
        let bytes = reply(&Reply::rows(rs), ReplyStyle::Batch, "s");
        assert_eq!(bytes[0], 0xAA);
    }
}
