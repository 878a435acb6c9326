//! Runs the SQL Server emulator (`tests/tds-server`) on a TDS port so a person can point a
//! client, e.g. `bakdrop run --target`, at it.
//!
//! Usage: `tds-test-server [--port N] [--native|--rds] [--version 2016|2017|2019|2022|2025]
//! [--restore-secs S] [--media DIR]...` (default port 14330, RDS flavour, SQL Server 2022,
//! 10-second restores). Prints the address on the first line and what it emulates on the second,
//! then serves until killed. Clients must turn TLS off (tiberius:
//! `EncryptionLevel::NotSupported`; sqlcmd: `-No`/`-N disable`).
//!
//! Media: the server reads `RESTORE … FROM DISK = '<absolute path>'` from this machine's disk
//! (the backup's own header, as SQL Server would read it), and an RDS ARN
//! `arn:…:s3:::<bucket>/<key>` as `DIR/<key>` under each `--media DIR` (what `bakdrop run`'s
//! folder holds, the folder standing in for the bucket).

use bakdrop_tds_server::emulator::{ServerInfo, RELEASES};
use bakdrop_tds_server::SqlServerEmulator;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
struct Options {
    port: u16,
    native: bool,
    version: u16,
    restore_secs: u64,
    media: Vec<std::path::PathBuf>,
}

const USAGE: &str = "usage: tds-test-server [--port N] [--native|--rds] [--version 2016|2017|2019|2022|2025] [--restore-secs S] [--media DIR]...";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        port: 14330,
        native: false,
        version: 2022,
        restore_secs: 10,
        media: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                o.port = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--port needs a number")?
            }
            "--restore-secs" => {
                o.restore_secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--restore-secs needs a number")?
            }
            "--version" => {
                o.version = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|y| RELEASES.iter().any(|r| r.year == *y))
                    .ok_or("--version needs one of 2016, 2017, 2019, 2022, 2025")?
            }
            "--media" => o.media.push(
                it.next()
                    .map(std::path::PathBuf::from)
                    .ok_or("--media needs a folder")?,
            ),
            "--native" => o.native = true,
            "--rds" => o.native = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// One line saying what the server emulates.
fn describe(s: &ServerInfo, restore_secs: u64) -> String {
    format!(
        "emulating SQL Server {} {} ({}, DatabaseVersion {}), {} dialect on {}, restores take {restore_secs} s, data path {}",
        s.year(),
        s.edition,
        s.product_version,
        s.database_version,
        if s.rds { "rds" } else { "native" },
        s.platform.name(),
        s.default_data_path
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let base = if opts.native {
        ServerInfo::native_2022()
    } else {
        ServerInfo::rds_2022()
    };
    let Some(info) = base.with_release(opts.version) else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    };
    let line = describe(&info, opts.restore_secs);
    let emulator = SqlServerEmulator::new(info);
    emulator.set_restore_duration(None, Duration::from_secs(opts.restore_secs));
    let media = opts.media.clone();
    emulator.set_media_resolver(Arc::new(move |source: &str| {
        if let Some((_, object)) = source.split_once(":s3:::") {
            let key = object.split_once('/').map_or("", |(_, key)| key);
            return media.iter().find_map(|dir| {
                let mut path = dir.clone();
                path.extend(key.split('/'));
                bakdrop_test_support::tds::describe_file(&path)
            });
        }
        let path = std::path::Path::new(source);
        path.is_absolute()
            .then(|| bakdrop_test_support::tds::describe_file(path))
            .flatten()
    }));
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    match bakdrop_tds_server::TdsServer::start_on(addr, Arc::new(emulator)).await {
        Ok((addr, _handle)) => {
            println!("{addr}");
            println!("{line}");
            std::future::pending::<()>().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tds-test-server: {e}: {:?}", std::error::Error::source(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
