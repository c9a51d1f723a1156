//! The [`LeaseKeeper`]: the one owner of the stage leases this operator process holds for
//! its builder pods (builder pods get no API token, so their creator holds the locks of the
//! stages they publish, renewed in the background until the pod ends).
//!
//! Restart policy: the keeper lives in memory only. After a restart the leases a previous
//! process held run out within the lease TTL (10 s after it stopped renewing); running pods
//! are adopted and their leases taken again ([`LeaseKeeper::keep`]), ended pods' leases are
//! taken and released ([`LeaseKeeper::release_of`]).

use std::collections::HashMap;

use super::error::Error;
use crate::lock::{LeaseGuard, StageLocks, TryAcquire};

/// The stage leases held by this process, by builder pod name.
#[derive(Default)]
pub struct LeaseKeeper {
    held: tokio::sync::Mutex<HashMap<String, Vec<LeaseGuard>>>,
}

impl LeaseKeeper {
    /// Keeps `guards` (renewed in the background) until the pod's result is read.
    pub async fn hold(&self, pod: &str, guards: Vec<LeaseGuard>) {
        self.held.lock().await.insert(pod.to_owned(), guards);
    }

    /// True when leases are held for `pod` and none of them was lost.
    pub async fn holds(&self, pod: &str) -> bool {
        self.held
            .lock()
            .await
            .get(pod)
            .is_some_and(|guards| guards.iter().all(LeaseGuard::is_held))
    }

    /// Releases the leases held for `pod`, if any.
    pub async fn release(&self, pod: &str) {
        let guards = self.held.lock().await.remove(pod);
        if let Some(guards) = guards {
            release_guards(guards).await;
        }
    }

    /// Releases the leases held for each of `pods`.
    pub async fn release_pods(&self, pods: &[String]) {
        for p in pods {
            self.release(p).await;
        }
    }

    /// Keeps the stage leases of a running builder pod held by this operator. After an
    /// operator restart they are gone from memory (the old process's leases run out 10 s
    /// after it stopped renewing), and a lease can be lost when renewing failed for longer
    /// than its TTL: in both cases take them again as soon as they are free, so the stages
    /// the pod publishes stay locked until it ends.
    pub async fn keep(
        &self,
        locks: &StageLocks,
        pod_name: &str,
        digests: &[String],
    ) -> Result<(), Error> {
        if self.holds(pod_name).await {
            return Ok(());
        }
        self.release(pod_name).await;
        if let Some(guards) = take_all(locks, digests).await? {
            tracing::info!(pod = %pod_name, stages = digests.len(), "stage leases of a running builder pod taken again");
            self.hold(pod_name, guards).await;
        }
        Ok(())
    }

    /// Releases the stage leases of a finished builder pod. Leases this process does not hold
    /// (it restarted while the pod ran) are taken and released, so none is left behind;
    /// `false` when one is still held by the previous holder (wait for it to expire).
    pub async fn release_of(
        &self,
        locks: &StageLocks,
        pod_name: &str,
        digests: &[String],
    ) -> Result<bool, Error> {
        if self.holds(pod_name).await {
            self.release(pod_name).await;
            return Ok(true);
        }
        self.release(pod_name).await;
        let mut stale = Vec::new();
        for digest in digests {
            let Some(record) = locks
                .locker()
                .read(&locks.lock_name(digest))
                .await
                .map_err(Error::Lock)?
            else {
                continue;
            };
            stale.push((digest.clone(), record));
        }
        if stale.is_empty() {
            return Ok(true);
        }
        let stale_digests: Vec<String> = stale.into_iter().map(|(d, _)| d).collect();
        match take_all(locks, &stale_digests).await? {
            Some(guards) => {
                release_guards(guards).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Takes every lock or none (non-blocking): `None` when one is held by someone else.
pub async fn take_all(
    locks: &StageLocks,
    digests: &[String],
) -> Result<Option<Vec<LeaseGuard>>, Error> {
    let mut held = Vec::new();
    for digest in digests {
        match locks.try_acquire(digest).await {
            Ok(TryAcquire::Held(guard)) => held.push(guard),
            Ok(TryAcquire::MustWait { .. }) => {
                release_guards(held).await;
                return Ok(None);
            }
            Err(e) => {
                release_guards(held).await;
                return Err(Error::Lock(e));
            }
        }
    }
    Ok(Some(held))
}

pub async fn release_guards(guards: Vec<LeaseGuard>) {
    for g in guards {
        if let Err(e) = g.release().await {
            tracing::warn!(error = %e, "releasing a stage lock failed; it expires on its own");
        }
    }
}
