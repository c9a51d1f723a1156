//! A report is checked as werf checks a report it is handed (`validateBuildReport`).

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_crds::report::{BuildReport, ImageRecord, ReportError, StageRecord, format_build_time};

fn valid_record(name: &str) -> ImageRecord {
    ImageRecord {
        werf_image_name: name.into(),
        docker_repo: "r/x".into(),
        docker_tag: "t-1".into(),
        docker_image_id: "sha256:1".into(),
        docker_image_name: "r/x:t-1".into(),
        stages: Some(vec![valid_stage("dockerfile")]),
        ..ImageRecord::default()
    }
}

fn valid_stage(name: &str) -> StageRecord {
    StageRecord {
        name: name.into(),
        docker_image_name: "r/x:t-1".into(),
        docker_image_id: "sha256:1".into(),
        ..StageRecord::default()
    }
}

fn report_with(name: &str, record: ImageRecord) -> BuildReport {
    BuildReport {
        images: BTreeMap::from([(name.to_owned(), record)]),
        ..BuildReport::default()
    }
}

#[test]
fn a_complete_report_is_valid_even_without_digests() {
    // werf only warns about an empty DockerImageDigest.
    let r = report_with("api", valid_record("api"));
    assert!(r.images["api"].docker_image_digest.is_empty());
    r.validate().unwrap();
}

#[test]
fn a_report_without_images_is_rejected() {
    let err = BuildReport::default().validate().unwrap_err();
    assert!(matches!(err, ReportError::NoImages));
    assert_eq!(err.to_string(), "build report contains no images");
    let err = BuildReport::from_json("{\"Images\": null, \"ImagesByPlatform\": {}}").unwrap_err();
    assert!(matches!(err, ReportError::NoImages), "{err:?}");
}

#[test]
fn each_required_image_field_is_named() {
    type Clear = fn(&mut ImageRecord);
    let cases: [(&str, Clear); 5] = [
        ("WerfImageName", |r| r.werf_image_name.clear()),
        ("DockerImageName", |r| r.docker_image_name.clear()),
        ("DockerRepo", |r| r.docker_repo.clear()),
        ("DockerTag", |r| r.docker_tag.clear()),
        ("DockerImageID", |r| r.docker_image_id.clear()),
    ];
    for (field, clear) in cases {
        let mut rec = valid_record("api");
        clear(&mut rec);
        let err = report_with("api", rec).validate().unwrap_err();
        assert_eq!(err.to_string(), format!("image \"api\" has empty {field}"));
    }
}

#[test]
fn stage_fields_are_checked_with_index_then_name() {
    let mut rec = valid_record("api");
    rec.stages = Some(vec![valid_stage("from"), valid_stage("")]);
    let err = report_with("api", rec).validate().unwrap_err();
    assert_eq!(err.to_string(), "image \"api\" stage #1 has empty Name");

    let mut rec = valid_record("api");
    let mut stage = valid_stage("install");
    stage.docker_image_id.clear();
    rec.stages = Some(vec![stage]);
    let err = report_with("api", rec).validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "image \"api\" stage \"install\" has empty DockerImageID"
    );

    let mut rec = valid_record("api");
    let mut stage = valid_stage("install");
    stage.docker_image_name.clear();
    rec.stages = Some(vec![stage]);
    let err = report_with("api", rec).validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "image \"api\" stage \"install\" has empty DockerImageName"
    );
}

#[test]
fn per_platform_records_are_named_with_their_platform() {
    let mut r = report_with("api", valid_record("api"));
    let mut arm = valid_record("api");
    arm.docker_tag.clear();
    r.images_by_platform =
        BTreeMap::from([("api".into(), BTreeMap::from([("linux/arm64".into(), arm)]))]);
    let err = r.validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "image \"api[linux/arm64]\" has empty DockerTag"
    );
}

#[test]
fn build_time_has_two_decimals_like_go() {
    assert_eq!(format_build_time(Duration::ZERO), "0.00");
    assert_eq!(format_build_time(Duration::from_millis(1500)), "1.50");
    // 12 + 0.345 is 12.34500000000000063948... as a float64: rounds up. 1 + 0.235 is
    // 1.23499999999999987565...: rounds down, where decimal rounding would give 1.24.
    // (Checked against C/Python "%.2f", which rounds the exact binary value as Go does.)
    assert_eq!(format_build_time(Duration::from_millis(12_345)), "12.35");
    assert_eq!(format_build_time(Duration::from_millis(1_235)), "1.23");
    assert_eq!(format_build_time(Duration::from_millis(2_999)), "3.00");
    assert_eq!(format_build_time(Duration::from_millis(61_004)), "61.00");
    assert_eq!(format_build_time(Duration::from_secs(3 * 3600)), "10800.00");
}
