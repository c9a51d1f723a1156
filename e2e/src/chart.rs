//! Kiln installed the way users install it: `helm install` of `charts/kiln` into the local
//! cluster, with the `kiln-operator:dev` and `kiln-builder:dev` images made from the
//! workspace's binaries ([`crate::images`]) and imported by the real node. The operator
//! runs as the chart's Deployment pod; builder pods run as privileged containers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};

/// The Helm version `hack/setup.d/40-helm.sh` builds.
pub const HELM_VERSION: &str = "v3.22.0";
/// Label selector of the operator pods of a release named `kiln`.
pub const OPERATOR_SELECTOR: &str =
    "app.kubernetes.io/name=kiln,app.kubernetes.io/component=operator";

/// `charts/kiln` in the repository.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/kiln")
}

/// The helm binary built by `hack/setup.d/40-helm.sh` (or `$HELM`).
///
/// Errors: it is not there (the error names the setup script).
pub fn helm() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HELM") {
        return Ok(PathBuf::from(p));
    }
    let path = crate::binaries::cache_dir()?
        .join("helm")
        .join(HELM_VERSION)
        .join("bin/helm");
    if !path.is_file() {
        bail!(
            "helm {HELM_VERSION} not found at {}: run hack/setup.sh (hack/setup.d/40-helm.sh)",
            path.display()
        );
    }
    Ok(path)
}

/// What to install.
#[derive(Debug, Clone)]
pub struct Install<'a> {
    /// Release namespace (created by helm).
    pub namespace: &'a str,
    /// Namespaces the operator watches.
    pub watch_namespaces: &'a [&'a str],
    /// Namespace of the stage lock ConfigMaps.
    pub lock_namespace: &'a str,
    /// Registries reached over plain HTTP (the stack's).
    pub insecure_registries: &'a [&'a str],
    /// More `--set` values.
    pub extra_values: &'a [&'a str],
}

/// Runs `helm ARGS` against the cluster of `kubeconfig`, its homes in `home`.
///
/// Errors: helm fails (stderr quoted).
pub fn helm_run(kubeconfig: &Path, home: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(helm()?);
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args);
    let what = format!("helm {}", args.join(" "));
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `helm install kiln charts/kiln` arguments for `install`: the local images
/// (`:dev`, never pulled), text logs, no CPU requests (two cores run six builders), and
/// `--wait` for the operator to be ready.
pub fn install_args(install: &Install<'_>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "install".into(),
        "kiln".into(),
        chart_dir().display().to_string(),
        "--namespace".into(),
        install.namespace.into(),
        "--create-namespace".into(),
        "--wait".into(),
        "--timeout".into(),
        "180s".into(),
    ];
    let mut values: Vec<String> = vec![
        "operator.image.repository=kiln-operator".into(),
        "operator.image.tag=dev".into(),
        "builder.image.repository=kiln-builder".into(),
        "builder.image.tag=dev".into(),
        "builder.resources.cpu=".into(),
        "operator.resources.requests.cpu=10m".into(),
        "operator.logFormat=text".into(),
        format!("lockNamespace={}", install.lock_namespace),
        format!("watchNamespaces={{{}}}", install.watch_namespaces.join(",")),
        format!(
            "operator.insecureRegistries={{{}}}",
            install.insecure_registries.join(",")
        ),
    ];
    values.extend(install.extra_values.iter().map(|v| (*v).to_owned()));
    for v in values {
        args.push("--set".into());
        args.push(v);
    }
    args
}

/// Installs the chart and waits until the operator Deployment is available.
///
/// Errors: helm fails.
pub fn install(kubeconfig: &Path, home: &Path, install: &Install<'_>) -> anyhow::Result<String> {
    let args = install_args(install);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    helm_run(kubeconfig, home, &refs)
}

/// Names of the operator pods in `namespace` that are not being deleted.
///
/// Errors: the pod list fails.
pub async fn operator_pods(client: &kube::Client, namespace: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Kills the operator pods of `namespace` the hard way: delete with grace period 0 (the
/// kubelet SIGKILLs the container; no reconcile finishes, no Lease is released). Returns
/// the names of the killed pods.
///
/// Errors: the list or a delete fails.
pub async fn kill_operator_pods(
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut killed = Vec::new();
    for p in operator_pods(client, namespace).await? {
        let name = p.metadata.name.unwrap_or_default();
        pods.delete(&name, &DeleteParams::default().grace_period(0))
            .await?;
        killed.push(name);
    }
    Ok(killed)
}

/// The logs of every operator pod of `namespace` (current and previous containers'
/// logs are not kept: a killed pod's log is gone), for failure messages.
pub async fn operator_logs(client: &kube::Client, namespace: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut out = String::new();
    for p in operator_pods(client, namespace).await.unwrap_or_default() {
        let name = p.metadata.name.unwrap_or_default();
        let log = pods
            .logs(&name, &Default::default())
            .await
            .unwrap_or_default();
        out.push_str(&format!("--- {name}\n{log}\n"));
    }
    out
}

/// Waits until an operator pod of `namespace` other than `except` is Ready.
///
/// Errors: none within `timeout`.
pub async fn wait_operator_ready(
    client: &kube::Client,
    namespace: &str,
    except: &[String],
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        for p in operator_pods(client, namespace).await? {
            let name = p.metadata.name.clone().unwrap_or_default();
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && !except.contains(&name) {
                return Ok(name);
            }
        }
        if Instant::now() > deadline {
            bail!("no operator pod in {namespace} became Ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pods, Leases and ConfigMaps in `namespaces` as `KIND NAMESPACE/NAME`, sorted, leaving
/// out the `kube-root-ca.crt` ConfigMap Kubernetes puts in every namespace: what a Kiln
/// installation could leave behind.
///
/// Errors: a list fails.
pub async fn objects_left(
    client: &kube::Client,
    namespaces: &[&str],
) -> anyhow::Result<Vec<String>> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut out = Vec::new();
    for ns in namespaces {
        let lp = ListParams::default();
        for p in Api::<Pod>::namespaced(client.clone(), ns).list(&lp).await? {
            out.push(format!("Pod {ns}/{}", p.metadata.name.unwrap_or_default()));
        }
        for l in Api::<Lease>::namespaced(client.clone(), ns)
            .list(&lp)
            .await?
        {
            out.push(format!(
                "Lease {ns}/{}",
                l.metadata.name.unwrap_or_default()
            ));
        }
        for c in Api::<ConfigMap>::namespaced(client.clone(), ns)
            .list(&lp)
            .await?
        {
            let name = c.metadata.name.unwrap_or_default();
            if name != "kube-root-ca.crt" {
                out.push(format!("ConfigMap {ns}/{name}"));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_uses_the_local_images_and_the_given_namespaces() {
        let args = install_args(&Install {
            namespace: "kiln-system",
            watch_namespaces: &["default", "ci"],
            lock_namespace: "default",
            insecure_registries: &["10.244.1.1:5000"],
            extra_values: &["leaderElection.enabled=false"],
        });
        let sets: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "--set")
            .map(|w| w[1].as_str())
            .collect();
        for want in [
            "operator.image.repository=kiln-operator",
            "operator.image.tag=dev",
            "builder.image.repository=kiln-builder",
            "builder.image.tag=dev",
            "lockNamespace=default",
            "watchNamespaces={default,ci}",
            "operator.insecureRegistries={10.244.1.1:5000}",
            "leaderElection.enabled=false",
        ] {
            assert!(sets.contains(&want), "{want} not in {sets:?}");
        }
        assert_eq!(&args[..2], ["install", "kiln"]);
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--namespace" && w[1] == "kiln-system")
        );
    }
}
