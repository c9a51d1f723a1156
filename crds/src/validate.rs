//! Checks of an `ImageBuild` spec that the schema cannot express, and accessors that
//! turn the raw spec fields into what the controller uses.
//!
//! The CRD schema already rejects some of these at admission (a CEL rule for
//! `config`, a pattern for `timeout`); the same rules are checked here so that a spec
//! that reached the operator another way (an older CRD, a unit test) still fails with
//! a clear `InvalidSpec` message instead of misbehaving.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::duration::{DurationError, parse_go_duration};
use crate::imagebuild::{BuilderSpec, ImageBuildSpec, Phase};

/// werf's default config file names, tried in this order when `spec.config` is unset
/// (werf looks for `werf.yaml`, then `werf.yml`, in the project directory).
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = ["werf.yaml", "werf.yml"];

/// Node label Kubernetes sets to a node's operating system.
pub const NODE_OS_LABEL: &str = "kubernetes.io/os";
/// Node label Kubernetes sets to a node's CPU architecture (`amd64`, `arm64`...).
pub const NODE_ARCH_LABEL: &str = "kubernetes.io/arch";

/// One problem with a spec. Each message starts with the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `config.path` and `config.inline` are both set.
    #[error("spec.config: set either path or inline, not both")]
    ConfigBothSet,
    /// `config` is present but empty.
    #[error("spec.config: set path (a werf.yaml in the repository) or inline (the werf.yaml text)")]
    ConfigNeitherSet,
    /// `config.path` is not a relative path inside the repository.
    #[error("spec.config.path {path:?}: {problem}")]
    ConfigPathInvalid {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `config.inline` is empty or only whitespace.
    #[error("spec.config.inline: empty werf.yaml")]
    ConfigInlineEmpty,
    /// `timeout` is not a Go duration.
    #[error("spec.timeout: {0}")]
    Timeout(#[source] DurationError),
    /// A `retention` TTL is not a Go duration.
    #[error("spec.retention.{field}: {source}")]
    Retention {
        /// `ttlAfterSucceeded` or `ttlAfterFailed`.
        field: &'static str,
        /// Why it does not parse.
        #[source]
        source: DurationError,
    },
    /// `timeout` is zero.
    #[error("spec.timeout {0:?}: must be longer than zero")]
    TimeoutZero(String),
    /// A required string field is empty.
    #[error("{0}: must not be empty")]
    Empty(&'static str),
    /// A Secret reference has an empty name.
    #[error("{field}: secret name must not be empty")]
    EmptySecretName {
        /// Path of the reference, such as `spec.sshKeySecretRefs[1]`.
        field: String,
    },
    /// A `buildSecrets` entry has an empty id, Secret name or key.
    #[error("spec.buildSecrets[{index}].{field}: must not be empty")]
    BuildSecretEmpty {
        /// Index of the entry.
        index: usize,
        /// `id`, `secretKeyRef.name` or `secretKeyRef.key`.
        field: &'static str,
    },
    /// A `buildSecrets` id has a character other than letters, digits, `.`, `_`, `-`.
    #[error("spec.buildSecrets[{index}].id {id:?}: use only letters, digits, `.`, `_` and `-`")]
    BuildSecretIdInvalid {
        /// Index of the entry.
        index: usize,
        /// The id as given.
        id: String,
    },
    /// Two `buildSecrets` entries have the same id.
    #[error("spec.buildSecrets[{index}].id {id:?}: duplicate of spec.buildSecrets[{first}]")]
    BuildSecretDuplicate {
        /// Index of the later entry.
        index: usize,
        /// Index of the first entry with this id.
        first: usize,
        /// The id.
        id: String,
    },
    /// A werf.yaml image declares a secret that `buildSecrets` does not provide.
    #[error(
        "spec.buildSecrets: image {image:?} declares werf.yaml secret {secret} but spec.buildSecrets has no entry with id {id:?}"
    )]
    BuildSecretMissing {
        /// The werf.yaml image.
        image: String,
        /// The werf.yaml entry as written, such as `secrets[0] (env: TOKEN)`.
        secret: String,
        /// The id an entry must have.
        id: String,
    },
    /// A werf.yaml secret's id (explicit or defaulted) has characters no build secret id
    /// may have, so neither a `buildSecrets` entry nor the builder can carry it.
    #[error(
        "image {image:?}: werf.yaml secret {secret} has id {id:?}; build secret ids use only letters, digits, `.`, `_` and `-` (set `id:` in werf.yaml)"
    )]
    WerfSecretIdInvalid {
        /// The werf.yaml image.
        image: String,
        /// The werf.yaml entry as written, such as `secrets[0] (src: ./my token)`.
        secret: String,
        /// The id.
        id: String,
    },
    /// A platform is not `os/arch` or `os/arch/variant`.
    #[error(
        "{field}: platform {platform:?} is not os/arch or os/arch/variant (for example linux/arm64)"
    )]
    InvalidPlatform {
        /// Where the platform came from, such as `spec.platforms[0]`.
        field: String,
        /// The platform as given.
        platform: String,
    },
    /// `network` is not one of the modes the builder knows.
    #[error("spec.network {0:?}: expected none, host or default (unset)")]
    NetworkUnknown(String),
    /// A `registryMirrors` entry is not a registry location.
    #[error("spec.registryMirrors[{index}]: {source}")]
    RegistryMirror {
        /// Index of the entry.
        index: usize,
        /// Why it was refused.
        #[source]
        source: crate::werf::MirrorError,
    },
}

/// All problems found in a spec, in field order. Displays as one line, problems
/// separated by `; `, for a condition message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SpecErrors(pub Vec<SpecError>);

/// Which werf.yaml to read, resolved from `spec.config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource<'a> {
    /// No `spec.config`: try [`DEFAULT_CONFIG_PATHS`] at the repository root.
    Default,
    /// A file in the commit, relative to the repository root.
    Path(&'a str),
    /// The werf.yaml text from the spec.
    Inline(&'a str),
}

impl ImageBuildSpec {
    /// Resolves `spec.config` into a [`ConfigSource`].
    ///
    /// Errors: both or neither of `path` and `inline` set; an empty inline text; a path
    /// that is empty, absolute, or leaves the repository through `..`.
    pub fn config_source(&self) -> Result<ConfigSource<'_>, SpecError> {
        let Some(config) = &self.config else {
            return Ok(ConfigSource::Default);
        };
        match (config.path.as_deref(), config.inline.as_deref()) {
            (Some(_), Some(_)) => Err(SpecError::ConfigBothSet),
            (None, None) => Err(SpecError::ConfigNeitherSet),
            (None, Some(text)) if text.trim().is_empty() => Err(SpecError::ConfigInlineEmpty),
            (None, Some(text)) => Ok(ConfigSource::Inline(text)),
            (Some(path), None) => {
                check_repo_path(path)?;
                Ok(ConfigSource::Path(path))
            }
        }
    }

    /// `spec.timeout` as a duration; `None` when unset (no limit).
    ///
    /// Errors: not a Go duration ([`SpecError::Timeout`]), or zero.
    pub fn timeout(&self) -> Result<Option<Duration>, SpecError> {
        let Some(text) = &self.timeout else {
            return Ok(None);
        };
        let d = parse_go_duration(text).map_err(SpecError::Timeout)?;
        if d.is_zero() {
            return Err(SpecError::TimeoutZero(text.clone()));
        }
        Ok(Some(d))
    }

    /// `spec.network` as the builder's network mode: unset or `default` → the builder's
    /// default, `none`, `host` (werf `--backend-network`).
    ///
    /// Errors: [`SpecError::NetworkUnknown`] for any other value (never silently the
    /// default).
    pub fn network_mode(&self) -> Result<crate::job::NetworkMode, SpecError> {
        use crate::job::NetworkMode;
        match self.network.as_deref() {
            None | Some("default") => Ok(NetworkMode::Default),
            Some("none") => Ok(NetworkMode::None),
            Some("host") => Ok(NetworkMode::Host),
            Some(other) => Err(SpecError::NetworkUnknown(other.to_owned())),
        }
    }

    /// How long to keep this ImageBuild after it ended in `phase` (`spec.retention`):
    /// `ttlAfterSucceeded` for Succeeded, `ttlAfterFailed` for Failed and Cancelled;
    /// `None` when unset or the phase is not final (keep it).
    ///
    /// Errors: the TTL is not a Go duration ([`SpecError::Retention`]).
    pub fn retention_ttl(&self, phase: Phase) -> Result<Option<Duration>, SpecError> {
        let Some(retention) = &self.retention else {
            return Ok(None);
        };
        let (field, text) = match phase {
            Phase::Succeeded => ("ttlAfterSucceeded", &retention.ttl_after_succeeded),
            Phase::Failed | Phase::Cancelled => ("ttlAfterFailed", &retention.ttl_after_failed),
            _ => return Ok(None),
        };
        text.as_deref()
            .map(|t| parse_go_duration(t).map_err(|source| SpecError::Retention { field, source }))
            .transpose()
    }

    /// `spec.parallelTasksLimit` as werf applies it: `None` means no limit (werf turns
    /// values ≤ 0 into -1, unlimited). With `parallel: false` the limit is 1.
    pub fn effective_parallel_limit(&self) -> Option<usize> {
        if !self.parallel {
            return Some(1);
        }
        usize::try_from(self.parallel_tasks_limit)
            .ok()
            .filter(|n| *n > 0)
    }

    /// Checks every rule of this module and returns all problems at once, so a user
    /// fixes a spec in one round.
    pub fn validate(&self) -> Result<(), SpecErrors> {
        let mut errors = Vec::new();
        if self.source.git.url.trim().is_empty() {
            errors.push(SpecError::Empty("spec.source.git.url"));
        }
        if self.source.git.revision.trim().is_empty() {
            errors.push(SpecError::Empty("spec.source.git.revision"));
        }
        if let Some(r) = &self.source.git.secret_ref
            && r.name.is_empty()
        {
            errors.push(SpecError::EmptySecretName {
                field: "spec.source.git.secretRef".into(),
            });
        }
        if let Err(e) = self.config_source() {
            errors.push(e);
        }
        if self.repo.trim().is_empty() {
            errors.push(SpecError::Empty("spec.repo"));
        }
        if let Some(r) = &self.registry_secret_ref
            && r.name.is_empty()
        {
            errors.push(SpecError::EmptySecretName {
                field: "spec.registrySecretRef".into(),
            });
        }
        for (i, r) in self.ssh_key_secret_refs.iter().enumerate() {
            if r.name.is_empty() {
                errors.push(SpecError::EmptySecretName {
                    field: format!("spec.sshKeySecretRefs[{i}]"),
                });
            }
        }
        self.validate_build_secrets(&mut errors);
        for (i, p) in self.platforms.iter().enumerate() {
            if let Err(e) = split_platform(p, || format!("spec.platforms[{i}]")) {
                errors.push(e);
            }
        }
        if let Some(builder) = &self.builder {
            for p in builder.platform_node_selectors.keys() {
                if let Err(e) = split_platform(p, || "spec.builder.platformNodeSelectors".into()) {
                    errors.push(e);
                }
            }
        }
        if let Err(e) = self.timeout() {
            errors.push(e);
        }
        if let Err(e) = self.network_mode() {
            errors.push(e);
        }
        for (index, entry) in self.registry_mirrors.iter().enumerate() {
            if let Err(source) = crate::werf::RegistryMirror::parse(entry) {
                errors.push(SpecError::RegistryMirror { index, source });
            }
        }
        for phase in [Phase::Succeeded, Phase::Failed] {
            if let Err(e) = self.retention_ttl(phase) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors(errors))
        }
    }
}

impl ImageBuildSpec {
    /// The rules of `spec.buildSecrets`: id, Secret name and key non-empty, ids of
    /// letters, digits, `.`, `_`, `-` (they end up in `--secret id=ID,...` flags and
    /// `/run/secrets/ID` paths) and unique (one content per id, as in buildkit).
    fn validate_build_secrets(&self, errors: &mut Vec<SpecError>) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, secret) in self.build_secrets.iter().enumerate() {
            let empty = |field| SpecError::BuildSecretEmpty { index, field };
            if secret.id.is_empty() {
                errors.push(empty("id"));
            } else if !is_build_secret_id(&secret.id) {
                errors.push(SpecError::BuildSecretIdInvalid {
                    index,
                    id: secret.id.clone(),
                });
            } else if let Some(&first) = seen.get(secret.id.as_str()) {
                errors.push(SpecError::BuildSecretDuplicate {
                    index,
                    first,
                    id: secret.id.clone(),
                });
            } else {
                seen.insert(&secret.id, index);
            }
            if secret.secret_key_ref.name.is_empty() {
                errors.push(empty("secretKeyRef.name"));
            }
            if secret.secret_key_ref.key.is_empty() {
                errors.push(empty("secretKeyRef.key"));
            }
        }
    }
}

/// Whether `id` is a usable build secret id: non-empty, letters, digits, `.`, `_`, `-`.
pub fn is_build_secret_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl BuilderSpec {
    /// The node selector of a builder pod building for `platform` (such as
    /// `linux/arm64/v8`): `nodeSelector`, then `kubernetes.io/os` and
    /// `kubernetes.io/arch` from the platform when `nativePlatforms` is set, then
    /// `platformNodeSelectors[platform]`; a later source overrides an earlier one on the
    /// same label.
    ///
    /// Errors: `platform` is not `os/arch[/variant]` (only checked when
    /// `nativePlatforms` needs its parts).
    pub fn node_selector_for(&self, platform: &str) -> Result<BTreeMap<String, String>, SpecError> {
        let mut selector = self.node_selector.clone();
        if self.native_platforms {
            let (os, arch) = split_platform(platform, || "builder platform".into())?;
            selector.insert(NODE_OS_LABEL.to_owned(), os.to_owned());
            selector.insert(NODE_ARCH_LABEL.to_owned(), arch.to_owned());
        }
        if let Some(extra) = self.platform_node_selectors.get(platform) {
            selector.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(selector)
    }
}

/// Splits `os/arch[/variant]` into (os, arch). Each part must be non-empty lowercase
/// ASCII letters, digits or `_` (as in `linux/amd64`, `linux/arm/v7`, `linux/ppc64le`).
fn split_platform(
    platform: &str,
    field: impl FnOnce() -> String,
) -> Result<(&str, &str), SpecError> {
    let parts: Vec<&str> = platform.split('/').collect();
    let part_ok = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if (parts.len() == 2 || parts.len() == 3) && parts.iter().all(part_ok) {
        Ok((parts[0], parts[1]))
    } else {
        Err(SpecError::InvalidPlatform {
            field: field(),
            platform: platform.to_owned(),
        })
    }
}

/// A werf.yaml path must name a file inside the repository: relative, non-empty and
/// without `..` components (Kiln reads it from the commit's tree).
fn check_repo_path(path: &str) -> Result<(), SpecError> {
    let problem = if path.trim().is_empty() {
        Some("empty path")
    } else if path.starts_with('/') {
        Some("must be relative to the repository root")
    } else if path.split('/').any(|c| c == "..") {
        Some("must not leave the repository (`..`)")
    } else if path.ends_with('/') {
        Some("names a directory, not a file")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(SpecError::ConfigPathInvalid {
            path: path.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}
