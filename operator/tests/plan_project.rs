//! Planning whole projects from git commits: the seed example, digest stability across commits,
//! stages planned once, pending dependency digests, subsets, platforms, and bad input.

mod plan_support;

use kiln_operator::config::{ConfigErrorKind, Platform};
use kiln_operator::plan::project::{
    ImageBuildKind, PlanRequest, ProjectPlan, ProjectPlanError, StagedDockerfileVersion,
    plan_project,
};
use kiln_operator::plan::{ParallelOptions, PlanError, Relation};
use kiln_operator::source::GitTree;
use plan_support::{SEED_WERF_YAML, TestRepo, seed_files, with_file};

fn plan_files(
    files: &[(String, String)],
    request: &PlanRequest<'_>,
) -> Result<ProjectPlan, ProjectPlanError> {
    let repo = TestRepo::new();
    repo.commit(files);
    let tree = GitTree::open(repo.path(), None).unwrap();
    plan_project(&tree, request)
}

fn plan(files: &[(String, String)]) -> ProjectPlan {
    plan_files(files, &PlanRequest::default()).unwrap()
}

fn digests(plan: &ProjectPlan) -> Vec<(String, String, Option<String>)> {
    plan.images
        .iter()
        .flat_map(|i| {
            i.stages
                .iter()
                .map(move |s| (i.name.clone(), s.name.clone(), s.digest.clone()))
        })
        .collect()
}

fn digest_of(plan: &ProjectPlan, image: &str) -> String {
    let image = plan.images.iter().find(|i| i.name == image).unwrap();
    image.stages.last().unwrap().digest.clone().unwrap()
}

#[test]
fn seed_example_plans_backend_and_frontend_before_frontend_assets() {
    let plan = plan(&seed_files(SEED_WERF_YAML));
    assert_eq!(
        plan.sets.sets,
        vec![
            vec!["backend".to_string(), "frontend".to_string()],
            vec!["frontend-assets".to_string()]
        ]
    );
    assert_eq!(plan.project, "shop");
    assert_eq!(plan.commit.len(), 40);
    let names: Vec<&str> = plan.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["backend", "frontend", "frontend-assets"]);
    for image in &plan.images {
        assert_eq!(image.kind, ImageBuildKind::Dockerfile);
        assert_eq!(image.platform, Platform::linux_amd64());
        assert_eq!(image.stages.len(), 1);
        assert_eq!(image.stages[0].name, "dockerfile");
        let digest = image.stages[0].digest.as_deref().unwrap();
        assert_eq!(digest.len(), 56);
        assert!(
            digest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
    let assets = &plan.images[2];
    assert_eq!(
        assets.depends_on,
        vec![(
            "frontend".to_string(),
            Relation::DockerfileStage {
                stage: "application".into()
            }
        )]
    );
    // Three different targets: three different digests.
    let mut all: Vec<_> = digests(&plan).into_iter().map(|d| d.2).collect();
    all.dedup();
    assert_eq!(all.len(), 3);
}

#[test]
fn digests_change_only_for_images_whose_inputs_change() {
    let base = seed_files(SEED_WERF_YAML);
    let before = plan(&base);
    // A file outside every context: no digest changes.
    let unrelated = plan(&with_file(base.clone(), "README.md", "shop, updated\n"));
    assert_eq!(digests(&unrelated), digests(&before));
    // backend/server.js is COPY'd by backend only (COPY . .).
    let backend_change = plan(&with_file(
        base.clone(),
        "backend/server.js",
        "console.log(2)\n",
    ));
    assert_ne!(
        digest_of(&backend_change, "backend"),
        digest_of(&before, "backend")
    );
    assert_eq!(
        digest_of(&backend_change, "frontend"),
        digest_of(&before, "frontend")
    );
    assert_eq!(
        digest_of(&backend_change, "frontend-assets"),
        digest_of(&before, "frontend-assets")
    );
}

#[test]
fn digests_follow_the_target_stage_chain_only() {
    // A variant of the seed where `application` copies only app/: configs/nginx.conf is then
    // used by the `assets` stage alone.
    let dockerfile = plan_support::SEED_FRONTEND_DOCKERFILE.replace(
        "COPY . .\nRUN bundle exec",
        "COPY app ./app\nRUN bundle exec",
    );
    let base = with_file(
        seed_files(SEED_WERF_YAML),
        "frontend/Dockerfile",
        &dockerfile,
    );
    let before = plan(&base);
    let nginx_change = plan(&with_file(
        base.clone(),
        "frontend/configs/nginx.conf",
        "server { listen 81; }\n",
    ));
    assert_eq!(
        digest_of(&nginx_change, "frontend"),
        digest_of(&before, "frontend")
    );
    assert_ne!(
        digest_of(&nginx_change, "frontend-assets"),
        digest_of(&before, "frontend-assets")
    );
    // A file of app/ is used by `application`, so by both targets.
    let app_change = plan(&with_file(
        base,
        "frontend/app/application.rb",
        "class App2; end\n",
    ));
    assert_ne!(
        digest_of(&app_change, "frontend"),
        digest_of(&before, "frontend")
    );
    assert_ne!(
        digest_of(&app_change, "frontend-assets"),
        digest_of(&before, "frontend-assets")
    );
    assert_eq!(
        digest_of(&app_change, "backend"),
        digest_of(&before, "backend")
    );
}

#[test]
fn cache_version_and_platform_change_digests() {
    let base = plan(&seed_files(SEED_WERF_YAML));
    let versioned = SEED_WERF_YAML.replace(
        "configVersion: 1\n",
        "configVersion: 1\nbuild:\n  cacheVersion: two\n",
    );
    let with_version = plan(&seed_files(&versioned));
    for name in ["backend", "frontend", "frontend-assets"] {
        assert_ne!(
            digest_of(&with_version, name),
            digest_of(&base, name),
            "{name}"
        );
    }
    let arm = [Platform::parse("linux/arm64").unwrap()];
    let request = PlanRequest {
        platforms: &arm,
        ..PlanRequest::default()
    };
    let on_arm = plan_files(&seed_files(SEED_WERF_YAML), &request).unwrap();
    assert!(on_arm.images.iter().all(|i| i.platform == arm[0]));
    assert_ne!(digest_of(&on_arm, "backend"), digest_of(&base, "backend"));
}

#[test]
fn platforms_multiply_images_in_build_order() {
    let yaml = SEED_WERF_YAML.replace(
        "configVersion: 1\n",
        "configVersion: 1\nbuild:\n  platform: [linux/amd64, linux/arm64]\n",
    );
    let plan = plan(&seed_files(&yaml));
    let units: Vec<String> = plan
        .images
        .iter()
        .map(|i| format!("{} {}", i.name, i.platform))
        .collect();
    assert_eq!(
        units,
        [
            "backend linux/amd64",
            "backend linux/arm64",
            "frontend linux/amd64",
            "frontend linux/arm64",
            "frontend-assets linux/amd64",
            "frontend-assets linux/arm64",
        ]
    );
    assert_ne!(
        plan.images[0].stages[0].digest,
        plan.images[1].stages[0].digest
    );
}

#[test]
fn identical_targets_are_planned_once() {
    // Two images building the same target of the same Dockerfile with the same inputs have the
    // same `dockerfile` stage digest: the first builds it, the second reuses it.
    let yaml = format!(
        "{SEED_WERF_YAML}---\nimage: frontend-copy\ndockerfile: Dockerfile\ncontext: frontend\ntarget: application\n"
    );
    let plan = plan(&seed_files(&yaml));
    assert_eq!(
        plan.sets.sets,
        vec![
            vec![
                "backend".to_string(),
                "frontend".to_string(),
                "frontend-copy".to_string()
            ],
            vec!["frontend-assets".to_string()]
        ]
    );
    let copy = plan
        .images
        .iter()
        .find(|i| i.name == "frontend-copy")
        .unwrap();
    assert_eq!(
        copy.stages[0].digest.as_deref(),
        Some(digest_of(&plan, "frontend").as_str())
    );
    assert_eq!(
        copy.stages[0].built_by,
        Some(("frontend".to_string(), Platform::linux_amd64()))
    );
    let frontend = plan.images.iter().find(|i| i.name == "frontend").unwrap();
    assert_eq!(frontend.stages[0].built_by, None);
}

#[test]
fn staged_stage_shared_by_two_images_is_planned_once() {
    let yaml = SEED_WERF_YAML.replace(
        "configVersion: 1\n",
        "configVersion: 1\nbuild:\n  staged: true\n",
    );
    for version in [StagedDockerfileVersion::V1, StagedDockerfileVersion::V2] {
        let request = PlanRequest {
            staged_dockerfile_version: version,
            ..PlanRequest::default()
        };
        let plan = plan_files(&seed_files(&yaml), &request).unwrap();
        let frontend = plan.images.iter().find(|i| i.name == "frontend").unwrap();
        let assets = plan
            .images
            .iter()
            .find(|i| i.name == "frontend-assets")
            .unwrap();
        assert_eq!(frontend.kind, ImageBuildKind::StagedDockerfile);
        assert!(frontend.stages.len() > 1);
        assert!(frontend.stages.iter().all(|s| s.built_by.is_none()));
        // Every stage of the `application` chain appears in frontend-assets with the same digest
        // and is built by frontend; the assets-only stages are built by frontend-assets.
        let shared: Vec<_> = assets
            .stages
            .iter()
            .filter(|s| s.built_by.is_some())
            .collect();
        assert_eq!(shared.len(), frontend.stages.len(), "{version:?}");
        for stage in &shared {
            assert_eq!(
                stage.built_by,
                Some(("frontend".to_string(), Platform::linux_amd64()))
            );
            assert!(frontend.stages.iter().any(|f| f.digest == stage.digest));
        }
        assert!(assets.stages.iter().any(|s| s.built_by.is_none()));
        assert_eq!(plan.sets.sets.len(), 2);
    }
}

#[test]
fn dependency_build_args_leave_digests_pending_only_when_used() {
    let yaml = "\
project: shop
configVersion: 1
---
image: base
dockerfile: base/Dockerfile
---
image: uses-arg
dockerfile: app/Dockerfile
dependencies:
- image: base
  imports:
  - type: ImageName
    targetBuildArg: BASE_IMAGE
---
image: ignores-arg
dockerfile: other/Dockerfile
dependencies:
- image: base
  imports:
  - type: ImageTag
    targetBuildArg: UNUSED
";
    let files: Vec<(String, String)> = [
        ("werf.yaml", yaml),
        ("base/Dockerfile", "FROM alpine:3.20\nRUN echo base\n"),
        (
            "app/Dockerfile",
            "ARG BASE_IMAGE\nFROM $BASE_IMAGE\nRUN echo app\n",
        ),
        ("other/Dockerfile", "FROM alpine:3.20\nRUN echo other\n"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect();
    let plan = plan(&files);
    assert_eq!(
        plan.sets.sets,
        vec![
            vec!["base".to_string()],
            vec!["uses-arg".to_string(), "ignores-arg".to_string()]
        ]
    );
    let uses = plan.images.iter().find(|i| i.name == "uses-arg").unwrap();
    assert_eq!(uses.stages[0].digest, None);
    assert_eq!(
        uses.stages[0].pending_on,
        vec!["ImageName of image \"base\" (build arg BASE_IMAGE)".to_string()]
    );
    let ignores = plan
        .images
        .iter()
        .find(|i| i.name == "ignores-arg")
        .unwrap();
    assert_eq!(ignores.stages[0].digest.as_ref().map(String::len), Some(56));
    assert!(ignores.stages[0].pending_on.is_empty());
}

#[test]
fn subset_and_sequential_plans() {
    let request = PlanRequest {
        images: &["frontend-assets".to_string()],
        parallel: ParallelOptions {
            parallel: false,
            tasks_limit: 5,
        },
        ..PlanRequest::default()
    };
    let plan = plan_files(&seed_files(SEED_WERF_YAML), &request).unwrap();
    assert_eq!(
        plan.sets.sets,
        vec![
            vec!["frontend".to_string()],
            vec!["frontend-assets".to_string()]
        ]
    );
    assert_eq!(plan.images.len(), 2);
}

#[test]
fn stapel_from_image_hashes_the_base_content_digest() {
    let yaml = "project: shop\nconfigVersion: 1\n---\nimage: base\nfrom: alpine:3.20\n---\nimage: app\nfromImage: base\n";
    let plan = plan(&[("werf.yaml".to_string(), yaml.to_string())]);
    assert_eq!(
        plan.sets.sets,
        vec![vec!["base".to_string()], vec!["app".to_string()]]
    );
    assert!(plan.images.iter().all(|i| i.kind == ImageBuildKind::Stapel));
    // python3 hashlib: base = sha3_224("1.2:::from:::" + sha256("alpine:3.20"));
    // content = sha3_224("1.2:::from-content::::::" + base + ":::");
    // app = sha3_224("1.2:::from:::" + sha256(content)).
    assert_eq!(
        digests(&plan),
        vec![
            (
                "base".to_string(),
                "from".to_string(),
                Some("fabcc5fa267a845ae1b203af61362adf86fa4b30bd2e16f84f23e911".to_string())
            ),
            (
                "app".to_string(),
                "from".to_string(),
                Some("797d6e82006d078fe6732f8d2565c8c5cbb33018e90d5083b2b2f80e".to_string())
            ),
        ]
    );
}

#[test]
fn werf_yml_is_found_when_werf_yaml_is_absent() {
    let mut files = seed_files(SEED_WERF_YAML);
    files[0].0 = "werf.yml".into();
    assert_eq!(plan(&files).sets.sets.len(), 2);
}

#[test]
fn missing_werf_yaml_names_path_and_commit() {
    let files = vec![("README.md".to_string(), "x".to_string())];
    let err = plan_files(&files, &PlanRequest::default()).unwrap_err();
    assert!(
        matches!(&err, ProjectPlanError::ConfigNotFound { path, .. } if path == "werf.yaml"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("werf.yaml not found at commit "),
        "{err}"
    );
}

#[test]
fn invalid_werf_yaml_is_a_located_config_error() {
    let yaml = SEED_WERF_YAML.replace("target: assets", "target: assets\ntargte: x");
    let err = plan_files(&seed_files(&yaml), &PlanRequest::default()).unwrap_err();
    let ProjectPlanError::Config(config) = &err else {
        panic!("unexpected {err}")
    };
    assert!(
        matches!(&*config.kind, ConfigErrorKind::UnknownDirective { key, .. } if key == "targte")
    );
    assert_eq!(config.image.as_deref(), Some("frontend-assets"));
    assert_eq!(config.line, Some(17));
}

#[test]
fn missing_dockerfile_names_image_and_path() {
    let files: Vec<_> = seed_files(SEED_WERF_YAML)
        .into_iter()
        .filter(|(p, _)| p != "backend/Dockerfile")
        .collect();
    let err = plan_files(&files, &PlanRequest::default()).unwrap_err();
    assert!(
        matches!(&err, ProjectPlanError::DockerfileNotFound { image, path, .. } if image == "backend" && path == "backend/Dockerfile"),
        "{err}"
    );
}

#[test]
fn unknown_target_stage_is_an_error() {
    let yaml = SEED_WERF_YAML.replace("target: assets", "target: asets");
    let err = plan_files(&seed_files(&yaml), &PlanRequest::default()).unwrap_err();
    assert!(
        matches!(&err, ProjectPlanError::Dockerfile { image, .. } if image == "frontend-assets"),
        "{err}"
    );
    assert!(err.to_string().contains("asets"), "{err}");
}

#[test]
fn dockerfile_syntax_error_names_file_and_line() {
    let files = with_file(
        seed_files(SEED_WERF_YAML),
        "backend/Dockerfile",
        "FROM node\nCOPY --chown\n",
    );
    let err = plan_files(&files, &PlanRequest::default()).unwrap_err();
    assert!(
        matches!(&err, ProjectPlanError::Dockerfile { image, .. } if image == "backend"),
        "{err}"
    );
    assert!(err.to_string().contains("backend/Dockerfile"), "{err}");
}

#[test]
fn cycle_through_a_dockerfile_stage_is_named() {
    let yaml = SEED_WERF_YAML.replace(
        "target: application\n",
        "target: application\ndependencies:\n- image: frontend-assets\n",
    );
    let err = plan_files(&seed_files(&yaml), &PlanRequest::default()).unwrap_err();
    assert!(
        matches!(&err, ProjectPlanError::Plan(PlanError::DependencyCycle(c)) if c == &["frontend", "frontend-assets", "frontend"]),
        "{err}"
    );
}

#[test]
fn unknown_requested_image_is_an_error() {
    let request = PlanRequest {
        images: &["nope".to_string()],
        ..PlanRequest::default()
    };
    let err = plan_files(&seed_files(SEED_WERF_YAML), &request).unwrap_err();
    assert_eq!(
        err.to_string(),
        "image \"nope\" is not defined in werf.yaml"
    );
}

#[test]
fn inline_config_plans_like_the_committed_file_and_ignores_it() {
    let committed = plan(&seed_files(SEED_WERF_YAML));
    // The commit's werf.yaml says something else entirely: the inline text wins.
    let files = with_file(
        seed_files(SEED_WERF_YAML),
        "werf.yaml",
        "project: other\nconfigVersion: 1\n---\nimage: x\ndockerfile: Dockerfile\n",
    );
    let inline = plan_files(
        &files,
        &PlanRequest {
            inline_config: Some(SEED_WERF_YAML),
            ..PlanRequest::default()
        },
    )
    .unwrap();
    assert_eq!(inline.project, committed.project);
    assert_eq!(inline.sets, committed.sets);
    for image in ["backend", "frontend", "frontend-assets"] {
        assert_eq!(digest_of(&inline, image), digest_of(&committed, image));
    }
}

#[test]
fn malformed_inline_config_is_named_in_the_error() {
    let err = plan_files(
        &seed_files(SEED_WERF_YAML),
        &PlanRequest {
            inline_config: Some("project: shop\nconfigVersion: 1\n---\nimage: [\n"),
            ..PlanRequest::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("spec.config.inline"), "{err}");
}
