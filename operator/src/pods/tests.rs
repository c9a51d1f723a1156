use super::*;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kiln_crds::imagebuild::BuilderSpec;

fn build() -> ImageBuild {
    let mut ib: ImageBuild = serde_json::from_value(serde_json::json!({
        "apiVersion": "kiln.dev/v1alpha1",
        "kind": "ImageBuild",
        "metadata": {"name": "shop-1", "namespace": "ci", "uid": "u-1"},
        "spec": {
            "source": {"git": {"url": "https://git.example.org/shop.git", "revision": "main",
                               "secretRef": {"name": "git-auth"}}},
            "repo": "registry.example.org/shop",
            "registrySecretRef": {"name": "push-auth"},
            "sshKeySecretRefs": [{"name": "deploy-key"}]
        }
    }))
    .unwrap();
    ib.spec.builder = Some(BuilderSpec {
        native_platforms: true,
        node_selector: BTreeMap::from([("pool".into(), "builders".into())]),
        ..BuilderSpec::default()
    });
    ib
}

fn defaults() -> BuilderDefaults {
    BuilderDefaults {
        image: "kiln-builder:test".into(),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("2Gi".into()))])),
            ..ResourceRequirements::default()
        }),
        node_selector: BTreeMap::from([
            ("pool".into(), "default".into()),
            ("zone".into(), "a".into()),
        ]),
        tolerations: vec![Toleration {
            key: Some("builders".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }],
        privileged: true,
        ..BuilderDefaults::default()
    }
}

fn digests() -> Vec<String> {
    vec!["a".repeat(56), "b".repeat(56)]
}

#[test]
fn pod_is_owned_labelled_and_locked_down() {
    let ib = build();
    let d = digests();
    let req = BuilderPodRequest {
        build: &ib,
        image: "frontend",
        platform: "linux/arm64",
        stage_digests: &d,
        job_json: "{\"apiVersion\":\"kiln.dev/job/v1\"}",
        build_secrets: &[],
    };
    let (pod, cm) = builder_pod(&req, &defaults()).unwrap();
    let meta = &pod.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("ci"));
    assert_eq!(meta.name, cm.metadata.name);
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "ImageBuild");
    assert_eq!(owner.api_version, "kiln.dev/v1alpha1");
    assert_eq!(owner.name, "shop-1");
    assert_eq!(owner.uid, "u-1");
    assert_eq!(owner.controller, Some(true));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["kiln.dev/imagebuild"], "shop-1");
    assert_eq!(labels["kiln.dev/image"], "frontend");
    assert_eq!(labels["kiln.dev/platform"], "linux-arm64");
    assert_eq!(
        labels[&format!("stage.kiln.dev/{}", "a".repeat(56))],
        "true"
    );
    assert_eq!(
        labels[&format!("stage.kiln.dev/{}", "b".repeat(56))],
        "true"
    );
    let ann = meta.annotations.as_ref().unwrap();
    assert_eq!(
        ann["kiln.dev/stage-digests"],
        format!("{},{}", "a".repeat(56), "b".repeat(56))
    );
    assert_eq!(ann["kiln.dev/repo"], "registry.example.org/shop");

    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    // Spec selector wins over the operator default on `pool`; native platform labels added.
    assert_eq!(
        spec.node_selector.as_ref().unwrap(),
        &BTreeMap::from([
            ("kubernetes.io/arch".to_owned(), "arm64".to_owned()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("pool".to_owned(), "builders".to_owned()),
            ("zone".to_owned(), "a".to_owned()),
        ])
    );
    assert_eq!(spec.tolerations.as_ref().unwrap().len(), 1);
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("kiln-builder:test"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"],
        Quantity("2Gi".into())
    );
    let env = c.env.as_ref().unwrap();
    assert_eq!(env[0].name, "KILN_JOB_FILE");
    assert_eq!(env[0].value.as_deref(), Some(JOB_FILE));

    // Every Secret is mounted read-only; the job file is where KILN_JOB_FILE says.
    let mounts = c.volume_mounts.as_ref().unwrap();
    let volumes = spec.volumes.as_ref().unwrap();
    let secret_of = |mount_path: &str| {
        let m = mounts.iter().find(|m| m.mount_path == mount_path).unwrap();
        let v = volumes.iter().find(|v| v.name == m.name).unwrap();
        (
            m.read_only,
            v.secret.as_ref().and_then(|s| s.secret_name.clone()),
        )
    };
    assert_eq!(
        secret_of("/kiln/registry"),
        (Some(true), Some("push-auth".into()))
    );
    assert_eq!(
        secret_of(GIT_AUTH_DIR),
        (Some(true), Some("git-auth".into()))
    );
    assert_eq!(
        secret_of("/kiln/ssh/0"),
        (Some(true), Some("deploy-key".into()))
    );
    assert_eq!(ssh_key_path(0), "/kiln/ssh/0/ssh-privatekey");
    let registry = volumes.iter().find(|v| v.name == "registry-auth").unwrap();
    let item = &registry.secret.as_ref().unwrap().items.as_ref().unwrap()[0];
    assert_eq!(
        (item.key.as_str(), item.path.as_str()),
        (".dockerconfigjson", "config.json")
    );
    assert_eq!(format!("/kiln/registry/{}", item.path), REGISTRY_AUTH_FILE);
    let job = volumes.iter().find(|v| v.name == "job").unwrap();
    assert_eq!(
        job.config_map.as_ref().unwrap().name,
        cm.metadata.name.clone().unwrap()
    );
    assert_eq!(format!("{JOB_DIR}/{JOB_KEY}"), JOB_FILE);
    assert_eq!(cm.data.as_ref().unwrap()[JOB_KEY], req.job_json);
    assert_eq!(cm.metadata.owner_references, meta.owner_references);
}

#[test]
fn spec_resources_win_and_no_secrets_means_no_mounts() {
    let mut ib = build();
    ib.spec.registry_secret_ref = None;
    ib.spec.source.git.secret_ref = None;
    ib.spec.ssh_key_secret_refs.clear();
    let spec_resources = ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".into(), Quantity("1".into()))])),
        ..ResourceRequirements::default()
    };
    ib.spec.builder = Some(BuilderSpec {
        resources: Some(spec_resources.clone()),
        ..BuilderSpec::default()
    });
    let d = digests();
    let req = BuilderPodRequest {
        build: &ib,
        image: "backend",
        platform: "linux/amd64",
        stage_digests: &d,
        job_json: "{}",
        build_secrets: &[],
    };
    let mut defaults = defaults();
    defaults.privileged = false;
    defaults.node_selector.clear();
    let (pod, _) = builder_pod(&req, &defaults).unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.containers[0].resources, Some(spec_resources));
    assert_eq!(spec.containers[0].security_context, None);
    // Not native: no arch selector.
    assert_eq!(spec.node_selector, None);
    let names: Vec<_> = spec.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(names, vec!["job", "containers"]);
}

#[test]
fn storage_driver_goes_to_the_environment_and_fuse_gets_dev_fuse_when_unprivileged() {
    let ib = build();
    let d = digests();
    let req = BuilderPodRequest {
        build: &ib,
        image: "backend",
        platform: "linux/amd64",
        stage_digests: &d,
        job_json: "{}",
        build_secrets: &[],
    };
    let pod_for = |driver: Option<&str>, privileged: bool| {
        let mut defaults = defaults();
        defaults.storage_driver = driver.map(str::to_owned);
        defaults.privileged = privileged;
        builder_pod(&req, &defaults).unwrap().0.spec.unwrap()
    };
    let env_of = |spec: &PodSpec| -> Vec<(String, String)> {
        spec.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    };
    let has_fuse = |spec: &PodSpec| {
        spec.volumes.iter().flatten().any(|v| {
            v.host_path
                .as_ref()
                .map(|h| (h.path.as_str(), h.type_.as_deref()))
                == Some(("/dev/fuse", Some("CharDevice")))
        })
    };

    let default = pod_for(None, true);
    assert_eq!(
        env_of(&default),
        vec![("KILN_JOB_FILE".into(), JOB_FILE.into())]
    );
    let overlay = pod_for(Some("overlay"), true);
    assert!(env_of(&overlay).contains(&("KILN_STORAGE_DRIVER".into(), "overlay".into())));
    assert!(!has_fuse(&overlay));
    // Privileged: /dev/fuse is visible already; no hostPath volume.
    assert!(!has_fuse(&pod_for(Some("fuse-overlayfs"), true)));
    let fuse = pod_for(Some("fuse-overlayfs"), false);
    assert!(has_fuse(&fuse));
    assert!(
        fuse.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "fuse" && m.mount_path == "/dev/fuse")
    );
}

#[test]
fn an_unstored_build_and_a_bad_platform_are_errors() {
    let mut ib = build();
    let d = digests();
    let bad_platform = BuilderPodRequest {
        build: &ib,
        image: "backend",
        platform: "linux",
        stage_digests: &d,
        job_json: "{}",
        build_secrets: &[],
    };
    let err = builder_pod(&bad_platform, &defaults()).unwrap_err();
    assert!(matches!(err, PodBuildError::Platform(_)), "{err}");
    ib.metadata.uid = None;
    let req = BuilderPodRequest {
        build: &ib,
        image: "backend",
        platform: "linux/amd64",
        stage_digests: &d,
        job_json: "{}",
        build_secrets: &[],
    };
    assert_eq!(
        builder_pod(&req, &defaults()).unwrap_err(),
        PodBuildError::MissingMetadata("uid")
    );
}

fn pod_with(status: PodStatus) -> Pod {
    Pod {
        status: Some(status),
        ..Pod::default()
    }
}

#[test]
fn outcomes() {
    assert_eq!(pod_outcome(&Pod::default()), PodOutcome::Running);
    assert_eq!(
        pod_outcome(&pod_with(PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        })),
        PodOutcome::Running
    );
    let unschedulable = pod_with(PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/1 nodes match kubernetes.io/arch=s390x".into()),
            last_transition_time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            )),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    assert_eq!(
        pod_outcome(&unschedulable),
        PodOutcome::Unschedulable {
            message: "0/1 nodes match kubernetes.io/arch=s390x".into(),
            since: Some(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap()),
        }
    );
    let exited = pod_with(PodStatus {
        phase: Some("Failed".into()),
        container_statuses: Some(vec![ContainerStatus {
            name: CONTAINER.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    reason: Some("Error".into()),
                    message: Some("{\"ok\":false}".into()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]),
        ..PodStatus::default()
    });
    assert_eq!(
        pod_outcome(&exited),
        PodOutcome::Terminated {
            exit_code: 1,
            reason: "Error".into(),
            message: "{\"ok\":false}".into()
        }
    );
    let evicted = pod_with(PodStatus {
        phase: Some("Failed".into()),
        reason: Some("Evicted".into()),
        message: Some("The node was low on resource: ephemeral-storage.".into()),
        ..PodStatus::default()
    });
    assert_eq!(
        pod_outcome(&evicted),
        PodOutcome::Lost {
            reason: "Evicted".into(),
            message: "The node was low on resource: ephemeral-storage.".into()
        }
    );
}

#[test]
fn build_secrets_the_job_reads_are_mounted_one_key_each_read_only() {
    let mut ib = build();
    ib.spec.build_secrets = serde_json::from_value(serde_json::json!([
        {"id": "aws", "secretKeyRef": {"name": "aws-creds", "key": "credentials"}},
        {"id": "unused", "secretKeyRef": {"name": "other", "key": "k"}},
        {"id": "TOKEN", "secretKeyRef": {"name": "tokens", "key": "ci-token"}}
    ]))
    .unwrap();
    let d = digests();
    // The job reads entries 0 and 2; 7 is past the list and ignored.
    let req = BuilderPodRequest {
        build: &ib,
        image: "frontend",
        platform: "linux/amd64",
        stage_digests: &d,
        job_json: "{}",
        build_secrets: &[0, 2, 7],
    };
    let (pod, _) = builder_pod(&req, &defaults()).unwrap();
    let spec = pod.spec.unwrap();
    let volumes = spec.volumes.unwrap();
    let mounts = spec.containers[0].volume_mounts.clone().unwrap();
    let secret_volumes: Vec<_> = volumes
        .iter()
        .filter(|v| v.name.starts_with("build-secret-"))
        .collect();
    assert_eq!(secret_volumes.len(), 2, "{secret_volumes:?}");
    for (index, name, key) in [(0, "aws-creds", "credentials"), (2, "tokens", "ci-token")] {
        let volume = volumes
            .iter()
            .find(|v| v.name == format!("build-secret-{index}"))
            .unwrap();
        let source = volume.secret.as_ref().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some(name));
        assert_eq!(source.default_mode, Some(0o400));
        assert_eq!(
            source.items,
            Some(vec![KeyToPath {
                key: key.into(),
                path: "secret".into(),
                mode: None
            }])
        );
        let mount = mounts.iter().find(|m| m.name == volume.name).unwrap();
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(mount.mount_path, format!("/kiln/build-secrets/{index}"));
        // The job names the file the mount projects.
        assert_eq!(
            build_secret_path(index),
            format!("/kiln/build-secrets/{index}/secret")
        );
    }
    assert!(!volumes.iter().any(|v| {
        v.secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some("other"))
    }));
}
