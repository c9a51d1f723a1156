//! Build secrets: the `secrets:` of a werf.yaml image turned into the secrets of its build
//! job, with their content taken from `spec.buildSecrets` (pure; the controller checks that
//! the Secrets behind the entries exist).
//!
//! werf reads a secret from its own process environment (`env:`), from a file on the host
//! (`src:`) or from werf.yaml itself (`value:`), and hands it to the build as a buildkit
//! secret whose id defaults to the env name or the file's base name. A cluster has no
//! such environment or host file, so every `env:`/`src:` secret must be provided by a
//! `spec.buildSecrets` entry with the same id (one key of a Kubernetes Secret, mounted
//! into the builder pod); `value:` secrets pass through as they are. Secrets enter no
//! stage digest (werf's rule): nothing here changes what is reused or rebuilt.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_crds::imagebuild::ImageBuildSpec;
use kiln_crds::job::JobSecret;
use kiln_crds::{SpecError, SpecErrors};

use super::JobError;
use crate::config::{ImageKind, Secret, WerfConfig};
use crate::pods;

/// The id a werf.yaml secret is known by in Dockerfiles: its `id:`, else the `env:`
/// name, else the base name of `src:` (werf's defaults; `credentials` for
/// `~/.aws/credentials`). `None` for a `value:` secret without an id, which werf.yaml
/// validation already refuses.
pub fn secret_id(secret: &Secret) -> Option<String> {
    if let Some(id) = secret.id.as_deref().filter(|id| !id.is_empty()) {
        return Some(id.to_owned());
    }
    if let Some(env) = &secret.env {
        return Some(env.clone());
    }
    let src = secret.src.as_deref()?;
    Path::new(src)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
}

/// How the `index`-th werf.yaml secret reads in messages: `secrets[0] (env: TOKEN)`,
/// `secrets[1] (id: aws, src: ~/.aws/credentials)`. A value is never printed.
fn describe(index: usize, secret: &Secret) -> String {
    let mut parts = Vec::new();
    if let Some(id) = &secret.id {
        parts.push(format!("id: {id}"));
    }
    if let Some(env) = &secret.env {
        parts.push(format!("env: {env}"));
    }
    if let Some(src) = &secret.src {
        parts.push(format!("src: {src}"));
    }
    if secret.value.is_some() {
        parts.push("value: ...".to_owned());
    }
    format!("secrets[{index}] ({})", parts.join(", "))
}

/// The job secrets of werf.yaml image `image` with `secrets:` as given: `value:` secrets
/// as `{id, value}`; `env:`/`src:` secrets as `{id, path}` with the path where the builder
/// pod mounts the `spec.buildSecrets` entry of that id ([`pods::build_secret_path`]).
/// When two entries resolve to the same id the later one wins, as with repeated
/// `--secret` flags.
///
/// Errors: [`SpecError::BuildSecretMissing`] (one per unmatched secret, in werf.yaml
/// order) naming the image, the werf.yaml entry and the id `spec.buildSecrets` lacks.
pub fn job_secrets(
    spec: &ImageBuildSpec,
    image: &str,
    secrets: &[Secret],
) -> Result<Vec<JobSecret>, Vec<SpecError>> {
    let mut by_id: BTreeMap<String, JobSecret> = BTreeMap::new();
    let mut errors = Vec::new();
    for (index, secret) in secrets.iter().enumerate() {
        let Some(id) = secret_id(secret) else {
            continue;
        };
        if !kiln_crds::validate::is_build_secret_id(&id) {
            errors.push(SpecError::WerfSecretIdInvalid {
                image: image.to_owned(),
                secret: describe(index, secret),
                id,
            });
            continue;
        }
        let job_secret = if let Some(value) = &secret.value {
            JobSecret {
                id: id.clone(),
                path: None,
                value: Some(value.clone()),
            }
        } else if let Some(entry) = spec.build_secrets.iter().position(|b| b.id == id) {
            JobSecret {
                id: id.clone(),
                path: Some(pods::build_secret_path(entry)),
                value: None,
            }
        } else {
            errors.push(SpecError::BuildSecretMissing {
                image: image.to_owned(),
                secret: describe(index, secret),
                id,
            });
            continue;
        };
        by_id.insert(id, job_secret);
    }
    if errors.is_empty() {
        Ok(by_id.into_values().collect())
    } else {
        Err(errors)
    }
}

/// The `secrets:` of a werf.yaml image (Dockerfile or Stapel).
pub fn image_secrets<'a>(config: &'a WerfConfig, image: &str) -> &'a [Secret] {
    match config.image(image).map(|i| &i.kind) {
        Some(ImageKind::Dockerfile(d)) => &d.secrets,
        Some(ImageKind::Stapel(s)) => &s.secrets,
        None => &[],
    }
}

/// [`job_secrets`] for werf.yaml image `image`, as a job error.
///
/// Errors: [`JobError::InvalidSpec`] listing every secret `spec.buildSecrets` lacks.
pub fn for_image(
    spec: &ImageBuildSpec,
    config: &WerfConfig,
    image: &str,
) -> Result<Vec<JobSecret>, JobError> {
    job_secrets(spec, image, image_secrets(config, image))
        .map_err(|errors| JobError::InvalidSpec(SpecErrors(errors)))
}

#[cfg(test)]
pub(crate) mod tests {
    use kiln_crds::imagebuild::{BuildSecret, SecretKeyRef};

    use super::*;

    pub(crate) fn werf_secret(
        id: Option<&str>,
        env: Option<&str>,
        src: Option<&str>,
        value: Option<&str>,
    ) -> Secret {
        Secret {
            id: id.map(str::to_owned),
            env: env.map(str::to_owned),
            src: src.map(str::to_owned),
            value: value.map(str::to_owned),
        }
    }

    pub(crate) fn spec_with(ids: &[&str]) -> ImageBuildSpec {
        ImageBuildSpec {
            build_secrets: ids
                .iter()
                .map(|id| BuildSecret {
                    id: (*id).to_owned(),
                    secret_key_ref: SecretKeyRef {
                        name: format!("{id}-secret"),
                        key: "k".into(),
                    },
                })
                .collect(),
            ..ImageBuildSpec::default()
        }
    }

    #[test]
    fn ids_default_to_env_name_and_src_base_name() {
        assert_eq!(
            secret_id(&werf_secret(None, Some("TOKEN"), None, None)).as_deref(),
            Some("TOKEN")
        );
        assert_eq!(
            secret_id(&werf_secret(None, None, Some("~/.aws/credentials"), None)).as_deref(),
            Some("credentials")
        );
        assert_eq!(
            secret_id(&werf_secret(
                Some("aws"),
                None,
                Some("~/.aws/credentials"),
                None
            ))
            .as_deref(),
            Some("aws")
        );
        assert_eq!(
            secret_id(&werf_secret(Some("v"), None, None, Some("x"))).as_deref(),
            Some("v")
        );
    }

    #[test]
    fn env_and_src_map_to_mounted_entries_and_values_pass_through() {
        // buildSecrets[0] = credentials, [1] = TOKEN, [2] = unused.
        let spec = spec_with(&["credentials", "TOKEN", "unused"]);
        let secrets = [
            werf_secret(None, Some("TOKEN"), None, None),
            werf_secret(None, None, Some("/home/ci/.aws/credentials"), None),
            werf_secret(Some("plain"), None, None, Some("in-werf-yaml")),
        ];
        let got = job_secrets(&spec, "app", &secrets).unwrap();
        // Sorted by id.
        assert_eq!(
            got,
            vec![
                JobSecret {
                    id: "TOKEN".into(),
                    path: Some("/kiln/build-secrets/1/secret".into()),
                    value: None
                },
                JobSecret {
                    id: "credentials".into(),
                    path: Some("/kiln/build-secrets/0/secret".into()),
                    value: None
                },
                JobSecret {
                    id: "plain".into(),
                    path: None,
                    value: Some("in-werf-yaml".into())
                },
            ]
        );
    }

    #[test]
    fn value_secrets_need_no_spec_entry() {
        let got = job_secrets(
            &ImageBuildSpec::default(),
            "app",
            &[werf_secret(Some("v"), None, None, Some("x"))],
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value.as_deref(), Some("x"));
    }

    #[test]
    fn the_same_id_twice_keeps_the_later_entry() {
        let spec = spec_with(&["TOKEN"]);
        let got = job_secrets(
            &spec,
            "app",
            &[
                werf_secret(Some("TOKEN"), None, None, Some("inline")),
                werf_secret(None, Some("TOKEN"), None, None),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![JobSecret {
                id: "TOKEN".into(),
                path: Some("/kiln/build-secrets/0/secret".into()),
                value: None
            }]
        );
    }

    #[test]
    fn missing_entries_are_all_named_with_image_and_werf_yaml_secret() {
        let spec = spec_with(&["TOKEN"]);
        let secrets = [
            werf_secret(None, Some("TOKEN"), None, None),
            werf_secret(None, Some("NPM_TOKEN"), None, None),
            werf_secret(Some("aws"), None, Some("~/.aws/credentials"), None),
        ];
        let errors = job_secrets(&spec, "backend", &secrets).unwrap_err();
        assert_eq!(
            errors,
            vec![
                SpecError::BuildSecretMissing {
                    image: "backend".into(),
                    secret: "secrets[1] (env: NPM_TOKEN)".into(),
                    id: "NPM_TOKEN".into(),
                },
                SpecError::BuildSecretMissing {
                    image: "backend".into(),
                    secret: "secrets[2] (id: aws, src: ~/.aws/credentials)".into(),
                    id: "aws".into(),
                },
            ]
        );
    }

    #[test]
    fn ids_no_entry_or_builder_can_carry_are_refused_by_name() {
        let errors = job_secrets(
            &spec_with(&[]),
            "app",
            &[
                werf_secret(None, None, Some("./my token"), None),
                werf_secret(Some("a,b"), None, None, Some("x")),
            ],
        )
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                SpecError::WerfSecretIdInvalid {
                    image: "app".into(),
                    secret: "secrets[0] (src: ./my token)".into(),
                    id: "my token".into(),
                },
                SpecError::WerfSecretIdInvalid {
                    image: "app".into(),
                    secret: "secrets[1] (id: a,b, value: ...)".into(),
                    id: "a,b".into(),
                },
            ]
        );
        // The value itself is never in the message.
        let text = SpecErrors(errors).to_string();
        assert!(!text.contains("\"x\""), "{text}");
        assert!(text.contains("set `id:` in werf.yaml"), "{text}");
    }
}
