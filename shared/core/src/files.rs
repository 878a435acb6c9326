//! A migration's files by state, read so that the cost follows the files in those states and
//! not every file the migration ever had (a migration of 10,000 restored log backups plans
//! from its few Queued and Waiting files). Migrations whose file records predate the store's
//! files-by-state index ([`MigrationRecord::files_indexed`] false) are read in full, as before.

use std::collections::BTreeMap;

use crate::ports::{StatusStore, StoreError};
use crate::status::{FileRecord, FileState, MigrationRecord, Versioned};

/// The files of `name` now in one of `states`, oldest first (by `created_at`), each as stored
/// now. `migration` is the migration's record, when there is one (it says whether its files
/// are indexed). A file that entered one of `states` a moment ago may be missing (see
/// [`StatusStore::list_files_in`]); one moving between two of `states` meanwhile is found once.
///
/// # Errors
/// [`StoreError`] as the store's.
pub async fn in_states<S: StatusStore>(
    store: &S,
    name: &str,
    migration: Option<&MigrationRecord>,
    states: &[FileState],
) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
    let mut files: Vec<Versioned<FileRecord>> = if migration.is_some_and(|m| m.files_indexed) {
        let mut found: BTreeMap<String, Versioned<FileRecord>> = BTreeMap::new();
        for &state in states {
            for file in store.list_files_in(name, state, usize::MAX).await? {
                match found.get(&file.record.file_id) {
                    Some(kept) if kept.version >= file.version => {}
                    _ => {
                        found.insert(file.record.file_id.clone(), file);
                    }
                }
            }
        }
        found.into_values().collect()
    } else {
        store.list_files(name).await?
    };
    files.retain(|f| states.contains(&f.record.state));
    files.sort_by_key(|f| f.record.created_at);
    Ok(files)
}

/// The files of `name` still in play (received, validated, queued, waiting or restoring), as
/// [`in_states`].
///
/// # Errors
/// [`StoreError`] as the store's.
pub async fn in_play<S: StatusStore>(
    store: &S,
    name: &str,
    migration: Option<&MigrationRecord>,
) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
    in_states(store, name, migration, &FileState::IN_PLAY).await
}

/// One file, if it is now in one of `states`.
///
/// # Errors
/// [`StoreError`] as the store's.
pub async fn if_in<S: StatusStore>(
    store: &S,
    name: &str,
    file_id: &str,
    states: &[FileState],
) -> Result<Option<Versioned<FileRecord>>, StoreError> {
    Ok(store
        .get_file(name, file_id)
        .await?
        .filter(|f| states.contains(&f.record.state)))
}
