//! `bakdrop`: the command line over the same core as the Lambda functions.
//!
//! # Layout
//! - `args`: the command line as clap reads it (subcommands, arguments, help text).
//! - `commands`: each subcommand handed to the module that carries it out.
//! - `inspect`: what `RESTORE HEADERONLY` / `FILELISTONLY` would say about backup files, and
//!   whether bakdrop would accept them, read from their head and tail only.
//! - `planning`: `bakdrop plan`, the restore sequence over a set of files, with its T-SQL.
//! - `pipeline`: `bakdrop run`, validation and restore worker in one process over local stand-ins.
//! - `manage`: `bakdrop status`, `complete`, `cancel` on the local state file (or a stack's
//!   status table with `--table`).
//! - `invoke`: the same commands through a deployed stack's functions (`--function`).
//! - `adapters`: the stand-ins for the stack's components: `local` files in place of S3
//!   (head/tail reads, the folder as the bucket), the restore `queue` in memory on a real or
//!   simulated clock, the status table as a JSON file with compare-and-set (`store`), the
//!   `target` SQL Server (tiberius) or the script-only stand-in, and `--target`.
//! - `status_text`: a status report as a person reads it on a terminal.
//! - `out`: standard output that ends quietly on a closed pipe; outside text shown escaped.

mod adapters;
mod args;
mod commands;
mod inspect;
mod invoke;
mod manage;
mod out;
mod pipeline;
mod planning;
mod status_text;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // An error may quote a file name: escaped like standard output's.
            eprintln!("bakdrop: {}", out::Shown(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
