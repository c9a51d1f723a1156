//! A real container registry (Debian's `docker-registry`, distribution v2) on a free
//! loopback port, with or without htpasswd basic auth.
//!
//! The registry runs as a child process with its storage in a temporary directory; both
//! are gone when the [`TestRegistry`] is dropped, also when the test panics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long [`TestRegistry::start`] waits for `GET /v2/` to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Username/password pair a registry started with basic auth accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The htpasswd user.
    pub username: String,
    /// The user's password in clear text.
    pub password: String,
}

/// A running registry. Drop stops it and deletes its storage.
#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    address: String,
    auth: Option<BasicAuth>,
    // Held for its Drop: the registry's storage, config and htpasswd file.
    _dir: tempfile::TempDir,
    log_path: PathBuf,
}

impl TestRegistry {
    /// Starts a registry without authentication; pushes and pulls are anonymous.
    ///
    /// Errors when `docker-registry` is not installed (run `hack/setup.sh`) or does not
    /// answer `GET /v2/` within 30 s.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_inner(None)
    }

    /// Starts a registry that requires HTTP basic auth for `username`/`password`
    /// (bcrypt htpasswd entry made with `htpasswd -Bbn` from apache2-utils).
    pub fn start_with_basic_auth(username: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_inner(Some(BasicAuth {
            username: username.to_owned(),
            password: password.to_owned(),
        }))
    }

    /// `127.0.0.1:PORT`, the registry host as it appears in image references.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The credentials the registry requires, if it was started with basic auth.
    pub fn auth(&self) -> Option<&BasicAuth> {
        self.auth.as_ref()
    }

    /// A `kubernetes.io/dockerconfigjson`-style document (`{"auths":{host:{auth}}}`)
    /// for this registry's credentials; `{"auths":{}}` without auth.
    pub fn docker_config_json(&self) -> String {
        let auths = match &self.auth {
            Some(a) => {
                let token = base64_encode(format!("{}:{}", a.username, a.password).as_bytes());
                serde_json::json!({ self.address.clone(): { "auth": token } })
            }
            None => serde_json::json!({}),
        };
        serde_json::json!({ "auths": auths }).to_string()
    }

    /// The registry's own log so far (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn start_inner(auth: Option<BasicAuth>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()?;
        let port = free_loopback_port()?;
        let address = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage)?;
        let auth_section = match &auth {
            Some(a) => {
                let htpasswd = dir.path().join("htpasswd");
                write_htpasswd(&htpasswd, a)?;
                format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n{}",
            storage.display(),
            address,
            auth_section
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (install it with hack/setup.sh)")?;
        let registry = TestRegistry {
            child,
            address,
            auth,
            _dir: dir,
            log_path,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    /// Polls `GET /v2/` until it answers 200 (anonymous) or 401 (auth required).
    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(200 | 401) = http_get_status(&self.address, "/v2/") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "registry on {} not ready after {:?}; log:\n{}",
                    self.address,
                    READY_TIMEOUT,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_loopback_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn write_htpasswd(path: &Path, auth: &BasicAuth) -> anyhow::Result<()> {
    let out = Command::new("htpasswd")
        .args(["-Bbn", &auth.username, &auth.password])
        .output()
        .context("running htpasswd (apache2-utils; install it with hack/setup.sh)")?;
    if !out.status.success() {
        bail!("htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(path, out.stdout)?;
    Ok(())
}

/// Minimal HTTP/1.0 GET returning the status code; enough for a readiness probe without
/// pulling an HTTP client into the test kit.
fn http_get_status(address: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    text.get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected response {text:?}")))
}

/// Standard base64 (RFC 4648, with padding), as used in docker config `auth` fields.
pub fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn anonymous_registry_answers_v2() {
        let registry = TestRegistry::start().expect("registry starts");
        assert_eq!(http_get_status(registry.address(), "/v2/").unwrap(), 200);
        assert_eq!(registry.docker_config_json(), r#"{"auths":{}}"#);
    }

    #[test]
    fn basic_auth_registry_requires_credentials() {
        let registry = TestRegistry::start_with_basic_auth("kiln", "s3cret").expect("starts");
        assert_eq!(http_get_status(registry.address(), "/v2/").unwrap(), 401);
        let config: serde_json::Value =
            serde_json::from_str(&registry.docker_config_json()).unwrap();
        assert_eq!(
            config["auths"][registry.address()]["auth"],
            "a2lsbjpzM2NyZXQ="
        );
    }
}
