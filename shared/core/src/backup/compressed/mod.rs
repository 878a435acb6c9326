//! Compressed backups: the `MSSQLBAK` container SQL Server writes for `BACKUP ... WITH
//! COMPRESSION`, turned back into the MTF stream it holds.
//!
//! # Layout (learnt from the bytes of SQL Server 2014 backups)
//!
//! - Bytes 0..16: `MSSQLBAK`, then two u32 words (2 and 3 in every file seen). The rest of the
//!   first [`FIRST_RECORD`] bytes holds nothing this reader needs (it looks like leftover memory).
//! - From [`FIRST_RECORD`] on, records follow each other with no gaps. A record starts with a
//!   24-byte header whose first byte is its type:
//!   - `0x21` compressed chunk: byte 1 = the chunk's output in 512-byte sectors (1..=128),
//!     bytes 2..4 = u16 length of the compressed stream, bytes 4..24 unused, bytes 24..28 a
//!     checksum-like value (not checked here); the stream follows at byte 28. Each chunk's output
//!     is whole MTF blocks and decodes on its own (an [MS-XCA] LZ77+Huffman stream, [`xpress`]).
//!   - `0x24` padding: bytes 2..4 = u16 count of padding bytes after the header. Used to align
//!     the next record to 512 bytes in the file.
//!   - `0x2c` chunk index: after the header, u16 1, u16 1, u32 entry count, u32 payload length,
//!     u32 tag; then (u64 offset in the set's uncompressed stream, u64 file offset) per entry;
//!     the payload's last 16 bytes repeat its first 16. The record is 24 + payload length bytes.
//!   - a raw MTF soft filemark block (`SFMB`), stored uncompressed; its length is the u16 at its
//!     byte 8 (the filemark block size, 512 in the files seen).
//!
//! The uncompressed stream is the concatenation of the chunks' output and the raw filemarks.
//! Chunk headers carry no magic, so [`decompress_tail`] finds the first record boundary in a tail
//! by looking for a chunk whose code table is a complete prefix code (or a raw `SFMB`) from which
//! the records chain exactly to the end of the object.

mod xpress;

#[cfg(test)]
mod tests;

pub use xpress::ChunkDamage;

/// The container's signature.
const SIGNATURE: &[u8; 8] = b"MSSQLBAK";
/// File offset of the first record.
const FIRST_RECORD: usize = 0x1e0;
/// Bytes of a record header.
const RECORD_HEADER: usize = 24;
/// Bytes of a chunk header (the record header and a 4-byte checksum).
const CHUNK_HEADER: usize = 28;
/// Unit of a chunk's declared output.
const SECTOR: usize = 512;
/// Most sectors of output in one chunk (64 KiB, one XPRESS block).
const MAX_CHUNK_SECTORS: u8 = 128;
/// Largest raw soft filemark block accepted.
const MAX_FILEMARK: usize = 64 << 10;
/// Bytes of the index record's leading fields, repeated at the end of its payload.
const INDEX_FIELDS: usize = 16;
/// Bytes of one index entry.
const INDEX_ENTRY: usize = 16;

const KIND_CHUNK: u8 = 0x21;
const KIND_PADDING: u8 = 0x24;
const KIND_INDEX: u8 = 0x2c;

/// Why a compressed container could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressedError {
    /// The bytes do not start with `MSSQLBAK`.
    #[error("not a compressed backup: the file does not start with the MSSQLBAK signature")]
    NotCompressed,
    /// A record whose type byte is none of those known.
    #[error(
        "unknown record type {record_type:#04x} at byte {offset} of the compressed backup \
         (damaged, or a container version this reader does not know)"
    )]
    UnknownRecord { offset: u64, record_type: u8 },
    /// A chunk header with an impossible output or compressed size.
    #[error(
        "bad chunk header at byte {offset} of the compressed backup: {sectors} sectors of \
         output, {compressed_len} compressed bytes"
    )]
    BadChunkHeader {
        offset: u64,
        sectors: u8,
        compressed_len: u16,
    },
    /// A raw soft filemark block whose declared size is impossible.
    #[error("bad soft filemark block at byte {offset} of the compressed backup")]
    BadFilemark { offset: u64 },
    /// A chunk index record whose fields disagree.
    #[error("bad chunk index record at byte {offset} of the compressed backup")]
    BadIndex { offset: u64 },
    /// A chunk whose compressed data does not decode.
    #[error("the compressed chunk at byte {offset} is damaged: {damage}")]
    DamagedChunk { offset: u64, damage: ChunkDamage },
    /// The tail given is longer than the object.
    #[error("the tail given ({tail_len} bytes) is longer than the object ({total_size} bytes)")]
    TailLongerThanObject { tail_len: usize, total_size: u64 },
    /// The output limit cannot hold even the last record found in the tail.
    #[error(
        "the last chunk of the compressed backup decompresses to {needed} bytes, more than \
         the limit of {limit}"
    )]
    OutputLimitTooSmall { limit: usize, needed: usize },
}

/// True when the bytes start with the `MSSQLBAK` container signature: a compressed backup, whose
/// metadata is inside compressed chunks (the first few of them: the parser decodes only those).
pub fn is_compressed_container(head: &[u8]) -> bool {
    head.starts_with(SIGNATURE)
}

/// The decompressed MTF stream from its start: the output of every whole record `head` (the
/// first bytes of the object) holds, cut at `limit` bytes. A head too short for any whole chunk
/// gives an empty stream.
///
/// # Errors
/// [`CompressedError`] when the head is not a container or a record in it is damaged.
#[cfg(test)]
pub(crate) fn decompress_head(head: &[u8], limit: usize) -> Result<Vec<u8>, CompressedError> {
    let mut stream = HeadStream::new(head, limit)?;
    stream.extend_to(usize::MAX)?;
    Ok(stream.out)
}

/// The MTF stream of a compressed backup's head, decompressed only as far as a reader asks:
/// each chunk decodes on its own, so the header blocks at the start of the stream need the
/// first few chunks, not the whole head. Records are read in order; a damaged record is
/// reported when the decoding reaches it (a chunk never decoded is never checked, as the data
/// of an uncompressed backup is not).
#[derive(Debug)]
pub(crate) struct HeadStream<'a> {
    head: &'a [u8],
    /// Head offset of the next record to decode.
    at: usize,
    out: Vec<u8>,
    limit: usize,
    /// Output the head's whole records declare, from the start up to the first record that is
    /// incomplete or damaged, at most `limit`: how far decoding can go without meeting either.
    declared: usize,
    /// The declared output stops at a damaged record (not at the end of the head).
    damaged_after: bool,
}

impl<'a> HeadStream<'a> {
    /// A stream over `head` (the first bytes of the object), to be cut at `limit` bytes.
    ///
    /// # Errors
    /// [`CompressedError::NotCompressed`] when the head is not a container.
    pub(crate) fn new(head: &'a [u8], limit: usize) -> Result<HeadStream<'a>, CompressedError> {
        if !is_compressed_container(head) {
            return Err(CompressedError::NotCompressed);
        }
        // Record headers only (no decoding): how much output the head can give.
        let (mut declared, mut at, mut damaged_after) = (0usize, FIRST_RECORD, false);
        while at < head.len() && declared < limit {
            match read_record(head, at) {
                Ok(Some(record)) => {
                    declared = declared.saturating_add(record.output_len());
                    at = record.end;
                }
                Ok(None) => break,
                Err(_) => {
                    damaged_after = true;
                    break;
                }
            }
        }
        Ok(HeadStream {
            head,
            at: FIRST_RECORD,
            out: Vec::new(),
            limit,
            declared: declared.min(limit),
            damaged_after,
        })
    }

    /// The stream decoded so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// Decodes whole records until at least `n` bytes are out (or the head, or the limit, ends
    /// first). Asking for more than the head's undamaged records declare decodes up to the
    /// damaged record and reports it, as decoding the whole head would.
    ///
    /// # Errors
    /// [`CompressedError`] when a record reached is damaged.
    pub(crate) fn extend_to(&mut self, n: usize) -> Result<(), CompressedError> {
        let want = n.min(self.limit);
        while self.at < self.head.len() && self.out.len() < want {
            let at = self.at;
            let Some(record) = read_record(self.head, at).map_err(|f| f.at(at as u64))? else {
                break; // the head ends inside this record
            };
            let room = self.limit - self.out.len();
            append_output(self.head, at, &record, room, &mut self.out, at as u64)?;
            self.at = record.end;
        }
        Ok(())
    }

    /// Whether decoding on to `n` bytes of output would give the reader more: `n` lies beyond
    /// what is decoded, within what the head declares, or behind a damaged record (which
    /// decoding the whole head would have reported).
    pub(crate) fn can_reach(&self, n: u64) -> bool {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        n > self.out.len()
            && self.out.len() < self.limit
            && (n <= self.declared || self.damaged_after)
    }
}

/// The decompressed MTF bytes of the whole records found in `tail` (the last bytes of an object of
/// `total_size` bytes), ending where the stream ends; when they exceed `limit`, the leading
/// records are left out. The output starts at a record boundary, so at a 512-byte boundary of
/// the stream. `Ok(None)` when no record boundary is found in the tail.
///
/// # Errors
/// [`CompressedError`] when a record in the tail is damaged or the last one exceeds `limit`.
#[cfg(test)]
pub(crate) fn decompress_tail(
    tail: &[u8],
    total_size: u64,
    limit: usize,
) -> Result<Option<Vec<u8>>, CompressedError> {
    decompress_tail_until(tail, total_size, limit, |_| false)
}

/// Output decoded from the end of a tail first: the end-of-set blocks are in the last few KiB
/// of the stream.
const TAIL_STEP: usize = 64 << 10;

/// [`decompress_tail`], decoding only as much of the tail's end as `enough` needs: the last
/// records giving at most 64 KiB of output, then 256 KiB, 1 MiB … up to `limit`, until `enough`
/// says the bytes decoded hold what it looks for (a tail of 64 KiB can decode to 2 MiB and
/// more, and the end of a backup is in its last few KiB). What it returns is what
/// [`decompress_tail`] would, when `enough` is never satisfied.
///
/// # Errors
/// As [`decompress_tail`].
pub(crate) fn decompress_tail_until(
    tail: &[u8],
    total_size: u64,
    limit: usize,
    mut enough: impl FnMut(&[u8]) -> bool,
) -> Result<Option<Vec<u8>>, CompressedError> {
    let base = usize::try_from(total_size)
        .ok()
        .and_then(|total| total.checked_sub(tail.len()))
        .map(|base| base as u64)
        .ok_or(CompressedError::TailLongerThanObject {
            tail_len: tail.len(),
            total_size,
        })?;
    // Records start at FIRST_RECORD of the object at the earliest.
    let first = usize::try_from((FIRST_RECORD as u64).saturating_sub(base)).unwrap_or(usize::MAX);
    for start in first..tail.len() {
        if !plausible_boundary(tail, start) {
            continue;
        }
        let Some(records) = chain_to_end(tail, start) else {
            continue;
        };
        let all: usize = records.iter().map(|(_, r)| r.output_len()).sum();
        let mut step = TAIL_STEP;
        loop {
            let bounded = step.min(limit);
            let out = decode_suffix(tail, base, &records, bounded)?;
            if bounded >= limit || all <= bounded || enough(&out) {
                return Ok(Some(out));
            }
            step = step.saturating_mul(4);
        }
    }
    Ok(None)
}

/// One record of the container, located in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A compressed chunk: its stream and its declared output size.
    Chunk {
        stream: (usize, usize),
        output: usize,
    },
    /// A raw MTF soft filemark block of this many bytes.
    Filemark { len: usize },
    /// Padding or the chunk index: no output.
    Silent,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    kind: Kind,
    /// Buffer offset just past the record.
    end: usize,
}

impl Record {
    fn output_len(&self) -> usize {
        match self.kind {
            Kind::Chunk { output, .. } => output,
            Kind::Filemark { len } => len,
            Kind::Silent => 0,
        }
    }
}

/// What is wrong with a record, before its file offset is known.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Unknown(u8),
    ChunkHeader(u8, u16),
    Filemark,
    Index,
}

impl Fault {
    fn at(self, offset: u64) -> CompressedError {
        match self {
            Fault::Unknown(record_type) => CompressedError::UnknownRecord {
                offset,
                record_type,
            },
            Fault::ChunkHeader(sectors, compressed_len) => CompressedError::BadChunkHeader {
                offset,
                sectors,
                compressed_len,
            },
            Fault::Filemark => CompressedError::BadFilemark { offset },
            Fault::Index => CompressedError::BadIndex { offset },
        }
    }
}

fn u16_at(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn u32_at(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at..at.checked_add(4)?)?;
    usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
}

/// The record at `at` of `buf`: `Ok(None)` when `buf` ends before the record does (or before
/// the fields that tell its length).
fn read_record(buf: &[u8], at: usize) -> Result<Option<Record>, Fault> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    if buf.get(at..at + 4) == Some(b"SFMB") {
        let Some(len) = u16_at(buf, at + 8) else {
            return Ok(None);
        };
        if len == 0 || !len.is_multiple_of(SECTOR) || len > MAX_FILEMARK {
            return Err(Fault::Filemark);
        }
        return Ok(fits(buf, at + len, Kind::Filemark { len }));
    }
    match kind {
        KIND_CHUNK => {
            let (Some(&sectors), Some(compressed_len)) = (buf.get(at + 1), u16_at(buf, at + 2))
            else {
                return Ok(None);
            };
            if sectors == 0 || sectors > MAX_CHUNK_SECTORS || compressed_len < xpress::LENGTHS_LEN {
                return Err(Fault::ChunkHeader(sectors, compressed_len as u16));
            }
            let stream = at + CHUNK_HEADER;
            let end = stream + compressed_len;
            let output = usize::from(sectors) * SECTOR;
            Ok(fits(
                buf,
                end,
                Kind::Chunk {
                    stream: (stream, end),
                    output,
                },
            ))
        }
        KIND_PADDING => {
            let Some(len) = u16_at(buf, at + 2) else {
                return Ok(None);
            };
            Ok(fits(buf, at + RECORD_HEADER + len, Kind::Silent))
        }
        KIND_INDEX => {
            let fields = at + RECORD_HEADER;
            let (Some(count), Some(len)) = (u32_at(buf, fields + 4), u32_at(buf, fields + 8))
            else {
                return Ok(None);
            };
            let needed = count
                .checked_mul(INDEX_ENTRY)
                .and_then(|n| n.checked_add(2 * INDEX_FIELDS));
            if needed.is_none_or(|n| n > len) {
                return Err(Fault::Index);
            }
            let end = fields.checked_add(len).ok_or(Fault::Index)?;
            let Some(payload) = buf.get(fields..end) else {
                return Ok(None);
            };
            if payload[..INDEX_FIELDS] != payload[len - INDEX_FIELDS..] {
                return Err(Fault::Index);
            }
            Ok(Some(Record {
                kind: Kind::Silent,
                end,
            }))
        }
        other => Err(Fault::Unknown(other)),
    }
}

fn fits(buf: &[u8], end: usize, kind: Kind) -> Option<Record> {
    (end <= buf.len()).then_some(Record { kind, end })
}

/// Appends at most `room` bytes of the record's output to `out`; `offset` is the record's file
/// offset (for errors).
fn append_output(
    buf: &[u8],
    at: usize,
    record: &Record,
    room: usize,
    out: &mut Vec<u8>,
    offset: u64,
) -> Result<(), CompressedError> {
    match record.kind {
        Kind::Chunk {
            stream: (from, to),
            output,
        } => {
            let stream = buf.get(from..to).unwrap_or_default();
            xpress::decompress_into(stream, output, room, out)
                .map_err(|damage| CompressedError::DamagedChunk { offset, damage })
        }
        Kind::Filemark { len } => {
            let block = buf.get(at..at + len.min(room)).unwrap_or_default();
            out.extend_from_slice(block);
            Ok(())
        }
        Kind::Silent => Ok(()),
    }
}

/// Whether a record that can start a tail is at `start`: a chunk whose code table is a complete
/// prefix code, or a raw soft filemark block.
fn plausible_boundary(tail: &[u8], start: usize) -> bool {
    match read_record(tail, start) {
        Ok(Some(Record {
            kind: Kind::Chunk {
                stream: (from, _), ..
            },
            ..
        })) => tail
            .get(from..from + xpress::LENGTHS_LEN)
            .is_some_and(xpress::is_complete_code),
        Ok(Some(Record {
            kind: Kind::Filemark { .. },
            ..
        })) => true,
        _ => false,
    }
}

/// The records from `start` when they chain, each valid, exactly to the end of `tail`.
fn chain_to_end(tail: &[u8], start: usize) -> Option<Vec<(usize, Record)>> {
    let mut records = Vec::new();
    let mut at = start;
    while at < tail.len() {
        let record = read_record(tail, at).ok()??;
        records.push((at, record));
        at = record.end;
    }
    Some(records)
}

/// Decodes the longest suffix of `records` whose output fits in `limit`.
fn decode_suffix(
    tail: &[u8],
    base: u64,
    records: &[(usize, Record)],
    limit: usize,
) -> Result<Vec<u8>, CompressedError> {
    let mut first = records.len();
    let mut total = 0usize;
    while let Some(&(_, record)) = first.checked_sub(1).and_then(|i| records.get(i)) {
        let with = total.saturating_add(record.output_len());
        if with > limit {
            break;
        }
        total = with;
        first -= 1;
    }
    if total == 0 {
        if let Some(needed) = records
            .iter()
            .rev()
            .map(|(_, r)| r.output_len())
            .find(|&n| n > limit)
        {
            return Err(CompressedError::OutputLimitTooSmall { limit, needed });
        }
    }
    let mut out = Vec::with_capacity(total);
    for &(at, record) in records.get(first..).unwrap_or_default() {
        append_output(tail, at, &record, usize::MAX, &mut out, base + at as u64)?;
    }
    Ok(out)
}
