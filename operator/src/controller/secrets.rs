//! Build secrets in the controller: every image the build publishes has all its werf.yaml
//! `secrets:` ([`crate::job::secrets`] turns them into job secrets), and the Secret key
//! behind each `spec.buildSecrets` entry they read exists.

use std::collections::BTreeMap;

use kiln_crds::imagebuild::ImageBuildSpec;
use kiln_crds::job::BuildJob;
use kiln_crds::{ImageBuild, SpecError, SpecErrors};
use kube::ResourceExt;
use kube::api::Api;

use super::context::Context;
use super::error::Error;
use crate::config::WerfConfig;
use crate::job::secrets::{image_secrets, job_secrets, secret_id};
use crate::pods;

/// Checks that every image the build publishes (`images`, requested ones and their
/// dependencies) has all its secrets, so that a build lacking one fails before it starts
/// any builder pod, with every missing id listed at once.
///
/// Errors: [`Error::InvalidSpec`] with a [`SpecError::BuildSecretMissing`] per secret.
pub fn check<'a>(
    spec: &ImageBuildSpec,
    config: &WerfConfig,
    images: impl IntoIterator<Item = &'a str>,
) -> Result<(), Error> {
    let errors: Vec<SpecError> = images
        .into_iter()
        .filter_map(|image| job_secrets(spec, image, image_secrets(config, image)).err())
        .flatten()
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidSpec(SpecErrors(errors)))
    }
}

/// The `spec.buildSecrets` entries the `images` read (through an `env:` or `src:` secret),
/// as (index, entry), in spec order.
fn entries_read<'s, 'a>(
    spec: &'s ImageBuildSpec,
    config: &WerfConfig,
    images: impl IntoIterator<Item = &'a str>,
) -> Vec<(usize, &'s kiln_crds::imagebuild::BuildSecret)> {
    let ids: std::collections::BTreeSet<String> = images
        .into_iter()
        .flat_map(|image| image_secrets(config, image))
        .filter(|s| s.value.is_none())
        .filter_map(secret_id)
        .collect();
    spec.build_secrets
        .iter()
        .enumerate()
        .filter(|(_, b)| ids.contains(&b.id))
        .collect()
}

/// Checks that the Secret key behind every `spec.buildSecrets` entry the `images` read
/// exists, so that a builder pod never waits on a volume the kubelet cannot mount. Reads
/// each Secret once (`get`; the operator may not list Secrets).
///
/// Errors: [`Error::SecretNotFound`], [`Error::BuildSecretKeyNotFound`] naming Secret,
/// namespace, key and id; API errors.
pub async fn check_sources<'a>(
    ib: &ImageBuild,
    ctx: &Context,
    config: &WerfConfig,
    images: impl IntoIterator<Item = &'a str>,
) -> Result<(), Error> {
    let entries = entries_read(&ib.spec, config, images);
    if entries.is_empty() {
        return Ok(());
    }
    let namespace = ib.namespace().unwrap_or_default();
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(ctx.client.clone(), &namespace);
    let mut seen: BTreeMap<&str, Option<k8s_openapi::api::core::v1::Secret>> = BTreeMap::new();
    for (_, entry) in entries {
        let name = entry.secret_key_ref.name.as_str();
        let secret = match seen.get(name) {
            Some(s) => s.clone(),
            None => {
                let s = api.get_opt(name).await?;
                seen.insert(name, s.clone());
                s
            }
        };
        let secret = secret.ok_or_else(|| Error::SecretNotFound {
            name: name.to_owned(),
            namespace: namespace.clone(),
            field: "spec.buildSecrets",
        })?;
        let key = &entry.secret_key_ref.key;
        let has_key = secret.data.as_ref().is_some_and(|d| d.contains_key(key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(key));
        if !has_key {
            return Err(Error::BuildSecretKeyNotFound {
                name: name.to_owned(),
                namespace,
                key: key.clone(),
                id: entry.id.clone(),
            });
        }
    }
    Ok(())
}

/// Indices into `spec.buildSecrets` of the entries `job` reads (those whose mount path a
/// job secret names), for the builder pod to mount.
pub fn mounted(spec: &ImageBuildSpec, job: &BuildJob) -> Vec<usize> {
    (0..spec.build_secrets.len())
        .filter(|&i| {
            let path = pods::build_secret_path(i);
            job.secrets.iter().any(|s| s.path.as_deref() == Some(&path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::secrets::tests::{spec_with, werf_secret};

    #[test]
    fn mounted_entries_are_those_job_secrets_name() {
        // buildSecrets[0] = credentials, [1] = TOKEN, [2] = unused.
        let spec = spec_with(&["credentials", "TOKEN", "unused"]);
        let secrets = [
            werf_secret(None, Some("TOKEN"), None, None),
            werf_secret(None, None, Some("/home/ci/.aws/credentials"), None),
            werf_secret(Some("plain"), None, None, Some("in-werf-yaml")),
        ];
        let job = BuildJob {
            secrets: job_secrets(&spec, "app", &secrets).unwrap(),
            ..test_job()
        };
        assert_eq!(mounted(&spec, &job), vec![0, 1]);
    }

    #[test]
    fn check_covers_every_planned_image() {
        let config = WerfConfig::parse(
            "werf.yaml",
            "project: p\nconfigVersion: 1\n---\nimage: a\ndockerfile: Dockerfile\nsecrets: [{env: A}]\n---\nimage: b\ndockerfile: Dockerfile\nsecrets: [{src: /x/b.txt}]\n",
        )
        .unwrap();
        let spec = spec_with(&["A"]);
        check(&spec, &config, ["a"]).unwrap();
        let err = check(&spec, &config, ["a", "b"]).unwrap_err();
        assert_eq!(err.reason(), kiln_crds::Reason::InvalidSpec);
        let text = err.to_string();
        assert!(
            text.contains(
                "image \"b\" declares werf.yaml secret secrets[0] (src: /x/b.txt) but spec.buildSecrets has no entry with id \"b.txt\""
            ),
            "{text}"
        );
        assert!(!text.contains("\"a\""), "{text}");
    }

    #[test]
    fn only_entries_of_env_and_src_secrets_of_the_images_are_read() {
        let config = WerfConfig::parse(
            "werf.yaml",
            "project: p\nconfigVersion: 1\n---\nimage: a\ndockerfile: Dockerfile\nsecrets: [{env: A}, {id: V, value: x}]\n---\nimage: b\ndockerfile: Dockerfile\nsecrets: [{src: /x/B}]\n",
        )
        .unwrap();
        let spec = spec_with(&["B", "V", "A", "unused"]);
        let read = |images: &[&str]| -> Vec<usize> {
            entries_read(&spec, &config, images.iter().copied())
                .into_iter()
                .map(|(i, _)| i)
                .collect()
        };
        // `V` is a value secret: its spec entry is not read.
        assert_eq!(read(&["a"]), vec![2]);
        assert_eq!(read(&["a", "b"]), vec![0, 2]);
        assert_eq!(read(&[]), Vec::<usize>::new());
    }

    fn test_job() -> BuildJob {
        BuildJob::from_json(
            r#"{"apiVersion":"kiln.dev/job/v1","project":"p","image":"app","repo":"r/p",
                "stages":[{"name":"from","digest":"e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe",
                "contentDigest":"e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe",
                "parent":{"kind":"image","reference":"busybox"},"build":{"kind":"from"}}]}"#,
            "test",
        )
        .unwrap()
    }
}
