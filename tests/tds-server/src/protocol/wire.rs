//! TDS packet framing: reading whole messages from a socket and writing replies split into packets.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes in a TDS packet header.
pub const HEADER_LEN: usize = 8;
/// Largest message the server accepts from a client (bigger is treated as garbage).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Packet types used by this server.
pub mod packet_type {
    /// SQL batch.
    pub const SQL_BATCH: u8 = 0x01;
    /// RPC request.
    pub const RPC: u8 = 0x03;
    /// Tabular result (every server reply).
    pub const TABULAR_RESULT: u8 = 0x04;
    /// Attention signal (cancel).
    pub const ATTENTION: u8 = 0x06;
    /// LOGIN7.
    pub const LOGIN7: u8 = 0x10;
    /// PRELOGIN.
    pub const PRELOGIN: u8 = 0x12;
}

/// One client message: all packets up to the end-of-message status, payloads joined.
#[derive(Debug, Clone)]
pub struct Message {
    /// Packet type of the first packet.
    pub ty: u8,
    /// Joined payload.
    pub payload: Vec<u8>,
}

/// Reading a client message failed; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ReadMessageError {
    /// The client closed the connection between messages.
    #[error("the client closed the connection")]
    Closed,
    /// A socket error, or the client closed in the middle of a message.
    #[error("reading from the client failed")]
    Io(#[from] std::io::Error),
    /// A packet header declared a length shorter than the header itself.
    #[error("packet length {0} is shorter than the 8-byte header")]
    LengthTooShort(u16),
    /// The packets of one message did not share a type.
    #[error("packet type changed from {first:#04x} to {next:#04x} inside one message")]
    MixedTypes {
        /// Type of the first packet.
        first: u8,
        /// Type of a later packet.
        next: u8,
    },
    /// The message grew beyond [`MAX_MESSAGE`].
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
}

/// Reads one whole message.
///
/// # Errors
/// [`ReadMessageError`] when the client closed, sent a malformed header, or the socket failed.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, ReadMessageError> {
    let mut payload = Vec::new();
    let mut first_ty = None;
    loop {
        let mut header = [0u8; HEADER_LEN];
        if first_ty.is_none() {
            // A clean close is only allowed between messages.
            let n = r.read(&mut header[..1]).await?;
            if n == 0 {
                return Err(ReadMessageError::Closed);
            }
            r.read_exact(&mut header[1..]).await?;
        } else {
            r.read_exact(&mut header).await?;
        }
        let ty = header[0];
        let status = header[1];
        let len = u16::from_be_bytes([header[2], header[3]]);
        if usize::from(len) < HEADER_LEN {
            return Err(ReadMessageError::LengthTooShort(len));
        }
        match first_ty {
            None => first_ty = Some(ty),
            Some(first) if first != ty => {
                return Err(ReadMessageError::MixedTypes { first, next: ty })
            }
            Some(_) => {}
        }
        let body = usize::from(len) - HEADER_LEN;
        if payload.len() + body > MAX_MESSAGE {
            return Err(ReadMessageError::TooLarge);
        }
        let start = payload.len();
        payload.resize(start + body, 0);
        r.read_exact(&mut payload[start..]).await?;
        if status & 0x01 == 0x01 {
            return Ok(Message {
                ty: first_ty.unwrap_or(ty),
                payload,
            });
        }
    }
}

/// Writes `payload` as one message of type `ty`, split into packets of at most `packet_size` bytes.
///
/// # Errors
/// The socket's error.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    ty: u8,
    spid: u16,
    payload: &[u8],
    packet_size: usize,
) -> std::io::Result<()> {
    let chunk = packet_size.clamp(512, 32767) - HEADER_LEN;
    let mut out = Vec::with_capacity(payload.len() + (payload.len() / chunk + 1) * HEADER_LEN);
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(chunk).collect()
    };
    let last = chunks.len() - 1;
    for (i, part) in chunks.iter().enumerate() {
        let len = (part.len() + HEADER_LEN) as u16;
        out.push(ty);
        out.push(if i == last { 0x01 } else { 0x00 });
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&spid.to_be_bytes());
        out.push(((i + 1) % 256) as u8);
        out.push(0);
        out.extend_from_slice(part);
    }
    w.write_all(&out).await?;
    w.flush().await
}
