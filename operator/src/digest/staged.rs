//! Staged Dockerfile images (`staged: true`; `werf: pkg/build/image/dockerfile.go`
//! `mapDockerfileToImagesSets`, `pkg/build/stage/instruction/*.go`).
//!
//! Every Dockerfile stage the target needs becomes a werf image: the target keeps the werf.yaml
//! image name, the others are named `<image>/stage/<name>` (or `<image>/stage<index>` when
//! unnamed). Each instruction except `ARG` is one stage, named after the lower-case instruction
//! (`run`, `copy`, ...), chained to the previous one through the generic digest formula.
//!
//! - **v1**: no `FROM` stage; the first instruction stage's digest also gets the base image
//!   (the reference as written, or the built image name of the Dockerfile stage it is based on).
//!   `cacheVersion` has no effect. A Dockerfile stage without instructions is an error, as in werf.
//! - **v2**: a `FROM` stage first, its dependencies `"BaseImageReference", ref` (and
//!   `"ImageCacheVersion", cacheVersion` when set); the base image enters its digest only when
//!   it is another Dockerfile stage.
//!
//! Per-instruction dependencies (SHA-256 over the `:::`-joined list):
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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::context::{is_remote_source, normalize_source};
use super::full::{is_heredoc_source, resolve_meta_args};
use super::{
    DigestError, DockerfileImageInput, Loaded, PlannedStage, StagedMode, sha256_hex, stage_digest,
};
use crate::dockerfile::shell::{self, Env};
use crate::dockerfile::{Args, Command, Instruction, Stage};
use crate::source::ls_tree::{LsTreeEntry, hex_lower};
use crate::source::path_matcher::{
    BasePathMatcher, DockerignoreMatcher, MultiMatcher, PathMatcher, TrueMatcher,
};
use kiln_crds::job::{
    Instruction as JobInstruction, KeyValue as JobKeyValue, NetworkMode as JobNetwork, RunMount,
};

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
        if is_target {
            return self.input.image.to_string();
        }
        match &stage.name {
            Some(n) => format!("{}/stage/{n}", self.input.image),
            None => format!("{}/stage{}", self.input.image, stage.index),
        }
    }

    /// The context files `.dockerignore` keeps, relative to the context, read once.
    fn context_files(&mut self) -> Result<&[LsTreeEntry], DigestError> {
        if self.context_files.is_none() {
            let ctx = &self.loaded.context;
            let tree = ctx.tree();
            let all = tree
                .list_entries(&ctx.context)
                .map_err(|e| DigestError::Source {
                    image: self.input.image.to_string(),
                    source: e,
                })?;
            let ignore: Box<dyn PathMatcher + Send + Sync> = match ctx.ignore() {
                Some(i) => Box::new(DockerignoreMatcher::new(i.clone())),
                None => Box::new(TrueMatcher),
            };
            let m = BasePathMatcher::new(&ctx.context, Box::new(MultiMatcher::new(vec![ignore])));
            let strip = if ctx.context.is_empty() {
                0
            } else {
                ctx.context.len() + 1
            };
            let kept = all
                .into_iter()
                .filter(|e| m.is_path_matched(&e.path))
                .map(|mut e| {
                    e.path = e.path[strip..].to_string();
                    e
                })
                .collect();
            self.context_files = Some(kept);
        }
        Ok(self.context_files.as_deref().expect("just set"))
    }

    /// werf's `CalculateGlobsChecksum` over the context; an unmatched glob is an error.
    fn globs_checksum(&mut self, globs: &[String], line: usize) -> Result<String, DigestError> {
        let image = self.input.image.to_string();
        let file = self.loaded.context.dockerfile_path.clone();
        let context = if self.loaded.context.context.is_empty() {
            ".".to_string()
        } else {
            self.loaded.context.context.clone()
        };
        let files = self.context_files()?.to_vec();
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        for f in &files {
            let mut p = f.path.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                dirs.insert(p.to_string());
            }
        }
        let mut matches: BTreeSet<String> = BTreeSet::new();
        for g in globs {
            let glob = normalize_source(g);
            let mut found = false;
            if glob == "." {
                matches.insert(String::new());
                found = !files.is_empty();
            } else {
                let n = glob.split('/').count();
                for p in files.iter().map(|f| &f.path).chain(dirs.iter()) {
                    if p.split('/').count() == n && go_path_match(&glob, p) {
                        matches.insert(p.clone());
                        found = true;
                    }
                }
            }
            if !found {
                return Err(DigestError::CopySourceNotFound {
                    image,
                    file,
                    line,
                    source_path: g.clone(),
                    context,
                });
            }
        }
        let repo = self.loaded.context.tree();
        let mut hashes = Vec::new();
        for m in &matches {
            let prefix = if m.is_empty() {
                String::new()
            } else {
                format!("{m}/")
            };
            let exact = files.iter().find(|f| &f.path == m);
            let mut lines: Vec<(String, String)> = Vec::new();
            match exact {
                Some(f) => {
                    let name = m.rsplit('/').next().unwrap_or(m).to_string();
                    lines.push((name, blob_sha256(repo, f, &image)?));
                }
                None => {
                    for f in files.iter().filter(|f| f.path.starts_with(&prefix)) {
                        lines.push((
                            format!("/{}", &f.path[prefix.len()..]),
                            blob_sha256(repo, f, &image)?,
                        ));
                    }
                }
            }
            hashes.push(dirhash_h1(lines));
        }
        let refs: Vec<&str> = hashes.iter().map(String::as_str).collect();
        Ok(sha256_hex(&refs))
    }
}

fn blob_sha256(
    tree: &crate::source::GitTree,
    f: &LsTreeEntry,
    image: &str,
) -> Result<String, DigestError> {
    let blob = tree
        .repo()
        .find_blob(f.oid)
        .map_err(|e| DigestError::Source {
            image: image.to_string(),
            source: tree.git_error(&format!("reading {}", f.path), e),
        })?;
    Ok(hex_lower(&Sha256::digest(blob.content())))
}

/// Go's `dirhash.Hash1`: SHA-256 over sorted `"<hex sha256>  <name>\n"` lines, `h1:` + base64.
pub fn dirhash_h1(mut files: Vec<(String, String)>) -> String {
    files.sort();
    let mut h = Sha256::new();
    for (name, sum) in files {
        h.update(format!("{sum}  {name}\n").as_bytes());
    }
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )
}

/// Go's `filepath.Match` applied component by component (no `**`).
fn go_path_match(pattern: &str, path: &str) -> bool {
    let pc: Vec<&str> = pattern.split('/').collect();
    let nc: Vec<&str> = path.split('/').collect();
    pc.len() == nc.len()
        && pc
            .iter()
            .zip(nc.iter())
            .all(|(p, n)| crate::source::path_matcher::match_component(&p.replace("**", "*"), n))
}

/// Go's `time.Duration.String()` of a Docker duration flag (`30s`, `1m30s`, `500ms`); `0s`
/// when unset or unparsable.
pub fn go_duration(flag: Option<&str>) -> String {
    let nanos = flag.and_then(parse_duration).unwrap_or(0);
    format_go_duration(nanos)
}

fn parse_duration(s: &str) -> Option<u128> {
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * mult;
        rest = &rest[unit_end..];
    }
    Some(total.round() as u128)
}

fn frac(v: u128, unit: u128) -> String {
    let int = v / unit;
    let mut f = format!("{:0width$}", v % unit, width = unit.to_string().len() - 1);
    while f.ends_with('0') {
        f.pop();
    }
    if f.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{f}")
    }
}

fn format_go_duration(n: u128) -> String {
    if n == 0 {
        return "0s".into();
    }
    if n < 1_000 {
        return format!("{n}ns");
    }
    if n < 1_000_000 {
        return format!("{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{}ms", frac(n, 1_000_000));
    }
    let h = n / 3_600_000_000_000;
    let m = (n / 60_000_000_000) % 60;
    let s = n % 60_000_000_000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", frac(s, 1_000_000_000)));
    out
}

fn command_parts(c: &Command) -> (Vec<String>, bool) {
    match c {
        Command::Shell(s) => (vec![s.clone()], true),
        Command::Exec(v) => (v.clone(), false),
    }
}

fn heredoc_extras(ins: &Instruction) -> Vec<String> {
    super::full::kiln_extras(ins, false)
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
    // Build order: a stage after every stage it needs (werf builds deeper image sets first).
    let mut order: Vec<usize> = Vec::new();
    let mut visiting = BTreeSet::new();
    fn visit(
        df: &crate::dockerfile::Dockerfile,
        i: usize,
        order: &mut Vec<usize>,
        visiting: &mut BTreeSet<usize>,
    ) {
        if order.contains(&i) || !visiting.insert(i) {
            return;
        }
        for d in df.direct_stage_dependencies(i) {
            visit(df, d, order, visiting);
        }
        order.push(i);
    }
    let mut queue = VecDeque::from([loaded.target]);
    while let Some(i) = queue.pop_front() {
        visit(df, i, &mut order, &mut visiting);
    }
    let mut built: BTreeMap<usize, Built> = BTreeMap::new();
    let mut out = Vec::new();
    for &i in &order {
        let (stages, b) = dockerfile_stage(&mut cx, i, i == loaded.target, &built)?;
        out.extend(stages);
        built.insert(i, b);
    }
    Ok(out)
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

    // The base: another Dockerfile stage, or an external reference expanded with the meta args.
    let base_stage = df.resolve_stage_ref(&stage.base_name, index, false);
    let mut provisional = false;
    let mut env_unknown = false;
    let mut base: Option<StageBase>;
    let (base_ref, base_env) = match base_stage {
        Some(b) => {
            let dep = &built[&b];
            provisional |= dep.provisional;
            let name = match cx
                .inputs
                .stage_image_name(&dep.werf_image, &dep.last_digest)
            {
                Some(n) => n,
                None => {
                    provisional = true;
                    format!("{}:{}", dep.werf_image, dep.last_digest)
                }
            };
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
        let digest = stage_digest(
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
            provisional,
            build: Some(StagedBuild {
                base: base.take(),
                step: StagedStep::From,
            }),
        });
        prev = Some(digest);
    }

    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut envs: BTreeMap<String, String> = BTreeMap::new();
    let mut image_env = base_env.clone();
    let mut expansion_base = BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]);
    expansion_base.extend(base_env.clone());
    let used_base = std::cell::Cell::new(false);
    for ins in &stage.instructions {
        let line = ins.line;
        used_base.set(false);
        // ARG only feeds expansion.
        if let Args::Arg(kvs) = &ins.args {
            for kv in kvs {
                let vars = Vars {
                    base: &expansion_base,
                    args: &args,
                    envs: &envs,
                    used_base: &used_base,
                };
                let k = cx.expand(line, &kv.key, &vars)?;
                let v = if let Some(v) = cx
                    .input
                    .dependency_args
                    .get(&k)
                    .or_else(|| cx.input.args.get(&k))
                {
                    Some(v.clone())
                } else if let Some(raw) = &kv.value {
                    Some(cx.expand(line, raw, &vars)?)
                } else {
                    cx.meta.get(&k).cloned()
                };
                if let Some(v) = v {
                    args.insert(k, v);
                }
            }
            continue;
        }
        let vars = Vars {
            base: &expansion_base,
            args: &args,
            envs: &envs,
            used_base: &used_base,
        };
        let mut deps: Vec<String> = Vec::new();
        let mut text = ins.original.clone();
        let job: Result<JobInstruction, String>;
        match &ins.args {
            Args::Env(kvs) | Args::Label(kvs) => {
                let is_env = ins.keyword == "ENV";
                let mut pairs = Vec::new();
                for (k, v) in kvs {
                    pairs.push((cx.expand(line, k, &vars)?, cx.expand(line, v, &vars)?));
                }
                if !pairs.is_empty() {
                    deps.push(if is_env { "Env" } else { "Labels" }.into());
                    for (k, v) in &pairs {
                        deps.push(k.clone());
                        deps.push(v.clone());
                    }
                }
                text = format!(
                    "{} {}",
                    ins.keyword,
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let kvs: Vec<JobKeyValue> = pairs
                    .iter()
                    .map(|(name, value)| JobKeyValue {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect();
                job = Ok(if is_env {
                    JobInstruction::Env { vars: kvs }
                } else {
                    JobInstruction::Label { labels: kvs }
                });
                if is_env {
                    for (k, v) in pairs {
                        envs.insert(k.clone(), v.clone());
                        image_env.insert(k, v);
                    }
                }
            }
            Args::Copy(c) | Args::Add(c) => {
                let is_copy = ins.keyword == "COPY";
                let mut sources = Vec::new();
                for s in &c.sources {
                    if !ins.heredocs.is_empty() && is_heredoc_source(s) {
                        continue;
                    }
                    sources.push(cx.expand(line, s, &vars)?);
                }
                let dest = cx.expand(line, &c.dest, &vars)?;
                let chown = match &c.chown {
                    Some(v) => cx.expand(line, v, &vars)?,
                    None => String::new(),
                };
                let chmod = match &c.chmod {
                    Some(v) => cx.expand(line, v, &vars)?,
                    None => String::new(),
                };
                let from = match &c.from {
                    Some(v) => cx.expand(line, v, &vars)?,
                    None => String::new(),
                };
                let mut job_from = None;
                let job_chown = (!chown.is_empty()).then(|| chown.clone());
                let job_chmod = (!chmod.is_empty()).then(|| chmod.clone());
                if is_copy {
                    let expanded_from = if from.is_empty() {
                        String::new()
                    } else {
                        match df.resolve_stage_ref(&from, index, true) {
                            Some(d) => {
                                let dep = &built[&d];
                                provisional |= dep.provisional;
                                match cx
                                    .inputs
                                    .stage_image_name(&dep.werf_image, &dep.last_digest)
                                {
                                    Some(n) => n,
                                    None => {
                                        provisional = true;
                                        format!("{}:{}", dep.werf_image, dep.last_digest)
                                    }
                                }
                            }
                            None => from.clone(),
                        }
                    };
                    deps.extend(["From".to_string(), from.clone()]);
                    deps.push("Sources".into());
                    deps.extend(sources.iter().cloned());
                    deps.extend([
                        "Dest".to_string(),
                        dest.clone(),
                        "Chown".into(),
                        chown,
                        "Chmod".into(),
                        chmod,
                    ]);
                    if !from.is_empty() {
                        job_from = Some(expanded_from.clone());
                    }
                    deps.extend(["ExpandedFrom".to_string(), expanded_from]);
                } else {
                    deps.push("Sources".into());
                    deps.extend(sources.iter().cloned());
                    deps.extend([
                        "Dest".to_string(),
                        dest.clone(),
                        "Chown".into(),
                        chown,
                        "Chmod".into(),
                        chmod,
                    ]);
                }
                let context_sources: Vec<String> = sources
                    .iter()
                    .filter(|s| !is_remote_source(s))
                    .cloned()
                    .collect();
                let uses_context = if is_copy {
                    from.is_empty()
                } else {
                    !context_sources.is_empty()
                };
                if uses_context && !context_sources.is_empty() {
                    deps.push("SourcesChecksum".into());
                    deps.push(cx.globs_checksum(&context_sources, line)?);
                }
                text = format!("{} {} {}", ins.keyword, sources.join(" "), dest);
                let (chown, chmod) = (job_chown, job_chmod);
                job = if !ins.heredocs.is_empty() {
                    Err(format!("{} with a heredoc", ins.keyword))
                } else if c.parents || !c.exclude.is_empty() {
                    Err(format!("{} --parents/--exclude", ins.keyword))
                } else if c.checksum.is_some() || c.keep_git_dir {
                    Err("ADD --checksum/--keep-git-dir".to_string())
                } else if is_copy {
                    Ok(JobInstruction::Copy {
                        sources,
                        dest,
                        from: job_from,
                        chown,
                        chmod,
                    })
                } else {
                    Ok(JobInstruction::Add {
                        sources,
                        dest,
                        chown,
                        chmod,
                    })
                };
            }
            Args::Run(r) => {
                let mut env: BTreeMap<String, String> = expansion_base.clone();
                env.extend(args.clone());
                env.extend(envs.clone());
                env.extend(cx.input.dependency_args.clone());
                let mut sorted: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                sorted.sort();
                deps.push("Env".into());
                deps.extend(sorted);
                let (cmd, prepend) = command_parts(&r.command);
                deps.push("Command".into());
                deps.extend(cmd);
                deps.extend([
                    "PrependShell".to_string(),
                    prepend.to_string(),
                    "Network".into(),
                    r.network.clone().unwrap_or_else(|| "default".into()),
                    "Security".into(),
                    r.security.clone().unwrap_or_else(|| "sandbox".into()),
                ]);
                let mut bind_sources = Vec::new();
                if !r.mounts.is_empty() {
                    deps.push("Mounts".into());
                    for m in &r.mounts {
                        let ty = m.mount_type().to_string();
                        let from = m.from().unwrap_or("").to_string();
                        let source = m.source().unwrap_or("").to_string();
                        let target = m.target().unwrap_or("").to_string();
                        let ro_default = ty == "bind";
                        let ro = m
                            .fields
                            .iter()
                            .rev()
                            .find_map(|(k, v)| match k.as_str() {
                                "ro" | "readonly" => Some(v.is_empty() || v == "true"),
                                "rw" | "readwrite" => Some(!(v.is_empty() || v == "true")),
                                _ => None,
                            })
                            .unwrap_or(ro_default);
                        let field = |n: &str| {
                            m.fields
                                .iter()
                                .rev()
                                .find(|(k, _)| k == n)
                                .map(|(_, v)| v.clone())
                        };
                        let sharing = field("sharing").unwrap_or_else(|| {
                            if ty == "cache" {
                                "shared".into()
                            } else {
                                String::new()
                            }
                        });
                        deps.extend([
                            "Type".to_string(),
                            ty.clone(),
                            "From".into(),
                            from.clone(),
                            "Source".into(),
                            source.clone(),
                            "Target".into(),
                            target,
                            "ReadOnly".into(),
                            ro.to_string(),
                            "CacheID".into(),
                            field("id").unwrap_or_default(),
                            "CacheSharing".into(),
                            sharing,
                            "Required".into(),
                            field("required")
                                .map(|v| v.is_empty() || v == "true")
                                .unwrap_or(false)
                                .to_string(),
                        ]);
                        for (k, label) in [("mode", "Mode"), ("uid", "UID"), ("gid", "GID")] {
                            if let Some(v) = field(k) {
                                let n = if k == "mode" {
                                    u32::from_str_radix(&v, 8)
                                        .map(|n| n.to_string())
                                        .unwrap_or(v)
                                } else {
                                    v
                                };
                                deps.push(label.into());
                                deps.push(n);
                            }
                        }
                        if ty == "bind" && from.is_empty() && !source.is_empty() {
                            bind_sources.push(source);
                        }
                    }
                }
                if !bind_sources.is_empty() {
                    deps.push("SourcesChecksum".into());
                    deps.push(cx.globs_checksum(&bind_sources, line)?);
                }
                job = run_job(r, &args, !ins.heredocs.is_empty());
            }
            Args::Cmd(c) | Args::Entrypoint(c) => {
                let (cmd, prepend) = command_parts(c);
                deps.push(
                    if ins.keyword == "CMD" {
                        "Cmd"
                    } else {
                        "Entrypoint"
                    }
                    .into(),
                );
                deps.extend(cmd.iter().cloned());
                deps.push("PrependShell".into());
                deps.push(prepend.to_string());
                job = Ok(if ins.keyword == "CMD" {
                    JobInstruction::Cmd {
                        command: cmd,
                        prepend_shell: prepend,
                    }
                } else {
                    JobInstruction::Entrypoint {
                        command: cmd,
                        prepend_shell: prepend,
                    }
                });
            }
            Args::Expose(ports) => {
                deps.push("Ports".into());
                let mut expanded = Vec::new();
                for p in ports {
                    expanded.push(cx.expand(line, p, &vars)?);
                }
                deps.extend(expanded.iter().cloned());
                job = Ok(JobInstruction::Expose { ports: expanded });
            }
            Args::Volume(v) => {
                deps.push("Volumes".into());
                let mut paths = Vec::new();
                for p in v {
                    paths.push(cx.expand(line, p, &vars)?);
                }
                deps.extend(paths.iter().cloned());
                job = Ok(JobInstruction::Volume { paths });
            }
            Args::User(u) => {
                let user = cx.expand(line, u, &vars)?;
                deps.extend(["User".to_string(), user.clone()]);
                job = Ok(JobInstruction::User { user });
            }
            Args::Workdir(p) => {
                let path = cx.expand(line, p, &vars)?;
                deps.extend(["Path".to_string(), path.clone()]);
                job = Ok(JobInstruction::Workdir { path });
            }
            Args::StopSignal(s) => {
                let signal = cx.expand(line, s, &vars)?;
                deps.extend(["Signal".to_string(), signal.clone()]);
                job = Ok(JobInstruction::Stopsignal { signal });
            }
            Args::Maintainer(m) => {
                deps.extend(["Maintainer".to_string(), m.clone()]);
                job = Ok(JobInstruction::Maintainer { name: m.clone() });
            }
            Args::Shell(s) => {
                deps.push("Shell".into());
                deps.extend(s.iter().cloned());
                job = Ok(JobInstruction::Shell { shell: s.clone() });
            }
            Args::Onbuild(e) => {
                deps.extend(["Expression".to_string(), e.clone()]);
                job = Ok(JobInstruction::Onbuild {
                    expression: e.clone(),
                });
            }
            Args::Healthcheck(h) => {
                job = Ok(healthcheck_job(h.as_ref()));
                match h {
                    None => deps.extend([
                        "Test".to_string(),
                        "NONE".into(),
                        "Interval".into(),
                        "0s".into(),
                        "Timeout".into(),
                        "0s".into(),
                        "StartPeriod".into(),
                        "0s".into(),
                        "Retries".into(),
                        "0".into(),
                    ]),
                    Some(h) => {
                        let (cmd, prepend) = command_parts(&h.command);
                        deps.push("Test".into());
                        deps.push(if prepend { "CMD-SHELL" } else { "CMD" }.into());
                        deps.extend(cmd);
                        deps.extend([
                            "Interval".to_string(),
                            go_duration(h.interval.as_deref()),
                            "Timeout".into(),
                            go_duration(h.timeout.as_deref()),
                            "StartPeriod".into(),
                            go_duration(h.start_period.as_deref()),
                            "Retries".into(),
                            h.retries.clone().unwrap_or_else(|| "0".into()),
                        ]);
                    }
                }
            }
            Args::Arg(_) | Args::From { .. } => unreachable!("handled above"),
        }
        deps.extend(heredoc_extras(ins));
        // The base environment reaches the digest through a RUN's environment or an expansion.
        if env_unknown && (ins.keyword == "RUN" || used_base.get()) {
            provisional = true;
        }
        let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
        let name = ins.stage_name();
        let digest = match &prev {
            Some(p) => stage_digest(&cx.platform, &name, &sha256_hex(&refs), Some((p, "")), None),
            None => stage_digest(
                &cx.platform,
                &name,
                &sha256_hex(&refs),
                None,
                Some(&base_ref),
            ),
        };
        out.push(PlannedStage {
            name,
            digest: digest.clone(),
            build: Some(StagedBuild {
                base: base.take(),
                step: match job {
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
            provisional,
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
            env: image_env,
            provisional: provisional || env_unknown,
        },
    ))
}

/// The job form of a `RUN`: the command unexpanded (the shell expands it at run time), the
/// stage's build args in its environment (Docker sets them for `RUN` only), the mounts as
/// written.
fn run_job(
    r: &crate::dockerfile::RunArgs,
    args: &BTreeMap<String, String>,
    heredoc: bool,
) -> Result<JobInstruction, String> {
    if heredoc {
        return Err("RUN with a heredoc".into());
    }
    if r.security.as_deref() == Some("insecure") {
        return Err("RUN --security=insecure".into());
    }
    let (command, prepend_shell) = command_parts(&r.command);
    let network = match r.network.as_deref() {
        None => None,
        Some("none") => Some(JobNetwork::None),
        Some("host") => Some(JobNetwork::Host),
        Some("default") => Some(JobNetwork::Default),
        Some(other) => return Err(format!("RUN --network={other}")),
    };
    let mounts = r
        .mounts
        .iter()
        .map(|m| {
            if m.mount_type() == "ssh" {
                RunMount::Ssh {
                    target: m.target().map(str::to_string),
                }
            } else {
                let spec = m
                    .fields
                    .iter()
                    .map(|(k, v)| {
                        if v.is_empty() {
                            k.clone()
                        } else {
                            format!("{k}={v}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                RunMount::Other { spec }
            }
        })
        .collect();
    Ok(JobInstruction::Run {
        command,
        prepend_shell,
        env: args
            .iter()
            .map(|(name, value)| JobKeyValue {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        network,
    })
}

/// The job form of a `HEALTHCHECK` (`NONE`, `CMD args...` or `CMD-SHELL command`).
fn healthcheck_job(h: Option<&crate::dockerfile::HealthcheckArgs>) -> JobInstruction {
    match h {
        None => JobInstruction::Healthcheck {
            test: vec!["NONE".into()],
            interval: None,
            timeout: None,
            start_period: None,
            retries: None,
        },
        Some(h) => {
            let (cmd, prepend) = command_parts(&h.command);
            let mut test = vec![if prepend { "CMD-SHELL" } else { "CMD" }.to_string()];
            test.extend(cmd);
            JobInstruction::Healthcheck {
                test,
                interval: h.interval.clone(),
                timeout: h.timeout.clone(),
                start_period: h.start_period.clone(),
                retries: h.retries.as_deref().and_then(|r| r.parse().ok()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        assert_eq!(go_duration(None), "0s");
        assert_eq!(go_duration(Some("30s")), "30s");
        assert_eq!(go_duration(Some("90s")), "1m30s");
        assert_eq!(go_duration(Some("1h")), "1h0m0s");
        assert_eq!(go_duration(Some("1.5s")), "1.5s");
        assert_eq!(go_duration(Some("500ms")), "500ms");
        assert_eq!(go_duration(Some("2m")), "2m0s");
    }

    #[test]
    fn dirhash_of_one_file() {
        // Go: dirhash.Hash1([]string{"a.txt"}, open) for content "hello\n"; computed with
        // Python: base64(sha256(f"{sha256(b'hello\n').hexdigest()}  a.txt\n")).
        let sum = hex_lower(&Sha256::digest(b"hello\n"));
        assert_eq!(
            dirhash_h1(vec![("a.txt".into(), sum)]),
            "h1:xULs+l4jrMyt60GIZwYIw7bhbzwK3CkR1JyTboQZesk="
        );
    }

    #[test]
    fn go_glob_components() {
        assert!(go_path_match("src/*.go", "src/a.go"));
        assert!(!go_path_match("src/*.go", "src/x/a.go"));
        assert!(go_path_match("*", "dir"));
    }
}
