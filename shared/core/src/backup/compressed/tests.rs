//! Tests of the `MSSQLBAK` reader against the two compressed fixtures (SQL Server 2014 SP1,
//! database SharePoint_Config on server SQLCLUSTER) and against damaged copies of them.

#![allow(clippy::unwrap_used)]

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak/");
const ONE_SET: &str = "sql2014_compressed_full_1set_SharePoint_Config.bak";
const TWO_SETS: &str = "sql2014_compressed_full_2sets_SharePoint_Config.bak";
const HEAD: usize = 1 << 20;
const TAIL: usize = 64 << 10;
const NO_LIMIT: usize = usize::MAX;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).expect("fixture is readable")
}

fn tail_of(file: &[u8]) -> &[u8] {
    &file[file.len() - TAIL..]
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Offsets of the MTF blocks with this signature, looked for at every 512-byte boundary.
fn blocks(stream: &[u8], signature: &[u8; 4]) -> Vec<usize> {
    (0..stream.len())
        .step_by(512)
        .filter(|&at| stream[at..].starts_with(signature))
        .collect()
}

/// MTF descriptor blocks end their 52-byte common header with a checksum, and stream headers
/// (`TSMP`) their 22-byte header: the XOR of the header's little-endian words is zero. A decoder
/// that is off by a single byte breaks it.
fn header_checksum_holds(block: &[u8], header_len: usize) -> bool {
    block[..header_len]
        .chunks_exact(2)
        .fold(0u16, |x, w| x ^ u16::from_le_bytes([w[0], w[1]]))
        == 0
}

const DESCRIPTORS: [(&[u8; 4], usize); 7] = [
    (b"TAPE", 52),
    (b"SFMB", 52),
    (b"SSET", 52),
    (b"VOLB", 52),
    (b"MSCI", 52),
    (b"ESET", 52),
    (b"TSMP", 22),
];

fn assert_descriptor_checksums(stream: &[u8]) -> usize {
    let mut seen = 0;
    for (sig, header_len) in DESCRIPTORS {
        for at in blocks(stream, sig) {
            assert!(
                header_checksum_holds(&stream[at..], header_len),
                "{} block at {at} fails its header checksum",
                String::from_utf8_lossy(sig)
            );
            seen += 1;
        }
    }
    seen
}

#[test]
fn the_signature_marks_a_compressed_container() {
    assert!(is_compressed_container(&fixture(ONE_SET)));
    assert!(!is_compressed_container(b"TAPE\0\0\0\0"));
    assert!(!is_compressed_container(b"MSSQL"));
    assert_eq!(
        decompress_head(b"TAPE and more", NO_LIMIT),
        Err(CompressedError::NotCompressed)
    );
}

#[test]
fn the_first_mebibyte_of_each_fixture_decodes_to_mtf_naming_database_and_server() {
    for name in [ONE_SET, TWO_SETS] {
        let file = fixture(name);
        let mtf = decompress_head(&file[..HEAD], NO_LIMIT).unwrap();
        assert!(mtf.starts_with(b"TAPE"), "{name}");
        // The layout of every SQL Server MTF stream with 512-byte blocks.
        assert_eq!(blocks(&mtf, b"SFMB").first(), Some(&1024), "{name}");
        assert_eq!(blocks(&mtf, b"SSET"), vec![1536], "{name}");
        assert_eq!(blocks(&mtf, b"VOLB").first(), Some(&2560), "{name}");
        assert_eq!(blocks(&mtf, b"MSCI").first(), Some(&3584), "{name}");
        assert!(
            contains(&mtf[..16 << 10], &utf16("SharePoint_Config")),
            "{name}"
        );
        assert!(contains(&mtf[..16 << 10], &utf16("SQLCLUSTER")), "{name}");
        assert!(
            contains(&mtf[..1024], &utf16("Microsoft SQL Server")),
            "{name}"
        );
        assert_eq!(mtf.len() % 512, 0, "{name}: chunks hold whole sectors");
        assert!(mtf.len() > 4 * HEAD, "{name}: {} bytes", mtf.len());
        assert_descriptor_checksums(&mtf);
    }
}

#[test]
fn whole_files_decode_to_streams_whose_every_block_is_in_place() {
    for (name, sets) in [(ONE_SET, 1), (TWO_SETS, 2)] {
        let file = fixture(name);
        let mtf = decompress_head(&file, NO_LIMIT).unwrap();
        assert_eq!(blocks(&mtf, b"TAPE"), vec![0], "{name}");
        assert_eq!(blocks(&mtf, b"SSET").len(), sets, "{name}");
        assert_eq!(blocks(&mtf, b"TSMP").len(), sets, "{name}");
        // Each set closes with ESET, TSMP, ESET and a final filemark.
        assert_eq!(blocks(&mtf, b"ESET").len(), 2 * sets, "{name}");
        assert_eq!(
            blocks(&mtf, b"SFMB").last(),
            Some(&(mtf.len() - 512)),
            "{name}"
        );
        // Any byte lost or added inside a chunk would move these blocks off their boundaries
        // or break their checksums.
        let checked = assert_descriptor_checksums(&mtf);
        assert!(checked >= 8 * sets, "{name}: {checked} blocks");
        let sset = utf16("SharePoint_Config");
        let trailer = &mtf[mtf.len() - (64 << 10)..];
        assert!(
            contains(trailer, &sset),
            "{name}: trailer metadata names the database"
        );
    }
}

#[test]
fn the_chunk_index_points_at_chunks_decoded_where_it_says() {
    // The index record lists (offset in the set's stream, file offset) of chunks; walking the
    // records with the declared sizes must put those chunks at those stream offsets (the set's
    // stream starts after TAPE and the first filemark, at byte 1536).
    let file = fixture(ONE_SET);
    let mut at = FIRST_RECORD;
    let mut stream_at = 0usize;
    let mut starts = std::collections::HashMap::new();
    let mut entries = Vec::new();
    while at < file.len() {
        let record = read_record(&file, at).unwrap().unwrap();
        if file[at] == KIND_CHUNK {
            starts.insert(at as u64, stream_at);
        }
        if file[at] == KIND_INDEX {
            let count = u32_at(&file, at + 28).unwrap();
            for i in 0..count {
                let e = at + RECORD_HEADER + INDEX_FIELDS + i * INDEX_ENTRY;
                let word = |o: usize| u64::from_le_bytes(file[o..o + 8].try_into().unwrap());
                entries.push((word(e), word(e + 8)));
            }
        }
        stream_at += record.output_len();
        at = record.end;
    }
    assert_eq!(at, file.len());
    assert_eq!(entries.len(), 2);
    for (stream_offset, file_offset) in entries {
        assert_eq!(
            starts.get(&file_offset).map(|&s| s as u64),
            Some(stream_offset + 1536)
        );
    }
}

#[test]
fn the_tail_of_the_two_set_file_holds_the_second_sets_end_blocks() {
    let file = fixture(TWO_SETS);
    let whole = decompress_head(&file, NO_LIMIT).unwrap();
    let tail = decompress_tail(tail_of(&file), file.len() as u64, NO_LIMIT)
        .unwrap()
        .expect("a record boundary in the tail");
    assert!(whole.ends_with(&tail), "the tail is the end of the stream");
    assert!(tail.len() > 256 << 10, "{} bytes", tail.len());
    assert_eq!((whole.len() - tail.len()) % 512, 0);
    assert_eq!(blocks(&tail, b"ESET").len(), 2);
    assert_eq!(blocks(&tail, b"TSMP").len(), 1);
    assert_eq!(blocks(&tail, b"SFMB").last(), Some(&(tail.len() - 512)));
    assert!(contains(&tail, &utf16("SharePoint_Config")));
    assert!(contains(&tail, &utf16("SQLCLUSTER")));
    assert_descriptor_checksums(&tail);
    // The second set's end blocks lie past the second SSET of the whole stream.
    let second_sset = blocks(&whole, b"SSET")[1];
    let first_eset_in_tail = whole.len() - tail.len() + blocks(&tail, b"ESET")[0];
    assert!(first_eset_in_tail > second_sset);
}

#[test]
fn the_tail_of_the_one_set_file_is_the_end_of_its_stream() {
    let file = fixture(ONE_SET);
    let whole = decompress_head(&file, NO_LIMIT).unwrap();
    let tail = decompress_tail(tail_of(&file), file.len() as u64, NO_LIMIT)
        .unwrap()
        .unwrap();
    assert!(whole.ends_with(&tail));
    assert_eq!(blocks(&tail, b"ESET").len(), 2);
    assert_eq!(blocks(&tail, b"TSMP").len(), 1);
}

#[test]
fn every_short_tail_of_whole_records_decodes_to_the_end_of_the_stream() {
    let file = fixture(ONE_SET);
    let whole = decompress_head(&file, NO_LIMIT).unwrap();
    for len in [600, 1024, 2000, 4096, 10_000, 40_000] {
        let tail = &file[file.len() - len..];
        match decompress_tail(tail, file.len() as u64, NO_LIMIT).unwrap() {
            Some(out) => assert!(whole.ends_with(&out), "tail of {len}"),
            None => panic!("no boundary in a tail of {len} bytes"),
        }
    }
}

#[test]
fn a_tail_that_is_the_whole_object_decodes_from_the_first_record() {
    let file = fixture(ONE_SET);
    let out = decompress_tail(&file, file.len() as u64, NO_LIMIT)
        .unwrap()
        .unwrap();
    assert!(out.starts_with(b"TAPE"));
}

#[test]
fn a_tail_without_a_record_boundary_gives_none() {
    let file = fixture(ONE_SET);
    // A tail cut off before the object's end never chains to its end.
    let cut = &file[..file.len() - 100];
    let tail = &cut[cut.len() - 4096..];
    assert_eq!(decompress_tail(tail, file.len() as u64, NO_LIMIT), Ok(None));
    assert_eq!(decompress_tail(&[0u8; 4096], 1 << 20, NO_LIMIT), Ok(None));
    assert_eq!(decompress_tail(&[], 0, NO_LIMIT), Ok(None));
}

#[test]
fn a_tail_longer_than_the_object_is_refused() {
    assert_eq!(
        decompress_tail(&[0u8; 10], 5, NO_LIMIT),
        Err(CompressedError::TailLongerThanObject {
            tail_len: 10,
            total_size: 5
        })
    );
}

#[test]
fn truncated_heads_decode_fewer_chunks_without_error() {
    let file = fixture(TWO_SETS);
    let full = decompress_head(&file[..HEAD], NO_LIMIT).unwrap();
    let mut previous = 0;
    for cut in [
        8,
        100,
        FIRST_RECORD,
        0x300,
        0x35c,
        0x400,
        0x700,
        0x9da,
        0xa00,
        100_000,
        700_000,
    ] {
        let out = decompress_head(&file[..cut], NO_LIMIT).unwrap();
        assert!(full.starts_with(&out), "cut at {cut}");
        assert!(out.len() >= previous, "cut at {cut}");
        previous = out.len();
    }
    // The first chunk (TAPE) ends at 0x35c; the raw filemark follows at 0x400.
    assert!(decompress_head(&file[..0x35b], NO_LIMIT)
        .unwrap()
        .is_empty());
    assert_eq!(
        decompress_head(&file[..0x35c], NO_LIMIT).unwrap().len(),
        1024
    );
    assert_eq!(
        decompress_head(&file[..0x600], NO_LIMIT).unwrap().len(),
        1536
    );
}

#[test]
fn the_head_output_stops_at_the_limit() {
    let file = fixture(ONE_SET);
    let full = decompress_head(&file[..HEAD], NO_LIMIT).unwrap();
    for limit in [0, 1, 1000, 1024, 1500, 5000, 100_000] {
        let out = decompress_head(&file[..HEAD], limit).unwrap();
        assert_eq!(out, full[..limit], "limit {limit}");
    }
}

#[test]
fn the_tail_output_keeps_the_last_records_that_fit_the_limit() {
    let file = fixture(TWO_SETS);
    let full = decompress_tail(tail_of(&file), file.len() as u64, NO_LIMIT)
        .unwrap()
        .unwrap();
    for limit in [4096, 65_536, 200_000] {
        let out = decompress_tail(tail_of(&file), file.len() as u64, limit)
            .unwrap()
            .unwrap();
        assert!(out.len() <= limit && full.ends_with(&out), "limit {limit}");
        assert!(blocks(&out, b"TSMP").len() == 1, "limit {limit}");
    }
    // The last chunk (ESET, TSMP, ESET) is 3072 bytes and the final filemark 512.
    let filemark_only = decompress_tail(tail_of(&file), file.len() as u64, 1000)
        .unwrap()
        .unwrap();
    assert_eq!(filemark_only, full[full.len() - 512..]);
    assert!(filemark_only.starts_with(b"SFMB"));
    assert_eq!(
        decompress_tail(tail_of(&file), file.len() as u64, 100),
        Err(CompressedError::OutputLimitTooSmall {
            limit: 100,
            needed: 512
        })
    );
}

#[test]
fn damaged_record_headers_are_named() {
    let file = fixture(ONE_SET);
    let head = &file[..HEAD];
    let with = |at: usize, byte: u8| {
        let mut copy = head.to_vec();
        copy[at] = byte;
        decompress_head(&copy, NO_LIMIT)
    };
    assert_eq!(
        with(0x1e0, 0x55),
        Err(CompressedError::UnknownRecord {
            offset: 0x1e0,
            record_type: 0x55
        })
    );
    assert_eq!(
        with(0x1e1, 0),
        Err(CompressedError::BadChunkHeader {
            offset: 0x1e0,
            sectors: 0,
            compressed_len: 354
        })
    );
    assert_eq!(
        with(0x1e1, 200),
        Err(CompressedError::BadChunkHeader {
            offset: 0x1e0,
            sectors: 200,
            compressed_len: 354
        })
    );
    assert_eq!(
        with(0x1fc, 0xff),
        Err(CompressedError::DamagedChunk {
            offset: 0x1e0,
            damage: ChunkDamage::BadHuffmanTable
        })
    );
    // The raw filemark at 0x400 declares its own size at byte 8.
    assert_eq!(
        with(0x409, 0x01),
        Err(CompressedError::BadFilemark { offset: 0x400 })
    );
    // Declaring more output than the stream holds.
    assert!(matches!(
        with(0x1e1, 100),
        Err(CompressedError::DamagedChunk {
            offset: 0x1e0,
            damage: ChunkDamage::InputExhausted | ChunkDamage::MatchBeforeStart
        })
    ));
}

#[test]
fn a_damaged_index_record_in_the_tail_is_named() {
    let file = fixture(ONE_SET);
    let mut copy = file.clone();
    // The index record sits at 0x1ca716; its footer repeats its leading fields.
    assert_eq!(copy[0x1ca716], KIND_INDEX);
    let last = 0x1ca800 - 1;
    copy[last] ^= 0x01;
    let tail = &copy[copy.len() - TAIL..];
    // The damaged record no longer chains, so the tail starts after it (at the filemark).
    let out = decompress_tail(tail, copy.len() as u64, NO_LIMIT)
        .unwrap()
        .unwrap();
    assert!(out.starts_with(b"SFMB"));
    assert_eq!(
        decompress_head(&copy, NO_LIMIT),
        Err(CompressedError::BadIndex { offset: 0x1ca716 })
    );
}

#[test]
fn flipped_bits_never_panic_and_fail_with_named_errors() {
    let file = fixture(TWO_SETS);
    let head = &file[..256 << 10];
    let total = file.len() as u64;
    let mut errors = 0;
    for (i, at) in (FIRST_RECORD..head.len()).step_by(4093).enumerate() {
        let mut copy = head.to_vec();
        copy[at] ^= 1 << (i % 8);
        if let Err(e) = decompress_head(&copy, 1 << 20) {
            assert!(!e.to_string().is_empty());
            errors += 1;
        }
        let mut tail = tail_of(&file).to_vec();
        let t = (at * 7) % tail.len();
        tail[t] ^= 1 << (i % 8);
        if let Err(e) = decompress_tail(&tail, total, 1 << 20) {
            assert!(!e.to_string().is_empty());
        }
    }
    assert!(errors > 0, "some flips must be detected");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn container(body: &[u8]) -> Vec<u8> {
        let mut bytes = SIGNATURE.to_vec();
        bytes.resize(FIRST_RECORD, 0);
        bytes.extend_from_slice(body);
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn arbitrary_records_never_panic(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let bytes = container(&body);
            let out = decompress_head(&bytes, 1 << 20);
            if let Ok(out) = out {
                prop_assert!(out.len() <= 1 << 20);
            }
            let _ = decompress_tail(&body, body.len() as u64 + 4096, 1 << 20);
        }

        #[test]
        fn chunks_with_arbitrary_streams_never_panic(
            sectors in 0u8..=255,
            stream in proptest::collection::vec(any::<u8>(), 256..2048),
        ) {
            let mut body = vec![KIND_CHUNK, sectors];
            body.extend_from_slice(&(stream.len() as u16).to_le_bytes());
            body.resize(CHUNK_HEADER, 0);
            body.extend_from_slice(&stream);
            let bytes = container(&body);
            let _ = decompress_head(&bytes, 1 << 20);
            let _ = decompress_tail(&body, bytes.len() as u64, 1 << 20);
        }

        #[test]
        fn real_chunks_with_a_flipped_byte_never_panic(at in 0x1e0usize..0x4000, byte in any::<u8>()) {
            let mut bytes = fixture(ONE_SET)[..0x4000].to_vec();
            bytes[at] = byte;
            if let Ok(out) = decompress_head(&bytes, 1 << 20) {
                prop_assert!(out.len() <= 1 << 20);
            }
        }
    }
}

#[test]
#[ignore = "timing report: cargo test --release -- --ignored --nocapture"]
fn timing_of_a_one_mebibyte_head() {
    for name in [ONE_SET, TWO_SETS] {
        let file = fixture(name);
        let started = std::time::Instant::now();
        let out = decompress_head(&file[..HEAD], NO_LIMIT).unwrap();
        let head = started.elapsed();
        let started = std::time::Instant::now();
        let tail = decompress_tail(tail_of(&file), file.len() as u64, NO_LIMIT)
            .unwrap()
            .unwrap();
        let tail_time = started.elapsed();
        let whole = decompress_head(&file, NO_LIMIT).unwrap();
        println!(
            "{name}: head 1 MiB -> {} bytes in {head:?}; tail 64 KiB -> {} bytes in \
             {tail_time:?}; whole file -> {} bytes",
            out.len(),
            tail.len(),
            whole.len()
        );
    }
}
