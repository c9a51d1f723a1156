//! The controller builds a Stapel image without git mappings for real: kube-apiserver +
//! real node (builder pods run the workspace's `kiln-builder` with Buildah in containers), registry,
//! git server.
//!
//! One stack, one Stapel image on busybox (`shell.beforeInstall`, `shell.install`, `docker`
//! ENV and CMD: stages from, beforeInstall, install, dockerInstructions): the first build
//! makes every stage with the offline planner's digests, the second reuses them all without
//! a pod, the third — after an install command changed — rebuilds install and
//! dockerInstructions only; a werf.yaml adding a git mapping then fails with a clear
//! Unsupported message and no pod.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use kiln_crds::{ImageBuild, Phase};
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_e2e::stack::LocalStack;
use kiln_operator::controller::Settings;
use kiln_operator::plan::project::{PlanRequest, plan_project};
use kiln_operator::source::GitTree;
use kiln_operator::storage::{RegistryClient, RepoRef};
use kiln_testkit::git_server::Repo;
use kube::api::Api;
use serde_json::json;

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const PLATFORM: &str = "linux/amd64";

fn werf_yaml(install: &str) -> String {
    format!(
        "project: stp
configVersion: 1
---
image: app
from: busybox
shell:
  beforeInstall:
  - echo one > /stapel.txt
  - echo \"$WERF_COMMIT_HASH $WERF_COMMIT_TIME_UNIX\" > /commit.txt
  install:
  - {install}
docker:
  ENV:
    GREETING: hello
  CMD: [cat, /stapel.txt]
"
    )
}

const INSTALL: &str = "echo installed >> /stapel.txt";

fn settings(registry: &str) -> Settings {
    harness::build_settings("default", &[registry])
}

fn registry_client(registry: &str) -> RegistryClient {
    harness::registry_client(registry)
}

/// The local stack with the CRD installed and the Stapel project on the git server.
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
        let (repo, _) = stack
            .git()
            .create_repo_with_files("stp", &[("werf.yaml", &werf_yaml(INSTALL))])
            .unwrap();
        Fixture {
            _stack: stack,
            registry,
            client,
            repo,
        }
    }

    /// An ImageBuild of the project's `main` for linux/amd64, stages in `REGISTRY/stp`,
    /// docker.io images through the registry as a mirror (it serves `library/busybox`).
    fn build(&self, name: &str) -> ImageBuild {
        serde_json::from_value(json!({
            "apiVersion": "kiln.dev/v1alpha1",
            "kind": "ImageBuild",
            "metadata": {"name": name},
            "spec": {
                "source": {"git": {"url": self.repo.url(), "revision": "main"}},
                "repo": format!("{}/stp", self.registry),
                "platforms": [PLATFORM],
                "registryMirrors": [format!("http://{}", self.registry)],
            }
        }))
        .unwrap()
    }

    fn repo_ref(&self) -> RepoRef {
        RepoRef::from_str(&format!("{}/stp", self.registry)).unwrap()
    }

    /// Stage tags (`DIGEST-TIMESTAMP_MILLISEC`) in the stages storage.
    async fn stage_tags(&self) -> BTreeSet<String> {
        harness::stage_tags(&self.registry, "stp").await.unwrap()
    }

    /// The offline planner's (stage name, digest) of `app` at `commit`; every digest exact.
    fn planned(&self, commit: &str) -> Vec<(String, String)> {
        let tree = GitTree::open(self.repo.work_dir(), Some(commit)).unwrap();
        let plan = plan_project(&tree, &PlanRequest::default()).unwrap();
        plan.images[0]
            .stages
            .iter()
            .map(|s| {
                assert!(s.provisional.is_none(), "{s:?}");
                (s.name.clone(), s.digest.clone().unwrap())
            })
            .collect()
    }
}

async fn create_and_finish(api: &Api<ImageBuild>, ib: &ImageBuild) -> ImageBuild {
    harness::create_and_wait(api, ib, BUILD_TIMEOUT)
        .await
        .unwrap()
}

async fn create_and_wait(api: &Api<ImageBuild>, ib: &ImageBuild) -> ImageBuild {
    let done = create_and_finish(api, ib).await;
    let status = done.status.as_ref().unwrap();
    assert_eq!(
        status.phase,
        Phase::Succeeded,
        "{:?}: {:?}",
        ib.metadata.name,
        status.conditions
    );
    done
}

/// (stage name, stage tag, rebuilt) of `app` from the build report.
fn report_stages(ib: &ImageBuild) -> Vec<(String, String, bool)> {
    harness::report_stages(ib, "app")
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

/// The contents of `path` in the image `repo:tag` (layers searched from the top).
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

/// The image config (`config` of the config blob) of `repo:tag`.
async fn image_config(storage: &RegistryClient, repo: &RepoRef, tag: &str) -> serde_json::Value {
    harness::image_config(storage, repo, tag).await.unwrap()
}

#[tokio::test]
async fn stapel_image_builds_each_stage_then_reuses_then_rebuilds_from_install() {
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
    let repo = fx.repo_ref();
    let first_commit = fx.repo.head().unwrap();

    // 1. One pod builds every stage, with the offline planner's digests.
    let first = create_and_wait(&api, &fx.build("first")).await;
    assert_eq!(builder_pods(&first), vec![format!("app {PLATFORM}")]);
    assert_eq!(pods_left(&fx.client, "first").await, 0);
    let stages = report_stages(&first);
    assert!(stages.iter().all(|(_, _, rebuilt)| *rebuilt), "{stages:?}");
    let built: Vec<(String, String)> = stages
        .iter()
        .map(|(n, t, _)| (n.clone(), t[..56].to_owned()))
        .collect();
    let planned = fx.planned(&first_commit);
    let names: Vec<&str> = planned.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["from", "beforeInstall", "install", "dockerInstructions"]
    );
    assert_eq!(built, planned);
    let tags = fx.stage_tags().await;
    assert_eq!(
        tags,
        stages.iter().map(|(_, t, _)| t.clone()).collect(),
        "one stage tag per stage, the ones the report gives"
    );
    // The image holds what the shell commands wrote (the commit environment included) and
    // the config has the docker ENV and CMD.
    let last = &stages[3].1;
    assert_eq!(
        file_in_image(&storage, &repo, last, "stapel.txt").await,
        Some("one\ninstalled\n".into())
    );
    let commit_line = file_in_image(&storage, &repo, last, "commit.txt")
        .await
        .unwrap();
    let (hash, unix) = commit_line.trim_end().split_once(' ').unwrap();
    assert_eq!(hash, first_commit);
    assert!(
        unix.parse::<i64>().unwrap() > 1_600_000_000,
        "{commit_line}"
    );
    let config = image_config(&storage, &repo, last).await;
    assert_eq!(config["Cmd"], json!(["cat", "/stapel.txt"]));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello"), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("WERF_COMMIT")),
        "the commit environment stays out of the image: {env:?}"
    );
    // Each stage's parent is the stage before it.
    let install_config = image_config(&storage, &repo, &stages[2].1).await;
    assert_eq!(
        install_config["Labels"]["werf.io/parent-stage-id"],
        json!(stages[1].1)
    );

    // 2. Same commit: every stage reused, no pod.
    let second = create_and_wait(&api, &fx.build("second")).await;
    assert_eq!(builder_pods(&second), Vec::<String>::new());
    let again = report_stages(&second);
    assert!(again.iter().all(|(_, _, rebuilt)| !rebuilt), "{again:?}");
    assert_eq!(
        again.iter().map(|(_, t, _)| t).collect::<Vec<_>>(),
        stages.iter().map(|(_, t, _)| t).collect::<Vec<_>>()
    );

    // 3. An install command changes: install and dockerInstructions are rebuilt on the found
    // beforeInstall stage.
    fx.repo
        .write("werf.yaml", werf_yaml("echo changed >> /stapel.txt"))
        .unwrap();
    let second_commit = fx.repo.commit("install: changed").unwrap();
    let third = create_and_wait(&api, &fx.build("third")).await;
    assert_eq!(builder_pods(&third), vec![format!("app {PLATFORM}")]);
    let changed = report_stages(&third);
    let rebuilt: Vec<(&str, bool)> = changed.iter().map(|(n, _, r)| (n.as_str(), *r)).collect();
    assert_eq!(
        rebuilt,
        [
            ("from", false),
            ("beforeInstall", false),
            ("install", true),
            ("dockerInstructions", true)
        ]
    );
    assert_eq!(
        (&changed[0].1, &changed[1].1),
        (&stages[0].1, &stages[1].1),
        "from and beforeInstall are reused"
    );
    let built: Vec<(String, String)> = changed
        .iter()
        .map(|(n, t, _)| (n.clone(), t[..56].to_owned()))
        .collect();
    assert_eq!(built, fx.planned(&second_commit));
    let tags_after = fx.stage_tags().await;
    assert_eq!(tags_after.len(), 6, "two new stage tags: {tags_after:?}");
    assert!(tags_after.is_superset(&tags));
    assert_eq!(
        file_in_image(&storage, &repo, &changed[3].1, "stapel.txt").await,
        Some("one\nchanged\n".into())
    );

    // 4. A git mapping is not built yet: the build fails naming the image and why, no pod.
    fx.repo
        .write(
            "werf.yaml",
            werf_yaml(INSTALL).replace(
                "from: busybox\n",
                "from: busybox\ngit:\n- add: /\n  to: /src\n",
            ),
        )
        .unwrap();
    fx.repo.commit("git mapping").unwrap();
    let fourth = create_and_finish(&api, &fx.build("fourth")).await;
    let status = fourth.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Failed);
    let message = &status.conditions[0].message;
    assert!(
        message.contains(
            "Stapel image \"app\": stage gitArchive (git mappings) is not built by Kiln yet"
        ),
        "{message}"
    );
    assert_eq!(builder_pods(&fourth), Vec::<String>::new());
    assert_eq!(pods_left(&fx.client, "fourth").await, 0);
    assert_eq!(fx.stage_tags().await, tags_after);

    // 5. HEALTHCHECK is refused only when the builder job is made, under the stage locks:
    // the locks are freed at once, not when their leases expire.
    fx.repo
        .write(
            "werf.yaml",
            werf_yaml("echo healthy >> /stapel.txt")
                .replace("docker:\n", "docker:\n  HEALTHCHECK: CMD true\n"),
        )
        .unwrap();
    fx.repo.commit("healthcheck").unwrap();
    let fifth = create_and_finish(&api, &fx.build("fifth")).await;
    let status = fifth.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Failed, "{:?}", status.conditions);
    assert!(
        status.conditions[0].message.contains("HEALTHCHECK"),
        "{}",
        status.conditions[0].message
    );
    assert_eq!(pods_left(&fx.client, "fifth").await, 0);
    let leases = harness::lock_leases(&fx.client, "default", "stp")
        .await
        .unwrap();
    assert_eq!(leases, Vec::<String>::new());

    operator.stop().await.unwrap();
}
