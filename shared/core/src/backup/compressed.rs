//! Compressed backups: the `MSSQLBAK` container (placeholder until the decoder lands).

/// Why a compressed container could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressedError {
    #[error("compressed (MSSQLBAK) backups are not supported yet")]
    Unsupported,
}

/// True when the bytes start with the `MSSQLBAK` container signature.
pub(crate) fn is_compressed_container(head: &[u8]) -> bool {
    head.starts_with(b"MSSQLBAK")
}

/// The MTF bytes held by the whole chunks found in `head` (the first bytes of the object),
/// at most `limit` bytes of output.
pub(crate) fn decompress_head(_head: &[u8], _limit: usize) -> Result<Vec<u8>, CompressedError> {
    Err(CompressedError::Unsupported)
}

/// The MTF bytes held by the whole chunks found in `tail` (the last bytes of an object of
/// `total_size` bytes), at most `limit` bytes of output; `Ok(None)` when no chunk boundary can be
/// found in the tail.
pub(crate) fn decompress_tail(
    _tail: &[u8],
    _total_size: u64,
    _limit: usize,
) -> Result<Option<Vec<u8>>, CompressedError> {
    Err(CompressedError::Unsupported)
}
