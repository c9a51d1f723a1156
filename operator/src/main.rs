//! `kiln-operator`: the Kiln controller, the offline planner and the CRD printer.
//!
//! Each subcommand lives in its own module under `cli/` (see `cli/mod.rs` for how to
//! add one); this file only parses the command line and turns the outcome into an exit
//! status.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole anyhow context chain on one line, so the cause
            // (file, image, registry...) is never hidden behind a generic message.
            eprintln!("kiln-operator: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
