//! The build report, field for field as werf writes it (`werf build
//! --save-build-report`, werf's `pkg/build/build_report.go`).
//!
//! Go's `encoding/json` uses struct field names as JSON keys when there are no tags, so
//! the keys here are PascalCase Go names (`WerfImageName`, `DockerImageDigest`...), in
//! Go's declaration order (Go marshals struct fields in that order). Maps are `BTreeMap`
//! because Go marshals map keys sorted.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Schema transform: removes the `default` that schemars derives from `#[serde(default)]`
/// on each property. The defaults exist only so that reports of older werf versions
/// (without `ConfigType`, `TargetPlatform`...) load; in the CRD they would make the
/// apiserver invent values in stored reports.
fn drop_property_defaults(schema: &mut schemars::Schema) {
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for prop in props.values_mut() {
            if let Some(prop) = prop.as_object_mut() {
                prop.remove("default");
            }
        }
    }
}

/// werf's `ImagesReport`: the whole build report.
///
/// JSON shape: `{"Runtime": {...}?, "Images": {name: ImageRecord}, "ImagesByPlatform":
/// {name: {platform: ImageRecord}}, "Operations": {...}?, "StageCache": {...}?}`.
/// `Images` and `ImagesByPlatform` are always written (`{}` when empty); `Runtime` is
/// left out when unknown (reports of werf versions before it existed); `Operations` and
/// `StageCache` are left out when empty, as werf's `omitempty` does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = drop_property_defaults)]
pub struct BuildReport {
    /// The container backend that built the images and whether it ran in a container.
    #[serde(rename = "Runtime", default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeInfo>,

    /// One record per image, keyed by the werf.yaml image name. For a multi-platform
    /// image this is the manifest-list record (`TargetPlatform` empty, `Rebuilt` true if
    /// any platform rebuilt, `BuildTime` the sum, stages of all platforms with names
    /// suffixed ` (<platform>)`).
    #[serde(rename = "Images", default)]
    pub images: BTreeMap<String, ImageRecord>,

    /// Per-platform records: image name → platform → record.
    #[serde(rename = "ImagesByPlatform", default)]
    pub images_by_platform: BTreeMap<String, BTreeMap<String, ImageRecord>>,

    /// Time spent per kind of operation, when collected.
    #[serde(
        rename = "Operations",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub operations: BTreeMap<String, OperationStats>,

    /// How many stages were found in or copied from each storage, or built, keyed by
    /// event (for example `built`, `found in repo stages storage`).
    #[serde(
        rename = "StageCache",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub stage_cache: BTreeMap<String, i64>,
}

/// werf's `RuntimeInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = drop_property_defaults)]
pub struct RuntimeInfo {
    /// Container backend: `buildah` (Kiln) or `docker`.
    #[serde(rename = "Backend", default)]
    pub backend: String,

    /// True when the backend ran inside a container (always true for Kiln's builder
    /// pods).
    #[serde(rename = "InContainer", default)]
    pub in_container: bool,
}

/// werf's `ReportImageRecord`: one image (one platform, or a manifest list).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = drop_property_defaults)]
pub struct ImageRecord {
    /// The image name from werf.yaml (empty for werf's nameless image).
    #[serde(rename = "WerfImageName", default)]
    pub werf_image_name: String,

    /// How the image is described: `dockerfile`, `staged` (Dockerfile with
    /// `staged: true`), `stapel` or `unknown`.
    #[serde(rename = "ConfigType", default)]
    pub config_type: String,

    /// Repository the image is in (the final repo when one is used).
    #[serde(rename = "DockerRepo", default)]
    pub docker_repo: String,

    /// Content-based tag `DIGEST-TIMESTAMP_MILLISEC` of the image's last stage.
    #[serde(rename = "DockerTag", default)]
    pub docker_tag: String,

    /// Image ID: digest of the image config, `sha256:...`.
    #[serde(rename = "DockerImageID", default)]
    pub docker_image_id: String,

    /// Manifest (or manifest list) digest in the registry, `sha256:...`.
    #[serde(rename = "DockerImageDigest", default)]
    pub docker_image_digest: String,

    /// Full image reference `DockerRepo:DockerTag`.
    #[serde(rename = "DockerImageName", default)]
    pub docker_image_name: String,

    /// Platform of this record, such as `linux/arm64`; empty for a manifest list.
    #[serde(rename = "TargetPlatform", default)]
    pub target_platform: String,

    /// True if at least one stage of the image was built by this build.
    #[serde(rename = "Rebuilt", default)]
    pub rebuilt: bool,

    /// True for final images (`final: true` in werf.yaml, the default); false for
    /// intermediate images that only feed others.
    #[serde(rename = "Final", default)]
    pub r#final: bool,

    /// Image size in bytes.
    #[serde(rename = "Size", default)]
    pub size: i64,

    /// Seconds spent building the image, with two decimals (Go `%.2f`), as a string.
    #[serde(rename = "BuildTime", default)]
    pub build_time: String,

    /// The git commit recorded in the image's `werf-project-repo-commit` label.
    #[serde(rename = "Commit", default)]
    pub commit: String,

    /// The image's stages in build order; null when there are none.
    #[serde(rename = "Stages", default)]
    pub stages: Option<Vec<StageRecord>>,
}

/// werf's `ReportStageRecord`: one stage of an image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = drop_property_defaults)]
pub struct StageRecord {
    /// Stage name, such as `dockerfile`, `install` or `gitLatestPatch`; suffixed with
    /// ` (<platform>)` in a manifest-list record.
    #[serde(rename = "Name", default)]
    pub name: String,

    /// Full stage image reference `repo:DIGEST-TIMESTAMP_MILLISEC`.
    #[serde(rename = "DockerImageName", default)]
    pub docker_image_name: String,

    /// Stage tag `DIGEST-TIMESTAMP_MILLISEC`.
    #[serde(rename = "DockerTag", default)]
    pub docker_tag: String,

    /// Stage image ID (config digest), `sha256:...`.
    #[serde(rename = "DockerImageID", default)]
    pub docker_image_id: String,

    /// Stage manifest digest, `sha256:...`.
    #[serde(rename = "DockerImageDigest", default)]
    pub docker_image_digest: String,

    /// When the stage image was created, in Unix nanoseconds.
    #[serde(rename = "CreatedAt", default)]
    pub created_at: i64,

    /// Stage image size in bytes.
    #[serde(rename = "Size", default)]
    pub size: i64,

    /// Where the stage's base came from: empty (reused from the stages storage),
    /// `repo`, `cache-repo`, `registry` (an external base image) or `secondary`.
    #[serde(rename = "SourceType", default)]
    pub source_type: String,

    /// True if building the stage pulled its base image.
    #[serde(rename = "BaseImagePulled", default)]
    pub base_image_pulled: bool,

    /// True if this build built the stage; false if it was reused.
    #[serde(rename = "Rebuilt", default)]
    pub rebuilt: bool,

    /// Seconds spent on the stage, with two decimals (Go `%.2f`), as a string.
    #[serde(rename = "BuildTime", default)]
    pub build_time: String,

    /// The git commit recorded in the stage's `werf-project-repo-commit` label.
    #[serde(rename = "Commit", default)]
    pub commit: String,
}

/// Timing of one kind of operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = drop_property_defaults)]
pub struct OperationStats {
    /// How many times the operation ran.
    #[serde(rename = "Count", default)]
    pub count: i64,

    /// Sum of the durations, in seconds.
    #[serde(rename = "TotalTimeSeconds", default)]
    pub total_time_seconds: f64,

    /// Wall-clock time from the first start to the last end, in seconds.
    #[serde(rename = "WallTimeSeconds", default)]
    pub wall_time_seconds: f64,

    /// Mean duration, in seconds.
    #[serde(rename = "AvgTimeSeconds", default)]
    pub avg_time_seconds: f64,

    /// Longest duration, in seconds.
    #[serde(rename = "MaxTimeSeconds", default)]
    pub max_time_seconds: f64,
}
