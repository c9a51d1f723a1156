//! Command-line interface of `kiln-operator`.
//!
//! One module per subcommand. Each module exposes
//! - `Args`: a `clap::Args` struct with that subcommand's flags, and
//! - `run(args: Args) -> anyhow::Result<ExitCode>`: does the work synchronously (a
//!   subcommand that needs async I/O builds its own tokio runtime inside `run`).
//!
//! To add a subcommand: add `pub mod name;` below, a variant to [`Command`] whose doc
//! comment is the one-line help, and an arm to [`run`].

pub mod crd;
pub mod plan;
pub mod report;
pub mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kiln: builds container images the way werf does, as a Kubernetes operator.
#[derive(Debug, Parser)]
#[command(name = "kiln-operator", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `kiln-operator`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the ImageBuild CustomResourceDefinition as YAML (for `kubectl apply -f -`).
    Crd(crd::Args),
    /// Run the controller: watch ImageBuilds and build them (serves /metrics, /healthz, /readyz).
    // Boxed: its many flags make it several times larger than the other variants.
    Run(Box<run::Args>),
    /// Plan a project offline: build sets, and each image's stages and stage digests at a git commit.
    Plan(plan::Args),
    /// Print the build report of a finished ImageBuild (werf's JSON or env file).
    Report(report::Args),
}

/// Runs the parsed command line and returns the process exit status.
///
/// Errors carry their context chain; `main` prints them to stderr.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crd(args) => crd::run(args),
        Command::Run(args) => run::run(*args),
        Command::Plan(args) => plan::run(args),
        Command::Report(args) => report::run(args),
    }
}
