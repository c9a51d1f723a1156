//! Errors of the stage-lock module.

use std::time::Duration;

use super::record::RecordParseError;
use super::rules::LostReason;

/// A failed read or write of the object that stores leases.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object changed between our read and our write (HTTP 409 on update, resourceVersion
    /// mismatch). Retry from a fresh read; lockgate does the same.
    #[error("ConfigMap {namespace}/{name} was modified concurrently (resourceVersion conflict)")]
    Conflict {
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Name of the ConfigMap.
        name: String,
    },
    /// The object was deleted between our read and our write (HTTP 404 on update). Retry: the
    /// next read creates it again.
    #[error("ConfigMap {namespace}/{name} was deleted while being updated")]
    Gone {
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Name of the ConfigMap.
        name: String,
    },
    /// The configured namespace does not exist; Kiln does not create namespaces.
    #[error(
        "namespace {namespace:?} does not exist, so ConfigMap {name} for stage locks cannot be created; create the namespace or configure another one"
    )]
    NamespaceMissing {
        /// The missing namespace.
        namespace: String,
        /// Name of the ConfigMap that was to be created.
        name: String,
    },
    /// RBAC refused a request.
    #[error(
        "not allowed to {verb} ConfigMap {namespace}/{name}: the operator's ServiceAccount needs the verbs get, create and update on configmaps in namespace {namespace:?} (API server: {message})"
    )]
    Forbidden {
        /// The Kubernetes verb refused (`get`, `create`, `update`).
        verb: &'static str,
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Name of the ConfigMap.
        name: String,
        /// The API server's message.
        message: String,
        /// The API server's answer.
        #[source]
        source: Box<kube::Error>,
    },
    /// Any other API failure (network, server error, timeout).
    #[error("cannot {verb} ConfigMap {namespace}/{name}: {source}")]
    Api {
        /// The Kubernetes verb attempted (`get`, `create`, `update`).
        verb: &'static str,
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Name of the ConfigMap.
        name: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A store that is not the Kubernetes API (e.g. [`super::MemoryStore`]) is unavailable.
    #[error("lease store {store} is unavailable: {message}")]
    Unavailable {
        /// Which store.
        store: String,
        /// What happened.
        message: String,
    },
}

impl StoreError {
    /// Whether a fresh read-modify-write may succeed (optimistic-locking conflicts).
    pub fn is_retryable_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. } | StoreError::Gone { .. })
    }
}

/// Errors of acquiring, renewing, verifying and releasing stage locks.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The werf project name cannot name a ConfigMap `werf-<project>`.
    #[error("project name {project:?} cannot be used for stage locks: {reason}")]
    InvalidProject {
        /// The project name given.
        project: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing the lease store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The annotation holding a lock's lease is not a lockgate lease record.
    #[error("lease of lock {lock_name:?} in {store}, annotation {key}: {source}")]
    CorruptLease {
        /// The lock whose lease could not be read.
        lock_name: String,
        /// The store (e.g. `ConfigMap ci/werf-shop`).
        store: String,
        /// The annotation key.
        key: String,
        /// The parse failure, quoting the value.
        #[source]
        source: RecordParseError,
    },
    /// Optimistic-locking conflicts kept a change from landing before its deadline.
    #[error(
        "{operation} of lock {lock_name:?} in {store} lost {attempts} optimistic-locking races in a row"
    )]
    Contended {
        /// `acquire`, `renew` or `release`.
        operation: &'static str,
        /// The lock.
        lock_name: String,
        /// The store.
        store: String,
        /// Writes attempted.
        attempts: u32,
    },
    /// [`super::Locker::acquire`] gave up waiting.
    #[error("timed out after {waited:?} waiting for lock {lock_name:?}{}", holder.as_ref().map(|h| format!(" (held by lease {h})")).unwrap_or_default())]
    Timeout {
        /// The lock.
        lock_name: String,
        /// How long the caller waited.
        waited: Duration,
        /// uuid of the last lease seen blocking it.
        holder: Option<String>,
    },
    /// The holder no longer holds its lease: stop publishing under it.
    #[error("lease {uuid} of lock {lock_name:?} was lost: {reason}")]
    LeaseLost {
        /// The lock.
        lock_name: String,
        /// The lost lease's uuid.
        uuid: String,
        /// Why it is considered lost.
        reason: LostReason,
    },
}
