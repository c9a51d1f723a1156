//! The ImageBuild controller: reconciles each ImageBuild from source to published images.
//!
//! Reconcile is a pipeline of steps (Stackable's dereference → validate → build → apply →
//! status); each module imports only the shared context ([`context`], [`error`]) and
//! modules of a lower step, never this file (checked by `tests/controller_layering.rs`):
//!
//! | step | module | pure? |
//! |---|---|---|
//! | validate: the spec parsed once into a typed [`request::BuildRequest`] | [`request`] | pure |
//! | dereference: git Secret, revision → commit in the source mirror | [`source`] | I/O |
//! | plan the pinned commit (cached per build generation in [`cache`]) | [`planning`] | I/O (git) |
//! | build-time facts: base-image environments, stage image names, dependency build args, behind a [`crate::facts::FactSource`] (its own [`crate::facts::FactsError`]) | [`crate::facts`]; the digests to look up: [`staged`] | I/O (registry) / pure |
//! | one pass per image × platform: [`observe`] (own pod, stages found), [`decide::decide`], [`act`] (locks, re-check, pod), orchestrated by [`building`] | [`observe`], [`decide`], [`act`], [`building`] | reads / **pure** / writes |
//! | the builder job of a planned image × platform, the one dispatch on image kind | [`crate::job`] (its own [`crate::job::JobError`]) | pure |
//! | werf.yaml `secrets:` checked against `spec.buildSecrets` and their Secrets | [`secrets`] | I/O |
//! | publish: manifest lists, final repo, custom tags; the report assembled by [`crate::report`] | [`finish`] | I/O around a pure builder |
//! | the next status, written with server-side apply | [`status`], [`children`] | pure / I/O |
//!
//! The stage leases this process holds have one owner, [`leases::LeaseKeeper`]. State lives
//! in the ImageBuild's status, the registry and the owned pods, never only in
//! memory ([`leases`] and [`cache`] are optimisations): every reconcile recomputes what it
//! needs from them, so the operator can be killed at any point.
//!
//! Phases: `Pending` → (plan) → `Building` → `Succeeded`; any terminal error → `Failed` with
//! the error's stable reason; `spec.cancel` → `Cancelled`; `spec.timeout` passed → `Failed`
//! with reason `Timeout`. Leaving a running phase (and deleting the ImageBuild, through the
//! finalizer) deletes its builder pods and job ConfigMaps. A planning retried after an API
//! error shows `Planning`, a publish retried so shows `Publishing`.

pub mod act;
pub mod building;
pub mod cache;
pub mod children;
pub mod config_rendering;
pub mod context;
pub mod decide;
pub mod error;
pub mod finish;
pub mod leases;
pub mod observe;
pub mod planning;
pub mod request;
pub mod retention;
pub mod secrets;
pub mod source;
pub mod staged;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{ImageBuild, ImageBuildStatus, Phase, Reason};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use tracing::{debug, info, warn};

pub use context::{Context, FINALIZER, MANAGER, Settings};
pub use error::Error;

use children::{delete_children, write_status};
use context::now;
use request::BuildRequest;

use crate::metrics::Readiness;
use crate::pods::names::{COMPONENT_BUILDER, LABEL_COMPONENT};

/// Delay before retrying after a transient error.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(10);
/// How soon a pass whose status write met a newer ImageBuild is retried.
const STALE_REQUEUE: Duration = Duration::from_secs(1);

/// Reconciles one ImageBuild (the entry point for [`Controller::run`]).
///
/// Errors: transient ones only (API failures); terminal errors end the build in its status.
#[tracing::instrument(skip_all, fields(imagebuild = %ib.name_any(), namespace = ib.namespace().unwrap_or_default()))]
pub async fn reconcile(ib: Arc<ImageBuild>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let started = Instant::now();
    let namespace = ib
        .namespace()
        .ok_or_else(|| Error::Internal("ImageBuild without a namespace".into()))?;
    let api = ctx.builds(&namespace);
    let result = finalizer(&api, FINALIZER, ib, |event| async {
        match event {
            finalizer::Event::Apply(ib) => apply(ib, ctx.clone()).await,
            finalizer::Event::Cleanup(ib) => cleanup(ib, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// What to do after a failed reconcile: count it by reason and retry later.
pub fn error_policy(ib: Arc<ImageBuild>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.metric_label());
    if matches!(error, Error::StaleImageBuild) {
        // Not a failure of the build: the watch delivers the newer object at once.
        debug!(imagebuild = %ib.name_any(), "status write on a stale copy refused; retrying");
        return Action::requeue(STALE_REQUEUE);
    }
    warn!(imagebuild = %ib.name_any(), reason = error.metric_label(), error = %error, "reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

/// The time left before `spec.timeout` passes; `None` without a timeout or a start time.
fn time_left(
    request: &BuildRequest,
    status: &ImageBuildStatus,
    now: Timestamp,
) -> Option<Duration> {
    let timeout = request.timeout?;
    let start = status.start_time.as_ref()?.0;
    let elapsed = now.duration_since(start);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    Some(timeout.saturating_sub(elapsed))
}

async fn apply(ib: Arc<ImageBuild>, ctx: Arc<Context>) -> Result<Action, Error> {
    let status = ib.status.clone().unwrap_or_default();
    if status.phase.is_finished() {
        // A finished build is a record; changing its spec does not build again, but its
        // retention applies.
        return retention::expire(&ib, &ctx, &status).await;
    }
    if ib.spec.cancel {
        return stop(
            &ib,
            &ctx,
            Reason::Cancelled,
            "cancelled: spec.cancel is true".into(),
        )
        .await;
    }
    // The validate step: the spec parsed once; later steps read the typed request.
    let request = match BuildRequest::from_spec_with(&ib.spec, ctx.settings.digest_mode) {
        Ok(request) => request,
        Err(e) => return fail(&ib, &ctx, e).await,
    };
    if let Some(left) = time_left(&request, &status, Timestamp::now())
        && left.is_zero()
    {
        let timeout = ib.spec.timeout.clone().unwrap_or_default();
        return stop(
            &ib,
            &ctx,
            Reason::Timeout,
            format!("the build did not finish within spec.timeout {timeout}"),
        )
        .await;
    }
    let step = match status.phase {
        Phase::Pending | Phase::Planning => planning::plan_step(&ib, &ctx, &request, &status).await,
        Phase::Building => building_step(&ib, &ctx, &request, &status).await,
        Phase::Succeeded | Phase::Failed | Phase::Cancelled => Ok(Action::await_change()),
    };
    match step {
        Ok(action) => Ok(action),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => fail(&ib, &ctx, e).await,
    }
}

/// The Building phase: advance the build sets; when all are complete, publish and finish.
async fn building_step(
    ib: &ImageBuild,
    ctx: &Context,
    request: &BuildRequest,
    current: &ImageBuildStatus,
) -> Result<Action, Error> {
    let commit = current
        .commit
        .clone()
        .ok_or_else(|| Error::Internal("Building without a commit in the status".into()))?;
    // The plan of the pinned commit does not change between polls of one generation.
    let uid = ib.uid().unwrap_or_default();
    let generation = ib.metadata.generation;
    let (mirror, mut plan) = match ctx.cache.plan(&uid, generation, &commit) {
        Some(hit) => hit,
        None => {
            let resolved = source::resolve(ib, ctx, Some(&commit)).await?;
            let plan = planning::plan(ib, &ctx.client, request, &resolved.mirror, &commit).await?;
            ctx.cache
                .store_plan(&uid, generation, &commit, resolved.mirror.clone(), &plan);
            (resolved.mirror, plan)
        }
    };
    let storage = building::connect_storage(ib, ctx, request, &commit).await?;
    let mut envs = ctx.cache.envs(&uid, generation, &commit);
    let registry = crate::facts::RegistryFacts {
        storage: &storage,
        mirrors: &ib.spec.registry_mirrors,
    };
    let staged = crate::facts::resolve(
        &mut plan,
        request.staged_version,
        &registry,
        &mirror,
        &mut envs,
    )
    .await;
    ctx.cache.store_envs(&uid, generation, &commit, envs);
    let staged = staged.map_err(Error::from)?;
    let progress = building::advance(ib, ctx, request, &plan, &storage, &staged).await?;
    if progress.set < plan.sets.sets.len() {
        let message = format!(
            "build set {} of {}: {}",
            progress.set + 1,
            plan.sets.sets.len(),
            progress.notes().join("; ")
        );
        // From the steps' enums, never from the notes' text.
        let reason = progress.reason();
        let mut next = status::transition(
            current,
            Phase::Building,
            reason,
            &message,
            ib.metadata.generation,
            now(),
        );
        status::record_builder_pods(&mut next, &progress.pods);
        write_status(ib, ctx, &next).await?;
        let requeue = time_left(request, current, Timestamp::now())
            .map_or(building::POLL, |left| left.min(building::POLL));
        return Ok(Action::requeue(requeue.max(Duration::from_millis(100))));
    }
    let outcome = match finish::publish(ib, ctx, &plan.config, &plan, &storage).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Every stage is built: a retried publish says so rather than "building".
            if e.is_transient() {
                let message = format!("every stage is built; publishing the images, retrying: {e}");
                let next = status::transition(
                    current,
                    Phase::Building,
                    Reason::Publishing,
                    &message,
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
    let mut next = status::finished(
        current,
        Reason::AllImagesPublished,
        &outcome.message,
        ib.metadata.generation,
        now(),
    );
    status::record_builder_pods(&mut next, &progress.pods);
    finish::record(ib, ctx, &mut next, outcome).await?;
    delete_children(ib, ctx).await?;
    ctx.cache.forget(&uid);
    write_status(ib, ctx, &next).await?;
    let seconds = match (&next.start_time, &next.completion_time) {
        (Some(s), Some(c)) => c.0.duration_since(s.0).as_secs_f64().max(0.0),
        _ => 0.0,
    };
    ctx.metrics
        .build_finished(Phase::Succeeded.as_str(), seconds);
    let note = next
        .conditions
        .first()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ctx.event(
        ib,
        EventType::Normal,
        Reason::AllImagesPublished.as_str(),
        note,
    )
    .await;
    Ok(Action::await_change())
}

/// Ends the build with a terminal error: cleanup, status `Failed` with the error's reason,
/// a Warning Event, metrics.
async fn fail(ib: &ImageBuild, ctx: &Context, error: Error) -> Result<Action, Error> {
    let reason = error.reason();
    ctx.metrics.failure(reason.as_str());
    stop(ib, ctx, reason, condition_message(ib, &error)).await
}

/// The condition message of a failed build: the error, plus what to do when the spec
/// explains it (a registry refusing anonymous access to a build without credentials).
fn condition_message(ib: &ImageBuild, error: &Error) -> String {
    let mut message = error.to_string();
    if error.reason() == Reason::RegistryAuthFailed && ib.spec.registry_secret_ref.is_none() {
        message.push_str(
            " (spec.registrySecretRef is not set: name a kubernetes.io/dockerconfigjson Secret with credentials for the registry)",
        );
    }
    message
}

/// Stops a build for `reason` (Cancelled, Timeout or a failure): deletes its builder pods
/// and job ConfigMaps, writes the final status and an Event.
async fn stop(
    ib: &ImageBuild,
    ctx: &Context,
    reason: Reason,
    message: String,
) -> Result<Action, Error> {
    delete_children(ib, ctx).await?;
    ctx.cache.forget(&ib.uid().unwrap_or_default());
    let current = ib.status.clone().unwrap_or_default();
    let next = status::finished(&current, reason, &message, ib.metadata.generation, now());
    write_status(ib, ctx, &next).await?;
    let seconds = match (&next.start_time, &next.completion_time) {
        (Some(s), Some(c)) => c.0.duration_since(s.0).as_secs_f64().max(0.0),
        _ => 0.0,
    };
    ctx.metrics.build_finished(next.phase.as_str(), seconds);
    let type_ = if reason == Reason::AllImagesPublished {
        EventType::Normal
    } else {
        EventType::Warning
    };
    info!(imagebuild = %ib.name_any(), phase = %next.phase, reason = %reason, "build finished");
    ctx.event(ib, type_, reason.as_str(), message).await;
    Ok(Action::await_change())
}

/// Deletion through the finalizer: stop the build's pods (its locks are released with them).
async fn cleanup(ib: Arc<ImageBuild>, ctx: Arc<Context>) -> Result<Action, Error> {
    delete_children(&ib, &ctx).await?;
    ctx.cache.forget(&ib.uid().unwrap_or_default());
    Ok(Action::await_change())
}

/// Runs the controller until `shutdown` fires: one watch per namespace in `namespaces` (all
/// namespaces when empty), builder pods watched as owned objects so a pod's end wakes its
/// ImageBuild. Marks `readiness` once the ImageBuild API answers.
///
/// Errors: the ImageBuild CRD is not installed (listing fails) — with a hint.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: &[String],
    readiness: Arc<Readiness>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = ctx.client.clone();
    let probe: Api<ImageBuild> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    probe.list(&ListParams::default().limit(1)).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot list ImageBuilds ({e}); is the CRD installed? `kiln-operator crd | kubectl apply -f -`"
        )
    })?;
    readiness.set(true);
    let pod_config =
        watcher::Config::default().labels(&format!("{LABEL_COMPONENT}={COMPONENT_BUILDER}"));
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = scopes.into_iter().map(|scope| {
        let (builds, pods): (Api<ImageBuild>, Api<Pod>) = match &scope {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let mut stop = shutdown.clone();
        Controller::new(builds, watcher::Config::default().any_semantic())
            .owns(pods, pod_config.clone())
            .graceful_shutdown_on(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "controller event");
                }
            })
    });
    futures::future::join_all(controllers).await;
    readiness.set(false);
    Ok(())
}

#[cfg(test)]
mod tests;
