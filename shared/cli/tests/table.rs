//! `bakdrop status|complete|reset --table` against a status table on the local AWS endpoint (started by
//! infra/test.sh) and a target on the TDS test server: the deployed-stack mode of the CLI.

use std::process::Command;

use bakdrop_aws::dynamo::DynamoStatusStore;
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::status::{FileRecord, FileState, MigrationRecord, MigrationState};
use bakdrop_core::ports::StatusStore;
use bakdrop_tds_server::emulator::DatabaseState;
use bakdrop_tds_server::SqlServerEmulator;
use bakdrop_test_support::aws::{unique_name, LocalAws};

fn bakdrop(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bakdrop"))
        .args(args)
        .output()
        .expect("bakdrop runs")
}

#[tokio::test]
async fn status_and_complete_work_on_a_stacks_status_table() {
    let aws = LocalAws::get().await;
    let table = unique_name("status");
    aws.create_status_table(&table).await.expect("table");
    let store = DynamoStatusStore::new(aws.dynamodb.clone(), &table);
    let now = time::OffsetDateTime::now_utc();
    let mut migration = MigrationRecord::new(
        bakdrop_core::DatabaseName::parse("Sales").expect("name"),
        now,
    );
    migration.state = MigrationState::Synchronizing;
    store.put_migration(&migration, None).await.expect("stored");
    let object = ObjectRef {
        bucket: "b".into(),
        key: "Sales/full.bak".into(),
        version_id: None,
        etag: Some("e".into()),
        size: 1,
    };
    let file = FileRecord {
        migration: Some(bakdrop_core::DatabaseName::parse("Sales").expect("name")),
        file_id: object.file_id(),
        object,
        state: FileState::Restored,
        reason: None,
        header: None,
        claim: None,
        restore_started_at: None,
        restore_finished_at: None,
        created_at: now,
        updated_at: now,
    };
    store.put_file(&file, None).await.expect("stored");

    let status = bakdrop(&["status", "Sales", "--table", &table, "--json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(doc["state"], "Synchronizing");
    assert_eq!(
        doc["actions"],
        serde_json::json!(["complete", "arm", "cancel"])
    );
    let listed = bakdrop(&["status", "--table", &table]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("== Sales [Synchronizing]"));

    let emulator = SqlServerEmulator::native();
    emulator.add_database("Sales", DatabaseState::Restoring);
    let (addr, _server) = emulator.start().await.expect("tds server");
    let target = format!(
        "host=127.0.0.1;port={};user=admin;password=Secret#1;tls=off",
        addr.port()
    );
    let refused = bakdrop(&["complete", "Sales", "--table", &table]);
    assert!(
        !refused.status.success(),
        "--table without --target is refused"
    );
    let complete = tokio::task::spawn_blocking({
        let table = table.clone();
        move || {
            bakdrop(&[
                "complete",
                "Sales",
                "--table",
                &table,
                "--target",
                &target,
                "--dialect",
                "native",
            ])
        }
    })
    .await
    .expect("joined");
    let out = String::from_utf8_lossy(&complete.stdout);
    assert!(
        complete.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&complete.stderr)
    );
    assert!(out.contains("Succeeded"), "{out}");
    assert!(
        !out.contains("Secret#1")
            && !String::from_utf8_lossy(&complete.stderr).contains("Secret#1")
    );
    let after = store
        .get_migration("Sales")
        .await
        .expect("read")
        .expect("migration");
    assert_eq!(after.record.state, MigrationState::Succeeded);
    assert_eq!(
        emulator
            .database("Sales")
            .map(|d| format!("{:?}", d.state))
            .as_deref(),
        Some("Online")
    );

    // Reset needs only the table: refused for the online database, done for a cancelled one.
    let online = bakdrop(&["reset", "Sales", "--table", &table]);
    assert_eq!(online.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&online.stderr).contains("AlreadyOnline"),
        "{}",
        String::from_utf8_lossy(&online.stderr)
    );
    let mut hr = MigrationRecord::new(bakdrop_core::DatabaseName::parse("HR").expect("name"), now);
    hr.state = MigrationState::Cancelled;
    store.put_migration(&hr, None).await.expect("stored");
    let mut hr_file = file.clone();
    hr_file.migration = Some(bakdrop_core::DatabaseName::parse("HR").expect("name"));
    store.put_file(&hr_file, None).await.expect("stored");
    let listed = bakdrop(&["status", "HR", "--table", &table, "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(doc["actions"], serde_json::json!(["reset"]));
    let reset = bakdrop(&["reset", "HR", "--table", &table]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert!(String::from_utf8_lossy(&reset.stdout).contains("HR: AwaitingFull"));
    let hr = store.get_migration("HR").await.expect("read").expect("hr");
    assert_eq!(
        (hr.record.state, hr.record.generation),
        (MigrationState::AwaitingFull, 1)
    );
    assert!(store.list_files("HR").await.expect("files").is_empty());
}
