//! Build-time facts: what a stage digest needs that the offline plan cannot know, read
//! from the registries while building, as werf reads them — the environment of a base
//! image, the image name of a Dockerfile stage found in the stages storage, the identifiers
//! of a published dependency passed as build args.
//!
//!
//! The planner computes staged digests offline; a stage whose digest needs a base image's
//! environment (a `RUN`, an expansion that falls through to the base `ENV`) or the built
//! image name of another Dockerfile stage is *provisional* there (werf reads these facts
//! while building). Here, per image × platform, the facts are fetched before each digest
//! computation — the `Env` of the base image's config from its registry (docker.io images
//! through `spec.registryMirrors` first, as the builder pulls them; [`base_image_env`])
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
//!
//! The registry is reached through a [`FactSource`] ([`RegistryFacts`] in the operator), so
//! the resolution itself is independent of the controller and of the registry client.

mod base_image;
mod dependencies;
mod staged;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;

use crate::config::ImageKind;
use crate::digest::{PlannedStage, StagedMode};
use crate::plan::project::{
    ImageBuildKind, ImagePlan, ProjectPlan, ProjectPlanError, StagePlan, StagedDockerfileVersion,
    staged_mode,
};
use crate::storage::{
    Freshness, OldestCreationTs, StageDescription, StageDigest, StagesStorage, StorageError,
};

pub use base_image::{base_image_env, env_of_config};
pub use dependencies::import_value;

/// Base-image environments already read: (base reference, platform) → its config's `Env`.
pub type BaseEnvs = HashMap<(String, String), BTreeMap<String, String>>;

/// Why build-time facts could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// A registry refused, failed or could not be reached.
    #[error("{operation}: {source}")]
    Storage {
        /// What Kiln was doing (`reading the environment of base image ...`).
        operation: String,
        /// The registry error, naming registry and repository.
        #[source]
        source: Box<StorageError>,
    },
    /// A base image that no registry it may come from has: the message names the image,
    /// platform and reference.
    #[error("{message}: {source}")]
    BaseImageNotFound {
        /// Image, platform and base reference.
        message: String,
        /// The registry's 404 (the last one asked).
        #[source]
        source: Box<StorageError>,
    },
    /// The source or a Dockerfile could not be read again to compute the digests.
    #[error(transparent)]
    Plan(#[from] ProjectPlanError),
    /// A dependency Kiln does not build for the platform (a Stapel image, an image not
    /// planned before it).
    #[error("{0}")]
    Unsupported(String),
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where build-time facts come from: the registries of the build.
pub trait FactSource: Sync {
    /// The `Env` of base image `reference`'s config for `platform` (`linux/amd64`).
    ///
    /// Errors: the registry's, [`StorageError::is_not_found`] when no registry has it.
    fn base_image_env(
        &self,
        reference: &str,
        platform: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, StorageError>> + Send;

    /// The stage with `digest` in the stages storage (the oldest one, from the cached tag
    /// list), `None` when it has none.
    ///
    /// Errors: the registry's.
    fn find_stage(
        &self,
        digest: &StageDigest,
    ) -> impl Future<Output = Result<Option<StageDescription>, StorageError>> + Send;
}

/// The registries of a build: base images through `spec.registryMirrors`, stages in its
/// stages storage.
#[derive(Clone, Copy)]
pub struct RegistryFacts<'a> {
    /// The stages storage (and its registry client).
    pub storage: &'a StagesStorage,
    /// `spec.registryMirrors`.
    pub mirrors: &'a [String],
}

impl FactSource for RegistryFacts<'_> {
    async fn base_image_env(
        &self,
        reference: &str,
        platform: &str,
    ) -> Result<BTreeMap<String, String>, StorageError> {
        base_image_env(self.storage.client(), self.mirrors, reference, platform).await
    }

    async fn find_stage(
        &self,
        digest: &StageDigest,
    ) -> Result<Option<StageDescription>, StorageError> {
        self.storage
            .find_stage(digest, None, &OldestCreationTs, Freshness::Cached)
            .await
    }
}

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

/// Replaces the digests of every staged image × platform of `plan` with the ones computed
/// with build-time facts (see the module docs), and those of every Dockerfile image with
/// dependency build args (`dependencies[].imports[].targetBuildArg`) with the ones computed
/// from the published dependency; returns how each staged stage is built and the dependency
/// build args of each image × platform.
///
/// An image whose dependency is not published yet is *deferred* ([`StagedUnits::deferred_on`]):
/// the build set order builds the dependency first, and a later reconcile resolves it.
///
/// Errors: [`FactsError::Storage`] when a base image's config cannot be read from any of its
/// registries (naming image, platform and base) or a lookup fails, [`FactsError::Plan`] for a
/// source or Dockerfile error, [`FactsError::Unsupported`] for a dependency Kiln does not build
/// for the platform (a Stapel image).
#[tracing::instrument(name = "facts", skip_all)]
pub async fn resolve(
    plan: &mut ProjectPlan,
    staged_version: StagedDockerfileVersion,
    registry: &impl FactSource,
    mirror: &Path,
    envs: &mut BaseEnvs,
) -> Result<StagedUnits, FactsError> {
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
            FactsError::Internal(format!("planned image {:?} not in werf.yaml", unit.name))
        })?;
        let ImageKind::Dockerfile(d) = &image.kind else {
            continue;
        };
        let imports = dependencies::dependency_imports(image);
        let dependency_args = if imports.is_empty() {
            BTreeMap::new()
        } else {
            match dependencies::dependency_args(&images[..index], unit, &imports, registry).await? {
                Ok(args) => args,
                Err(waits_for) => {
                    out.deferred.insert(key, waits_for);
                    continue;
                }
            }
        };
        let mode = match unit.kind {
            ImageBuildKind::StagedDockerfile => staged_mode(true, staged_version),
            ImageBuildKind::Dockerfile if !imports.is_empty() => StagedMode::NonStaged,
            _ => continue,
        };
        let input = staged::UnitInput {
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
        let stages = staged::resolve_unit(registry, &input, envs).await?;
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

/// What a resolved stage without a digest waits for, as its `pending_on` starts.
pub const WAITS_FOR_STAGE_IMAGES: &str = "the built images of the Dockerfile stages";

/// The plan's view of resolved stages: a provisional stage has no digest and says what it
/// waits for.
pub fn resolved_stage_plans(stages: &[PlannedStage]) -> Vec<StagePlan> {
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

/// Whether a resolved stage has no digest only because it waits for the images of
/// Dockerfile stages (a later reconcile computes it).
pub fn waits_for_stage_images(stage: &StagePlan) -> bool {
    stage.digest.is_none()
        && !stage.pending_on.is_empty()
        && stage
            .pending_on
            .iter()
            .all(|p| p.starts_with(WAITS_FOR_STAGE_IMAGES))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::plan::project::{PlanRequest, plan_project};
    use crate::source::GitTree;
    use crate::storage::Operation;

    /// A registry that has one base image environment (or none) and no stage.
    struct Fake {
        env: Option<BTreeMap<String, String>>,
        asked: Mutex<Vec<(String, String)>>,
    }

    impl FactSource for Fake {
        async fn base_image_env(
            &self,
            reference: &str,
            platform: &str,
        ) -> Result<BTreeMap<String, String>, StorageError> {
            self.asked
                .lock()
                .unwrap()
                .push((reference.to_owned(), platform.to_owned()));
            self.env.clone().ok_or_else(|| StorageError::NotFound {
                registry: "example.org".into(),
                repository: "base".into(),
                operation: Operation::GetManifest,
                reference: "1".into(),
                detail: "manifest unknown".into(),
            })
        }

        async fn find_stage(
            &self,
            _: &StageDigest,
        ) -> Result<Option<StageDescription>, StorageError> {
            Ok(None)
        }
    }

    /// A staged Dockerfile image whose `RUN` digest needs its base image's environment.
    fn staged_project() -> (tempfile::TempDir, String) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(
            dir.join("werf.yaml"),
            "project: p\nconfigVersion: 1\n---\nimage: app\ndockerfile: Dockerfile\nstaged: true\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("Dockerfile"),
            "FROM example.org/base:1\nRUN true\n",
        )
        .unwrap();
        let run = |args: &[&str]| kiln_testkit::git_server::git_ok(dir, args);
        run(&["init", "-q", "-b", "main"]);
        run(&["add", "."]);
        run(&["commit", "-q", "-m", "c"]);
        let commit = run(&["rev-parse", "HEAD"]);
        (tmp, commit)
    }

    async fn resolve_with(fake: &Fake) -> (Result<StagedUnits, FactsError>, ProjectPlan) {
        let (tmp, commit) = staged_project();
        let tree = GitTree::open(tmp.path(), Some(&commit)).unwrap();
        let mut plan = plan_project(&tree, &PlanRequest::default()).unwrap();
        let mut envs = BaseEnvs::new();
        let result = resolve(
            &mut plan,
            StagedDockerfileVersion::V1,
            fake,
            tmp.path(),
            &mut envs,
        )
        .await;
        (result, plan)
    }

    #[tokio::test]
    async fn base_image_environments_are_asked_once_and_complete_the_digests() {
        let fake = Fake {
            env: Some(BTreeMap::from([("PATH".into(), "/bin".into())])),
            asked: Mutex::default(),
        };
        let (result, plan) = resolve_with(&fake).await;
        let units = result.unwrap();
        let unit = &plan.images[0];
        assert!(units.stages(unit).is_some());
        assert!(unit.stages.iter().all(|s| s.digest.is_some()), "{unit:?}");
        assert_eq!(
            *fake.asked.lock().unwrap(),
            [("example.org/base:1".to_owned(), unit.platform.to_string())]
        );
    }

    #[tokio::test]
    async fn a_base_image_no_registry_has_is_named() {
        let fake = Fake {
            env: None,
            asked: Mutex::default(),
        };
        let err = resolve_with(&fake).await.0.unwrap_err();
        assert!(matches!(err, FactsError::BaseImageNotFound { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("\"app\"") && text.contains("example.org/base:1"),
            "{text}"
        );
    }
}
