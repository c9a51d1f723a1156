//! What a builder pod's status says: still working, ended with a termination message, or
//! lost without one (evicted, OOM-killed, unschedulable).
//!
//! `kiln-builder` writes its result (JSON) to the termination message; with
//! `terminationMessagePolicy: FallbackToLogsOnError` a builder that died before writing it
//! leaves the tail of its log there instead. Parsing the JSON is the controller's job.

use k8s_openapi::api::core::v1::Pod;

use super::CONTAINER;

/// The state of a builder pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOutcome {
    /// Pending (scheduled or waiting for a node) or running.
    Running,
    /// The scheduler cannot place the pod (no node matches its selector, resources...).
    Unschedulable {
        /// The scheduler's message.
        message: String,
        /// When the scheduler first said so (the PodScheduled condition's transition
        /// time); `None` if the apiserver gave none.
        since: Option<k8s_openapi::jiff::Timestamp>,
    },
    /// The builder container exited.
    Terminated {
        /// Its exit code (0 = every stage built and published).
        exit_code: i32,
        /// The kubelet's reason (`Completed`, `Error`, `OOMKilled`...).
        reason: String,
        /// The termination message: the builder's JSON result, or the log tail.
        message: String,
    },
    /// The pod ended without a container exit (evicted, node lost, deleted).
    Lost {
        /// The pod's reason (`Evicted`...), or the phase.
        reason: String,
        /// The pod's message.
        message: String,
    },
}

/// Reads a builder pod's status.
pub fn pod_outcome(pod: &Pod) -> PodOutcome {
    let Some(status) = &pod.status else {
        return PodOutcome::Running;
    };
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    if let Some(t) = terminated {
        return PodOutcome::Terminated {
            exit_code: t.exit_code,
            reason: t.reason.clone().unwrap_or_default(),
            message: t.message.clone().unwrap_or_default(),
        };
    }
    let phase = status.phase.as_deref().unwrap_or("Pending");
    match phase {
        "Succeeded" | "Failed" => PodOutcome::Lost {
            reason: status.reason.clone().unwrap_or_else(|| phase.to_owned()),
            message: status.message.clone().unwrap_or_default(),
        },
        _ => {
            let unschedulable = status.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            });
            match unschedulable {
                Some(c) => PodOutcome::Unschedulable {
                    message: c.message.clone().unwrap_or_default(),
                    since: c.last_transition_time.as_ref().map(|t| t.0),
                },
                None => PodOutcome::Running,
            }
        }
    }
}
