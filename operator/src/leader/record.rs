//! The rules of the leader election record: who may take a `coordination.k8s.io/v1`
//! Lease, and what a replica writes when it acquires, renews or releases it.
//!
//! They follow Kubernetes' own leader election (client-go `leaderelection`, used by
//! kube-controller-manager): a Lease is free when it has no holder or when its holder
//! missed renewing it, i.e. `renewTime + leaseDurationSeconds` has passed;
//! `leaseTransitions` counts changes of holder; a holder that stops cleanly clears
//! `holderIdentity` so a standby need not wait for the lease to expire. The rules are
//! pure (the clock is a parameter) so they are unit-tested without an API server; the
//! writes that apply them are optimistic (conditional on the Lease's `resourceVersion`,
//! see [`super::Elector`]).

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// What a replica may do with a Lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it (a new `renewTime`).
    Renew,
    /// The Lease is free: take it. `previous` is the holder whose lease expired, `None`
    /// when there was none (never held, or released).
    Acquire {
        /// The expired holder, if any.
        previous: Option<String>,
    },
    /// Another replica holds the Lease until `expires`: stay standby.
    Standby {
        /// The holder's identity.
        holder: String,
        /// `renewTime + leaseDurationSeconds`.
        expires: Timestamp,
    },
}

/// The holder of `spec`, if any (an empty identity, as client-go writes on release, is
/// no holder).
pub fn holder(spec: Option<&LeaseSpec>) -> Option<&str> {
    spec.and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// When the current holder's claim ends: `renewTime + leaseDurationSeconds`. `None` when
/// either is missing (an incomplete record claims nothing).
pub fn expiry(spec: &LeaseSpec) -> Option<Timestamp> {
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = spec.lease_duration_seconds?;
    renewed
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .ok()
}

/// Decides what replica `identity` may do with a Lease whose spec is `spec` (`None`: the
/// Lease has no spec) at time `now`.
///
/// The holder's claim is valid while `now < renewTime + leaseDurationSeconds`; at the
/// expiry instant it is free. Clocks of the replicas are assumed to agree to well under
/// the lease duration (as for any Kubernetes controller's leader election).
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(current) = holder(spec) else {
        return Decision::Acquire { previous: None };
    };
    if current == identity {
        return Decision::Renew;
    }
    match spec.and_then(expiry) {
        Some(expires) if now < expires => Decision::Standby {
            holder: current.to_owned(),
            expires,
        },
        _ => Decision::Acquire {
            previous: Some(current.to_owned()),
        },
    }
}

/// The spec replica `identity` writes to hold the Lease from `now` for `duration_seconds`
/// (after [`decide`] said [`Decision::Renew`] or [`Decision::Acquire`]).
///
/// Renewing keeps `acquireTime` and `leaseTransitions`; taking the Lease from anyone else
/// (an expired holder, or nobody after a release) sets `acquireTime` to `now` and adds
/// one to `leaseTransitions`. A Lease that does not exist yet (`old` = `None`) starts at
/// zero transitions.
pub fn claim(
    old: Option<&LeaseSpec>,
    identity: &str,
    duration_seconds: i32,
    now: Timestamp,
) -> LeaseSpec {
    let renewing = holder(old) == Some(identity);
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(duration_seconds),
        renew_time: Some(MicroTime(now)),
        acquire_time: if renewing {
            old.and_then(|s| s.acquire_time.clone())
                .or(Some(MicroTime(now)))
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(match old {
            None => 0,
            Some(_) if renewing => transitions,
            Some(_) => transitions + 1,
        }),
        ..old.cloned().unwrap_or_default()
    }
}

/// The spec a holder writes when it stops cleanly at `now`: no holder, so a standby
/// acquires at its next look instead of waiting for the lease to expire. `acquireTime`
/// and `leaseTransitions` stay as a record of the last term.
pub fn released(old: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        renew_time: Some(MicroTime(now)),
        ..old.clone()
    }
}
