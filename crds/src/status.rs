//! Pure helpers that turn a build report into the compact parts of
//! `ImageBuild.status`, and decide whether the full report fits there.
//!
//! DESIGN "Status size": etcd stores an object in at most ~1.5 MiB and the API server
//! rejects bigger requests, and a large status slows every watch; the per-image
//! summaries always go into the status, the full report only when it is small.

use std::collections::BTreeSet;

use crate::imagebuild::ImageSummary;
use crate::report::BuildReport;

/// Largest full report (compact JSON, bytes) Kiln puts into `status.report`; a bigger
/// one goes to the ConfigMap named in `status.reportConfigMap`. 64 KiB keeps the whole
/// status well under the 256 KiB the design allows.
pub const MAX_STATUS_REPORT_BYTES: usize = 64 * 1024;

/// Key of the report ConfigMap holding werf's JSON report.
pub const REPORT_CONFIGMAP_JSON_KEY: &str = "report.json";
/// Key of the report ConfigMap holding the env-file report.
pub const REPORT_CONFIGMAP_ENV_KEY: &str = "report.env";

/// Size of `report` as it would be stored in the status (compact JSON), in bytes.
pub fn status_report_size(report: &BuildReport) -> usize {
    // Serializing plain strings, integers, booleans and maps cannot fail; a non-finite
    // Operations figure becomes null here (it is refused later by `to_json`).
    serde_json::to_vec(report).map_or(usize::MAX, |v| v.len())
}

/// True if `report` may go into `status.report` (at most [`MAX_STATUS_REPORT_BYTES`]).
pub fn report_fits_in_status(report: &BuildReport) -> bool {
    status_report_size(report) <= MAX_STATUS_REPORT_BYTES
}

/// Number of distinct stages the build built: stages with `Rebuilt: true`, counted once
/// per stage image (`DockerImageName`) even when several images or the manifest-list
/// and per-platform records list the same stage.
pub fn rebuilt_stage_count(report: &BuildReport) -> usize {
    let per_platform = report.images_by_platform.values().flat_map(|p| p.values());
    report
        .images
        .values()
        .chain(per_platform)
        .flat_map(|record| record.stages.iter().flatten())
        .filter(|stage| stage.rebuilt)
        .map(|stage| stage.docker_image_name.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

/// One [`ImageSummary`] per entry of `report.Images`, in image-name order.
///
/// Platforms come from `ImagesByPlatform` when it lists the image, else from the
/// record's `TargetPlatform` (empty for a manifest list without per-platform records).
/// The digest is left out when the report has none (werf's local storage). Custom tags
/// are not part of werf's report; the caller fills them in.
pub fn image_summaries(report: &BuildReport) -> Vec<ImageSummary> {
    report
        .images
        .iter()
        .map(|(name, record)| {
            let platforms = match report.images_by_platform.get(name) {
                Some(by_platform) if !by_platform.is_empty() => {
                    by_platform.keys().cloned().collect()
                }
                _ if record.target_platform.is_empty() => Vec::new(),
                _ => vec![record.target_platform.clone()],
            };
            ImageSummary {
                image: name.clone(),
                platforms,
                repo: record.docker_repo.clone(),
                tag: record.docker_tag.clone(),
                digest: (!record.docker_image_digest.is_empty())
                    .then(|| record.docker_image_digest.clone()),
                rebuilt: record.rebuilt,
                custom_tags: Vec::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ImageRecord, StageRecord};
    use std::collections::BTreeMap;

    fn stage(name: &str, image_name: &str, rebuilt: bool) -> StageRecord {
        StageRecord {
            name: name.into(),
            docker_image_name: image_name.into(),
            docker_image_id: "sha256:1".into(),
            rebuilt,
            ..StageRecord::default()
        }
    }

    fn record(name: &str, platform: &str, digest: &str, stages: Vec<StageRecord>) -> ImageRecord {
        ImageRecord {
            werf_image_name: name.into(),
            docker_repo: "r/shop".into(),
            docker_tag: format!("{name}-tag"),
            docker_image_digest: digest.into(),
            target_platform: platform.into(),
            rebuilt: stages.iter().any(|s| s.rebuilt),
            stages: Some(stages),
            ..ImageRecord::default()
        }
    }

    fn sample() -> BuildReport {
        // backend and frontend share the built stage "r/shop:base-1"; frontend also built
        // its own "r/shop:fe-1"; "r/shop:old-1" was reused.
        let backend = record(
            "backend",
            "linux/amd64",
            "sha256:b",
            vec![
                stage("base", "r/shop:base-1", true),
                stage("old", "r/shop:old-1", false),
            ],
        );
        let frontend = record(
            "frontend",
            "",
            "",
            vec![
                stage("base (linux/amd64)", "r/shop:base-1", true),
                stage("fe (linux/arm64)", "r/shop:fe-1", true),
            ],
        );
        let fe_arm = record(
            "frontend",
            "linux/arm64",
            "sha256:fa",
            vec![stage("fe", "r/shop:fe-1", true)],
        );
        let fe_amd = record(
            "frontend",
            "linux/amd64",
            "sha256:fb",
            vec![stage("base", "r/shop:base-1", true)],
        );
        BuildReport {
            images: BTreeMap::from([("backend".into(), backend), ("frontend".into(), frontend)]),
            images_by_platform: BTreeMap::from([(
                "frontend".into(),
                BTreeMap::from([
                    ("linux/arm64".into(), fe_arm),
                    ("linux/amd64".into(), fe_amd),
                ]),
            )]),
            ..BuildReport::default()
        }
    }

    #[test]
    fn rebuilt_stages_are_counted_once_per_stage_image() {
        assert_eq!(rebuilt_stage_count(&sample()), 2);
        assert_eq!(rebuilt_stage_count(&BuildReport::default()), 0);
    }

    #[test]
    fn summaries_take_platforms_from_the_per_platform_records() {
        let s = image_summaries(&sample());
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].image, "backend");
        assert_eq!(s[0].platforms, ["linux/amd64"]);
        assert_eq!(s[0].digest.as_deref(), Some("sha256:b"));
        assert_eq!(s[0].tag, "backend-tag");
        assert_eq!(s[0].repo, "r/shop");
        assert!(s[0].rebuilt);
        assert_eq!(s[1].image, "frontend");
        assert_eq!(s[1].platforms, ["linux/amd64", "linux/arm64"]);
        assert_eq!(s[1].digest, None, "an empty DockerImageDigest is left out");
    }

    #[test]
    fn a_large_report_does_not_fit_in_the_status() {
        let small = sample();
        assert!(report_fits_in_status(&small));
        // 200 images × 10 stages with ~100-byte names is far above 64 KiB.
        let mut big = BuildReport::default();
        for i in 0..200 {
            let stages = (0..10)
                .map(|j| {
                    stage(
                        &format!("stage-{j}"),
                        &format!("registry.example.org/a/long/repository/path:{i:056}-{j:013}"),
                        true,
                    )
                })
                .collect();
            big.images.insert(
                format!("image-{i}"),
                record(&format!("image-{i}"), "linux/amd64", "sha256:x", stages),
            );
        }
        assert!(status_report_size(&big) > MAX_STATUS_REPORT_BYTES);
        assert!(!report_fits_in_status(&big));
    }
}
