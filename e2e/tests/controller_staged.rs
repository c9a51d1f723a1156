//! The controller builds a `staged: true` Dockerfile image for real: kube-apiserver +
//! real node (builder pods run the workspace's `kiln-builder` with Buildah in containers), registry,
//! git server.
//!
//! One stack, three ImageBuilds of a small staged project on busybox (`ENV`, `COPY`, `RUN`:
//! one stage each, werf's staged v1): the first builds every stage, the second reuses them
//! all without a pod, the third — after the COPY'd file changed — rebuilds the `copy` stage
//! and the `run` stage after it, and reuses `env`. Multi-stage staged projects build their
//! Dockerfile stages as werf images `<image>/stage/<name>` first.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use kiln_crds::{ImageBuild, Phase};
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_e2e::stack::LocalStack;
use kiln_operator::controller::Settings;
use kiln_operator::digest::staged::{Offline, StagedInputs};
use kiln_operator::digest::{
    DockerfileImageInput, PlannedStage, StagedMode, dockerfile_image_stages_with,
};
use kiln_operator::plan::project::{
    DockerfileFacts, ImportValues, PlanRequest, ProjectPlan, plan_project_with_facts,
};
use kiln_operator::plan::stage_images::{werf_images, werf_sets};
use kiln_operator::source::GitTree;
use kiln_operator::storage::{RegistryClient, RepoRef};
use kiln_testkit::git_server::Repo;
use kube::api::{Api, PostParams};
use serde_json::json;

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const PLATFORM: &str = "linux/amd64";

const WERF_YAML: &str =
    "project: stg\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\nstaged: true\n";
const DOCKERFILE: &str =
    "FROM busybox\nENV A=1\nCOPY app/ /app/\nRUN cat /app/x > /app/y && echo \"$A\" >> /app/y\n";

fn settings(registry: &str) -> Settings {
    harness::build_settings("default", &[registry])
}

fn registry_client(registry: &str) -> RegistryClient {
    harness::registry_client(registry)
}

/// The local stack with the CRD installed and the staged project on the git server.
struct Fixture {
    _stack: LocalStack,
    registry: String,
    client: kube::Client,
    repo: Repo,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with(DOCKERFILE).await
    }

    async fn start_with(dockerfile: &str) -> Fixture {
        Fixture::start_with_files(&[
            ("werf.yaml", WERF_YAML),
            ("Dockerfile", dockerfile),
            ("app/x", "one\n"),
        ])
        .await
    }

    async fn start_with_files(files: &[(&str, &str)]) -> Fixture {
        let (stack, client) = harness::start_build_stack().await.unwrap();
        let registry = stack.registry().address().to_owned();
        let (repo, _) = stack.git().create_repo_with_files("stg", files).unwrap();
        Fixture {
            _stack: stack,
            registry,
            client,
            repo,
        }
    }

    /// An ImageBuild of the project's `main` for linux/amd64, stages in `REGISTRY/stg`,
    /// docker.io images through the registry as a mirror (it serves `library/busybox`).
    fn build(&self, name: &str) -> ImageBuild {
        self.build_for(name, &[PLATFORM])
    }

    fn build_for(&self, name: &str, platforms: &[&str]) -> ImageBuild {
        serde_json::from_value(json!({
            "apiVersion": "kiln.dev/v1alpha1",
            "kind": "ImageBuild",
            "metadata": {"name": name},
            "spec": {
                "source": {"git": {"url": self.repo.url(), "revision": "main"}},
                "repo": format!("{}/stg", self.registry),
                "platforms": platforms,
                "registryMirrors": [format!("http://{}", self.registry)],
            }
        }))
        .unwrap()
    }

    /// Stage tags (`DIGEST-TIMESTAMP_MILLISEC`) in the stages storage.
    async fn stage_tags(&self) -> BTreeSet<String> {
        let repo = RepoRef::from_str(&format!("{}/stg", self.registry)).unwrap();
        registry_client(&self.registry)
            .list_tags(&repo)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| is_stage_tag(t))
            .collect()
    }

    /// The offline planner's stages of `app` at `commit` (with `inputs`).
    fn planned(&self, commit: &str, inputs: &dyn StagedInputs) -> Vec<PlannedStage> {
        self.planned_for(commit, inputs, PLATFORM)
    }

    fn planned_for(
        &self,
        commit: &str,
        inputs: &dyn StagedInputs,
        platform: &str,
    ) -> Vec<PlannedStage> {
        self.planned_with(commit, inputs, platform, StagedMode::StagedV1)
    }

    fn planned_with(
        &self,
        commit: &str,
        inputs: &dyn StagedInputs,
        platform: &str,
        staged: StagedMode,
    ) -> Vec<PlannedStage> {
        let tree = GitTree::open(self.repo.work_dir(), Some(commit)).unwrap();
        let args = BTreeMap::new();
        let input = DockerfileImageInput {
            image: "app",
            context: "",
            dockerfile: "Dockerfile",
            target: None,
            args: &args,
            dependency_args: &args,
            add_hosts: &[],
            context_add_files: &[],
            cache_version: None,
            staged,
            platform,
            digest_mode: kiln_operator::digest::DigestMode::Werf,
        };
        dockerfile_image_stages_with(&tree, &input, inputs).unwrap()
    }
}

/// The environment the testkit's busybox has (the one Docker Hub's busybox has), and the
/// built image name of the `base` Dockerfile stage when known.
struct BusyboxEnv(Option<String>);

impl StagedInputs for BusyboxEnv {
    fn base_image_env(&self, reference: &str, _: &str) -> Option<BTreeMap<String, String>> {
        assert_eq!(reference, "busybox");
        Some(BTreeMap::from([(
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        )]))
    }
    fn stage_image_name(&self, werf_image: &str, _: &str) -> Option<String> {
        assert_eq!(werf_image, "app/stage/base");
        self.0.clone()
    }
}

fn is_stage_tag(tag: &str) -> bool {
    harness::is_stage_tag(tag)
}

async fn create_and_wait(api: &Api<ImageBuild>, ib: &ImageBuild) -> ImageBuild {
    api.create(&PostParams::default(), ib).await.unwrap();
    let name = ib.metadata.name.as_deref().unwrap();
    let done = harness::wait_finished(api, name, BUILD_TIMEOUT)
        .await
        .unwrap();
    let status = done.status.as_ref().unwrap();
    assert_eq!(
        status.phase,
        Phase::Succeeded,
        "{name}: {:?}",
        status.conditions
    );
    done
}

/// (stage name, stage tag, rebuilt) of `app` from the build report (a single-platform
/// build has no `ImagesByPlatform`, as in werf).
fn report_stages(ib: &ImageBuild) -> Vec<(String, String, bool)> {
    image_stages(ib, "app")
}

fn image_stages(ib: &ImageBuild, image: &str) -> Vec<(String, String, bool)> {
    harness::report_stages(ib, image)
}

fn builder_pods(ib: &ImageBuild) -> Vec<String> {
    harness::builder_pods(ib)
        .into_iter()
        .map(|(image, platform)| format!("{image} {platform}"))
        .collect()
}

async fn pods_left(client: &kube::Client, name: &str) -> usize {
    harness::pods_left(client, "default", name)
        .await
        .unwrap()
        .len()
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

#[tokio::test]
async fn staged_image_builds_one_stage_per_instruction_then_reuses_then_rebuilds_from_the_copy() {
    let fx = Fixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    let storage = registry_client(&fx.registry);
    let repo = RepoRef::from_str(&format!("{}/stg", fx.registry)).unwrap();
    let first_commit = fx.repo.head().unwrap();

    // 1. Every stage is built by one pod: env, copy, run (staged v1 has no FROM stage).
    let first = create_and_wait(&api, &fx.build("first")).await;
    assert_eq!(builder_pods(&first), vec![format!("app {PLATFORM}")]);
    assert_eq!(pods_left(&fx.client, "first").await, 0);
    let stages = report_stages(&first);
    let names: Vec<&str> = stages.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["ENV", "COPY", "RUN"]);
    assert!(stages.iter().all(|(_, _, rebuilt)| *rebuilt), "{stages:?}");
    let tags = fx.stage_tags().await;
    assert_eq!(
        tags,
        stages.iter().map(|(_, t, _)| t.clone()).collect(),
        "one stage tag per instruction stage, the ones the report gives"
    );
    // The offline planner agrees on every stage it does not mark provisional; the RUN stage
    // needs the base image's environment, which the controller read from the registry.
    let offline = fx.planned(&first_commit, &Offline);
    let provisional: Vec<bool> = offline.iter().map(|s| s.provisional).collect();
    assert_eq!(provisional, [false, false, true]);
    for (planned, (name, tag, _)) in offline.iter().zip(&stages) {
        assert_eq!(&planned.name, name);
        if !planned.provisional {
            assert_eq!(&tag[..56], planned.digest, "{name}");
        }
    }
    let with_env = fx.planned(&first_commit, &BusyboxEnv(None));
    let expected: Vec<&str> = with_env.iter().map(|s| s.digest.as_str()).collect();
    let built: Vec<&str> = stages.iter().map(|(_, t, _)| &t[..56]).collect();
    assert_eq!(built, expected);
    // The image is the RUN stage: it holds the COPY'd file and what RUN made of it with
    // the ENV of the stage before.
    let last = &stages[2].1;
    assert_eq!(
        file_in_image(&storage, &repo, last, "app/y").await,
        Some("one\n1\n".into())
    );
    let record = &first
        .status
        .as_ref()
        .unwrap()
        .report
        .as_ref()
        .unwrap()
        .images["app"];
    assert_eq!(&record.docker_tag, last);

    // 2. Same commit: every stage reused, no pod.
    let second = create_and_wait(&api, &fx.build("second")).await;
    assert_eq!(builder_pods(&second), Vec::<String>::new());
    let again = report_stages(&second);
    assert!(again.iter().all(|(_, _, rebuilt)| !rebuilt), "{again:?}");
    assert_eq!(
        again.iter().map(|(_, t, _)| t).collect::<Vec<_>>(),
        stages.iter().map(|(_, t, _)| t).collect::<Vec<_>>()
    );

    // 3. The COPY'd file changes: copy and run are rebuilt on the found env stage.
    fx.repo.write("app/x", "two\n").unwrap();
    let second_commit = fx.repo.commit("x: two").unwrap();
    let third = create_and_wait(&api, &fx.build("third")).await;
    assert_eq!(builder_pods(&third), vec![format!("app {PLATFORM}")]);
    let changed = report_stages(&third);
    let rebuilt: Vec<(&str, bool)> = changed.iter().map(|(n, _, r)| (n.as_str(), *r)).collect();
    assert_eq!(rebuilt, [("ENV", false), ("COPY", true), ("RUN", true)]);
    assert_eq!(changed[0].1, stages[0].1, "the env stage is reused");
    let tags_after = fx.stage_tags().await;
    assert_eq!(tags_after.len(), 5, "two new stage tags: {tags_after:?}");
    assert!(tags_after.is_superset(&tags));
    let offline = fx.planned(&second_commit, &Offline);
    assert_eq!(&changed[1].1[..56], offline[1].digest, "copy");
    assert_eq!(
        file_in_image(&storage, &repo, &changed[2].1, "app/y").await,
        Some("two\n1\n".into())
    );
    // The copy stage's parent is the reused env stage.
    let manifest = storage.get_manifest(&repo, &changed[1].1).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let config = storage
        .get_blob(&repo, manifest["config"]["digest"].as_str().unwrap())
        .await
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config["config"]["Labels"]["werf.io/parent-stage-id"],
        json!(stages[0].1)
    );

    operator.stop().await.unwrap();
}

const MULTI_STAGE: &str = "FROM busybox AS base\nRUN echo built > /b\nFROM busybox\nENV C=2\nCOPY --from=base /b /b\nRUN cat /b > /c\n";

#[tokio::test]
async fn multi_stage_staged_image_builds_the_stage_it_copies_from_first() {
    let fx = Fixture::start_with(MULTI_STAGE).await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    let storage = registry_client(&fx.registry);
    let repo = RepoRef::from_str(&format!("{}/stg", fx.registry)).unwrap();
    let commit = fx.repo.head().unwrap();

    // The target's COPY --from=base needs base's built image name: base's RUN (and the
    // target's ENV, which needs nothing) are built by a first pod, COPY and RUN by a second
    // once the base image is in the stages storage.
    let first = create_and_wait(&api, &fx.build("multi")).await;
    assert_eq!(
        builder_pods(&first),
        vec![format!("app {PLATFORM}"), format!("app {PLATFORM}")]
    );
    let stages = report_stages(&first);
    let names: Vec<&str> = stages.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["RUN", "ENV", "COPY", "RUN"]);
    let tags = fx.stage_tags().await;
    assert_eq!(tags, stages.iter().map(|(_, t, _)| t.clone()).collect());
    // The digests are the planner's once base's image name is given.
    let base_image = format!("{}/stg:{}", fx.registry, stages[0].1);
    let planned = fx.planned(&commit, &BusyboxEnv(Some(base_image)));
    assert!(planned.iter().all(|s| !s.provisional));
    // As in werf, the `base` stage is an image of its own, published before `app`'s stages.
    let werf_images: Vec<&str> = planned
        .iter()
        .map(|s| s.werf_image.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(werf_images, ["app/stage/base", "app", "app", "app"]);
    let expected: Vec<&str> = planned.iter().map(|s| s.digest.as_str()).collect();
    let built: Vec<&str> = stages.iter().map(|(_, t, _)| &t[..56]).collect();
    assert_eq!(built, expected);
    assert_eq!(
        file_in_image(&storage, &repo, &stages[3].1, "c").await,
        Some("built\n".into())
    );

    // Same commit: nothing to build, no pod.
    let second = create_and_wait(&api, &fx.build("multi-again")).await;
    assert_eq!(builder_pods(&second), Vec::<String>::new());
    assert_eq!(
        report_stages(&second)
            .iter()
            .map(|(_, t, _)| t)
            .collect::<Vec<_>>(),
        stages.iter().map(|(_, t, _)| t).collect::<Vec<_>>()
    );
    operator.stop().await.unwrap();
}

const DEPENDENCIES_WERF_YAML: &str = r#"project: stg
configVersion: 1
---
image: base
dockerfile: base.Dockerfile
---
image: app
dockerfile: app.Dockerfile
dependencies:
- image: base
  imports:
  - type: ImageName
    targetBuildArg: BASE
---
image: tool
dockerfile: tool.Dockerfile
staged: true
dependencies:
- image: base
  imports:
  - type: ImageID
    targetBuildArg: BASE_ID
  - type: ImageTag
    targetBuildArg: BASE_TAG
"#;

#[tokio::test]
async fn dependency_build_args_come_from_the_published_dependency() {
    let fx = Fixture::start_with_files(&[
        ("werf.yaml", DEPENDENCIES_WERF_YAML),
        ("base.Dockerfile", "FROM busybox\nRUN echo base > /base\n"),
        (
            "app.Dockerfile",
            "ARG BASE\nFROM $BASE\nRUN cat /base > /app\n",
        ),
        (
            "tool.Dockerfile",
            "FROM busybox\nARG BASE_ID\nARG BASE_TAG\nRUN echo \"$BASE_ID $BASE_TAG\" > /id\n",
        ),
    ])
    .await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    let storage = registry_client(&fx.registry);
    let repo = RepoRef::from_str(&format!("{}/stg", fx.registry)).unwrap();
    let commit = fx.repo.head().unwrap();

    let first = create_and_wait(&api, &fx.build("deps")).await;
    let mut pods = builder_pods(&first);
    pods.sort();
    assert_eq!(
        pods,
        ["app", "base", "tool"].map(|i| format!("{i} {PLATFORM}"))
    );
    let report = first.status.as_ref().unwrap().report.as_ref().unwrap();
    let base = &report.images["base"];
    let base_name = format!("{}/stg:{}", fx.registry, base.docker_tag);
    assert_eq!(base.docker_image_name, base_name);
    // app is built FROM the dependency's image name.
    let app_tag = &report.images["app"].docker_tag;
    assert_eq!(
        file_in_image(&storage, &repo, app_tag, "app").await,
        Some("base\n".into())
    );
    // Its digest is the planner's with the build arg set to that name.
    let tree = GitTree::open(fx.repo.work_dir(), Some(&commit)).unwrap();
    let args = BTreeMap::new();
    let dependency_args = BTreeMap::from([("BASE".to_owned(), base_name.clone())]);
    let input = DockerfileImageInput {
        image: "app",
        context: "",
        dockerfile: "app.Dockerfile",
        target: None,
        args: &args,
        dependency_args: &dependency_args,
        add_hosts: &[],
        context_add_files: &[],
        cache_version: None,
        staged: StagedMode::NonStaged,
        platform: PLATFORM,
        digest_mode: kiln_operator::digest::DigestMode::Werf,
    };
    let planned = dockerfile_image_stages_with(&tree, &input, &Offline).unwrap();
    assert_eq!(&app_tag[..56], planned[0].digest);
    // The staged tool image's RUN saw the dependency's image ID and tag.
    let tool_stages = image_stages(&first, "tool");
    assert_eq!(
        file_in_image(&storage, &repo, &tool_stages.last().unwrap().1, "id").await,
        Some(format!("{} {}\n", base.docker_image_id, base.docker_tag))
    );

    // Same commit: nothing to build.
    let second = create_and_wait(&api, &fx.build("deps-again")).await;
    assert_eq!(builder_pods(&second), Vec::<String>::new());
    assert_eq!(
        second
            .status
            .as_ref()
            .unwrap()
            .report
            .as_ref()
            .unwrap()
            .images["app"]
            .docker_tag,
        *app_tag
    );
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn staged_image_builds_for_two_platforms_with_each_platforms_base() {
    let fx = Fixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    let storage = registry_client(&fx.registry);
    let repo = RepoRef::from_str(&format!("{}/stg", fx.registry)).unwrap();
    let commit = fx.repo.head().unwrap();
    let platforms = ["linux/amd64", "linux/arm64"];

    let built = create_and_wait(&api, &fx.build_for("multi-arch", &platforms)).await;
    let mut pods = builder_pods(&built);
    pods.sort();
    assert_eq!(pods, platforms.map(|p| format!("app {p}")));
    let report = built.status.as_ref().unwrap().report.as_ref().unwrap();
    let mut all_tags = BTreeSet::new();
    for (platform, machine) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let record = &report.images_by_platform["app"][platform];
        let tags: Vec<&str> = record
            .stages
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.docker_tag.as_str())
            .collect();
        // The platform enters every digest; busybox's arm64 image has the same PATH.
        let planned = fx.planned_for(&commit, &BusyboxEnv(None), platform);
        let expected: Vec<&str> = planned.iter().map(|s| s.digest.as_str()).collect();
        let digests: Vec<&str> = tags.iter().map(|t| &t[..56]).collect();
        assert_eq!(digests, expected, "{platform}");
        all_tags.extend(tags.iter().map(|t| t.to_string()));
        // The RUN ran on the platform (arm64 under QEMU) and the image is for it.
        assert_eq!(
            file_in_image(&storage, &repo, &record.docker_tag, "app/y").await,
            Some("one\n1\n".into())
        );
        let manifest = storage
            .get_manifest(&repo, &record.docker_tag)
            .await
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        let config = storage
            .get_blob(&repo, manifest["config"]["digest"].as_str().unwrap())
            .await
            .unwrap();
        let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(
            config["architecture"],
            json!(platform.rsplit('/').next().unwrap()),
            "{machine}"
        );
    }
    assert_eq!(fx.stage_tags().await, all_tags);
    assert_eq!(all_tags.len(), 6);
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn staged_v2_builds_a_from_stage_and_a_missing_base_fails_naming_it() {
    let fx = Fixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    let commit = fx.repo.head().unwrap();

    // v2: a FROM stage of its own, then one stage per instruction.
    let mut v2 = fx.build("v2");
    v2.spec.staged_dockerfile_version = kiln_crds::imagebuild::StagedDockerfileVersion::V2;
    let built = create_and_wait(&api, &v2).await;
    let stages = report_stages(&built);
    let names: Vec<&str> = stages.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["FROM", "ENV", "COPY", "RUN"]);
    let planned = fx.planned_with(&commit, &BusyboxEnv(None), PLATFORM, StagedMode::StagedV2);
    let expected: Vec<&str> = planned.iter().map(|s| s.digest.as_str()).collect();
    let digests: Vec<&str> = stages.iter().map(|(_, t, _)| &t[..56]).collect();
    assert_eq!(digests, expected);
    assert_eq!(fx.stage_tags().await.len(), 4);

    // A base image no registry has: the build fails before any pod, naming image,
    // platform and base.
    fx.repo
        .write("Dockerfile", "FROM busybox:no-such-tag\nRUN true\n")
        .unwrap();
    fx.repo.commit("missing base").unwrap();
    let name = "missing-base";
    api.create(&PostParams::default(), &fx.build(name))
        .await
        .unwrap();
    let failed = harness::wait_finished(&api, name, BUILD_TIMEOUT)
        .await
        .unwrap();
    let status = failed.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Failed, "{:?}", status.conditions);
    let message = &status.conditions[0].message;
    assert_eq!(
        status.conditions[0].reason, "InvalidDockerfile",
        "{message}"
    );
    assert!(
        message.contains("image \"app\" (linux/amd64): reading the environment of base image \"busybox:no-such-tag\": no registry has it"),
        "{message}"
    );
    assert!(message.contains("no-such-tag"), "{message}");
    assert_eq!(builder_pods(&failed), Vec::<String>::new());
    assert_eq!(pods_left(&fx.client, name).await, 0);
    operator.stop().await.unwrap();
}

const RENDERER_WERF_YAML: &str = "project: stg\nconfigVersion: 1\n---\nimage: renderer\ndockerfile: Dockerfile\nstaged: true\n---\nimage: renderer-slim\ndockerfile: slim.Dockerfile\nstaged: true\n";
const RENDERER_BUILD_STAGE: &str = "FROM busybox AS build\nWORKDIR /build\nCOPY templates/ ./templates/\nRUN mkdir -p /build/out && cat templates/*.tmpl > /build/out/bundle.tmpl\n";

/// The build-time facts the controller reads (busybox's environment, the built image name of
/// the `build` stage image), for the planner.
struct RendererFacts(Option<String>);

impl StagedInputs for RendererFacts {
    fn base_image_env(&self, reference: &str, platform: &str) -> Option<BTreeMap<String, String>> {
        BusyboxEnv(None).base_image_env(reference, platform)
    }
    fn stage_image_name(&self, werf_image: &str, _: &str) -> Option<String> {
        assert!(werf_image.ends_with("/stage/build"), "{werf_image}");
        self.0.clone()
    }
}

impl ImportValues for RendererFacts {
    fn import_value(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

fn renderer_plan(fx: &Fixture, commit: &str, build_image: Option<String>) -> ProjectPlan {
    let tree = GitTree::open(fx.repo.work_dir(), Some(commit)).unwrap();
    let facts = RendererFacts(build_image);
    plan_project_with_facts(
        &tree,
        &PlanRequest::default(),
        &kiln_operator::digest::stapel::Offline,
        &DockerfileFacts {
            staged: &facts,
            imports: &facts,
        },
    )
    .unwrap()
}

/// (stage name, digest) of werf image `name` in `plan`.
fn werf_image_stages(plan: &ProjectPlan, name: &str) -> Vec<(String, Option<String>)> {
    werf_images(&plan.images)
        .into_iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no werf image {name}"))
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.digest.clone()))
        .collect()
}

/// The staged multi-stage example (two images whose Dockerfiles share a `build` stage: one
/// copies from it, one is based on it), built the werf way: the `build` stage is the werf image
/// `<image>/stage/build` in the set before, published as stages of its own, and its built image
/// name feeds the dependents' digests; a second build reuses everything.
#[tokio::test]
async fn staged_multi_stage_example_publishes_its_stage_images_and_reuses_them() {
    let slim = format!(
        "{RENDERER_BUILD_STAGE}\nFROM build\nRUN rm -rf /build/templates\nCMD [\"cat\", \"/build/out/bundle.tmpl\"]\n"
    );
    let full = format!(
        "{RENDERER_BUILD_STAGE}\nFROM busybox\nWORKDIR /app\nCOPY --from=build /build/out/ ./templates/\nCOPY bin/render.sh ./\nCMD [\"/bin/sh\", \"/app/render.sh\"]\n"
    );
    let fx = Fixture::start_with_files(&[
        ("werf.yaml", RENDERER_WERF_YAML),
        ("Dockerfile", &full),
        ("slim.Dockerfile", &slim),
        ("templates/invoice.tmpl", "INVOICE {{number}}\n"),
        ("templates/receipt.tmpl", "RECEIPT {{number}}\n"),
        (
            "bin/render.sh",
            "#!/bin/sh\ncat /app/templates/bundle.tmpl\n",
        ),
    ])
    .await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    let storage = registry_client(&fx.registry);
    let repo = RepoRef::from_str(&format!("{}/stg", fx.registry)).unwrap();
    let commit = fx.repo.head().unwrap();

    // The plan: werf's images and sets.
    let offline = renderer_plan(&fx, &commit, None);
    assert_eq!(
        werf_sets(&offline.sets, &offline.stage_images),
        vec![
            vec!["renderer/stage/build", "renderer-slim/stage/build"],
            vec!["renderer", "renderer-slim"]
        ]
    );

    let first = create_and_wait(&api, &fx.build("renderer")).await;
    assert_eq!(
        first.status.as_ref().unwrap().plan.as_ref().unwrap().sets,
        werf_sets(&offline.sets, &offline.stage_images),
        "the status shows werf's plan"
    );
    let tags = fx.stage_tags().await;
    // The `build` stage image (the same stages for both images) is published under its own
    // stage digests, which need no other image.
    let build_stages = werf_image_stages(&offline, "renderer/stage/build");
    assert_eq!(
        build_stages,
        werf_image_stages(&offline, "renderer-slim/stage/build")
    );
    let names: Vec<&str> = build_stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["WORKDIR", "COPY", "RUN"]);
    let build_tags: Vec<String> = build_stages
        .iter()
        .map(|(name, digest)| {
            let digest = digest.as_deref().unwrap_or_else(|| panic!("{name} digest"));
            tags.iter()
                .find(|t| t.starts_with(digest))
                .unwrap_or_else(|| panic!("stage {name} {digest} not published: {tags:?}"))
                .clone()
        })
        .collect();
    // Its built image name feeds the dependents' digests: with it the plan gives exactly the
    // stages the controller built.
    let build_image = format!("{}/stg:{}", fx.registry, build_tags[2]);
    let exact = renderer_plan(&fx, &commit, Some(build_image));
    for image in ["renderer", "renderer-slim"] {
        let built: Vec<(String, String)> = image_stages(&first, image)
            .into_iter()
            .map(|(name, tag, _)| (name, tag[..56].to_owned()))
            .collect();
        let planned: Vec<(String, String)> = ["/stage/build", ""]
            .iter()
            .flat_map(|suffix| werf_image_stages(&exact, &format!("{image}{suffix}")))
            .map(|(name, digest)| (name, digest.expect("exact digest")))
            .collect();
        assert_eq!(built, planned, "{image}");
    }
    let renderer = image_stages(&first, "renderer");
    let slim_stages = image_stages(&first, "renderer-slim");
    assert_eq!(
        file_in_image(
            &storage,
            &repo,
            &renderer.last().unwrap().1,
            "app/templates/bundle.tmpl"
        )
        .await,
        Some("INVOICE {{number}}\nRECEIPT {{number}}\n".into())
    );
    assert_eq!(
        file_in_image(
            &storage,
            &repo,
            &slim_stages.last().unwrap().1,
            "build/out/bundle.tmpl"
        )
        .await,
        Some("INVOICE {{number}}\nRECEIPT {{number}}\n".into())
    );

    // Same commit: every stage, the stage images' included, is reused without a pod.
    let second = create_and_wait(&api, &fx.build("renderer-again")).await;
    assert_eq!(builder_pods(&second), Vec::<String>::new());
    for image in ["renderer", "renderer-slim"] {
        let again = image_stages(&second, image);
        assert!(again.iter().all(|(_, _, rebuilt)| !rebuilt), "{again:?}");
        assert_eq!(
            again.iter().map(|(_, t, _)| t).collect::<Vec<_>>(),
            image_stages(&first, image)
                .iter()
                .map(|(_, t, _)| t)
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(fx.stage_tags().await, tags);
    operator.stop().await.unwrap();
}

/// A strict-mode build of the same commit shares no stage with a werf-mode one: it builds all
/// its stages under other digests (its own salt), and reuses only its own.
#[tokio::test]
async fn strict_and_werf_mode_builds_never_reuse_each_others_stages() {
    let fx = Fixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let operator = InProcessOperator::start(
        fx.client.clone(),
        settings(&fx.registry),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(fx.client.clone(), "default");
    let werf = create_and_wait(&api, &fx.build("werf-mode")).await;
    let werf_tags = fx.stage_tags().await;
    assert_eq!(werf_tags.len(), 3);

    let strict_build = |name: &str| {
        let mut ib = fx.build(name);
        ib.spec.digest_mode = Some(kiln_crds::imagebuild::DigestMode::Strict);
        ib
    };
    let strict = create_and_wait(&api, &strict_build("strict-mode")).await;
    assert_eq!(builder_pods(&strict), vec![format!("app {PLATFORM}")]);
    let strict_stages = report_stages(&strict);
    assert!(strict_stages.iter().all(|(_, _, rebuilt)| *rebuilt));
    let werf_digests: BTreeSet<String> = report_stages(&werf)
        .iter()
        .map(|(_, tag, _)| tag[..56].to_owned())
        .collect();
    for (name, tag, _) in &strict_stages {
        assert!(!werf_digests.contains(&tag[..56]), "{name} {tag}");
        assert!(!werf_tags.contains(tag), "{name} {tag}");
    }
    assert_eq!(fx.stage_tags().await.len(), 6);

    let again = create_and_wait(&api, &strict_build("strict-again")).await;
    assert_eq!(builder_pods(&again), Vec::<String>::new());
    assert_eq!(report_stages(&again), {
        let mut s = strict_stages.clone();
        s.iter_mut().for_each(|(_, _, rebuilt)| *rebuilt = false);
        s
    });
    operator.stop().await.unwrap();
}
