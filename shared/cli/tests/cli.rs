//! The `bakdrop` binary on temporary copies of the committed fixtures: plan, run (script-only and
//! against the TDS test server), status, complete, and the event files of infra/events.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bakdrop_core::backup::summary;
use bakdrop_core::model::job::QueueMessage;
use bakdrop_tds_server::emulator::{BackupKind, DatabaseState};
use bakdrop_tds_server::SqlServerEmulator;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak");
const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/events");

const CHAIN: &[&str] = &[
    "sql2016_full_RestoreTimeClean.bak",
    "sql2016_diff_RestoreTimeClean2.bak",
    "sql2016_log_RestoreTimeClean_1.trn",
    "sql2016_log_RestoreTimeClean_2.trn",
    "sql2016_log_RestoreTimeClean_3.trn",
    "sql2016_log_RestoreTimeClean2_1.trn",
    "sql2016_log_RestoreTimeClean2_2.trn",
    "sql2016_log_RestoreTimeClean2_3.trn",
];
const TWO_SETS: &str = "sql2014_compressed_full_2sets_SharePoint_Config.bak";

/// A fresh folder: the 2016 chain under RestoreTimeClean/ and, with `with_sp`, the two-set
/// compressed backup under SP/.
struct Drop {
    dir: PathBuf,
}

impl Drop {
    fn new(name: &str, files: &[&str], with_sp: bool) -> Drop {
        let dir = std::env::temp_dir().join(format!(
            "bakdrop-cli-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let db = dir.join("RestoreTimeClean");
        std::fs::create_dir_all(&db).expect("create temp folder");
        for f in files {
            std::fs::copy(Path::new(FIXTURES).join(f), db.join(f)).expect("copy fixture");
        }
        if with_sp {
            std::fs::create_dir_all(dir.join("SP")).expect("create SP");
            std::fs::copy(
                Path::new(FIXTURES).join(TWO_SETS),
                dir.join("SP").join(TWO_SETS),
            )
            .expect("copy fixture");
        }
        Drop { dir }
    }
}

impl std::ops::Drop for Drop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bakdrop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bakdrop"))
        .args(args)
        .output()
        .expect("run bakdrop")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn status_json(dir: &Path, database: &str) -> Value {
    let out = bakdrop(&[
        "status",
        database,
        "--json",
        "--dir",
        &dir.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    json(&out)
}

fn applied_files(status: &Value) -> Vec<String> {
    status["applied"]
        .as_array()
        .expect("applied")
        .iter()
        .map(|a| a["file"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const EXPECTED_ORDER: &[&str] = &[
    "sql2016_full_RestoreTimeClean.bak",
    "sql2016_diff_RestoreTimeClean2.bak",
    "sql2016_log_RestoreTimeClean2_1.trn",
    "sql2016_log_RestoreTimeClean2_2.trn",
    "sql2016_log_RestoreTimeClean2_3.trn",
];

#[test]
fn script_only_run_synchronizes_the_chain_and_lists_the_rejected_file() {
    let drop = Drop::new("run", CHAIN, true);
    let dir = drop.dir.display().to_string();
    let out = bakdrop(&["run", &dir]);
    let shown = text(&out);
    // The two-set file is rejected: run says so with its exit status.
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("the version check is skipped"),
        "no version guessed: {shown}"
    );
    assert!(
        shown.contains("Synchronizing — 1 full, 1 differential, 3 log restored"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("rejected   SP/{TWO_SETS}: ")),
        "the two-set file is rejected with a reason: {shown}"
    );
    let script = std::fs::read_to_string(drop.dir.join(".bakdrop/restore.sql")).expect("script");
    assert!(
        script.starts_with("-- NOT EXECUTED (script-only mode)"),
        "{script}"
    );
    let restores: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("exec msdb.dbo.rds_restore_"))
        .collect();
    assert_eq!(restores.len(), 5, "{script}");
    assert!(restores[0].starts_with("exec msdb.dbo.rds_restore_database"));
    assert!(restores[4].starts_with("exec msdb.dbo.rds_restore_log"));

    let status = status_json(&drop.dir, "RestoreTimeClean");
    assert_eq!(status["state"], "Synchronizing", "{status}");
    assert_eq!(applied_files(&status), EXPECTED_ORDER);
    assert_eq!(status["counts"]["skipped"], 3, "{status}");
    assert_eq!(status["applied"][0]["first_lsn"], "39000000048800071");
    assert_eq!(status["applied"][4]["last_lsn"], "39000000064200001");
    let sp = status_json(&drop.dir, "SP");
    assert_eq!(sp["rejected"][0]["file"], TWO_SETS, "{sp}");
    assert!(!sp["rejected"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert_eq!(sp["rejected"][0]["code"], "MoreThanOneBackupSet", "{sp}");

    let done = bakdrop(&["complete", "RestoreTimeClean", "--dir", &dir]);
    assert!(done.status.success(), "{}", text(&done));
    assert!(
        text(&done).contains("RestoreTimeClean: Succeeded"),
        "{}",
        text(&done)
    );
    assert_eq!(
        status_json(&drop.dir, "RestoreTimeClean")["state"],
        "Succeeded"
    );
    let script = std::fs::read_to_string(drop.dir.join(".bakdrop/restore.sql")).expect("script");
    assert!(
        script.contains("exec msdb.dbo.rds_finish_restore"),
        "{script}"
    );
}

/// The events `bakdrop run` wrote (`.bakdrop/events.jsonl`), each checked against the schema.
fn events(dir: &Path) -> Vec<Value> {
    let schema = bakdrop_core::report::events::SchemaValidator::new();
    let text = std::fs::read_to_string(dir.join(".bakdrop/events.jsonl")).expect("events.jsonl");
    text.lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if let Err(e) = schema.check(&event) {
                panic!("{e}\n{event}");
            }
            event
        })
        .collect()
}

/// The states a migration passed through, as its events say, in their order; checks that
/// each event starts where the one before ended (no state is missing) and that the file's
/// order is the order of `(sequence, index)`.
fn states_of(events: &[Value], database: &str) -> Vec<String> {
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail"]["database"] == database)
        .collect();
    let key = |e: &&Value| {
        (
            e["detail"]["sequence"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            e["detail"]["index"].as_u64().unwrap_or_default(),
        )
    };
    let mut sorted = mine.clone();
    sorted.sort_by_key(key);
    assert_eq!(sorted, mine, "the events of {database} are in their order");
    let mut states: Vec<String> = Vec::new();
    for e in mine
        .iter()
        .filter(|e| e["detail-type"] == "Migration State Changed")
    {
        let old = e["detail"]["old_state"].as_str().map(str::to_owned);
        assert_eq!(old, states.last().cloned(), "{database}: {e}");
        states.push(
            e["detail"]["new_state"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    states
}

#[test]
fn a_run_writes_every_state_of_each_migration_in_order_and_one_rejection_to_events_jsonl() {
    let drop = Drop::new("events", CHAIN, true);
    let hostile = "Evil]Näme'; DROP DATABASE x--\u{202e}";
    std::fs::create_dir_all(drop.dir.join(hostile)).expect("mkdir");
    std::fs::copy(
        Path::new(FIXTURES).join(CHAIN[0]),
        drop.dir.join(hostile).join(CHAIN[0]),
    )
    .expect("copy fixture");
    let dir = drop.dir.display().to_string();
    let out = bakdrop(&["run", &dir]);
    // The two-set file is rejected: run says so in its exit status.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = events(&drop.dir);

    assert_eq!(
        states_of(&all, hostile),
        ["AwaitingFull", "Restoring", "Synchronizing"]
    );
    let chain = states_of(&all, "RestoreTimeClean");
    assert_eq!(chain.first().map(String::as_str), Some("AwaitingFull"));
    // Full, differential and three logs: a restore each, Synchronizing after each.
    assert_eq!(
        chain.iter().filter(|s| *s == "Restoring").count(),
        EXPECTED_ORDER.len(),
        "{chain:?}"
    );
    assert_eq!(chain.last().map(String::as_str), Some("Synchronizing"));
    assert_eq!(
        status_json(&drop.dir, "RestoreTimeClean")["state"],
        "Synchronizing"
    );
    let restored: Vec<&str> = all
        .iter()
        .filter(|e| {
            e["detail-type"] == "File Restored" && e["detail"]["database"] == "RestoreTimeClean"
        })
        .filter_map(|e| e["detail"]["file"]["name"].as_str())
        .collect();
    assert_eq!(restored, EXPECTED_ORDER);
    let rejected: Vec<&Value> = all
        .iter()
        .filter(|e| e["detail-type"] == "File Rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(
        rejected[0]["detail"]["file"]["key"],
        format!("SP/{TWO_SETS}")
    );
    assert_eq!(
        rejected[0]["detail"]["reason"]["code"],
        "MoreThanOneBackupSet"
    );
    assert!(states_of(&all, "SP").is_empty(), "no migration of SP");
    let ids: std::collections::BTreeSet<&str> = all
        .iter()
        .filter_map(|e| e["detail"]["id"].as_str())
        .collect();
    assert_eq!(ids.len(), all.len(), "one id per event");

    // Complete: the rest of the way, on the same file.
    let done = bakdrop(&["complete", "RestoreTimeClean", "--dir", &dir]);
    assert!(done.status.success(), "{}", text(&done));
    let chain = states_of(&events(&drop.dir), "RestoreTimeClean");
    assert_eq!(
        chain[chain.len() - 3..],
        ["Synchronizing", "Completing", "Succeeded"]
    );
}

#[test]
fn an_armed_complete_runs_by_itself_once_its_backup_is_restored_and_says_what_it_waits_for() {
    let drop = Drop::new("armed", &CHAIN[..2], false);
    let dir = drop.dir.display().to_string();
    let first = bakdrop(&["run", &dir]);
    assert!(first.status.success(), "{}", text(&first));
    let last = CHAIN[CHAIN.len() - 1];
    let armed = bakdrop(&[
        "complete",
        "RestoreTimeClean",
        "--when-restored",
        last,
        "--dir",
        &dir,
    ]);
    let shown = text(&armed);
    assert!(armed.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("Complete armed: waits for {last} to be restored")),
        "{shown}"
    );
    let status = status_json(&drop.dir, "RestoreTimeClean");
    assert_eq!(status["armed"]["last_backup"], last, "{status}");
    for f in &CHAIN[2..] {
        std::fs::copy(
            Path::new(FIXTURES).join(f),
            drop.dir.join("RestoreTimeClean").join(f),
        )
        .expect("copy fixture");
    }
    let second = bakdrop(&["run", &dir]);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(
        status_json(&drop.dir, "RestoreTimeClean")["state"],
        "Succeeded"
    );
    let all = events(&drop.dir);
    let chain = states_of(&all, "RestoreTimeClean");
    assert_eq!(
        chain[chain.len() - 3..],
        ["Synchronizing", "Completing", "Succeeded"]
    );
    assert_eq!(
        all.iter()
            .filter(|e| e["detail-type"] == "Complete Armed")
            .count(),
        1
    );

    // Armed with a backup that never arrives: Synchronizing, and the status says what for.
    let never = Drop::new("armed-never", CHAIN, false);
    let dir = never.dir.display().to_string();
    assert!(bakdrop(&["run", &dir]).status.success());
    let armed = bakdrop(&[
        "complete",
        "RestoreTimeClean",
        "--when-restored",
        "tail.trn",
        "--dir",
        &dir,
    ]);
    assert!(armed.status.success(), "{}", text(&armed));
    assert!(bakdrop(&["run", &dir]).status.success());
    let status = status_json(&never.dir, "RestoreTimeClean");
    assert_eq!(status["state"], "Synchronizing", "{status}");
    assert!(
        status["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("Complete armed: waits for tail.trn to be restored"),
        "{status}"
    );
    let disarmed = bakdrop(&["complete", "RestoreTimeClean", "--disarm", "--dir", &dir]);
    assert!(disarmed.status.success(), "{}", text(&disarmed));
    assert!(status_json(&never.dir, "RestoreTimeClean")["armed"].is_null());
    assert_eq!(
        events(&never.dir)
            .iter()
            .filter(|e| e["detail-type"] == "Complete Disarmed")
            .count(),
        1
    );
}

#[test]
fn a_second_run_applies_nothing_again() {
    let drop = Drop::new("twice", CHAIN, false);
    let dir = drop.dir.display().to_string();
    let first = bakdrop(&["run", &dir]);
    assert!(first.status.success(), "{}", text(&first));
    let script = std::fs::read_to_string(drop.dir.join(".bakdrop/restore.sql")).expect("script");
    let state = std::fs::read_to_string(drop.dir.join(".bakdrop/status.json")).expect("state");

    let second = bakdrop(&["run", &dir]);
    let shown = text(&second);
    assert!(second.status.success(), "{shown}");
    assert!(!shown.contains("submitted"), "{shown}");
    assert_eq!(
        shown.matches("unchanged  RestoreTimeClean/").count(),
        CHAIN.len(),
        "{shown}"
    );
    assert_eq!(
        std::fs::read_to_string(drop.dir.join(".bakdrop/restore.sql")).expect("script"),
        script
    );
    assert_eq!(
        std::fs::read_to_string(drop.dir.join(".bakdrop/status.json")).expect("state"),
        state
    );
}

#[test]
fn cancel_then_reset_lets_the_next_run_migrate_the_folder_again() {
    let drop = Drop::new("reset", CHAIN, false);
    let dir = drop.dir.display().to_string();
    let first = bakdrop(&["run", &dir]);
    assert!(first.status.success(), "{}", text(&first));
    let early = bakdrop(&["reset", "RestoreTimeClean", "--dir", &dir]);
    assert_eq!(early.status.code(), Some(1), "{}", text(&early));
    assert!(text(&early).contains("NotCancelled"), "{}", text(&early));
    let cancel = bakdrop(&["cancel", "RestoreTimeClean", "--dir", &dir]);
    assert!(cancel.status.success(), "{}", text(&cancel));
    let refused = bakdrop(&["run", &dir]);
    assert!(
        !text(&refused).contains("submitted"),
        "a cancelled migration restores nothing: {}",
        text(&refused)
    );
    let reset = bakdrop(&["reset", "RestoreTimeClean", "--dir", &dir]);
    assert!(reset.status.success(), "{}", text(&reset));
    assert!(
        text(&reset).contains("RestoreTimeClean: AwaitingFull"),
        "{}",
        text(&reset)
    );
    let again = bakdrop(&["run", &dir]);
    assert!(again.status.success(), "{}", text(&again));
    let status = status_json(&drop.dir, "RestoreTimeClean");
    assert_eq!(status["state"], "Synchronizing", "{status}");
    assert_eq!(applied_files(&status), EXPECTED_ORDER);
}

#[test]
fn complete_is_refused_while_the_chain_has_no_full() {
    let drop = Drop::new("nofull", &CHAIN[5..], false);
    let dir = drop.dir.display().to_string();
    let run = bakdrop(&["run", &dir, "--target-version", "2016"]);
    // Without a full the database cannot proceed: run says so with its exit status.
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let status = status_json(&drop.dir, "RestoreTimeClean");
    assert_eq!(status["state"], "AwaitingFull", "{status}");
    assert_eq!(status["waiting"][0]["code"], "NoFullYet", "{status}");
    let done = bakdrop(&["complete", "RestoreTimeClean", "--dir", &dir]);
    assert_eq!(done.status.code(), Some(1), "{}", text(&done));
}

#[test]
fn plan_json_gives_full_then_differential_then_logs() {
    let drop = Drop::new("plan", CHAIN, false);
    let out = bakdrop(&[
        "plan",
        &drop.dir.display().to_string(),
        "--json",
        "--dialect",
        "native",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let plans = json(&out);
    let plan = &plans[0];
    assert_eq!(plan["database"], "RestoreTimeClean");
    let steps = plan["steps"].as_array().expect("steps");
    let kinds: Vec<&str> = steps
        .iter()
        .map(|s| s["backup_type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["full", "differential", "log", "log", "log"]);
    let files: Vec<String> = steps
        .iter()
        .map(|s| {
            Path::new(s["files"][0].as_str().unwrap_or(""))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(files, EXPECTED_ORDER);
    assert_eq!(steps[2]["first_lsn"], "39000000058800001");
    let full = steps[0]["sql"].as_str().unwrap_or("");
    assert!(
        full.starts_with("DECLARE @db sysname = N'RestoreTimeClean', @s1 nvarchar(4000) = N'/"),
        "{full}"
    );
    assert!(
        full.contains("RESTORE DATABASE @db FROM DISK = @s1 WITH NORECOVERY, MOVE @m1 TO @p1, MOVE @m2 TO @p2, STATS = 5"),
        "{full}"
    );
    assert_eq!(plan["skipped"].as_array().map(Vec::len), Some(3), "{plan}");

    let rds = bakdrop(&["plan", &drop.dir.display().to_string()]);
    let shown = text(&rds);
    assert!(
        shown.contains("arn:aws:s3:::<bucket>/RestoreTimeClean/sql2016_full_RestoreTimeClean.bak"),
        "{shown}"
    );
}

#[test]
fn plan_exits_2_when_a_database_has_no_full() {
    let drop = Drop::new("plan-nofull", &CHAIN[5..], false);
    let out = bakdrop(&["plan", &drop.dir.display().to_string(), "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let plans = json(&out);
    assert!(plans[0]["steps"].as_array().is_some_and(Vec::is_empty));
    assert!(
        !plans[0]["problems"].as_array().is_some_and(Vec::is_empty),
        "{plans}"
    );
}

/// A local file name may hold a newline or a terminal escape: `plan` and `inspect` show it escaped
/// (`\n`, `\u{1b}`), in their text output and in their errors, never raw.
#[test]
fn plan_and_inspect_show_control_characters_in_file_names_escaped() {
    let drop = Drop::new("escape", &[], false);
    let db = drop.dir.join("RestoreTimeClean");
    let hostile = "evil\n\u{1b}[31mred\r\u{202e}kab.bak";
    let shown = "evil\\n\\u{1b}[31mred\\r\\u{202e}kab.bak";
    std::fs::copy(Path::new(FIXTURES).join(CHAIN[0]), db.join(hostile)).expect("copy fixture");
    let raw = |o: &Output| -> Vec<String> {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        all.chars()
            .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}')
            .map(|c| c.escape_unicode().to_string())
            .collect()
    };
    let path = db.join(hostile).display().to_string();
    let dir = drop.dir.display().to_string();
    for (what, out) in [
        ("inspect", bakdrop(&["inspect", &path])),
        ("plan rds", bakdrop(&["plan", &dir])),
        (
            "plan native",
            bakdrop(&["plan", &dir, "--dialect", "native"]),
        ),
        (
            "inspect error",
            bakdrop(&["inspect", &format!("{path}.missing")]),
        ),
    ] {
        let all = text(&out);
        assert!(raw(&out).is_empty(), "{what}: raw {:?} in {all}", raw(&out));
        assert!(all.contains(shown), "{what}: {all}");
        assert!(!all.contains("evil\n"), "{what}: {all}");
    }
    // The key holds control characters: `run` rejects it (a key that could name another file on
    // the target), and so does the plan, which says why instead of printing T-SQL.
    let native = text(&bakdrop(&["plan", &dir, "--dialect", "native"]));
    assert!(native.contains("InvalidKey"), "{native}");
    assert!(native.contains("rename the folder or file"), "{native}");
    assert!(!native.contains("RESTORE DATABASE"), "{native}");
    // JSON stays JSON (serde escapes): the name comes back as it is.
    let plans = json(&bakdrop(&["plan", &dir, "--json"]));
    assert!(
        plans[0]["rejected"][0]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(hostile)),
        "{plans}"
    );
    assert_eq!(plans[0]["rejected"][0]["code"], "InvalidKey", "{plans}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_the_tds_test_server_restores_through_tiberius() {
    let emulator = SqlServerEmulator::native();
    emulator.set_restore_duration(None, Duration::from_millis(100));
    let (addr, handle) = emulator.start().await.expect("start the emulator");
    let drop = Drop::new("tds", CHAIN, false);
    let dir = drop.dir.display().to_string();
    // The server reads the files where `run` says they are (RESTORE FROM DISK = the folder).
    let root = std::fs::canonicalize(&drop.dir).expect("canonical");
    for f in CHAIN {
        let bytes = std::fs::read(Path::new(FIXTURES).join(f)).expect("fixture");
        let path = root.join("RestoreTimeClean").join(f);
        emulator.register_backup(
            &path.display().to_string(),
            bakdrop_test_support::tds::backup_info(&bakdrop_test_support::tds::header_of(&bytes)),
        );
    }
    let connection = format!(
        "host=127.0.0.1;port={};user=sa;password=Secret-123;tls=off",
        addr.port()
    );
    let args = vec![
        "run".to_owned(),
        dir.clone(),
        "--target".to_owned(),
        connection,
        "--dialect".to_owned(),
        "native".to_owned(),
        "--policy".to_owned(),
        "not-newer".to_owned(),
        "--poll-interval-ms".to_owned(),
        "150".to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bakdrop(&args)
    })
    .await
    .expect("join");
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        !shown.contains("Secret-123"),
        "the password is never printed: {shown}"
    );
    assert!(
        shown.contains("SQL Server 2022"),
        "the target's own version: {shown}"
    );

    let db = emulator
        .database("RestoreTimeClean")
        .expect("database restored");
    assert_eq!(db.state, DatabaseState::Restoring);
    let kinds: Vec<BackupKind> = db.restored_from.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            BackupKind::Full,
            BackupKind::Differential,
            BackupKind::Log,
            BackupKind::Log,
            BackupKind::Log
        ]
    );
    let root = std::fs::canonicalize(&drop.dir).expect("canonical");
    for (record, file) in db.restored_from.iter().zip(EXPECTED_ORDER) {
        assert_eq!(
            record.sources,
            [format!("{}/RestoreTimeClean/{file}", root.display())],
            "{record:?}"
        );
        assert!(!record.recovery);
        assert!(record.via.contains("agent job"), "{record:?}");
    }
    let status = status_json(&drop.dir, "RestoreTimeClean");
    assert_eq!(status["state"], "Synchronizing", "{status}");
    assert_eq!(applied_files(&status), EXPECTED_ORDER);

    // Complete acts where the run restored, or refuses: never a script-only "Succeeded" for a
    // database that is still RESTORING on that server.
    let port = addr.port();
    let cli = move |args: Vec<String>, env: Option<(&'static str, &'static str)>| {
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_bakdrop"));
            command.args(&args);
            if let Some((name, value)) = env {
                command.env(name, value);
            }
            command.output().expect("bakdrop runs")
        })
    };
    let complete = |extra: &[&str]| {
        let mut args = vec![
            "complete".to_owned(),
            "RestoreTimeClean".to_owned(),
            "--dir".to_owned(),
            dir.clone(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    };
    let refused = cli(complete(&[]), None).await.expect("join");
    let shown = text(&refused);
    assert!(!refused.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("127.0.0.1:{port}")) && shown.contains("password"),
        "{shown}"
    );
    let with_env = format!("host=127.0.0.1;port={port};user=sa;password-env=BAKDROP_PW;tls=off");
    let contradicted = cli(
        complete(&["--target", &with_env, "--dialect", "rds"]),
        Some(("BAKDROP_PW", "Secret-123")),
    )
    .await
    .expect("join");
    assert!(!contradicted.status.success(), "{}", text(&contradicted));
    assert!(
        text(&contradicted).contains("dialect"),
        "{}",
        text(&contradicted)
    );
    let elsewhere = cli(
        complete(&[
            "--target",
            "host=127.0.0.2;port=1433;user=sa;password=x;tls=off",
        ]),
        None,
    )
    .await
    .expect("join");
    assert!(!elsewhere.status.success(), "{}", text(&elsewhere));
    assert_eq!(
        emulator.database("RestoreTimeClean").map(|d| d.state),
        Some(DatabaseState::Restoring),
        "nothing done by the refusals"
    );
    assert_eq!(
        status_json(&drop.dir, "RestoreTimeClean")["state"],
        "Synchronizing"
    );

    // A run that names where its password comes from is remembered with it: Complete needs no
    // --target then, and brings the database online on that server.
    let rerun = cli(
        vec![
            "run".into(),
            dir.clone(),
            "--target".into(),
            with_env.clone(),
            "--dialect".into(),
            "native".into(),
            "--policy".into(),
            "not-newer".into(),
        ],
        Some(("BAKDROP_PW", "Secret-123")),
    )
    .await
    .expect("join");
    assert!(rerun.status.success(), "{}", text(&rerun));
    let completed = cli(complete(&[]), Some(("BAKDROP_PW", "Secret-123")))
        .await
        .expect("join");
    assert!(completed.status.success(), "{}", text(&completed));
    assert_eq!(
        emulator.database("RestoreTimeClean").map(|d| d.state),
        Some(DatabaseState::Online)
    );
    assert_eq!(
        status_json(&drop.dir, "RestoreTimeClean")["state"],
        "Succeeded"
    );
    let state =
        std::fs::read_to_string(drop.dir.join(".bakdrop").join("status.json")).expect("state file");
    assert!(!state.contains("Secret-123"), "no password on disk");
    handle.shutdown().await;
}

/// A copy of the drop folder made without following links (`cp -r` of the committed dropzone)
/// holds links to nothing: each is reported by name with why, and `run` and `plan` exit non-zero.
#[cfg(unix)]
#[test]
fn a_dangling_link_in_the_folder_is_reported_by_name_and_fails_the_run() {
    let drop = Drop::new("dangling", &CHAIN[..1], false);
    let link = drop
        .dir
        .join("RestoreTimeClean")
        .join("sql2016_log_gone.trn");
    std::os::unix::fs::symlink("../../nowhere/sql2016_log_gone.trn", &link).expect("link");
    let dir = drop.dir.display().to_string();
    let run = bakdrop(&["run", &dir]);
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("unreadable RestoreTimeClean/sql2016_log_gone.trn: a link to ../../nowhere/sql2016_log_gone.trn"),
        "{shown}"
    );
    let plan = bakdrop(&["plan", &dir, "--json"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        text(&plan).contains("sql2016_log_gone.trn"),
        "{}",
        text(&plan)
    );
}

/// `--target` takes the password from an environment variable or a file (a password holding
/// `;`, `=` and spaces logs in), and an inline password holding `;` is refused without any part
/// of it on the screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_password_comes_from_the_environment_or_a_file_and_is_never_shown() {
    let password = "Qz7;Kx9=Vb2 Wm4;Jp6";
    let pieces = ["qz7", "kx9", "vb2", "wm4", "jp6"];
    let emulator = SqlServerEmulator::native();
    emulator.require_login("sa", password);
    let (addr, handle) = emulator.start().await.expect("start the emulator");
    // A folder without backups: `run` logs in (to read the target's version) and ends.
    let drop = Drop::new("password", &[], false);
    let dir = drop.dir.display().to_string();
    let file = drop.dir.join(".password");
    std::fs::write(&file, format!("{password}\n")).expect("password file");
    let base = format!("host=127.0.0.1;port={};user=sa;tls=off", addr.port());
    let run = move |target: String, env: Option<(&'static str, &'static str)>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_bakdrop"));
            command.args(["run", &dir, "--dialect", "native", "--target", &target]);
            if let Some((name, value)) = env {
                command.env(name, value);
            }
            command.output().expect("run bakdrop")
        })
    };
    for (what, out) in [
        (
            "password-env",
            run(
                format!("{base};password-env=BAKDROP_TEST_TARGET_PASSWORD"),
                Some(("BAKDROP_TEST_TARGET_PASSWORD", password)),
            )
            .await
            .expect("join"),
        ),
        (
            "password-file",
            run(format!("{base};password-file={}", file.display()), None)
                .await
                .expect("join"),
        ),
    ] {
        let shown = text(&out);
        assert!(out.status.success(), "{what}: {shown}");
        assert!(shown.contains("SQL Server 2022"), "{what}: {shown}");
    }
    // The wrong password from the environment: refused by the server, not shown.
    let wrong = run(
        format!("{base};password-env=BAKDROP_TEST_TARGET_PASSWORD"),
        Some(("BAKDROP_TEST_TARGET_PASSWORD", "Qz7;Kx9=Vb2 Wm4;Jp7")),
    )
    .await
    .expect("join");
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    // Inline, the ';' cuts it: refused, and nothing of it is printed.
    let inline = run(format!("{base};password={password}"), None)
        .await
        .expect("join");
    assert_eq!(inline.status.code(), Some(2), "{}", text(&inline));
    for out in [&wrong, &inline] {
        let shown = text(out).to_lowercase();
        for piece in pieces {
            assert!(!shown.contains(piece), "{piece} shown: {shown}");
        }
    }
    assert!(
        text(&inline).contains("password-env=NAME or password-file=PATH"),
        "{}",
        text(&inline)
    );
    handle.shutdown().await;
}

#[test]
fn event_files_parse_as_their_functions_expect() {
    use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
    use aws_lambda_events::event::sqs::SqsEvent;

    let read = |name: &str| -> Value {
        let body = std::fs::read_to_string(Path::new(EVENTS).join(name)).expect("event file");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}"))
    };

    // restore-worker: SQS events whose bodies are restore-queue messages.
    let restore: SqsEvent =
        serde_json::from_value(read("restore-worker-sqs-restore.json")).expect("sqs");
    let body = restore.records[0].body.as_deref().expect("body");
    let QueueMessage::Restore(job) = QueueMessage::from_json(body).expect("restore message") else {
        panic!("not a restore message: {body}");
    };
    assert_eq!(job.migration, "RestoreTimeClean");
    assert_eq!(job.file_id, job.object.file_id());
    // The header is the real fixture's, as validation summarizes it.
    let bytes = std::fs::read(Path::new(FIXTURES).join("sql2016_full_RestoreTimeClean.bak"))
        .expect("fixture");
    let head = &bytes[..bytes.len().min(bakdrop_core::backup::HEAD_LIMIT)];
    let tail = &bytes[bytes.len().saturating_sub(bakdrop_core::backup::TAIL_LIMIT)..];
    let header = summary::summarize(head, Some(tail), bytes.len() as u64).expect("fixture summary");
    assert_eq!(job.header, header);
    assert_eq!(job.object.size, bytes.len() as u64);
    let poll: SqsEvent = serde_json::from_value(read("restore-worker-sqs-poll.json")).expect("sqs");
    let body = poll.records[0].body.as_deref().expect("body");
    assert!(matches!(
        QueueMessage::from_json(body).expect("poll message"),
        QueueMessage::Poll { ref migration, .. } if migration == "RestoreTimeClean"
    ));

    // migration-status: a direct invoke and a Function URL request.
    assert_eq!(
        read("migration-status-invoke.json")["database"],
        "RestoreTimeClean"
    );
    let url_value = read("migration-status-url.json");
    let url: LambdaFunctionUrlRequest =
        serde_json::from_value(url_value.clone()).expect("function URL request");
    assert_eq!(url.raw_path.as_deref(), Some("/RestoreTimeClean"));
    assert_eq!(url.request_context.http.method.as_deref(), Some("GET"));
    assert!(url_value.get("requestContext").is_some() && url_value.get("rawPath").is_some());

    // complete-migration: {"action", ...CompleteRequest}.
    for (name, action) in [
        ("complete-migration-complete.json", "complete"),
        ("complete-migration-cancel.json", "cancel"),
        ("complete-migration-reset.json", "reset"),
        ("complete-migration-revalidate.json", "revalidate"),
        ("complete-migration-arm.json", "arm"),
        ("complete-migration-disarm.json", "disarm"),
    ] {
        let value = read(name);
        assert_eq!(value["action"], action);
        // As strictly as the function reads it: no field it does not know.
        let invoke = complete_migration::handler::Invoke::parse(value)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(invoke.request.database, "RestoreTimeClean");
    }
}

/// `bakdrop … | head`: the reader goes away; bakdrop stops quietly (status 0, nothing on standard
/// error) instead of panicking on the closed pipe. The output (~100 KiB) is larger than a pipe's
/// buffer, so the write fails whether or not it started before the pipe was closed.
#[test]
fn a_closed_stdout_pipe_ends_bakdrop_quietly() {
    use std::io::Read;
    let mut files: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
        .filter(|p| p.ends_with(".bak") || p.ends_with(".trn"))
        .collect();
    files.extend(files.clone());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bakdrop"))
        .arg("inspect")
        .args(&files)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bakdrop starts");
    let mut first = [0u8; 16];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("the first bytes");
    let out = child.wait_with_output().expect("bakdrop ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// A native plan of every fixture (the Done-when of the real-targets issue): a `MOVE` for each
/// logical file of a full backup, `CHECKSUM` exactly for backups that have checksums, and two
/// target names for one backup never share a physical file name.
#[test]
fn native_plans_move_every_file_and_verify_checksums_only_where_the_backup_has_them() {
    let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".bak") || n.ends_with(".trn"))
        .map(|n| format!("{FIXTURES}/{n}"))
        .collect();
    names.sort();
    // The fixtures one by one: each planned as the database inside it.
    let mut plan = vec!["plan", "--dialect", "native", "--json"];
    plan.extend(names.iter().map(String::as_str));
    let out = bakdrop(&plan);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", text(&out));
    let plans = json(&out);
    let mut args = vec!["inspect", "--json"];
    args.extend(names.iter().map(String::as_str));
    let inspected = json(&bakdrop(&args));
    let header = |file: &str| -> &Value {
        let name = Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        inspected
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|i| i["path"].as_str().is_some_and(|p| p.ends_with(name)))
            })
            .map(|i| &i["backup"]["sets"][0])
            .unwrap_or_else(|| panic!("{name} not inspected: {inspected}"))
    };
    let mut fulls = 0;
    for plan in plans.as_array().expect("plans") {
        for step in plan["steps"].as_array().expect("steps") {
            let sql = step["sql"].as_str().expect("sql");
            let first = step["files"][0].as_str().expect("file");
            let set = header(first);
            let checksums = set["has_checksums"].as_bool().expect("has_checksums");
            assert_eq!(sql.contains("CHECKSUM"), checksums, "{first}: {sql}");
            if step["backup_type"] == "full" {
                fulls += 1;
                let files = set["files"].as_array().expect("files");
                for (i, f) in files.iter().enumerate() {
                    let logical = f["logical_name"].as_str().expect("logical");
                    let n = i + 1;
                    assert!(
                        sql.contains(&format!(
                            "@m{n} sysname = N'{}'",
                            logical.replace('\'', "''")
                        )),
                        "{first}: no MOVE for {logical}: {sql}"
                    );
                    assert!(sql.contains(&format!("MOVE @m{n} TO @p{n}")), "{sql}");
                    // Windows paths of the source never reach the (Linux default) target.
                    let source_path = f["physical_name"].as_str().expect("physical");
                    assert!(!sql.contains(source_path), "{sql}");
                }
                assert_eq!(sql.matches("MOVE @m").count(), files.len(), "{sql}");
            } else {
                assert!(!sql.contains("MOVE"), "{sql}");
            }
        }
    }
    assert!(fulls >= 8, "only {fulls} full backups planned");

    // One backup, two target databases: no physical file in common.
    let full = format!("{FIXTURES}/sql2016_full_RestoreTimeClean.bak");
    let physical = |database: &str| -> Vec<String> {
        let out = bakdrop(&[
            "plan",
            &full,
            "--dialect",
            "native",
            "--json",
            "--database",
            database,
            "--data-dir",
            "/data",
            "--log-dir",
            "/log",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let sql = json(&out)[0]["steps"][0]["sql"]
            .as_str()
            .expect("sql")
            .to_owned();
        sql.split("nvarchar(4000) = N'")
            .skip(2) // @s1, the backup itself
            .map(|rest| rest.split('\'').next().unwrap_or("").to_owned())
            .collect()
    };
    let (a, b) = (physical("Sales"), physical("Sales_copy"));
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(
        a[0].starts_with("/data/Sales_RestoreTimeClean_") && a[0].ends_with(".mdf"),
        "{a:?}"
    );
    assert!(
        a[1].starts_with("/log/Sales_RestoreTimeClean_log_") && a[1].ends_with(".ldf"),
        "{a:?}"
    );
    assert!(a.iter().all(|p| !b.contains(p)), "{a:?} vs {b:?}");
}

/// `inspect --json` says how many bytes it read per file: validation's reads (the first 64 KiB
/// and the last 64 KiB), also for compressed backups, whose header blocks are in their first
/// chunks.
#[test]
fn inspect_reports_the_bytes_it_read_per_file() {
    let compressed = [
        "sql2014_compressed_full_1set_SharePoint_Config.bak",
        "sql2014_compressed_full_2sets_SharePoint_Config.bak",
        "sql2022_compressed_full_Library.bak",
        "sql2016_full_RestoreTimeClean.bak",
    ];
    let paths: Vec<String> = compressed
        .iter()
        .map(|n| format!("{FIXTURES}/{n}"))
        .collect();
    let mut args = vec!["inspect", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let out = bakdrop(&args);
    let inspected = json(&out);
    for (name, report) in compressed
        .iter()
        .zip(inspected.as_array().expect("reports"))
    {
        let read = report["bytes_read"].as_u64().expect("bytes_read");
        assert_eq!(read, 128 << 10, "{name}: {report}");
        assert_eq!(report["reads"].as_u64(), Some(2), "{name}");
        assert!(
            report["backup"]["sets"][0]["database_name"].is_string(),
            "{name}: {report}"
        );
    }
}

#[test]
fn plan_writes_nothing_in_the_folder_it_runs_in() {
    let drop = Drop::new("plan-writes-nothing", CHAIN, false);
    let cwd = drop.dir.join("elsewhere");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    let out = Command::new(env!("CARGO_BIN_EXE_bakdrop"))
        .args([
            "plan",
            &drop.dir.join("RestoreTimeClean").display().to_string(),
        ])
        .current_dir(&cwd)
        .output()
        .expect("run bakdrop");
    assert!(out.status.success(), "{}", text(&out));
    let written: Vec<_> = std::fs::read_dir(&cwd)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(written.is_empty(), "plan wrote {written:?}");
    assert!(!drop.dir.join(".bakdrop").exists(), "plan keeps no state");
}
