use super::*;
use crate::model::header::HeaderSummary;
use crate::model::object::ObjectRef;
use crate::model::status::{Claim, FileRecord, InFlight};
use crate::ports::fakes::{block_on, MemoryStore, MemoryTarget};
use crate::ports::TaskStatus;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn header(kind: BackupKind, last: u32) -> HeaderSummary {
    HeaderSummary {
        files: Vec::new(),
        backup_type: kind,
        copy_only: None,
        source_database: "Sales".into(),
        server_name: "S".into(),
        software_version: "16.0.4135".into(),
        database_version: 957,
        compressed: false,
        has_checksums: true,
        tail_log: Some(false),
        first_lsn: crate::Lsn::from_parts(1, last - 1, 1),
        last_lsn: crate::Lsn::from_parts(1, last, 1),
        checkpoint_lsn: crate::Lsn::from_parts(1, last - 1, 1),
        database_backup_lsn: crate::Lsn::ZERO,
        differential_base_lsn: None,
        differential_base_guid: None,
        backup_set_guid: uuid::Uuid::from_u128(u128::from(last)),
        family_guid: uuid::Uuid::from_u128(1),
        recovery_fork_id: uuid::Uuid::from_u128(1),
        family_count: 1,
        family_sequence: 1,
        backup_start_date: None,
        backup_finish_date: None,
        backup_size: None,
    }
}

fn file(name: &str, state: FileState, kind: BackupKind, last: u32) -> FileRecord {
    FileRecord {
        migration: Some(crate::DatabaseName::parse("Sales").expect("name")),
        file_id: format!("b/Sales/{name}#etag=1"),
        object: ObjectRef {
            bucket: "b".into(),
            key: format!("Sales/{name}"),
            version_id: None,
            etag: Some("1".into()),
            size: 1,
        },
        state,
        reason: None,
        header: Some(header(kind, last)),
        claim: None,
        restore_started_at: None,
        restore_finished_at: None,
        created_at: now(),
        updated_at: now(),
    }
}

/// A migration in `state` with `files`, and a target where the database is RESTORING.
fn setup(state: MigrationState, files: &[FileRecord]) -> (MemoryStore, MemoryTarget) {
    let store = MemoryStore::default();
    let mut migration =
        MigrationRecord::new(crate::DatabaseName::parse("Sales").expect("name"), now());
    migration.state = state;
    // The chain of the restored files, in LSN order (as the worker records it).
    let mut restored: Vec<&FileRecord> = files
        .iter()
        .filter(|f| f.state == FileState::Restored)
        .collect();
    restored.sort_by_key(|f| f.header.as_ref().map(|h| h.last_lsn));
    for f in restored {
        if let Some(h) = &f.header {
            migration.chain.apply(&crate::model::chain::Step {
                kind: h.backup_type,
                files: vec![f.file_id.clone()],
                backup_set_guid: h.backup_set_guid,
                first_lsn: h.first_lsn,
                last_lsn: h.last_lsn,
            });
        }
    }
    block_on(store.put_migration(&migration, None)).expect("stored");
    for f in files {
        block_on(store.put_file(f, None)).expect("stored");
    }
    let target = MemoryTarget::new("16.0.4135.4");
    target
        .databases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert("Sales".into(), "RESTORING".into());
    (store, target)
}

fn request(last_backup: Option<&str>, require_tail_log: bool) -> CompleteRequest {
    CompleteRequest {
        database: "Sales".into(),
        last_backup: last_backup.map(str::to_owned),
        require_tail_log,
    }
}

fn code(result: Result<MigrationState, CutoverError>) -> String {
    match result {
        Err(e) => e.error_type().to_owned(),
        Ok(state) => format!("Ok({state})"),
    }
}

fn synced() -> Vec<FileRecord> {
    vec![
        file("full.bak", FileState::Restored, BackupKind::Full, 10),
        file("log1.trn", FileState::Restored, BackupKind::Log, 20),
    ]
}

#[test]
fn complete_brings_a_synchronizing_database_online_and_twice_is_harmless() {
    let (store, target) = setup(MigrationState::Synchronizing, &synced());
    let state = block_on(complete(
        &store,
        &target,
        &request(Some("log1.trn"), false),
        now(),
    ));
    assert_eq!(state.ok(), Some(MigrationState::Succeeded));
    assert_eq!(
        target
            .databases
            .lock()
            .ok()
            .and_then(|d| d.get("Sales").cloned())
            .as_deref(),
        Some("ONLINE")
    );
    let again = block_on(complete(&store, &target, &request(None, false), now()));
    assert_eq!(again.ok(), Some(MigrationState::Succeeded));
}

fn database_state(target: &MemoryTarget) -> Option<String> {
    target
        .databases
        .lock()
        .ok()
        .and_then(|d| d.get("Sales").cloned())
}

fn finishing(store: &MemoryStore) -> Option<TaskId> {
    block_on(store.get_migration("Sales"))
        .ok()
        .flatten()
        .and_then(|m| m.record.finishing)
}

#[test]
fn a_native_recovery_runs_as_an_agent_job_that_complete_starts_once_and_follows() {
    let (store, target) = setup(MigrationState::Synchronizing, &synced());
    *target.slow_recovery.lock().expect("lock") = true;
    let state = block_on(complete(&store, &target, &request(None, false), now()));
    assert_eq!(state.ok(), Some(MigrationState::Completing));
    let job = crate::model::names::finish_task_name("Sales", 0);
    assert_eq!(finishing(&store), Some(TaskId::AgentJob(job.clone())));
    assert_eq!(database_state(&target).as_deref(), Some("RESTORING"));
    // Completing again looks at the same job.
    let again = block_on(complete(&store, &target, &request(None, false), now()));
    assert_eq!(again.ok(), Some(MigrationState::Completing));
    assert_eq!(target.submitted(), vec![job.clone()]);
    target.finish(&job, TaskStatus::Succeeded);
    let state = block_on(follow_finish(&store, &target, "Sales", now()));
    assert_eq!(state.ok(), Some(MigrationState::Succeeded));
    assert_eq!(finishing(&store), None);
    assert_eq!(database_state(&target).as_deref(), Some("ONLINE"));
    assert_eq!(*target.released.lock().expect("lock"), vec![job]);
}

#[test]
fn a_recovery_job_of_a_migration_after_a_reset_carries_its_generation() {
    let (store, target) = setup(MigrationState::Synchronizing, &synced());
    let mut m = block_on(store.get_migration("Sales"))
        .ok()
        .flatten()
        .expect("m");
    m.record.generation = 2;
    block_on(store.put_migration(&m.record, Some(m.version))).expect("stored");
    *target.slow_recovery.lock().expect("lock") = true;
    block_on(complete(&store, &target, &request(None, false), now())).expect("complete");
    assert_eq!(
        finishing(&store),
        Some(TaskId::AgentJob(crate::model::names::finish_task_name(
            "Sales", 2
        )))
    );
}

#[test]
fn a_complete_cut_off_before_its_task_started_is_resumed_by_the_next_look() {
    let (store, target) = setup(MigrationState::Synchronizing, &synced());
    *target.lose_next_online.lock().expect("lock") = 1;
    let failed = block_on(complete(&store, &target, &request(None, false), now()));
    assert!(matches!(&failed, Err(e) if e.is_transient()), "{failed:?}");
    let m = block_on(store.get_migration("Sales"))
        .ok()
        .flatten()
        .expect("m");
    assert_eq!(m.record.state, MigrationState::Completing);
    assert_eq!(m.record.finishing, None);
    let looked = block_on(look_at_finish(&store, &target, "Sales", now()));
    assert_eq!(
        looked.ok().map(|l| l.0),
        Some(MigrationState::Succeeded),
        "the look started the recovery, which was quick"
    );
    assert_eq!(database_state(&target).as_deref(), Some("ONLINE"));
}

#[test]
fn complete_is_refused_while_a_file_waits_queues_or_restores() {
    for state in [FileState::Waiting, FileState::Queued, FileState::Restoring] {
        let mut files = synced();
        files.push(file("log3.trn", state, BackupKind::Log, 40));
        let (store, target) = setup(MigrationState::Synchronizing, &files);
        let result = block_on(complete(&store, &target, &request(None, false), now()));
        assert_eq!(code(result), "FilesInFlight", "{state}");
        assert_eq!(
            target
                .databases
                .lock()
                .ok()
                .and_then(|d| d.get("Sales").cloned())
                .as_deref(),
            Some("RESTORING"),
            "nothing was brought online"
        );
    }
}

#[test]
fn complete_is_refused_when_the_named_last_backup_is_not_the_last_restored() {
    let (store, target) = setup(MigrationState::Synchronizing, &synced());
    let result = block_on(complete(
        &store,
        &target,
        &request(Some("log2.trn"), false),
        now(),
    ));
    assert_eq!(code(result), "NotLastBackup");
}

#[test]
fn complete_is_refused_unless_synchronizing() {
    for state in [
        MigrationState::AwaitingFull,
        MigrationState::Restoring,
        MigrationState::Failed,
        MigrationState::Cancelled,
    ] {
        let (store, target) = setup(state, &synced());
        let result = block_on(complete(&store, &target, &request(None, false), now()));
        assert_eq!(code(result), "NotSynchronizing", "{state}");
    }
    let store = MemoryStore::default();
    let target = MemoryTarget::new("16.0.4135.4");
    assert_eq!(
        code(block_on(complete(
            &store,
            &target,
            &request(None, false),
            now()
        ))),
        "MigrationNotFound"
    );
}

fn refusal(result: Result<MigrationState, CutoverError>) -> (String, String) {
    match result {
        Err(CutoverError::Refused { code, message }) => (code.to_owned(), message),
        other => (format!("{other:?}"), String::new()),
    }
}

/// Complete with `require_tail_log` on a synchronizing migration of `files`, the last
/// restored one's tail-log flag set to `last_tail_log`.
fn complete_requiring_tail_log(
    mut files: Vec<FileRecord>,
    last_tail_log: Option<bool>,
) -> (Result<MigrationState, CutoverError>, MemoryTarget) {
    if let Some(h) = files.last_mut().and_then(|f| f.header.as_mut()) {
        h.tail_log = last_tail_log;
    }
    let (store, target) = setup(MigrationState::Synchronizing, &files);
    let result = block_on(complete(&store, &target, &request(None, true), now()));
    (result, target)
}

#[test]
fn a_required_tail_log_is_refused_when_the_last_log_is_an_ordinary_log_backup() {
    let (result, target) = complete_requiring_tail_log(synced(), Some(false));
    let (code, message) = refusal(result);
    assert_eq!(code, "NotTailLog");
    assert!(
        message.contains("log1.trn, is a log backup that is not a tail-log"),
        "{message}"
    );
    assert_eq!(
        target
            .databases
            .lock()
            .ok()
            .and_then(|d| d.get("Sales").cloned())
            .as_deref(),
        Some("RESTORING"),
        "a refused Complete leaves the database restoring"
    );
}

#[test]
fn a_required_tail_log_is_refused_when_the_last_restored_file_is_a_full_backup() {
    let files = vec![file("full.bak", FileState::Restored, BackupKind::Full, 10)];
    let (code, message) = refusal(complete_requiring_tail_log(files, Some(true)).0);
    assert_eq!(code, "NotTailLog");
    assert!(message.contains("full.bak, is a full backup"), "{message}");
}

#[test]
fn a_required_tail_log_recorded_before_the_flag_was_read_is_refused_with_a_way_out() {
    let (code, message) = refusal(complete_requiring_tail_log(synced(), None).0);
    assert_eq!(code, "NotTailLog");
    assert!(message.contains("last_backup"), "{message}");
}

#[test]
fn a_required_tail_log_completes_when_the_last_restored_log_is_a_tail_log_backup() {
    let (result, _) = complete_requiring_tail_log(synced(), Some(true));
    assert_eq!(result.ok(), Some(MigrationState::Succeeded));
}

#[test]
fn a_recovery_error_fails_the_migration_with_sql_servers_number() {
    let (store, target) = setup(MigrationState::Synchronizing, &synced());
    target
        .databases
        .lock()
        .ok()
        .map(|mut d| d.insert("Sales".into(), "SUSPECT".into()));
    let state = block_on(complete(&store, &target, &request(None, false), now()));
    assert_eq!(state.ok(), Some(MigrationState::Failed));
    let migration = block_on(store.get_migration("Sales"))
        .ok()
        .flatten()
        .expect("migration")
        .record;
    assert_eq!(
        migration.reason.and_then(|r| r.sql_error).map(|e| e.number),
        Some(3117)
    );
}

#[test]
fn cancel_stops_the_task_drops_the_database_and_ends_cancelled() {
    let (store, target) = setup(MigrationState::Restoring, &synced());
    let mut migration = block_on(store.get_migration("Sales"))
        .ok()
        .flatten()
        .expect("m");
    migration.record.in_flight = Some(InFlight {
        step: crate::model::chain::Step {
            kind: BackupKind::Log,
            files: vec![],
            backup_set_guid: uuid::Uuid::from_u128(9),
            first_lsn: crate::Lsn::ZERO,
            last_lsn: crate::Lsn::ZERO,
        },
        task_name: "job".into(),
        task: Some(TaskId::AgentJob("job".into())),
        claim: Claim {
            owner: "x".into(),
            holder: None,
            until: now(),
        },
        percent_complete: None,
        seen_running_at: None,
        looks: 0,
        bytes: None,
        submitted_at: now(),
    });
    block_on(store.put_migration(&migration.record, Some(migration.version))).expect("stored");
    block_on(target.submit(
        &crate::tsql::RestoreRequest::new(
            DatabaseName::parse("Sales").expect("name"),
            BackupKind::Log,
            vec![],
        ),
        "job",
    ))
    .expect("task");
    let state = block_on(cancel(&store, &target, "Sales", now()));
    assert_eq!(state.ok(), Some(MigrationState::Cancelled));
    assert!(
        target
            .databases
            .lock()
            .ok()
            .is_some_and(|d| d.get("Sales").is_none()),
        "dropped"
    );
    assert_eq!(
        block_on(target.poll(
            &DatabaseName::parse("Sales").expect("n"),
            &TaskId::AgentJob("job".into())
        ))
        .ok(),
        Some(crate::ports::TaskStatus::Cancelled)
    );
    // Cancelling twice is harmless; completing a cancelled migration is refused.
    assert_eq!(
        block_on(cancel(&store, &target, "Sales", now())).ok(),
        Some(MigrationState::Cancelled)
    );
    assert_eq!(
        code(block_on(complete(
            &store,
            &target,
            &request(None, false),
            now()
        ))),
        "NotSynchronizing"
    );
}

#[test]
fn cancel_never_drops_an_online_database() {
    let (store, target) = setup(MigrationState::Failed, &synced());
    target
        .databases
        .lock()
        .ok()
        .map(|mut d| d.insert("Sales".into(), "ONLINE".into()));
    assert_eq!(
        block_on(cancel(&store, &target, "Sales", now())).ok(),
        Some(MigrationState::Cancelled)
    );
    assert!(target
        .databases
        .lock()
        .ok()
        .is_some_and(|d| d.contains_key("Sales")));
    let (store, target) = setup(MigrationState::Succeeded, &synced());
    assert_eq!(
        code(block_on(cancel(&store, &target, "Sales", now()))),
        "AlreadyOnline"
    );
}
