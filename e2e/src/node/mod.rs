//! A real Kubernetes node for the local cluster: containerd (Debian's, with its own root,
//! state directory and socket) and a kubelet built by `hack/setup.sh`, registered with the
//! stack's kube-apiserver. Pods run as containers: images come from OCI archives imported
//! at start-up (the pause and busybox images `hack/setup.d/45-node-images.sh` makes, plus
//! any the caller names) or are pulled from the stack's registry, which containerd uses
//! as the `docker.io` mirror.
//!
//! Everything pods talk to must listen on the node's bridge address ([`network`]), not
//! 127.0.0.1, which inside a pod is the pod itself.
//!
//! Dropping a [`RealNode`] stops the kubelet, kills every container the node ran, stops
//! containerd and its shims, unmounts what they mounted and removes the pod cgroups and
//! IP leases ([`teardown`]), so a test leaves nothing behind even when it panics.

pub mod config;
pub mod network;
pub mod teardown;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::binaries::Binaries;
use crate::control_plane::ControlPlane;
use crate::pki::CertUsage;
use crate::process::ManagedProcess;
pub use network::{Bridge, Slot};

/// Node name (also `kubernetes.io/hostname`).
pub const NODE_NAME: &str = "kiln-node";
/// The pod sandbox image imported from the node-images cache.
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:kiln";

/// The architecture name Kubernetes uses for this host (`kubernetes.io/arch`, Go's
/// `GOARCH`): `amd64` for x86_64, `arm64` for aarch64.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// How to start a [`RealNode`].
#[derive(Debug, Clone, Default)]
pub struct RealNodeOptions {
    /// Registry (`host:port`, plain HTTP) containerd pulls `docker.io` images through and
    /// trusts over plain HTTP.
    pub registry_mirror: Option<String>,
    /// OCI archives to import into containerd besides the pause and busybox images (the
    /// name inside each archive is the image name).
    pub images: Vec<PathBuf>,
    /// Extra node labels.
    pub labels: Vec<(String, String)>,
    /// Keep the node's state here instead of a temporary directory.
    pub state_dir: Option<PathBuf>,
}

/// Errors starting the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The node images were never built.
    #[error("node image {0} is missing: run hack/setup.sh (hack/setup.d/45-node-images.sh)")]
    MissingImage(PathBuf),
    /// A certificate could not be issued.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// containerd or kubelet could not be started.
    #[error(transparent)]
    Spawn(#[from] crate::process::SpawnError),
    /// A command (`ctr`) failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its output.
        output: String,
    },
    /// A component exited or a condition did not hold in time.
    #[error("{0}")]
    NotReady(String),
}

/// A running node. Field order is drop order: kubelet, then the teardown of containers and
/// containerd, then the state directory.
pub struct RealNode {
    kubelet: Option<ManagedProcess>,
    containerd: Option<ManagedProcess>,
    state: PathBuf,
    socket: PathBuf,
    cgroup_root: String,
    network_name: String,
    host_ip: IpAddr,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for RealNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealNode")
            .field("state", &self.state)
            .field("host_ip", &self.host_ip)
            .finish()
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NodeError {
    let path = path.to_owned();
    move |source| NodeError::Io { what, path, source }
}

/// The directory of the node images (`$KILN_CACHE_DIR/node-images/current`).
pub fn node_images_dir() -> Result<PathBuf, crate::binaries::BinariesError> {
    Ok(crate::binaries::cache_dir()?.join("node-images/current"))
}

impl RealNode {
    /// Starts containerd and kubelet for `cp` on `slot`'s bridge and waits until the node
    /// is Ready.
    pub async fn start(
        cp: &ControlPlane,
        client: &kube::Client,
        bins: &Binaries,
        slot: &Slot,
        opts: RealNodeOptions,
    ) -> Result<Self, NodeError> {
        let started = Instant::now();
        let (dir, state) = match &opts.state_dir {
            Some(p) => (None, p.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("kiln-node-")
                    .tempdir()
                    .map_err(io(
                        "creating a temporary directory in",
                        &std::env::temp_dir(),
                    ))?;
                let p = t.path().to_owned();
                (Some(t), p)
            }
        };
        for sub in [
            "logs",
            "cni",
            "pki",
            "kubelet",
            "pod-logs",
            "volume-plugins",
        ] {
            let p = state.join(sub);
            std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
        }
        let images = node_images_dir().map_err(|e| NodeError::NotReady(e.to_string()))?;
        let mut archives = vec![images.join("pause.oci.tar"), images.join("busybox.oci.tar")];
        archives.extend(opts.images.iter().cloned());
        if let Some(missing) = archives.iter().find(|a| !a.is_file()) {
            return Err(NodeError::MissingImage(missing.clone()));
        }

        let host_ip = IpAddr::V4(slot.host_ip());
        let conflist = state.join("cni/10-kiln.conflist");
        std::fs::write(&conflist, network::cni_conflist(slot)).map_err(io("writing", &conflist))?;
        let socket = state.join("containerd.sock");
        let ctd_config = state.join("containerd.toml");
        std::fs::write(
            &ctd_config,
            config::containerd_toml(&state, &socket, opts.registry_mirror.as_deref()),
        )
        .map_err(io("writing", &ctd_config))?;
        let mut node = RealNode {
            kubelet: None,
            containerd: None,
            state: state.clone(),
            socket: socket.clone(),
            cgroup_root: slot.cgroup_root(),
            network_name: slot.bridge_name(),
            host_ip,
            _dir: dir,
        };
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(&ctd_config);
        node.containerd = Some(ManagedProcess::spawn(
            "containerd",
            cmd,
            &state.join("logs/containerd.log"),
            true,
        )?);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !socket.exists() || node.ctr(&["version"]).is_err() {
            node.check_alive()?;
            if Instant::now() > deadline {
                return Err(NodeError::NotReady(format!(
                    "containerd did not answer on {} within 60 s",
                    socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for archive in &archives {
            let a = archive.to_string_lossy();
            node.ctr(&["images", "import", "--no-unpack", &a])?;
        }

        // The kubelet's identity and serving certificate, from the cluster CA.
        let pki_dir = state.join("pki");
        let (client_crt, client_key) = cp.pki().issue(
            &pki_dir,
            "kubelet",
            &format!("/O=system:nodes/CN=system:node:{NODE_NAME}"),
            CertUsage::Client,
            &[],
        )?;
        let (serving_crt, serving_key) = cp.pki().issue(
            &pki_dir,
            "kubelet-serving",
            &format!("/CN={NODE_NAME}"),
            CertUsage::Server,
            &[host_ip],
        )?;
        let kubeconfig = state.join("kubelet.kubeconfig");
        crate::control_plane::write_kubeconfig_for(
            &kubeconfig,
            cp.server_url(),
            &cp.pki().ca_cert,
            &client_crt,
            &client_key,
            &format!("system:node:{NODE_NAME}"),
        )
        .map_err(|e| NodeError::NotReady(e.to_string()))?;
        let kubelet_config = state.join("kubelet.yaml");
        std::fs::write(
            &kubelet_config,
            config::kubelet_yaml(&config::KubeletConfig {
                state: &state,
                socket: &socket,
                host_ip,
                cgroup_root: &node.cgroup_root,
                ca: &cp.pki().ca_cert,
                serving: (&serving_crt, &serving_key),
            }),
        )
        .map_err(io("writing", &kubelet_config))?;
        let labels = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        teardown::create_cgroup(&node.cgroup_root).map_err(io(
            "creating the cgroup parent",
            Path::new(&node.cgroup_root),
        ))?;
        let mut cmd = Command::new(bins.path("kubelet"));
        cmd.arg(format!("--config={}", kubelet_config.display()))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--root-dir={}", state.join("kubelet").display()))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg(format!("--node-ip={host_ip}"))
            .arg("--v=0");
        if !labels.is_empty() {
            cmd.arg(format!("--node-labels={labels}"));
        }
        node.kubelet = Some(ManagedProcess::spawn(
            "kubelet",
            cmd,
            &state.join("logs/kubelet.log"),
            true,
        )?);
        node.wait_ready(client, deadline).await?;
        tracing::info!(elapsed = ?started.elapsed(), "node {NODE_NAME} Ready");
        Ok(node)
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        NODE_NAME
    }

    /// The bridge address pods reach the host on.
    pub fn host_ip(&self) -> IpAddr {
        self.host_ip
    }

    /// containerd's and kubelet's logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.state.join("logs")
    }

    /// Where kubelet writes container logs (`<ns>_<pod>_<uid>/<container>/0.log`).
    pub fn pod_logs_dir(&self) -> PathBuf {
        self.state.join("pod-logs")
    }

    /// containerd's socket (for `ctr --address`).
    pub fn containerd_socket(&self) -> &Path {
        &self.socket
    }

    /// Process ids of containerd and kubelet, by name.
    pub fn pids(&self) -> Vec<(&str, u32)> {
        [self.containerd.as_ref(), self.kubelet.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| (p.name(), p.pid()))
            .collect()
    }

    /// Runs `ctr` against this node's containerd in the `k8s.io` namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<String, NodeError> {
        let mut full = vec!["--address".to_owned(), self.socket.display().to_string()];
        full.extend(["--namespace".to_owned(), "k8s.io".to_owned()]);
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let command = format!("ctr {}", full.join(" "));
        let out = Command::new("ctr")
            .args(&full)
            .output()
            .map_err(|e| NodeError::Command {
                command: command.clone(),
                output: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(NodeError::Command {
                command,
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn check_alive(&self) -> Result<(), NodeError> {
        for p in [self.containerd.as_ref(), self.kubelet.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(msg) = p.describe_exit() {
                return Err(NodeError::NotReady(msg));
            }
        }
        Ok(())
    }

    async fn wait_ready(&self, client: &kube::Client, deadline: Instant) -> Result<(), NodeError> {
        let nodes: Api<Node> = Api::all(client.clone());
        loop {
            self.check_alive()?;
            if let Ok(Some(n)) = nodes.get_opt(NODE_NAME).await
                && n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let tail = self
                    .kubelet
                    .as_ref()
                    .map(|k| k.log_tail(4096))
                    .unwrap_or_default();
                return Err(NodeError::NotReady(format!(
                    "node {NODE_NAME} not Ready within 60 s; kubelet log tail:\n{tail}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if let Some(mut k) = self.kubelet.take() {
            k.stop(Duration::from_secs(2));
        }
        teardown::kill_cgroup(&self.cgroup_root);
        if let Some(mut c) = self.containerd.take() {
            c.stop(Duration::from_secs(2));
        }
        teardown::kill_shims(&self.socket);
        teardown::unmount_under(&self.state);
        teardown::remove_cgroup(&self.cgroup_root);
        teardown::remove_cni_state(&self.network_name);
        teardown::remove_container_log_links(&self.state);
    }
}
