//! The locker: acquire, renew, verify and release leases in a [`LeaseStore`], each as a
//! read-modify-write retried on optimistic-locking conflicts (lockgate's
//! `OptimisticLockingStorageBasedBackend` + `DistributedLocker`).

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::clock::{SharedClock, is_expired};
use super::error::LockError;
use super::guard::{LeaseGuard, LeaseHandle};
use super::key::annotation_key;
use super::record::LeaseRecord;
use super::rules::{self, AcquireStep, LockMode, LostReason};
use super::store::{LeaseStore, annotation, set_annotation};

/// Protocol periods. [`LeaseTimings::default`] is lockgate's: a werf process and Kiln must
/// agree on the TTL, since each judges the other's leases by it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseTimings {
    /// How long a lease lives without renewal (lockgate: 10 s).
    pub ttl: Duration,
    /// How often a held lease is renewed (lockgate: 3 s).
    pub renew_period: Duration,
    /// Suggested wait before trying again a lock someone else holds (lockgate: 2 s).
    pub poll_period: Duration,
    /// Pause before re-reading after an optimistic-locking conflict (lockgate: 1 s). Kiln
    /// spreads it randomly over 0.5×–1.5× so writers that collided do not collide again.
    pub conflict_retry: Duration,
    /// Conflicts a non-blocking [`Locker::try_acquire`] absorbs before answering "must wait"
    /// (so a reconcile is never held for long by a write storm).
    pub try_acquire_conflicts: u32,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            ttl: Duration::from_secs(10),
            renew_period: Duration::from_secs(3),
            poll_period: Duration::from_secs(2),
            conflict_retry: Duration::from_secs(1),
            try_acquire_conflicts: 3,
        }
    }
}

/// Result of a non-blocking acquire.
#[derive(Debug)]
pub enum TryAcquire {
    /// The lease is ours; it is renewed in the background until the guard is released or
    /// dropped.
    Held(LeaseGuard),
    /// Not acquired now; try again after `retry_after` (requeue the reconcile).
    MustWait {
        /// Suggested delay: the poll period when someone holds the lock, about the conflict
        /// retry period when only write contention prevented the attempt.
        retry_after: Duration,
        /// The live lease that blocks us, if that is the reason.
        holder: Option<LeaseRecord>,
    },
}

/// What one read-modify-write decided.
enum Change<T> {
    /// Store this value under the key (`None` deletes the annotation), then return `T`.
    Put(Option<LeaseRecord>, T),
    /// Nothing to write; return `T`.
    Keep(T),
}

/// Acquires and manages leases in one store. Cheap to clone (shared inside).
#[derive(Clone, Debug)]
pub struct Locker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn LeaseStore>,
    clock: SharedClock,
    timings: LeaseTimings,
}

/// A random duration in `[0.5, 1.5) × base`.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::random_range(0.5..1.5))
}

impl Locker {
    /// A locker over `store` judging expiry with `clock`.
    pub fn new(store: Arc<dyn LeaseStore>, clock: SharedClock, timings: LeaseTimings) -> Self {
        Locker {
            inner: Arc::new(Inner {
                store,
                clock,
                timings,
            }),
        }
    }

    /// The protocol periods in use.
    pub fn timings(&self) -> &LeaseTimings {
        &self.inner.timings
    }

    /// The clock in use.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The store's description, e.g. `ConfigMap ci/werf-shop`.
    pub fn describe_store(&self) -> String {
        self.inner.store.describe()
    }

    /// Wall-clock now.
    pub(crate) fn now(&self) -> Duration {
        self.inner.clock.now()
    }

    /// Reads the lease of `lock_name`, if any (one GET).
    pub async fn read(&self, lock_name: &str) -> Result<Option<LeaseRecord>, LockError> {
        let key = annotation_key(lock_name);
        let object = self.inner.store.load().await?;
        self.parse(lock_name, &key, annotation(&object, &key))
    }

    fn parse(
        &self,
        lock_name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<LeaseRecord>, LockError> {
        match value {
            None => Ok(None),
            Some(value) => LeaseRecord::parse(value).map_err(|source| LockError::CorruptLease {
                lock_name: lock_name.to_owned(),
                store: self.inner.store.describe(),
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// One read-modify-write of the lease under `lock_name`'s key, retried from a fresh read
    /// after each conflict while `may_retry(attempts_so_far)` allows.
    /// `Ok(None)` = gave up after conflicts.
    async fn change<T>(
        &self,
        lock_name: &str,
        mut decide: impl FnMut(Option<&LeaseRecord>, Duration) -> Change<T>,
        mut may_retry: impl FnMut(u32) -> bool,
    ) -> Result<Result<T, u32>, LockError> {
        let key = annotation_key(lock_name);
        let mut attempts = 0;
        loop {
            let mut object = self.inner.store.load().await?;
            let current = self.parse(lock_name, &key, annotation(&object, &key))?;
            let (value, result) = match decide(current.as_ref(), self.now()) {
                Change::Keep(result) => return Ok(Ok(result)),
                Change::Put(value, result) => (value, result),
            };
            set_annotation(&mut object, &key, value.as_ref().map(LeaseRecord::to_json));
            attempts += 1;
            match self.inner.store.save(object).await {
                Ok(()) => return Ok(Ok(result)),
                Err(e) if e.is_retryable_conflict() => {
                    debug!(lock = lock_name, attempts, "lease write conflicted: {e}");
                    if !may_retry(attempts) {
                        return Ok(Err(attempts));
                    }
                    tokio::time::sleep(jittered(self.inner.timings.conflict_retry)).await;
                }
                Err(e) => return Err(LockError::Store(e)),
            }
        }
    }

    /// One acquire attempt that never waits for a holder: `Held` with a guard that renews in
    /// the background, or `MustWait` with a suggested requeue delay. Absorbs up to
    /// [`LeaseTimings::try_acquire_conflicts`] write conflicts (about 1 s each).
    ///
    /// Errors: store failures, a corrupt lease record under the key.
    pub async fn try_acquire(
        &self,
        lock_name: &str,
        mode: LockMode,
    ) -> Result<TryAcquire, LockError> {
        let ttl = self.inner.timings.ttl;
        let limit = self.inner.timings.try_acquire_conflicts;
        let outcome = self
            .change(
                lock_name,
                |current, now| match rules::acquire(current, lock_name, mode, now, ttl, || {
                    uuid::Uuid::new_v4().to_string()
                }) {
                    AcquireStep::Write(record) => Change::Put(Some(record.clone()), Ok(record)),
                    AcquireStep::Wait { holder } => Change::Keep(Err(holder)),
                },
                |attempts| attempts <= limit,
            )
            .await?;
        Ok(match outcome {
            Ok(Ok(record)) => {
                debug!(lock = lock_name, uuid = %record.uuid, "lease acquired");
                let handle = LeaseHandle {
                    lock_name: lock_name.to_owned(),
                    uuid: record.uuid,
                    mode,
                };
                TryAcquire::Held(LeaseGuard::start(self.clone(), handle, record.expire_at))
            }
            Ok(Err(holder)) => TryAcquire::MustWait {
                retry_after: self.inner.timings.poll_period,
                holder: Some(holder),
            },
            Err(_attempts) => TryAcquire::MustWait {
                retry_after: jittered(self.inner.timings.conflict_retry),
                holder: None,
            },
        })
    }

    /// Waits for the lock, polling like lockgate (every 2 s while held by someone else), for
    /// at most `timeout`. For tests and command-line tools; a reconcile uses
    /// [`Locker::try_acquire`] and requeues instead.
    ///
    /// Errors: [`LockError::Timeout`], or any error of [`Locker::try_acquire`].
    pub async fn acquire(
        &self,
        lock_name: &str,
        mode: LockMode,
        timeout: Duration,
    ) -> Result<LeaseGuard, LockError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.try_acquire(lock_name, mode).await? {
                TryAcquire::Held(guard) => return Ok(guard),
                TryAcquire::MustWait {
                    retry_after,
                    holder,
                } => {
                    let waited = started.elapsed();
                    if waited.saturating_add(retry_after) > timeout {
                        return Err(LockError::Timeout {
                            lock_name: lock_name.to_owned(),
                            waited,
                            holder: holder.map(|h| h.uuid),
                        });
                    }
                    tokio::time::sleep(retry_after).await;
                }
            }
        }
    }

    /// Extends the lease to now + TTL if it is still ours; retries conflicts until the lease
    /// would expire. Inner `Err` = the lease is lost.
    pub(crate) async fn renew(
        &self,
        handle: &LeaseHandle,
        expire_at: i64,
    ) -> Result<Result<LeaseRecord, LostReason>, LockError> {
        let ttl = self.inner.timings.ttl;
        let clock = self.inner.clock.clone();
        let outcome = self
            .change(
                &handle.lock_name,
                |current, now| match rules::renew(current, &handle.uuid, now, ttl) {
                    Ok(record) => Change::Put(Some(record.clone()), Ok(record)),
                    Err(reason) => Change::Keep(Err(reason)),
                },
                |_| !is_expired(expire_at, clock.now()),
            )
            .await?;
        outcome.map_err(|attempts| self.contended("renew", handle, attempts))
    }

    /// Gives our share of the lease back: deletes the annotation, or decrements a shared
    /// count. Retries conflicts for up to one TTL.
    ///
    /// Errors: [`LockError::LeaseLost`] if the lease is no longer ours (someone took it over,
    /// or it is gone), [`LockError::Contended`], store failures.
    pub(crate) async fn release(&self, handle: &LeaseHandle) -> Result<(), LockError> {
        let give_up_at = self.now() + self.inner.timings.ttl;
        let clock = self.inner.clock.clone();
        let outcome = self
            .change(
                &handle.lock_name,
                |current, _now| match rules::release(current, &handle.uuid) {
                    Ok(remaining) => Change::Put(remaining, Ok(())),
                    Err(reason) => Change::Keep(Err(reason)),
                },
                |_| clock.now() < give_up_at,
            )
            .await?;
        match outcome {
            Ok(Ok(())) => {
                debug!(lock = %handle.lock_name, uuid = %handle.uuid, "lease released");
                Ok(())
            }
            Ok(Err(reason)) => Err(self.lost(handle, reason)),
            Err(attempts) => Err(self.contended("release", handle, attempts)),
        }
    }

    /// Reads the lease and checks it still carries `handle`'s uuid (one GET).
    pub(crate) async fn verify(&self, handle: &LeaseHandle) -> Result<LeaseRecord, LockError> {
        match self.read(&handle.lock_name).await? {
            Some(record) if record.uuid == handle.uuid => Ok(record),
            Some(record) => Err(self.lost(
                handle,
                LostReason::TakenOver {
                    by_uuid: record.uuid,
                },
            )),
            None => Err(self.lost(handle, LostReason::Missing)),
        }
    }

    pub(crate) fn lost(&self, handle: &LeaseHandle, reason: LostReason) -> LockError {
        LockError::LeaseLost {
            lock_name: handle.lock_name.clone(),
            uuid: handle.uuid.clone(),
            reason,
        }
    }

    fn contended(&self, operation: &'static str, handle: &LeaseHandle, attempts: u32) -> LockError {
        LockError::Contended {
            operation,
            lock_name: handle.lock_name.clone(),
            store: self.inner.store.describe(),
            attempts,
        }
    }
}
