//! The status store's compare-and-set rule on a map held in memory: what every store that keeps
//! its records in a map (the in-memory fake, the CLI's JSON file) implements, so that they
//! answer as DynamoDB's conditional writes do.
//!
//! A record's version starts at 1 and grows by one a write. A write names the version it read
//! (`None`: the record must not exist); any other current version is
//! [`StoreError::Conflict`], and nothing changes.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::model::status::Versioned;
use crate::ports::StoreError;

/// Writes `record` under `key` if its current version is `expected`; returns the new version.
///
/// # Errors
/// [`StoreError::Conflict`] when the current version is another.
pub fn put_if<K: Ord, T: Clone>(
    map: &mut BTreeMap<K, Versioned<T>>,
    key: K,
    record: &T,
    expected: Option<u64>,
) -> Result<u64, StoreError> {
    if map.get(&key).map(|v| v.version) != expected {
        return Err(StoreError::Conflict { expected });
    }
    let version = expected.unwrap_or(0) + 1;
    map.insert(
        key,
        Versioned {
            record: record.clone(),
            version,
        },
    );
    Ok(version)
}

/// Removes the record under `key` if its current version is `expected`.
///
/// # Errors
/// [`StoreError::Conflict`] when it is another, or the record does not exist.
pub fn delete_if<K, Q, T>(
    map: &mut BTreeMap<K, Versioned<T>>,
    key: &Q,
    expected: u64,
) -> Result<Versioned<T>, StoreError>
where
    K: Ord + Borrow<Q>,
    Q: Ord + ?Sized,
{
    if map.get(key).map(|v| v.version) != Some(expected) {
        return Err(StoreError::Conflict {
            expected: Some(expected),
        });
    }
    map.remove(key).ok_or(StoreError::Conflict {
        expected: Some(expected),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_must_name_the_version_it_read() {
        let mut map: BTreeMap<String, Versioned<&str>> = BTreeMap::new();
        assert_eq!(put_if(&mut map, "a".into(), &"one", None).ok(), Some(1));
        assert!(matches!(
            put_if(&mut map, "a".into(), &"again", None),
            Err(StoreError::Conflict { expected: None })
        ));
        assert!(put_if(&mut map, "a".into(), &"stale", Some(2)).is_err());
        assert_eq!(put_if(&mut map, "a".into(), &"two", Some(1)).ok(), Some(2));
        assert_eq!(map["a"].record, "two");
    }

    #[test]
    fn a_delete_must_name_the_current_version() {
        let mut map: BTreeMap<String, Versioned<&str>> = BTreeMap::new();
        assert!(delete_if(&mut map, "a", 1).is_err(), "nothing to delete");
        put_if(&mut map, "a".into(), &"one", None).expect("put");
        assert!(delete_if(&mut map, "a", 2).is_err());
        assert_eq!(map.len(), 1, "a refused delete changes nothing");
        assert_eq!(
            delete_if(&mut map, "a", 1).map(|v| v.record).ok(),
            Some("one")
        );
        assert!(map.is_empty());
    }
}
