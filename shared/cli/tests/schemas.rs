//! The JSON a script relies on: real outputs of `inspect`, `plan` and `status` (and the
//! migration-status function's document, which `status --json` prints) validate against the
//! JSON Schemas in `schemas/`, and every item of every list carries a stable `code`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn bakdrop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bakdrop"))
        .args(args)
        .output()
        .expect("run bakdrop")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn schema(name: &str) -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(format!("{ROOT}/schemas/{name}.schema.json")).expect("schema");
    let value: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&value).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_valid(name: &str, instance: &Value) {
    let validator = schema(name);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{instance:#}");
}

/// Every object of every list under `value` that has a message or a reason has a code.
fn every_reason_has_a_code(value: &Value, at: &str) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(o) = item {
                    if o.contains_key("reason") || o.contains_key("message") {
                        assert!(
                            o.get("code")
                                .and_then(Value::as_str)
                                .is_some_and(|c| !c.is_empty())
                                || o.get("reason")
                                    .is_some_and(|r| r.is_null() || r.get("code").is_some()),
                            "{at}[{i}] has no code: {item}"
                        );
                    }
                }
                every_reason_has_a_code(item, &format!("{at}[{i}]"));
            }
        }
        Value::Object(o) => {
            for (k, v) in o {
                every_reason_has_a_code(v, &format!("{at}.{k}"));
            }
        }
        _ => {}
    }
}

struct Folder(std::path::PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn folder() -> Folder {
    let dir = std::env::temp_dir().join(format!(
        "bakdrop-schemas-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let put = |relative: &str, fixture: &str| {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        std::fs::copy(
            Path::new(ROOT).join("tests/fixtures/bak").join(fixture),
            path,
        )
        .expect("copy");
    };
    for f in [
        "sql2016_full_RestoreTimeClean.bak",
        "sql2016_diff_RestoreTimeClean2.bak",
        "sql2016_log_RestoreTimeClean_1.trn",
        "sql2016_log_RestoreTimeClean2_1.trn",
        "sql2016_log_RestoreTimeClean2_3.trn",
    ] {
        put(
            &format!(
                "SQL01$PROD/Clean/{}/{f}",
                if f.contains("full") {
                    "FULL"
                } else if f.contains("diff") {
                    "DIFF"
                } else {
                    "LOG"
                }
            ),
            f,
        );
    }
    put(
        "Stripe/a.bak",
        "sql2008r2_full_stripe1of2_RestoreTimeStripe.bak",
    );
    put(
        "Stripe/b.bak",
        "sql2008r2_full_stripe2of2_RestoreTimeStripe1.bak",
    );
    put(
        "SP/two.bak",
        "sql2014_compressed_full_2sets_SharePoint_Config.bak",
    );
    put("Old/full.bak", "sql2008r2_full_singlerestore.bak");
    put("loose.bak", "sql2019_full_School.bak");
    put("School/full.bak", "sql2019_full_School.bak");
    Folder(dir)
}

#[test]
fn inspect_output_validates_against_its_schema() {
    let out = bakdrop(&[
        "inspect",
        "--json",
        &format!("{ROOT}/tests/fixtures/bak"),
        "--target",
        "2016",
    ]);
    assert_eq!(out.status.code(), Some(1), "some fixtures are not usable");
    let value = json(&out);
    let backups = value
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| {
            f["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(".bak") || p.ends_with(".trn"))
        })
        .count();
    assert_eq!(backups, 23, "every fixture under the folder is read");
    // Validation reads at most 256 KiB of a compressed backup, as inspect reports.
    let compressed: Vec<&Value> = value
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["path"].as_str().is_some_and(|p| p.contains("compressed")))
        .collect();
    assert!(compressed.len() >= 2, "{value:#}");
    for f in compressed {
        let read = f["bytes_read"].as_u64().expect("bytes_read");
        assert!(read > 0 && read <= 256 * 1024, "{f:#}");
    }
    assert_valid("inspect", &value);
    every_reason_has_a_code(&value, "inspect");
}

#[test]
fn plan_output_validates_against_its_schema() {
    let f = folder();
    for extra in [
        &[][..],
        &["--dialect", "native"][..],
        &["--target-version", "2016"][..],
    ] {
        let mut args = vec!["plan", "--json"];
        let dir = f.0.display().to_string();
        args.push(&dir);
        args.extend_from_slice(extra);
        let value = json(&bakdrop(&args));
        assert_valid("plan", &value);
        every_reason_has_a_code(&value, "plan");
        let codes = value.to_string();
        for code in [
            "MoreThanOneBackupSet",
            "InvalidKey",
            "Superseded",
            "MissingLogs",
        ] {
            assert!(codes.contains(code), "{extra:?}: {code} in {value:#}");
        }
    }
}

#[test]
fn status_output_validates_against_its_schema() {
    let f = folder();
    let dir = f.0.display().to_string();
    let run = bakdrop(&[
        "run",
        &dir,
        "--target-version",
        "2016",
        "--policy",
        "not-newer",
    ]);
    assert_eq!(run.status.code(), Some(1));
    let all = json(&bakdrop(&["status", "--json", "--dir", &dir]));
    assert_valid("status", &all);
    every_reason_has_a_code(&all, "status");
    let codes = all.to_string();
    for code in [
        "MoreThanOneBackupSet",
        "InvalidKey",
        "BackupNewerThanTarget",
        "Superseded",
        "MissingLogs",
    ] {
        assert!(codes.contains(code), "{code} in {all:#}");
    }
    let one = json(&bakdrop(&["status", "Clean", "--json", "--dir", &dir]));
    assert_valid("status", &one);
    assert!(one["data_as_of"].is_string(), "{one:#}");
    assert!(
        one["next"]
            .as_str()
            .is_some_and(|n| n.contains("waiting for the log backups") || n.contains("LSN")),
        "{one:#}"
    );
    // Complete armed for a backup that has not come: the armed object and its actions.
    let arm = bakdrop(&[
        "complete",
        "Clean",
        "--when-restored",
        "never.trn",
        "--dir",
        &dir,
    ]);
    assert!(arm.status.success(), "{arm:?}");
    let armed = json(&bakdrop(&["status", "Clean", "--json", "--dir", &dir]));
    assert_valid("status", &armed);
    assert_eq!(armed["armed"]["last_backup"], "never.trn", "{armed:#}");
    assert!(
        armed["actions"]
            .as_array()
            .is_some_and(|a| a.contains(&Value::from("disarm"))),
        "{armed:#}"
    );
    // A striped set is one step of two files.
    let stripe = json(&bakdrop(&["status", "Stripe", "--json", "--dir", &dir]));
    assert_valid("status", &stripe);
    assert_eq!(
        stripe["applied"].as_array().map(Vec::len),
        Some(1),
        "{stripe:#}"
    );
    assert_eq!(
        stripe["applied"][0]["files"].as_array().map(Vec::len),
        Some(2),
        "{stripe:#}"
    );
    assert!(
        stripe["summary"]
            .as_str()
            .is_some_and(|s| s.contains("1 full")),
        "{stripe:#}"
    );
}
