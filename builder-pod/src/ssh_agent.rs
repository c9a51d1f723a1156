//! A private ssh-agent holding the job's SSH keys, for `RUN --mount=type=ssh` (werf's
//! `--ssh-key`: a temporary agent with exactly the given keys, alive for the build only).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::runner::{CommandError, Runner};

/// Why the agent could not be started or a key not loaded.
#[derive(Debug, thiserror::Error)]
pub enum SshAgentError {
    /// `ssh-agent` could not be started.
    #[error("starting ssh-agent: {0}")]
    Start(#[source] std::io::Error),
    /// The agent did not create its socket in time.
    #[error("ssh-agent did not create its socket {0} within 10 s")]
    NoSocket(PathBuf),
    /// A key file could not be read or copied.
    #[error("SSH key {path}: {source}")]
    KeyFile {
        /// The key path from the job.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `ssh-add` refused the key (wrong format, passphrase-protected...).
    #[error("SSH key {path}: {source}")]
    Add {
        /// The key path from the job.
        path: String,
        /// The ssh-add failure.
        #[source]
        source: CommandError,
    },
}

/// A running agent; dropping it kills the agent.
#[derive(Debug)]
pub struct SshAgent {
    child: Child,
    socket: PathBuf,
}

impl SshAgent {
    /// Starts `ssh-agent -D -a DIR/agent.sock` and adds each key. Keys are first copied to
    /// 0600 files in `dir` because ssh-add refuses group/other-readable keys, and Secret
    /// volumes are 0644 by default.
    pub fn start(dir: &Path, keys: &[String], runner: &Runner) -> Result<Self, SshAgentError> {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(SshAgentError::Start)?;
        let agent = SshAgent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            if Instant::now() > deadline {
                return Err(SshAgentError::NoSocket(agent.socket.clone()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for (index, key) in keys.iter().enumerate() {
            let key_error = |source| SshAgentError::KeyFile {
                path: key.clone(),
                source,
            };
            let copy = dir.join(format!("key-{index}"));
            std::fs::copy(key, &copy).map_err(key_error)?;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
                .map_err(key_error)?;
            let added = runner.run(
                "ssh-add",
                Command::new("ssh-add")
                    .arg(&copy)
                    .env("SSH_AUTH_SOCK", &agent.socket),
            );
            let _ = std::fs::remove_file(&copy);
            added.map_err(|source| SshAgentError::Add {
                path: key.clone(),
                source,
            })?;
        }
        Ok(agent)
    }

    /// The agent's socket (`SSH_AUTH_SOCK`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_holds_the_given_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test-key", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        // World-readable like a Secret volume: the agent copy must still load.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let runner = Runner::new("", 5);
        let agent = SshAgent::start(dir.path(), &[key.display().to_string()], &runner).unwrap();
        let listed = runner
            .run(
                "ssh-add -l",
                Command::new("ssh-add")
                    .arg("-l")
                    .env("SSH_AUTH_SOCK", agent.socket()),
            )
            .unwrap();
        assert!(listed.contains("kiln-test-key"), "{listed}");
    }

    #[test]
    fn missing_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = SshAgent::start(
            dir.path(),
            &["/nonexistent/key".into()],
            &Runner::new("", 1),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("SSH key /nonexistent/key:"),
            "{err}"
        );
    }
}
