//! Stapel images in the job compiler: which ones Kiln builds, and the builder job of their
//! missing stages.
//!
//! Kiln builds the Stapel images whose every stage digest the plan computes exactly: an
//! external `from` base (or `scratch`), `shell` user stages and `docker` instructions. Git
//! mappings, `import`/`dependencies`, `fromImage`/`fromArtifact`, `fromLatest`, `imageSpec`,
//! build-time `mount`s, `secrets` and `docker.HEALTHCHECK` are refused with
//! [`JobError::Unsupported`] naming the image and the directive.
//!
//! How each stage is built (werf's Stapel builder, reproduced with the staged build model of
//! the job, [`kiln_crds::job`]):
//! - `from`: the base image itself, relabelled and published ([`StageBuild::From`]);
//! - `beforeInstall`, `install`, `beforeSetup`, `setup`: one `RUN` of the stage's commands as
//!   one script, stopping at the first failing command (`/bin/sh -ec`, as werf's stage script
//!   runs with `set -e`), with `WERF_COMMIT_HASH`, `WERF_COMMIT_TIME_HUMAN` and
//!   `WERF_COMMIT_TIME_UNIX` in the command's environment only (werf sets them in Stapel
//!   containers; they do not enter the digest nor the image config);
//! - `dockerInstructions`: the config changes `VOLUME`, `EXPOSE`, `ENV`, `LABEL`, `CMD`,
//!   `ENTRYPOINT`, `WORKDIR`, `USER` in that order, committed as one stage
//!   ([`StageBuild::Instructions`]).

use std::collections::BTreeMap;

use kiln_crds::job::{Instruction, InstructionStep, KeyValue, ParentRef, StageBuild, StageJob};

use super::{JobError, previous_stage_parent};
use crate::config::{DockerInstructions, StapelImage, StringList};
use crate::digest::stapel::content_digest;
use crate::digest::stapel::deps::{docker_section, next_stage_git_dependencies};
use crate::plan::project::{ImagePlan, ProjectPlan};
use crate::storage::StageDescription;

/// The Stapel stages Kiln builds.
const BUILT_STAGES: [&str; 6] = [
    "from",
    "beforeInstall",
    "install",
    "beforeSetup",
    "setup",
    "dockerInstructions",
];

/// User stages: their next-stage dependencies are the git commits of the image's mappings
/// (werf treats them as git-related stages), the SHA-256 of nothing without mappings.
const USER_STAGES: [&str; 4] = ["beforeInstall", "install", "beforeSetup", "setup"];

/// The stage digests of a Stapel image × platform, in build order, when Kiln builds it.
///
/// Errors: [`JobError::Unsupported`] naming the image and what Kiln does not build: a werf
/// image it is based on or imports from (`fromImage`, `import`, `dependencies`), a stage of
/// git mappings, imports or `imageSpec`, or a digest the plan could not compute exactly.
pub fn unit_digests(unit: &ImagePlan) -> Result<Vec<String>, JobError> {
    let unsupported =
        |what: String| JobError::Unsupported(format!("Stapel image {:?}: {what}", unit.name));
    if let Some((image, relation)) = unit.depends_on.first() {
        return Err(unsupported(format!(
            "{relation} {image:?} is not built by Kiln yet (only external `from` bases)"
        )));
    }
    unit.stages
        .iter()
        .map(|s| {
            if !BUILT_STAGES.contains(&s.name.as_str()) {
                let what = match s.name.as_str() {
                    "gitArchive" | "gitCache" | "gitLatestPatch" => "git mappings",
                    "imageSpec" => "imageSpec",
                    _ if s.name.starts_with("dependencies") => "import/dependencies",
                    _ => "this stage",
                };
                return Err(unsupported(format!(
                    "stage {} ({what}) is not built by Kiln yet",
                    s.name
                )));
            }
            match (&s.digest, &s.provisional) {
                (Some(digest), None) => Ok(digest.clone()),
                (Some(_), Some(assumes)) => Err(unsupported(format!(
                    "stage {} is only provisional ({assumes})",
                    s.name
                ))),
                (None, _) => Err(unsupported(format!(
                    "stage {} waits for {}, which Kiln does not build yet",
                    s.name,
                    s.pending_on.join(", ")
                ))),
            }
        })
        .collect()
}

/// Refuses the directives of a Stapel image that change how it is built but that Kiln does
/// not build yet (see the module docs).
///
/// Errors: [`JobError::Unsupported`] naming the image and the directive.
pub fn check_supported(name: &str, image: &StapelImage) -> Result<(), JobError> {
    let refused = [
        (!image.git.is_empty(), "git mappings"),
        (!image.import.is_empty(), "import"),
        (!image.dependencies.is_empty(), "dependencies"),
        (image.from_image.is_some(), "fromImage"),
        (image.from_artifact.is_some(), "fromArtifact"),
        (image.from_latest == Some(true), "fromLatest"),
        (image.ansible.is_some(), "ansible"),
        (image.image_spec.is_some(), "imageSpec"),
        (!image.mount.is_empty(), "mount"),
        (!image.secrets.is_empty(), "secrets"),
        (
            image
                .docker
                .as_ref()
                .is_some_and(|d| d.healthcheck.is_some()),
            "docker.HEALTHCHECK",
        ),
    ];
    match refused.iter().find(|(present, _)| *present) {
        Some((_, what)) => Err(JobError::Unsupported(format!(
            "Stapel image {name:?}: {what} is not built by Kiln yet"
        ))),
        None => Ok(()),
    }
}

/// The stage jobs of the missing stages (`missing`: indexes into `unit.stages`, in build
/// order) of a Stapel image × platform, each on the previous stage: the one built just
/// before it in the job, else the one the stages storage has (`found`, one entry per stage).
/// The `from` stage is built on the external base `from` (`scratch` when absent).
///
/// Errors: [`JobError::Unsupported`] (see [`check_supported`], [`unit_digests`]);
/// [`JobError::Internal`] when the plan and `found` disagree.
pub fn stage_jobs(
    plan: &ProjectPlan,
    unit: &ImagePlan,
    image: &StapelImage,
    missing: &[usize],
    found: &[Option<StageDescription>],
) -> Result<Vec<StageJob>, JobError> {
    check_supported(&unit.name, image)?;
    let digests = unit_digests(unit)?;
    let platform = unit.platform.to_string();
    let env = commit_env(plan)?;
    let shell = image.shell.clone().unwrap_or_default();
    let mut jobs = Vec::with_capacity(missing.len());
    for (k, &i) in missing.iter().enumerate() {
        let (stage, digest) = unit
            .stages
            .get(i)
            .zip(digests.get(i))
            .ok_or_else(|| JobError::Internal(format!("{}: no stage {i}", unit.name)))?;
        let name = stage.name.as_str();
        let parent = if name == "from" {
            ParentRef::Image {
                reference: image.from.clone().unwrap_or_else(|| "scratch".into()),
            }
        } else {
            previous_stage_parent(i, k, missing, found).ok_or_else(|| {
                JobError::Internal(format!(
                    "Stapel image {:?}: the stage before {name} is neither found nor built in this job",
                    unit.name
                ))
            })?
        };
        let build = match name {
            "from" => StageBuild::From,
            "beforeInstall" => run_stage(&shell.before_install, &env),
            "install" => run_stage(&shell.install, &env),
            "beforeSetup" => run_stage(&shell.before_setup, &env),
            "setup" => run_stage(&shell.setup, &env),
            "dockerInstructions" => {
                let docker = image.docker.as_ref().ok_or_else(|| {
                    JobError::Internal(format!(
                        "Stapel image {:?}: a dockerInstructions stage without `docker`",
                        unit.name
                    ))
                })?;
                StageBuild::Instructions {
                    steps: docker_steps(docker).map_err(|m| {
                        JobError::Unsupported(format!("Stapel image {:?}: {m}", unit.name))
                    })?,
                }
            }
            other => {
                return Err(JobError::Unsupported(format!(
                    "Stapel image {:?}: stage {other} is not built by Kiln yet",
                    unit.name
                )));
            }
        };
        // Without git mappings a user stage's next-stage dependencies are SHA-256 of nothing.
        let next = if USER_STAGES.contains(&name) {
            next_stage_git_dependencies(&[])
        } else {
            String::new()
        };
        jobs.push(StageJob {
            name: name.to_owned(),
            digest: digest.clone(),
            content_digest: content_digest(&platform, name, digest, &next),
            parent,
            build,
            labels: BTreeMap::new(),
        });
    }
    Ok(jobs)
}

/// werf's commit environment of Stapel containers: `WERF_COMMIT_HASH` (40 hex),
/// `WERF_COMMIT_TIME_HUMAN` (Go's `time.Time.String()` in UTC, `2024-05-01 12:00:00 +0000
/// UTC`) and `WERF_COMMIT_TIME_UNIX` (seconds).
fn commit_env(plan: &ProjectPlan) -> Result<Vec<KeyValue>, JobError> {
    let seconds = plan.commit_time_unix.ok_or_else(|| {
        JobError::Internal(format!("the time of commit {} is unknown", plan.commit))
    })?;
    let time = k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map_err(|e| JobError::Internal(format!("commit {} time {seconds}: {e}", plan.commit)))?;
    let kv = |name: &str, value: String| KeyValue {
        name: name.to_owned(),
        value,
    };
    Ok(vec![
        kv("WERF_COMMIT_HASH", plan.commit.clone()),
        kv(
            "WERF_COMMIT_TIME_HUMAN",
            time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        ),
        kv("WERF_COMMIT_TIME_UNIX", seconds.to_string()),
    ])
}

/// One user stage: its commands as one script run with `/bin/sh -ec` (stops at the first
/// failing command, as werf's stage script does).
fn run_stage(commands: &Option<StringList>, env: &[KeyValue]) -> StageBuild {
    let commands = commands.as_ref().map(|l| l.0.clone()).unwrap_or_default();
    let script = commands.join("\n");
    StageBuild::Instruction {
        text: format!("RUN {}", commands.join(" && ")),
        instruction: Instruction::Run {
            command: vec!["/bin/sh".into(), "-ec".into(), script],
            prepend_shell: false,
            env: env.to_vec(),
            mounts: Vec::new(),
            network: None,
        },
    }
}

/// The config changes of a `docker` section in werf's order, from the one expansion its
/// digest also uses ([`docker_section`]).
///
/// Errors: a non-scalar ENV/LABEL value, naming it; an empty section.
fn docker_steps(docker: &DockerInstructions) -> Result<Vec<InstructionStep>, String> {
    let steps: Vec<InstructionStep> = docker_section(docker)?
        .instructions()
        .into_iter()
        .map(|(text, instruction)| InstructionStep { text, instruction })
        .collect();
    if steps.is_empty() {
        return Err("an empty `docker` section".into());
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageKind;
    use crate::plan::project::{PlanRequest, plan_project};
    use crate::source::GitTree;
    use crate::storage::description::{Descriptor, Manifest};
    use crate::storage::{RepoRef, StageDigest, StageId};
    use sha3::Digest;
    use std::str::FromStr;

    const WERF_YAML: &str = "project: shop
configVersion: 1
---
image: app
from: busybox
shell:
  beforeInstall:
  - echo one > /stapel.txt
  - echo two >> /stapel.txt
  install: [echo installed > /installed.txt]
docker:
  ENV: {GREETING: hello, A_NUMBER: 7}
  CMD: [cat, /stapel.txt]
  WORKDIR: /srv
";

    /// Commits `werf_yaml` with committer time 1700000000 (2023-11-14 22:13:20 UTC) and
    /// plans it.
    fn planned(werf_yaml: &str) -> (tempfile::TempDir, ProjectPlan) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let blob = repo.blob(werf_yaml.as_bytes()).unwrap();
        let mut tb = repo.treebuilder(None).unwrap();
        tb.insert("werf.yaml", blob, 0o100644).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let sig =
            git2::Signature::new("t", "t@example.org", &git2::Time::new(1_700_000_000, 0)).unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &[])
            .unwrap();
        let tree = GitTree::open(dir.path(), None).unwrap();
        let plan = plan_project(&tree, &PlanRequest::default()).unwrap();
        (dir, plan)
    }

    fn stapel(plan: &ProjectPlan) -> &StapelImage {
        match &plan.config.image("app").unwrap().kind {
            ImageKind::Stapel(s) => s,
            ImageKind::Dockerfile(_) => panic!("not Stapel"),
        }
    }

    fn found(digest: &str, ts: u64) -> StageDescription {
        StageDescription::new(
            StageId::new(StageDigest::from_str(digest).unwrap(), ts),
            RepoRef::from_str("127.0.0.1:5000/stg").unwrap(),
            format!("sha256:{}", "2".repeat(64)),
            100,
            Manifest::Image {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                config: Descriptor {
                    media_type: String::new(),
                    digest: format!("sha256:{}", "1".repeat(64)),
                    size: 10,
                    platform: None,
                },
                layers: Vec::new(),
            },
            None,
        )
    }

    fn sha3_224(text: &str) -> String {
        sha3::Sha3_224::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn every_stage_of_a_new_image_is_built_in_order() {
        let (_dir, plan) = planned(WERF_YAML);
        let unit = &plan.images[0];
        let names: Vec<&str> = unit.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["from", "beforeInstall", "install", "dockerInstructions"]
        );
        let jobs = stage_jobs(&plan, unit, stapel(&plan), &[0, 1, 2, 3], &[]).unwrap();
        assert_eq!(jobs.len(), 4);
        for (job, stage) in jobs.iter().zip(&unit.stages) {
            assert_eq!(Some(&job.digest), stage.digest.as_ref());
            assert_eq!(job.name, stage.name);
        }
        assert_eq!(
            jobs[0].parent,
            ParentRef::Image {
                reference: "busybox".into()
            }
        );
        assert_eq!(jobs[0].build, StageBuild::From);
        let env = vec![
            KeyValue {
                name: "WERF_COMMIT_HASH".into(),
                value: plan.commit.clone(),
            },
            KeyValue {
                name: "WERF_COMMIT_TIME_HUMAN".into(),
                value: "2023-11-14 22:13:20 +0000 UTC".into(),
            },
            KeyValue {
                name: "WERF_COMMIT_TIME_UNIX".into(),
                value: "1700000000".into(),
            },
        ];
        assert_eq!(jobs[1].parent, ParentRef::Previous);
        assert_eq!(
            jobs[1].build,
            StageBuild::Instruction {
                text: "RUN echo one > /stapel.txt && echo two >> /stapel.txt".into(),
                instruction: Instruction::Run {
                    command: vec![
                        "/bin/sh".into(),
                        "-ec".into(),
                        "echo one > /stapel.txt\necho two >> /stapel.txt".into()
                    ],
                    prepend_shell: false,
                    env: env.clone(),
                    mounts: vec![],
                    network: None,
                }
            }
        );
        let StageBuild::Instruction {
            instruction: Instruction::Run { command, .. },
            ..
        } = &jobs[2].build
        else {
            panic!("install is not a RUN: {:?}", jobs[2].build);
        };
        assert_eq!(command[2], "echo installed > /installed.txt");
        let StageBuild::Instructions { steps } = &jobs[3].build else {
            panic!("dockerInstructions: {:?}", jobs[3].build);
        };
        let instructions: Vec<&Instruction> = steps.iter().map(|s| &s.instruction).collect();
        let kv = |n: &str, v: &str| KeyValue {
            name: n.into(),
            value: v.into(),
        };
        assert_eq!(
            instructions,
            [
                &Instruction::Env {
                    vars: vec![kv("A_NUMBER", "7"), kv("GREETING", "hello")]
                },
                &Instruction::Cmd {
                    command: vec!["cat".into(), "/stapel.txt".into()],
                    prepend_shell: false
                },
                &Instruction::Workdir {
                    path: "/srv".into()
                },
            ]
        );
        // Content digests: SHA3-224 of "1.2:::<stage>-content:::::::<digest>:::<next>", where
        // a user stage's next-stage dependencies are SHA-256("") without git mappings.
        let empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            jobs[0].content_digest,
            sha3_224(&format!("1.2:::from-content::::::{}:::", jobs[0].digest))
        );
        assert_eq!(
            jobs[2].content_digest,
            sha3_224(&format!(
                "1.2:::install-content::::::{}:::{empty_sha256}",
                jobs[2].digest
            ))
        );
    }

    #[test]
    fn a_later_stage_is_built_on_the_stage_the_storage_has() {
        let (_dir, plan) = planned(WERF_YAML);
        let unit = &plan.images[0];
        let digests = unit_digests(unit).unwrap();
        let found = vec![
            Some(found(&digests[0], 1)),
            Some(found(&digests[1], 2)),
            None,
            None,
        ];
        let jobs = stage_jobs(&plan, unit, stapel(&plan), &[2, 3], &found).unwrap();
        assert_eq!(
            jobs[0].parent,
            ParentRef::Stage {
                reference: format!("127.0.0.1:5000/stg:{}-2", digests[1])
            }
        );
        assert_eq!(jobs[1].parent, ParentRef::Previous);
        // Nothing found before a missing stage: the plan and the lookup disagree.
        let err = stage_jobs(&plan, unit, stapel(&plan), &[2], &[]).unwrap_err();
        assert!(matches!(err, JobError::Internal(_)), "{err}");
    }

    #[test]
    fn git_mappings_are_refused_naming_the_image() {
        let yaml = WERF_YAML.replace(
            "from: busybox\n",
            "from: busybox\ngit:\n- add: /\n  to: /app\n",
        );
        let (_dir, plan) = planned(&yaml);
        let err = unit_digests(&plan.images[0]).unwrap_err().to_string();
        assert_eq!(
            err,
            "Stapel image \"app\": stage gitArchive (git mappings) is not built by Kiln yet"
        );
        let err = check_supported("app", stapel(&plan))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "Stapel image \"app\": git mappings is not built by Kiln yet"
        );
    }

    #[test]
    fn other_directives_are_refused_naming_them() {
        let cases = [
            ("mount:\n- from: tmp_dir\n  to: /tmp/cache\n", "mount"),
            ("fromLatest: true\n", "fromLatest"),
        ];
        for (extra, what) in cases {
            let yaml = format!("{WERF_YAML}{extra}");
            let (_dir, plan) = planned(&yaml);
            let err = check_supported("app", stapel(&plan))
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!("Stapel image \"app\": {what} is not built by Kiln yet")
            );
        }
        let yaml = WERF_YAML.replace("  WORKDIR: /srv\n", "  HEALTHCHECK: CMD true\n");
        let (_dir, plan) = planned(&yaml);
        let err = stage_jobs(&plan, &plan.images[0], stapel(&plan), &[0], &[]).unwrap_err();
        assert!(err.to_string().contains("docker.HEALTHCHECK"), "{err}");
        // fromLatest leaves `from` pending: unit_digests names the stage.
        let (_dir, plan) = planned(&format!("{WERF_YAML}fromLatest: true\n"));
        let err = unit_digests(&plan.images[0]).unwrap_err().to_string();
        assert!(
            err.starts_with("Stapel image \"app\": stage from waits for"),
            "{err}"
        );
    }

    #[test]
    fn images_based_on_werf_images_are_refused() {
        let yaml =
            format!("{WERF_YAML}---\nimage: child\nfromImage: app\nshell:\n  install: [true]\n");
        let (_dir, plan) = planned(&yaml);
        let child = plan.images.iter().find(|u| u.name == "child").unwrap();
        let err = unit_digests(child).unwrap_err().to_string();
        assert_eq!(
            err,
            "Stapel image \"child\": fromImage \"app\" is not built by Kiln yet (only external `from` bases)"
        );
    }
}
