//! The job compiler, pure (no API, registry or lock call): from a planned image × platform, the stages the storage has and
//! the build-time facts to the builder job of its missing stages — the one place that
//! dispatches on the image kind (non-staged Dockerfile, staged Dockerfile, Stapel).

mod dockerfile;
pub mod secrets;
pub mod staged;
pub mod stapel;

use std::collections::BTreeMap;

use kiln_crds::job::{BuildJob, JOB_API_VERSION, NetworkMode, ParentRef, Source, SourceAuth};
use kiln_crds::{ImageBuild, SpecErrors};

use crate::config::ImageKind;
use crate::digest::PlannedStage;
use crate::plan::project::{ImageBuildKind, ImagePlan, ProjectPlan};
use crate::pods;
use crate::storage::StageDescription;

/// Why a planned image × platform has no builder job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The image (or one of its stages) asks for something the builder does not build yet:
    /// the message names image, platform and stage or directive.
    #[error("{0}")]
    Unsupported(String),
    /// The spec lacks what werf.yaml asks for (a `spec.buildSecrets` entry of a werf.yaml
    /// secret), every missing one named.
    #[error("invalid ImageBuild spec: {0}")]
    InvalidSpec(#[source] SpecErrors),
    /// The plan and the stages found disagree (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// `file` inside the repository directory `dir` (`""` and `"."` are the root).
pub fn join_path(dir: &str, file: &str) -> String {
    let dir = dir.trim_matches('/');
    if dir.is_empty() || dir == "." {
        file.to_owned()
    } else {
        format!("{dir}/{file}")
    }
}

/// The parent of stage `i`, the `k`-th stage this job builds (`missing[k] == i`), when the
/// stage has no base of its own: the stage this job built just before it, else the stage
/// before it as found in the stages storage; `None` when it is neither (a bug in the plan).
/// Shared by staged Dockerfile and Stapel stage jobs: each stage is built on the one before.
pub fn previous_stage_parent(
    i: usize,
    k: usize,
    missing: &[usize],
    found: &[Option<StageDescription>],
) -> Option<ParentRef> {
    if k > 0 && missing[k - 1] + 1 == i {
        return Some(ParentRef::Previous);
    }
    let previous = found.get(i.checked_sub(1)?)?.as_ref()?;
    Some(ParentRef::Stage {
        reference: previous.image_name(),
    })
}

/// What the job of one image × platform is compiled from.
#[derive(Debug, Clone, Copy)]
pub struct JobInput<'a> {
    /// The build.
    pub ib: &'a ImageBuild,
    /// The builder's network for `RUN` (the parsed `spec.network`).
    pub network: NetworkMode,
    /// The plan of the pinned commit (with werf.yaml), after build-time facts.
    pub plan: &'a ProjectPlan,
    /// The image × platform.
    pub unit: &'a ImagePlan,
    /// Indices of the stages to build, ascending.
    pub missing: &'a [usize],
    /// One entry per stage of the unit: the stage found in the stages storage, if any.
    pub found: &'a [Option<StageDescription>],
    /// The resolved stages of a staged Dockerfile unit (build-time facts applied).
    pub staged_stages: Option<&'a [PlannedStage]>,
    /// The unit's dependency build args (`dependencies[].imports[].targetBuildArg`).
    pub dependency_args: &'a BTreeMap<String, String>,
    /// Registries reached over plain HTTP (operator settings).
    pub insecure_registries: &'a [String],
}

/// The build job of an image × platform's missing stages: for a non-staged Dockerfile image
/// one `dockerfile` stage built with `buildah bud` from the commit's context; for a staged
/// one a stage per missing instruction ([`staged::stage_jobs`]), built on the last
/// stage the stages storage has (`staged.found`).
///
/// A Stapel image gets a stage per missing stage ([`stapel::stage_jobs`]), on the
/// last stage the stages storage has.
///
/// Errors: [`JobError::Unsupported`] for Stapel images outside what Kiln builds and staged
/// stages the builder cannot build yet.
pub fn build_job(input: &JobInput<'_>) -> Result<BuildJob, JobError> {
    let JobInput {
        ib,
        network,
        plan,
        unit,
        missing,
        found,
        staged_stages,
        dependency_args,
        insecure_registries,
    } = *input;
    let config = &plan.config;
    let image = config.image(&unit.name).ok_or_else(|| {
        JobError::Internal(format!("planned image {:?} not in werf.yaml", unit.name))
    })?;
    let platform = unit.platform.to_string();
    let spec = &ib.spec;
    let auth = spec.source.git.secret_ref.as_ref().map(|_| {
        if spec.source.git.url.starts_with("http") {
            SourceAuth::Basic {
                username_path: format!("{}/username", pods::GIT_AUTH_DIR),
                password_path: format!("{}/password", pods::GIT_AUTH_DIR),
            }
        } else {
            SourceAuth::Ssh {
                private_key_path: format!("{}/ssh-privatekey", pods::GIT_AUTH_DIR),
                known_hosts_path: format!("{}/known_hosts", pods::GIT_AUTH_DIR),
            }
        }
    });
    let dockerfile = match &image.kind {
        ImageKind::Dockerfile(d) => Some(d),
        ImageKind::Stapel(_) => None,
    };
    let (stages, base_images) = if let ImageKind::Stapel(stapel) = &image.kind {
        let stages = stapel::stage_jobs(plan, unit, stapel, missing, found)?;
        let base_images = stages
            .iter()
            .filter_map(|s| match &s.parent {
                ParentRef::Image { reference } if reference != "scratch" => Some(reference.clone()),
                _ => None,
            })
            .collect();
        (stages, base_images)
    } else if unit.kind == ImageBuildKind::StagedDockerfile {
        let planned = staged_stages.ok_or_else(|| {
            JobError::Internal(format!(
                "image {:?} ({platform}): staged stages were not resolved",
                unit.name
            ))
        })?;
        staged::stage_jobs(unit, planned, missing, found)?
    } else {
        (dockerfile::stage_jobs(unit, missing), Vec::new())
    };
    let context = dockerfile
        .and_then(|d| d.context.clone())
        .unwrap_or_default();
    Ok(BuildJob {
        api_version: JOB_API_VERSION.to_owned(),
        project: plan.project.clone(),
        image: unit.name.clone(),
        commit: Some(plan.commit.clone()),
        source: Some(Source {
            url: spec.source.git.url.clone(),
            commit: plan.commit.clone(),
            auth,
        }),
        dockerfile_path: join_path(
            &context,
            dockerfile.map_or("Dockerfile", |d| d.dockerfile.as_str()),
        ),
        context_dir: context,
        target: dockerfile.and_then(|d| d.target.clone()),
        // Dependency build args win over werf.yaml `args`, as in werf.
        build_args: {
            let mut args = dockerfile
                .and_then(|d| d.args_as_strings().ok())
                .unwrap_or_default();
            args.extend(dependency_args.clone());
            args
        },
        add_hosts: dockerfile
            .map(|d| d.add_hosts().to_vec())
            .unwrap_or_default(),
        platform: Some(platform),
        network,
        ssh_key_paths: (0..spec.ssh_key_secret_refs.len())
            .map(pods::ssh_key_path)
            .collect(),
        secrets: secrets::for_image(spec, config, &unit.name)?,
        registry_mirrors: spec.registry_mirrors.clone(),
        insecure_registries: insecure_registries.to_vec(),
        registry_auth_path: spec
            .registry_secret_ref
            .as_ref()
            .map(|_| pods::REGISTRY_AUTH_FILE.to_owned()),
        repo: spec.repo.clone(),
        cache_repos: spec.cache_repos.clone(),
        base_images,
        stages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_paths_join_the_context() {
        assert_eq!(join_path("", "Dockerfile"), "Dockerfile");
        assert_eq!(join_path("frontend/", "Dockerfile"), "frontend/Dockerfile");
        assert_eq!(join_path(".", "Dockerfile"), "Dockerfile");
    }

    #[test]
    fn a_stage_is_built_on_the_one_before_it_in_the_job_else_on_the_one_found() {
        let digest = "a".repeat(56);
        let stage = staged::tests::found(&digest, 1);
        let found = vec![Some(stage.clone()), None, None];
        // Stages 1 and 2 are built: 1 on the found stage 0, 2 on 1 from this job.
        assert_eq!(
            previous_stage_parent(1, 0, &[1, 2], &found),
            Some(ParentRef::Stage {
                reference: stage.image_name()
            })
        );
        assert_eq!(
            previous_stage_parent(2, 1, &[1, 2], &found),
            Some(ParentRef::Previous)
        );
        // Stage 2 alone, with stage 1 neither found nor in the job: no parent.
        assert_eq!(previous_stage_parent(2, 0, &[2], &found), None);
        assert_eq!(previous_stage_parent(0, 0, &[0], &found), None);
    }
}
