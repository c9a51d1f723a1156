//! Typed werf.yaml directives (werf v2 `configVersion: 1`). These are the serde targets of the
//! parser: unknown keys are rejected (`deny_unknown_fields`) so that a typo never silently
//! changes a build. Directive names follow werf.yaml exactly (camelCase).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

/// A directive that werf accepts either as one string or as a list of strings
/// (`addHost`, `contextAddFiles`, `includePaths`, shell commands, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(vec![v.to_string()]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<StringList, E> {
                Ok(StringList(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(StringList(out))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

/// A directive werf accepts as one string or a list of strings and treats differently
/// (`docker.CMD`, `docker.ENTRYPOINT`: shell form vs exec form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// Written as one string.
    One(String),
    /// Written as a list.
    Many(Vec<String>),
}

/// The meta document: `project`, `configVersion` and the `build` section. `cleanup`,
/// `deploy` and `gitWorktree` are accepted and kept opaque (not build-related).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawMeta {
    /// Project name; required; werf's project-name rule.
    pub project: Option<String>,
    /// Must be `1`.
    pub config_version: Option<Value>,
    /// Build defaults.
    pub build: Option<BuildMeta>,
    /// Cleanup policies (not used by builds).
    pub cleanup: Option<Value>,
    /// Deploy settings (not used by builds).
    pub deploy: Option<Value>,
    /// Git worktree settings (not used by builds).
    pub git_worktree: Option<Value>,
}

/// `build:` in the meta document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildMeta {
    /// Default image cache version (`<image>.cacheVersion` wins).
    pub cache_version: Option<String>,
    /// Common target platforms, as written (validated and normalized by the parser).
    pub platform: Option<StringList>,
    /// Default `staged` for Dockerfile images (`<image>.staged` wins).
    pub staged: Option<bool>,
    /// Global image spec merged into final images.
    pub image_spec: Option<GlobalImageSpec>,
    /// SBOM settings (kept opaque).
    pub sbom: Option<Value>,
}

/// `build.imageSpec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GlobalImageSpec {
    /// Image author.
    pub author: Option<String>,
    /// Squash history.
    pub clear_history: Option<bool>,
    /// Config edits allowed globally.
    pub config: Option<GlobalImageSpecConfig>,
}

/// `build.imageSpec.config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GlobalImageSpecConfig {
    /// Drop werf's labels.
    pub clear_werf_labels: Option<bool>,
    /// Keep the essential werf labels when clearing.
    pub keep_essential_werf_labels: Option<bool>,
    /// Labels to remove.
    pub remove_labels: Option<Vec<String>>,
    /// Labels to add.
    pub labels: Option<BTreeMap<String, String>>,
}

/// `<image>.imageSpec`: OCI config edits applied in an `imageSpec` stage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image author.
    pub author: Option<String>,
    /// Squash history.
    pub clear_history: Option<bool>,
    /// Config edits.
    pub config: Option<ImageSpecConfig>,
}

/// `<image>.imageSpec.config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSpecConfig {
    /// Drop werf's labels.
    pub clear_werf_labels: Option<bool>,
    /// Keep the essential werf labels when clearing.
    pub keep_essential_werf_labels: Option<bool>,
    /// Labels to remove.
    pub remove_labels: Option<Vec<String>>,
    /// Volumes to remove.
    pub remove_volumes: Option<Vec<String>>,
    /// Environment variables to remove.
    pub remove_env: Option<Vec<String>>,
    /// Clear CMD.
    pub clear_cmd: Option<bool>,
    /// Clear ENTRYPOINT.
    pub clear_entrypoint: Option<bool>,
    /// Clear USER.
    pub clear_user: Option<bool>,
    /// Clear WORKDIR.
    pub clear_working_dir: Option<bool>,
    /// Volumes to add.
    pub volumes: Option<Vec<String>>,
    /// Labels to add.
    pub labels: Option<BTreeMap<String, String>>,
    /// Environment to set.
    pub env: Option<BTreeMap<String, String>>,
    /// Ports to expose.
    pub expose: Option<Vec<String>>,
    /// USER.
    pub user: Option<String>,
    /// CMD.
    pub cmd: Option<Vec<String>>,
    /// ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    /// WORKDIR.
    pub working_dir: Option<String>,
    /// STOPSIGNAL.
    pub stop_signal: Option<String>,
    /// HEALTHCHECK.
    pub healthcheck: Option<Healthcheck>,
}

/// `imageSpec.config.healthcheck` (durations in seconds).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Healthcheck {
    /// Test command.
    pub test: Option<Vec<String>>,
    /// Interval, seconds.
    pub interval: Option<u64>,
    /// Timeout, seconds.
    pub timeout: Option<u64>,
    /// Start period, seconds.
    pub start_period: Option<u64>,
    /// Retries.
    pub retries: Option<u64>,
}

/// `dependencies[]`: build `image` first and pass its identifiers in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dependency {
    /// The werf image this image depends on.
    pub image: String,
    /// Stapel only: `install` or `setup`, the stage before which the dependency is injected.
    pub before: Option<String>,
    /// Stapel only: `install` or `setup`, the stage after which the dependency is injected.
    pub after: Option<String>,
    /// What to inject.
    #[serde(default)]
    pub imports: Vec<DependencyImport>,
}

/// `dependencies[].imports[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DependencyImport {
    /// Which identifier of the dependency (`type:`); another value is refused when
    /// werf.yaml is read, naming the field (`dependencies[0].imports[0].type`).
    #[serde(rename = "type")]
    pub kind: ImportKind,
    /// Dockerfile images: the build arg receiving the value.
    pub target_build_arg: Option<String>,
    /// Stapel images: the environment variable receiving the value.
    pub target_env: Option<String>,
}

/// The identifiers a dependency can pass (`dependencies[].imports[].type`), as werf names
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
pub enum ImportKind {
    /// The published image's name, `REPO:TAG`.
    #[default]
    ImageName,
    /// Its tag, `DIGEST-TIMESTAMP`.
    ImageTag,
    /// Its repository, `REPO`.
    ImageRepo,
    /// Its config digest (`sha256:...`).
    #[serde(rename = "ImageID")]
    ImageId,
    /// Its manifest digest (`sha256:...`).
    ImageDigest,
}

impl ImportKind {
    /// The werf.yaml spelling (`ImageName`, ..., `ImageID`, `ImageDigest`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::ImageName => "ImageName",
            ImportKind::ImageTag => "ImageTag",
            ImportKind::ImageRepo => "ImageRepo",
            ImportKind::ImageId => "ImageID",
            ImportKind::ImageDigest => "ImageDigest",
        }
    }
}

impl std::fmt::Display for ImportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `secrets[]`: a build secret, exactly one of `env`, `src`, `value`. Not in any digest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Secret {
    /// Secret id; defaults to the env name or the basename of `src`; required with `value`.
    pub id: Option<String>,
    /// Take the secret from this environment variable.
    pub env: Option<String>,
    /// Take the secret from this file.
    pub src: Option<String>,
    /// The secret value itself.
    pub value: Option<String>,
}

/// A Dockerfile image document (`image` + `dockerfile`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DockerfileImage {
    /// The raw `image:` value (string, list or null); the parser turns it into names.
    #[doc(hidden)]
    #[serde(rename = "image")]
    pub raw_image: Option<Value>,
    /// Whether the image is final (default true): final-repo copy, custom tags.
    #[serde(rename = "final")]
    pub is_final: Option<bool>,
    /// Dockerfile path relative to `context`.
    pub dockerfile: String,
    /// Build context: a directory of the git repository (repo root when absent).
    pub context: Option<String>,
    /// Legacy spelling of `contextAddFiles` (the two are exclusive).
    pub context_add_file: Option<StringList>,
    /// Untracked files added to the context (and hashed).
    pub context_add_files: Option<StringList>,
    /// Dockerfile target stage (the last stage when absent).
    pub target: Option<String>,
    /// Build args; only ARGs the Dockerfile declares affect the digest.
    pub args: Option<BTreeMap<String, Value>>,
    /// `--add-host` entries; part of the digest.
    pub add_host: Option<StringList>,
    /// Build network mode; not in the digest.
    pub network: Option<String>,
    /// SSH agent forwarding spec; not in the digest.
    pub ssh: Option<String>,
    /// Per-instruction stages (Buildah only).
    pub staged: Option<bool>,
    /// Image cache version.
    pub cache_version: Option<String>,
    /// Per-image target platforms, as written.
    pub platform: Option<StringList>,
    /// Images to build first, with build args to receive from them.
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    /// Build secrets.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// OCI config edits.
    pub image_spec: Option<ImageSpec>,
}

impl DockerfileImage {
    /// Build args as strings, the way werf stringifies YAML scalars (`1`, `true`, `1.5`);
    /// `null` becomes the empty string. Lists and maps are rejected with the arg name.
    pub fn args_as_strings(&self) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for (key, value) in self.args.iter().flatten() {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Null => String::new(),
                _ => return Err(format!("build arg `args.{key}` must be a scalar")),
            };
            out.insert(key.clone(), text);
        }
        Ok(out)
    }

    /// `contextAddFiles` or its legacy spelling.
    pub fn context_add_files(&self) -> &[String] {
        self.context_add_files
            .as_ref()
            .or(self.context_add_file.as_ref())
            .map(|l| l.0.as_slice())
            .unwrap_or(&[])
    }

    /// `addHost` entries.
    pub fn add_hosts(&self) -> &[String] {
        self.add_host
            .as_ref()
            .map(|l| l.0.as_slice())
            .unwrap_or(&[])
    }
}

/// A Stapel image document (`image` + `from`/`fromImage`/`fromArtifact`), parsed now and built
/// later.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StapelImage {
    /// The raw `image:` value; the parser turns it into names.
    #[doc(hidden)]
    #[serde(rename = "image")]
    pub raw_image: Option<Value>,
    /// Legacy artifact name (an artifact is a non-final Stapel image).
    pub artifact: Option<String>,
    /// Base: an external image reference, or the name of a werf image.
    pub from: Option<String>,
    /// Base: a werf image (wins over `from`).
    pub from_image: Option<String>,
    /// Base: a legacy artifact.
    pub from_artifact: Option<String>,
    /// Put the base's registry repo ID into the `from` digest.
    pub from_latest: Option<bool>,
    /// Extra salt of the `from` stage.
    pub from_cache_version: Option<String>,
    /// Image cache version (enters the `from` stage).
    pub cache_version: Option<String>,
    /// Whether the image is final (default true; artifacts are never final).
    #[serde(rename = "final")]
    pub is_final: Option<bool>,
    /// Per-image target platforms, as written.
    pub platform: Option<StringList>,
    /// Build network mode.
    pub network: Option<String>,
    /// Build secrets.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// OCI config edits.
    pub image_spec: Option<ImageSpec>,
    /// Images to build first, injected before/after install or setup.
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    /// Drop gitCache, gitLatestPatch and dockerInstructions stages.
    pub disable_git_after_patch: Option<bool>,
    /// Git mappings.
    #[serde(default)]
    pub git: Vec<GitMapping>,
    /// Shell assembly instructions.
    pub shell: Option<Shell>,
    /// Ansible assembly instructions.
    pub ansible: Option<Ansible>,
    /// Files imported from other images.
    #[serde(default)]
    pub import: Vec<Import>,
    /// Build-time mounts.
    #[serde(default)]
    pub mount: Vec<Mount>,
    /// Docker instructions (`dockerInstructions` stage).
    pub docker: Option<DockerInstructions>,
}

/// `git[]`: a mapping of a repository path into the image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitMapping {
    /// Remote repository URL; the project repository when absent.
    pub url: Option<String>,
    /// Remote branch.
    pub branch: Option<String>,
    /// Remote tag.
    pub tag: Option<String>,
    /// Remote commit.
    pub commit: Option<String>,
    /// Opt-in for following a branch of a remote repository.
    pub hereby_i_admit_that_branch_might_break_reproducibility: Option<bool>,
    /// Remote credentials.
    pub basic_auth: Option<Value>,
    /// Source path in the repository.
    pub add: Option<String>,
    /// Destination path in the image.
    pub to: Option<String>,
    /// Globs of paths to include.
    pub include_paths: Option<StringList>,
    /// Globs of paths to exclude.
    pub exclude_paths: Option<StringList>,
    /// Owner of the files.
    pub owner: Option<String>,
    /// Group of the files.
    pub group: Option<String>,
    /// Paths whose changes rebuild user stages.
    pub stage_dependencies: Option<StageDependencies>,
}

/// `git[].stageDependencies`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StageDependencies {
    /// Globs for the install stage.
    pub install: Option<StringList>,
    /// Globs for the beforeSetup stage.
    pub before_setup: Option<StringList>,
    /// Globs for the setup stage.
    pub setup: Option<StringList>,
}

/// `shell`: commands of the user stages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Shell {
    /// beforeInstall commands.
    pub before_install: Option<StringList>,
    /// install commands.
    pub install: Option<StringList>,
    /// beforeSetup commands.
    pub before_setup: Option<StringList>,
    /// setup commands.
    pub setup: Option<StringList>,
    /// Salt of all user stages.
    pub cache_version: Option<String>,
    /// Salt of beforeInstall.
    pub before_install_cache_version: Option<String>,
    /// Salt of install.
    pub install_cache_version: Option<String>,
    /// Salt of beforeSetup.
    pub before_setup_cache_version: Option<String>,
    /// Salt of setup.
    pub setup_cache_version: Option<String>,
}

/// `ansible`: tasks of the user stages (each task kept as YAML).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ansible {
    /// beforeInstall tasks.
    pub before_install: Option<Vec<Value>>,
    /// install tasks.
    pub install: Option<Vec<Value>>,
    /// beforeSetup tasks.
    pub before_setup: Option<Vec<Value>>,
    /// setup tasks.
    pub setup: Option<Vec<Value>>,
    /// Salt of all user stages.
    pub cache_version: Option<String>,
    /// Salt of beforeInstall.
    pub before_install_cache_version: Option<String>,
    /// Salt of install.
    pub install_cache_version: Option<String>,
    /// Salt of beforeSetup.
    pub before_setup_cache_version: Option<String>,
    /// Salt of setup.
    pub setup_cache_version: Option<String>,
}

/// `import[]`: files copied from another image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Import {
    /// Source werf image.
    pub image: Option<String>,
    /// Source legacy artifact.
    pub artifact: Option<String>,
    /// Source external image (with tag or digest).
    pub from: Option<String>,
    /// Source stage of the werf image (`beforeInstall`, `install`, `beforeSetup`, `setup`).
    pub stage: Option<String>,
    /// Import before `install` or `setup`.
    pub before: Option<String>,
    /// Import after `install` or `setup`.
    pub after: Option<String>,
    /// Source path.
    pub add: Option<String>,
    /// Destination path (defaults to `add`).
    pub to: Option<String>,
    /// Globs to include.
    pub include_paths: Option<StringList>,
    /// Globs to exclude.
    pub exclude_paths: Option<StringList>,
    /// Owner of the files.
    pub owner: Option<String>,
    /// Group of the files.
    pub group: Option<String>,
}

/// `mount[]`: a build-time mount.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    /// `tmp_dir` or `build_dir`.
    pub from: Option<String>,
    /// A host path (instead of `from`).
    pub from_path: Option<String>,
    /// Mount point in the build container.
    pub to: String,
}

/// `docker`: Dockerfile-like instructions of a Stapel image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerInstructions {
    /// VOLUME.
    #[serde(rename = "VOLUME")]
    pub volume: Option<StringList>,
    /// EXPOSE.
    #[serde(rename = "EXPOSE")]
    pub expose: Option<StringList>,
    /// ENV.
    #[serde(rename = "ENV")]
    pub env: Option<BTreeMap<String, Value>>,
    /// LABEL.
    #[serde(rename = "LABEL")]
    pub label: Option<BTreeMap<String, Value>>,
    /// CMD: a shell string or an exec-form list (werf keeps the difference).
    #[serde(rename = "CMD")]
    pub cmd: Option<StringOrList>,
    /// ENTRYPOINT: a shell string or an exec-form list.
    #[serde(rename = "ENTRYPOINT")]
    pub entrypoint: Option<StringOrList>,
    /// WORKDIR.
    #[serde(rename = "WORKDIR")]
    pub workdir: Option<String>,
    /// USER.
    #[serde(rename = "USER")]
    pub user: Option<String>,
    /// HEALTHCHECK.
    #[serde(rename = "HEALTHCHECK")]
    pub healthcheck: Option<String>,
    /// Keep values exactly as written.
    #[serde(rename = "exactValues")]
    pub exact_values: Option<bool>,
}
