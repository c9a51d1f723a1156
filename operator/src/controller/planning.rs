//! Planning step: werf.yaml at the resolved commit → build sets and each image × platform's
//! stages with digests (the pure planner in [`crate::plan::project`]), recorded in the status.

use std::path::Path;

use kiln_crds::imagebuild::BuildPlanStatus;
use kiln_crds::{ConfigSource, ImageBuild, ImageBuildStatus, Phase, Reason};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{Context, Error, now, source, status, write_status};
use crate::config::{Platform, WerfConfig};
use crate::plan::ParallelOptions;
use crate::plan::project::{
    PlanRequest, ProjectPlan, StagedDockerfileVersion as PlannerStaged, plan_project,
};
use crate::source::GitTree;

/// The spec's platforms, parsed and normalized as werf does (`linux/aarch64` → `linux/arm64`).
///
/// Errors: [`Error::InvalidPlatform`] naming the platform.
pub fn spec_platforms(ib: &ImageBuild) -> Result<Vec<Platform>, Error> {
    ib.spec
        .platforms
        .iter()
        .map(|p| {
            Platform::parse(p).map_err(|message| Error::InvalidPlatform {
                platform: p.clone(),
                message,
            })
        })
        .collect()
}

/// Plans `ib` at `commit` from the mirror at `mirror`, on a blocking thread.
///
/// Errors: [`Error::Unsupported`] for `spec.config.inline` (the planner reads werf.yaml from
/// the commit only), [`Error::InvalidPlatform`], [`Error::Plan`].
pub async fn plan(ib: &ImageBuild, mirror: &Path, commit: &str) -> Result<ProjectPlan, Error> {
    let config_path = match ib.spec.config_source() {
        Ok(ConfigSource::Default) => "werf.yaml".to_owned(),
        Ok(ConfigSource::Path(p)) => p.to_owned(),
        Ok(ConfigSource::Inline(_)) => {
            return Err(Error::Unsupported(
                "spec.config.inline is not supported yet: commit werf.yaml and set spec.config.path"
                    .into(),
            ));
        }
        Err(e) => return Err(Error::InvalidSpec(kiln_crds::SpecErrors(vec![e]))),
    };
    let platforms = spec_platforms(ib)?;
    let images = ib.spec.images.clone();
    let staged = match ib.spec.staged_dockerfile_version {
        kiln_crds::imagebuild::StagedDockerfileVersion::V1 => PlannerStaged::V1,
        kiln_crds::imagebuild::StagedDockerfileVersion::V2 => PlannerStaged::V2,
    };
    let parallel = ParallelOptions {
        parallel: ib.spec.parallel,
        tasks_limit: i64::from(ib.spec.parallel_tasks_limit),
    };
    let mirror = mirror.to_owned();
    let commit = commit.to_owned();
    tokio::task::spawn_blocking(move || {
        let tree = GitTree::open(&mirror, Some(&commit))
            .map_err(|e| Error::Plan(crate::plan::project::ProjectPlanError::Source(e)))?;
        let request = PlanRequest {
            config_path: &config_path,
            images: &images,
            platforms: &platforms,
            staged_dockerfile_version: staged,
            parallel,
        };
        plan_project(&tree, &request).map_err(Error::Plan)
    })
    .await
    .map_err(|e| Error::Internal(format!("planning task: {e}")))?
}

/// [`plan`] plus the parsed werf.yaml (the builder job needs each image's directives).
///
/// Errors: as [`plan`].
pub async fn plan_with_config(
    ib: &ImageBuild,
    mirror: &Path,
    commit: &str,
) -> Result<(WerfConfig, ProjectPlan), Error> {
    let plan = plan(ib, mirror, commit).await?;
    let config_path = match ib.spec.config_source() {
        Ok(ConfigSource::Path(p)) => p.to_owned(),
        _ => "werf.yaml".to_owned(),
    };
    let mirror = mirror.to_owned();
    let commit = commit.to_owned();
    let config = tokio::task::spawn_blocking(move || -> Result<WerfConfig, Error> {
        let tree = GitTree::open(&mirror, Some(&commit))
            .map_err(|e| Error::Plan(crate::plan::project::ProjectPlanError::Source(e)))?;
        let mut found = tree
            .read_file(&config_path)
            .map_err(|e| Error::Plan(crate::plan::project::ProjectPlanError::Source(e)))?
            .map(|b| (config_path.clone(), b));
        if found.is_none() && config_path == "werf.yaml" {
            found = tree
                .read_file("werf.yml")
                .map_err(|e| Error::Plan(crate::plan::project::ProjectPlanError::Source(e)))?
                .map(|b| ("werf.yml".to_owned(), b));
        }
        let (path, bytes) = found.ok_or_else(|| {
            Error::Plan(crate::plan::project::ProjectPlanError::ConfigNotFound {
                path: config_path.clone(),
                commit: commit.clone(),
            })
        })?;
        let text = String::from_utf8_lossy(&bytes);
        WerfConfig::parse(&path, &text)
            .map_err(|e| Error::Plan(crate::plan::project::ProjectPlanError::Config(e)))
    })
    .await
    .map_err(|e| Error::Internal(format!("config task: {e}")))??;
    Ok((config, plan))
}

/// The plan as the status shows it.
pub fn plan_status(plan: &ProjectPlan) -> BuildPlanStatus {
    BuildPlanStatus {
        sets: plan.sets.sets.clone(),
    }
}

/// Pending/Planning → Building: resolve the revision, plan, record commit and plan.
///
/// Errors: terminal source/config errors (the caller fails the build) or API errors.
pub async fn plan_step(
    ib: &ImageBuild,
    ctx: &Context,
    current: &ImageBuildStatus,
) -> Result<Action, Error> {
    let resolved = source::resolve(ib, ctx, current.commit.as_deref()).await?;
    let plan = plan(ib, &resolved.mirror, &resolved.commit).await?;
    let image_count = plan.sets.images().count();
    let message = format!(
        "planned {image_count} image(s) in {} build set(s) at commit {}",
        plan.sets.sets.len(),
        &resolved.commit[..12.min(resolved.commit.len())]
    );
    let mut next = status::transition(
        current,
        Phase::Building,
        Reason::Building,
        &message,
        ib.metadata.generation,
        now(),
    );
    next.commit = Some(resolved.commit.clone());
    next.plan = Some(plan_status(&plan));
    next.image_count = Some(i32::try_from(image_count).unwrap_or(i32::MAX));
    write_status(ib, ctx, &next).await?;
    tracing::info!(imagebuild = %ib.name_any(), commit = %resolved.commit, images = image_count, "planned");
    ctx.event(ib, EventType::Normal, "Planned", message).await;
    Ok(Action::requeue(std::time::Duration::from_millis(200)))
}
