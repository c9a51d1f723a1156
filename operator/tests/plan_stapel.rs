//! Planning Stapel images across commits of a real git repository: which stages a change to a
//! `stageDependencies` file, to an unrelated file and to a shell command rebuilds, offline
//! (stages after a git stage provisional) and with the commits recorded in the stage images.

mod plan_support;

use kiln_operator::digest::stapel::StapelInputs;
use kiln_operator::plan::project::{
    ImageBuildKind, PlanRequest, ProjectPlan, ProjectPlanError, plan_project, plan_project_with,
};
use kiln_operator::source::GitTree;
use plan_support::TestRepo;

const WERF_YAML: &str = "project: shop
configVersion: 1
---
image: app
from: alpine:3.20
git:
- add: /
  to: /app
  stageDependencies:
    install:
    - package.json
shell:
  beforeInstall: [apk add make]
  install: [npm ci]
  beforeSetup: [make assets]
  setup: [echo done]
docker:
  WORKDIR: /app
";

fn files(werf_yaml: &str, package: &str, main: &str) -> Vec<(String, String)> {
    vec![
        ("werf.yaml".to_string(), werf_yaml.to_string()),
        ("package.json".to_string(), package.to_string()),
        ("src/main.js".to_string(), main.to_string()),
    ]
}

/// Every git stage image of `app` was built at `commit`.
struct BuiltAt(String);

impl StapelInputs for BuiltAt {
    fn recorded_commits(&self, _: &str, _: &str, _: &str) -> Option<Vec<String>> {
        Some(vec![self.0.clone()])
    }
}

/// Plans each snapshot as a commit of one repository; returns (commit, offline plan, plan with
/// git stages recorded at the first commit).
fn plan_commits(snapshots: &[Vec<(String, String)>]) -> Vec<(String, ProjectPlan, ProjectPlan)> {
    let repo = TestRepo::new();
    let mut first = None;
    snapshots
        .iter()
        .map(|files| {
            let commit = repo.commit(files);
            let first = first.get_or_insert_with(|| commit.clone()).clone();
            let tree = GitTree::open(repo.path(), Some(&commit)).unwrap();
            let offline = plan_project(&tree, &PlanRequest::default()).unwrap();
            let recorded =
                plan_project_with(&tree, &PlanRequest::default(), &BuiltAt(first)).unwrap();
            (commit, offline, recorded)
        })
        .collect()
}

fn stage<'a>(plan: &'a ProjectPlan, name: &str) -> Option<&'a str> {
    plan.images[0]
        .stages
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.digest.as_deref())
}

const EXACT: [&str; 3] = ["from", "beforeInstall", "gitArchive"];
const USER: [&str; 3] = ["install", "beforeSetup", "setup"];

#[test]
fn stage_order_and_provisional_stages_offline() {
    let plans = plan_commits(&[files(WERF_YAML, "{}\n", "a\n")]);
    let (commit, offline, _) = &plans[0];
    let image = &offline.images[0];
    assert_eq!(image.kind, ImageBuildKind::Stapel);
    let names: Vec<&str> = image.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "from",
            "beforeInstall",
            "gitArchive",
            "install",
            "beforeSetup",
            "setup",
            "dockerInstructions"
        ]
    );
    for s in &image.stages {
        assert!(s.digest.is_some(), "{}", s.name);
        let provisional = !EXACT.contains(&s.name.as_str());
        assert_eq!(s.provisional.is_some(), provisional, "{}", s.name);
        if let Some(note) = &s.provisional {
            assert!(note.contains(commit.as_str()), "{note}");
        }
    }
}

#[test]
fn stage_dependencies_file_rebuilds_install_and_later_only() {
    let plans = plan_commits(&[
        files(WERF_YAML, "{}\n", "a\n"),
        files(WERF_YAML, "{\"dependencies\":{}}\n", "a\n"),
    ]);
    let pairs = [(&plans[0].1, &plans[1].1), (&plans[0].2, &plans[1].2)];
    for (before, after) in pairs {
        for name in EXACT {
            assert_eq!(stage(before, name), stage(after, name), "{name}");
            assert!(stage(before, name).is_some());
        }
        for name in USER {
            assert_ne!(stage(before, name), stage(after, name), "{name}");
        }
    }
    // Offline, dockerInstructions follows setup and changes with it.
    assert_ne!(
        stage(&plans[0].1, "dockerInstructions"),
        stage(&plans[1].1, "dockerInstructions")
    );
}

#[test]
fn unrelated_file_rebuilds_nothing_once_the_git_stages_exist() {
    let plans = plan_commits(&[
        files(WERF_YAML, "{}\n", "a\n"),
        files(WERF_YAML, "{}\n", "b\n"),
    ]);
    let (c1, c2) = (&plans[0], &plans[1]);
    // gitArchive has no commit in its digest: nothing up to it changes even offline.
    for name in EXACT {
        assert_eq!(stage(&c1.1, name), stage(&c2.1, name), "{name}");
    }
    // With the git stages recorded at the first commit (what the stages storage holds after
    // building it), the user stages keep their digests too; the patch to the new commit is
    // applied by gitCache/gitLatestPatch, which only the build computes.
    for name in EXACT.iter().chain(USER.iter()) {
        assert_eq!(stage(&c1.2, name), stage(&c2.2, name), "{name}");
        assert!(stage(&c2.2, name).is_some(), "{name}");
    }
    let pending: Vec<&str> = c2.2.images[0]
        .stages
        .iter()
        .filter(|s| s.digest.is_none())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        pending,
        ["gitCache", "gitLatestPatch", "dockerInstructions"]
    );
    // Offline the plan assumes the new commit, so the user stages are provisional and differ.
    assert_ne!(stage(&c1.1, "install"), stage(&c2.1, "install"));
}

#[test]
fn shell_command_change_rebuilds_its_stage_and_later_only() {
    let changed = WERF_YAML.replace("make assets", "make assets-v2");
    let plans = plan_commits(&[
        files(WERF_YAML, "{}\n", "a\n"),
        files(&changed, "{}\n", "a\n"),
    ]);
    let (c1, c2) = (&plans[0], &plans[1]);
    for name in ["from", "beforeInstall", "gitArchive", "install"] {
        assert_eq!(stage(&c1.2, name), stage(&c2.2, name), "{name}");
    }
    for name in ["beforeSetup", "setup"] {
        assert_ne!(stage(&c1.2, name), stage(&c2.2, name), "{name}");
        assert!(stage(&c2.2, name).is_some());
    }
    for name in EXACT {
        assert_eq!(stage(&c1.1, name), stage(&c2.1, name), "{name}");
    }
}

#[test]
fn ansible_image_is_a_planner_error_naming_it() {
    let yaml = "project: shop\nconfigVersion: 1\n---\nimage: legacy\nfrom: alpine\nansible:\n  install:\n  - shell: make\n";
    let repo = TestRepo::new();
    repo.commit(&[("werf.yaml", yaml)]);
    let tree = GitTree::open(repo.path(), None).unwrap();
    let err = plan_project(&tree, &PlanRequest::default()).unwrap_err();
    assert!(matches!(err, ProjectPlanError::Digest(_)), "{err:?}");
    assert!(
        err.to_string().contains("image legacy") && err.to_string().contains("ansible"),
        "{err}"
    );
}

#[test]
fn controller_still_refuses_to_build_planned_stapel_images() {
    let plans = plan_commits(&[files(WERF_YAML, "{}\n", "a\n")]);
    let image = &plans[0].1.images[0];
    assert!(!image.stages.is_empty());
    let err = kiln_operator::controller::building::unit_digests(image).unwrap_err();
    assert!(
        matches!(err, kiln_operator::controller::error::Error::Unsupported(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("Stapel"), "{err}");
}
