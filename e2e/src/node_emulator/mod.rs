//! A node emulator: stands in for a kubelet on a machine without one.
//!
//! It registers a Node (with `kubernetes.io/arch`, allocatable resources, a renewed
//! Lease), binds pending pods that fit it through the `pods/binding` subresource (the
//! call kube-scheduler makes), and runs each container's `command` + `args` as a host
//! process in its own mount namespace with the pod's environment and volumes
//! ([`sandbox`]). It reports phase and container states (Running, then Terminated with
//! exit code, reason and the termination message read from the container's
//! `terminationMessagePath`), and honours deletion: SIGTERM, the grace period, SIGKILL,
//! then the final grace-0 delete a kubelet makes.
//!
//! Images are not pulled or unpacked: an [`ImageMap`] decides what runs (see
//! [`image_map`]). `restartPolicy` is treated as `Never`: exited containers are not
//! restarted.

pub mod env;
pub mod image_map;
pub mod node;
pub mod runner;
pub mod sandbox;
pub mod scheduling;
pub mod status;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use image_map::ImageMap;

/// Longest grace period honoured on deletion (tests should not wait 30 s).
pub const MAX_GRACE: Duration = Duration::from_secs(30);

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum NodeEmulatorError {
    /// Registering the Node or its Lease failed.
    #[error("registering node {node}: {source}")]
    Register {
        /// Node name.
        node: String,
        /// kube-rs' error.
        source: kube::Error,
    },
    /// The state directory could not be created.
    #[error("creating node emulator state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How to run a [`NodeEmulator`].
#[derive(Debug, Clone)]
pub struct NodeEmulatorConfig {
    /// Node name (also `kubernetes.io/hostname`).
    pub node_name: String,
    /// `kubernetes.io/arch` label and `nodeInfo.architecture`; defaults to the host's.
    pub arch: String,
    /// More node labels.
    pub labels: BTreeMap<String, String>,
    /// Image → host entrypoint.
    pub image_map: ImageMap,
    /// Where pod volumes and container logs go; `None` = a temporary directory removed
    /// on drop.
    pub state_dir: Option<PathBuf>,
}

impl Default for NodeEmulatorConfig {
    fn default() -> Self {
        Self {
            node_name: "kiln-node".into(),
            arch: node::host_arch().into(),
            labels: BTreeMap::new(),
            image_map: ImageMap::new(),
            state_dir: None,
        }
    }
}

struct RunnerHandle {
    terminate: watch::Sender<Option<Duration>>,
}

/// State shared by the watch loop and the pod runners.
pub(crate) struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) image_map: ImageMap,
    pub(crate) pods_dir: PathBuf,
    logs_dir: PathBuf,
    /// Process groups of running containers, killed when the emulator is dropped.
    pgids: Mutex<HashSet<u32>>,
}

impl Shared {
    pub(crate) fn track(&self, pgid: u32, running: bool) {
        let mut set = self.pgids.lock().unwrap_or_else(|e| e.into_inner());
        if running {
            set.insert(pgid);
        } else {
            set.remove(&pgid);
        }
    }

    pub(crate) fn container_log(&self, ns: &str, pod: &str, container: &str) -> PathBuf {
        self.logs_dir.join(format!("{ns}_{pod}_{container}.log"))
    }
}

enum Dir {
    Temp(#[allow(dead_code)] tempfile::TempDir),
    Kept,
}

/// A running emulated node. Dropping it stops the watch, kills every container
/// process group it started and removes its temporary state directory. The Node object
/// stays (the control plane usually goes with it).
pub struct NodeEmulator {
    node_name: String,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    // Last: removed after the processes are gone.
    _dir: Dir,
}

impl std::fmt::Debug for NodeEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEmulator")
            .field("node_name", &self.node_name)
            .finish()
    }
}

impl NodeEmulator {
    /// Registers the node, renews its Lease, and starts binding and running pods.
    /// Returns once the Node exists and is Ready.
    pub async fn start(
        client: kube::Client,
        config: NodeEmulatorConfig,
    ) -> Result<Self, NodeEmulatorError> {
        let (dir, root) = match &config.state_dir {
            Some(p) => (Dir::Kept, p.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("kiln-node-")
                    .tempdir()
                    .map_err(|source| NodeEmulatorError::StateDir {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let p = t.path().to_owned();
                (Dir::Temp(t), p)
            }
        };
        let pods_dir = root.join("pods");
        let logs_dir = root.join("logs");
        for d in [&pods_dir, &logs_dir] {
            std::fs::create_dir_all(d).map_err(|source| NodeEmulatorError::StateDir {
                path: d.clone(),
                source,
            })?;
        }
        let node_obj = node::node_object(&config.node_name, &config.arch, &config.labels);
        let (cpu, mem) = node::host_resources();
        let register_err = |source| NodeEmulatorError::Register {
            node: config.node_name.clone(),
            source,
        };
        node::register(
            &client,
            &node_obj,
            &node::node_status(
                &config.arch,
                &cpu,
                &mem,
                &Time(k8s_openapi::jiff::Timestamp::now()),
            ),
        )
        .await
        .map_err(register_err)?;
        node::renew_lease(&client, &node_obj)
            .await
            .map_err(register_err)?;

        let shared = Arc::new(Shared {
            client: client.clone(),
            image_map: config.image_map.clone(),
            pods_dir,
            logs_dir,
            pgids: Mutex::new(HashSet::new()),
        });
        let heartbeat = {
            let client = client.clone();
            let node_obj = node_obj.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(node::HEARTBEAT).await;
                    if let Err(e) = node::renew_lease(&client, &node_obj).await {
                        tracing::warn!(error = %e, "node lease renewal failed");
                    }
                }
            })
        };
        let labels = node_obj.metadata.labels.clone().unwrap_or_default();
        let pods = tokio::spawn(watch_pods(shared.clone(), config.node_name.clone(), labels));
        Ok(Self {
            node_name: config.node_name,
            shared,
            tasks: vec![heartbeat, pods],
            _dir: dir,
        })
    }

    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Where the stdout+stderr of a container of pod `namespace/pod` is written (kept
    /// after the pod ends, until the emulator is dropped).
    pub fn container_log_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.shared.container_log(namespace, pod, container)
    }

    /// The directory of container logs.
    pub fn logs_dir(&self) -> &Path {
        &self.shared.logs_dir
    }
}

impl Drop for NodeEmulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let pgids: Vec<u32> = self
            .shared
            .pgids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for p in pgids {
            crate::process::signal_group(p, libc::SIGKILL);
        }
    }
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or(30)
        .max(0) as u64;
    Duration::from_secs(secs).min(MAX_GRACE)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

async fn bind(client: &kube::Client, pod: &Pod, node: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    match pods
        .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => tracing::debug!(pod = %name, namespace = %ns, node, "bound"),
        // Another node (or a scheduler) was faster, or the pod is going away.
        Err(e) => tracing::debug!(pod = %name, namespace = %ns, error = %e, "binding failed"),
    }
}

/// Records the scheduler's verdict on a pod the node cannot take (a `PodScheduled`
/// condition with reason `Unschedulable`), as kube-scheduler does for a pod no node fits.
async fn mark_unschedulable(client: &kube::Client, pod: &Pod, message: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let status = serde_json::json!({
        "status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
        }]}
    });
    if let Err(e) = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
        .await
    {
        tracing::debug!(pod = %name, namespace = %ns, error = %e, "marking unschedulable failed");
    }
}

async fn watch_pods(shared: Arc<Shared>, node: String, labels: BTreeMap<String, String>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let mut runners: HashMap<String, RunnerHandle> = HashMap::new();
    // Pods already run to completion: never run a UID twice, even if a stale event
    // still shows it Running.
    let mut finished: HashSet<String> = HashSet::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let event = tokio::select! {
            ev = stream.next() => match ev {
                Some(ev) => ev,
                None => return,
            },
            Some(uid) = done_rx.recv() => {
                runners.remove(&uid);
                finished.insert(uid);
                continue;
            }
        };
        let (pod, deleted) = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "pod watch error");
                continue;
            }
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str());
        if deleted {
            if let Some(r) = runners.get(&uid) {
                let _ = r.terminate.send(Some(Duration::ZERO));
            }
            continue;
        }
        if !on_node {
            if scheduling::should_bind(&pod, &labels) {
                let client = shared.client.clone();
                let node = node.clone();
                tokio::spawn(async move { bind(&client, &pod, &node).await });
            } else if let Some(message) = scheduling::unschedulable_message(&pod, &labels) {
                let client = shared.client.clone();
                tokio::spawn(async move { mark_unschedulable(&client, &pod, &message).await });
            }
            continue;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            match runners.get(&uid) {
                Some(r) => {
                    let grace = grace_of(&pod);
                    r.terminate.send_if_modified(|cur| {
                        let shorter = cur.is_none_or(|c| grace < c);
                        if shorter {
                            *cur = Some(grace);
                        }
                        shorter
                    });
                }
                None => {
                    let client = shared.client.clone();
                    let ns = pod.metadata.namespace.clone().unwrap_or_default();
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    tokio::spawn(
                        async move { runner::delete_now(&client, &ns, &name, &uid).await },
                    );
                }
            }
            continue;
        }
        if runners.contains_key(&uid) || finished.contains(&uid) || is_terminal(&pod) {
            continue;
        }
        tracing::debug!(pod = ?pod.metadata.name, namespace = ?pod.metadata.namespace, "starting pod");
        let (tx, rx) = watch::channel(None);
        runners.insert(uid.clone(), RunnerHandle { terminate: tx });
        let shared = shared.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            runner::run_pod(shared, pod, rx).await;
            let _ = done.send(uid);
        });
    }
}
