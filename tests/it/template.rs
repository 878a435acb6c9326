//! template.yaml, read as CloudFormation reads it: what the stack keeps when it goes, the upload
//! bucket's lifecycle, and each function's permissions (least privilege: the DynamoDB and SQS
//! actions its code calls, S3 reads under the upload prefix) and the RDS role's trust.

use std::collections::BTreeSet;

use serde_json::{json, Value};

const TEMPLATE: &str = include_str!("../../template.yaml");

/// The template as CloudFormation's JSON form: short-form tags become their long form (`!Ref X`
/// → `{"Ref": "X"}`, `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` → `{"Fn::Sub": s}`).
fn template() -> Value {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(TEMPLATE).expect("template.yaml");
    to_json(yaml)
}

fn to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml_ng::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = to_json(tagged.value);
            match (tag, inner) {
                ("Ref", inner) => json!({ "Ref": inner }),
                ("GetAtt", Value::String(s)) => {
                    let (resource, attribute) = s.split_once('.').unwrap_or((&s, ""));
                    json!({ "Fn::GetAtt": [resource, attribute] })
                }
                (other, inner) => {
                    let mut long = serde_json::Map::new();
                    long.insert(format!("Fn::{other}"), inner);
                    Value::Object(long)
                }
            }
        }
    }
}

fn resources(t: &Value) -> Vec<(&str, &Value)> {
    t["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

fn functions(t: &Value) -> Vec<(&str, &Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .collect()
}

/// Every IAM statement a function's `Policies` hold, both branches of an `!If` included.
fn statements(policies: &Value) -> Vec<&Value> {
    fn walk<'a>(policy: &'a Value, out: &mut Vec<&'a Value>) {
        if let Some(branches) = policy.get("Fn::If").and_then(Value::as_array) {
            for branch in branches.iter().skip(1) {
                walk(branch, out);
            }
        } else if let Some(list) = policy.get("Statement").and_then(Value::as_array) {
            out.extend(list);
        } else if let Some(list) = policy.as_array() {
            for p in list {
                walk(p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(policies, &mut out);
    out
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The resource names a value refers to (`Ref`, `Fn::GetAtt`, `${X}` / `${X.Arn}` in `Fn::Sub`).
fn referenced(value: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("Ref") {
                out.insert(r.clone());
            }
            if let Some(name) = map
                .get("Fn::GetAtt")
                .and_then(|g| g.get(0))
                .and_then(Value::as_str)
            {
                out.insert(name.to_owned());
            }
            if let Some(Value::String(s)) = map.get("Fn::Sub") {
                for part in s.split("${").skip(1) {
                    let name = part.split(['}', '.']).next().unwrap_or_default();
                    out.insert(name.to_owned());
                }
            }
            for v in map.values() {
                out.extend(referenced(v));
            }
        }
        Value::Array(items) => {
            for v in items {
                out.extend(referenced(v));
            }
        }
        _ => {}
    }
    out
}

#[test]
fn the_status_table_and_every_dead_letter_queue_outlive_the_stack() {
    let t = template();
    // Dead-letter queues: every queue a redrive policy or an on-failure destination names.
    let mut kept: BTreeSet<String> = BTreeSet::from(["StatusTable".to_owned()]);
    let mut queues: BTreeSet<String> = BTreeSet::new();
    for (_, r) in resources(&t) {
        let redrive = &r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"];
        let on_failure =
            &r["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"];
        // An event source mapping's (the status table's stream).
        let mapping_failure = &r["Properties"]["DestinationConfig"]["OnFailure"]["Destination"];
        queues.extend(referenced(redrive));
        queues.extend(referenced(on_failure));
        queues.extend(referenced(mapping_failure));
    }
    assert_eq!(
        queues,
        BTreeSet::from(
            [
                "PublishFailureQueue",
                "RestoreDeadLetterQueue",
                "ValidateFailureQueue"
            ]
            .map(str::to_owned)
        )
    );
    kept.extend(queues.iter().cloned());
    for name in &kept {
        let r = &t["Resources"][name];
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            assert_eq!(r[policy], "Retain", "{name}: {policy}");
        }
    }
    // Each waits for an operator: an alarm says so.
    for queue in &queues {
        let alarmed = resources(&t).into_iter().any(|(_, r)| {
            r["Type"] == "AWS::CloudWatch::Alarm"
                && r["Properties"]["Dimensions"][0]["Value"]
                    == json!({"Fn::GetAtt": [queue, "QueueName"]})
        });
        assert!(alarmed, "no alarm on {queue}");
    }
}

#[test]
fn the_upload_bucket_aborts_incomplete_uploads_and_expires_replaced_versions() {
    let t = template();
    let rules = t["Resources"]["UploadBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let parameter = |value: &Value| -> (String, i64) {
        let name = value["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("not a parameter: {value}"));
        let p = &t["Parameters"][name];
        assert_eq!(p["Type"], "Number", "{name}");
        (name.to_owned(), p["Default"].as_i64().expect("default"))
    };
    let enabled = |rule: &&Value| rule["Status"] == "Enabled" && rule.get("Prefix").is_none();
    let abort = rules
        .iter()
        .filter(enabled)
        .find_map(|r| r.get("AbortIncompleteMultipartUpload"))
        .expect("a rule aborting incomplete multipart uploads");
    let (name, days) = parameter(&abort["DaysAfterInitiation"]);
    assert!((1..=30).contains(&days), "{name} = {days}");
    let noncurrent = rules
        .iter()
        .filter(enabled)
        .find_map(|r| r.get("NoncurrentVersionExpiration"))
        .expect("a rule expiring noncurrent versions");
    let (name, days) = parameter(&noncurrent["NoncurrentDays"]);
    assert!((7..=365).contains(&days), "{name} = {days}");
}

/// The DynamoDB and SQS actions each function's code calls: the ports' adapters in
/// shared/aws/src (DynamoStatusStore: get_migration/get_file → GetItem, put_* → PutItem,
/// list_files → Query, list_migrations → Query on the index, list_files_in → Query on the
/// files-by-state index and BatchGetItem, count_files_in → Query, delete_file → DeleteItem;
/// SqsJobQueue::send → SendMessage) as each function uses them, and the restore worker's event
/// source mapping (ReceiveMessage, DeleteMessage, GetQueueAttributes). A function that starts
/// calling another action adds it here and in template.yaml.
/// The publisher reads the table's stream (its mapping's calls) and sends its mapping's failure
/// records to the publish failure queue.
const EXPECTED: [(&str, &[&str], &[&str], &str); 5] = [
    (
        "ValidateUploadFunction",
        &["GetItem", "PutItem"],
        &["SendMessage"],
        "RestoreQueue",
    ),
    (
        "RestoreWorkerFunction",
        &["BatchGetItem", "GetItem", "PutItem", "Query"],
        &[
            "DeleteMessage",
            "GetQueueAttributes",
            "ReceiveMessage",
            "SendMessage",
        ],
        "RestoreQueue",
    ),
    (
        "MigrationStatusFunction",
        &["BatchGetItem", "GetItem", "Query"],
        &[],
        "RestoreQueue",
    ),
    (
        "CompleteMigrationFunction",
        &["BatchGetItem", "DeleteItem", "GetItem", "PutItem", "Query"],
        &["SendMessage"],
        "RestoreQueue",
    ),
    (
        "PublishEventsFunction",
        &[
            "DescribeStream",
            "GetRecords",
            "GetShardIterator",
            "ListStreams",
        ],
        &["SendMessage"],
        "PublishFailureQueue",
    ),
];

/// SAM policy templates and managed policies that grant more than a function calls.
const BROAD: [&str; 12] = [
    "DynamoDBCrudPolicy",
    "DynamoDBReadPolicy",
    "DynamoDBWritePolicy",
    "DynamoDBReconfigurePolicy",
    "SQSSendMessagePolicy",
    "SQSPollerPolicy",
    "S3ReadPolicy",
    "S3CrudPolicy",
    "S3WritePolicy",
    "S3FullAccessPolicy",
    "AmazonDynamoDBFullAccess",
    "AmazonSQSFullAccess",
];

#[test]
fn each_function_has_only_the_dynamodb_and_sqs_actions_its_code_calls() {
    let t = template();
    let found = functions(&t);
    assert_eq!(
        found.len(),
        EXPECTED.len(),
        "a function without expectations"
    );
    for (name, dynamodb, sqs, queue) in EXPECTED {
        let f = &t["Resources"][name];
        let policies = &f["Properties"]["Policies"];
        for policy in policies.as_array().expect("Policies") {
            let shown = policy.to_string();
            for broad in BROAD {
                assert!(!shown.contains(broad), "{name}: {broad} in {shown}");
            }
        }
        // A SAM SQS event attaches AWSLambdaSQSQueueExecutionRole (every queue of the account).
        for (event, e) in f["Properties"]["Events"].as_object().into_iter().flatten() {
            assert_ne!(e["Type"], "SQS", "{name}: event {event}");
        }
        let mut seen_dynamodb = BTreeSet::new();
        let mut seen_sqs = BTreeSet::new();
        for statement in statements(policies) {
            let actions = strings(&statement["Action"]);
            let targets = referenced(&statement["Resource"]);
            for action in actions {
                assert!(!action.contains('*'), "{name}: {action}");
                let (service, call) = action.split_once(':').unwrap_or(("", action));
                match service {
                    "dynamodb" => {
                        assert_eq!(
                            targets,
                            BTreeSet::from(["StatusTable".to_owned()]),
                            "{name}: {action}"
                        );
                        seen_dynamodb.insert(call);
                    }
                    "sqs" => {
                        assert_eq!(
                            targets,
                            BTreeSet::from([queue.to_owned()]),
                            "{name}: {action}"
                        );
                        seen_sqs.insert(call);
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(
            seen_dynamodb,
            dynamodb.iter().copied().collect(),
            "{name}: DynamoDB"
        );
        assert_eq!(seen_sqs, sqs.iter().copied().collect(), "{name}: SQS");
    }
    // The restore worker's queue reaches it through a mapping of its own.
    let mapping = resources(&t)
        .into_iter()
        .find(|(_, r)| {
            r["Type"] == "AWS::Lambda::EventSourceMapping"
                && r["Properties"]["FunctionName"] == json!({"Ref": "RestoreWorkerFunction"})
        })
        .map(|(_, r)| &r["Properties"])
        .expect("the restore queue's event source mapping");
    assert_eq!(
        mapping["FunctionName"],
        json!({"Ref": "RestoreWorkerFunction"})
    );
    assert_eq!(
        mapping["EventSourceArn"],
        json!({"Fn::GetAtt": ["RestoreQueue", "Arn"]})
    );
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
}

#[test]
fn functions_read_s3_only_under_the_upload_prefix() {
    let t = template();
    let bucket = "${AWS::StackName}-uploads-${AWS::AccountId}-${AWS::Region}";
    let mut reads = 0;
    for (name, f) in functions(&t) {
        for statement in statements(&f["Properties"]["Policies"]) {
            let actions = strings(&statement["Action"]);
            let resources: Vec<String> = match &statement["Resource"] {
                Value::Array(items) => items.iter().map(Value::to_string).collect(),
                other => vec![other.to_string()],
            };
            for action in actions.iter().filter(|a| a.starts_with("s3:")) {
                assert!(!action.contains('*'), "{name}: {action}");
                for resource in &resources {
                    match *action {
                        "s3:GetObject" | "s3:GetObjectVersion" => {
                            reads += 1;
                            assert!(
                                resource.ends_with("/${UploadPrefix}*\"}"),
                                "{name}: {action} on {resource}"
                            );
                        }
                        // Listing names (a missing key reads as 404, not 403), on the bucket only.
                        "s3:ListBucket" => assert!(
                            resource.contains("UploadBucket\",\"Arn\"")
                                || resource.ends_with(&format!("{bucket}\"}}")),
                            "{name}: {action} on {resource}"
                        ),
                        // The restore worker's staged stripes, under bakdrop's own prefix.
                        "s3:PutObject" | "s3:DeleteObject" => assert!(
                            resource.ends_with("/_bakdrop/*\"}"),
                            "{name}: {action} on {resource}"
                        ),
                        other => panic!("{name}: unexpected {other}"),
                    }
                }
            }
        }
    }
    assert!(reads >= 2, "no S3 reads found");
}

#[test]
fn the_rds_restore_role_is_trusted_only_from_this_account() {
    let t = template();
    let trust = &t["Resources"]["RdsBackupRestoreRole"]["Properties"]["AssumeRolePolicyDocument"]
        ["Statement"];
    let statements = trust.as_array().expect("trust statements");
    assert!(!statements.is_empty());
    for s in statements {
        assert_eq!(s["Principal"], json!({"Service": "rds.amazonaws.com"}));
        let condition = &s["Condition"];
        assert_eq!(
            condition["StringEquals"]["aws:SourceAccount"],
            json!({"Ref": "AWS::AccountId"}),
            "{s}"
        );
        let arns = &condition["ArnLike"]["aws:SourceArn"];
        let arns: Vec<&Value> = arns
            .as_array()
            .map_or_else(|| vec![arns], |a| a.iter().collect());
        assert!(!arns.is_empty(), "{s}");
        for arn in arns {
            let text = arn["Fn::Sub"].as_str().unwrap_or_default();
            assert!(
                text.starts_with("arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:"),
                "{arn}"
            );
        }
    }
}

/// The table the README's local flow creates (infra/events/status-table.json, for `aws dynamodb
/// create-table --cli-input-json`) is the stack's: same keys, attributes and indexes.
#[test]
fn the_local_flows_status_table_is_the_stacks() {
    let t = template();
    let table = &t["Resources"]["StatusTable"]["Properties"];
    let local: Value = serde_json::from_str(include_str!("../../infra/events/status-table.json"))
        .expect("status-table.json");
    for field in [
        "AttributeDefinitions",
        "KeySchema",
        "BillingMode",
        "GlobalSecondaryIndexes",
    ] {
        assert_eq!(local[field], table[field], "{field}");
    }
    // The stream (CreateTable also needs StreamEnabled, which CloudFormation's table lacks).
    let stream = &local["StreamSpecification"];
    assert_eq!(stream["StreamEnabled"], true);
    assert_eq!(
        stream["StreamViewType"],
        table["StreamSpecification"]["StreamViewType"]
    );
}

/// Every write reaches the publisher: the table's stream carries the item before and after,
/// its mapping keeps order, retries from the first record not published and hands what it
/// could not publish in 12 hours to the failure queue; the function may put events on its
/// bus only.
#[test]
fn the_status_tables_stream_feeds_the_publisher_in_order_with_retries_and_a_failure_queue() {
    let t = template();
    assert_eq!(
        t["Resources"]["StatusTable"]["Properties"]["StreamSpecification"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES"
    );
    let mapping = &t["Resources"]["PublishEventsFunctionStatusStream"]["Properties"];
    assert_eq!(
        mapping["FunctionName"],
        json!({"Ref": "PublishEventsFunction"})
    );
    assert_eq!(
        mapping["EventSourceArn"],
        json!({"Fn::GetAtt": ["StatusTable", "StreamArn"]})
    );
    assert_eq!(mapping["StartingPosition"], "TRIM_HORIZON");
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(mapping["ParallelizationFactor"], 1, "in order per item");
    assert_eq!(mapping["MaximumRetryAttempts"], -1);
    let age = mapping["MaximumRecordAgeInSeconds"]
        .as_i64()
        .expect("an age");
    assert!(
        (3600..86400).contains(&age),
        "retried for hours, failed while the stream still holds the records: {age}"
    );
    let publisher = &t["Resources"]["PublishEventsFunction"]["Properties"];
    assert_eq!(
        publisher["Environment"]["Variables"]["EVENT_BUS_NAME"],
        json!({"Fn::If": ["CreatesEventBus", {"Ref": "EventBus"}, "default"]})
    );
    let puts: Vec<&Value> = statements(&publisher["Policies"])
        .into_iter()
        .filter(|s| {
            strings(&s["Action"])
                .iter()
                .any(|a| a.starts_with("events:"))
        })
        .collect();
    assert_eq!(puts.len(), 1);
    assert_eq!(strings(&puts[0]["Action"]), ["events:PutEvents"]);
    assert_eq!(
        puts[0]["Resource"]["Fn::Sub"],
        "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"
    );
    for (name, f) in functions(&t) {
        for s in statements(&f["Properties"]["Policies"]) {
            let events = strings(&s["Action"])
                .into_iter()
                .any(|a| a.starts_with("events:"));
            assert!(!events || name == "PublishEventsFunction", "{name}");
        }
    }
}

/// The optional e-mail: a topic and its subscription only when an address is given, told of
/// Synchronizing, Failed and Succeeded through a rule on bakdrop's bus, which alone may publish.
#[test]
fn the_notification_email_hears_synchronizing_failed_and_succeeded_when_an_address_is_set() {
    let t = template();
    assert_eq!(t["Parameters"]["NotificationEmail"]["Default"], "");
    for name in [
        "NotificationTopic",
        "NotificationSubscription",
        "NotificationTopicPolicy",
        "NotificationRule",
    ] {
        assert_eq!(
            t["Resources"][name]["Condition"], "HasNotificationEmail",
            "{name}"
        );
    }
    let subscription = &t["Resources"]["NotificationSubscription"]["Properties"];
    assert_eq!(subscription["Protocol"], "email");
    assert_eq!(
        subscription["Endpoint"],
        json!({"Ref": "NotificationEmail"})
    );
    let rule = &t["Resources"]["NotificationRule"]["Properties"];
    assert_eq!(
        rule["EventPattern"],
        json!({
            "source": ["bakdrop"],
            "detail-type": ["Migration State Changed"],
            "detail": {"new_state": ["Synchronizing", "Failed", "Succeeded"]}
        })
    );
    assert_eq!(
        rule["EventBusName"],
        json!({"Fn::If": ["CreatesEventBus", {"Ref": "EventBus"}, "default"]})
    );
    assert_eq!(
        rule["Targets"][0]["Arn"],
        json!({"Ref": "NotificationTopic"})
    );
    let policy =
        &t["Resources"]["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(
        policy["Principal"],
        json!({"Service": "events.amazonaws.com"})
    );
    assert_eq!(
        policy["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!({"Fn::GetAtt": ["NotificationRule", "Arn"]})
    );
    // The rule's pattern matches the events bakdrop publishes.
    let states: Vec<&str> = rule["EventPattern"]["detail"]["new_state"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let schema: Value =
        serde_json::from_str(bakdrop_core::report::events::SCHEMA).expect("the events' schema");
    let known = schema["$defs"]["migrationState"]["enum"].to_string();
    for state in states {
        assert!(known.contains(&format!("\"{state}\"")), "{state}");
    }
}

/// Arming Complete by upload lets anyone who may upload cut over: off unless the stack says so.
#[test]
fn arming_complete_by_upload_is_off_unless_the_stack_enables_it() {
    let t = template();
    let parameter = &t["Parameters"]["CompleteByUpload"];
    assert_eq!(parameter["Default"], "disabled");
    assert_eq!(parameter["AllowedValues"], json!(["disabled", "enabled"]));
    assert_eq!(
        t["Resources"]["ValidateUploadFunction"]["Properties"]["Environment"]["Variables"]
            ["COMPLETE_BY_UPLOAD"],
        json!({"Ref": "CompleteByUpload"})
    );
}
