//! What the controller's end-to-end tests and the demo share: the ImageBuild CRD installed
//! and served, the operator running in-process on the caller's runtime, waiting for a
//! build to finish, and the sample project (`examples/shop`) with its ImageBuild.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kiln_crds::ImageBuild;
use kiln_operator::controller::{self, Context, Settings};
use kiln_operator::metrics::{Metrics, Readiness};
use kiln_operator::mirror::SourceCache;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

/// Installs the ImageBuild CRD (an existing one is kept) and waits until the API serves it.
///
/// Errors: the apiserver refuses the CRD or does not serve it within 60 s.
pub async fn install_crd(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.create(&PostParams::default(), &kiln_crds::crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).context("creating the ImageBuild CRD"),
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let builds: Api<ImageBuild> = Api::all(client.clone());
    while builds.list(&ListParams::default().limit(1)).await.is_err() {
        if Instant::now() > deadline {
            bail!("the ImageBuild CRD is not served after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// `kiln-operator run`'s controller on the current tokio runtime, watching some
/// namespaces; stopped (running reconciles finish) by [`InProcessOperator::stop`] or
/// aborted on drop.
pub struct InProcessOperator {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The operator's metrics (reconciles, stage cache hits, builds).
    pub metrics: Arc<Metrics>,
}

impl InProcessOperator {
    /// Starts the controller with `settings`, a git source cache in `cache_dir`, watching
    /// `namespaces`.
    pub fn start(
        client: kube::Client,
        settings: Settings,
        cache_dir: &Path,
        namespaces: &[&str],
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let ctx = Arc::new(Context::new(
            client,
            metrics.clone(),
            Arc::new(SourceCache::new(cache_dir.to_owned())),
            settings,
        ));
        let namespaces: Vec<String> = namespaces.iter().map(|n| (*n).to_owned()).collect();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            controller::run(ctx, &namespaces, Arc::new(Readiness::default()), stop_rx).await
        });
        Self {
            stop,
            task: Some(task),
            metrics,
        }
    }

    /// Stops the controller and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.await.context("operator task panicked")??;
        }
        Ok(())
    }
}

impl Drop for InProcessOperator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `kiln-operator run` as a child process (the workspace's binary), for tests that kill
/// the operator. Killed with SIGKILL on drop.
pub struct OperatorProcess {
    child: std::process::Child,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `kiln-operator run` against the cluster of `kubeconfig`, watching
    /// `namespace`, with stage locks in `namespace`, builder image `kiln-builder:dev`,
    /// `registry` reached over plain HTTP and the git source cache in `cache_dir`; its log
    /// goes to `log` (appended).
    ///
    /// Errors: the binary is not built (`cargo build -p kiln-operator`) or does not start.
    pub fn spawn(
        kubeconfig: &Path,
        namespace: &str,
        registry: &str,
        cache_dir: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let binary = crate::stack::workspace_binary("kiln-operator").context(
            "kiln-operator is not built next to the test binary: `cargo build -p kiln-operator`",
        )?;
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = std::process::Command::new(binary)
            .args([
                "run",
                "--namespace",
                namespace,
                "--lock-namespace",
                namespace,
            ])
            .arg("--cache-dir")
            .arg(cache_dir)
            .args(["--builder-image", "kiln-builder:dev"])
            .args(["--metrics-address", "127.0.0.1:0"])
            .args(["--insecure-registry", registry])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting kiln-operator")?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    /// Kills the process with SIGKILL (no graceful shutdown) and reaps it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until ImageBuild `name` reaches a finished phase (Succeeded, Failed, Cancelled)
/// and returns it.
///
/// Errors: the API fails, or `timeout` passes (the error shows the last status).
pub async fn wait_finished(
    api: &Api<ImageBuild>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<ImageBuild> {
    let deadline = Instant::now() + timeout;
    loop {
        let ib = api.get_opt(name).await?;
        if let Some(ib) = &ib
            && ib.status.as_ref().is_some_and(|s| s.phase.is_finished())
        {
            return Ok(ib.clone());
        }
        if Instant::now() > deadline {
            let status = ib
                .and_then(|ib| ib.status)
                .map(|s| serde_json::to_string(&s).unwrap_or_default());
            bail!("ImageBuild {name} did not finish within {timeout:?}; status: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The sample project's directory in the repository (`examples/shop`).
pub fn sample_project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/shop")
}

/// Every file of the sample project as (relative path, contents), sorted by path.
///
/// Errors: the directory cannot be read.
pub fn sample_project_files() -> anyhow::Result<Vec<(String, String)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {dir:?}"))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
                out.push((rel, std::fs::read_to_string(&path)?));
            }
        }
        Ok(())
    }
    let root = sample_project_dir();
    let mut files = Vec::new();
    walk(&root, &root, &mut files)?;
    files.sort();
    Ok(files)
}

/// The sample ImageBuild: every image of the project at `revision` of `git_url`, for
/// linux/amd64 and linux/arm64, stages in `REGISTRY/shop`, docker.io images through the
/// registry as a mirror (it serves `library/busybox`), custom tag `%image%-latest`.
pub fn sample_image_build(name: &str, git_url: &str, revision: &str, registry: &str) -> ImageBuild {
    serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "ImageBuild",
        "metadata": {"name": name},
        "spec": {
            "source": {"git": {"url": git_url, "revision": revision}},
            "repo": format!("{registry}/shop"),
            "platforms": ["linux/amd64", "linux/arm64"],
            "customTags": ["%image%-latest"],
            "registryMirrors": [format!("http://{registry}")],
        }
    }))
    .expect("the sample ImageBuild is valid")
}

/// Operator settings for end-to-end builds on the local stack: builder image
/// `kiln-builder:dev` (made from the workspace's `kiln-builder`, see
/// [`start_build_stack`]) in privileged containers (Buildah mounts), stage locks in
/// `lock_namespace`, and `insecure_registries` reached over plain HTTP.
pub fn build_settings(lock_namespace: &str, insecure_registries: &[&str]) -> Settings {
    Settings {
        builder: kiln_operator::pods::BuilderDefaults {
            image: format!("{}:dev", crate::stack::DEFAULT_BUILDER_IMAGE),
            privileged: true,
            ..Default::default()
        },
        lock_namespace: lock_namespace.to_owned(),
        insecure_registries: insecure_registries
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
        ..Settings::default()
    }
}

/// A registry client for `registry` (`host:port`, plain HTTP, anonymous).
pub fn registry_client(registry: &str) -> kiln_operator::storage::RegistryClient {
    kiln_operator::storage::RegistryClient::new(kiln_operator::storage::RegistryClientConfig {
        plain_http_registries: vec![registry.to_owned()],
        ..Default::default()
    })
}

/// True for a stage tag `DIGEST-TIMESTAMP_MILLISEC`: 56 hex digits, a dash, 13 decimal
/// digits (not a manifest list's bare digest, a custom tag or a `-rejected` record).
pub fn is_stage_tag(tag: &str) -> bool {
    tag.split_once('-').is_some_and(|(d, ts)| {
        d.len() == 56
            && d.bytes().all(|b| b.is_ascii_hexdigit())
            && ts.len() == 13
            && ts.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The stage tags of `registry/repository` (anonymous, plain HTTP), sorted.
///
/// Errors: the registry refuses the tags list.
pub async fn stage_tags(
    registry: &str,
    repository: &str,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let repo: kiln_operator::storage::RepoRef = format!("{registry}/{repository}")
        .parse()
        .map_err(|e| anyhow::anyhow!("{registry}/{repository}: {e}"))?;
    Ok(registry_client(registry)
        .list_tags(&repo)
        .await?
        .into_iter()
        .filter(|t| is_stage_tag(t))
        .collect())
}

/// The local stack for builds — a real node that has the `kiln-builder:dev` image made
/// from the workspace's `kiln-builder` ([`crate::images`]), busybox for linux/amd64 and
/// linux/arm64 in its registry (a docker.io mirror for `FROM busybox`) — with the
/// ImageBuild CRD served; returns it with an admin client.
///
/// Errors: the builder image cannot be made, the stack does not start or the CRD is not
/// served.
pub async fn start_build_stack() -> anyhow::Result<(crate::stack::LocalStack, kube::Client)> {
    start_stack_with_images(&["builder"]).await
}

/// [`start_build_stack`] whose node also has the `kiln-operator:dev` image, for
/// installing the chart ([`crate::chart`]).
///
/// Errors: as [`start_build_stack`].
pub async fn start_chart_stack() -> anyhow::Result<(crate::stack::LocalStack, kube::Client)> {
    start_stack_with_images(&["builder", "operator"]).await
}

async fn start_stack_with_images(
    kinds: &[&'static str],
) -> anyhow::Result<(crate::stack::LocalStack, kube::Client)> {
    crate::init_test_logging();
    let kinds = kinds.to_vec();
    let node_images = tokio::task::spawn_blocking(move || {
        kinds
            .into_iter()
            .map(crate::images::workspace_image)
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    let stack = crate::stack::LocalStack::start(crate::stack::StackOptions {
        base_images: true,
        node_images,
        ..Default::default()
    })
    .await?;
    let client = stack.cluster().client();
    install_crd(&client).await?;
    Ok((stack, client))
}

/// Creates `ib` and waits (up to `timeout`) until it finished.
///
/// Errors: the create is refused, or as [`wait_finished`].
pub async fn create_and_wait(
    api: &Api<ImageBuild>,
    ib: &ImageBuild,
    timeout: Duration,
) -> anyhow::Result<ImageBuild> {
    api.create(&PostParams::default(), ib).await?;
    let name = ib.metadata.name.as_deref().unwrap_or_default();
    wait_finished(api, name, timeout).await
}

/// The contents of `path` (relative, e.g. `srv/app/stamp`) in the image `repo:tag`, from
/// its topmost layer that has it (GNU tar reads compressed and plain layers alike); `None`
/// when no layer has it.
///
/// Errors: the registry refuses the manifest or a blob; `tar` cannot run.
pub async fn file_in_image(
    storage: &kiln_operator::storage::RegistryClient,
    repo: &kiln_operator::storage::RepoRef,
    tag: &str,
    path: &str,
) -> anyhow::Result<Option<String>> {
    let manifest = storage.get_manifest(repo, tag).await?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes)?;
    let dir = tempfile::tempdir()?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for layer in layers.iter().rev() {
        let digest = layer["digest"].as_str().context("a layer without digest")?;
        let blob = storage.get_blob(repo, digest).await?;
        let file = dir.path().join("layer");
        std::fs::write(&file, blob)?;
        let out = std::process::Command::new("tar")
            .arg("-xOf")
            .arg(&file)
            .arg(path)
            .output()
            .context("running tar")?;
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
        }
    }
    Ok(None)
}

/// Names of the pods of ImageBuild `name` still in `namespace` (a finished build leaves
/// none: its builder pods are deleted). Pods already being deleted are given up to 30 s
/// to go: on a real node the kubelet confirms a deletion (stops the containers, removes
/// the sandbox) before the pod object disappears.
///
/// Errors: the pod list fails.
pub async fn pods_left(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!("kiln.dev/imagebuild={name}")))
            .await?
            .items;
        let deleting = list.iter().any(|p| p.metadata.deletion_timestamp.is_some());
        if !deleting || Instant::now() > deadline {
            return Ok(list.into_iter().filter_map(|p| p.metadata.name).collect());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (image, platform) of each builder pod a build ran, from `status.builderPods`.
pub fn builder_pods(ib: &ImageBuild) -> Vec<(String, String)> {
    ib.status
        .iter()
        .flat_map(|s| &s.builder_pods)
        .map(|p| (p.image.clone(), p.platform.clone()))
        .collect()
}

/// (stage name, stage tag, rebuilt) of `image` from the build report's `Images` record
/// (for a multi-platform image, every platform's stages with ` (<platform>)` names).
pub fn report_stages(ib: &ImageBuild, image: &str) -> Vec<(String, String, bool)> {
    ib.status
        .as_ref()
        .and_then(|s| s.report.as_ref())
        .and_then(|r| r.images.get(image))
        .and_then(|i| i.stages.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (s.name.clone(), s.docker_tag.clone(), s.rebuilt))
        .collect()
}

/// Stage lock leases (lockgate annotations, their JSON values) in the lock ConfigMap of
/// `project` (`werf-<project>` in `namespace`); empty when none is held or left behind.
///
/// Errors: the ConfigMap read fails.
pub async fn lock_leases(
    client: &kube::Client,
    namespace: &str,
    project: &str,
) -> anyhow::Result<Vec<String>> {
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    Ok(maps
        .get_opt(&format!("werf-{project}"))
        .await?
        .and_then(|cm| cm.metadata.annotations)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with(kiln_operator::lock::key::ANNOTATION_PREFIX))
        .map(|(_, v)| v)
        .collect())
}

/// The image config (`config` of the config blob) of `repo:tag`.
///
/// Errors: the registry refuses the manifest or the blob; they are not JSON.
pub async fn image_config(
    storage: &kiln_operator::storage::RegistryClient,
    repo: &kiln_operator::storage::RepoRef,
    tag: &str,
) -> anyhow::Result<serde_json::Value> {
    let manifest = storage.get_manifest(repo, tag).await?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes)?;
    let digest = manifest["config"]["digest"]
        .as_str()
        .context("a manifest without config digest")?;
    let config: serde_json::Value = serde_json::from_slice(&storage.get_blob(repo, digest).await?)?;
    Ok(config["config"].clone())
}
