//! An in-memory lease store with API-server update semantics, for unit tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::LeaseStore;
use crate::lock::error::StoreError;

/// One ConfigMap kept in memory. `save` succeeds only when the object's `resourceVersion`
/// equals the stored one, then bumps it — what kube-apiserver does for an UPDATE — so lease
/// logic can be unit-tested without a cluster. Faults can be injected.
#[derive(Debug)]
pub struct MemoryStore {
    object: Mutex<ConfigMap>,
    version: AtomicU64,
    injected_conflicts: AtomicU32,
    unavailable: AtomicBool,
    saves: AtomicU64,
    conflicts: AtomicU64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            object: Mutex::new(ConfigMap {
                metadata: ObjectMeta {
                    name: Some("werf-memory".into()),
                    resource_version: Some("1".into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            }),
            version: AtomicU64::new(1),
            injected_conflicts: AtomicU32::new(0),
            unavailable: AtomicBool::new(false),
            saves: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        }
    }
}

impl MemoryStore {
    /// An empty store (no annotations).
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored object as it is now.
    pub fn snapshot(&self) -> ConfigMap {
        self.object.lock().expect("memory store mutex").clone()
    }

    /// Makes the next `n` saves fail with a conflict, as if another writer got there first.
    pub fn inject_conflicts(&self, n: u32) {
        self.injected_conflicts.store(n, Ordering::SeqCst);
    }

    /// While `true`, every load and save fails with [`StoreError::Unavailable`].
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Successful saves so far.
    pub fn saves(&self) -> u64 {
        self.saves.load(Ordering::SeqCst)
    }

    /// Saves refused with a conflict so far (injected or real).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::SeqCst)
    }

    fn check_available(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                store: self.describe(),
                message: "outage injected by the test".into(),
            });
        }
        Ok(())
    }

    fn conflict(&self) -> StoreError {
        self.conflicts.fetch_add(1, Ordering::SeqCst);
        StoreError::Conflict {
            namespace: "memory".into(),
            name: "werf-memory".into(),
        }
    }

    fn save_now(&self, mut object: ConfigMap) -> Result<(), StoreError> {
        self.check_available()?;
        if self
            .injected_conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(self.conflict());
        }
        let mut stored = self.object.lock().expect("memory store mutex");
        if object.metadata.resource_version != stored.metadata.resource_version {
            return Err(self.conflict());
        }
        let next = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        object.metadata.resource_version = Some(next.to_string());
        *stored = object;
        self.saves.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl LeaseStore for MemoryStore {
    fn describe(&self) -> String {
        "ConfigMap memory/werf-memory (in memory)".into()
    }

    fn load(&self) -> BoxFuture<'_, Result<ConfigMap, StoreError>> {
        let result = self.check_available().map(|()| self.snapshot());
        async move { result }.boxed()
    }

    fn save(&self, object: ConfigMap) -> BoxFuture<'_, Result<(), StoreError>> {
        let result = self.save_now(object);
        async move { result }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::store::{annotation, set_annotation};

    #[tokio::test]
    async fn save_requires_the_current_resource_version() {
        let store = MemoryStore::new();
        let mut first = store.load().await.unwrap();
        let mut second = store.load().await.unwrap();
        set_annotation(&mut first, "k", Some("a".into()));
        store.save(first).await.unwrap();
        set_annotation(&mut second, "k", Some("b".into()));
        let err = store.save(second).await.unwrap_err();
        assert!(err.is_retryable_conflict(), "{err}");
        assert_eq!(annotation(&store.snapshot(), "k"), Some("a"));
        assert_eq!((store.saves(), store.conflicts()), (1, 1));
    }

    #[tokio::test]
    async fn injected_faults_fail_loads_and_saves() {
        let store = MemoryStore::new();
        store.inject_conflicts(1);
        let object = store.load().await.unwrap();
        assert!(
            store
                .save(object.clone())
                .await
                .unwrap_err()
                .is_retryable_conflict()
        );
        store.save(object).await.unwrap();
        store.set_unavailable(true);
        let err = store.load().await.unwrap_err();
        assert!(err.to_string().contains("unavailable"), "{err}");
    }
}
