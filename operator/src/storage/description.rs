//! Stage descriptions: what a stage image in a registry is, read from its manifest and
//! image config — manifest digest, image ID, size, creation time, labels, platform.
//!
//! Handles the four manifest media types registries serve: OCI image manifest, Docker
//! v2 schema 2 manifest, OCI image index and Docker manifest list (werf pushes Docker
//! manifest lists for multi-platform images).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::reference::RepoRef;
use super::stage_id::StageId;

/// `application/vnd.oci.image.manifest.v1+json`.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.docker.distribution.manifest.v2+json`.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// `application/vnd.docker.distribution.manifest.list.v2+json`.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.oci.image.config.v1+json`.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.docker.container.image.v1+json`.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Every manifest media type Kiln accepts, for the `Accept` header.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
];

/// A content descriptor as manifests write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Platform of a manifest list / index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An image platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, `v8`, … when the architecture has variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// A single-platform image: config blob and layer blobs.
    Image {
        /// Media type of the manifest itself.
        media_type: String,
        /// The image config blob.
        config: Descriptor,
        /// Layer blobs, base first.
        layers: Vec<Descriptor>,
    },
    /// A manifest list / OCI index: one manifest per platform.
    Index {
        /// Media type of the manifest itself.
        media_type: String,
        /// The per-platform manifests.
        manifests: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

impl Manifest {
    /// Parses manifest bytes. The media type comes from the `mediaType` field, or, when an
    /// OCI manifest leaves it out, from the shape (`manifests` → index, `config` → image).
    /// Errors say what is missing; schema 1 manifests are refused.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JSON manifest: {e}"))?;
        if raw.schema_version != Some(2) {
            return Err(format!(
                "schemaVersion {:?} is not supported (expected 2)",
                raw.schema_version
            ));
        }
        let media_type = match raw.media_type {
            Some(m) => m,
            None if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            None if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            None => return Err("neither mediaType, config nor manifests is set".into()),
        };
        match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => Ok(Manifest::Image {
                config: raw
                    .config
                    .ok_or_else(|| format!("{media_type} without config"))?,
                layers: raw.layers.unwrap_or_default(),
                media_type,
            }),
            OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(Manifest::Index {
                manifests: raw
                    .manifests
                    .ok_or_else(|| format!("{media_type} without manifests"))?,
                media_type,
            }),
            other => Err(format!("unsupported manifest media type {other:?}")),
        }
    }

    /// The manifest's media type.
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image { media_type, .. } | Manifest::Index { media_type, .. } => media_type,
        }
    }
}

/// The parts of an image config a stage description needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// `created`, when the config has it.
    pub created: Option<jiff::Timestamp>,
    /// `config.Labels` (werf's stage labels live here).
    pub labels: BTreeMap<String, String>,
    /// `os`/`architecture`/`variant`.
    pub platform: Platform,
}

#[derive(Deserialize)]
struct RawConfig {
    created: Option<String>,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    variant: Option<String>,
    config: Option<RawContainerConfig>,
}

#[derive(Deserialize)]
struct RawContainerConfig {
    #[serde(rename = "Labels")]
    labels: Option<BTreeMap<String, String>>,
}

impl ImageConfig {
    /// Parses an OCI / Docker image config blob; errors name the bad field.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, String> {
        let raw: RawConfig =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JSON image config: {e}"))?;
        let created = match raw.created {
            Some(text) => Some(
                text.parse::<jiff::Timestamp>()
                    .map_err(|e| format!("created {text:?} is not an RFC 3339 time: {e}"))?,
            ),
            None => None,
        };
        Ok(ImageConfig {
            created,
            labels: raw.config.and_then(|c| c.labels).unwrap_or_default(),
            platform: Platform {
                os: raw.os,
                architecture: raw.architecture,
                variant: raw.variant.filter(|v| !v.is_empty()),
            },
        })
    }
}

/// A single-platform stage image as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetails {
    /// The config blob digest (`sha256:…`), which is what `docker images` calls the
    /// image ID.
    pub image_id: String,
    /// Bytes a pull transfers besides the manifest: the config blob plus every layer
    /// blob, compressed as stored (the sum of the manifest's descriptor sizes).
    pub size: u64,
    /// The config's `created` time (build time of the image, not the tag's publish time).
    pub created: Option<jiff::Timestamp>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
    /// Image platform from the config.
    pub platform: Platform,
    /// The config blob descriptor.
    pub config: Descriptor,
    /// Layer descriptors, base first.
    pub layers: Vec<Descriptor>,
}

/// What a stage tag points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageContent {
    /// A single-platform image.
    Image(Box<ImageDetails>),
    /// A manifest list / OCI index with one entry per platform.
    Index(Vec<Descriptor>),
}

/// A stage as found in a repository: werf's stage description (`StageDesc`: stage ID plus
/// image info), read from the manifest and, for images, the config blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDescription {
    /// The stage ID (the tag it was read under).
    pub stage_id: StageId,
    /// Repository the description was read from (a cache repo when one had it).
    pub repo: RepoRef,
    /// Digest of the manifest (`sha256:…`), identical in every repo the stage is copied to.
    pub manifest_digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// Size of the manifest itself, bytes.
    pub manifest_size: u64,
    /// Image details or platform entries.
    pub content: StageContent,
}

impl StageDescription {
    /// Builds a description from manifest bytes and, for an image, its config blob.
    pub(crate) fn new(
        stage_id: StageId,
        repo: RepoRef,
        manifest_digest: String,
        manifest_size: u64,
        manifest: Manifest,
        config: Option<ImageConfig>,
    ) -> Self {
        let media_type = manifest.media_type().to_owned();
        let content = match manifest {
            Manifest::Image {
                config: cd, layers, ..
            } => {
                let c = config.unwrap_or(ImageConfig {
                    created: None,
                    labels: BTreeMap::new(),
                    platform: Platform {
                        os: String::new(),
                        architecture: String::new(),
                        variant: None,
                    },
                });
                StageContent::Image(Box::new(ImageDetails {
                    image_id: cd.digest.clone(),
                    size: cd.size + layers.iter().map(|l| l.size).sum::<u64>(),
                    created: c.created,
                    labels: c.labels,
                    platform: c.platform,
                    config: cd,
                    layers,
                }))
            }
            Manifest::Index { manifests, .. } => StageContent::Index(manifests),
        };
        StageDescription {
            stage_id,
            repo,
            manifest_digest,
            media_type,
            manifest_size,
            content,
        }
    }

    /// Image details, `None` for a manifest list.
    pub fn image(&self) -> Option<&ImageDetails> {
        match &self.content {
            StageContent::Image(d) => Some(d),
            StageContent::Index(_) => None,
        }
    }

    /// The image ID (config digest); `None` for a manifest list.
    pub fn image_id(&self) -> Option<&str> {
        self.image().map(|d| d.image_id.as_str())
    }

    /// Image labels; empty for a manifest list.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.image().map(|d| &d.labels).unwrap_or(&EMPTY)
    }

    /// Image size as defined by [`ImageDetails::size`]; for a manifest list, the sum of
    /// its entries' manifest sizes is not an image size, so `None`.
    pub fn size(&self) -> Option<u64> {
        self.image().map(|d| d.size)
    }

    /// `registry/repository:tag` of the stage in the repo it was read from.
    pub fn image_name(&self) -> String {
        format!("{}:{}", self.repo, self.stage_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oci_and_docker_images() {
        let oci = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":7},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l1","size":100},
                      {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l2","size":20}]}"#;
        let m = Manifest::parse(oci).unwrap();
        assert_eq!(
            m.media_type(),
            OCI_MANIFEST,
            "mediaType omitted: shape decides"
        );
        let Manifest::Image { config, layers, .. } = &m else {
            panic!("{m:?}")
        };
        assert_eq!(config.digest, "sha256:c");
        assert_eq!(layers.len(), 2);

        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"sha256:c","size":7}},"layers":[]}}"#
        );
        assert_eq!(
            Manifest::parse(docker.as_bytes()).unwrap().media_type(),
            DOCKER_MANIFEST
        );

        let repo: RepoRef = "r.example.io/shop".parse().unwrap();
        let id: StageId = format!("{}-1700000000000", "a".repeat(56)).parse().unwrap();
        let d = StageDescription::new(id, repo, "sha256:m".into(), 300, m, None);
        // size = config 7 + layers 100 + 20.
        assert_eq!(d.size(), Some(127));
        assert_eq!(d.image_id(), Some("sha256:c"));
    }

    #[test]
    fn parses_indexes_and_lists() {
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[
                {{"mediaType":"{DOCKER_MANIFEST}","digest":"sha256:a","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let Manifest::Index {
            manifests,
            media_type,
        } = Manifest::parse(list.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(media_type, DOCKER_MANIFEST_LIST);
        assert_eq!(
            manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm64/v8"
        );
        let oci = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(Manifest::parse(oci).unwrap().media_type(), OCI_INDEX);
    }

    #[test]
    fn refuses_what_it_cannot_describe() {
        for (bytes, expected) in [
            (
                &br#"{"schemaVersion":1,"fsLayers":[]}"#[..],
                "schemaVersion Some(1)",
            ),
            (br#"{"schemaVersion":2}"#, "neither mediaType"),
            (
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
                "without config",
            ),
            (
                br#"{"schemaVersion":2,"mediaType":"text/plain","config":{"digest":"d","size":1}}"#,
                "unsupported manifest media type",
            ),
            (b"<html>", "not a JSON manifest"),
        ] {
            let err = Manifest::parse(bytes).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn parses_config_labels_time_and_platform() {
        let c = ImageConfig::parse(
            br#"{"created":"2026-11-30T01:02:03.5Z","architecture":"arm","os":"linux","variant":"v7",
                 "config":{"Labels":{"werf":"shop","werf-stage-content-digest":"x"}},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.created.unwrap().as_millisecond(), 1_796_000_523_500);
        assert_eq!(c.labels["werf"], "shop");
        assert_eq!(c.platform.to_string(), "linux/arm/v7");
        let bare = ImageConfig::parse(br#"{"architecture":"amd64","os":"linux"}"#).unwrap();
        assert!(bare.labels.is_empty() && bare.created.is_none());
        let err = ImageConfig::parse(br#"{"created":"yesterday"}"#).unwrap_err();
        assert!(err.contains("created \"yesterday\""), "{err}");
    }
}
