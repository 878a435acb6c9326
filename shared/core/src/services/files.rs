//! A migration's files by state, read so that the cost follows the files in those states and
//! not every file the migration ever had (a migration of 10,000 restored log backups plans
//! from its few Queued and Waiting files). Migrations whose file records predate the store's
//! files-by-state index ([`MigrationRecord::files_indexed`] false) are read in full, as before.

use std::collections::BTreeMap;

use crate::model::header::BackupKind;
use crate::model::status::{FileRecord, FileState, MigrationRecord, Versioned};
use crate::ports::{StatusStore, StoreError};
use crate::report::{compose, Files, StatusReport, LISTED};

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

/// The report of `database` from `store`, bounded: counts per state and at most [`LISTED`]
/// files per list, the latest, read through the store's files-by-state index
/// ([`StatusStore::list_files_in`]); the restored counts by type come from the migration's
/// chain. A migration whose files predate the index is read in full, as [`build`] does, its
/// lists cut to the latest [`LISTED`] likewise. `None` when there is neither a migration nor
/// a file.
///
/// # Errors
/// [`StoreError`] as the store's.
pub async fn report<S: StatusStore>(
    store: &S,
    database: &str,
) -> Result<Option<StatusReport>, StoreError> {
    let migration = store.get_migration(database).await?.map(|v| v.record);
    let files = match migration.as_ref().filter(|m| m.files_indexed) {
        Some(m) => Box::pin(indexed_files(store, database, m)).await?,
        None => {
            let all: Vec<FileRecord> = store
                .list_files(database)
                .await?
                .into_iter()
                .map(|v| v.record)
                .collect();
            if migration.is_none() && all.is_empty() {
                return Ok(None);
            }
            let mut files = Files::of(&all);
            for list in [
                &mut files.restored,
                &mut files.waiting,
                &mut files.rejected,
                &mut files.skipped,
            ] {
                list.sort_by_key(|f| std::cmp::Reverse(f.updated_at));
                list.truncate(LISTED);
            }
            files
        }
    };
    Ok(Some(compose(database, migration.as_ref(), files)))
}

/// What the report needs of an indexed migration's files, read state by state.
async fn indexed_files<S: StatusStore>(
    store: &S,
    database: &str,
    migration: &MigrationRecord,
) -> Result<Files, StoreError> {
    let mut files = Files {
        counted: true,
        ..Files::default()
    };
    let c = &mut files.counts;
    for state in [FileState::Received, FileState::Validated, FileState::Queued] {
        c.queued += store.count_files_in(database, state).await?;
    }
    c.waiting = store.count_files_in(database, FileState::Waiting).await?;
    c.restoring = store.count_files_in(database, FileState::Restoring).await?;
    c.skipped = store.count_files_in(database, FileState::Skipped).await?;
    c.rejected = store.count_files_in(database, FileState::Rejected).await?;
    c.failed = store.count_files_in(database, FileState::Failed).await?;
    let applied = &migration.chain.applied;
    c.restored = usize::try_from(applied.files()).unwrap_or(usize::MAX);
    files.restored_kinds = [
        applied.steps_of(BackupKind::Full),
        applied.steps_of(BackupKind::Differential),
        applied.steps_of(BackupKind::Log),
    ];
    files.restored = latest(store, database, FileState::Restored, LISTED).await?;
    files.waiting = latest(store, database, FileState::Waiting, LISTED).await?;
    files.rejected = latest(store, database, FileState::Rejected, LISTED).await?;
    files.skipped = latest(store, database, FileState::Skipped, LISTED).await?;
    if files.counts.failed > 0 {
        files.last_failed = latest(store, database, FileState::Failed, 1)
            .await?
            .into_iter()
            .next();
    }
    Ok(files)
}

/// The latest `limit` files in `state` (one listed a moment before it moved on is left out).
async fn latest<S: StatusStore>(
    store: &S,
    database: &str,
    state: FileState,
    limit: usize,
) -> Result<Vec<FileRecord>, StoreError> {
    Ok(store
        .list_files_in(database, state, limit)
        .await?
        .into_iter()
        .map(|v| v.record)
        .filter(|f| f.state == state)
        .collect())
}
