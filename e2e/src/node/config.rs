//! The node's configuration files: containerd's `config.toml` (version 2, containerd 1.6)
//! and the `KubeletConfiguration`. Pure text from paths; each setting that differs from the
//! defaults says why.

use std::net::IpAddr;
use std::path::Path;

/// containerd's configuration with root, state and socket under `state`.
///
/// - `restrict_oom_score_adj`: these VMs withhold CAP_SYS_RESOURCE even from root, so runc
///   cannot give the sandbox its `oomScoreAdj: -998` and every sandbox would fail.
/// - `SystemdCgroup = false`: no systemd; cgroupfs like the kubelet.
/// - `netns_mounts_under_state_dir`: pod network namespaces live in the state directory,
///   not the host-wide `/run/netns`, so teardown finds exactly this node's.
/// - `registry_mirror`: `docker.io` images come from the stack's registry (plain HTTP).
pub fn containerd_toml(state: &Path, socket: &Path, registry_mirror: Option<&str>) -> String {
    let s = state.display();
    let mut text = format!(
        r#"version = 2
root = "{s}/containerd/root"
state = "{s}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{s}/cni"
"#,
        socket = socket.display(),
        sandbox = super::SANDBOX_IMAGE,
    );
    if let Some(mirror) = registry_mirror {
        text.push_str(&format!(
            r#"  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["http://{mirror}"]
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{mirror}"]
    endpoint = ["http://{mirror}"]
"#
        ));
    }
    text
}

/// What [`kubelet_yaml`] needs.
#[derive(Debug)]
pub struct KubeletConfig<'a> {
    /// The node's state directory.
    pub state: &'a Path,
    /// containerd's socket.
    pub socket: &'a Path,
    /// The bridge address the kubelet serves on (logs, exec).
    pub host_ip: IpAddr,
    /// cgroup parent of the pods.
    pub cgroup_root: &'a str,
    /// The cluster CA (clients of the kubelet API).
    pub ca: &'a Path,
    /// Serving certificate and key.
    pub serving: (&'a Path, &'a Path),
}

/// The `KubeletConfiguration`.
///
/// - `failCgroupV1: false`: kubelet 1.35+ refuses cgroup v1, which these VMs run.
/// - `cgroupDriver: cgroupfs`, `oomScoreAdj: 0` (no systemd; no CAP_SYS_RESOURCE).
/// - `healthzPort: 0`, `readOnlyPort: 0`: several kubelets share one machine; the
///   API port is per bridge address.
/// - eviction and image GC thresholds out of reach: a busy test machine's disk must not
///   evict test pods or delete imported images (nothing could pull them back).
pub fn kubelet_yaml(c: &KubeletConfig<'_>) -> String {
    let s = c.state.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
oomScoreAdj: 0
failSwapOn: false
address: {ip}
port: 10250
healthzPort: 0
readOnlyPort: 0
containerRuntimeEndpoint: unix://{socket}
podLogsDir: {s}/pod-logs
volumePluginDir: {s}/volume-plugins
staticPodPath: ""
resolvConf: /etc/resolv.conf
serializeImagePulls: false
tlsCertFile: {crt}
tlsPrivateKeyFile: {key}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusReportFrequency: 10s
logging:
  format: text
"#,
        cgroup_root = c.cgroup_root,
        ip = c.host_ip,
        socket = c.socket.display(),
        crt = c.serving.0.display(),
        key = c.serving.1.display(),
        ca = c.ca.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    #[test]
    fn containerd_config_keeps_everything_in_the_state_dir_and_mirrors_the_registry() {
        let text = containerd_toml(
            Path::new("/s"),
            Path::new("/s/containerd.sock"),
            Some("10.244.3.1:5000"),
        );
        for line in [
            "root = \"/s/containerd/root\"",
            "state = \"/s/containerd/state\"",
            "  address = \"/s/containerd.sock\"",
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            "        SystemdCgroup = false",
            "    conf_dir = \"/s/cni\"",
            "  [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]",
            "    endpoint = [\"http://10.244.3.1:5000\"]",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let without = containerd_toml(Path::new("/s"), Path::new("/s/c.sock"), None);
        assert!(!without.contains("mirrors"), "{without}");
    }

    #[test]
    fn kubelet_config_serves_on_the_bridge_without_host_wide_ports() {
        let text = kubelet_yaml(&KubeletConfig {
            state: Path::new("/s"),
            socket: Path::new("/s/containerd.sock"),
            host_ip: IpAddr::V4(Ipv4Addr::new(10, 244, 3, 1)),
            cgroup_root: "/kiln-node-3",
            ca: Path::new("/pki/ca.crt"),
            serving: (Path::new("/s/pki/k.crt"), Path::new("/s/pki/k.key")),
        });
        for line in [
            "address: 10.244.3.1",
            "healthzPort: 0",
            "readOnlyPort: 0",
            "failCgroupV1: false",
            "cgroupRoot: /kiln-node-3",
            "containerRuntimeEndpoint: unix:///s/containerd.sock",
            "    clientCAFile: /pki/ca.crt",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
