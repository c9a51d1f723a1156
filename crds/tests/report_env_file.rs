//! The env-file form of the report and its variable names (werf `ToEnvFileData`,
//! `imageEnvPrefix`): `WERF_` + upper-cased name with `/`, `-`, `.` turned into `_`.

use std::collections::BTreeMap;

use kiln_crds::report::{
    BuildReport, ImageRecord, ReportError, image_env_prefix, image_name_env_var,
};

#[test]
fn env_prefixes_follow_werf_name_rules() {
    let cases = [
        ("frontend/stage/build", "WERF_FRONTEND_STAGE_BUILD_"),
        ("backend", "WERF_BACKEND_"),
        ("frontend-assets", "WERF_FRONTEND_ASSETS_"),
        ("my.app-v2/x", "WERF_MY_APP_V2_X_"),
        // Characters other than / - . are kept as they are.
        ("a_b:c", "WERF_A_B:C_"),
        ("Mixed", "WERF_MIXED_"),
        // Go's ToUpper maps rune by rune: ß has no one-rune upper case and stays.
        ("straße", "WERF_STRAßE_"),
        ("ёлка", "WERF_ЁЛКА_"),
        // werf's nameless image.
        ("", "WERF_"),
    ];
    for (name, want) in cases {
        assert_eq!(image_env_prefix(name), want, "{name:?}");
    }
    assert_eq!(
        image_name_env_var("frontend/stage/build"),
        "WERF_FRONTEND_STAGE_BUILD_DOCKER_IMAGE_NAME"
    );
    assert_eq!(image_name_env_var(""), "WERF_DOCKER_IMAGE_NAME");
}

fn record(name: &str, final_: bool) -> ImageRecord {
    ImageRecord {
        werf_image_name: name.into(),
        docker_repo: "r.example/shop".into(),
        docker_tag: format!("{}-1", name.len()),
        docker_image_id: "sha256:id".into(),
        docker_image_digest: "sha256:dg".into(),
        docker_image_name: format!("r.example/shop:{}-1", name.len()),
        r#final: final_,
        ..ImageRecord::default()
    }
}

#[test]
fn env_file_lists_seven_variables_per_image_in_werf_order() {
    let report = BuildReport {
        images: BTreeMap::from([
            (
                "frontend/stage/build".into(),
                record("frontend/stage/build", false),
            ),
            ("backend".into(), record("backend", true)),
        ]),
        ..BuildReport::default()
    };
    let want = "\
WERF_BACKEND_DOCKER_IMAGE_NAME=r.example/shop:7-1
WERF_BACKEND_DOCKER_IMAGE_ID=sha256:id
WERF_BACKEND_DOCKER_IMAGE_DIGEST=sha256:dg
WERF_BACKEND_DOCKER_REPO=r.example/shop
WERF_BACKEND_DOCKER_TAG=7-1
WERF_BACKEND_WERF_IMAGE_NAME=backend
WERF_BACKEND_FINAL=true
WERF_FRONTEND_STAGE_BUILD_DOCKER_IMAGE_NAME=r.example/shop:20-1
WERF_FRONTEND_STAGE_BUILD_DOCKER_IMAGE_ID=sha256:id
WERF_FRONTEND_STAGE_BUILD_DOCKER_IMAGE_DIGEST=sha256:dg
WERF_FRONTEND_STAGE_BUILD_DOCKER_REPO=r.example/shop
WERF_FRONTEND_STAGE_BUILD_DOCKER_TAG=20-1
WERF_FRONTEND_STAGE_BUILD_WERF_IMAGE_NAME=frontend/stage/build
WERF_FRONTEND_STAGE_BUILD_FINAL=false
";
    assert_eq!(report.to_env_file(), want);

    // Reading it back gives the same records for the fields an env file carries.
    let back = BuildReport::from_env_file(want).unwrap();
    assert_eq!(back.images, report.images);
}

#[test]
fn nameless_image_uses_the_bare_prefix() {
    let mut r = record("", true);
    r.werf_image_name = String::new();
    let report = BuildReport {
        images: BTreeMap::from([(String::new(), r)]),
        ..BuildReport::default()
    };
    let text = report.to_env_file();
    assert!(
        text.starts_with(
            "WERF_DOCKER_IMAGE_NAME=r.example/shop:0-1\nWERF_DOCKER_IMAGE_ID=sha256:id\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("WERF_WERF_IMAGE_NAME=\nWERF_FINAL=true\n"),
        "{text}"
    );
}

#[test]
fn env_file_reader_skips_comments_and_rejects_malformed_lines() {
    let ok = "# build report\n\nWERF_API_DOCKER_IMAGE_NAME=r/x:t-1\nWERF_API_DOCKER_IMAGE_ID=sha256:9\n\
              WERF_API_DOCKER_REPO=r/x\nWERF_API_DOCKER_TAG=t-1\nWERF_API_WERF_IMAGE_NAME=api\n";
    let report = BuildReport::from_env_file(ok).unwrap();
    assert_eq!(report.images["api"].docker_image_name, "r/x:t-1");
    // FINAL missing → false, like werf.
    assert!(!report.images["api"].r#final);

    let err =
        BuildReport::from_env_file("WERF_API_DOCKER_IMAGE_NAME=r/x:t\nnot a pair\n").unwrap_err();
    match err {
        ReportError::MalformedEnvLine { line, text } => {
            assert_eq!(line, 2);
            assert_eq!(text, "not a pair");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn env_file_with_missing_values_fails_validation() {
    // The image name is there but the tag line is not: werf's validation rejects it.
    let text = "WERF_API_DOCKER_IMAGE_NAME=r/x:t-1\nWERF_API_DOCKER_IMAGE_ID=sha256:9\n\
                WERF_API_DOCKER_REPO=r/x\nWERF_API_WERF_IMAGE_NAME=api\n";
    let err = BuildReport::from_env_file(text).unwrap_err();
    assert_eq!(err.to_string(), "image \"api\" has empty DockerTag");
}
