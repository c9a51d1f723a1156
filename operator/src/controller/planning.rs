//! Planning step: werf.yaml at the resolved commit → build sets and each image × platform's
//! stages with digests (the pure planner in [`crate::plan::project`]), recorded in the status.

use std::path::Path;

use kiln_crds::imagebuild::BuildPlanStatus;
use kiln_crds::{ConfigSource, ImageBuild, ImageBuildStatus, Phase, Reason};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{Context, Error, now, source, status, write_status};
use crate::config::Platform;
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

/// Plans `ib` at `commit` from the mirror at `mirror`, on a blocking thread; werf.yaml comes
/// from `spec.config.path` in the commit (default `werf.yaml`, then `werf.yml`) or is
/// `spec.config.inline` (its Dockerfiles and files still come from the commit).
///
/// werf.yaml is rendered with `spec.configRendering` ([`super::config_rendering`]).
///
/// Errors: [`Error::InvalidSpec`] for a bad `spec.config`, [`Error::InvalidPlatform`],
/// [`Error::TemplateEnvNotFound`], [`Error::Plan`] (template errors are
/// `ProjectPlanError::Config`).
pub async fn plan(
    ib: &ImageBuild,
    client: &kube::Client,
    mirror: &Path,
    commit: &str,
) -> Result<ProjectPlan, Error> {
    let render = super::config_rendering::render_context(ib, client).await?;
    let (config_path, inline_config) = match ib.spec.config_source() {
        Ok(ConfigSource::Default) => ("werf.yaml".to_owned(), None),
        Ok(ConfigSource::Path(p)) => (p.to_owned(), None),
        Ok(ConfigSource::Inline(text)) => ("werf.yaml".to_owned(), Some(text.to_owned())),
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
            inline_config: inline_config.as_deref(),
            images: &images,
            platforms: &platforms,
            staged_dockerfile_version: staged,
            parallel,
            render,
        };
        plan_project(&tree, &request).map_err(Error::Plan)
    })
    .await
    .map_err(|e| Error::Internal(format!("planning task: {e}")))?
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
    let plan = plan(ib, &ctx.client, &resolved.mirror, &resolved.commit).await?;
    // A missing build secret ends the build here, before any builder pod.
    super::secrets::check(&ib.spec, &plan.config, plan.sets.images())?;
    super::secrets::check_sources(ib, ctx, &plan.config, plan.sets.images()).await?;
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
