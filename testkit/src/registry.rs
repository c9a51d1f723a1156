//! A real container registry on a free loopback port, with or without htpasswd basic
//! auth: Debian's `docker-registry` (distribution 2.8) by default, or distribution v3
//! (built by `hack/setup.d/40-distribution-v3.sh`), which pages the tags list with `n`
//! and a `Link` header where 2.8 always returns every tag at once.
//!
//! The registry runs as a child process with its storage in a temporary directory; both
//! are gone when the [`TestRegistry`] is dropped, also when the test panics. With
//! [`RegistryOptions::access_log`] the registry logs every request, and
//! [`TestRegistry::requests`] returns them, so tests can count what a client really sent.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

mod token_server;
pub use token_server::TokenServer;

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

/// Which registry implementation to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RegistryFlavor {
    /// Debian's `docker-registry` 2.8: the tags list is never paginated.
    #[default]
    Distribution2,
    /// distribution v3 from `$KILN_CACHE_DIR/bin`: the tags list honours `n`/`last` and
    /// answers with `Link: <…>; rel="next"` while more tags follow.
    Distribution3,
}

/// The distribution v3 version `hack/setup.d/40-distribution-v3.sh` installs.
pub const DISTRIBUTION_V3_VERSION: &str = "v3.1.2";

/// How to start a [`TestRegistry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Require these basic-auth credentials.
    pub auth: Option<BasicAuth>,
    /// Which implementation.
    pub flavor: RegistryFlavor,
    /// Log every request (read them with [`TestRegistry::requests`]).
    pub access_log: bool,
    /// With `auth` and [`RegistryFlavor::Distribution3`]: delegate authentication to a
    /// bearer-token server started alongside (Docker token protocol, RS256 JWTs), which
    /// issues tokens to holders of `auth`'s credentials — the way hosted registries work.
    pub token_auth: bool,
    /// Listen on this address instead of 127.0.0.1 (a local node's bridge address, so
    /// that pods reach the registry).
    pub host: Option<std::net::IpAddr>,
}

/// One request the registry served, from its access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `GET`, `HEAD`, `PUT`, …
    pub method: String,
    /// Path with query, e.g. `/v2/shop/tags/list?n=1000`.
    pub path: String,
    /// HTTP status.
    pub status: u16,
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
    token_server: Option<TokenServer>,
}

impl TestRegistry {
    /// Starts a registry without authentication; pushes and pulls are anonymous.
    ///
    /// Errors when `docker-registry` is not installed (run `hack/setup.sh`) or does not
    /// answer `GET /v2/` within 30 s.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(RegistryOptions::default())
    }

    /// Starts a registry that requires HTTP basic auth for `username`/`password`
    /// (bcrypt htpasswd entry made with `htpasswd -Bbn` from apache2-utils).
    pub fn start_with_basic_auth(username: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_with(RegistryOptions {
            auth: Some(BasicAuth {
                username: username.to_owned(),
                password: password.to_owned(),
            }),
            ..Default::default()
        })
    }

    /// Starts a registry as `options` say. Errors name the missing binary and the setup
    /// script that installs it.
    pub fn start_with(options: RegistryOptions) -> anyhow::Result<Self> {
        Self::start_inner(options)
    }

    /// Requests served so far, in order (empty unless started with `access_log`).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log().lines().filter_map(parse_access_line).collect()
    }

    /// `HOST:PORT` (HOST 127.0.0.1 unless [`RegistryOptions::host`]), the registry host as
    /// it appears in image references.
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

    /// The bearer-token server, when started with `token_auth`.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// The registry's filesystem storage root (`docker/registry/v2/…` lives under it).
    /// Tests may damage it on purpose to make the registry answer 500.
    pub fn storage_dir(&self) -> PathBuf {
        self._dir.path().join("storage")
    }

    /// The registry's own log so far (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn start_inner(options: RegistryOptions) -> anyhow::Result<Self> {
        let RegistryOptions {
            auth,
            flavor,
            access_log,
            token_auth,
            host,
        } = options;
        if token_auth && (auth.is_none() || flavor != RegistryFlavor::Distribution3) {
            bail!("token_auth needs credentials (auth) and the distribution v3 flavour");
        }
        let program = match flavor {
            RegistryFlavor::Distribution2 => PathBuf::from("docker-registry"),
            RegistryFlavor::Distribution3 => {
                let path = distribution_v3_path();
                if !path.exists() {
                    bail!(
                        "{} is missing; build it with hack/setup.d/40-distribution-v3.sh",
                        path.display()
                    );
                }
                path
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()?;
        let host = host.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let port = TcpListener::bind((host, 0))?.local_addr()?.port();
        let address = format!("{host}:{port}");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage)?;
        let mut token_server = None;
        let auth_section = match &auth {
            Some(a) if token_auth => {
                let server = TokenServer::start(dir.path(), a.clone())?;
                let section = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    jwks: {}\n",
                    server.realm(),
                    token_server::SERVICE,
                    token_server::ISSUER,
                    TokenServer::jwks_path(dir.path()).display()
                );
                token_server = Some(server);
                section
            }
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
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: {}\nstorage:\n  \
             filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n{}",
            !access_log,
            storage.display(),
            address,
            auth_section
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&program)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (install it with hack/setup.sh)",
                    program.display()
                )
            })?;
        let registry = TestRegistry {
            child,
            address,
            auth,
            _dir: dir,
            log_path,
            token_server,
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

/// `$KILN_CACHE_DIR/bin/registry-v3-<version>` (cache default `$HOME/.cache/kiln`).
pub fn distribution_v3_path() -> PathBuf {
    let cache = std::env::var_os("KILN_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kiln")
        });
    cache
        .join("bin")
        .join(format!("registry-v3-{DISTRIBUTION_V3_VERSION}"))
}

/// Parses a combined-log-format access line:
/// `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "agent"`.
fn parse_access_line(line: &str) -> Option<LoggedRequest> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once('"')?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let status = rest.split_whitespace().next()?.parse().ok()?;
    Some(LoggedRequest {
        method,
        path,
        status,
    })
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
    fn access_lines_are_parsed() {
        let line = r#"127.0.0.1 - - [30/Nov/2026:00:56:30 +0000] "GET /v2/t/tags/list?n=2 HTTP/1.1" 200 30 "" "curl/7.88.1""#;
        assert_eq!(
            parse_access_line(line),
            Some(LoggedRequest {
                method: "GET".into(),
                path: "/v2/t/tags/list?n=2".into(),
                status: 200
            })
        );
        assert_eq!(
            parse_access_line("time=\"…\" level=warning msg=\"x\""),
            None
        );
    }

    #[test]
    fn access_log_records_requests() {
        let registry = TestRegistry::start_with(RegistryOptions {
            access_log: true,
            ..Default::default()
        })
        .expect("registry starts");
        assert_eq!(
            http_get_status(registry.address(), "/v2/nope/tags/list").unwrap(),
            404
        );
        let requests = registry.requests();
        assert!(
            requests
                .iter()
                .any(|r| r.method == "GET" && r.path == "/v2/nope/tags/list" && r.status == 404),
            "{requests:?}"
        );
    }

    #[test]
    fn distribution_v3_starts() {
        let registry = TestRegistry::start_with(RegistryOptions {
            flavor: RegistryFlavor::Distribution3,
            ..Default::default()
        })
        .expect("v3 starts");
        assert_eq!(http_get_status(registry.address(), "/v2/").unwrap(), 200);
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
