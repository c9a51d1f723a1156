//! A node's network: a slot number that no other stack on this machine holds, the bridge
//! `kiln<N>` with address `10.244.<N>.1/24` that pods attach to (CNI `bridge` +
//! `host-local`), and the one NAT rule that lets pods reach kube-apiserver through the
//! `kubernetes` Service address (what kube-proxy would do, for the one Service there is).
//!
//! Slots are claimed with `flock` on `/run/kiln-e2e/slot-<N>.lock`: the kernel drops the
//! lock when the holder dies, so a slot left by a killed test is free again, and its stale
//! bridge is removed before it is made anew.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

/// Where slot lock files live.
pub const SLOT_DIR: &str = "/run/kiln-e2e";
/// Slots 1..=MAX_SLOTS exist (one /24 each in 10.244.0.0/16).
pub const MAX_SLOTS: u8 = 250;
/// The `kubernetes` Service's ClusterIP (first address of `--service-cluster-ip-range`).
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// Errors setting up the network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Every slot is held by a running stack.
    #[error("all {MAX_SLOTS} node network slots in {SLOT_DIR} are taken")]
    NoSlot,
    /// A lock file could not be opened.
    #[error("opening {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `ip` or `iptables` failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr (or the spawn error).
        output: String,
    },
}

/// A claimed slot: held until dropped.
#[derive(Debug)]
pub struct Slot {
    index: u8,
    _lock: File,
}

impl Slot {
    /// Claims the lowest free slot.
    pub fn claim() -> Result<Self, NetworkError> {
        std::fs::create_dir_all(SLOT_DIR).map_err(|source| NetworkError::Lock {
            path: SLOT_DIR.into(),
            source,
        })?;
        for index in 1..=MAX_SLOTS {
            let path = PathBuf::from(format!("{SLOT_DIR}/slot-{index}.lock"));
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| NetworkError::Lock { path, source })?;
            // SAFETY: flock on a file descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Self { index, _lock: file });
            }
        }
        Err(NetworkError::NoSlot)
    }

    /// The slot number (1..=[`MAX_SLOTS`]).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Bridge name: `kiln<N>`.
    pub fn bridge_name(&self) -> String {
        format!("kiln{}", self.index)
    }

    /// The bridge's address, pods' gateway, and the address everything pods talk to
    /// listens on: `10.244.<N>.1`.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.index, 1)
    }

    /// The pod subnet `10.244.<N>.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.244.{}.0/24", self.index)
    }

    /// cgroup parent of the node's pods (`/kiln-node-<N>`), one per node.
    pub fn cgroup_root(&self) -> String {
        format!("/kiln-node-{}", self.index)
    }
}

/// The bridge of a slot; deleted on drop (with the NAT rule, if one was added).
#[derive(Debug)]
pub struct Bridge {
    name: String,
    ip: Ipv4Addr,
    nat_rule: Option<Vec<String>>,
}

fn run(program: &str, args: &[&str]) -> Result<(), NetworkError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetworkError::Command {
            command: command.clone(),
            output: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            command,
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

impl Bridge {
    /// Creates the bridge of `slot` (removing a stale one of the same name first).
    pub fn create(slot: &Slot) -> Result<Self, NetworkError> {
        let name = slot.bridge_name();
        let ip = slot.host_ip();
        let _ = run("ip", &["link", "del", &name]);
        run("ip", &["link", "add", &name, "type", "bridge"])?;
        let bridge = Self {
            name,
            ip,
            nat_rule: None,
        };
        run(
            "ip",
            &["addr", "add", &format!("{ip}/24"), "dev", &bridge.name],
        )?;
        run("ip", &["link", "set", &bridge.name, "up"])?;
        Ok(bridge)
    }

    /// The bridge's address.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(self.ip)
    }

    /// Bridge interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// DNATs `10.0.0.1:443` (the `kubernetes` Service) arriving from this bridge's pods to
    /// kube-apiserver at `BRIDGE_IP:api_port`, so in-cluster clients (the operator pod)
    /// reach the API without kube-proxy.
    pub fn route_kubernetes_service(&mut self, api_port: u16) -> Result<(), NetworkError> {
        let rule: Vec<String> = [
            "PREROUTING",
            "-i",
            &self.name,
            "-d",
            &KUBERNETES_SERVICE_IP.to_string(),
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "DNAT",
            "--to-destination",
            &format!("{}:{api_port}", self.ip),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut args = vec!["-t", "nat", "-A"];
        args.extend(rule.iter().map(String::as_str));
        run("iptables", &args)?;
        self.nat_rule = Some(rule);
        Ok(())
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(rule) = self.nat_rule.take() {
            let mut args = vec!["-t", "nat", "-D"];
            args.extend(rule.iter().map(String::as_str));
            let _ = run("iptables", &args);
        }
        let _ = run("ip", &["link", "del", &self.name]);
    }
}

/// The CNI network list for the node's pods: `bridge` (gateway on the bridge address,
/// hairpin, no masquerade — pods only talk to the host) with `host-local` IPAM on the
/// slot's subnet, then `loopback` is CNI's own. Named `kiln<N>`, which also names the
/// IPAM lease directory `/var/lib/cni/networks/kiln<N>`.
pub fn cni_conflist(slot: &Slot) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": slot.bridge_name(),
        "plugins": [{
            "type": "bridge",
            "bridge": slot.bridge_name(),
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": slot.subnet(), "gateway": slot.host_ip().to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_network_is_the_slots_bridge_and_subnet() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Slot {
            index: 7,
            _lock: File::create(dir.path().join("lock")).unwrap(),
        };
        let net: serde_json::Value = serde_json::from_str(&cni_conflist(&slot)).unwrap();
        assert_eq!(net["name"], "kiln7");
        let bridge = &net["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "kiln7");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.7.0/24");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.244.7.1");
        assert_eq!(slot.cgroup_root(), "/kiln-node-7");
    }

    #[test]
    fn a_held_slot_is_not_claimed_twice() {
        let a = Slot::claim().unwrap();
        let b = Slot::claim().unwrap();
        assert_ne!(a.index(), b.index());
    }
}
