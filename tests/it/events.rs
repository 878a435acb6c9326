//! Events on the local AWS endpoint: the status table's stream, the publish-events handler and
//! EventBridge.
//!
//! What moto 5.2.5 (infra/constraints.txt) serves here: a table's stream (`StreamSpecification`;
//! DynamoDB Streams' DescribeStream, GetShardIterator with TRIM_HORIZON, AT_ and
//! AFTER_SEQUENCE_NUMBER, and GetRecords with NEW_AND_OLD_IMAGES), and EventBridge's
//! CreateEventBus, PutRule, PutTargets and PutEvents, delivering to an SQS target. What it cannot:
//! run a Lambda event source mapping without Docker (its Lambda invokes functions in
//! containers). So [`Mapping`] here is the event source mapping: it reads the stream from its
//! checkpoint, hands each batch to the handler as Lambda's DynamoDB stream event JSON, and
//! moves the checkpoint past what the handler did not report as failed, as Lambda does with
//! `ReportBatchItemFailures`. Its events then go through the real adapter to moto's EventBridge
//! and, by a rule, to a queue the test reads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_aws::eventbridge::EventBridgeBus;
use bakdrop_core::model::status::{FileRecord, FileState, MigrationRecord, MigrationState, Reason};
use bakdrop_core::ports::StatusStore;
use bakdrop_core::report::events::SchemaValidator;
use bakdrop_test_support::aws::{unique_name, LocalAws};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Where the mapping reads next.
#[derive(Debug, Clone)]
enum Checkpoint {
    Start,
    At(String),
    After(String),
}

/// Lambda's event source mapping of one table's stream (one shard, as moto has).
struct Mapping {
    streams: aws_sdk_dynamodbstreams::Client,
    arn: String,
    shard: String,
    checkpoint: Checkpoint,
}

impl Mapping {
    async fn new(aws: &LocalAws, table: &str) -> Mapping {
        let described = aws
            .dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("DescribeTable");
        let arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .expect("the table has a stream")
            .to_owned();
        let streams = aws_sdk_dynamodbstreams::Client::new(&aws.sdk);
        let stream = streams
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .expect("DescribeStream");
        let shard = stream
            .stream_description()
            .and_then(|d| d.shards().first())
            .and_then(|s| s.shard_id())
            .expect("a shard")
            .to_owned();
        Mapping {
            streams,
            arn,
            shard,
            checkpoint: Checkpoint::Start,
        }
    }

    /// The records from the checkpoint on, as Lambda's event JSON.
    async fn batch(&self) -> Vec<Value> {
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(&self.shard);
        let request = match &self.checkpoint {
            Checkpoint::Start => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Checkpoint::At(seq) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .sequence_number(seq),
            Checkpoint::After(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(seq),
        };
        let iterator = request
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator
            .expect("an iterator");
        let out = self
            .streams
            .get_records()
            .shard_iterator(iterator)
            .limit(100)
            .send()
            .await
            .expect("GetRecords");
        out.records()
            .iter()
            .map(|r| lambda_record(r, &self.arn))
            .collect()
    }

    /// Delivers the batch from the checkpoint to the handler; moves the checkpoint as Lambda
    /// does. `None` when the stream had nothing new.
    async fn deliver(
        &mut self,
        bus: &EventBridgeBus,
        advance: bool,
    ) -> Option<DynamoDbEventResponse> {
        let records = self.batch().await;
        let last = records.last()?["dynamodb"]["SequenceNumber"]
            .as_str()
            .map(str::to_owned)?;
        let event: StreamEvent = serde_json::from_value(json!({ "Records": records }))
            .expect("Lambda's DynamoDB stream event");
        let response = publish_events::handler::handle(bus, event).await;
        if advance {
            self.checkpoint = match response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.clone())
            {
                Some(failed) => Checkpoint::At(failed),
                None => Checkpoint::After(last),
            };
        }
        Some(response)
    }
}

/// A stream record as Lambda hands it to a function (the API's record, plus the stream ARN).
fn lambda_record(r: &Record, stream_arn: &str) -> Value {
    let change = r.dynamodb().expect("a change");
    let image = |item: Option<&std::collections::HashMap<String, AttributeValue>>| {
        item.map(|i| Value::Object(i.iter().map(|(k, v)| (k.clone(), attribute(v))).collect()))
    };
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": change.approximate_creation_date_time().map_or(0, |t| t.secs()),
        "Keys": image(change.keys.as_ref()),
        "SequenceNumber": change.sequence_number(),
        "SizeBytes": change.size_bytes(),
        "StreamViewType": change.stream_view_type().map(|t| t.as_str()),
    });
    if let Some(new) = image(change.new_image.as_ref()) {
        dynamodb["NewImage"] = new;
    }
    if let Some(old) = image(change.old_image.as_ref()) {
        dynamodb["OldImage"] = old;
    }
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version(),
        "eventSource": r.event_source(),
        "awsRegion": r.aws_region(),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

/// An attribute value in DynamoDB's JSON (the table's items hold strings and numbers).
fn attribute(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(n) => json!({ "NULL": n }),
        AttributeValue::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), attribute(v))).collect::<serde_json::Map<_, _>>() })
        }
        AttributeValue::L(l) => json!({ "L": l.iter().map(attribute).collect::<Vec<_>>() }),
        other => panic!("an attribute bakdrop does not write: {other:?}"),
    }
}

/// A table with its stream, a bus name, and a queue that receives what a rule on the bus
/// matches (once [`Setup::connect`] made the bus and the rule).
struct Setup {
    aws: LocalAws,
    table: String,
    bus_name: String,
    queue_url: String,
    bus: EventBridgeBus,
    store: DynamoStatusStore,
}

impl Setup {
    async fn new() -> Setup {
        let aws = LocalAws::get().await;
        let table = unique_name("events");
        aws.create_status_table(&table).await.expect("table");
        aws.dynamodb
            .update_table()
            .table_name(&table)
            .stream_specification(
                aws_sdk_dynamodb::types::StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                    .build()
                    .expect("stream specification"),
            )
            .send()
            .await
            .expect("UpdateTable (stream)");
        let queue_url = aws
            .create_queue(&unique_name("bus-target"))
            .await
            .expect("queue");
        let bus_name = unique_name("bakdrop-bus");
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&aws.sdk), &bus_name);
        let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
        Setup {
            aws,
            table,
            bus_name,
            queue_url,
            bus,
            store,
        }
    }

    /// Creates the bus and a rule sending bakdrop's events to the queue.
    async fn connect(&self) {
        let events = aws_sdk_eventbridge::Client::new(&self.aws.sdk);
        events
            .create_event_bus()
            .name(&self.bus_name)
            .send()
            .await
            .expect("CreateEventBus");
        events
            .put_rule()
            .name("all-bakdrop")
            .event_bus_name(&self.bus_name)
            .event_pattern(r#"{"source": ["bakdrop"]}"#)
            .send()
            .await
            .expect("PutRule");
        let arn = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("the queue's ARN");
        events
            .put_targets()
            .rule("all-bakdrop")
            .event_bus_name(&self.bus_name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("PutTargets");
    }

    /// The events the rule delivered, each valid against the schema (less the field moto adds
    /// that EventBridge does not send, `ingestion-time`).
    async fn delivered(&self, count: usize) -> Vec<Value> {
        let schema = SchemaValidator::new();
        let bodies = self
            .aws
            .receive(&self.queue_url, count, Duration::from_secs(10))
            .await
            .expect("receive");
        let mut extra = self
            .aws
            .receive(&self.queue_url, usize::MAX, Duration::from_millis(1500))
            .await
            .expect("receive");
        let mut all = bodies;
        all.append(&mut extra);
        all.iter()
            .map(|body| {
                let mut event: Value = serde_json::from_str(body).expect("JSON");
                if let Some(map) = event.as_object_mut() {
                    map.remove("ingestion-time");
                }
                if let Err(e) = schema.check(&event) {
                    panic!("{e}\n{event}");
                }
                event
            })
            .collect()
    }

    /// Writes a migration's life: created, Restoring, then (`later`) Synchronizing, and a
    /// rejected file between. Returns the migration's record after each write.
    async fn migrate(&self, database: &str, later: bool) -> MigrationRecord {
        let now = OffsetDateTime::now_utc();
        let mut m = MigrationRecord::new(
            bakdrop_core::DatabaseName::parse(database).expect("name"),
            now,
        );
        let mut v = self.store.put_migration(&m, None).await.expect("created");
        let object = bakdrop_core::model::object::ObjectRef {
            bucket: "b".into(),
            key: format!("{database}/two_sets.bak"),
            version_id: None,
            etag: Some("e".into()),
            size: 1,
        };
        let file = FileRecord {
            migration: Some(bakdrop_core::DatabaseName::parse(database).expect("name")),
            file_id: object.file_id(),
            object,
            state: FileState::Rejected,
            reason: Some(Reason::new("MoreThanOneBackupSet", "two sets")),
            header: None,
            claim: None,
            restore_started_at: None,
            restore_finished_at: None,
            created_at: now,
            updated_at: now,
        };
        self.store.put_file(&file, None).await.expect("file");
        m.state = MigrationState::Restoring;
        v = self
            .store
            .put_migration(&m, Some(v))
            .await
            .expect("restoring");
        if later {
            m.state = MigrationState::Synchronizing;
            self.store
                .put_migration(&m, Some(v))
                .await
                .expect("synchronizing");
        }
        m
    }
}

/// The migration states the events say, in their order by `(sequence, index)`.
fn states(events: &[Value]) -> Vec<(Option<String>, String)> {
    let mut changes: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail-type"] == "Migration State Changed")
        .collect();
    changes.sort_by_key(|e| {
        (
            e["detail"]["sequence"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            e["detail"]["index"].as_u64(),
        )
    });
    changes
        .iter()
        .map(|e| {
            (
                e["detail"]["old_state"].as_str().map(str::to_owned),
                e["detail"]["new_state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_transition_written_while_the_publisher_fails_is_published_once_it_recovers() {
    let setup = Setup::new().await;
    let mut mapping = Mapping::new(&setup.aws, &setup.table).await;
    setup.migrate("Sales", false).await;
    // The bus does not exist yet: PutEvents fails, the first record is reported, nothing moves.
    let response = mapping.deliver(&setup.bus, true).await.expect("a batch");
    assert_eq!(response.batch_item_failures.len(), 1, "{response:?}");
    assert!(matches!(mapping.checkpoint, Checkpoint::At(_)));
    // Written while the publisher fails.
    let mut m = setup
        .store
        .get_migration("Sales")
        .await
        .expect("read")
        .expect("migration");
    m.record.state = MigrationState::Synchronizing;
    setup
        .store
        .put_migration(&m.record, Some(m.version))
        .await
        .expect("synchronizing");
    let again = mapping.deliver(&setup.bus, true).await.expect("a batch");
    assert_eq!(again.batch_item_failures.len(), 1, "still failing");
    assert!(setup
        .aws
        .receive_now(&setup.queue_url)
        .await
        .expect("receive")
        .is_empty());

    // EventBridge recovers: the mapping delivers from its checkpoint and everything arrives.
    setup.connect().await;
    let response = mapping.deliver(&setup.bus, true).await.expect("a batch");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let events = setup.delivered(4).await;
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(
        states(&events),
        [
            (None, "AwaitingFull".to_owned()),
            (Some("AwaitingFull".to_owned()), "Restoring".to_owned()),
            (Some("Restoring".to_owned()), "Synchronizing".to_owned()),
        ]
    );
    let rejected: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail-type"] == "File Rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0]["detail"]["reason"]["code"],
        "MoreThanOneBackupSet"
    );
    assert_eq!(rejected[0]["source"], "bakdrop");
    // Nothing left to deliver.
    assert!(mapping.deliver(&setup.bus, true).await.is_none());
}

#[tokio::test]
async fn a_redelivered_stream_batch_publishes_no_event_twice_with_a_different_id() {
    let setup = Setup::new().await;
    setup.connect().await;
    let mut mapping = Mapping::new(&setup.aws, &setup.table).await;
    setup.migrate("Sales", true).await;
    setup.migrate("Other]'; --", true).await;
    // Lambda delivers the batch, then delivers it again (e.g. the invocation timed out after
    // publishing): the checkpoint does not move in between.
    let first = mapping.deliver(&setup.bus, false).await.expect("a batch");
    let second = mapping
        .deliver(&setup.bus, true)
        .await
        .expect("the same batch");
    assert!(first.batch_item_failures.is_empty() && second.batch_item_failures.is_empty());
    let events = setup.delivered(16).await;
    assert_eq!(events.len(), 16, "8 events, each twice");
    // Per event (record, version, kind): one id, and every copy of an id the same detail.
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut details: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        let d = &e["detail"];
        let what = format!(
            "{}|{}|{}|{}",
            d["database"], d["file"]["id"], d["version"], e["detail-type"]
        );
        let id = d["id"].as_str().unwrap_or_default().to_owned();
        ids.entry(what).or_default().insert(id.clone());
        details.entry(id).or_default().insert(d.to_string());
    }
    assert_eq!(ids.len(), 8);
    for (what, found) in &ids {
        assert_eq!(found.len(), 1, "{what}: {found:?}");
    }
    for (id, found) in &details {
        assert_eq!(found.len(), 1, "{id}: {found:?}");
    }
    for database in ["Sales", "Other]'; --"] {
        let mine: Vec<Value> = events
            .iter()
            .filter(|e| e["detail"]["database"] == database)
            .cloned()
            .collect();
        let mut seen = BTreeSet::new();
        let unique: Vec<Value> = mine
            .into_iter()
            .filter(|e| seen.insert(e["detail"]["id"].to_string()))
            .collect();
        assert_eq!(
            states(&unique),
            [
                (None, "AwaitingFull".to_owned()),
                (Some("AwaitingFull".to_owned()), "Restoring".to_owned()),
                (Some("Restoring".to_owned()), "Synchronizing".to_owned()),
            ],
            "{database}"
        );
    }
}
