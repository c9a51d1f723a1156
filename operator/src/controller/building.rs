//! The Building phase, one pass per reconcile: connect the stages storage, then per image ×
//! platform of the current build set [`super::observe`] → [`super::decide::decide`] →
//! (for a `Build` step) [`super::act`] → decide again on what the attempt met; the set's
//! steps become the status (notes and a condition reason from their enums).
//!
//! Every pass recomputes the state from the outside world — which stages the stages
//! storage has, which builder pods exist — so a restarted operator continues where the last
//! one stopped and adopts the pods it created (their names are a function of build, image,
//! platform and stage digests). At most `parallelTasksLimit` builder pods run per set; the
//! stage leases of a pod are held by [`super::leases::LeaseKeeper`] until it ends.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kiln_crds::{BuilderPodRef, ImageBuild};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::act::{attempt_build, settle_pod_leases};
use super::children::{children_selector, owned_by};
use super::context::Context;
use super::decide::{self, Limits, UnitStep, WaitReason};
use super::error::Error;
use super::observe::{Pass, observe_unit, pod_ref, storage_error};
use super::request::BuildRequest;
use crate::facts::StagedUnits;
use crate::plan::project::ProjectPlan;
use crate::storage::{DockerConfig, RegistryClient, RegistryClientConfig, StagesStorage};

/// How long to wait before looking again while builder pods run or locks are held.
pub const POLL: Duration = Duration::from_secs(3);

/// The stages storage view of `ib` for this reconcile: credentials from
/// `spec.registrySecretRef` (read once per build generation and `commit`, then from
/// [`Context::cache`]), the four kinds of repos from the request.
///
/// Errors: the Secret is missing or not a docker config.
pub async fn connect_storage(
    ib: &ImageBuild,
    ctx: &Context,
    request: &BuildRequest,
    commit: &str,
) -> Result<StagesStorage, Error> {
    let uid = ib.uid().unwrap_or_default();
    let generation = ib.metadata.generation;
    let credentials = match ctx.cache.credentials(&uid, generation, commit) {
        Some(credentials) => credentials,
        None => {
            let credentials = registry_credentials(ib, ctx).await?;
            ctx.cache
                .store_credentials(&uid, generation, commit, credentials.clone());
            credentials
        }
    };
    let repos = request.repos.clone();
    let client = RegistryClient::new(RegistryClientConfig {
        credentials,
        plain_http_registries: ctx.settings.insecure_registries.clone(),
        ..RegistryClientConfig::default()
    });
    Ok(StagesStorage::new(client, repos))
}

/// The registry credentials of `spec.registrySecretRef` (anonymous without one), read from
/// the API.
///
/// Errors: [`Error::SecretNotFound`]; [`Error::Storage`] when the Secret is not a valid
/// docker config; API errors.
async fn registry_credentials(ib: &ImageBuild, ctx: &Context) -> Result<DockerConfig, Error> {
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
    Ok(credentials)
}

pub use super::staged::unit_digests;

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

pub use super::observe::lookup_unit;
