//! Golden vectors from a real werf v2.62.1: for every case under `tests/data/werf-oracle/`,
//! `setup.sh` recreates the project's git repository (fixed authors and dates, so the same
//! commit ids) and `expected.json` holds the stage digests and build sets werf computed at
//! each tagged revision. Kiln's default (werf) digest mode must give the same, byte for byte.
//!
//! Each revision is planned twice: offline, as `kiln-operator plan` does, where stages that
//! need a build-time fact are skipped (`needs_base_env`, `needs_dependency_image`); and with
//! the facts werf had (`base_images`, `dependency_images`), fed the way the controller feeds
//! them, where every stage is compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use kiln_operator::config::Platform;
use kiln_operator::digest::DigestMode;
use kiln_operator::digest::staged::StagedInputs;
use kiln_operator::digest::stapel::Offline as StapelOffline;
use kiln_operator::plan::project::{
    DockerfileFacts, ImportValues, PlanRequest, ProjectPlan, StagedDockerfileVersion, plan_project,
    plan_project_with_facts,
};
use kiln_operator::plan::stage_images::{werf_images, werf_sets};
use kiln_operator::source::GitTree;

/// The build-time facts of one revision, from `expected.json`.
struct Facts {
    /// Base image reference → its config `Env`.
    base_env: BTreeMap<String, BTreeMap<String, String>>,
    /// werf image → import kind (`ImageName`, `ImageRepo`) → value.
    built: BTreeMap<String, BTreeMap<String, String>>,
}

impl StagedInputs for Facts {
    fn base_image_env(&self, reference: &str, _: &str) -> Option<BTreeMap<String, String>> {
        self.base_env.get(reference).cloned()
    }
    fn stage_image_name(&self, werf_image: &str, _: &str) -> Option<String> {
        self.import_value(werf_image, "ImageName")
    }
}

impl ImportValues for Facts {
    fn import_value(&self, image: &str, kind: &str) -> Option<String> {
        self.built.get(image)?.get(kind).cloned()
    }
}

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/werf-oracle")
        .join(name)
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn base_env(exp: &Value) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (reference, config) in exp["base_images"].as_object().into_iter().flatten() {
        let env = config["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.insert(reference.clone(), env);
    }
    out
}

/// `(name, digest)` of each stage of werf image `name` on `platform` in `plan`.
fn planned(
    plan: &ProjectPlan,
    name: &str,
    platform: &str,
) -> Option<Vec<(String, Option<String>)>> {
    werf_images(&plan.images)
        .into_iter()
        .find(|i| i.name == name && i.platform.to_string() == platform)
        .map(|i| {
            i.stages
                .iter()
                .map(|s| (s.name.clone(), s.digest.clone()))
                .collect()
        })
}

fn sorted_sets(sets: &[Vec<String>]) -> Vec<Vec<String>> {
    sets.iter()
        .map(|s| {
            let mut s = s.clone();
            s.sort();
            s
        })
        .collect()
}

/// Plans every revision of the case and returns the differences (empty when werf and Kiln
/// agree) and the number of comparisons made.
fn check_case(name: &str) -> (Vec<String>, usize) {
    let dir = case_dir(name);
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json is JSON");
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = tmp.path().join("repo");
    let status = Command::new("bash")
        .arg(dir.join("setup.sh"))
        .arg(&repo)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run setup.sh");
    assert!(status.success(), "{name}: setup.sh failed");

    let platforms: Vec<Platform> = exp["platform"]
        .as_str()
        .map(|p| vec![Platform::parse(p).expect("case platform")])
        .unwrap_or_default();
    let config_path = exp["config"].as_str().unwrap_or("werf.yaml").to_string();
    let staged_version = match exp["env"]["WERF_STAGED_DOCKERFILE_VERSION"].as_str() {
        Some("v2") => StagedDockerfileVersion::V2,
        _ => StagedDockerfileVersion::V1,
    };
    let request = PlanRequest {
        config_path: &config_path,
        platforms: &platforms,
        staged_dockerfile_version: staged_version,
        digest_mode: DigestMode::Werf,
        ..PlanRequest::default()
    };

    let mut failures = Vec::new();
    let mut compared = 0;
    for (rev, want) in exp["revisions"].as_object().expect("revisions") {
        let tree = GitTree::open(&repo, Some(rev)).expect("open revision");
        assert_eq!(
            Some(tree.commit_id()),
            want["commit"].as_str(),
            "{name} {rev}: setup.sh made another commit than werf saw"
        );
        let facts = Facts {
            base_env: base_env(&exp),
            built: want["dependency_images"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(image, values)| (image.clone(), str_map(values)))
                .collect(),
        };
        let offline = plan_project(&tree, &request).expect("offline plan");
        let exact = plan_project_with_facts(
            &tree,
            &request,
            &StapelOffline,
            &DockerfileFacts {
                staged: &facts,
                imports: &facts,
            },
        )
        .expect("plan with facts");
        for image in want["images"].as_array().expect("images") {
            let image_name = image["name"].as_str().expect("image name");
            let platform = image["platform"].as_str().expect("image platform");
            let stages = image["stages"].as_array().expect("stages");
            for (mode, plan) in [("offline", &offline), ("with facts", &exact)] {
                let Some(have) = planned(plan, image_name, platform) else {
                    failures.push(format!(
                        "{name} {rev} {image_name} {platform} ({mode}): not planned"
                    ));
                    continue;
                };
                for (i, stage) in stages.iter().enumerate() {
                    let needs_fact = stage["needs_base_env"].as_bool().unwrap_or(false)
                        || stage["needs_dependency_image"].as_bool().unwrap_or(false);
                    if needs_fact && mode == "offline" {
                        continue;
                    }
                    let want_stage = (
                        stage["name"].as_str().unwrap_or_default().to_string(),
                        stage["digest"].as_str().map(str::to_string),
                    );
                    compared += 1;
                    if have.get(i) != Some(&want_stage) {
                        failures.push(format!(
                            "{name} {rev} {image_name} {platform} stage #{} ({mode}): werf {want_stage:?}, kiln {:?}",
                            i + 1,
                            have.get(i)
                        ));
                    }
                }
            }
        }
        if want["sets_printed_by_werf"].as_bool().unwrap_or(false) {
            // Where the seed document orders images differently from werf's code, the case
            // names Kiln's sets (`kiln_sets`).
            let expected: Vec<Vec<String>> =
                serde_json::from_value(want.get("kiln_sets").unwrap_or(&want["sets"]).clone())
                    .expect("sets");
            compared += 1;
            let have = werf_sets(&offline.sets, &offline.stage_images);
            if sorted_sets(&have) != sorted_sets(&expected) {
                failures.push(format!(
                    "{name} {rev} sets: expected {expected:?}, kiln {have:?}"
                ));
            }
        }
    }
    (failures, compared)
}

macro_rules! oracle_case {
    ($test:ident, $case:literal) => {
        #[test]
        fn $test() {
            let (failures, compared) = check_case($case);
            assert!(compared > 0, "{}: nothing compared", $case);
            assert!(
                failures.is_empty(),
                "{} of {compared} differ from werf:\n{}",
                failures.len(),
                failures.join("\n")
            );
        }
    };
}

oracle_case!(copy_all, "01-copy-all");
oracle_case!(copy_filters, "02-copy-filters");
oracle_case!(args, "03-args");
oracle_case!(quoting, "04-quoting");
oracle_case!(targets, "05-targets");
oracle_case!(staged_instructions, "06-staged-instructions");
oracle_case!(staged_base_env, "07-staged-base-env");
oracle_case!(staged_v2, "08-staged-v2");
oracle_case!(staged_multistage, "09-staged-multistage");
oracle_case!(platforms, "10-platforms");
oracle_case!(context_add_files, "11-context-add-files");
oracle_case!(stapel_dependencies, "12-stapel-dependencies");
oracle_case!(platforms_default, "13-platforms-default");

#[test]
fn every_case_in_the_data_directory_has_a_test() {
    let mut cases: Vec<String> = std::fs::read_dir(case_dir(""))
        .expect("werf-oracle data")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| case_dir(n).join("expected.json").is_file())
        .collect();
    cases.sort();
    assert_eq!(
        cases.len(),
        13,
        "add an oracle_case! line for each new case"
    );
}
