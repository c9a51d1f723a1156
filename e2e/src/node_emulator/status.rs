//! Pod status as a kubelet reports it, built from the emulator's view of its
//! containers. Pure: the runner writes the result with a JSON merge patch of the
//! whole `status` (arrays are replaced, so the emulator owns every condition).

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The address pods and the node report: containers share the host's network.
pub const NODE_IP: &str = "127.0.0.1";

/// One container's state.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerRun {
    /// Not started (yet).
    Waiting {
        /// e.g. `ContainerCreating`, `PodInitializing`, `CreateContainerConfigError`.
        reason: String,
        /// Details, may be empty.
        message: String,
    },
    /// Its process runs.
    Running {
        /// When it started.
        started_at: Time,
    },
    /// Its process exited (or never started: `StartError`, exit code 128).
    Terminated {
        /// Exit status; 128+N for signal N.
        exit_code: i32,
        /// Signal number if killed by a signal.
        signal: Option<i32>,
        /// `Completed`, `Error`, `StartError`.
        reason: String,
        /// The termination message.
        message: String,
        /// Start time (equals finish for StartError).
        started_at: Time,
        /// Exit time.
        finished_at: Time,
    },
}

/// A container and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Image as in the spec.
    pub image: String,
    /// State.
    pub state: ContainerRun,
}

impl ContainerView {
    fn status(&self, id: &str) -> ContainerStatus {
        let (state, running) = match &self.state {
            ContainerRun::Waiting { reason, message } => (
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.clone()),
                        message: (!message.is_empty()).then(|| message.clone()),
                    }),
                    ..Default::default()
                },
                false,
            ),
            ContainerRun::Running { started_at } => (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(started_at.clone()),
                    }),
                    ..Default::default()
                },
                true,
            ),
            ContainerRun::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
            } => (
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: *exit_code,
                        signal: *signal,
                        reason: Some(reason.clone()),
                        message: (!message.is_empty()).then(|| message.clone()),
                        started_at: Some(started_at.clone()),
                        finished_at: Some(finished_at.clone()),
                        container_id: Some(id.to_owned()),
                    }),
                    ..Default::default()
                },
                false,
            ),
        };
        let started = !matches!(self.state, ContainerRun::Waiting { .. });
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: String::new(),
            container_id: started.then(|| id.to_owned()),
            ready: running,
            restart_count: 0,
            started: Some(running),
            state: Some(state),
            ..Default::default()
        }
    }
}

/// Pod phase from its containers (restartPolicy Never semantics): Pending until a
/// container runs; Running while any runs or init is done and some still wait to run;
/// once all regular containers terminated, Succeeded if all exited 0, else Failed. A
/// failed init container fails the pod.
pub fn phase(init: &[ContainerView], containers: &[ContainerView]) -> &'static str {
    let failed = |c: &ContainerView| matches!(c.state, ContainerRun::Terminated { exit_code, .. } if exit_code != 0);
    let terminated = |c: &ContainerView| matches!(c.state, ContainerRun::Terminated { .. });
    if init.iter().any(failed) {
        return "Failed";
    }
    if !containers.is_empty() && containers.iter().all(terminated) {
        return if containers.iter().any(failed) {
            "Failed"
        } else {
            "Succeeded"
        };
    }
    let init_done = init.iter().all(terminated);
    if init_done
        && containers
            .iter()
            .any(|c| !matches!(c.state, ContainerRun::Waiting { .. }))
    {
        "Running"
    } else {
        // Includes init containers running: the kubelet reports Pending then.
        "Pending"
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, now: &Time) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    }
}

/// The whole pod status. `uid_prefix` makes container ids unique
/// (`kiln-emulator://<uid>/<container>`).
pub fn pod_status(
    uid: &str,
    init: &[ContainerView],
    containers: &[ContainerView],
    start_time: &Time,
    now: &Time,
) -> PodStatus {
    let phase = phase(init, containers);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let init_done = init
        .iter()
        .all(|c| matches!(c.state, ContainerRun::Terminated { exit_code: 0, .. }));
    let ready = !terminal
        && containers
            .iter()
            .all(|c| matches!(c.state, ContainerRun::Running { .. }));
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let id = |c: &ContainerView| format!("kiln-emulator://{uid}/{}", c.name);
    PodStatus {
        phase: Some(phase.to_owned()),
        host_ip: Some(NODE_IP.to_owned()),
        pod_ip: Some(NODE_IP.to_owned()),
        start_time: Some(start_time.clone()),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", !terminal, None, now),
            condition(
                "Initialized",
                init_done,
                (!init_done).then_some("ContainersNotInitialized"),
                now,
            ),
            condition("Ready", ready, (!ready).then_some(not_ready_reason), now),
            condition(
                "ContainersReady",
                ready,
                (!ready).then_some(not_ready_reason),
                now,
            ),
            condition("PodScheduled", true, None, now),
        ]),
        init_container_statuses: (!init.is_empty())
            .then(|| init.iter().map(|c| c.status(&id(c))).collect()),
        container_statuses: Some(containers.iter().map(|c| c.status(&id(c))).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn view(name: &str, state: ContainerRun) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "img".into(),
            state,
        }
    }

    fn waiting() -> ContainerRun {
        ContainerRun::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        }
    }

    fn exited(code: i32) -> ContainerRun {
        ContainerRun::Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: "msg".into(),
            started_at: t(),
            finished_at: t(),
        }
    }

    #[test]
    fn phases_follow_container_states() {
        let running = ContainerRun::Running { started_at: t() };
        assert_eq!(phase(&[], &[view("a", waiting())]), "Pending");
        assert_eq!(
            phase(&[view("i", running.clone())], &[view("a", waiting())]),
            "Pending"
        );
        assert_eq!(
            phase(&[view("i", exited(0))], &[view("a", running.clone())]),
            "Running"
        );
        assert_eq!(
            phase(&[], &[view("a", exited(0)), view("b", running)]),
            "Running"
        );
        assert_eq!(
            phase(&[], &[view("a", exited(0)), view("b", exited(0))]),
            "Succeeded"
        );
        assert_eq!(
            phase(&[], &[view("a", exited(0)), view("b", exited(3))]),
            "Failed"
        );
        assert_eq!(
            phase(&[view("i", exited(1))], &[view("a", waiting())]),
            "Failed"
        );
    }

    #[test]
    fn terminated_container_status_carries_exit_code_and_message() {
        let s = pod_status("u1", &[], &[view("a", exited(3))], &t(), &t());
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let cs = &s.container_statuses.unwrap()[0];
        let term = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(term.exit_code, 3);
        assert_eq!(term.reason.as_deref(), Some("Error"));
        assert_eq!(term.message.as_deref(), Some("msg"));
        assert_eq!(cs.container_id.as_deref(), Some("kiln-emulator://u1/a"));
        assert!(!cs.ready);
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
    }
}
