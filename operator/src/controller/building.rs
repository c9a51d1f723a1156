//! Building phase: stage lookup, stage locks, builder pods and their results, set by set.
//!
//! Every reconcile recomputes the state from the outside world — the plan from the pinned
//! commit, which stages the stages storage has, which builder pods exist — so a restarted
//! operator continues where the last one stopped and adopts the pods it created (their
//! names are a function of build, image, platform and stage digests).
//!
//! Per image × platform of the current build set:
//! 1. look up each stage digest in the stages storage (oldest valid tag wins);
//! 2. all found → done; else look at our builder pod for it: running → wait; succeeded →
//!    its stages are published (the next lookup finds them); failed → the build fails with
//!    image, stage, instruction and log tail;
//! 3. no pod yet: if a live builder pod of any ImageBuild already builds the first missing
//!    digest in the same stages storage, wait for it; else take the stage locks of the
//!    missing digests without blocking, re-check the storage with a fresh tags list, and
//!    create the job ConfigMap and the pod (at most `parallelTasksLimit` running per set).
//!    The leases are renewed in the background until the pod ends.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kiln_crds::{BuilderPodRef, ImageBuild};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};

use super::children::{children_selector, owned_by};
use super::context::Context;
use super::decide::{self, Attempt, Limits, OwnPod, UnitStep, UnitView, WaitReason};
use super::error::Error;
use super::job::{JobInput, build_job};
use super::leases::{release_guards, take_all};
use super::request::BuildRequest;
use super::secrets;
use super::staged::{StagedLookup, StagedUnits, lookup_digests, waiting_stages};
use crate::lock::StageLocks;
use crate::plan::project::{ImagePlan, ProjectPlan};
use crate::pods::names::{
    ANNOTATION_IMAGE, ANNOTATION_PLATFORM, ANNOTATION_REPO, ANNOTATION_STAGE_DIGESTS, stage_label,
};
use crate::pods::{self, BuilderPodRequest, PodOutcome, builder_pod_name, pod_outcome};
use crate::storage::{
    DockerConfig, Freshness, OldestCreationTs, RegistryClient, RegistryClientConfig,
    StageDescription, StageDigest, StagesStorage,
};

/// How long to wait before looking again while builder pods run or locks are held.
pub const POLL: Duration = Duration::from_secs(3);

fn storage_error(
    operation: impl Into<String>,
) -> impl FnOnce(crate::storage::StorageError) -> Error {
    let operation = operation.into();
    move |source| Error::Storage {
        operation,
        source: Box::new(source),
    }
}

/// The stages storage view of `ib` for this reconcile: credentials from
/// `spec.registrySecretRef`, the four kinds of repos from the request.
///
/// Errors: the Secret is missing or not a docker config.
pub async fn connect_storage(
    ib: &ImageBuild,
    ctx: &Context,
    request: &BuildRequest,
) -> Result<StagesStorage, Error> {
    let mut credentials = DockerConfig::anonymous();
    if let Some(secret_ref) = &ib.spec.registry_secret_ref {
        let namespace = ib.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        let secret =
            secrets
                .get_opt(&secret_ref.name)
                .await?
                .ok_or_else(|| Error::SecretNotFound {
                    name: secret_ref.name.clone(),
                    namespace,
                    field: "spec.registrySecretRef",
                })?;
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        credentials = DockerConfig::from_secret_data(&secret_ref.name, &data)
            .map_err(storage_error("spec.registrySecretRef"))?;
    }
    let repos = request.repos.clone();
    let client = RegistryClient::new(RegistryClientConfig {
        credentials,
        plain_http_registries: ctx.settings.insecure_registries.clone(),
        ..RegistryClientConfig::default()
    });
    Ok(StagesStorage::new(client, repos))
}

pub use super::staged::unit_digests;

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

/// One image × platform's step in a pass, or the build's own step (`image` empty) after
/// every set is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitProgress {
    /// The werf.yaml image; empty for a step of the whole build.
    pub image: String,
    /// Its platform (`linux/amd64`).
    pub platform: String,
    /// What it does next.
    pub step: UnitStep,
}

impl UnitProgress {
    /// The progress note of this step; `None` when it is done.
    pub fn note(&self) -> Option<String> {
        match &self.step {
            UnitStep::Done | UnitStep::Fail(_) => None,
            UnitStep::Wait(WaitReason::OwnPod { .. }) | UnitStep::Build { .. } => {
                Some(format!("building {} ({})", self.image, self.platform))
            }
            UnitStep::Wait(w) if self.image.is_empty() => Some(w.to_string()),
            UnitStep::Wait(w) => Some(format!("{} ({}) {w}", self.image, self.platform)),
        }
    }
}

/// Where the current build set stands after one pass.
#[derive(Debug, Default)]
pub struct SetProgress {
    /// Index of the first incomplete set (== number of sets when everything is done).
    pub set: usize,
    /// The step of each image × platform of that set.
    pub steps: Vec<UnitProgress>,
    /// Every builder pod of this build seen or created in this pass (for the status).
    pub pods: Vec<BuilderPodRef>,
}

impl SetProgress {
    /// Human-readable notes: what runs, what waits.
    pub fn notes(&self) -> Vec<String> {
        self.steps.iter().filter_map(UnitProgress::note).collect()
    }

    /// The condition reason of the set ([`decide::set_reason`]).
    pub fn reason(&self) -> kiln_crds::Reason {
        decide::set_reason(self.steps.iter().map(|u| &u.step))
    }
}

/// The status record of one of our builder pods, from its annotations.
fn pod_ref(pod: &Pod) -> BuilderPodRef {
    let annotation = |key: &str| pod.annotations().get(key).cloned().unwrap_or_default();
    BuilderPodRef {
        name: pod.name_any(),
        image: annotation(ANNOTATION_IMAGE),
        platform: annotation(ANNOTATION_PLATFORM),
    }
}

/// What one pass reads and writes besides the plan: the build, its pods, the stages
/// storage, the staged facts, the lock store (connected on first use).
struct Pass<'a> {
    ib: &'a ImageBuild,
    ctx: &'a Context,
    request: &'a BuildRequest,
    plan: &'a ProjectPlan,
    storage: &'a StagesStorage,
    staged: &'a StagedUnits,
    namespace: String,
    uid: String,
    ours: HashMap<String, Pod>,
    locks: Option<StageLocks>,
    pods_seen: Vec<BuilderPodRef>,
}

/// One pass over the plan: returns when a set is incomplete (after starting what may
/// start) or when all sets are complete. Per image × platform: observe ([`observe_unit`]),
/// [`decide::decide`], and for a [`UnitStep::Build`] act ([`attempt_build`]) and decide
/// again on what the attempt met.
///
/// Errors: terminal failures (builder failed, registry refused) and API errors.
#[tracing::instrument(skip_all)]
pub async fn advance(
    ib: &ImageBuild,
    ctx: &Context,
    request: &BuildRequest,
    plan: &ProjectPlan,
    storage: &StagesStorage,
    staged: &StagedUnits,
) -> Result<SetProgress, Error> {
    let namespace = ib.namespace().unwrap_or_default();
    let uid = ib.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let ours: HashMap<String, Pod> = pods_api
        .list(&ListParams::default().labels(&children_selector(ib)))
        .await?
        .into_iter()
        .filter(|p| owned_by(&p.metadata, &uid))
        .map(|p| (p.name_any(), p))
        .collect();
    let mut pass = Pass {
        ib,
        ctx,
        request,
        plan,
        storage,
        staged,
        namespace,
        uid,
        pods_seen: ours.values().map(pod_ref).collect(),
        ours,
        locks: None,
    };
    let unsettled = settle_pod_leases(ctx, &mut pass.locks, plan, &pass.ours).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    for (set_index, set) in plan.sets.sets.iter().enumerate() {
        let mut steps = Vec::new();
        let mut running = 0usize;
        for unit in plan.images.iter().filter(|u| set.contains(&u.name)) {
            let limits = Limits {
                running,
                parallel: request.parallel_limit,
                schedule_timeout: ctx.settings.builder.effective_schedule_timeout(),
                now,
            };
            let mut view = observe_unit(&pass, unit).await?;
            let mut step = decide::decide(&view, limits);
            let mut refusal = None;
            if let UnitStep::Build { missing } = &step {
                let (attempt, error) = attempt_build(&mut pass, unit, &view, missing).await?;
                refusal = error;
                view.attempt = Some(attempt);
                step = decide::decide(&view, limits);
            }
            if let UnitStep::Fail(failure) = step {
                return Err(refusal.unwrap_or_else(|| {
                    failure.into_error(&unit.name, &unit.platform.to_string(), &ib.spec.repo)
                }));
            }
            if step.occupies_slot() {
                running += 1;
            }
            steps.push(UnitProgress {
                image: unit.name.clone(),
                platform: unit.platform.to_string(),
                step,
            });
        }
        if steps.iter().any(|u| u.step != UnitStep::Done) {
            return Ok(SetProgress {
                set: set_index,
                steps,
                pods: pass.pods_seen,
            });
        }
    }
    let step = decide::settle(&unsettled);
    if step != UnitStep::Done {
        return Ok(SetProgress {
            set: plan.sets.sets.len().saturating_sub(1),
            steps: vec![UnitProgress {
                image: String::new(),
                platform: String::new(),
                step,
            }],
            pods: pass.pods_seen,
        });
    }
    Ok(SetProgress {
        set: plan.sets.sets.len(),
        steps: Vec::new(),
        pods: pass.pods_seen,
    })
}

/// The observe step for one image × platform: its deferral, the stages found (cached tags
/// list), our builder pod for its missing stages, and — when that pod succeeded — a fresh
/// lookup of its stages.
#[tracing::instrument(name = "observe", skip_all, fields(image = %unit.name, platform = %unit.platform))]
async fn observe_unit(pass: &Pass<'_>, unit: &ImagePlan) -> Result<UnitView, Error> {
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
    if missing.is_empty() {
        return Ok(view);
    }
    let missing_digests: Vec<String> = missing
        .iter()
        .filter_map(|&i| view.digests[i].clone())
        .collect();
    let platform = unit.platform.to_string();
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

/// The act step for one image × platform's missing stages: a live builder of the first
/// missing stage elsewhere → wait for it; else take the stage locks of the missing digests
/// without blocking, re-check the storage with a fresh tags list (werf's publishing
/// protocol), take what the secondary repos have, and create the job ConfigMap and the
/// builder pod, whose leases are then held until it ends. A refused job frees the locks at
/// once and is returned with its error.
#[tracing::instrument(name = "act", skip_all, fields(image = %unit.name, platform = %unit.platform))]
async fn attempt_build(
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
        request: pass.request,
        plan,
        unit,
        missing,
        staged: StagedLookup {
            units: staged,
            found: &again,
        },
        insecure_registries: &ctx.settings.insecure_registries,
    }) {
        Ok(job) => job,
        Err(e) => {
            // Refused (e.g. an unsupported instruction): free the stages now rather than
            // when the leases expire.
            release_guards(guards).await;
            return Ok((Attempt::Refused(e.to_string()), Some(e)));
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
    ours.get(pod_name).or_else(|| {
        ours.values().find(|p| {
            let a = p.annotations();
            a.get(ANNOTATION_IMAGE).map(String::as_str) == Some(image)
                && a.get(ANNOTATION_PLATFORM).map(String::as_str) == Some(platform)
                && p.metadata.deletion_timestamp.is_none()
                && pod_stage_digests(p)
                    .iter()
                    .any(|d| missing_digests.contains(d))
        })
    })
}

/// The stage digests a builder pod was created for (its stage-digests annotation).
fn pod_stage_digests(pod: &Pod) -> Vec<String> {
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
async fn settle_pod_leases(
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

/// A live builder pod of another ImageBuild that builds `digest` into `repo`: looked for in
/// every namespace, or only in `namespace` (the build's own) when the operator may not
/// list pods cluster-wide (`watchNamespaces` RBAC). Builds in other namespaces are then
/// still kept apart by the stage locks, which the creator of a builder pod holds while it
/// runs; this look-up only saves lock requests and covers the lease gap after an
/// operator restart.
pub(super) async fn live_builder_of(
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
