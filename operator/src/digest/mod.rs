//! werf v2 stage digests for Dockerfile images (`werf: pkg/build/build_phase.go`
//! `calculateDigest`, `pkg/build/stage/full_dockerfile.go`, `pkg/build/stage/instruction`).
//!
//! A stage digest is SHA3-224 (56 lowercase hex) over the `:::`-joined parts
//! 1. the target platform, only when it is not `linux/amd64`;
//! 2. the salt: werf's `"1.2"`, or [`STRICT_SALT`] in [`DigestMode::Strict`];
//! 3. the stage name (`dockerfile`; staged: `FROM`, or the instruction keyword as written in the
//!    Dockerfile: `RUN`, `copy`, `Expose`, ...);
//! 4. the stage's dependencies string (a SHA-256 hex of its inputs, see [`full`], [`staged`]);
//! 5. for a stage after another: the previous stage's digest and its next-stage dependencies
//!    (always `""` for Dockerfile stages);
//! 6. staged v1 only, on the first stage of each Dockerfile stage: the base image reference.
//!
//! [`DigestMode::Werf`] (the default) reproduces werf byte for byte. [`DigestMode::Strict`]
//! also hashes the inputs werf leaves out although they change the image (listed in
//! `docs/werf-compatibility.md`) and uses its own salt, so that a strict digest never equals a
//! werf one and the two modes never share a stage.

pub mod context;
pub mod full;
pub mod platform;
pub mod staged;
pub mod stapel;

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::dockerfile::{Dockerfile, DockerfileError};
use crate::source::{GitTree, SourceError, clean_repo_path, join_path};

pub use kiln_crds::imagebuild::DigestMode;

/// werf's stage digest version salt, formula and SHA3-224 hash, and the strict mode's salt:
/// the shared werf model ([`kiln_crds::werf::digest`]), so that the builder's content digests
/// use the same rule.
pub use kiln_crds::werf::digest::{
    BUILD_CACHE_VERSION, STRICT_SALT, digest_salt, sha3_224_hex, stage_digest, stage_digest_in,
};

/// werf's `Sha256Hash`: SHA-256 hex (64 chars) over the `:::`-joined parts.
pub fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(parts.join(":::").as_bytes());
    crate::source::ls_tree::hex_lower(&h.finalize())
}

/// werf's `staged` setting for a Dockerfile image plus `WERF_STAGED_DOCKERFILE_VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagedMode {
    /// One `dockerfile` stage for the whole build (werf's default).
    NonStaged,
    /// One stage per instruction; the base image enters the first instruction stage.
    StagedV1,
    /// One stage per instruction after a separate `FROM` stage.
    StagedV2,
}

/// What [`dockerfile_image_stages`] needs to know about one werf.yaml Dockerfile image.
#[derive(Debug, Clone)]
pub struct DockerfileImageInput<'a> {
    /// werf image name, for errors.
    pub image: &'a str,
    /// Repo-relative context directory, `""` = repo root.
    pub context: &'a str,
    /// Dockerfile path relative to `context`.
    pub dockerfile: &'a str,
    /// Target stage name; the last stage when None.
    pub target: Option<&'a str>,
    /// werf.yaml `args`, stringified.
    pub args: &'a BTreeMap<String, String>,
    /// Build args from `dependencies[].imports` (win over `args`).
    pub dependency_args: &'a BTreeMap<String, String>,
    /// werf.yaml `addHost`.
    pub add_hosts: &'a [String],
    /// werf.yaml `contextAddFiles` (relative to the context, read from the work tree).
    pub context_add_files: &'a [String],
    /// Effective cache version: image `cacheVersion`, else `build.cacheVersion`.
    pub cache_version: Option<&'a str>,
    /// Staged mode.
    pub staged: StagedMode,
    /// Target platform, e.g. `linux/amd64`.
    pub platform: &'a str,
    /// werf-identical or strict digests.
    pub digest_mode: DigestMode,
}

/// One stage of an image, in build order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStage {
    /// werf stage name: `dockerfile`; staged: `FROM` or the keyword as written (`RUN`, `copy`)
    pub name: String,
    /// Stage digest: 56 lowercase hex (SHA3-224).
    pub digest: String,
    /// Staged stages: the instruction after ARG expansion.
    pub instruction: Option<String>,
    /// Staged stages: index of the Dockerfile stage this stage belongs to.
    pub dockerfile_stage: Option<usize>,
    /// Staged stages: the werf image the stage belongs to — the werf.yaml image for the target
    /// Dockerfile stage, `<image>/stage/<name>` (or `<image>/stage<index>`) for the others.
    pub werf_image: Option<String>,
    /// The digest uses placeholders for build-time inputs that were not given (a base image's
    /// environment, a Dockerfile stage's built image name; see [`staged::StagedInputs`]) and
    /// will change once they are known. Always false for non-staged images.
    pub provisional: bool,
    /// Staged stages: how the builder builds the stage, from the same expansion the digest
    /// used ([`staged::StagedBuild`]); `None` for the non-staged `dockerfile` stage.
    pub build: Option<staged::StagedBuild>,
}

/// Errors computing the stages of a Dockerfile image; each names the werf image and, where one
/// applies, the file and line.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// Reading the git commit failed.
    #[error("image {image}: {source}")]
    Source {
        /// werf image name.
        image: String,
        /// The git error.
        #[source]
        source: SourceError,
    },
    /// The Dockerfile does not exist at the commit.
    #[error("image {image}: Dockerfile {path} not found at commit {commit}")]
    DockerfileNotFound {
        /// werf image name.
        image: String,
        /// Repo-relative path looked up.
        path: String,
        /// The commit.
        commit: String,
    },
    /// The Dockerfile or `.dockerignore` is malformed, or the target is unknown.
    #[error("image {image}: {source}")]
    Dockerfile {
        /// werf image name.
        image: String,
        /// The parse error (names file and line).
        #[source]
        source: DockerfileError,
    },
    /// A COPY/ADD source selects nothing in the build context.
    #[error(
        "image {image}: {file}, line {line}: COPY/ADD source {source_path:?} matches no file in the build context {context:?} (after .dockerignore)"
    )]
    CopySourceNotFound {
        /// werf image name.
        image: String,
        /// Repo-relative Dockerfile path.
        file: String,
        /// 1-based line.
        line: usize,
        /// The source as written after expansion.
        source_path: String,
        /// Repo-relative context directory (`.` for the root).
        context: String,
    },
    /// A variable expansion failed (`${X:?}` unset, unterminated quote in ARG/ENV/FROM/COPY).
    #[error("image {image}: {file}, line {line}: {message}")]
    Expansion {
        /// werf image name.
        image: String,
        /// Repo-relative Dockerfile path.
        file: String,
        /// 1-based line.
        line: usize,
        /// What failed.
        message: String,
    },
    /// A `FROM` resolves to an empty base image.
    #[error(
        "image {image}: {file}, line {line}: invalid base image {base:?} (empty after expanding build args)"
    )]
    InvalidBaseImage {
        /// werf image name.
        image: String,
        /// Repo-relative Dockerfile path.
        file: String,
        /// 1-based line of the FROM.
        line: usize,
        /// The base as written.
        base: String,
    },
    /// The platform string is not `os/arch[/variant]`.
    #[error(
        "image {image}: invalid platform {platform:?} (expected os/arch[/variant], e.g. linux/arm64)"
    )]
    InvalidPlatform {
        /// werf image name.
        image: String,
        /// The platform as given.
        platform: String,
    },
    /// `contextAddFiles` could not be read.
    #[error("image {image}: {message}")]
    ContextAddFiles {
        /// werf image name.
        image: String,
        /// What failed.
        message: String,
    },
    /// A Stapel image uses `ansible:`, which Kiln does not support.
    #[error(
        "image {image}: `ansible` is not supported by Kiln; write the stages as `shell` commands"
    )]
    StapelAnsible {
        /// werf image name.
        image: String,
    },
    /// A Stapel `git[]` mapping is invalid.
    #[error("image {image}: git[{index}]: {message}")]
    StapelGitMapping {
        /// werf image name.
        image: String,
        /// Index of the mapping in `git`.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A Stapel `docker` directive is invalid.
    #[error("image {image}: {message}")]
    StapelDocker {
        /// werf image name.
        image: String,
        /// What is wrong.
        message: String,
    },
}

/// The parsed Dockerfile of an image, its target and its build context.
pub(crate) struct Loaded<'a> {
    pub dockerfile: Dockerfile,
    pub target: usize,
    pub context: context::BuildContext<'a>,
    pub platform: platform::Platform,
}

pub(crate) fn load<'a>(
    tree: &'a GitTree,
    input: &DockerfileImageInput<'_>,
) -> Result<Loaded<'a>, DigestError> {
    let platform =
        platform::Platform::parse(input.platform).map_err(|_| DigestError::InvalidPlatform {
            image: input.image.to_string(),
            platform: input.platform.to_string(),
        })?;
    let path = clean_repo_path(&join_path(
        &clean_repo_path(input.context),
        &clean_repo_path(input.dockerfile),
    ));
    let text = tree
        .read_file(&path)
        .map_err(|e| DigestError::Source {
            image: input.image.to_string(),
            source: e,
        })?
        .ok_or_else(|| DigestError::DockerfileNotFound {
            image: input.image.to_string(),
            path: path.clone(),
            commit: tree.commit_id().to_string(),
        })?;
    let wrap = |e| DigestError::Dockerfile {
        image: input.image.to_string(),
        source: e,
    };
    let dockerfile = Dockerfile::parse(&path, &String::from_utf8_lossy(&text)).map_err(wrap)?;
    let target = dockerfile.target_index(input.target).map_err(wrap)?;
    let context = context::BuildContext::new(
        tree,
        input.image,
        input.context,
        input.dockerfile,
        input.context_add_files,
    )?;
    Ok(Loaded {
        dockerfile,
        target,
        context,
        platform,
    })
}

/// All stages of one Dockerfile image on one platform, in build order, with werf v2 digests.
///
/// Non-staged: one `dockerfile` stage ([`full`]). Staged v1/v2: the stages of every Dockerfile
/// stage the target needs, dependencies first, one per instruction ([`staged`]).
///
/// Errors: [`DigestError`] naming the image and, where known, the file and line.
pub fn dockerfile_image_stages(
    tree: &GitTree,
    input: &DockerfileImageInput<'_>,
) -> Result<Vec<PlannedStage>, DigestError> {
    let loaded = load(tree, input)?;
    match input.staged {
        StagedMode::NonStaged => {
            let deps = full::dependencies(&loaded, input)?;
            let platform = loaded.platform.to_string();
            Ok(vec![PlannedStage {
                name: "dockerfile".to_string(),
                digest: stage_digest_in(
                    input.digest_mode,
                    &platform,
                    "dockerfile",
                    &deps,
                    None,
                    None,
                ),
                instruction: None,
                dockerfile_stage: None,
                werf_image: None,
                provisional: false,
                build: None,
            }])
        }
        StagedMode::StagedV1 | StagedMode::StagedV2 => staged::stages(&loaded, input),
    }
}

/// [`dockerfile_image_stages`] with build-time facts for staged images (base image
/// environments, built image names of Dockerfile stages), so that no stage is provisional.
pub fn dockerfile_image_stages_with(
    tree: &GitTree,
    input: &DockerfileImageInput<'_>,
    inputs: &dyn staged::StagedInputs,
) -> Result<Vec<PlannedStage>, DigestError> {
    match input.staged {
        StagedMode::NonStaged => dockerfile_image_stages(tree, input),
        _ => staged::stages_with(&load(tree, input)?, input, inputs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha3_224_vector_from_the_reference() {
        assert_eq!(
            sha3_224_hex(&["1.2", "from", "abc"]),
            "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe"
        );
    }

    #[test]
    fn sha256_joins_with_triple_colon() {
        // sha256("a:::b") computed independently with Python's hashlib.
        assert_eq!(
            sha256_hex(&["a", "b"]),
            "d730e193a29ffa63510df122175a2ec7650070da876fa0004c08f1e496959f79"
        );
        // sha256("") — the files checksum of an empty ls-tree result.
        assert_eq!(
            sha256_hex(&[""]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn platform_enters_first_unless_amd64() {
        let amd = stage_digest("linux/amd64", "dockerfile", "d", None, None);
        assert_eq!(amd, sha3_224_hex(&["1.2", "dockerfile", "d"]));
        let arm = stage_digest("linux/arm64", "dockerfile", "d", None, None);
        assert_eq!(
            arm,
            sha3_224_hex(&["linux/arm64", "1.2", "dockerfile", "d"])
        );
        let chained = stage_digest("linux/amd64", "run", "d", Some(("p", "")), Some("alpine"));
        assert_eq!(
            chained,
            sha3_224_hex(&["1.2", "run", "d", "p", "", "alpine"])
        );
    }
}
