//! Dependency build args (`dependencies[].imports[].targetBuildArg`): the identifiers of a
//! published dependency image, as werf passes them to a Dockerfile build.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use super::{FactSource, FactsError};
use crate::config::ImportKind;
use crate::plan::project::{ImageBuildKind, ImagePlan};
use crate::storage::{StageDescription, StageDigest};

/// One `dependencies[].imports[]` entry into a build arg: (build arg, dependency image,
/// import type).
pub(super) type BuildArgImport = (String, String, ImportKind);

/// The `dependencies[].imports[]` entries of `image` that set a build arg.
pub(super) fn dependency_imports(image: &crate::config::ImageConfig) -> Vec<BuildArgImport> {
    image
        .dependencies()
        .iter()
        .flat_map(|dep| {
            dep.imports.iter().filter_map(move |import| {
                import
                    .target_build_arg
                    .as_ref()
                    .map(|arg| (arg.clone(), dep.image.clone(), import.kind))
            })
        })
        .collect()
}

/// The values of `imports` for `unit` from each dependency's published image on the same
/// platform (its last stage in the stages storage), as werf passes them: `ImageName`
/// `REPO:TAG`, `ImageTag` `DIGEST-TIMESTAMP`, `ImageRepo` `REPO`, `ImageID` the config
/// digest, `ImageDigest` the manifest digest. `Err(dependency)` when one is not published
/// yet.
///
/// Errors: [`FactsError::Unsupported`] when the dependency is not planned for the platform or is
/// not built by Kiln; [`FactsError::Storage`] when the lookup fails.
pub(super) async fn dependency_args(
    earlier: &[ImagePlan],
    unit: &ImagePlan,
    imports: &[BuildArgImport],
    registry: &impl FactSource,
) -> Result<Result<BTreeMap<String, String>, String>, FactsError> {
    let mut args = BTreeMap::new();
    let mut published: HashMap<String, StageDescription> = HashMap::new();
    for (arg, dependency, kind) in imports {
        if !published.contains_key(dependency) {
            let dep = earlier
                .iter()
                .find(|u| &u.name == dependency && u.platform == unit.platform)
                .ok_or_else(|| {
                    FactsError::Unsupported(format!(
                        "image {:?} ({}): dependency {dependency:?} is not built for this platform before it",
                        unit.name, unit.platform
                    ))
                })?;
            if dep.kind == ImageBuildKind::Stapel {
                return Err(FactsError::Unsupported(format!(
                    "image {:?}: dependency {dependency:?} is a Stapel image, not built by Kiln yet",
                    unit.name
                )));
            }
            let Some(Some(last)) = dep.stages.last().map(|s| s.digest.clone()) else {
                return Ok(Err(dependency.clone()));
            };
            let digest = StageDigest::from_str(&last)
                .map_err(|e| FactsError::Internal(format!("planned digest {last}: {e}")))?;
            let found =
                registry
                    .find_stage(&digest)
                    .await
                    .map_err(|source| FactsError::Storage {
                        operation: format!(
                            "image {:?} ({}): looking up dependency {dependency:?}",
                            unit.name, unit.platform
                        ),
                        source: Box::new(source),
                    })?;
            let Some(found) = found else {
                return Ok(Err(dependency.clone()));
            };
            published.insert(dependency.clone(), found);
        }
        let stage = &published[dependency];
        args.insert(arg.clone(), import_value(stage, *kind));
    }
    Ok(Ok(args))
}

/// The value of one dependency import type for a published image, as werf passes it:
/// `ImageName` `REPO:TAG`, `ImageTag` `DIGEST-TIMESTAMP`, `ImageRepo` `REPO`, `ImageID` the
/// config digest, `ImageDigest` the manifest digest.
pub fn import_value(stage: &StageDescription, kind: ImportKind) -> String {
    match kind {
        ImportKind::ImageName => stage.image_name(),
        ImportKind::ImageTag => stage.stage_id.tag(),
        ImportKind::ImageRepo => stage.repo.to_string(),
        ImportKind::ImageId => stage.image_id().unwrap_or_default().to_owned(),
        ImportKind::ImageDigest => stage.manifest_digest.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::staged::tests::{ENV, found};

    #[test]
    fn dependency_imports_name_the_published_image() {
        let stage = found(ENV, 1_700_000_000_123);
        let tag = format!("{ENV}-1700000000123");
        assert_eq!(import_value(&stage, ImportKind::ImageTag), tag);
        assert_eq!(
            import_value(&stage, ImportKind::ImageName),
            format!("127.0.0.1:5000/stg:{tag}")
        );
        assert_eq!(
            import_value(&stage, ImportKind::ImageRepo),
            "127.0.0.1:5000/stg"
        );
        assert_eq!(
            import_value(&stage, ImportKind::ImageId),
            format!("sha256:{}", "1".repeat(64))
        );
        assert_eq!(
            import_value(&stage, ImportKind::ImageDigest),
            format!("sha256:{}", "2".repeat(64))
        );
    }
}
