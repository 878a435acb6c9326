//! `bakdrop`: the command line over the same core as the Lambda functions.
//!
//! # Layout
//! - `inspect`: what `RESTORE HEADERONLY` / `FILELISTONLY` would say about backup files, and
//!   whether bakdrop would accept them, read from their head and tail only.
//! - `local`: reading the head and tail of a local file.

mod inspect;
mod local;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Drop SQL Server native backups into S3; get the database restored on the target.
#[derive(Debug, Parser)]
#[command(name = "bakdrop", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read backup headers (head and tail of each file only) and say whether bakdrop takes them.
    Inspect {
        /// Backup files (.bak, .trn).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON (one object per file) instead of text.
        #[arg(long)]
        json: bool,
        /// Also check each file against this target SQL Server version (e.g. 2022, 16, 957).
        #[arg(long)]
        target: Option<String>,
        /// Version policy for --target: same (default) or not-newer.
        #[arg(long, default_value = "same")]
        policy: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect {
            paths,
            json,
            target,
            policy,
        } => inspect::run(&paths, json, target.as_deref(), &policy),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bakdrop: {e:#}");
            ExitCode::from(2)
        }
    }
}
