//! Shared by the chart tests: finding Helm, rendering `charts/kiln`, turning YAML into
//! API objects and applying them to the local kube-apiserver with server-side apply.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};

pub use kiln_e2e::chart::helm;

/// Field manager of every apply these tests make.
pub const MANAGER: &str = "kiln-chart-test";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// `charts/kiln`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/kiln")
}

/// A `helm` command whose cache/config/data homes are inside `home` (Helm writes there
/// even for `template`; the user's real homes stay untouched).
pub fn helm_command(home: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(helm()?);
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    Ok(cmd)
}

/// Runs `cmd`, returning stdout; a failure quotes stderr.
pub fn run(mut cmd: Command) -> anyhow::Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `helm template kiln charts/kiln --namespace NAMESPACE --include-crds ARGS...`.
pub fn helm_template(namespace: &str, args: &[&str]) -> anyhow::Result<String> {
    let home = tempfile::tempdir()?;
    let mut cmd = helm_command(home.path())?;
    cmd.args(["template", "kiln"])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--include-crds"])
        .args(args);
    run(cmd)
}

/// Every non-empty document of a multi-document YAML stream as an API object.
pub fn parse_objects(yaml: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let value =
            serde_json::Value::deserialize(doc).with_context(|| format!("YAML document {i}"))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value)
            .with_context(|| format!("YAML document {i} is not a Kubernetes object"))?;
        objects.push(obj);
    }
    Ok(objects)
}

use serde::Deserialize as _;

/// `Kind/namespace/name` of an object, for messages.
pub fn describe(obj: &DynamicObject) -> String {
    let kind = obj.types.as_ref().map_or("?", |t| t.kind.as_str());
    format!(
        "{kind}/{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or("-"),
        obj.metadata.name.as_deref().unwrap_or("?")
    )
}

/// The Api for `obj`'s kind, found through discovery; namespaced objects without a
/// namespace go to `default_namespace`.
pub async fn api_for(
    client: &kube::Client,
    obj: &DynamicObject,
    default_namespace: &str,
) -> anyhow::Result<Api<DynamicObject>> {
    let types = obj
        .types
        .as_ref()
        .with_context(|| format!("{} has no apiVersion/kind", describe(obj)))?;
    let gvk = GroupVersionKind::try_from(types)?;
    let (resource, caps) = discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {gvk:?}"))?;
    Ok(match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            obj.metadata
                .namespace
                .as_deref()
                .unwrap_or(default_namespace),
            &resource,
        ),
    })
}

/// Server-side apply of `obj` with strict field validation (unknown or duplicate fields
/// are errors, as `kubectl apply --server-side` does); `dry_run` = `dryRun=All`.
pub async fn apply(
    client: &kube::Client,
    obj: &DynamicObject,
    default_namespace: &str,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let api = api_for(client, obj, default_namespace)
        .await
        .map_err(|e| kube::Error::Service(e.into()))?;
    let mut params = PatchParams::apply(MANAGER).validation_strict();
    if dry_run {
        params = params.dry_run();
    }
    let name = obj.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &params, &Patch::Apply(obj)).await
}

/// Installs `charts/kiln/crds/imagebuild.kiln.dev.yaml` and waits until the API server
/// serves it (condition Established).
pub async fn install_crd(client: &kube::Client) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(chart_dir().join("crds/imagebuild.kiln.dev.yaml"))?;
    for obj in parse_objects(&text)? {
        apply(client, &obj, "default", false)
            .await
            .context("applying the ImageBuild CRD")?;
    }
    wait_crd_established(client, "imagebuilds.kiln.dev").await
}

/// Polls the CRD until its Established condition is True (at most 30 s).
pub async fn wait_crd_established(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(name).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            // Discovery of the new group can lag the condition by a moment.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("CRD {name} not Established within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
