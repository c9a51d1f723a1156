//! Where leases live: annotations of one ConfigMap, read and replaced whole with
//! resourceVersion optimistic concurrency (lockgate's `KubernetesResourceAnnotationsStore`).
//!
//! [`LeaseStore`] is the seam between the lease logic and Kubernetes: [`ConfigMapStore`] talks
//! to the API server; [`MemoryStore`] emulates its get/update semantics in memory for unit tests
//! of code that takes locks (with injectable conflicts and outages).

mod configmap;
mod memory;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;

pub use configmap::ConfigMapStore;
pub use memory::MemoryStore;

use super::error::StoreError;

/// An object whose annotations hold leases, updated with optimistic concurrency.
pub trait LeaseStore: Send + Sync + fmt::Debug {
    /// Human-readable name for messages, e.g. `ConfigMap ci/werf-shop`.
    fn describe(&self) -> String;

    /// Reads the current object (creating it empty if it does not exist). The returned
    /// object carries the `resourceVersion` that [`LeaseStore::save`] will be checked against.
    fn load(&self) -> BoxFuture<'_, Result<ConfigMap, StoreError>>;

    /// Replaces the whole object (an UPDATE, not a patch) if its `resourceVersion` is still
    /// current; otherwise fails with [`StoreError::Conflict`] (or [`StoreError::Gone`] if it
    /// was deleted meanwhile).
    fn save(&self, object: ConfigMap) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// The annotation `key` of `object`, if present.
pub fn annotation<'a>(object: &'a ConfigMap, key: &str) -> Option<&'a str> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(key))
        .map(String::as_str)
}

/// Sets (`Some`) or removes (`None`) the annotation `key` of `object`, leaving all others.
pub fn set_annotation(object: &mut ConfigMap, key: &str, value: Option<String>) {
    match value {
        Some(value) => {
            object
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(key.to_owned(), value);
        }
        None => {
            if let Some(annotations) = object.metadata.annotations.as_mut() {
                annotations.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_annotation_adds_replaces_and_removes_one_key() {
        let mut cm = ConfigMap::default();
        assert_eq!(annotation(&cm, "a"), None);
        set_annotation(&mut cm, "a", None);
        assert_eq!(cm.metadata.annotations, None);
        set_annotation(&mut cm, "a", Some("1".into()));
        set_annotation(&mut cm, "b", Some("2".into()));
        set_annotation(&mut cm, "a", Some("3".into()));
        assert_eq!(annotation(&cm, "a"), Some("3"));
        set_annotation(&mut cm, "a", None);
        assert_eq!(annotation(&cm, "a"), None);
        assert_eq!(annotation(&cm, "b"), Some("2"));
    }
}
