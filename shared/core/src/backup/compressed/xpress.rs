//! The "LZ77+Huffman" decoder of [MS-XCA] (Xpress Huffman), as SQL Server uses it for the chunks
//! of a compressed backup.
//!
//! A stream is a sequence of blocks, each a 256-byte table of 512 four-bit code lengths (symbol
//! `2k` in the low nibble of byte `k`) followed by a bit stream read as little-endian 16-bit words,
//! most significant bit first. Symbols below 256 are literal bytes; a symbol `256 + (b << 4 | l)`
//! is a match whose offset is `1 << b` plus the next `b` bits and whose length is `l + 3`, with
//! `l == 15` extended by one byte (and a byte of 255 by a 16-bit word, and a word of 0 by a 32-bit
//! word). Each block yields 64 KiB of output, then the next table starts where the input stands.
//!
//! The stream does not say where it ends: the container gives the output size, and decoding stops
//! there. Reading past the end of the input counts as damage only when the bits actually consumed
//! run past it (the reader looks up to 32 bits ahead).

/// Bits of the direct-lookup decoding table (the longest code length of the format).
const TABLE_BITS: u32 = 15;
/// Entries of the decoding table.
const TABLE_SIZE: usize = 1 << TABLE_BITS;
/// Bytes of a block's code-length table.
pub(super) const LENGTHS_LEN: usize = 256;
/// Output bytes of one block, after which a new code-length table follows.
const BLOCK_OUTPUT: usize = 1 << 16;
/// Shortest match.
const MIN_MATCH: usize = 3;

/// What is wrong with a compressed chunk's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkDamage {
    /// A code-length table that is not a complete prefix code.
    #[error("its Huffman code-length table is not a complete prefix code")]
    BadHuffmanTable,
    /// A match reaching back before the start of the chunk's output.
    #[error("a match reaches back before the start of the chunk's output")]
    MatchBeforeStart,
    /// An extended match length that the format forbids (below 15 once decoded).
    #[error("a match has an invalid extended length")]
    BadMatchLength,
    /// The compressed bytes end before the chunk's declared output is complete.
    #[error("its compressed data ends before its declared output is complete")]
    InputExhausted,
}

/// True when `lengths` (a 256-byte code-length table) describes a complete prefix code, the mark
/// of a real table (used to find chunk boundaries in a tail).
pub(super) fn is_complete_code(lengths: &[u8]) -> bool {
    lengths.len() == LENGTHS_LEN && kraft_sum(lengths) == TABLE_SIZE as u64
}

/// Σ 2^(15 - length) over the used symbols: exactly 2^15 for a complete prefix code.
fn kraft_sum(lengths: &[u8]) -> u64 {
    lengths
        .iter()
        .flat_map(|&b| [b & 0x0F, b >> 4])
        .filter(|&len| len != 0)
        .map(|len| 1u64 << (TABLE_BITS - u32::from(len)))
        .sum()
}

/// Fills `table` (TABLE_SIZE entries of `symbol << 4 | length`) with the canonical code the
/// lengths describe: codes are given in order of (length, symbol), counting up from zero.
fn build_table(lengths: &[u8], table: &mut [u16]) -> Result<(), ChunkDamage> {
    if !is_complete_code(lengths) {
        return Err(ChunkDamage::BadHuffmanTable);
    }
    let length_of = |symbol: usize| {
        let byte = lengths.get(symbol / 2).copied().unwrap_or(0);
        if symbol.is_multiple_of(2) {
            byte & 0x0F
        } else {
            byte >> 4
        }
    };
    let mut next = 0usize;
    for len in 1..=TABLE_BITS as u8 {
        let span = 1usize << (TABLE_BITS - u32::from(len));
        for symbol in 0..2 * LENGTHS_LEN {
            if length_of(symbol) == len {
                // symbol < 512 and len < 16: the entry fits in a u16.
                let entry = ((symbol as u16) << 4) | u16::from(len);
                table
                    .get_mut(next..next + span)
                    .ok_or(ChunkDamage::BadHuffmanTable)?
                    .fill(entry);
                next += span;
            }
        }
    }
    Ok(())
}

/// The bit reader: `bits` holds the next bits left-aligned, `16 + extra` of them valid; bytes
/// past the end of the input read as zero.
struct Bits<'a> {
    input: &'a [u8],
    pos: usize,
    bits: u32,
    extra: i32,
}

impl<'a> Bits<'a> {
    fn new(input: &'a [u8], pos: usize) -> Self {
        let mut reader = Bits {
            input,
            pos,
            bits: 0,
            extra: 16,
        };
        let high = reader.word();
        let low = reader.word();
        reader.bits = (high << 16) | low;
        reader
    }

    fn word(&mut self) -> u32 {
        let byte = |i: usize| u32::from(self.input.get(i).copied().unwrap_or(0));
        let word = byte(self.pos) | (byte(self.pos + 1) << 8);
        self.pos += 2;
        word
    }

    /// The next `n` bits (n ≤ 16) without consuming them.
    fn peek(&self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            self.bits >> (32 - n)
        }
    }

    /// Consumes `n` bits (n ≤ 15), refilling from the input.
    fn consume(&mut self, n: u32) -> Result<(), ChunkDamage> {
        self.bits = self.bits.checked_shl(n).unwrap_or(0);
        self.extra -= n as i32;
        if self.extra < 0 {
            let shift = (-self.extra) as u32;
            self.bits |= self.word() << shift;
            self.extra += 16;
        }
        // Bits consumed so far must lie inside the input.
        let fetched = self.pos as u64 * 8;
        let buffered = (16 + self.extra) as u64;
        if fetched.saturating_sub(buffered) > self.input.len() as u64 * 8 {
            return Err(ChunkDamage::InputExhausted);
        }
        Ok(())
    }

    /// A byte read straight from the input (extended match lengths).
    fn byte(&mut self) -> Result<u32, ChunkDamage> {
        let b = self
            .input
            .get(self.pos)
            .copied()
            .ok_or(ChunkDamage::InputExhausted)?;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn le(&mut self, n: usize) -> Result<u32, ChunkDamage> {
        let mut value = 0u32;
        for i in 0..n {
            value |= self.byte()? << (8 * i);
        }
        Ok(value)
    }
}

/// Decodes `input` (one chunk's compressed stream, whose whole output is `declared` bytes) and
/// appends the first `min(declared, wanted)` output bytes to `out`.
///
/// # Errors
/// [`ChunkDamage`] when the stream contradicts the format or ends early.
pub(super) fn decompress_into(
    input: &[u8],
    declared: usize,
    wanted: usize,
    out: &mut Vec<u8>,
) -> Result<(), ChunkDamage> {
    let target = declared.min(wanted);
    let start = out.len();
    let end = start + target;
    out.reserve(target);
    let mut table = vec![0u16; TABLE_SIZE];
    let mut pos = 0usize;
    while out.len() < end {
        let lengths = input
            .get(pos..pos + LENGTHS_LEN)
            .ok_or(ChunkDamage::InputExhausted)?;
        build_table(lengths, &mut table)?;
        let mut bits = Bits::new(input, pos + LENGTHS_LEN);
        let block_end = (out.len() + BLOCK_OUTPUT).min(end);
        while out.len() < block_end {
            let entry = table
                .get(bits.peek(TABLE_BITS) as usize)
                .copied()
                .unwrap_or(0);
            bits.consume(u32::from(entry & 0x0F))?;
            let symbol = usize::from(entry >> 4);
            if symbol < 256 {
                out.push(symbol as u8);
                continue;
            }
            let offset_bits = ((symbol >> 4) & 0x0F) as u32;
            let mut length = symbol & 0x0F;
            if length == 15 {
                length = bits.byte()? as usize;
                if length == 255 {
                    length = bits.le(2)? as usize;
                    if length == 0 {
                        length = bits.le(4)? as usize;
                    }
                    if length < 15 {
                        return Err(ChunkDamage::BadMatchLength);
                    }
                    length -= 15;
                }
                length += 15;
            }
            length += MIN_MATCH;
            let offset = (1usize << offset_bits) + bits.peek(offset_bits) as usize;
            bits.consume(offset_bits)?;
            if offset > out.len() - start {
                return Err(ChunkDamage::MatchBeforeStart);
            }
            let count = length.min(end - out.len());
            let from = out.len() - offset;
            if offset >= count {
                out.extend_from_within(from..from + count);
            } else {
                for i in 0..count {
                    let b = out.get(from + i).copied().unwrap_or(0);
                    out.push(b);
                }
            }
        }
        // The next block's table starts where the reader stands; buffered bits are dropped.
        pos = bits.pos;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A table giving `a` the code `0` and the match symbol 256 (offset 1, length 3) the code `1`.
    fn two_symbol_table() -> Vec<u8> {
        let mut t = vec![0u8; LENGTHS_LEN];
        t[usize::from(b'a') / 2] = 0x10; // 'a' = 0x61 is odd: high nibble
        t[128] = 0x01; // symbol 256: low nibble of byte 128
        t
    }

    #[test]
    fn a_literal_then_an_overlapping_match_repeat_the_literal() {
        let mut input = two_symbol_table();
        // bits 0 ('a'), 1 (match offset 1, length 3): word 0b0100_0000_0000_0000, LE.
        input.extend_from_slice(&[0x00, 0x40, 0x00, 0x00]);
        let mut out = Vec::new();
        decompress_into(&input, 4, usize::MAX, &mut out).unwrap();
        assert_eq!(out, b"aaaa");
    }

    #[test]
    fn output_stops_at_the_wanted_length() {
        let mut input = two_symbol_table();
        input.extend_from_slice(&[0x00, 0x40, 0x00, 0x00]);
        let mut out = b"xy".to_vec();
        decompress_into(&input, 4, 2, &mut out).unwrap();
        assert_eq!(out, b"xyaa");
    }

    #[test]
    fn a_match_before_any_output_is_damage() {
        let mut input = two_symbol_table();
        input.extend_from_slice(&[0x00, 0x80, 0x00, 0x00]); // first bit 1: the match
        let mut out = Vec::new();
        assert_eq!(
            decompress_into(&input, 4, usize::MAX, &mut out),
            Err(ChunkDamage::MatchBeforeStart)
        );
    }

    #[test]
    fn a_match_never_reaches_into_output_of_an_earlier_chunk() {
        let mut input = two_symbol_table();
        input.extend_from_slice(&[0x00, 0x80, 0x00, 0x00]);
        let mut out = b"earlier chunk".to_vec();
        assert_eq!(
            decompress_into(&input, 4, usize::MAX, &mut out),
            Err(ChunkDamage::MatchBeforeStart)
        );
    }

    #[test]
    fn an_incomplete_code_table_is_damage() {
        let mut input = vec![0u8; LENGTHS_LEN];
        input[0] = 0x01; // one symbol of length 1: half the code space unused
        input.extend_from_slice(&[0; 8]);
        let mut out = Vec::new();
        assert_eq!(
            decompress_into(&input, 4, usize::MAX, &mut out),
            Err(ChunkDamage::BadHuffmanTable)
        );
    }

    #[test]
    fn an_oversubscribed_code_table_is_damage() {
        let input = vec![0x11u8; LENGTHS_LEN + 8]; // 512 codes of length 1
        let mut out = Vec::new();
        assert_eq!(
            decompress_into(&input, 4, usize::MAX, &mut out),
            Err(ChunkDamage::BadHuffmanTable)
        );
    }

    #[test]
    fn a_stream_shorter_than_its_declared_output_is_damage() {
        let mut input = two_symbol_table();
        input.extend_from_slice(&[0x00, 0x40, 0x00, 0x00]);
        let mut out = Vec::new();
        // 32 bits of input hold at most 32 one-bit literals: 1000 bytes cannot come out.
        assert_eq!(
            decompress_into(&input, 1000, usize::MAX, &mut out),
            Err(ChunkDamage::InputExhausted)
        );
        let mut out = Vec::new();
        assert_eq!(
            decompress_into(&input[..100], 4, usize::MAX, &mut out),
            Err(ChunkDamage::InputExhausted)
        );
    }
}
