//! Objects of any size that parse as a real backup: the backup's bytes up to its last
//! [`TAIL_LIMIT`] bytes, then zeros, then those last bytes. Validation reads at most the first
//! [`HEAD_LIMIT`] and the last [`TAIL_LIMIT`] bytes, so for a backup of at least
//! `HEAD_LIMIT + TAIL_LIMIT` bytes it sees exactly what it would see in the real file. A shorter
//! backup cannot be stretched: the zeros would land inside the head, where the parser rightly
//! reports a damaged block chain. The filler's length must keep the tail on the backup's block
//! boundary (512 or 4096 bytes), as it is in the real file: round sizes in MiB do for every
//! fixture (their lengths are multiples of their block size).

use bakdrop_core::backup::{HEAD_LIMIT, TAIL_LIMIT};
use bakdrop_core::ports::ByteRange;

/// A real backup stretched to `size` bytes with zeros before its tail.
#[derive(Debug, Clone)]
pub struct Spliced {
    /// The backup's bytes before its tail.
    pub front: Vec<u8>,
    /// Zeros between front and back.
    pub filler: u64,
    /// The backup's last [`TAIL_LIMIT`] bytes (all of it when shorter).
    pub back: Vec<u8>,
}

/// Why a backup cannot be stretched to a size.
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    #[error("the backup ({backup} bytes) is longer than the object size asked for ({size} bytes)")]
    BackupLongerThanObject { backup: u64, size: u64 },
    #[error(
        "the backup ({backup} bytes) is too short to stretch: the filler would fall inside the \
         head validation reads"
    )]
    BackupTooShortToStretch { backup: u64 },
    #[error("a filler of {filler} bytes would move the tail off the backup's 512-byte blocks")]
    Misaligned { filler: u64 },
}

impl Spliced {
    /// `backup` stretched to `size` bytes.
    ///
    /// # Errors
    /// [`SpliceError::BackupLongerThanObject`] when `size` is below the backup's length,
    /// [`SpliceError::BackupTooShortToStretch`] when it is above and the backup is shorter than
    /// `HEAD_LIMIT + TAIL_LIMIT`, [`SpliceError::Misaligned`] when the filler is not a whole
    /// number of 512-byte blocks.
    pub fn new(backup: &[u8], size: u64) -> Result<Spliced, SpliceError> {
        let len = backup.len() as u64;
        if size < len {
            return Err(SpliceError::BackupLongerThanObject { backup: len, size });
        }
        if size > len && backup.len() < HEAD_LIMIT + TAIL_LIMIT {
            return Err(SpliceError::BackupTooShortToStretch { backup: len });
        }
        if !(size - len).is_multiple_of(512) {
            return Err(SpliceError::Misaligned { filler: size - len });
        }
        let cut = backup.len().saturating_sub(TAIL_LIMIT);
        Ok(Spliced {
            front: backup[..cut].to_vec(),
            filler: size - len,
            back: backup[cut..].to_vec(),
        })
    }

    /// The object's size.
    pub fn size(&self) -> u64 {
        self.front.len() as u64 + self.filler + self.back.len() as u64
    }

    /// The bytes S3 returns for `range` of this object.
    pub fn read(&self, range: ByteRange) -> Vec<u8> {
        let size = self.size();
        let (start, len) = match range {
            ByteRange::Head(n) => (0, n.min(size)),
            ByteRange::Tail(n) => (size - n.min(size), n.min(size)),
        };
        self.slice(start, len)
    }

    /// `len` bytes from `start` (clamped to the object).
    pub fn slice(&self, start: u64, len: u64) -> Vec<u8> {
        let size = self.size();
        let end = start.saturating_add(len).min(size);
        let front = self.front.len() as u64;
        let back_start = front + self.filler;
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        let mut at = start;
        while at < end {
            if at < front {
                let stop = end.min(front);
                out.extend_from_slice(&self.front[at as usize..stop as usize]);
                at = stop;
            } else if at < back_start {
                let stop = end.min(back_start);
                out.resize(out.len() + (stop - at) as usize, 0);
                at = stop;
            } else {
                let from = (at - back_start) as usize;
                let to = (end - back_start) as usize;
                out.extend_from_slice(&self.back[from..to]);
                at = end;
            }
        }
        out
    }

    /// The head and tail validation reads (`validate::Validator`: head up to [`HEAD_LIMIT`],
    /// tail up to [`TAIL_LIMIT`] of what lies after the head; no tail when nothing does).
    pub fn validation_reads(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let size = self.size();
        let head_len = (HEAD_LIMIT as u64).min(size);
        let tail_len = (TAIL_LIMIT as u64).min(size - head_len);
        let head = self.read(ByteRange::Head(head_len));
        let tail = (tail_len > 0).then(|| self.read(ByteRange::Tail(tail_len)));
        (head, tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use bakdrop_core::backup::parse;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_spliced_object_reads_as_front_zeros_back() {
        let front = HEAD_LIMIT + 10;
        let backup: Vec<u8> = (0..(front + TAIL_LIMIT))
            .map(|i| (i % 251) as u8 + 1)
            .collect();
        let s = Spliced::new(&backup, backup.len() as u64 + 512).expect("fits");
        assert_eq!(s.size(), backup.len() as u64 + 512);
        let all = s.slice(0, s.size());
        assert_eq!(&all[..front], &backup[..front]);
        assert!(all[front..front + 512].iter().all(|&b| b == 0));
        assert_eq!(&all[front + 512..], &backup[front..]);
        assert_eq!(
            s.read(ByteRange::Tail(3)),
            backup[backup.len() - 3..].to_vec()
        );
        assert_eq!(s.read(ByteRange::Head(12)), all[..12].to_vec());
        assert!(Spliced::new(&backup, 3).is_err());
        assert!(Spliced::new(&backup[..TAIL_LIMIT], TAIL_LIMIT as u64 + 512).is_err());
        assert!(Spliced::new(&backup, backup.len() as u64 + 5).is_err());
    }

    /// The benchmark objects must be read as the real backup they come from; this checks it for
    /// every fixture long enough to stretch, at the benchmark's sizes, against the header of the
    /// real file.
    #[test]
    fn every_fixture_stretched_to_benchmark_sizes_parses_as_the_real_backup() {
        let mut stretched = Vec::new();
        for name in fixtures::names().expect("fixtures") {
            let real = fixtures::read(&name).expect("fixture");
            let exact = Spliced::new(&real, real.len() as u64).expect("same size");
            let (head, tail) = exact.validation_reads();
            let Ok(expected) = parse(&head, tail.as_deref(), exact.size()) else {
                continue; // fixtures the parser rejects are not used as benchmark objects
            };
            if real.len() < HEAD_LIMIT + TAIL_LIMIT {
                continue;
            }
            stretched.push(name.clone());
            for size in [real.len() as u64 + 4096, 256 * MIB, 2048 * MIB] {
                let s = Spliced::new(&real, size).expect("long enough to stretch");
                let (head, tail) = s.validation_reads();
                let got = parse(&head, tail.as_deref(), size)
                    .unwrap_or_else(|e| panic!("{name} stretched to {size}: {e}"));
                assert_eq!(got.sets.len(), expected.sets.len(), "{name} at {size}");
                assert_eq!(got.set_count, expected.set_count, "{name} at {size}");
                for (g, e) in got.sets.iter().zip(&expected.sets) {
                    assert_eq!(g.database_name, e.database_name, "{name} at {size}");
                    assert_eq!(g.first_lsn, e.first_lsn, "{name} at {size}");
                    assert_eq!(g.backup_set_guid, e.backup_set_guid, "{name} at {size}");
                }
            }
        }
        for used in crate::validation::BACKUPS {
            assert!(
                stretched.iter().any(|n| n == used),
                "{used} was not checked"
            );
        }
    }
}
