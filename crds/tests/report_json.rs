//! The build report's JSON must be what werf writes: Go field names in Go's order, tab
//! indent, trailing newline, `null` for an image without stages, `{}` for an empty
//! `ImagesByPlatform`. The expected texts below are written by hand from werf's
//! `ReportImageRecord`/`ReportStageRecord` declarations and Go's `MarshalIndent` rules.

use std::collections::BTreeMap;

use kiln_crds::report::{
    BuildReport, ImageRecord, OperationStats, ReportError, RuntimeInfo, StageRecord,
};

const EXPECTED_SINGLE: &str = r#"{
	"Runtime": {
		"Backend": "buildah",
		"InContainer": true
	},
	"Images": {
		"backend": {
			"WerfImageName": "backend",
			"ConfigType": "dockerfile",
			"DockerRepo": "registry.example.org/shop",
			"DockerTag": "0a1b2c-1700000000000",
			"DockerImageID": "sha256:1111",
			"DockerImageDigest": "sha256:2222",
			"DockerImageName": "registry.example.org/shop:0a1b2c-1700000000000",
			"TargetPlatform": "linux/amd64",
			"Rebuilt": true,
			"Final": true,
			"Size": 7340032,
			"BuildTime": "12.35",
			"Commit": "7f3c2a1e",
			"Stages": [
				{
					"Name": "dockerfile",
					"DockerImageName": "registry.example.org/shop:0a1b2c-1700000000000",
					"DockerTag": "0a1b2c-1700000000000",
					"DockerImageID": "sha256:1111",
					"DockerImageDigest": "sha256:2222",
					"CreatedAt": 1700000000123456789,
					"Size": 7340032,
					"SourceType": "registry",
					"BaseImagePulled": true,
					"Rebuilt": true,
					"BuildTime": "12.30",
					"Commit": "7f3c2a1e"
				}
			]
		},
		"frontend": {
			"WerfImageName": "frontend",
			"ConfigType": "stapel",
			"DockerRepo": "registry.example.org/shop",
			"DockerTag": "9f8e7d-1690000000000",
			"DockerImageID": "sha256:3333",
			"DockerImageDigest": "sha256:4444",
			"DockerImageName": "registry.example.org/shop:9f8e7d-1690000000000",
			"TargetPlatform": "linux/amd64",
			"Rebuilt": false,
			"Final": false,
			"Size": 0,
			"BuildTime": "0.00",
			"Commit": "",
			"Stages": null
		}
	},
	"ImagesByPlatform": {}
}
"#;

const EXPECTED_MULTI: &str = r#"{
	"Images": {
		"app": {
			"WerfImageName": "app",
			"ConfigType": "dockerfile",
			"DockerRepo": "r.example/app",
			"DockerTag": "abc-1",
			"DockerImageID": "sha256:list",
			"DockerImageDigest": "sha256:list",
			"DockerImageName": "r.example/app:abc-1",
			"TargetPlatform": "",
			"Rebuilt": true,
			"Final": true,
			"Size": 0,
			"BuildTime": "3.50",
			"Commit": "c0ffee",
			"Stages": []
		}
	},
	"ImagesByPlatform": {
		"app": {
			"linux/amd64": {
				"WerfImageName": "app",
				"ConfigType": "dockerfile",
				"DockerRepo": "r.example/app",
				"DockerTag": "def-2",
				"DockerImageID": "sha256:amd",
				"DockerImageDigest": "sha256:amd-m",
				"DockerImageName": "r.example/app:def-2",
				"TargetPlatform": "linux/amd64",
				"Rebuilt": true,
				"Final": true,
				"Size": 10,
				"BuildTime": "1.25",
				"Commit": "c0ffee",
				"Stages": null
			}
		}
	},
	"Operations": {
		"push": {
			"Count": 2,
			"TotalTimeSeconds": 3,
			"WallTimeSeconds": 2.5,
			"AvgTimeSeconds": 1.5,
			"MaxTimeSeconds": 1e-7
		}
	},
	"StageCache": {
		"built": 1,
		"found in repo stages storage": 4
	}
}
"#;

fn backend() -> ImageRecord {
    ImageRecord {
        werf_image_name: "backend".into(),
        config_type: "dockerfile".into(),
        docker_repo: "registry.example.org/shop".into(),
        docker_tag: "0a1b2c-1700000000000".into(),
        docker_image_id: "sha256:1111".into(),
        docker_image_digest: "sha256:2222".into(),
        docker_image_name: "registry.example.org/shop:0a1b2c-1700000000000".into(),
        target_platform: "linux/amd64".into(),
        rebuilt: true,
        r#final: true,
        size: 7_340_032,
        build_time: "12.35".into(),
        commit: "7f3c2a1e".into(),
        stages: Some(vec![StageRecord {
            name: "dockerfile".into(),
            docker_image_name: "registry.example.org/shop:0a1b2c-1700000000000".into(),
            docker_tag: "0a1b2c-1700000000000".into(),
            docker_image_id: "sha256:1111".into(),
            docker_image_digest: "sha256:2222".into(),
            created_at: 1_700_000_000_123_456_789,
            size: 7_340_032,
            source_type: "registry".into(),
            base_image_pulled: true,
            rebuilt: true,
            build_time: "12.30".into(),
            commit: "7f3c2a1e".into(),
        }]),
    }
}

fn frontend() -> ImageRecord {
    ImageRecord {
        werf_image_name: "frontend".into(),
        config_type: "stapel".into(),
        docker_repo: "registry.example.org/shop".into(),
        docker_tag: "9f8e7d-1690000000000".into(),
        docker_image_id: "sha256:3333".into(),
        docker_image_digest: "sha256:4444".into(),
        docker_image_name: "registry.example.org/shop:9f8e7d-1690000000000".into(),
        target_platform: "linux/amd64".into(),
        rebuilt: false,
        r#final: false,
        size: 0,
        build_time: "0.00".into(),
        commit: String::new(),
        stages: None,
    }
}

fn single_platform_report() -> BuildReport {
    BuildReport {
        runtime: Some(RuntimeInfo {
            backend: "buildah".into(),
            in_container: true,
        }),
        // Inserted out of order: Go sorts map keys, so must we.
        images: BTreeMap::from([
            ("frontend".into(), frontend()),
            ("backend".into(), backend()),
        ]),
        ..BuildReport::default()
    }
}

fn multi_platform_report() -> BuildReport {
    let record =
        |tag: &str, id: &str, digest: &str, platform: &str, time: &str, size: i64| ImageRecord {
            werf_image_name: "app".into(),
            config_type: "dockerfile".into(),
            docker_repo: "r.example/app".into(),
            docker_tag: tag.into(),
            docker_image_id: id.into(),
            docker_image_digest: digest.into(),
            docker_image_name: format!("r.example/app:{tag}"),
            target_platform: platform.into(),
            rebuilt: true,
            r#final: true,
            size,
            build_time: time.into(),
            commit: "c0ffee".into(),
            stages: None,
        };
    let mut list = record("abc-1", "sha256:list", "sha256:list", "", "3.50", 0);
    list.stages = Some(Vec::new());
    BuildReport {
        runtime: None,
        images: BTreeMap::from([("app".into(), list)]),
        images_by_platform: BTreeMap::from([(
            "app".into(),
            BTreeMap::from([(
                "linux/amd64".into(),
                record(
                    "def-2",
                    "sha256:amd",
                    "sha256:amd-m",
                    "linux/amd64",
                    "1.25",
                    10,
                ),
            )]),
        )]),
        operations: BTreeMap::from([(
            "push".into(),
            OperationStats {
                count: 2,
                total_time_seconds: 3.0,
                wall_time_seconds: 2.5,
                avg_time_seconds: 1.5,
                max_time_seconds: 1e-7,
            },
        )]),
        stage_cache: BTreeMap::from([
            ("found in repo stages storage".into(), 4),
            ("built".into(), 1),
        ]),
    }
}

#[test]
fn single_platform_report_renders_like_werf() {
    assert_eq!(single_platform_report().to_json().unwrap(), EXPECTED_SINGLE);
}

#[test]
fn multi_platform_report_renders_like_werf() {
    // Stages: [] stays [], Stages: None is null, whole floats have no ".0", tiny ones use
    // Go's exponent form, Runtime is left out when unknown.
    assert_eq!(multi_platform_report().to_json().unwrap(), EXPECTED_MULTI);
}

#[test]
fn reports_round_trip_byte_for_byte() {
    for text in [EXPECTED_SINGLE, EXPECTED_MULTI] {
        let report = BuildReport::from_json(text).unwrap();
        assert_eq!(report.to_json().unwrap(), text);
    }
    assert_eq!(
        BuildReport::from_json(EXPECTED_SINGLE).unwrap(),
        single_platform_report()
    );
    assert_eq!(
        BuildReport::from_json(EXPECTED_MULTI).unwrap(),
        multi_platform_report()
    );
}

#[test]
fn empty_report_has_empty_maps_not_null() {
    assert_eq!(
        BuildReport::default().to_json().unwrap(),
        "{\n\t\"Images\": {},\n\t\"ImagesByPlatform\": {}\n}\n"
    );
}

#[test]
fn newer_werf_report_without_stages_and_with_extra_fields_loads() {
    // Later werf versions omit empty Stages and add StagesSkipped; Go ignores unknown
    // fields and so do we. An older report without Runtime/ConfigType loads too.
    let text = r#"{"Runtime":{"Backend":"docker","InContainer":false},
        "Images":{"api":{"WerfImageName":"api","DockerRepo":"r/x","DockerTag":"t-1",
        "DockerImageID":"sha256:9","DockerImageName":"r/x:t-1","StagesSkipped":true}},
        "ImagesByPlatform":null}"#;
    let report = BuildReport::from_json(text).unwrap();
    let api = &report.images["api"];
    assert_eq!(api.stages, None);
    assert_eq!(api.config_type, "");
    assert_eq!(report.runtime.as_ref().unwrap().backend, "docker");
    assert!(report.images_by_platform.is_empty());
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = BuildReport::from_json("{\n\"Images\": [1]\n}").unwrap_err();
    assert!(matches!(err, ReportError::Json(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("unable to decode build report:"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn non_finite_operation_figures_are_refused_with_their_place() {
    let mut report = multi_platform_report();
    report.operations.get_mut("push").unwrap().avg_time_seconds = f64::NAN;
    let err = report.to_json().unwrap_err();
    assert!(
        matches!(&err, ReportError::NonFiniteNumber { operation, field: "AvgTimeSeconds", .. } if operation == "push"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "unable to render build report: Operations[\"push\"].AvgTimeSeconds is NaN"
    );
}
