//! The validate step, pure (Stackable's "validate, no client required"): the ImageBuild spec
//! parsed once into a typed [`BuildRequest`]. Every field a user can get wrong is refused
//! here (or by the CRD schema) with the field named; later steps read the typed values and
//! never parse the spec again.

use std::str::FromStr;
use std::time::Duration;

use kiln_crds::ImageBuildSpec;
use kiln_crds::imagebuild::StagedDockerfileVersion;
use kiln_crds::job::NetworkMode;
use kiln_crds::werf::{Platform, RegistryMirror};

use super::error::Error;
use crate::digest::DigestMode;
use crate::plan::ParallelOptions;
use crate::storage::{RepoRef, StorageRepos};

/// An ImageBuild spec, validated and parsed.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Target platforms, normalised (`spec.platforms`); empty = werf.yaml's or linux/amd64.
    pub platforms: Vec<Platform>,
    /// The stages storage, final, secondary and cache repos.
    pub repos: StorageRepos,
    /// `spec.timeout`; `None` for no limit.
    pub timeout: Option<Duration>,
    /// The builder's network for `RUN` (`spec.network`).
    pub network: NetworkMode,
    /// docker.io mirrors (`spec.registryMirrors`), in order.
    pub registry_mirrors: Vec<RegistryMirror>,
    /// How a staged Dockerfile image is split into stages (`spec.stagedDockerfileVersion`).
    pub staged_version: StagedDockerfileVersion,
    /// Concurrency inside a build set (`spec.parallel`, `spec.parallelTasksLimit`).
    pub parallel: ParallelOptions,
    /// At most this many builder pods at once per set; `None` for no limit.
    pub parallel_limit: Option<usize>,
    /// Stage digest mode: `spec.digestMode`, else the operator's `--digest-mode`.
    pub digest_mode: DigestMode,
}

impl BuildRequest {
    /// Validates `spec` and parses it.
    ///
    /// Errors: [`Error::InvalidSpec`] listing every rule the spec breaks (a `network` the
    /// builder does not know, a `registryMirrors` entry that is not a registry, a bad
    /// `timeout`...), [`Error::InvalidPlatform`] naming the platform, [`Error::Storage`]
    /// with `InvalidRepo` naming the repo field.
    pub fn from_spec(spec: &ImageBuildSpec) -> Result<BuildRequest, Error> {
        BuildRequest::from_spec_with(spec, DigestMode::Werf)
    }

    /// [`BuildRequest::from_spec`] with the operator's digest mode for a spec that sets none.
    pub fn from_spec_with(
        spec: &ImageBuildSpec,
        default_digest_mode: DigestMode,
    ) -> Result<BuildRequest, Error> {
        spec.validate().map_err(Error::InvalidSpec)?;
        let platforms = spec
            .platforms
            .iter()
            .map(|p| {
                Platform::parse(p).map_err(|message| Error::InvalidPlatform {
                    platform: p.clone(),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        let repos = StorageRepos {
            repo: repo_ref("spec.repo", &spec.repo)?,
            final_repo: spec
                .final_repo
                .as_deref()
                .map(|r| repo_ref("spec.finalRepo", r))
                .transpose()?,
            secondary_repos: spec
                .secondary_repos
                .iter()
                .map(|r| repo_ref("spec.secondaryRepos", r))
                .collect::<Result<_, _>>()?,
            cache_repos: spec
                .cache_repos
                .iter()
                .map(|r| repo_ref("spec.cacheRepos", r))
                .collect::<Result<_, _>>()?,
        };
        // `validate` refused these already; the errors only keep this function total.
        let single = |e| Error::InvalidSpec(kiln_crds::SpecErrors(vec![e]));
        let timeout = spec.timeout().map_err(single)?;
        let network = spec.network_mode().map_err(single)?;
        let registry_mirrors = spec
            .registry_mirrors
            .iter()
            .enumerate()
            .map(|(index, m)| {
                RegistryMirror::parse(m).map_err(|source| {
                    single(kiln_crds::SpecError::RegistryMirror { index, source })
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(BuildRequest {
            platforms,
            repos,
            timeout,
            network,
            registry_mirrors,
            staged_version: spec.staged_dockerfile_version,
            parallel: ParallelOptions {
                parallel: spec.parallel,
                tasks_limit: i64::from(spec.parallel_tasks_limit),
            },
            parallel_limit: spec.effective_parallel_limit(),
            digest_mode: spec.digest_mode.unwrap_or(default_digest_mode),
        })
    }
}

fn repo_ref(field: &str, value: &str) -> Result<RepoRef, Error> {
    RepoRef::from_str(value).map_err(|source| Error::Storage {
        operation: format!("{field} {value:?}"),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_crds::Reason;

    fn spec(extra: serde_json::Value) -> ImageBuildSpec {
        let mut value = serde_json::json!({
            "source": {"git": {"url": "https://git.example.org/shop.git", "revision": "main"}},
            "repo": "registry.example.org/shop"
        });
        if let (serde_json::Value::Object(v), serde_json::Value::Object(e)) = (&mut value, extra) {
            v.extend(e);
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_valid_spec_is_parsed_once_into_typed_fields() {
        let r = BuildRequest::from_spec(&spec(serde_json::json!({
            "platforms": ["linux/aarch64", "linux/amd64/v1"],
            "timeout": "90s",
            "network": "none",
            "registryMirrors": ["http://127.0.0.1:5000/"],
            "secondaryRepos": ["registry.example.org/old"],
            "stagedDockerfileVersion": "v2",
            "parallelTasksLimit": 3
        })))
        .unwrap();
        let platforms: Vec<String> = r.platforms.iter().map(ToString::to_string).collect();
        assert_eq!(platforms, ["linux/arm64", "linux/amd64"]);
        assert_eq!(r.timeout, Some(Duration::from_secs(90)));
        assert_eq!(r.network, NetworkMode::None);
        assert_eq!(r.registry_mirrors[0].location, "127.0.0.1:5000");
        assert!(r.registry_mirrors[0].insecure);
        assert_eq!(r.repos.secondary_repos.len(), 1);
        assert_eq!(r.staged_version, StagedDockerfileVersion::V2);
        assert_eq!(r.parallel_limit, Some(3));
    }

    #[test]
    fn each_bad_field_is_refused_with_its_name() {
        for (extra, reason, field) in [
            (
                serde_json::json!({"network": "bridge"}),
                Reason::InvalidSpec,
                "spec.network",
            ),
            (
                serde_json::json!({"registryMirrors": ["ftp://m"]}),
                Reason::InvalidSpec,
                "spec.registryMirrors[0]",
            ),
            (
                serde_json::json!({"timeout": "soon"}),
                Reason::InvalidSpec,
                "spec.timeout",
            ),
            (
                serde_json::json!({"platforms": ["linux/amd65"]}),
                Reason::InvalidSpec,
                "linux/amd65",
            ),
            (
                serde_json::json!({"finalRepo": "Not A Repo"}),
                Reason::InvalidSpec,
                "spec.finalRepo",
            ),
        ] {
            let err = BuildRequest::from_spec(&spec(extra.clone())).unwrap_err();
            assert_eq!(err.reason(), reason, "{extra}");
            assert!(err.to_string().contains(field), "{extra}: {err}");
        }
    }
}
