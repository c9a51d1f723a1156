//! Staged Dockerfile images (`staged: true`) and images with dependency build args in the
//! controller: the stage digests to look up, once [`crate::facts::resolve`] has computed
//! them with the build-time facts, and what a unit still waits for.

use super::error::Error;
use crate::facts::waits_for_stage_images;
use crate::plan::project::{ImageBuildKind, ImagePlan};

/// The stage digests of an image × platform, in build order.
///
/// Errors: [`Error::Unsupported`] for Stapel images outside what Kiln builds
/// ([`crate::job::stapel::unit_digests`]) and for stages whose digest waits on something not
/// built by this operator yet (a dependency's identifiers in a build arg, the image of
/// another Dockerfile stage of a staged Dockerfile).
pub fn unit_digests(unit: &ImagePlan) -> Result<Vec<String>, Error> {
    if unit.kind == ImageBuildKind::Stapel {
        return Ok(crate::job::stapel::unit_digests(unit)?);
    }
    unit.stages
        .iter()
        .map(|s| {
            s.digest.clone().ok_or_else(|| {
                Error::Unsupported(if unit.kind == ImageBuildKind::StagedDockerfile {
                    format!(
                        "image {:?} ({}): stage {} waits for {}",
                        unit.name,
                        unit.platform,
                        s.name,
                        s.pending_on.join(", ")
                    )
                } else {
                    format!(
                        "image {:?}: stage {} depends on {}, which this build does not provide",
                        unit.name,
                        s.name,
                        s.pending_on.join(", ")
                    )
                })
            })
        })
        .collect()
}

/// The stage digests of a unit to look up, in build order: `None` for a resolved staged
/// stage that waits for the image of another Dockerfile stage of the same Dockerfile (a
/// later reconcile computes it once that image is published).
///
/// Errors: as [`unit_digests`] for every other stage without a digest.
pub fn lookup_digests(unit: &ImagePlan) -> Result<Vec<Option<String>>, Error> {
    if unit.kind == ImageBuildKind::StagedDockerfile
        && unit
            .stages
            .iter()
            .all(|s| s.digest.is_some() || waits_for_stage_images(s))
    {
        return Ok(unit.stages.iter().map(|s| s.digest.clone()).collect());
    }
    Ok(unit_digests(unit)?.into_iter().map(Some).collect())
}

/// How many stages of an image × platform wait for the images of Dockerfile stages (their
/// digests are computed by a later reconcile).
pub fn waiting_stages(unit: &ImagePlan) -> usize {
    unit.stages
        .iter()
        .filter(|s| waits_for_stage_images(s))
        .count()
}

/// The progress note of an image × platform whose stages are not all computed yet.
pub fn waiting_note(unit: &ImagePlan) -> Option<String> {
    let waiting: Vec<&str> = unit
        .stages
        .iter()
        .filter(|s| waits_for_stage_images(s))
        .map(|s| s.name.as_str())
        .collect();
    (!waiting.is_empty()).then(|| {
        format!(
            "{} ({}) waits for its Dockerfile stages to be published before computing the digests of {} stage(s)",
            unit.name,
            unit.platform,
            waiting.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Platform as ConfigPlatform;
    use crate::digest::PlannedStage;
    use crate::facts::resolved_stage_plans;
    use crate::job::staged::tests::{COPY, ENV, stages};

    fn unit(stages: &[PlannedStage]) -> ImagePlan {
        ImagePlan {
            name: "app".into(),
            platform: ConfigPlatform::parse("linux/amd64").unwrap(),
            kind: ImageBuildKind::StagedDockerfile,
            is_final: true,
            depends_on: Vec::new(),
            stages: resolved_stage_plans(stages),
        }
    }

    #[test]
    fn provisional_stages_have_no_digest_in_the_plan() {
        let mut stages = stages();
        stages[2].provisional = true;
        let plans = resolved_stage_plans(&stages);
        assert_eq!(plans[1].digest.as_deref(), Some(COPY));
        assert_eq!(plans[2].digest, None);
        assert_eq!(plans[2].pending_on.len(), 1);
        assert!(
            plans[2].pending_on[0].contains("app"),
            "{:?}",
            plans[2].pending_on
        );
        // Lookup skips it; the note says how many stages wait.
        let unit = unit(&stages);
        assert_eq!(
            lookup_digests(&unit).unwrap(),
            vec![Some(ENV.to_owned()), Some(COPY.to_owned()), None]
        );
        assert_eq!(
            waiting_note(&unit).as_deref(),
            Some(
                "app (linux/amd64) waits for its Dockerfile stages to be published before computing the digests of 1 stage(s)"
            )
        );
    }

    #[test]
    fn other_pending_stages_are_still_refused() {
        let stages = stages();
        let mut unit = unit(&stages);
        unit.stages[1].digest = None;
        unit.stages[1].pending_on = vec!["ImageTag of image \"base\" (build arg T)".into()];
        let err = lookup_digests(&unit).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("ImageTag of image"), "{err}");
        assert_eq!(waiting_note(&unit), None);
    }
}
