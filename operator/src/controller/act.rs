//! The act step of the Building phase: executes a [`super::decide::UnitStep::Build`] —
//! a live builder elsewhere is waited for, else the stage locks are taken without blocking,
//! the storage re-checked with a fresh tags list (werf's publishing protocol), the secondary
//! repos copied from, and the job ConfigMap and builder pod created (or adopted) — and
//! settles the stage leases of our pods. Writes.

use std::collections::HashMap;
use std::str::FromStr;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::context::Context;
use super::decide::{Attempt, UnitView};
use super::error::Error;
use super::leases::{release_guards, take_all};
use super::secrets;
use super::staged::lookup_digests;
use crate::job::{JobInput, build_job};
use crate::lock::StageLocks;
use crate::plan::project::{ImagePlan, ProjectPlan};
use crate::pods::{self, BuilderPodRequest, PodOutcome, pod_outcome};
use crate::storage::{Freshness, OldestCreationTs, StageDescription, StageDigest, StagesStorage};

use super::observe::{
    Pass, live_builder_of, lookup_unit, pod_ref, pod_stage_digests, storage_error,
};

/// Copies the missing stages of a unit, in build order, from the first secondary repo that
/// has each (werf `--secondary-repo`: read-only stages storages; a stage found there is
/// copied into `repo` under its `DIGEST-TIMESTAMP` tag). Stops at the first stage no
/// secondary repo has (the stages after it need it as their parent). Call under the stage
/// locks. Returns whether anything was copied.
///
/// Errors: the registry refused a read or the copy.
pub async fn copy_from_secondary(
    storage: &StagesStorage,
    unit: &ImagePlan,
    found: &[Option<StageDescription>],
) -> Result<bool, Error> {
    if storage.repos().secondary_repos.is_empty() {
        return Ok(false);
    }
    let digests = lookup_digests(unit)?;
    let mut parent_ts = None;
    let mut copied = false;
    for (digest, stage) in digests.iter().zip(found) {
        if let Some(stage) = stage {
            parent_ts = Some(stage.stage_id.creation_ts_ms());
            continue;
        }
        let Some(digest) = digest else {
            break;
        };
        let d = StageDigest::from_str(digest)
            .map_err(|e| Error::Internal(format!("planned digest {digest}: {e}")))?;
        let Some(stage) = storage
            .find_in_secondary(&d, parent_ts, &OldestCreationTs)
            .await
            .map_err(storage_error(format!(
                "copying stages of image {:?} ({}) from the secondary repos",
                unit.name, unit.platform
            )))?
        else {
            break;
        };
        tracing::info!(image = %unit.name, platform = %unit.platform, stage = %stage.stage_id, "stage copied from a secondary repo");
        parent_ts = Some(stage.stage_id.creation_ts_ms());
        copied = true;
    }
    Ok(copied)
}

/// The act step for one image × platform's missing stages: a live builder of the first
/// missing stage elsewhere → wait for it; else take the stage locks of the missing digests
/// without blocking, re-check the storage with a fresh tags list (werf's publishing
/// protocol), take what the secondary repos have, and create the job ConfigMap and the
/// builder pod, whose leases are then held until it ends. A refused job frees the locks at
/// once and is returned with its error.
#[tracing::instrument(name = "act", skip_all, fields(image = %unit.name, platform = %unit.platform))]
pub async fn attempt_build(
    pass: &mut Pass<'_>,
    unit: &ImagePlan,
    view: &UnitView,
    missing: &[usize],
) -> Result<(Attempt, Option<Error>), Error> {
    let Pass {
        ib,
        ctx,
        plan,
        storage,
        staged,
        ..
    } = *pass;
    let missing_digests: Vec<String> = missing
        .iter()
        .filter_map(|&i| view.digests[i].clone())
        .collect();
    let platform = unit.platform.to_string();
    if let Some(other) = live_builder_of(
        ctx,
        &pass.namespace,
        &ib.spec.repo,
        &missing_digests[0],
        &pass.uid,
    )
    .await?
    {
        return Ok((Attempt::LiveBuilder(other), None));
    }
    let stage_locks = connect_locks(&mut pass.locks, ctx, plan).await?;
    let Some(guards) = take_all(stage_locks, &missing_digests).await? else {
        return Ok((Attempt::LockHeld, None));
    };
    let mut again = lookup_unit(storage, unit, Freshness::Fresh).await?;
    let mut copied = false;
    if missing.iter().any(|&i| again[i].is_none())
        && copy_from_secondary(storage, unit, &again).await?
    {
        copied = true;
        again = lookup_unit(storage, unit, Freshness::Cached).await?;
    }
    if missing.iter().all(|&i| again[i].is_some()) {
        release_guards(guards).await;
        let attempt = if copied {
            Attempt::CopiedFromSecondary
        } else {
            Attempt::FoundUnderLock
        };
        return Ok((attempt, None));
    }
    let job = match build_job(&JobInput {
        ib,
        network: pass.request.network,
        plan,
        unit,
        missing,
        found: &again,
        staged_stages: staged.stages(unit),
        dependency_args: &staged.dependency_args(unit),
        insecure_registries: &ctx.settings.insecure_registries,
    }) {
        Ok(job) => job,
        Err(e) => {
            // Refused (e.g. an unsupported instruction): free the stages now rather than
            // when the leases expire.
            release_guards(guards).await;
            return Ok((Attempt::Refused(e.to_string()), Some(e.into())));
        }
    };
    let job_json = job.to_json();
    let request = BuilderPodRequest {
        build: ib,
        image: &unit.name,
        platform: &platform,
        stage_digests: &missing_digests,
        job_json: &job_json,
        build_secrets: &secrets::mounted(&ib.spec, &job),
    };
    let (pod, config_map) = pods::builder_pod(&request, &ctx.settings.builder)?;
    let pod_name = pod.name_any();
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &pass.namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pass.namespace);
    create_or_adopt(maps.create(&PostParams::default(), &config_map).await)?;
    create_or_adopt(pods_api.create(&PostParams::default(), &pod).await)?;
    ctx.metrics.stages("built", missing_digests.len() as u64);
    ctx.leases.hold(&pod_name, guards).await;
    pass.pods_seen.push(pod_ref(&pod));
    tracing::info!(imagebuild = %ib.name_any(), pod = %pod_name, image = %unit.name, %platform, stages = missing_digests.len(), "builder pod created");
    Ok((Attempt::Created(pod_name), None))
}

async fn connect_locks<'a>(
    locks: &'a mut Option<StageLocks>,
    ctx: &Context,
    plan: &ProjectPlan,
) -> Result<&'a StageLocks, Error> {
    if locks.is_none() {
        *locks = Some(
            StageLocks::connect(
                ctx.client.clone(),
                &ctx.settings.lock_namespace,
                &plan.project,
            )
            .await
            .map_err(Error::Lock)?,
        );
    }
    Ok(locks.as_ref().expect("connected above"))
}

/// Settles the stage leases of this build's builder pods before it may finish: an ended
/// pod's leases are released; a running pod's (its stages can be found before the pod
/// exits) are held by this process, taken back if a previous operator process held them.
/// Returns the pods whose leases a previous operator process still holds (they expire
/// within the lease TTL). Without pods, or with every running pod's leases held here, no lock API call is made.
pub async fn settle_pod_leases(
    ctx: &Context,
    locks: &mut Option<StageLocks>,
    plan: &ProjectPlan,
    ours: &HashMap<String, Pod>,
) -> Result<Vec<String>, Error> {
    let mut unsettled = Vec::new();
    for (name, pod) in ours {
        let digests = pod_stage_digests(pod);
        let running = matches!(
            pod_outcome(pod),
            PodOutcome::Running | PodOutcome::Unschedulable { .. }
        );
        // Leases this process holds need no lock request: a running pod keeps them, an
        // ended pod's are released.
        if ctx.leases.holds(name).await {
            if !running {
                ctx.leases.release(name).await;
            }
            continue;
        }
        let locks = connect_locks(locks, ctx, plan).await?;
        let settled = if running {
            ctx.leases.keep(locks, name, &digests).await?;
            ctx.leases.holds(name).await
        } else {
            ctx.leases.release_of(locks, name, &digests).await?
        };
        if !settled {
            unsettled.push(name.clone());
        }
    }
    unsettled.sort();
    Ok(unsettled)
}

fn create_or_adopt<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        // Created by an earlier reconcile (operator restart): adopt it.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}
