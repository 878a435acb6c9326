//! In-memory ports for unit tests of pure logic (feature `test-support`). The real adapters are
//! tested against real endpoints in their own crates.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::model::job::QueueMessage;
use crate::model::object::ObjectRef;
use crate::model::status::{FileRecord, FileState, MigrationRecord, Versioned};
use crate::ports::conditional::{delete_if, put_if};
use crate::ports::{
    ByteRange, JobQueue, ObjectReader, QueueError, ReadError, StatusStore, StoreError,
};

/// Runs a future to completion on this thread. The in-memory ports never wait, so a future built
/// only on them is ready on its first polls.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Objects in memory, keyed by bucket/key; counts the bytes it hands out.
#[derive(Debug, Default)]
pub struct MemoryObjects {
    objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    /// Keys written again (another version) since their first upload.
    replaced: Mutex<std::collections::BTreeSet<(String, String)>>,
    bytes_read: AtomicU64,
    reads: AtomicU64,
    fail_next: Mutex<u32>,
}

impl MemoryObjects {
    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        lock(&self.objects).insert((bucket.to_owned(), key.to_owned()), body);
    }
    /// Another upload to `key`: versions named before no longer are the key's current one.
    pub fn replace(&self, bucket: &str, key: &str, body: Vec<u8>) {
        lock(&self.replaced).insert((bucket.to_owned(), key.to_owned()));
        self.put(bucket, key, body);
    }
    /// Deletes `key`.
    pub fn delete(&self, bucket: &str, key: &str) {
        lock(&self.objects).remove(&(bucket.to_owned(), key.to_owned()));
    }
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::SeqCst)
    }
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
    /// The next `n` reads fail as unavailable.
    pub fn fail_next(&self, n: u32) {
        *lock(&self.fail_next) = n;
    }
}

impl ObjectReader for MemoryObjects {
    async fn read(&self, object: &ObjectRef, range: ByteRange) -> Result<Vec<u8>, ReadError> {
        {
            let mut fail = lock(&self.fail_next);
            if *fail > 0 {
                *fail -= 1;
                return Err(ReadError::Unavailable("injected failure".into()));
            }
        }
        let objects = lock(&self.objects);
        let body = objects
            .get(&(object.bucket.clone(), object.key.clone()))
            .ok_or_else(|| ReadError::NotFound(object.to_string()))?;
        let len = body.len() as u64;
        let (start, end) = match range {
            ByteRange::Head(n) => (0, n.min(len)),
            ByteRange::Tail(n) => (len - n.min(len), len),
        };
        let slice = body
            .get(start as usize..end as usize)
            .unwrap_or_default()
            .to_vec();
        self.bytes_read
            .fetch_add(slice.len() as u64, Ordering::SeqCst);
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(slice)
    }

    async fn check_current(&self, object: &ObjectRef) -> Result<(), ReadError> {
        let key = (object.bucket.clone(), object.key.clone());
        if !lock(&self.objects).contains_key(&key) {
            return Err(ReadError::NotFound(object.to_string()));
        }
        if lock(&self.replaced).contains(&key) {
            return Err(ReadError::Changed(object.to_string()));
        }
        Ok(())
    }
}

/// A compare-and-set store in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    migrations: Mutex<BTreeMap<String, Versioned<MigrationRecord>>>,
    files: Mutex<BTreeMap<(String, String), Versioned<FileRecord>>>,
    names: Mutex<BTreeMap<String, String>>,
    fail_puts: Mutex<u32>,
    /// While set, [`StatusStore::list_files_in`] lists the files by their state at the moment
    /// of [`MemoryStore::freeze_lists`], as a lagging index would (records as stored now).
    frozen_lists: Mutex<Option<Vec<(String, String, FileState)>>>,
}

impl MemoryStore {
    /// The next `n` puts fail as unavailable.
    pub fn fail_next_puts(&self, n: u32) {
        *lock(&self.fail_puts) = n;
    }

    fn injected(&self) -> Result<(), StoreError> {
        let mut fail = lock(&self.fail_puts);
        if *fail > 0 {
            *fail -= 1;
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        Ok(())
    }

    /// From now on, files are listed by state as they are now (an eventually consistent index
    /// that has not caught up), until [`MemoryStore::thaw_lists`].
    pub fn freeze_lists(&self) {
        let now: Vec<(String, String, FileState)> = lock(&self.files)
            .iter()
            .map(|((m, id), v)| (m.clone(), id.clone(), v.record.state))
            .collect();
        *lock(&self.frozen_lists) = Some(now);
    }

    /// The index has caught up.
    pub fn thaw_lists(&self) {
        *lock(&self.frozen_lists) = None;
    }

    /// The files the index lists for `migration` in `state` (each as stored now).
    fn listed(&self, migration: &str, state: FileState) -> Vec<Versioned<FileRecord>> {
        let files = lock(&self.files);
        match &*lock(&self.frozen_lists) {
            None => files
                .iter()
                .filter(|((m, _), v)| m == migration && v.record.state == state)
                .map(|(_, v)| v.clone())
                .collect(),
            Some(frozen) => frozen
                .iter()
                .filter(|(m, _, s)| m == migration && *s == state)
                .filter_map(|(m, id, _)| files.get(&(m.clone(), id.clone())).cloned())
                .collect(),
        }
    }

    /// Every file record, for assertions.
    pub fn all_files(&self) -> Vec<FileRecord> {
        lock(&self.files)
            .values()
            .map(|v| v.record.clone())
            .collect()
    }
}

impl StatusStore for MemoryStore {
    async fn claim_name(&self, folded: &str, database: &str) -> Result<String, StoreError> {
        self.injected()?;
        Ok(lock(&self.names)
            .entry(folded.to_owned())
            .or_insert_with(|| database.to_owned())
            .clone())
    }

    async fn get_migration(
        &self,
        database: &str,
    ) -> Result<Option<Versioned<MigrationRecord>>, StoreError> {
        Ok(lock(&self.migrations).get(database).cloned())
    }

    async fn put_migration(
        &self,
        record: &MigrationRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.injected()?;
        put_if(
            &mut lock(&self.migrations),
            record.database.to_string(),
            record,
            expected,
        )
    }

    async fn get_file(
        &self,
        migration: &str,
        file_id: &str,
    ) -> Result<Option<Versioned<FileRecord>>, StoreError> {
        Ok(lock(&self.files)
            .get(&(migration.to_owned(), file_id.to_owned()))
            .cloned())
    }

    async fn put_file(
        &self,
        record: &FileRecord,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.injected()?;
        put_if(
            &mut lock(&self.files),
            (record.migration_key().to_owned(), record.file_id.clone()),
            record,
            expected,
        )
    }

    async fn delete_file(
        &self,
        migration: &str,
        file_id: &str,
        expected: u64,
    ) -> Result<(), StoreError> {
        self.injected()?;
        let key = (migration.to_owned(), file_id.to_owned());
        delete_if(&mut lock(&self.files), &key, expected).map(|_| ())
    }

    async fn list_migrations(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MigrationRecord>, StoreError> {
        Ok(lock(&self.migrations)
            .iter()
            .filter(|(name, _)| after.is_none_or(|a| name.as_str() > a))
            .take(limit)
            .map(|(_, v)| v.record.clone())
            .collect())
    }

    async fn list_files(&self, migration: &str) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        let mut files: Vec<_> = lock(&self.files)
            .iter()
            .filter(|((m, _), _)| m == migration)
            .map(|(_, v)| v.clone())
            .collect();
        files.sort_by_key(|v| v.record.created_at);
        Ok(files)
    }

    async fn list_files_in(
        &self,
        migration: &str,
        state: FileState,
        limit: usize,
    ) -> Result<Vec<Versioned<FileRecord>>, StoreError> {
        let mut files = self.listed(migration, state);
        files.sort_by_key(|f| std::cmp::Reverse(f.record.updated_at));
        files.truncate(limit);
        Ok(files)
    }

    async fn count_files_in(&self, migration: &str, state: FileState) -> Result<usize, StoreError> {
        Ok(self.listed(migration, state).len())
    }

    fn lists_lag(&self) -> bool {
        lock(&self.frozen_lists).is_some()
    }
}

/// A queue in memory.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    messages: Mutex<Vec<(QueueMessage, Duration)>>,
    fail_next: Mutex<u32>,
}

impl MemoryQueue {
    pub fn messages(&self) -> Vec<QueueMessage> {
        lock(&self.messages)
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }
    /// The next `n` sends fail as unavailable.
    pub fn fail_next(&self, n: u32) {
        *lock(&self.fail_next) = n;
    }
    /// Takes every message sent so far, with its delay (as a consumer would receive them).
    pub fn drain_sent(&self) -> Vec<(QueueMessage, Duration)> {
        std::mem::take(&mut *lock(&self.messages))
    }
    /// Puts `message` back on the queue, due now.
    pub fn send_now(&self, message: QueueMessage) {
        lock(&self.messages).push((message, Duration::ZERO));
    }
}

impl JobQueue for MemoryQueue {
    async fn send(&self, message: &QueueMessage, delay: Duration) -> Result<(), QueueError> {
        {
            let mut fail = lock(&self.fail_next);
            if *fail > 0 {
                *fail -= 1;
                return Err(QueueError::Unavailable("injected failure".into()));
            }
        }
        lock(&self.messages).push((message.clone(), delay));
        Ok(())
    }
}

/// A target SQL Server in memory: tasks finish when the test says so.
#[derive(Debug)]
pub struct MemoryTarget {
    pub product_version: Mutex<String>,
    pub databases: Mutex<BTreeMap<String, String>>,
    /// Submitted tasks: (task name, request, status).
    pub tasks: Mutex<
        Vec<(
            String,
            crate::tsql::RestoreRequest,
            crate::ports::TaskStatus,
        )>,
    >,
    /// The next submit fails with this SQL Server error (number, message).
    pub fail_next_submit: Mutex<Option<(u32, String)>>,
    /// The next `n` submits find the target busy.
    pub busy: Mutex<u32>,
    /// The next `n` submits reach the server, then lose the connection.
    pub cut_after_submit: Mutex<u32>,
    /// The next `n` submits never reach the server (the connection is lost first).
    pub lose_next_submit: Mutex<u32>,
    /// Cancelling takes time, as on a real server: `cancel_task` only asks, and the task runs on
    /// until the test [`finish`](MemoryTarget::finish)es it.
    pub slow_cancel: Mutex<bool>,
    /// Names of the tasks released (their Agent jobs deleted).
    pub released: Mutex<Vec<String>>,
    /// Behave as RDS: tasks are numbered (`TaskId::Rds`, 1 for the first) and found by their
    /// request's S3 object, the highest number first, as `rds_task_status` lists them.
    pub rds: Mutex<bool>,
    /// `check_ready` answers this (`None`: ready).
    pub not_ready: Mutex<Option<crate::ports::NotReady>>,
    /// The next `n` polls fail with SQL Server's 18456 (a login refused: a rotated secret).
    pub refuse_polls: Mutex<u32>,
    /// The next `n` `bring_online` calls never reach the server (the connection is lost first).
    pub lose_next_online: Mutex<u32>,
    /// Native recovery jobs run until the test [`finish`](MemoryTarget::finish)es them (a long
    /// recovery); otherwise they have succeeded by the first look (a quick one).
    pub slow_recovery: Mutex<bool>,
    /// Names of the native recovery jobs `bring_online` started.
    pub recovery_jobs: Mutex<Vec<String>>,
}

/// The task name the memory target gives an RDS `FINISH_RESTORE` task of `database`.
pub fn finish_task_name(database: &str) -> String {
    format!("FINISH_RESTORE {database}")
}

impl MemoryTarget {
    pub fn new(product_version: &str) -> MemoryTarget {
        MemoryTarget {
            product_version: Mutex::new(product_version.to_owned()),
            databases: Mutex::default(),
            tasks: Mutex::default(),
            fail_next_submit: Mutex::default(),
            busy: Mutex::default(),
            cut_after_submit: Mutex::default(),
            lose_next_submit: Mutex::default(),
            released: Mutex::default(),
            slow_cancel: Mutex::default(),
            rds: Mutex::default(),
            not_ready: Mutex::default(),
            refuse_polls: Mutex::default(),
            lose_next_online: Mutex::default(),
            slow_recovery: Mutex::default(),
            recovery_jobs: Mutex::default(),
        }
    }

    /// A task's name from its id.
    fn name_of(&self, task: &crate::model::task::TaskId) -> String {
        match task {
            crate::model::task::TaskId::AgentJob(n) => n.clone(),
            crate::model::task::TaskId::Rds(id) => usize::try_from(*id)
                .ok()
                .and_then(|i| {
                    lock(&self.tasks)
                        .get(i.wrapping_sub(1))
                        .map(|t| t.0.clone())
                })
                .unwrap_or_else(|| id.to_string()),
        }
    }

    /// Ends the task `name` with `status` (a restore leaves the database RESTORING, an RDS
    /// `FINISH_RESTORE` task or a native recovery job ONLINE).
    pub fn finish(&self, name: &str, status: crate::ports::TaskStatus) {
        let recovery = lock(&self.recovery_jobs).iter().any(|j| j == name);
        let mut tasks = lock(&self.tasks);
        for task in tasks.iter_mut().filter(|t| t.0 == name) {
            if status == crate::ports::TaskStatus::Succeeded {
                let state = if recovery || name.starts_with("FINISH_RESTORE ") {
                    "ONLINE"
                } else {
                    "RESTORING"
                };
                lock(&self.databases).insert(task.1.database.as_str().to_owned(), state.into());
            }
            task.2 = status.clone();
        }
    }

    /// A native `bring_online`: the Agent job `name` running `WITH RECOVERY` (the one already
    /// there, as SQL Server Agent keeps job names unique). It fails as the step would on a
    /// database that is missing (911) or not RESTORING (3117).
    fn recovery_job(
        &self,
        database: &crate::model::names::DatabaseName,
        name: &str,
    ) -> crate::ports::Online {
        let job =
            crate::ports::Online::Finishing(crate::model::task::TaskId::AgentJob(name.to_owned()));
        let released = lock(&self.released).iter().any(|r| r == name);
        if !released && lock(&self.tasks).iter().any(|t| t.0 == name) {
            return job;
        }
        let failure = |number: u32, message: String| crate::ports::TaskStatus::Failed {
            sql_error: Some(crate::model::status::SqlError {
                number,
                message: message.clone(),
            }),
            message,
        };
        let slow = *lock(&self.slow_recovery);
        let status = {
            let mut dbs = lock(&self.databases);
            match dbs.get_mut(database.as_str()) {
                Some(state) if state == "RESTORING" && slow => {
                    crate::ports::TaskStatus::Running { percent: None }
                }
                Some(state) if state == "RESTORING" => {
                    *state = "ONLINE".into();
                    crate::ports::TaskStatus::Succeeded
                }
                Some(_) => failure(3117, "The log or differential backup cannot be restored because no files are ready to rollforward.".into()),
                None => failure(911, format!("Database '{database}' does not exist. Make sure that the name is entered correctly.")),
            }
        };
        lock(&self.recovery_jobs).push(name.to_owned());
        lock(&self.tasks).push((
            name.to_owned(),
            crate::tsql::RestoreRequest::new(
                database.clone(),
                crate::model::header::BackupKind::Full,
                Vec::new(),
            ),
            status,
        ));
        job
    }

    /// Names of submitted tasks, in order.
    pub fn submitted(&self) -> Vec<String> {
        lock(&self.tasks).iter().map(|t| t.0.clone()).collect()
    }
}

impl crate::ports::RestoreTarget for MemoryTarget {
    async fn product_version(&self) -> Result<String, crate::ports::TargetError> {
        Ok(lock(&self.product_version).clone())
    }

    async fn database_state(
        &self,
        database: &crate::model::names::DatabaseName,
    ) -> Result<Option<String>, crate::ports::TargetError> {
        Ok(lock(&self.databases).get(database.as_str()).cloned())
    }

    async fn submit(
        &self,
        request: &crate::tsql::RestoreRequest,
        task_name: &str,
    ) -> Result<crate::model::task::TaskId, crate::ports::TargetError> {
        {
            let mut busy = lock(&self.busy);
            if *busy > 0 {
                *busy -= 1;
                return Err(crate::ports::TargetError::Busy);
            }
        }
        if let Some((number, message)) = lock(&self.fail_next_submit).take() {
            return Err(crate::ports::TargetError::Sql { number, message });
        }
        {
            let mut lose = lock(&self.lose_next_submit);
            if *lose > 0 {
                *lose -= 1;
                return Err(crate::ports::TargetError::Connection(
                    "connection lost before the submit".into(),
                ));
            }
        }
        let rds = *lock(&self.rds);
        // SQL Server Agent keeps job names unique (sp_add_job); a deleted job's name is free.
        let taken = lock(&self.tasks).iter().any(|t| t.0 == task_name)
            && !lock(&self.released).iter().any(|r| r == task_name);
        if !rds && taken {
            return Err(crate::ports::TargetError::Sql {
                number: 14261,
                message: format!("The specified @name ('{task_name}') already exists."),
            });
        }
        lock(&self.tasks).push((
            task_name.to_owned(),
            request.clone(),
            crate::ports::TaskStatus::Running { percent: Some(0.0) },
        ));
        let number = i64::try_from(lock(&self.tasks).len()).unwrap_or(i64::MAX);
        let mut cut = lock(&self.cut_after_submit);
        if *cut > 0 {
            *cut -= 1;
            return Err(crate::ports::TargetError::Connection(
                "connection cut".into(),
            ));
        }
        Ok(if rds {
            crate::model::task::TaskId::Rds(number)
        } else {
            crate::model::task::TaskId::AgentJob(task_name.to_owned())
        })
    }

    async fn find_task(
        &self,
        request: &crate::tsql::RestoreRequest,
        task_name: &str,
    ) -> Result<Option<crate::model::task::TaskId>, crate::ports::TargetError> {
        let tasks = lock(&self.tasks);
        if *lock(&self.rds) {
            return Ok(tasks
                .iter()
                .rposition(|t| t.1.sources.first() == request.sources.first())
                .and_then(|i| i64::try_from(i + 1).ok())
                .map(crate::model::task::TaskId::Rds));
        }
        Ok(tasks
            .iter()
            .any(|t| t.0 == task_name)
            .then(|| crate::model::task::TaskId::AgentJob(task_name.to_owned())))
    }

    async fn poll(
        &self,
        _database: &crate::model::names::DatabaseName,
        task: &crate::model::task::TaskId,
    ) -> Result<crate::ports::TaskStatus, crate::ports::TargetError> {
        {
            let mut refuse = lock(&self.refuse_polls);
            if *refuse > 0 {
                *refuse -= 1;
                return Err(crate::ports::TargetError::Sql {
                    number: 18456,
                    message: "Login failed for user 'bakdrop'.".into(),
                });
            }
        }
        let name = self.name_of(task);
        lock(&self.tasks)
            .iter()
            .rev()
            .find(|t| t.0 == name)
            .map(|t| t.2.clone())
            .ok_or_else(|| crate::ports::TargetError::Protocol(format!("no task {name}")))
    }

    async fn check_ready(
        &self,
        _request: &crate::tsql::RestoreRequest,
    ) -> Result<(), crate::ports::TargetError> {
        match lock(&self.not_ready).clone() {
            Some(n) => Err(crate::ports::TargetError::NotReady(n)),
            None => Ok(()),
        }
    }

    async fn bring_online(
        &self,
        database: &crate::model::names::DatabaseName,
        task_name: &str,
    ) -> Result<crate::ports::Online, crate::ports::TargetError> {
        {
            let mut lose = lock(&self.lose_next_online);
            if *lose > 0 {
                *lose -= 1;
                return Err(crate::ports::TargetError::Connection(
                    "connection lost before bringing the database online".into(),
                ));
            }
        }
        let rds = *lock(&self.rds);
        if !rds {
            return Ok(self.recovery_job(database, task_name));
        }
        let mut dbs = lock(&self.databases);
        match dbs.get_mut(database.as_str()) {
            Some(state) if state == "RESTORING" && rds => {
                drop(dbs);
                let name = finish_task_name(database.as_str());
                let mut tasks = lock(&self.tasks);
                let running = |t: &&(String, _, crate::ports::TaskStatus)| {
                    t.0 == name && matches!(t.2, crate::ports::TaskStatus::Running { .. })
                };
                let index = match tasks.iter().rposition(|t| running(&t)) {
                    Some(i) => i,
                    None => {
                        tasks.push((
                            name,
                            crate::tsql::RestoreRequest::new(
                                database.clone(),
                                crate::model::header::BackupKind::Full,
                                Vec::new(),
                            ),
                            crate::ports::TaskStatus::Running { percent: None },
                        ));
                        tasks.len() - 1
                    }
                };
                let id = i64::try_from(index + 1).unwrap_or(i64::MAX);
                Ok(crate::ports::Online::Finishing(crate::model::task::TaskId::Rds(id)))
            }
            Some(_) => Err(crate::ports::TargetError::Sql {
                number: 3117,
                message: "The log or differential backup cannot be restored because no files are ready to rollforward.".into(),
            }),
            None => Err(crate::ports::TargetError::Sql {
                number: 911,
                message: format!("Database '{database}' does not exist."),
            }),
        }
    }

    async fn cancel_task(
        &self,
        task: &crate::model::task::TaskId,
    ) -> Result<(), crate::ports::TargetError> {
        if !*lock(&self.slow_cancel) {
            let name = self.name_of(task);
            self.finish(&name, crate::ports::TaskStatus::Cancelled);
        }
        Ok(())
    }

    async fn release_task(
        &self,
        _request: &crate::tsql::RestoreRequest,
        task: &crate::model::task::TaskId,
        _task_name: &str,
    ) -> Result<(), crate::ports::TargetError> {
        if let crate::model::task::TaskId::AgentJob(name) = task {
            lock(&self.released).push(name.clone());
        }
        Ok(())
    }

    async fn drop_database(
        &self,
        database: &crate::model::names::DatabaseName,
    ) -> Result<(), crate::ports::TargetError> {
        lock(&self.databases).remove(database.as_str());
        Ok(())
    }
}

/// An event bus in memory: what was published, and faults to inject.
#[derive(Debug, Default)]
pub struct MemoryBus {
    pub published: Mutex<Vec<crate::report::events::Event>>,
    /// Publishing fails after this many more events are taken (`None`: never).
    pub fail_after: Mutex<Option<usize>>,
}

impl crate::ports::EventBus for MemoryBus {
    async fn publish(
        &self,
        events: &[crate::report::events::Event],
    ) -> Result<(), crate::ports::PublishError> {
        let mut published = lock(&self.published);
        let mut fail_after = lock(&self.fail_after);
        for (i, event) in events.iter().enumerate() {
            if let Some(left) = fail_after.as_mut() {
                if *left == 0 {
                    return Err(crate::ports::PublishError {
                        published: i,
                        source: "the memory bus is failing".into(),
                    });
                }
                *left -= 1;
            }
            published.push(event.clone());
        }
        Ok(())
    }
}
