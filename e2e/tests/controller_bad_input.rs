//! The controller against a real kube-apiserver: bad input ends in a Failed condition that
//! names the cause, leaves no builder pod, and deleting the ImageBuild passes through the
//! finalizer. The operator runs in-process on the test's runtime (the harness's
//! [`InProcessOperator`]). Failures on the building path (git credentials, registry auth, a
//! failing RUN) are in `controller_build_failures.rs`.

use kiln_testkit::git_server::git_ok as git;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kiln_crds::ImageBuild;
use kiln_e2e::TestCluster;
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_operator::controller::{self, Settings};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn repo_with(root: &Path, name: &str, werf_yaml: &str) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("werf.yaml"), werf_yaml).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\n").unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "c"]);
    format!("file://{}", dir.display())
}

fn image_build(name: &str, url: &str, revision: &str) -> ImageBuild {
    serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "ImageBuild",
        "metadata": {"name": name},
        "spec": {"source": {"git": {"url": url, "revision": revision}},
                 "repo": "127.0.0.1:5999/shop"}
    }))
    .unwrap()
}

#[tokio::test]
async fn bad_input_fails_with_a_named_cause_and_no_pods() {
    kiln_e2e::init_test_logging();
    let cluster = TestCluster::start().await.unwrap();
    let client = cluster.client();
    harness::install_crd(&client).await.unwrap();
    let ns = "default";
    let tmp = tempfile::tempdir().unwrap();
    let good = repo_with(
        tmp.path(),
        "good",
        "project: shop\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\n",
    );
    let bad = repo_with(
        tmp.path(),
        "bad",
        "project: shop\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\nbogus: 1\n",
    );

    let operator = InProcessOperator::start(
        client.clone(),
        Settings {
            lock_namespace: ns.into(),
            ..Settings::default()
        },
        &tmp.path().join("cache"),
        &[ns],
    );

    let api: Api<ImageBuild> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &image_build("missing-rev", &good, "release-9"),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &image_build("bad-config", &bad, "main"),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &image_build(
            "no-repo",
            &format!("file://{}/absent", tmp.path().display()),
            "main",
        ),
    )
    .await
    .unwrap();

    let ib = harness::wait_finished(&api, "missing-rev", TIMEOUT)
        .await
        .unwrap();
    let status = ib.status.unwrap();
    assert_eq!(status.phase, kiln_crds::Phase::Failed);
    let cond = &status.conditions[0];
    assert_eq!(
        (cond.type_.as_str(), cond.status.as_str()),
        ("Succeeded", "False")
    );
    assert_eq!(cond.reason, "RevisionNotFound");
    assert!(cond.message.contains("\"release-9\""), "{}", cond.message);
    assert!(
        ib.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&controller::FINALIZER.to_owned())
    );

    let cond = harness::wait_finished(&api, "bad-config", TIMEOUT)
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions[0]
        .clone();
    assert_eq!(cond.reason, "InvalidConfig");
    assert!(cond.message.contains("bogus"), "{}", cond.message);

    let cond = harness::wait_finished(&api, "no-repo", TIMEOUT)
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions[0]
        .clone();
    assert_eq!(cond.reason, "SourceUnavailable");

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Deleting passes through the finalizer and the object goes away.
    api.delete("missing-rev", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while api.get_opt("missing-rev").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "finalizer not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Retention: a failed build with `ttlAfterFailed` goes away on its own.
    let mut short_lived = image_build("short-lived", &good, "release-9");
    short_lived.spec.retention = Some(kiln_crds::imagebuild::RetentionSpec {
        ttl_after_succeeded: None,
        ttl_after_failed: Some("2s".into()),
    });
    api.create(&PostParams::default(), &short_lived)
        .await
        .unwrap();
    harness::wait_finished(&api, "short-lived", TIMEOUT)
        .await
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while api.get_opt("short-lived").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "retention did not delete the build"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let text = operator.metrics.encode();
    assert!(
        text.contains("kiln_builds_total{phase=\"Failed\"} 4"),
        "{text}"
    );

    tokio::time::timeout(TIMEOUT, operator.stop())
        .await
        .expect("the controller stops on shutdown")
        .unwrap();
}
