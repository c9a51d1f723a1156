//! A held lease: renewed in the background, released on request or on drop, and able to tell
//! its holder when the lease is lost.
//!
//! werf panics when a renewal finds its lease gone (`OnLostLease`); Kiln instead publishes a
//! [`LeaseState::Lost`] that the holder watches (through [`LostSignal`]) so it can stop
//! publishing and report a condition.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::clock::{SharedClock, is_expired, until_expiry};
use super::error::LockError;
use super::locker::Locker;
use super::record::LeaseRecord;
use super::rules::{LockMode, LostReason};

/// Identity of a lease: the lock and the uuid written in its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHandle {
    /// The lock name, e.g. `myproj/stage/<digest>`.
    pub lock_name: String,
    /// The lease uuid (shared holders share it).
    pub uuid: String,
    /// The mode it was acquired in.
    pub mode: LockMode,
}

/// What the holder knows about its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Confirmed in the store with this expiry (unix seconds).
    Held {
        /// `ExpireAtTimestamp` of the last successful write.
        expire_at: i64,
    },
    /// No longer held; final.
    Lost(LostReason),
}

/// A clonable, `'static` view of a lease's state for tasks that must stop when it is lost
/// (e.g. `tokio::select!` between publishing a stage and [`LostSignal::wait`]).
#[derive(Debug, Clone)]
pub struct LostSignal {
    state: watch::Receiver<LeaseState>,
    clock: SharedClock,
}

impl LostSignal {
    /// `Some(reason)` if the lease is lost now — reported lost, or its confirmed expiry time
    /// has passed without a renewal (even if the renewing task died).
    pub fn lost_reason(&self) -> Option<LostReason> {
        match &*self.state.borrow() {
            LeaseState::Lost(reason) => Some(reason.clone()),
            LeaseState::Held { expire_at } if is_expired(*expire_at, self.clock.now()) => {
                Some(LostReason::Expired)
            }
            LeaseState::Held { .. } => None,
        }
    }

    /// Resolves when the lease is lost (see [`LostSignal::lost_reason`]), with the reason.
    pub async fn wait(mut self) -> LostReason {
        loop {
            let expire_at = match &*self.state.borrow_and_update() {
                LeaseState::Lost(reason) => return reason.clone(),
                LeaseState::Held { expire_at } => *expire_at,
            };
            let now = self.clock.now();
            if is_expired(expire_at, now) {
                return LostReason::Expired;
            }
            // Wake just after the expiry second has begun, unless a renewal comes first.
            let wake = until_expiry(expire_at, now) + Duration::from_millis(1);
            tokio::select! {
                changed = self.state.changed() => {
                    if changed.is_err() {
                        // The guard is gone: nobody renews or releases any more.
                        return LostReason::Released;
                    }
                }
                _ = tokio::time::sleep(wake) => {}
            }
        }
    }
}

/// A held lease. Renewed every [`super::LeaseTimings::renew_period`] by a background task
/// until [`LeaseGuard::release`]d or dropped; dropping releases it best-effort in a spawned
/// task (if a tokio runtime is running; otherwise the lease simply expires after the TTL).
#[derive(Debug)]
pub struct LeaseGuard {
    handle: LeaseHandle,
    locker: Locker,
    state: Arc<watch::Sender<LeaseState>>,
    renewer: Option<JoinHandle<()>>,
}

impl LeaseGuard {
    /// Starts renewing a lease that was just written with `expire_at`.
    pub(crate) fn start(locker: Locker, handle: LeaseHandle, expire_at: i64) -> Self {
        let (state, _) = watch::channel(LeaseState::Held { expire_at });
        let state = Arc::new(state);
        let renewer = tokio::spawn(renew_loop(
            locker.clone(),
            handle.clone(),
            state.clone(),
            expire_at,
        ));
        LeaseGuard {
            handle,
            locker,
            state,
            renewer: Some(renewer),
        }
    }

    /// The lease's identity.
    pub fn handle(&self) -> &LeaseHandle {
        &self.handle
    }

    /// The lock name.
    pub fn lock_name(&self) -> &str {
        &self.handle.lock_name
    }

    /// The lease uuid written in the record.
    pub fn uuid(&self) -> &str {
        &self.handle.uuid
    }

    /// The latest known state.
    pub fn state(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// Whether the lease is held as far as the holder knows: not reported lost and its last
    /// confirmed expiry has not passed. Check it right before publishing.
    pub fn is_held(&self) -> bool {
        self.lost_signal().lost_reason().is_none()
    }

    /// A signal that fires when the lease is lost.
    pub fn lost_signal(&self) -> LostSignal {
        LostSignal {
            state: self.state.subscribe(),
            clock: self.locker.clock().clone(),
        }
    }

    /// Resolves when the lease is lost, with the reason.
    pub async fn lost(&self) -> LostReason {
        self.lost_signal().wait().await
    }

    /// Confirms with the store (one GET) that the lease is still ours; if not, marks it lost.
    ///
    /// Errors: [`LockError::LeaseLost`], store failures.
    pub async fn verify(&self) -> Result<LeaseRecord, LockError> {
        if let Some(reason) = self.lost_signal().lost_reason() {
            return Err(self.locker.lost(&self.handle, reason));
        }
        let result = self.locker.verify(&self.handle).await;
        if let Err(LockError::LeaseLost { reason, .. }) = &result {
            self.mark_lost(reason.clone());
        }
        result
    }

    /// Stops renewing and gives the lease back (deletes the annotation, or decrements the
    /// shared count).
    ///
    /// Errors: [`LockError::LeaseLost`] if it was taken over or deleted before we released it
    /// (whatever was published under it may have raced another holder), store failures.
    pub async fn release(mut self) -> Result<(), LockError> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let _ = renewer.await;
        }
        let previous = self
            .state
            .send_replace(LeaseState::Lost(LostReason::Released));
        let result = self.locker.release(&self.handle).await;
        match (previous, result) {
            // A lease we already knew to be lost is reported with the reason we learned first.
            (LeaseState::Lost(reason), Err(LockError::LeaseLost { .. })) => {
                Err(self.locker.lost(&self.handle, reason))
            }
            (_, result) => result,
        }
    }

    /// Test hook simulating a crashed or frozen holder: stops the renewal task without
    /// releasing, so the lease expires after its TTL while the guard still exists.
    #[doc(hidden)]
    pub fn abort_renewal(&self) {
        if let Some(renewer) = &self.renewer {
            renewer.abort();
        }
    }

    fn mark_lost(&self, reason: LostReason) {
        self.state.send_if_modified(|state| match state {
            LeaseState::Held { .. } => {
                *state = LeaseState::Lost(reason);
                true
            }
            LeaseState::Lost(_) => false,
        });
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(renewer) = self.renewer.take() else {
            return; // released explicitly
        };
        renewer.abort();
        self.state
            .send_replace(LeaseState::Lost(LostReason::Released));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (locker, handle) = (self.locker.clone(), self.handle.clone());
        runtime.spawn(async move {
            // Let the aborted renewal finish unwinding; a write it already sent is ordered by
            // resourceVersion, so the release below simply re-reads after a conflict.
            let _ = renewer.await;
            if let Err(e) = locker.release(&handle).await {
                warn!(lock = %handle.lock_name, uuid = %handle.uuid, "releasing a dropped lease failed: {e}");
            }
        });
    }
}

/// Renews every `renew_period` until aborted. Publishes each confirmed expiry, and the loss:
/// the record no longer ours (taken over or gone), or the expiry passing before a renewal
/// got through (store unreachable or stalled).
async fn renew_loop(
    locker: Locker,
    handle: LeaseHandle,
    state: Arc<watch::Sender<LeaseState>>,
    mut expire_at: i64,
) {
    let period = locker.timings().renew_period;
    loop {
        tokio::time::sleep(period).await;
        let left = until_expiry(expire_at, locker.now());
        if left.is_zero() {
            state.send_replace(LeaseState::Lost(LostReason::Expired));
            warn!(lock = %handle.lock_name, uuid = %handle.uuid, "lease expired before it could be renewed");
            return;
        }
        match tokio::time::timeout(left, locker.renew(&handle, expire_at)).await {
            Ok(Ok(Ok(record))) => {
                expire_at = record.expire_at;
                state.send_replace(LeaseState::Held { expire_at });
                debug!(lock = %handle.lock_name, uuid = %handle.uuid, expire_at, "lease renewed");
            }
            Ok(Ok(Err(reason))) => {
                warn!(lock = %handle.lock_name, uuid = %handle.uuid, "lost lease: {reason}");
                state.send_replace(LeaseState::Lost(reason));
                return;
            }
            Ok(Err(e)) => {
                // Transient: try again next period while the lease has not expired.
                warn!(lock = %handle.lock_name, uuid = %handle.uuid, "renewing lease failed: {e}");
            }
            Err(_elapsed) => {
                warn!(lock = %handle.lock_name, uuid = %handle.uuid, "lease expired while renewing");
                state.send_replace(LeaseState::Lost(LostReason::Expired));
                return;
            }
        }
    }
}
