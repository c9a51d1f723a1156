//! Pure builders of the objects behind one builder pod — the Pod and the ConfigMap holding
//! its build job — and the reader of the pod's outcome.
//!
//! One builder pod builds the missing stages of one image on one platform (DESIGN "Lock and
//! build"). It is owned by its ImageBuild (ownerReference with `controller: true`, so
//! deleting the ImageBuild deletes it), labelled for lookups ([`names`]), gets no
//! Kubernetes API token (it runs untrusted RUN commands), and sees only the Secrets it needs,
//! read-only: the registry credentials, the git credentials, the SSH keys and the build
//! secrets its image declares.
//!
//! No I/O here: the controller applies what these functions return.

pub mod names;
pub mod outcome;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    HostPathVolumeSource, KeyToPath, Pod, PodSpec, ResourceRequirements, SecretVolumeSource,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kiln_crds::ImageBuild;
use kiln_crds::validate::SpecError;
use kube::Resource;

pub use names::builder_pod_name;
pub use outcome::{PodOutcome, pod_outcome};

/// Name of the builder container.
pub const CONTAINER: &str = "builder";
/// Directory of the job ConfigMap in the pod.
pub const JOB_DIR: &str = "/kiln/job";
/// Key of the job in its ConfigMap.
pub const JOB_KEY: &str = "job.json";
/// Path of the job file in the pod (what `KILN_JOB_FILE` names).
pub const JOB_FILE: &str = "/kiln/job/job.json";
/// Path of the registry credentials (the `.dockerconfigjson` of `spec.registrySecretRef`).
pub const REGISTRY_AUTH_FILE: &str = "/kiln/registry/config.json";
/// Directory of the git credentials Secret (`username`, `password`, `ssh-privatekey`,
/// `known_hosts` as files).
pub const GIT_AUTH_DIR: &str = "/kiln/git";
/// Buildah's storage inside the pod: an emptyDir, so nothing survives the pod.
pub const CONTAINERS_STORAGE: &str = "/var/lib/containers";
/// Where Kubernetes reads the termination message from.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Path of the `i`-th SSH key (`spec.sshKeySecretRefs[i]`) in the pod.
pub fn ssh_key_path(i: usize) -> String {
    format!("/kiln/ssh/{i}/ssh-privatekey")
}

/// Path in the pod of the build secret `spec.buildSecrets[i]`: its Secret key projected as
/// the only file of its own directory (indices, not ids, keep volume names and paths
/// valid whatever the id).
pub fn build_secret_path(i: usize) -> String {
    format!("{BUILD_SECRETS_DIR}/{i}/{BUILD_SECRET_FILE}")
}

/// Parent directory of the build secret mounts.
pub const BUILD_SECRETS_DIR: &str = "/kiln/build-secrets";
/// File name of a build secret in its directory.
const BUILD_SECRET_FILE: &str = "secret";

/// Builder pod settings the operator applies when the ImageBuild does not say otherwise
/// (`kiln-operator run` flags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuilderDefaults {
    /// The builder image (`kiln-builder` with Buildah), e.g. `ghcr.io/example/kiln-builder:0.1`.
    pub image: String,
    /// `imagePullPolicy` of the builder container; `None` = Kubernetes' default.
    pub image_pull_policy: Option<String>,
    /// Resources when `spec.builder.resources` is unset.
    pub resources: Option<ResourceRequirements>,
    /// Node labels merged under `spec.builder.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations added before `spec.builder.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// Run the builder container privileged (Buildah needs mount rights on most clusters).
    pub privileged: bool,
    /// Buildah storage driver of builder pods (`vfs`, `overlay`, `fuse-overlayfs`), passed
    /// as `KILN_STORAGE_DRIVER`; `None` = the builder image's default (`vfs`). An
    /// unprivileged pod with `fuse-overlayfs` gets the node's `/dev/fuse`.
    pub storage_driver: Option<String>,
    /// How long a builder pod may stay unschedulable (no node matches its selector,
    /// resources or tolerations) before the build fails; `None` =
    /// [`DEFAULT_SCHEDULE_TIMEOUT`].
    pub schedule_timeout: Option<std::time::Duration>,
}

/// Default of [`BuilderDefaults::schedule_timeout`]: 10 minutes, long enough for a cluster
/// autoscaler to add a node.
pub const DEFAULT_SCHEDULE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl BuilderDefaults {
    /// [`BuilderDefaults::schedule_timeout`] or its default.
    pub fn effective_schedule_timeout(&self) -> std::time::Duration {
        self.schedule_timeout.unwrap_or(DEFAULT_SCHEDULE_TIMEOUT)
    }
}

/// What one builder pod builds.
#[derive(Debug, Clone)]
pub struct BuilderPodRequest<'a> {
    /// The owning ImageBuild (needs name, namespace and uid).
    pub build: &'a ImageBuild,
    /// werf image name.
    pub image: &'a str,
    /// Target platform, `os/arch[/variant]`.
    pub platform: &'a str,
    /// Digests of the stages the pod builds, in build order.
    pub stage_digests: &'a [String],
    /// The build job, JSON (`kiln.dev/job/v1`), as `kiln-builder` reads it.
    pub job_json: &'a str,
    /// Indices into `spec.buildSecrets` of the build secrets the job reads; each is
    /// mounted at [`build_secret_path`]. An index past the list is ignored.
    pub build_secrets: &'a [usize],
}

/// Why the objects of a builder pod could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodBuildError {
    /// The ImageBuild lacks name, namespace or uid (it was never stored by the apiserver).
    #[error("ImageBuild has no {0}; builder pods need a stored ImageBuild")]
    MissingMetadata(&'static str),
    /// The platform cannot be turned into node labels.
    #[error(transparent)]
    Platform(#[from] SpecError),
}

/// The labels of a builder pod and its job ConfigMap.
fn labels(build_name: &str, req: &BuilderPodRequest<'_>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            names::LABEL_IMAGEBUILD.to_owned(),
            names::label_value(build_name),
        ),
        (names::LABEL_IMAGE.to_owned(), names::label_value(req.image)),
        (
            names::LABEL_PLATFORM.to_owned(),
            names::platform_label(req.platform),
        ),
        (
            names::LABEL_COMPONENT.to_owned(),
            names::COMPONENT_BUILDER.to_owned(),
        ),
        (names::LABEL_MANAGED_BY.to_owned(), "kiln".to_owned()),
    ]);
    for d in req.stage_digests {
        labels.insert(names::stage_label(d), "true".to_owned());
    }
    labels
}

/// The owner reference making `build` the controller of a child object.
pub fn owner_reference(build: &ImageBuild) -> Result<OwnerReference, PodBuildError> {
    build
        .controller_owner_ref(&())
        .ok_or(PodBuildError::MissingMetadata("uid"))
}

/// The builder Pod and its job ConfigMap (same name) for `req`.
///
/// Settings: `restartPolicy: Never`, `automountServiceAccountToken: false`, no service
/// links; the job as a ConfigMap file named by `KILN_JOB_FILE`; the registry Secret, the
/// git Secret, each SSH key Secret and the key of each build secret the job reads
/// (`req.build_secrets`) mounted read-only, mode 0400; Buildah storage on an emptyDir;
/// `terminationMessagePolicy: FallbackToLogsOnError` so that a builder that dies before
/// writing its result still leaves its log tail. Resources: `spec.builder.resources`, else
/// the operator default. Node selector: operator default, then `spec.builder`'s selector for
/// the platform (which adds `kubernetes.io/os`/`arch` with `nativePlatforms`). Tolerations:
/// operator defaults then the spec's.
///
/// Errors: [`PodBuildError`].
pub fn builder_pod(
    req: &BuilderPodRequest<'_>,
    defaults: &BuilderDefaults,
) -> Result<(Pod, ConfigMap), PodBuildError> {
    let build = req.build;
    let build_name = build
        .metadata
        .name
        .as_deref()
        .ok_or(PodBuildError::MissingMetadata("name"))?;
    let namespace = build
        .metadata
        .namespace
        .as_deref()
        .ok_or(PodBuildError::MissingMetadata("namespace"))?;
    let uid = build
        .metadata
        .uid
        .as_deref()
        .ok_or(PodBuildError::MissingMetadata("uid"))?;
    let name = builder_pod_name(build_name, uid, req.image, req.platform, req.stage_digests);
    let owner = owner_reference(build)?;
    let labels = labels(build_name, req);
    let annotations = BTreeMap::from([
        (
            names::ANNOTATION_STAGE_DIGESTS.to_owned(),
            req.stage_digests.join(","),
        ),
        (names::ANNOTATION_REPO.to_owned(), build.spec.repo.clone()),
        (names::ANNOTATION_IMAGE.to_owned(), req.image.to_owned()),
        (
            names::ANNOTATION_PLATFORM.to_owned(),
            req.platform.to_owned(),
        ),
    ]);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        annotations: Some(annotations),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };

    let config_map = ConfigMap {
        metadata: meta.clone(),
        data: Some(BTreeMap::from([(
            JOB_KEY.to_owned(),
            req.job_json.to_owned(),
        )])),
        ..ConfigMap::default()
    };

    let spec_builder = build.spec.builder.clone().unwrap_or_default();
    let mut node_selector = defaults.node_selector.clone();
    node_selector.extend(spec_builder.node_selector_for(req.platform)?);
    let mut tolerations = defaults.tolerations.clone();
    tolerations.extend(spec_builder.tolerations.iter().cloned());
    let resources = spec_builder
        .resources
        .clone()
        .or(defaults.resources.clone());

    let read_only = |name: &str, path: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let secret_volume = |name: &str, secret: &str, items: Option<Vec<KeyToPath>>| Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items,
            // Readable by the builder only; it runs as root.
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mut volumes = vec![
        Volume {
            name: "job".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "containers".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        read_only("job", JOB_DIR),
        VolumeMount {
            name: "containers".into(),
            mount_path: CONTAINERS_STORAGE.into(),
            ..VolumeMount::default()
        },
    ];
    if let Some(secret) = &build.spec.registry_secret_ref {
        volumes.push(secret_volume(
            "registry-auth",
            &secret.name,
            Some(vec![KeyToPath {
                key: ".dockerconfigjson".into(),
                path: "config.json".into(),
                mode: None,
            }]),
        ));
        mounts.push(read_only("registry-auth", "/kiln/registry"));
    }
    if let Some(secret) = &build.spec.source.git.secret_ref {
        volumes.push(secret_volume("git-auth", &secret.name, None));
        mounts.push(read_only("git-auth", GIT_AUTH_DIR));
    }
    for (i, secret) in build.spec.ssh_key_secret_refs.iter().enumerate() {
        let volume = format!("ssh-key-{i}");
        volumes.push(secret_volume(
            &volume,
            &secret.name,
            Some(vec![KeyToPath {
                key: "ssh-privatekey".into(),
                path: "ssh-privatekey".into(),
                mode: None,
            }]),
        ));
        mounts.push(read_only(&volume, &format!("/kiln/ssh/{i}")));
    }
    for &i in req.build_secrets {
        let Some(secret) = build.spec.build_secrets.get(i) else {
            continue;
        };
        // Only the one key, so that other keys of the same Secret stay out of the pod.
        let volume = format!("build-secret-{i}");
        volumes.push(secret_volume(
            &volume,
            &secret.secret_key_ref.name,
            Some(vec![KeyToPath {
                key: secret.secret_key_ref.key.clone(),
                path: BUILD_SECRET_FILE.into(),
                mode: None,
            }]),
        ));
        mounts.push(read_only(&volume, &format!("{BUILD_SECRETS_DIR}/{i}")));
    }

    let mut env = vec![EnvVar {
        name: "KILN_JOB_FILE".into(),
        value: Some(JOB_FILE.into()),
        ..EnvVar::default()
    }];
    if let Some(driver) = &defaults.storage_driver {
        env.push(EnvVar {
            name: "KILN_STORAGE_DRIVER".into(),
            value: Some(driver.clone()),
            ..EnvVar::default()
        });
        // A privileged container sees every host device; an unprivileged one only what
        // it mounts.
        if driver == "fuse-overlayfs" && !defaults.privileged {
            volumes.push(Volume {
                name: "fuse".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/dev/fuse".into(),
                    type_: Some("CharDevice".into()),
                }),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: "fuse".into(),
                mount_path: "/dev/fuse".into(),
                ..VolumeMount::default()
            });
        }
    }

    let container = Container {
        name: CONTAINER.into(),
        image: Some(defaults.image.clone()),
        image_pull_policy: defaults.image_pull_policy.clone(),
        env: Some(env),
        resources,
        volume_mounts: Some(mounts),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: defaults.privileged.then(|| SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let pod = Pod {
        metadata: meta,
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    };
    Ok((pod, config_map))
}

#[cfg(test)]
mod tests;
