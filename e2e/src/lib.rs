//! Kiln's local Kubernetes for end-to-end tests and the demo: a real control plane
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler built by
//! `hack/setup.sh`), a real node (containerd + kubelet) whose pods run as containers, plus
//! the registry and git server from `kiln-testkit` on the node's bridge address.
//! Everything stops when dropped.

pub mod binaries;
pub mod chart;
pub mod cluster;
pub mod control_plane;
pub mod harness;
pub mod images;
pub mod node;
pub mod pki;
pub mod process;
pub mod stack;

pub use cluster::{
    NodeNetwork, TestCluster, init_test_logging, wait_for_pod, wait_for_pod_completion,
    wait_for_pod_gone,
};
pub use control_plane::{ControlPlane, ControlPlaneError, ControlPlaneOptions};
pub use node::{RealNode, RealNodeOptions};
