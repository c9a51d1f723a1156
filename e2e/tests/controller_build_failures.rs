//! Bad input on the building path, against the local stack (kube-apiserver + real node
//! running the workspace's `kiln-builder` with Buildah, registry, git server): each build
//! ends `Failed` with a condition reason and message naming the cause, leaves no builder
//! pod and no held stage lock, and deleting it passes through the finalizer.
//!
//! One stack for every case (starting it is the slow part):
//! 1. wrong git credentials (a git server behind basic auth);
//! 2. a stages storage that refuses the credentials (wrong ones, and none at all);
//! 3. a Dockerfile whose RUN exits 3.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kiln_crds::{ImageBuild, Phase};
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_operator::controller::{FINALIZER, Settings};
use kiln_operator::lock::configmap_name;
use kiln_operator::lock::key::ANNOTATION_PREFIX;
use kiln_testkit::git_server::GitServer;
use kiln_testkit::registry::TestRegistry;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const NS: &str = "default";
/// Source and registry failures come before any pod; the failing RUN needs one pod run.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const DELETE_TIMEOUT: Duration = Duration::from_secs(60);

fn settings(insecure: &[&str]) -> Settings {
    harness::build_settings(NS, insecure)
}

/// An ImageBuild of `git_url` at `main` into `repo`, linux/amd64 only, docker.io through
/// `mirror`; `extra` is merged into the spec.
fn image_build(
    name: &str,
    git_url: &str,
    repo: &str,
    mirror: &str,
    extra: serde_json::Value,
) -> ImageBuild {
    let mut spec = json!({
        "source": {"git": {"url": git_url, "revision": "main"}},
        "repo": repo,
        "platforms": ["linux/amd64"],
        "registryMirrors": [format!("http://{mirror}")],
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "ImageBuild",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

async fn create_secret(client: &kube::Client, name: &str, type_: &str, data: &[(&str, &str)]) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": type_,
        "stringData": data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// The Succeeded condition's (reason, message) of a finished build that must have failed,
/// after checking phase, condition status and that the finalizer is still on it.
fn failed_condition(ib: &ImageBuild) -> (String, String) {
    let name = ib.metadata.name.as_deref().unwrap();
    let status = ib.status.as_ref().unwrap();
    assert_eq!(
        status.phase,
        Phase::Failed,
        "{name}: {:?}",
        status.conditions
    );
    let cond = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")
        .unwrap_or_else(|| panic!("{name}: no Succeeded condition: {:?}", status.conditions));
    assert_eq!(cond.status, "False", "{name}");
    assert!(
        ib.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER),
        "{name}: finalizer missing"
    );
    (cond.reason.clone(), cond.message.clone())
}

async fn create_and_wait(api: &Api<ImageBuild>, ib: &ImageBuild) -> ImageBuild {
    api.create(&PostParams::default(), ib).await.unwrap();
    harness::wait_finished(api, ib.metadata.name.as_deref().unwrap(), BUILD_TIMEOUT)
        .await
        .unwrap()
}

/// After a failure: no pod of the build is left, no stage lease of `project` is held
/// (releasing a lease removes its `lockgate.io/…` annotation from `werf-<project>`), and
/// deleting the ImageBuild passes through the finalizer. `locked`: the build took stage
/// locks, so the ConfigMap must exist (the check is not vacuous).
async fn assert_cleaned_up_and_deletable(
    client: &kube::Client,
    name: &str,
    project: &str,
    locked: bool,
) {
    // Waits for deletions the kubelet is still confirming.
    let left = harness::pods_left(client, NS, name).await.unwrap();
    assert_eq!(left, Vec::<String>::new(), "{name}: builder pods left");

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let lock_map = maps
        .get_opt(&configmap_name(project).unwrap())
        .await
        .unwrap();
    assert_eq!(lock_map.is_some(), locked, "{name}: werf-{project}");
    if let Some(cm) = lock_map {
        let held: Vec<(String, String)> = cm
            .metadata
            .annotations
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
            .collect();
        assert_eq!(held, Vec::new(), "{name}: stage leases of {project} held");
    }

    let api: Api<ImageBuild> = Api::namespaced(client.clone(), NS);
    api.delete(name, &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + DELETE_TIMEOUT;
    while api.get_opt(name).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "{name}: still there after delete"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn build_failures_end_failed_with_a_named_cause_and_leave_nothing_behind() {
    let (stack, client) = harness::start_build_stack().await.unwrap();
    let registry = stack.registry().address().to_owned();
    let api: Api<ImageBuild> = Api::namespaced(client.clone(), NS);

    let files = harness::sample_project_files().unwrap();
    let sample: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let private_git = GitServer::start_with_basic_auth("kiln", "right-password").unwrap();
    let (private, _) = private_git
        .create_repo_with_files("private-shop", &sample)
        .unwrap();
    let auth_registry = TestRegistry::start_with_basic_auth("kiln", "right-password").unwrap();
    let auth_registry_addr = auth_registry.address().to_owned();
    let (public, _) = stack.git().create_repo_with_files("shop", &sample).unwrap();
    let (failing, _) = stack
        .git()
        .create_repo_with_files(
            "failing",
            &[
                (
                    "werf.yaml",
                    "project: failing\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\n",
                ),
                (
                    "Dockerfile",
                    "FROM busybox\nRUN echo preparing\nRUN echo about to fail && exit 3\n",
                ),
            ],
        )
        .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        client.clone(),
        settings(&[&registry, &auth_registry_addr]),
        cache.path(),
        &[NS],
    );

    // 1. Wrong git credentials.
    create_secret(
        &client,
        "git-wrong",
        "kubernetes.io/basic-auth",
        &[("username", "kiln"), ("password", "wrong-password")],
    )
    .await;
    let ib = create_and_wait(
        &api,
        &image_build(
            "git-auth",
            private.url(),
            &format!("{registry}/shop"),
            &registry,
            json!({"source": {"git": {"url": private.url(), "revision": "main",
                                      "secretRef": {"name": "git-wrong"}}}}),
        ),
    )
    .await;
    let (reason, message) = failed_condition(&ib);
    println!("git-auth: {reason}: {message}");
    assert_eq!(reason, "SourceAuthFailed", "{message}");
    assert!(message.contains(private.url()), "{message}");
    assert!(message.contains("authentication failed"), "{message}");
    assert!(ib.status.as_ref().unwrap().commit.is_none());
    assert_cleaned_up_and_deletable(&client, "git-auth", "shop", false).await;

    // 2. The stages storage refuses: wrong credentials, then none at all. Both end at the
    //    first stage lookup, before any pod.
    let wrong_config = json!({"auths": {auth_registry_addr.clone(): {
        "auth": kiln_testkit::registry::base64_encode(b"kiln:wrong-password")}}})
    .to_string();
    create_secret(
        &client,
        "registry-wrong",
        "kubernetes.io/dockerconfigjson",
        &[(".dockerconfigjson", &wrong_config)],
    )
    .await;
    let auth_repo = format!("{auth_registry_addr}/shop");
    for (name, extra) in [
        (
            "registry-wrong-auth",
            json!({"registrySecretRef": {"name": "registry-wrong"}}),
        ),
        ("registry-no-auth", json!({})),
    ] {
        let started = Instant::now();
        let ib = create_and_wait(
            &api,
            &image_build(name, public.url(), &auth_repo, &registry, extra),
        )
        .await;
        let (reason, message) = failed_condition(&ib);
        println!("{name}: {reason}: {message}");
        assert_eq!(reason, "RegistryAuthFailed", "{name}: {message}");
        assert!(message.contains(&auth_repo), "{name}: {message}");
        assert!(message.contains("unauthorized (401)"), "{name}: {message}");
        assert!(message.contains("looking up stages"), "{name}: {message}");
        // Without a Secret the message says so.
        assert_eq!(
            message.contains("spec.registrySecretRef is not set"),
            name == "registry-no-auth",
            "{name}: {message}"
        );
        // Terminal at once, not retried until some timeout.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} took {:?}",
            started.elapsed()
        );
        assert!(
            ib.status.as_ref().unwrap().builder_pods.is_empty(),
            "{name}: a pod was started"
        );
        assert_cleaned_up_and_deletable(&client, name, "shop", false).await;
    }
    assert!(
        auth_registry
            .log()
            .lines()
            .all(|l| !l.contains("\"PUT ") && !l.contains("\"POST ")),
        "nothing is pushed to a registry that refuses"
    );

    // 3. A RUN that exits 3: the message names image, platform, stage, instruction, exit
    //    code and the log tail.
    let ib = create_and_wait(
        &api,
        &image_build(
            "failing-run",
            failing.url(),
            &format!("{registry}/failing"),
            &registry,
            json!({}),
        ),
    )
    .await;
    let (reason, message) = failed_condition(&ib);
    println!("failing-run: {reason}: {message}");
    assert_eq!(reason, "StageBuildFailed", "{message}");
    for part in [
        "image \"app\" (linux/amd64)",
        "stage dockerfile",
        "echo about to fail && exit 3",
        "exited with 3",
        // The log tail: what the RUN printed before exiting.
        "about to fail\n",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert_eq!(ib.status.as_ref().unwrap().builder_pods.len(), 1);
    assert_cleaned_up_and_deletable(&client, "failing-run", "failing", true).await;

    let text = operator.metrics.encode();
    assert!(
        text.contains("kiln_builds_total{phase=\"Failed\"} 4"),
        "{text}"
    );
    operator.stop().await.unwrap();
    drop(auth_registry);
    drop(private_git);
    drop(stack);
}
