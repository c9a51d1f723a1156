//! One row per branch of [`decide`], each asserting the step and the condition reason the
//! set shows with it.

use super::*;
use k8s_openapi::jiff::SignedDuration;

const D1: &str = "d1";
const D2: &str = "d2";

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn limits(running: usize, parallel: Option<usize>) -> Limits {
    Limits {
        running,
        parallel,
        schedule_timeout: Duration::from_secs(600),
        now: now(),
    }
}

/// Two stages with digests; the first is found, the second is missing.
fn half_built() -> UnitView {
    UnitView {
        digests: vec![Some(D1.into()), Some(D2.into())],
        found: vec![true, false],
        ..UnitView::default()
    }
}

fn with_pod(outcome: PodOutcome, fresh_found: Option<Vec<bool>>) -> UnitView {
    UnitView {
        own_pod: Some(OwnPod {
            name: "pod-a".into(),
            outcome,
            fresh_found,
        }),
        ..half_built()
    }
}

fn with_attempt(attempt: Attempt) -> UnitView {
    UnitView {
        attempt: Some(attempt),
        ..half_built()
    }
}

fn ok_result() -> String {
    r#"{"ok":true,"stages":[]}"#.into()
}

fn terminated(exit_code: i32, message: String) -> PodOutcome {
    PodOutcome::Terminated {
        exit_code,
        reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
        message,
    }
}

fn unschedulable(seconds_ago: i64) -> PodOutcome {
    PodOutcome::Unschedulable {
        message: "0/3 nodes are available: node(s) didn't match selector".into(),
        since: Some(now() - SignedDuration::from_secs(seconds_ago)),
    }
}

struct Row {
    name: &'static str,
    view: UnitView,
    limits: Limits,
    step: UnitStep,
    reason: Reason,
}

fn rows() -> Vec<Row> {
    let node_message = "0/3 nodes are available: node(s) didn't match selector";
    vec![
        Row {
            name: "all stages found",
            view: UnitView {
                found: vec![true, true],
                ..half_built()
            },
            limits: limits(0, None),
            step: UnitStep::Done,
            reason: Reason::Building,
        },
        Row {
            name: "nothing running, a stage missing: build it",
            view: half_built(),
            limits: limits(0, Some(5)),
            step: UnitStep::Build { missing: vec![1] },
            reason: Reason::Building,
        },
        Row {
            name: "waiting for a lock",
            view: with_attempt(Attempt::LockHeld),
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::Lock),
            reason: Reason::WaitingForStage,
        },
        Row {
            name: "waiting for a node",
            view: with_pod(unschedulable(30), None),
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::Node {
                message: node_message.into(),
            }),
            reason: Reason::WaitingForNode,
        },
        Row {
            name: "unschedulable past the schedule timeout",
            view: with_pod(unschedulable(620), None),
            limits: limits(0, None),
            step: UnitStep::Fail(Failure::Pod {
                pod: "pod-a".into(),
                outcome: unschedulable(620),
            }),
            reason: Reason::Building,
        },
        Row {
            name: "pod running",
            view: with_pod(PodOutcome::Running, None),
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::OwnPod {
                pod: "pod-a".into(),
            }),
            reason: Reason::Building,
        },
        Row {
            // Regression: with a real kubelet the last stage is in the registry a moment
            // before the pod's status says it exited; finishing then lost the pod's result
            // (every stage reported as not rebuilt).
            name: "every stage found while our pod has not exited yet",
            view: UnitView {
                found: vec![true, true],
                ..with_pod(PodOutcome::Running, None)
            },
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::OwnPod {
                pod: "pod-a".into(),
            }),
            reason: Reason::Building,
        },
        Row {
            name: "pod succeeded and its stages are found",
            view: with_pod(terminated(0, ok_result()), Some(vec![true, true])),
            limits: limits(0, None),
            step: UnitStep::Done,
            reason: Reason::Building,
        },
        Row {
            name: "pod succeeded, later stages wait for Dockerfile stage images",
            view: UnitView {
                waiting_stages: 2,
                ..with_pod(terminated(0, ok_result()), Some(vec![true, true]))
            },
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::DockerfileStages { stages: 2 }),
            reason: Reason::Building,
        },
        Row {
            name: "pod failed",
            view: with_pod(terminated(1, "log tail".into()), None),
            limits: limits(0, None),
            step: UnitStep::Fail(Failure::Pod {
                pod: "pod-a".into(),
                outcome: terminated(1, "log tail".into()),
            }),
            reason: Reason::Building,
        },
        Row {
            name: "success reported but stage missing",
            view: with_pod(terminated(0, ok_result()), Some(vec![true, false])),
            limits: limits(0, None),
            step: UnitStep::Fail(Failure::StagesMissing {
                pod: "pod-a".into(),
            }),
            reason: Reason::Building,
        },
        Row {
            name: "parallel limit reached",
            view: half_built(),
            limits: limits(2, Some(2)),
            step: UnitStep::Wait(WaitReason::Slot),
            reason: Reason::Building,
        },
        Row {
            name: "live builder elsewhere",
            view: with_attempt(Attempt::LiveBuilder("ci/other-pod".into())),
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::LiveBuilder {
                pod: "ci/other-pod".into(),
            }),
            reason: Reason::WaitingForStage,
        },
        Row {
            name: "found under the locks",
            view: with_attempt(Attempt::FoundUnderLock),
            limits: limits(0, None),
            step: UnitStep::Done,
            reason: Reason::Building,
        },
        Row {
            name: "secondary copy",
            view: with_attempt(Attempt::CopiedFromSecondary),
            limits: limits(0, None),
            step: UnitStep::Done,
            reason: Reason::Building,
        },
        Row {
            name: "pod created",
            view: with_attempt(Attempt::Created("pod-b".into())),
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::OwnPod {
                pod: "pod-b".into(),
            }),
            reason: Reason::Building,
        },
        Row {
            name: "job refused",
            view: with_attempt(Attempt::Refused("unsupported instruction".into())),
            limits: limits(0, None),
            step: UnitStep::Fail(Failure::JobRefused("unsupported instruction".into())),
            reason: Reason::Building,
        },
        Row {
            name: "dependency not published",
            view: UnitView {
                deferred_on: Some("base".into()),
                ..half_built()
            },
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::Dependency {
                dependency: "base".into(),
            }),
            reason: Reason::Building,
        },
        Row {
            name: "stages waiting for Dockerfile stage images",
            view: UnitView {
                digests: vec![Some(D1.into()), None],
                found: vec![true, false],
                waiting_stages: 1,
                ..UnitView::default()
            },
            limits: limits(0, None),
            step: UnitStep::Wait(WaitReason::DockerfileStages { stages: 1 }),
            reason: Reason::Building,
        },
    ]
}

#[test]
fn every_branch_gives_its_step_and_condition_reason() {
    for row in rows() {
        let step = decide(&row.view, row.limits);
        assert_eq!(step, row.step, "{}", row.name);
        if !matches!(step, UnitStep::Fail(_)) {
            assert_eq!(set_reason([&step]), row.reason, "{}", row.name);
        }
    }
}

#[test]
fn restart_waits_for_the_previous_process_leases_as_a_stage_wait() {
    assert_eq!(settle(&[]), UnitStep::Done);
    let step = settle(&["pod-a".into()]);
    assert_eq!(
        step,
        UnitStep::Wait(WaitReason::RestartedLeases {
            pods: vec!["pod-a".into()]
        })
    );
    assert_eq!(set_reason([&step]), Reason::WaitingForStage);
}

/// Regression: a build whose only pod cannot be scheduled was reported `WaitingForStage`
/// (the reason was read from the progress notes' "waits for").
#[test]
fn an_unschedulable_builder_pod_is_reported_waiting_for_a_node_not_for_a_stage() {
    let step = decide(&with_pod(unschedulable(5), None), limits(0, None));
    assert!(matches!(step, UnitStep::Wait(WaitReason::Node { .. })));
    assert!(step.occupies_slot());
    assert_eq!(set_reason([&step]), Reason::WaitingForNode);
    // A wait on another build's stage still says so, whatever the other units do.
    let lock = UnitStep::Wait(WaitReason::Lock);
    assert_eq!(set_reason([&step, &lock]), Reason::WaitingForStage);
    // Any unit still building makes the set Building.
    let running = UnitStep::Wait(WaitReason::OwnPod { pod: "p".into() });
    assert_eq!(set_reason([&step, &running]), Reason::Building);
}

#[test]
fn failures_name_image_platform_and_pod() {
    let e = Failure::StagesMissing {
        pod: "pod-a".into(),
    }
    .into_error("app", "linux/amd64", "registry.example.org/shop");
    assert_eq!(e.reason(), Reason::BuilderPodFailed);
    assert!(e.to_string().contains("image \"app\" (linux/amd64)"), "{e}");
    let e = Failure::Pod {
        pod: "pod-a".into(),
        outcome: unschedulable(700),
    }
    .into_error("app", "linux/arm64", "r");
    assert!(e.to_string().contains("cannot be scheduled"), "{e}");
}

#[test]
fn unschedulable_fails_only_after_the_limit() {
    let ago = |s: i64| now() - SignedDuration::from_secs(s);
    let limit = Duration::from_secs(600);
    assert!(!waited_longer(ago(30), now(), limit));
    assert!(!waited_longer(ago(590), now(), limit));
    assert!(waited_longer(ago(620), now(), limit));
    // A clock skewed into the future never fails the build early.
    assert!(!waited_longer(ago(-60), now(), limit));
}
