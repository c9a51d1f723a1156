//! Build secrets end to end: kube-apiserver + real node (builder pods run the
//! workspace's `kiln-builder` with Buildah), registry, git server.
//!
//! A project whose images declare werf.yaml `secrets: [{env: TOKEN}]` — one non-staged,
//! one `staged: true` — and whose RUNs read `/run/secrets/TOKEN`. Without a
//! `spec.buildSecrets` entry for TOKEN the build fails at planning, naming image, werf.yaml
//! secret and id, and starts no pod; so does an entry whose Secret or key is missing; with
//! one backed by a Kubernetes Secret both images build, their RUNs see the value, and no
//! blob of either image holds it.

use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kiln_crds::{ImageBuild, Phase};
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_e2e::stack::LocalStack;
use kiln_operator::controller::Settings;
use kiln_operator::storage::{RegistryClient, RepoRef};
use kiln_testkit::git_server::Repo;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const PLATFORM: &str = "linux/amd64";
/// The secret's content; the Dockerfiles only hold its SHA-256.
const TOKEN: &str = "s3cr3t-ci-token-from-a-kubernetes-secret";

const WERF_YAML: &str = "project: sec\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\nsecrets:\n  - env: TOKEN\n---\nimage: app-staged\ndockerfile: Dockerfile\nstaged: true\nsecrets:\n  - env: TOKEN\n";

fn dockerfile() -> String {
    // `required=true`: Buildah 1.28's `bud` crashes on a bare `required`.
    format!(
        "FROM busybox\nRUN --mount=type=secret,id=TOKEN,required=true sha256sum /run/secrets/TOKEN | grep -q {} && echo ok > /proof\n",
        sha256_hex(TOKEN.as_bytes())
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn settings(registry: &str) -> Settings {
    harness::build_settings("default", &[registry])
}

fn registry_client(registry: &str) -> RegistryClient {
    harness::registry_client(registry)
}

/// The local stack with the CRD installed and the project on the git server.
struct Fixture {
    _stack: LocalStack,
    registry: String,
    client: kube::Client,
    repo: Repo,
}

impl Fixture {
    async fn start() -> Fixture {
        let (stack, client) = harness::start_build_stack().await.unwrap();
        let registry = stack.registry().address().to_owned();
        let dockerfile = dockerfile();
        let (repo, _) = stack
            .git()
            .create_repo_with_files(
                "sec",
                &[("werf.yaml", WERF_YAML), ("Dockerfile", &dockerfile)],
            )
            .unwrap();
        Fixture {
            _stack: stack,
            registry,
            client,
            repo,
        }
    }

    /// An ImageBuild of `main` for linux/amd64 with `build_secrets` as
    /// `spec.buildSecrets`, docker.io images through the registry as a mirror.
    fn build(&self, name: &str, build_secrets: serde_json::Value) -> ImageBuild {
        serde_json::from_value(json!({
            "apiVersion": "kiln.dev/v1alpha1",
            "kind": "ImageBuild",
            "metadata": {"name": name},
            "spec": {
                "source": {"git": {"url": self.repo.url(), "revision": "main"}},
                "repo": format!("{}/sec", self.registry),
                "platforms": [PLATFORM],
                "registryMirrors": [format!("http://{}", self.registry)],
                "buildSecrets": build_secrets,
            }
        }))
        .unwrap()
    }
}

async fn create_and_wait(api: &Api<ImageBuild>, ib: &ImageBuild) -> ImageBuild {
    api.create(&PostParams::default(), ib).await.unwrap();
    let name = ib.metadata.name.as_deref().unwrap();
    harness::wait_finished(api, name, BUILD_TIMEOUT)
        .await
        .unwrap()
}

/// Builder pods ever created for ImageBuild `name` that are still around, plus those the
/// status records.
async fn pods_of(client: &kube::Client, ib: &ImageBuild) -> (usize, usize) {
    let name = ib.metadata.name.as_deref().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let live = pods
        .list(&ListParams::default().labels(&format!("kiln.dev/imagebuild={name}")))
        .await
        .unwrap()
        .items
        .len();
    let recorded = ib.status.as_ref().unwrap().builder_pods.len();
    (live, recorded)
}

/// Every blob of image `repo:tag`: the config, and each layer's file contents and names
/// (GNU tar reads compressed and plain layers alike).
async fn image_blobs(storage: &RegistryClient, repo: &RepoRef, tag: &str) -> Vec<Vec<u8>> {
    let manifest = storage.get_manifest(repo, tag).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let config = storage
        .get_blob(repo, manifest["config"]["digest"].as_str().unwrap())
        .await
        .unwrap();
    let mut blobs = vec![config];
    let dir = tempfile::tempdir().unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let blob = storage
            .get_blob(repo, layer["digest"].as_str().unwrap())
            .await
            .unwrap();
        let file = dir.path().join("layer");
        std::fs::write(&file, blob).unwrap();
        for args in [["-xOf"], ["-tvf"]] {
            let out = std::process::Command::new("tar")
                .args(args)
                .arg(&file)
                .output()
                .unwrap();
            assert!(out.status.success(), "tar {args:?} of a layer of {tag}");
            blobs.push(out.stdout);
        }
    }
    blobs
}

async fn file_in_image(
    storage: &RegistryClient,
    repo: &RepoRef,
    tag: &str,
    path: &str,
) -> Option<String> {
    harness::file_in_image(storage, repo, tag, path)
        .await
        .unwrap()
}

/// The `Succeeded` condition of a build that must have failed.
fn failed_condition(ib: &ImageBuild) -> Condition {
    let status = ib.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Failed, "{:?}", status.conditions);
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")
        .unwrap()
        .clone()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn build_secrets_reach_runs_from_a_kubernetes_secret_and_a_missing_one_fails_early() {
    let fx = Fixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");

    // 1. No spec.buildSecrets entry for TOKEN: Failed at planning, no pod.
    let missing = create_and_wait(&api, &fx.build("missing", json!([]))).await;
    let condition = failed_condition(&missing);
    assert_eq!(condition.reason, "InvalidSpec", "{condition:?}");
    for image in ["app", "app-staged"] {
        assert!(
            condition.message.contains(&format!(
                "image \"{image}\" declares werf.yaml secret secrets[0] (env: TOKEN) but spec.buildSecrets has no entry with id \"TOKEN\""
            )),
            "{}",
            condition.message
        );
    }
    assert_eq!(pods_of(&fx.client, &missing).await, (0, 0));

    // 2. The entry names a Secret that does not exist yet, then a key it lacks: Failed
    // with SecretNotFound before any pod (a pod would wait forever for the volume).
    let token_entry =
        |key: &str| json!([{"id": "TOKEN", "secretKeyRef": {"name": "ci-token", "key": key}}]);
    let absent = create_and_wait(&api, &fx.build("absent", token_entry("token"))).await;
    let condition = failed_condition(&absent);
    assert_eq!(condition.reason, "SecretNotFound", "{condition:?}");
    assert!(
        condition.message.contains(
            "Secret \"ci-token\" (from spec.buildSecrets) not found in namespace \"default\""
        ),
        "{}",
        condition.message
    );
    assert_eq!(pods_of(&fx.client, &absent).await, (0, 0));

    // 3. TOKEN from a Secret key (other keys of the Secret stay out of the pod).
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("ci-token".into()),
                    ..ObjectMeta::default()
                },
                string_data: Some(
                    [
                        ("token".to_owned(), TOKEN.to_owned()),
                        ("unrelated".to_owned(), "not-for-builds".to_owned()),
                    ]
                    .into(),
                ),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    let wrong_key = create_and_wait(&api, &fx.build("wrong-key", token_entry("tokn"))).await;
    let condition = failed_condition(&wrong_key);
    assert_eq!(condition.reason, "SecretNotFound", "{condition:?}");
    assert!(
        condition.message.contains(
            "Secret \"ci-token\" in namespace \"default\" has no key \"tokn\" (from spec.buildSecrets id \"TOKEN\")"
        ),
        "{}",
        condition.message
    );
    assert_eq!(pods_of(&fx.client, &wrong_key).await, (0, 0));

    let built = create_and_wait(&api, &fx.build("with-token", token_entry("token"))).await;
    let status = built.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.conditions);
    assert_eq!(pods_of(&fx.client, &built).await.1, 2);
    let report = status.report.as_ref().unwrap();
    let storage = registry_client(&fx.registry);
    let repo = RepoRef::from_str(&format!("{}/sec", fx.registry)).unwrap();
    for image in ["app", "app-staged"] {
        let tag = &report.images[image].docker_tag;
        let blobs = image_blobs(&storage, &repo, tag).await;
        // The RUN saw the value (its hash matched) ...
        assert_eq!(
            file_in_image(&storage, &repo, tag, "proof")
                .await
                .as_deref(),
            Some("ok\n"),
            "{image}"
        );
        // ... and no blob holds it, nor the secret file.
        for (i, blob) in blobs.iter().enumerate() {
            assert!(!contains(blob, TOKEN.as_bytes()), "{image}: blob {i}");
            // The config's history quotes the RUN, path included; layers must not.
            assert!(
                i == 0 || !contains(blob, b"run/secrets/TOKEN"),
                "{image}: blob {i} lists the secret file"
            );
        }
    }
    operator.stop().await.unwrap();
}
