//! Issue 7's figure: how long a fully cached build of the sample project (3 images × 2
//! platforms, custom tags) takes from the ImageBuild's creation to `Succeeded`, and how many
//! Kubernetes API and registry requests it costs.
//!
//! Starts the local stack (kube-apiserver, real node, registry with its access log, git
//! server), runs the operator in-process with a client that records every request it sends,
//! builds the sample once (fills the stages storage), then creates `KILN_BENCH_RUNS` (default
//! 5) more ImageBuilds on the same commit. Each is timed from just before `create` until a
//! watch sees phase `Succeeded`; the request counts are taken once the operator and registry
//! have been quiet for a while after that (the reconcile that follows the final status write
//! belongs to the build too).
//!
//! `cargo bench -p kiln-e2e --bench cached_build` (release; `cargo build --release -p
//! kiln-builder` first, or the debug builder is used for the one real build), or
//! `cargo test -p kiln-e2e --bench cached_build` for a debug build of the same program.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kiln_crds::{ImageBuild, Phase};
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_e2e::stack::{DEFAULT_BUILDER_IMAGE, LocalStack, StackOptions, workspace_binary};
use kiln_operator::controller::Settings;
use kiln_operator::pods::BuilderDefaults;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::await_condition;

/// How long the operator and the registry must be silent before a build's requests are
/// counted as complete.
const QUIET: Duration = Duration::from_millis(1500);

/// Every request the operator's client sent, as `METHOD resource[/subresource] [list|watch]`
/// with the time it was sent.
#[derive(Default)]
struct RequestLog(Mutex<Vec<(Instant, String)>>);

impl RequestLog {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, start: usize) -> Vec<(Instant, String)> {
        self.0.lock().unwrap()[start..].to_vec()
    }
}

/// `GET /apis/kiln.dev/v1alpha1/namespaces/default/imagebuilds/x/status` →
/// `GET imagebuilds/status`; collections get ` list` or ` watch`.
fn request_label(method: &http::Method, uri: &http::Uri) -> String {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let mut i = if segments.first() == Some(&"api") {
        2
    } else {
        3
    };
    if segments.get(i) == Some(&"namespaces") && segments.len() > i + 2 {
        i += 2;
    }
    let resource = segments.get(i).copied().unwrap_or("?");
    let mut label = format!("{method} {resource}");
    match segments.get(i + 2) {
        Some(sub) => label = format!("{label}/{sub}"),
        None if segments.len() == i + 1 && method == http::Method::GET => {
            let watch = uri.query().is_some_and(|q| q.contains("watch=true"));
            label.push_str(if watch { " watch" } else { " list" });
        }
        None => {}
    }
    label
}

/// An admin client for the stack whose every request is recorded in `log`.
async fn recording_client(kubeconfig: &Path, log: Arc<RequestLog>) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        let label = request_label(req.method(), req.uri());
        log.0.lock().unwrap().push((Instant::now(), label));
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

/// The builder image for the one real build, from the builder binary next to this
/// executable, else the debug one.
fn builder_image() -> anyhow::Result<std::path::PathBuf> {
    let bin = workspace_binary("kiln-builder")
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            let target = exe.parent()?.parent()?.parent()?;
            Some(target.join("debug/kiln-builder")).filter(|p| p.is_file())
        })
        .context("kiln-builder is not built: `cargo build -p kiln-builder`")?;
    kiln_e2e::images::image_from_binary("builder", &bin)
}

/// Waits until neither the operator nor the registry sent/served a request for [`QUIET`].
async fn wait_quiet(log: &RequestLog, stack: &LocalStack) {
    let mut last = (log.len(), stack.registry().requests().len());
    let mut since = Instant::now();
    while since.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (log.len(), stack.registry().requests().len());
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

fn counts(labels: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for l in labels {
        *map.entry(l).or_default() += 1;
    }
    map
}

fn print_counts(title: &str, counts: &BTreeMap<String, usize>) {
    println!("  {title}:");
    for (label, n) in counts {
        println!("    {n:>3}  {label}");
    }
}

struct Run {
    started: Instant,
    elapsed: Duration,
    api: Vec<(Instant, String)>,
    registry: Vec<String>,
}

async fn run() -> anyhow::Result<()> {
    let runs: usize = std::env::var("KILN_BENCH_RUNS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("KILN_BENCH_RUNS")?
        .unwrap_or(5);
    let stack = LocalStack::start(StackOptions {
        base_images: true,
        registry_access_log: true,
        node_images: vec![builder_image()?],
        ..StackOptions::default()
    })
    .await?;
    let registry = stack.registry().address().to_owned();
    let client = stack.cluster().client();
    harness::install_crd(&client).await?;

    let files = harness::sample_project_files()?;
    let file_refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let (repo, _) = stack.git().create_repo_with_files("shop", &file_refs)?;

    let log = Arc::new(RequestLog::default());
    let operator_client = recording_client(
        stack.cluster().control_plane().kubeconfig_path(),
        log.clone(),
    )
    .await?;
    let cache = tempfile::tempdir()?;
    let operator = InProcessOperator::start(
        operator_client,
        Settings {
            builder: BuilderDefaults {
                image: format!("{DEFAULT_BUILDER_IMAGE}:dev"),
                ..BuilderDefaults::default()
            },
            lock_namespace: "default".into(),
            insecure_registries: vec![registry.clone()],
            ..Settings::default()
        },
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(client.clone(), "default");

    let started = Instant::now();
    let fill = harness::sample_image_build("fill", repo.url(), "main", &registry);
    api.create(&PostParams::default(), &fill).await?;
    let filled = harness::wait_finished(&api, "fill", Duration::from_secs(900)).await?;
    let phase = filled.status.as_ref().map(|s| s.phase);
    anyhow::ensure!(
        phase == Some(Phase::Succeeded),
        "the first build ended {phase:?}: {:?}",
        filled.status.map(|s| s.conditions)
    );
    println!(
        "first build (every stage built): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    wait_quiet(&log, &stack).await;

    let mut results = Vec::new();
    for i in 0..runs {
        let name = format!("cached-{i}");
        let ib = harness::sample_image_build(&name, repo.url(), "main", &registry);
        let (api_start, registry_start) = (log.len(), stack.registry().requests().len());
        let t0 = Instant::now();
        api.create(&PostParams::default(), &ib).await?;
        let done = tokio::time::timeout(
            Duration::from_secs(120),
            await_condition(api.clone(), &name, |ib: Option<&ImageBuild>| {
                ib.and_then(|ib| ib.status.as_ref())
                    .is_some_and(|s| s.phase.is_finished())
            }),
        )
        .await
        .with_context(|| format!("{name} did not finish within 120 s"))??;
        let elapsed = t0.elapsed();
        let status = done.and_then(|ib| ib.status).context("no status")?;
        anyhow::ensure!(
            status.phase == Phase::Succeeded && status.rebuilt_stages == Some(0),
            "{name}: {:?} rebuilt {:?}: {:?}",
            status.phase,
            status.rebuilt_stages,
            status.conditions
        );
        wait_quiet(&log, &stack).await;
        let registry_requests = stack.registry().requests()[registry_start..]
            .iter()
            .map(|r| {
                let path = r.path.split('?').next().unwrap_or_default();
                let kind = if path.ends_with("/tags/list") {
                    "tags/list"
                } else if path.contains("/manifests/") {
                    "manifests"
                } else if path.contains("/blobs/") {
                    "blobs"
                } else {
                    path
                };
                format!("{} {kind} {}", r.method, r.status)
            })
            .collect();
        let run = Run {
            started: t0,
            elapsed,
            api: log.since(api_start),
            registry: registry_requests,
        };
        println!(
            "{name}: {:>7.1} ms  {:>3} API requests  {:>3} registry requests",
            run.elapsed.as_secs_f64() * 1000.0,
            run.api.len(),
            run.registry.len()
        );
        results.push(run);
    }
    operator.stop().await?;

    let mut times: Vec<Duration> = results.iter().map(|r| r.elapsed).collect();
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    let last = results.last().context("KILN_BENCH_RUNS=0")?;
    println!(
        "\nfully cached build of the sample (3 images x 2 platforms), {} runs, {} build:",
        results.len(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "  creation -> Succeeded: median {:.1} ms, max {:.1} ms",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    println!(
        "  per build: {} Kubernetes API requests by the operator, {} registry requests",
        last.api.len(),
        last.registry.len()
    );
    print_counts(
        "API requests of the last build",
        &counts(last.api.iter().map(|(_, l)| l.clone())),
    );
    print_counts(
        "registry requests of the last build",
        &counts(last.registry.clone()),
    );
    println!("  timeline of the last build's API requests (ms after create):");
    for (at, label) in &last.api {
        println!(
            "    {:>7.1}  {label}",
            at.duration_since(last.started).as_secs_f64() * 1000.0
        );
    }
    drop(stack);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to select.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
