//! The node's cgroup parent, and removing everything a node made outside its processes, in the order
//! [`super::RealNode`]'s `Drop` calls these: container processes (through the node's own
//! cgroup parent), containerd shims (found by the node's own socket on their command
//! line), mounts under the node's state directory (rootfs overlays, volumes, network
//! namespaces), the pod cgroups, CNI IP leases and kubelet's `/var/log/containers` links.
//! Every step is best effort: a teardown never fails a test.

use std::path::{Path, PathBuf};

/// cgroup v1 hierarchies and the v2 one mounted under `/sys/fs/cgroup`.
fn cgroup_mounts() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect()
}

/// Directories under `root`, deepest first.
fn dirs_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, out);
                }
            }
        }
        out.push(dir.to_owned());
    }
    if root.is_dir() {
        walk(root, &mut out);
    }
    out
}

/// SIGKILLs every process in the cgroup subtree `cgroup_root` (e.g. `/kiln-node-3`).
pub fn kill_cgroup(cgroup_root: &str) {
    let rel = cgroup_root.trim_start_matches('/');
    for _ in 0..3 {
        let mut found = false;
        for mount in cgroup_mounts() {
            for dir in dirs_deepest_first(&mount.join(rel)) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    found = true;
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Creates `cgroup_root` in every hierarchy (the kubelet refuses a missing one); a new
/// v1 cpuset group gets its parent's CPUs and memory nodes, without which no process
/// may join it.
pub fn create_cgroup(cgroup_root: &str) -> std::io::Result<()> {
    let rel = cgroup_root.trim_start_matches('/');
    for mount in cgroup_mounts() {
        let dir = mount.join(rel);
        std::fs::create_dir_all(&dir)?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(mount.join(f)) {
                std::fs::write(dir.join(f), v.trim())?;
            }
        }
    }
    Ok(())
}

/// Removes the (now empty) cgroup subtree `cgroup_root` in every hierarchy.
pub fn remove_cgroup(cgroup_root: &str) {
    let rel = cgroup_root.trim_start_matches('/');
    for mount in cgroup_mounts() {
        for dir in dirs_deepest_first(&mount.join(rel)) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// SIGKILLs the containerd shims serving `socket` (their command line names it).
pub fn kill_shims(socket: &Path) {
    let needle = socket.as_os_str().as_encoded_bytes().to_vec();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let is_shim = cmdline.starts_with(b"/usr/bin/containerd-shim")
            || cmdline.starts_with(b"containerd-shim");
        if is_shim
            && cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == needle.as_slice())
        {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Lazily unmounts every mount point under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: umount2 with a valid NUL-terminated path.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Removes host-local's lease directory and libcni's cached results of network `name`.
pub fn remove_cni_state(name: &str) {
    let _ = std::fs::remove_dir_all(format!("/var/lib/cni/networks/{name}"));
    if let Ok(entries) = std::fs::read_dir("/var/lib/cni/results") {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}-"))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Removes kubelet's `/var/log/containers/*.log` links into `state`.
pub fn remove_container_log_links(state: &Path) {
    let Ok(entries) = std::fs::read_dir("/var/log/containers") else {
        return;
    };
    for e in entries.flatten() {
        if std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(state)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/tmp/a\\040b\\134c"), "/tmp/a b\\c");
    }

    #[test]
    fn deepest_directories_come_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let dirs = dirs_deepest_first(dir.path());
        assert_eq!(dirs.first().unwrap(), &dir.path().join("a/b"));
        assert_eq!(dirs.last().unwrap(), &dir.path().to_path_buf());
    }
}
