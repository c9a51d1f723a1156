//! `kiln-operator run`: the controller. Watches ImageBuilds and builds them; serves
//! `/metrics`, `/healthz` and `/readyz`; logs with `tracing` (text or JSON); stops gracefully
//! on SIGTERM or Ctrl-C (running reconciles finish, then the process exits).
//!
//! With leader election (the default, see [`kiln_operator::leader`]) only the replica
//! holding the Lease runs the controller; the others stand by. `/readyz` is 200 for a
//! standby too, once it has read the Lease: readiness means "connected", so that rolling
//! updates of a Deployment with several replicas proceed. A holder that loses the Lease
//! stops reconciling at once and exits with status 1 (Kubernetes restarts it as a
//! standby); on SIGTERM the holder finishes running reconciles, then releases the Lease
//! so a standby takes over within its retry period instead of the lease duration.
//!
//! The Kubernetes connection comes from the usual places: in-cluster service account, else
//! `KUBECONFIG` / `~/.kube/config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kiln_operator::controller::{self, Context, Settings};
use kiln_operator::leader::{self, Elector, LeaseConfig};
use kiln_operator::metrics::{self, Metrics, Readiness};
use kiln_operator::mirror::SourceCache;
use kiln_operator::pods::BuilderDefaults;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Flags of `kiln-operator run`. Each also reads an environment variable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Namespace to watch for ImageBuilds; repeat for several. Default: all namespaces.
    #[arg(long = "namespace", env = "KILN_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Namespace of the stage lock ConfigMaps (`werf-<project>`, lockgate-compatible);
    /// werf processes locking through `kubernetes://NAMESPACE` interoperate with it.
    #[arg(long, env = "KILN_LOCK_NAMESPACE", default_value = "kiln-system")]
    pub lock_namespace: String,

    /// Directory of the git source cache (one bare mirror per repository URL).
    #[arg(long, env = "KILN_CACHE_DIR", default_value = "/var/cache/kiln")]
    pub cache_dir: PathBuf,

    /// Image of builder pods (`kiln-builder` with Buildah).
    #[arg(long, env = "KILN_BUILDER_IMAGE")]
    pub builder_image: String,

    /// `imagePullPolicy` of builder pods (Always, IfNotPresent, Never).
    #[arg(long, env = "KILN_BUILDER_IMAGE_PULL_POLICY")]
    pub builder_image_pull_policy: Option<String>,

    /// Default CPU request of builder pods, e.g. `500m`.
    #[arg(long, env = "KILN_BUILDER_CPU")]
    pub builder_cpu: Option<String>,

    /// Default memory request and limit of builder pods, e.g. `2Gi`.
    #[arg(long, env = "KILN_BUILDER_MEMORY")]
    pub builder_memory: Option<String>,

    /// Default node label `KEY=VALUE` of builder pods; repeat for several.
    #[arg(
        long = "builder-node-selector",
        env = "KILN_BUILDER_NODE_SELECTOR",
        value_delimiter = ','
    )]
    pub builder_node_selector: Vec<String>,

    /// Default toleration `KEY[=VALUE][:EFFECT]` of builder pods; repeat for several.
    #[arg(
        long = "builder-toleration",
        env = "KILN_BUILDER_TOLERATIONS",
        value_delimiter = ','
    )]
    pub builder_tolerations: Vec<String>,

    /// Run builder containers unprivileged (needs a cluster where Buildah works without
    /// privileges, for example with user namespaces).
    #[arg(long, env = "KILN_BUILDER_UNPRIVILEGED")]
    pub builder_unprivileged: bool,

    /// Buildah storage driver of builder pods: `vfs` (the builder image's default; works
    /// everywhere), `overlay` (kernel overlayfs; privileged) or `fuse-overlayfs` (needs
    /// /dev/fuse, mounted into unprivileged pods). See docs/security.md.
    #[arg(long, env = "KILN_BUILDER_STORAGE_DRIVER", value_parser = ["vfs", "overlay", "fuse-overlayfs"])]
    pub builder_storage_driver: Option<String>,

    /// How long a builder pod may stay unschedulable before its build fails with reason
    /// BuilderPodFailed, as a Go duration (`10m`, `1h`).
    #[arg(long, env = "KILN_BUILDER_SCHEDULE_TIMEOUT", default_value = "10m")]
    pub builder_schedule_timeout: Option<String>,

    /// Registry `host[:port]` reached over plain HTTP (loopback registries always are);
    /// repeat for several. Passed to builder pods too.
    #[arg(
        long = "insecure-registry",
        env = "KILN_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,

    /// Stage digest mode of ImageBuilds whose `spec.digestMode` is unset: `werf` (werf-
    /// identical digests, stages shared with werf CLIs) or `strict` (see the werf
    /// compatibility page).
    #[arg(long, env = "KILN_DIGEST_MODE", value_enum, default_value = "werf")]
    pub digest_mode: super::plan::DigestModeArg,

    /// Address of the metrics and health endpoint.
    #[arg(long, env = "KILN_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,

    /// Log format.
    #[arg(long, env = "KILN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Elect a leader through a coordination.k8s.io Lease: only the holder reconciles, so
    /// several replicas can run. `--leader-elect=false` for a single replica without a
    /// Lease (and without RBAC on Leases).
    #[arg(
        long,
        env = "KILN_LEADER_ELECT",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub leader_elect: bool,

    /// Namespace of the leader election Lease. Default: `$POD_NAMESPACE` (the operator's
    /// own namespace in a pod), else the lock namespace.
    #[arg(long, env = "KILN_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader election Lease.
    #[arg(long, env = "KILN_LEADER_ELECTION_LEASE_NAME", default_value = leader::DEFAULT_LEASE_NAME)]
    pub leader_election_lease_name: String,

    /// Seconds a holder's claim lasts after its last renewal; a standby takes over this
    /// long after a holder died.
    #[arg(long, env = "KILN_LEADER_ELECTION_LEASE_DURATION", default_value_t = leader::DEFAULT_LEASE_DURATION.as_secs())]
    pub leader_election_lease_duration: u64,

    /// Seconds between a holder's renewals (less than two thirds of the lease duration).
    #[arg(long, env = "KILN_LEADER_ELECTION_RENEW_INTERVAL", default_value_t = leader::DEFAULT_RENEW_INTERVAL.as_secs())]
    pub leader_election_renew_interval: u64,
}

/// `KEY=VALUE` → (KEY, VALUE).
fn key_value(text: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = text
        .split_once('=')
        .with_context(|| format!("--builder-node-selector {text:?}: expected KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// `KEY[=VALUE][:EFFECT]` → a toleration (`Equal` with a value, `Exists` without).
fn toleration(text: &str) -> Toleration {
    let (kv, effect) = match text.split_once(':') {
        Some((kv, e)) => (kv, Some(e.to_owned())),
        None => (text, None),
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (kv, None),
    };
    Toleration {
        key: Some(key.to_owned()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.to_owned()),
        value,
        effect,
        ..Toleration::default()
    }
}

impl Args {
    /// The builder pod defaults these flags describe.
    ///
    /// Errors: a malformed `--builder-node-selector`.
    pub fn builder_defaults(&self) -> anyhow::Result<BuilderDefaults> {
        let mut requests = BTreeMap::new();
        let mut limits = BTreeMap::new();
        if let Some(cpu) = &self.builder_cpu {
            requests.insert("cpu".to_owned(), Quantity(cpu.clone()));
        }
        if let Some(memory) = &self.builder_memory {
            requests.insert("memory".to_owned(), Quantity(memory.clone()));
            limits.insert("memory".to_owned(), Quantity(memory.clone()));
        }
        let resources = (!requests.is_empty()).then(|| ResourceRequirements {
            requests: Some(requests),
            limits: (!limits.is_empty()).then_some(limits),
            ..ResourceRequirements::default()
        });
        Ok(BuilderDefaults {
            image: self.builder_image.clone(),
            image_pull_policy: self.builder_image_pull_policy.clone(),
            resources,
            node_selector: self
                .builder_node_selector
                .iter()
                .map(|s| key_value(s))
                .collect::<anyhow::Result<_>>()?,
            tolerations: self
                .builder_tolerations
                .iter()
                .map(|t| toleration(t))
                .collect(),
            privileged: !self.builder_unprivileged,
            storage_driver: self.builder_storage_driver.clone(),
            schedule_timeout: self
                .builder_schedule_timeout
                .as_deref()
                .map(kiln_crds::duration::parse_go_duration)
                .transpose()
                .context("--builder-schedule-timeout")?,
        })
    }
}

impl Args {
    /// The leader election Lease these flags describe, `None` with `--leader-elect=false`.
    /// `pod_name` and `pod_namespace` are `$POD_NAME` and `$POD_NAMESPACE`.
    ///
    /// Errors: invalid timing ([`leader::ConfigError`]).
    pub fn lease_config(
        &self,
        pod_name: Option<&str>,
        pod_namespace: Option<&str>,
    ) -> anyhow::Result<Option<LeaseConfig>> {
        if !self.leader_elect {
            return Ok(None);
        }
        let namespace = self
            .leader_election_namespace
            .as_deref()
            .or(pod_namespace.filter(|n| !n.is_empty()))
            .unwrap_or(&self.lock_namespace);
        let host = leader::host_name();
        let base = pod_name.filter(|n| !n.is_empty()).or(host.as_deref());
        let config = LeaseConfig {
            lease_duration: Duration::from_secs(self.leader_election_lease_duration),
            renew_interval: Duration::from_secs(self.leader_election_renew_interval),
            ..LeaseConfig::new(
                namespace,
                &self.leader_election_lease_name,
                leader::identity(base),
            )
        };
        config.validate()?;
        Ok(Some(config))
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only on a terminal, not in log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn termination_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Runs the operator until SIGTERM/SIGINT.
///
/// Errors: bad flags, no Kubernetes connection, the CRD not installed, the metrics address
/// not bindable.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(operate(args));
    // After a lost leadership, blocking work (a git fetch) must not keep the process
    // alive: its reconcile is gone already.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn operate(args: Args) -> anyhow::Result<()> {
    let settings = Settings {
        builder: args.builder_defaults()?,
        lock_namespace: args.lock_namespace.clone(),
        insecure_registries: args.insecure_registries.clone(),
        digest_mode: args.digest_mode.into(),
    };
    let lease = args.lease_config(
        std::env::var("POD_NAME").ok().as_deref(),
        std::env::var("POD_NAMESPACE").ok().as_deref(),
    )?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    std::fs::create_dir_all(&args.cache_dir)
        .with_context(|| format!("creating the source cache {}", args.cache_dir.display()))?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let (bound, server) = metrics::serve(
        args.metrics_address,
        metrics.clone(),
        readiness.clone(),
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
    )
    .await
    .with_context(|| format!("binding the metrics address {}", args.metrics_address))?;
    let server = tokio::spawn(server);
    tracing::info!(metrics = %bound, namespaces = ?args.namespaces, "kiln-operator starting");
    tokio::spawn(async move {
        termination_signal().await;
        tracing::info!("shutdown requested; finishing running reconciles");
        let _ = stop_tx.send(true);
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        Arc::new(SourceCache::new(&args.cache_dir)),
        settings,
    ));
    let result = match lease {
        None => controller::run(ctx, &args.namespaces, readiness, stop_rx).await,
        Some(lease) => {
            let elector = Arc::new(Elector::new(client, lease));
            lead(elector, ctx, &args.namespaces, readiness, stop_rx).await
        }
    };
    // Whatever ended the controller (shutdown or an error), stop serving too.
    server.abort();
    result?;
    tracing::info!("kiln-operator stopped");
    Ok(())
}

/// Runs the controller only while holding the Lease: stands by until it is acquired
/// (ready once the Lease was read), then runs the controller with the Lease renewed in a
/// task of its own (so a busy controller cannot delay renewals). The controller ending
/// (shutdown or error) releases the Lease; losing the Lease drops the controller at once
/// and is an error, so the process exits non-zero.
async fn lead(
    elector: Arc<Elector>,
    ctx: Arc<Context>,
    namespaces: &[String],
    readiness: Arc<Readiness>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = elector.config();
    tracing::info!(
        lease = %elector.lease_ref(),
        identity = %config.identity,
        lease_duration = ?config.lease_duration,
        renew_interval = ?config.renew_interval,
        "leader election: waiting for the lease"
    );
    let mut shutdown = stop_rx.clone();
    let ready = readiness.clone();
    let Some(renewed) = elector
        .acquire(&mut shutdown, move || ready.set(true))
        .await
    else {
        tracing::info!("shutdown requested while standby");
        return Ok(());
    };
    let mut keeper = tokio::spawn({
        let elector = elector.clone();
        async move { elector.keep(renewed).await }
    });
    tokio::select! {
        result = controller::run(ctx, namespaces, readiness, stop_rx) => {
            keeper.abort();
            let _ = (&mut keeper).await;
            if let Err(e) = elector.release().await {
                tracing::warn!(error = %e, "releasing the lease failed; it expires on its own");
            }
            result
        }
        lost = &mut keeper => {
            let lost = lost.context("the lease renewal task failed")?;
            tracing::error!(error = %lost, "stopping at once: the new leader alone reconciles");
            Err(anyhow::Error::new(lost).context(
                "leader election: exiting so that Kubernetes restarts this replica as a standby",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flags_become_builder_defaults() {
        let t = T::parse_from([
            "x",
            "--builder-image",
            "kiln-builder:1",
            "--namespace",
            "ci",
            "--namespace",
            "qa",
            "--builder-memory",
            "2Gi",
            "--builder-node-selector",
            "pool=builders",
            "--builder-toleration",
            "dedicated=builds:NoSchedule",
            "--builder-toleration",
            "spot",
        ]);
        assert_eq!(t.args.namespaces, vec!["ci", "qa"]);
        assert_eq!(t.args.lock_namespace, "kiln-system");
        let d = t.args.builder_defaults().unwrap();
        assert_eq!(d.image, "kiln-builder:1");
        assert!(d.privileged);
        assert_eq!(d.node_selector["pool"], "builders");
        let r = d.resources.unwrap();
        assert_eq!(r.requests.unwrap()["memory"], Quantity("2Gi".into()));
        assert_eq!(r.limits.unwrap()["memory"], Quantity("2Gi".into()));
        assert_eq!(d.tolerations[0].key.as_deref(), Some("dedicated"));
        assert_eq!(d.tolerations[0].operator.as_deref(), Some("Equal"));
        assert_eq!(d.tolerations[0].value.as_deref(), Some("builds"));
        assert_eq!(d.tolerations[0].effect.as_deref(), Some("NoSchedule"));
        assert_eq!(d.tolerations[1].operator.as_deref(), Some("Exists"));
        assert_eq!(d.tolerations[1].effect, None);
    }

    #[test]
    fn a_malformed_node_selector_is_named() {
        let t = T::parse_from([
            "x",
            "--builder-image",
            "b",
            "--builder-node-selector",
            "pool",
        ]);
        let err = t.args.builder_defaults().unwrap_err().to_string();
        assert_eq!(err, "--builder-node-selector \"pool\": expected KEY=VALUE");
    }

    #[test]
    fn leader_election_is_on_by_default_in_the_pods_namespace() {
        let t = T::parse_from(["x", "--builder-image", "b"]);
        let c = t
            .args
            .lease_config(Some("kiln-operator-5c7-abcde"), Some("kiln-system"))
            .unwrap()
            .unwrap();
        assert_eq!(c.namespace, "kiln-system");
        assert_eq!(c.name, "kiln-operator");
        assert!(
            c.identity.starts_with("kiln-operator-5c7-abcde_"),
            "{}",
            c.identity
        );
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_interval, Duration::from_secs(5));
        // Outside a pod: the lock namespace.
        let c = t.args.lease_config(None, None).unwrap().unwrap();
        assert_eq!(c.namespace, "kiln-system");
        let t = T::parse_from(["x", "--builder-image", "b", "--lock-namespace", "locks"]);
        let c = t.args.lease_config(None, Some("")).unwrap().unwrap();
        assert_eq!(c.namespace, "locks");
    }

    #[test]
    fn leader_election_flags() {
        let t = T::parse_from([
            "x",
            "--builder-image",
            "b",
            "--leader-election-namespace",
            "ops",
            "--leader-election-lease-name",
            "kiln-a",
            "--leader-election-lease-duration",
            "30",
            "--leader-election-renew-interval",
            "10",
        ]);
        let c = t
            .args
            .lease_config(None, Some("kiln-system"))
            .unwrap()
            .unwrap();
        assert_eq!((c.namespace.as_str(), c.name.as_str()), ("ops", "kiln-a"));
        assert_eq!(c.renew_deadline(), Duration::from_secs(20));
        for off in [
            &["--leader-elect=false"][..],
            &["--leader-elect", "false"][..],
        ] {
            let mut argv = vec!["x", "--builder-image", "b"];
            argv.extend_from_slice(off);
            let t = T::parse_from(argv);
            assert_eq!(t.args.lease_config(None, None).unwrap(), None);
        }
        let t = T::parse_from(["x", "--builder-image", "b", "--leader-elect"]);
        assert!(t.args.leader_elect);
    }

    #[test]
    fn a_renew_interval_past_the_deadline_is_refused() {
        let t = T::parse_from([
            "x",
            "--builder-image",
            "b",
            "--leader-election-renew-interval",
            "10",
        ]);
        let err = t.args.lease_config(None, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "leader election: the renew interval 10s must be shorter than two thirds of the lease duration 15s (the renew deadline)"
        );
    }
}
