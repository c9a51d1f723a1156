//! The operator Deployment the chart installs actually starts: `kiln-operator` is run
//! with the container args the API server stored for the Deployment (only the metrics
//! address and cache dir moved to loopback/temporary places) and with a token of the
//! chart's ServiceAccount — so its flags and its RBAC are the chart's — and it becomes
//! ready (`/readyz` 200: it listed ImageBuilds in its watched namespace) and stays up.
//!
//! Needs the workspace's `kiln-operator` binary: `cargo test --workspace` builds it;
//! alone, run `cargo build -p kiln-operator` first (or set `KILN_OPERATOR_BIN`).

mod chart_support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chart_support::{chart_dir, helm_command, repo_root, run};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kiln_e2e::control_plane::free_loopback_port;
use kiln_e2e::{ControlPlane, ControlPlaneOptions};
use kube::api::{Api, PostParams};

fn operator_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("KILN_OPERATOR_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug/kiln-operator");
    if !path.is_file() {
        bail!(
            "{} not found: build it with `cargo build -p kiln-operator` (cargo test --workspace does)",
            path.display()
        );
    }
    Ok(path)
}

/// Kills the operator when the test ends, also on panic.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET http://127.0.0.1:port{path}` → status code, or None if nothing listens yet.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn the_installed_operator_starts_with_the_charts_args_and_rbac() -> anyhow::Result<()> {
    let binary = operator_binary()?;
    let cp = ControlPlane::start(ControlPlaneOptions {
        controller_manager: false,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let admin = cp.client().await?;
    for ns in ["kiln-system", "kiln-locks", "ci"] {
        cp.create_namespace(&admin, ns).await?;
    }
    let home = tempfile::tempdir()?;
    let mut install = helm_command(home.path())?;
    install
        .args(["install", "kiln"])
        .arg(chart_dir())
        .args(["--namespace", "kiln-system", "--kubeconfig"])
        .arg(cp.kubeconfig_path())
        .args([
            "--set",
            "watchNamespaces={ci}",
            "--set",
            "lockNamespace=kiln-locks",
        ]);
    run(install)?;

    // The args as stored by the API server.
    let deployment = Api::<Deployment>::namespaced(admin.clone(), "kiln-system")
        .get("kiln-operator")
        .await?;
    let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
    let cache = tempfile::tempdir()?;
    let port = free_loopback_port()?;
    let args: Vec<String> = container
        .args
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-address=") {
                format!("--metrics-address=127.0.0.1:{port}")
            } else if a.starts_with("--cache-dir=") {
                format!("--cache-dir={}", cache.path().display())
            } else {
                a
            }
        })
        .collect();

    // A kubeconfig with a token of the chart's ServiceAccount.
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), "kiln-system")
        .create_token_request(
            "kiln",
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: None,
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            },
        )
        .await
        .context("requesting a token for ServiceAccount kiln-system/kiln")?
        .status
        .context("TokenRequest without status")?
        .token
        .context("TokenRequest without a token")?;
    let kubeconfig = home.path().join("operator.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kiln\n\
             clusters: [{{name: local, cluster: {{server: '{}', certificate-authority: '{}'}}}}]\n\
             users: [{{name: kiln, user: {{token: '{token}'}}}}]\n\
             contexts: [{{name: kiln, context: {{cluster: local, user: kiln}}}}]\n",
            cp.server_url(),
            cp.ca_cert_path().display()
        ),
    )?;

    let log = home.path().join("operator.log");
    let mut operator = Operator(
        Command::new(&binary)
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = operator.0.try_wait()? {
            bail!(
                "kiln-operator {args:?} exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if http_status(port, "/readyz") == Some(200) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "kiln-operator not ready within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(http_status(port, "/healthz"), Some(200));
    assert_eq!(http_status(port, "/metrics"), Some(200));
    // Still running a moment later: its watches (ImageBuilds and Pods in ci) were
    // allowed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(operator.0.try_wait()?.is_none(), "kiln-operator exited");
    let text = std::fs::read_to_string(&log)?;
    assert!(!text.contains("forbidden"), "{text}");
    // The chart's Lease RBAC let it take the leader election Lease.
    assert!(text.contains("acquired the lease: leading"), "{text}");
    Ok(())
}
