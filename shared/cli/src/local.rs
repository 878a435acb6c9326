//! Reading a local backup file the way the validate function reads an S3 object: the first
//! [`HEAD_LIMIT`] bytes and the last [`TAIL_LIMIT`] bytes, never the whole file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;
use bakdrop_core::backup::{HEAD_LIMIT, TAIL_LIMIT};

/// The head, the tail (if the file is longer than the head) and the size of a file.
#[derive(Debug)]
pub struct HeadTail {
    pub head: Vec<u8>,
    pub tail: Option<Vec<u8>>,
    pub size: u64,
}

/// Reads head and tail of `path`.
pub fn read_head_tail(path: &Path) -> anyhow::Result<HeadTail> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    let head_len = size.min(HEAD_LIMIT as u64);
    let mut head = vec![0; usize::try_from(head_len).unwrap_or(HEAD_LIMIT)];
    file.read_exact(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let tail_len = (size - head_len).min(TAIL_LIMIT as u64);
    let tail = if tail_len > 0 {
        let mut tail = vec![0; usize::try_from(tail_len).unwrap_or(TAIL_LIMIT)];
        file.seek(SeekFrom::End(-i64::try_from(tail_len).unwrap_or(0)))?;
        file.read_exact(&mut tail)
            .with_context(|| format!("cannot read the end of {}", path.display()))?;
        Some(tail)
    } else {
        None
    };
    Ok(HeadTail { head, tail, size })
}
