//! The environment of a base image, as a staged Dockerfile digest needs it (werf reads the
//! base image's config while building): the image reference split into repository and tag,
//! docker.io images read through `spec.registryMirrors` first (the order the builder pulls
//! in; [`crate::storage::reference::mirrored_repos`]), a manifest list resolved to the
//! platform's image, `config.Env` of its config blob.

use kiln_crds::werf::Platform;
use std::collections::BTreeMap;

use crate::storage::description::{ImageConfig, Manifest};
use crate::storage::reference::{mirrored_repos, split_reference};
use crate::storage::{RegistryClient, RepoRef, StorageError};

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
