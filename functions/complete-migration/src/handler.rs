//! Translates `{"action": "complete" | "arm" | "disarm" | "cancel" | "reset" | "revalidate",
//! "database": "...", "last_backup": "...", "require_tail_log": true}` into the core's Complete,
//! Complete armed in advance (`arm`: `last_backup` names the last backup; Complete runs by itself,
//! with the same guards, once it is restored), its cancellation (`disarm`), Cancel, Reset, or the
//! re-check of the migration's files rejected only for the settings (`revalidate`, after the
//! stack's `TargetSqlServerVersion` or `VersionPolicy` changed). `action` defaults to complete.
//! Refusals and failures come back as errors with a stable `errorType` (e.g. `FilesInFlight`,
//! `NotSynchronizing`, `MigrationNotFound`), so that callers can branch on them.
//! A field the payload should not have is refused (`BadRequest`, naming it) before anything is
//! done: a misspelt guard (`"require_tail_logs": true`) must not let Complete run unguarded.
//! A Complete leaves the migration `Completing` while the target brings the database online in a
//! task (RDS `FINISH_RESTORE`, a native Agent job running `RESTORE … WITH RECOVERY`): it follows
//! the task itself for a few seconds (it is often that short, and the caller then learns at once
//! that the database is online), then queues a `Finish` message for the restore worker, which
//! follows the task until the migration is Succeeded or Failed.

use std::collections::BTreeMap;
use std::time::Duration;

use bakdrop_core::cutover::{self, CompleteRequest, CutoverError};
use bakdrop_core::model::job::QueueMessage;
use bakdrop_core::model::status::MigrationState;
use bakdrop_core::pace;
use bakdrop_core::ports::{JobQueue, ObjectReader, QueueError, RestoreTarget, StatusStore};
use bakdrop_core::validate::{ValidateConfig, ValidateError, Validator};
use lambda_runtime::Diagnostic;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// The invoke payload.
///
/// serde's `deny_unknown_fields` does not work beside `flatten`: the fields neither `action` nor
/// [`CompleteRequest`] takes are collected in `unknown` instead, and refused by [`Invoke::parse`].
#[derive(Debug, Deserialize)]
pub struct Invoke {
    #[serde(default)]
    pub action: Action,
    #[serde(flatten)]
    pub request: CompleteRequest,
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

/// Every field a payload may have, as the refusal of an unknown one lists them.
pub const FIELDS: [&str; 4] = ["action", "database", "last_backup", "require_tail_log"];

impl Invoke {
    /// The payload as an invoke.
    ///
    /// # Errors
    /// [`HandlerError::BadRequest`] when it does not deserialize, [`HandlerError::UnknownFields`]
    /// when it has fields that are not in [`FIELDS`].
    pub fn parse(payload: Value) -> Result<Invoke, HandlerError> {
        let invoke: Invoke = serde_json::from_value(payload).map_err(HandlerError::BadRequest)?;
        if !invoke.unknown.is_empty() {
            return Err(HandlerError::UnknownFields(
                invoke.unknown.into_keys().collect(),
            ));
        }
        Ok(invoke)
    }
}

/// What to do.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Complete,
    Cancel,
    /// Forget a cancelled migration so that its folder takes a new one.
    Reset,
    /// Check again, under the function's settings of now, the migration's files rejected only
    /// because of the settings (target version, version policy, where the target reads them).
    Revalidate,
    /// Complete by itself once `last_backup` is restored (with `require_tail_log`).
    Arm,
    /// Cancel an armed Complete.
    Disarm,
}

/// Why the invoke failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("the payload is not {{\"database\": \"...\", \"action\": \"complete\"|\"cancel\"|\"reset\", ...}}: {0}")]
    BadRequest(#[source] serde_json::Error),
    /// Nothing was done: a misspelt guard would otherwise be ignored.
    #[error("unknown field{} {} in the payload; nothing was done (the fields are {})", if .0.len() == 1 { "" } else { "s" }, quoted(.0), FIELDS.join(", "))]
    UnknownFields(Vec<String>),
    #[error(transparent)]
    Cutover(#[from] CutoverError),
    #[error("the migration is Completing, but following the target's task could not be queued (invoke complete again to resume): {0}")]
    Queue(#[from] QueueError),
    #[error(
        "re-checking the rejected files could not finish (invoke revalidate again to resume): {0}"
    )]
    Revalidate(#[from] ValidateError),
    /// `arm` needs the name of the last backup.
    #[error("action arm needs last_backup: the file name of the migration's last backup; nothing was done")]
    ArmWithoutLastBackup,
}

/// `"a", "b"`: field names as JSON strings, so that an odd one reads unambiguously.
fn quoted(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| Value::String(f.clone()).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Diagnostic {
        let error_type = match &error {
            HandlerError::BadRequest(_)
            | HandlerError::UnknownFields(_)
            | HandlerError::ArmWithoutLastBackup => "BadRequest",
            HandlerError::Cutover(e) => e.error_type(),
            HandlerError::Queue(_) => "QueueUnavailable",
            HandlerError::Revalidate(_) => "RevalidateUnavailable",
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// How a Completing migration's finish task is followed: here, every `look_every` for at most
/// `wait`; then by the restore worker through the restore queue, its looks spaced by
/// [`pace::backoff`] up to `delay` (the poll interval) apart.
#[derive(Debug)]
pub struct Followup<'a, Q> {
    pub queue: &'a Q,
    pub delay: Duration,
    /// How long this invocation follows the task itself (zero: not at all).
    pub wait: Duration,
    pub look_every: Duration,
}

impl<'a, Q> Followup<'a, Q> {
    /// A follow-up by the restore worker alone, every `delay` at most.
    pub fn queued(queue: &'a Q, delay: Duration) -> Followup<'a, Q> {
        Followup {
            queue,
            delay,
            wait: Duration::ZERO,
            look_every: Duration::ZERO,
        }
    }
}

/// What the `revalidate` action validates with: the validation settings of the stack (the same
/// as the validate-upload function's) and an object reader (the files it re-checks kept their
/// header, so it reads none).
#[derive(Debug)]
pub struct Revalidation<'a, R> {
    pub reader: &'a R,
    pub config: &'a ValidateConfig,
}

/// Handles one invoke.
///
/// # Errors
/// [`HandlerError`].
pub async fn handle<S: StatusStore, T: RestoreTarget, Q: JobQueue, R: ObjectReader>(
    store: &S,
    target: &T,
    followup: &Followup<'_, Q>,
    revalidation: &Revalidation<'_, R>,
    payload: Value,
    now: OffsetDateTime,
) -> Result<Value, HandlerError> {
    let invoke = Invoke::parse(payload)?;
    if invoke.action == Action::Arm && invoke.request.last_backup.is_none() {
        return Err(HandlerError::ArmWithoutLastBackup);
    }
    let database = cutover::parse_name(&invoke.request.database)?;
    let state = match invoke.action {
        Action::Complete => cutover::complete(store, target, &invoke.request, now).await,
        Action::Arm => arm(store, target, &invoke.request, now).await,
        Action::Disarm => cutover::disarm(store, &database, now).await,
        Action::Cancel => cutover::cancel(store, target, &database, now).await,
        Action::Reset => cutover::reset(store, &database, now).await,
        Action::Revalidate => {
            let validator = Validator {
                reader: revalidation.reader,
                store,
                queue: followup.queue,
                config: revalidation.config.clone(),
            };
            let done = Box::pin(validator.revalidate(&database, now))
                .await
                .inspect_err(|e| tracing::warn!(%database, error.message = %e, "revalidation failed"))?;
            tracing::info!(%database, ?done, "revalidated");
            return Ok(json!({ "database": database, "revalidated": done }));
        }
    }
    .inspect_err(|e| tracing::warn!(%database, error.type = e.error_type(), error.message = %e, "refused or failed"))?;
    let mut state = state;
    let mut percent = None;
    let started = std::time::Instant::now();
    while state == MigrationState::Completing
        && !followup.look_every.is_zero()
        && started.elapsed() + followup.look_every <= followup.wait
    {
        tokio::time::sleep(followup.look_every).await;
        (state, percent) = cutover::look_at_finish(
            store,
            target,
            &database,
            now + started.elapsed(),
        )
        .await
        .inspect_err(
            |e| tracing::warn!(%database, error.message = %e, "following the finish task failed"),
        )?;
    }
    if state == MigrationState::Completing {
        let message = QueueMessage::Finish {
            migration: database.clone(),
            since: Some(now),
        };
        // The worker's look comes a second before the percent says the task ends, and waits
        // out the rest (SETTLE_SECONDS); without a percent, half the time it ran so far.
        let progress = pace::Progress {
            elapsed: started.elapsed(),
            percent,
            ..pace::Progress::default()
        };
        let delay = pace::next_look_ahead(&progress, followup.delay, Duration::from_secs(1));
        followup.queue.send(&message, delay).await?;
    }
    tracing::info!(%database, %state, "done");
    let mut answer = json!({ "database": database, "state": state });
    if matches!(invoke.action, Action::Arm | Action::Disarm) {
        let armed = store
            .get_migration(&database)
            .await
            .map_err(CutoverError::from)?
            .and_then(|m| m.record.armed);
        answer["armed"] = serde_json::to_value(armed).unwrap_or(Value::Null);
    }
    Ok(answer)
}

/// Arms Complete, then runs it at once when its backup is already the last one restored.
async fn arm<S: StatusStore, T: RestoreTarget>(
    store: &S,
    target: &T,
    request: &CompleteRequest,
    now: OffsetDateTime,
) -> Result<MigrationState, CutoverError> {
    let last_backup = request.last_backup.as_deref().unwrap_or_default();
    let armed = cutover::arm(
        store,
        &request.database,
        last_backup,
        request.require_tail_log,
        "invoke",
        now,
    )
    .await?;
    Ok(cutover::fire_armed(store, target, &request.database, now)
        .await?
        .unwrap_or(armed.state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_core::model::status::{MigrationRecord, MigrationState};
    use bakdrop_core::ports::fakes::{MemoryObjects, MemoryQueue, MemoryStore, MemoryTarget};

    fn config(target: &str) -> ValidateConfig {
        ValidateConfig {
            arm_by_upload: false,
            target: Some(target.parse().unwrap_or_else(|e| panic!("{e}"))),
            policy: bakdrop_core::model::version::VersionPolicy::Same,
            location: bakdrop_core::tsql::source::SourceLocation::rds(None),
        }
    }

    async fn handle<S: StatusStore, T: RestoreTarget>(
        store: &S,
        target: &T,
        payload: Value,
        now: OffsetDateTime,
    ) -> Result<Value, HandlerError> {
        let queue = MemoryQueue::default();
        let followup = Followup::queued(&queue, Duration::from_secs(60));
        let reader = MemoryObjects::default();
        let config = config("2022");
        let revalidation = Revalidation {
            reader: &reader,
            config: &config,
        };
        super::handle(store, target, &followup, &revalidation, payload, now).await
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000)
    }

    async fn store(state: MigrationState) -> MemoryStore {
        let store = MemoryStore::default();
        let mut m = MigrationRecord::new(
            bakdrop_core::DatabaseName::parse("Sales").expect("name"),
            now(),
        );
        m.state = state;
        store.put_migration(&m, None).await.expect("stored");
        store
    }

    #[tokio::test]
    async fn complete_is_the_default_action_and_refusals_have_stable_error_types() {
        let store = store(MigrationState::Restoring).await;
        let target = MemoryTarget::new("16.0.4135.4");
        let err = handle(&store, &target, json!({"database": "Sales"}), now())
            .await
            .expect_err("refused");
        let d = Diagnostic::from(err);
        assert_eq!(d.error_type, "NotSynchronizing");
        assert!(d.error_message.contains("Restoring"), "{}", d.error_message);
    }

    #[tokio::test]
    async fn cancel_answers_the_new_state() {
        let store = store(MigrationState::AwaitingFull).await;
        let target = MemoryTarget::new("16.0.4135.4");
        let answer = handle(
            &store,
            &target,
            json!({"database": "Sales", "action": "cancel"}),
            now(),
        )
        .await
        .expect("cancelled");
        assert_eq!(answer, json!({"database": "Sales", "state": "Cancelled"}));
    }

    #[tokio::test]
    async fn reset_answers_the_new_state_and_is_refused_before_cancel() {
        let store = store(MigrationState::Synchronizing).await;
        let target = MemoryTarget::new("16.0.4135.4");
        let reset = json!({"database": "Sales", "action": "reset"});
        let err = handle(&store, &target, reset.clone(), now())
            .await
            .expect_err("refused");
        assert_eq!(Diagnostic::from(err).error_type, "NotCancelled");
        let cancel = json!({"database": "Sales", "action": "cancel"});
        handle(&store, &target, cancel, now())
            .await
            .expect("cancelled");
        let answer = handle(&store, &target, reset, now()).await.expect("reset");
        assert_eq!(
            answer,
            json!({"database": "Sales", "state": "AwaitingFull"})
        );
    }

    #[tokio::test]
    async fn a_malformed_payload_is_a_bad_request() {
        let store = MemoryStore::default();
        let target = MemoryTarget::new("16.0.4135.4");
        for payload in [
            json!({"action": "complete"}),
            json!({"database": "x", "action": "explode"}),
        ] {
            let err = handle(&store, &target, payload, now())
                .await
                .expect_err("bad");
            assert_eq!(Diagnostic::from(err).error_type, "BadRequest");
        }
    }

    #[tokio::test]
    async fn an_unknown_field_is_refused_by_name_and_nothing_is_done() {
        let target = MemoryTarget::new("16.0.4135.4");
        for (payload, field) in [
            // A misspelt guard: without the refusal, Complete would run without it.
            (
                json!({"database": "Sales", "require_tail_logs": true}),
                "require_tail_logs",
            ),
            (
                json!({"database": "Sales", "lastBackup": "Sales_log_0930.trn"}),
                "lastBackup",
            ),
            (
                json!({"database": "Sales", "action": "cancel", "force": true}),
                "force",
            ),
        ] {
            let store = store(MigrationState::Synchronizing).await;
            let err = handle(&store, &target, payload.clone(), now())
                .await
                .expect_err("refused");
            let d = Diagnostic::from(err);
            assert_eq!(d.error_type, "BadRequest", "{payload}");
            assert!(
                d.error_message.contains(&format!("\"{field}\"")),
                "{payload}: {}",
                d.error_message
            );
            let migration = store
                .get_migration("Sales")
                .await
                .expect("read")
                .expect("kept");
            assert_eq!(migration.record.state, MigrationState::Synchronizing);
        }
    }

    #[tokio::test]
    async fn arm_records_the_last_backup_disarm_forgets_it_and_arm_needs_one() {
        let store = store(MigrationState::Restoring).await;
        let target = MemoryTarget::new("16.0.4135.4");
        let answer = handle(
            &store,
            &target,
            json!({"database": "Sales", "action": "arm", "last_backup": "Sales_tail.trn", "require_tail_log": true}),
            now(),
        )
        .await
        .expect("armed");
        assert_eq!(answer["state"], "Restoring", "{answer}");
        assert_eq!(answer["armed"]["last_backup"], "Sales_tail.trn", "{answer}");
        assert_eq!(answer["armed"]["require_tail_log"], true, "{answer}");
        let migration = store
            .get_migration("Sales")
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(
            migration.record.armed.map(|a| a.last_backup).as_deref(),
            Some("Sales_tail.trn")
        );
        let err = handle(
            &store,
            &target,
            json!({"database": "Sales", "action": "arm"}),
            now(),
        )
        .await
        .expect_err("refused");
        assert_eq!(Diagnostic::from(err).error_type, "BadRequest");
        let answer = handle(
            &store,
            &target,
            json!({"database": "Sales", "action": "disarm"}),
            now(),
        )
        .await
        .expect("disarmed");
        assert_eq!(answer["armed"], Value::Null, "{answer}");
        let err = handle(
            &store,
            &target,
            json!({"database": "Sales", "action": "arm", "last_backup": "x.trn", "when": "now"}),
            now(),
        )
        .await
        .expect_err("refused");
        let d = Diagnostic::from(err);
        assert_eq!(d.error_type, "BadRequest");
        assert!(d.error_message.contains("\"when\""), "{}", d.error_message);
    }

    #[tokio::test]
    async fn arm_is_refused_once_the_migration_takes_no_more_backups() {
        let store = store(MigrationState::Succeeded).await;
        let target = MemoryTarget::new("16.0.4135.4");
        let err = handle(
            &store,
            &target,
            json!({"database": "Sales", "action": "arm", "last_backup": "x.trn"}),
            now(),
        )
        .await
        .expect_err("refused");
        assert_eq!(Diagnostic::from(err).error_type, "NotArmable");
    }

    #[test]
    fn every_field_of_a_complete_request_is_a_known_field() {
        let request = CompleteRequest {
            database: "Sales".into(),
            last_backup: Some("x.trn".into()),
            require_tail_log: true,
        };
        let Value::Object(fields) = serde_json::to_value(&request).expect("json") else {
            panic!("not an object");
        };
        for field in fields.keys() {
            assert!(
                FIELDS.contains(&field.as_str()),
                "{field} missing from FIELDS"
            );
        }
        for payload in [
            json!({"database": "Sales"}),
            json!({"action": "complete", "database": "Sales", "last_backup": null, "require_tail_log": false}),
            json!({"action": "reset", "database": "Sales"}),
        ] {
            assert!(Invoke::parse(payload.clone()).is_ok(), "{payload}");
        }
    }

    #[tokio::test]
    async fn a_complete_left_completing_queues_the_follow_up_of_the_finish_task() {
        let store = store(MigrationState::Synchronizing).await;
        let target = MemoryTarget::new("16.0.4135.4");
        *target
            .rds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        target
            .databases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert("Sales".into(), "RESTORING".into());
        let queue = MemoryQueue::default();
        let followup = Followup::queued(&queue, Duration::from_secs(45));
        let reader = MemoryObjects::default();
        let config = config("2022");
        let revalidation = Revalidation {
            reader: &reader,
            config: &config,
        };
        let answer = super::handle(
            &store,
            &target,
            &followup,
            &revalidation,
            json!({"database": "Sales"}),
            now(),
        )
        .await
        .expect("completing");
        assert_eq!(answer, json!({"database": "Sales", "state": "Completing"}));
        assert_eq!(
            queue.drain_sent(),
            vec![(
                QueueMessage::Finish {
                    migration: bakdrop_core::DatabaseName::parse("Sales").expect("name"),
                    since: Some(now()),
                },
                Duration::from_secs(1)
            )]
        );
    }

    /// Files rejected under the stack's former settings: the action re-checks them under the
    /// function's settings of now and queues those they allow.
    #[tokio::test]
    async fn revalidate_queues_the_files_rejected_for_the_settings_the_stack_now_allows() {
        use bakdrop_core::model::object::ObjectRef;
        use bakdrop_core::validate::Outcome;
        let store = MemoryStore::default();
        let queue = MemoryQueue::default();
        let reader = MemoryObjects::default();
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/bak/sql2016_full_RestoreTimeClean.bak"
        ))
        .expect("fixture");
        let object = ObjectRef {
            bucket: "b".into(),
            key: "Sales/full.bak".into(),
            version_id: None,
            etag: Some("e".into()),
            size: body.len() as u64,
        };
        reader.put("b", "Sales/full.bak", body);
        // Validated by the stack while it said its target was SQL Server 2022.
        let before = Validator {
            reader: &reader,
            store: &store,
            queue: &queue,
            config: config("2022"),
        };
        let outcome = before
            .validate(&object, "req", now())
            .await
            .expect("recorded");
        assert!(matches!(outcome, Outcome::Rejected { .. }), "{outcome:?}");
        // The stack now says 2016: the action takes the file.
        let followup = Followup::queued(&queue, Duration::from_secs(60));
        let now_2016 = config("2016");
        let revalidation = Revalidation {
            reader: &reader,
            config: &now_2016,
        };
        let target = MemoryTarget::new("13.0.5081.1");
        let answer = super::handle(
            &store,
            &target,
            &followup,
            &revalidation,
            json!({"database": "Sales", "action": "revalidate"}),
            now(),
        )
        .await
        .expect("revalidated");
        assert_eq!(answer["revalidated"]["queued"], 1, "{answer}");
        assert_eq!(queue.drain_sent().len(), 1);
        let again = super::handle(
            &store,
            &target,
            &followup,
            &revalidation,
            json!({"database": "Sales", "action": "revalidate"}),
            now(),
        )
        .await
        .expect("again");
        assert_eq!(again["revalidated"]["rechecked"], 0, "{again}");
    }
}
