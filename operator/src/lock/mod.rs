//! Stage locks: lockgate-compatible leases in ConfigMap annotations.
//!
//! Before publishing a stage it built, a build takes the lock of that stage digest, re-checks
//! the stages storage and only then pushes, so each digest is published once per stages
//! storage even when several ImageBuilds — or werf CLIs run with
//! `--synchronization kubernetes://NAMESPACE` — build the same stage at once.
//!
//! The protocol is werf v2's (lockgate v0.1.1's distributed locker over Kubernetes resource
//! annotations), reproduced exactly so both sides see each other's locks:
//! - ConfigMap `werf-<project>` in the configured namespace, created empty if missing;
//! - lock name `<project>/stage/<digest>`, annotation key `lockgate.io/<SHA3-224(lock name)>`;
//! - annotation value `{"uuid":…,"lockName":…,"ExpireAtTimestamp":<unix s>,
//!   "SharedHoldersCount":<n>,"IsShared":<bool>}` (Go's field order and escaping; unknown
//!   fields such as lockgate HEAD's `QueueMembers` are preserved);
//! - TTL 10 s, renewal every 3 s, polling every 2 s while waiting, re-read 1 s after an
//!   optimistic-locking conflict; every change is a full-object UPDATE carrying the
//!   resourceVersion read, so concurrent writers to different locks never lose each other's
//!   leases;
//! - an expired lease is taken over by the next acquirer; shared leases count their holders
//!   and share one uuid; releasing the last holder deletes the annotation.
//!
//! Differences from werf, on purpose: a lost lease is a signal the holder handles (werf
//! panics), a holder also treats its lease as lost once the confirmed expiry passes without a
//! renewal, and conflict retries are jittered.
//!
//! # RBAC
//! The operator's ServiceAccount needs, in the lock namespace only, on `configmaps` (core API
//! group): `get`, `create`, `update`. Nothing else (no list/watch/patch/delete).
//!
//! # Layout
//! [`key`] names (pure), [`record`] the lease JSON (pure), [`rules`] acquire/renew/release
//! decisions (pure), [`clock`] wall time, [`store`] the ConfigMap with optimistic concurrency,
//! [`locker`] the read-modify-write operations, [`guard`] a held lease with background
//! renewal and the lost signal, [`stage`] the controller's entry point.

pub mod clock;
pub mod error;
pub mod guard;
pub mod key;
pub mod locker;
pub mod record;
pub mod rules;
pub mod stage;
pub mod store;

pub use clock::{Clock, SharedClock, SystemClock, TokioClock};
pub use error::{LockError, StoreError};
pub use guard::{LeaseGuard, LeaseHandle, LeaseState, LostSignal};
pub use key::{annotation_key, configmap_name, stage_lock_name};
pub use locker::{LeaseTimings, Locker, TryAcquire};
pub use record::LeaseRecord;
pub use rules::{LockMode, LostReason};
pub use stage::StageLocks;
pub use store::{ConfigMapStore, LeaseStore, MemoryStore};

#[cfg(test)]
mod tests;
