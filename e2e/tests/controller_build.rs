//! The controller builds for real: kube-apiserver + emulated node (builder pods run the
//! workspace's `kiln-builder` with Buildah on this machine), registry, git server.
//!
//! One stack, three ImageBuilds of the sample project (`examples/shop`): the first builds
//! every stage for two platforms; the second, on the same commit, reuses all of them
//! without a pod; the third, after one COPY'd file changed, rebuilds exactly the image
//! that copies it.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kiln_crds::{ImageBuild, Phase};
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_e2e::stack::{LocalStack, StackOptions};
use kiln_operator::controller::Settings;
use kiln_operator::pods::BuilderDefaults;
use kiln_operator::storage::{RegistryClient, RegistryClientConfig, RepoRef};
use kube::api::{Api, ListParams, PostParams};

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const IMAGES: [&str; 3] = ["backend", "frontend", "frontend-assets"];
const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

fn settings(registry: &str) -> Settings {
    Settings {
        builder: BuilderDefaults {
            image: "kiln-builder:dev".into(),
            ..BuilderDefaults::default()
        },
        lock_namespace: "default".into(),
        insecure_registries: vec![registry.to_owned()],
    }
}

fn registry_client(registry: &str) -> RegistryClient {
    RegistryClient::new(RegistryClientConfig {
        plain_http_registries: vec![registry.to_owned()],
        ..RegistryClientConfig::default()
    })
}

/// Pods of ImageBuild `name` still in the cluster (a finished build leaves none).
async fn pods_left(client: &kube::Client, name: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(&format!("kiln.dev/imagebuild={name}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// (image, platform) of each builder pod the build ran, from its status.
fn builder_pods_of(ib: &ImageBuild) -> BTreeSet<(String, String)> {
    ib.status
        .as_ref()
        .unwrap()
        .builder_pods
        .iter()
        .map(|p| (p.image.clone(), p.platform.clone()))
        .collect()
}

async fn create_and_wait(api: &Api<ImageBuild>, ib: &ImageBuild) -> ImageBuild {
    api.create(&PostParams::default(), ib).await.unwrap();
    let name = ib.metadata.name.as_deref().unwrap();
    harness::wait_finished(api, name, BUILD_TIMEOUT)
        .await
        .unwrap()
}

fn assert_succeeded(ib: &ImageBuild) {
    let status = ib.status.as_ref().unwrap();
    assert_eq!(
        status.phase,
        Phase::Succeeded,
        "{}: {:?}",
        ib.metadata.name.as_deref().unwrap(),
        status.conditions
    );
}

/// Image name → the stage digest per platform (from the report's per-platform records).
fn rebuilt_by_image(ib: &ImageBuild) -> BTreeMap<String, bool> {
    let report = ib.status.as_ref().unwrap().report.as_ref().unwrap();
    report
        .images
        .iter()
        .map(|(name, record)| (name.clone(), record.rebuilt))
        .collect()
}

/// The contents of `path` in the image `repo:tag` (layers searched from the top; GNU tar
/// reads compressed and plain layers alike).
async fn file_in_image(
    storage: &RegistryClient,
    repo: &RepoRef,
    tag: &str,
    path: &str,
) -> Option<String> {
    let manifest = storage.get_manifest(repo, tag).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for layer in layers.iter().rev() {
        let blob = storage
            .get_blob(repo, layer["digest"].as_str().unwrap())
            .await
            .unwrap();
        let file = dir.path().join("layer");
        std::fs::write(&file, blob).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-xOf")
            .arg(&file)
            .arg(path)
            .output()
            .unwrap();
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
    }
    None
}

#[tokio::test]
async fn sample_builds_then_reuses_every_stage_then_rebuilds_what_a_change_touches() {
    kiln_e2e::init_test_logging();
    let stack = LocalStack::start(StackOptions {
        base_images: true,
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let registry = stack.registry().address().to_owned();
    let client = stack.cluster().client();
    harness::install_crd(&client).await.unwrap();

    let files = harness::sample_project_files().unwrap();
    let file_refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let (repo, first_commit) = stack
        .git()
        .create_repo_with_files("shop", &file_refs)
        .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        client.clone(),
        settings(&registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(client.clone(), "default");

    // 1. Everything is built: one pod per image × platform.
    let first = create_and_wait(
        &api,
        &harness::sample_image_build("first", repo.url(), "main", &registry),
    )
    .await;
    assert_succeeded(&first);
    let status = first.status.as_ref().unwrap();
    assert_eq!(status.commit.as_deref(), Some(first_commit.as_str()));
    let all: BTreeSet<(String, String)> = IMAGES
        .iter()
        .flat_map(|i| PLATFORMS.map(|p| (i.to_string(), p.to_owned())))
        .collect();
    assert_eq!(builder_pods_of(&first), all);
    assert_eq!(pods_left(&client, "first").await, Vec::<String>::new());
    assert!(rebuilt_by_image(&first).values().all(|r| *r));

    let storage = registry_client(&registry);
    let shop = RepoRef::from_str(&format!("{registry}/shop")).unwrap();
    let tags: BTreeSet<String> = storage
        .list_tags(&shop)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let report = status.report.as_ref().unwrap();
    for image in IMAGES {
        // The manifest list of a multi-platform image, under its content-based tag.
        let record = &report.images[image];
        assert_eq!(record.docker_repo, format!("{registry}/shop"));
        let list = storage
            .get_manifest(&shop, &record.docker_tag)
            .await
            .unwrap();
        assert_eq!(list.digest, record.docker_image_digest, "{image}");
        let list_json: serde_json::Value = serde_json::from_slice(&list.bytes).unwrap();
        let listed: BTreeSet<String> = list_json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(listed, PLATFORMS.map(String::from).into());
        // Each platform's stage: a `DIGEST-TIMESTAMP_MILLISEC` tag whose manifest
        // digest is the one the report gives.
        for platform in PLATFORMS {
            let by_platform = &report.images_by_platform[image][platform];
            let (digest, ts) = by_platform.docker_tag.split_once('-').unwrap();
            assert_eq!(digest.len(), 56, "{}", by_platform.docker_tag);
            assert_eq!(ts.len(), 13, "{}", by_platform.docker_tag);
            assert!(ts.bytes().all(|b| b.is_ascii_digit()));
            assert!(tags.contains(&by_platform.docker_tag), "{tags:?}");
            let manifest = storage
                .get_manifest(&shop, &by_platform.docker_tag)
                .await
                .unwrap();
            assert_eq!(manifest.digest, by_platform.docker_image_digest);
        }
        // The custom tag points at the same manifest list.
        let custom = storage
            .get_manifest(&shop, &format!("{image}-latest"))
            .await
            .unwrap();
        assert_eq!(custom.digest, record.docker_image_digest, "{image}-latest");
    }
    // The backend image holds its COPY and what its RUN wrote, per platform (arm64 ran
    // under QEMU).
    for (platform, machine) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let tag = &report.images_by_platform["backend"][platform].docker_tag;
        assert_eq!(
            file_in_image(&storage, &shop, tag, "srv/backend/stamp").await,
            Some(format!("backend built for {machine}\n"))
        );
        assert_eq!(
            file_in_image(&storage, &shop, tag, "srv/backend/main.txt").await,
            Some("backend v1\n".into())
        );
    }
    let stage_tags_before: BTreeSet<String> = tags
        .iter()
        .filter(|t| t.len() == 56 + 1 + 13)
        .cloned()
        .collect();
    assert_eq!(stage_tags_before.len(), 6, "{tags:?}");

    // 2. Same commit again: every stage reused, no pod.
    let second = create_and_wait(
        &api,
        &harness::sample_image_build("second", repo.url(), "main", &registry),
    )
    .await;
    assert_succeeded(&second);
    assert_eq!(builder_pods_of(&second), BTreeSet::new());
    assert!(rebuilt_by_image(&second).values().all(|r| !r));
    assert_eq!(second.status.as_ref().unwrap().rebuilt_stages, Some(0));

    // 3. One COPY'd file of the backend changes: only backend's two stages rebuild.
    repo.write("backend/main.txt", "backend v2\n").unwrap();
    let second_commit = repo.commit("backend v2").unwrap();
    let third = create_and_wait(
        &api,
        &harness::sample_image_build("third", repo.url(), "main", &registry),
    )
    .await;
    assert_succeeded(&third);
    assert_eq!(
        third.status.as_ref().unwrap().commit.as_deref(),
        Some(second_commit.as_str())
    );
    let rebuilt = rebuilt_by_image(&third);
    assert_eq!(
        rebuilt,
        BTreeMap::from([
            ("backend".to_owned(), true),
            ("frontend".to_owned(), false),
            ("frontend-assets".to_owned(), false),
        ])
    );
    assert_eq!(
        builder_pods_of(&third),
        PLATFORMS
            .map(|p| ("backend".to_owned(), p.to_owned()))
            .into()
    );
    assert_eq!(pods_left(&client, "third").await, Vec::<String>::new());
    let tags_after: BTreeSet<String> = storage
        .list_tags(&shop)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.len() == 56 + 1 + 13)
        .collect();
    assert_eq!(tags_after.len(), 8, "two new stage tags: {tags_after:?}");
    assert!(tags_after.is_superset(&stage_tags_before));

    operator.stop().await.unwrap();
    drop(stack);
}
