//! The decide step of the Building phase, pure: from what was observed of one image ×
//! platform (its stages found, its builder pod, what an attempt to build it met) to the
//! next step, and from the steps of a build set to its condition reason.
//!
//! No API, registry or lock call here: the observe step gathers a [`UnitView`], the act
//! step executes [`UnitStep::Build`] and reports an [`Attempt`], which is decided again.
//! Every state a branch depends on is an enum; a condition reason comes from
//! [`WaitReason::reason`], never from message text.

use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kiln_crds::Reason;
use kiln_crds::job::BuildResult;

use super::error::Error;
use crate::pods::PodOutcome;

/// Why an image × platform is not complete yet. Its `Display` is the progress note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// A dependency whose published image feeds a build arg is not published yet.
    Dependency {
        /// The werf.yaml image it waits for.
        dependency: String,
    },
    /// Stages of a staged Dockerfile wait for the images of the Dockerfile stages they are
    /// built on or copy from (their digests are computed once those are published).
    DockerfileStages {
        /// How many stages wait.
        stages: usize,
    },
    /// Our builder pod builds it.
    OwnPod {
        /// The pod's name.
        pod: String,
    },
    /// Our builder pod waits for a node (the scheduler cannot place it yet).
    Node {
        /// The scheduler's message.
        message: String,
    },
    /// `parallelTasksLimit` builder pods of the set already run.
    Slot,
    /// A live builder pod of another ImageBuild builds the first missing stage.
    LiveBuilder {
        /// `namespace/name` of that pod.
        pod: String,
    },
    /// Another build holds the lock of a missing stage.
    Lock,
    /// The stage leases of our builder pods are still held by a previous operator process
    /// (it restarted while they ran); they expire within the lease TTL.
    RestartedLeases {
        /// Our pods whose leases are still held elsewhere, sorted.
        pods: Vec<String>,
    },
}

impl WaitReason {
    /// The condition reason this wait shows: waits on other builds' stages are
    /// `WaitingForStage`, a pod waiting for a node is `WaitingForNode`, progress inside this
    /// build is `Building`.
    pub fn reason(&self) -> Reason {
        match self {
            WaitReason::LiveBuilder { .. }
            | WaitReason::Lock
            | WaitReason::RestartedLeases { .. } => Reason::WaitingForStage,
            WaitReason::Node { .. } => Reason::WaitingForNode,
            WaitReason::Dependency { .. }
            | WaitReason::DockerfileStages { .. }
            | WaitReason::OwnPod { .. }
            | WaitReason::Slot => Reason::Building,
        }
    }

    /// Whether this wait holds one of the set's `parallelTasksLimit` slots (our pod exists).
    pub fn occupies_slot(&self) -> bool {
        matches!(self, WaitReason::OwnPod { .. } | WaitReason::Node { .. })
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Dependency { dependency } => {
                write!(f, "waits for dependency {dependency:?} to be published")
            }
            WaitReason::DockerfileStages { stages } => write!(
                f,
                "waits for its Dockerfile stages to be published before computing the digests of {stages} stage(s)"
            ),
            WaitReason::OwnPod { pod } => write!(f, "is built by builder pod {pod}"),
            WaitReason::Node { message } => write!(f, "waits for a node: {message}"),
            WaitReason::Slot => f.write_str("waits for a free slot"),
            WaitReason::LiveBuilder { pod } => {
                write!(
                    f,
                    "waits for builder pod {pod}, which builds the same stage"
                )
            }
            WaitReason::Lock => {
                f.write_str("waits for the lock of a stage another build publishes")
            }
            WaitReason::RestartedLeases { pods } => write!(
                f,
                "waits for the stage leases of builder pods {} to expire (the operator restarted while they ran)",
                pods.join(", ")
            ),
        }
    }
}

/// Why a build fails at an image × platform.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Our builder pod ended without success (or stayed unschedulable past the limit).
    Pod {
        /// The pod's name.
        pod: String,
        /// How it ended.
        outcome: PodOutcome,
    },
    /// Our builder pod reported success but a fresh lookup does not find its stages.
    StagesMissing {
        /// The pod's name.
        pod: String,
    },
    /// The builder job was refused (e.g. an instruction the builder has no form for); the
    /// message says why.
    JobRefused(String),
}

/// What the act step met when it tried to build an image × platform ([`UnitStep::Build`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// A live builder pod of another ImageBuild builds the first missing stage.
    LiveBuilder(String),
    /// A missing stage's lock is held by another build.
    LockHeld,
    /// Under the locks, a fresh lookup found every missing stage (another build published
    /// them meanwhile).
    FoundUnderLock,
    /// Under the locks, the missing stages were copied from a secondary repo.
    CopiedFromSecondary,
    /// The job was compiled and our builder pod created (or adopted).
    Created(String),
    /// The job compiler refused the image; the locks were freed.
    Refused(String),
}

/// The next step for one image × platform.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitStep {
    /// Every stage is in the stages storage.
    Done,
    /// Not complete yet, for this reason.
    Wait(WaitReason),
    /// The build fails.
    Fail(Failure),
    /// Build the stages at these indices (ascending): take their locks, re-check, copy from
    /// a secondary repo or create the builder pod.
    Build {
        /// Indices into the unit's stages.
        missing: Vec<usize>,
    },
}

impl UnitStep {
    /// Whether this step holds one of the set's `parallelTasksLimit` slots.
    pub fn occupies_slot(&self) -> bool {
        matches!(self, UnitStep::Wait(w) if w.occupies_slot())
    }
}

/// Our builder pod for an image × platform, as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnPod {
    /// Its name.
    pub name: String,
    /// Its state.
    pub outcome: PodOutcome,
    /// For a pod that ended with success: whether a fresh lookup finds each stage of the
    /// unit (`None` when not looked up).
    pub fresh_found: Option<Vec<bool>>,
}

/// What the observe step saw of one image × platform.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitView {
    /// The dependency it waits for (its build args need its published image).
    pub deferred_on: Option<String>,
    /// Its stage digests in build order; `None` for a stage whose digest a later reconcile
    /// computes.
    pub digests: Vec<Option<String>>,
    /// Per stage: whether the stages storage has it (a stage after a missing one counts as
    /// missing).
    pub found: Vec<bool>,
    /// How many stages wait for the images of Dockerfile stages.
    pub waiting_stages: usize,
    /// Our builder pod for it, if one exists.
    pub own_pod: Option<OwnPod>,
    /// What an attempt to build it met in this pass.
    pub attempt: Option<Attempt>,
}

/// The limits a decision is taken under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Our builder pods already holding a slot in this set.
    pub running: usize,
    /// `parallelTasksLimit`; `None` for no limit.
    pub parallel: Option<usize>,
    /// How long a builder pod may stay unschedulable before the build fails.
    pub schedule_timeout: Duration,
    /// Now.
    pub now: Timestamp,
}

impl UnitView {
    /// The indices of stages that have a digest and are not found.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.found.len())
            .filter(|&i| !self.found[i] && self.digests.get(i).is_some_and(Option::is_some))
            .collect()
    }

    /// The complete-or-waiting step once every stage with a digest is found.
    fn when_found(&self) -> UnitStep {
        if self.waiting_stages > 0 {
            UnitStep::Wait(WaitReason::DockerfileStages {
                stages: self.waiting_stages,
            })
        } else {
            UnitStep::Done
        }
    }
}

/// The next step of one image × platform (see the module docs).
#[tracing::instrument(level = "debug", skip_all, ret)]
pub fn decide(view: &UnitView, limits: Limits) -> UnitStep {
    if let Some(dependency) = &view.deferred_on {
        return UnitStep::Wait(WaitReason::Dependency {
            dependency: dependency.clone(),
        });
    }
    // Our pod still runs although every stage is in the stages storage: it pushed the last
    // one and has not exited yet (the stages are under our locks, so no other build can
    // have published them). Its termination message is the record of what this build built
    // (the report's `rebuilt` and build times), so the unit is done only once it has exited.
    if let Some(pod) = &view.own_pod
        && pod.outcome == PodOutcome::Running
    {
        return UnitStep::Wait(WaitReason::OwnPod {
            pod: pod.name.clone(),
        });
    }
    let missing = view.missing();
    if missing.is_empty() {
        return view.when_found();
    }
    if let Some(pod) = &view.own_pod {
        return match &pod.outcome {
            PodOutcome::Unschedulable {
                since: Some(since), ..
            } if waited_longer(*since, limits.now, limits.schedule_timeout) => {
                UnitStep::Fail(Failure::Pod {
                    pod: pod.name.clone(),
                    outcome: pod.outcome.clone(),
                })
            }
            PodOutcome::Unschedulable { message, .. } => UnitStep::Wait(WaitReason::Node {
                message: message.clone(),
            }),
            PodOutcome::Running => UnitStep::Wait(WaitReason::OwnPod {
                pod: pod.name.clone(),
            }),
            outcome if !succeeded(outcome) => UnitStep::Fail(Failure::Pod {
                pod: pod.name.clone(),
                outcome: outcome.clone(),
            }),
            _ => {
                let fresh = pod.fresh_found.as_deref().unwrap_or(&[]);
                if missing
                    .iter()
                    .any(|&i| !fresh.get(i).copied().unwrap_or(false))
                {
                    UnitStep::Fail(Failure::StagesMissing {
                        pod: pod.name.clone(),
                    })
                } else {
                    view.when_found()
                }
            }
        };
    }
    match &view.attempt {
        None if limits.parallel.is_some_and(|l| limits.running >= l) => {
            UnitStep::Wait(WaitReason::Slot)
        }
        None => UnitStep::Build { missing },
        Some(Attempt::LiveBuilder(pod)) => {
            UnitStep::Wait(WaitReason::LiveBuilder { pod: pod.clone() })
        }
        Some(Attempt::LockHeld) => UnitStep::Wait(WaitReason::Lock),
        Some(Attempt::FoundUnderLock | Attempt::CopiedFromSecondary) => view.when_found(),
        Some(Attempt::Created(pod)) => UnitStep::Wait(WaitReason::OwnPod { pod: pod.clone() }),
        Some(Attempt::Refused(message)) => UnitStep::Fail(Failure::JobRefused(message.clone())),
    }
}

/// The step after every set is complete: wait while a previous operator process still holds
/// the stage leases of our pods (`unsettled`), else done.
pub fn settle(unsettled: &[String]) -> UnitStep {
    if unsettled.is_empty() {
        UnitStep::Done
    } else {
        UnitStep::Wait(WaitReason::RestartedLeases {
            pods: unsettled.to_vec(),
        })
    }
}

/// The condition reason of an incomplete set from its units' steps: `Building` while one of
/// our pods builds or a step is not a wait; otherwise the waits' reason, a wait on another
/// build's stage first, then a wait for a node.
pub fn set_reason<'a>(steps: impl IntoIterator<Item = &'a UnitStep>) -> Reason {
    let mut reasons = Vec::new();
    for step in steps {
        match step {
            UnitStep::Wait(w) if !matches!(w, WaitReason::OwnPod { .. }) => {
                reasons.push(w.reason())
            }
            UnitStep::Done => {}
            _ => return Reason::Building,
        }
    }
    [Reason::WaitingForStage, Reason::WaitingForNode]
        .into_iter()
        .find(|r| reasons.contains(r))
        .unwrap_or(Reason::Building)
}

/// True when `since` is more than `limit` before `now` (a clock skewed into the future
/// never counts).
pub fn waited_longer(since: Timestamp, now: Timestamp, limit: Duration) -> bool {
    Duration::try_from(now.duration_since(since)).is_ok_and(|w| w > limit)
}

/// True when a builder pod's termination message is a successful result.
pub fn succeeded(outcome: &PodOutcome) -> bool {
    matches!(outcome, PodOutcome::Terminated { exit_code: 0, message, .. }
        if serde_json::from_str::<BuildResult>(message).is_ok_and(|r| r.ok))
}

impl Failure {
    /// The terminal error of this failure at `image` (`platform`): image, platform, stage,
    /// instruction, exit code and log tail for a failed pod; `repo` is the stages storage.
    pub fn into_error(self, image: &str, platform: &str, repo: &str) -> Error {
        let head = format!("image {image:?} ({platform})");
        match self {
            Failure::Pod { pod, outcome } => pod_failure(&head, &pod, &outcome),
            Failure::StagesMissing { pod } => Error::BuilderPodFailed(format!(
                "{head}: builder pod {pod} reported success but the stages are not in {repo}"
            )),
            Failure::JobRefused(message) => Error::Unsupported(message),
        }
    }
}

/// The condition message of a failed builder pod: image, platform, stage, instruction,
/// exit code and the log tail.
fn pod_failure(head: &str, pod: &str, outcome: &PodOutcome) -> Error {
    match outcome {
        PodOutcome::Terminated {
            exit_code,
            reason,
            message,
        } => match serde_json::from_str::<BuildResult>(message) {
            Ok(result) => match result.failure {
                Some(f) => Error::StageBuildFailed(format!(
                    "{head}, stage {} ({}), instruction `{}`{}: {}\n{}",
                    f.stage,
                    &f.digest[..12.min(f.digest.len())],
                    f.instruction,
                    f.exit_code
                        .map(|c| format!(" exited with {c}"))
                        .unwrap_or_default(),
                    f.message,
                    f.log_tail
                )),
                None => Error::BuilderPodFailed(format!(
                    "{head}: builder pod {pod} exited with {exit_code} ({reason}) without a failure record"
                )),
            },
            Err(_) => Error::BuilderPodFailed(format!(
                "{head}: builder pod {pod} exited with {exit_code} ({reason}); log tail:\n{message}"
            )),
        },
        PodOutcome::Lost { reason, message } => Error::BuilderPodFailed(format!(
            "{head}: builder pod {pod} ended without a result: {reason}: {message}"
        )),
        PodOutcome::Unschedulable { message, .. } => Error::BuilderPodFailed(format!(
            "{head}: builder pod {pod} cannot be scheduled: {message} (check spec.builder.nodeSelector, tolerations and resources, and that a node of the platform exists)"
        )),
        PodOutcome::Running => Error::Internal(format!("{head}: pod {pod} still running")),
    }
}

#[cfg(test)]
mod tests;
