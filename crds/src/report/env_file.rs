//! The build report's env-file form (werf `--build-report-path=report.env`,
//! `ImagesReport.ToEnvFileData`), and reading it back (`--use-build-report`).
//!
//! Per image, seven `KEY=value` lines in this order:
//! `<P>DOCKER_IMAGE_NAME`, `<P>DOCKER_IMAGE_ID`, `<P>DOCKER_IMAGE_DIGEST`,
//! `<P>DOCKER_REPO`, `<P>DOCKER_TAG`, `<P>WERF_IMAGE_NAME`, `<P>FINAL`, where `<P>` is
//! [`image_env_prefix`] of the image name. werf walks a Go map, so its image order is
//! random; Kiln writes images sorted by name, which any reader of werf's files accepts.

use std::collections::BTreeMap;

use super::{BuildReport, ImageRecord, ReportError};

/// The variable-name prefix of an image: `WERF_` + the name upper-cased with `/`, `-`
/// and `.` replaced by `_`, + `_`; for werf's nameless image (empty name) just `WERF_`.
/// Other characters are kept as they are, as werf does.
///
/// `frontend/stage/build` → `WERF_FRONTEND_STAGE_BUILD_`; `` → `WERF_`.
///
/// Upper-casing follows Go's `strings.ToUpper`, which maps each character on its own:
/// a character whose upper case is several characters (such as `ß`) stays unchanged.
pub fn image_env_prefix(image_name: &str) -> String {
    if image_name.is_empty() {
        return "WERF_".to_owned();
    }
    let mut normalized = String::with_capacity(image_name.len());
    for c in image_name.chars() {
        match c {
            '/' | '-' | '.' => normalized.push('_'),
            c => {
                let mut upper = c.to_uppercase();
                match (upper.next(), upper.next()) {
                    (Some(u), None) => normalized.push(u),
                    _ => normalized.push(c),
                }
            }
        }
    }
    format!("WERF_{normalized}_")
}

/// The name of the variable holding an image's full reference, such as
/// `WERF_BACKEND_DOCKER_IMAGE_NAME` (werf's `GenerateImageEnv`).
pub fn image_name_env_var(image_name: &str) -> String {
    format!("{}DOCKER_IMAGE_NAME", image_env_prefix(image_name))
}

/// Renders `report.Images` as werf's env file (each line ends with `\n`).
pub(crate) fn render(report: &BuildReport) -> String {
    let mut out = String::new();
    for (name, record) in &report.images {
        let p = image_env_prefix(name);
        let lines = [
            ("DOCKER_IMAGE_NAME", record.docker_image_name.as_str()),
            ("DOCKER_IMAGE_ID", record.docker_image_id.as_str()),
            ("DOCKER_IMAGE_DIGEST", record.docker_image_digest.as_str()),
            ("DOCKER_REPO", record.docker_repo.as_str()),
            ("DOCKER_TAG", record.docker_tag.as_str()),
            ("WERF_IMAGE_NAME", record.werf_image_name.as_str()),
            ("FINAL", if record.r#final { "true" } else { "false" }),
        ];
        for (key, value) in lines {
            out.push_str(&p);
            out.push_str(key);
            out.push('=');
            out.push_str(value);
            out.push('\n');
        }
    }
    out
}

/// Reads an env-file report back the way werf does: blank lines and `#` comments are
/// skipped, every other line must be `KEY=value`; each key ending in
/// `_DOCKER_IMAGE_NAME` starts an image whose other values share its prefix. Records
/// are keyed by their `WERF_IMAGE_NAME` value. Fields the env file does not carry
/// (sizes, stages, platform...) stay empty.
///
/// Errors: [`ReportError::MalformedEnvLine`] with the 1-based line number.
pub(crate) fn parse(text: &str) -> Result<BuildReport, ReportError> {
    let mut values: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| ReportError::MalformedEnvLine {
                line: i + 1,
                text: line.to_owned(),
            })?;
        values.insert(key, value);
    }
    let mut report = BuildReport::default();
    let prefixes: Vec<&str> = values
        .keys()
        .filter(|k| k.ends_with("_DOCKER_IMAGE_NAME"))
        .map(|k| &k[..k.len() - "DOCKER_IMAGE_NAME".len()])
        .collect();
    for prefix in prefixes {
        let get = |suffix: &str| {
            values
                .get(format!("{prefix}{suffix}").as_str())
                .map_or_else(String::new, |v| (*v).to_owned())
        };
        let record = ImageRecord {
            werf_image_name: get("WERF_IMAGE_NAME"),
            docker_image_name: get("DOCKER_IMAGE_NAME"),
            docker_image_id: get("DOCKER_IMAGE_ID"),
            docker_image_digest: get("DOCKER_IMAGE_DIGEST"),
            docker_repo: get("DOCKER_REPO"),
            docker_tag: get("DOCKER_TAG"),
            r#final: get("FINAL") == "true",
            ..ImageRecord::default()
        };
        report.images.insert(record.werf_image_name.clone(), record);
    }
    Ok(report)
}
