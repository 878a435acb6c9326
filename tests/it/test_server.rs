//! The test server's binary (`tds-test-server`), as a person starts it: what it says it emulates,
//! and backups it reads from this machine's disk.

use std::io::BufRead;
use std::time::Duration;

use bakdrop_core::model::header::BackupKind;
use bakdrop_core::ports::{RestoreTarget, TaskStatus};
use bakdrop_core::tsql::{Dialect, RestoreRequest, RestoreSource};
use bakdrop_mssql::testing::emulator_target;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/bak/");

/// Kills the server process however the test ends.
struct Server(std::process::Child, std::net::SocketAddr, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tds-test-server"))
        .args(["--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let addr = lines
        .next()
        .expect("address line")
        .expect("read")
        .trim()
        .parse()
        .expect("an address");
    let banner = lines.next().expect("banner").expect("read");
    Server(child, addr, banner)
}

#[tokio::test]
async fn the_test_server_binary_says_what_it_emulates_and_reads_backups_from_disk() {
    let server = start(&["--native", "--version", "2016", "--restore-secs", "1"]);
    let banner = &server.2;
    assert!(banner.contains("SQL Server 2016"), "{banner}");
    assert!(banner.contains("13.0."), "{banner}");
    assert!(banner.contains("native dialect"), "{banner}");
    let target = emulator_target(server.1.port(), Dialect::Native);
    assert!(target
        .product_version()
        .await
        .expect("version")
        .starts_with("13.0."));
    // A 2016 full backup read from the fixture itself, moved into the server's directories.
    let path = std::fs::canonicalize(format!("{FIXTURES}sql2016_full_RestoreTimeClean.bak"))
        .expect("fixture");
    let bytes = std::fs::read(&path).expect("fixture");
    let header = bakdrop_test_support::tds::header_of(&bytes);
    let request = RestoreRequest {
        files: header.files.clone(),
        ..RestoreRequest::new(
            bakdrop_core::model::names::DatabaseName::parse("FromDisk").expect("name"),
            BackupKind::Full,
            vec![RestoreSource::Disk(path.display().to_string())],
        )
    };
    let task = target
        .submit(&request, "from-disk")
        .await
        .expect("submitted");
    let mut status = target.poll(&request.database, &task).await.expect("poll");
    for _ in 0..50 {
        if !matches!(status, TaskStatus::Running { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = target.poll(&request.database, &task).await.expect("poll");
    }
    assert_eq!(status, TaskStatus::Succeeded);
    // A path holding no backup is a device the server cannot open.
    let missing = RestoreRequest {
        sources: vec![RestoreSource::Disk(format!("{FIXTURES}no-such.bak"))],
        database: bakdrop_core::model::names::DatabaseName::parse("Missing").expect("name"),
        ..request
    };
    let task = target.submit(&missing, "missing").await.expect("submitted");
    tokio::time::sleep(Duration::from_millis(200)).await;
    match target.poll(&missing.database, &task).await.expect("poll") {
        TaskStatus::Failed { sql_error, .. } => {
            assert_eq!(sql_error.map(|e| e.number), Some(3201));
        }
        other => panic!("{other:?}"),
    }
}
