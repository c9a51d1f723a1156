//! The environment of a base image, as a staged Dockerfile digest needs it (werf reads the
//! base image's config while building): the image reference split into repository and tag,
//! docker.io images read through `spec.registryMirrors` first (the order the builder pulls
//! in), a manifest list resolved to the platform's image, `config.Env` of its config blob.

use std::collections::BTreeMap;
use std::str::FromStr;

use kiln_crds::werf::{Platform, RegistryMirror};

use crate::storage::description::{ImageConfig, Manifest};
use crate::storage::{RegistryClient, RepoRef, StorageError};

/// An image reference split into repository and tag or digest (`latest` when neither).
///
/// Errors: [`StorageError::InvalidRepo`] when the name is not a repository.
pub fn split_reference(reference: &str) -> Result<(RepoRef, String), StorageError> {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let repo = RepoRef::from_str(name)?;
    let at = match (digest, tag) {
        (Some(d), _) => d.to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    Ok((repo, at))
}

/// Where a docker.io repository is read through `mirrors` (`spec.registryMirrors`, parsed
/// by the shared [`RegistryMirror`] rule the spec check and the builder use), in order, then
/// from docker.io itself — the order the builder pulls in. Other registries are read
/// directly. An entry the spec check refuses never gets here.
pub fn mirrored_repos(repo: &RepoRef, mirrors: &[String]) -> Vec<RepoRef> {
    let mut out = Vec::new();
    if repo.registry() == crate::storage::reference::DOCKER_HUB {
        for mirror in mirrors.iter().filter_map(|m| RegistryMirror::parse(m).ok()) {
            let repository = if mirror.path().is_empty() {
                repo.repository().to_owned()
            } else {
                format!("{}/{}", mirror.path(), repo.repository())
            };
            if let Ok(r) = RepoRef::new(mirror.host(), &repository) {
                out.push(r);
            }
        }
    }
    out.push(repo.clone());
    out
}

/// The `Env` of a base image's config for `platform`, as werf reads it for staged digests
/// (`KEY=value` entries split at the first `=`). `scratch` has none. A manifest list is
/// resolved to the platform's entry.
///
/// Errors: when no registry of [`mirrored_repos`] serves it, the first answer that is not
/// "unreachable" (a mirror's 404 says more than an unreachable docker.io), else the last;
/// at once [`StorageError::InvalidManifest`] (e.g. the list has no entry for the platform)
/// or [`StorageError::InvalidImageConfig`] from a registry that has the image.
pub async fn base_image_env(
    client: &RegistryClient,
    mirrors: &[String],
    reference: &str,
    platform: &str,
) -> Result<BTreeMap<String, String>, StorageError> {
    if reference == "scratch" {
        return Ok(BTreeMap::new());
    }
    let (repo, at) = split_reference(reference)?;
    let mut errors = Vec::new();
    for candidate in mirrored_repos(&repo, mirrors) {
        match config_env(client, &candidate, &at, platform).await {
            Ok(env) => return Ok(env),
            Err(
                e
                @ (StorageError::InvalidManifest { .. } | StorageError::InvalidImageConfig { .. }),
            ) => return Err(e),
            Err(e) => errors.push(e),
        }
    }
    let informative = errors
        .iter()
        .position(|e| !matches!(e, StorageError::Unavailable { .. }))
        .unwrap_or(errors.len() - 1);
    Err(errors.swap_remove(informative))
}

async fn config_env(
    client: &RegistryClient,
    repo: &RepoRef,
    at: &str,
    platform: &str,
) -> Result<BTreeMap<String, String>, StorageError> {
    let invalid = |reference: &str, reason: String| StorageError::InvalidManifest {
        repo: repo.to_string(),
        reference: reference.to_owned(),
        reason,
    };
    let raw = client.get_manifest(repo, at).await?;
    let mut manifest = Manifest::parse(&raw.bytes).map_err(|r| invalid(at, r))?;
    if let Manifest::Index { manifests, .. } = &manifest {
        let entry = manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| platform_matches(&p.to_string(), platform))
            })
            .ok_or_else(|| invalid(at, format!("the manifest list has no {platform} image")))?;
        let digest = entry.digest.clone();
        let raw = client.get_manifest(repo, &digest).await?;
        manifest = Manifest::parse(&raw.bytes).map_err(|r| invalid(&digest, r))?;
    }
    let Manifest::Image { config, .. } = manifest else {
        return Err(invalid(at, "a manifest list inside a manifest list".into()));
    };
    let blob = client.get_blob(repo, &config.digest).await?;
    // Checks the shape the stages storage expects of any image config.
    ImageConfig::parse(&blob).map_err(|reason| StorageError::InvalidImageConfig {
        repo: repo.to_string(),
        digest: config.digest.clone(),
        reason,
    })?;
    Ok(env_of_config(&blob))
}

/// `config.Env` of an image config blob, `KEY=value` split at the first `=` (an entry
/// without `=` is a variable with an empty value).
pub fn env_of_config(blob: &[u8]) -> BTreeMap<String, String> {
    let value: serde_json::Value = serde_json::from_slice(blob).unwrap_or_default();
    value["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (e.to_owned(), String::new()),
        })
        .collect()
}

/// Whether an index entry's `os/arch[/variant]` serves `wanted`, both normalised by the
/// shared [`Platform`] rule (`linux/arm64` matches an entry `linux/arm64/v8`; a wanted
/// variant must match); strings that are not platforms match only when equal.
fn platform_matches(entry: &str, wanted: &str) -> bool {
    match (Platform::parse(entry), Platform::parse(wanted)) {
        (Ok(e), Ok(w)) => e == w || (w.variant.is_none() && e.os == w.os && e.arch == w.arch),
        _ => entry == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_tag() {
        let (repo, at) = split_reference("busybox").unwrap();
        assert_eq!(
            (repo.to_string().as_str(), at.as_str()),
            ("docker.io/library/busybox", "latest")
        );
        let (repo, at) = split_reference("127.0.0.1:5000/base/img:1.2").unwrap();
        assert_eq!(
            (repo.to_string().as_str(), at.as_str()),
            ("127.0.0.1:5000/base/img", "1.2")
        );
        let digest = format!("sha256:{}", "f".repeat(64));
        let (repo, at) = split_reference(&format!("alpine:3.20@{digest}")).unwrap();
        assert_eq!(
            (repo.to_string().as_str(), at.as_str()),
            ("docker.io/library/alpine", digest.as_str())
        );
        assert!(split_reference("UPPER/Case").is_err());
    }

    #[test]
    fn docker_hub_images_go_through_the_mirrors_first() {
        let hub = RepoRef::from_str("busybox").unwrap();
        let mirrors = vec![
            "http://127.0.0.1:5000".to_owned(),
            "https://mirror.example.org/hub/".to_owned(),
        ];
        let names: Vec<String> = mirrored_repos(&hub, &mirrors)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "127.0.0.1:5000/library/busybox",
                "mirror.example.org/hub/library/busybox",
                "docker.io/library/busybox",
            ]
        );
        let other = RepoRef::from_str("quay.io/org/img").unwrap();
        assert_eq!(mirrored_repos(&other, &mirrors), vec![other]);
    }

    #[test]
    fn config_env_splits_at_the_first_equals_sign() {
        let blob = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","X=a=b","EMPTY"]}}"#;
        assert_eq!(
            env_of_config(blob),
            BTreeMap::from([
                ("EMPTY".to_owned(), String::new()),
                ("PATH".to_owned(), "/bin".to_owned()),
                ("X".to_owned(), "a=b".to_owned()),
            ])
        );
        assert_eq!(env_of_config(b"{}"), BTreeMap::new());
    }

    #[test]
    fn index_entries_match_the_platform() {
        assert!(platform_matches("linux/arm64/v8", "linux/arm64"));
        assert!(platform_matches("linux/amd64", "linux/amd64"));
        assert!(!platform_matches("linux/arm/v6", "linux/arm/v7"));
        assert!(!platform_matches("linux/arm64", "linux/amd64"));
    }
}
