//! Publishing helpers: retag, copy between repositories, manifest lists, rejection records
//! and manifest-only images. All write manifests byte for byte as read, so a stage keeps
//! its manifest digest in every repository it is copied to.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

use super::client::{RegistryClient, sha256_digest};
use super::description::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, Manifest, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER_GZIP, OCI_MANIFEST, StageContent, StageDescription,
};
use super::error::StorageError;
use super::reference::RepoRef;
use super::stage_id::StageId;

/// How a blob reached the target repository during a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Blobs the target already had.
    pub present: usize,
    /// Blobs linked by a cross-repository mount (same registry).
    pub mounted: usize,
    /// Blobs streamed from source to target.
    pub transferred: usize,
}

impl std::ops::AddAssign for CopyStats {
    fn add_assign(&mut self, o: CopyStats) {
        self.present += o.present;
        self.mounted += o.mounted;
        self.transferred += o.transferred;
    }
}

/// Pushes the manifest `from_reference` (tag or digest) of `repo` again under `to_tag`.
/// Returns the manifest digest, unchanged by the retag.
pub async fn retag(
    client: &RegistryClient,
    repo: &RepoRef,
    from_reference: &str,
    to_tag: &str,
) -> Result<String, StorageError> {
    let raw = client.get_manifest(repo, from_reference).await?;
    let manifest = parse(repo, from_reference, &raw.bytes)?;
    client
        .put_manifest(repo, to_tag, raw.bytes, manifest.media_type())
        .await
}

/// Copies the image `reference` (tag or digest) from `from` to `to`, under the same tag
/// (or by digest): blobs the target lacks are mounted when both repositories are in one
/// registry and the registry allows it, otherwise streamed; then the manifest bytes are
/// pushed unchanged. A manifest list is copied with every platform manifest first.
pub async fn copy_image(
    client: &RegistryClient,
    from: &RepoRef,
    to: &RepoRef,
    reference: &str,
) -> Result<(String, CopyStats), StorageError> {
    copy_boxed(client, from, to, reference.to_owned()).await
}

fn copy_boxed<'a>(
    client: &'a RegistryClient,
    from: &'a RepoRef,
    to: &'a RepoRef,
    reference: String,
) -> BoxFuture<'a, Result<(String, CopyStats), StorageError>> {
    async move {
        let raw = client.get_manifest(from, &reference).await?;
        let manifest = parse(from, &reference, &raw.bytes)?;
        let mut stats = CopyStats::default();
        match &manifest {
            Manifest::Image { config, layers, .. } => {
                for blob in std::iter::once(config).chain(layers) {
                    stats += copy_blob(client, from, to, blob).await?;
                }
            }
            Manifest::Index { manifests, .. } => {
                for child in manifests {
                    let (_, s) = copy_boxed(client, from, to, child.digest.clone()).await?;
                    stats += s;
                }
            }
        }
        let digest = client
            .put_manifest(to, &reference, raw.bytes, manifest.media_type())
            .await?;
        Ok((digest, stats))
    }
    .boxed()
}

async fn copy_blob(
    client: &RegistryClient,
    from: &RepoRef,
    to: &RepoRef,
    blob: &Descriptor,
) -> Result<CopyStats, StorageError> {
    if client.blob_exists(to, &blob.digest).await? {
        return Ok(CopyStats {
            present: 1,
            ..Default::default()
        });
    }
    if client.mount_blob(to, from, &blob.digest).await? {
        return Ok(CopyStats {
            mounted: 1,
            ..Default::default()
        });
    }
    client.copy_blob(from, to, blob).await?;
    Ok(CopyStats {
        transferred: 1,
        ..Default::default()
    })
}

/// Pushes a manifest list for a multi-platform image to `repo` under `tag`, one entry per
/// platform description, ordered by platform name (werf's order). The entries' manifests
/// must already be in `repo`. Uses the Docker manifest-list media type when every entry
/// is a Docker schema 2 manifest (as werf does) and an OCI index otherwise, so media types
/// never mix. Returns the list's digest.
pub async fn push_manifest_list(
    client: &RegistryClient,
    repo: &RepoRef,
    tag: &str,
    platforms: &[StageDescription],
) -> Result<String, StorageError> {
    let invalid = |reason: String| StorageError::InvalidManifestList {
        repo: repo.to_string(),
        tag: tag.to_owned(),
        reason,
    };
    if platforms.is_empty() {
        return Err(invalid("no platform images given".into()));
    }
    let mut entries = Vec::with_capacity(platforms.len());
    for d in platforms {
        let StageContent::Image(image) = &d.content else {
            return Err(invalid(format!(
                "{} is itself a manifest list",
                d.image_name()
            )));
        };
        if d.repo.registry() != repo.registry() || d.repo.repository() != repo.repository() {
            return Err(invalid(format!(
                "{} is not in {repo}; copy it there first",
                d.image_name()
            )));
        }
        entries.push((image.platform.clone(), d));
    }
    entries.sort_by_key(|e| e.0.to_string());
    for pair in entries.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(invalid(format!("platform {} appears twice", pair[0].0)));
        }
    }
    let all_docker = entries.iter().all(|(_, d)| d.media_type == DOCKER_MANIFEST);
    let media_type = if all_docker {
        DOCKER_MANIFEST_LIST
    } else {
        OCI_INDEX
    };
    let manifests: Vec<Descriptor> = entries
        .iter()
        .map(|(platform, d)| Descriptor {
            media_type: d.media_type.clone(),
            digest: d.manifest_digest.clone(),
            size: d.manifest_size,
            platform: Some(platform.clone()),
        })
        .collect();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    let bytes = Bytes::from(serde_json::to_vec(&body).expect("manifest list serializes"));
    client.put_manifest(repo, tag, bytes, media_type).await
}

/// Pushes a manifest-only image (one empty layer, a config with labels only) under `tag`:
/// werf's records such as `-rejected` and `managed-image-` tags. Returns the manifest
/// digest. Blobs the repository already has are not uploaded again.
pub async fn push_manifest_only_image(
    client: &RegistryClient,
    repo: &RepoRef,
    tag: &str,
    labels: &BTreeMap<String, String>,
) -> Result<String, StorageError> {
    let layer = Bytes::from_static(EMPTY_TAR_GZ);
    let layer_digest = sha256_digest(&layer);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": labels },
        "rootfs": { "type": "layers", "diff_ids": [EMPTY_TAR_DIFF_ID] },
    });
    let config = Bytes::from(serde_json::to_vec(&config).expect("config serializes"));
    let config_digest = sha256_digest(&config);
    for (digest, data) in [(&layer_digest, &layer), (&config_digest, &config)] {
        if !client.blob_exists(repo, digest).await? {
            client.push_blob(repo, digest, data.clone()).await?;
        }
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len() }],
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("manifest serializes"));
    client.put_manifest(repo, tag, bytes, OCI_MANIFEST).await
}

/// Marks a stage unusable: pushes the manifest-only image
/// `DIGEST-TIMESTAMP_MILLISEC-rejected` with label `werf=<project>` (werf's
/// `RejectStage`). Readers skip the stage from then on; the stage's own tag is kept
/// because tags are never deleted or overwritten.
pub async fn reject_stage(
    client: &RegistryClient,
    repo: &RepoRef,
    stage: &StageId,
    project: &str,
) -> Result<String, StorageError> {
    let labels = BTreeMap::from([("werf".to_owned(), project.to_owned())]);
    push_manifest_only_image(client, repo, &stage.rejected_tag(), &labels).await
}

fn parse(repo: &RepoRef, reference: &str, bytes: &[u8]) -> Result<Manifest, StorageError> {
    Manifest::parse(bytes).map_err(|reason| StorageError::InvalidManifest {
        repo: repo.to_string(),
        reference: reference.to_owned(),
        reason,
    })
}

/// A gzip-compressed empty tar archive (two 512-byte zero blocks), the layer of
/// manifest-only images; some registries refuse manifests without layers.
const EMPTY_TAR_GZ: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x63, 0x60, 0x18, 0x05, 0xa3, 0x60,
    0x14, 0x8c, 0x54, 0x00, 0x00, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
];
/// SHA-256 of the uncompressed empty tar (1024 zero bytes).
const EMPTY_TAR_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_layer_constants_agree() {
        let mut tar = Vec::new();
        gunzip(EMPTY_TAR_GZ, &mut tar);
        assert_eq!(tar, vec![0u8; 1024]);
        assert_eq!(sha256_digest(&tar), EMPTY_TAR_DIFF_ID);
    }

    /// Decompresses with the system `gzip`, keeping a gzip crate out of the build.
    fn gunzip(input: &[u8], out: &mut Vec<u8>) {
        use std::io::Write as _;
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip runs");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        out.extend(output.stdout);
    }
}
