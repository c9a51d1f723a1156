//! The controller builds for real: kube-apiserver + a real node (builder pods run the
//! workspace's `kiln-builder` with Buildah in privileged containers), registry, git server.
//!
//! One stack, three ImageBuilds of the sample project (`examples/shop`): the first builds
//! every stage for two platforms; the second, on the same commit, reuses all of them
//! without a pod; the third, after one COPY'd file changed, rebuilds exactly the image
//! that copies it.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use kiln_crds::{ImageBuild, Phase};
use kiln_e2e::chart;
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_e2e::stack::LocalStack;
use kiln_operator::controller::Settings;
use kiln_operator::storage::{RegistryClient, RepoRef};
use kiln_testkit::git_server::Repo;
use kube::api::{Api, PostParams};

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const IMAGES: [&str; 3] = ["backend", "frontend", "frontend-assets"];
const PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];

/// The e2e settings with a builder pod allowed to wait `schedule_timeout` for a node.
fn settings_with_schedule_timeout(registry: &str, schedule_timeout: Duration) -> Settings {
    let mut s = settings(registry);
    s.builder.schedule_timeout = Some(schedule_timeout);
    s
}

fn settings(registry: &str) -> Settings {
    harness::build_settings("default", &[registry])
}

/// Pods of ImageBuild `name` still in the cluster (a finished build leaves none).
async fn pods_left(client: &kube::Client, name: &str) -> Vec<String> {
    harness::pods_left(client, "default", name).await.unwrap()
}

/// (image, platform) of each builder pod the build ran, from its status.
fn builder_pods_of(ib: &ImageBuild) -> BTreeSet<(String, String)> {
    harness::builder_pods(ib).into_iter().collect()
}

async fn create_and_wait(api: &Api<ImageBuild>, ib: &ImageBuild) -> ImageBuild {
    harness::create_and_wait(api, ib, BUILD_TIMEOUT)
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

/// The local stack with the CRD installed and the sample project on the git server.
struct Fixture {
    stack: LocalStack,
    registry: String,
    client: kube::Client,
    repo: Repo,
    commit: String,
}

impl Fixture {
    async fn start() -> Fixture {
        Self::start_with(harness::start_build_stack()).await
    }

    async fn start_with(
        stack: impl std::future::Future<Output = anyhow::Result<(LocalStack, kube::Client)>>,
    ) -> Fixture {
        let (stack, client) = stack.await.unwrap();
        let registry = stack.registry().address().to_owned();
        let files = harness::sample_project_files().unwrap();
        let file_refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let (repo, commit) = stack
            .git()
            .create_repo_with_files("shop", &file_refs)
            .unwrap();
        Fixture {
            stack,
            registry,
            client,
            repo,
            commit,
        }
    }

    fn sample(&self, name: &str) -> ImageBuild {
        harness::sample_image_build(name, self.repo.url(), "main", &self.registry)
    }

    /// Stage tags (`DIGEST-TIMESTAMP_MILLISEC`) in the stages storage.
    async fn stage_tags(&self) -> Vec<String> {
        harness::stage_tags(&self.registry, "shop")
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// Stage lock leases left in the lock ConfigMap (`werf-shop` in `default`).
    async fn lock_leases(&self) -> Vec<String> {
        harness::lock_leases(&self.client, "default", "shop")
            .await
            .unwrap()
    }
}

/// Each stage digest appears in exactly one stage tag.
fn assert_each_digest_once(tags: &[String]) {
    let digests: BTreeSet<&str> = tags.iter().map(|t| &t[..56]).collect();
    assert_eq!(
        digests.len(),
        tags.len(),
        "a digest published twice: {tags:?}"
    );
}

#[tokio::test]
async fn sample_builds_then_reuses_every_stage_then_rebuilds_what_a_change_touches() {
    let fx = Fixture::start().await;
    let (registry, client, repo, first_commit) = (&fx.registry, &fx.client, &fx.repo, &fx.commit);

    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        client.clone(),
        settings(registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(client.clone(), "default");

    // 1. Everything is built: one pod per image × platform.
    let first = create_and_wait(&api, &fx.sample("first")).await;
    assert_succeeded(&first);
    let status = first.status.as_ref().unwrap();
    assert_eq!(status.commit.as_deref(), Some(first_commit.as_str()));
    assert_eq!(fx.lock_leases().await, Vec::<String>::new());
    let all: BTreeSet<(String, String)> = IMAGES
        .iter()
        .flat_map(|i| PLATFORMS.map(|p| (i.to_string(), p.to_owned())))
        .collect();
    assert_eq!(builder_pods_of(&first), all);
    assert_eq!(pods_left(client, "first").await, Vec::<String>::new());
    assert!(rebuilt_by_image(&first).values().all(|r| *r));

    let storage = harness::registry_client(registry);
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
    // `kiln-operator report` prints the report as werf writes it, and its env file.
    let report_cli = |format: &str| {
        let out = std::process::Command::new(
            kiln_e2e::stack::workspace_binary("kiln-operator").expect("kiln-operator is built"),
        )
        .args(["report", "first", "-n", "default", "--format", format])
        .env(
            "KUBECONFIG",
            fx.stack.cluster().control_plane().kubeconfig_path(),
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let env_file = report_cli("envfile");
    for (image, var) in [
        ("backend", "WERF_BACKEND_DOCKER_IMAGE_NAME"),
        ("frontend", "WERF_FRONTEND_DOCKER_IMAGE_NAME"),
        ("frontend-assets", "WERF_FRONTEND_ASSETS_DOCKER_IMAGE_NAME"),
    ] {
        let line = format!("{var}={}", report.images[image].docker_image_name);
        assert!(
            env_file.lines().any(|l| l == line),
            "{line} not in\n{env_file}"
        );
    }
    let json = kiln_crds::report::BuildReport::from_json(&report_cli("json")).unwrap();
    assert_eq!(&json, report);

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
    let stage_tags_before: BTreeSet<String> = fx.stage_tags().await.into_iter().collect();
    assert_eq!(stage_tags_before.len(), 6, "{tags:?}");

    // 2. Same commit again, werf.yaml given inline (the same text): every stage reused,
    // no pod.
    let mut second = fx.sample("second");
    let werf_yaml =
        std::fs::read_to_string(harness::sample_project_dir().join("werf.yaml")).unwrap();
    second.spec.config = Some(kiln_crds::imagebuild::ConfigSpec {
        path: None,
        inline: Some(werf_yaml),
    });
    let second = create_and_wait(&api, &second).await;
    assert_succeeded(&second);
    assert_eq!(builder_pods_of(&second), BTreeSet::new());
    assert!(rebuilt_by_image(&second).values().all(|r| !r));
    assert_eq!(second.status.as_ref().unwrap().rebuilt_stages, Some(0));

    // 3. One COPY'd file of the backend changes: only backend's two stages rebuild.
    repo.write("backend/main.txt", "backend v2\n").unwrap();
    let second_commit = repo.commit("backend v2").unwrap();
    let third = create_and_wait(&api, &fx.sample("third")).await;
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
    assert_eq!(pods_left(client, "third").await, Vec::<String>::new());
    let tags_after: BTreeSet<String> = fx.stage_tags().await.into_iter().collect();
    assert_eq!(tags_after.len(), 8, "two new stage tags: {tags_after:?}");
    assert!(tags_after.is_superset(&stage_tags_before));

    // 4. A new stages storage with the old one as a secondary repo: every stage is copied
    // from it under its DIGEST-TIMESTAMP tag, nothing is built.
    let mut copy = fx.sample("copy");
    copy.spec.repo = format!("{registry}/shop-copy");
    copy.spec.secondary_repos = vec![format!("{registry}/shop")];
    let copy = create_and_wait(&api, &copy).await;
    assert_succeeded(&copy);
    assert_eq!(builder_pods_of(&copy), BTreeSet::new());
    let copy_repo = RepoRef::from_str(&format!("{registry}/shop-copy")).unwrap();
    let copied: BTreeSet<String> = storage
        .list_tags(&copy_repo)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| harness::is_stage_tag(t))
        .collect();
    let third_stage_tags: BTreeSet<String> = third
        .status
        .as_ref()
        .unwrap()
        .report
        .as_ref()
        .unwrap()
        .images_by_platform
        .values()
        .flat_map(|by_platform| by_platform.values().map(|r| r.docker_tag.clone()))
        .collect();
    assert_eq!(copied, third_stage_tags);

    operator.stop().await.unwrap();
}

#[tokio::test]
async fn two_builds_of_one_commit_at_once_publish_each_stage_once() {
    let fx = Fixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    api.create(&PostParams::default(), &fx.sample("left"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &fx.sample("right"))
        .await
        .unwrap();
    let left = harness::wait_finished(&api, "left", BUILD_TIMEOUT)
        .await
        .unwrap();
    let right = harness::wait_finished(&api, "right", BUILD_TIMEOUT)
        .await
        .unwrap();
    assert_succeeded(&left);
    assert_succeeded(&right);

    let tags = fx.stage_tags().await;
    assert_eq!(tags.len(), 6, "{tags:?}");
    assert_each_digest_once(&tags);
    // Between them the two builds ran one pod per image × platform: whoever did not take
    // a stage's lock waited and reused what the other published.
    let mut pods: Vec<(String, String)> = builder_pods_of(&left).into_iter().collect();
    pods.extend(builder_pods_of(&right));
    pods.sort();
    let all: Vec<(String, String)> = IMAGES
        .iter()
        .flat_map(|i| PLATFORMS.map(|p| (i.to_string(), p.to_owned())))
        .collect();
    assert_eq!(pods, all);
    // Both reports name the same images.
    let images = |ib: &ImageBuild| -> BTreeMap<String, String> {
        ib.status
            .as_ref()
            .unwrap()
            .report
            .as_ref()
            .unwrap()
            .images
            .iter()
            .map(|(k, r)| (k.clone(), r.docker_image_digest.clone()))
            .collect()
    };
    assert_eq!(images(&left), images(&right));
    assert_eq!(fx.lock_leases().await, Vec::<String>::new());
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn operator_killed_mid_build_and_restarted_completes_without_duplicates_or_leftovers() {
    // The operator runs as the chart's Deployment pod; killing it is deleting the pod
    // with grace period 0, and the Deployment starts the next one.
    let fx = Fixture::start_with(harness::start_chart_stack()).await;
    let helm_home = tempfile::tempdir().unwrap();
    let kubeconfig = fx
        .stack
        .cluster()
        .control_plane()
        .kubeconfig_path()
        .to_owned();
    chart::install(
        &kubeconfig,
        helm_home.path(),
        &chart::Install {
            namespace: "kiln-system",
            watch_namespaces: &["default"],
            lock_namespace: "default",
            insecure_registries: &[&fx.registry],
            extra_values: &[],
        },
    )
    .unwrap();
    let first = chart::wait_operator_ready(&fx.client, "kiln-system", &[], Duration::from_secs(60))
        .await
        .unwrap();
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    api.create(&PostParams::default(), &fx.sample("crash"))
        .await
        .unwrap();
    // Kill the operator as soon as its first builder pod exists: mid-build, with leases
    // held and pods running.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while pods_left(&fx.client, "crash").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no builder pod appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = chart::kill_operator_pods(&fx.client, "kiln-system")
        .await
        .unwrap();
    assert_eq!(killed, vec![first.clone()]);
    chart::wait_operator_ready(&fx.client, "kiln-system", &killed, Duration::from_secs(60))
        .await
        .unwrap();
    let ib = harness::wait_finished(&api, "crash", BUILD_TIMEOUT)
        .await
        .unwrap();
    let log = chart::operator_logs(&fx.client, "kiln-system").await;
    assert_eq!(
        ib.status.as_ref().unwrap().phase,
        Phase::Succeeded,
        "{:?}\n{log}",
        ib.status.as_ref().unwrap().conditions
    );
    let tags = fx.stage_tags().await;
    assert_eq!(tags.len(), 6, "{tags:?}");
    assert_each_digest_once(&tags);
    assert_eq!(pods_left(&fx.client, "crash").await, Vec::<String>::new());
    assert_eq!(fx.lock_leases().await, Vec::<String>::new(), "{log}");

    // `helm uninstall` leaves nothing of Kiln behind but the stage-lock ConfigMap users
    // expect (`werf-shop`, shared with werf): no pod, no Lease, no other ConfigMap.
    chart::helm_run(
        &kubeconfig,
        helm_home.path(),
        &["uninstall", "kiln", "--namespace", "kiln-system", "--wait"],
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = chart::objects_left(&fx.client, &["kiln-system", "default"])
            .await
            .unwrap();
        if left == ["ConfigMap default/werf-shop"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left after helm uninstall: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_builder_pod_no_node_fits_fails_the_build_after_the_schedule_timeout() {
    let fx = Fixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings_with_schedule_timeout(&fx.registry, Duration::from_secs(3)),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    let mut ib = fx.sample("nowhere");
    ib.spec.images = vec!["backend".into()];
    ib.spec.platforms = vec!["linux/amd64".into()];
    ib.spec.builder = Some(kiln_crds::imagebuild::BuilderSpec {
        node_selector: BTreeMap::from([("pool".to_owned(), "gpu".to_owned())]),
        ..Default::default()
    });
    let ib = create_and_wait(&api, &ib).await;
    let status = ib.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Failed);
    let condition = &status.conditions[0];
    assert_eq!(condition.reason, "BuilderPodFailed");
    assert!(
        condition.message.contains("cannot be scheduled")
            && condition
                .message
                .contains("didn't match Pod's node affinity/selector"),
        "{}",
        condition.message
    );
    assert_eq!(pods_left(&fx.client, "nowhere").await, Vec::<String>::new());
    assert_eq!(fx.lock_leases().await, Vec::<String>::new());
    operator.stop().await.unwrap();
}
