//! Child processes that never outlive the test that started them.
//!
//! Every child runs in its own process group, so stopping it also stops whatever it
//! forked (`git daemon` connections, a container's shell pipeline). Children are
//! forked from one long-lived "spawner" thread with `PR_SET_PDEATHSIG = SIGKILL`: the
//! kernel sends that signal when the *thread* that forked the child exits, so forking
//! from a thread that lives as long as the process means "die when the test binary
//! dies" — also when it is killed with SIGKILL or interrupted, when no `Drop` runs.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long [`ManagedProcess`]'s `Drop` waits after SIGTERM before SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors starting a child process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The log file for the child's stdout/stderr could not be created.
    #[error("creating log file {path} for {name}: {source}")]
    Log {
        /// Process name given to [`ManagedProcess::spawn`].
        name: String,
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `fork`/`exec` failed (binary missing, not executable, ...).
    #[error("starting {name} ({program}): {source}")]
    Exec {
        /// Process name given to [`ManagedProcess::spawn`].
        name: String,
        /// The program that was executed.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread all children are forked from; it lives until the process exits.
fn spawner() -> &'static Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("kiln-e2e-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
                // The sender lives in a static and is never dropped, so this thread
                // only ends with the process.
            })
            .expect("spawning the kiln-e2e-spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` in a new process group. With `die_with_parent`, the child gets
/// SIGKILL when this process exits (see the module docs).
///
/// The fork happens on the spawner thread; `cmd` may carry its own `pre_exec` hooks,
/// which run after the ones installed here.
pub fn spawn_in_group(mut cmd: Command, die_with_parent: bool) -> std::io::Result<Child> {
    cmd.process_group(0);
    if die_with_parent {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the hook only calls async-signal-safe functions (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(cmd.spawn());
    });
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .map_err(|_| std::io::Error::other("kiln-e2e spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("kiln-e2e spawner thread is gone"))?
}

/// Sends `signal` to every process in process group `pgid`; a group that no longer
/// exists is not an error.
pub fn signal_group(pgid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pgid as i32), signal);
    }
}

/// A long-running child (etcd, kube-apiserver, git daemon, ...) with its output in a
/// log file. Dropping it stops the whole process group: SIGTERM, up to
/// [`DEFAULT_STOP_GRACE`], then SIGKILL.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    pid: u32,
    // A mutex so that liveness checks (`try_wait` reaps) work through `&self`.
    child: Mutex<Child>,
    log_path: PathBuf,
    stopped: bool,
}

impl ManagedProcess {
    /// Starts `cmd` with stdin from /dev/null and stdout+stderr appended to `log_path`.
    /// `name` appears in errors and in [`ManagedProcess::describe_exit`].
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        log_path: &Path,
        die_with_parent: bool,
    ) -> Result<Self, SpawnError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|source| SpawnError::Log {
                name: name.to_owned(),
                path: log_path.to_owned(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| SpawnError::Log {
            name: name.to_owned(),
            path: log_path.to_owned(),
            source,
        })?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = spawn_in_group(cmd, die_with_parent).map_err(|source| SpawnError::Exec {
            name: name.to_owned(),
            program,
            source,
        })?;
        Ok(Self {
            name: name.to_owned(),
            pid: child.id(),
            child: Mutex::new(child),
            log_path: log_path.to_owned(),
            stopped: false,
        })
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(status)` once the process has exited (it is reaped then).
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .ok()
            .flatten()
    }

    /// The last `max_bytes` of the log, for error messages.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        log_tail(&self.log_path, max_bytes)
    }

    /// "NAME exited with STATUS; last log lines: ..." if it has exited, for errors.
    pub fn describe_exit(&self) -> Option<String> {
        let status = self.exited()?;
        Some(format!(
            "{} exited with {status}; end of its log ({}):\n{}",
            self.name,
            self.log_path.display(),
            self.log_tail(4096)
        ))
    }

    /// SIGTERM to the process group, wait up to `grace`, then SIGKILL to the group.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pgid = self.pid;
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        signal_group(pgid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Also reaches processes the leader forked that are still around.
        signal_group(pgid, libc::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop(DEFAULT_STOP_GRACE);
    }
}

/// The last `max_bytes` of the file at `path` (lossy UTF-8); empty if unreadable.
pub fn log_tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("sh");
        // The grandchild ignores nothing: it is killed through the group.
        cmd.arg("-c")
            .arg(format!("sleep 300 & echo $! > {}; wait", pidfile.display()));
        let proc = ManagedProcess::spawn("sleeper", cmd, &dir.path().join("log"), true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            assert!(Instant::now() < deadline, "grandchild never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        drop(proc);
        // The grandchild is not our child, so it is reaped by init; wait until gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive = Path::new(&format!("/proc/{grandchild}")).exists()
                && !std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ");
            if !alive {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "grandchild {grandchild} survived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn missing_binary_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = ManagedProcess::spawn(
            "ghost",
            Command::new("/nonexistent/kiln-ghost"),
            &dir.path().join("log"),
            true,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("ghost") && msg.contains("/nonexistent/kiln-ghost"),
            "{msg}"
        );
    }
}
