//! Stapel image stages (werf: `pkg/build/image/stapel.go` `initStages`, `pkg/build/stage/*`).
//!
//! Stages in werf's order, each only when configured: `from`, `beforeInstall`,
//! `dependenciesBeforeInstall`, `gitArchive`, `install`, `dependenciesAfterInstall`,
//! `beforeSetup`, `dependenciesBeforeSetup`, `setup`, `dependenciesAfterSetup`, `gitCache`,
//! `gitLatestPatch`, `dockerInstructions`, `imageSpec`. Each digest is the generic formula
//! ([`crate::digest::stage_digest`]) over the stage's dependencies ([`deps`], [`git`]) and the
//! previous stage's digest and *next-stage dependencies*: `""` after most stages, but after a
//! git-related stage (`gitArchive`; `install`/`beforeSetup`/`setup`) the SHA-256 of the sorted
//! commits recorded in the labels of the stage image the stages storage selected for it (the
//! empty string's SHA-256 when the image has no git mapping).
//!
//! What the plan can and cannot know offline:
//! - `from`, `beforeInstall`, `gitArchive` and a first user stage are exact.
//! - A stage after a git-related stage depends on the commit that stage's image was built at.
//!   werf selects the oldest image whose commit is an ancestor of the current one, so it may be
//!   older than the current commit. Without [`StapelInputs`] the plan assumes the current commit
//!   (what a first build does) and marks every later stage *provisional*.
//! - `gitCache`/`gitLatestPatch` are empty (skipped) when the previous stage's commit is the
//!   current one — the assumption above; with an older recorded commit they hash the git patch,
//!   which the plan does not compute: they and later stages are *pending*.
//! - `dependencies*` (imports and `dependencies`) need a checksum of the imported files or the
//!   dependency's stage image name, `fromLatest` the base's registry repo ID and `imageSpec` is
//!   not computed yet: such stages and every later one are *pending* with the reason.
//! - Remote git mappings (`url:`) are not planned yet: `gitArchive` and later are pending.
//! - `ansible:` is not supported: an error naming the image.

pub mod deps;
pub mod git;

use crate::config::StapelImage;
use crate::source::GitTree;

use super::{DigestError, DigestMode, stage_digest_in};
use deps::FromBase;
use git::{Mapping, UserStage};

/// What the `from` stage of an image is based on, as the caller (the planner) resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StapelBase {
    /// `from: scratch`.
    Scratch,
    /// An external reference, as written in `from`.
    External(String),
    /// Another werf image (`fromImage`, `from` naming a werf image, `fromArtifact`): the
    /// content digest of its last stage for this platform.
    Image {
        /// The werf image name.
        name: String,
        /// Its content digest.
        content_digest: Known,
    },
}

/// A value that is known, known under an assumption, or not known before build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Exact.
    Final(String),
    /// Computed under the stated assumption.
    Provisional {
        /// The value.
        value: String,
        /// The assumption, e.g. `assumes stage gitArchive of image "app" is built at commit …`.
        assumes: String,
    },
    /// Only known at build time; what it waits for.
    Pending(String),
}

/// One Stapel image × platform to plan.
#[derive(Debug, Clone)]
pub struct StapelImageInput<'a> {
    /// werf image name (errors and notes name it).
    pub image: &'a str,
    /// Its werf.yaml directives.
    pub config: &'a StapelImage,
    /// Effective image cache version: `cacheVersion`, else `build.cacheVersion`.
    pub cache_version: Option<&'a str>,
    /// The base, resolved by the caller.
    pub base: StapelBase,
    /// An `imageSpec` stage follows (the image's `imageSpec`, or `build.imageSpec` for a final
    /// image).
    pub image_spec: bool,
    /// Target platform, e.g. `linux/arm64`.
    pub platform: &'a str,
    /// werf-identical or strict digests (strict: its own salt, and file modes and paths in the
    /// `stageDependencies` checksums).
    pub digest_mode: super::DigestMode,
}

/// Build-time facts that make provisional stages exact (the controller has them after looking
/// stages up; the offline plan has none: [`Offline`]).
pub trait StapelInputs {
    /// The commits (one per git mapping, in werf.yaml order) recorded in the image the stages
    /// storage holds for stage `stage` of `image` with `digest`; `None` when no such image
    /// exists (it will be built at the current commit) or it is not known.
    fn recorded_commits(&self, image: &str, stage: &str, digest: &str) -> Option<Vec<String>>;
}

/// No build-time facts: git-related stages are assumed built at the current commit.
pub struct Offline;

impl StapelInputs for Offline {
    fn recorded_commits(&self, _: &str, _: &str, _: &str) -> Option<Vec<String>> {
        None
    }
}

/// One stage of a Stapel image, in build order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StapelStage {
    /// werf stage name (`from`, `beforeInstall`, `gitArchive`, `install`, ...).
    pub name: &'static str,
    /// The digest (56 hex), or `None` while pending.
    pub digest: Option<String>,
    /// Pending: what it waits for. Provisional: the assumption.
    pub note: Option<String>,
    /// The digest holds only under [`Self::note`]'s assumption.
    pub provisional: bool,
    /// What the next stage (and the stage's content digest) appends after this digest: see the
    /// module docs. Meaningless while pending.
    pub next_dependencies: String,
    /// [`Self::next_dependencies`] holds only under this assumption (the stage is assumed built
    /// at the planned commit).
    pub next_assumes: Option<String>,
}

impl StapelStage {
    /// werf's content digest of this stage (`calculateDigest("<name>-content", "", stage)`):
    /// what `fromImage` dependents hash when this is the image's last stage.
    pub fn content_digest(&self, platform: &str) -> Known {
        let Some(digest) = &self.digest else {
            return Known::Pending(
                self.note
                    .clone()
                    .unwrap_or_else(|| format!("stage {}", self.name)),
            );
        };
        let value = content_digest(platform, self.name, digest, &self.next_dependencies);
        let assumes = match (&self.note, self.provisional) {
            (Some(note), true) => Some(note.clone()),
            _ => self.next_assumes.clone(),
        };
        match assumes {
            Some(assumes) => Known::Provisional { value, assumes },
            None => Known::Final(value),
        }
    }
}

/// werf's content digest of a stage: the shared werf model's formula.
pub use kiln_crds::werf::content_digest;

/// werf's `GetLegacyCompatibleStageName`: the name a stage's digest is computed with.
pub fn digest_stage_name(name: &str) -> &str {
    match name {
        "dependenciesBeforeInstall" => "importsBeforeInstall",
        "dependenciesAfterInstall" => "importsAfterInstall",
        "dependenciesBeforeSetup" => "importsBeforeSetup",
        "dependenciesAfterSetup" => "importsAfterSetup",
        other => other,
    }
}

/// How far the chain is known; once worse, later stages stay at least as bad.
#[derive(Debug, Clone)]
enum Chain {
    Exact,
    Provisional(String),
    Pending(String),
}

struct Builder<'a> {
    platform: &'a str,
    mode: DigestMode,
    chain: Chain,
    prev: Option<(String, String)>,
    out: Vec<StapelStage>,
}

impl Builder<'_> {
    /// Adds a stage with the given dependencies; `next` gives its next-stage dependencies from
    /// its digest (or `None` when they are `""`).
    fn push(
        &mut self,
        name: &'static str,
        deps: Known,
        next: impl FnOnce(&str) -> (String, Option<String>),
    ) {
        let deps = match deps {
            Known::Final(d) => d,
            Known::Provisional { value, assumes } => {
                if matches!(self.chain, Chain::Exact) {
                    self.chain = Chain::Provisional(assumes);
                }
                value
            }
            Known::Pending(why) => {
                if !matches!(self.chain, Chain::Pending(_)) {
                    self.chain = Chain::Pending(why);
                }
                String::new()
            }
        };
        if let Chain::Pending(why) = &self.chain {
            self.out.push(StapelStage {
                name,
                digest: None,
                note: Some(why.clone()),
                provisional: false,
                next_dependencies: String::new(),
                next_assumes: None,
            });
            return;
        }
        let digest = stage_digest_in(
            self.mode,
            self.platform,
            digest_stage_name(name),
            &deps,
            self.prev.as_ref().map(|(d, n)| (d.as_str(), n.as_str())),
            None,
        );
        let (provisional, note) = match &self.chain {
            Chain::Provisional(a) => (true, Some(a.clone())),
            _ => (false, None),
        };
        let (next_deps, assumption) = next(&digest);
        self.out.push(StapelStage {
            name,
            digest: Some(digest.clone()),
            note,
            provisional,
            next_dependencies: next_deps.clone(),
            next_assumes: assumption.clone(),
        });
        if let (Some(a), Chain::Exact) = (assumption, &self.chain) {
            self.chain = Chain::Provisional(a);
        }
        self.prev = Some((digest, next_deps));
    }
}

fn shell_lists(config: &StapelImage) -> [(Vec<String>, Option<String>); 4] {
    let shell = config.shell.clone().unwrap_or_default();
    let list = |l: Option<crate::config::StringList>| l.map(|l| l.0).unwrap_or_default();
    [
        (
            list(shell.before_install),
            shell.before_install_cache_version,
        ),
        (list(shell.install), shell.install_cache_version),
        (list(shell.before_setup), shell.before_setup_cache_version),
        (list(shell.setup), shell.setup_cache_version),
    ]
}

/// Which `dependencies*` stages exist: `[beforeInstall, afterInstall, beforeSetup,
/// afterSetup]`, from `import[]` and `dependencies[]` `before`/`after`.
fn dependency_stages(config: &StapelImage) -> [bool; 4] {
    let mut out = [false; 4];
    let mut mark = |before: &Option<String>, after: &Option<String>| match (
        before.as_deref(),
        after.as_deref(),
    ) {
        (Some("install"), _) => out[0] = true,
        (_, Some("install")) => out[1] = true,
        (Some("setup"), _) => out[2] = true,
        (_, Some("setup")) => out[3] = true,
        _ => {}
    };
    for i in &config.import {
        mark(&i.before, &i.after);
    }
    for d in &config.dependencies {
        mark(&d.before, &d.after);
    }
    out
}

/// All stages of one Stapel image on one platform, in build order, with werf v2 digests (see
/// the module docs for provisional and pending stages).
///
/// Errors: [`DigestError::StapelAnsible`] for `ansible:`; [`DigestError::StapelGitMapping`] for
/// a git mapping without `to`; [`DigestError::StapelDocker`] for a non-scalar `docker.ENV`/
/// `docker.LABEL` value; [`DigestError::Source`] when the commit cannot be read.
pub fn stapel_image_stages(
    tree: &GitTree,
    input: &StapelImageInput<'_>,
    inputs: &dyn StapelInputs,
) -> Result<Vec<StapelStage>, DigestError> {
    let cfg = input.config;
    let image = input.image.to_string();
    if cfg.ansible.is_some() {
        return Err(DigestError::StapelAnsible { image });
    }
    let source_err = |e| DigestError::Source {
        image: input.image.to_string(),
        source: e,
    };
    let commit = tree.commit_id().to_string();

    // Git mappings: local ones normalized, empty ones dropped (as werf does); remote ones make
    // everything from gitArchive on pending.
    let mut mappings = Vec::new();
    let mut remote = None;
    for (index, g) in cfg.git.iter().enumerate() {
        if let Some(url) = &g.url {
            remote.get_or_insert_with(|| url.clone());
            continue;
        }
        let m = Mapping::from_config(g).map_err(|message| DigestError::StapelGitMapping {
            image: image.clone(),
            index,
            message,
        })?;
        if !m.is_empty(tree).map_err(source_err)? {
            mappings.push(m);
        }
    }
    let has_git = !mappings.is_empty() || remote.is_some();
    let remote_pending = remote.map(|url| {
        format!("remote git mapping {url:?} (remote git mappings are not planned by Kiln yet)")
    });

    let mut b = Builder {
        platform: input.platform,
        mode: input.digest_mode,
        chain: Chain::Exact,
        prev: None,
        out: Vec::new(),
    };
    let empty_next = |_: &str| (String::new(), None);

    // from
    let mounts = &cfg.mount;
    let from_deps = |base: &FromBase, repo: Option<&str>| {
        deps::from_dependencies(
            input.cache_version,
            cfg.from_cache_version.as_deref(),
            repo,
            mounts,
            base,
        )
    };
    let from = if cfg.from_latest == Some(true) {
        Known::Pending(format!(
            "the registry repo ID of the base image of image {:?} (fromLatest: true), read at build time",
            input.image
        ))
    } else {
        match &input.base {
            StapelBase::Scratch => Known::Final(from_deps(&FromBase::Scratch, None)),
            StapelBase::External(r) => {
                Known::Final(from_deps(&FromBase::External(r.clone()), None))
            }
            StapelBase::Image { content_digest, .. } => match content_digest {
                Known::Final(d) => {
                    Known::Final(from_deps(&FromBase::ImageContent(d.clone()), None))
                }
                Known::Provisional { value, assumes } => Known::Provisional {
                    value: from_deps(&FromBase::ImageContent(value.clone()), None),
                    assumes: assumes.clone(),
                },
                Known::Pending(why) => Known::Pending(why.clone()),
            },
        }
    };
    b.push("from", from, empty_next);

    let [before_install, install, before_setup, setup] = shell_lists(cfg);
    let shell = cfg.shell.clone().unwrap_or_default();
    let all_version = shell.cache_version.as_deref();
    let checksum = |(cmds, version): &(Vec<String>, Option<String>)| {
        deps::shell_stage_checksum(cmds, version.as_deref(), all_version)
    };
    let dep_stages = dependency_stages(cfg);
    let dependency_pending = |stage: &str| {
        Known::Pending(format!(
            "the files imported into image {:?} {stage} (their checksum, or the dependency's stage image name, is known at build time)",
            input.image
        ))
    };

    let before_install_sum = checksum(&before_install);
    if !before_install_sum.is_empty() {
        b.push(
            "beforeInstall",
            Known::Final(before_install_sum),
            empty_next,
        );
    }
    if dep_stages[0] {
        b.push(
            "dependenciesBeforeInstall",
            dependency_pending("before install"),
            empty_next,
        );
    }

    // What follows a git-related stage: the commits recorded in its image, else the current
    // commit under an assumption.
    let git_next = |stage: &'static str| {
        let mappings = &mappings;
        let commit = commit.clone();
        move |digest: &str| -> (String, Option<String>) {
            if mappings.is_empty() {
                return (deps::next_stage_git_dependencies(&[]), None);
            }
            match inputs.recorded_commits(input.image, stage, digest) {
                Some(commits) => (deps::next_stage_git_dependencies(&commits), None),
                None => (
                    deps::next_stage_git_dependencies(&vec![commit.clone(); mappings.len()]),
                    Some(format!(
                        "assumes stage {stage} of image {:?} is built at commit {commit}; the stages storage may hold one built at an earlier commit",
                        input.image
                    )),
                ),
            }
        }
    };

    if has_git {
        let deps = match &remote_pending {
            Some(why) => Known::Pending(why.clone()),
            None => {
                let hashes: Vec<String> = mappings.iter().map(Mapping::paramshash).collect();
                Known::Final(deps::git_archive_dependencies(&hashes))
            }
        };
        b.push("gitArchive", deps, git_next("gitArchive"));
    }

    let user = |b: &mut Builder<'_>,
                name: &'static str,
                stage: UserStage,
                sum: String|
     -> Result<(), DigestError> {
        if sum.is_empty() {
            return Ok(());
        }
        let mut sums = Vec::new();
        for m in &mappings {
            sums.push(
                m.stage_dependencies_checksum(tree, stage, input.digest_mode)
                    .map_err(source_err)?,
            );
        }
        b.push(
            name,
            Known::Final(deps::user_stage_dependencies(&sum, &sums)),
            git_next(name),
        );
        Ok(())
    };
    user(&mut b, "install", UserStage::Install, checksum(&install))?;
    if dep_stages[1] {
        b.push(
            "dependenciesAfterInstall",
            dependency_pending("after install"),
            empty_next,
        );
    }
    user(
        &mut b,
        "beforeSetup",
        UserStage::BeforeSetup,
        checksum(&before_setup),
    )?;
    if dep_stages[2] {
        b.push(
            "dependenciesBeforeSetup",
            dependency_pending("before setup"),
            empty_next,
        );
    }
    user(&mut b, "setup", UserStage::Setup, checksum(&setup))?;
    if dep_stages[3] {
        b.push(
            "dependenciesAfterSetup",
            dependency_pending("after setup"),
            empty_next,
        );
    }

    let after_patch = cfg.disable_git_after_patch != Some(true);
    if has_git && after_patch {
        // gitCache/gitLatestPatch hash the patch from the previous stage's recorded commit to
        // the current one; with the current commit recorded (or assumed) it is empty and the
        // stages are skipped.
        let recorded_older = b.out.iter().rev().find_map(|s| {
            let digest = s.digest.as_deref()?;
            if !matches!(s.name, "gitArchive" | "install" | "beforeSetup" | "setup") {
                return None;
            }
            Some(
                inputs
                    .recorded_commits(input.image, s.name, digest)
                    .is_some_and(|c| c.iter().any(|c| *c != commit)),
            )
        });
        if recorded_older == Some(true) {
            let why = format!(
                "the git patch of image {:?} from the commit recorded in its previous stage to commit {commit} (computed at build time)",
                input.image
            );
            b.push("gitCache", Known::Pending(why.clone()), empty_next);
            b.push("gitLatestPatch", Known::Pending(why), empty_next);
        }
    }
    if let (Some(docker), true) = (&cfg.docker, after_patch) {
        let deps = deps::docker_instructions_dependencies(docker).map_err(|message| {
            DigestError::StapelDocker {
                image: image.clone(),
                message,
            }
        })?;
        b.push("dockerInstructions", Known::Final(deps), empty_next);
    }
    if input.image_spec {
        b.push(
            "imageSpec",
            Known::Pending(format!(
                "the imageSpec stage of image {:?} (not computed by Kiln yet)",
                input.image
            )),
            empty_next,
        );
    }
    Ok(b.out)
}

#[cfg(test)]
mod tests;
