//! Condition types and reasons of `ImageBuild.status.conditions`, in one place.
//!
//! Reasons are a stable API: users match on them in CI scripts and alerts
//! (`kubectl get ib -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].reason}'`),
//! so a reason is never renamed, only added. The helpers follow apimachinery's
//! `meta.SetStatusCondition`: `lastTransitionTime` moves only when the status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::Phase;

/// Condition type that ends a build: True when every image is published, False when
/// the build failed or was cancelled, Unknown while it runs. `kubectl wait
/// --for=condition=Succeeded` waits on it.
pub const SUCCEEDED: &str = "Succeeded";

/// Status of a condition, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
    /// `"Unknown"`.
    Unknown,
}

impl ConditionStatus {
    /// `"True"`, `"False"` or `"Unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// Every reason Kiln puts into a condition. The string form ([`Reason::as_str`]) is the
/// variant name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Every requested image is built or reused, tagged and published.
    AllImagesPublished,
    /// Accepted; work has not started.
    Pending,
    /// Fetching the source, reading werf.yaml, computing digests and the plan.
    Planning,
    /// Looking up stages and building the missing ones.
    Building,
    /// Waiting for another build that holds the lock of a stage this build needs.
    WaitingForStage,
    /// A builder pod of this build waits for a node: the scheduler cannot place it yet (no
    /// node of the platform, selector, taints or resources). The build fails with
    /// `BuilderPodFailed` if it stays so past the operator's schedule timeout.
    WaitingForNode,
    /// Adding custom tags, copying to the final repo, pushing manifest lists.
    Publishing,
    /// The ImageBuild spec is invalid (for example both `config.path` and
    /// `config.inline`, or a malformed `timeout`).
    InvalidSpec,
    /// werf.yaml is malformed: YAML syntax, unknown directive, dependency cycle...
    InvalidConfig,
    /// A Dockerfile is malformed, names an unknown target, or copies files that do not
    /// exist.
    InvalidDockerfile,
    /// A custom tag template is invalid or yields an invalid tag.
    InvalidCustomTag,
    /// The git repository could not be reached or fetched.
    SourceUnavailable,
    /// The git server refused the credentials.
    SourceAuthFailed,
    /// The revision names no branch, tag or commit of the repository.
    RevisionNotFound,
    /// A Secret named in the spec does not exist or lacks the expected keys.
    SecretNotFound,
    /// A registry (stages storage, cache, secondary or final repo) could not be reached.
    RegistryUnavailable,
    /// A registry refused the credentials or the push/pull.
    RegistryAuthFailed,
    /// An instruction of a stage failed in the builder (for example a RUN exiting
    /// non-zero); the message names the image, stage and instruction with the log tail.
    StageBuildFailed,
    /// A builder pod ended without a result (evicted, out of memory, deleted,
    /// unschedulable).
    BuilderPodFailed,
    /// Tagging, copying to the final repo or pushing a manifest list failed.
    PublishFailed,
    /// `spec.timeout` passed before the build finished.
    Timeout,
    /// `spec.cancel` was set; the build stopped.
    Cancelled,
    /// A bug or an unexpected state in Kiln; the message has the details.
    InternalError,
}

impl Reason {
    /// Every reason, for documentation and tests.
    pub const ALL: &'static [Reason] = &[
        Reason::AllImagesPublished,
        Reason::Pending,
        Reason::Planning,
        Reason::Building,
        Reason::WaitingForStage,
        Reason::WaitingForNode,
        Reason::Publishing,
        Reason::InvalidSpec,
        Reason::InvalidConfig,
        Reason::InvalidDockerfile,
        Reason::InvalidCustomTag,
        Reason::SourceUnavailable,
        Reason::SourceAuthFailed,
        Reason::RevisionNotFound,
        Reason::SecretNotFound,
        Reason::RegistryUnavailable,
        Reason::RegistryAuthFailed,
        Reason::StageBuildFailed,
        Reason::BuilderPodFailed,
        Reason::PublishFailed,
        Reason::Timeout,
        Reason::Cancelled,
        Reason::InternalError,
    ];

    /// The reason as written into conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AllImagesPublished => "AllImagesPublished",
            Reason::Pending => "Pending",
            Reason::Planning => "Planning",
            Reason::Building => "Building",
            Reason::WaitingForStage => "WaitingForStage",
            Reason::WaitingForNode => "WaitingForNode",
            Reason::Publishing => "Publishing",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::InvalidConfig => "InvalidConfig",
            Reason::InvalidDockerfile => "InvalidDockerfile",
            Reason::InvalidCustomTag => "InvalidCustomTag",
            Reason::SourceUnavailable => "SourceUnavailable",
            Reason::SourceAuthFailed => "SourceAuthFailed",
            Reason::RevisionNotFound => "RevisionNotFound",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::RegistryUnavailable => "RegistryUnavailable",
            Reason::RegistryAuthFailed => "RegistryAuthFailed",
            Reason::StageBuildFailed => "StageBuildFailed",
            Reason::BuilderPodFailed => "BuilderPodFailed",
            Reason::PublishFailed => "PublishFailed",
            Reason::Timeout => "Timeout",
            Reason::Cancelled => "Cancelled",
            Reason::InternalError => "InternalError",
        }
    }

    /// Parses a reason string back (for example from a stored condition).
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// The phase a build ends in with this reason on its Succeeded condition, or `None`
    /// for reasons of a running build.
    pub fn terminal_phase(self) -> Option<Phase> {
        match self {
            Reason::AllImagesPublished => Some(Phase::Succeeded),
            Reason::Cancelled => Some(Phase::Cancelled),
            Reason::Pending
            | Reason::Planning
            | Reason::Building
            | Reason::WaitingForStage
            | Reason::WaitingForNode
            | Reason::Publishing => None,
            _ => Some(Phase::Failed),
        }
    }

    /// The status the Succeeded condition has with this reason: True for success, False
    /// for a failed or cancelled build, Unknown while it runs.
    pub fn succeeded_status(self) -> ConditionStatus {
        match self.terminal_phase() {
            Some(Phase::Succeeded) => ConditionStatus::True,
            Some(_) => ConditionStatus::False,
            None => ConditionStatus::Unknown,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new condition with `lastTransitionTime = now`.
pub fn new_condition(
    type_: &str,
    status: ConditionStatus,
    reason: Reason,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.as_str().to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

/// The condition of the given type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Adds `new` or updates the condition of the same type, as apimachinery's
/// `meta.SetStatusCondition` does: reason, message and observedGeneration are replaced;
/// `lastTransitionTime` is taken from `new` only when the status changes (or the
/// condition is new), so it keeps meaning "when this last flipped".
///
/// Returns true if anything changed, so a caller can skip a no-op status write.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            conditions.push(new);
            true
        }
        Some(existing) => {
            let mut changed = false;
            if existing.status != new.status {
                existing.status = new.status;
                existing.last_transition_time = new.last_transition_time;
                changed = true;
            }
            if existing.reason != new.reason {
                existing.reason = new.reason;
                changed = true;
            }
            if existing.message != new.message {
                existing.message = new.message;
                changed = true;
            }
            if existing.observed_generation != new.observed_generation {
                existing.observed_generation = new.observed_generation;
                changed = true;
            }
            changed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    /// The apiserver's rule for `Condition.reason`
    /// (`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`, at most 1024 bytes).
    fn valid_reason(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 1024
            && b[0].is_ascii_alphabetic()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"_,:".contains(c))
            && (b.len() == 1 || b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
    }

    #[test]
    fn reasons_are_valid_unique_camel_case_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(valid_reason(s), "{s} breaks the apiserver's reason pattern");
            assert!(s.as_bytes()[0].is_ascii_uppercase(), "{s} is not CamelCase");
            assert!(seen.insert(s), "{s} listed twice");
            assert_eq!(Reason::parse(s), Some(*r));
            // The string form is the variant name, so Debug and as_str agree.
            assert_eq!(format!("{r:?}"), s);
        }
        assert_eq!(Reason::parse("NoSuchReason"), None);
    }

    #[test]
    fn reasons_named_in_the_design_exist() {
        for s in [
            "AllImagesPublished",
            "InvalidConfig",
            "SourceUnavailable",
            "StageBuildFailed",
            "RegistryUnavailable",
            "Timeout",
            "Cancelled",
        ] {
            assert!(Reason::parse(s).is_some(), "{s}");
        }
    }

    #[test]
    fn reasons_map_to_phases_and_statuses() {
        assert_eq!(
            Reason::AllImagesPublished.terminal_phase(),
            Some(Phase::Succeeded)
        );
        assert_eq!(
            Reason::AllImagesPublished.succeeded_status(),
            ConditionStatus::True
        );
        assert_eq!(Reason::Cancelled.terminal_phase(), Some(Phase::Cancelled));
        assert_eq!(Reason::Cancelled.succeeded_status(), ConditionStatus::False);
        assert_eq!(Reason::Timeout.terminal_phase(), Some(Phase::Failed));
        assert_eq!(
            Reason::StageBuildFailed.succeeded_status(),
            ConditionStatus::False
        );
        assert_eq!(Reason::Building.terminal_phase(), None);
        assert_eq!(
            Reason::WaitingForStage.succeeded_status(),
            ConditionStatus::Unknown
        );
    }

    #[test]
    fn set_condition_adds_then_keeps_transition_time_while_status_holds() {
        let mut conds = Vec::new();
        let first = new_condition(
            SUCCEEDED,
            ConditionStatus::Unknown,
            Reason::Planning,
            "planning",
            Some(1),
            t(100),
        );
        assert!(set_condition(&mut conds, first.clone()));
        assert_eq!(conds, vec![first]);

        // Same status, new reason: reason and message change, the time stays at 100.
        let building = new_condition(
            SUCCEEDED,
            ConditionStatus::Unknown,
            Reason::Building,
            "building set 1 of 2",
            Some(1),
            t(200),
        );
        assert!(set_condition(&mut conds, building));
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].reason, "Building");
        assert_eq!(conds[0].message, "building set 1 of 2");
        assert_eq!(conds[0].last_transition_time, t(100));

        // Status flips: the time moves to 300.
        let done = new_condition(
            SUCCEEDED,
            ConditionStatus::True,
            Reason::AllImagesPublished,
            "3 images",
            Some(1),
            t(300),
        );
        assert!(set_condition(&mut conds, done.clone()));
        assert_eq!(conds, vec![done.clone()]);

        // Writing the same condition again is a no-op, even with a later clock.
        let again = new_condition(
            SUCCEEDED,
            ConditionStatus::True,
            Reason::AllImagesPublished,
            "3 images",
            Some(1),
            t(400),
        );
        assert!(!set_condition(&mut conds, again));
        assert_eq!(conds, vec![done]);
    }

    #[test]
    fn set_condition_leaves_other_types_alone() {
        let other = new_condition(
            "Example",
            ConditionStatus::True,
            Reason::Building,
            "",
            None,
            t(1),
        );
        let mut conds = vec![other.clone()];
        let s = new_condition(
            SUCCEEDED,
            ConditionStatus::False,
            Reason::Timeout,
            "timed out after 30m",
            Some(2),
            t(5),
        );
        assert!(set_condition(&mut conds, s.clone()));
        assert_eq!(conds, vec![other, s]);
        assert_eq!(
            find_condition(&conds, SUCCEEDED).map(|c| c.reason.as_str()),
            Some("Timeout")
        );
        assert!(find_condition(&conds, "Missing").is_none());
    }
}
