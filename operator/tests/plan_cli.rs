//! `kiln-operator plan` as a user runs it: the binary on a temporary git repository, text and
//! JSON output, and non-zero exits with the cause on bad input.

mod plan_support;

use std::process::{Command, Output};

use plan_support::{SEED_WERF_YAML, TestRepo, seed_files};

fn run(repo: &TestRepo, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln-operator"))
        .arg("plan")
        .arg("--repo-dir")
        .arg(repo.path())
        .args(args)
        .env_remove("WERF_STAGED_DOCKERFILE_VERSION")
        .output()
        .expect("run kiln-operator")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn seed_repo() -> (TestRepo, String) {
    let repo = TestRepo::new();
    let commit = repo.commit(&seed_files(SEED_WERF_YAML));
    (repo, commit)
}

#[test]
fn text_output_prints_the_concurrent_builds_plan() {
    let (repo, commit) = seed_repo();
    let text = stdout(&run(&repo, &[]));
    let expected_plan = "\
┌ Concurrent builds plan (no more than 5 images at the same time)
│ Set #0:
│ - ⛵ image backend
│ - ⛵ image frontend
│
│ Set #1:
│ - ⛵ image frontend-assets
└ Concurrent builds plan (no more than 5 images at the same time)
";
    assert!(text.contains(expected_plan), "{text}");
    assert!(
        text.starts_with(&format!("Project shop, commit {commit}\n")),
        "{text}"
    );
    assert!(
        text.contains("┌ ⛵ image frontend-assets (linux/amd64)\n"),
        "{text}"
    );
    assert!(
        text.contains("│ after image frontend (Dockerfile stage application)\n"),
        "{text}"
    );
    assert_eq!(text.matches("│ dockerfile  ").count(), 3, "{text}");
}

#[test]
fn json_output_has_sets_and_stage_digests() {
    let (repo, _) = seed_repo();
    let out = stdout(&run(
        &repo,
        &["--output", "json", "--platform", "linux/amd64,linux/arm64"],
    ));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["sets"],
        serde_json::json!([["backend", "frontend"], ["frontend-assets"]])
    );
    let object = json.as_object().unwrap();
    assert_eq!(object.keys().collect::<Vec<_>>(), ["images", "sets"]);
    let images = json["images"].as_array().unwrap();
    assert_eq!(images.len(), 6);
    let units: Vec<String> = images
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["name"].as_str().unwrap(),
                i["platform"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(units[0], "backend linux/amd64");
    assert_eq!(units[1], "backend linux/arm64");
    assert_eq!(units[5], "frontend-assets linux/arm64");
    for image in images {
        assert_eq!(image.as_object().unwrap().len(), 3);
        let stages = image["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0]["name"], "dockerfile");
        assert_eq!(stages[0]["digest"].as_str().unwrap().len(), 56);
        assert_eq!(stages[0].as_object().unwrap().len(), 2);
    }
}

#[test]
fn revision_selects_an_older_commit() {
    let repo = TestRepo::new();
    let first = repo.commit(&seed_files(SEED_WERF_YAML));
    let only_backend = "project: shop\nconfigVersion: 1\n---\nimage: backend\ndockerfile: Dockerfile\ncontext: backend\n";
    repo.commit(&seed_files(only_backend));
    let head: serde_json::Value =
        serde_json::from_str(&stdout(&run(&repo, &["--output", "json"]))).unwrap();
    assert_eq!(head["sets"], serde_json::json!([["backend"]]));
    let old: serde_json::Value = serde_json::from_str(&stdout(&run(
        &repo,
        &["--output", "json", "--revision", &first[..10]],
    )))
    .unwrap();
    assert_eq!(old["sets"].as_array().unwrap().len(), 2);
}

#[test]
fn parallel_flags_change_the_plan() {
    let (repo, _) = seed_repo();
    let text = stdout(&run(&repo, &["--parallel-tasks-limit", "0"]));
    assert!(text.contains("┌ Concurrent builds plan\n"), "{text}");
    let out = stdout(&run(
        &repo,
        &["--parallel", "false", "--output", "json", "frontend"],
    ));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["sets"], serde_json::json!([["frontend"]]));
}

fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn bad_input_exits_non_zero_with_the_cause() {
    let (repo, _) = seed_repo();
    let err = failure(&run(&repo, &["--platform", "linux/amd65"]));
    assert!(err.contains("invalid --platform \"linux/amd65\""), "{err}");
    let err = failure(&run(&repo, &["nope"]));
    assert!(
        err.contains("image \"nope\" is not defined in werf.yaml"),
        "{err}"
    );
    let err = failure(&run(&repo, &["--revision", "no-such-branch"]));
    assert!(err.contains("no-such-branch"), "{err}");
    let err = failure(&run(&repo, &["--config", "missing.yaml"]));
    assert!(err.contains("missing.yaml not found at commit"), "{err}");

    let broken = TestRepo::new();
    broken.commit(&seed_files(
        "project: shop\nconfigVersion: 1\n---\nimage: a\n  dockerfile: D\n",
    ));
    let err = failure(&run(&broken, &[]));
    assert!(err.contains("werf.yaml, document 2"), "{err}");
    assert!(err.contains("YAML syntax error"), "{err}");
}

#[test]
fn stapel_stages_are_printed_with_provisional_notes() {
    let yaml = "project: shop
configVersion: 1
---
image: app
from: alpine:3.20
git:
- add: /
  to: /app
shell:
  install: [npm ci]
";
    let repo = TestRepo::new();
    let commit = repo.commit(&[("werf.yaml", yaml), ("package.json", "{}\n")]);
    let text = stdout(&run(&repo, &[]));
    assert!(text.contains("│ Stapel\n"), "{text}");
    // python3: sha3_224("1.2:::from:::" + sha256("alpine:3.20"))
    assert!(
        text.contains("│ from        fabcc5fa267a845ae1b203af61362adf86fa4b30bd2e16f84f23e911\n"),
        "{text}"
    );
    assert!(text.contains("│ gitArchive  "), "{text}");
    assert!(
        text.contains(&format!(
            "│             provisional: assumes stage gitArchive of image \"app\" is built at commit {commit}"
        )),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&repo, &["--output", "json"]))).unwrap();
    let stages = json["images"][0]["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["from", "gitArchive", "install"]);
    assert!(stages[0].get("provisional").is_none());
    assert!(stages[2]["provisional"].as_str().unwrap().contains(&commit));
}

#[test]
fn stapel_ansible_image_exits_non_zero_naming_it() {
    let yaml = "project: shop\nconfigVersion: 1\n---\nimage: legacy\nfrom: alpine\nansible:\n  install:\n  - shell: make\n";
    let repo = TestRepo::new();
    repo.commit(&[("werf.yaml", yaml)]);
    let err = failure(&run(&repo, &[]));
    assert!(
        err.contains("image legacy") && err.contains("ansible"),
        "{err}"
    );
}

#[test]
fn render_prints_the_rendered_werf_yaml_with_env_from_the_process() {
    let repo = TestRepo::new();
    let werf_yaml = "project: {{ env \"KILN_TEST_PROJECT\" }}\nconfigVersion: 1\n# env={{ .Env }}\n{{- include \"images\" . }}\n";
    let files = [
        ("werf.yaml", werf_yaml),
        (
            "werf-giterminism.yaml",
            "giterminismConfigVersion: 1\nconfig:\n  goTemplateRendering:\n    allowEnvVariables: [KILN_TEST_PROJECT]\n",
        ),
        (
            ".werf/images.tmpl",
            "{{ define \"images\" }}\n---\nimage: app\ndockerfile: Dockerfile\n{{- end }}",
        ),
        ("Dockerfile", "FROM busybox\n"),
    ];
    repo.commit(&files);
    let render = |args: &[&str], project: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln-operator"));
        command
            .arg("plan")
            .arg("--repo-dir")
            .arg(repo.path())
            .args(args)
            .env_remove("WERF_ENV")
            .env_remove("WERF_LOOSE_GITERMINISM")
            .env_remove("KILN_TEST_PROJECT");
        if let Some(p) = project {
            command.env("KILN_TEST_PROJECT", p);
        }
        command.output().expect("run kiln-operator")
    };
    let out = stdout(&render(&["--render", "--env", "staging"], Some("shop")));
    assert_eq!(
        out,
        "project: shop\nconfigVersion: 1\n# env=staging\n---\nimage: app\ndockerfile: Dockerfile\n"
    );
    // The plan renders the same way.
    let plan = stdout(&render(&[], Some("shop")));
    assert!(plan.starts_with("Project shop, commit "), "{plan}");
    // Unset and without a default: werf's giterminism error, naming the variable.
    let failed = render(&["--render"], None);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("werf.yaml, line 1: template: werfConfig:1:13: executing \"werfConfig\" at <env \"KILN_TEST_PROJECT\">: error calling env: the environment variable \"KILN_TEST_PROJECT\" must be set or default must be provided"),
        "{stderr}"
    );
    // --loose-giterminism renders it empty.
    let loose = stdout(&render(&["--render", "--loose-giterminism"], None));
    assert!(loose.starts_with("project: \n"), "{loose}");
}

#[test]
fn staged_multi_stage_images_are_split_into_stage_images_and_digest_mode_is_a_flag() {
    let repo = TestRepo::new();
    repo.commit(&[
        (
            "werf.yaml",
            "project: pdf\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\nstaged: true\n",
        ),
        (
            "Dockerfile",
            "FROM alpine:3.18 AS build\nRUN echo built > /b\n\nFROM alpine:3.18\nCOPY --from=build /b /b\nCMD [\"cat\", \"/b\"]\n",
        ),
    ]);
    let werf: serde_json::Value =
        serde_json::from_str(&stdout(&run(&repo, &["--output", "json"]))).unwrap();
    // werf: the `build` stage is an image of its own, built in the set before `app`.
    assert_eq!(
        werf["sets"],
        serde_json::json!([["app/stage/build"], ["app"]])
    );
    let stages = |json: &serde_json::Value, image: &str| -> Vec<(String, String)> {
        json["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == image)
            .unwrap_or_else(|| panic!("no image {image}: {json}"))["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let build = stages(&werf, "app/stage/build");
    let names: Vec<&str> = build.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["RUN"]);
    let app = stages(&werf, "app");
    let names: Vec<&str> = app.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["COPY", "CMD"]);

    let text = stdout(&run(&repo, &[]));
    assert!(text.contains("│ - ⛵ image app/stage/build\n"), "{text}");

    let strict: serde_json::Value = serde_json::from_str(&stdout(&run(
        &repo,
        &["--output", "json", "--digest-mode", "strict"],
    )))
    .unwrap();
    assert_eq!(strict["sets"], werf["sets"]);
    assert_ne!(stages(&strict, "app/stage/build"), build);
    let bad = run(&repo, &["--digest-mode", "loose"]);
    assert!(!bad.status.success());
}
