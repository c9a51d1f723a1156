//! Stage locks of one werf project: the entry point for the controller.

use std::sync::Arc;
use std::time::Duration;

use super::clock::SystemClock;
use super::error::LockError;
use super::guard::LeaseGuard;
use super::key::{configmap_name, stage_lock_name};
use super::locker::{LeaseTimings, Locker, TryAcquire};
use super::rules::LockMode;
use super::store::ConfigMapStore;

/// Exclusive per-digest stage locks of one project, in ConfigMap `werf-<project>` of one
/// namespace — the same locks werf v2 takes with `--synchronization kubernetes://NAMESPACE`
/// while it publishes a stage (lock name `<project>/stage/<digest>`).
#[derive(Debug, Clone)]
pub struct StageLocks {
    locker: Locker,
    project: String,
}

impl StageLocks {
    /// Locks of `project` in `namespace`, through `client` with lockgate's timings. Reads the
    /// ConfigMap once (creating it if missing) so that RBAC or namespace problems surface here.
    ///
    /// Errors: [`LockError::InvalidProject`], [`super::StoreError::NamespaceMissing`],
    /// [`super::StoreError::Forbidden`] and other API failures (as [`LockError::Store`]).
    pub async fn connect(
        client: kube::Client,
        namespace: &str,
        project: &str,
    ) -> Result<Self, LockError> {
        let store = ConfigMapStore::new(client, namespace, &configmap_name(project)?);
        store.get_or_create().await?;
        Ok(StageLocks::new(
            Locker::new(
                Arc::new(store),
                Arc::new(SystemClock),
                LeaseTimings::default(),
            ),
            project,
        ))
    }

    /// Stage locks of `project` over any locker (e.g. one on a [`super::MemoryStore`]).
    pub fn new(locker: Locker, project: &str) -> Self {
        StageLocks {
            locker,
            project: project.to_owned(),
        }
    }

    /// The underlying locker.
    pub fn locker(&self) -> &Locker {
        &self.locker
    }

    /// The lock name of a stage digest: `<project>/stage/<digest>`.
    pub fn lock_name(&self, stage_digest: &str) -> String {
        stage_lock_name(&self.project, stage_digest)
    }

    /// Non-blocking exclusive acquire of a stage digest's lock (see [`Locker::try_acquire`]).
    pub async fn try_acquire(&self, stage_digest: &str) -> Result<TryAcquire, LockError> {
        self.locker
            .try_acquire(&self.lock_name(stage_digest), LockMode::Exclusive)
            .await
    }

    /// Waits up to `timeout` for a stage digest's lock (see [`Locker::acquire`]).
    pub async fn acquire(
        &self,
        stage_digest: &str,
        timeout: Duration,
    ) -> Result<LeaseGuard, LockError> {
        self.locker
            .acquire(&self.lock_name(stage_digest), LockMode::Exclusive, timeout)
            .await
    }
}
