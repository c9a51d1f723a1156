//! The shared context of every reconcile: the clients, settings, metrics, the source
//! cache and the [`LeaseKeeper`] of the stage leases this process holds. Every step of the
//! controller may import it; it imports no step.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kiln_crds::ImageBuild;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use super::cache::BuildCache;
use super::leases::LeaseKeeper;
use super::status;
use crate::metrics::Metrics;
use crate::mirror::SourceCache;
use crate::pods::BuilderDefaults;

/// Finalizer Kiln puts on every ImageBuild it works on: deletion waits until the build's
/// pods are gone and its stage locks are released.
pub const FINALIZER: &str = "kiln.dev/cleanup";

/// Field manager of Kiln's server-side apply writes.
pub const MANAGER: &str = "kiln-operator";

/// Operator-wide settings (`kiln-operator run` flags).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Builder pod defaults.
    pub builder: BuilderDefaults,
    /// Namespace of the stage lock ConfigMaps (`werf-<project>`).
    pub lock_namespace: String,
    /// Registries (`host[:port]`) reached over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
    /// Stage digest mode of builds whose spec sets none (`--digest-mode`).
    pub digest_mode: crate::digest::DigestMode,
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
    pub leases: LeaseKeeper,
    /// The plan and base-image facts of each build generation, computed once.
    pub cache: BuildCache,
    /// Set when listing pods in all namespaces was refused (`watchNamespaces` RBAC):
    /// live builders are then looked for in the build's namespace only, without asking
    /// again.
    pub cluster_wide_pods_forbidden: std::sync::atomic::AtomicBool,
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
            leases: LeaseKeeper::default(),
            cache: BuildCache::default(),
            cluster_wide_pods_forbidden: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The ImageBuild API of `namespace`.
    pub fn builds(&self, namespace: &str) -> Api<ImageBuild> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Publishes an Event on the ImageBuild; a failure is only logged (Events are advisory).
    pub async fn event(&self, ib: &ImageBuild, type_: EventType, reason: &str, note: String) {
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

/// Now, as an API timestamp.
pub fn now() -> Time {
    Time(Timestamp::now())
}
