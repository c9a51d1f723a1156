//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and (optionally)
//! kube-controller-manager, started from the binaries `hack/setup.sh` builds.
//!
//! Flags follow controller-runtime's envtest with two differences: kube-apiserver
//! keeps the `ServiceAccount` admission plugin because kube-controller-manager runs and
//! creates the `default` service accounts, and the PKI is our own (see [`crate::pki`]).
//! Dropping a [`ControlPlane`] stops the processes (controller-manager, apiserver, etcd
//! in that order) and removes its state directory unless it was given one.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::binaries::{Binaries, BinariesError};
use crate::pki::{Pki, PkiError};
use crate::process::{ManagedProcess, SpawnError};

/// Errors starting or talking to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The binaries are missing.
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    /// PKI generation failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A process could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A file or directory operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The kubeconfig we wrote could not be loaded.
    #[error("loading kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// kube-rs' error.
        source: kube::config::KubeconfigError,
    },
    /// Building a client or an API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// kube-rs' error.
        source: kube::Error,
    },
    /// A component exited during start-up.
    #[error("control plane component died during start-up: {0}")]
    Exited(String),
    /// A readiness condition did not hold in time.
    #[error("timed out after {timeout:?} waiting for {what}; last error: {last_error}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last error seen while polling.
        last_error: String,
    },
}

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Run kube-controller-manager (garbage collector, service accounts, namespaces).
    pub controller_manager: bool,
    /// Keep state (PKI, etcd data, logs, kubeconfig) here instead of a temporary
    /// directory that is removed on drop.
    pub state_dir: Option<PathBuf>,
    /// Kill the processes when this process dies (see [`crate::process`]). The
    /// `kiln-local-stack` daemon keeps this on too: the stack lives as long as it does.
    pub die_with_parent: bool,
    /// Upper bound for etcd + apiserver + controller-manager to become ready.
    pub start_timeout: Duration,
    /// Where the binaries are; `None` = [`Binaries::locate`].
    pub binaries: Option<Binaries>,
    /// Address kube-apiserver listens on and advertises: 127.0.0.1, or a real node's
    /// bridge address so that pods reach it too.
    pub host: IpAddr,
    /// Run kube-scheduler (binds pods to the node).
    pub scheduler: bool,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            controller_manager: true,
            state_dir: None,
            die_with_parent: true,
            start_timeout: Duration::from_secs(120),
            binaries: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            scheduler: false,
        }
    }
}

enum StateDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl StateDir {
    fn path(&self) -> &Path {
        match self {
            StateDir::Temp(t) => t.path(),
            StateDir::Kept(p) => p,
        }
    }
}

/// A running control plane. Field order is drop order: scheduler and controller-manager first,
/// then kube-apiserver, then etcd, then the state directory.
pub struct ControlPlane {
    scheduler: Option<ManagedProcess>,
    controller_manager: Option<ManagedProcess>,
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    server_url: String,
    kubeconfig: PathBuf,
    pki: Pki,
    dir: StateDir,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server_url", &self.server_url)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

/// Asks the kernel for a free TCP port on 127.0.0.1 (bind to port 0, read, release).
pub fn free_loopback_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and (by default) kube-controller-manager on free
    /// loopback ports and waits until `/readyz` answers `ok` and, with the
    /// controller-manager, the `default` namespace has its `default` ServiceAccount
    /// (pods are rejected before that).
    pub async fn start(opts: ControlPlaneOptions) -> Result<Self, ControlPlaneError> {
        let bins = match opts.binaries.clone() {
            Some(b) => b,
            None => Binaries::locate()?,
        };
        let dir = match &opts.state_dir {
            Some(p) => {
                std::fs::create_dir_all(p).map_err(|source| ControlPlaneError::Io {
                    what: "creating state directory",
                    path: p.clone(),
                    source,
                })?;
                StateDir::Kept(p.clone())
            }
            None => StateDir::Temp(
                tempfile::Builder::new()
                    .prefix("kiln-control-plane-")
                    .tempdir()
                    .map_err(|source| ControlPlaneError::Io {
                        what: "creating temporary directory in",
                        path: std::env::temp_dir(),
                        source,
                    })?,
            ),
        };
        let d = dir.path().to_owned();
        let pki_dir = d.join("pki");
        let logs = d.join("logs");
        for p in [&pki_dir, &logs] {
            std::fs::create_dir_all(p).map_err(|source| ControlPlaneError::Io {
                what: "creating",
                path: p.clone(),
                source,
            })?;
        }
        let extra_ips: Vec<IpAddr> = Some(opts.host)
            .filter(|h| !h.is_loopback())
            .into_iter()
            .collect();
        let pki = Pki::generate(&pki_dir, &extra_ips)?;
        let host = opts.host;
        let port = |what: &'static str| {
            free_loopback_port().map_err(|source| ControlPlaneError::Io {
                what,
                path: PathBuf::from("127.0.0.1:0"),
                source,
            })
        };
        let etcd_port = port("binding a free port for etcd on")?;
        let peer_port = port("binding a free port for etcd peers on")?;
        let api_port = port("binding a free port for kube-apiserver on")?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd_cmd = Command::new(bins.path("etcd"));
        etcd_cmd.args([
            "--name=kiln".to_owned(),
            format!("--data-dir={}", d.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=kiln={peer_url}"),
            // Test data is throwaway; fsync on every write only costs time.
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ]);
        let etcd = ManagedProcess::spawn(
            "etcd",
            etcd_cmd,
            &logs.join("etcd.log"),
            opts.die_with_parent,
        )?;

        let server_url = format!("https://{host}:{api_port}");
        let mut api_cmd = Command::new(bins.path("kube-apiserver"));
        api_cmd.args([
            format!("--etcd-servers={etcd_url}"),
            // Without it the apiserver derives its advertise address from the default
            // route, which machines without network may lack.
            format!("--advertise-address={host}"),
            format!("--bind-address={host}"),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", d.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.apiserver_cert.display()),
            format!("--tls-private-key-file={}", pki.apiserver_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            // Node + NodeRestriction: a kubelet may only touch its own node and pods.
            "--authorization-mode=Node,RBAC".to_owned(),
            "--enable-admission-plugins=NodeRestriction".to_owned(),
            format!(
                "--kubelet-client-certificate={}",
                pki.kubelet_client_cert.display()
            ),
            format!("--kubelet-client-key={}", pki.kubelet_client_key.display()),
            // `kubectl logs` dials the node's InternalIP; its name resolves nowhere.
            "--kubelet-preferred-address-types=InternalIP,Hostname".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
            // No bogus 127.0.0.1 Endpoints for the `kubernetes` Service.
            "--endpoint-reconciler-type=none".to_owned(),
            // Flow control only adds CPU work on a 2-core machine.
            "--enable-priority-and-fairness=false".to_owned(),
            "--profiling=false".to_owned(),
            "--v=0".to_owned(),
        ]);
        if !opts.controller_manager {
            // Nothing would create the `default` ServiceAccounts pods need.
            api_cmd.arg("--disable-admission-plugins=ServiceAccount");
        }
        let apiserver = ManagedProcess::spawn(
            "kube-apiserver",
            api_cmd,
            &logs.join("kube-apiserver.log"),
            opts.die_with_parent,
        )?;

        let kubeconfig = d.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &server_url, &pki)?;

        let mut cp = ControlPlane {
            scheduler: None,
            controller_manager: None,
            apiserver,
            etcd,
            server_url,
            kubeconfig,
            pki,
            dir,
        };
        let deadline = Instant::now() + opts.start_timeout;
        let client = cp.client().await?;
        cp.wait_readyz(&client, deadline, opts.start_timeout)
            .await?;

        if opts.controller_manager {
            let mut kcm_cmd = Command::new(bins.path("kube-controller-manager"));
            kcm_cmd.args([
                format!("--kubeconfig={}", cp.kubeconfig.display()),
                "--leader-elect=false".to_owned(),
                // No HTTPS endpoint: nothing here probes the controller-manager, and a
                // port picked at start-up could be taken by a parallel test by the time
                // the apiserver is ready.
                "--secure-port=0".to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    cp.pki.sa_key.display()
                ),
                format!("--root-ca-file={}", cp.pki.ca_cert.display()),
                // Its default is a host directory under /usr/libexec.
                format!(
                    "--flex-volume-plugin-dir={}",
                    d.join("flexvolume").display()
                ),
                "--use-service-account-credentials=false".to_owned(),
                "--profiling=false".to_owned(),
                "--v=0".to_owned(),
            ]);
            cp.controller_manager = Some(ManagedProcess::spawn(
                "kube-controller-manager",
                kcm_cmd,
                &logs.join("kube-controller-manager.log"),
                opts.die_with_parent,
            )?);
            cp.wait_default_service_account(&client, "default", deadline, opts.start_timeout)
                .await?;
        }
        if opts.scheduler {
            let mut cmd = Command::new(bins.path("kube-scheduler"));
            cmd.args([
                format!("--kubeconfig={}", cp.kubeconfig.display()),
                // One scheduler per cluster; no fixed port (10259) that a second
                // cluster on this machine would find taken.
                "--leader-elect=false".to_owned(),
                "--secure-port=0".to_owned(),
                "--profiling=false".to_owned(),
                "--v=0".to_owned(),
            ]);
            cp.scheduler = Some(ManagedProcess::spawn(
                "kube-scheduler",
                cmd,
                &logs.join("kube-scheduler.log"),
                opts.die_with_parent,
            )?);
        }
        Ok(cp)
    }

    /// `https://HOST:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// kube-apiserver's port.
    pub fn api_port(&self) -> u16 {
        self.server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(443)
    }

    /// The admin kubeconfig (certificates embedded; usable by kubectl and kube-rs).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The state directory (PKI, etcd data, `logs/`, kubeconfig).
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster PKI (a node issues its kubelet's certificates from its CA).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The CA certificate clients trust.
    pub fn ca_cert_path(&self) -> &Path {
        &self.pki.ca_cert
    }

    /// Process ids (= process group ids) of the running components, by name.
    pub fn pids(&self) -> Vec<(&str, u32)> {
        let mut v = vec![
            (self.etcd.name(), self.etcd.pid()),
            (self.apiserver.name(), self.apiserver.pid()),
        ];
        for k in [&self.controller_manager, &self.scheduler]
            .into_iter()
            .flatten()
        {
            v.push((k.name(), k.pid()));
        }
        v
    }

    /// A new admin client (system:masters) from the kubeconfig.
    pub async fn client(&self) -> Result<kube::Client, ControlPlaneError> {
        let kc = Kubeconfig::read_from(&self.kubeconfig).map_err(|source| {
            ControlPlaneError::Kubeconfig {
                path: self.kubeconfig.clone(),
                source,
            }
        })?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|source| ControlPlaneError::Kubeconfig {
                path: self.kubeconfig.clone(),
                source,
            })?;
        kube::Client::try_from(config).map_err(|source| ControlPlaneError::Api {
            what: "building a client from the kubeconfig".into(),
            source,
        })
    }

    /// Creates namespace `name` and waits until its `default` ServiceAccount exists
    /// (created by kube-controller-manager; the ServiceAccount admission plugin rejects
    /// pods before that).
    pub async fn create_namespace(
        &self,
        client: &kube::Client,
        name: &str,
    ) -> Result<(), ControlPlaneError> {
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|source| ControlPlaneError::Api {
                what: format!("creating namespace {name}"),
                source,
            })?;
        if self.controller_manager.is_some() {
            let timeout = Duration::from_secs(60);
            self.wait_default_service_account(client, name, Instant::now() + timeout, timeout)
                .await?;
        }
        Ok(())
    }

    /// Stops everything now (same as dropping, but keeps the value around).
    pub fn stop(&mut self) {
        if let Some(k) = &mut self.scheduler {
            k.stop(crate::process::DEFAULT_STOP_GRACE);
        }
        if let Some(k) = &mut self.controller_manager {
            k.stop(crate::process::DEFAULT_STOP_GRACE);
        }
        self.apiserver.stop(crate::process::DEFAULT_STOP_GRACE);
        self.etcd.stop(crate::process::DEFAULT_STOP_GRACE);
    }

    fn check_alive(&self) -> Result<(), ControlPlaneError> {
        for p in [
            Some(&self.etcd),
            Some(&self.apiserver),
            self.controller_manager.as_ref(),
            self.scheduler.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(msg) = p.describe_exit() {
                return Err(ControlPlaneError::Exited(msg));
            }
        }
        Ok(())
    }

    async fn wait_readyz(
        &self,
        client: &kube::Client,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ControlPlaneError> {
        let mut last_error;
        loop {
            self.check_alive()?;
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("static request");
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last_error = body,
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() > deadline {
                return Err(ControlPlaneError::Timeout {
                    what: format!(
                        "kube-apiserver /readyz at {}; apiserver log tail:\n{}",
                        self.server_url,
                        self.apiserver.log_tail(2048)
                    ),
                    timeout,
                    last_error,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_default_service_account(
        &self,
        client: &kube::Client,
        namespace: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ControlPlaneError> {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let mut last_error = String::from("not created yet");
        loop {
            if self.controller_manager.is_none() {
                return Ok(());
            }
            match sas.get_opt("default").await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(e) => last_error = e.to_string(),
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                let tail = self
                    .controller_manager
                    .as_ref()
                    .map(|k| k.log_tail(2048))
                    .unwrap_or_default();
                return Err(ControlPlaneError::Timeout {
                    what: format!(
                        "ServiceAccount {namespace}/default (kube-controller-manager log tail:\n{tail})"
                    ),
                    timeout,
                    last_error,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn write_kubeconfig(path: &Path, server: &str, pki: &Pki) -> Result<(), ControlPlaneError> {
    write_kubeconfig_for(
        path,
        server,
        &pki.ca_cert,
        &pki.admin_cert,
        &pki.admin_key,
        crate::pki::ADMIN_USER,
    )
}

/// Writes a kubeconfig for `server` trusting `ca`, authenticating with the client
/// certificate `cert`/`key` as `user` (certificates embedded).
pub fn write_kubeconfig_for(
    path: &Path,
    server: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
    user: &str,
) -> Result<(), ControlPlaneError> {
    let b64 = |p: &Path| -> Result<String, ControlPlaneError> {
        let bytes = std::fs::read(p).map_err(|source| ControlPlaneError::Io {
            what: "reading",
            path: p.to_owned(),
            source,
        })?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: kiln-local\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  user:\n    client-certificate-data: {crt}\n    client-key-data: {key}\n\
         contexts:\n\
         - name: kiln-local\n  context:\n    cluster: kiln-local\n    user: {user}\n    namespace: default\n\
         current-context: kiln-local\n",
        ca = b64(ca)?,
        crt = b64(cert)?,
        key = b64(key)?,
    );
    std::fs::write(path, text).map_err(|source| ControlPlaneError::Io {
        what: "writing kubeconfig",
        path: path.to_owned(),
        source,
    })
}
