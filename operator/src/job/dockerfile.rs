//! The builder job of a non-staged Dockerfile image × platform: its one `dockerfile` stage,
//! built with `buildah bud` from the commit's context.

use std::collections::BTreeMap;

use kiln_crds::job::{ParentRef, StageBuild, StageJob};
use kiln_crds::werf::content_digest;

use crate::plan::project::ImagePlan;

/// The stage jobs of `unit`'s `missing` stages (indices into `unit.stages`): each built
/// from the Dockerfile as a whole, on no parent (the Dockerfile names its bases).
pub fn stage_jobs(unit: &ImagePlan, missing: &[usize]) -> Vec<StageJob> {
    let platform = unit.platform.to_string();
    missing
        .iter()
        .filter_map(|&i| unit.stages.get(i))
        .map(|s| {
            let digest = s.digest.clone().unwrap_or_default();
            StageJob {
                content_digest: content_digest(&platform, &s.name, &digest, ""),
                name: s.name.clone(),
                digest,
                parent: ParentRef::None,
                build: StageBuild::Dockerfile { dockerfile: None },
                labels: BTreeMap::new(),
            }
        })
        .collect()
}
