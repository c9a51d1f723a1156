//! The ImageBuild controller: reconciles each ImageBuild from source to published images.
//!
//! Reconcile is a pipeline (Stackable's dereference → validate → build → apply → status):
//! [`source`] dereferences the spec (git Secret, mirror fetch, revision → commit), [`planning`]
//! plans purely from the commit, [`crate::pods`] builds the builder pod objects, and
//! [`status`] computes the next status, written with server-side apply. State lives in the
//! ImageBuild's status, the registry and the owned pods, never only in memory: every
//! reconcile recomputes what it needs from them, so the operator can be killed at any point.
//!
//! Phases: `Pending` → (plan) → `Building` → `Succeeded`; any terminal error → `Failed` with
//! the error's stable reason; `spec.cancel` → `Cancelled`; `spec.timeout` passed → `Failed`
//! with reason `Timeout`. Leaving a running phase (and deleting the ImageBuild, through the
//! finalizer) deletes its builder pods and job ConfigMaps.

pub mod base_image;
pub mod building;
pub mod config_rendering;
pub mod error;
pub mod finish;
pub mod planning;
pub mod retention;
pub mod secrets;
pub mod source;
pub mod staged;
pub mod stapel;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{ImageBuild, ImageBuildStatus, Phase, Reason};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

pub use error::Error;

use crate::lock::LeaseGuard;
use crate::metrics::{Metrics, Readiness};
use crate::mirror::SourceCache;
use crate::pods::BuilderDefaults;
use crate::pods::names::{COMPONENT_BUILDER, LABEL_COMPONENT, LABEL_IMAGEBUILD, label_value};

/// Finalizer Kiln puts on every ImageBuild it works on: deletion waits until the build's
/// pods are gone and its stage locks are released.
pub const FINALIZER: &str = "kiln.dev/cleanup";

/// Field manager of Kiln's server-side apply writes.
pub const MANAGER: &str = "kiln-operator";

/// How often a running build is looked at even when nothing changes (timeouts, leases).
pub const RUNNING_REQUEUE: Duration = Duration::from_secs(30);

/// Delay before retrying after a transient error.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(10);

/// Operator-wide settings (`kiln-operator run` flags).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Builder pod defaults.
    pub builder: BuilderDefaults,
    /// Namespace of the stage lock ConfigMaps (`werf-<project>`).
    pub lock_namespace: String,
    /// Registries (`host[:port]`) reached over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
}

/// Everything a reconcile needs, shared by all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The git source cache.
    pub sources: Arc<SourceCache>,
    /// Operator settings.
    pub settings: Settings,
    /// Stage leases held while a builder pod builds, by pod name. Only an optimisation of
    /// memory: after a restart they are gone and expire; running pods are adopted and
    /// found by label by other builds.
    leases: tokio::sync::Mutex<HashMap<String, Vec<LeaseGuard>>>,
    /// Set when listing pods in all namespaces was refused (`watchNamespaces` RBAC):
    /// live builders are then looked for in the build's namespace only, without asking
    /// again.
    pub(super) cluster_wide_pods_forbidden: std::sync::atomic::AtomicBool,
}

impl Context {
    /// A context with a recorder reporting as `kiln-operator`.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        sources: Arc<SourceCache>,
        settings: Settings,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            recorder,
            metrics,
            sources,
            settings,
            leases: tokio::sync::Mutex::new(HashMap::new()),
            cluster_wide_pods_forbidden: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Keeps `guards` (renewed in the background) until the pod's result is read.
    async fn hold_leases(&self, pod: &str, guards: Vec<LeaseGuard>) {
        self.leases.lock().await.insert(pod.to_owned(), guards);
    }

    /// True when leases are held for `pod` and none of them was lost.
    async fn holds_leases(&self, pod: &str) -> bool {
        self.leases
            .lock()
            .await
            .get(pod)
            .is_some_and(|guards| guards.iter().all(LeaseGuard::is_held))
    }

    /// Releases the leases held for `pod`, if any.
    async fn release_leases(&self, pod: &str) {
        let guards = self.leases.lock().await.remove(pod);
        if let Some(guards) = guards {
            building::release_all(guards).await;
        }
    }

    /// Releases the leases held for each of `pods`.
    async fn release_pods(&self, pods: &[String]) {
        for p in pods {
            self.release_leases(p).await;
        }
    }

    fn builds(&self, namespace: &str) -> Api<ImageBuild> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Publishes an Event on the ImageBuild; a failure is only logged (Events are advisory).
    async fn event(&self, ib: &ImageBuild, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(status::bounded_message(&note).chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &ib.object_ref(&())).await {
            warn!(imagebuild = %ib.name_any(), error = %e, "publishing an Event failed");
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Reconciles one ImageBuild (the entry point for [`Controller::run`]).
///
/// Errors: transient ones only (API failures); terminal errors end the build in its status.
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
    warn!(imagebuild = %ib.name_any(), reason = error.metric_label(), error = %error, "reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

/// The time left before `spec.timeout` passes; `None` without a timeout or a start time.
fn time_left(ib: &ImageBuild, status: &ImageBuildStatus, now: Timestamp) -> Option<Duration> {
    let timeout = ib.spec.timeout().ok().flatten()?;
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
    if let Err(errors) = ib.spec.validate() {
        return fail(&ib, &ctx, Error::InvalidSpec(errors)).await;
    }
    if let Some(left) = time_left(&ib, &status, Timestamp::now())
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
        Phase::Pending | Phase::Planning => planning::plan_step(&ib, &ctx, &status).await,
        Phase::Building => building_step(&ib, &ctx, &status).await,
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
    current: &ImageBuildStatus,
) -> Result<Action, Error> {
    let commit = current
        .commit
        .clone()
        .ok_or_else(|| Error::Internal("Building without a commit in the status".into()))?;
    let resolved = source::resolve(ib, ctx, Some(&commit)).await?;
    let mut plan = planning::plan(ib, &ctx.client, &resolved.mirror, &commit).await?;
    let storage = building::connect_storage(ib, ctx).await?;
    let staged = staged::resolve(ib, &mut plan, &storage, &resolved.mirror).await?;
    let progress = building::advance(ib, ctx, &plan.config, &plan, &storage, &staged).await?;
    if progress.set < plan.sets.sets.len() {
        let message = format!(
            "build set {} of {}: {}",
            progress.set + 1,
            plan.sets.sets.len(),
            progress.notes.join("; ")
        );
        let waiting = progress.notes.iter().all(|n| n.contains("waits for"));
        let reason = if waiting && !progress.notes.is_empty() {
            Reason::WaitingForStage
        } else {
            Reason::Building
        };
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
        let requeue = time_left(ib, current, Timestamp::now())
            .map_or(building::POLL, |left| left.min(building::POLL));
        return Ok(Action::requeue(requeue.max(Duration::from_millis(100))));
    }
    let outcome = finish::publish(ib, ctx, &plan.config, &plan, &storage).await?;
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
    Ok(Action::await_change())
}

/// The label selector of a build's builder pods and job ConfigMaps.
pub fn children_selector(ib: &ImageBuild) -> String {
    format!(
        "{LABEL_COMPONENT}={COMPONENT_BUILDER},{LABEL_IMAGEBUILD}={}",
        label_value(&ib.name_any())
    )
}

fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Deletes the builder pods and job ConfigMaps this build owns (matched by label and by
/// owner uid, so a same-named newer ImageBuild's pods are left alone).
async fn delete_children(ib: &ImageBuild, ctx: &Context) -> Result<(), Error> {
    let namespace = ib.namespace().unwrap_or_default();
    let uid = ib.uid().unwrap_or_default();
    let selector = children_selector(ib);
    let lp = ListParams::default().labels(&selector);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    for pod in pods.list(&lp).await? {
        if owned_by(&pod.metadata, &uid) {
            ctx.release_pods(&[pod.name_any()]).await;
            ignore_not_found(
                pods.delete(&pod.name_any(), &DeleteParams::background())
                    .await,
            )?;
        }
    }
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    for cm in maps.list(&lp).await? {
        if owned_by(&cm.metadata, &uid) {
            ignore_not_found(
                maps.delete(&cm.name_any(), &DeleteParams::background())
                    .await,
            )?;
        }
    }
    Ok(())
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Writes `status` with server-side apply (field manager [`MANAGER`]), unless it equals the
/// current one.
async fn write_status(
    ib: &ImageBuild,
    ctx: &Context,
    status: &ImageBuildStatus,
) -> Result<(), Error> {
    if ib.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api = ctx.builds(&ib.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": ImageBuild::api_version(&()),
        "kind": ImageBuild::kind(&()),
        "status": status,
    });
    api.patch_status(
        &ib.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
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
