//! Reconcile logic against a tower-test mock API server that asserts each request (method,
//! path, body) in order, in the style of kube-rs' controller-rs.

use kiln_testkit::git_server::git_ok as git;
use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::metrics::Metrics;
use crate::mirror::SourceCache;

use kiln_testkit::mock_api::{self, Expect, Handle, expect};

const NS_PATH: &str = "/apis/kiln.dev/v1alpha1/namespaces/ci/imagebuilds/shop-1";

fn test_context(sources: &Path) -> (Arc<Context>, Handle) {
    let (client, handle) = mock_api::client("ci");
    let ctx = Context::new(
        client,
        Arc::new(Metrics::new()),
        Arc::new(SourceCache::new(sources)),
        Settings::default(),
    );
    (Arc::new(ctx), handle)
}

/// Serves `script` in order and returns the request bodies (JSON) it saw.
async fn serve(handle: Handle, script: Vec<Expect>) -> Vec<Value> {
    mock_api::bodies(mock_api::serve(handle, script, Some(Duration::from_secs(5))).await)
}

fn build(spec_extra: Value, status: Option<Value>) -> ImageBuild {
    let mut spec = json!({
        "source": {"git": {"url": "file:///nonexistent", "revision": "main"}},
        "repo": "registry.example.org/shop"
    });
    if let (Value::Object(s), Value::Object(extra)) = (&mut spec, spec_extra) {
        s.extend(extra);
    }
    let mut obj = json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "ImageBuild",
        "metadata": {"name": "shop-1", "namespace": "ci", "uid": "uid-1", "generation": 2,
                     "finalizers": [FINALIZER]},
        "spec": spec,
    });
    if let Some(s) = status {
        obj["status"] = s;
    }
    serde_json::from_value(obj).unwrap()
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn owned_pod(name: &str, uid: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ci",
        "ownerReferences": [{"apiVersion": "kiln.dev/v1alpha1", "kind": "ImageBuild",
            "name": "shop-1", "uid": uid, "controller": true}]}})
}

fn event_ok() -> Expect {
    expect(
        "POST",
        "/apis/events.k8s.io/v1/namespaces/ci/events",
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
               "metadata": {"name": "e", "namespace": "ci"}, "eventTime": null}),
    )
}

/// The children deletion sequence: list pods (one owned, one of another build), delete the
/// owned one, list ConfigMaps (none).
fn delete_children_script() -> Vec<Expect> {
    let mut list_pods = expect(
        "GET",
        "/api/v1/namespaces/ci/pods",
        list(
            "PodList",
            vec![owned_pod("shop-1-a", "uid-1"), owned_pod("other", "uid-9")],
        ),
    );
    list_pods.query =
        Some("labelSelector=kiln.dev/component=builder,kiln.dev/imagebuild=shop-1".into());
    vec![
        list_pods,
        expect(
            "DELETE",
            "/api/v1/namespaces/ci/pods/shop-1-a",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        expect(
            "GET",
            "/api/v1/namespaces/ci/configmaps",
            list("ConfigMapList", vec![]),
        ),
    ]
}

fn status_ok(ib: &ImageBuild) -> Expect {
    expect(
        "PATCH",
        &format!("{NS_PATH}/status"),
        serde_json::to_value(ib).unwrap(),
    )
}

#[tokio::test]
async fn adds_the_finalizer_first() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let mut ib = build(json!({}), None);
    ib.metadata.finalizers = None;
    let with_finalizer = build(json!({}), None);
    let server = tokio::spawn(serve(
        handle,
        vec![expect(
            "PATCH",
            NS_PATH,
            serde_json::to_value(&with_finalizer).unwrap(),
        )],
    ));
    let action = reconcile(Arc::new(ib), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let bodies = server.await.unwrap();
    // A JSON patch that creates the finalizers list with ours.
    let ops = bodies[0].as_array().unwrap();
    assert!(
        ops.iter()
            .any(|op| op["op"] == "add" && op["value"] == json!([FINALIZER])),
        "{}",
        bodies[0]
    );
}

#[tokio::test]
async fn cancel_deletes_owned_pods_and_ends_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let ib = build(
        json!({"cancel": true}),
        Some(json!({"phase": "Building", "startTime": "2026-01-01T00:00:00Z"})),
    );
    let mut script = delete_children_script();
    script.push(status_ok(&ib));
    script.push(event_ok());
    let server = tokio::spawn(serve(handle, script));
    let action = reconcile(Arc::new(ib), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let bodies = server.await.unwrap();
    let status = &bodies[3]["status"];
    assert_eq!(bodies[3]["kind"], "ImageBuild");
    assert_eq!(status["phase"], "Cancelled");
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["conditions"][0]["type"], "Succeeded");
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][0]["reason"], "Cancelled");
    assert!(status["completionTime"].is_string());
    assert_eq!(bodies[4]["reason"], "Cancelled");
    assert_eq!(bodies[4]["type"], "Warning");
    assert!(
        ctx.metrics
            .encode()
            .contains("kiln_builds_total{phase=\"Cancelled\"} 1")
    );
}

#[tokio::test]
async fn an_invalid_spec_fails_with_invalid_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let ib = build(
        json!({"config": {"path": "werf.yaml", "inline": "project: x"}}),
        None,
    );
    let mut script = delete_children_script();
    script.push(status_ok(&ib));
    script.push(event_ok());
    let server = tokio::spawn(serve(handle, script));
    reconcile(Arc::new(ib), ctx.clone()).await.unwrap();
    let bodies = server.await.unwrap();
    let cond = &bodies[3]["status"]["conditions"][0];
    assert_eq!(bodies[3]["status"]["phase"], "Failed");
    assert_eq!(cond["reason"], "InvalidSpec");
    assert_eq!(
        cond["message"],
        "invalid ImageBuild spec: spec.config: set either path or inline, not both"
    );
    assert!(
        ctx.metrics
            .encode()
            .contains("kiln_reconcile_failures_total{reason=\"InvalidSpec\"} 1")
    );
}

#[tokio::test]
async fn a_passed_timeout_stops_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let ib = build(
        json!({"timeout": "1m"}),
        Some(json!({"phase": "Building", "startTime": "2026-01-01T00:00:00Z"})),
    );
    let mut script = delete_children_script();
    script.push(status_ok(&ib));
    script.push(event_ok());
    let server = tokio::spawn(serve(handle, script));
    reconcile(Arc::new(ib), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    let status = &bodies[3]["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["conditions"][0]["reason"], "Timeout");
    assert_eq!(
        status["conditions"][0]["message"],
        "the build did not finish within spec.timeout 1m"
    );
    // The start time is kept; completion is now.
    assert_eq!(status["startTime"], "2026-01-01T00:00:00Z");
}

#[tokio::test]
async fn deletion_stops_pods_then_removes_the_finalizer() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let mut ib = build(json!({}), Some(json!({"phase": "Building"})));
    ib.metadata.deletion_timestamp = Some(now());
    let mut script = delete_children_script();
    let mut gone = build(json!({}), None);
    gone.metadata.finalizers = None;
    script.push(expect(
        "PATCH",
        NS_PATH,
        serde_json::to_value(&gone).unwrap(),
    ));
    let server = tokio::spawn(serve(handle, script));
    reconcile(Arc::new(ib), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    let ops = bodies[3].as_array().unwrap();
    assert!(ops.iter().any(|op| op["op"] == "remove"), "{}", bodies[3]);
}

#[tokio::test]
async fn a_finished_build_makes_no_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let ib = build(json!({"cancel": true}), Some(json!({"phase": "Succeeded"})));
    let server = tokio::spawn(serve(handle, vec![]));
    assert_eq!(
        reconcile(Arc::new(ib), ctx).await.unwrap(),
        Action::await_change()
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_finished_build_past_its_retention_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let ib = build(
        json!({"retention": {"ttlAfterFailed": "1h"}}),
        Some(json!({"phase": "Failed", "completionTime": "2020-01-01T00:00:00Z"})),
    );
    let server = tokio::spawn(serve(
        handle,
        vec![expect(
            "DELETE",
            NS_PATH,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )],
    ));
    assert_eq!(
        reconcile(Arc::new(ib), ctx).await.unwrap(),
        Action::await_change()
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_finished_build_within_its_retention_is_looked_at_again_when_it_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let done = k8s_openapi::jiff::Timestamp::now();
    let ib = build(
        json!({"retention": {"ttlAfterSucceeded": "1h"}}),
        Some(json!({"phase": "Succeeded", "completionTime": done.to_string()})),
    );
    let server = tokio::spawn(serve(handle, vec![]));
    let action = reconcile(Arc::new(ib), ctx).await.unwrap();
    server.await.unwrap();
    // Requeued for the rest of the hour (a little less: time passed since `done`).
    assert!(
        action != Action::await_change() && action != Action::requeue(Duration::from_secs(3_600)),
        "{action:?}"
    );
    assert!(format!("{action:?}").contains("35"), "{action:?}");
}

#[tokio::test]
async fn live_builders_are_looked_for_in_the_own_namespace_without_cluster_wide_rights() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let mut running = owned_pod("other-build-pod", "uid-9");
    running["metadata"]["annotations"] = json!({"kiln.dev/repo": "registry.example.org/shop"});
    running["status"] = json!({"phase": "Running"});
    let mut forbidden = expect(
        "GET",
        "/api/v1/pods",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": "Forbidden", "code": 403,
               "message": "pods is forbidden: cannot list resource \"pods\" at the cluster scope"}),
    );
    forbidden.status = 403;
    let server = tokio::spawn(serve(
        handle,
        vec![
            forbidden,
            expect(
                "GET",
                "/api/v1/namespaces/ci/pods",
                list("PodList", vec![running.clone()]),
            ),
            // The refusal is remembered: the next look-up goes to the namespace directly.
            expect(
                "GET",
                "/api/v1/namespaces/ci/pods",
                list("PodList", vec![running]),
            ),
        ],
    ));
    for _ in 0..2 {
        let found = super::observe::live_builder_of(
            &ctx,
            "ci",
            "registry.example.org/shop",
            &"a".repeat(56),
            "uid-1",
        )
        .await
        .unwrap();
        assert_eq!(found.as_deref(), Some("ci/other-build-pod"));
    }
    server.await.unwrap();
}

/// A repository with the seed's shape: backend, frontend and frontend-assets from one
/// Dockerfile where frontend-assets copies from the stage frontend targets.
fn seed_repo(root: &Path) -> (String, String) {
    let dir = root.join("shop");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("werf.yaml"),
        "project: shop\nconfigVersion: 1\n---\nimage: backend\ndockerfile: Dockerfile\ntarget: backend\n---\nimage: frontend\ndockerfile: Dockerfile\ntarget: application\n---\nimage: frontend-assets\ndockerfile: Dockerfile\ntarget: assets\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox AS backend\nCOPY src/ /src/\n\nFROM busybox AS application\nCOPY src/ /app/\n\nFROM busybox AS assets\nCOPY --from=application /app /assets\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.txt"), "hello").unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "seed"]);
    let commit = git(&dir, &["rev-parse", "HEAD"]);
    (format!("file://{}", dir.display()), commit)
}

#[tokio::test]
async fn planning_records_commit_and_build_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, commit) = seed_repo(tmp.path());
    let (ctx, handle) = test_context(&tmp.path().join("cache"));
    let ib = build(
        json!({"source": {"git": {"url": url, "revision": "main"}},
               "platforms": ["linux/amd64", "linux/arm64"]}),
        None,
    );
    let server = tokio::spawn(serve(handle, vec![status_ok(&ib), event_ok()]));
    let action = reconcile(Arc::new(ib), ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_millis(200)));
    let bodies = server.await.unwrap();
    let status = &bodies[0]["status"];
    assert_eq!(status["phase"], "Building");
    assert_eq!(status["commit"], commit.as_str());
    assert_eq!(status["imageCount"], 3);
    // The seed plans frontend-assets after frontend (it copies from frontend's target).
    assert_eq!(
        status["plan"]["sets"],
        json!([["backend", "frontend"], ["frontend-assets"]])
    );
    assert_eq!(status["conditions"][0]["status"], "Unknown");
    assert_eq!(status["conditions"][0]["reason"], "Building");
    assert_eq!(bodies[1]["reason"], "Planned");
}

#[tokio::test]
async fn a_missing_revision_fails_with_revision_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _) = seed_repo(tmp.path());
    let (ctx, handle) = test_context(&tmp.path().join("cache"));
    let ib = build(
        json!({"source": {"git": {"url": url.clone(), "revision": "release-9"}}}),
        None,
    );
    let mut script = delete_children_script();
    script.push(status_ok(&ib));
    script.push(event_ok());
    let server = tokio::spawn(serve(handle, script));
    reconcile(Arc::new(ib), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    let cond = &bodies[3]["status"]["conditions"][0];
    assert_eq!(bodies[3]["status"]["phase"], "Failed");
    assert_eq!(cond["reason"], "RevisionNotFound");
    assert_eq!(
        cond["message"],
        format!(
            "git repository {url}: revision \"release-9\" is not a branch, tag or commit of the repository"
        )
    );
}

#[tokio::test]
async fn a_missing_git_secret_fails_with_secret_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, handle) = test_context(tmp.path());
    let ib = build(
        json!({"source": {"git": {"url": "https://git.example.org/shop.git", "revision": "main",
                                  "secretRef": {"name": "git-auth"}}}}),
        None,
    );
    let mut script = vec![Expect {
        status: 404,
        ..expect(
            "GET",
            "/api/v1/namespaces/ci/secrets/git-auth",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "secrets \"git-auth\" not found"}),
        )
    }];
    script.extend(delete_children_script());
    script.push(status_ok(&ib));
    script.push(event_ok());
    let server = tokio::spawn(serve(handle, script));
    reconcile(Arc::new(ib), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    let cond = &bodies[4]["status"]["conditions"][0];
    assert_eq!(cond["reason"], "SecretNotFound");
    assert_eq!(
        cond["message"],
        "Secret \"git-auth\" (from spec.source.git.secretRef) not found in namespace \"ci\""
    );
}

#[tokio::test]
async fn a_malformed_werf_yaml_fails_with_invalid_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("werf.yaml"),
        "project: shop\nconfigVersion: 1\n---\nimage: [\n",
    )
    .unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "bad"]);
    let (ctx, handle) = test_context(&tmp.path().join("cache"));
    let ib = build(
        json!({"source": {"git": {"url": format!("file://{}", dir.display()), "revision": "main"}}}),
        None,
    );
    let mut script = delete_children_script();
    script.push(status_ok(&ib));
    script.push(event_ok());
    let server = tokio::spawn(serve(handle, script));
    reconcile(Arc::new(ib), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    let cond = &bodies[3]["status"]["conditions"][0];
    assert_eq!(cond["reason"], "InvalidConfig");
    let message = cond["message"].as_str().unwrap();
    assert!(message.starts_with("werf.yaml"), "{message}");
    assert!(message.contains("YAML syntax error"), "{message}");
}

/// A git repository (file:// URL and commit) holding `files`.
fn repo_with(root: &Path, files: &[(&str, &str)]) -> (String, String) {
    let dir = root.join("project");
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "project"]);
    let commit = git(&dir, &["rev-parse", "HEAD"]);
    (format!("file://{}", dir.display()), commit)
}

const TEMPLATED_WERF_YAML: &str = r#"project: {{ env "CI_PROJECT" }}
configVersion: 1
{{- range $name := splitList "," (env "CI_SERVICES") }}
---
image: {{ $name }}
dockerfile: Dockerfile
{{- end }}
"#;

const ALLOW_CI_VARIABLES: &str = "giterminismConfigVersion: 1\nconfig:\n  goTemplateRendering:\n    allowEnvVariables: [/CI_.*/]\n";

#[tokio::test]
async fn planning_renders_werf_yaml_with_env_values_from_the_spec_and_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _) = repo_with(
        tmp.path(),
        &[
            ("werf.yaml", TEMPLATED_WERF_YAML),
            ("werf-giterminism.yaml", ALLOW_CI_VARIABLES),
            ("Dockerfile", "FROM busybox\n"),
        ],
    );
    let (ctx, handle) = test_context(&tmp.path().join("cache"));
    let ib = build(
        json!({"source": {"git": {"url": url, "revision": "main"}},
               "configRendering": {
                   "envValues": {"CI_PROJECT": "shop", "CI_SERVICES": "overridden"},
                   "envValuesFrom": [{"name": "CI_SERVICES",
                                      "secretKeyRef": {"name": "build-env", "key": "services"}}]}}),
        None,
    );
    let secret = expect(
        "GET",
        "/api/v1/namespaces/ci/secrets/build-env",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "build-env", "namespace": "ci"},
               "data": {"services": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "api,worker")}}),
    );
    let server = tokio::spawn(serve(handle, vec![secret, status_ok(&ib), event_ok()]));
    reconcile(Arc::new(ib), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    let status = &bodies[1]["status"];
    assert_eq!(status["phase"], "Building", "{status}");
    assert_eq!(status["plan"]["sets"], json!([["api", "worker"]]));
}

#[tokio::test]
async fn a_template_error_fails_with_invalid_config_naming_template_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _) = repo_with(
        tmp.path(),
        &[
            (
                "werf.yaml",
                "project: shop\nconfigVersion: 1\n---\nimage: app\nfrom: {{ required \"set the base image\" .Base }}\n",
            ),
            ("Dockerfile", "FROM busybox\n"),
        ],
    );
    let (ctx, handle) = test_context(&tmp.path().join("cache"));
    let ib = build(
        json!({"source": {"git": {"url": url, "revision": "main"}}}),
        None,
    );
    let mut script = delete_children_script();
    script.push(status_ok(&ib));
    script.push(event_ok());
    let server = tokio::spawn(serve(handle, script));
    reconcile(Arc::new(ib), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    let cond = &bodies[3]["status"]["conditions"][0];
    assert_eq!(bodies[3]["status"]["phase"], "Failed");
    assert_eq!(cond["reason"], "InvalidConfig");
    let message = cond["message"].as_str().unwrap();
    assert!(
        message.starts_with("werf.yaml, line 5: template: werfConfig:5:10: executing \"werfConfig\" at <required \"set the base image\" .Base>: error calling required: set the base image"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_env_value_secret_fails_with_secret_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _) = repo_with(
        tmp.path(),
        &[
            ("werf.yaml", TEMPLATED_WERF_YAML),
            ("Dockerfile", "FROM busybox\n"),
        ],
    );
    let (ctx, handle) = test_context(&tmp.path().join("cache"));
    let ib = build(
        json!({"source": {"git": {"url": url, "revision": "main"}},
               "configRendering": {"envValuesFrom": [{"name": "CI_SERVICES",
                   "configMapKeyRef": {"name": "build-env", "key": "services"}}]}}),
        None,
    );
    let mut script = vec![Expect {
        status: 404,
        ..expect(
            "GET",
            "/api/v1/namespaces/ci/configmaps/build-env",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "configmaps \"build-env\" not found"}),
        )
    }];
    script.extend(delete_children_script());
    script.push(status_ok(&ib));
    script.push(event_ok());
    let server = tokio::spawn(serve(handle, script));
    reconcile(Arc::new(ib), ctx).await.unwrap();
    let bodies = server.await.unwrap();
    let cond = &bodies[4]["status"]["conditions"][0];
    assert_eq!(cond["reason"], "SecretNotFound");
    assert_eq!(
        cond["message"],
        "ConfigMap \"build-env\" (for werf.yaml env variable \"CI_SERVICES\", from spec.configRendering.envValuesFrom) not found in namespace \"ci\""
    );
}
