//! The emulated Node object and its heartbeat.
//!
//! kube-controller-manager's node-lifecycle controller marks a node NotReady (and
//! evicts its pods) when neither its Ready condition nor its Lease in
//! `kube-node-lease` is renewed within the grace period (40 s), so the emulator
//! renews the Lease every [`HEARTBEAT`] like a kubelet does.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::Resource as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use super::status::NODE_IP;

/// Lease renewal interval (the kubelet's default is 10 s for a 40 s lease).
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// `spec.leaseDurationSeconds` of the node Lease.
pub const LEASE_SECONDS: i32 = 40;
/// The version the Node reports as its kubelet.
pub const KUBELET_VERSION: &str = "v1.36.3-kiln-node-emulator";

/// The architecture name Kubernetes uses for this host (`kubernetes.io/arch`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The Node object: labels (`kubernetes.io/arch`, `kubernetes.io/os`,
/// `kubernetes.io/hostname` plus `extra_labels`) and no taints.
pub fn node_object(name: &str, arch: &str, extra_labels: &BTreeMap<String, String>) -> Node {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/arch", arch),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/hostname", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    labels.extend(extra_labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            annotations: Some([("kiln.dev/node-emulator".to_owned(), "true".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Node status: Ready, loopback address, capacity = allocatable = `cpu`,
/// `memory` (a Kubernetes quantity) and 110 pods.
pub fn node_status(arch: &str, cpu: &str, memory: &str, now: &Time) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", cpu),
        ("memory", memory),
        ("pods", "110"),
        ("ephemeral-storage", "100Gi"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
    .collect();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: NODE_IP.into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: "localhost".into(),
            },
        ]),
        conditions: Some(vec![
            cond(
                "Ready",
                "True",
                "KubeletReady",
                "kiln node emulator is ready",
            ),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", ""),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", ""),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", ""),
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: arch.to_owned(),
            operating_system: "linux".into(),
            kubelet_version: KUBELET_VERSION.into(),
            container_runtime_version: "kiln-node-emulator://0".into(),
            os_image: "Kiln node emulator (host processes)".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates (or takes over) the Node and writes its status.
pub async fn register(
    client: &kube::Client,
    node: &Node,
    status: &NodeStatus,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    match nodes.create(&PostParams::default(), node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            nodes
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(
                        serde_json::json!({"metadata": {"labels": node.metadata.labels}}),
                    ),
                )
                .await?;
        }
        Err(e) => return Err(e),
    }
    nodes
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await?;
    Ok(())
}

/// Creates or renews the node's Lease in `kube-node-lease` (owned by the Node, so it
/// goes away with it).
pub async fn renew_lease(client: &kube::Client, node: &Node) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let name = node.metadata.name.clone().unwrap_or_default();
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(name.clone()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(now),
        ..Default::default()
    };
    match leases.get_opt(&name).await? {
        Some(_) => {
            leases
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "spec": spec })),
                )
                .await?;
        }
        None => {
            let nodes: Api<Node> = Api::all(client.clone());
            let owner = nodes.get(&name).await?;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: Node::API_VERSION.into(),
                        kind: Node::KIND.into(),
                        name: name.clone(),
                        uid: owner.metadata.uid.unwrap_or_default(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Host CPU count and memory as Kubernetes quantities (`"2"`, `"24576Mi"`).
pub fn host_resources() -> (String, String) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(4 * 1024 * 1024);
    (cpus.to_string(), format!("{}Ki", mem_kib))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_carries_arch_os_hostname_and_extra_labels() {
        let extra = [("pool".to_string(), "builders".to_string())].into();
        let n = node_object("n1", "arm64", &extra);
        let l = n.metadata.labels.unwrap();
        assert_eq!(l["kubernetes.io/arch"], "arm64");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["kubernetes.io/hostname"], "n1");
        assert_eq!(l["pool"], "builders");
    }

    #[test]
    fn status_is_ready_with_allocatable() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let s = node_status("amd64", "2", "1Gi", &now);
        assert_eq!(s.allocatable.as_ref().unwrap()["cpu"].0, "2");
        assert_eq!(s.allocatable.as_ref().unwrap()["memory"].0, "1Gi");
        let ready = &s.conditions.unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
    }

    #[test]
    fn x86_64_is_amd64() {
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(host_arch(), "amd64");
        }
    }
}
