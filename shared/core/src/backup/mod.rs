//! Reading SQL Server native backups (`.bak` / `.trn`) without a SQL Server: what
//! `RESTORE HEADERONLY` and `RESTORE FILELISTONLY` would report, from a bounded head and tail of
//! the file.
//!
//! A backup is a Microsoft Tape Format stream (module `mtf`): a `TAPE` media block, then per
//! backup set `SSET`, `VOLB`, an `MSCI` block whose `MQCI` stream holds SQL Server's metadata
//! (module `scin`), the data, an `MSLS` block with a second copy of the metadata (the only one
//! with the finish date and final size) and `ESET` (end of set, with the `TSMP` set map counting
//! the sets in the file), then a soft filemark (`SFMB`).
//! Compressed backups wrap that stream in an `MSSQLBAK` container ([`compressed`]).
//!
//! [`parse`] reads the head (up to [`HEAD_LIMIT`] bytes) for the media and the sets' metadata and
//! the tail (up to [`TAIL_LIMIT`] bytes) for what only the end holds; it is pure and its work and
//! allocation are bounded by the input sizes.

pub mod compressed;
mod model;
mod mtf;
mod scin;
pub mod summary;

pub use model::{
    BackupDate, BackupFile, BackupSet, BackupType, Container, FileEntry, FileType, MediaInfo,
    SoftwareVersion,
};

use mtf::{Block, Fault};
use scin::Config;

/// The most head bytes [`parse`] needs or uses.
pub const HEAD_LIMIT: usize = 1 << 20;
/// The most tail bytes [`parse`] uses.
pub const TAIL_LIMIT: usize = 64 << 10;
/// The most backup sets whose metadata [`parse`] reports from one head.
pub const MAX_SETS: u32 = 64;

/// When the head is too short, ask for at least this much: every header seen so far fits in it,
/// so one more read is enough.
const MIN_HEAD: usize = 64 << 10;
/// Most MTF blocks walked in one head (a 1 MiB head of 512-byte blocks has 2048).
const MAX_BLOCKS: usize = 1 << 14;
/// Most decompressed bytes taken from the head or tail of a compressed backup.
const DECOMPRESSED_LIMIT: usize = 4 << 20;

/// Why a backup could not be read. None of these is transient: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The object is neither an MTF stream nor an `MSSQLBAK` container.
    #[error(
        "not a SQL Server native backup: the file starts with neither an MTF TAPE header nor \
         an MSSQLBAK (compressed backup) header"
    )]
    NotABackup,
    /// The head given was too short to hold the backup's header blocks.
    #[error(
        "the first {needed} bytes of the backup are needed to read its header; fewer were read"
    )]
    NeedMoreHead { needed: usize },
    /// The object ends inside the backup's header blocks, or does not end with the end-of-set
    /// blocks every complete backup has (typically an incomplete upload or copy).
    #[error(
        "the backup file is truncated: it ends before its header or end-of-set blocks are \
         complete (incomplete upload or copy?)"
    )]
    Truncated,
    /// A container this reader cannot open (e.g. compressed backups while their decoder is
    /// missing or fails).
    #[error("unsupported backup container: {0}")]
    UnsupportedContainer(String),
    /// The bytes contradict the format. `offset` is in the MTF stream (for a compressed backup,
    /// in the decompressed stream).
    #[error("the backup file is damaged: {what} (at byte {offset})")]
    Damaged { what: &'static str, offset: u64 },
    /// The file holds more backup sets than this reader reports.
    #[error("the backup file holds at least {found} backup sets; at most {limit} are supported")]
    TooManySets { found: u32, limit: u32 },
}

impl ParseError {
    /// Whether trying again could succeed. Never: a bad file stays bad; callers record the
    /// rejection rather than retrying (a short head is answered by reading more, not retrying).
    pub fn is_transient(&self) -> bool {
        match self {
            ParseError::NotABackup
            | ParseError::NeedMoreHead { .. }
            | ParseError::Truncated
            | ParseError::UnsupportedContainer(_)
            | ParseError::Damaged { .. }
            | ParseError::TooManySets { .. } => false,
        }
    }
}

impl From<compressed::CompressedError> for ParseError {
    fn from(e: compressed::CompressedError) -> Self {
        ParseError::UnsupportedContainer(e.to_string())
    }
}

/// Reads a backup's header.
///
/// `head` is the first bytes of the object (at most [`HEAD_LIMIT`]; the whole object when it is
/// smaller), `tail` the last bytes (at most [`TAIL_LIMIT`]) or `None`, `total_size` the object's
/// size. Without a tail (and a head that is not the whole object), the fields only the end of the
/// file holds are `None`: `set_count`, `backup_finish_date`, `backup_size`.
///
/// # Errors
/// [`ParseError`]: `NeedMoreHead` tells how many head bytes to read; every other variant is final.
pub fn parse(head: &[u8], tail: Option<&[u8]>, total_size: u64) -> Result<BackupFile, ParseError> {
    if head.len() as u64 > total_size || tail.is_some_and(|t| t.len() as u64 > total_size) {
        return Err(ParseError::Damaged {
            what: "the head or tail given is longer than the object size given",
            offset: total_size,
        });
    }
    let whole = head.len() as u64 == total_size;
    if compressed::is_compressed_container(head) {
        return parse_compressed(head, tail, total_size);
    }
    if !head.starts_with(b"TAPE") {
        let prefix_of_signature = |sig: &[u8]| sig.starts_with(head);
        if !whole && (prefix_of_signature(b"TAPE") || prefix_of_signature(b"MSSQLBAK")) {
            return Err(need_more(8, total_size));
        }
        return Err(ParseError::NotABackup);
    }
    let info = read_head(head).map_err(|f| short_head(f, head.len(), whole, total_size))?;
    let filemark = info.tape.soft_filemark_size;
    let tail_info = if whole {
        Some(check_end(head, 0, filemark, true)?)
    } else if let Some(tail) = tail {
        let joined = join_tail(head, tail, total_size);
        let tail = joined.as_deref().unwrap_or(tail);
        let full = tail.len() as u64 >= (TAIL_LIMIT as u64).min(total_size);
        Some(check_end(
            tail,
            total_size - tail.len() as u64,
            filemark,
            full,
        )?)
    } else {
        None
    };
    assemble(
        info,
        tail_info,
        Container::Mtf {
            block_size: 0, // set in assemble from the TAPE block
        },
    )
}

/// `MSSQLBAK`: decompress the head's chunks until the header blocks are read, and the tail's
/// last chunks until the end-of-set blocks are, then read the MTF stream inside.
///
/// Only the chunks whose output the walk of the header blocks reaches are decoded: the result
/// is the one decoding every whole chunk of the head would give, at a fraction of the work (the
/// header blocks are in the first few KiB of the stream; a head of 1 MiB decodes to up to
/// 4 MiB). Without a tail and with a head that is the whole object, the whole stream is decoded
/// (its end is read from it).
fn parse_compressed(
    head: &[u8],
    tail: Option<&[u8]>,
    total_size: u64,
) -> Result<BackupFile, ParseError> {
    let whole = head.len() as u64 == total_size;
    let mut stream = compressed::HeadStream::new(head, DECOMPRESSED_LIMIT)?;
    stream.extend_to(if whole { usize::MAX } else { 4 })?;
    if !stream.bytes().starts_with(b"TAPE") {
        if stream.bytes().len() < 4 {
            return Err(compressed_short(head.len(), whole, total_size));
        }
        return Err(ParseError::Damaged {
            what: "the compressed backup's first chunk does not hold an MTF TAPE header",
            offset: 0,
        });
    }
    // Walk, decode as far as the walk stopped, walk again: the walk's result on a prefix that
    // covers every byte it read is its result on the whole stream.
    let walked = loop {
        let needed = match read_head(stream.bytes()) {
            Ok(info) => match info.stopped_short_at {
                Some(needed) if stream.can_reach(needed) => needed,
                _ => break Ok(info),
            },
            Err(Fault::Short { needed }) if stream.can_reach(needed) => needed,
            Err(f) => break Err(f),
        };
        stream.extend_to(usize::try_from(needed).unwrap_or(usize::MAX))?;
    };
    let info = walked.map_err(|f| match f {
        Fault::Short { .. } => compressed_short(head.len(), whole, total_size),
        Fault::Damaged { what, offset } => ParseError::Damaged { what, offset },
    })?;
    let from_head = if whole {
        Some(scan_tail(stream.bytes(), 0, true)?)
    } else {
        None
    };
    // A whole file whose stream was not decompressed to its end (it decompresses to more than
    // the limit, e.g. the SQL Server 2022 fixture: 0.6 MB that hold 5.9 MB) counts its sets
    // from its last bytes, as a file read as head and tail does.
    let tail = match (&from_head, tail) {
        (Some(t), _) if t.set_count().is_some() => None,
        (Some(_), _) => Some(&head[head.len().saturating_sub(TAIL_LIMIT)..]),
        (None, tail) => tail,
    };
    // Decoded from the end until the end-of-set blocks are read (what a longer decode would
    // scan adds nothing once they are).
    let read_the_end = |bytes: &[u8]| {
        scan_tail(bytes, 0, false).is_ok_and(|t| t.end_of_set.is_some() && t.set_count().is_some())
    };
    let from_tail = match tail {
        Some(tail) => {
            match compressed::decompress_tail_until(
                tail,
                total_size,
                DECOMPRESSED_LIMIT,
                read_the_end,
            )? {
                Some(bytes) => Some(scan_tail(&bytes, 0, false)?),
                None => None,
            }
        }
        None => None,
    };
    let tail_info = match (from_head, from_tail) {
        (Some(mut early), Some(late)) => {
            early.merge(late);
            Some(early)
        }
        (early, late) => late.or(early),
    };
    assemble(info, tail_info, Container::Compressed { block_size: 0 })
}

fn need_more(needed: u64, total_size: u64) -> ParseError {
    let needed = needed.max(MIN_HEAD as u64).min(total_size);
    match usize::try_from(needed) {
        Ok(n) if n <= HEAD_LIMIT => ParseError::NeedMoreHead { needed: n },
        _ => ParseError::Damaged {
            what: "the backup's header blocks run past the first 1 MiB of the file",
            offset: HEAD_LIMIT as u64,
        },
    }
}

/// Maps a fault of the head walk to the caller's error.
fn short_head(f: Fault, have: usize, whole: bool, total_size: u64) -> ParseError {
    match f {
        Fault::Damaged { what, offset } => ParseError::Damaged { what, offset },
        Fault::Short { .. } if whole => ParseError::Truncated,
        Fault::Short { needed } if needed > total_size => ParseError::Truncated,
        Fault::Short { needed } if have >= HEAD_LIMIT || needed > HEAD_LIMIT as u64 => {
            ParseError::Damaged {
                what: "the backup's header blocks run past the first 1 MiB of the file",
                offset: needed.min(HEAD_LIMIT as u64),
            }
        }
        Fault::Short { needed } => need_more(needed, total_size),
    }
}

/// A compressed head that decompressed to too little MTF: ask for four times as much (where
/// the header blocks end in the compressed bytes cannot be known before they are decoded), up
/// to the head limit.
fn compressed_short(have: usize, whole: bool, total_size: u64) -> ParseError {
    if whole {
        ParseError::Truncated
    } else if have >= HEAD_LIMIT {
        ParseError::Damaged {
            what: "the compressed backup's header blocks run past the first 1 MiB of the file",
            offset: HEAD_LIMIT as u64,
        }
    } else {
        need_more(have.saturating_mul(4).min(HEAD_LIMIT) as u64, total_size)
    }
}

/// What one backup set's blocks in the head said.
#[derive(Debug)]
struct RawSet {
    sset: mtf::StartOfSet,
    machine_name: Option<String>,
    config: Option<Config>,
    trailer: Option<Config>,
}

#[derive(Debug)]
struct HeadInfo {
    tape: mtf::Tape,
    sets: Vec<RawSet>,
    /// True when the head held more sets than [`MAX_SETS`].
    too_many_sets: bool,
    /// Where the walk stopped for want of bytes, having read a set's metadata: the stream
    /// offset it would have needed to go on.
    stopped_short_at: Option<u64>,
}

/// Walks the block chain of the head.
fn read_head(data: &[u8]) -> Result<HeadInfo, Fault> {
    let tape_block = mtf::read_block(data, 0)?;
    if &tape_block.header.kind != b"TAPE" {
        return Err(mtf::damaged("the first MTF block is not a TAPE block", 0));
    }
    let tape = mtf::tape(data, &tape_block)?;
    let mut info = HeadInfo {
        tape,
        sets: Vec::new(),
        too_many_sets: false,
        stopped_short_at: None,
    };
    let mut current: Option<RawSet> = None;
    let mut off = tape_block.end;
    for _ in 0..MAX_BLOCKS {
        let complete = info
            .sets
            .iter()
            .chain(current.iter())
            .any(|s| s.config.is_some());
        match walk_one(data, off, &mut info, &mut current) {
            Ok(Some(next)) if next > off => off = next,
            Ok(Some(_)) => {
                return Err(mtf::damaged(
                    "MTF block chain does not advance",
                    off as usize,
                ))
            }
            Ok(None) => break,
            Err(Fault::Short { needed }) if complete => {
                info.stopped_short_at = Some(needed);
                break;
            }
            Err(f) => return Err(f),
        }
        if info.too_many_sets {
            break;
        }
    }
    if let Some(set) = current.take() {
        info.sets.push(set);
    }
    if !info.sets.iter().any(|s| s.config.is_some()) {
        if off < data.len() as u64 {
            // The walk stopped inside the head (block or set limit) without metadata.
            return Err(mtf::damaged(
                "no SQL Server metadata block (MSCI) among the backup's first blocks",
                off as usize,
            ));
        }
        return Err(Fault::Short {
            needed: off.saturating_add(mtf::BLOCK_HEADER_LEN as u64),
        });
    }
    Ok(info)
}

/// Reads the block at `off`, records what it says, and returns where the next block starts
/// (`None`: the walk is over).
fn walk_one(
    data: &[u8],
    off: u64,
    info: &mut HeadInfo,
    current: &mut Option<RawSet>,
) -> Result<Option<u64>, Fault> {
    let pos = usize::try_from(off).map_err(|_| Fault::Short { needed: off })?;
    let header = mtf::block_header(data, pos)?;
    if &header.kind == b"SFMB" {
        return Ok(Some(off + u64::from(info.tape.soft_filemark_size)));
    }
    let (block, short) = mtf::read_block_partial(data, pos)?;
    let no_metadata = "backup set has data but no SQL Server metadata block (MSCI) before it";
    match &header.kind {
        b"SSET" => {
            if let Some(done) = current.take() {
                info.sets.push(done);
            }
            if info.sets.len() >= MAX_SETS as usize {
                info.too_many_sets = true;
                return Ok(None);
            }
            short_first(short)?;
            *current = Some(RawSet {
                sset: mtf::start_of_set(data, &block)?,
                machine_name: None,
                config: None,
                trailer: None,
            });
        }
        b"VOLB" => {
            short_first(short)?;
            let name = mtf::volume_machine_name(data, &block)?;
            if let Some(set) = current.as_mut() {
                set.machine_name = Some(name);
            }
        }
        b"MSCI" | b"MSLS" => {
            let set = current.as_mut().ok_or(mtf::damaged(
                "SQL Server metadata block outside a backup set",
                pos,
            ))?;
            short_first(short)?;
            let config = metadata(data, &block)?;
            if &header.kind == b"MSCI" {
                set.config = Some(config);
            } else {
                set.trailer = Some(config);
            }
        }
        b"ESET" => {
            if let Some(done) = current.take() {
                info.sets.push(done);
            }
        }
        b"MSDA" | b"MSTL" if current.as_ref().is_some_and(|s| s.config.is_none()) => {
            return Err(mtf::damaged(no_metadata, pos));
        }
        _ => {}
    }
    if let Some(fault) = short {
        return Err(fault);
    }
    Ok(Some(block.end))
}

fn short_first(short: Option<Fault>) -> Result<(), Fault> {
    match short {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// The `MQCI` stream of an `MSCI` / `MSLS` block, decoded.
fn metadata(data: &[u8], block: &Block) -> Result<Config, Fault> {
    let stream = block
        .streams
        .iter()
        .find(|s| &s.id == b"MQCI")
        .ok_or(mtf::damaged(
            "SQL Server metadata block has no MQCI stream",
            block.offset,
        ))?;
    scin::parse_mqci(stream.data(data)?, stream.data_start)
}

/// Reads the end of an uncompressed backup. With `complete` (the bytes are all of the object's
/// last [`TAIL_LIMIT`] bytes), a missing end-of-set block or final soft filemark means the object
/// was cut short.
fn check_end(
    data: &[u8],
    base: u64,
    filemark: u32,
    complete: bool,
) -> Result<TailInfo, ParseError> {
    let t = scan_tail(data, base, true)?;
    if complete && (t.end_of_set.is_none() || !ends_with_filemark(data, filemark)) {
        return Err(ParseError::Truncated);
    }
    Ok(t)
}

/// When a short tail was read because the head already covers the rest of the object, the
/// object's last [`TAIL_LIMIT`] bytes put together from both; `None` when the tail is already
/// that long or the two do not meet.
fn join_tail(head: &[u8], tail: &[u8], total_size: u64) -> Option<Vec<u8>> {
    let want = (TAIL_LIMIT as u64).min(total_size);
    let tail_len = tail.len() as u64;
    if tail_len >= want || (head.len() as u64).saturating_add(tail_len) < total_size {
        return None;
    }
    let from = usize::try_from(total_size - want).ok()?;
    let to = usize::try_from(total_size - tail_len).ok()?;
    let mut joined = head.get(from..to)?.to_vec();
    joined.extend_from_slice(tail);
    Some(joined)
}

/// True when the bytes end with a soft filemark block, as every complete MTF backup does (after
/// its end-of-set blocks).
fn ends_with_filemark(data: &[u8], filemark_size: u32) -> bool {
    let Some(at) = data.len().checked_sub(filemark_size as usize) else {
        return false;
    };
    data[at..].starts_with(b"SFMB") && mtf::is_block_header(data, at) == Ok(true)
}

/// What the end of the file says.
#[derive(Debug, Default)]
struct TailInfo {
    trailers: Vec<Config>,
    end_of_set: Option<mtf::EndOfSet>,
    set_map_entries: Option<u16>,
    max_set_number: u16,
}

impl TailInfo {
    /// Adds what `later` (bytes nearer the end of the file) found.
    fn merge(&mut self, later: TailInfo) {
        self.trailers.extend(later.trailers);
        self.max_set_number = self.max_set_number.max(later.max_set_number);
        if later.set_map_entries.is_some() {
            self.set_map_entries = later.set_map_entries;
        }
        if later.end_of_set.is_some() {
            self.end_of_set = later.end_of_set;
        }
    }

    fn set_count(&self) -> Option<u32> {
        match self.set_map_entries {
            Some(n) if n > 0 => Some(u32::from(n)),
            _ if self.max_set_number > 0 => Some(u32::from(self.max_set_number)),
            _ => None,
        }
    }
}

/// Finds the `MSLS` and `ESET` blocks among the last bytes. `base` is the absolute offset of
/// `data[0]`; with `aligned`, only 512-byte boundaries are tried (MTF blocks never start
/// elsewhere), otherwise every offset (decompressed bytes whose position is unknown).
fn scan_tail(data: &[u8], base: u64, aligned: bool) -> Result<TailInfo, ParseError> {
    let mut info = TailInfo::default();
    let (first, step) = if aligned {
        (((512 - base % 512) % 512) as usize, 512)
    } else {
        (0, 1)
    };
    let mut i = first;
    while i + mtf::BLOCK_HEADER_LEN <= data.len() {
        let at = i;
        i += step;
        let kind = &data[at..at + 4];
        if kind != b"MSLS" && kind != b"ESET" {
            continue;
        }
        if !matches!(mtf::is_block_header(data, at), Ok(true)) {
            continue;
        }
        let Ok(block) = mtf::read_block(data, at) else {
            continue;
        };
        if kind == b"MSLS" {
            match metadata(data, &block) {
                Ok(config) => info.trailers.push(config),
                Err(Fault::Short { .. }) => {}
                Err(Fault::Damaged { what, offset }) => {
                    return Err(ParseError::Damaged {
                        what,
                        offset: base + offset,
                    })
                }
            }
        } else if let Ok(eset) = mtf::end_of_set(data, &block) {
            info.max_set_number = info.max_set_number.max(eset.data_set_number);
            if eset.set_map_entries.is_some() {
                info.set_map_entries = eset.set_map_entries;
            }
            info.end_of_set = Some(eset);
        }
    }
    Ok(info)
}

fn assemble(
    head: HeadInfo,
    tail: Option<TailInfo>,
    container: Container,
) -> Result<BackupFile, ParseError> {
    let tape = head.tape;
    let block_size = tape.soft_filemark_size;
    let container = match container {
        Container::Mtf { .. } => Container::Mtf { block_size },
        Container::Compressed { .. } => Container::Compressed { block_size },
    };
    let compressed = matches!(container, Container::Compressed { .. });
    let set_count = tail.as_ref().and_then(TailInfo::set_count);
    if head.too_many_sets {
        return Err(ParseError::TooManySets {
            found: set_count.unwrap_or(MAX_SETS + 1).max(MAX_SETS + 1),
            limit: MAX_SETS,
        });
    }
    let (Some(family_count), Some(family_sequence)) = (tape.family_count, tape.family_sequence)
    else {
        return Err(ParseError::Damaged {
            what: "the TAPE block has no RAID stream (media family count and sequence)",
            offset: 0,
        });
    };
    let mut password_protected = tape.password_protected;
    let mut sets = Vec::new();
    for raw in head.sets {
        let Some(config) = raw.config else { continue };
        password_protected |= raw.sset.password_protected;
        let trailer = raw
            .trailer
            .iter()
            .chain(tail.iter().flat_map(|t| t.trailers.iter()))
            .find(|t| t.same_set(&config));
        sets.push(backup_set(
            raw.sset,
            raw.machine_name,
            config,
            trailer,
            compressed,
        ));
    }
    Ok(BackupFile {
        container,
        media: MediaInfo {
            family_count,
            family_sequence,
            media_set_id: tape.media_set_id,
            password_protected,
            media_date: tape.media_date,
        },
        set_count,
        sets,
    })
}

fn backup_set(
    sset: mtf::StartOfSet,
    machine_name: Option<String>,
    c: Config,
    trailer: Option<&Config>,
    compressed: bool,
) -> BackupSet {
    let differential = c.backup_type.is_differential();
    let nonzero = |l: crate::Lsn| (!l.is_zero()).then_some(l);
    BackupSet {
        position: sset.data_set_number,
        backup_type: c.backup_type,
        copy_only: None,
        machine_name: machine_name.unwrap_or_default(),
        user_name: sset.user_name,
        backup_name: sset.backup_name,
        backup_description: sset.backup_description,
        software_version: c.software_version,
        database_version: c.database_version,
        compatibility_level: c.compatibility_level,
        sort_order: c.sort_order,
        unicode_locale_id: c.unicode_locale_id,
        unicode_comparison_style: c.unicode_comparison_style,
        collation: scin::collation_name(c.collation_info, c.sort_order),
        time_zone: sset.time_zone,
        compressed,
        has_checksums: c.has_checksums(),
        tail_log: c.is_tail_log(),
        first_lsn: c.first_lsn,
        last_lsn: c.last_lsn,
        checkpoint_lsn: c.checkpoint_lsn,
        database_backup_lsn: c.database_backup_lsn,
        differential_base_lsn: if differential {
            nonzero(c.differential_base_lsn)
        } else {
            None
        },
        differential_base_guid: if differential && !c.differential_base_guid.is_nil() {
            Some(c.differential_base_guid)
        } else {
            None
        },
        backup_set_guid: sset.backup_set_guid,
        family_guid: c.family_guid,
        recovery_fork_id: c.recovery_fork_id,
        fork_point_lsn: nonzero(c.fork_point_lsn),
        database_creation_date: c.database_creation_date,
        backup_start_date: c.backup_start_date,
        backup_finish_date: trailer.and_then(|t| t.backup_finish_date),
        backup_size: trailer.map(|t| t.backup_size),
        database_name: c.database_name,
        server_name: c.server_name,
        files: c.files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_parse_error_is_transient() {
        let all = [
            ParseError::NotABackup,
            ParseError::NeedMoreHead { needed: 10 },
            ParseError::Truncated,
            ParseError::UnsupportedContainer("x".into()),
            ParseError::Damaged {
                what: "x",
                offset: 1,
            },
            ParseError::TooManySets { found: 2, limit: 1 },
        ];
        assert!(all.iter().all(|e| !e.is_transient()));
    }

    #[test]
    fn text_files_are_not_backups() {
        let text = b"hello, this is not a backup at all";
        assert_eq!(
            parse(text, None, text.len() as u64),
            Err(ParseError::NotABackup)
        );
        assert_eq!(parse(text, None, 1 << 30), Err(ParseError::NotABackup));
    }

    #[test]
    fn a_few_bytes_of_a_tape_header_ask_for_more() {
        assert_eq!(
            parse(b"TA", None, 10 << 20),
            Err(ParseError::NeedMoreHead { needed: MIN_HEAD })
        );
        assert_eq!(parse(b"", None, 0), Err(ParseError::NotABackup));
    }

    #[test]
    fn compressed_containers_report_the_decoder_error() {
        let mut head = b"MSSQLBAK".to_vec();
        head.resize(4096, 0);
        let err = parse(&head, None, 1 << 20).err();
        assert!(
            matches!(
                err,
                Some(ParseError::UnsupportedContainer(_))
                    | Some(ParseError::Damaged { .. })
                    | Some(ParseError::NeedMoreHead { .. })
            ),
            "{err:?}"
        );
    }

    /// A reference parse of a compressed backup that decodes everything it is given: every
    /// whole chunk of the head, every whole record of the tail.
    fn parse_decoding_everything(head: &[u8], tail: &[u8], size: u64) -> BackupFile {
        let mtf = compressed::decompress_head(head, DECOMPRESSED_LIMIT).expect("head decodes");
        let info = read_head(&mtf).expect("header blocks");
        let end = compressed::decompress_tail(tail, size, DECOMPRESSED_LIMIT)
            .expect("tail decodes")
            .map(|bytes| scan_tail(&bytes, 0, false).expect("tail scans"));
        assemble(info, end, Container::Compressed { block_size: 0 }).expect("assembles")
    }

    #[test]
    fn compressed_backups_read_from_their_first_and_last_chunks_as_from_every_chunk() {
        const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak/");
        for name in [
            "sql2014_compressed_full_1set_SharePoint_Config.bak",
            "sql2014_compressed_full_2sets_SharePoint_Config.bak",
            "sql2022_compressed_full_Library.bak",
        ] {
            let file = std::fs::read(format!("{FIXTURES}{name}")).expect("fixture");
            let size = file.len() as u64;
            let tail = &file[file.len() - TAIL_LIMIT..];
            for head_len in [MIN_HEAD, 256 << 10, HEAD_LIMIT] {
                let head = &file[..head_len.min(file.len() - 1)];
                assert_eq!(
                    parse(head, Some(tail), size),
                    Ok(parse_decoding_everything(head, tail, size)),
                    "{name}, head of {head_len} bytes"
                );
            }
        }
    }

    #[test]
    fn heads_longer_than_the_object_are_refused() {
        assert!(matches!(
            parse(b"TAPE", None, 2),
            Err(ParseError::Damaged { .. })
        ));
    }
}
