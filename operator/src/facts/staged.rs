//! Staged digests with build-time facts: compute, fetch what was asked for, compute again.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use super::{BaseEnvs, FactSource, FactsError};
use crate::digest::staged::StagedInputs;
use crate::digest::{DockerfileImageInput, PlannedStage, StagedMode, dockerfile_image_stages_with};
use crate::source::GitTree;
use crate::storage::{StageDigest, StorageError};
use std::str::FromStr;

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
pub(super) struct UnitInput {
    pub(super) mirror: PathBuf,
    pub(super) commit: String,
    pub(super) image: String,
    pub(super) context: String,
    pub(super) dockerfile: String,
    pub(super) target: Option<String>,
    pub(super) args: BTreeMap<String, String>,
    pub(super) dependency_args: BTreeMap<String, String>,
    pub(super) add_hosts: Vec<String>,
    pub(super) context_add_files: Vec<String>,
    pub(super) cache_version: Option<String>,
    pub(super) mode: StagedMode,
    pub(super) platform: String,
    pub(super) digest_mode: crate::digest::DigestMode,
}

impl UnitInput {
    fn compute(&self, facts: &Facts) -> Result<(Vec<PlannedStage>, Vec<Miss>), FactsError> {
        let plan_error = |e| FactsError::Plan(crate::plan::project::ProjectPlanError::Source(e));
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
            .map_err(|e| FactsError::Plan(e.into()))?;
        let misses = recording
            .misses
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        Ok((stages, misses))
    }
}

/// Computes, fetches what was asked for, computes again — until nothing new is asked. Each
/// round answers at least one new question, and there are at most two per Dockerfile stage,
/// so the loop ends; the bound only guards against a bug.
pub(super) async fn resolve_unit(
    registry: &impl FactSource,
    input: &UnitInput,
    envs: &mut BaseEnvs,
) -> Result<Vec<PlannedStage>, FactsError> {
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
                .map_err(|e| FactsError::Internal(format!("staged digest task: {e}")))??
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
                    let env = registry
                        .base_image_env(&reference, &platform)
                        .await
                    .map_err(|source| {
                        let operation = format!(
                            "image {:?} ({platform}): reading the environment of base image {reference:?}",
                            input.image
                        );
                        if source.is_not_found() {
                            FactsError::BaseImageNotFound {
                                message: format!("{operation}: no registry has it"),
                                source: Box::new(source),
                            }
                        } else {
                            FactsError::Storage {
                                operation,
                                source: Box::new(source),
                            }
                        }
                    })?;
                    envs.insert((reference.clone(), platform.clone()), env.clone());
                    facts.envs.insert((reference, platform), env);
                }
                Miss::Name { werf_image, digest } => {
                    let name = stage_image_name(registry, &digest)
                        .await
                        .map_err(|source| FactsError::Storage {
                            operation: format!(
                                "image {:?} ({}): looking up stage {digest} of {werf_image:?}",
                                input.image, input.platform
                            ),
                            source: Box::new(source),
                        })?;
                    facts.names.insert((werf_image, digest), name);
                }
            }
        }
    }
    Err(FactsError::Internal(format!(
        "image {:?} ({}): staged digests did not settle",
        input.image, input.platform
    )))
}

/// The image name (`REPO:DIGEST-TIMESTAMP`) of the stage with `digest`, when the stages
/// storage has it.
async fn stage_image_name(
    registry: &impl FactSource,
    digest: &str,
) -> Result<Option<String>, StorageError> {
    let Ok(d) = StageDigest::from_str(digest) else {
        return Ok(None);
    };
    Ok(registry.find_stage(&d).await?.map(|s| s.image_name()))
}
