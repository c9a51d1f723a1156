//! Planning a whole project at one git commit: werf.yaml → image DAG → build sets → each
//! image × platform with its stages and stage digests. This is what `kiln-operator plan` prints
//! and what the controller plans from. The only reads go through [`GitTree`] (files of the
//! commit, never a working tree), as werf reads them.
//!
//! Dependency build args (`dependencies[].imports`: `ImageName`, `ImageTag`, ...) are only known
//! once the dependency is built. The plan computes the image's digests twice with two different
//! stand-in values: stages whose digest does not change do not depend on them and get their
//! digest; the others are *pending* (no digest yet) and name what they wait for.

use std::collections::{BTreeMap, HashMap};

use super::{
    BuildSets, DockerfileTarget, ImageGraph, ParallelOptions, PlanError, Relation, StageBuilder,
    build_sets, planned_once,
};
use crate::config::render::{CommitInfo, RenderContext};
use crate::config::{ConfigError, ImageConfig, ImageKind, Platform, StapelImage, WerfConfig};
use crate::digest::staged::StagedInputs;
use crate::digest::stapel::{
    Known, Offline, StapelBase, StapelImageInput, StapelInputs, content_digest, stapel_image_stages,
};
use crate::digest::{
    DigestError, DigestMode, DockerfileImageInput, StagedMode, dockerfile_image_stages_with,
};
use crate::dockerfile::{Dockerfile, DockerfileError};
use crate::source::{GitTree, SourceError, clean_repo_path};

/// werf's `WERF_STAGED_DOCKERFILE_VERSION`: the one type of this setting, from the
/// ImageBuild API (`spec.stagedDockerfileVersion`) to the planner and `kiln-operator plan`.
pub use kiln_crds::imagebuild::StagedDockerfileVersion;

/// How the digests of a Dockerfile image are computed: non-staged, or staged in the layout
/// of `version` (werf's staged Dockerfile builder).
pub fn staged_mode(staged: bool, version: StagedDockerfileVersion) -> StagedMode {
    match (staged, version) {
        (false, _) => StagedMode::NonStaged,
        (true, StagedDockerfileVersion::V1) => StagedMode::StagedV1,
        (true, StagedDockerfileVersion::V2) => StagedMode::StagedV2,
    }
}

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// werf.yaml path in the repository (`werf.yaml`; `werf.yml` is tried when the default is
    /// absent, as werf does).
    pub config_path: &'a str,
    /// werf.yaml text given directly (an ImageBuild's `spec.config.inline`); when set,
    /// `config_path` is not read and errors name the file [`INLINE_CONFIG_NAME`].
    pub inline_config: Option<&'a str>,
    /// Images to plan (with their dependencies); all when empty.
    pub images: &'a [String],
    /// `--platform`: overrides every other platform setting when non-empty.
    pub platforms: &'a [Platform],
    /// Staged Dockerfile builder revision.
    pub staged_dockerfile_version: StagedDockerfileVersion,
    /// `--parallel` / `--parallel-tasks-limit`.
    pub parallel: ParallelOptions,
    /// What werf.yaml templates see from outside the commit (`env` values, `.Env`,
    /// giterminism, templates directory).
    pub render: RenderContext,
    /// werf-identical or strict stage digests.
    pub digest_mode: DigestMode,
}

impl Default for PlanRequest<'_> {
    fn default() -> Self {
        PlanRequest {
            config_path: "werf.yaml",
            inline_config: None,
            images: &[],
            platforms: &[],
            staged_dockerfile_version: StagedDockerfileVersion::V1,
            parallel: ParallelOptions::default(),
            render: RenderContext::default(),
            digest_mode: DigestMode::Werf,
        }
    }
}

/// The file name errors give for an inline werf.yaml ([`PlanRequest::inline_config`]).
pub const INLINE_CONFIG_NAME: &str = "spec.config.inline";

/// The plan of a project at a commit.
#[derive(Debug, Clone)]
pub struct ProjectPlan {
    /// The commit planned (40 hex).
    pub commit: String,
    /// The planned commit's committer time, Unix seconds (Stapel builds export it as
    /// `WERF_COMMIT_TIME_UNIX`); `None` when the commit object could not be read again.
    pub commit_time_unix: Option<i64>,
    /// werf.yaml `project`.
    pub project: String,
    /// The parsed werf.yaml (builder jobs need each image's directives).
    pub config: WerfConfig,
    /// Build sets of image names.
    pub sets: BuildSets,
    /// Each planned image × platform, in build order (set by set, werf.yaml order inside a
    /// set, platforms in their configured order).
    pub images: Vec<ImagePlan>,
    /// The digest mode the stage digests were computed in.
    pub digest_mode: DigestMode,
    /// Staged Dockerfile images that need other Dockerfile stages: werf.yaml image name →
    /// its werf images (`<image>/stage/<name>` ..., the image last) with their build levels
    /// (see [`crate::digest::staged::stage_images`]).
    pub stage_images: BTreeMap<String, Vec<(String, usize)>>,
}

/// How an image is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageBuildKind {
    /// Dockerfile, one `dockerfile` stage.
    Dockerfile,
    /// Dockerfile with one stage per instruction.
    StagedDockerfile,
    /// Stapel: `from`, `beforeInstall`, `gitArchive`, `install`, ... (see
    /// [`crate::digest::stapel`]).
    Stapel,
}

/// One image × platform of the plan.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    /// werf image name.
    pub name: String,
    /// Target platform.
    pub platform: Platform,
    /// How it is built.
    pub kind: ImageBuildKind,
    /// Whether it is a final image.
    pub is_final: bool,
    /// Images that must be built first, with the reason.
    pub depends_on: Vec<(String, Relation)>,
    /// Its stages in build order.
    pub stages: Vec<StagePlan>,
}

/// One stage of an image × platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    /// werf stage name (`dockerfile`; staged: `FROM`, `run`, `copy`, ...; Stapel: `from`,
    /// `beforeInstall`, `gitArchive`, `install`, ...).
    pub name: String,
    /// Stage digest (56 hex), or `None` while it waits for something known at build time
    /// (named in [`Self::pending_on`]).
    pub digest: Option<String>,
    /// The digest holds only under this assumption (a Stapel stage after a git stage assumes
    /// the git stage is built at the planned commit; a staged Dockerfile stage uses
    /// placeholders for a base image's environment or a stage image name). `None`: exact.
    pub provisional: Option<String>,
    /// Staged stages: the instruction after ARG expansion.
    pub instruction: Option<String>,
    /// For a pending digest: what it waits for (`ImageTag of image "base"`).
    pub pending_on: Vec<String>,
    /// When another image × platform earlier in build order builds this same stage (same
    /// digest): its image name and platform. The stage is planned once.
    pub built_by: Option<(String, Platform)>,
    /// Staged Dockerfile stages: the werf image the stage belongs to, the image itself for its
    /// target Dockerfile stage, `<image>/stage/<name>` for a stage it needs (see
    /// [`super::stage_images`]). `None` for other kinds of image.
    pub werf_image: Option<String>,
}

/// Errors planning a project; each names the file, image or revision concerned.
#[derive(Debug, thiserror::Error)]
pub enum ProjectPlanError {
    /// The repository or revision could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// werf.yaml is not in the commit.
    #[error("{path} not found at commit {commit}")]
    ConfigNotFound {
        /// The path looked up.
        path: String,
        /// The commit.
        commit: String,
    },
    /// werf.yaml is not UTF-8.
    #[error("{path} at commit {commit} is not UTF-8 text")]
    ConfigNotUtf8 {
        /// The path.
        path: String,
        /// The commit.
        commit: String,
    },
    /// werf.yaml is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An image's Dockerfile is missing.
    #[error("image {image:?}: Dockerfile {path} not found at commit {commit}")]
    DockerfileNotFound {
        /// werf image name.
        image: String,
        /// Repo-relative path.
        path: String,
        /// The commit.
        commit: String,
    },
    /// An image's Dockerfile is malformed or its target is unknown.
    #[error("image {image:?}: {source}")]
    Dockerfile {
        /// werf image name.
        image: String,
        /// The error, naming file and line.
        #[source]
        source: DockerfileError,
    },
    /// Stage digests could not be computed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The image DAG is invalid (cycle, unknown requested image).
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Plans the project at `tree`'s commit. See the module docs for pending digests.
///
/// Errors: [`ProjectPlanError`] — missing/invalid werf.yaml, missing or malformed Dockerfile,
/// unknown target stage, COPY source matching nothing, dependency cycle, unknown image.
pub fn plan_project(
    tree: &GitTree,
    request: &PlanRequest<'_>,
) -> Result<ProjectPlan, ProjectPlanError> {
    plan_project_with(tree, request, &Offline)
}

/// Values of dependency imports (`dependencies[].imports[]`) known once the dependency is built.
pub trait ImportValues {
    /// The value of import `kind` (`ImageName`, `ImageRepo`, `ImageTag`, `ImageID`) of werf
    /// image `image`; `None` while it is not built.
    fn import_value(&self, image: &str, kind: &str) -> Option<String>;
}

/// No import is known yet.
pub struct NoImports;

impl ImportValues for NoImports {
    fn import_value(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

/// Build-time facts of Dockerfile images: what a staged stage needs from registries (base
/// image environments, built stage image names) and the dependency import values.
pub struct DockerfileFacts<'a> {
    /// Facts for staged stages.
    pub staged: &'a dyn StagedInputs,
    /// Dependency import values.
    pub imports: &'a dyn ImportValues,
}

/// [`plan_project`] with build-time facts about Stapel git stages (the commits recorded in the
/// stage images the stages storage holds), so that stages after them are exact instead of
/// provisional; see [`crate::digest::stapel`].
pub fn plan_project_with(
    tree: &GitTree,
    request: &PlanRequest<'_>,
    stapel_inputs: &dyn StapelInputs,
) -> Result<ProjectPlan, ProjectPlanError> {
    let facts = DockerfileFacts {
        staged: &crate::digest::staged::Offline,
        imports: &NoImports,
    };
    plan_project_with_facts(tree, request, stapel_inputs, &facts)
}

/// [`plan_project_with`] with build-time facts of Dockerfile images too: a stage that needs
/// them gets its exact digest instead of a provisional or pending one.
pub fn plan_project_with_facts(
    tree: &GitTree,
    request: &PlanRequest<'_>,
    stapel_inputs: &dyn StapelInputs,
    facts: &DockerfileFacts<'_>,
) -> Result<ProjectPlan, ProjectPlanError> {
    cache_large_trees();
    let (file, text) = config_text(tree, request)?;
    let commit = commit_info(tree);
    let (config, _) = WerfConfig::load(&file, &text, tree, &commit, &request.render)?;
    let (targets, stage_images) = dockerfile_targets(tree, &config)?;
    let graph = ImageGraph::from_config(&config, &targets)?;
    let sets = build_sets(&graph, request.images, request.parallel)?;

    let mut images = Vec::new();
    // The content digest of each planned image × platform's last stage, for Stapel images
    // based on it (`fromImage`).
    let mut content: HashMap<(String, Platform), Known> = HashMap::new();
    for name in sets.images() {
        let index = graph
            .index_of(name)
            .expect("planned images come from the graph");
        let image = &config.images[index];
        let depends_on: Vec<(String, Relation)> = graph.nodes()[index]
            .deps
            .iter()
            .map(|e| (graph.nodes()[e.to].name.clone(), e.relation.clone()))
            .collect();
        for platform in config.effective_platforms(image, request.platforms) {
            let (kind, stages) = match &image.kind {
                ImageKind::Dockerfile(d) => {
                    let staged = config.effective_staged(image);
                    let mode = staged_mode(staged, request.staged_dockerfile_version);
                    let kind = if staged {
                        ImageBuildKind::StagedDockerfile
                    } else {
                        ImageBuildKind::Dockerfile
                    };
                    let args = d
                        .args_as_strings()
                        .expect("args were validated with werf.yaml");
                    let no_args = BTreeMap::new();
                    let platform_text = platform.to_string();
                    let input = DockerfileImageInput {
                        image: &image.name,
                        context: d.context.as_deref().unwrap_or(""),
                        dockerfile: &d.dockerfile,
                        target: d.target.as_deref(),
                        args: &args,
                        dependency_args: &no_args,
                        add_hosts: d.add_hosts(),
                        context_add_files: d.context_add_files(),
                        cache_version: config.effective_cache_version(image),
                        staged: mode,
                        platform: &platform_text,
                        digest_mode: request.digest_mode,
                    };
                    let stages = dockerfile_stages(tree, image, &input, facts)?;
                    (kind, stages)
                }
                ImageKind::Stapel(s) => {
                    let cx = StapelContext {
                        content: &content,
                        inputs: stapel_inputs,
                        digest_mode: request.digest_mode,
                    };
                    let (stages, last) = stapel_stages(tree, &config, image, s, &platform, &cx)?;
                    content.insert((image.name.clone(), platform.clone()), last);
                    (ImageBuildKind::Stapel, stages)
                }
            };
            content
                .entry((image.name.clone(), platform.clone()))
                .or_insert_with(|| last_content_digest(&stages, &platform));
            images.push(ImagePlan {
                name: image.name.clone(),
                platform,
                kind,
                is_final: image.is_final(),
                depends_on: depends_on.clone(),
                stages,
            });
        }
    }
    mark_planned_once(&mut images);
    let commit_time_unix = git2::Oid::from_str(tree.commit_id())
        .and_then(|oid| tree.repo().find_commit(oid))
        .map(|c| c.time().seconds())
        .ok();
    Ok(ProjectPlan {
        commit: tree.commit_id().to_string(),
        commit_time_unix,
        project: config.project.clone(),
        config,
        sets,
        images,
        digest_mode: request.digest_mode,
        stage_images,
    })
}

/// libgit2 caches tree objects only up to 4 KiB by default, so a directory with more than
/// ~100 entries (a monorepo root with hundreds of image contexts) is inflated and parsed again
/// on every path lookup through it. Planning reads many paths through the same directories:
/// caching trees up to 1 MiB made planning a 500-image repository ~15× faster.
fn cache_large_trees() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sets one entry of libgit2's global per-type cache limits; done once, and a
        // concurrent reader only sees the old or the new limit, both valid.
        let result = unsafe { git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 1 << 20) };
        if let Err(err) = result {
            tracing::warn!("could not raise libgit2's tree cache limit: {err}");
        }
    });
}

/// werf.yaml rendered at `tree`'s commit as werf renders it (`werf config render`): the
/// file name errors use and the rendered text.
///
/// Errors: [`ProjectPlanError::ConfigNotFound`], [`ProjectPlanError::ConfigNotUtf8`],
/// [`ProjectPlanError::Config`] for template errors.
pub fn render_config(
    tree: &GitTree,
    request: &PlanRequest<'_>,
) -> Result<(String, String), ProjectPlanError> {
    let (file, text) = config_text(tree, request)?;
    let rendered =
        crate::config::render_text(&file, &text, tree, &commit_info(tree), &request.render)?;
    Ok((file, rendered))
}

/// The commit's hash and author time for `.Commit` (werf uses the author date).
fn commit_info(tree: &GitTree) -> CommitInfo {
    let when = git2::Oid::from_str(tree.commit_id())
        .and_then(|oid| tree.repo().find_commit(oid))
        .map(|c| c.author().when())
        .ok();
    CommitInfo {
        hash: tree.commit_id().to_string(),
        time_unix: when.map_or(0, |w| w.seconds()),
        offset_minutes: when.map_or(0, |w| w.offset_minutes()),
    }
}

/// The werf.yaml source: the inline text, or the file at `config_path` (`werf.yml` when the
/// default `werf.yaml` is absent).
fn config_text(
    tree: &GitTree,
    request: &PlanRequest<'_>,
) -> Result<(String, String), ProjectPlanError> {
    if let Some(text) = request.inline_config {
        return Ok((INLINE_CONFIG_NAME.to_string(), text.to_string()));
    }
    let path = request.config_path;
    let mut found = tree.read_file(path)?.map(|b| (path, b));
    if found.is_none() && path == "werf.yaml" {
        found = tree.read_file("werf.yml")?.map(|b| ("werf.yml", b));
    }
    let Some((path, bytes)) = found else {
        return Err(ProjectPlanError::ConfigNotFound {
            path: path.to_string(),
            commit: tree.commit_id().to_string(),
        });
    };
    let text = String::from_utf8(bytes).map_err(|_| ProjectPlanError::ConfigNotUtf8 {
        path: path.to_string(),
        commit: tree.commit_id().to_string(),
    })?;
    Ok((path.to_string(), text))
}

/// Werf images of staged images, see [`ProjectPlan::stage_images`].
type StageImages = BTreeMap<String, Vec<(String, usize)>>;

/// Parses each Dockerfile once and describes every Dockerfile image's target for the DAG, and
/// the werf images of each staged image that needs other Dockerfile stages.
fn dockerfile_targets(
    tree: &GitTree,
    config: &WerfConfig,
) -> Result<(Vec<DockerfileTarget>, StageImages), ProjectPlanError> {
    let mut stage_images = StageImages::new();
    let mut parsed: HashMap<String, Dockerfile> = HashMap::new();
    let mut targets = Vec::new();
    for (index, image) in config.images.iter().enumerate() {
        let ImageKind::Dockerfile(d) = &image.kind else {
            continue;
        };
        let context = clean_repo_path(d.context.as_deref().unwrap_or(""));
        let path = clean_repo_path(&format!("{context}/{}", d.dockerfile));
        if !parsed.contains_key(&path) {
            let bytes =
                tree.read_file(&path)?
                    .ok_or_else(|| ProjectPlanError::DockerfileNotFound {
                        image: image.name.clone(),
                        path: path.clone(),
                        commit: tree.commit_id().to_string(),
                    })?;
            let dockerfile =
                Dockerfile::parse(&path, &String::from_utf8_lossy(&bytes)).map_err(|source| {
                    ProjectPlanError::Dockerfile {
                        image: image.name.clone(),
                        source,
                    }
                })?;
            parsed.insert(path.clone(), dockerfile);
        }
        let dockerfile = &parsed[&path];
        let target = dockerfile
            .target_index(d.target.as_deref())
            .map_err(|source| ProjectPlanError::Dockerfile {
                image: image.name.clone(),
                source,
            })?;
        if config.effective_staged(image) {
            let split = crate::digest::staged::stage_images(dockerfile, &image.name, target);
            if split.len() > 1 {
                stage_images.insert(image.name.clone(), split);
            }
        }
        // Stages only refer to earlier stages, so names up to the target cover every need.
        let stage_names = (0..=target)
            .map(|i| dockerfile.stage_name(i).map(str::to_string))
            .collect();
        targets.push(DockerfileTarget {
            image: index,
            context,
            dockerfile: path,
            target,
            needs: dockerfile.stage_dependencies(target),
            stage_names,
        });
    }
    Ok((targets, stage_images))
}

/// Stages of one Dockerfile image × platform; with dependency imports whose values `facts`
/// does not know, digests that depend on them are left pending.
fn dockerfile_stages(
    tree: &GitTree,
    image: &crate::config::ImageConfig,
    base: &DockerfileImageInput<'_>,
    facts: &DockerfileFacts<'_>,
) -> Result<Vec<StagePlan>, ProjectPlanError> {
    let imports: Vec<(String, String, String)> = image
        .dependencies()
        .iter()
        .flat_map(|dep| {
            dep.imports.iter().filter_map(move |import| {
                import
                    .target_build_arg
                    .as_ref()
                    .map(|arg| (arg.clone(), dep.image.clone(), import.kind.to_string()))
            })
        })
        .collect();
    let stand_ins = |salt: &str| -> BTreeMap<String, String> {
        imports
            .iter()
            .map(|(arg, dep, kind)| (arg.clone(), format!("kiln-pending-{salt}-{dep}-{kind}")))
            .collect()
    };
    let known: Option<BTreeMap<String, String>> = imports
        .iter()
        .map(|(arg, dep, kind)| {
            facts
                .imports
                .import_value(dep, kind)
                .map(|v| (arg.clone(), v))
        })
        .collect();
    let all_known = known.is_some();
    let first_args = known.unwrap_or_else(|| stand_ins("a"));
    let first = dockerfile_image_stages_with(
        tree,
        &DockerfileImageInput {
            dependency_args: &first_args,
            ..base.clone()
        },
        facts.staged,
    )?;
    let pending: Vec<bool> = if imports.is_empty() || all_known {
        vec![false; first.len()]
    } else {
        let second_args = stand_ins("b");
        let second = dockerfile_image_stages_with(
            tree,
            &DockerfileImageInput {
                dependency_args: &second_args,
                ..base.clone()
            },
            facts.staged,
        )?;
        first
            .iter()
            .enumerate()
            .map(|(i, s)| second.get(i).is_none_or(|o| o.digest != s.digest))
            .collect()
    };
    let waits: Vec<String> = imports
        .iter()
        .map(|(arg, dep, kind)| format!("{kind} of image {dep:?} (build arg {arg})"))
        .collect();
    Ok(first
        .into_iter()
        .zip(pending)
        .map(|(stage, pending)| StagePlan {
            name: stage.name,
            digest: (!pending).then_some(stage.digest),
            provisional: (stage.provisional && !pending).then(|| {
                "uses placeholders for build-time inputs (a base image's environment or a \
                 Dockerfile stage's image name)"
                    .to_string()
            }),
            instruction: stage.instruction,
            pending_on: if pending { waits.clone() } else { Vec::new() },
            built_by: None,
            werf_image: stage.werf_image,
        })
        .collect())
}

/// What planning a Stapel image needs besides its own config: the images planned before it
/// (content digests by image × platform), the build-time facts, the digest mode.
struct StapelContext<'a> {
    content: &'a HashMap<(String, Platform), Known>,
    inputs: &'a dyn StapelInputs,
    digest_mode: DigestMode,
}

/// Stages of one Stapel image × platform. The base is resolved the way werf's config does:
/// `fromImage`, or `from` naming a werf image, or `fromArtifact` is a werf image (its content
/// digest, planned earlier); `from: scratch`; any other `from` is an external reference.
fn stapel_stages(
    tree: &GitTree,
    config: &WerfConfig,
    image: &ImageConfig,
    stapel: &StapelImage,
    platform: &Platform,
    cx: &StapelContext<'_>,
) -> Result<(Vec<StagePlan>, Known), ProjectPlanError> {
    let werf_base = stapel
        .from_image
        .clone()
        .or_else(|| stapel.from.clone().filter(|f| config.image(f).is_some()))
        .or_else(|| stapel.from_artifact.clone());
    let base = match (werf_base, stapel.from.as_deref()) {
        (Some(name), _) => {
            let content_digest = cx
                .content
                .get(&(name.clone(), platform.clone()))
                .cloned()
                .unwrap_or_else(|| {
                    Known::Pending(format!("image {name:?} is not planned for {platform}"))
                });
            StapelBase::Image {
                name,
                content_digest,
            }
        }
        (None, Some("scratch")) => StapelBase::Scratch,
        (None, from) => StapelBase::External(from.unwrap_or_default().to_string()),
    };
    let platform_text = platform.to_string();
    let input = StapelImageInput {
        image: &image.name,
        config: stapel,
        cache_version: config.effective_cache_version(image),
        base,
        image_spec: stapel.image_spec.is_some()
            || (image.is_final() && config.build.image_spec.is_some()),
        platform: &platform_text,
        digest_mode: cx.digest_mode,
    };
    let stages = stapel_image_stages(tree, &input, cx.inputs)?;
    let last = stages
        .last()
        .map(|s| s.content_digest(&platform_text))
        .unwrap_or_else(|| Known::Pending("an image without stages".to_string()));
    let plans = stages
        .into_iter()
        .map(|s| StagePlan {
            name: s.name.to_string(),
            provisional: if s.provisional && s.digest.is_some() {
                s.note.clone()
            } else {
                None
            },
            pending_on: match (&s.digest, &s.note) {
                (None, Some(note)) => vec![note.clone()],
                _ => Vec::new(),
            },
            digest: s.digest,
            instruction: None,
            built_by: None,
            werf_image: None,
        })
        .collect();
    Ok((plans, last))
}

/// The content digest of a Dockerfile image × platform's last stage (werf: what `fromImage`
/// dependents hash); Dockerfile stages have `""` next-stage dependencies.
fn last_content_digest(stages: &[StagePlan], platform: &Platform) -> Known {
    let Some(last) = stages.last() else {
        return Known::Pending("an image without stages".to_string());
    };
    let Some(digest) = &last.digest else {
        return Known::Pending(last.pending_on.join(", "));
    };
    let value = content_digest(&platform.to_string(), &last.name, digest, "");
    match &last.provisional {
        Some(assumes) => Known::Provisional {
            value,
            assumes: assumes.clone(),
        },
        None => Known::Final(value),
    }
}

fn mark_planned_once(images: &mut [ImagePlan]) {
    // Equal digests, provisional or not, come from equal inputs and assumptions: one build.
    let units: Vec<Vec<Option<&str>>> = images
        .iter()
        .map(|i| i.stages.iter().map(|s| s.digest.as_deref()).collect())
        .collect();
    let builders = planned_once(&units);
    let owners: Vec<(String, Platform)> = images
        .iter()
        .map(|i| (i.name.clone(), i.platform.clone()))
        .collect();
    for (image, stage_builders) in images.iter_mut().zip(builders) {
        for (stage, builder) in image.stages.iter_mut().zip(stage_builders) {
            if let StageBuilder::Shared { unit } = builder {
                stage.built_by = Some(owners[unit].clone());
            }
        }
    }
}
