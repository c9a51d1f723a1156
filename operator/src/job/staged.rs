//! The builder job of a staged Dockerfile image (`staged: true`) × platform: one stage job
//! per missing instruction, each on its base or the stage before it.

use std::collections::BTreeMap;

use kiln_crds::job::{Instruction, ParentRef, StageBuild, StageJob};
use kiln_crds::werf::content_digest;

use super::{JobError, previous_stage_parent};
use crate::digest::PlannedStage;
use crate::digest::staged::{StageBase, StagedStep};
use crate::plan::project::ImagePlan;
use crate::storage::StageDescription;

/// The builder job stages of a staged image × platform's `missing` stages (indices into
/// `stages`, ascending; `found` has the stages storage's answer for every stage), and the
/// external images the job reads (`FROM` bases, `COPY --from` images).
///
/// The first stage of each Dockerfile stage is built on its base (an external image, or
/// the found image of the Dockerfile stage it is based on); every other stage on the stage
/// before it: `Previous` when that one is built in the same job, else its image in the
/// stages storage (the pod starts from the last found stage).
///
/// Errors: [`JobError::Unsupported`] for a stage without a final digest or an instruction the
/// builder has no form for; [`JobError::Internal`] when the inputs disagree.
pub fn stage_jobs(
    unit: &ImagePlan,
    stages: &[PlannedStage],
    missing: &[usize],
    found: &[Option<StageDescription>],
) -> Result<(Vec<StageJob>, Vec<String>), JobError> {
    let platform = unit.platform.to_string();
    let at = |i: usize| {
        format!(
            "image {:?} ({platform}), stage {} {:?}",
            unit.name,
            i + 1,
            stages[i].name
        )
    };
    let mut jobs = Vec::with_capacity(missing.len());
    let mut base_images: Vec<String> = Vec::new();
    for (k, &i) in missing.iter().enumerate() {
        let stage = stages
            .get(i)
            .ok_or_else(|| JobError::Internal(format!("{}: no such stage", unit.name)))?;
        if stage.provisional {
            return Err(JobError::Internal(format!(
                "{}: asked to build a stage whose digest is not final",
                at(i)
            )));
        }
        let build = stage
            .build
            .as_ref()
            .ok_or_else(|| JobError::Internal(format!("{}: not a staged stage", at(i))))?;
        let parent = match &build.base {
            Some(StageBase::Image(reference)) => {
                if reference != "scratch" && !base_images.contains(reference) {
                    base_images.push(reference.clone());
                }
                ParentRef::Image {
                    reference: reference.clone(),
                }
            }
            Some(StageBase::Stage { image_name, .. }) => ParentRef::Stage {
                reference: image_name.clone(),
            },
            None => previous_stage_parent(i, k, missing, found).ok_or_else(|| {
                JobError::Internal(format!(
                    "{}: the stage before it is neither found nor built in this job",
                    at(i)
                ))
            })?,
        };
        let build = match &build.step {
            StagedStep::From => StageBuild::From,
            StagedStep::Instruction { text, instruction } => {
                if let Instruction::Copy {
                    from: Some(from), ..
                } = instruction
                    && !base_images.contains(from)
                {
                    base_images.push(from.clone());
                }
                StageBuild::Instruction {
                    text: text.clone(),
                    instruction: instruction.clone(),
                }
            }
            StagedStep::Unsupported(reason) => {
                return Err(JobError::Unsupported(format!("{}: {reason}", at(i))));
            }
        };
        jobs.push(StageJob {
            name: stage.name.clone(),
            digest: stage.digest.clone(),
            content_digest: content_digest(&platform, &stage.name, &stage.digest, ""),
            parent,
            build,
            labels: BTreeMap::new(),
        });
    }
    Ok((jobs, base_images))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Platform as ConfigPlatform;
    use crate::digest::staged::StagedBuild;
    use crate::plan::project::{ImageBuildKind, StagePlan};
    use crate::storage::description::{Descriptor, Manifest};
    use crate::storage::{RepoRef, StageDigest, StageId};
    use kiln_crds::job::KeyValue;
    use std::str::FromStr;

    pub(crate) const ENV: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    pub(crate) const COPY: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    pub(crate) const RUN: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn planned(
        name: &str,
        digest: &str,
        base: Option<StageBase>,
        step: StagedStep,
    ) -> PlannedStage {
        PlannedStage {
            name: name.into(),
            digest: digest.into(),
            instruction: None,
            dockerfile_stage: Some(0),
            werf_image: Some("app".into()),
            provisional: false,
            build: Some(StagedBuild { base, step }),
        }
    }

    fn step(text: &str, instruction: Instruction) -> StagedStep {
        StagedStep::Instruction {
            text: text.into(),
            instruction,
        }
    }

    /// FROM busybox; ENV A=1; COPY --from=alpine:3.20 /etc/os-release /o; RUN true
    pub(crate) fn stages() -> Vec<PlannedStage> {
        vec![
            planned(
                "env",
                ENV,
                Some(StageBase::Image("busybox".into())),
                step(
                    "ENV A=1",
                    Instruction::Env {
                        vars: vec![KeyValue {
                            name: "A".into(),
                            value: "1".into(),
                        }],
                    },
                ),
            ),
            planned(
                "copy",
                COPY,
                None,
                step(
                    "COPY /etc/os-release /o",
                    Instruction::Copy {
                        sources: vec!["/etc/os-release".into()],
                        dest: "/o".into(),
                        from: Some("alpine:3.20".into()),
                        chown: None,
                        chmod: None,
                    },
                ),
            ),
            planned(
                "run",
                RUN,
                None,
                step(
                    "RUN true",
                    Instruction::Run {
                        command: vec!["true".into()],
                        prepend_shell: true,
                        env: vec![],
                        mounts: vec![],
                        network: None,
                    },
                ),
            ),
        ]
    }

    fn unit(stages: &[PlannedStage]) -> ImagePlan {
        ImagePlan {
            name: "app".into(),
            platform: ConfigPlatform::parse("linux/amd64").unwrap(),
            kind: ImageBuildKind::StagedDockerfile,
            is_final: true,
            depends_on: Vec::new(),
            stages: stages
                .iter()
                .map(|s| StagePlan {
                    name: s.name.clone(),
                    digest: (!s.provisional).then(|| s.digest.clone()),
                    provisional: None,
                    instruction: s.instruction.clone(),
                    pending_on: Vec::new(),
                    built_by: None,
                    werf_image: s.werf_image.clone(),
                })
                .collect(),
        }
    }

    pub(crate) fn found(digest: &str, ts: u64) -> StageDescription {
        let config = Descriptor {
            media_type: String::new(),
            digest: format!("sha256:{}", "1".repeat(64)),
            size: 10,
            platform: None,
        };
        StageDescription::new(
            StageId::new(StageDigest::from_str(digest).unwrap(), ts),
            RepoRef::from_str("127.0.0.1:5000/stg").unwrap(),
            format!("sha256:{}", "2".repeat(64)),
            100,
            Manifest::Image {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                config,
                layers: Vec::new(),
            },
            None,
        )
    }

    #[test]
    fn nothing_found_builds_every_stage_from_the_base() {
        let stages = stages();
        let (jobs, bases) =
            stage_jobs(&unit(&stages), &stages, &[0, 1, 2], &[None, None, None]).unwrap();
        let parents: Vec<&ParentRef> = jobs.iter().map(|j| &j.parent).collect();
        assert_eq!(
            parents,
            [
                &ParentRef::Image {
                    reference: "busybox".into()
                },
                &ParentRef::Previous,
                &ParentRef::Previous,
            ]
        );
        // FROM bases and COPY --from images, for a `network: none` pull.
        assert_eq!(bases, ["busybox", "alpine:3.20"]);
        let digests: Vec<(&str, &str, &str)> = jobs
            .iter()
            .map(|j| {
                (
                    j.name.as_str(),
                    j.digest.as_str(),
                    j.content_digest.as_str(),
                )
            })
            .collect();
        // Content digests: SHA3-224 of "1.2:::<name>-content::::::<digest>:::", computed
        // with Python's hashlib.
        assert_eq!(
            digests,
            [
                (
                    "env",
                    ENV,
                    "52eacdd4a1960acfad0ed9947ec97989e0eb7d5bd625aa3dab0072c3"
                ),
                (
                    "copy",
                    COPY,
                    "89c56607ab3a6a3b23fb2edbcc5526326e8b62e4372c7d709dc60741"
                ),
                (
                    "run",
                    RUN,
                    "8c9d375e23c6b02e4319aaea614ae07645075ea29bf9389b9175c191"
                ),
            ]
        );
        assert_eq!(
            jobs[2].build,
            StageBuild::Instruction {
                text: "RUN true".into(),
                instruction: Instruction::Run {
                    command: vec!["true".into()],
                    prepend_shell: true,
                    env: vec![],
                    mounts: vec![],
                    network: None,
                },
            }
        );
    }

    #[test]
    fn the_pod_starts_from_the_last_found_stage() {
        let stages = stages();
        let (jobs, bases) = stage_jobs(
            &unit(&stages),
            &stages,
            &[1, 2],
            &[Some(found(ENV, 1_700_000_000_000)), None, None],
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            jobs[0].parent,
            ParentRef::Stage {
                reference: format!("127.0.0.1:5000/stg:{ENV}-1700000000000"),
            }
        );
        assert_eq!(jobs[1].parent, ParentRef::Previous);
        assert_eq!(bases, ["alpine:3.20"]);
    }

    #[test]
    fn a_stage_on_another_dockerfile_stage_starts_from_its_image() {
        let mut stages = stages();
        stages[2].build.as_mut().unwrap().base = Some(StageBase::Stage {
            werf_image: "app/stage/base".into(),
            last_stage_digest: ENV.into(),
            image_name: "127.0.0.1:5000/stg:x-1".into(),
        });
        let (jobs, _) = stage_jobs(
            &unit(&stages),
            &stages,
            &[1, 2],
            &[Some(found(ENV, 1)), None, None],
        )
        .unwrap();
        assert_eq!(
            jobs[1].parent,
            ParentRef::Stage {
                reference: "127.0.0.1:5000/stg:x-1".into()
            }
        );
    }

    #[test]
    fn unbuildable_stages_are_refused_with_image_and_stage() {
        let mut stages = stages();
        stages[1].build.as_mut().unwrap().step =
            StagedStep::Unsupported("Dockerfile, line 3: COPY with a heredoc is not built".into());
        let err = stage_jobs(&unit(&stages), &stages, &[0, 1, 2], &[None, None, None]).unwrap_err();
        assert!(matches!(err, JobError::Unsupported(_)));
        assert_eq!(
            err.to_string(),
            "image \"app\" (linux/amd64), stage 2 \"copy\": Dockerfile, line 3: COPY with a heredoc is not built"
        );
        let mut stages = self::stages();
        stages[2].provisional = true;
        let err = stage_jobs(&unit(&stages), &stages, &[2], &[None, None, None]).unwrap_err();
        assert!(matches!(err, JobError::Internal(_)), "{err}");
        assert!(err.to_string().contains("stage 3 \"run\""), "{err}");
        // A missing stage whose predecessor is neither found nor in the job.
        let err = stage_jobs(
            &unit(&self::stages()),
            &self::stages(),
            &[2],
            &[None, None, None],
        )
        .unwrap_err();
        assert!(matches!(err, JobError::Internal(_)), "{err}");
    }
}
