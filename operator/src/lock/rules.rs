//! The lease rules: what acquire, renew and release do to the record under one key.
//!
//! Pure functions reproducing lockgate v0.1.1's optimistic-locking backend (the version werf v2
//! pins): acquire writes a new lease when there is none or the old one is expired (takeover),
//! joins a live shared lease when asking for a shared one, and otherwise must wait; renew and
//! release act only while the stored lease still carries the holder's uuid.

use std::time::Duration;

use super::clock::{expiry_after, is_expired};
use super::record::LeaseRecord;

/// Exclusive (one holder) or shared (any number of shared holders, no exclusive one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// One holder at a time; what werf uses for stage locks.
    Exclusive,
    /// Any number of shared holders at once; excludes exclusive holders.
    Shared,
}

impl LockMode {
    /// `true` for [`LockMode::Shared`].
    pub fn is_shared(self) -> bool {
        matches!(self, LockMode::Shared)
    }
}

/// Outcome of an acquire attempt against the current record.
#[derive(Debug, Clone, PartialEq)]
pub enum AcquireStep {
    /// Store this record; once the write succeeds the caller holds the lease with its uuid.
    Write(LeaseRecord),
    /// A live lease of an incompatible mode (or an exclusive one) is held by someone else.
    Wait {
        /// The live lease that blocks the acquirer.
        holder: LeaseRecord,
    },
}

/// Why a holder no longer holds its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// The lease under the key now carries another uuid: it expired and someone took it over.
    TakenOver {
        /// uuid of the lease now stored.
        by_uuid: String,
    },
    /// There is no lease under the key any more (deleted, or released by another holder).
    Missing,
    /// The lease was not confirmed (renewed) before its expiry time passed, so others may
    /// already have taken it over; the holder must assume it is gone.
    Expired,
    /// The holder released the lease itself.
    Released,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LostReason::TakenOver { by_uuid } => write!(f, "taken over by lease {by_uuid}"),
            LostReason::Missing => f.write_str("the lease annotation is gone"),
            LostReason::Expired => f.write_str("not renewed before its expiry time"),
            LostReason::Released => f.write_str("released by its holder"),
        }
    }
}

/// Acquire: decides the new record for `lock_name` given the current one.
///
/// - no record, or an expired one (`now > ExpireAtTimestamp`) → a fresh lease with `new_uuid`,
///   count 1, expiry `now + ttl` (takeover overwrites the old one, including unknown fields);
/// - `mode` shared and a live shared record → same uuid, count + 1, expiry refreshed;
/// - otherwise → [`AcquireStep::Wait`].
pub fn acquire(
    current: Option<&LeaseRecord>,
    lock_name: &str,
    mode: LockMode,
    now: Duration,
    ttl: Duration,
    new_uuid: impl FnOnce() -> String,
) -> AcquireStep {
    match current {
        Some(live) if !is_expired(live.expire_at, now) => {
            if mode.is_shared() && live.is_shared {
                let mut joined = live.clone();
                joined.shared_holders_count += 1;
                joined.expire_at = expiry_after(now, ttl);
                AcquireStep::Write(joined)
            } else {
                AcquireStep::Wait {
                    holder: live.clone(),
                }
            }
        }
        _ => AcquireStep::Write(LeaseRecord {
            uuid: new_uuid(),
            lock_name: lock_name.to_owned(),
            expire_at: expiry_after(now, ttl),
            shared_holders_count: 1,
            is_shared: mode.is_shared(),
            unknown: Vec::new(),
        }),
    }
}

/// Checks that `current` is still the lease `uuid` (lockgate's `changeLease` precondition).
fn still_held<'a>(
    current: Option<&'a LeaseRecord>,
    uuid: &str,
) -> Result<&'a LeaseRecord, LostReason> {
    match current {
        None => Err(LostReason::Missing),
        Some(record) if record.uuid != uuid => Err(LostReason::TakenOver {
            by_uuid: record.uuid.clone(),
        }),
        Some(record) => Ok(record),
    }
}

/// Renew: the record with expiry `now + ttl` if the stored lease is still `uuid`.
///
/// Like lockgate, a lease that expired but was not taken over is renewed: no one else can
/// have held it, since taking over would have replaced the uuid.
pub fn renew(
    current: Option<&LeaseRecord>,
    uuid: &str,
    now: Duration,
    ttl: Duration,
) -> Result<LeaseRecord, LostReason> {
    let mut renewed = still_held(current, uuid)?.clone();
    renewed.expire_at = expiry_after(now, ttl);
    Ok(renewed)
}

/// Release: one holder fewer. `Ok(None)` = delete the annotation (last holder),
/// `Ok(Some(record))` = store the decremented shared lease.
pub fn release(
    current: Option<&LeaseRecord>,
    uuid: &str,
) -> Result<Option<LeaseRecord>, LostReason> {
    let mut remaining = still_held(current, uuid)?.clone();
    remaining.shared_holders_count -= 1;
    // `<= 0` rather than lockgate's `== 0`: a corrupt count must not leave a lease behind.
    if remaining.shared_holders_count <= 0 {
        Ok(None)
    } else {
        Ok(Some(remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);
    const NAME: &str = "p/stage/abc";

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn lease(uuid: &str, expire_at: i64, count: i64, shared: bool) -> LeaseRecord {
        LeaseRecord {
            uuid: uuid.into(),
            lock_name: NAME.into(),
            expire_at,
            shared_holders_count: count,
            is_shared: shared,
            unknown: Vec::new(),
        }
    }

    fn written(step: AcquireStep) -> LeaseRecord {
        match step {
            AcquireStep::Write(record) => record,
            AcquireStep::Wait { holder } => panic!("expected a write, must wait for {holder:?}"),
        }
    }

    #[test]
    fn acquire_free_lock_writes_a_fresh_lease() {
        for mode in [LockMode::Exclusive, LockMode::Shared] {
            let record = written(acquire(None, NAME, mode, at(1_000), TTL, || "new".into()));
            assert_eq!(record, lease("new", 1_010, 1, mode.is_shared()));
        }
    }

    #[test]
    fn acquire_live_exclusive_lease_must_wait() {
        let held = lease("old", 1_005, 1, false);
        for mode in [LockMode::Exclusive, LockMode::Shared] {
            let step = acquire(Some(&held), NAME, mode, at(1_000), TTL, || "new".into());
            assert_eq!(
                step,
                AcquireStep::Wait {
                    holder: held.clone()
                }
            );
        }
    }

    #[test]
    fn exclusive_waits_for_live_shared_lease() {
        let held = lease("s", 1_005, 3, true);
        let step = acquire(
            Some(&held),
            NAME,
            LockMode::Exclusive,
            at(1_000),
            TTL,
            || "new".into(),
        );
        assert_eq!(step, AcquireStep::Wait { holder: held });
    }

    #[test]
    fn shared_joins_live_shared_lease_keeping_its_uuid() {
        let held = lease("s", 1_005, 2, true);
        let record = written(acquire(
            Some(&held),
            NAME,
            LockMode::Shared,
            at(1_000),
            TTL,
            || panic!("joining must not mint a uuid"),
        ));
        assert_eq!(record, lease("s", 1_010, 3, true));
    }

    #[test]
    fn expired_lease_is_taken_over_by_a_fresh_one() {
        // Expired exactly when now is past the expiry second.
        let held = lease("old", 1_000, 4, true);
        let at_expiry = acquire(
            Some(&held),
            NAME,
            LockMode::Exclusive,
            at(1_000),
            TTL,
            || "new".into(),
        );
        assert!(matches!(at_expiry, AcquireStep::Wait { .. }));
        let now = Duration::from_millis(1_000_001);
        let record = written(acquire(
            Some(&held),
            NAME,
            LockMode::Exclusive,
            now,
            TTL,
            || "new".into(),
        ));
        assert_eq!(record, lease("new", 1_010, 1, false));
    }

    #[test]
    fn renew_extends_only_our_lease() {
        let ours = lease("me", 1_003, 1, false);
        assert_eq!(
            renew(Some(&ours), "me", at(1_001), TTL),
            Ok(lease("me", 1_011, 1, false))
        );
        // Expired but not taken over: still ours.
        assert_eq!(
            renew(Some(&ours), "me", at(1_020), TTL),
            Ok(lease("me", 1_030, 1, false))
        );
        assert_eq!(
            renew(Some(&ours), "you", at(1_001), TTL),
            Err(LostReason::TakenOver {
                by_uuid: "me".into()
            })
        );
        assert_eq!(renew(None, "me", at(1_001), TTL), Err(LostReason::Missing));
    }

    #[test]
    fn release_counts_shared_holders_down_then_deletes() {
        let shared = lease("s", 1_010, 2, true);
        let one_left = release(Some(&shared), "s").unwrap().unwrap();
        assert_eq!(one_left, lease("s", 1_010, 1, true));
        assert_eq!(release(Some(&one_left), "s"), Ok(None));
        assert_eq!(release(Some(&lease("x", 1_010, 1, false)), "x"), Ok(None));
        assert_eq!(release(Some(&lease("x", 1_010, 0, false)), "x"), Ok(None));
    }

    #[test]
    fn release_of_a_lost_lease_reports_why() {
        assert_eq!(
            release(Some(&lease("other", 1_010, 1, false)), "me"),
            Err(LostReason::TakenOver {
                by_uuid: "other".into()
            })
        );
        assert_eq!(release(None, "me"), Err(LostReason::Missing));
    }
}
