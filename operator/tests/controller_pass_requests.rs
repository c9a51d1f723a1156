//! The requests of building reconciles (the first creates the builder pod, the later ones
//! find it running): a staged Dockerfile image
//! on a base image from a real registry, a git and a registry Secret, and a Kubernetes API
//! that answers every request generically and counts them. The plan of the pinned commit
//! the base image's environment and the registry credentials are computed once per build
//! generation, and the leases of a running pod are held here, so a later pass reads neither
//! a Secret, nor the base image, nor the lock ConfigMap: one API request (its own pods) and
//! one registry request (the stages' tags). `--nocapture` prints the requests of each pass.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kiln_crds::ImageBuild;
use kiln_operator::controller::{self, Context, FINALIZER, Settings};
use kiln_operator::metrics::Metrics;
use kiln_operator::mirror::SourceCache;
use kiln_testkit::base_images::push_busybox;
use kiln_testkit::registry::{RegistryOptions, TestRegistry};
use kube::client::Body;
use serde_json::{Value, json};

fn git(dir: &Path, args: &[&str]) -> String {
    kiln_testkit::git_server::git(dir, args).unwrap()
}

fn b64(s: &str) -> String {
    kiln_testkit::registry::base64_encode(s.as_bytes())
}

/// Answers every request the controller makes while a build's pod runs, and logs
/// `pass: METHOD /path` for each.
fn respond(
    request: &Request<Body>,
    body: &Value,
    pods: &mut Vec<Value>,
    pod_status: &Value,
    ib: &Value,
) -> (u16, Value) {
    let path = request.uri().path();
    let method = request.method().as_str();
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": "NotFound", "code": 404});
    match (method, path) {
        ("GET", "/api/v1/namespaces/ci/secrets/git") => (
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git"},
                   "data": {"username": b64("u"), "password": b64("p")}}),
        ),
        ("GET", "/api/v1/namespaces/ci/secrets/registry") => (
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "registry"},
                   "type": "kubernetes.io/dockerconfigjson",
                   "data": {".dockerconfigjson": b64("{\"auths\":{}}")}}),
        ),
        ("GET", "/api/v1/namespaces/ci/pods") => (
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
                   "items": pods}),
        ),
        // The builder pod: created once, then in `pod_status`.
        ("POST", "/api/v1/namespaces/ci/pods") => {
            let mut pod = body.clone();
            pod["status"] = pod_status.clone();
            pods.push(pod.clone());
            (201, pod)
        }
        ("POST", "/api/v1/namespaces/ci/configmaps") => (201, body.clone()),
        ("GET", "/api/v1/pods") => (
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
                   "items": []}),
        ),
        ("GET", p) if p.contains("/configmaps/") => (
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": p.rsplit('/').next().unwrap(), "resourceVersion": "1"}}),
        ),
        ("PUT", p) if p.contains("/configmaps/") => (
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": p.rsplit('/').next().unwrap(), "resourceVersion": "2"}}),
        ),
        ("PATCH", p) if p.ends_with("/status") => {
            let mut written = ib.clone();
            written["status"] = body["status"].clone();
            (200, written)
        }
        ("POST", p) if p.ends_with("/events") => (
            200,
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                   "eventTime": null}),
        ),
        _ => (404, not_found),
    }
}

/// What one reconcile asked and wrote.
struct PassRecord {
    api: Vec<String>,
    registry: Vec<String>,
    status: Option<Value>,
}

/// Runs `passes` building reconciles of one build whose builder pod, once created, has
/// `pod_status`.
async fn building_passes(pod_status: Value, passes: usize) -> Vec<PassRecord> {
    let registry = TestRegistry::start_with(RegistryOptions {
        access_log: true,
        ..RegistryOptions::default()
    })
    .unwrap();
    // A real base image with an environment (busybox's PATH) for the staged RUN's digest.
    let address = registry.address().to_owned();
    let base = tokio::task::spawn_blocking(move || push_busybox(&address, "base"))
        .await
        .unwrap()
        .unwrap()
        .amd64;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("werf.yaml"),
        "project: shop\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\nstaged: true\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {base}\nRUN echo $PATH > /path\n"),
    )
    .unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "seed"]);
    let commit = git(&dir, &["rev-parse", "HEAD"]);

    let ib: ImageBuild = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "ImageBuild",
        "metadata": {"name": "shop-1", "namespace": "ci", "uid": "uid-1", "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": {"source": {"git": {"url": format!("file://{}", dir.display()), "revision": "main",
                                    "secretRef": {"name": "git"}}},
                 "repo": format!("{}/stages", registry.address()),
                 "registrySecretRef": {"name": "registry"}},
        "status": {"phase": "Building", "commit": commit, "startTime": "2026-01-01T00:00:00Z"}
    }))
    .unwrap();
    let ib_json = serde_json::to_value(&ib).unwrap();

    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let pass = Arc::new(AtomicUsize::new(0));
    let log: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    // The last status written, as the watch would deliver it to the next reconcile.
    let status: Arc<Mutex<Option<Value>>> = Arc::default();
    let server = {
        let (pass, log, status) = (pass.clone(), log.clone(), status.clone());
        tokio::spawn(async move {
            let mut pods = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                let line = format!("{} {}", request.method(), request.uri().path());
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let request = Request::from_parts(parts, Body::empty());
                if line.ends_with("/status") {
                    *status.lock().unwrap() = Some(body["status"].clone());
                }
                let (code, body) = respond(&request, &body, &mut pods, &pod_status, &ib_json);
                log.lock()
                    .unwrap()
                    .push((pass.load(Ordering::SeqCst), line));
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        })
    };
    let ctx = Arc::new(Context::new(
        kube::Client::new(svc, "ci"),
        Arc::new(Metrics::new()),
        Arc::new(SourceCache::new(tmp.path().join("cache"))),
        Settings {
            lock_namespace: "werf-locks".into(),
            ..Settings::default()
        },
    ));
    let mut ib = Arc::new(ib);
    let mut records = Vec::new();
    for n in 1..=passes {
        pass.store(n, Ordering::SeqCst);
        if let Some(written) = status.lock().unwrap().clone() {
            let mut next = (*ib).clone();
            next.status = serde_json::from_value(written).unwrap();
            ib = Arc::new(next);
        }
        let before = registry.requests().len();
        let action = controller::reconcile(ib.clone(), ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}: {:#?}", log.lock().unwrap()));
        let registry_requests: Vec<String> = registry.requests()[before..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        let api: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == n)
            .map(|(_, l)| l.clone())
            .collect();
        println!(
            "pass {n} ({action:?}): {} API requests, {} registry requests\n  API: {api:#?}\n  registry: {registry_requests:#?}",
            api.len(),
            registry_requests.len()
        );
        records.push(PassRecord {
            api,
            registry: registry_requests,
            status: status.lock().unwrap().clone(),
        });
    }
    server.abort();
    records
}

#[tokio::test]
async fn later_passes_of_a_building_reconcile_reuse_the_plan_and_base_image_facts() {
    let records = building_passes(json!({"phase": "Running"}), 3).await;
    let (first_api, first_registry) = (&records[0].api, &records[0].registry);
    let (later_api, later_registry) = (&records[2].api, &records[2].registry);
    let reads = |lines: &[String], what: &str| lines.iter().filter(|l| l.contains(what)).count();
    assert_eq!(reads(first_api, "/secrets/git"), 1, "{first_api:?}");
    assert_eq!(reads(later_api, "/secrets/git"), 0, "{later_api:?}");
    assert_eq!(reads(first_api, "/secrets/registry"), 1, "{first_api:?}");
    assert_eq!(reads(later_api, "/secrets/registry"), 0, "{later_api:?}");
    // The running pod's leases are held by this process: no lock request either.
    assert_eq!(reads(later_api, "/configmaps/"), 0, "{later_api:?}");
    assert!(reads(first_registry, "/base/") > 0, "{first_registry:?}");
    assert_eq!(reads(later_registry, "/base/"), 0, "{later_registry:?}");
    // What a later pass costs: the build's pods, the stages' tags (2 API requests before
    // the credentials were cached).
    assert_eq!(
        later_api,
        &["GET /api/v1/namespaces/ci/pods"],
        "{later_api:?}"
    );
    assert_eq!(later_registry.len(), 1, "{later_registry:?}");
}

/// Regression: the condition reason was read from the progress notes ("waits for" → always
/// `WaitingForStage`), so a build whose pod waits for a node said it waited for another
/// build's stage lock.
#[tokio::test]
async fn a_builder_pod_that_cannot_be_scheduled_is_reported_waiting_for_a_node() {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let unschedulable = json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        "lastTransitionTime": now}]});
    let records = building_passes(unschedulable, 2).await;
    let status = records[1]
        .status
        .clone()
        .expect("the second pass wrote its status");
    let condition = &status["conditions"][0];
    assert_eq!(condition["reason"], "WaitingForNode", "{status}");
    assert_eq!(status["phase"], "Building", "{status}");
    let message = condition["message"].as_str().unwrap();
    assert!(
        message.contains("app (linux/amd64) waits for a node: 0/1 nodes"),
        "{message}"
    );
}
