//! Git mappings of a Stapel image (`git:` entries without `url:`), the way werf's
//! `pkg/build/stage/git_mapping.go` and `pkg/config` normalize and hash them.
//!
//! - **Normalization** (werf's `rawExportBase.toDirective`, `ExportBase.GitMappingAdd`): `add`
//!   (default `/`), `to`, every `includePaths`/`excludePaths` entry are cleaned like Go's
//!   `path.Clean`; `add: /` becomes `""` (the repository root) and a leading `/` is dropped, so
//!   `add` is repo-relative.
//! - **Paramshash** (`GetParamshash`): SHA-256 hex over the concatenation of
//!   `own_own`, `:::`, to, `:::`, add, `:::`, every include path (no separator between them),
//!   `:::`, every exclude path, `:::`, owner, `:::`, group, `:::`, branch, `:::`, tag, `:::`,
//!   commit. `own_own` is werf's full name of a mapping of the project repository (repository
//!   `own`, mapping `own`); branch, tag and commit are empty for it.
//! - **Matcher** (`getPathMatcher`): the include globs, then the exclude globs, below `add`.
//! - **Empty mappings** (`isEmpty`): a mapping that selects no tree entry at the commit is
//!   dropped by werf before stages are made, so it enters no digest.
//! - **stageDependencies checksum** (`StageDependenciesChecksum`): `""` when the stage lists no
//!   globs; else, for each glob in order, the ls-tree checksum (see [`crate::source::ls_tree`])
//!   of the entries under `add` that both the mapping's matcher and the glob (relative to `add`)
//!   select, and the SHA-256 hex of the concatenation of the non-empty checksums (a glob that
//!   selects nothing only makes werf print a warning).

use sha2::{Digest as _, Sha256};

use crate::config::GitMapping;
use crate::source::ls_tree::hex_lower;
use crate::source::path_matcher::{
    BasePathMatcher, IncludeMatcher, MultiMatcher, PathMatcher, TrueMatcher, doublestar_match,
};
use crate::source::{GitTree, SourceError, clean_repo_path};

/// werf's full name of a mapping of the project's own repository (`<repo name>_<mapping name>`).
pub const OWN_FULL_NAME: &str = "own_own";

/// The user stages whose digests take `stageDependencies` checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStage {
    /// `install`.
    Install,
    /// `beforeSetup`.
    BeforeSetup,
    /// `setup`.
    Setup,
}

/// A normalized local git mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Repo-relative source path, `""` for the root.
    pub add: String,
    /// Destination in the image, cleaned (`/app`).
    pub to: String,
    /// Cleaned include globs, relative to `add`.
    pub include: Vec<String>,
    /// Cleaned exclude globs, relative to `add`.
    pub exclude: Vec<String>,
    /// Owner of the files, `""` when unset.
    pub owner: String,
    /// Group of the files, `""` when unset.
    pub group: String,
    /// `stageDependencies.install` globs, relative to `add`.
    pub install: Vec<String>,
    /// `stageDependencies.beforeSetup` globs.
    pub before_setup: Vec<String>,
    /// `stageDependencies.setup` globs.
    pub setup: Vec<String>,
}

/// Go's `path.Clean` (`""` → `.`), used for `to` and the globs as werf cleans them.
pub fn go_path_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let cleaned = clean_repo_path(path);
    match (rooted, cleaned.is_empty()) {
        (true, _) => format!("/{cleaned}"),
        (false, true) => ".".to_string(),
        (false, false) => cleaned,
    }
}

impl Mapping {
    /// Normalizes a werf.yaml `git[]` entry of the project repository. `to` is required (it is
    /// where the files go); errors are a message for [`super::super::DigestError`].
    pub fn from_config(git: &GitMapping) -> Result<Mapping, String> {
        let to = git
            .to
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "`to` is required (the path the files are copied to)".to_string())?;
        let add = go_path_clean(git.add.as_deref().unwrap_or("/"));
        let add = if add == "/" {
            String::new()
        } else {
            add.trim_start_matches('/').to_string()
        };
        let list = |l: &Option<crate::config::StringList>| -> Vec<String> {
            l.as_ref()
                .map(|l| l.0.iter().map(|p| go_path_clean(p)).collect())
                .unwrap_or_default()
        };
        let raw = |l: Option<&crate::config::StringList>| -> Vec<String> {
            l.map(|l| l.0.clone()).unwrap_or_default()
        };
        let deps = git.stage_dependencies.as_ref();
        Ok(Mapping {
            add,
            to: go_path_clean(to),
            include: list(&git.include_paths),
            exclude: list(&git.exclude_paths),
            owner: git.owner.clone().unwrap_or_default(),
            group: git.group.clone().unwrap_or_default(),
            install: raw(deps.and_then(|d| d.install.as_ref())),
            before_setup: raw(deps.and_then(|d| d.before_setup.as_ref())),
            setup: raw(deps.and_then(|d| d.setup.as_ref())),
        })
    }

    /// werf's `GetParamshash`; see the module docs for the bytes hashed.
    pub fn paramshash(&self) -> String {
        let mut h = Sha256::new();
        let sep = ":::";
        for part in [OWN_FULL_NAME, sep, &self.to, sep, &self.add, sep] {
            h.update(part.as_bytes());
        }
        for p in &self.include {
            h.update(p.as_bytes());
        }
        h.update(sep.as_bytes());
        for p in &self.exclude {
            h.update(p.as_bytes());
        }
        // branch, tag and commit are empty for the project repository.
        for part in [
            sep,
            &self.owner,
            sep,
            &self.group,
            sep,
            "",
            sep,
            "",
            sep,
            "",
        ] {
            h.update(part.as_bytes());
        }
        hex_lower(&h.finalize())
    }

    /// werf's `getPathMatcher`: include then exclude globs below `add`.
    pub fn matcher(&self) -> Box<dyn PathMatcher + Send + Sync> {
        let mut inner: Vec<Box<dyn PathMatcher + Send + Sync>> = Vec::new();
        if !self.include.is_empty() {
            inner.push(Box::new(IncludeMatcher::new(&self.include)));
        }
        if !self.exclude.is_empty() {
            inner.push(Box::new(ExcludeMatcher::new(&self.exclude)));
        }
        if inner.is_empty() {
            inner.push(Box::new(TrueMatcher));
        }
        let multi = Box::new(MultiMatcher::new(inner));
        if self.add.is_empty() {
            multi
        } else {
            Box::new(BasePathMatcher::new(&self.add, multi))
        }
    }

    /// Whether the mapping selects nothing at the tree's commit (werf then drops it). The walk
    /// starts at `add` when it is a directory, else at its parent directory.
    pub fn is_empty(&self, tree: &GitTree) -> Result<bool, SourceError> {
        let scope = match tree.entry_at(&self.add)? {
            Some((_, mode))
                if mode == crate::source::ls_tree::MODE_DIR
                    || mode == crate::source::ls_tree::MODE_SUBMODULE =>
            {
                self.add.clone()
            }
            Some(_) => self
                .add
                .rsplit_once('/')
                .map(|(dir, _)| dir.to_string())
                .unwrap_or_default(),
            None => return Ok(true),
        };
        Ok(!tree.any_matching(&scope, &*self.matcher())?)
    }

    /// The `stageDependencies` globs of a user stage.
    pub fn stage_globs(&self, stage: UserStage) -> &[String] {
        match stage {
            UserStage::Install => &self.install,
            UserStage::BeforeSetup => &self.before_setup,
            UserStage::Setup => &self.setup,
        }
    }

    /// werf's `StageDependenciesChecksum`; see the module docs.
    pub fn stage_dependencies_checksum(
        &self,
        tree: &GitTree,
        stage: UserStage,
        mode: kiln_crds::imagebuild::DigestMode,
    ) -> Result<String, SourceError> {
        let globs = self.stage_globs(stage);
        if globs.is_empty() {
            return Ok(String::new());
        }
        let mut h = Sha256::new();
        for glob in globs {
            let glob_matcher: Box<dyn PathMatcher + Send + Sync> = {
                let inc = Box::new(MultiMatcher::new(vec![Box::new(IncludeMatcher::new(
                    std::slice::from_ref(glob),
                ))]));
                if self.add.is_empty() {
                    inc
                } else {
                    Box::new(BasePathMatcher::new(&self.add, inc))
                }
            };
            let matcher = MultiMatcher::new(vec![self.matcher(), glob_matcher]);
            let sum = tree.ls_tree_checksum(&self.add, &matcher, mode)?;
            h.update(sum.as_bytes());
        }
        Ok(hex_lower(&h.finalize()))
    }
}

/// werf's `excludePathMatcher`: selects every path no exclude glob matches (a glob matching a
/// parent directory excludes everything below it); goes through a directory that some glob
/// may match something below.
#[derive(Debug, Clone)]
pub struct ExcludeMatcher {
    globs: Vec<String>,
}

impl ExcludeMatcher {
    /// Globs relative to the matcher's base (`""`/`.` mean the base itself).
    pub fn new(globs: &[String]) -> Self {
        ExcludeMatcher {
            globs: globs.iter().map(|g| format_path(g)).collect(),
        }
    }
}

fn format_path(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        clean_repo_path(path)
    }
}

/// werf's `SafeTrimGlobsAndSlashesFromPath`: drops trailing components made only of `*`.
fn trim_star_components(glob: &str) -> String {
    let mut parts: Vec<&str> = glob.split('/').filter(|p| !p.is_empty()).collect();
    while parts
        .last()
        .is_some_and(|l| l.trim_end_matches('*').is_empty())
    {
        parts.pop();
    }
    parts.join("/")
}

/// werf's `isPathMatched`: the glob, the glob without trailing star components, and that
/// plus `/**/*`.
fn glob_selects(path: &str, glob: &str) -> bool {
    let trimmed = trim_star_components(glob);
    let below = if trimmed.is_empty() {
        "**/*".to_string()
    } else {
        format!("{trimmed}/**/*")
    };
    [glob, trimmed.as_str(), below.as_str()]
        .iter()
        .any(|g| doublestar_match(g, path))
}

fn is_universal(globs: &[String]) -> bool {
    globs
        .iter()
        .any(|g| g == "." || trim_star_components(g).is_empty())
}

impl PathMatcher for ExcludeMatcher {
    fn is_path_matched(&self, path: &str) -> bool {
        let path = format_path(path);
        !self.globs.iter().any(|g| glob_selects(&path, g))
    }

    fn should_go_through(&self, path: &str) -> bool {
        let path = format_path(path);
        if self.globs.is_empty() || is_universal(&self.globs) {
            return false;
        }
        if path.is_empty() {
            return true;
        }
        let mut in_progress = self.globs.clone();
        let mut matched = 0usize;
        for part in path.split('/') {
            if in_progress.is_empty() {
                break;
            }
            let mut next = Vec::new();
            matched = 0;
            for glob in &in_progress {
                let parts: Vec<&str> = glob.split('/').collect();
                if !doublestar_match(parts[0], part) {
                    continue;
                }
                if parts[0].contains("**") {
                    next.push(glob.clone());
                } else if parts.len() > 1 {
                    next.push(clean_repo_path(&parts[1..].join("/")));
                } else {
                    matched += 1;
                }
            }
            in_progress = next;
        }
        matched == 0 && !in_progress.is_empty() && !is_universal(&in_progress)
    }

    fn id(&self) -> String {
        let mut g = self.globs.clone();
        g.sort();
        format!("exclude({})", g.join(":::"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StringList;

    fn mapping(add: &str, to: &str) -> GitMapping {
        GitMapping {
            add: Some(add.into()),
            to: Some(to.into()),
            ..GitMapping::default()
        }
    }

    #[test]
    fn normalizes_add_to_and_globs_like_werf() {
        let mut git = mapping("/src/", "/app/");
        git.include_paths = Some(StringList(vec!["./a//b/".into()]));
        let m = Mapping::from_config(&git).unwrap();
        assert_eq!(m.add, "src");
        assert_eq!(m.to, "/app");
        assert_eq!(m.include, vec!["a/b"]);
        let root = Mapping::from_config(&GitMapping {
            to: Some("/app".into()),
            ..GitMapping::default()
        })
        .unwrap();
        assert_eq!(root.add, "", "add defaults to / = the repository root");
    }

    #[test]
    fn mapping_without_to_is_rejected() {
        let err = Mapping::from_config(&GitMapping::default()).unwrap_err();
        assert!(err.contains("`to` is required"), "{err}");
    }

    #[test]
    fn paramshash_concatenates_fields_with_triple_colons() {
        let mut git = mapping("/", "/app");
        git.include_paths = Some(StringList(vec!["a".into(), "b".into()]));
        git.exclude_paths = Some(StringList(vec!["c".into()]));
        git.owner = Some("app".into());
        let m = Mapping::from_config(&git).unwrap();
        // python3: hashlib.sha256(b"own_own:::/app::::::ab:::c:::app::::::::::::").hexdigest()
        // (name, to, add "", includes "a""b" unseparated, exclude, owner, then empty group,
        // branch, tag, commit).
        assert_eq!(
            m.paramshash(),
            "e46257b60b19072a4bc2146ff5eef82481da76aa525b77e5490ac0440d2654b5"
        );
    }

    #[test]
    fn exclude_matcher_follows_werf() {
        let m = ExcludeMatcher::new(&["docs".into(), "*.md".into()]);
        assert!(!m.is_path_matched("docs"));
        assert!(!m.is_path_matched("docs/a.txt"), "below an excluded dir");
        assert!(!m.is_path_matched("README.md"));
        assert!(m.is_path_matched("src/a.rs"));
        assert!(m.should_go_through(""));
        assert!(
            !m.should_go_through("docs"),
            "fully excluded: nothing to walk"
        );
        let deep = ExcludeMatcher::new(&["src/gen".into()]);
        assert!(deep.should_go_through("src"));
        assert!(!deep.should_go_through("lib"));
        assert!(!ExcludeMatcher::new(&["**/*".into()]).should_go_through("x"));
    }
}
