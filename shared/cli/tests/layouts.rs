//! A DBA's folders and habits, on temporary copies of the committed fixtures: Ola
//! Hallengren's layout, the preview being what runs, versions never guessed from another folder,
//! re-checking files rejected for the settings, exit codes, `inspect DIR`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bakdrop_core::backup::{parse, HEAD_LIMIT, TAIL_LIMIT};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/bak");

const FULL: &str = "sql2016_full_RestoreTimeClean.bak";
const DIFF: &str = "sql2016_diff_RestoreTimeClean2.bak";
const LOGS: &[&str] = &[
    "sql2016_log_RestoreTimeClean_1.trn",
    "sql2016_log_RestoreTimeClean_2.trn",
    "sql2016_log_RestoreTimeClean_3.trn",
    "sql2016_log_RestoreTimeClean2_1.trn",
    "sql2016_log_RestoreTimeClean2_2.trn",
    "sql2016_log_RestoreTimeClean2_3.trn",
];

/// A temporary folder, removed at the end.
struct Folder(PathBuf);

impl Folder {
    fn new(name: &str) -> Folder {
        let dir = std::env::temp_dir().join(format!(
            "bakdrop-layouts-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("temp folder");
        Folder(dir)
    }

    /// Copies the fixture `file` to `relative` (folders created).
    fn put(&self, relative: &str, file: &str) -> &Folder {
        let bytes = std::fs::read(Path::new(FIXTURES).join(file)).expect("fixture");
        self.write(relative, &bytes)
    }

    fn write(&self, relative: &str, bytes: &[u8]) -> &Folder {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::write(path, bytes).expect("write");
        self
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every migration's status after `run` (status --json of all).
fn statuses(dir: &Folder) -> Vec<Value> {
    let out = bakdrop(&["status", "--json", "--dir", &dir.arg()]);
    assert!(out.status.success(), "{}", text(&out));
    json(&out).as_array().cloned().unwrap_or_default()
}

fn status_of<'a>(all: &'a [Value], database: &str) -> &'a Value {
    all.iter()
        .find(|s| s["database"] == database)
        .unwrap_or_else(|| panic!("no migration {database}: {all:?}"))
}

/// The files restored, in order, per database (a step's stripe files in family order).
fn restored(all: &[Value]) -> Vec<(String, Vec<String>)> {
    all.iter()
        .filter(|s| s["database"] != "")
        .map(|s| {
            let files = s["applied"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .flat_map(|step| {
                            step["files"]
                                .as_array()
                                .cloned()
                                .unwrap_or_default()
                                .into_iter()
                                .map(|f| f.as_str().unwrap_or_default().to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            (s["database"].as_str().unwrap_or_default().to_owned(), files)
        })
        .filter(|(_, files): &(String, Vec<String>)| !files.is_empty())
        .collect()
}

/// The files `plan --json` lists in its steps, in order, per database.
fn planned(plans: &Value) -> Vec<(String, Vec<String>)> {
    plans
        .as_array()
        .expect("plans")
        .iter()
        .filter(|p| p["database"] != "")
        .map(|p| {
            let files = p["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .flat_map(|s| {
                    s["files"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|f| file_name(f.as_str().unwrap_or_default()))
                })
                .collect();
            (p["database"].as_str().unwrap_or_default().to_owned(), files)
        })
        .filter(|(_, files): &(String, Vec<String>)| !files.is_empty())
        .collect()
}

/// A second full backup of the 2016 database, taken later: the fixture with another
/// BackupSetGUID and a LastLSN as far as the first log backup reaches (every fixture is real;
/// none holds two fulls of one database, so the second one is made from the first).
fn later_full() -> Vec<u8> {
    let mut bytes = std::fs::read(Path::new(FIXTURES).join(FULL)).expect("fixture");
    let head = &bytes[..bytes.len().min(HEAD_LIMIT)];
    let tail = &bytes[bytes.len() - TAIL_LIMIT..];
    let set = parse(head, Some(tail), bytes.len() as u64)
        .expect("parsed")
        .sets[0]
        .clone();
    let lsn = |value: u128| -> [u8; 10] {
        let vlf = (value / 1_000_000_000_000_000) as u32;
        let block = ((value / 100_000) % 10_000_000_000) as u32;
        let slot = (value % 100_000) as u16;
        let mut out = [0u8; 10];
        out[..4].copy_from_slice(&vlf.to_le_bytes());
        out[4..8].copy_from_slice(&block.to_le_bytes());
        out[8..].copy_from_slice(&slot.to_le_bytes());
        out
    };
    let replace = |bytes: &mut Vec<u8>, from: &[u8], to: &[u8]| {
        let mut n = 0;
        let mut at = 0;
        while let Some(i) = bytes[at..].windows(from.len()).position(|w| w == from) {
            bytes[at + i..at + i + to.len()].copy_from_slice(to);
            at += i + to.len();
            n += 1;
        }
        assert!(n > 0, "pattern not found");
    };
    let new_guid = uuid::Uuid::from_u128(0x5eca_0d00_0000_4000_8000_0000_0000_0001);
    replace(
        &mut bytes,
        &set.backup_set_guid.to_bytes_le(),
        &new_guid.to_bytes_le(),
    );
    // LastLSN of RestoreTimeClean_1.trn: the later full's chain goes on with log _2.
    replace(
        &mut bytes,
        &lsn(set.last_lsn.value()),
        &lsn(39_000_000_054_100_001),
    );
    let head = &bytes[..bytes.len().min(HEAD_LIMIT)];
    let tail = &bytes[bytes.len() - TAIL_LIMIT..];
    let again = parse(head, Some(tail), bytes.len() as u64).expect("still a backup");
    assert_eq!(again.sets[0].backup_set_guid, new_guid);
    assert_eq!(again.sets[0].last_lsn.value(), 39_000_000_054_100_001);
    bytes
}

/// An Ola Hallengren tree: `Server$Instance/<Database>/FULL|DIFF|LOG/<file>`, two databases of
/// two SQL Server versions.
fn ola_tree(name: &str) -> Folder {
    let f = Folder::new(name);
    let db = "SQL01$PROD/RestoreTimeClean";
    f.put(
        &format!("{db}/FULL/SQL01$PROD_RestoreTimeClean_FULL_20190502_210055.bak"),
        FULL,
    )
    .put(
        &format!("{db}/DIFF/SQL01$PROD_RestoreTimeClean_DIFF_20190502_211556.bak"),
        DIFF,
    );
    for (i, log) in LOGS.iter().enumerate() {
        f.put(
            &format!("{db}/LOG/SQL01$PROD_RestoreTimeClean_LOG_20190502_21{i:02}00.trn"),
            log,
        );
    }
    f.put(
        "SQL01$PROD/School/FULL/SQL01$PROD_School_FULL_20240927_154328.bak",
        "sql2019_full_School.bak",
    );
    f
}

#[test]
fn an_ola_hallengren_tree_migrates_one_database_per_database_folder() {
    let tree = ola_tree("ola");
    let run = bakdrop(&["run", &tree.arg()]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let all = statuses(&tree);
    let names: Vec<&str> = all.iter().filter_map(|s| s["database"].as_str()).collect();
    assert_eq!(names, ["RestoreTimeClean", "School"], "{all:?}");
    for s in &all {
        assert_eq!(s["state"], "Synchronizing", "{s}");
    }
    assert_eq!(
        restored(&all)[0].1,
        [
            "SQL01$PROD_RestoreTimeClean_FULL_20190502_210055.bak",
            "SQL01$PROD_RestoreTimeClean_DIFF_20190502_211556.bak",
            "SQL01$PROD_RestoreTimeClean_LOG_20190502_210300.trn",
            "SQL01$PROD_RestoreTimeClean_LOG_20190502_210400.trn",
            "SQL01$PROD_RestoreTimeClean_LOG_20190502_210500.trn",
        ]
    );
    // The same tree copied under a bucket prefix, and a stray type folder at the top: the
    // folder named like a type never becomes a database.
    tree.put("LOG/stray.trn", LOGS[0]);
    let again = bakdrop(&["run", &tree.arg()]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let all = statuses(&tree);
    assert!(all
        .iter()
        .all(|s| !matches!(s["database"].as_str(), Some("FULL" | "DIFF" | "LOG"))));
    let outside = status_of(&all, "");
    assert_eq!(outside["rejected"][0]["code"], "InvalidKey", "{outside}");
}

#[test]
fn plan_lists_the_files_run_restores_in_the_same_order_for_every_test_folder() {
    let mut folders: Vec<(&str, Folder)> = Vec::new();
    // The committed drop folder (a 2016 chain, a two-set backup), copied without links.
    let dropzone = Folder::new("dropzone");
    for (relative, file) in [("RestoreTimeClean", FULL), ("RestoreTimeClean", DIFF)]
        .into_iter()
        .chain(LOGS.iter().map(|l| ("RestoreTimeClean", *l)))
        .chain([(
            "SharePoint",
            "sql2014_compressed_full_2sets_SharePoint_Config.bak",
        )])
    {
        dropzone.put(&format!("{relative}/{file}"), file);
    }
    folders.push(("dropzone", dropzone));
    folders.push(("ola", ola_tree("ola-plan")));
    // Two fulls of one database and nothing restored yet: the newest full's chain wins in both
    // (the older full sorts first, so a first-full-wins run would take it).
    let two = Folder::new("two-fulls");
    two.put(&format!("Clean/1_{FULL}"), FULL)
        .write(&format!("Clean/2_{FULL}"), &later_full())
        .put(&format!("Clean/3_{DIFF}"), DIFF);
    for log in LOGS {
        two.put(&format!("Clean/4_{log}"), log);
    }
    folders.push(("two fulls", two));
    // Stripes, a gap, no full, every version from 2008 R2 to 2022 (compressed included).
    let mixed = Folder::new("mixed");
    mixed
        .put(
            "Stripe/a.bak",
            "sql2008r2_full_stripe1of2_RestoreTimeStripe.bak",
        )
        .put(
            "Stripe/b.bak",
            "sql2008r2_full_stripe2of2_RestoreTimeStripe1.bak",
        )
        .put(&format!("Gap/{FULL}"), FULL)
        .put(&format!("Gap/{}", LOGS[0]), LOGS[0])
        .put(&format!("Gap/{}", LOGS[2]), LOGS[2])
        .put(&format!("NoFull/{}", LOGS[4]), LOGS[4])
        .put("School/full.bak", "sql2019_full_School.bak")
        .put("Library/full.bak", "sql2022_compressed_full_Library.bak")
        .put("Pubs/full.bak", "sql2012sp3_full_4kblock_pubs.bak");
    folders.push(("mixed", mixed));

    for (what, folder) in &folders {
        let plan = bakdrop(&["plan", &folder.arg(), "--json"]);
        let plans = json(&plan);
        let run = bakdrop(&["run", &folder.arg()]);
        let shown = text(&run);
        let ran = restored(&statuses(folder));
        let previewed = planned(&plans);
        assert!(!ran.is_empty(), "{what}: nothing restored: {shown}");
        assert_eq!(previewed, ran, "{what}: plan {plans}\nrun {shown}");
        // Both stop for the same folders.
        assert_eq!(
            plan.status.code() == Some(2),
            run.status.code() == Some(1),
            "{what}: plan {:?}, run {:?}: {shown}",
            plan.status.code(),
            run.status.code()
        );
    }
    // The two-fulls folder: the later full starts the chain, the older one is skipped saying so.
    let two = &folders[2].1;
    let all = statuses(two);
    let clean = status_of(&all, "Clean");
    assert_eq!(clean["applied"][0]["file"], format!("2_{FULL}"), "{clean}");
    let older = clean["skipped"]
        .as_array()
        .and_then(|s| s.iter().find(|n| n["file"] == format!("1_{FULL}")).cloned())
        .unwrap_or_else(|| panic!("the older full is skipped: {clean}"));
    assert_eq!(older["code"], "OtherFullChosen", "{older}");
    // The mixed folder stops (a gap, no full): run exits 1 and plan 2, saying why with codes.
    let mixed = &folders[3].1;
    let plans = json(&bakdrop(&["plan", &mixed.arg(), "--json"]));
    let codes: Vec<&str> = plans
        .as_array()
        .expect("plans")
        .iter()
        .flat_map(|p| p["problems"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["code"].as_str().map(str::to_owned))
        .map(|c| Box::leak(c.into_boxed_str()) as &str)
        .collect();
    assert!(codes.contains(&"MissingLogs"), "{codes:?}");
    assert!(codes.contains(&"NoFullBackup"), "{codes:?}");
}

#[test]
fn folders_of_different_versions_run_without_a_target_version_both_migrate() {
    let f = Folder::new("versions");
    f.put(&format!("Clean/{FULL}"), FULL)
        .put("School/full.bak", "sql2019_full_School.bak")
        .put("Library/full.bak", "sql2022_compressed_full_Library.bak")
        .put("Pubs/full.bak", "sql2012sp3_full_4kblock_pubs.bak");
    let run = bakdrop(&["run", &f.arg()]);
    let shown = text(&run);
    assert_eq!(run.status.code(), Some(0), "{shown}");
    assert_eq!(
        shown.matches("the version check is skipped").count(),
        1,
        "said once: {shown}"
    );
    let all = statuses(&f);
    assert_eq!(all.len(), 4, "{all:?}");
    for s in &all {
        assert_eq!(s["state"], "Synchronizing", "{s}");
    }
}

#[test]
fn a_wrong_target_version_then_the_right_one_migrates_the_chain_without_touching_the_files() {
    let f = Folder::new("wrong-version");
    f.put(&format!("Clean/{FULL}"), FULL)
        .put(&format!("Clean/{DIFF}"), DIFF);
    for log in LOGS {
        f.put(&format!("Clean/{log}"), log);
    }
    let stamp = |f: &Folder| -> Vec<std::time::SystemTime> {
        let mut all: Vec<_> = std::fs::read_dir(f.0.join("Clean"))
            .expect("list")
            .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
            .collect();
        all.sort();
        all
    };
    let before = stamp(&f);
    let wrong = bakdrop(&["run", &f.arg(), "--target-version", "2019"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    let all = statuses(&f);
    let clean = status_of(&all, "Clean");
    assert_eq!(clean["counts"]["rejected"], 8, "{clean}");
    assert_eq!(clean["rejected"][0]["code"], "VersionNotSame", "{clean}");
    let right = bakdrop(&["run", &f.arg(), "--target-version", "2016"]);
    let shown = text(&right);
    assert_eq!(right.status.code(), Some(0), "{shown}");
    assert!(!shown.contains("unchanged"), "{shown}");
    let all = statuses(&f);
    let clean = status_of(&all, "Clean");
    assert_eq!(clean["state"], "Synchronizing", "{clean}");
    assert_eq!(clean["counts"]["rejected"], 0, "{clean}");
    assert_eq!(clean["counts"]["restored"], 5, "{clean}");
    assert_eq!(stamp(&f), before, "no file was touched");
    // Listed once each.
    let listed = bakdrop(&["status", "Clean", "--dir", &f.arg()]);
    let key = format!("Clean/{FULL}");
    assert_eq!(text(&listed).matches(&key).count(), 1, "{}", text(&listed));
}

#[test]
fn a_folder_whose_files_were_all_rejected_can_be_reset() {
    let f = Folder::new("reset-rejected");
    f.put(&format!("Clean/{FULL}"), FULL);
    let wrong = bakdrop(&["run", &f.arg(), "--target-version", "2022"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    let cancel = bakdrop(&["cancel", "Clean", "--dir", &f.arg()]);
    assert_eq!(cancel.status.code(), Some(1), "{}", text(&cancel));
    assert!(
        text(&cancel).contains("NothingAccepted"),
        "{}",
        text(&cancel)
    );
    let reset = bakdrop(&["reset", "Clean", "--dir", &f.arg()]);
    assert!(reset.status.success(), "{}", text(&reset));
    let again = bakdrop(&["run", &f.arg()]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(status_of(&statuses(&f), "Clean")["state"], "Synchronizing");
}

#[test]
fn run_and_plan_exit_non_zero_on_a_gap_and_inspect_reads_a_folder() {
    let f = Folder::new("gap");
    f.put(&format!("Clean/{FULL}"), FULL)
        .put(&format!("Clean/{}", LOGS[0]), LOGS[0])
        .put(&format!("Clean/{}", LOGS[2]), LOGS[2]);
    let plan = bakdrop(&["plan", &f.arg()]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(text(&plan).contains("MissingLogs"), "{}", text(&plan));
    let run = bakdrop(&["run", &f.arg()]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    // The missing log arrives: both go through.
    f.put(&format!("Clean/{}", LOGS[1]), LOGS[1]);
    let plan = bakdrop(&["plan", &f.arg()]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let run = bakdrop(&["run", &f.arg()]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));

    let inspect = bakdrop(&["inspect", &f.arg(), "--json"]);
    assert_eq!(inspect.status.code(), Some(0), "{}", text(&inspect));
    let read = json(&inspect);
    assert_eq!(read.as_array().map(Vec::len), Some(4), "{read}");
    let bad = Folder::new("inspect-bad");
    bad.put(
        "x/two.bak",
        "sql2014_compressed_full_2sets_SharePoint_Config.bak",
    );
    let inspect = bakdrop(&["inspect", &bad.arg(), "--json"]);
    assert_eq!(inspect.status.code(), Some(1), "{}", text(&inspect));
    assert_eq!(json(&inspect)[0]["reason"]["code"], "MoreThanOneBackupSet");
}

/// `status --watch` off a terminal prints the status, then again only when it changed; the text
/// says how far the data goes and what comes next.
#[test]
fn status_watch_prints_a_readable_status_and_again_only_when_it_changed() {
    let f = Folder::new("watch");
    f.put(&format!("Clean/{FULL}"), FULL)
        .put(&format!("Clean/{}", LOGS[0]), LOGS[0])
        .put(&format!("Clean/{}", LOGS[2]), LOGS[2]);
    let run = bakdrop(&["run", &f.arg()]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let mut child = Command::new(env!("CARGO_BIN_EXE_bakdrop"))
        .args(["status", "--watch", "--dir", &f.arg()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    std::thread::sleep(std::time::Duration::from_millis(4500));
    child.kill().expect("stop watching");
    let out = child.wait_with_output().expect("output");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        shown.matches("== Clean [Synchronizing]").count(),
        1,
        "{shown}"
    );
    assert!(shown.contains("data as of 2019-05-02T21:05:55"), "{shown}");
    assert!(shown.contains("last restore finished"), "{shown}");
    assert!(
        shown.contains(
            "next: sql2016_log_RestoreTimeClean_3.trn: waiting for the log backups covering LSN"
        ),
        "{shown}"
    );
    assert!(
        !shown.contains('\u{1b}'),
        "no terminal codes off a terminal: {shown}"
    );
}
