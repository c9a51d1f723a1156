//! `kiln-operator report NAME`: the build report of a finished ImageBuild, as werf writes
//! it with `--save-build-report`: `json` (tab-indented, werf's field names) or `envfile`
//! (`WERF_<IMAGE>_DOCKER_IMAGE_NAME=…` lines, what CI scripts source). Reads
//! `status.report`, or the `<name>-report` ConfigMap when the report was too large for
//! the status.
//!
//! The Kubernetes connection comes from `KUBECONFIG` / `~/.kube/config` or the in-cluster
//! service account, as for `kubectl`.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kiln_crds::ImageBuild;
use kiln_crds::report::BuildReport;
use kiln_crds::status::REPORT_CONFIGMAP_JSON_KEY;
use kube::api::Api;

/// Output format of the report (werf's `--build-report-path` extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// werf's JSON report.
    Json,
    /// werf's env file: one `WERF_<IMAGE>_DOCKER_IMAGE_NAME=…` line per image.
    Envfile,
}

/// Flags of `kiln-operator report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ImageBuild's name.
    pub name: String,
    /// Its namespace; default: the kubeconfig context's namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// `json` or `envfile`.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// Prints the report of `args.name`.
///
/// Errors: no cluster connection; the ImageBuild does not exist, has not finished, or
/// failed (no report); the report ConfigMap is missing.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(fetch(&args))?;
    match args.format {
        Format::Json => println!("{}", report.to_json()?),
        Format::Envfile => print!("{}", report.to_env_file()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch(args: &Args) -> anyhow::Result<BuildReport> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (KUBECONFIG or in-cluster)")?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let builds: Api<ImageBuild> = Api::namespaced(client.clone(), &namespace);
    let ib = builds
        .get_opt(&args.name)
        .await?
        .with_context(|| format!("ImageBuild {namespace}/{} not found", args.name))?;
    let status = ib.status.unwrap_or_default();
    if let Some(report) = status.report {
        return Ok(report);
    }
    if let Some(map) = status.report_config_map {
        let maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
        let json = maps
            .get(&map)
            .await
            .with_context(|| format!("reading the report ConfigMap {namespace}/{map}"))?
            .data
            .and_then(|d| d.get(REPORT_CONFIGMAP_JSON_KEY).cloned())
            .with_context(|| {
                format!("ConfigMap {namespace}/{map} has no {REPORT_CONFIGMAP_JSON_KEY}")
            })?;
        return BuildReport::from_json(&json)
            .with_context(|| format!("the report in ConfigMap {namespace}/{map}"));
    }
    bail!(
        "ImageBuild {namespace}/{} has no build report (phase {}): reports are written when a build succeeds",
        args.name,
        status.phase.as_str()
    )
}
