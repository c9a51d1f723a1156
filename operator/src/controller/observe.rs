//! The observe step of the Building phase: what one pass sees of an image × platform —
//! the stages the stages storage has, our builder pod and its state, a live builder of
//! another build. Reads only.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::Pod;
use kiln_crds::{BuilderPodRef, ImageBuild};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::children::owned_by;
use super::context::Context;
use super::decide::{self, OwnPod, UnitView};
use super::error::Error;
use super::request::BuildRequest;
use super::staged::{lookup_digests, waiting_stages};
use crate::facts::StagedUnits;
use crate::lock::StageLocks;
use crate::plan::project::{ImagePlan, ProjectPlan};
use crate::pods::names::{
    ANNOTATION_IMAGE, ANNOTATION_PLATFORM, ANNOTATION_REPO, ANNOTATION_STAGE_DIGESTS, stage_label,
};
use crate::pods::{PodOutcome, builder_pod_name, pod_outcome};
use crate::storage::{Freshness, OldestCreationTs, StageDescription, StageDigest, StagesStorage};

pub fn storage_error(
    operation: impl Into<String>,
) -> impl FnOnce(crate::storage::StorageError) -> Error {
    let operation = operation.into();
    move |source| Error::Storage {
        operation,
        source: Box::new(source),
    }
}

/// Looks up each stage of a unit; a stage after a missing one is missing too (its parent
/// must be built first).
pub async fn lookup_unit(
    storage: &StagesStorage,
    unit: &ImagePlan,
    freshness: Freshness,
) -> Result<Vec<Option<StageDescription>>, Error> {
    let digests = lookup_digests(unit)?;
    let mut found = Vec::with_capacity(digests.len());
    let mut parent_ts = None;
    let mut broken = false;
    for digest in &digests {
        let Some(digest) = digest.as_ref().filter(|_| !broken) else {
            broken = true;
            found.push(None);
            continue;
        };
        let d = StageDigest::from_str(digest)
            .map_err(|e| Error::Internal(format!("planned digest {digest}: {e}")))?;
        let stage = storage
            .find_stage(&d, parent_ts, &OldestCreationTs, freshness)
            .await
            .map_err(storage_error(format!(
                "looking up stages of image {:?} ({})",
                unit.name, unit.platform
            )))?;
        match &stage {
            Some(s) => parent_ts = Some(s.stage_id.creation_ts_ms()),
            None => broken = true,
        }
        found.push(stage);
    }
    Ok(found)
}

/// The status record of one of our builder pods, from its annotations.
pub fn pod_ref(pod: &Pod) -> BuilderPodRef {
    let annotation = |key: &str| pod.annotations().get(key).cloned().unwrap_or_default();
    BuilderPodRef {
        name: pod.name_any(),
        image: annotation(ANNOTATION_IMAGE),
        platform: annotation(ANNOTATION_PLATFORM),
    }
}

/// What one pass reads and writes besides the plan: the build, its pods, the stages
/// storage, the staged facts, the lock store (connected on first use).
pub struct Pass<'a> {
    pub ib: &'a ImageBuild,
    pub ctx: &'a Context,
    pub request: &'a BuildRequest,
    pub plan: &'a ProjectPlan,
    pub storage: &'a StagesStorage,
    pub staged: &'a StagedUnits,
    pub namespace: String,
    pub uid: String,
    pub ours: HashMap<String, Pod>,
    pub locks: Option<StageLocks>,
    pub pods_seen: Vec<BuilderPodRef>,
}

/// The observe step for one image × platform: its deferral, the stages found (cached tags
/// list), our builder pod for its missing stages, and — when that pod succeeded — a fresh
/// lookup of its stages.
#[tracing::instrument(name = "observe", skip_all, fields(image = %unit.name, platform = %unit.platform))]
pub async fn observe_unit(pass: &Pass<'_>, unit: &ImagePlan) -> Result<UnitView, Error> {
    if let Some(dependency) = pass.staged.deferred_on(unit) {
        return Ok(UnitView {
            deferred_on: Some(dependency.to_owned()),
            ..UnitView::default()
        });
    }
    let found = lookup_unit(pass.storage, unit, Freshness::Cached).await?;
    let mut view = UnitView {
        digests: lookup_digests(unit)?,
        found: found.iter().map(Option::is_some).collect(),
        waiting_stages: waiting_stages(unit),
        ..UnitView::default()
    };
    let missing = view.missing();
    let platform = unit.platform.to_string();
    if missing.is_empty() {
        // Every stage is in the stages storage, yet our pod that pushed the last of them
        // may not have exited: its termination message is what the report reads, so
        // `decide` waits for it (no other build can have published stages under our locks).
        let digests: Vec<String> = view.digests.iter().flatten().cloned().collect();
        if let Some(pod) = building_pod_for(&pass.ours, &unit.name, &platform, &digests) {
            let outcome = pod_outcome(pod);
            if outcome == PodOutcome::Running {
                view.own_pod = Some(OwnPod {
                    name: pod.name_any(),
                    outcome,
                    fresh_found: None,
                });
            }
        }
        return Ok(view);
    }
    let missing_digests: Vec<String> = missing
        .iter()
        .filter_map(|&i| view.digests[i].clone())
        .collect();
    let pod_name = builder_pod_name(
        &pass.ib.name_any(),
        &pass.uid,
        &unit.name,
        &platform,
        &missing_digests,
    );
    if let Some(pod) = our_pod_for(
        &pass.ours,
        &pod_name,
        &unit.name,
        &platform,
        &missing_digests,
    ) {
        let outcome = pod_outcome(pod);
        let fresh_found = if decide::succeeded(&outcome) {
            // Published; a fresh lookup must see it.
            let again = lookup_unit(pass.storage, unit, Freshness::Fresh).await?;
            Some(again.iter().map(Option::is_some).collect())
        } else {
            None
        };
        view.own_pod = Some(OwnPod {
            name: pod.name_any(),
            outcome,
            fresh_found,
        });
    }
    Ok(view)
}

/// Our builder pod for an image × platform: the one named for the stages missing now, else
/// one whose stages were partly published since it started (its name was made from more
/// missing stages, some of which are still missing). A pod that built other stages of the
/// same image × platform (a staged image builds the Dockerfile stages it waits for first)
/// is not it.
fn our_pod_for<'a>(
    ours: &'a HashMap<String, Pod>,
    pod_name: &str,
    image: &str,
    platform: &str,
    missing_digests: &[String],
) -> Option<&'a Pod> {
    ours.get(pod_name)
        .or_else(|| building_pod_for(ours, image, platform, missing_digests))
}

/// Our builder pod of an image × platform, not being deleted, created to build at least one
/// of `digests`.
fn building_pod_for<'a>(
    ours: &'a HashMap<String, Pod>,
    image: &str,
    platform: &str,
    digests: &[String],
) -> Option<&'a Pod> {
    ours.values().find(|p| {
        let a = p.annotations();
        a.get(ANNOTATION_IMAGE).map(String::as_str) == Some(image)
            && a.get(ANNOTATION_PLATFORM).map(String::as_str) == Some(platform)
            && p.metadata.deletion_timestamp.is_none()
            && pod_stage_digests(p).iter().any(|d| digests.contains(d))
    })
}

/// The stage digests a builder pod was created for (its stage-digests annotation).
pub fn pod_stage_digests(pod: &Pod) -> Vec<String> {
    pod.annotations()
        .get(ANNOTATION_STAGE_DIGESTS)
        .map(|d| {
            d.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A live builder pod of another ImageBuild that builds `digest` into `repo`: looked for in
/// every namespace, or only in `namespace` (the build's own) when the operator may not
/// list pods cluster-wide (`watchNamespaces` RBAC). Builds in other namespaces are then
/// still kept apart by the stage locks, which the creator of a builder pod holds while it
/// runs; this look-up only saves lock requests and covers the lease gap after an
/// operator restart.
pub async fn live_builder_of(
    ctx: &Context,
    namespace: &str,
    repo: &str,
    digest: &str,
    own_uid: &str,
) -> Result<Option<String>, Error> {
    let params = ListParams::default().labels(&stage_label(digest));
    let own_namespace = || Api::<Pod>::namespaced(ctx.client.clone(), namespace);
    let list = if ctx.cluster_wide_pods_forbidden.load(Ordering::Relaxed) {
        own_namespace().list(&params).await?
    } else {
        match Api::<Pod>::all(ctx.client.clone()).list(&params).await {
            Ok(list) => list,
            Err(kube::Error::Api(s)) if s.code == 403 => {
                // RBAC does not change under a running operator: ask once.
                ctx.cluster_wide_pods_forbidden
                    .store(true, Ordering::Relaxed);
                own_namespace().list(&params).await?
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(list
        .into_iter()
        .filter(|p| !owned_by(&p.metadata, own_uid))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.annotations().get(ANNOTATION_REPO).map(String::as_str) == Some(repo))
        .find(|p| pod_outcome(p) == PodOutcome::Running)
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())))
}
