//! Planning step: werf.yaml at the resolved commit → build sets and each image × platform's
//! stages with digests (the pure planner in [`crate::plan::project`]), recorded in the status.

use std::path::Path;

use kiln_crds::imagebuild::BuildPlanStatus;
use kiln_crds::{ConfigSource, ImageBuild, ImageBuildStatus, Phase, Reason};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::children::write_status;
use super::context::{Context, now};
use super::error::Error;
use super::request::BuildRequest;
use super::{secrets, source, status};
use crate::plan::project::{PlanRequest, ProjectPlan, plan_project};
use crate::source::GitTree;

/// Plans `ib` at `commit` from the mirror at `mirror`, on a blocking thread; werf.yaml comes
/// from `spec.config.path` in the commit (default `werf.yaml`, then `werf.yml`) or is
/// `spec.config.inline` (its Dockerfiles and files still come from the commit).
///
/// werf.yaml is rendered with `spec.configRendering` ([`super::config_rendering`]).
/// Stage digests are computed in the request's digest mode (`spec.digestMode`, else the
/// operator's).
///
/// Errors: [`Error::InvalidSpec`] for a bad `spec.config`, [`Error::InvalidPlatform`],
/// [`Error::TemplateEnvNotFound`], [`Error::Plan`] (template errors are
/// `ProjectPlanError::Config`).
#[tracing::instrument(skip_all, fields(commit = %commit))]
pub async fn plan(
    ib: &ImageBuild,
    client: &kube::Client,
    request: &BuildRequest,
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
    let platforms = request.platforms.clone();
    let images = ib.spec.images.clone();
    let staged = request.staged_version;
    let parallel = request.parallel;
    let digest_mode = request.digest_mode;
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
            digest_mode,
        };
        plan_project(&tree, &request).map_err(Error::Plan)
    })
    .await
    .map_err(|e| Error::Internal(format!("planning task: {e}")))?
}

/// The plan as the status shows it: werf's build sets, where the Dockerfile stages a staged
/// image needs are images `<image>/stage/<name>` in the sets before it
/// ([`crate::plan::stage_images::werf_sets`]). The controller builds those stages first, in
/// their image's turn.
pub fn plan_status(plan: &ProjectPlan) -> BuildPlanStatus {
    BuildPlanStatus {
        sets: crate::plan::stage_images::werf_sets(&plan.sets, &plan.stage_images),
    }
}

/// Pending/Planning → Building: resolve the revision, plan, record commit and plan.
///
/// Errors: terminal source/config errors (the caller fails the build) or API errors.
pub async fn plan_step(
    ib: &ImageBuild,
    ctx: &Context,
    request: &BuildRequest,
    current: &ImageBuildStatus,
) -> Result<Action, Error> {
    let planned = async {
        let resolved = source::resolve(ib, ctx, current.commit.as_deref()).await?;
        let plan = plan(ib, &ctx.client, request, &resolved.mirror, &resolved.commit).await?;
        Ok::<_, Error>((resolved, plan))
    }
    .await;
    let (resolved, plan) = match planned {
        Ok(planned) => planned,
        Err(e) => {
            // A retried planning (the git server or the API did not answer) says so.
            if e.is_transient() {
                let next = status::transition(
                    current,
                    Phase::Planning,
                    Reason::Planning,
                    &format!("planning, retrying: {e}"),
                    ib.metadata.generation,
                    now(),
                );
                // Advisory: the error that is retried is the one to return.
                if let Err(w) = write_status(ib, ctx, &next).await {
                    tracing::debug!(error = %w, "status write failed");
                }
            }
            return Err(e);
        }
    };
    // A missing build secret ends the build here, before any builder pod.
    secrets::check(&ib.spec, &plan.config, plan.sets.images())?;
    secrets::check_sources(ib, ctx, &plan.config, plan.sets.images()).await?;
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
