//! Checks a build report the way werf does before using it (`werf ...
//! --use-build-report`, `validateBuildReport`): at least one image; each image record
//! has `WerfImageName`, `DockerImageName`, `DockerRepo`, `DockerTag` and
//! `DockerImageID`; each stage record has `Name`, `DockerImageName` and
//! `DockerImageID`. Fields are checked in that order; images in name order (werf walks
//! a Go map, so when several fields are missing it may name a different one first).

use super::{BuildReport, ImageRecord, ReportError, StageRecord};

pub(crate) fn validate(report: &BuildReport) -> Result<(), ReportError> {
    if report.images.is_empty() {
        return Err(ReportError::NoImages);
    }
    for (name, record) in &report.images {
        validate_image(name, record)?;
    }
    for (name, platforms) in &report.images_by_platform {
        for (platform, record) in platforms {
            validate_image(&format!("{name}[{platform}]"), record)?;
        }
    }
    Ok(())
}

fn validate_image(image: &str, record: &ImageRecord) -> Result<(), ReportError> {
    let required = [
        ("WerfImageName", &record.werf_image_name),
        ("DockerImageName", &record.docker_image_name),
        ("DockerRepo", &record.docker_repo),
        ("DockerTag", &record.docker_tag),
        ("DockerImageID", &record.docker_image_id),
    ];
    for (field, value) in required {
        if value.is_empty() {
            return Err(ReportError::EmptyImageField {
                image: image.to_owned(),
                field,
            });
        }
    }
    for (index, stage) in record.stages.iter().flatten().enumerate() {
        validate_stage(image, index, stage)?;
    }
    Ok(())
}

fn validate_stage(image: &str, index: usize, stage: &StageRecord) -> Result<(), ReportError> {
    if stage.name.is_empty() {
        return Err(ReportError::EmptyStageName {
            image: image.to_owned(),
            index,
        });
    }
    for (field, value) in [
        ("DockerImageName", &stage.docker_image_name),
        ("DockerImageID", &stage.docker_image_id),
    ] {
        if value.is_empty() {
            return Err(ReportError::EmptyStageField {
                image: image.to_owned(),
                stage: stage.name.clone(),
                field,
            });
        }
    }
    Ok(())
}
