//! Leader election between `kiln-operator run` replicas with a `coordination.k8s.io/v1`
//! Lease, so that two replicas never reconcile at once.
//!
//! Every replica runs an [`Elector`] on the same Lease (default `kiln-operator` in the
//! operator's namespace). Only the holder runs the controller; the others are standbys
//! that read the Lease every [`LeaseConfig::retry_period`] and take it once it is free:
//! released by a holder that stopped cleanly, or expired (`renewTime +
//! leaseDurationSeconds` passed, see [`record::decide`]). Every write is conditional on
//! the `resourceVersion` just read, so when two standbys race for a free Lease the API
//! server accepts one write and answers `409 Conflict` to the other.
//!
//! The holder renews every [`LeaseConfig::renew_interval`]. When it cannot renew for
//! [`LeaseConfig::renew_deadline`] (two thirds of the lease duration: the API server is
//! unreachable, the write is rejected) or finds another holder in the Lease, it has
//! lost the leadership ([`Lost`]) while its claim is still valid, so it stops before any
//! standby may take over. `kiln-operator run` then exits non-zero and Kubernetes restarts
//! it as a standby.

pub mod record;

#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{info, warn};

use record::Decision;

/// Default Lease name.
pub const DEFAULT_LEASE_NAME: &str = "kiln-operator";

/// Default lease duration: how long a holder's claim lasts after its last renewal (the
/// value of kube-controller-manager's `--leader-elect-lease-duration`).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

/// Default interval between a holder's renewals.
pub const DEFAULT_RENEW_INTERVAL: Duration = Duration::from_secs(5);

/// Default interval between a standby's looks at the Lease, and between a holder's
/// retries of a failed renewal.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Which Lease, who we are, and the timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity, written as `holderIdentity` (unique per process).
    pub identity: String,
    /// `leaseDurationSeconds` (whole seconds; at least one).
    pub lease_duration: Duration,
    /// Time between renewals of a holder; less than `lease_duration`.
    pub renew_interval: Duration,
    /// Time between a standby's looks, and between retries of a failed renewal.
    pub retry_period: Duration,
}

/// Invalid leader election timing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The lease duration is under one second (Leases count whole seconds).
    #[error("leader election: the lease duration must be at least 1 s, not {0:?}")]
    LeaseTooShort(Duration),
    /// Renewing no more often than the lease lasts would let it expire.
    #[error(
        "leader election: the renew interval {renew:?} must be shorter than two thirds of the lease duration {lease:?} (the renew deadline)"
    )]
    RenewTooSlow {
        /// The renew interval.
        renew: Duration,
        /// The lease duration.
        lease: Duration,
    },
}

impl LeaseConfig {
    /// A config with the default timing (15 s lease, renewals every 5 s, retries every
    /// 2 s).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_interval: DEFAULT_RENEW_INTERVAL,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// How long a holder keeps leading without a successful renewal: two thirds of the
    /// lease duration (10 s of 15 s, as client-go's defaults), leaving a third for clock
    /// differences and for the holder to stop before a standby may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    /// `leaseDurationSeconds`, whole seconds.
    pub fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Checks the timing.
    ///
    /// Errors: [`ConfigError`] — a lease under one second, or a renew interval not
    /// shorter than the renew deadline.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err(ConfigError::LeaseTooShort(self.lease_duration));
        }
        if self.renew_interval >= self.renew_deadline() {
            return Err(ConfigError::RenewTooSlow {
                renew: self.renew_interval,
                lease: self.lease_duration,
            });
        }
        Ok(())
    }
}

/// This replica's identity: `base` (the pod name, else the host name) and a random
/// suffix, so that a restarted container in the same pod is a new holder and two
/// processes on one host differ.
pub fn identity(base: Option<&str>) -> String {
    let base = base.filter(|b| !b.is_empty()).unwrap_or("kiln-operator");
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{base}_{}", &suffix[..8])
}

/// The host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), for [`identity`] when
/// there is no pod name.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

/// A failed Lease read or write.
#[derive(Debug, thiserror::Error)]
#[error("{operation} Lease {namespace}/{name}: {source}")]
pub struct LeaseError {
    /// `reading`, `creating`, `updating` or `releasing`.
    pub operation: &'static str,
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// Why a holder stopped leading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    /// Another replica is in the Lease (it was edited, or this replica's claim expired
    /// while it was paused).
    #[error("lost the leadership of Lease {lease}: it is held by {holder:?}")]
    TakenOver {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The new holder.
        holder: String,
    },
    /// No renewal succeeded within the renew deadline.
    #[error(
        "lost the leadership of Lease {lease}: not renewed for {deadline:?} (last error: {last_error})"
    )]
    NotRenewed {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The renew deadline.
        deadline: Duration,
        /// The last failure, or `timed out`.
        last_error: String,
    },
}

/// What one look at the Lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// This replica holds the Lease (it just acquired or renewed it).
    Held {
        /// The previous holder when the Lease changed hands now (`None` for a renewal or
        /// a free Lease).
        took_over_from: Option<String>,
        /// `leaseTransitions` after the write.
        transitions: i32,
    },
    /// Another replica holds it, or won the race for it (`holder` unknown then).
    Standby {
        /// The holder, when known.
        holder: Option<String>,
    },
}

/// One replica's side of the election on one Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl Elector {
    /// An elector for `config.namespace/config.name` as `config.identity`.
    pub fn new(client: Client, config: LeaseConfig) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// `namespace/name` of the Lease (for logs and errors).
    pub fn lease_ref(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    fn error(&self, operation: &'static str, source: kube::Error) -> LeaseError {
        LeaseError {
            operation,
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    /// Reads the Lease and acquires or renews it when [`record::decide`] allows, creating
    /// it when absent. A lost race (the create or the conditional update answered 409) is
    /// a [`Observation::Standby`], not an error.
    ///
    /// Errors: [`LeaseError`] — the API server failed or refused (e.g. RBAC) the read or
    /// the write.
    pub async fn try_acquire_or_renew(&self) -> Result<Observation, LeaseError> {
        let now = Timestamp::now();
        let seconds = self.config.lease_duration_seconds();
        let identity = self.config.identity.as_str();
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error("reading", e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(record::claim(None, identity, seconds, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Observation::Held {
                    took_over_from: None,
                    transitions: 0,
                }),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    Ok(Observation::Standby { holder: None })
                }
                Err(e) => Err(self.error("creating", e)),
            };
        };
        let took_over_from = match record::decide(lease.spec.as_ref(), identity, now) {
            Decision::Standby { holder, .. } => {
                return Ok(Observation::Standby {
                    holder: Some(holder),
                });
            }
            Decision::Renew => None,
            Decision::Acquire { previous } => previous,
        };
        let spec = record::claim(lease.spec.as_ref(), identity, seconds, now);
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(spec);
        // `replace` sends the resourceVersion read above: the write only lands if
        // nobody wrote the Lease in between.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Observation::Held {
                took_over_from,
                transitions,
            }),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Observation::Standby { holder: None }),
            Err(e) => Err(self.error("updating", e)),
        }
    }

    /// Waits until this replica holds the Lease. Looks every retry period; `connected`
    /// is called once, after the first successful look (leader or standby: the replica
    /// can talk to the API server). Logs each new holder it stands by for.
    ///
    /// Returns the instant the winning write started (for [`Elector::keep`]), or `None`
    /// when `shutdown` fired first (or its sender is gone). Read and write failures are
    /// logged and retried: a standby outlives API server hiccups.
    pub async fn acquire(
        &self,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
        connected: impl FnOnce(),
    ) -> Option<Instant> {
        let mut connected = Some(connected);
        let mut last_holder: Option<Option<String>> = None;
        loop {
            let started = Instant::now();
            let look = tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return None,
                look = self.try_acquire_or_renew() => look,
            };
            match look {
                Ok(observation) => {
                    if let Some(f) = connected.take() {
                        f();
                    }
                    match observation {
                        Observation::Held {
                            took_over_from,
                            transitions,
                        } => {
                            info!(
                                lease = %self.lease_ref(),
                                identity = %self.config.identity,
                                previous = %took_over_from.as_deref().unwrap_or(""),
                                transitions,
                                "acquired the lease: leading"
                            );
                            return Some(started);
                        }
                        Observation::Standby { holder } => {
                            if holder.is_some() && last_holder.as_ref() != Some(&holder) {
                                info!(
                                    lease = %self.lease_ref(),
                                    identity = %self.config.identity,
                                    holder = %holder.as_deref().unwrap_or(""),
                                    "standby: another replica holds the lease"
                                );
                                last_holder = Some(holder);
                            }
                        }
                    }
                }
                Err(e) => warn!(error = %e, "leader election: looking at the lease failed"),
            }
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return None,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
    }

    /// Keeps the Lease renewed (every renew interval; after a failure, every retry
    /// period) and returns only when the leadership is lost: another holder is in the
    /// Lease, or no renewal succeeded within the renew deadline counted from
    /// `last_renewed` (the instant the last successful write started). Each attempt is
    /// cut off at the deadline, so a hanging request cannot stretch it.
    pub async fn keep(&self, mut last_renewed: Instant) -> Lost {
        let deadline_of = |last: Instant| last + self.config.renew_deadline();
        let mut wait = self.config.renew_interval;
        let mut last_error = String::from("timed out");
        loop {
            let deadline = deadline_of(last_renewed);
            if tokio::time::timeout_at(deadline, tokio::time::sleep(wait))
                .await
                .is_err()
            {
                return self.not_renewed(last_error);
            }
            let started = Instant::now();
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Err(_) => return self.not_renewed(last_error),
                Ok(Ok(Observation::Held { .. })) => {
                    last_renewed = started;
                    wait = self.config.renew_interval;
                }
                Ok(Ok(Observation::Standby {
                    holder: Some(holder),
                })) => {
                    return Lost::TakenOver {
                        lease: self.lease_ref(),
                        holder,
                    };
                }
                Ok(Ok(Observation::Standby { holder: None })) => {
                    // Someone wrote the Lease between our read and our write: look again.
                    last_error = "conflicting write".into();
                    wait = self.config.retry_period;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "leader election: renewing the lease failed");
                    last_error = e.to_string();
                    wait = self.config.retry_period;
                }
            }
        }
    }

    fn not_renewed(&self, last_error: String) -> Lost {
        Lost::NotRenewed {
            lease: self.lease_ref(),
            deadline: self.config.renew_deadline(),
            last_error,
        }
    }

    /// Gives the Lease up if this replica holds it (see [`record::released`]), so a
    /// standby takes over at its next look. Does nothing when another replica holds it.
    ///
    /// Errors: [`LeaseError`] — reading or writing failed (the Lease then expires on
    /// its own after the lease duration).
    pub async fn release(&self) -> Result<bool, LeaseError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error("reading", e))?
        else {
            return Ok(false);
        };
        if record::holder(lease.spec.as_ref()) != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        let spec = lease.spec.take().unwrap_or_default();
        lease.spec = Some(record::released(&spec, Timestamp::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.error("releasing", e))?;
        info!(lease = %self.lease_ref(), identity = %self.config.identity, "released the lease");
        Ok(true)
    }
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("config", &self.config)
            .finish()
    }
}
