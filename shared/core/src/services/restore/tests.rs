use std::sync::Arc;

use super::*;
use crate::model::object::ObjectRef;
use crate::ports::fakes::{block_on, MemoryObjects, MemoryQueue, MemoryStore, MemoryTarget};
use crate::services::validate::{Outcome, ValidateConfig, Validator};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak/");

/// Sets a fault counter of the in-memory target: the next `n` calls fail that way.
fn arm(fault: &std::sync::Mutex<u32>, n: u32) {
    set(fault, n);
}

/// Sets a setting of the in-memory target.
fn set<T>(setting: &std::sync::Mutex<T>, value: T) {
    *setting
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

/// The stable code of a Complete/Cancel/Reset refusal (panics on anything else).
fn refusal(result: Result<MigrationState, crate::services::cutover::CutoverError>) -> &'static str {
    match result {
        Err(crate::services::cutover::CutoverError::Refused { code, .. }) => code,
        other => panic!("not refused: {other:?}"),
    }
}

fn attempt<'a>(message_id: &'a str, invocation: &'a str) -> Attempt<'a> {
    Attempt {
        message_id,
        invocation,
    }
}

struct Pipeline {
    validator: Validator<Arc<MemoryObjects>, Arc<MemoryStore>, Arc<MemoryQueue>>,
    worker: Worker<Arc<MemoryStore>, Arc<MemoryQueue>, Arc<MemoryTarget>, Arc<MemoryObjects>>,
    objects: Arc<MemoryObjects>,
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    target: Arc<MemoryTarget>,
    clock: std::cell::Cell<i64>,
}

fn pipeline(target_version: &str) -> Pipeline {
    let objects = Arc::new(MemoryObjects::default());
    let store = Arc::new(MemoryStore::default());
    let queue = Arc::new(MemoryQueue::default());
    let target = Arc::new(MemoryTarget::new(target_version));
    let release: SqlServerRelease = target_version.parse().unwrap_or_else(|e| panic!("{e}"));
    Pipeline {
        validator: Validator {
            reader: objects.clone(),
            store: store.clone(),
            queue: queue.clone(),
            config: ValidateConfig {
                arm_by_upload: false,
                target: Some(release),
                policy: VersionPolicy::NotNewer,
                location: SourceLocation::Disk {
                    directory: "/backups".into(),
                },
            },
        },
        worker: Worker {
            store: store.clone(),
            queue: queue.clone(),
            target: target.clone(),
            objects: objects.clone(),
            config: RestoreConfig {
                dialect: Dialect::Native,
                location: SourceLocation::Disk {
                    directory: "/backups".into(),
                },
                policy: VersionPolicy::Same,
                check_version: true,
                poll_interval: Duration::from_secs(30),
                busy_retry: Duration::from_secs(120),
                settle: None,
            },
        },
        objects,
        store,
        queue,
        target,
        clock: std::cell::Cell::new(1_800_000_000),
    }
}

impl Pipeline {
    fn now(&self) -> OffsetDateTime {
        self.clock.set(self.clock.get() + 1);
        OffsetDateTime::from_unix_timestamp(self.clock.get()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn drop_file(&self, database: &str, fixture: &str) {
        let body = std::fs::read(format!("{FIXTURES}{fixture}")).unwrap_or_else(|e| panic!("{e}"));
        let key = format!("{database}/{fixture}");
        let object = ObjectRef {
            bucket: "b".into(),
            key: key.clone(),
            version_id: None,
            etag: Some(format!("e-{fixture}")),
            size: body.len() as u64,
        };
        self.objects.put("b", &key, body);
        let outcome =
            block_on(self.validator.validate(&object, "v", self.now())).expect("validated");
        assert!(
            matches!(outcome, Outcome::Queued { .. }),
            "{fixture}: {outcome:?}"
        );
    }

    /// Delivers every queued message once (delays ignored), as SQS would; returns outcomes.
    fn pump(&self) -> Vec<WorkOutcome> {
        let mut outcomes = Vec::new();
        for (i, (message, _delay)) in self.queue.drain_sent().into_iter().enumerate() {
            let id = format!("m{}-{i}", self.clock.get());
            outcomes.push(
                block_on(self.worker.handle(&message, attempt(&id, &id), self.now()))
                    .expect("handled"),
            );
        }
        outcomes
    }

    /// Finishes every running task successfully and delivers the polls, until quiet.
    fn run_to_quiet(&self) {
        for _ in 0..100 {
            for name in self.target.submitted() {
                if matches!(
                    block_on(self.target_status(&name)),
                    TaskStatus::Running { .. }
                ) {
                    self.target.finish(&name, TaskStatus::Succeeded);
                }
            }
            if self.pump().is_empty() {
                return;
            }
        }
        panic!("the pipeline did not settle");
    }

    async fn target_status(&self, name: &str) -> TaskStatus {
        let db = DatabaseName::parse("x").unwrap_or_else(|e| panic!("{e}"));
        self.target
            .poll(&db, &crate::model::task::TaskId::AgentJob(name.to_owned()))
            .await
            .unwrap_or(TaskStatus::Cancelled)
    }

    fn migration(&self, name: &str) -> MigrationRecord {
        block_on(self.store.get_migration(name))
            .ok()
            .flatten()
            .map(|v| v.record)
            .unwrap_or_else(|| panic!("no migration {name}"))
    }

    fn file_states(&self, name: &str) -> Vec<(String, FileState)> {
        let mut files: Vec<_> = block_on(self.store.list_files(name))
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.record.object.file_name().to_owned(), f.record.state))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }
}

#[test]
fn a_full_backup_is_submitted_once_polled_and_leaves_the_migration_synchronizing() {
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let messages = p.queue.drain_sent();
    assert_eq!(messages.len(), 1);
    let (job, _) = &messages[0];
    let first = block_on(p.worker.handle(job, attempt("m1", "i1"), p.now())).expect("handled");
    assert!(matches!(first, WorkOutcome::Submitted { .. }), "{first:?}");
    // The same message delivered again never submits a second RESTORE.
    let again =
        block_on(p.worker.handle(job, attempt("m1-again", "i2"), p.now())).expect("handled");
    assert!(matches!(again, WorkOutcome::Idle { .. }), "{again:?}");
    assert_eq!(p.target.submitted().len(), 1);
    assert_eq!(p.migration("Clean").state, MigrationState::Restoring);
    // The poll finds it running, then done.
    let polls = p.queue.drain_sent();
    assert_eq!(polls.len(), 1);
    // Nothing known of how long it takes: the first look comes a second later.
    assert_eq!(polls[0].1, pace::MIN_DELAY);
    let running =
        block_on(p.worker.handle(&polls[0].0, attempt("m2", "i3"), p.now())).expect("polled");
    assert!(
        matches!(running, WorkOutcome::Running { .. }),
        "{running:?}"
    );
    p.run_to_quiet();
    let migration = p.migration("Clean");
    assert_eq!(migration.state, MigrationState::Synchronizing);
    assert!(migration.in_flight.is_none());
    assert_eq!(
        migration
            .chain
            .recovery_fork_id
            .map(|f| f.to_string())
            .as_deref(),
        Some("6d3a541d-31c4-4207-975e-917419133822"),
        "the restored chain remembers its recovery fork"
    );
    assert_eq!(
        p.file_states("Clean"),
        vec![(
            "sql2016_full_RestoreTimeClean.bak".into(),
            FileState::Restored
        )]
    );
    let (_, request, _) = &p
        .target
        .tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)[0];
    assert_eq!(
        request.sources,
        vec![crate::tsql::RestoreSource::Disk(
            "/backups/Clean/sql2016_full_RestoreTimeClean.bak".into()
        )]
    );
    // What a native restore needs from the header: the files to move, no checksums.
    let logical: Vec<&str> = request
        .files
        .iter()
        .map(|f| f.logical_name.as_str())
        .collect();
    assert_eq!(logical, ["RestoreTimeClean", "RestoreTimeClean_log"]);
    assert!(!request.checksums);
}

/// The only message waiting: the next look at the task in flight, and its delay.
fn next_look(p: &Pipeline) -> (QueueMessage, Duration) {
    let mut sent = p.queue.drain_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent.remove(0)
}

#[test]
fn looks_at_a_restore_follow_its_progress_then_the_speed_of_earlier_restores() {
    let p = pipeline("2016");
    let start = p.clock.get();
    let at = |secs: i64| {
        p.clock.set(start + secs - 1);
        p.now()
    };
    let running = |task: &str, percent: f64| {
        p.target.finish(
            task,
            TaskStatus::Running {
                percent: Some(percent),
            },
        );
    };
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let (job, _) = next_look(&p);
    block_on(p.worker.handle(&job, attempt("m1", "i1"), at(10))).expect("submitted");
    let full = p.target.submitted()[0].clone();
    // Nothing known: a second later.
    let (poll, delay) = next_look(&p);
    assert_eq!(delay, Duration::from_secs(1));
    // 25 % after 4 s: 12 s left.
    running(&full, 25.0);
    block_on(p.worker.handle(&poll, attempt("m2", "i2"), at(14))).expect("polled");
    assert_eq!(next_look(&p).1, Duration::from_secs(12));
    // 50 % 4 s later: 25 % per 4 s, 8 s left (the rate between the two readings).
    running(&full, 50.0);
    block_on(p.worker.handle(&poll, attempt("m3", "i3"), at(18))).expect("polled");
    assert_eq!(next_look(&p).1, Duration::from_secs(8));
    let migration = p.migration("Clean");
    let in_flight = migration.in_flight.expect("in flight");
    assert_eq!(in_flight.looks, 2);
    assert_eq!(in_flight.percent_complete, Some(50.0));
    p.target.finish(&full, TaskStatus::Succeeded);
    block_on(p.worker.handle(&poll, attempt("m4", "i4"), at(26))).expect("done");
    let _ = p.queue.drain_sent();
    let migration = p.migration("Clean");
    assert_eq!(migration.state, MigrationState::Synchronizing);
    // Learnt: the full ran at least until 8 s after its submission.
    assert!(migration.rates.full.is_some_and(|r| r > 0.0));
    assert_eq!(migration.rates.log, None);

    // The first log: no log restored yet, a second later; done 3 s after its submission.
    p.drop_file("Clean", "sql2016_log_RestoreTimeClean_1.trn");
    let (job, _) = next_look(&p);
    block_on(p.worker.handle(&job, attempt("m5", "i5"), at(40))).expect("submitted");
    let (poll, delay) = next_look(&p);
    assert_eq!(delay, Duration::from_secs(1));
    let log = p.target.submitted()[1].clone();
    p.target.finish(&log, TaskStatus::Succeeded);
    block_on(p.worker.handle(&poll, attempt("m6", "i6"), at(43))).expect("done");
    let _ = p.queue.drain_sent();
    // The next log, of the same size: looked at when it should be done, 3 s on.
    p.drop_file("Clean", "sql2016_log_RestoreTimeClean_2.trn");
    let (job, _) = next_look(&p);
    block_on(p.worker.handle(&job, attempt("m7", "i7"), at(50))).expect("submitted");
    assert_eq!(next_look(&p).1, Duration::from_secs(3));
}

#[test]
fn a_poll_waits_in_its_invocation_for_a_restore_about_to_end() {
    let mut p = pipeline("2016");
    let start = p.clock.get();
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let (job, _) = next_look(&p);
    p.clock.set(start + 9);
    block_on(p.worker.handle(&job, attempt("m1", "i1"), p.now())).expect("submitted");
    let full = p.target.submitted()[0].clone();
    let (poll, _) = next_look(&p);
    // The pause ends the restore (the target finishes while the poll waits).
    let pauses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (seen, target, task) = (pauses.clone(), p.target.clone(), full.clone());
    p.worker.config.settle = Some(Settle {
        longest: Duration::from_secs(2),
        pause: Arc::new(move |d| {
            seen.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(d);
            target.finish(&task, TaskStatus::Succeeded);
            Box::pin(std::future::ready(()))
        }),
    });
    // 90 % after 9 s: 1 s left, within the 2 s a poll may wait.
    p.target.finish(
        &full,
        TaskStatus::Running {
            percent: Some(90.0),
        },
    );
    p.clock.set(start + 18);
    let outcome = block_on(p.worker.handle(&poll, attempt("m2", "i2"), p.now())).expect("polled");
    assert_eq!(
        outcome,
        WorkOutcome::Idle {
            migration: crate::DatabaseName::parse("Clean").expect("name"),
            state: MigrationState::Synchronizing
        }
    );
    assert_eq!(
        *pauses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        vec![Duration::from_secs(1)]
    );
    // No further look queued: the restore was seen done in this invocation.
    assert!(p.queue.drain_sent().is_empty());
    assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
    // Too far from its end to wait: a later look, a second before the expected end.
    p.drop_file("Clean", "sql2016_log_RestoreTimeClean_1.trn");
    let (job, _) = next_look(&p);
    block_on(p.worker.handle(&job, attempt("m3", "i3"), p.now())).expect("submitted");
    let (poll, _) = next_look(&p);
    let log = p.target.submitted()[1].clone();
    p.target.finish(
        &log,
        TaskStatus::Running {
            percent: Some(20.0),
        },
    );
    block_on(p.worker.handle(&poll, attempt("m4", "i4"), p.now())).expect("polled");
    let (_, delay) = next_look(&p);
    assert!(delay >= Duration::from_secs(1), "{delay:?}");
    assert_eq!(
        pauses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len(),
        1,
        "no wait for a restore far from its end"
    );
}

#[test]
fn a_finish_task_is_looked_at_sooner_the_sooner_it_started() {
    let (p, request) = rds_synchronizing_clean();
    let started = p.now();
    let state = block_on(crate::services::cutover::complete(
        &p.store, &p.target, &request, started,
    ))
    .expect("complete");
    assert_eq!(state, MigrationState::Completing);
    let finish = QueueMessage::Finish {
        migration: crate::DatabaseName::parse("Clean").expect("name"),
        since: Some(started),
    };
    for (after, delay) in [(1, 1), (6, 3), (20, 10), (600, 30)] {
        let now = started + time::Duration::seconds(after);
        block_on(p.worker.handle(&finish, attempt("f", "f"), now)).expect("followed");
        assert_eq!(
            p.queue.drain_sent(),
            vec![(finish.clone(), Duration::from_secs(delay))],
            "{after} s after Complete"
        );
    }
}

#[test]
fn a_target_whose_agent_is_stopped_holds_the_first_restore_and_says_why_until_it_runs() {
    let p = pipeline("2016");
    set(
        &p.target.not_ready,
        Some(crate::ports::NotReady::AgentNotRunning),
    );
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let outcomes = p.pump();
    assert!(
        matches!(outcomes[..], [WorkOutcome::Deferred { .. }]),
        "{outcomes:?}"
    );
    assert!(p.target.submitted().is_empty(), "nothing submitted");
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::AwaitingFull);
    assert_eq!(m.reason.map(|r| r.code).as_deref(), Some("AgentNotRunning"));
    let retry = p.queue.drain_sent();
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(retry[0].1, Duration::from_secs(120), "after the busy delay");
    // The DBA starts Agent: the retry submits, and the reason goes.
    set(&p.target.not_ready, None);
    let id = "m-retry";
    let outcome =
        block_on(p.worker.handle(&retry[0].0, attempt(id, id), p.now())).expect("handled");
    assert!(
        matches!(outcome, WorkOutcome::Submitted { .. }),
        "{outcome:?}"
    );
    assert_eq!(p.migration("Clean").reason, None);
    p.run_to_quiet();
    assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
}

#[test]
fn an_edition_without_agent_fails_the_migration_before_any_restore() {
    let p = pipeline("2016");
    set(
        &p.target.not_ready,
        Some(crate::ports::NotReady::EditionWithoutAgent {
            edition: "Express Edition (64-bit)".into(),
        }),
    );
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.run_to_quiet();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Failed);
    let reason = m.reason.expect("reason");
    assert_eq!(reason.code, "EditionWithoutAgent");
    assert!(
        reason.message.contains("Express Edition"),
        "{}",
        reason.message
    );
    assert!(p.target.submitted().is_empty());
}

/// The 2016 chain of "Clean" after its full: the differential and the logs (three of which
/// the differential supersedes); the last one restored is `…Clean2_3.trn`.
const REST_OF_CHAIN: [&str; 7] = [
    "sql2016_diff_RestoreTimeClean2.bak",
    "sql2016_log_RestoreTimeClean_1.trn",
    "sql2016_log_RestoreTimeClean_2.trn",
    "sql2016_log_RestoreTimeClean_3.trn",
    "sql2016_log_RestoreTimeClean2_1.trn",
    "sql2016_log_RestoreTimeClean2_2.trn",
    "sql2016_log_RestoreTimeClean2_3.trn",
];

fn arm_clean(p: &Pipeline, last_backup: &str) {
    block_on(crate::services::cutover::arm(
        &p.store,
        "Clean",
        last_backup,
        false,
        "test",
        p.now(),
    ))
    .expect("armed");
}

fn summary(p: &Pipeline, name: &str) -> String {
    block_on(crate::services::files::report(&p.store, name))
        .ok()
        .flatten()
        .map(|r| r.summary)
        .unwrap_or_default()
}

#[test]
fn an_armed_migration_completes_by_itself_once_its_named_backup_is_restored() {
    for rds in [false, true] {
        let p = pipeline("2016");
        set(&p.worker.target.rds, rds);
        p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
        arm_clean(&p, "sql2016_log_RestoreTimeClean2_3.trn");
        p.run_to_quiet();
        assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
        let line = summary(&p, "Clean");
        assert!(
            line.contains(
                "Complete armed: waits for sql2016_log_RestoreTimeClean2_3.trn to be restored"
            ),
            "{line}"
        );
        for file in REST_OF_CHAIN {
            p.drop_file("Clean", file);
        }
        // RDS: the finish task is followed until it succeeded.
        for _ in 0..10 {
            p.run_to_quiet();
            p.target.finish(
                &crate::ports::fakes::finish_task_name("Clean"),
                TaskStatus::Succeeded,
            );
        }
        p.run_to_quiet();
        let m = p.migration("Clean");
        assert_eq!(m.state, MigrationState::Succeeded, "rds {rds}: {m:?}");
        assert_eq!(
            p.target
                .databases
                .lock()
                .ok()
                .and_then(|d| d.get("Clean").cloned())
                .as_deref(),
            Some("ONLINE")
        );
        assert_eq!(m.armed.map(|a| (a.reached, a.refused)), Some((true, None)));
    }
}

/// Delivers the queued messages, finishing every running restore (not the recovery job),
/// until the migration of "Clean" is Completing.
fn pump_until_completing(p: &Pipeline) {
    for _ in 0..100 {
        if p.migration("Clean").state == MigrationState::Completing {
            return;
        }
        let recovery = crate::model::names::finish_task_name("Clean", 0);
        for name in p.target.submitted() {
            let running = matches!(block_on(p.target_status(&name)), TaskStatus::Running { .. });
            if running && name != recovery {
                p.target.finish(&name, TaskStatus::Succeeded);
            }
        }
        assert!(!p.pump().is_empty(), "{:?}", p.migration("Clean"));
    }
    panic!("the migration never became Completing");
}

fn database_state(p: &Pipeline, name: &str) -> Option<String> {
    p.target
        .databases
        .lock()
        .ok()
        .and_then(|d| d.get(name).cloned())
}

#[test]
fn an_armed_complete_on_native_runs_recovery_as_an_agent_job_that_finish_messages_follow() {
    let p = pipeline("2016");
    set(&p.target.slow_recovery, true);
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    arm_clean(&p, "sql2016_log_RestoreTimeClean2_3.trn");
    for file in REST_OF_CHAIN {
        p.drop_file("Clean", file);
    }
    pump_until_completing(&p);
    let job = crate::model::names::finish_task_name("Clean", 0);
    let m = p.migration("Clean");
    assert_eq!(
        m.finishing,
        Some(crate::model::task::TaskId::AgentJob(job.clone()))
    );
    assert_eq!(database_state(&p, "Clean").as_deref(), Some("RESTORING"));
    // The recovery runs on the target while Finish messages look at it.
    for _ in 0..3 {
        let sent = p.queue.drain_sent();
        assert!(
            matches!(&sent[..], [(QueueMessage::Finish { .. }, _)]),
            "{sent:?}"
        );
        p.queue.send_now(sent[0].0.clone());
        p.pump();
        assert_eq!(p.migration("Clean").state, MigrationState::Completing);
    }
    assert_eq!(
        p.target.submitted().iter().filter(|n| **n == job).count(),
        1,
        "one recovery job, looked at, never started again"
    );
    p.target.finish(&job, TaskStatus::Succeeded);
    p.run_to_quiet();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Succeeded, "{m:?}");
    assert_eq!(m.finishing, None);
    assert_eq!(database_state(&p, "Clean").as_deref(), Some("ONLINE"));
    assert!(
        p.target.released.lock().is_ok_and(|r| r.contains(&job)),
        "the recovery job is deleted once its success is recorded"
    );
}

#[test]
fn an_armed_complete_cut_off_by_the_target_after_completing_resumes_from_a_finish_message() {
    let p = pipeline("2016");
    set(&p.target.lose_next_online, 1);
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    arm_clean(&p, "sql2016_log_RestoreTimeClean2_3.trn");
    for file in REST_OF_CHAIN {
        p.drop_file("Clean", file);
    }
    pump_until_completing(&p);
    let m = p.migration("Clean");
    assert_eq!(
        m.finishing, None,
        "the connection was lost before the job started"
    );
    assert!(p.target.recovery_jobs.lock().is_ok_and(|j| j.is_empty()));
    let sent = p.queue.drain_sent();
    assert!(
        matches!(&sent[..], [(QueueMessage::Finish { .. }, delay)] if *delay == Duration::from_secs(120)),
        "the follow-up comes after the busy delay: {sent:?}"
    );
    p.queue.send_now(sent[0].0.clone());
    p.run_to_quiet();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Succeeded, "{m:?}");
    assert_eq!(database_state(&p, "Clean").as_deref(), Some("ONLINE"));
}

#[test]
fn a_message_delivered_again_resumes_a_complete_that_stopped_before_its_task_was_recorded() {
    let p = pipeline("2016");
    set(&p.target.lose_next_online, 1);
    set(&p.target.slow_recovery, true);
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    arm_clean(&p, "sql2016_log_RestoreTimeClean2_3.trn");
    for file in REST_OF_CHAIN {
        p.drop_file("Clean", file);
    }
    pump_until_completing(&p);
    // The invocation ended before its follow-up was queued: only the redelivery is left.
    p.queue.drain_sent();
    let advance = QueueMessage::Advance {
        migration: crate::DatabaseName::parse("Clean").expect("name"),
    };
    let outcome = block_on(
        p.worker
            .handle(&advance, attempt("again", "again"), p.now()),
    )
    .expect("handled");
    assert!(
        matches!(
            outcome,
            WorkOutcome::Idle {
                state: MigrationState::Completing,
                ..
            }
        ),
        "{outcome:?}"
    );
    let job = crate::model::names::finish_task_name("Clean", 0);
    assert_eq!(
        p.migration("Clean").finishing,
        Some(crate::model::task::TaskId::AgentJob(job.clone()))
    );
    let sent = p.queue.drain_sent();
    assert!(
        matches!(&sent[..], [(QueueMessage::Finish { .. }, _)]),
        "{sent:?}"
    );
    p.target.finish(&job, TaskStatus::Succeeded);
    p.queue.send_now(sent[0].0.clone());
    p.run_to_quiet();
    assert_eq!(p.migration("Clean").state, MigrationState::Succeeded);
}

#[test]
fn armed_with_a_backup_that_never_arrives_the_migration_stays_synchronizing_and_says_so() {
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    arm_clean(&p, "Clean_tail.trn");
    for file in REST_OF_CHAIN {
        p.drop_file("Clean", file);
    }
    p.run_to_quiet();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Synchronizing);
    assert_eq!(
        m.armed.as_ref().map(|a| (a.reached, a.refused.is_some())),
        Some((false, false))
    );
    let line = summary(&p, "Clean");
    assert!(
        line.contains("Complete armed: waits for Clean_tail.trn to be restored"),
        "{line}"
    );
    assert_eq!(
        p.target
            .databases
            .lock()
            .ok()
            .and_then(|d| d.get("Clean").cloned())
            .as_deref(),
        Some("RESTORING")
    );
    // Disarmed: nothing waits any more.
    block_on(crate::services::cutover::disarm(&p.store, "Clean", p.now())).expect("disarmed");
    assert!(p.migration("Clean").armed.is_none());
    assert!(!summary(&p, "Clean").contains("armed"));
}

#[test]
fn an_armed_complete_has_the_guards_of_a_manual_one_and_a_refusal_is_recorded() {
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    // Armed with a log that is restored, but not last: Complete's NotLastBackup guard.
    arm_clean(&p, "sql2016_log_RestoreTimeClean2_1.trn");
    for file in REST_OF_CHAIN {
        p.drop_file("Clean", file);
    }
    p.run_to_quiet();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Synchronizing);
    let refused = m.armed.and_then(|a| a.refused).expect("refusal recorded");
    assert_eq!(refused.code, "NotLastBackup");
    let line = summary(&p, "Clean");
    assert!(
        line.contains("the armed Complete was refused (NotLastBackup)"),
        "{line}"
    );
    // Armed again with the last one: due at once, and runs when the worker looks again.
    arm_clean(&p, "sql2016_log_RestoreTimeClean2_3.trn");
    assert!(crate::services::cutover::armed_due(&p.migration("Clean")));
    let advance = QueueMessage::Advance {
        migration: crate::DatabaseName::parse("Clean").expect("name"),
    };
    block_on(p.worker.handle(&advance, attempt("a", "a"), p.now())).expect("handled");
    assert_eq!(p.migration("Clean").state, MigrationState::Succeeded);
}

#[test]
fn complete_is_not_armed_on_a_migration_that_takes_no_more_backups() {
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.run_to_quiet();
    let request = crate::services::cutover::CompleteRequest {
        database: "Clean".into(),
        last_backup: None,
        require_tail_log: false,
    };
    block_on(crate::services::cutover::complete(
        &p.store,
        &p.target,
        &request,
        p.now(),
    ))
    .expect("completed");
    let refused = block_on(crate::services::cutover::arm(
        &p.store,
        "Clean",
        "x.trn",
        false,
        "test",
        p.now(),
    ));
    assert_eq!(refusal(refused.map(|m| m.state)), "NotArmable");
    let refused = block_on(crate::services::cutover::arm(
        &p.store,
        "Clean",
        "a/b.trn",
        false,
        "test",
        p.now(),
    ));
    assert_eq!(refusal(refused.map(|m| m.state)), "InvalidLastBackup");
}

/// An RDS-like target with the 2016 full restored as "Clean", and a plain Complete of it.
fn rds_synchronizing_clean() -> (Pipeline, crate::services::cutover::CompleteRequest) {
    let p = pipeline("2016");
    p.worker.target.rds.lock().map(|mut r| *r = true).ok();
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.run_to_quiet();
    let request = crate::services::cutover::CompleteRequest {
        database: "Clean".into(),
        last_backup: None,
        require_tail_log: false,
    };
    (p, request)
}

#[test]
fn on_rds_complete_stays_completing_until_the_finish_task_succeeded() {
    let (p, request) = rds_synchronizing_clean();
    let state = block_on(crate::services::cutover::complete(
        &p.store,
        &p.target,
        &request,
        p.now(),
    ))
    .expect("complete");
    assert_eq!(state, MigrationState::Completing);
    let finishing = p
        .migration("Clean")
        .finishing
        .expect("finish task recorded");
    assert_eq!(finishing, TaskId::Rds(2));
    // The worker follows it: still running, so it looks again later.
    let finish = QueueMessage::Finish {
        migration: crate::DatabaseName::parse("Clean").expect("name"),
        since: None,
    };
    let outcome =
        block_on(p.worker.handle(&finish, attempt("f1", "f1"), p.now())).expect("followed");
    assert_eq!(
        outcome,
        WorkOutcome::Idle {
            migration: crate::DatabaseName::parse("Clean").expect("name"),
            state: MigrationState::Completing
        }
    );
    assert_eq!(
        p.queue.drain_sent(),
        vec![(finish.clone(), Duration::from_secs(30))]
    );
    // Completing again neither starts a second finish nor changes anything.
    let again = block_on(crate::services::cutover::complete(
        &p.store,
        &p.target,
        &request,
        p.now(),
    ))
    .expect("again");
    assert_eq!(again, MigrationState::Completing);
    assert_eq!(
        p.target.submitted().len(),
        2,
        "one restore, one finish task"
    );

    p.target.finish(
        &crate::ports::fakes::finish_task_name("Clean"),
        TaskStatus::Succeeded,
    );
    let outcome =
        block_on(p.worker.handle(&finish, attempt("f2", "f2"), p.now())).expect("followed");
    assert!(
        matches!(
            outcome,
            WorkOutcome::Idle {
                state: MigrationState::Succeeded,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(p.queue.drain_sent().is_empty(), "no more polls");
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Succeeded);
    assert_eq!(m.finishing, None);
}

#[test]
fn on_rds_a_failed_finish_task_fails_the_migration_with_rdss_text() {
    let (p, request) = rds_synchronizing_clean();
    block_on(crate::services::cutover::complete(
        &p.store,
        &p.target,
        &request,
        p.now(),
    ))
    .expect("complete");
    p.target.finish(
        &crate::ports::fakes::finish_task_name("Clean"),
        TaskStatus::Failed {
            sql_error: None,
            message: "Aborted the task because of a task failure.".into(),
        },
    );
    let state = block_on(crate::services::cutover::follow_finish(
        &p.store,
        &p.target,
        "Clean",
        p.now(),
    ))
    .expect("followed");
    assert_eq!(state, MigrationState::Failed);
    let reason = p.migration("Clean").reason.expect("reason");
    assert_eq!(reason.code, "CompleteFailed");
    assert!(
        reason.message.contains("Aborted the task"),
        "{}",
        reason.message
    );
}

#[test]
fn rds_task_failures_get_the_remedy_of_the_documented_text() {
    let reason = task_failure_reason("[2026-11-30] Task execution has started.\nPlease specify a bucket that is in the same region as RDS instance.");
    assert_eq!(reason.code, "RestoreFailed");
    assert!(
        reason.message.contains("another AWS Region"),
        "{}",
        reason.message
    );
    assert!(reason.message.contains("Task execution has started"));
    let reason = task_failure_reason("The Restore task is unable to restore from more than 10 backup file(s). Please reduce the number of files matched and try again.");
    assert!(
        reason.message.contains("at most 10 files"),
        "{}",
        reason.message
    );
    let reason = sql_reason(4326, "The log in this backup set terminates at LSN 1, which is too early to apply to the database.");
    assert!(
        reason.message.contains("already covered"),
        "{}",
        reason.message
    );
    let reason = sql_reason(3201, "Cannot open backup device 's3://h/b/k.bak'. Operating system error 50(The request is not supported.).");
    assert!(
        reason.message.contains("CREATE CREDENTIAL"),
        "{}",
        reason.message
    );
}

#[test]
fn the_2016_chain_in_any_order_restores_full_differential_then_the_later_logs() {
    let files = [
        "sql2016_log_RestoreTimeClean2_3.trn",
        "sql2016_log_RestoreTimeClean_2.trn",
        "sql2016_diff_RestoreTimeClean2.bak",
        "sql2016_log_RestoreTimeClean2_1.trn",
        "sql2016_full_RestoreTimeClean.bak",
        "sql2016_log_RestoreTimeClean_1.trn",
        "sql2016_log_RestoreTimeClean2_2.trn",
        "sql2016_log_RestoreTimeClean_3.trn",
    ];
    let p = pipeline("2016");
    for (i, f) in files.iter().enumerate() {
        p.drop_file("Clean", f);
        if i % 3 == 0 {
            p.run_to_quiet();
        }
    }
    p.run_to_quiet();
    let migration = p.migration("Clean");
    assert_eq!(
        migration.state,
        MigrationState::Synchronizing,
        "{:?}",
        migration.reason
    );
    let applied_last = block_on(p.store.list_files("Clean"))
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.record.state == FileState::Restored)
        .filter_map(|f| f.record.header.map(|h| h.last_lsn))
        .max();
    assert_eq!(
        applied_last.map(|l| l.to_string()).as_deref(),
        Some("39000000064200001")
    );
    let states = p.file_states("Clean");
    assert!(
        states
            .iter()
            .all(|(_, s)| matches!(s, FileState::Restored | FileState::Skipped)),
        "{states:?}"
    );
    let restored: Vec<_> = states
        .iter()
        .filter(|(_, s)| *s == FileState::Restored)
        .collect();
    assert!(restored.len() >= 5, "{states:?}");
    // Every finished restore's Agent job was deleted once its outcome was recorded.
    let released = p
        .target
        .released
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(released, p.target.submitted());
}

#[test]
fn an_existing_target_database_fails_the_migration_before_any_restore() {
    let p = pipeline("2016");
    p.target
        .databases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert("Clean".into(), "ONLINE".into());
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let outcomes = p.pump();
    assert!(
        matches!(&outcomes[0], WorkOutcome::Failed { reason, .. } if reason.code == "TargetDatabaseExists"),
        "{outcomes:?}"
    );
    assert!(p.target.submitted().is_empty());
    assert_eq!(p.migration("Clean").state, MigrationState::Failed);
}

/// The target reads a key's latest version: a log replaced (or deleted) after it was
/// validated is set aside with a named reason, never restored, and the migration goes on.
#[test]
fn an_object_replaced_or_deleted_after_validation_is_never_restored() {
    let log = "sql2016_log_RestoreTimeClean_1.trn";
    for change in ["replace", "delete"] {
        let p = pipeline("2016");
        p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
        p.run_to_quiet();
        p.drop_file("Clean", log);
        let key = format!("Clean/{log}");
        match change {
            "replace" => p.objects.replace("b", &key, b"another upload".to_vec()),
            _ => p.objects.delete("b", &key),
        }
        let submitted = p.target.submitted().len();
        p.run_to_quiet();
        assert_eq!(
            p.target.submitted().len(),
            submitted,
            "{log}: nothing restored"
        );
        let file = block_on(p.store.list_files("Clean"))
            .expect("files")
            .into_iter()
            .find(|f| f.record.object.key == key)
            .expect("file");
        assert_eq!(file.record.state, FileState::Failed, "{log}");
        let code = file.record.reason.map(|r| r.code).unwrap_or_default();
        let expected = if change == "replace" {
            "ObjectReplaced"
        } else {
            "ObjectDeleted"
        };
        assert_eq!(code, expected);
        assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
        assert!(p.migration("Clean").in_flight.is_none(), "the claim let go");
    }
}

/// A database of the migration's name that was on the target before (here RESTORING, as
/// another tool's restore would leave it) is not the migration's: Cancel leaves it.
#[test]
fn cancel_drops_no_database_that_this_migration_did_not_restore() {
    let p = pipeline("2016");
    p.target
        .databases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert("Clean".into(), "RESTORING".into());
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.run_to_quiet();
    assert_eq!(p.migration("Clean").state, MigrationState::Failed);
    let state = block_on(crate::services::cutover::cancel(
        &p.store,
        &p.target,
        "Clean",
        p.now(),
    ))
    .expect("cancelled");
    assert_eq!(state, MigrationState::Cancelled);
    assert_eq!(
        block_on(
            p.target
                .database_state(&DatabaseName::parse("Clean").expect("name"))
        )
        .expect("state")
        .as_deref(),
        Some("RESTORING"),
        "not this migration's database: left as it was"
    );
    // A migration that restored something drops its own half-restored database.
    p.drop_file("Other", "sql2016_full_RestoreTimeClean.bak");
    p.run_to_quiet();
    block_on(crate::services::cutover::cancel(
        &p.store,
        &p.target,
        "Other",
        p.now(),
    ))
    .expect("cancel");
    assert_eq!(
        block_on(
            p.target
                .database_state(&DatabaseName::parse("Other").expect("name"))
        )
        .expect("state"),
        None
    );
}

/// Two folders whose names SQL Server takes for one database: the second folder's files are
/// rejected with a reason naming the first, and no second migration exists to cancel.
#[test]
fn a_folder_differing_only_in_case_or_accents_from_a_migrating_one_is_rejected() {
    let p = pipeline("2016");
    p.drop_file("Sales", "sql2016_full_RestoreTimeClean.bak");
    for folder in ["SALES", "sàles"] {
        let body = std::fs::read(format!("{FIXTURES}sql2016_full_RestoreTimeClean.bak"))
            .unwrap_or_else(|e| panic!("{e}"));
        let key = format!("{folder}/full.bak");
        let object = ObjectRef {
            bucket: "b".into(),
            key: key.clone(),
            version_id: None,
            etag: Some(format!("e-{folder}")),
            size: body.len() as u64,
        };
        p.objects.put("b", &key, body);
        let outcome = block_on(p.validator.validate(&object, "v", p.now())).expect("validated");
        match outcome {
            Outcome::Rejected { reason, .. } => {
                assert_eq!(reason.code, "SameDatabaseName");
                assert!(
                    reason.message.contains("folder Sales"),
                    "{}",
                    reason.message
                );
            }
            other => panic!("{folder}: {other:?}"),
        }
        assert!(block_on(p.store.get_migration(folder))
            .expect("read")
            .is_none());
    }
}

#[test]
fn a_target_of_another_version_fails_the_migration_before_any_restore() {
    let p = pipeline("2019");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let outcomes = p.pump();
    assert!(
        matches!(&outcomes[0], WorkOutcome::Failed { reason, .. } if reason.code == "TargetVersionMismatch"),
        "{outcomes:?}"
    );
    assert!(p.target.submitted().is_empty());
}

#[test]
fn a_sql_server_refusal_fails_the_migration_with_its_number_and_message() {
    let p = pipeline("2016");
    set(
        &p.target.fail_next_submit,
        Some((
            3201,
            "Cannot open backup device '/backups/x'. Operating system error 2".into(),
        )),
    );
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.pump();
    let migration = p.migration("Clean");
    assert_eq!(migration.state, MigrationState::Failed);
    let error = migration
        .reason
        .and_then(|r| r.sql_error)
        .expect("sql error kept");
    assert_eq!(error.number, 3201);
    assert_eq!(p.file_states("Clean")[0].1, FileState::Failed);
}

#[test]
fn a_failed_task_fails_the_migration_with_sql_servers_error() {
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.pump();
    let name = p.target.submitted()[0].clone();
    p.target.finish(
        &name,
        TaskStatus::Failed {
            sql_error: Some(SqlError { number: 3154, message: "The backup set holds a backup of a database other than the existing 'Clean' database.".into() }),
            message: "RESTORE DATABASE is terminating abnormally.".into(),
        },
    );
    p.pump();
    let migration = p.migration("Clean");
    assert_eq!(migration.state, MigrationState::Failed);
    let reason = migration.reason.expect("reason");
    assert_eq!(reason.sql_error.map(|e| e.number), Some(3154));
    assert!(
        reason.message.contains("already exists"),
        "{}",
        reason.message
    );
}

#[test]
fn a_busy_target_defers_and_retries_later() {
    let p = pipeline("2016");
    arm(&p.target.busy, 1);
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let outcomes = p.pump();
    assert!(
        matches!(outcomes[0], WorkOutcome::Deferred { .. }),
        "{outcomes:?}"
    );
    let retry = p.queue.drain_sent();
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].1, Duration::from_secs(120));
    let outcome =
        block_on(p.worker.handle(&retry[0].0, attempt("m9", "i4"), p.now())).expect("retried");
    assert!(
        matches!(outcome, WorkOutcome::Submitted { .. }),
        "{outcome:?}"
    );
    assert_eq!(p.target.submitted().len(), 1);
}

#[test]
fn a_connection_cut_after_submitting_finds_the_task_instead_of_submitting_again() {
    let p = pipeline("2016");
    arm(&p.target.cut_after_submit, 1);
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let messages = p.queue.drain_sent();
    let cut = block_on(
        p.worker
            .handle(&messages[0].0, attempt("m1", "i5"), p.now()),
    )
    .expect("a fault of the moment is retried, not failed");
    assert!(matches!(cut, WorkOutcome::Deferred { .. }), "{cut:?}");
    let m = p.migration("Clean");
    assert_eq!(
        m.reason.map(|r| r.code).as_deref(),
        Some("TargetUnreachable")
    );
    assert_eq!(m.state, MigrationState::Restoring);
    // The retry: planning again after the busy delay.
    let retry = p.queue.drain_sent();
    assert_eq!(
        retry,
        vec![(
            QueueMessage::Advance {
                migration: crate::DatabaseName::parse("Clean").expect("name")
            },
            Duration::from_secs(120)
        )]
    );
    let outcome =
        block_on(p.worker.handle(&retry[0].0, attempt("m2", "i6"), p.now())).expect("resumed");
    assert!(
        matches!(outcome, WorkOutcome::Submitted { .. }),
        "{outcome:?}"
    );
    assert_eq!(p.target.submitted().len(), 1, "no second RESTORE");
    p.run_to_quiet();
    assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
}

/// A login refused (18456: the secret rotated) at any step is a fault of the moment: shown
/// on the migration, retried at growing intervals, and never fails it.
#[test]
fn a_login_refused_mid_migration_is_retried_with_growing_delays_and_never_fails_it() {
    let p = pipeline("2016");
    set(
        &p.target.fail_next_submit,
        Some((18456, "Login failed for user 'bakdrop'.".into())),
    );
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let outcomes = p.pump();
    assert!(
        matches!(outcomes[..], [WorkOutcome::Deferred { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(p.migration("Clean").state, MigrationState::Restoring);
    p.pump(); // the retry submits
    assert_eq!(p.target.submitted().len(), 1);
    arm(&p.target.refuse_polls, 3);
    let mut delays = Vec::new();
    for i in 0..4 {
        let sent = p.queue.drain_sent();
        let [(message, delay)] = sent.as_slice() else {
            panic!("one message: {sent:?}");
        };
        assert!(matches!(message, QueueMessage::Poll { .. }), "{message:?}");
        if i > 0 {
            delays.push(*delay); // a retry's
        }
        if i == 3 {
            p.queue.send_now(message.clone());
            break;
        }
        p.clock.set(p.clock.get() + delay.as_secs() as i64);
        let outcome = block_on(p.worker.handle(message, attempt("m", "i"), p.now()))
            .expect("retried, not failed");
        assert!(
            matches!(outcome, WorkOutcome::Deferred { .. }),
            "{outcome:?}"
        );
        let m = p.migration("Clean");
        assert_eq!(m.state, MigrationState::Restoring);
        let reason = m.reason.expect("shown on the migration");
        assert_eq!(reason.code, "TargetRefused");
        assert_eq!(reason.sql_error.map(|e| e.number), Some(18456));
    }
    assert_eq!(delays[0], Duration::from_secs(120), "{delays:?}");
    assert!(delays[1] > delays[0] && delays[2] > delays[1], "{delays:?}");
    p.run_to_quiet();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Synchronizing);
    assert_eq!(
        m.reason, None,
        "the fault's reason goes with the next restore recorded"
    );
    assert_eq!(m.target_fault_since, None);
}

/// The state two invocations holding one message at once leave: the first one's submit
/// reached the target and it is still at work (its lease live, no task recorded yet).
fn first_invocation_still_submitting(p: &Pipeline) -> QueueMessage {
    arm(&p.target.cut_after_submit, 1);
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let messages = p.queue.drain_sent();
    let cut = block_on(
        p.worker
            .handle(&messages[0].0, attempt("m1", "first"), p.now()),
    )
    .expect("retried later");
    assert!(matches!(cut, WorkOutcome::Deferred { .. }), "{cut:?}");
    p.queue.drain_sent(); // the retry, not wanted here
    let mut m = block_on(p.store.get_migration("Clean"))
        .expect("read")
        .expect("migration");
    let in_flight = m.record.in_flight.as_mut().expect("claimed");
    assert!(in_flight.task.is_none());
    assert_eq!(
        in_flight.claim.until,
        OffsetDateTime::from_unix_timestamp(p.clock.get()).expect("time"),
        "the failing invocation ended its own lease"
    );
    // As if that invocation had not failed but were still submitting.
    in_flight.claim.until = p.now() + SUBMIT_CLAIM;
    block_on(p.store.put_migration(&m.record, Some(m.version))).expect("stored");
    messages[0].0.clone()
}

#[test]
fn a_second_invocation_with_the_same_message_defers_to_a_live_claim_and_never_submits() {
    let p = pipeline("2016");
    let job = first_invocation_still_submitting(&p);
    let outcome =
        block_on(p.worker.handle(&job, attempt("m1", "second"), p.now())).expect("handled");
    assert!(
        matches!(outcome, WorkOutcome::Deferred { .. }),
        "{outcome:?}"
    );
    assert_eq!(p.target.submitted().len(), 1, "no second RESTORE");
    let sent = p.queue.drain_sent();
    let [(QueueMessage::Advance { migration }, delay)] = sent.as_slice() else {
        panic!("one Advance for when the lease ends: {sent:?}");
    };
    assert_eq!(migration, "Clean");
    assert!(
        (Duration::from_secs(298)..=Duration::from_secs(301)).contains(delay),
        "{delay:?}"
    );
    // Another message for the migration leaves the live claim alone too.
    let other = block_on(p.worker.handle(
        &QueueMessage::Advance {
            migration: crate::DatabaseName::parse("Clean").expect("name"),
        },
        attempt("m2", "third"),
        p.now(),
    ))
    .expect("handled");
    assert!(matches!(other, WorkOutcome::Idle { .. }), "{other:?}");
    assert_eq!(p.target.submitted().len(), 1, "no second RESTORE");
}

#[test]
fn a_claim_whose_lease_ran_out_is_taken_over_and_its_task_found_not_submitted_again() {
    let p = pipeline("2016");
    let _job = first_invocation_still_submitting(&p);
    // The first invocation vanished (Lambda timed out); its lease runs out.
    p.clock
        .set(p.clock.get() + SUBMIT_CLAIM.whole_seconds() + 1);
    let outcome = block_on(p.worker.handle(
        &QueueMessage::Advance {
            migration: crate::DatabaseName::parse("Clean").expect("name"),
        },
        attempt("m2", "later"),
        p.now(),
    ))
    .expect("handled");
    assert!(
        matches!(outcome, WorkOutcome::Submitted { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        p.target.submitted().len(),
        1,
        "found by name, not submitted again"
    );
    let m = p.migration("Clean");
    let claim = &m.in_flight.as_ref().expect("in flight").claim;
    assert_eq!(claim.owner, "m2", "{claim:?}");
    assert_eq!(claim.holder.as_deref(), Some("later/m2"));
    p.run_to_quiet();
    assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
}

#[test]
fn a_cancelled_migration_reset_migrates_the_same_backups_again_under_new_task_names() {
    use crate::services::cutover::{self, CutoverError};
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.pump();
    // Cancelled while its restore runs: the stopped job keeps its name on the server.
    assert_eq!(p.migration("Clean").state, MigrationState::Restoring);
    assert_eq!(
        refusal(block_on(cutover::reset(&p.store, "Clean", p.now()))),
        "NotCancelled",
        "a migration that is not cancelled keeps its database and records"
    );
    assert!(matches!(
        block_on(cutover::reset(&p.store, "Nope", p.now())),
        Err(CutoverError::NotFound(_))
    ));
    let cancelled = block_on(cutover::cancel(&p.store, &p.target, "Clean", p.now()));
    assert_eq!(cancelled.expect("cancelled"), MigrationState::Cancelled);
    assert_eq!(p.store.all_files().len(), 1);

    let reset = block_on(cutover::reset(&p.store, "Clean", p.now())).expect("reset");
    assert_eq!(reset, MigrationState::AwaitingFull);
    let fresh = p.migration("Clean");
    assert_eq!(
        (
            fresh.generation,
            fresh.chain.applied.steps,
            fresh.in_flight.is_none()
        ),
        (1, 0, true)
    );
    assert!(p.store.all_files().is_empty(), "the files are forgotten");
    // Twice is harmless.
    let again = block_on(cutover::reset(&p.store, "Clean", p.now())).expect("again");
    assert_eq!(again, MigrationState::AwaitingFull);
    assert_eq!(p.migration("Clean").generation, 1);

    // The same backup, uploaded again, is migrated again; SQL Server Agent refuses a job
    // name twice (14261), so the new generation's task has its own name.
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.run_to_quiet();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Synchronizing, "{:?}", m.reason);
    let names = p.target.submitted();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_ne!(names[0], names[1]);
    assert!(names[1].contains("_g1_"), "{names:?}");

    // Completed, it cannot be reset.
    let done = block_on(cutover::complete(
        &p.store,
        &p.target,
        &cutover::CompleteRequest {
            database: "Clean".into(),
            last_backup: None,
            require_tail_log: false,
        },
        p.now(),
    ));
    assert_eq!(done.expect("completed"), MigrationState::Succeeded);
    assert_eq!(
        refusal(block_on(cutover::reset(&p.store, "Clean", p.now()))),
        "AlreadyOnline"
    );
}

#[test]
fn a_migration_cancelled_while_its_restore_runs_drops_the_database_once_the_task_stopped() {
    use crate::services::cutover;
    let p = pipeline("2016");
    set(&p.target.slow_cancel, true);
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.pump();
    let task = p.target.submitted()[0].clone();
    p.target.finish(
        &task,
        TaskStatus::Running {
            percent: Some(40.0),
        },
    );
    p.target
        .databases
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert("Clean".into(), "RESTORING".into());

    let state = block_on(cutover::cancel(&p.store, &p.target, "Clean", p.now()));
    assert_eq!(state.expect("cancelled"), MigrationState::Cancelled);
    let m = p.migration("Clean");
    assert!(
        m.in_flight.is_some(),
        "the task is kept until it has stopped"
    );
    assert!(p
        .target
        .databases
        .lock()
        .map(|d| d.contains_key("Clean"))
        .unwrap_or(false));
    assert_eq!(
        refusal(block_on(cutover::reset(&p.store, "Clean", p.now()))),
        "CancelInProgress"
    );
    // The worker's poll finds the task still stopping: it asks again, polls later.
    let outcomes = p.pump();
    assert!(
        matches!(outcomes.as_slice(), [WorkOutcome::Idle { .. }]),
        "{outcomes:?}"
    );
    assert!(p.migration("Clean").in_flight.is_some());
    assert_eq!(p.queue.messages().len(), 1, "polled again");
    // Stopped: the next poll drops the database and lets go of the task.
    p.target.finish(&task, TaskStatus::Cancelled);
    p.pump();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Cancelled);
    assert!(m.in_flight.is_none());
    let states = p.file_states("Clean");
    assert_eq!(
        states,
        [(
            "sql2016_full_RestoreTimeClean.bak".to_owned(),
            FileState::Failed
        )],
        "the restore under way when cancelled ends Failed, with the reason"
    );
    assert!(!p
        .target
        .databases
        .lock()
        .map(|d| d.contains_key("Clean"))
        .unwrap_or(true));
    assert!(p.queue.messages().is_empty());
    let reset = block_on(cutover::reset(&p.store, "Clean", p.now()));
    assert_eq!(reset.expect("reset"), MigrationState::AwaitingFull);
}

#[test]
fn a_migration_cancelled_during_a_submit_stops_what_the_submit_started() {
    use crate::services::cutover;
    let p = pipeline("2016");
    // A submit reached the server; its invocation is still at work (lease live, no task).
    let job = first_invocation_still_submitting(&p);
    let state = block_on(cutover::cancel(&p.store, &p.target, "Clean", p.now()));
    assert_eq!(state.expect("cancelled"), MigrationState::Cancelled);
    assert!(
        p.migration("Clean").in_flight.is_some(),
        "the claim is kept"
    );
    assert_eq!(
        refusal(block_on(cutover::reset(&p.store, "Clean", p.now()))),
        "CancelInProgress"
    );
    // That invocation had failed: its job comes back once the lease ran out, settles the
    // claim (finds the task the submit started) and the polls stop it.
    p.clock
        .set(p.clock.get() + SUBMIT_CLAIM.whole_seconds() + 1);
    let outcome =
        block_on(p.worker.handle(&job, attempt("m1", "redelivered"), p.now())).expect("handled");
    assert!(matches!(outcome, WorkOutcome::Idle { .. }), "{outcome:?}");
    let task = p.target.submitted()[0].clone();
    assert_eq!(
        p.migration("Clean").in_flight.and_then(|f| f.task),
        Some(crate::model::task::TaskId::AgentJob(task.clone())),
        "the started task is recorded"
    );
    p.pump();
    p.pump();
    let m = p.migration("Clean");
    assert_eq!(m.state, MigrationState::Cancelled);
    assert!(m.in_flight.is_none(), "{m:?}");
    let states = p.file_states("Clean");
    assert!(
        states.iter().all(|(_, s)| *s != FileState::Restoring),
        "nothing left restoring: {states:?}"
    );
    let status = block_on(p.target.poll(
        &DatabaseName::parse("Clean").expect("name"),
        &crate::model::task::TaskId::AgentJob(task),
    ));
    assert_eq!(status.expect("polled"), TaskStatus::Cancelled, "stopped");
    assert!(p.queue.messages().is_empty());
    let reset = block_on(cutover::reset(&p.store, "Clean", p.now()));
    assert_eq!(reset.expect("reset"), MigrationState::AwaitingFull);
}

#[test]
fn an_rds_task_of_the_migration_before_a_reset_is_not_taken_for_the_new_ones() {
    let p = pipeline("2016");
    p.worker.target.rds.lock().map(|mut r| *r = true).ok();
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.run_to_quiet();
    assert_eq!(p.migration("Clean").highest_task, Some(1));
    block_on(crate::services::cutover::cancel(
        &p.store,
        &p.target,
        "Clean",
        p.now(),
    ))
    .expect("cancel");
    block_on(crate::services::cutover::reset(&p.store, "Clean", p.now())).expect("reset");
    assert_eq!(p.migration("Clean").task_floor, Some(1));

    // The same object again; the first submit is lost on the way (its invocation fails),
    // the redelivery takes the claim over and asks RDS for the object's task: RDS lists
    // task 1, the cancelled generation's, which must not pass for this one's.
    arm(&p.target.lose_next_submit, 1);
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let messages = p.queue.drain_sent();
    let lost = block_on(
        p.worker
            .handle(&messages[0].0, attempt("m1", "first"), p.now()),
    )
    .expect("retried later");
    assert!(matches!(lost, WorkOutcome::Deferred { .. }), "{lost:?}");
    assert_eq!(p.target.submitted().len(), 1, "lost before the server");
    let outcome = block_on(
        p.worker
            .handle(&messages[0].0, attempt("m1", "again"), p.now()),
    )
    .expect("resumed");
    assert!(
        matches!(outcome, WorkOutcome::Submitted { .. }),
        "{outcome:?}"
    );
    let m = p.migration("Clean");
    assert_eq!(
        m.in_flight.as_ref().and_then(|f| f.task.clone()),
        Some(TaskId::Rds(2)),
        "submitted anew"
    );
    p.run_to_quiet();
    assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
    assert_eq!(p.migration("Clean").highest_task, Some(2));
}

#[test]
fn a_restore_job_whose_first_poll_could_not_be_queued_queues_it_when_redelivered() {
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    let messages = p.queue.drain_sent();
    p.queue.fail_next(1);
    let err = block_on(
        p.worker
            .handle(&messages[0].0, attempt("m1", "i7"), p.now()),
    )
    .expect_err("no poll");
    assert!(err.is_transient());
    assert_eq!(p.target.submitted().len(), 1);
    // SQS redelivers the same message: the task is found on the claim, its poll queued.
    let outcome = block_on(
        p.worker
            .handle(&messages[0].0, attempt("m1", "i8"), p.now()),
    )
    .expect("handled");
    assert!(matches!(outcome, WorkOutcome::Idle { .. }), "{outcome:?}");
    let polls = p.queue.messages();
    assert!(
        matches!(polls.as_slice(), [QueueMessage::Poll { .. }]),
        "{polls:?}"
    );
    p.run_to_quiet();
    assert_eq!(p.target.submitted().len(), 1, "no second RESTORE");
    assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
}

#[test]
fn a_poll_that_submitted_the_next_step_but_could_not_queue_its_poll_resumes_when_redelivered() {
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    p.drop_file("Clean", "sql2016_diff_RestoreTimeClean2.bak");
    p.pump();
    let full = p.target.submitted();
    assert_eq!(full.len(), 1);
    p.target.finish(&full[0], TaskStatus::Succeeded);
    let poll = p.queue.drain_sent();
    assert_eq!(poll.len(), 1);
    p.queue.fail_next(1);
    let err =
        block_on(p.worker.handle(&poll[0].0, attempt("p1", "i9"), p.now())).expect_err("no poll");
    assert!(err.is_transient());
    assert_eq!(
        p.target.submitted().len(),
        2,
        "the differential was submitted"
    );
    let outcome =
        block_on(p.worker.handle(&poll[0].0, attempt("p1", "i10"), p.now())).expect("handled");
    assert!(matches!(outcome, WorkOutcome::Idle { .. }), "{outcome:?}");
    let polls = p.queue.messages();
    assert!(
        matches!(polls.as_slice(), [QueueMessage::Poll { task_name, .. }] if task_name != poll_task(&poll[0].0)),
        "{polls:?}"
    );
    p.run_to_quiet();
    assert_eq!(p.target.submitted().len(), 2, "no second RESTORE");
    assert_eq!(p.migration("Clean").state, MigrationState::Synchronizing);
}

fn poll_task(message: &QueueMessage) -> &str {
    match message {
        QueueMessage::Poll { task_name, .. } => task_name,
        _ => "",
    }
}

#[test]
fn a_job_that_overtakes_its_queued_mark_still_joins_the_chain() {
    let p = pipeline("2016");
    p.drop_file("Clean", "sql2016_full_RestoreTimeClean.bak");
    // Put the file back to Validated, as if the worker ran between send and the Queued mark.
    let mut file = block_on(p.store.list_files("Clean"))
        .expect("files")
        .remove(0);
    file.record.state = FileState::Validated;
    block_on(p.store.put_file(&file.record, Some(file.version))).expect("stored");
    let outcomes = p.pump();
    assert!(
        matches!(outcomes[0], WorkOutcome::Submitted { .. }),
        "{outcomes:?}"
    );
}

#[test]
fn task_names_are_stable_and_fit_an_agent_job_name() {
    let step = Step {
        kind: crate::model::header::BackupKind::Log,
        files: vec!["f".into()],
        backup_set_guid: uuid::Uuid::from_u128(0xabc),
        first_lsn: crate::Lsn::ZERO,
        last_lsn: crate::Lsn::ZERO,
    };
    let name = task_name(&"ä]x; --".repeat(40), 0, &step);
    assert_eq!(name, task_name(&"ä]x; --".repeat(40), 0, &step));
    // Names that share their letters and digits still get their own task.
    for (a, b) in [
        ("a]b", "ab"),
        ("..", "."),
        ("db;--", "db"),
        ("Sales", "SALES"),
    ] {
        assert_ne!(task_name(a, 0, &step), task_name(b, 0, &step), "{a} / {b}");
    }
    assert!(name.len() <= 128, "{}", name.len());
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{name}"
    );
    // After a reset: another name for the same step, still within 128 characters.
    assert_eq!(
        task_name("Sales", 0, &step),
        "bakdrop_Sales_2ed1f157_log_00000000000000000000000000000abc",
        "names of generation 0 are the names before generations existed"
    );
    for generation in [1, 2, u32::MAX] {
        let again = task_name(&"x".repeat(200), generation, &step);
        assert_ne!(again, task_name(&"x".repeat(200), 0, &step));
        assert!(again.len() <= 128, "{again}: {}", again.len());
    }
    assert_ne!(task_name("Sales", 1, &step), task_name("Sales", 2, &step));
}

#[test]
fn the_recovery_job_is_named_per_migration_and_generation() {
    use crate::model::names::finish_task_name;
    assert_eq!(
        finish_task_name("Sales", 0),
        "bakdrop_Sales_2ed1f157_recovery"
    );
    assert_ne!(finish_task_name("Sales", 1), finish_task_name("Sales", 0));
    assert_ne!(finish_task_name("a]b", 0), finish_task_name("ab", 0));
    let long = finish_task_name(&"x".repeat(200), u32::MAX);
    assert!(long.len() <= 128, "{long}: {}", long.len());
}

/// A striped log set of `count` files restored onto a chain with its full restored, in a
/// store whose files-by-state index lags: stripe `sequence` arrives (Queued).
fn stripe_file(sequence: u32, count: u32, now: OffsetDateTime) -> FileRecord {
    let lsn = |n: u32| crate::Lsn::from_parts(n, 0, 1);
    let object = ObjectRef {
        bucket: "b".into(),
        key: format!("Striped/log_{sequence}of{count}.trn"),
        version_id: None,
        etag: Some("e".into()),
        size: 1,
    };
    FileRecord {
        migration: Some(crate::DatabaseName::parse("Striped").expect("name")),
        file_id: object.file_id(),
        object,
        state: FileState::Queued,
        reason: None,
        header: Some(crate::model::header::HeaderSummary {
            backup_type: crate::model::header::BackupKind::Log,
            copy_only: None,
            source_database: "Striped".into(),
            server_name: "S".into(),
            software_version: "16.0.4135".into(),
            database_version: 957,
            compressed: false,
            has_checksums: false,
            tail_log: Some(false),
            first_lsn: lsn(10),
            last_lsn: lsn(20),
            checkpoint_lsn: lsn(10),
            database_backup_lsn: lsn(5),
            differential_base_lsn: None,
            differential_base_guid: None,
            backup_set_guid: uuid::Uuid::from_u128(2),
            family_guid: uuid::Uuid::from_u128(9),
            recovery_fork_id: uuid::Uuid::from_u128(8),
            family_count: count,
            family_sequence: sequence,
            backup_start_date: None,
            backup_finish_date: None,
            backup_size: None,
            files: Vec::new(),
        }),
        claim: None,
        restore_started_at: None,
        restore_finished_at: None,
        created_at: now,
        updated_at: now,
    }
}

#[test]
fn stripes_that_join_at_once_and_miss_each_other_in_a_lagging_index_are_restored_once_it_caught_up()
{
    let p = pipeline("2022");
    let now = p.now();
    let mut migration =
        MigrationRecord::new(crate::DatabaseName::parse("Striped").expect("name"), now);
    migration.state = MigrationState::Synchronizing;
    migration.chain.apply_on_fork(
        &Step {
            kind: crate::model::header::BackupKind::Full,
            files: vec!["b/Striped/full.bak#etag=e".into()],
            backup_set_guid: uuid::Uuid::from_u128(1),
            first_lsn: crate::Lsn::from_parts(5, 0, 1),
            last_lsn: crate::Lsn::from_parts(10, 0, 1),
        },
        uuid::Uuid::from_u128(8),
    );
    block_on(p.store.put_migration(&migration, None)).expect("stored");
    // The index has not caught up with either stripe when their jobs arrive.
    p.store.freeze_lists();
    let stripes = [stripe_file(1, 2, now), stripe_file(2, 2, now)];
    for (i, stripe) in stripes.iter().enumerate() {
        p.objects.put("b", &stripe.object.key, vec![0]);
        block_on(p.store.put_file(stripe, None)).expect("queued");
        let job = QueueMessage::Restore(Box::new(crate::model::job::RestoreJob {
            migration: crate::DatabaseName::parse("Striped").expect("name"),
            file_id: stripe.file_id.clone(),
            object: stripe.object.clone(),
            header: stripe.header.clone().expect("header"),
        }));
        let id = format!("job{i}");
        let outcome = block_on(p.worker.handle(&job, attempt(&id, &id), p.now())).expect("handled");
        assert!(matches!(outcome, WorkOutcome::Idle { .. }), "{outcome:?}");
    }
    assert!(
        p.target.submitted().is_empty(),
        "each saw only its own stripe"
    );
    let again = p.queue.drain_sent();
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().all(|(m, delay)| {
        matches!(m, QueueMessage::Advance { .. }) && *delay == p.worker.config.poll_interval
    }));
    // The index caught up: the next advance sees both stripes and restores the set.
    p.store.thaw_lists();
    let outcome =
        block_on(p.worker.handle(&again[0].0, attempt("a", "a"), p.now())).expect("handled");
    assert!(
        matches!(outcome, WorkOutcome::Submitted { .. }),
        "{outcome:?}"
    );
    p.run_to_quiet();
    assert_eq!(p.target.submitted().len(), 1);
    assert!(p
        .file_states("Striped")
        .iter()
        .all(|(_, s)| *s == FileState::Restored));
    // With an index that keeps up (the default), no second look is queued.
    let q = pipeline("2022");
    block_on(q.store.put_migration(&migration, None)).expect("stored");
    block_on(q.store.put_file(&stripes[0], None)).expect("queued");
    let job = QueueMessage::Restore(Box::new(crate::model::job::RestoreJob {
        migration: crate::DatabaseName::parse("Striped").expect("name"),
        file_id: stripes[0].file_id.clone(),
        object: stripes[0].object.clone(),
        header: stripes[0].header.clone().expect("header"),
    }));
    block_on(q.worker.handle(&job, attempt("j", "j"), q.now())).expect("handled");
    assert!(q.queue.drain_sent().is_empty());
}
