//! Pure status transitions of an ImageBuild: phase, the `Succeeded` condition with a stable
//! reason, observedGeneration, start and completion times.
//!
//! The controller computes the next status with these functions and writes it with
//! server-side apply; nothing here talks to the API.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kiln_crds::conditions::{SUCCEEDED, new_condition, set_condition};
use kiln_crds::{BuilderPodRef, ImageBuildStatus, Phase, Reason};

/// Longest condition message written (the apiserver allows 32 KiB; a log tail fits well
/// under this and the status stays small).
pub const MAX_MESSAGE: usize = 8 * 1024;

/// `message` cut to [`MAX_MESSAGE`] bytes at a character boundary, keeping the end (a log
/// tail's last lines say most).
pub fn bounded_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut start = message.len() - (MAX_MESSAGE - 4);
    while !message.is_char_boundary(start) {
        start += 1;
    }
    format!("... {}", &message[start..])
}

/// The status after moving to `phase` for `reason`: the Succeeded condition follows the
/// reason (True / False / Unknown), `observedGeneration` is `generation`, `startTime` is
/// set on the first transition and `completionTime` when the phase is final.
pub fn transition(
    current: &ImageBuildStatus,
    phase: Phase,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: Time,
) -> ImageBuildStatus {
    let mut next = current.clone();
    next.phase = phase;
    next.observed_generation = generation;
    if next.start_time.is_none() {
        next.start_time = Some(now.clone());
    }
    if phase.is_finished() && next.completion_time.is_none() {
        next.completion_time = Some(now.clone());
    }
    set_condition(
        &mut next.conditions,
        new_condition(
            SUCCEEDED,
            reason.succeeded_status(),
            reason,
            bounded_message(message),
            generation,
            now,
        ),
    );
    next
}

/// The status of a build that ended with `reason` (a terminal reason: its phase is
/// Succeeded, Failed or Cancelled).
pub fn finished(
    current: &ImageBuildStatus,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: Time,
) -> ImageBuildStatus {
    let phase = reason.terminal_phase().unwrap_or(Phase::Failed);
    transition(current, phase, reason, message, generation, now)
}

/// Adds builder pods to `status.builderPods` (kept by name, sorted by name): the record
/// of every pod the build ran, which stays after the pods themselves are deleted.
pub fn record_builder_pods(status: &mut ImageBuildStatus, pods: &[BuilderPodRef]) {
    for pod in pods {
        if !status.builder_pods.iter().any(|p| p.name == pod.name) {
            status.builder_pods.push(pod.clone());
        }
    }
    status.builder_pods.sort_by(|a, b| a.name.cmp(&b.name));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn builder_pods_accumulate_by_name() {
        let pod = |name: &str, platform: &str| BuilderPodRef {
            name: name.into(),
            image: "backend".into(),
            platform: platform.into(),
        };
        let mut status = ImageBuildStatus::default();
        record_builder_pods(&mut status, &[pod("b", "linux/arm64")]);
        record_builder_pods(
            &mut status,
            &[pod("b", "linux/arm64"), pod("a", "linux/amd64")],
        );
        assert_eq!(
            status.builder_pods,
            vec![pod("a", "linux/amd64"), pod("b", "linux/arm64")]
        );
    }

    #[test]
    fn running_then_failed() {
        let s0 = ImageBuildStatus::default();
        let s1 = transition(
            &s0,
            Phase::Planning,
            Reason::Planning,
            "resolving",
            Some(3),
            t(10),
        );
        assert_eq!(s1.phase, Phase::Planning);
        assert_eq!(s1.observed_generation, Some(3));
        assert_eq!(s1.start_time, Some(t(10)));
        assert_eq!(s1.completion_time, None);
        assert_eq!(s1.conditions[0].status, "Unknown");
        assert_eq!(s1.conditions[0].reason, "Planning");

        let s2 = finished(
            &s1,
            Reason::RevisionNotFound,
            "no such branch",
            Some(3),
            t(20),
        );
        assert_eq!(s2.phase, Phase::Failed);
        assert_eq!(s2.start_time, Some(t(10)), "start time stays");
        assert_eq!(s2.completion_time, Some(t(20)));
        assert_eq!(s2.conditions.len(), 1);
        assert_eq!(s2.conditions[0].status, "False");
        assert_eq!(s2.conditions[0].reason, "RevisionNotFound");
        assert_eq!(s2.conditions[0].message, "no such branch");
        assert_eq!(s2.conditions[0].last_transition_time, t(20));
    }

    #[test]
    fn cancelled_and_succeeded_phases() {
        let s = finished(
            &ImageBuildStatus::default(),
            Reason::Cancelled,
            "c",
            None,
            t(1),
        );
        assert_eq!(s.phase, Phase::Cancelled);
        assert_eq!(s.conditions[0].status, "False");
        let s = finished(
            &ImageBuildStatus::default(),
            Reason::Timeout,
            "t",
            None,
            t(1),
        );
        assert_eq!(s.phase, Phase::Failed);
        let s = finished(
            &ImageBuildStatus::default(),
            Reason::AllImagesPublished,
            "",
            None,
            t(1),
        );
        assert_eq!(s.phase, Phase::Succeeded);
        assert_eq!(s.conditions[0].status, "True");
    }

    #[test]
    fn long_messages_keep_their_end() {
        let long = format!("{}END", "é".repeat(MAX_MESSAGE));
        let b = bounded_message(&long);
        assert!(b.len() <= MAX_MESSAGE);
        assert!(b.starts_with("... "));
        assert!(b.ends_with("END"));
        assert_eq!(bounded_message("short"), "short");
    }
}
