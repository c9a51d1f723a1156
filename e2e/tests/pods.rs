//! Pods created through a real kube-apiserver run as containers on the real node
//! (kubelet + containerd): success with a termination message, failure with an exit code
//! and the log as message and through the API (`kubectl logs`), deletion with SIGTERM,
//! and garbage collection of owned pods by kube-controller-manager.
//!
//! `busybox` is the image the node imports at start-up (nothing can be pulled here), so
//! pods say `imagePullPolicy: IfNotPresent` (`:latest` would default to `Always`).
//!
//! One cluster per test binary would save start-up time, but a cluster per test keeps
//! tests independent and is torn down by `Drop` even when an assertion fails.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kiln_e2e::{TestCluster, wait_for_pod, wait_for_pod_completion, wait_for_pod_gone};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn terminated(pod: &Pod) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| panic!("no terminated container state in {:?}", pod.status))
}

#[tokio::test]
async fn pod_runs_to_succeeded_with_termination_message_env_and_volumes() {
    kiln_e2e::init_test_logging();
    let cluster = TestCluster::start().await.unwrap();
    let client = cluster.client();
    let ns = "default";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "stringData": {"token": "s3cr3t", "user": "alice"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "job"},
        "data": {"job.txt": "hello-job"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    // The init container writes into the emptyDir; the main container reads the
    // secret (env and volume), the ConfigMap volume and the emptyDir, and puts what it
    // saw into its termination message.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "ok"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{
                "name": "prepare", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "echo -n from-init > /scratch/note"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]
            }],
            "containers": [{
                "name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c"],
                "args": ["printf 'user=%s token=%s job=%s note=%s pod=$(POD)' \"$USER_NAME\" \"$(cat /kiln/creds/token)\" \"$(cat /kiln/job/job.txt)\" \"$(cat /scratch/note)\" > /dev/termination-log"],
                "env": [
                    {"name": "USER_NAME", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ],
                "volumeMounts": [
                    {"name": "creds", "mountPath": "/kiln/creds"},
                    {"name": "job", "mountPath": "/kiln/job"},
                    {"name": "scratch", "mountPath": "/scratch"}
                ]
            }],
            "volumes": [
                {"name": "creds", "secret": {"secretName": "creds"}},
                {"name": "job", "configMap": {"name": "job"}},
                {"name": "scratch", "emptyDir": {}}
            ]
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let done = wait_for_pod_completion(&client, ns, "ok", TIMEOUT)
        .await
        .unwrap();
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{status:?}");
    assert_eq!(
        done.spec.as_ref().unwrap().node_name.as_deref(),
        Some(cluster.node().node_name())
    );
    let t = terminated(&done);
    assert_eq!(t.exit_code, 0);
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    assert_eq!(
        t.message.as_deref(),
        Some("user=alice token=s3cr3t job=hello-job note=from-init pod=ok")
    );
    let init = &status.init_container_statuses.unwrap()[0];
    let init_t = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(init_t.exit_code, 0);
}

#[tokio::test]
async fn pod_runs_to_failed_with_exit_code_and_log_fallback_message() {
    kiln_e2e::init_test_logging();
    let cluster = TestCluster::start().await.unwrap();
    let client = cluster.client();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "boom"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                // stdout and stderr reach the log through separate pipes: the pause keeps
                // their order.
                "command": ["sh", "-c", "echo starting; sleep 0.3; echo 'stage 3 failed' >&2; exit 3"],
                "terminationMessagePolicy": "FallbackToLogsOnError"
            }]
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let done = wait_for_pod_completion(&client, "default", "boom", TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        done.status.as_ref().unwrap().phase.as_deref(),
        Some("Failed")
    );
    let t = terminated(&done);
    assert_eq!(t.exit_code, 3);
    assert_eq!(t.reason.as_deref(), Some("Error"));
    // The kubelet takes the log tail as is, final newline included.
    assert_eq!(t.message.as_deref(), Some("starting\nstage 3 failed\n"));
    let log = Api::<Pod>::namespaced(client.clone(), "default")
        .logs("boom", &LogParams::default())
        .await
        .unwrap();
    assert_eq!(log, "starting\nstage 3 failed\n");
}

#[tokio::test]
async fn deleting_a_running_pod_sends_sigterm_then_removes_it() {
    kiln_e2e::init_test_logging();
    let cluster = TestCluster::start().await.unwrap();
    let client = cluster.client();
    let out = tempfile::tempdir().unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c",
                    "trap 'echo -n got-term > /out/signal; exit 0' TERM; touch /out/started; while true; do sleep 0.1; done"],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}]
            }],
            "volumes": [{"name": "out", "hostPath": {"path": out.path()}}]
        }
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for_pod(&client, "default", "sleeper", TIMEOUT, |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await
    .unwrap();
    let started = out.path().join("started");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "container never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_pod_gone(&client, "default", "sleeper", TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("signal")).unwrap(),
        "got-term"
    );
}

#[tokio::test]
async fn owned_pod_is_garbage_collected_with_its_owner() {
    kiln_e2e::init_test_logging();
    let cluster = TestCluster::start().await.unwrap();
    let client = cluster.client();
    cluster.create_namespace("gc").await.unwrap();
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
    let owner = Api::<ConfigMap>::namespaced(client.clone(), "gc")
        .create(&PostParams::default(), &owner)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "owned",
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "name": "owner", "uid": owner.metadata.uid.clone().unwrap()
            }]
        },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent", "command": ["sleep", "300"]}]
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "gc")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    wait_for_pod(&client, "gc", "owned", TIMEOUT, |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "gc")
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    wait_for_pod_gone(&client, "gc", "owned", TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test]
async fn args_of_a_command_less_container_replace_the_image_cmd() {
    kiln_e2e::init_test_logging();
    let cluster = TestCluster::start().await.unwrap();
    let client = cluster.client();
    // busybox's image config has `Cmd: ["/bin/sh"]` and no entrypoint: `args` replace
    // the Cmd, and `$(WHO)` is expanded by the kubelet.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "mapped"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent", "args": ["echo", "mapped", "$(WHO)"],
                            "env": [{"name": "WHO", "value": "entrypoint"}]}]
        }
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let done = wait_for_pod_completion(&client, "default", "mapped", TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        done.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let log = pods.logs("mapped", &LogParams::default()).await.unwrap();
    assert_eq!(log, "mapped entrypoint\n");
}
