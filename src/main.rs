//! The `ringops` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;
use ringops::cli::{Cli, Command, Failure, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    // SAFETY: first thing in main, before any thread is spawned.
    unsafe { ringops::adapters::git::mirror::bound_network_waits() };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let detailed = match &cli.command {
        Command::Plan(p) => p.detailed_exitcode(),
        Command::Drift(d) => d.detailed_exitcode,
        _ => false,
    };
    match run(cli) {
        Ok(code) => code,
        Err(Failure::User(e)) => {
            eprintln!("error: {}", ringops::adapters::causes(e.as_ref()));
            ExitCode::from(1)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("error: {}", ringops::adapters::causes(e.as_ref()));
            ExitCode::from(if detailed { 1 } else { 2 })
        }
    }
}
