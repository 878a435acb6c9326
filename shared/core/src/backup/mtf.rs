//! Microsoft Tape Format (MTF 1.00a) as SQL Server writes it: descriptor blocks (DBLKs) with the
//! common block header, their chains of streams, and the few block bodies the header needs
//! (`TAPE`, `SSET`, `VOLB`, `ESET`, and the `TSMP` set map).
//!
//! Everything here reads a byte slice with bounds checks and reports either `Fault::Short` (the
//! slice ends before the structure does: a longer head is needed) or `Fault::Damaged`.

use time::{Date, Month, PrimitiveDateTime, Time};
use uuid::Uuid;

use super::model::BackupDate;

/// Size of the MTF common block header.
pub(crate) const BLOCK_HEADER_LEN: usize = 52;
/// Size of an MTF stream header.
pub(crate) const STREAM_HEADER_LEN: usize = 22;
/// The stream that pads a block up to the next block boundary: it ends a block's stream chain.
const PAD_STREAM: [u8; 4] = *b"SPAD";
/// More streams than this in one block is not a SQL Server backup.
const MAX_STREAMS_PER_BLOCK: usize = 64;

/// Why a structure could not be read from the bytes at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The bytes end before the structure: `needed` bytes (from the slice start) are required.
    Short { needed: u64 },
    /// The bytes do not hold what MTF says they must.
    Damaged { what: &'static str, offset: u64 },
}

pub(crate) fn damaged(what: &'static str, offset: usize) -> Fault {
    Fault::Damaged {
        what,
        offset: offset as u64,
    }
}

/// `len` bytes at `off`, or `Short`.
pub(crate) fn bytes(data: &[u8], off: usize, len: usize) -> Result<&[u8], Fault> {
    let end = off
        .checked_add(len)
        .ok_or(Fault::Short { needed: u64::MAX })?;
    data.get(off..end)
        .ok_or(Fault::Short { needed: end as u64 })
}

pub(crate) fn u8_at(data: &[u8], off: usize) -> Result<u8, Fault> {
    Ok(bytes(data, off, 1)?[0])
}

pub(crate) fn u16_at(data: &[u8], off: usize) -> Result<u16, Fault> {
    let b = bytes(data, off, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn u32_at(data: &[u8], off: usize) -> Result<u32, Fault> {
    let b = bytes(data, off, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn u64_at(data: &[u8], off: usize) -> Result<u64, Fault> {
    let b = bytes(data, off, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

pub(crate) fn array_at<const N: usize>(data: &[u8], off: usize) -> Result<[u8; N], Fault> {
    let b = bytes(data, off, N)?;
    let mut a = [0u8; N];
    a.copy_from_slice(b);
    Ok(a)
}

/// A SQL Server GUID (stored mixed-endian).
pub(crate) fn guid_at(data: &[u8], off: usize) -> Result<Uuid, Fault> {
    Ok(Uuid::from_bytes_le(array_at::<16>(data, off)?))
}

/// XOR of the 16-bit words of `words`: MTF's header checksum.
fn xor_words(words: &[u8]) -> u16 {
    words
        .chunks_exact(2)
        .fold(0u16, |acc, w| acc ^ u16::from_le_bytes([w[0], w[1]]))
}

/// The 5-byte MTF date: 14 bits year, 4 month, 5 day, 5 hour, 6 minute, 6 second.
/// `Ok(None)` for the all-zero "no date".
pub(crate) fn date_at(
    data: &[u8],
    off: usize,
    what: &'static str,
) -> Result<Option<BackupDate>, Fault> {
    let raw = array_at::<5>(data, off)?;
    let v = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if v == 0 {
        return Ok(None);
    }
    let field = |shift: u32, bits: u32| ((v >> shift) & ((1u64 << bits) - 1)) as u8;
    let year = ((v >> 26) & 0x3fff) as i32;
    let month = Month::try_from(field(22, 4)).map_err(|_| damaged(what, off))?;
    let date =
        Date::from_calendar_date(year, month, field(17, 5)).map_err(|_| damaged(what, off))?;
    let time =
        Time::from_hms(field(12, 5), field(6, 6), field(0, 6)).map_err(|_| damaged(what, off))?;
    Ok(Some(BackupDate(PrimitiveDateTime::new(date, time))))
}

/// An MTF "tape address": a string or byte run stored inside the block, by size and offset from
/// the block start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TapeAddress {
    pub size: u16,
    pub offset: u16,
}

impl TapeAddress {
    pub(crate) fn at(data: &[u8], off: usize) -> Result<TapeAddress, Fault> {
        Ok(TapeAddress {
            size: u16_at(data, off)?,
            offset: u16_at(data, off + 2)?,
        })
    }

    /// The bytes it points to within the block at `block`.
    pub(crate) fn get<'a>(&self, data: &'a [u8], block: usize) -> Result<&'a [u8], Fault> {
        if self.size == 0 {
            return Ok(&[]);
        }
        bytes(
            data,
            block + usize::from(self.offset),
            usize::from(self.size),
        )
    }
}

/// UTF-16LE text; an odd trailing byte is ignored, invalid units become U+FFFD.
pub(crate) fn utf16(raw: &[u8]) -> String {
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|w| u16::from_le_bytes([w[0], w[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// An MTF string in the block's string type (1 = ANSI, 2 = Unicode).
fn mtf_string(raw: &[u8], string_type: u8) -> String {
    if string_type == 1 {
        raw.iter().map(|b| char::from(*b)).collect()
    } else {
        utf16(raw)
    }
}

/// The common block header of a DBLK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    pub kind: [u8; 4],
    pub first_event: u16,
    pub os_data: TapeAddress,
    pub string_type: u8,
}

/// True when the 52 bytes at `off` look like a DBLK header: four capital letters and a valid
/// header checksum. `Short` when they are not all there.
pub(crate) fn is_block_header(data: &[u8], off: usize) -> Result<bool, Fault> {
    let raw = bytes(data, off, BLOCK_HEADER_LEN)?;
    Ok(raw[..4].iter().all(u8::is_ascii_uppercase)
        && xor_words(&raw[..50]) == u16::from_le_bytes([raw[50], raw[51]]))
}

/// Reads and checks the common block header at `off`.
pub(crate) fn block_header(data: &[u8], off: usize) -> Result<BlockHeader, Fault> {
    if !is_block_header(data, off)? {
        return Err(damaged(
            "no valid MTF block header where the block chain says one starts",
            off,
        ));
    }
    let header = BlockHeader {
        kind: array_at::<4>(data, off)?,
        first_event: u16_at(data, off + 8)?,
        os_data: TapeAddress::at(data, off + 44)?,
        string_type: u8_at(data, off + 48)?,
    };
    if usize::from(header.first_event) < BLOCK_HEADER_LEN {
        return Err(damaged("MTF block's first stream overlaps its header", off));
    }
    Ok(header)
}

/// A stream inside a block: its id and where its data lies (`data_start` may be past the slice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stream {
    pub id: [u8; 4],
    pub data_start: usize,
    pub len: u64,
}

impl Stream {
    /// The stream's data, or `Short` when it runs past the slice.
    pub(crate) fn data<'a>(&self, data: &'a [u8]) -> Result<&'a [u8], Fault> {
        let len = usize::try_from(self.len).map_err(|_| Fault::Short { needed: u64::MAX })?;
        bytes(data, self.data_start, len)
    }
}

/// A block and its stream chain. `end` is where the next block starts (may be past the slice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub offset: usize,
    pub header: BlockHeader,
    pub streams: Vec<Stream>,
    pub end: u64,
}

/// Reads the block at `off` and walks its streams up to the padding stream that ends it.
/// `Short` when a stream header lies past the slice (the streams read so far are lost: callers
/// that can live with a partial block use [`read_block_partial`]).
pub(crate) fn read_block(data: &[u8], off: usize) -> Result<Block, Fault> {
    let (block, fault) = read_block_partial(data, off)?;
    match fault {
        Some(f) => Err(f),
        None => Ok(block),
    }
}

/// Like [`read_block`], but returns the streams read before the slice ended together with the
/// `Short` fault, so that a head that ends inside a long data stream still yields the block.
pub(crate) fn read_block_partial(data: &[u8], off: usize) -> Result<(Block, Option<Fault>), Fault> {
    let header = block_header(data, off)?;
    let mut block = Block {
        offset: off,
        header,
        streams: Vec::new(),
        end: 0,
    };
    let mut pos = (off as u64) + u64::from(header.first_event);
    loop {
        if block.streams.len() >= MAX_STREAMS_PER_BLOCK {
            return Err(damaged(
                "more streams in one MTF block than a backup writes",
                off,
            ));
        }
        let Ok(at) = usize::try_from(pos) else {
            return Ok((block, Some(Fault::Short { needed: pos })));
        };
        let raw = match bytes(data, at, STREAM_HEADER_LEN) {
            Ok(raw) => raw,
            Err(f) => return Ok((block, Some(f))),
        };
        if xor_words(&raw[..20]) != u16::from_le_bytes([raw[20], raw[21]]) {
            return Err(damaged("MTF stream header checksum does not match", at));
        }
        let id = [raw[0], raw[1], raw[2], raw[3]];
        let len = u64_at(raw, 8)?;
        let data_start = at + STREAM_HEADER_LEN;
        // Streams are 4-byte aligned.
        let next = (data_start as u64)
            .checked_add(len)
            .and_then(|e| e.checked_add(3))
            .map(|e| e & !3)
            .ok_or(damaged("MTF stream length overflows", at))?;
        block.streams.push(Stream {
            id,
            data_start,
            len,
        });
        pos = next;
        if id == PAD_STREAM {
            block.end = next;
            return Ok((block, None));
        }
    }
}

/// The media header (`TAPE` block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tape {
    /// Soft filemark block size in bytes: the layout's block size (512 or 4096).
    pub soft_filemark_size: u32,
    pub password_protected: bool,
    pub media_date: Option<BackupDate>,
    pub media_set_id: Option<Uuid>,
    pub family_count: Option<u16>,
    pub family_sequence: Option<u16>,
}

pub(crate) fn tape(data: &[u8], block: &Block) -> Result<Tape, Fault> {
    let off = block.offset;
    let password_alg = u16_at(data, off + 62)?;
    let sfm_blocks = u16_at(data, off + 64)?;
    if sfm_blocks == 0 || sfm_blocks > 128 {
        return Err(damaged(
            "TAPE block's soft filemark block size is not plausible",
            off + 64,
        ));
    }
    let password = TapeAddress::at(data, off + 76)?;
    let media_date = date_at(data, off + 88, "TAPE block's media date is not a date")?;
    let mut tape = Tape {
        soft_filemark_size: u32::from(sfm_blocks) * 512,
        password_protected: password_alg != 0 || password.size != 0,
        media_date,
        media_set_id: None,
        family_count: None,
        family_sequence: None,
    };
    for stream in block.streams.iter().filter(|s| &s.id == b"RAID") {
        let raw = stream.data(data)?;
        if raw.len() < 26 {
            return Err(damaged(
                "TAPE block's RAID stream is too short",
                stream.data_start,
            ));
        }
        tape.media_set_id = Some(guid_at(raw, 0)?);
        // GUID, a u32 signature, the family count, a u16 that is 1 in every sample, then this
        // file's family sequence number.
        tape.family_count = Some(u16_at(raw, 20)?);
        tape.family_sequence = Some(u16_at(raw, 24)?);
    }
    Ok(tape)
}

/// The start-of-set block (`SSET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartOfSet {
    pub data_set_number: u16,
    pub password_protected: bool,
    pub backup_name: String,
    pub backup_description: String,
    pub user_name: String,
    pub time_zone: i8,
    pub backup_set_guid: Uuid,
}

pub(crate) fn start_of_set(data: &[u8], block: &Block) -> Result<StartOfSet, Fault> {
    let off = block.offset;
    let st = block.header.string_type;
    let text = |at: usize| -> Result<String, Fault> {
        let addr = TapeAddress::at(data, off + at)?;
        Ok(mtf_string(addr.get(data, off)?, st))
    };
    let password_alg = u16_at(data, off + 56)?;
    let password = TapeAddress::at(data, off + 72)?;
    let os = block.header.os_data;
    if os.size < 16 {
        return Err(damaged(
            "SSET block has no backup set GUID in its OS-specific data",
            off + 44,
        ));
    }
    let guid_raw = os.get(data, off)?;
    Ok(StartOfSet {
        data_set_number: u16_at(data, off + 62)?,
        password_protected: password_alg != 0 || password.size != 0,
        backup_name: text(64)?,
        backup_description: text(68)?,
        user_name: text(76)?,
        time_zone: i8::from_le_bytes([u8_at(data, off + 95)?]),
        backup_set_guid: guid_at(guid_raw, 0)?,
    })
}

/// The machine name from a volume block (`VOLB`).
pub(crate) fn volume_machine_name(data: &[u8], block: &Block) -> Result<String, Fault> {
    let off = block.offset;
    let addr = TapeAddress::at(data, off + 64)?;
    Ok(mtf_string(addr.get(data, off)?, block.header.string_type))
}

/// From an end-of-set block (`ESET`): its data set number and, when it carries a `TSMP` set map,
/// the number of sets the map lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndOfSet {
    pub data_set_number: u16,
    pub set_map_entries: Option<u16>,
}

pub(crate) fn end_of_set(data: &[u8], block: &Block) -> Result<EndOfSet, Fault> {
    let mut eset = EndOfSet {
        data_set_number: u16_at(data, block.offset + 78)?,
        set_map_entries: None,
    };
    for stream in block.streams.iter().filter(|s| &s.id == b"TSMP") {
        let raw = stream.data(data)?;
        // Media family id (u32), then the number of set map entries (u16).
        eset.set_map_entries = Some(u16_at(raw, 4)?);
    }
    Ok(eset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtf_dates_unpack_their_bit_fields() {
        // 2019-05-02 21:05:55, as the TAPE block of a real SQL Server 2016 log backup stores it.
        let raw = [0x1f, 0x8d, 0x45, 0x51, 0x77];
        let date = date_at(&raw, 0, "test").ok().flatten();
        assert_eq!(
            date.map(|d| d.to_string()),
            Some("2019-05-02T21:05:55".to_owned())
        );
        assert_eq!(date_at(&[0; 5], 0, "test"), Ok(None));
    }

    #[test]
    fn impossible_dates_are_damage() {
        // month 15
        let v: u64 = (2019u64 << 26) | (15 << 22) | (2 << 17);
        let raw = [
            (v >> 32) as u8,
            (v >> 24) as u8,
            (v >> 16) as u8,
            (v >> 8) as u8,
            v as u8,
        ];
        assert!(matches!(date_at(&raw, 0, "x"), Err(Fault::Damaged { .. })));
    }

    #[test]
    fn reads_past_the_slice_report_how_much_is_needed() {
        assert_eq!(u32_at(&[1, 2], 0), Err(Fault::Short { needed: 4 }));
        assert_eq!(
            bytes(&[], usize::MAX, 2),
            Err(Fault::Short { needed: u64::MAX })
        );
    }
}
