//! `kiln-operator crd`: prints the `ImageBuild` CustomResourceDefinition.
//!
//! The output is [`kiln_crds::crd_yaml`], byte for byte the committed
//! `crds/imagebuild.kiln.dev.yaml` (a test keeps them identical), so
//! `kiln-operator crd | kubectl apply -f -` installs exactly what the repository ships.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

/// Flags of `kiln-operator crd` (none yet).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Writes the CRD YAML to stdout.
///
/// A reader that stops early (`kiln-operator crd | head`) is not an error, as with
/// other command-line tools. Errors: any other failure to write to stdout.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let yaml = kiln_crds::crd_yaml();
    let mut out = std::io::stdout().lock();
    match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => {
            other.context("writing the CRD YAML to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
