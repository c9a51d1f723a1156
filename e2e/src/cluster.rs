//! The test fixture: a control plane plus one real node (containerd + kubelet,
//! [`crate::node`]), and helpers to wait for pods.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cluster = kiln_e2e::TestCluster::start().await?;
//! let client = cluster.client();
//! // ... create pods through `client`; they run as containers on the node ...
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::binaries::Binaries;
use crate::control_plane::{ControlPlane, ControlPlaneOptions};
use crate::node::network::{Bridge, Slot};
use crate::node::{RealNode, RealNodeOptions};

/// A real node's network: its slot and bridge, made before anything that must listen on
/// the bridge address (registry, git server, kube-apiserver).
#[derive(Debug)]
pub struct NodeNetwork {
    /// The bridge (dropped before the slot is released).
    pub bridge: Bridge,
    /// The claimed slot.
    pub slot: Slot,
}

impl NodeNetwork {
    /// Claims a free slot and creates its bridge.
    pub fn create() -> anyhow::Result<Self> {
        let slot = Slot::claim()?;
        let bridge = Bridge::create(&slot)?;
        Ok(Self { bridge, slot })
    }
}

/// A control plane with kube-controller-manager and kube-scheduler, and one node. Field
/// order is drop order: the node's containers stop before the control plane, the bridge
/// goes last.
pub struct TestCluster {
    node: RealNode,
    control_plane: ControlPlane,
    client: kube::Client,
    network: NodeNetwork,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("node", &self.node)
            .field("control_plane", &self.control_plane)
            .finish()
    }
}

impl TestCluster {
    /// Starts a control plane and a node with defaults (node `kiln-node`, the pause and
    /// busybox images, no registry mirror).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(
            NodeNetwork::create()?,
            ControlPlaneOptions::default(),
            RealNodeOptions::default(),
        )
        .await
    }

    /// Starts a control plane (with kube-scheduler, listening on the bridge address) and a
    /// node on `network`.
    pub async fn start_on(
        mut network: NodeNetwork,
        cp: ControlPlaneOptions,
        node: RealNodeOptions,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let bins = match cp.binaries.clone() {
            Some(b) => b,
            None => Binaries::locate()?,
        };
        let control_plane = ControlPlane::start(ControlPlaneOptions {
            host: network.bridge.ip(),
            scheduler: true,
            binaries: Some(bins.clone()),
            ..cp
        })
        .await
        .context("starting the control plane")?;
        network
            .bridge
            .route_kubernetes_service(control_plane.api_port())?;
        let client = control_plane.client().await?;
        let node = RealNode::start(&control_plane, &client, &bins, &network.slot, node)
            .await
            .context("starting the node (containerd, kubelet)")?;
        tracing::info!(elapsed = ?started.elapsed(), "cluster up");
        Ok(Self {
            node,
            control_plane,
            client,
            network,
        })
    }

    /// An admin client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The control plane (kubeconfig path, state dir, ...).
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// The address pods reach the host on (the node's bridge).
    pub fn host_ip(&self) -> std::net::IpAddr {
        self.network.bridge.ip()
    }

    /// The node.
    pub fn node(&self) -> &RealNode {
        &self.node
    }

    /// Creates a namespace and waits for its `default` ServiceAccount.
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        Ok(self
            .control_plane
            .create_namespace(&self.client, name)
            .await?)
    }
}

/// Polls pod `namespace/name` every 100 ms until `done` holds, for at most `timeout`.
/// The error names the pod and shows its last status.
pub async fn wait_for_pod(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    done: impl Fn(&Pod) -> bool,
) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let pod = pods.get_opt(name).await?;
        if let Some(p) = &pod
            && done(p)
        {
            return Ok(p.clone());
        }
        if Instant::now() > deadline {
            bail!(
                "pod {namespace}/{name} did not reach the expected state within {timeout:?}; \
                 last seen: {}",
                pod.map(|p| serde_json::to_string_pretty(&p.status).unwrap_or_default())
                    .unwrap_or_else(|| "absent".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the pod is Succeeded or Failed.
pub async fn wait_for_pod_completion(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Pod> {
    wait_for_pod(client, namespace, name, timeout, |p| {
        matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
    })
    .await
}

/// Waits until the pod no longer exists.
pub async fn wait_for_pod_gone(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let Some(p) = pods.get_opt(name).await? else {
            return Ok(());
        };
        if Instant::now() > deadline {
            bail!(
                "pod {namespace}/{name} still exists after {timeout:?} (deletionTimestamp {:?}, phase {:?})",
                p.metadata.deletion_timestamp,
                p.status.and_then(|s| s.phase)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `tracing` output to the test harness's captured output, filtered by
/// `RUST_LOG` (default `warn,kiln_e2e=info`). Safe to call from every test.
pub fn init_test_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kiln_e2e=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
