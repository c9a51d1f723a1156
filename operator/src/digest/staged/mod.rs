//! Staged Dockerfile images (`staged: true`; `werf: pkg/build/image/dockerfile.go`
//! `mapDockerfileToImagesSets`, `pkg/build/stage/instruction/*.go`).
//!
//! Every Dockerfile stage the target needs becomes a werf image: the target keeps the werf.yaml
//! image name, the others are named `<image>/stage/<name>` (or `<image>/stage<index>` when
//! unnamed). Each instruction except `ARG` is one stage, named after the instruction keyword as
//! written (`RUN`, `copy`, `Expose`: BuildKit's `node.Value`), chained to the previous one
//! through the generic digest formula.
//!
//! - **v1**: no `FROM` stage; the first instruction stage's digest also gets the base image
//!   (the reference as written, or the built image name of the Dockerfile stage it is based on).
//!   `cacheVersion` has no effect. A Dockerfile stage without instructions is an error, as in werf.
//! - **v2**: a `FROM` stage first, its dependencies `"BaseImageReference", ref` (and
//!   `"ImageCacheVersion", cacheVersion` when set); the base image enters its digest only when
//!   it is another Dockerfile stage.
//!
//! Per-instruction dependencies (SHA-256 over the `:::`-joined list; one file per instruction
//! family in this module):
//! - `ENV`: `"Env", k1, v1, ...`; `LABEL`: `"Labels", k1, v1, ...` (expanded);
//! - `COPY`: `"From", from, "Sources", s..., "Dest", d, "Chown", c, "Chmod", m, "ExpandedFrom",
//!   image` and, when it reads the context, `"SourcesChecksum", sum`;
//! - `ADD`: `"Sources", s..., "Dest", d, "Chown", c, "Chmod", m` and `"SourcesChecksum", sum`
//!   for non-URL sources;
//! - `RUN`: `"Env", sorted k=v...` (default `PATH`, base image env, the stage's ARGs and ENVs,
//!   dependency args), `"Command", cmd..., "PrependShell", bool, "Network", n, "Security", s`,
//!   the `--mount`s, and `"SourcesChecksum"` of bind-mount sources from the context;
//! - `CMD`/`ENTRYPOINT`: the command and `"PrependShell"`; `EXPOSE` `"Ports"`, `VOLUME`
//!   `"Volumes"`, `USER` `"User"`, `WORKDIR` `"Path"`, `STOPSIGNAL` `"Signal"`, `SHELL`
//!   `"Shell"`, `MAINTAINER` `"Maintainer"`, `ONBUILD` `"Expression"`, `HEALTHCHECK` `"Test"`,
//!   `"Interval"`, `"Timeout"`, `"StartPeriod"`, `"Retries"`.
//!
//! The sources checksum: the context (after `.dockerignore`) is globbed like Go's
//! `filepath.Glob`; each match is hashed with Go's `dirhash.Hash1` (a file: its base name and
//! content; a directory: every file below it as `/relative/path`), and the list of those hashes
//! is SHA-256-joined.
//!
//! Inputs only known at build time — the base image's environment (from its registry config)
//! and the built image name (`REPO:DIGEST-TIMESTAMP`) of a Dockerfile stage another one is
//! based on or copies from — come from a [`StagedInputs`]; without them ([`Offline`]) the
//! affected stages are computed with placeholders and marked [`PlannedStage::provisional`].

use std::cell::Cell;
use std::collections::BTreeMap;

use super::full::resolve_meta_args;
use super::{
    DigestError, DigestMode, DockerfileImageInput, Loaded, PlannedStage, StagedMode, sha256_hex,
    stage_digest_in,
};
use crate::dockerfile::shell::{self, Env};
use crate::dockerfile::{Args, Command, Dockerfile, Instruction, Stage};
use crate::source::ls_tree::LsTreeEntry;
use kiln_crds::job::Instruction as JobInstruction;

mod cmd_entrypoint;
mod context;
mod copy_add;
mod env_label;
pub mod go;
mod healthcheck;
mod order;
mod run;
mod simple;

pub use go::{dirhash_h1, go_duration};

/// The fallback `PATH` werf puts in every staged instruction's environment.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the first stage of a Dockerfile stage is built on (the later stages build on the stage
/// before them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageBase {
    /// An external image, as written after expanding the meta `ARG`s (`busybox:1.36`,
    /// `scratch`).
    Image(String),
    /// The last stage of another Dockerfile stage (werf image `werf_image`).
    Stage {
        /// The werf image (`<image>/stage/<name>`).
        werf_image: String,
        /// Digest of its last stage.
        last_stage_digest: String,
        /// Its built image name (`REPO:DIGEST-TIMESTAMP`), or the placeholder
        /// `<werf image>:<digest>` while the stage is provisional.
        image_name: String,
    },
}

/// How the builder builds one staged stage: the job's `StageBuild` with everything the
/// digest expanded (build args, `ENV`s, `--from` image names) already substituted, so that
/// one expansion decides both the digest and what gets built.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedBuild {
    /// Set on the first stage of each Dockerfile stage: what it is built on.
    pub base: Option<StageBase>,
    /// What the stage applies.
    pub step: StagedStep,
}

/// What one staged stage applies to its parent image.
#[derive(Debug, Clone, PartialEq)]
pub enum StagedStep {
    /// The v2 `FROM` stage: the base image itself, relabelled.
    From,
    /// One instruction.
    Instruction {
        /// The instruction as written after expansion (for logs and failure messages).
        text: String,
        /// The parsed, expanded instruction.
        instruction: JobInstruction,
    },
    /// The builder has no form for this instruction (heredocs, `COPY --parents`, ...): the
    /// digest is computed, but a build of the stage is refused with this reason.
    Unsupported(String),
}

/// Build-time facts a staged digest needs (see the module docs).
pub trait StagedInputs {
    /// The `Env` of an external base image's config for the platform, as `KEY=value` pairs.
    fn base_image_env(&self, reference: &str, platform: &str) -> Option<BTreeMap<String, String>>;
    /// The built image name (`REPO:DIGEST-TIMESTAMP`) of the last stage of a werf image (a
    /// Dockerfile stage another one is based on or copies from), given that stage's digest.
    fn stage_image_name(&self, werf_image: &str, last_stage_digest: &str) -> Option<String>;
}

/// No build-time facts: base images have no environment of their own, and stage image names are
/// `<werf image>:<digest>` placeholders; affected stages are provisional.
pub struct Offline;

impl StagedInputs for Offline {
    fn base_image_env(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
        None
    }
    fn stage_image_name(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

/// Variables for staged expansion: the stage's ENVs over its ARGs over the base environment.
struct Vars<'a> {
    base: &'a BTreeMap<String, String>,
    args: &'a BTreeMap<String, String>,
    envs: &'a BTreeMap<String, String>,
    /// Set when a lookup fell through to the base environment (which may be unknown offline).
    used_base: &'a std::cell::Cell<bool>,
}

impl Env for Vars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        if let Some(v) = self.envs.get(name).or_else(|| self.args.get(name)) {
            return Some(v);
        }
        self.used_base.set(true);
        self.base.get(name).map(String::as_str)
    }
}

/// What one computed Dockerfile stage (werf image) leaves for images built on it.
#[derive(Clone)]
struct Built {
    werf_image: String,
    last_digest: String,
    /// The image's environment (base env + its ENVs).
    env: BTreeMap<String, String>,
    provisional: bool,
}

struct Ctx<'a, 'b> {
    loaded: &'a Loaded<'b>,
    input: &'a DockerfileImageInput<'a>,
    inputs: &'a dyn StagedInputs,
    meta: BTreeMap<String, String>,
    platform: String,
    context_files: Option<Vec<LsTreeEntry>>,
}

fn err_expand(
    input: &DockerfileImageInput<'_>,
    file: &str,
    line: usize,
    word: &str,
    e: shell::ShellError,
) -> DigestError {
    DigestError::Expansion {
        image: input.image.to_string(),
        file: file.to_string(),
        line,
        message: format!("cannot expand {word:?}: {e}"),
    }
}

impl Ctx<'_, '_> {
    fn file(&self) -> &str {
        &self.loaded.dockerfile.path
    }

    fn expand(&self, line: usize, word: &str, vars: &dyn Env) -> Result<String, DigestError> {
        shell::process_word(word, vars, self.loaded.dockerfile.escape)
            .map_err(|e| err_expand(self.input, self.file(), line, word, e))
    }

    fn werf_image_name(&self, stage: &Stage, is_target: bool) -> String {
        stage_werf_image(self.input.image, stage, is_target)
    }
}

/// The werf image a Dockerfile stage of a staged image `image` becomes (werf:
/// `mapDockerfileToImagesSets`): `image` itself for the target, `<image>/stage/<name>` for a
/// named stage, `<image>/stage<index>` for an unnamed one.
pub fn stage_werf_image(image: &str, stage: &Stage, is_target: bool) -> String {
    if is_target {
        return image.to_string();
    }
    match &stage.name {
        Some(n) => format!("{image}/stage/{n}"),
        None => format!("{image}/stage{}", stage.index),
    }
}

/// The werf images of staged image `image` with target stage `target`, in build order, each
/// with its build level (0 = built first; the target has the highest). A Dockerfile stage the
/// target reaches through `FROM <stage>`, `COPY --from` or `RUN --mount from=` is an image of
/// its own, built in an earlier build set.
pub fn stage_images(df: &Dockerfile, image: &str, target: usize) -> Vec<(String, usize)> {
    order::build_levels(df, target)
        .into_iter()
        .map(|(i, level)| (stage_werf_image(image, &df.stages[i], i == target), level))
        .collect()
}

/// The state one Dockerfile stage's instructions share: its variables so far and whether a
/// digest already depends on a placeholder.
struct Scope<'s> {
    /// Index of the Dockerfile stage.
    index: usize,
    /// The Dockerfile stages computed before this one.
    built: &'s BTreeMap<usize, Built>,
    /// The stage's `ARG`s so far.
    args: BTreeMap<String, String>,
    /// The stage's `ENV`s so far.
    envs: BTreeMap<String, String>,
    /// The image's environment: the base image's plus the `ENV`s so far.
    image_env: BTreeMap<String, String>,
    /// What expansion falls back to: the default `PATH` under the base image's environment.
    expansion_base: BTreeMap<String, String>,
    /// Set when an expansion fell through to the base environment.
    used_base: Cell<bool>,
    /// Set once a digest used a placeholder.
    provisional: Cell<bool>,
}

impl Scope<'_> {
    fn vars(&self) -> Vars<'_> {
        Vars {
            base: &self.expansion_base,
            args: &self.args,
            envs: &self.envs,
            used_base: &self.used_base,
        }
    }

    /// The built image name of Dockerfile stage `dep`, or its placeholder (then the scope is
    /// provisional).
    fn stage_image_name(&self, cx: &Ctx<'_, '_>, dep: usize) -> String {
        let dep = &self.built[&dep];
        if dep.provisional {
            self.provisional.set(true);
        }
        cx.inputs
            .stage_image_name(&dep.werf_image, &dep.last_digest)
            .unwrap_or_else(|| {
                self.provisional.set(true);
                format!("{}:{}", dep.werf_image, dep.last_digest)
            })
    }
}

/// What one instruction contributes, from one expansion: its dependency list, its text for
/// logs (the instruction as written when `None`) and its job form (or why Kiln cannot build it).
struct Step {
    deps: Vec<String>,
    text: Option<String>,
    job: Result<JobInstruction, String>,
}

fn command_parts(c: &Command) -> (Vec<String>, bool) {
    match c {
        Command::Shell(s) => (vec![s.clone()], true),
        Command::Exec(v) => (v.clone(), false),
    }
}

/// Strict mode's extra inputs of a staged instruction: its heredoc bodies.
fn strict_extras(mode: DigestMode, ins: &Instruction) -> Vec<String> {
    match mode {
        DigestMode::Werf => Vec::new(),
        DigestMode::Strict => super::full::kiln_extras(ins, false),
    }
}

/// The stages of a staged Dockerfile image, dependencies first (see the module docs).
pub(crate) fn stages(
    loaded: &Loaded<'_>,
    input: &DockerfileImageInput<'_>,
) -> Result<Vec<PlannedStage>, DigestError> {
    stages_with(loaded, input, &Offline)
}

/// [`stages`] with build-time facts.
pub(crate) fn stages_with(
    loaded: &Loaded<'_>,
    input: &DockerfileImageInput<'_>,
    inputs: &dyn StagedInputs,
) -> Result<Vec<PlannedStage>, DigestError> {
    let df = &loaded.dockerfile;
    let meta = resolve_meta_args(df, input, &loaded.platform)?;
    let mut cx = Ctx {
        loaded,
        input,
        inputs,
        meta,
        platform: loaded.platform.to_string(),
        context_files: None,
    };
    let mut built: BTreeMap<usize, Built> = BTreeMap::new();
    let mut out = Vec::new();
    for i in order::build_order(df, loaded.target) {
        let (stages, b) = dockerfile_stage(&mut cx, i, i == loaded.target, &built)?;
        out.extend(stages);
        built.insert(i, b);
    }
    Ok(out)
}

/// One instruction's stage; `ARG` (no stage of its own) only updates the scope.
fn instruction(
    cx: &mut Ctx<'_, '_>,
    sc: &mut Scope<'_>,
    ins: &Instruction,
) -> Result<Option<Step>, DigestError> {
    Ok(Some(match &ins.args {
        Args::Arg(kvs) => {
            env_label::arg(cx, sc, ins, kvs)?;
            return Ok(None);
        }
        Args::Env(kvs) | Args::Label(kvs) => env_label::step(cx, sc, ins, kvs)?,
        Args::Copy(c) | Args::Add(c) => copy_add::step(cx, sc, ins, c)?,
        Args::Run(r) => run::step(cx, sc, ins, r)?,
        Args::Cmd(c) | Args::Entrypoint(c) => cmd_entrypoint::step(ins, c),
        Args::Healthcheck(h) => healthcheck::step(h.as_ref()),
        Args::Expose(_)
        | Args::Volume(_)
        | Args::User(_)
        | Args::Workdir(_)
        | Args::StopSignal(_)
        | Args::Maintainer(_)
        | Args::Shell(_)
        | Args::Onbuild(_)
        | Args::From { .. } => simple::step(cx, sc, ins)?,
    }))
}

/// The stages of one Dockerfile stage (one werf image).
fn dockerfile_stage(
    cx: &mut Ctx<'_, '_>,
    index: usize,
    is_target: bool,
    built: &BTreeMap<usize, Built>,
) -> Result<(Vec<PlannedStage>, Built), DigestError> {
    let df = &cx.loaded.dockerfile;
    let stage = &df.stages[index];
    let werf_image = cx.werf_image_name(stage, is_target);
    let mode = cx.input.staged;
    let mut sc = Scope {
        index,
        built,
        args: BTreeMap::new(),
        envs: BTreeMap::new(),
        image_env: BTreeMap::new(),
        expansion_base: BTreeMap::new(),
        used_base: Cell::new(false),
        provisional: Cell::new(false),
    };

    // The base: another Dockerfile stage, or an external reference expanded with the meta args.
    let base_stage = df.resolve_stage_ref(&stage.base_name, index, false);
    let mut env_unknown = false;
    let mut base: Option<StageBase>;
    let (base_ref, base_env) = match base_stage {
        Some(b) => {
            let name = sc.stage_image_name(cx, b);
            let dep = &built[&b];
            base = Some(StageBase::Stage {
                werf_image: dep.werf_image.clone(),
                last_stage_digest: dep.last_digest.clone(),
                image_name: name.clone(),
            });
            (name, dep.env.clone())
        }
        None => {
            let r = shell::process_word(&stage.base_name, &cx.meta, '\\').map_err(|e| {
                err_expand(cx.input, &df.path, stage.from.line, &stage.base_name, e)
            })?;
            if r.is_empty() {
                return Err(DigestError::InvalidBaseImage {
                    image: cx.input.image.to_string(),
                    file: df.path.clone(),
                    line: stage.from.line,
                    base: stage.base_name.clone(),
                });
            }
            let env = match cx.inputs.base_image_env(&r, &cx.platform) {
                Some(e) => e,
                None => {
                    env_unknown = true;
                    BTreeMap::new()
                }
            };
            base = Some(StageBase::Image(r.clone()));
            (r, env)
        }
    };

    let mut out: Vec<PlannedStage> = Vec::new();
    let mut prev: Option<String> = None;
    if mode == StagedMode::StagedV2 {
        let mut deps = vec!["BaseImageReference".to_string(), base_ref.clone()];
        if let Some(cv) = cx.input.cache_version.filter(|c| !c.is_empty()) {
            deps.push("ImageCacheVersion".into());
            deps.push(cv.to_string());
        }
        let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
        let base_in_digest = base_stage.map(|_| base_ref.as_str());
        let digest = stage_digest_in(
            cx.input.digest_mode,
            &cx.platform,
            "FROM",
            &sha256_hex(&refs),
            None,
            base_in_digest,
        );
        out.push(PlannedStage {
            name: "FROM".into(),
            digest: digest.clone(),
            instruction: Some(format!("FROM {base_ref}")),
            dockerfile_stage: Some(index),
            werf_image: Some(werf_image.clone()),
            provisional: sc.provisional.get(),
            build: Some(StagedBuild {
                base: base.take(),
                step: StagedStep::From,
            }),
        });
        prev = Some(digest);
    }

    sc.image_env = base_env.clone();
    sc.expansion_base = BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]);
    sc.expansion_base.extend(base_env);
    for ins in &stage.instructions {
        let line = ins.line;
        sc.used_base.set(false);
        let Some(step) = instruction(cx, &mut sc, ins)? else {
            continue;
        };
        let mut deps = step.deps;
        deps.extend(strict_extras(cx.input.digest_mode, ins));
        // The base environment reaches the digest through a RUN's environment or an expansion.
        if env_unknown && (ins.keyword == "RUN" || sc.used_base.get()) {
            sc.provisional.set(true);
        }
        let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
        let name = ins.stage_name();
        let (prev_part, base_part) = match &prev {
            Some(p) => (Some((p.as_str(), "")), None),
            None => (None, Some(base_ref.as_str())),
        };
        let digest = stage_digest_in(
            cx.input.digest_mode,
            &cx.platform,
            &name,
            &sha256_hex(&refs),
            prev_part,
            base_part,
        );
        let text = step.text.unwrap_or_else(|| ins.original.clone());
        out.push(PlannedStage {
            name,
            digest: digest.clone(),
            build: Some(StagedBuild {
                base: base.take(),
                step: match step.job {
                    Ok(instruction) => StagedStep::Instruction {
                        text: text.clone(),
                        instruction,
                    },
                    Err(what) => StagedStep::Unsupported(format!(
                        "{}, line {line}: {what} is not built by Kiln's staged builder yet",
                        df.path
                    )),
                },
            }),
            instruction: Some(text),
            dockerfile_stage: Some(index),
            werf_image: Some(werf_image.clone()),
            provisional: sc.provisional.get(),
        });
        prev = Some(digest);
    }
    let Some(last) = prev else {
        return Err(DigestError::Dockerfile {
            image: cx.input.image.to_string(),
            source: crate::dockerfile::DockerfileError::Syntax {
                file: df.path.clone(),
                line: stage.from.line,
                message: "a stage with only FROM is not supported by staged Dockerfile v1 (werf: set WERF_STAGED_DOCKERFILE_VERSION=v2)".into(),
            },
        });
    };
    Ok((
        out,
        Built {
            werf_image,
            last_digest: last,
            env: sc.image_env,
            provisional: sc.provisional.get() || env_unknown,
        },
    ))
}
