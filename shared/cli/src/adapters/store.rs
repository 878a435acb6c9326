//! [`JsonFileStore`]: the status table in a local JSON file, with the same compare-and-set rules
//! as the DynamoDB adapter, so that `bakdrop run`, `status`, `complete` and `cancel` share it.
//!
//! File format (`DIR/.bakdrop/status.json` by default):
//! ```json
//! {"schema": 1,
//!  "migrations": {"Sales": {"version": 3, "record": {...MigrationRecord...}}},
//!  "files": {"Sales": {"<file id>": {"version": 2, "record": {...FileRecord...}}}}}
//! ```
//! Every write re-reads the file, checks the expected version, and replaces the file atomically
//! (temporary file in the same folder, then rename), so a reader never sees half a document.
//!
//! Every write of a migration or file record then appends its events (the core's
//! [`bakdrop_core::report::events`], the ones the stack publishes to EventBridge from the status table's
//! stream) to `events.jsonl` beside the state file, one JSON object a line; their `sequence` is
//! the document's write counter. A process stopped between the two loses that write's events.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bakdrop_core::model::status::{FileRecord, FileState, MigrationRecord, Versioned};
use bakdrop_core::ports::conditional::{delete_if, put_if};
use bakdrop_core::ports::{StatusStore, StoreError};
use bakdrop_core::report::events::{self, Event};
use serde::{Deserialize, Serialize};

/// The state-file schema this build writes and reads.
pub const STATE_SCHEMA: u32 = 1;

/// Where the state file of a folder lives by default.
pub fn default_state(dir: &Path) -> PathBuf {
    dir.join(".bakdrop").join("status.json")
}

/// The events file's name, beside the state file.
pub const EVENTS_FILE: &str = "events.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Document {
    schema: u32,
    #[serde(default)]
    migrations: BTreeMap<String, Versioned<MigrationRecord>>,
    #[serde(default)]
    files: BTreeMap<String, BTreeMap<String, Versioned<FileRecord>>>,
    /// Folded database name → the migration that claimed it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    names: BTreeMap<String, String>,
    /// Where `bakdrop run` restored: Complete, Cancel act there, never anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<RememberedTarget>,
    /// Record writes so far: the `sequence` of the next write's events.
    #[serde(default, skip_serializing_if = "is_zero")]
    writes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The target a folder's runs restored to, without the password: a server (and where its
/// password comes from, when not given inline), or script-only mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RememberedTarget {
    Server {
        host: String,
        port: u16,
        user: String,
        tls: String,
        dialect: bakdrop_core::tsql::Dialect,
        /// `password-env=NAME` or `password-file=PATH` as given; `None` for an inline password,
        /// which is never stored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_from: Option<String>,
    },
    Script {
        dialect: bakdrop_core::tsql::Dialect,
    },
}

impl RememberedTarget {
    /// The dialect of the runs.
    pub fn dialect(&self) -> bakdrop_core::tsql::Dialect {
        match self {
            RememberedTarget::Server { dialect, .. } | RememberedTarget::Script { dialect } => {
                *dialect
            }
        }
    }

    /// The same server (host and port, case-insensitively for the host) in the same dialect,
    /// or script-only mode in the same dialect.
    pub fn same_place(&self, other: &RememberedTarget) -> bool {
        match (self, other) {
            (
                RememberedTarget::Server {
                    host,
                    port,
                    dialect,
                    ..
                },
                RememberedTarget::Server {
                    host: h,
                    port: p,
                    dialect: d,
                    ..
                },
            ) => host.eq_ignore_ascii_case(h) && port == p && dialect == d,
            (RememberedTarget::Script { dialect }, RememberedTarget::Script { dialect: d }) => {
                dialect == d
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for RememberedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RememberedTarget::Server {
                host,
                port,
                user,
                dialect,
                ..
            } => write!(f, "{host}:{port} as {user} ({dialect} dialect)"),
            RememberedTarget::Script { dialect } => {
                write!(f, "no server (script-only mode, {dialect} dialect)")
            }
        }
    }
}

impl Default for Document {
    fn default() -> Self {
        Document {
            schema: STATE_SCHEMA,
            migrations: BTreeMap::new(),
            files: BTreeMap::new(),
            names: BTreeMap::new(),
            target: None,
            writes: 0,
        }
    }
}

/// A status store in one JSON file (or, for `bakdrop plan`'s preview, in memory only).
#[derive(Debug)]
pub struct JsonFileStore {
    path: PathBuf,
    lock: Mutex<()>,
    /// The document itself when the store lives in memory ([`JsonFileStore::in_memory`]).
    memory: Option<Mutex<Document>>,
}

fn unavailable(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

impl JsonFileStore {
    /// A store kept in `path` (created on the first write).
    pub fn new(path: impl Into<PathBuf>) -> JsonFileStore {
        JsonFileStore {
            path: path.into(),
            lock: Mutex::new(()),
            memory: None,
        }
    }

    /// A store that is never written to disk: `bakdrop plan` validates through it exactly as
    /// `bakdrop run` does through the state file.
    pub fn in_memory() -> JsonFileStore {
        JsonFileStore {
            path: PathBuf::from("(memory)"),
            lock: Mutex::new(()),
            memory: Some(Mutex::new(Document::default())),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the state file exists.
    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    fn load(&self) -> Result<Document, StoreError> {
        if let Some(memory) = &self.memory {
            return Ok(memory
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone());
        }
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Document::default()),
            Err(e) => return Err(unavailable(e)),
        };
        let doc: Document = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", self.path.display())))?;
        if doc.schema != STATE_SCHEMA {
            return Err(StoreError::Corrupt(format!(
                "{}: schema {} (this build reads {STATE_SCHEMA})",
                self.path.display(),
                doc.schema
            )));
        }
        Ok(doc)
    }

    fn save(&self, doc: &Document) -> Result<(), StoreError> {
        if let Some(memory) = &self.memory {
            *memory.lock().unwrap_or_else(PoisonError::into_inner) = doc.clone();
            return Ok(());
        }
        let text = serde_json::to_vec_pretty(doc)
            .map_err(|e| StoreError::Corrupt(format!("cannot serialize the state: {e}")))?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "status.json".into());
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&temp).map_err(unavailable)?;
        file.write_all(&text).map_err(unavailable)?;
        file.sync_all().map_err(unavailable)?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(unavailable)
    }

    fn update<R>(
        &self,
        change: impl FnOnce(&mut Document) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut doc = self.load()?;
        let result = change(&mut doc)?;
        self.save(&doc)?;
        Ok(result)
    }

    /// The target recorded by `bakdrop run`, if any.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn remembered_target(&self) -> Result<Option<RememberedTarget>, StoreError> {
        self.read(|doc| doc.target)
    }

    /// Records the target `bakdrop run` restores to.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn remember_target(&self, target: RememberedTarget) -> Result<(), StoreError> {
        self.update(|doc| {
            doc.target = Some(target);
            Ok(())
        })
    }

    /// Where the events of this store's writes go: `events.jsonl` beside the state file.
    /// `None` for a store in memory, which keeps no events (`bakdrop plan` writes nothing).
    pub fn events_path(&self) -> Option<PathBuf> {
        if self.memory.is_some() {
            return None;
        }
        Some(
            self.path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join(EVENTS_FILE),
        )
    }

    /// A record write (`change` returns the new version and the write's events, given the
    /// write's sequence number), then its events appended to [`JsonFileStore::events_path`].
    fn write_record(
        &self,
        change: impl FnOnce(&mut Document, &str) -> Result<(u64, Vec<Event>), StoreError>,
    ) -> Result<u64, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut doc = self.load()?;
        let sequence = events::sequence(&(doc.writes + 1).to_string())
            .ok_or_else(|| StoreError::Corrupt("the write counter overflowed".into()))?;
        let (version, written) = change(&mut doc, &sequence)?;
        doc.writes += 1;
        self.save(&doc)?;
        if let Some(path) = self.events_path().filter(|_| !written.is_empty()) {
            let mut lines = String::new();
            for event in &written {
                let line = serde_json::to_string(&event.envelope())
                    .map_err(|e| StoreError::Corrupt(format!("cannot encode an event: {e}")))?;
                lines.push_str(&line);
                lines.push('\n');
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(unavailable)?;
            file.write_all(lines.as_bytes()).map_err(unavailable)?;
        }
        Ok(version)
    }

    fn read<R>(&self, f: impl FnOnce(Document) -> R) -> Result<R, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(f(self.load()?))
    }
}

impl StatusStore for JsonFileStore {
    async fn claim_name(&self, folded: &str, database: &str) -> Result<String, StoreError> {
        self.update(|doc| {
            Ok(doc
                .names
                .entry(folded.to_owned())
                .or_insert_with(|| database.to_owned())
                .clone())
        })
    }

    async fn get_migration(
        &self,
        database: &str,
    ) -> Result<Option<Versioned<MigrationRecord>>, StoreError> {
        self.read(|mut doc| doc.migrations.remove(database))
    }

    async fn put_migration(
        &self,
        record: &MigrationRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.write_record(|doc, sequence| {
            let old = doc
                .migrations
                .get(record.database.as_str())
                .map(|e| e.record.clone());
            let version = put_if(
                &mut doc.migrations,
                record.database.to_string(),
                record,
                expected,
            )?;
            let written = events::migration_events(old.as_ref(), record, version, sequence);
            Ok((version, written))
        })
    }

    async fn get_file(
        &self,
        migration: &str,
        file_id: &str,
    ) -> Result<Option<Versioned<FileRecord>>, StoreError> {
        self.read(|mut doc| doc.files.get_mut(migration).and_then(|m| m.remove(file_id)))
    }

    async fn put_file(
        &self,
        record: &FileRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.write_record(|doc, sequence| {
            let files = doc
                .files
                .entry(record.migration_key().to_owned())
                .or_default();
            let old = files.get(&record.file_id).map(|e| e.record.clone());
            let version = put_if(files, record.file_id.clone(), record, expected)?;
            let written = events::file_events(old.as_ref(), record, version, sequence);
            Ok((version, written))
        })
    }

    async fn delete_file(
        &self,
        migration: &str,
        file_id: &str,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.update(|doc| {
            let files = doc.files.entry(migration.to_owned()).or_default();
            delete_if(files, file_id, expected)?;
            if files.is_empty() {
                doc.files.remove(migration);
            }
            Ok(())
        })
    }

    async fn list_migrations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MigrationRecord>, StoreError> {
        self.read(|doc| {
            doc.migrations
                .into_iter()
                .filter(|(name, _)| after.is_none_or(|a| name.as_str() > a))
                .take(limit)
                .map(|(_, e)| e.record)
                .collect()
        })
    }

    async fn list_files(&self, migration: &str) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        self.read(|mut doc| {
            let mut files: Vec<_> = doc
                .files
                .remove(migration)
                .unwrap_or_default()
                .into_values()
                .collect();
            files.sort_by_key(|v| v.record.created_at);
            files
        })
    }

    async fn list_files_in(
        &self,
        migration: &str,
        state: FileState,
        limit: usize,
    ) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        self.read(|mut doc| {
            let mut files: Vec<_> = doc
                .files
                .remove(migration)
                .unwrap_or_default()
                .into_values()
                .filter(|e| e.record.state == state)
                .collect();
            files.sort_by_key(|f| std::cmp::Reverse(f.record.updated_at));
            files.truncate(limit);
            files
        })
    }

    async fn count_files_in(&self, migration: &str, state: FileState) -> Result<usize, StoreError> {
        self.read(|doc| {
            doc.files.get(migration).map_or(0, |m| {
                m.values().filter(|e| e.record.state == state).count()
            })
        })
    }
}

impl JsonFileStore {
    /// Names of every migration with at least one file record (rejected-only ones included),
    /// and of every migration record.
    ///
    /// # Errors
    /// As [`StatusStore::list_migrations`].
    pub fn databases(&self) -> Result<Vec<String>, StoreError> {
        self.read(|doc| {
            let mut names: Vec<String> = doc
                .migrations
                .keys()
                .chain(doc.files.keys())
                .cloned()
                .collect();
            names.sort();
            names.dedup();
            names
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "bakdrop-store-{name}-{}-{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp_nanos()
        ))
    }

    #[tokio::test]
    async fn a_stale_version_is_a_conflict_and_the_file_keeps_the_winner() {
        let dir = temp_path("cas");
        let store = JsonFileStore::new(dir.join("status.json"));
        let now = OffsetDateTime::now_utc();
        let record = MigrationRecord::new(
            bakdrop_core::DatabaseName::parse("Sales").expect("name"),
            now,
        );
        let v1 = store.put_migration(&record, None).await.expect("create");
        assert_eq!(v1, 1);
        assert!(matches!(
            store.put_migration(&record, None).await,
            Err(StoreError::Conflict { .. })
        ));
        let v2 = store
            .put_migration(&record, Some(1))
            .await
            .expect("replace");
        assert!(matches!(
            store.put_migration(&record, Some(1)).await,
            Err(StoreError::Conflict { .. })
        ));
        let reopened = JsonFileStore::new(dir.join("status.json"));
        let got = reopened
            .get_migration("Sales")
            .await
            .expect("read")
            .expect("present");
        assert_eq!((got.version, v2), (2, 2));
        assert_eq!(got.record, record);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn files_are_found_by_state_latest_first_as_on_the_status_table() {
        let dir = temp_path("bystate");
        let store = JsonFileStore::new(dir.join("status.json"));
        let now = OffsetDateTime::now_utc();
        for (i, state) in [FileState::Waiting, FileState::Restored, FileState::Waiting]
            .into_iter()
            .enumerate()
        {
            let object = bakdrop_core::model::object::ObjectRef {
                bucket: "b".into(),
                key: format!("Sales/log{i}.trn"),
                version_id: None,
                etag: Some("e".into()),
                size: 1,
            };
            let record = FileRecord {
                migration: Some(bakdrop_core::DatabaseName::parse("Sales").expect("name")),
                file_id: object.file_id(),
                object,
                state,
                reason: None,
                header: None,
                claim: None,
                restore_started_at: None,
                restore_finished_at: None,
                created_at: now,
                updated_at: now + time::Duration::seconds(i as i64),
            };
            store.put_file(&record, None).await.expect("stored");
        }
        let waiting = store
            .list_files_in("Sales", FileState::Waiting, 10)
            .await
            .expect("listed");
        let names: Vec<_> = waiting
            .iter()
            .map(|f| f.record.object.file_name())
            .collect();
        assert_eq!(names, ["log2.trn", "log0.trn"]);
        let one = store
            .list_files_in("Sales", FileState::Waiting, 1)
            .await
            .expect("listed");
        assert_eq!(one.len(), 1);
        assert_eq!(
            store
                .count_files_in("Sales", FileState::Restored)
                .await
                .expect("counted"),
            1
        );
        assert_eq!(
            store
                .count_files_in("Other", FileState::Restored)
                .await
                .expect("counted"),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_damaged_state_file_is_reported_as_corrupt() {
        let dir = temp_path("corrupt");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("status.json"), "{not json").expect("write");
        let store = JsonFileStore::new(dir.join("status.json"));
        assert!(matches!(
            store.get_migration("x").await,
            Err(StoreError::Corrupt(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
