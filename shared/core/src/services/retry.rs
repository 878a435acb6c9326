//! The status store's read-modify-write: read a record, decide, write it back under
//! compare-and-set, and read again when someone else wrote first.
//!
//! Every service writes its records this way (DynamoDB's conditional writes in production). The
//! loop lives here once: a try returns [`Cas::Lost`] when its write lost the race, and [`retry`]
//! runs it again, at most [`ATTEMPTS`] times. [`update`] is the common case of one record
//! changed by a pure function.

use std::future::Future;

use crate::ports::StoreError;

/// How many times a record is read again after losing a compare-and-set before giving up (the
/// records are contended by a handful of writers at most; more losses mean something is wrong).
pub const ATTEMPTS: usize = 8;

/// What one try of a read-modify-write ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas<R> {
    /// Done, with its result (written, or nothing to write).
    Done(R),
    /// Someone else wrote the record since it was read: read it again.
    Lost,
}

/// A store write seen as a try: a conflict is [`Cas::Lost`], any other error stays an error.
///
/// # Errors
/// The store's error, but for [`StoreError::Conflict`].
pub fn cas<R>(written: Result<R, StoreError>) -> Result<Cas<R>, StoreError> {
    match written {
        Ok(r) => Ok(Cas::Done(r)),
        Err(StoreError::Conflict { .. }) => Ok(Cas::Lost),
        Err(e) => Err(e),
    }
}

/// Runs `once` until it is done, at most [`ATTEMPTS`] times; `None` when every try lost.
///
/// # Errors
/// The first error a try returns (it is not tried again).
pub async fn retry<R, E, F, Fut>(mut once: F) -> Result<Option<R>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Cas<R>, E>>,
{
    for _ in 0..ATTEMPTS {
        if let Cas::Done(r) = once().await? {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// What [`update`] did to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated<T> {
    /// There is no such record.
    Missing,
    /// `change` left it as it was: the record as read.
    Unchanged(T),
    /// Written: the record as written.
    Changed(T),
}

/// Reads a record with `read`, lets `change` edit it (`false`: leave it), writes it with
/// `write(record, version read)`; read again when the write lost.
///
/// # Errors
/// The store's errors; [`StoreError::Conflict`] when every try lost.
pub async fn update<T, Rd, RdF, Wr, WrF>(
    read: Rd,
    change: impl Fn(&mut T) -> bool,
    write: Wr,
) -> Result<Updated<T>, StoreError>
where
    T: Clone,
    Rd: Fn() -> RdF,
    RdF: Future<Output = Result<Option<crate::model::status::Versioned<T>>, StoreError>>,
    Wr: Fn(T, u64) -> WrF,
    WrF: Future<Output = Result<u64, StoreError>>,
{
    let (read, change, write) = (&read, &change, &write);
    let once = || async move {
        let Some(current) = read().await? else {
            return Ok(Cas::Done(Updated::Missing));
        };
        let mut record = current.record;
        if !change(&mut record) {
            return Ok(Cas::Done(Updated::Unchanged(record)));
        }
        Ok(cas(write(record.clone(), current.version).await)?.map(|_| Updated::Changed(record)))
    };
    retry(once)
        .await?
        .ok_or(StoreError::Conflict { expected: None })
}

impl<R> Cas<R> {
    /// The result of a try that is done, changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(R) -> U) -> Cas<U> {
        match self {
            Cas::Done(r) => Cas::Done(f(r)),
            Cas::Lost => Cas::Lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::model::status::Versioned;
    use crate::ports::conditional::put_if;

    fn block_on<F: Future>(f: F) -> F::Output {
        futures_util::FutureExt::now_or_never(f).expect("ready")
    }

    #[test]
    fn retry_runs_a_lost_try_again_and_gives_up_after_the_attempts() {
        for (losses, expected) in [
            (0, Some(0)),
            (3, Some(3)),
            (ATTEMPTS - 1, Some(ATTEMPTS - 1)),
            (ATTEMPTS, None),
        ] {
            let tries = Cell::new(0);
            let got: Result<Option<usize>, ()> = block_on(retry(|| {
                let n = tries.get();
                tries.set(n + 1);
                async move { Ok(if n < losses { Cas::Lost } else { Cas::Done(n) }) }
            }));
            assert_eq!(got, Ok(expected), "{losses} losses");
            assert_eq!(tries.get(), (losses + 1).min(ATTEMPTS), "{losses} losses");
        }
    }

    #[test]
    fn retry_stops_at_the_first_error() {
        let tries = Cell::new(0);
        let got: Result<Option<()>, &str> = block_on(retry(|| {
            tries.set(tries.get() + 1);
            async { Err("down") }
        }));
        assert_eq!(got, Err("down"));
        assert_eq!(tries.get(), 1);
    }

    #[test]
    fn cas_loses_on_a_conflict_only() {
        assert_eq!(cas(Ok::<_, StoreError>(2)).ok(), Some(Cas::Done(2)));
        assert_eq!(
            cas::<u64>(Err(StoreError::Conflict { expected: Some(1) })).ok(),
            Some(Cas::Lost)
        );
        assert!(cas::<u64>(Err(StoreError::Rejected("too long".into()))).is_err());
    }

    /// A map whose record another writer changes `races` times between a read and its write.
    struct Racy {
        map: Mutex<BTreeMap<&'static str, Versioned<u32>>>,
        races: Cell<usize>,
    }

    impl Racy {
        fn new(value: u32, races: usize) -> Self {
            let mut map = BTreeMap::new();
            put_if(&mut map, "k", &value, None).expect("first write");
            Racy {
                map: Mutex::new(map),
                races: Cell::new(races),
            }
        }

        async fn read(&self) -> Result<Option<Versioned<u32>>, StoreError> {
            Ok(self.map.lock().expect("lock").get("k").cloned())
        }

        async fn write(&self, value: u32, version: u64) -> Result<u64, StoreError> {
            let mut map = self.map.lock().expect("lock");
            if self.races.get() > 0 {
                self.races.set(self.races.get() - 1);
                let (theirs, at) = (map["k"].record + 100, map["k"].version);
                put_if(&mut map, "k", &theirs, Some(at))?;
            }
            put_if(&mut map, "k", &value, Some(version))
        }
    }

    #[test]
    fn update_reads_again_after_a_lost_write_and_applies_the_change_to_the_new_record() {
        let store = Racy::new(1, 2);
        let got = block_on(update(
            || store.read(),
            |v| {
                *v += 1;
                true
            },
            |v, at| store.write(v, at),
        ));
        // 1, raced to 101, raced to 201, then 201 + 1 written.
        assert_eq!(got.ok(), Some(Updated::Changed(202)));
        assert_eq!(store.map.lock().expect("lock")["k"].record, 202);
    }

    #[test]
    fn update_says_missing_unchanged_and_contended() {
        let store = Racy::new(5, 0);
        let got = block_on(update(
            || store.read(),
            |_| false,
            |v, at| store.write(v, at),
        ));
        assert_eq!(got.ok(), Some(Updated::Unchanged(5)));

        let empty = Racy {
            map: Mutex::new(BTreeMap::new()),
            races: Cell::new(0),
        };
        let got = block_on(update(
            || empty.read(),
            |_| true,
            |v, at| empty.write(v, at),
        ));
        assert_eq!(got.ok(), Some(Updated::Missing));

        let contended = Racy::new(5, ATTEMPTS);
        let got = block_on(update(
            || contended.read(),
            |v| {
                *v += 1;
                true
            },
            |v, at| contended.write(v, at),
        ));
        assert!(matches!(got, Err(StoreError::Conflict { expected: None })));
    }
}
