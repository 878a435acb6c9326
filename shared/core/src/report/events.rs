//! The events bakdrop publishes: one for every change of a migration's state, every file verdict
//! (validated, rejected, restored, skipped, failed) and every change of an armed Complete.
//!
//! They are derived from a record before and after one write ([`migration_events`],
//! [`file_events`]), so that whoever sees the writes publishes them: the status table's stream
//! and the publish-events function in the stack, the local state file in `bakdrop run`
//! (`.bakdrop/events.jsonl`). Each event is an EventBridge event of source [`SOURCE`], its
//! `detail-type` one of [`DetailType`], its `detail` a [`Detail`]; the JSON Schema of the whole
//! event is [`SCHEMA`] (`shared/core/schema/events.schema.json`).
//!
//! Delivery is at least once. What makes that usable:
//! - `detail.id` is the same for the same write however often it is published (derived from
//!   the record's identity, creation time, version and the kind of event): drop an id seen
//!   before.
//! - `detail.version` is the record's version: per migration (for its state events) and per
//!   file, it grows with every write; it is the idempotency key the issue asked for.
//! - `detail.sequence` (40 digits, the stream's sequence number or the state file's write
//!   counter) and `detail.index` (position among the events of one write) order the events of
//!   one migration, its files' included, as they were written: compare `(sequence, index)`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::status::{FileRecord, FileState, MigrationRecord, Reason};

/// Every event's `source`.
pub const SOURCE: &str = "bakdrop";

/// The JSON Schema (draft 2020-12) of an event as EventBridge delivers it, and as
/// `bakdrop run` writes it (one per line of `.bakdrop/events.jsonl`).
pub const SCHEMA: &str = include_str!("../../schema/events.schema.json");

/// Digits of [`Detail::sequence`]: DynamoDB Streams' sequence numbers have at most 40.
pub const SEQUENCE_DIGITS: usize = 40;

/// What happened: an event's `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DetailType {
    /// The migration moved to another state (`old_state` is null when it was created).
    #[serde(rename = "Migration State Changed")]
    MigrationStateChanged,
    /// The file passed validation and joined its migration's restore chain.
    #[serde(rename = "File Validated")]
    FileValidated,
    #[serde(rename = "File Rejected")]
    FileRejected,
    #[serde(rename = "File Restored")]
    FileRestored,
    /// Not restored: already covered by what was restored.
    #[serde(rename = "File Skipped")]
    FileSkipped,
    #[serde(rename = "File Failed")]
    FileFailed,
    /// Complete was armed (or armed again with another backup).
    #[serde(rename = "Complete Armed")]
    CompleteArmed,
    /// An armed Complete was cancelled before it ran.
    #[serde(rename = "Complete Disarmed")]
    CompleteDisarmed,
    /// The armed Complete ran and a guard refused it (the reason says which).
    #[serde(rename = "Armed Complete Refused")]
    ArmedCompleteRefused,
}

impl DetailType {
    /// Every detail type.
    pub const ALL: [DetailType; 9] = [
        DetailType::MigrationStateChanged,
        DetailType::FileValidated,
        DetailType::FileRejected,
        DetailType::FileRestored,
        DetailType::FileSkipped,
        DetailType::FileFailed,
        DetailType::CompleteArmed,
        DetailType::CompleteDisarmed,
        DetailType::ArmedCompleteRefused,
    ];

    /// The `detail-type` text.
    pub fn as_str(self) -> &'static str {
        match self {
            DetailType::MigrationStateChanged => "Migration State Changed",
            DetailType::FileValidated => "File Validated",
            DetailType::FileRejected => "File Rejected",
            DetailType::FileRestored => "File Restored",
            DetailType::FileSkipped => "File Skipped",
            DetailType::FileFailed => "File Failed",
            DetailType::CompleteArmed => "Complete Armed",
            DetailType::CompleteDisarmed => "Complete Disarmed",
            DetailType::ArmedCompleteRefused => "Armed Complete Refused",
        }
    }
}

impl std::fmt::Display for DetailType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The file an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDetail {
    /// The file name (the key's last segment).
    pub name: String,
    pub key: String,
    /// The status table's file id (bucket, key and object version).
    pub id: String,
}

/// Why: a stable code, a sentence, and SQL Server's error when it gave one.
pub type ReasonDetail = Reason;

/// The armed Complete an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedDetail {
    pub last_backup: String,
    pub require_tail_log: bool,
}

/// An event's `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The same for the same write however often it is published: the idempotency key.
    pub id: Uuid,
    /// The migration (target database); empty for a file whose key names none.
    pub database: String,
    /// The file, for file verdicts.
    pub file: Option<FileDetail>,
    /// Before the write: the migration's state (migration events) or the file's (file
    /// verdicts); null when the write created the record.
    pub old_state: Option<String>,
    /// After the write.
    pub new_state: String,
    /// The reason the record carries (a rejection's, a failure's, a refusal's).
    pub reason: Option<ReasonDetail>,
    /// The line a person reads.
    pub status: String,
    /// The record's version after the write.
    pub version: u64,
    /// Orders one migration's events: [`SEQUENCE_DIGITS`] digits.
    pub sequence: String,
    /// Position among the events of one write.
    pub index: u32,
    /// The armed Complete, for its events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed: Option<ArmedDetail>,
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub detail_type: DetailType,
    /// When the record was written.
    pub time: OffsetDateTime,
    pub detail: Detail,
}

/// An event as EventBridge delivers it to a rule's target (less what EventBridge adds: `id`,
/// `account`, `region`, `resources`, `version`), and as `bakdrop run` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub source: String,
    #[serde(rename = "detail-type")]
    pub detail_type: DetailType,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub detail: Detail,
}

impl Event {
    /// The event as one JSON object.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            source: SOURCE.to_owned(),
            detail_type: self.detail_type,
            time: self.time,
            detail: self.detail.clone(),
        }
    }

    /// The detail as the JSON text EventBridge's `PutEvents` takes.
    pub fn detail_json(&self) -> String {
        serde_json::to_string(&self.detail).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// A sequence number as [`Detail::sequence`] holds it: zero-padded to [`SEQUENCE_DIGITS`]
/// digits, so that text order is number order. `None` when `number` is not made of digits.
pub fn sequence(number: &str) -> Option<String> {
    (!number.is_empty()
        && number.len() <= SEQUENCE_DIGITS
        && number.bytes().all(|b| b.is_ascii_digit()))
    .then(|| format!("{number:0>SEQUENCE_DIGITS$}"))
}

/// The id of one event: a name-based UUID (v5) of the record's identity, its creation (a
/// record forgotten by a reset and made again is another record), its version and the kind.
fn event_id(
    database: &str,
    file_id: &str,
    created_at: OffsetDateTime,
    version: u64,
    kind: DetailType,
) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6b61_6b64_726f_7045_8000_6576_656e_7473);
    let name = format!(
        "{database}\u{0}{file_id}\u{0}{}\u{0}{version}\u{0}{kind}",
        created_at.unix_timestamp_nanos()
    );
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// The events of one write of a migration record: `old` before (`None` when the write created
/// it), `new` after, at store version `version`, the write's place `sequence` (see
/// [`sequence`]).
pub fn migration_events(
    old: Option<&MigrationRecord>,
    new: &MigrationRecord,
    version: u64,
    sequence: &str,
) -> Vec<Event> {
    let mut kinds: Vec<(DetailType, Option<Reason>, Option<ArmedDetail>)> = Vec::new();
    if old.map(|o| o.state) != Some(new.state) {
        kinds.push((DetailType::MigrationStateChanged, new.reason.clone(), None));
    }
    let before = old.and_then(|o| o.armed.as_ref());
    let after = new.armed.as_ref();
    let detail = |a: &crate::model::status::ArmedComplete| ArmedDetail {
        last_backup: a.last_backup.clone(),
        require_tail_log: a.require_tail_log,
    };
    if let Some(a) = after.filter(|a| a.pending()) {
        let same = before.is_some_and(|b| {
            b.pending()
                && b.last_backup == a.last_backup
                && b.require_tail_log == a.require_tail_log
                && b.armed_at == a.armed_at
        });
        if !same {
            kinds.push((DetailType::CompleteArmed, None, Some(detail(a))));
        }
    }
    if let Some((a, reason)) = after.and_then(|a| a.refused.as_ref().map(|r| (a, r))) {
        if before.is_none_or(|b| b.refused.is_none() || b.armed_at != a.armed_at) {
            kinds.push((
                DetailType::ArmedCompleteRefused,
                Some(reason.clone()),
                Some(detail(a)),
            ));
        }
    }
    if let Some(b) = before.filter(|b| b.pending()) {
        if after.is_none() {
            kinds.push((DetailType::CompleteDisarmed, None, Some(detail(b))));
        }
    }
    let status = crate::report::headline(new);
    kinds
        .into_iter()
        .zip(0u32..)
        .map(|((kind, reason, armed), index)| Event {
            detail_type: kind,
            time: new.updated_at,
            detail: Detail {
                id: event_id(&new.database, "", new.created_at, version, kind),
                database: new.database.to_string(),
                file: None,
                old_state: old.map(|o| o.state.to_string()),
                new_state: new.state.to_string(),
                reason,
                status: status.clone(),
                version,
                sequence: sequence.to_owned(),
                index,
                armed,
            },
        })
        .collect()
}

/// The verdict a write of a file record gives, if any.
fn verdict(old: Option<FileState>, new: FileState) -> Option<DetailType> {
    if old == Some(new) {
        return None;
    }
    match new {
        FileState::Rejected => Some(DetailType::FileRejected),
        FileState::Restored => Some(DetailType::FileRestored),
        FileState::Skipped => Some(DetailType::FileSkipped),
        FileState::Failed => Some(DetailType::FileFailed),
        // Past validation for the first time (validation marks it Queued; the worker may take
        // it to Waiting first).
        FileState::Queued | FileState::Waiting | FileState::Restoring
            if old.is_none_or(|s| matches!(s, FileState::Received | FileState::Validated)) =>
        {
            Some(DetailType::FileValidated)
        }
        _ => None,
    }
}

/// The events of one write of a file record, as [`migration_events`].
pub fn file_events(
    old: Option<&FileRecord>,
    new: &FileRecord,
    version: u64,
    sequence: &str,
) -> Vec<Event> {
    let Some(kind) = verdict(old.map(|o| o.state), new.state) else {
        return Vec::new();
    };
    let name = new.object.file_name();
    let status = match (&new.reason, kind) {
        (
            Some(reason),
            DetailType::FileRejected | DetailType::FileFailed | DetailType::FileSkipped,
        ) => {
            format!("{name}: {} ({}): {reason}", new.state, reason.code)
        }
        (_, DetailType::FileValidated) => format!("{name}: validated, queued for restore"),
        (_, DetailType::FileRestored) => match &new.header {
            Some(h) => format!(
                "{name}: restored ({}, LSN {} to {})",
                h.backup_type, h.first_lsn, h.last_lsn
            ),
            None => format!("{name}: restored"),
        },
        _ => format!("{name}: {}", new.state),
    };
    vec![Event {
        detail_type: kind,
        time: new.updated_at,
        detail: Detail {
            id: event_id(
                new.migration_key(),
                &new.file_id,
                new.created_at,
                version,
                kind,
            ),
            database: new.migration_key().to_owned(),
            file: Some(FileDetail {
                name: name.to_owned(),
                key: new.object.key.clone(),
                id: new.file_id.clone(),
            }),
            old_state: old.map(|o| o.state.to_string()),
            new_state: new.state.to_string(),
            reason: new
                .reason
                .clone()
                .filter(|_| kind != DetailType::FileValidated),
            status,
            version,
            sequence: sequence.to_owned(),
            index: 0,
            armed: None,
        },
    }]
}

/// Validates events against [`SCHEMA`] as a consumer would (tests, feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub struct SchemaValidator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

#[cfg(any(test, feature = "test-support"))]
impl std::fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchemaValidator")
    }
}

#[cfg(any(test, feature = "test-support"))]
impl SchemaValidator {
    /// The schema compiled, formats (`date-time`, `uuid`) asserted.
    ///
    /// # Panics
    /// When [`SCHEMA`] is not a valid JSON Schema (a test failure).
    #[allow(clippy::expect_used)]
    pub fn new() -> SchemaValidator {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        compiler
            .add_resource("events.schema.json", schema)
            .expect("the schema is added");
        let index = compiler
            .compile("events.schema.json", &mut schemas)
            .unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
        SchemaValidator { schemas, index }
    }

    /// Why `event` does not validate, `Ok` when it does.
    ///
    /// # Errors
    /// Every violation, as one text.
    pub fn check(&self, event: &serde_json::Value) -> Result<(), String> {
        self.schemas
            .validate(event, self.index)
            .map_err(|e| format!("{e:#}"))
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Default for SchemaValidator {
    fn default() -> Self {
        SchemaValidator::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::object::ObjectRef;
    use crate::model::status::{ArmedComplete, MigrationState};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn file(state: FileState) -> FileRecord {
        FileRecord {
            migration: Some(crate::DatabaseName::parse("Sales").expect("name")),
            file_id: "b/Sales/log.trn#etag=1".into(),
            object: ObjectRef {
                bucket: "b".into(),
                key: "Sales/log.trn".into(),
                version_id: None,
                etag: Some("1".into()),
                size: 1,
            },
            state,
            reason: None,
            header: None,
            claim: None,
            restore_started_at: None,
            restore_finished_at: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn kinds(events: &[Event]) -> Vec<DetailType> {
        events.iter().map(|e| e.detail_type).collect()
    }

    #[test]
    fn sequences_are_padded_digits_and_anything_else_is_refused() {
        assert_eq!(sequence("12").map(|s| s.len()), Some(SEQUENCE_DIGITS));
        assert!(sequence("9") < sequence("10"));
        for bad in ["", "12a", "-1", &"1".repeat(41)] {
            assert_eq!(sequence(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_file_gives_one_event_per_verdict_and_none_for_the_steps_between() {
        use FileState::*;
        let table = [
            (None, Validated, None),
            (None, Rejected, Some(DetailType::FileRejected)),
            (Some(Validated), Queued, Some(DetailType::FileValidated)),
            (Some(Validated), Waiting, Some(DetailType::FileValidated)),
            (Some(Validated), Rejected, Some(DetailType::FileRejected)),
            (Some(Queued), Waiting, None),
            (Some(Waiting), Waiting, None),
            (Some(Waiting), Restoring, None),
            (Some(Restoring), Restored, Some(DetailType::FileRestored)),
            (Some(Waiting), Skipped, Some(DetailType::FileSkipped)),
            (Some(Restoring), Failed, Some(DetailType::FileFailed)),
            (Some(Restored), Restored, None),
        ];
        for (old, new, expected) in table {
            let before = old.map(file);
            let events = file_events(before.as_ref(), &file(new), 2, "1");
            assert_eq!(
                events.first().map(|e| e.detail_type),
                expected,
                "{old:?} -> {new:?}"
            );
            assert!(events.len() <= 1);
        }
    }

    #[test]
    fn the_same_write_has_the_same_id_and_another_version_another() {
        let before = file(FileState::Restoring);
        let after = file(FileState::Restored);
        let a = file_events(Some(&before), &after, 5, "7");
        let b = file_events(Some(&before), &after, 5, "9");
        let c = file_events(Some(&before), &after, 6, "7");
        assert_eq!(a[0].detail.id, b[0].detail.id);
        assert_ne!(a[0].detail.id, c[0].detail.id);
        let mut recreated = after.clone();
        recreated.created_at = now() + time::Duration::SECOND;
        let d = file_events(Some(&before), &recreated, 5, "7");
        assert_ne!(
            a[0].detail.id, d[0].detail.id,
            "a record made again after a reset"
        );
    }

    #[test]
    fn a_migration_gives_its_state_changes_and_its_arm_changes() {
        let created =
            MigrationRecord::new(crate::DatabaseName::parse("Sales").expect("name"), now());
        assert_eq!(
            kinds(&migration_events(None, &created, 1, "1")),
            [DetailType::MigrationStateChanged]
        );
        assert!(migration_events(Some(&created), &created, 2, "2").is_empty());
        let mut armed = created.clone();
        armed.armed = Some(ArmedComplete {
            last_backup: "log9.trn".into(),
            require_tail_log: false,
            by: "cli".into(),
            armed_at: now(),
            reached: false,
            refused: None,
        });
        let events = migration_events(Some(&created), &armed, 3, "3");
        assert_eq!(kinds(&events), [DetailType::CompleteArmed]);
        assert_eq!(
            events[0]
                .detail
                .armed
                .as_ref()
                .map(|a| a.last_backup.as_str()),
            Some("log9.trn")
        );
        let mut reached = armed.clone();
        if let Some(a) = reached.armed.as_mut() {
            a.reached = true;
        }
        reached.state = MigrationState::Synchronizing;
        assert_eq!(
            kinds(&migration_events(Some(&armed), &reached, 4, "4")),
            [DetailType::MigrationStateChanged]
        );
        let mut refused = reached.clone();
        if let Some(a) = refused.armed.as_mut() {
            a.refused = Some(Reason::new("NotLastBackup", "no"));
        }
        let events = migration_events(Some(&reached), &refused, 5, "5");
        assert_eq!(kinds(&events), [DetailType::ArmedCompleteRefused]);
        assert_eq!(
            events[0].detail.reason.as_ref().map(|r| r.code.as_str()),
            Some("NotLastBackup")
        );
        let mut disarmed = reached.clone();
        disarmed.armed = None;
        assert_eq!(
            kinds(&migration_events(Some(&reached), &disarmed, 6, "6")),
            [DetailType::CompleteDisarmed]
        );
    }

    fn envelope_json(event: &Event) -> serde_json::Value {
        serde_json::to_value(event.envelope()).unwrap_or_default()
    }

    #[test]
    fn every_kind_of_event_validates_against_the_schema_and_a_wrong_one_does_not() {
        let schema = SchemaValidator::new();
        let mut events = Vec::new();
        let created = MigrationRecord::new(
            crate::DatabaseName::parse("Sales]; DROP DATABASE x --").expect("name"),
            now(),
        );
        events.extend(migration_events(
            None,
            &created,
            1,
            &sequence("1").unwrap_or_default(),
        ));
        let mut armed = created.clone();
        armed.armed = Some(ArmedComplete {
            last_backup: "log9.trn".into(),
            require_tail_log: true,
            by: "cli".into(),
            armed_at: now(),
            reached: false,
            refused: None,
        });
        let seq = sequence("2").unwrap_or_default();
        events.extend(migration_events(Some(&created), &armed, 2, &seq));
        let mut refused = armed.clone();
        if let Some(a) = refused.armed.as_mut() {
            a.refused = Some(Reason::new("NotTailLog", "no"));
        }
        refused.state = MigrationState::Synchronizing;
        events.extend(migration_events(Some(&armed), &refused, 3, &seq));
        let mut failed = refused.clone();
        failed.armed = None;
        failed.state = MigrationState::Failed;
        let mut reason = Reason::new("RestoreFailed", "SQL Server said no");
        reason.sql_error = Some(crate::model::status::SqlError {
            number: 3169,
            message: "newer".into(),
        });
        failed.reason = Some(reason.clone());
        events.extend(migration_events(Some(&armed), &failed, 4, &seq));
        let steps = [
            (None, FileState::Rejected),
            (Some(FileState::Validated), FileState::Queued),
            (Some(FileState::Restoring), FileState::Restored),
            (Some(FileState::Waiting), FileState::Skipped),
            (Some(FileState::Restoring), FileState::Failed),
        ];
        for (old, new) in steps {
            let mut after = file(new);
            if matches!(
                new,
                FileState::Rejected | FileState::Failed | FileState::Skipped
            ) {
                after.reason = Some(reason.clone());
            }
            events.extend(file_events(old.map(file).as_ref(), &after, 2, &seq));
        }
        let seen: std::collections::BTreeSet<&str> =
            events.iter().map(|e| e.detail_type.as_str()).collect();
        assert_eq!(seen.len(), DetailType::ALL.len(), "{seen:?}");
        for event in &events {
            let json = envelope_json(event);
            assert_eq!(schema.check(&json), Ok(()), "{json}");
        }
        // As EventBridge delivers it: its own fields beside ours.
        let mut delivered = envelope_json(&events[0]);
        for (k, v) in [
            (
                "id",
                serde_json::json!("6a7e1c3f-0000-0000-0000-000000000000"),
            ),
            ("account", serde_json::json!("123456789012")),
            ("region", serde_json::json!("eu-west-1")),
            ("resources", serde_json::json!([])),
            ("version", serde_json::json!("0")),
        ] {
            delivered[k] = v;
        }
        assert_eq!(schema.check(&delivered), Ok(()));
        // A rejection without its reason, a state that does not exist, an unknown field.
        let rejected = events
            .iter()
            .find(|e| e.detail_type == DetailType::FileRejected)
            .map(envelope_json)
            .unwrap_or_default();
        let mut wrong = rejected.clone();
        wrong["detail"]["reason"] = serde_json::Value::Null;
        assert!(schema.check(&wrong).is_err());
        let mut wrong = envelope_json(&events[0]);
        wrong["detail"]["new_state"] = serde_json::json!("Finished");
        assert!(schema.check(&wrong).is_err());
        let mut wrong = rejected;
        wrong["detail"]["extra"] = serde_json::json!(1);
        assert!(schema.check(&wrong).is_err());
    }

    #[test]
    fn detail_types_read_back_as_written() {
        for kind in DetailType::ALL {
            let json = serde_json::to_value(kind).unwrap_or_default();
            assert_eq!(json, kind.as_str());
            assert_eq!(serde_json::from_value::<DetailType>(json).ok(), Some(kind));
        }
    }
}
