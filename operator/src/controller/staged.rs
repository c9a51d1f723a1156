//! Staged Dockerfile images (`staged: true`) in the controller: their final stage digests,
//! computed at Building time with the build-time facts the offline plan lacks, and the
//! builder job of their missing stages.
//!
//! The planner computes staged digests offline; a stage whose digest needs a base image's
//! environment (a `RUN`, an expansion that falls through to the base `ENV`) or the built
//! image name of another Dockerfile stage is *provisional* there (werf reads these facts
//! while building). Here, per image × platform, the facts are fetched before each digest
//! computation — the `Env` of the base image's config from its registry (docker.io images
//! through `spec.registryMirrors` first, as the builder pulls them; [`super::base_image`])
//! and the image name `REPO:DIGEST-TIMESTAMP` of a stage found in the stages storage — and
//! the digests are computed again, until no new fact is asked for. The resolved digests
//! replace the plan's, so lookup, locks, pod names and the build report all use them.
//!
//! Images with dependency build args (`dependencies[].imports[].targetBuildArg`) are
//! computed here too, from the dependency's published image; until it is published the
//! image is deferred (the build sets build it first).
//!
//! A stage that stays provisional (its digest needs the image of a Dockerfile stage that is
//! not built yet: a multi-stage staged Dockerfile) gets no digest and names what it waits
//! for ([`lookup_digests`] gives `None`). The controller builds the stages that have a
//! digest — the Dockerfile stages it waits for come first in build order — and the next
//! reconcile, finding their images in the stages storage, computes the rest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use kiln_crds::ImageBuild;
use kiln_crds::job::{Instruction, ParentRef, StageBuild, StageJob};

use super::error::Error;
use super::request::BuildRequest;
use kiln_crds::werf::content_digest;

use super::base_image::base_image_env;
use super::cache::BaseEnvs;
use crate::config::ImageKind;
use crate::digest::staged::{StageBase, StagedInputs, StagedStep};
use crate::digest::{DockerfileImageInput, PlannedStage, StagedMode, dockerfile_image_stages_with};
use crate::plan::project::{ImageBuildKind, ImagePlan, ProjectPlan, StagePlan};
use crate::source::GitTree;
use crate::storage::{
    Freshness, OldestCreationTs, StageDescription, StageDigest, StagesStorage, StorageError,
};

/// The resolved stages of every staged image × platform of a plan, keyed by image name and
/// platform (`linux/amd64`), in build order; each carries how the builder builds it.
#[derive(Debug, Default)]
pub struct StagedUnits {
    units: HashMap<(String, String), Vec<PlannedStage>>,
    /// Dependency build args per image × platform.
    dependency_args: HashMap<(String, String), BTreeMap<String, String>>,
    /// Image × platforms whose dependency is not published yet, with that dependency.
    deferred: HashMap<(String, String), String>,
}

impl StagedUnits {
    /// The dependency build args of `unit` (`dependencies[].imports` into build args),
    /// empty when it has none.
    pub fn dependency_args(&self, unit: &ImagePlan) -> BTreeMap<String, String> {
        self.dependency_args
            .get(&(unit.name.clone(), unit.platform.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// The dependency `unit` waits for when it is not published yet.
    pub fn deferred_on(&self, unit: &ImagePlan) -> Option<&str> {
        self.deferred
            .get(&(unit.name.clone(), unit.platform.to_string()))
            .map(String::as_str)
    }

    /// The resolved stages of `unit`, when it is a staged image.
    pub fn stages(&self, unit: &ImagePlan) -> Option<&[PlannedStage]> {
        self.units
            .get(&(unit.name.clone(), unit.platform.to_string()))
            .map(Vec::as_slice)
    }
}

/// What [`super::job::build_job`] needs for a staged image: the resolved stages and
/// the stages storage's answer for each stage of the image × platform.
#[derive(Debug, Clone, Copy)]
pub struct StagedLookup<'a> {
    /// The resolved staged stages of the plan.
    pub units: &'a StagedUnits,
    /// One entry per stage of the unit: the stage found in the stages storage, if any.
    pub found: &'a [Option<StageDescription>],
}

/// Build-time facts gathered so far for one image × platform.
#[derive(Debug, Default, Clone)]
struct Facts {
    /// (base reference, platform) → its config's `Env`.
    envs: HashMap<(String, String), BTreeMap<String, String>>,
    /// (werf image, last stage digest) → the stage's image name; `None` = not in the storage.
    names: HashMap<(String, String), Option<String>>,
}

/// A fact the digest computation asked for and [`Facts`] does not hold yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Miss {
    Env { reference: String, platform: String },
    Name { werf_image: String, digest: String },
}

/// [`StagedInputs`] answering from [`Facts`] and recording what it could not answer.
struct Recording<'a> {
    facts: &'a Facts,
    misses: Mutex<Vec<Miss>>,
}

impl Recording<'_> {
    fn miss(&self, miss: Miss) {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        if !misses.contains(&miss) {
            misses.push(miss);
        }
    }
}

impl StagedInputs for Recording<'_> {
    fn base_image_env(&self, reference: &str, platform: &str) -> Option<BTreeMap<String, String>> {
        let key = (reference.to_owned(), platform.to_owned());
        match self.facts.envs.get(&key) {
            Some(env) => Some(env.clone()),
            None => {
                self.miss(Miss::Env {
                    reference: key.0,
                    platform: key.1,
                });
                None
            }
        }
    }

    fn stage_image_name(&self, werf_image: &str, last_stage_digest: &str) -> Option<String> {
        let key = (werf_image.to_owned(), last_stage_digest.to_owned());
        match self.facts.names.get(&key) {
            Some(name) => name.clone(),
            None => {
                self.miss(Miss::Name {
                    werf_image: key.0,
                    digest: key.1,
                });
                None
            }
        }
    }
}

/// What the digest computation of one image × platform reads, owned so that it can run on
/// a blocking thread.
#[derive(Debug, Clone)]
struct UnitInput {
    mirror: PathBuf,
    commit: String,
    image: String,
    context: String,
    dockerfile: String,
    target: Option<String>,
    args: BTreeMap<String, String>,
    dependency_args: BTreeMap<String, String>,
    add_hosts: Vec<String>,
    context_add_files: Vec<String>,
    cache_version: Option<String>,
    mode: StagedMode,
    platform: String,
    digest_mode: crate::digest::DigestMode,
}

impl UnitInput {
    fn compute(&self, facts: &Facts) -> Result<(Vec<PlannedStage>, Vec<Miss>), Error> {
        let plan_error = |e| Error::Plan(crate::plan::project::ProjectPlanError::Source(e));
        let tree = GitTree::open(&self.mirror, Some(&self.commit)).map_err(plan_error)?;
        let input = DockerfileImageInput {
            image: &self.image,
            context: &self.context,
            dockerfile: &self.dockerfile,
            target: self.target.as_deref(),
            args: &self.args,
            dependency_args: &self.dependency_args,
            add_hosts: &self.add_hosts,
            context_add_files: &self.context_add_files,
            cache_version: self.cache_version.as_deref(),
            staged: self.mode,
            platform: &self.platform,
            digest_mode: self.digest_mode,
        };
        let recording = Recording {
            facts,
            misses: Mutex::new(Vec::new()),
        };
        let stages = dockerfile_image_stages_with(&tree, &input, &recording)
            .map_err(|e| Error::Plan(e.into()))?;
        let misses = recording
            .misses
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        Ok((stages, misses))
    }
}

/// Replaces the digests of every staged image × platform of `plan` with the ones computed
/// with build-time facts (see the module docs), and those of every Dockerfile image with
/// dependency build args (`dependencies[].imports[].targetBuildArg`) with the ones computed
/// from the published dependency; returns how each staged stage is built and the dependency
/// build args of each image × platform.
///
/// An image whose dependency is not published yet is *deferred* ([`StagedUnits::deferred_on`]):
/// the build set order builds the dependency first, and a later reconcile resolves it.
///
/// Errors: [`Error::Storage`] when a base image's config cannot be read from any of its
/// registries (naming image, platform and base) or a lookup fails, [`Error::Plan`] for a
/// source or Dockerfile error, [`Error::Unsupported`] for a dependency Kiln does not build
/// for the platform (a Stapel image).
#[tracing::instrument(name = "facts", skip_all)]
pub async fn resolve(
    ib: &ImageBuild,
    request: &BuildRequest,
    plan: &mut ProjectPlan,
    storage: &StagesStorage,
    mirror: &Path,
    envs: &mut BaseEnvs,
) -> Result<StagedUnits, Error> {
    let staged_version = request.staged_mode;
    let mut out = StagedUnits::default();
    let ProjectPlan {
        images,
        config,
        commit,
        digest_mode,
        ..
    } = plan;
    for index in 0..images.len() {
        let unit = &images[index];
        let key = (unit.name.clone(), unit.platform.to_string());
        let image = config.image(&unit.name).ok_or_else(|| {
            Error::Internal(format!("planned image {:?} not in werf.yaml", unit.name))
        })?;
        let ImageKind::Dockerfile(d) = &image.kind else {
            continue;
        };
        let imports = dependency_imports(image);
        let dependency_args = if imports.is_empty() {
            BTreeMap::new()
        } else {
            match dependency_args(&images[..index], unit, &imports, storage).await? {
                Ok(args) => args,
                Err(waits_for) => {
                    out.deferred.insert(key, waits_for);
                    continue;
                }
            }
        };
        let mode = match unit.kind {
            ImageBuildKind::StagedDockerfile => staged_version,
            ImageBuildKind::Dockerfile if !imports.is_empty() => StagedMode::NonStaged,
            _ => continue,
        };
        let input = UnitInput {
            mirror: mirror.to_owned(),
            commit: commit.clone(),
            image: unit.name.clone(),
            context: d.context.clone().unwrap_or_default(),
            dockerfile: d.dockerfile.clone(),
            target: d.target.clone(),
            args: d.args_as_strings().unwrap_or_default(),
            dependency_args: dependency_args.clone(),
            add_hosts: d.add_hosts().to_vec(),
            context_add_files: d.context_add_files().to_vec(),
            cache_version: config.effective_cache_version(image).map(str::to_owned),
            mode,
            platform: unit.platform.to_string(),
            digest_mode: *digest_mode,
        };
        let stages = resolve_unit(ib, storage, &input, envs).await?;
        images[index].stages = resolved_stage_plans(&stages);
        if !dependency_args.is_empty() {
            out.dependency_args.insert(key.clone(), dependency_args);
        }
        if mode != StagedMode::NonStaged {
            out.units.insert(key, stages);
        }
    }
    Ok(out)
}

/// One `dependencies[].imports[]` entry into a build arg: (build arg, dependency image,
/// import type).
type BuildArgImport = (String, String, String);

fn dependency_imports(image: &crate::config::ImageConfig) -> Vec<BuildArgImport> {
    image
        .dependencies()
        .iter()
        .flat_map(|dep| {
            dep.imports.iter().filter_map(move |import| {
                import
                    .target_build_arg
                    .as_ref()
                    .map(|arg| (arg.clone(), dep.image.clone(), import.kind.clone()))
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
/// Errors: [`Error::Unsupported`] when the dependency is not planned for the platform or is
/// not built by Kiln; [`Error::Storage`] when the lookup fails.
async fn dependency_args(
    earlier: &[ImagePlan],
    unit: &ImagePlan,
    imports: &[BuildArgImport],
    storage: &StagesStorage,
) -> Result<Result<BTreeMap<String, String>, String>, Error> {
    let mut args = BTreeMap::new();
    let mut published: HashMap<String, StageDescription> = HashMap::new();
    for (arg, dependency, kind) in imports {
        if !published.contains_key(dependency) {
            let dep = earlier
                .iter()
                .find(|u| &u.name == dependency && u.platform == unit.platform)
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "image {:?} ({}): dependency {dependency:?} is not built for this platform before it",
                        unit.name, unit.platform
                    ))
                })?;
            if dep.kind == ImageBuildKind::Stapel {
                return Err(Error::Unsupported(format!(
                    "image {:?}: dependency {dependency:?} is a Stapel image, not built by Kiln yet",
                    unit.name
                )));
            }
            let Some(Some(last)) = dep.stages.last().map(|s| s.digest.clone()) else {
                return Ok(Err(dependency.clone()));
            };
            let digest = StageDigest::from_str(&last)
                .map_err(|e| Error::Internal(format!("planned digest {last}: {e}")))?;
            let found = storage
                .find_stage(&digest, None, &OldestCreationTs, Freshness::Cached)
                .await
                .map_err(|source| Error::Storage {
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
        args.insert(arg.clone(), import_value(stage, kind));
    }
    Ok(Ok(args))
}

/// The value of one dependency import type for a published image, as werf passes it:
/// `ImageName` `REPO:TAG`, `ImageTag` `DIGEST-TIMESTAMP`, `ImageRepo` `REPO`, `ImageID` the
/// config digest, `ImageDigest` the manifest digest; an unknown type (refused when
/// werf.yaml is read) gives `""`.
pub fn import_value(stage: &StageDescription, kind: &str) -> String {
    match kind {
        "ImageName" => stage.image_name(),
        "ImageTag" => stage.stage_id.tag(),
        "ImageRepo" => stage.repo.to_string(),
        "ImageID" => stage.image_id().unwrap_or_default().to_owned(),
        "ImageDigest" => stage.manifest_digest.clone(),
        _ => String::new(),
    }
}

/// What a resolved stage without a digest waits for, as its `pending_on` starts.
const WAITS_FOR_STAGE_IMAGES: &str = "the built images of the Dockerfile stages";

/// The plan's view of resolved stages: a provisional stage has no digest and says what it
/// waits for.
fn resolved_stage_plans(stages: &[PlannedStage]) -> Vec<StagePlan> {
    stages
        .iter()
        .map(|s| StagePlan {
            name: s.name.clone(),
            digest: (!s.provisional).then(|| s.digest.clone()),
            provisional: None,
            instruction: s.instruction.clone(),
            pending_on: if s.provisional {
                vec![format!(
                    "{WAITS_FOR_STAGE_IMAGES} that {} is built on or copies from",
                    s.werf_image.as_deref().unwrap_or("the stage")
                )]
            } else {
                Vec::new()
            },
            built_by: None,
            werf_image: s.werf_image.clone(),
        })
        .collect()
}

fn waits_for_stage_images(stage: &StagePlan) -> bool {
    stage.digest.is_none()
        && !stage.pending_on.is_empty()
        && stage
            .pending_on
            .iter()
            .all(|p| p.starts_with(WAITS_FOR_STAGE_IMAGES))
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

/// Computes, fetches what was asked for, computes again — until nothing new is asked. Each
/// round answers at least one new question, and there are at most two per Dockerfile stage,
/// so the loop ends; the bound only guards against a bug.
async fn resolve_unit(
    ib: &ImageBuild,
    storage: &StagesStorage,
    input: &UnitInput,
    envs: &mut BaseEnvs,
) -> Result<Vec<PlannedStage>, Error> {
    // Base-image environments read by an earlier unit or pass of this build generation.
    let mut facts = Facts {
        envs: envs.clone(),
        ..Facts::default()
    };
    for _ in 0..64 {
        let (stages, misses) = {
            let input = input.clone();
            let facts = facts.clone();
            tokio::task::spawn_blocking(move || input.compute(&facts))
                .await
                .map_err(|e| Error::Internal(format!("staged digest task: {e}")))??
        };
        if misses.is_empty() {
            return Ok(stages);
        }
        for miss in misses {
            match miss {
                Miss::Env {
                    reference,
                    platform,
                } => {
                    let env = base_image_env(
                        storage.client(),
                        &ib.spec.registry_mirrors,
                        &reference,
                        &platform,
                    )
                    .await
                    .map_err(|source| {
                        let operation = format!(
                            "image {:?} ({platform}): reading the environment of base image {reference:?}",
                            input.image
                        );
                        if source.is_not_found() {
                            Error::BaseImageNotFound {
                                message: format!("{operation}: no registry has it"),
                                source: Box::new(source),
                            }
                        } else {
                            Error::Storage {
                                operation,
                                source: Box::new(source),
                            }
                        }
                    })?;
                    envs.insert((reference.clone(), platform.clone()), env.clone());
                    facts.envs.insert((reference, platform), env);
                }
                Miss::Name { werf_image, digest } => {
                    let name = stage_image_name(storage, &digest).await.map_err(|source| {
                        Error::Storage {
                            operation: format!(
                                "image {:?} ({}): looking up stage {digest} of {werf_image:?}",
                                input.image, input.platform
                            ),
                            source: Box::new(source),
                        }
                    })?;
                    facts.names.insert((werf_image, digest), name);
                }
            }
        }
    }
    Err(Error::Internal(format!(
        "image {:?} ({}): staged digests did not settle",
        input.image, input.platform
    )))
}

/// The image name (`REPO:DIGEST-TIMESTAMP`) of the stage with `digest`, when the stages
/// storage has it.
async fn stage_image_name(
    storage: &StagesStorage,
    digest: &str,
) -> Result<Option<String>, StorageError> {
    let Ok(d) = StageDigest::from_str(digest) else {
        return Ok(None);
    };
    Ok(storage
        .find_stage(&d, None, &OldestCreationTs, Freshness::Cached)
        .await?
        .map(|s| s.image_name()))
}

/// The builder job stages of a staged image × platform's `missing` stages (indices into
/// `stages`, ascending; `found` has the stages storage's answer for every stage), and the
/// external images the job reads (`FROM` bases, `COPY --from` images).
///
/// The first stage of each Dockerfile stage is built on its base (an external image, or
/// the found image of the Dockerfile stage it is based on); every other stage on the stage
/// before it: `Previous` when that one is built in the same job, else its image in the
/// stages storage (the pod starts from the last found stage).
///
/// Errors: [`Error::Unsupported`] for a stage without a final digest or an instruction the
/// builder has no form for; [`Error::Internal`] when the inputs disagree.
pub fn stage_jobs(
    unit: &ImagePlan,
    stages: &[PlannedStage],
    missing: &[usize],
    found: &[Option<StageDescription>],
) -> Result<(Vec<StageJob>, Vec<String>), Error> {
    let platform = unit.platform.to_string();
    let at = |i: usize| {
        format!(
            "image {:?} ({platform}), stage {} {:?}",
            unit.name,
            i + 1,
            stages[i].name
        )
    };
    let mut jobs = Vec::with_capacity(missing.len());
    let mut base_images: Vec<String> = Vec::new();
    for (k, &i) in missing.iter().enumerate() {
        let stage = stages
            .get(i)
            .ok_or_else(|| Error::Internal(format!("{}: no such stage", unit.name)))?;
        if stage.provisional {
            return Err(Error::Internal(format!(
                "{}: asked to build a stage whose digest is not final",
                at(i)
            )));
        }
        let build = stage
            .build
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("{}: not a staged stage", at(i))))?;
        let parent = match &build.base {
            Some(StageBase::Image(reference)) => {
                if reference != "scratch" && !base_images.contains(reference) {
                    base_images.push(reference.clone());
                }
                ParentRef::Image {
                    reference: reference.clone(),
                }
            }
            Some(StageBase::Stage { image_name, .. }) => ParentRef::Stage {
                reference: image_name.clone(),
            },
            None if i > 0 && k > 0 && missing[k - 1] == i - 1 => ParentRef::Previous,
            None => match i
                .checked_sub(1)
                .and_then(|p| found.get(p))
                .cloned()
                .flatten()
            {
                Some(previous) => ParentRef::Stage {
                    reference: previous.image_name(),
                },
                None => {
                    return Err(Error::Internal(format!(
                        "{}: the stage before it is neither found nor built in this job",
                        at(i)
                    )));
                }
            },
        };
        let build = match &build.step {
            StagedStep::From => StageBuild::From,
            StagedStep::Instruction { text, instruction } => {
                if let Instruction::Copy {
                    from: Some(from), ..
                } = instruction
                    && !base_images.contains(from)
                {
                    base_images.push(from.clone());
                }
                StageBuild::Instruction {
                    text: text.clone(),
                    instruction: instruction.clone(),
                }
            }
            StagedStep::Unsupported(reason) => {
                return Err(Error::Unsupported(format!("{}: {reason}", at(i))));
            }
        };
        jobs.push(StageJob {
            name: stage.name.clone(),
            digest: stage.digest.clone(),
            content_digest: content_digest(&platform, &stage.name, &stage.digest, ""),
            parent,
            build,
            labels: BTreeMap::new(),
        });
    }
    Ok((jobs, base_images))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Platform as ConfigPlatform;
    use crate::digest::staged::StagedBuild;
    use crate::storage::description::{Descriptor, Manifest};
    use crate::storage::{RepoRef, StageId};
    use kiln_crds::job::KeyValue;

    const ENV: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const COPY: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const RUN: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn planned(
        name: &str,
        digest: &str,
        base: Option<StageBase>,
        step: StagedStep,
    ) -> PlannedStage {
        PlannedStage {
            name: name.into(),
            digest: digest.into(),
            instruction: None,
            dockerfile_stage: Some(0),
            werf_image: Some("app".into()),
            provisional: false,
            build: Some(StagedBuild { base, step }),
        }
    }

    fn step(text: &str, instruction: Instruction) -> StagedStep {
        StagedStep::Instruction {
            text: text.into(),
            instruction,
        }
    }

    /// FROM busybox; ENV A=1; COPY --from=alpine:3.20 /etc/os-release /o; RUN true
    fn stages() -> Vec<PlannedStage> {
        vec![
            planned(
                "env",
                ENV,
                Some(StageBase::Image("busybox".into())),
                step(
                    "ENV A=1",
                    Instruction::Env {
                        vars: vec![KeyValue {
                            name: "A".into(),
                            value: "1".into(),
                        }],
                    },
                ),
            ),
            planned(
                "copy",
                COPY,
                None,
                step(
                    "COPY /etc/os-release /o",
                    Instruction::Copy {
                        sources: vec!["/etc/os-release".into()],
                        dest: "/o".into(),
                        from: Some("alpine:3.20".into()),
                        chown: None,
                        chmod: None,
                    },
                ),
            ),
            planned(
                "run",
                RUN,
                None,
                step(
                    "RUN true",
                    Instruction::Run {
                        command: vec!["true".into()],
                        prepend_shell: true,
                        env: vec![],
                        mounts: vec![],
                        network: None,
                    },
                ),
            ),
        ]
    }

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

    fn found(digest: &str, ts: u64) -> StageDescription {
        let config = Descriptor {
            media_type: String::new(),
            digest: format!("sha256:{}", "1".repeat(64)),
            size: 10,
            platform: None,
        };
        StageDescription::new(
            StageId::new(StageDigest::from_str(digest).unwrap(), ts),
            RepoRef::from_str("127.0.0.1:5000/stg").unwrap(),
            format!("sha256:{}", "2".repeat(64)),
            100,
            Manifest::Image {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                config,
                layers: Vec::new(),
            },
            None,
        )
    }

    #[test]
    fn nothing_found_builds_every_stage_from_the_base() {
        let stages = stages();
        let (jobs, bases) =
            stage_jobs(&unit(&stages), &stages, &[0, 1, 2], &[None, None, None]).unwrap();
        let parents: Vec<&ParentRef> = jobs.iter().map(|j| &j.parent).collect();
        assert_eq!(
            parents,
            [
                &ParentRef::Image {
                    reference: "busybox".into()
                },
                &ParentRef::Previous,
                &ParentRef::Previous,
            ]
        );
        // FROM bases and COPY --from images, for a `network: none` pull.
        assert_eq!(bases, ["busybox", "alpine:3.20"]);
        let digests: Vec<(&str, &str, &str)> = jobs
            .iter()
            .map(|j| {
                (
                    j.name.as_str(),
                    j.digest.as_str(),
                    j.content_digest.as_str(),
                )
            })
            .collect();
        // Content digests: SHA3-224 of "1.2:::<name>-content::::::<digest>:::", computed
        // with Python's hashlib.
        assert_eq!(
            digests,
            [
                (
                    "env",
                    ENV,
                    "52eacdd4a1960acfad0ed9947ec97989e0eb7d5bd625aa3dab0072c3"
                ),
                (
                    "copy",
                    COPY,
                    "89c56607ab3a6a3b23fb2edbcc5526326e8b62e4372c7d709dc60741"
                ),
                (
                    "run",
                    RUN,
                    "8c9d375e23c6b02e4319aaea614ae07645075ea29bf9389b9175c191"
                ),
            ]
        );
        assert_eq!(
            jobs[2].build,
            StageBuild::Instruction {
                text: "RUN true".into(),
                instruction: Instruction::Run {
                    command: vec!["true".into()],
                    prepend_shell: true,
                    env: vec![],
                    mounts: vec![],
                    network: None,
                },
            }
        );
    }

    #[test]
    fn the_pod_starts_from_the_last_found_stage() {
        let stages = stages();
        let (jobs, bases) = stage_jobs(
            &unit(&stages),
            &stages,
            &[1, 2],
            &[Some(found(ENV, 1_700_000_000_000)), None, None],
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            jobs[0].parent,
            ParentRef::Stage {
                reference: format!("127.0.0.1:5000/stg:{ENV}-1700000000000"),
            }
        );
        assert_eq!(jobs[1].parent, ParentRef::Previous);
        assert_eq!(bases, ["alpine:3.20"]);
    }

    #[test]
    fn a_stage_on_another_dockerfile_stage_starts_from_its_image() {
        let mut stages = stages();
        stages[2].build.as_mut().unwrap().base = Some(StageBase::Stage {
            werf_image: "app/stage/base".into(),
            last_stage_digest: ENV.into(),
            image_name: "127.0.0.1:5000/stg:x-1".into(),
        });
        let (jobs, _) = stage_jobs(
            &unit(&stages),
            &stages,
            &[1, 2],
            &[Some(found(ENV, 1)), None, None],
        )
        .unwrap();
        assert_eq!(
            jobs[1].parent,
            ParentRef::Stage {
                reference: "127.0.0.1:5000/stg:x-1".into()
            }
        );
    }

    #[test]
    fn unbuildable_stages_are_refused_with_image_and_stage() {
        let mut stages = stages();
        stages[1].build.as_mut().unwrap().step =
            StagedStep::Unsupported("Dockerfile, line 3: COPY with a heredoc is not built".into());
        let err = stage_jobs(&unit(&stages), &stages, &[0, 1, 2], &[None, None, None]).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)));
        assert_eq!(
            err.to_string(),
            "image \"app\" (linux/amd64), stage 2 \"copy\": Dockerfile, line 3: COPY with a heredoc is not built"
        );
        let mut stages = self::stages();
        stages[2].provisional = true;
        let err = stage_jobs(&unit(&stages), &stages, &[2], &[None, None, None]).unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
        assert!(err.to_string().contains("stage 3 \"run\""), "{err}");
        // A missing stage whose predecessor is neither found nor in the job.
        let err = stage_jobs(
            &unit(&self::stages()),
            &self::stages(),
            &[2],
            &[None, None, None],
        )
        .unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
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
    fn dependency_imports_name_the_published_image() {
        let stage = found(ENV, 1_700_000_000_123);
        let tag = format!("{ENV}-1700000000123");
        assert_eq!(import_value(&stage, "ImageTag"), tag);
        assert_eq!(
            import_value(&stage, "ImageName"),
            format!("127.0.0.1:5000/stg:{tag}")
        );
        assert_eq!(import_value(&stage, "ImageRepo"), "127.0.0.1:5000/stg");
        assert_eq!(
            import_value(&stage, "ImageID"),
            format!("sha256:{}", "1".repeat(64))
        );
        assert_eq!(
            import_value(&stage, "ImageDigest"),
            format!("sha256:{}", "2".repeat(64))
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
