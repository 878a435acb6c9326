//! Decoding what clients send: PRELOGIN, LOGIN7, SQL batches and RPC requests with typed parameters.

use super::types::{Request, RequestKind, Value};
use time::{Date, Duration, Month, PrimitiveDateTime, Time};

/// A client message could not be decoded; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message ended before a field it announced.
    #[error("message truncated: needed {needed} bytes at offset {offset}, {len} available")]
    Truncated {
        /// Offset of the read.
        offset: usize,
        /// Bytes needed.
        needed: usize,
        /// Message length.
        len: usize,
    },
    /// Text was not valid UTF-16.
    #[error("text is not valid UTF-16")]
    BadText,
    /// A parameter used a TDS type this server does not decode.
    #[error("unsupported parameter type {0:#04x}")]
    UnsupportedType(u8),
    /// A value's length did not fit its type.
    #[error("invalid length {len} for type {ty:#04x}")]
    BadLength {
        /// The TDS type.
        ty: u8,
        /// The length found.
        len: usize,
    },
    /// The ALL_HEADERS block announced an impossible length.
    #[error("ALL_HEADERS length {0} does not fit the message")]
    BadHeaders(u32),
    /// A PRELOGIN option table pointed outside the message.
    #[error("PRELOGIN option table is malformed")]
    BadPrelogin,
    /// `sp_executesql` arrived without its statement parameter.
    #[error("sp_executesql without a statement")]
    MissingStatement,
}

/// A bounds-checked little-endian reader over a message payload.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at offset 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n,
                len: self.buf.len(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// Reads a u8.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian u16.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u32.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u64.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`].
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads `chars` UTF-16LE code units as a string.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`], [`DecodeError::BadText`].
    pub fn utf16(&mut self, chars: usize) -> Result<String, DecodeError> {
        utf16(self.bytes(chars * 2)?)
    }

    /// Reads a B_VARCHAR (u8 length in characters).
    ///
    /// # Errors
    /// [`DecodeError::Truncated`], [`DecodeError::BadText`].
    pub fn b_varchar(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u8()?);
        self.utf16(n)
    }
}

fn utf16(bytes: &[u8]) -> Result<String, DecodeError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(DecodeError::BadText);
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| DecodeError::BadText)
}

/// The client's PRELOGIN: only validated (the reply does not depend on it).
///
/// # Errors
/// [`DecodeError::BadPrelogin`] when the option table is malformed.
pub fn check_prelogin(payload: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(payload);
    let mut seen_terminator = false;
    for _ in 0..64 {
        let token = r.u8().map_err(|_| DecodeError::BadPrelogin)?;
        if token == 0xFF {
            seen_terminator = true;
            break;
        }
        let off = r.bytes(2).map_err(|_| DecodeError::BadPrelogin)?;
        let len = r.bytes(2).map_err(|_| DecodeError::BadPrelogin)?;
        let off = usize::from(u16::from_be_bytes([off[0], off[1]]));
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if off + len > payload.len() || token > 0x08 {
            return Err(DecodeError::BadPrelogin);
        }
    }
    if seen_terminator {
        Ok(())
    } else {
        Err(DecodeError::BadPrelogin)
    }
}

/// What the server keeps from LOGIN7.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login {
    /// Requested packet size (0: server default).
    pub packet_size: u32,
    /// Client host name.
    pub host_name: String,
    /// Login name.
    pub user: String,
    /// Password (de-obfuscated).
    pub password: String,
    /// Application name.
    pub app_name: String,
    /// Server name the client asked for.
    pub server_name: String,
    /// Initial database ("" for the login's default).
    pub database: String,
}

/// Decodes LOGIN7.
///
/// # Errors
/// [`DecodeError`] when an offset/length pair points outside the message or text is invalid.
pub fn login7(payload: &[u8]) -> Result<Login, DecodeError> {
    let mut r = Reader::new(payload);
    let _length = r.u32()?;
    let tds_version = r.u32()?;
    if tds_version == 0 {
        return Err(DecodeError::BadLength { ty: 0x10, len: 0 });
    }
    let packet_size = r.u32()?;
    r.bytes(36 - 12)?;
    let mut fields = Vec::with_capacity(9);
    for _ in 0..9 {
        let off = usize::from(r.u16()?);
        let chars = usize::from(r.u16()?);
        fields.push((off, chars));
    }
    let text = |(off, chars): (usize, usize)| -> Result<String, DecodeError> {
        let end = off + chars * 2;
        if end > payload.len() {
            return Err(DecodeError::Truncated {
                offset: off,
                needed: chars * 2,
                len: payload.len(),
            });
        }
        utf16(&payload[off..end])
    };
    let password_bytes: Vec<u8> = {
        let (off, chars) = fields[2];
        let end = off + chars * 2;
        if end > payload.len() {
            return Err(DecodeError::Truncated {
                offset: off,
                needed: chars * 2,
                len: payload.len(),
            });
        }
        payload[off..end]
            .iter()
            .map(|b| {
                let x = b ^ 0xA5;
                x.rotate_left(4)
            })
            .collect()
    };
    Ok(Login {
        packet_size,
        host_name: text(fields[0])?,
        user: text(fields[1])?,
        password: utf16(&password_bytes)?,
        app_name: text(fields[3])?,
        server_name: text(fields[4])?,
        database: text(fields[8])?,
    })
}

fn skip_all_headers(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let total = r.u32()?;
    if total < 4 || (total as usize - 4) > r.remaining() {
        return Err(DecodeError::BadHeaders(total));
    }
    r.bytes(total as usize - 4)?;
    Ok(())
}

/// Decodes a SQL batch (ALL_HEADERS then UTF-16LE text).
///
/// # Errors
/// [`DecodeError`] on a bad header block or invalid text.
pub fn sql_batch(payload: &[u8]) -> Result<Request, DecodeError> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let n = r.remaining();
    let sql = utf16(r.bytes(n)?)?;
    Ok(Request {
        kind: RequestKind::Batch,
        sql,
        params: Vec::new(),
    })
}

/// Decodes an RPC request; `sp_executesql` (id 10 or by name) becomes its statement and parameters.
///
/// # Errors
/// [`DecodeError`] on malformed structure or an unsupported parameter type.
pub fn rpc(payload: &[u8]) -> Result<Request, DecodeError> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let name_len = r.u16()?;
    let proc_name = if name_len == 0xFFFF {
        match r.u16()? {
            10 => "sp_executesql".to_string(),
            id => format!("#{id}"),
        }
    } else {
        r.utf16(usize::from(name_len))?
    };
    let _options = r.u16()?;
    let mut params = Vec::new();
    while r.remaining() > 0 {
        let name = r.b_varchar()?;
        let _status = r.u8()?;
        let value = param_value(&mut r)?;
        params.push((name, value));
    }
    let is_executesql = proc_name.eq_ignore_ascii_case("sp_executesql")
        || proc_name.eq_ignore_ascii_case("sys.sp_executesql");
    if is_executesql {
        if params.is_empty() {
            return Err(DecodeError::MissingStatement);
        }
        let (_, stmt) = params.remove(0);
        let sql = match stmt {
            Value::NVarChar(s) => s,
            _ => return Err(DecodeError::MissingStatement),
        };
        // The second parameter is, by position, the declaration list ("@P1 int,...").
        if !params.is_empty() {
            params.remove(0);
        }
        Ok(Request {
            kind: RequestKind::ExecuteSql,
            sql,
            params,
        })
    } else {
        Ok(Request {
            kind: RequestKind::Procedure(proc_name.clone()),
            sql: format!("EXEC {proc_name}"),
            params,
        })
    }
}

fn base_date(year: i32) -> Date {
    Date::from_calendar_date(year, Month::January, 1).unwrap_or(Date::MIN)
}

fn datetime_from_legacy(days: i64, ticks_300: i64) -> Option<PrimitiveDateTime> {
    let date = base_date(1900).checked_add(Duration::days(days))?;
    let nanos = ticks_300 * 10_000_000 / 3;
    let time = Time::MIDNIGHT + Duration::nanoseconds(nanos);
    Some(PrimitiveDateTime::new(date, time))
}

fn datetime2_from(days: i64, increments: u64, scale: u8) -> Option<PrimitiveDateTime> {
    let date = base_date(1).checked_add(Duration::days(days))?;
    let per_unit_ns = 10u64.pow(9u32.saturating_sub(u32::from(scale.min(9))));
    let nanos = increments.checked_mul(per_unit_ns)?;
    let secs = nanos / 1_000_000_000;
    if secs >= 86_400 {
        return None;
    }
    let time = Time::MIDNIGHT + Duration::nanoseconds(i64::try_from(nanos).ok()?);
    Some(PrimitiveDateTime::new(date, time))
}

fn le_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fn read_plp(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    let total = r.u64()?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let chunk = r.u32()? as usize;
        if chunk == 0 {
            break;
        }
        out.extend_from_slice(r.bytes(chunk)?);
        if out.len() > super::wire::MAX_MESSAGE {
            return Err(DecodeError::BadLength {
                ty: 0xE7,
                len: out.len(),
            });
        }
    }
    Ok(Some(out))
}

/// Reads one parameter's TYPE_INFO and value.
fn param_value(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    let ty = r.u8()?;
    let bad = |len: usize| DecodeError::BadLength { ty, len };
    match ty {
        0x1F => Ok(Value::Null),
        0x30 => Ok(Value::Int(i32::from(r.u8()?))),
        0x32 => Ok(Value::Bit(r.u8()? != 0)),
        0x34 => Ok(Value::Int(i32::from(r.u16()? as i16))),
        0x38 => Ok(Value::Int(r.u32()? as i32)),
        0x7F => Ok(Value::BigInt(r.u64()? as i64)),
        0x3B => Ok(Value::Float(f64::from(f32::from_bits(r.u32()?)))),
        0x3E => Ok(Value::Float(f64::from_bits(r.u64()?))),
        0x3D => {
            let days = r.u32()? as i32;
            let ticks = r.u32()?;
            datetime_from_legacy(i64::from(days), i64::from(ticks))
                .map(Value::DateTime)
                .ok_or(bad(8))
        }
        // INTN, BITN, FLOATN, DATETIMEN, GUID, MONEYN: max length byte then a length-prefixed value.
        0x26 | 0x68 | 0x6D | 0x6F | 0x24 | 0x6E => {
            let _max = r.u8()?;
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Ok(Value::Null);
            }
            let b = r.bytes(len)?;
            match (ty, len) {
                (0x26, 1) => Ok(Value::Int(i32::from(b[0]))),
                (0x26, 2) => Ok(Value::Int(i32::from(i16::from_le_bytes([b[0], b[1]])))),
                (0x26, 4) => Ok(Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                (0x26, 8) => Ok(Value::BigInt(le_uint(b) as i64)),
                (0x68, 1) => Ok(Value::Bit(b[0] != 0)),
                (0x6D, 4) => Ok(Value::Float(f64::from(f32::from_bits(le_uint(b) as u32)))),
                (0x6D, 8) => Ok(Value::Float(f64::from_bits(le_uint(b)))),
                (0x6F, 8) => {
                    let days = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    let ticks = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                    datetime_from_legacy(i64::from(days), i64::from(ticks))
                        .map(Value::DateTime)
                        .ok_or(bad(len))
                }
                (0x6F, 4) => {
                    let days = u16::from_le_bytes([b[0], b[1]]);
                    let mins = u16::from_le_bytes([b[2], b[3]]);
                    datetime_from_legacy(i64::from(days), i64::from(mins) * 60 * 300)
                        .map(Value::DateTime)
                        .ok_or(bad(len))
                }
                (0x24, 16) => {
                    let mut g = [0u8; 16];
                    g.copy_from_slice(b);
                    Ok(Value::Guid(g))
                }
                (0x6E, 8) => {
                    let hi = i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    let lo = i64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
                    Ok(Value::Decimal {
                        value: i128::from((hi << 32) | lo),
                        scale: 4,
                    })
                }
                (0x6E, 4) => Ok(Value::Decimal {
                    value: i128::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    scale: 4,
                }),
                _ => Err(bad(len)),
            }
        }
        // DECIMALN / NUMERICN.
        0x6A | 0x6C => {
            let _max = r.u8()?;
            let precision = r.u8()?;
            let scale = r.u8()?;
            if precision > 38 || scale > precision {
                return Err(bad(usize::from(scale)));
            }
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Ok(Value::Null);
            }
            if !(5..=17).contains(&len) {
                return Err(bad(len));
            }
            let b = r.bytes(len)?;
            let magnitude = b[1..]
                .iter()
                .rev()
                .fold(0u128, |acc, x| (acc << 8) | u128::from(*x));
            let magnitude = i128::try_from(magnitude).map_err(|_| bad(len))?;
            let value = if b[0] == 0 { -magnitude } else { magnitude };
            Ok(Value::Decimal { value, scale })
        }
        // DATEN.
        0x28 => {
            let len = usize::from(r.u8()?);
            match len {
                0 => Ok(Value::Null),
                3 => {
                    let days = le_uint(r.bytes(3)?);
                    datetime2_from(days as i64, 0, 7)
                        .map(Value::DateTime2)
                        .ok_or(bad(len))
                }
                _ => Err(bad(len)),
            }
        }
        // DATETIME2N.
        0x2A => {
            let scale = r.u8()?;
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Ok(Value::Null);
            }
            if !(6..=8).contains(&len) {
                return Err(bad(len));
            }
            let b = r.bytes(len)?;
            let increments = le_uint(&b[..len - 3]);
            let days = le_uint(&b[len - 3..]);
            datetime2_from(days as i64, increments, scale)
                .map(Value::DateTime2)
                .ok_or(bad(len))
        }
        // NVARCHAR / NCHAR / VARCHAR / CHAR / VARBINARY / BINARY.
        0xE7 | 0xEF | 0xA7 | 0xAF | 0xA5 | 0xAD => {
            let max = r.u16()?;
            if matches!(ty, 0xE7 | 0xEF | 0xA7 | 0xAF) {
                r.bytes(5)?; // collation
            }
            let data = if max == 0xFFFF {
                read_plp(r)?
            } else {
                let len = r.u16()?;
                if len == 0xFFFF {
                    None
                } else {
                    Some(r.bytes(usize::from(len))?.to_vec())
                }
            };
            let Some(data) = data else {
                return Ok(Value::Null);
            };
            match ty {
                0xE7 | 0xEF => Ok(Value::NVarChar(utf16(&data)?)),
                0xA7 | 0xAF => Ok(Value::NVarChar(
                    data.iter().map(|b| char::from(*b)).collect(),
                )),
                _ => Ok(Value::Binary(data)),
            }
        }
        other => Err(DecodeError::UnsupportedType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_reads_are_errors_not_panics() {
        let mut r = Reader::new(&[1, 2]);
        assert!(r.u32().is_err());
        assert!(rpc(&[0xff; 3]).is_err());
        assert!(sql_batch(&[0xff, 0xff, 0xff, 0xff, 0]).is_err());
        assert!(login7(&[0; 10]).is_err());
    }

    /// A valid `sp_executesql` RPC payload: statement, declarations, `@P1 int = 7`, `@P2 nvarchar`.
    fn valid_rpc() -> Vec<u8> {
        fn nvarchar(out: &mut Vec<u8>, name: &str, value: &str) {
            out.push(name.encode_utf16().count() as u8);
            name.encode_utf16()
                .for_each(|u| out.extend_from_slice(&u.to_le_bytes()));
            out.push(0);
            out.push(0xE7);
            out.extend_from_slice(&8000u16.to_le_bytes());
            out.extend_from_slice(&[0; 5]);
            out.extend_from_slice(&((value.encode_utf16().count() * 2) as u16).to_le_bytes());
            value
                .encode_utf16()
                .for_each(|u| out.extend_from_slice(&u.to_le_bytes()));
        }
        let mut out = Vec::new();
        out.extend_from_slice(&22u32.to_le_bytes());
        out.extend_from_slice(&18u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0xFFFFu16.to_le_bytes());
        out.extend_from_slice(&10u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        nvarchar(&mut out, "stmt", "SELECT @P1, @P2");
        nvarchar(&mut out, "params", "@P1 int, @P2 nvarchar(4000)");
        out.extend_from_slice(&[3, b'@', 0, b'P', 0, b'1', 0, 0, 0x26, 4, 4, 7, 0, 0, 0]);
        nvarchar(&mut out, "@P2", "x");
        out
    }

    #[test]
    fn a_valid_rpc_decodes_to_statement_and_parameters() {
        let req = rpc(&valid_rpc()).expect("decode");
        assert_eq!(req.sql, "SELECT @P1, @P2");
        assert_eq!(
            req.params,
            vec![
                ("@P1".to_string(), Value::Int(7)),
                ("@P2".to_string(), Value::text("x"))
            ]
        );
    }

    #[test]
    fn truncated_and_mutated_messages_never_panic() {
        let base = valid_rpc();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for cut in 0..base.len() {
            let _ = rpc(&base[..cut]);
            let _ = sql_batch(&base[..cut]);
            let _ = login7(&base[..cut]);
            let _ = check_prelogin(&base[..cut]);
        }
        for _ in 0..20_000 {
            let mut m = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let _ = rpc(&m);
            let _ = login7(&m);
            let random: Vec<u8> = (0..(next() % 300)).map(|_| next() as u8).collect();
            let _ = rpc(&random);
            let _ = sql_batch(&random);
            let _ = login7(&random);
            let _ = check_prelogin(&random);
        }
    }

    #[test]
    fn datetime2_days_count_from_year_one() {
        let dt = datetime2_from(0, 0, 7).map(|d| d.date());
        assert_eq!(dt, Some(base_date(1)));
    }
}
