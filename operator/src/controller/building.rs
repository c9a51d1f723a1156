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
use kiln_crds::job::{
    BuildJob, BuildResult, JOB_API_VERSION, NetworkMode, ParentRef, Source, SourceAuth, StageBuild,
    StageJob,
};
use kiln_crds::{BuilderPodRef, ImageBuild};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};

use super::staged::{StagedLookup, StagedUnits, lookup_digests, waiting_note};
use super::{Context, Error};
use crate::config::{ImageKind, WerfConfig};
use crate::lock::{LeaseGuard, StageLocks, TryAcquire};
use crate::plan::project::{ImageBuildKind, ImagePlan, ProjectPlan};
use crate::pods::names::{
    ANNOTATION_IMAGE, ANNOTATION_PLATFORM, ANNOTATION_REPO, ANNOTATION_STAGE_DIGESTS, stage_label,
};
use crate::pods::{self, BuilderPodRequest, PodOutcome, builder_pod_name, pod_outcome};
use crate::storage::{
    DockerConfig, Freshness, OldestCreationTs, RegistryClient, RegistryClientConfig, RepoRef,
    StageDescription, StageDigest, StagesStorage, StorageRepos,
};

/// werf's stage digest version salt (reference §1.2), for content digests.
const BUILD_CACHE_VERSION: &str = "1.2";

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

fn repo_ref(field: &str, value: &str) -> Result<RepoRef, Error> {
    RepoRef::from_str(value).map_err(storage_error(format!("{field} {value:?}")))
}

/// The stages storage view of `ib` for this reconcile: credentials from
/// `spec.registrySecretRef`, the four kinds of repos from the spec.
///
/// Errors: the Secret is missing or not a docker config; a repo is not a repository name.
pub async fn connect_storage(ib: &ImageBuild, ctx: &Context) -> Result<StagesStorage, Error> {
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
    let spec = &ib.spec;
    let repos = StorageRepos {
        repo: repo_ref("spec.repo", &spec.repo)?,
        final_repo: spec
            .final_repo
            .as_deref()
            .map(|r| repo_ref("spec.finalRepo", r))
            .transpose()?,
        secondary_repos: spec
            .secondary_repos
            .iter()
            .map(|r| repo_ref("spec.secondaryRepos", r))
            .collect::<Result<_, _>>()?,
        cache_repos: spec
            .cache_repos
            .iter()
            .map(|r| repo_ref("spec.cacheRepos", r))
            .collect::<Result<_, _>>()?,
    };
    let client = RegistryClient::new(RegistryClientConfig {
        credentials,
        plain_http_registries: ctx.settings.insecure_registries.clone(),
        ..RegistryClientConfig::default()
    });
    Ok(StagesStorage::new(client, repos))
}

/// The stage digests of an image × platform, in build order.
///
/// Errors: [`Error::Unsupported`] for Stapel images outside what Kiln builds
/// ([`super::stapel::unit_digests`]) and for stages whose digest waits on something not
/// built by this operator yet (a dependency's identifiers in a build arg, the image of
/// another Dockerfile stage of a staged Dockerfile).
pub fn unit_digests(unit: &ImagePlan) -> Result<Vec<String>, Error> {
    if unit.kind == ImageBuildKind::Stapel {
        return super::stapel::unit_digests(unit);
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

/// werf's stage content digest (reference §1.2): SHA3-224 over (platform unless
/// linux/amd64, "1.2", "<stage>-content", "", stage digest, "").
pub fn content_digest(platform: &str, stage_name: &str, digest: &str) -> String {
    let name = format!("{stage_name}-content");
    let mut parts: Vec<&str> = Vec::new();
    if !platform.is_empty() && platform != "linux/amd64" {
        parts.push(platform);
    }
    parts.extend([BUILD_CACHE_VERSION, name.as_str(), "", digest, ""]);
    crate::digest::sha3_224_hex(&parts)
}

fn join_path(dir: &str, file: &str) -> String {
    let dir = dir.trim_matches('/');
    if dir.is_empty() || dir == "." {
        file.to_owned()
    } else {
        format!("{dir}/{file}")
    }
}

/// The build job of an image × platform's missing stages: for a non-staged Dockerfile image
/// one `dockerfile` stage built with `buildah bud` from the commit's context; for a staged
/// one a stage per missing instruction ([`super::staged::stage_jobs`]), built on the last
/// stage the stages storage has (`staged.found`).
///
/// A Stapel image gets a stage per missing stage ([`super::stapel::stage_jobs`]), on the
/// last stage the stages storage has.
///
/// Errors: [`Error::Unsupported`] for Stapel images outside what Kiln builds and staged
/// stages the builder cannot build yet.
pub fn build_job(
    ib: &ImageBuild,
    config: &WerfConfig,
    plan: &ProjectPlan,
    unit: &ImagePlan,
    missing: &[usize],
    staged: StagedLookup<'_>,
    insecure_registries: &[String],
) -> Result<BuildJob, Error> {
    let image = config.image(&unit.name).ok_or_else(|| {
        Error::Internal(format!("planned image {:?} not in werf.yaml", unit.name))
    })?;
    let platform = unit.platform.to_string();
    let spec = &ib.spec;
    let auth = spec.source.git.secret_ref.as_ref().map(|_| {
        if spec.source.git.url.starts_with("http") {
            SourceAuth::Basic {
                username_path: format!("{}/username", pods::GIT_AUTH_DIR),
                password_path: format!("{}/password", pods::GIT_AUTH_DIR),
            }
        } else {
            SourceAuth::Ssh {
                private_key_path: format!("{}/ssh-privatekey", pods::GIT_AUTH_DIR),
                known_hosts_path: format!("{}/known_hosts", pods::GIT_AUTH_DIR),
            }
        }
    });
    let dockerfile = match &image.kind {
        ImageKind::Dockerfile(d) => Some(d),
        ImageKind::Stapel(_) => None,
    };
    let (stages, base_images) = if let ImageKind::Stapel(stapel) = &image.kind {
        let stages = super::stapel::stage_jobs(plan, unit, stapel, missing, staged.found)?;
        let base_images = stages
            .iter()
            .filter_map(|s| match &s.parent {
                ParentRef::Image { reference } if reference != "scratch" => Some(reference.clone()),
                _ => None,
            })
            .collect();
        (stages, base_images)
    } else if unit.kind == ImageBuildKind::StagedDockerfile {
        let planned = staged.units.stages(unit).ok_or_else(|| {
            Error::Internal(format!(
                "image {:?} ({platform}): staged stages were not resolved",
                unit.name
            ))
        })?;
        super::staged::stage_jobs(unit, planned, missing, staged.found)?
    } else {
        let stages = missing
            .iter()
            .map(|&i| {
                let s = &unit.stages[i];
                let digest = s.digest.clone().unwrap_or_default();
                StageJob {
                    content_digest: content_digest(&platform, &s.name, &digest),
                    name: s.name.clone(),
                    digest,
                    parent: ParentRef::None,
                    build: StageBuild::Dockerfile { dockerfile: None },
                    labels: BTreeMap::new(),
                }
            })
            .collect();
        (stages, Vec::new())
    };
    let context = dockerfile
        .and_then(|d| d.context.clone())
        .unwrap_or_default();
    Ok(BuildJob {
        api_version: JOB_API_VERSION.to_owned(),
        project: plan.project.clone(),
        image: unit.name.clone(),
        commit: Some(plan.commit.clone()),
        source: Some(Source {
            url: spec.source.git.url.clone(),
            commit: plan.commit.clone(),
            auth,
        }),
        dockerfile_path: join_path(
            &context,
            dockerfile.map_or("Dockerfile", |d| d.dockerfile.as_str()),
        ),
        context_dir: context,
        target: dockerfile.and_then(|d| d.target.clone()),
        // Dependency build args win over werf.yaml `args`, as in werf.
        build_args: {
            let mut args = dockerfile
                .and_then(|d| d.args_as_strings().ok())
                .unwrap_or_default();
            args.extend(staged.units.dependency_args(unit));
            args
        },
        add_hosts: dockerfile
            .map(|d| d.add_hosts().to_vec())
            .unwrap_or_default(),
        platform: Some(platform),
        network: match spec.network.as_deref() {
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            _ => NetworkMode::Default,
        },
        ssh_key_paths: (0..spec.ssh_key_secret_refs.len())
            .map(pods::ssh_key_path)
            .collect(),
        secrets: super::secrets::for_image(spec, config, &unit.name)?,
        registry_mirrors: spec.registry_mirrors.clone(),
        insecure_registries: insecure_registries.to_vec(),
        registry_auth_path: spec
            .registry_secret_ref
            .as_ref()
            .map(|_| pods::REGISTRY_AUTH_FILE.to_owned()),
        repo: spec.repo.clone(),
        cache_repos: spec.cache_repos.clone(),
        base_images,
        stages,
    })
}

/// The condition message of a failed builder pod: image, platform, stage, instruction,
/// exit code and the log tail.
pub fn failure_message(unit: &ImagePlan, pod: &str, outcome: &PodOutcome) -> Error {
    let head = format!("image {:?} ({})", unit.name, unit.platform);
    match outcome {
        PodOutcome::Terminated {
            exit_code,
            reason,
            message,
        } => match serde_json::from_str::<BuildResult>(message) {
            Ok(result) => match result.failure {
                Some(f) => Error::StageBuildFailed(format!(
                    "{head}, stage {} ({}), instruction `{}`{}: {}\n{}",
                    f.stage,
                    &f.digest[..12.min(f.digest.len())],
                    f.instruction,
                    f.exit_code
                        .map(|c| format!(" exited with {c}"))
                        .unwrap_or_default(),
                    f.message,
                    f.log_tail
                )),
                None => Error::BuilderPodFailed(format!(
                    "{head}: builder pod {pod} exited with {exit_code} ({reason}) without a failure record"
                )),
            },
            Err(_) => Error::BuilderPodFailed(format!(
                "{head}: builder pod {pod} exited with {exit_code} ({reason}); log tail:\n{message}"
            )),
        },
        PodOutcome::Lost { reason, message } => Error::BuilderPodFailed(format!(
            "{head}: builder pod {pod} ended without a result: {reason}: {message}"
        )),
        PodOutcome::Unschedulable { message, .. } => Error::BuilderPodFailed(format!(
            "{head}: builder pod {pod} cannot be scheduled: {message} (check spec.builder.nodeSelector, tolerations and resources, and that a node of the platform exists)"
        )),
        PodOutcome::Running => Error::Internal(format!("{head}: pod {pod} still running")),
    }
}

/// True when a pod unschedulable since `since` has been so for longer than `limit`.
fn unschedulable_too_long(since: k8s_openapi::jiff::Timestamp, limit: Duration) -> bool {
    let waited = k8s_openapi::jiff::Timestamp::now().duration_since(since);
    Duration::try_from(waited).is_ok_and(|w| w > limit)
}

/// True when a builder pod's termination message is a successful result.
pub fn succeeded(outcome: &PodOutcome) -> bool {
    matches!(outcome, PodOutcome::Terminated { exit_code: 0, message, .. }
        if serde_json::from_str::<BuildResult>(message).is_ok_and(|r| r.ok))
}

/// Where the current build set stands after one pass.
#[derive(Debug, Default)]
pub struct SetProgress {
    /// Index of the first incomplete set (== number of sets when everything is done).
    pub set: usize,
    /// Human-readable notes: what runs, what waits.
    pub notes: Vec<String>,
    /// Every builder pod of this build seen or created in this pass (for the status).
    pub pods: Vec<BuilderPodRef>,
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

/// One pass over the plan: returns when a set is incomplete (after starting what may
/// start) or when all sets are complete.
///
/// Errors: terminal failures (builder failed, registry refused) and API errors.
pub async fn advance(
    ib: &ImageBuild,
    ctx: &Context,
    config: &WerfConfig,
    plan: &ProjectPlan,
    storage: &StagesStorage,
    staged: &StagedUnits,
) -> Result<SetProgress, Error> {
    let namespace = ib.namespace().unwrap_or_default();
    let uid = ib.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let ours: HashMap<String, Pod> = pods_api
        .list(&ListParams::default().labels(&super::children_selector(ib)))
        .await?
        .into_iter()
        .filter(|p| super::owned_by(&p.metadata, &uid))
        .map(|p| (p.name_any(), p))
        .collect();
    let limit = ib.spec.effective_parallel_limit();
    let mut locks: Option<StageLocks> = None;
    let mut pods_seen: Vec<BuilderPodRef> = ours.values().map(pod_ref).collect();
    let unsettled = settle_pod_leases(ctx, &mut locks, plan, &ours).await?;
    for (set_index, set) in plan.sets.sets.iter().enumerate() {
        let mut progress = SetProgress {
            set: set_index,
            notes: Vec::new(),
            pods: Vec::new(),
        };
        let mut running = 0usize;
        let mut complete = true;
        for unit in plan.images.iter().filter(|u| set.contains(&u.name)) {
            // Its digests need a dependency published by a reconcile after this one.
            if let Some(note) = staged.deferred(unit) {
                complete = false;
                progress.notes.push(note.to_owned());
                continue;
            }
            let found = lookup_unit(storage, unit, Freshness::Cached).await?;
            // Stages without a digest yet (staged: on the image of a Dockerfile stage being
            // built) are computed by a later reconcile, once what they wait for is published.
            let digests = lookup_digests(unit)?;
            let waiting = waiting_note(unit);
            let missing: Vec<usize> = (0..found.len())
                .filter(|&i| found[i].is_none() && digests[i].is_some())
                .collect();
            if missing.is_empty() {
                if let Some(note) = waiting {
                    complete = false;
                    progress.notes.push(note);
                }
                continue;
            }
            let missing_digests: Vec<String> =
                missing.iter().filter_map(|&i| digests[i].clone()).collect();
            let platform = unit.platform.to_string();
            let pod_name = builder_pod_name(
                &ib.name_any(),
                &uid,
                &unit.name,
                &platform,
                &missing_digests,
            );
            if let Some(pod) =
                our_pod_for(&ours, &pod_name, &unit.name, &platform, &missing_digests)
            {
                let pod_name = pod.name_any();
                let outcome = pod_outcome(pod);
                match &outcome {
                    PodOutcome::Unschedulable {
                        since: Some(since), ..
                    } if unschedulable_too_long(
                        *since,
                        ctx.settings.builder.effective_schedule_timeout(),
                    ) =>
                    {
                        return Err(failure_message(unit, &pod_name, &outcome));
                    }
                    PodOutcome::Running | PodOutcome::Unschedulable { .. } => {
                        complete = false;
                        // Its leases were kept by `settle_pod_leases` above.
                        running += 1;
                        progress.notes.push(match &outcome {
                            PodOutcome::Unschedulable { message, .. } => {
                                format!("{} ({platform}) waits for a node: {message}", unit.name)
                            }
                            _ => format!("building {} ({platform})", unit.name),
                        });
                    }
                    _ => {
                        if !succeeded(&outcome) {
                            return Err(failure_message(unit, &pod_name, &outcome));
                        }
                        // Published; a fresh lookup must see it.
                        let again = lookup_unit(storage, unit, Freshness::Fresh).await?;
                        if missing.iter().any(|&i| again[i].is_none()) {
                            return Err(Error::BuilderPodFailed(format!(
                                "image {:?} ({platform}): builder pod {pod_name} reported success but the stages are not in {}",
                                unit.name, ib.spec.repo
                            )));
                        }
                        if let Some(note) = waiting {
                            complete = false;
                            progress.notes.push(note);
                        }
                    }
                }
                continue;
            }
            complete = false;
            if limit.is_some_and(|l| running >= l) {
                progress
                    .notes
                    .push(format!("{} ({platform}) waits for a free slot", unit.name));
                continue;
            }
            if let Some(other) =
                live_builder_of(ctx, &namespace, &ib.spec.repo, &missing_digests[0], &uid).await?
            {
                progress.notes.push(format!(
                    "{} ({platform}) waits for builder pod {other}, which builds the same stage",
                    unit.name
                ));
                continue;
            }
            let stage_locks = connect_locks(&mut locks, ctx, plan).await?;
            let Some(guards) = take_locks(stage_locks, &missing_digests).await? else {
                progress.notes.push(format!(
                    "{} ({platform}) waits for the lock of a stage another build publishes",
                    unit.name
                ));
                continue;
            };
            // Check again under the locks with a fresh tags list (werf's publishing protocol),
            // then take what the secondary repos have.
            let mut again = lookup_unit(storage, unit, Freshness::Fresh).await?;
            if missing.iter().any(|&i| again[i].is_none())
                && copy_from_secondary(storage, unit, &again).await?
            {
                again = lookup_unit(storage, unit, Freshness::Cached).await?;
            }
            if missing.iter().all(|&i| again[i].is_some()) {
                release(guards).await;
                continue;
            }
            let job = match build_job(
                ib,
                config,
                plan,
                unit,
                &missing,
                StagedLookup {
                    units: staged,
                    found: &again,
                },
                &ctx.settings.insecure_registries,
            ) {
                Ok(job) => job,
                Err(e) => {
                    // Refused (e.g. an unsupported instruction): free the stages now rather
                    // than when the leases expire.
                    release(guards).await;
                    return Err(e);
                }
            };
            let job_json = job.to_json();
            let request = BuilderPodRequest {
                build: ib,
                image: &unit.name,
                platform: &platform,
                stage_digests: &missing_digests,
                job_json: &job_json,
                build_secrets: &super::secrets::mounted(&ib.spec, &job),
            };
            let (pod, config_map) = pods::builder_pod(&request, &ctx.settings.builder)?;
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
            create_or_adopt(maps.create(&PostParams::default(), &config_map).await)?;
            create_or_adopt(pods_api.create(&PostParams::default(), &pod).await)?;
            ctx.metrics.stages("built", missing_digests.len() as u64);
            ctx.hold_leases(&pod_name, guards).await;
            pods_seen.push(pod_ref(&pod));
            running += 1;
            tracing::info!(imagebuild = %ib.name_any(), pod = %pod_name, image = %unit.name, %platform, stages = missing_digests.len(), "builder pod created");
            progress
                .notes
                .push(format!("building {} ({platform})", unit.name));
        }
        if !complete {
            progress.pods = pods_seen;
            return Ok(progress);
        }
    }
    if !unsettled.is_empty() {
        return Ok(SetProgress {
            set: plan.sets.sets.len().saturating_sub(1),
            notes: vec![format!(
                "waits for the stage leases of builder pods {} to expire (the operator restarted while they ran)",
                unsettled.join(", ")
            )],
            pods: pods_seen,
        });
    }
    Ok(SetProgress {
        set: plan.sets.sets.len(),
        notes: Vec::new(),
        pods: pods_seen,
    })
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

/// Keeps the stage leases of a running builder pod held by this operator. After an
/// operator restart they are gone from memory (the old process's leases run out 10 s
/// after it stopped renewing), and a lease can be lost when renewing failed for longer
/// than its TTL: in both cases take them again as soon as they are free, so the stages
/// the pod publishes stay locked until it ends.
async fn keep_leases(
    ctx: &Context,
    locks: &StageLocks,
    pod_name: &str,
    digests: &[String],
) -> Result<(), Error> {
    if ctx.holds_leases(pod_name).await {
        return Ok(());
    }
    ctx.release_leases(pod_name).await;
    if let Some(guards) = take_locks(locks, digests).await? {
        tracing::info!(pod = %pod_name, stages = digests.len(), "stage leases of a running builder pod taken again");
        ctx.hold_leases(pod_name, guards).await;
    }
    Ok(())
}

/// Settles the stage leases of this build's builder pods before it may finish: an ended
/// pod's leases are released; a running pod's (its stages can be found before the pod
/// exits) are held by this process, taken back if a previous operator process held them.
/// Returns the pods whose leases a previous operator process still holds (they expire
/// within the lease TTL). Without pods no lock API call is made.
async fn settle_pod_leases(
    ctx: &Context,
    locks: &mut Option<StageLocks>,
    plan: &ProjectPlan,
    ours: &HashMap<String, Pod>,
) -> Result<Vec<String>, Error> {
    let mut unsettled = Vec::new();
    for (name, pod) in ours {
        let locks = connect_locks(locks, ctx, plan).await?;
        let digests = pod_stage_digests(pod);
        let settled = match pod_outcome(pod) {
            PodOutcome::Running | PodOutcome::Unschedulable { .. } => {
                keep_leases(ctx, locks, name, &digests).await?;
                ctx.holds_leases(name).await
            }
            _ => release_leases_of(ctx, locks, name, &digests).await?,
        };
        if !settled {
            unsettled.push(name.clone());
        }
    }
    unsettled.sort();
    Ok(unsettled)
}

/// Releases the stage leases of a finished builder pod. Leases this process does not hold
/// (it restarted while the pod ran) are taken and released, so none is left behind;
/// `false` when one is still held by the previous holder (wait for it to expire).
async fn release_leases_of(
    ctx: &Context,
    locks: &StageLocks,
    pod_name: &str,
    digests: &[String],
) -> Result<bool, Error> {
    if ctx.holds_leases(pod_name).await {
        ctx.release_leases(pod_name).await;
        return Ok(true);
    }
    ctx.release_leases(pod_name).await;
    let mut stale = Vec::new();
    for digest in digests {
        let Some(record) = locks
            .locker()
            .read(&locks.lock_name(digest))
            .await
            .map_err(Error::Lock)?
        else {
            continue;
        };
        stale.push((digest.clone(), record));
    }
    if stale.is_empty() {
        return Ok(true);
    }
    let stale_digests: Vec<String> = stale.into_iter().map(|(d, _)| d).collect();
    match take_locks(locks, &stale_digests).await? {
        Some(guards) => {
            release(guards).await;
            Ok(true)
        }
        None => Ok(false),
    }
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
        .filter(|p| !super::owned_by(&p.metadata, own_uid))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.annotations().get(ANNOTATION_REPO).map(String::as_str) == Some(repo))
        .find(|p| pod_outcome(p) == PodOutcome::Running)
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())))
}

/// Takes every lock or none (non-blocking): `None` when one is held by someone else.
async fn take_locks(
    locks: &StageLocks,
    digests: &[String],
) -> Result<Option<Vec<LeaseGuard>>, Error> {
    let mut held = Vec::new();
    for digest in digests {
        match locks.try_acquire(digest).await {
            Ok(TryAcquire::Held(guard)) => held.push(guard),
            Ok(TryAcquire::MustWait { .. }) => {
                release(held).await;
                return Ok(None);
            }
            Err(e) => {
                release(held).await;
                return Err(Error::Lock(e));
            }
        }
    }
    Ok(Some(held))
}

async fn release(guards: Vec<LeaseGuard>) {
    for g in guards {
        if let Err(e) = g.release().await {
            tracing::warn!(error = %e, "releasing a stage lock failed; it expires on its own");
        }
    }
}

/// Releases leases held for a pod (they also expire 10 s after the holder stops renewing).
pub async fn release_all(guards: Vec<LeaseGuard>) {
    release(guards).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_follows_the_werf_formula() {
        let d = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";
        // Independently: SHA3-224("1.2:::dockerfile-content::::::<d>:::").
        // Computed with Python's hashlib.sha3_224 over the ":::"-joined parts.
        assert_eq!(
            content_digest("linux/amd64", "dockerfile", d),
            "3bb1594b36870a0afdadaf733612cc815f9b59e89c6e688b9e7820ad"
        );
        assert_eq!(
            content_digest("linux/arm64", "dockerfile", d),
            "663200ae712ed50339cc2bf159889e8ffb2fcb661774ef937fa09852"
        );
        assert_ne!(
            content_digest("linux/arm64", "dockerfile", d),
            content_digest("linux/amd64", "dockerfile", d)
        );
    }

    #[test]
    fn unschedulable_fails_only_after_the_limit() {
        let now = k8s_openapi::jiff::Timestamp::now();
        let ago = |s: i64| now - k8s_openapi::jiff::SignedDuration::from_secs(s);
        let limit = Duration::from_secs(600);
        assert!(!unschedulable_too_long(ago(30), limit));
        assert!(!unschedulable_too_long(ago(590), limit));
        assert!(unschedulable_too_long(ago(620), limit));
        // A clock skewed into the future never fails the build early.
        assert!(!unschedulable_too_long(ago(-60), limit));
    }

    #[test]
    fn dockerfile_paths_join_the_context() {
        assert_eq!(join_path("", "Dockerfile"), "Dockerfile");
        assert_eq!(join_path("frontend/", "Dockerfile"), "frontend/Dockerfile");
        assert_eq!(join_path(".", "Dockerfile"), "Dockerfile");
    }
}
