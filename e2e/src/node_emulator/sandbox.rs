//! Starting a container's command as a host process in its own mount namespace.
//!
//! After fork and before exec the child calls `unshare(CLONE_NEWNS)`, makes every
//! mount private (nothing propagates back to the host) and builds a root of its own:
//! a tmpfs on an empty per-container directory, with every top-level directory of the
//! host bind-mounted into it (symlinks such as `/bin -> usr/bin` copied), a fresh
//! `/dev` holding only the usual device nodes, the pod's volumes and its
//! termination-message file bind-mounted at the container's paths, then `chroot`s into
//! it and changes into the working directory.
//!
//! So a mount at a path that does not exist on the host (`/workspace`,
//! `/dev/termination-log`) is created in the tmpfs and never on the host. Only a
//! missing path *below* an existing host directory (say `/etc/kiln/x`) has to be
//! created on the host for the bind mount, and is left there. The host filesystem is
//! otherwise fully visible: this emulates a kubelet for trusted test commands; it is
//! not an isolation boundary.

use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::volumes::Mount;

/// `PATH` when the pod sets none (the usual image default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Program and arguments (program resolved through the environment's `PATH`).
    pub argv: Vec<String>,
    /// The full environment (nothing is inherited from the emulator's process).
    pub env: Vec<(String, String)>,
    /// Working directory inside the container; created if missing. `/` when `None`.
    pub working_dir: Option<PathBuf>,
    /// Bind mounts, applied shortest target first.
    pub mounts: Vec<Mount>,
    /// An empty host directory that becomes the container's root (a tmpfs is mounted
    /// on it inside the namespace only).
    pub root: PathBuf,
    /// File receiving stdout and stderr.
    pub log: PathBuf,
}

/// Errors preparing or starting the process; the kubelet's `StartError`.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Empty argv.
    #[error("empty command line")]
    EmptyCommand,
    /// A path contains a NUL byte.
    #[error("path or argument contains a NUL byte: {0}")]
    Nul(String),
    /// Reading the host root, creating the root or opening the log failed.
    #[error("preparing {path}: {source}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// fork/unshare/mount/chroot/exec failed (the message comes from the child).
    #[error("starting {program}: {source}")]
    Exec {
        /// argv[0].
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One step of building the root, run in the child between fork and exec.
#[derive(Debug)]
enum Op {
    /// mkdir, an existing directory is fine.
    Mkdir(CString),
    /// Create an empty file if missing.
    Touch(CString),
    /// Mount a fresh tmpfs.
    Tmpfs(CString),
    /// Bind mount (recursive or not).
    Bind(CString, CString, bool),
    /// Make a bind mount read-only.
    RemountRo(CString),
    /// symlink(target, path).
    Symlink(CString, CString),
}

/// Device nodes a container's `/dev` gets from the host.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Directories under `/dev` bind-mounted from the host when present.
const DEV_DIRS: [&str; 3] = ["pts", "shm", "mqueue"];

fn cstring(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| SandboxError::Nul(p.display().to_string()))
}

/// `root` joined with the absolute container path `p`.
fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// mkdir steps for every ancestor of `p` below `root` (not `p` itself).
fn mkdir_parents(root: &Path, p: &Path, ops: &mut Vec<Op>) -> Result<(), SandboxError> {
    let mut cur = root.to_path_buf();
    let rel = p.strip_prefix(root).unwrap_or(p);
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        ops.push(Op::Mkdir(cstring(&cur)?));
    }
    Ok(())
}

/// The steps that build the container root (see the module docs).
fn plan(spec: &ProcessSpec, wd: &Path) -> Result<Vec<Op>, SandboxError> {
    let root = &spec.root;
    let prep = |path: &Path, source| SandboxError::Prepare {
        path: path.to_owned(),
        source,
    };
    let mut ops = vec![Op::Tmpfs(cstring(root)?)];
    let entries = std::fs::read_dir("/").map_err(|e| prep(Path::new("/"), e))?;
    let mut names: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name();
        if name == "dev" {
            continue;
        }
        let host = Path::new("/").join(&name);
        let inside = root.join(&name);
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() {
            let target = std::fs::read_link(&host).map_err(|e| prep(&host, e))?;
            ops.push(Op::Symlink(cstring(&target)?, cstring(&inside)?));
        } else if ft.is_dir() {
            ops.push(Op::Mkdir(cstring(&inside)?));
            ops.push(Op::Bind(cstring(&host)?, cstring(&inside)?, true));
        }
    }
    let dev = root.join("dev");
    ops.push(Op::Mkdir(cstring(&dev)?));
    ops.push(Op::Tmpfs(cstring(&dev)?));
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        if host.exists() {
            ops.push(Op::Touch(cstring(&dev.join(d))?));
            ops.push(Op::Bind(cstring(&host)?, cstring(&dev.join(d))?, false));
        }
    }
    for d in DEV_DIRS {
        let host = Path::new("/dev").join(d);
        if host.is_dir() {
            ops.push(Op::Mkdir(cstring(&dev.join(d))?));
            ops.push(Op::Bind(cstring(&host)?, cstring(&dev.join(d))?, true));
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        ops.push(Op::Symlink(
            cstring(Path::new(target))?,
            cstring(&dev.join(name))?,
        ));
    }
    let mut mounts = spec.mounts.clone();
    // Parents before children, so a mount inside another volume's path lands on top.
    mounts.sort_by_key(|m| m.target.components().count());
    for m in &mounts {
        let inside = under(root, &m.target);
        mkdir_parents(root, &inside, &mut ops)?;
        ops.push(if m.source.is_dir() {
            Op::Mkdir(cstring(&inside)?)
        } else {
            Op::Touch(cstring(&inside)?)
        });
        ops.push(Op::Bind(cstring(&m.source)?, cstring(&inside)?, true));
        if m.read_only {
            ops.push(Op::RemountRo(cstring(&inside)?));
        }
    }
    let wd_inside = under(root, wd);
    mkdir_parents(root, &wd_inside, &mut ops)?;
    ops.push(Op::Mkdir(cstring(&wd_inside)?));
    Ok(ops)
}

/// Runs one step; called in the forked child, so only async-signal-safe calls.
fn apply(op: &Op) -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls on NUL-terminated strings prepared before the fork.
    unsafe {
        match op {
            Op::Mkdir(p) => {
                if libc::mkdir(p.as_ptr(), 0o755) != 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
                Ok(())
            }
            Op::Touch(p) => {
                let fd = libc::open(
                    p.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd < 0 {
                    let e = std::io::Error::last_os_error();
                    // A read-only host directory may already hold the file.
                    if libc::access(p.as_ptr(), libc::F_OK) == 0 {
                        return Ok(());
                    }
                    return Err(e);
                }
                libc::close(fd);
                Ok(())
            }
            Op::Tmpfs(p) => check(libc::mount(
                c"tmpfs".as_ptr(),
                p.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"mode=755".as_ptr().cast(),
            )),
            Op::Bind(src, dst, rec) => check(libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | if *rec { libc::MS_REC } else { 0 },
                std::ptr::null(),
            )),
            Op::RemountRo(p) => check(libc::mount(
                std::ptr::null(),
                p.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            )),
            Op::Symlink(target, path) => check(libc::symlink(target.as_ptr(), path.as_ptr())),
        }
    }
}

/// Starts the process in a new process group, mount namespace and root; it is killed
/// when the emulator's process dies (see [`crate::process`]).
pub fn spawn(spec: &ProcessSpec) -> Result<Child, SandboxError> {
    let program = spec.argv.first().ok_or(SandboxError::EmptyCommand)?.clone();
    let wd = spec
        .working_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"));
    std::fs::create_dir_all(&spec.root).map_err(|source| SandboxError::Prepare {
        path: spec.root.clone(),
        source,
    })?;
    let ops = plan(spec, &wd)?;
    let root_c = cstring(&spec.root)?;
    let wd_c = cstring(&wd)?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|source| SandboxError::Prepare {
            path: spec.log.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| SandboxError::Prepare {
        path: spec.log.clone(),
        source,
    })?;

    let mut cmd = Command::new(&program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: the hook runs between fork and exec and only makes async-signal-safe
    // system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for op in &ops {
                apply(op)?;
            }
            check(libc::chroot(root_c.as_ptr()))?;
            check(libc::chdir(wd_c.as_ptr()))
        });
    }
    crate::process::spawn_in_group(cmd, true)
        .map_err(|source| SandboxError::Exec { program, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_visible_inside_only_and_new_paths_stay_off_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("greeting"), "hello").unwrap();
        let term = dir.path().join("term");
        std::fs::write(&term, "").unwrap();
        // A top-level path that does not exist on the host.
        let fresh = PathBuf::from(format!("/kiln-sandbox-test-{}", std::process::id()));
        // A host directory with its own content, mounted over inside the container.
        let target = dir.path().join("target");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("host-file"), "host").unwrap();
        let out = dir.path().join("out.log");
        let spec = ProcessSpec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "cat {f}/greeting; ls {t}; echo \" $GREETING $PWD\"; touch {f}/ro 2>/dev/null || echo ro; \
                     echo -n msg > /dev/termination-log; echo ok > /dev/null",
                    f = fresh.display(),
                    t = target.display()
                ),
            ],
            env: vec![("GREETING".into(), "hi".into())],
            working_dir: Some(PathBuf::from(format!("{}-wd/work", fresh.display()))),
            mounts: vec![
                Mount {
                    source: vol.clone(),
                    target: fresh.clone(),
                    read_only: true,
                },
                Mount {
                    source: vol.clone(),
                    target: target.clone(),
                    read_only: false,
                },
                Mount {
                    source: term.clone(),
                    target: "/dev/termination-log".into(),
                    read_only: false,
                },
            ],
            root: dir.path().join("root"),
            log: out.clone(),
        };
        let status = spawn(&spec).unwrap().wait().unwrap();
        let log = std::fs::read_to_string(&out).unwrap();
        assert!(status.success(), "{log}");
        assert_eq!(
            log,
            format!("hellogreeting\n hi {}-wd/work\nro\n", fresh.display())
        );
        assert_eq!(std::fs::read_to_string(&term).unwrap(), "msg");
        // Nothing was created on the host, and the host's own file is untouched.
        assert!(!fresh.exists());
        assert!(!PathBuf::from(format!("{}-wd", fresh.display())).exists());
        assert!(!Path::new("/dev/termination-log").exists());
        assert!(target.join("host-file").exists() && !target.join("greeting").exists());
        // The root directory on the host is still empty (the tmpfs lived in the namespace).
        assert_eq!(
            std::fs::read_dir(dir.path().join("root")).unwrap().count(),
            0
        );
    }

    #[test]
    fn missing_program_is_a_start_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ProcessSpec {
            argv: vec!["kiln-no-such-program".into()],
            env: vec![],
            working_dir: None,
            mounts: vec![],
            root: dir.path().join("root"),
            log: dir.path().join("log"),
        };
        let err = spawn(&spec).unwrap_err().to_string();
        assert!(err.contains("kiln-no-such-program"), "{err}");
    }
}
