//! The build job: what the operator hands to one builder pod (`kiln-builder`), and the
//! result the pod hands back in its termination message.
//!
//! One job builds the missing stages of **one image on one platform**, in order, and
//! publishes each stage to the stages storage as `REPO:DIGEST-TIMESTAMP_MILLISEC` as soon as
//! it is built (werf's publishing protocol, reference §4). The operator has already computed
//! every stage digest, content digest and label value and resolved every Dockerfile `ARG`;
//! the builder only turns the job into Buildah calls. Instructions arrive parsed
//! ([`Instruction`]) so that one parser — the operator's — decides both what enters a stage
//! digest and what gets built.
//!
//! The job is JSON (camelCase field names) and versioned by `apiVersion`; a job with another
//! version is refused with [`JobError::UnsupportedVersion`] instead of being half understood.
//! File paths in a job are paths inside the builder pod (mounted Secrets, ConfigMaps).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The only job version this crate reads and writes.
pub const JOB_API_VERSION: &str = "kiln.dev/job/v1";

/// A pod termination message holds at most this many bytes (Kubernetes truncates the rest).
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// Why a job document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The document is not JSON, or a field has the wrong shape. `source` names the
    /// line/column and the field serde tripped over.
    #[error("build job {origin}: {source}")]
    Malformed {
        /// Where the document came from (a file path or an environment variable name).
        origin: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The document's `apiVersion` is missing or not [`JOB_API_VERSION`].
    #[error(
        "build job {origin}: unsupported apiVersion {found:?}; this builder reads {JOB_API_VERSION:?}"
    )]
    UnsupportedVersion {
        /// Where the document came from.
        origin: String,
        /// The version found (empty when the field is missing).
        found: String,
    },
    /// The job parses but cannot be built as given (see the message).
    #[error("build job {origin}: {problem}")]
    Invalid {
        /// Where the document came from.
        origin: String,
        /// What is wrong, naming the stage and field.
        problem: String,
    },
}

/// One build job: the missing stages of one image on one platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildJob {
    /// Always [`JOB_API_VERSION`] (`kiln.dev/job/v1`).
    pub api_version: String,
    /// werf project name (`project:` in werf.yaml); written to the `werf` label of every stage.
    pub project: String,
    /// werf image name, used only in logs and the result (e.g. `backend`).
    pub image: String,
    /// HEAD commit of the project repository, for the `werf-project-repo-commit` label;
    /// `None` = the source commit (no label when there is no source either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Where the build context comes from. `None` when no stage reads the context (a staged
    /// build of only `ENV`/`RUN`/... instructions, or a v2 `FROM` stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Build context directory relative to the repository root (werf's `context`); `""` is
    /// the root.
    #[serde(default)]
    pub context_dir: String,
    /// Dockerfile path relative to the repository root (werf's `dockerfile`); used by a
    /// non-staged stage that does not carry the Dockerfile text itself.
    #[serde(default = "default_dockerfile_path")]
    pub dockerfile_path: String,
    /// Dockerfile stage to build (`buildah bud --target`, werf's `target`); `None` = last stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Build arguments (`--build-arg NAME=VALUE`, werf's `args` after dependency args).
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// Extra `/etc/hosts` entries `HOST:IP` (werf's `addHost`).
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// Target platform `os/arch[/variant]`, e.g. `linux/arm64`; `None` = the node's platform.
    /// Another architecture runs under QEMU user emulation registered with binfmt_misc (the
    /// node must have it registered with the `F` flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Network of `RUN` steps (werf's `network` / `--backend-network`).
    #[serde(default)]
    pub network: NetworkMode,
    /// Private SSH key files loaded into an ssh-agent that `RUN --mount=type=ssh` reaches
    /// through `SSH_AUTH_SOCK` (werf's `--ssh-key`). Empty = no agent.
    #[serde(default)]
    pub ssh_key_paths: Vec<String>,
    /// Build secrets (werf.yaml `secrets:`) by id: `buildah bud --secret` for a non-staged
    /// stage, a read-only file at the mount's target for a staged `RUN
    /// --mount=type=secret`. Empty = none (jobs written before secrets existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<JobSecret>,
    /// Mirrors for docker.io (werf's `--container-registry-mirror`): `host[:port][/path]`,
    /// with an optional `http://` prefix for a plain-HTTP mirror or `https://` for TLS (the
    /// default).
    #[serde(default)]
    pub registry_mirrors: Vec<String>,
    /// Registries (`host[:port]`) reached over plain HTTP or with an unverified certificate.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// A `kubernetes.io/dockerconfigjson` file (`{"auths":{host:{auth}}}`) with credentials
    /// for pulling and pushing; `None` = anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth_path: Option<String>,
    /// Stages storage (werf's `--repo`), e.g. `registry.example.org/shop`: every built stage
    /// is pushed here as `REPO:DIGEST-TIMESTAMP_MILLISEC`.
    pub repo: String,
    /// Cache repos (werf's `--cache-repo`): each published stage is copied there under the
    /// same tag after the stages storage has it; a failed copy is a warning, as in werf.
    #[serde(default)]
    pub cache_repos: Vec<String>,
    /// External images the build reads (every resolved `FROM` base, `COPY --from=IMAGE`),
    /// pulled before building so that a `network: none` build needs no network. The builder
    /// also works without the list when the network is not `none`.
    #[serde(default)]
    pub base_images: Vec<String>,
    /// The stages to build, in order; each one's parent is published before it is built.
    pub stages: Vec<StageJob>,
}

fn default_dockerfile_path() -> String {
    "Dockerfile".to_owned()
}

/// Where the source tree comes from: one commit of one git repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Clone URL: `https://`, `http://`, `ssh://`, `git@host:path` or `file://`.
    pub url: String,
    /// Full commit hash (40 hex); also the `werf-project-repo-commit` label value.
    pub commit: String,
    /// Credentials for the URL; `None` = anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SourceAuth>,
}

/// Git credentials, as files mounted from a Secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", deny_unknown_fields)]
pub enum SourceAuth {
    /// HTTP basic auth (`kubernetes.io/basic-auth` Secret keys `username`, `password`).
    #[serde(rename_all = "camelCase")]
    Basic {
        /// File holding the user name.
        username_path: String,
        /// File holding the password or token.
        password_path: String,
    },
    /// SSH (`kubernetes.io/ssh-auth` Secret key `ssh-privatekey` plus a `known_hosts`).
    #[serde(rename_all = "camelCase")]
    Ssh {
        /// File holding the private key (any mode; the builder copies it to a 0600 file).
        private_key_path: String,
        /// `known_hosts` file; host keys are checked strictly against it.
        known_hosts_path: String,
    },
}

/// One build secret of a job: its id and where its content is, exactly one of `path` (a
/// file in the pod, a mounted Secret key) and `value` (the content itself, for werf.yaml
/// `value:` secrets, which are in werf.yaml anyway).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSecret {
    /// The id RUN mounts name (`--mount=type=secret,id=ID`).
    pub id: String,
    /// File holding the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Leaves the value out, so that logging a job never prints a secret.
impl std::fmt::Debug for JobSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSecret")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Network of `RUN` steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The builder's default; with chroot isolation this is the pod's network.
    #[default]
    Default,
    /// No network at all: only a loopback device of its own.
    None,
    /// The pod's network.
    Host,
}

/// One stage to build and publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageJob {
    /// Stage name as werf logs it: `dockerfile`, `FROM1`, `run`, `copy`, ... (reference §1.2).
    pub name: String,
    /// Stage digest: 56 lowercase hex chars (SHA3-224); the tag is `DIGEST-TIMESTAMP_MILLISEC`.
    pub digest: String,
    /// Stage content digest (reference §1.2), written to the `werf-stage-content-digest` label.
    pub content_digest: String,
    /// What the stage is built on.
    pub parent: ParentRef,
    /// How the stage is built.
    pub build: StageBuild,
    /// Extra labels for the stage image (git labels, `werf-version`, import labels...). The
    /// builder itself sets `werf`, `werf-stage-content-digest`, `werf.io/parent-stage-id` and
    /// `werf-project-repo-commit` (reference §3); an entry here overrides those.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The image a stage is built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum ParentRef {
    /// No parent: a non-staged Dockerfile stage names its bases in its own `FROM` lines.
    None,
    /// The stage listed just before this one in the same job, once it is published.
    Previous,
    /// An already-published stage, `REPO:DIGEST-TIMESTAMP_MILLISEC`; its `DIGEST-TIMESTAMP`
    /// becomes this stage's `werf.io/parent-stage-id` label.
    Stage {
        /// Full image reference of the parent stage.
        reference: String,
    },
    /// An external base image (`busybox:1.36`, `registry.example.org/base:1`) or `scratch`.
    Image {
        /// Image reference as written in the Dockerfile after ARG expansion.
        reference: String,
    },
}

/// How a stage is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum StageBuild {
    /// Non-staged Dockerfile image: the whole Dockerfile as one stage (`buildah bud`).
    #[serde(rename_all = "camelCase")]
    Dockerfile {
        /// The Dockerfile text; `None` = read [`BuildJob::dockerfile_path`] from the source.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dockerfile: Option<String>,
    },
    /// Staged Dockerfile v2 `FROM` stage: the parent image itself, relabelled and published.
    From,
    /// Staged Dockerfile: one instruction applied to the parent image.
    #[serde(rename_all = "camelCase")]
    Instruction {
        /// The instruction as written (after ARG expansion), for logs and failure messages.
        text: String,
        /// The parsed instruction.
        instruction: Instruction,
    },
    /// Stapel stage: several steps applied in order to one working container of the parent
    /// image and committed as one stage (werf's `dockerInstructions` stage sets ENV, CMD, ...
    /// together).
    #[serde(rename_all = "camelCase")]
    Instructions {
        /// The steps, in order; at least one.
        steps: Vec<InstructionStep>,
    },
}

/// One step of a [`StageBuild::Instructions`] stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstructionStep {
    /// The step as text, for logs and failure messages.
    pub text: String,
    /// The parsed instruction.
    pub instruction: Instruction,
}

/// A `NAME=VALUE` pair of `ENV`, `LABEL` or a `RUN`'s environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    /// Variable or label name.
    pub name: String,
    /// Its value, already expanded.
    pub value: String,
}

/// One parsed Dockerfile instruction of a staged build (buildkit's instruction model; ARG and
/// ENV references already expanded by the operator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum Instruction {
    /// `RUN`: `buildah run` in the working container.
    #[serde(rename_all = "camelCase")]
    Run {
        /// Exec form (`prependShell: false`) or the one-element shell-form command line.
        command: Vec<String>,
        /// Shell form: run through the image's `SHELL` (default `/bin/sh -c`).
        prepend_shell: bool,
        /// Build arguments in scope, set in the command's environment only.
        #[serde(default)]
        env: Vec<KeyValue>,
        /// `--mount` flags.
        #[serde(default)]
        mounts: Vec<RunMount>,
        /// `--network`; the job's `network: none` wins over a step's `host`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<NetworkMode>,
    },
    /// `COPY`: `buildah copy`.
    #[serde(rename_all = "camelCase")]
    Copy {
        /// Source paths or globs, relative to the context (or to `from`'s root).
        sources: Vec<String>,
        /// Destination path in the image.
        dest: String,
        /// `--from`: a resolved image reference to copy out of; `None` = the build context.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// `--chown=USER[:GROUP]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chown: Option<String>,
        /// `--chmod=MODE`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chmod: Option<String>,
    },
    /// `ADD`: `buildah add` (archives unpacked, URLs fetched).
    #[serde(rename_all = "camelCase")]
    Add {
        /// Source paths, globs or URLs.
        sources: Vec<String>,
        /// Destination path in the image.
        dest: String,
        /// `--chown=USER[:GROUP]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chown: Option<String>,
        /// `--chmod=MODE`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chmod: Option<String>,
    },
    /// `ENV`.
    Env {
        /// Variables in order.
        vars: Vec<KeyValue>,
    },
    /// `LABEL`.
    Label {
        /// Labels in order.
        labels: Vec<KeyValue>,
    },
    /// `WORKDIR`.
    Workdir {
        /// Absolute or relative (to the current working directory) path.
        path: String,
    },
    /// `USER`.
    User {
        /// `USER[:GROUP]`.
        user: String,
    },
    /// `CMD`.
    #[serde(rename_all = "camelCase")]
    Cmd {
        /// Exec form, or the one-element shell-form command line.
        command: Vec<String>,
        /// Shell form.
        prepend_shell: bool,
    },
    /// `ENTRYPOINT`.
    #[serde(rename_all = "camelCase")]
    Entrypoint {
        /// Exec form, or the one-element shell-form command line.
        command: Vec<String>,
        /// Shell form.
        prepend_shell: bool,
    },
    /// `EXPOSE`.
    Expose {
        /// `PORT[/PROTO]` entries.
        ports: Vec<String>,
    },
    /// `VOLUME`.
    Volume {
        /// Paths.
        paths: Vec<String>,
    },
    /// `SHELL`.
    Shell {
        /// The new shell command, e.g. `["/bin/sh", "-c"]`.
        shell: Vec<String>,
    },
    /// `STOPSIGNAL`.
    Stopsignal {
        /// Signal name or number.
        signal: String,
    },
    /// `HEALTHCHECK`.
    #[serde(rename_all = "camelCase")]
    Healthcheck {
        /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
        test: Vec<String>,
        /// `--interval`, Go duration text (`30s`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval: Option<String>,
        /// `--timeout`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
        /// `--start-period`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_period: Option<String>,
        /// `--retries`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retries: Option<u32>,
    },
    /// `MAINTAINER` (sets the author).
    Maintainer {
        /// Author text.
        name: String,
    },
    /// `ONBUILD`.
    Onbuild {
        /// The trigger instruction text.
        expression: String,
    },
}

/// A `RUN --mount` flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", deny_unknown_fields)]
pub enum RunMount {
    /// `--mount=type=ssh`: the builder's ssh-agent socket at `target`, announced in
    /// `SSH_AUTH_SOCK`.
    Ssh {
        /// Socket path in the container; `None` = `/run/buildkit/ssh_agent.0` (buildkit's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    /// Any other mount (`bind`, `cache`, `tmpfs`, `secret`), passed to `buildah run --mount`
    /// as written after `--mount=` (bind sources relative to the context).
    Other {
        /// e.g. `type=cache,target=/var/cache/apt`.
        spec: String,
    },
}

impl BuildJob {
    /// Reads a job from JSON text. `origin` names where it came from (a path or an
    /// environment variable) in errors.
    ///
    /// Errors: [`JobError::UnsupportedVersion`] when `apiVersion` is missing or not
    /// [`JOB_API_VERSION`] (checked before anything else, so a future job shape is reported
    /// as a version mismatch rather than as an unknown field), [`JobError::Malformed`] for
    /// any other shape problem, [`JobError::Invalid`] from [`BuildJob::validate`].
    pub fn from_json(text: &str, origin: &str) -> Result<Self, JobError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Versioned {
            #[serde(default)]
            api_version: Option<String>,
        }
        let malformed = |source| JobError::Malformed {
            origin: origin.to_owned(),
            source,
        };
        let versioned: Versioned = serde_json::from_str(text).map_err(malformed)?;
        let found = versioned.api_version.unwrap_or_default();
        if found != JOB_API_VERSION {
            return Err(JobError::UnsupportedVersion {
                origin: origin.to_owned(),
                found,
            });
        }
        let job: BuildJob = serde_json::from_str(text).map_err(malformed)?;
        job.validate(origin)?;
        Ok(job)
    }

    /// The job as JSON text (what the operator puts into the pod).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a BuildJob always serializes")
    }

    /// Checks what serde cannot: at least one stage, digests of 56 lowercase hex chars, no
    /// `Previous` parent on the first stage, a source when a stage reads the build context,
    /// a non-empty repo, secrets with unique well-formed ids and exactly one of path/value.
    pub fn validate(&self, origin: &str) -> Result<(), JobError> {
        let invalid = |problem: String| JobError::Invalid {
            origin: origin.to_owned(),
            problem,
        };
        if self.repo.is_empty() {
            return Err(invalid("repo is empty".into()));
        }
        if self.stages.is_empty() {
            return Err(invalid("stages is empty: nothing to build".into()));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (index, secret) in self.secrets.iter().enumerate() {
            let at = format!("secrets[{index}] (id {:?})", secret.id);
            if !crate::validate::is_build_secret_id(&secret.id) {
                return Err(invalid(format!(
                    "{at}: id must be letters, digits, `.`, `_` or `-`"
                )));
            }
            if !ids.insert(secret.id.as_str()) {
                return Err(invalid(format!("{at}: duplicate id")));
            }
            if secret.path.is_some() == secret.value.is_some() {
                return Err(invalid(format!("{at}: set exactly one of path and value")));
            }
        }
        for (index, stage) in self.stages.iter().enumerate() {
            let at = format!("stage {} ({})", index + 1, stage.name);
            if !is_sha3_224_hex(&stage.digest) {
                return Err(invalid(format!(
                    "{at}: digest {:?} is not 56 lowercase hex characters (SHA3-224)",
                    stage.digest
                )));
            }
            if index == 0 && stage.parent == ParentRef::Previous {
                return Err(invalid(format!(
                    "{at}: parent is `Previous` but it is the first stage"
                )));
            }
            let needs_parent = !matches!(stage.build, StageBuild::Dockerfile { .. });
            if needs_parent && stage.parent == ParentRef::None {
                return Err(invalid(format!(
                    "{at}: a staged stage needs a parent (Previous, Stage or Image)"
                )));
            }
            if let StageBuild::Instructions { steps } = &stage.build
                && steps.is_empty()
            {
                return Err(invalid(format!("{at}: instructions stage without steps")));
            }
            if self.source.is_none() && stage.reads_context() {
                return Err(invalid(format!(
                    "{at}: reads the build context but the job has no source"
                )));
            }
        }
        Ok(())
    }

    /// Whether any stage needs the source tree checked out.
    pub fn needs_context(&self) -> bool {
        self.stages.iter().any(StageJob::reads_context)
    }
}

impl StageJob {
    /// Whether building this stage reads files of the build context: a non-staged
    /// Dockerfile, `COPY` without `--from`, `ADD` (sources may be local), or a `RUN` with a
    /// bind mount.
    pub fn reads_context(&self) -> bool {
        match &self.build {
            StageBuild::Dockerfile { .. } => true,
            StageBuild::From => false,
            StageBuild::Instruction { instruction, .. } => instruction_reads_context(instruction),
            StageBuild::Instructions { steps } => steps
                .iter()
                .any(|s| instruction_reads_context(&s.instruction)),
        }
    }
}

fn instruction_reads_context(instruction: &Instruction) -> bool {
    match instruction {
        Instruction::Copy { from, .. } => from.is_none(),
        Instruction::Add { .. } => true,
        Instruction::Run { mounts, .. } => mounts
            .iter()
            .any(|m| matches!(m, RunMount::Other { spec } if spec.contains("type=bind"))),
        _ => false,
    }
}

fn is_sha3_224_hex(digest: &str) -> bool {
    digest.len() == 56
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a builder pod reports in its termination message (JSON, at most
/// [`TERMINATION_MESSAGE_LIMIT`] bytes). Stages appear in build order; those published
/// before a failure are listed too (they stay valid cache).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildResult {
    /// True when every stage of the job was published.
    pub ok: bool,
    /// Published stages.
    pub stages: Vec<StageResult>,
    /// Why the build stopped, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StageFailure>,
    /// True when optional per-stage fields (image ID, size, build seconds, manifest digest)
    /// were dropped to fit the message limit; read them from the registry instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One published stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageResult {
    /// The content-based tag `DIGEST-TIMESTAMP_MILLISEC` in the job's repo.
    pub tag: String,
    /// Image ID (`sha256:` + config digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Digest of the pushed manifest (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// Bytes in the registry: config plus compressed layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Wall-clock seconds from the start of the stage to its publication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_seconds: Option<f64>,
}

/// The stage that failed and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageFailure {
    /// 1-based index of the stage in the job (0 = before any stage, e.g. fetching the source).
    pub stage_index: usize,
    /// Stage name (`dockerfile`, `run`, ...); empty when `stage_index` is 0.
    pub stage: String,
    /// Stage digest; empty when `stage_index` is 0.
    pub digest: String,
    /// The instruction that failed (staged), `buildah bud` for a non-staged stage, or the
    /// operation (`fetch source`, `push`).
    pub instruction: String,
    /// Exit status of the failing command, when a command failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// One-line cause.
    pub message: String,
    /// Last lines of the failing command's output (trimmed from the front to fit).
    pub log_tail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";

    fn minimal_json(version: &str) -> String {
        format!(
            r#"{{"apiVersion":"{version}","project":"shop","image":"backend",
                "repo":"registry.example.org/shop",
                "stages":[{{"name":"from","digest":"{DIGEST}","contentDigest":"{DIGEST}",
                  "parent":{{"kind":"image","reference":"busybox"}},"build":{{"kind":"from"}}}}]}}"#
        )
    }

    #[test]
    fn minimal_job_parses_with_defaults() {
        let job = BuildJob::from_json(&minimal_json(JOB_API_VERSION), "test").unwrap();
        assert_eq!(job.dockerfile_path, "Dockerfile");
        assert_eq!(job.network, NetworkMode::Default);
        assert_eq!(job.context_dir, "");
        assert!(job.source.is_none());
        assert_eq!(
            job.stages[0].parent,
            ParentRef::Image {
                reference: "busybox".into()
            }
        );
        assert!(!job.needs_context());
    }

    #[test]
    fn unknown_version_is_named() {
        let err =
            BuildJob::from_json(&minimal_json("kiln.dev/job/v9"), "env KILN_JOB").unwrap_err();
        assert!(
            matches!(&err, JobError::UnsupportedVersion { found, .. } if found == "kiln.dev/job/v9")
        );
        let text = err.to_string();
        assert!(text.contains("env KILN_JOB"), "{text}");
        assert!(text.contains("kiln.dev/job/v9"), "{text}");
        assert!(text.contains("kiln.dev/job/v1"), "{text}");
    }

    #[test]
    fn missing_version_is_a_version_error() {
        let err = BuildJob::from_json(r#"{"project":"x"}"#, "f.json").unwrap_err();
        assert!(matches!(err, JobError::UnsupportedVersion { found, .. } if found.is_empty()));
    }

    #[test]
    fn not_json_is_malformed() {
        let err = BuildJob::from_json("apiVersion: x", "job.yaml").unwrap_err();
        assert!(matches!(err, JobError::Malformed { .. }));
        assert!(err.to_string().starts_with("build job job.yaml:"));
    }

    #[test]
    fn unknown_field_is_malformed_and_named() {
        let text =
            minimal_json(JOB_API_VERSION).replace("\"image\":", "\"imagge\":\"x\",\"image\":");
        let err = BuildJob::from_json(&text, "job.json").unwrap_err();
        assert!(err.to_string().contains("imagge"), "{err}");
    }

    #[test]
    fn bad_digest_is_invalid() {
        let text = minimal_json(JOB_API_VERSION).replacen(DIGEST, "abc", 1);
        let err = BuildJob::from_json(&text, "job.json").unwrap_err();
        assert!(matches!(err, JobError::Invalid { .. }));
        assert!(err.to_string().contains("stage 1 (from)"), "{err}");
    }

    #[test]
    fn previous_parent_on_first_stage_is_invalid() {
        let text = minimal_json(JOB_API_VERSION).replace(
            r#"{"kind":"image","reference":"busybox"}"#,
            r#"{"kind":"previous"}"#,
        );
        let err = BuildJob::from_json(&text, "job.json").unwrap_err();
        assert!(err.to_string().contains("first stage"), "{err}");
    }

    #[test]
    fn copy_from_context_without_source_is_invalid() {
        let text = minimal_json(JOB_API_VERSION).replace(
            r#"{"kind":"from"}"#,
            r#"{"kind":"instruction","text":"COPY a /a","instruction":{"kind":"copy","sources":["a"],"dest":"/a"}}"#,
        );
        let err = BuildJob::from_json(&text, "job.json").unwrap_err();
        assert!(err.to_string().contains("no source"), "{err}");
    }

    #[test]
    fn instructions_stage_round_trips_and_needs_steps() {
        let text = minimal_json(JOB_API_VERSION).replace(
            r#"{"kind":"from"}"#,
            r#"{"kind":"instructions","steps":[{"text":"ENV A=1","instruction":{"kind":"env","vars":[{"name":"A","value":"1"}]}},{"text":"CMD [\"sh\"]","instruction":{"kind":"cmd","command":["sh"],"prependShell":false}}]}"#,
        );
        let job = BuildJob::from_json(&text, "job.json").unwrap();
        let StageBuild::Instructions { steps } = &job.stages[0].build else {
            panic!("not an instructions stage: {:?}", job.stages[0].build);
        };
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].text, "CMD [\"sh\"]");
        assert!(!job.needs_context());
        assert_eq!(BuildJob::from_json(&job.to_json(), "t").unwrap(), job);
        let empty = minimal_json(JOB_API_VERSION).replace(
            r#"{"kind":"from"}"#,
            r#"{"kind":"instructions","steps":[]}"#,
        );
        let err = BuildJob::from_json(&empty, "job.json").unwrap_err();
        assert!(
            err.to_string()
                .contains("stage 1 (from): instructions stage without steps"),
            "{err}"
        );
    }

    #[test]
    fn job_round_trips_through_json() {
        let mut job = BuildJob::from_json(&minimal_json(JOB_API_VERSION), "t").unwrap();
        job.source = Some(Source {
            url: "ssh://git@example.org/shop.git".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            auth: Some(SourceAuth::Ssh {
                private_key_path: "/secrets/git/ssh-privatekey".into(),
                known_hosts_path: "/secrets/git/known_hosts".into(),
            }),
        });
        job.network = NetworkMode::None;
        job.stages.push(StageJob {
            name: "run".into(),
            digest: DIGEST.into(),
            content_digest: DIGEST.into(),
            parent: ParentRef::Previous,
            build: StageBuild::Instruction {
                text: "RUN --mount=type=ssh ssh-add -l".into(),
                instruction: Instruction::Run {
                    command: vec!["ssh-add -l".into()],
                    prepend_shell: true,
                    env: vec![],
                    mounts: vec![RunMount::Ssh { target: None }],
                    network: None,
                },
            },
            labels: BTreeMap::new(),
        });
        let text = job.to_json();
        assert!(text.contains(r#""network":"none""#), "{text}");
        assert!(text.contains(r#""type":"ssh""#), "{text}");
        assert_eq!(BuildJob::from_json(&text, "t").unwrap(), job);
    }

    #[test]
    fn jobs_without_secrets_still_parse_and_secrets_round_trip() {
        // A job written before `secrets` existed has no such field.
        let old = BuildJob::from_json(&minimal_json(JOB_API_VERSION), "t").unwrap();
        assert!(old.secrets.is_empty());
        assert!(!old.to_json().contains("secrets"));
        let text = minimal_json(JOB_API_VERSION).replace(
            r#""repo":"#,
            r#""secrets":[{"id":"aws","path":"/kiln/build-secrets/0/secret"},{"id":"token","value":"s3cr3t"}],"repo":"#,
        );
        let job = BuildJob::from_json(&text, "t").unwrap();
        assert_eq!(
            job.secrets,
            vec![
                JobSecret {
                    id: "aws".into(),
                    path: Some("/kiln/build-secrets/0/secret".into()),
                    value: None
                },
                JobSecret {
                    id: "token".into(),
                    path: None,
                    value: Some("s3cr3t".into())
                },
            ]
        );
        assert_eq!(BuildJob::from_json(&job.to_json(), "t").unwrap(), job);
        let debug = format!("{job:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn bad_secrets_are_invalid_and_named() {
        let with = |secrets: &str| {
            let text = minimal_json(JOB_API_VERSION)
                .replace(r#""repo":"#, &format!(r#""secrets":{secrets},"repo":"#));
            BuildJob::from_json(&text, "job.json")
                .unwrap_err()
                .to_string()
        };
        let both = with(r#"[{"id":"a","path":"/p","value":"v"}]"#);
        assert!(
            both.contains("secrets[0] (id \"a\"): set exactly one"),
            "{both}"
        );
        let neither = with(r#"[{"id":"a"}]"#);
        assert!(
            neither.contains("exactly one of path and value"),
            "{neither}"
        );
        let dup = with(r#"[{"id":"a","value":"1"},{"id":"a","value":"2"}]"#);
        assert!(dup.contains("secrets[1] (id \"a\"): duplicate id"), "{dup}");
        let comma = with(r#"[{"id":"a,src=/etc/shadow","value":"1"}]"#);
        assert!(comma.contains("secrets[0]"), "{comma}");
        assert!(comma.contains("letters, digits"), "{comma}");
    }

    #[test]
    fn result_omits_empty_optionals() {
        let result = BuildResult {
            ok: true,
            stages: vec![StageResult {
                tag: format!("{DIGEST}-1700000000000"),
                image_id: None,
                manifest_digest: None,
                size: None,
                build_seconds: None,
            }],
            failure: None,
            truncated: false,
        };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            format!(r#"{{"ok":true,"stages":[{{"tag":"{DIGEST}-1700000000000"}}]}}"#)
        );
    }
}
