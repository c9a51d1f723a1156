//! The build report, pure: werf's report records (`werf build --report-path` field names) of
//! the images of a plan, from their stages as found in the stages storage. The publish step
//! reads the stages and pushes; this module only assembles.

use std::collections::{BTreeMap, HashMap, HashSet};

use kiln_crds::report::{
    CONFIG_TYPE_DOCKERFILE, CONFIG_TYPE_STAGED, CONFIG_TYPE_STAPEL, ImageRecord, StageRecord,
};

use crate::plan::project::{ImageBuildKind, ImagePlan, ProjectPlan};
use crate::storage::StageDescription;

/// The image names of a plan, each once, in plan order (image-major: every platform of an
/// image before the next image, but not relied upon).
pub fn image_names(plan: &ProjectPlan) -> Vec<&str> {
    let mut seen = HashSet::new();
    plan.images
        .iter()
        .map(|u| u.name.as_str())
        .filter(|name| seen.insert(*name))
        .collect()
}

/// The names of the final images of a plan, each once, in plan order.
pub fn final_image_names(plan: &ProjectPlan) -> Vec<&str> {
    let mut seen = HashSet::new();
    plan.images
        .iter()
        .filter(|u| u.is_final)
        .map(|u| u.name.as_str())
        .filter(|name| seen.insert(*name))
        .collect()
}

/// werf's `configType` of an image kind.
pub fn config_type(kind: ImageBuildKind) -> &'static str {
    match kind {
        ImageBuildKind::Dockerfile => CONFIG_TYPE_DOCKERFILE,
        ImageBuildKind::StagedDockerfile => CONFIG_TYPE_STAGED,
        ImageBuildKind::Stapel => CONFIG_TYPE_STAPEL,
    }
}

fn seconds(s: f64) -> String {
    format!("{s:.2}")
}

/// The report record of one image × platform from its stage descriptions (one per planned
/// stage, in build order); `built` has the build seconds of the stage tags this build's
/// pods published (the others are reused).
pub fn platform_record(
    unit: &ImagePlan,
    plan: &ProjectPlan,
    stages: &[StageDescription],
    built: &HashMap<String, f64>,
) -> ImageRecord {
    let mut total = 0.0;
    let records: Vec<StageRecord> = unit
        .stages
        .iter()
        .zip(stages)
        .map(|(stage, desc)| {
            let tag = desc.stage_id.tag();
            let rebuilt = built.get(&tag);
            total += rebuilt.copied().unwrap_or(0.0);
            StageRecord {
                name: stage.name.clone(),
                docker_image_name: desc.image_name(),
                docker_tag: tag,
                docker_image_id: desc.image_id().unwrap_or_default().to_owned(),
                docker_image_digest: desc.manifest_digest.clone(),
                created_at: i64::try_from(desc.stage_id.creation_ts_ms())
                    .unwrap_or(i64::MAX / 1_000_000)
                    .saturating_mul(1_000_000),
                size: desc
                    .size()
                    .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)),
                source_type: String::new(),
                base_image_pulled: false,
                rebuilt: rebuilt.is_some(),
                build_time: seconds(rebuilt.copied().unwrap_or(0.0)),
                commit: plan.commit.clone(),
            }
        })
        .collect();
    let last = stages.last().expect("an image has at least one stage");
    ImageRecord {
        werf_image_name: unit.name.clone(),
        config_type: config_type(unit.kind).to_owned(),
        docker_repo: last.repo.to_string(),
        docker_tag: last.stage_id.tag(),
        docker_image_id: last.image_id().unwrap_or_default().to_owned(),
        docker_image_digest: last.manifest_digest.clone(),
        docker_image_name: last.image_name(),
        target_platform: unit.platform.to_string(),
        rebuilt: records.iter().any(|r| r.rebuilt),
        r#final: unit.is_final,
        size: last
            .size()
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)),
        build_time: seconds(total),
        commit: plan.commit.clone(),
        stages: Some(records),
    }
}

/// The manifest list digest of a multi-platform image (werf's multi-platform stage): SHA3-224
/// over the per-platform final stage IDs ordered by platform name.
pub fn manifest_list_digest(by_platform: &BTreeMap<String, String>) -> String {
    let ids: Vec<&str> = by_platform.values().map(String::as_str).collect();
    crate::digest::sha3_224_hex(&ids)
}

/// The record of a multi-platform image: its manifest list `list_digest` tagged `tag` in
/// `repo`, with the stages of every platform (named `stage (platform)`), sizes and build
/// times summed, rebuilt when any platform was.
pub fn multi_platform_record(
    name: &str,
    records: &BTreeMap<String, ImageRecord>,
    repo: &str,
    tag: &str,
    list_digest: &str,
    is_final: bool,
    commit: &str,
) -> ImageRecord {
    let mut stages = Vec::new();
    for (platform, r) in records {
        for mut s in r.stages.clone().unwrap_or_default() {
            s.name = format!("{} ({platform})", s.name);
            stages.push(s);
        }
    }
    let build_time: f64 = records
        .values()
        .map(|r| r.build_time.parse::<f64>().unwrap_or(0.0))
        .sum();
    ImageRecord {
        werf_image_name: name.to_owned(),
        config_type: records
            .values()
            .next()
            .map(|r| r.config_type.clone())
            .unwrap_or_default(),
        docker_repo: repo.to_owned(),
        docker_tag: tag.to_owned(),
        docker_image_id: list_digest.to_owned(),
        docker_image_digest: list_digest.to_owned(),
        docker_image_name: format!("{repo}:{tag}"),
        target_platform: String::new(),
        rebuilt: records.values().any(|r| r.rebuilt),
        r#final: is_final,
        size: records.values().map(|r| r.size).sum(),
        build_time: seconds(build_time),
        commit: commit.to_owned(),
        stages: Some(stages),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(platform: &str, rebuilt: bool, size: i64, build_time: &str) -> ImageRecord {
        ImageRecord {
            config_type: CONFIG_TYPE_DOCKERFILE.to_owned(),
            rebuilt,
            size,
            build_time: build_time.to_owned(),
            target_platform: platform.to_owned(),
            stages: Some(vec![StageRecord {
                name: "dockerfile".into(),
                ..StageRecord::default()
            }]),
            ..ImageRecord::default()
        }
    }

    #[test]
    fn a_multi_platform_record_names_stages_by_platform_and_sums() {
        let records = BTreeMap::from([
            (
                "linux/amd64".to_owned(),
                record("linux/amd64", false, 10, "0.00"),
            ),
            (
                "linux/arm64".to_owned(),
                record("linux/arm64", true, 5, "1.50"),
            ),
        ]);
        let r = multi_platform_record("app", &records, "r/app", "abc", "sha256:1", true, "c0");
        assert_eq!(r.docker_image_name, "r/app:abc");
        assert_eq!(r.docker_image_digest, "sha256:1");
        assert!(r.rebuilt && r.r#final);
        assert_eq!((r.size, r.build_time.as_str()), (15, "1.50"));
        assert_eq!(r.config_type, CONFIG_TYPE_DOCKERFILE);
        let names: Vec<String> = r.stages.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["dockerfile (linux/amd64)", "dockerfile (linux/arm64)"]
        );
    }
}
