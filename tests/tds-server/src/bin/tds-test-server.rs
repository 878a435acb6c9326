//! Runs the SQL Server emulator on a TDS port so a person can point a client at it.
//!
//! Usage: `tds-test-server [--port N] [--native] [--restore-secs S]` (default port 14330, RDS
//! flavour, 10-second restores). Prints the address, then serves until killed. Clients must turn
//! TLS off (tiberius: `EncryptionLevel::NotSupported`; sqlcmd: `-No`/`-N disable`).

use bakdrop_tds_server::emulator::ServerInfo;
use bakdrop_tds_server::SqlServerEmulator;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
struct Options {
    port: u16,
    native: bool,
    restore_secs: u64,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        port: 14330,
        native: false,
        restore_secs: 10,
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
            "--native" => o.native = true,
            "--rds" => o.native = false,
            "-h" | "--help" => {
                return Err(
                    "usage: tds-test-server [--port N] [--native|--rds] [--restore-secs S]"
                        .to_string(),
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
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
    let emulator = SqlServerEmulator::new(if opts.native {
        ServerInfo::native_2022()
    } else {
        ServerInfo::rds_2022()
    });
    emulator.set_restore_duration(None, Duration::from_secs(opts.restore_secs));
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    match bakdrop_tds_server::TdsServer::start_on(addr, Arc::new(emulator)).await {
        Ok((addr, _handle)) => {
            println!("{addr}");
            std::future::pending::<()>().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tds-test-server: {e}: {:?}", std::error::Error::source(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
