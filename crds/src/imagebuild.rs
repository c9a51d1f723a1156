//! The `ImageBuild` custom resource (`kiln.dev/v1alpha1`): what a user asks Kiln to
//! build (spec) and what Kiln reports back (status).
//!
//! Field names follow werf's command-line flags where one exists (`repo` is `--repo`,
//! `finalRepo` is `--final-repo`, `customTags` is `--add-custom-tag`...), so a user
//! moving a `werf build` invocation into a cluster finds each option where expected.
//! Every field carries a doc comment: it becomes the field's `description` in the CRD
//! schema, which is what `kubectl explain imagebuild.spec...` prints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::BuildReport;

/// A request to build the images of one werf project at one git revision, push their
/// stages to a stages storage and report the result the way `werf build` does.
// clippy reads the repeated `type_ = ...` keys of separate printcolumn(...) groups as
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kiln.dev",
    version = "v1alpha1",
    kind = "ImageBuild",
    plural = "imagebuilds",
    singular = "imagebuild",
    shortname = "ib",
    category = "kiln",
    namespaced,
    status = "ImageBuildStatus",
    derive = "PartialEq",
    doc = "ImageBuild builds the images of one werf project (werf.yaml) at one git revision: Kiln computes content-based stage digests, reuses every stage already in the stages storage, builds the missing ones in builder pods, publishes the images and writes a werf-style build report into the status.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the build is: Pending, Planning, Building, Succeeded, Failed or Cancelled."
    ),
    printcolumn(
        name = "Images",
        type_ = "integer",
        json_path = ".status.imageCount",
        description = "Number of images this build publishes."
    ),
    printcolumn(
        name = "Rebuilt",
        type_ = "integer",
        json_path = ".status.rebuiltStages",
        description = "Number of stages built by this build (the rest were reused from the stages storage)."
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Commit",
        type_ = "string",
        json_path = ".status.commit",
        description = "The git commit the revision resolved to.",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Succeeded\")].reason",
        description = "Reason of the Succeeded condition.",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildSpec {
    /// Where the project's files come from. Kiln reads werf.yaml, Dockerfiles and build
    /// context files from the resolved commit, not from a working tree, as werf does.
    pub source: SourceSpec,

    /// Which werf.yaml to use: `path` (a file in the commit) or `inline` (the text
    /// itself), exactly one of the two. Default: `werf.yaml`, else `werf.yml`, at the
    /// repository root. werf.yaml is a Go template, rendered as werf renders it; see
    /// `configRendering` for what its templates read from outside the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSpec>,

    /// What werf.yaml templates read from outside the commit, in place of the process
    /// environment werf reads on a workstation: the values of `{{ env "NAME" }}`, `.Env`
    /// (werf `--env`), the templates directory and werf's giterminism mode. Variables
    /// `env` reads must still be allowed by `werf-giterminism.yaml` in the commit
    /// (`config.goTemplateRendering.allowEnvVariables`) unless `looseGiterminism` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_rendering: Option<ConfigRenderingSpec>,

    /// The stages storage, a container registry repository such as
    /// `registry.example.org/shop` (werf `--repo`). Stages are stored there under
    /// content-based tags `DIGEST-TIMESTAMP_MILLISEC`; stages already there are reused.
    #[schemars(length(min = 1))]
    pub repo: String,

    /// Repository the final images are copied to after the build (werf `--final-repo`),
    /// for example a registry near the cluster. The build report then names the copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_repo: Option<String>,

    /// Read-only stages storages (werf `--secondary-repo`): a stage found there is copied
    /// into `repo` instead of being built.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_repos: Vec<String>,

    /// Fast read caches (werf `--cache-repo`), looked up before `repo`; built stages are
    /// pushed to them as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_repos: Vec<String>,

    /// A Secret of type `kubernetes.io/dockerconfigjson` in this namespace with the
    /// credentials for every registry above. Mounted read-only into builder pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_secret_ref: Option<SecretRef>,

    /// Names of the werf.yaml images to build (werf `build IMAGE...`), together with the
    /// images they depend on. Empty: all images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,

    /// Target platforms such as `linux/amd64` or `linux/arm64` (werf `--platform`);
    /// overrides `build.platform` and the images' `platform` in werf.yaml. A multi-
    /// platform image is published as a manifest list. Empty: as werf.yaml says, else
    /// `linux/amd64`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,

    /// Custom tag templates added to every final image (werf `--add-custom-tag`), for
    /// example `%image%-main` or `latest`. Placeholders: `%image%`, `%image_slug%`,
    /// `%image_safe_slug%`, `%image_content_based_tag%`. With several final images each
    /// template must contain an image placeholder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_tags: Vec<String>,

    /// Build independent images of a build set at the same time (werf `--parallel`).
    #[serde(default = "default_parallel")]
    pub parallel: bool,

    /// At most this many builds of a build set at once (werf `--parallel-tasks-limit`);
    /// zero or less: no limit.
    #[serde(default = "default_parallel_tasks_limit")]
    pub parallel_tasks_limit: i32,

    /// Network mode for RUN instructions in builder pods (werf `--backend-network`), for
    /// example `none` or `host`. Default: the builder's default network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,

    /// Secrets in this namespace holding SSH private keys (key `ssh-privatekey`) loaded
    /// into an ssh-agent in builder pods (werf `--ssh-key`), for `RUN --mount=type=ssh`
    /// and Stapel git over SSH.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_key_secret_refs: Vec<SecretRef>,

    /// Contents of the build secrets werf.yaml images declare in `secrets:` (werf's
    /// buildkit-style `RUN --mount=type=secret`), each taken from one key of a Secret in
    /// this namespace. A werf.yaml secret `env: NAME` needs an entry with id `NAME`, one
    /// with `src: PATH` an entry with id `basename(PATH)`, one with an explicit `id` that
    /// id (`value:` secrets need none). A build whose image lacks an entry fails before
    /// any builder pod. Builder pods mount only the keys their image reads, read-only;
    /// secrets are in no stage digest and in no image layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub build_secrets: Vec<BuildSecret>,

    /// Mirrors for Docker Hub images (werf `--container-registry-mirror`), for example
    /// `mirror.gcr.io`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registry_mirrors: Vec<String>,

    /// Set to true to stop the build: builder pods are deleted, stage locks released and
    /// the phase becomes Cancelled. Stages already published stay in the stages storage.
    #[serde(default)]
    pub cancel: bool,

    /// Longest time the build may take from its start, as a Go duration such as `30m`
    /// or `1h30m` (units h, m, s, ms, us, ns). When it passes, the build stops like a
    /// cancel and fails with reason Timeout. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$"))]
    pub timeout: Option<String>,

    /// Stage layout for `staged: true` Dockerfile images: `v1` (werf's default: the FROM
    /// instruction belongs to the first stage) or `v2` (FROM is a stage of its own).
    /// Changing it changes stage digests.
    #[serde(default)]
    pub staged_dockerfile_version: StagedDockerfileVersion,

    /// What stage digests hash: `werf` (byte-identical to werf v2, so werf CLIs and Kiln
    /// share one stages storage) or `strict` (also the inputs werf leaves out although
    /// they change the image: file modes, paths of files a glob selects one by one,
    /// heredoc bodies, quoting, stages reached through `FROM ${ARG}`). Strict digests
    /// carry their own salt, so the two modes never reuse each other's stages. Unset: the
    /// operator's `--digest-mode` (default `werf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_mode: Option<DigestMode>,

    /// Overrides for the builder pods of this build (resources, node selection,
    /// tolerations). Unset fields take the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<BuilderSpec>,

    /// How long this ImageBuild is kept once it has finished; then the operator deletes
    /// it (with its report ConfigMap). Unset: kept until deleted. The published images
    /// and stages are never deleted by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
}

/// Time-to-live of a finished ImageBuild, counted from `status.completionTime`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Delete the ImageBuild this long after it Succeeded, as a Go duration such as
    /// `24h`. Unset: keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$"))]
    pub ttl_after_succeeded: Option<String>,

    /// Delete the ImageBuild this long after it Failed or was Cancelled, as a Go
    /// duration such as `72h`. Unset: keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$"))]
    pub ttl_after_failed: Option<String>,
}

/// The spec serde produces when every optional field is left out: werf's defaults
/// (`parallel: true`, `parallelTasksLimit: 5`, revision `HEAD`, staged layout `v1`),
/// with empty `source.git.url` and `repo` for the caller to fill in.
impl Default for ImageBuildSpec {
    fn default() -> Self {
        ImageBuildSpec {
            source: SourceSpec::default(),
            config: None,
            config_rendering: None,
            repo: String::new(),
            final_repo: None,
            secondary_repos: Vec::new(),
            cache_repos: Vec::new(),
            registry_secret_ref: None,
            images: Vec::new(),
            platforms: Vec::new(),
            custom_tags: Vec::new(),
            parallel: default_parallel(),
            parallel_tasks_limit: default_parallel_tasks_limit(),
            network: None,
            ssh_key_secret_refs: Vec::new(),
            build_secrets: Vec::new(),
            registry_mirrors: Vec::new(),
            cancel: false,
            timeout: None,
            staged_dockerfile_version: StagedDockerfileVersion::V1,
            digest_mode: None,
            builder: None,
            retention: None,
        }
    }
}

fn default_parallel() -> bool {
    true
}

/// werf's `DefaultBuildParallelTasksLimit`.
fn default_parallel_tasks_limit() -> i32 {
    crate::DEFAULT_PARALLEL_TASKS_LIMIT
}

/// Where the project's files come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// A git repository and revision.
    pub git: GitSource,
}

/// A git repository and the revision to build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// Clone URL: `https://...`, `http://...`, `ssh://user@host/path` or
    /// `user@host:path`.
    #[schemars(length(min = 1))]
    pub url: String,

    /// Branch, tag or commit to build. The resolved commit is recorded in
    /// `status.commit`. Default: the remote's HEAD.
    #[serde(default = "default_revision")]
    pub revision: String,

    /// A Secret in this namespace with credentials for the repository: `username` and
    /// `password` for HTTP(S) (type `kubernetes.io/basic-auth`), or `ssh-privatekey` and
    /// optionally `known_hosts` for SSH (type `kubernetes.io/ssh-auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// Empty URL, revision `HEAD` (the serde default), no secret.
impl Default for GitSource {
    fn default() -> Self {
        GitSource {
            url: String::new(),
            revision: default_revision(),
            secret_ref: None,
        }
    }
}

fn default_revision() -> String {
    "HEAD".to_owned()
}

/// Which werf.yaml to build: exactly one of `path` and `inline`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.path) != has(self.inline)",
    "message": "exactly one of config.path and config.inline must be set"
}]))]
pub struct ConfigSpec {
    /// Path of werf.yaml inside the commit, relative to the repository root, for
    /// example `werf.yaml` or `services/shop/werf.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// The werf.yaml text itself (multi-document YAML). Dockerfiles and context files
    /// are still read from the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// Values werf.yaml templates read (werf's environment, giterminism and flags).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRenderingSpec {
    /// `.Env` in werf.yaml templates (werf `--env`, e.g. `production`). Default: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,

    /// Values of environment variables for `{{ env "NAME" }}`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_values: BTreeMap<String, String>,

    /// Environment variables for `{{ env "NAME" }}` taken from one key of a Secret or a
    /// ConfigMap in this namespace. A name here wins over the same name in `envValues`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env_values_from: Vec<EnvValueSource>,

    /// Directory of `*.tmpl` templates inside the commit, relative to the repository root
    /// (werf `--config-templates-dir`). Default: `.werf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates_dir: Option<String>,

    /// werf `--loose-giterminism`: `env` may read any variable without an allow-list entry,
    /// and an unset variable without a default renders empty instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loose_giterminism: bool,
}

/// One environment variable for werf.yaml templates, from a Secret key or a ConfigMap key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)",
    "message": "exactly one of secretKeyRef and configMapKeyRef must be set"
}]))]
pub struct EnvValueSource {
    /// The variable name `env` asks for.
    #[schemars(length(min = 1))]
    pub name: String,

    /// The Secret key holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,

    /// The ConfigMap key holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
}

/// One key of a ConfigMap in the ImageBuild's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1))]
    pub name: String,

    /// Key in the ConfigMap's `data` (or `binaryData`).
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A reference to a Secret in the ImageBuild's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// The content of one build secret: the id Dockerfiles use (`RUN
/// --mount=type=secret,id=ID`) and the Secret key holding it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildSecret {
    /// The secret id as werf.yaml resolves it: the `id:` of a `secrets:` entry, else its
    /// `env:` name, else the file name of its `src:` path (`credentials` for
    /// `~/.aws/credentials`). Letters, digits, `.`, `_` and `-`.
    #[schemars(length(min = 1), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub id: String,

    /// The Secret key whose value becomes the secret's file content (at
    /// `/run/secrets/ID` in a RUN unless the mount names another target).
    pub secret_key_ref: SecretKeyRef,
}

/// One key of a Secret in the ImageBuild's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,

    /// Key in the Secret's `data` (or `stringData`).
    #[schemars(length(min = 1))]
    pub key: String,
}

/// Stage layout of `staged: true` Dockerfile images (werf's staged Dockerfile builder).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum StagedDockerfileVersion {
    /// The FROM instruction is part of the first instruction's stage (werf's default).
    #[default]
    #[serde(rename = "v1")]
    V1,
    /// FROM is a stage of its own, followed by one stage per instruction.
    #[serde(rename = "v2")]
    V2,
}

/// What a stage digest hashes; see `ImageBuildSpec::digest_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DigestMode {
    /// Byte-identical to werf v2.
    #[default]
    #[serde(rename = "werf")]
    Werf,
    /// werf's inputs plus the ones werf leaves out, under a salt of its own.
    #[serde(rename = "strict")]
    Strict,
}

/// Overrides for this build's builder pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuilderSpec {
    /// CPU and memory requests and limits of the builder container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels every builder pod of this build requires.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations added to every builder pod of this build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Run each platform's builds on nodes of that architecture (node labels
    /// `kubernetes.io/os` and `kubernetes.io/arch` taken from the platform, for example
    /// `linux` and `arm64` for `linux/arm64/v8`) instead of emulating it with QEMU.
    #[serde(default)]
    pub native_platforms: bool,

    /// Extra node labels per platform, for example
    /// `{"linux/arm64": {"node-pool": "arm"}}`. They take precedence over
    /// `nodeSelector` and over the labels from `nativePlatforms`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platform_node_selectors: BTreeMap<String, BTreeMap<String, String>>,
}

/// Where a build is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted, not yet started.
    #[default]
    Pending,
    /// Fetching the source, reading werf.yaml, computing digests and the build plan.
    Planning,
    /// Looking up stages, building the missing ones and publishing images.
    Building,
    /// Every requested image is published; the report is in the status.
    Succeeded,
    /// The build stopped on an error; the Succeeded condition says why.
    Failed,
    /// The build was stopped by `spec.cancel`.
    Cancelled,
}

impl Phase {
    /// True for the phases a build never leaves (Succeeded, Failed, Cancelled).
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }

    /// The phase name as it appears in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Planning => "Planning",
            Phase::Building => "Building",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Cancelled => "Cancelled",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Kiln observed and did for an ImageBuild.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildStatus {
    /// Where the build is: Pending, Planning, Building, Succeeded, Failed or Cancelled.
    #[serde(default)]
    pub phase: Phase,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The full git commit id `spec.source.git.revision` resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,

    /// When Kiln started working on the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the build reached Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Conditions with stable reasons. `Succeeded` is True when every image is
    /// published, False when the build failed or was cancelled (the reason and message
    /// say why), Unknown while it runs; `kubectl wait --for=condition=Succeeded` works.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The concurrent build plan: build sets in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<BuildPlanStatus>,

    /// Number of images this build publishes (the requested images and the images they
    /// depend on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_count: Option<i32>,

    /// Number of stages this build built; every other stage was reused from a stages
    /// storage. Zero for a fully cached build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_stages: Option<i32>,

    /// One record per published image: where it is and whether it was rebuilt. Always
    /// present for a succeeded build, even when the full report is in a ConfigMap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageSummary>,

    /// The build report with werf's field names (`Images`, `ImagesByPlatform`, per-stage
    /// records...), as `werf build --save-build-report` writes it. Left out when it would
    /// make the status too large; then `reportConfigMap` names where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<BuildReport>,

    /// Name of a ConfigMap in this namespace, owned by this ImageBuild, holding the full
    /// build report (key `report.json`, werf's JSON) and its env-file form (key
    /// `report.env`). Set when the report does not fit into the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_config_map: Option<String>,

    /// The builder pods this build created, for tracing a build to its pods and logs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builder_pods: Vec<BuilderPodRef>,
}

/// The concurrent build plan (werf's "Concurrent builds plan").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildPlanStatus {
    /// Build sets in the order they run; the images of one set do not depend on each
    /// other and build at the same time (at most `spec.parallelTasksLimit` at once).
    pub sets: Vec<Vec<String>>,
}

/// The outcome for one published image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSummary {
    /// The image name from werf.yaml.
    pub image: String,

    /// Platforms the image was built for. With more than one, `digest` is the digest
    /// of the manifest list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,

    /// Repository the image is published in (`finalRepo` if set, else `repo`).
    pub repo: String,

    /// The content-based tag `DIGEST-TIMESTAMP_MILLISEC` of the image's last stage.
    pub tag: String,

    /// Manifest (or manifest list) digest, `sha256:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,

    /// True if at least one stage of this image was built by this build.
    #[serde(default)]
    pub rebuilt: bool,

    /// Custom tags published for this image (from `spec.customTags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_tags: Vec<String>,
}

/// A builder pod created for this build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuilderPodRef {
    /// Pod name, in the ImageBuild's namespace.
    pub name: String,

    /// The werf.yaml image the pod builds.
    pub image: String,

    /// The platform the pod builds for, such as `linux/arm64`.
    pub platform: String,
}
