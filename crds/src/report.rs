//! The build report, field for field as werf writes it (`werf build
//! --save-build-report`, werf's `pkg/build/build_report.go`).
//!
//! Go's `encoding/json` uses struct field names as JSON keys when there are no tags, so
//! the keys here are PascalCase Go names (`WerfImageName`, `DockerImageDigest`...), in
//! Go's declaration order (Go marshals struct fields in that order). Maps are `BTreeMap`
//! because Go marshals map keys sorted.
//!
//! Renderings: [`BuildReport::to_json`] (werf's JSON file, byte for byte) and
//! [`BuildReport::to_env_file`] (werf's `.env` file). Loading: [`BuildReport::from_json`]
//! and [`BuildReport::from_env_file`], both validated as werf validates a report it is
//! given with `--use-build-report`.
//!
//! Compatibility note: this follows werf v2 as Kiln's reference describes it
//! (`Stages` written as `null` when an image has none). Later werf versions leave
//! `Stages` out when empty and add `StagesSkipped`; their reports load here too.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

mod env_file;
pub mod go_json;
mod load;

pub use env_file::{image_env_prefix, image_name_env_var};

/// `ConfigType` of a Dockerfile image.
pub const CONFIG_TYPE_DOCKERFILE: &str = "dockerfile";
/// `ConfigType` of a Dockerfile image with `staged: true`.
pub const CONFIG_TYPE_STAGED: &str = "staged";
/// `ConfigType` of a Stapel image.
pub const CONFIG_TYPE_STAPEL: &str = "stapel";
/// `ConfigType` when the image is not in werf.yaml.
pub const CONFIG_TYPE_UNKNOWN: &str = "unknown";

/// `SourceType` of a stage whose base was pulled from the stages storage.
pub const SOURCE_TYPE_REPO: &str = "repo";
/// `SourceType` of a stage whose base was pulled from a cache repo.
pub const SOURCE_TYPE_CACHE_REPO: &str = "cache-repo";
/// `SourceType` of a stage whose base is an external image pulled from its registry.
pub const SOURCE_TYPE_REGISTRY: &str = "registry";
/// `SourceType` of a stage copied from a secondary repo.
pub const SOURCE_TYPE_SECONDARY: &str = "secondary";

/// `Runtime.Backend` of Kiln's reports: stages are built with Buildah.
pub const BACKEND_BUILDAH: &str = "buildah";

/// Why a report could not be read, rendered or accepted. Messages name the image,
/// stage and field as werf's do.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The JSON is malformed or has a field of the wrong type (the message has the line
    /// and column).
    #[error("unable to decode build report: {0}")]
    Json(#[source] serde_json::Error),
    /// A line of an env-file report is not `KEY=value`.
    #[error("malformed env line {line}: {text:?}")]
    MalformedEnvLine {
        /// 1-based line number.
        line: usize,
        /// The line, trimmed.
        text: String,
    },
    /// The report has no images.
    #[error("build report contains no images")]
    NoImages,
    /// An image record lacks a required field.
    #[error("image {image:?} has empty {field}")]
    EmptyImageField {
        /// The image name, or `name[platform]` for an `ImagesByPlatform` record.
        image: String,
        /// The Go field name, such as `DockerImageID`.
        field: &'static str,
    },
    /// A stage record has no name.
    #[error("image {image:?} stage #{index} has empty Name")]
    EmptyStageName {
        /// The image name.
        image: String,
        /// 0-based position of the stage in `Stages`.
        index: usize,
    },
    /// A stage record lacks a required field.
    #[error("image {image:?} stage {stage:?} has empty {field}")]
    EmptyStageField {
        /// The image name.
        image: String,
        /// The stage name.
        stage: String,
        /// The Go field name.
        field: &'static str,
    },
    /// An `Operations` figure is NaN or infinite, which Go's JSON encoder rejects.
    #[error("unable to render build report: Operations[{operation:?}].{field} is {value}")]
    NonFiniteNumber {
        /// The operation key.
        operation: String,
        /// The Go field name, such as `AvgTimeSeconds`.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// Serializing failed (not expected for these types; kept so that no path panics).
    #[error("unable to render build report: {0}")]
    Render(#[source] serde_json::Error),
}

/// werf's build time string: seconds with two decimals (`fmt.Sprintf("%.2f",
/// d.Seconds())`), such as `"12.35"`.
///
/// Seconds are computed as Go's `Duration.Seconds` does (whole seconds plus
/// nanoseconds / 1e9 in float64), and both Go and Rust round the exact binary value
/// half-to-even, so the strings agree.
pub fn format_build_time(d: Duration) -> String {
    let secs = d.as_secs() as f64 + f64::from(d.subsec_nanos()) / 1e9;
    format!("{secs:.2}")
}

/// Deserializes JSON `null` as the type's default, as Go decodes `null` into an empty
/// (nil) map.
fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

impl BuildReport {
    /// The report as werf writes its JSON file: Go's `json.MarshalIndent` with a tab
    /// indent, then a newline.
    ///
    /// Errors: [`ReportError::NonFiniteNumber`] if an `Operations` figure is NaN or
    /// infinite (werf would fail the same way).
    pub fn to_json(&self) -> Result<String, ReportError> {
        for (operation, stats) in &self.operations {
            let figures = [
                ("TotalTimeSeconds", stats.total_time_seconds),
                ("WallTimeSeconds", stats.wall_time_seconds),
                ("AvgTimeSeconds", stats.avg_time_seconds),
                ("MaxTimeSeconds", stats.max_time_seconds),
            ];
            if let Some((field, value)) = figures.into_iter().find(|(_, v)| !v.is_finite()) {
                return Err(ReportError::NonFiniteNumber {
                    operation: operation.clone(),
                    field,
                    value,
                });
            }
        }
        go_json::to_go_indented_json(self).map_err(ReportError::Render)
    }

    /// The report as werf writes its env file (see [`image_env_prefix`] for the names).
    pub fn to_env_file(&self) -> String {
        env_file::render(self)
    }

    /// Reads a JSON report (werf's or Kiln's) and validates it like werf.
    ///
    /// Errors: [`ReportError::Json`] for malformed JSON, else the first rule broken (see
    /// [`BuildReport::validate`]).
    pub fn from_json(text: &str) -> Result<BuildReport, ReportError> {
        let report: BuildReport = serde_json::from_str(text).map_err(ReportError::Json)?;
        report.validate()?;
        Ok(report)
    }

    /// Reads an env-file report and validates it like werf.
    ///
    /// Errors: [`ReportError::MalformedEnvLine`], else the first rule broken.
    pub fn from_env_file(text: &str) -> Result<BuildReport, ReportError> {
        let report = env_file::parse(text)?;
        report.validate()?;
        Ok(report)
    }

    /// werf's checks of a report it is given: at least one image; every image record
    /// (in `Images` and `ImagesByPlatform`) has `WerfImageName`, `DockerImageName`,
    /// `DockerRepo`, `DockerTag` and `DockerImageID`; every stage has `Name`,
    /// `DockerImageName` and `DockerImageID`. An empty `DockerImageDigest` is allowed
    /// (werf only warns: local storage has no digests).
    pub fn validate(&self) -> Result<(), ReportError> {
        load::validate(self)
    }
}

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
    #[serde(rename = "Images", default, deserialize_with = "null_as_default")]
    pub images: BTreeMap<String, ImageRecord>,

    /// Per-platform records: image name → platform → record.
    #[serde(
        rename = "ImagesByPlatform",
        default,
        deserialize_with = "null_as_default"
    )]
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
