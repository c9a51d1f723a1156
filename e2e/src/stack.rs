//! The whole local stack for the demo and for tests that need everything: a control
//! plane with one real node, a registry and a git server, all listening on the node's
//! bridge address (pods reach them there; so does the host).

use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_testkit::git_server::GitServer;
use kiln_testkit::registry::{RegistryOptions, TestRegistry};
use serde::{Deserialize, Serialize};

use crate::cluster::{NodeNetwork, TestCluster};
use crate::control_plane::ControlPlaneOptions;
use crate::node::RealNodeOptions;

/// Image repository of the builder image made from the workspace's `kiln-builder`
/// ([`crate::images`]).
pub const DEFAULT_BUILDER_IMAGE: &str = "kiln-builder";

/// How to start a [`LocalStack`].
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Keep control-plane and node state here; `None` = temporary directories.
    pub state_dir: Option<PathBuf>,
    /// Register QEMU for arm64 and push the offline busybox base images (amd64, arm64,
    /// manifest list) to the registry as `library/busybox` (testkit `base_images`), so
    /// the registry can stand in as a docker.io mirror for `FROM busybox`.
    pub base_images: bool,
    /// Start the registry with its access log on, so [`TestRegistry::requests`] lists
    /// every request it served (benchmarks count them).
    pub registry_access_log: bool,
    /// OCI archives the real node imports into containerd at start-up.
    pub node_images: Vec<PathBuf>,
}

/// What a user needs to talk to the stack; written as `info.json` by
/// `kiln-local-stack`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackInfo {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// kube-apiserver URL.
    pub server: String,
    /// Registry host (`127.0.0.1:PORT`), plain HTTP, no auth.
    pub registry: String,
    /// Git server base URL; repositories are `GIT_URL/NAME.git`.
    pub git_url: String,
    /// Where bare repositories served by the git server live.
    pub git_repos_dir: PathBuf,
    /// The node's name.
    pub node: String,
    /// Container logs of pods run by the node (kubelet's pod log directory).
    pub container_logs: PathBuf,
    /// Control-plane logs (etcd, kube-apiserver, kube-controller-manager).
    pub control_plane_logs: PathBuf,
    /// Process group ids of the control-plane processes.
    pub pids: Vec<(String, u32)>,
    /// The busybox manifest list in the registry, when base images were pushed.
    pub base_image: Option<String>,
}

/// `name` in the cargo target directory of the running executable (test binaries live
/// in `target/<profile>/deps`, binaries in `target/<profile>`).
pub fn workspace_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.parent()?.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

/// A running stack. Field order is drop order: the git server and the registry stop
/// before the cluster deletes the node bridge they listen on.
pub struct LocalStack {
    git: GitServer,
    registry: TestRegistry,
    cluster: TestCluster,
    base_image: Option<String>,
}

impl std::fmt::Debug for LocalStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStack")
            .field("cluster", &self.cluster)
            .field("registry", &self.registry.address())
            .field("git", &self.git.address())
            .finish()
    }
}

impl LocalStack {
    /// Starts registry, git server, control plane and node.
    pub async fn start(opts: StackOptions) -> anyhow::Result<Self> {
        let network = NodeNetwork::create()?;
        let host = network.bridge.ip();
        let registry = TestRegistry::start_with(RegistryOptions {
            access_log: opts.registry_access_log,
            host: Some(host),
            ..RegistryOptions::default()
        })
        .context("starting the registry")?;
        let git = GitServer::start_on(host).context("starting the git server")?;
        let base_image = if opts.base_images {
            let address = registry.address().to_owned();
            let images = tokio::task::spawn_blocking(move || {
                kiln_testkit::qemu::ensure_aarch64().context("registering QEMU for arm64")?;
                kiln_testkit::base_images::push_busybox(&address, "library/busybox")
                    .context("pushing the busybox base images")
            })
            .await??;
            Some(images.list)
        } else {
            None
        };
        let sub = |n: &str| opts.state_dir.as_ref().map(|d| d.join(n));
        let cp = ControlPlaneOptions {
            state_dir: sub("control-plane"),
            ..Default::default()
        };
        let cluster = TestCluster::start_on(
            network,
            cp,
            RealNodeOptions {
                registry_mirror: Some(registry.address().to_owned()),
                images: opts.node_images.clone(),
                state_dir: sub("node"),
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            cluster,
            registry,
            git,
            base_image,
        })
    }

    /// The cluster (client, control plane, node).
    pub fn cluster(&self) -> &TestCluster {
        &self.cluster
    }

    /// The registry.
    pub fn registry(&self) -> &TestRegistry {
        &self.registry
    }

    /// The git server.
    pub fn git(&self) -> &GitServer {
        &self.git
    }

    /// Addresses and paths, for printing.
    pub fn info(&self) -> StackInfo {
        let cp = self.cluster.control_plane();
        StackInfo {
            kubeconfig: cp.kubeconfig_path().to_owned(),
            server: cp.server_url().to_owned(),
            registry: self.registry.address().to_owned(),
            git_url: format!("http://{}", self.git.address()),
            git_repos_dir: self.git.repos_dir(),
            node: self.cluster.node().node_name().to_owned(),
            container_logs: self.cluster.node().pod_logs_dir(),
            control_plane_logs: cp.state_dir().join("logs"),
            pids: cp
                .pids()
                .into_iter()
                .chain(self.cluster.node().pids())
                .map(|(n, p)| (n.to_owned(), p))
                .collect(),
            base_image: self.base_image.clone(),
        }
    }
}

impl StackInfo {
    /// Human-readable usage text.
    pub fn usage(&self, state_dir: &Path) -> String {
        format!(
            "Kiln local stack is up (state in {state}).\n\
             \n  export KUBECONFIG={kc}\n  \
             kubectl get nodes -o wide              # node {node} (kubelet + containerd)\n\
             \n  kube-apiserver  {server}\n  \
             registry        {registry}  (plain HTTP, no auth){base}\n  \
             git server      {git}/NAME.git  (bare repos in {repos}; `git init --bare` one there, then push)\n  \
             container logs  {clogs}\n  \
             control plane   {cplogs}\n\
             \nStop it with: cargo run -p kiln-e2e --bin kiln-local-stack -- down\n",
            state = state_dir.display(),
            kc = self.kubeconfig.display(),
            node = self.node,
            server = self.server,
            registry = self.registry,
            base = self
                .base_image
                .as_ref()
                .map(|b| format!("; base image {b} (amd64+arm64)"))
                .unwrap_or_default(),
            git = self.git_url,
            repos = self.git_repos_dir.display(),
            clogs = self.container_logs.display(),
            cplogs = self.control_plane_logs.display(),
        )
    }
}
