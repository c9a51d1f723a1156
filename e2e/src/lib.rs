//! Kiln's local Kubernetes for end-to-end tests and the demo: a real control plane
//! (etcd, kube-apiserver, kube-controller-manager built by `hack/setup.sh`), a node
//! emulator that runs pods as host processes, plus the registry and git server from
//! `kiln-testkit`. Everything binds to loopback and stops when dropped.

pub mod binaries;
pub mod chart;
pub mod cluster;
pub mod control_plane;
pub mod harness;
pub mod images;
pub mod node;
pub mod node_emulator;
pub mod pki;
pub mod process;
pub mod stack;

pub use cluster::{
    ClusterNode, NodeNetwork, TestCluster, init_test_logging, wait_for_pod,
    wait_for_pod_completion, wait_for_pod_gone,
};
pub use control_plane::{ControlPlane, ControlPlaneError, ControlPlaneOptions};
pub use node_emulator::{ImageMap, NodeEmulator, NodeEmulatorConfig};
