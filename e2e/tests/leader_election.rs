//! Several `kiln-operator run` replicas (the real binary, as the chart runs it with
//! `operator.replicas: 2`) against a real kube-apiserver, two at a time: only the holder
//! of the Lease reconciles, the other stands by (and is ready). SIGKILL of the holder
//! hands the Lease over once the holder's claim expired; SIGTERM of the holder releases
//! it, so the standby takes over within its retry period; a holder paused (SIGSTOP)
//! past its claim loses the Lease and exits with status 1 when it resumes. After each
//! handover the new holder reconciles.
//!
//! Which replica reconciled an ImageBuild is read from the API: the Events of the build
//! carry `reportingInstance` = the replica's `POD_NAME`.
//!
//! Needs the workspace's `kiln-operator` binary: `cargo test --workspace` builds it;
//! alone, run `cargo build -p kiln-operator` first (or set `KILN_OPERATOR_BIN`).

use kiln_testkit::git_server::git_ok as git;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::SignedDuration;
use kiln_crds::ImageBuild;
use kiln_e2e::control_plane::free_loopback_port;
use kiln_e2e::process::{ManagedProcess, signal_group};
use kiln_e2e::{ControlPlane, ControlPlaneOptions};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
const NS: &str = "default";
const LEASE: &str = "kiln-operator";

fn operator_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    kiln_e2e::stack::workspace_binary("kiln-operator").expect(
        "kiln-operator binary not found next to the test: `cargo build -p kiln-operator` \
         (cargo test --workspace builds it) or set KILN_OPERATOR_BIN",
    )
}

/// A file:// repository whose werf.yaml has an unknown key: a build fails at once with
/// InvalidConfig, without a registry or builder pod.
fn bad_repo(root: &Path) -> String {
    let dir = root.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("werf.yaml"),
        "project: shop\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\nbogus: 1\n",
    )
    .unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\n").unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "c"]);
    format!("file://{}", dir.display())
}

fn image_build(name: &str, url: &str) -> ImageBuild {
    serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "ImageBuild",
        "metadata": {"name": name},
        "spec": {"source": {"git": {"url": url, "revision": "main"}},
                 "repo": "127.0.0.1:5999/shop"}
    }))
    .unwrap()
}

/// One `kiln-operator run` process with `POD_NAME` = `name`.
struct Replica {
    name: &'static str,
    port: u16,
    process: ManagedProcess,
}

impl Replica {
    fn start(name: &'static str, kubeconfig: &Path, dir: &Path) -> Replica {
        let port = free_loopback_port().unwrap();
        let cache = dir.join(format!("{name}-cache"));
        let mut cmd = Command::new(operator_binary());
        cmd.args(["run", "--builder-image", "kiln-builder", "--namespace", NS])
            .args(["--lock-namespace", NS])
            .arg(format!("--metrics-address=127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(&cache)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info")
            .env_remove("POD_NAMESPACE")
            .env_remove("KILN_LEADER_ELECT")
            .env_remove("KUBERNETES_SERVICE_HOST");
        let log = dir.join(format!("{name}.log"));
        let process = ManagedProcess::spawn(name, cmd, &log, true).unwrap();
        Replica {
            name,
            port,
            process,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// `GET path` on the metrics port → (status, body); `None` if nothing answers yet.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    fn alive(&self) {
        if let Some(exit) = self.process.describe_exit() {
            panic!("{exit}");
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `TIMEOUT`.
async fn eventually<T, F, Fut>(what: &str, replicas: &[&Replica], mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas
                .iter()
                .map(|r| format!("--- {} ---\n{}", r.name, r.log()))
                .collect();
            panic!("{what}: not within {TIMEOUT:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lease(client: &kube::Client) -> Option<Lease> {
    Api::<Lease>::namespaced(client.clone(), NS)
        .get_opt(LEASE)
        .await
        .unwrap()
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

/// The `reportingInstance` of every Event about ImageBuild `name`.
async fn reporters(client: &kube::Client, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let mut out: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| e.reporting_instance.unwrap_or_default())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Creates a failing ImageBuild and waits until it failed with InvalidConfig and its
/// Event is recorded; returns the replicas that reported on it.
async fn build_once(client: &kube::Client, name: &str, url: &str, rs: &[&Replica]) -> Vec<String> {
    let api: Api<ImageBuild> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &image_build(name, url))
        .await
        .unwrap();
    let reason = eventually(&format!("{name} finished"), rs, || async {
        let ib = api.get(name).await.unwrap();
        let status = ib.status?;
        status
            .phase
            .is_finished()
            .then(|| status.conditions[0].reason.clone())
    })
    .await;
    assert_eq!(reason, "InvalidConfig");
    eventually(&format!("an Event about {name}"), rs, || async {
        let r = reporters(client, name).await;
        (!r.is_empty()).then_some(r)
    })
    .await
}

fn reconciles(replica: &Replica) -> u64 {
    let (status, body) = replica.get("/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("kiln_reconciles_total "))
        .unwrap_or_else(|| panic!("no kiln_reconciles_total in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_killed_holder_hands_over() {
    kiln_e2e::init_test_logging();
    let cp = ControlPlane::start(ControlPlaneOptions {
        controller_manager: false,
        ..ControlPlaneOptions::default()
    })
    .await
    .unwrap();
    let client = cp.client().await.unwrap();
    kiln_e2e::harness::install_crd(&client).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let url = bad_repo(tmp.path());

    // Replica a starts first and creates the Lease as its holder.
    let a = Replica::start("replica-a", cp.kubeconfig_path(), tmp.path());
    let first_holder = eventually("replica-a holds the Lease", &[&a], || async {
        a.alive();
        let l = lease(&client).await?;
        holder(&l).map(str::to_owned)
    })
    .await;
    assert!(first_holder.starts_with("replica-a_"), "{first_holder}");

    // Replica b stands by: ready, but not reconciling.
    let b = Replica::start("replica-b", cp.kubeconfig_path(), tmp.path());
    eventually("replica-b is ready as a standby", &[&a, &b], || async {
        b.alive();
        let ready = b.get("/readyz").map(|(s, _)| s) == Some(200);
        let standby = b.log().contains("standby: another replica holds the lease");
        (ready && standby).then_some(())
    })
    .await;
    assert!(
        b.log().contains(&format!("holder={first_holder}")),
        "{}",
        b.log()
    );

    let rs = [&a, &b];
    assert_eq!(build_once(&client, "first", &url, &rs).await, ["replica-a"]);
    assert!(reconciles(&a) > 0);
    assert_eq!(reconciles(&b), 0, "the standby reconciled");
    assert!(!b.log().contains("first"), "{}", b.log());

    // SIGKILL the holder: no release, so b must wait for the claim to expire.
    let before = lease(&client).await.unwrap().spec.unwrap();
    let last_renewal = before.renew_time.clone().unwrap().0;
    signal_group(a.process.pid(), libc::SIGKILL);
    let killed = Instant::now();
    let taken = eventually("replica-b takes the Lease", &rs, || async {
        let l = lease(&client).await?;
        holder(&l)
            .is_some_and(|h| h.starts_with("replica-b_"))
            .then_some(l)
    })
    .await;
    let takeover = killed.elapsed();
    let spec = taken.spec.unwrap();
    let acquired = spec.acquire_time.unwrap().0;
    eprintln!(
        "takeover: {:.1} s after SIGKILL; {:.1} s after the holder's last renewal (lease 15 s)",
        takeover.as_secs_f64(),
        acquired.duration_since(last_renewal).as_secs_f64()
    );
    // Never before the killed holder's claim ran out; transitions count the handover.
    assert!(
        acquired.duration_since(last_renewal) >= SignedDuration::from_secs(15),
        "taken at {acquired}, last renewal {last_renewal}"
    );
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(
        b.log().contains("acquired the lease: leading"),
        "{}",
        b.log()
    );

    assert_eq!(
        build_once(&client, "second", &url, &[&b]).await,
        ["replica-b"]
    );
    assert!(reconciles(&b) > 0);

    // SIGTERM with a standby (c) present: b finishes, releases the Lease and exits 0,
    // and c takes over within its retry period instead of the lease duration.
    let c = Replica::start("replica-c", cp.kubeconfig_path(), tmp.path());
    eventually("replica-c is ready as a standby", &[&b, &c], || async {
        c.alive();
        let ready = c.get("/readyz").map(|(s, _)| s) == Some(200);
        (ready && c.log().contains("standby: another replica holds the lease")).then_some(())
    })
    .await;
    signal_group(b.process.pid(), libc::SIGTERM);
    let terminated = Instant::now();
    let status = eventually("replica-b exits after SIGTERM", &[&b], || async {
        b.process.exited()
    })
    .await;
    assert!(status.success(), "{status}\n{}", b.log());
    assert!(b.log().contains("released the lease"), "{}", b.log());
    let taken = eventually("replica-c takes the released Lease", &[&b, &c], || async {
        let l = lease(&client).await?;
        holder(&l)
            .is_some_and(|h| h.starts_with("replica-c_"))
            .then_some(l)
    })
    .await;
    let handover = terminated.elapsed();
    eprintln!(
        "handover after SIGTERM: {:.1} s (retry period 2 s)",
        handover.as_secs_f64()
    );
    assert!(handover < Duration::from_secs(8), "{handover:?}");
    assert_eq!(taken.spec.unwrap().lease_transitions, Some(2));
    assert_eq!(
        build_once(&client, "third", &url, &[&c]).await,
        ["replica-c"]
    );

    // SIGSTOP the holder (a frozen node, a long GC pause): d takes over after the
    // claim expired. Resumed, c finds its renew deadline passed and exits with 1.
    let d = Replica::start("replica-d", cp.kubeconfig_path(), tmp.path());
    eventually("replica-d is ready as a standby", &[&c, &d], || async {
        d.alive();
        let ready = d.get("/readyz").map(|(s, _)| s) == Some(200);
        (ready && d.log().contains("standby: another replica holds the lease")).then_some(())
    })
    .await;
    signal_group(c.process.pid(), libc::SIGSTOP);
    let taken = eventually(
        "replica-d takes the Lease of the paused c",
        &[&c, &d],
        || async {
            let l = lease(&client).await?;
            holder(&l)
                .is_some_and(|h| h.starts_with("replica-d_"))
                .then_some(l)
        },
    )
    .await;
    assert_eq!(taken.spec.unwrap().lease_transitions, Some(3));
    assert_eq!(
        build_once(&client, "fourth", &url, &[&c, &d]).await,
        ["replica-d"]
    );
    signal_group(c.process.pid(), libc::SIGCONT);
    let resumed = Instant::now();
    let status = eventually("the resumed replica-c exits", &[&c, &d], || async {
        c.process.exited()
    })
    .await;
    eprintln!(
        "paused holder exits {:.1} s after resuming",
        resumed.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(1), "{}", c.log());
    assert!(c.log().contains("lost the leadership"), "{}", c.log());
    assert!(!c.log().contains("fourth"), "{}", c.log());
    // d still leads.
    let l = lease(&client).await.unwrap();
    assert!(holder(&l).unwrap().starts_with("replica-d_"));
}
