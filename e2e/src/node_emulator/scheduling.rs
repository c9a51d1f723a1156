//! Which pending pods an emulated node takes: the scheduler's node-selection rules
//! that matter for one node (nodeSelector and required node affinity on labels).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, Pod};

/// The scheduler name pods must ask for to be bound by the emulator (an empty
/// `schedulerName` is defaulted to it by the apiserver). Pods naming another scheduler
/// stay pending, which tests can use to keep a pod unscheduled.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// True if `pod` is unbound, not being deleted, not gated, asks for the default
/// scheduler, and its nodeSelector and required node affinity match `labels`.
pub fn should_bind(pod: &Pod, labels: &BTreeMap<String, String>) -> bool {
    waits_for_scheduler(pod) && fits(pod, labels)
}

/// The scheduler's verdict for a pod that waits for it but does not fit the node, as the
/// scheduler writes it into the pod's `PodScheduled` condition (reason `Unschedulable`);
/// `None` if the pod fits, does not wait for the scheduler, or already has that verdict.
pub fn unschedulable_message(pod: &Pod, labels: &BTreeMap<String, String>) -> Option<String> {
    if !waits_for_scheduler(pod) || fits(pod, labels) {
        return None;
    }
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        });
    (!already).then(|| {
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
            .to_owned()
    })
}

/// Unbound, not being deleted, not gated, for the default scheduler, not ended.
fn waits_for_scheduler(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
        || pod.metadata.deletion_timestamp.is_some()
        || spec
            .scheduling_gates
            .as_ref()
            .is_some_and(|g| !g.is_empty())
        || spec.scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER
    {
        return false;
    }
    if pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
    {
        return false;
    }
    true
}

/// The pod's nodeSelector and required node affinity match `labels`.
fn fits(pod: &Pod, labels: &BTreeMap<String, String>) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    // Terms are ORed; the requirements inside a term are ANDed.
    let affinity_ok = required.is_none_or(|r| {
        r.node_selector_terms.iter().any(|t| {
            t.match_expressions
                .iter()
                .flatten()
                .all(|e| requirement_matches(e, labels))
        })
    });
    selector_ok && affinity_ok
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels() -> BTreeMap<String, String> {
        [
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("cores".to_string(), "4".to_string()),
        ]
        .into()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut s = json!({"containers": [{"name": "c", "image": "i"}]});
        s.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": s})).unwrap()
    }

    #[test]
    fn plain_pending_pod_is_bound() {
        assert!(should_bind(&pod(json!({})), &labels()));
    }

    #[test]
    fn bound_gated_or_foreign_scheduler_pods_are_left_alone() {
        assert!(!should_bind(&pod(json!({"nodeName": "other"})), &labels()));
        assert!(!should_bind(
            &pod(json!({"schedulingGates": [{"name": "g"}]})),
            &labels()
        ));
        assert!(!should_bind(
            &pod(json!({"schedulerName": "my-scheduler"})),
            &labels()
        ));
    }

    #[test]
    fn node_selector_must_match_labels() {
        assert!(should_bind(
            &pod(json!({"nodeSelector": {"kubernetes.io/arch": "amd64"}})),
            &labels()
        ));
        assert!(!should_bind(
            &pod(json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}})),
            &labels()
        ));
    }

    #[test]
    fn required_affinity_terms_are_ored_and_expressions_anded() {
        let aff = |terms: serde_json::Value| {
            pod(json!({"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        let arm = json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]});
        let amd = json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]});
        let no_gpu = json!({"key": "gpu", "operator": "DoesNotExist"});
        let big = json!({"key": "cores", "operator": "Gt", "values": ["8"]});
        assert!(!should_bind(
            &aff(json!([{"matchExpressions": [arm]}])),
            &labels()
        ));
        assert!(should_bind(
            &aff(json!([{"matchExpressions": [arm]}, {"matchExpressions": [amd, no_gpu]}])),
            &labels()
        ));
        assert!(!should_bind(
            &aff(json!([{"matchExpressions": [amd, big]}])),
            &labels()
        ));
    }
}
