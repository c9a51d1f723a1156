//! A git commit's tree, read with libgit2 (no working tree), the way werf reads build inputs
//! ("giterminism": files come from the commit, never from the checkout on disk).
//!
//! [`GitTree`] resolves a revision to a commit and answers three questions about its tree:
//! a file's bytes ([`GitTree::read_file`]), the entries under a directory
//! ([`GitTree::list_entries`]) and werf's ls-tree checksum of the entries a path matcher
//! selects ([`GitTree::ls_tree_checksum`], see [`ls_tree`]).

pub mod ls_tree;
pub mod path_matcher;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use git2::{ObjectType, Oid, Repository};

pub use ls_tree::LsTreeEntry;

/// Errors reading a git repository.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `repo_dir` is not a git repository (bare or with a work tree).
    #[error("{path} is not a git repository: {message}")]
    NotARepository {
        /// The directory that was opened.
        path: PathBuf,
        /// libgit2's message.
        message: String,
    },
    /// The revision names no branch, tag or commit of the repository.
    #[error("revision {revision:?} does not exist in git repository {path}")]
    RevisionNotFound {
        /// The revision as given.
        revision: String,
        /// The repository searched.
        path: PathBuf,
    },
    /// A path named a directory or a submodule where a file was expected.
    #[error("{path} at commit {commit} is not a file")]
    NotAFile {
        /// Repo-relative path.
        path: String,
        /// The commit read.
        commit: String,
    },
    /// Any other libgit2 failure while reading objects.
    #[error("git error in {operation} at commit {commit}: {message}")]
    Git {
        /// What Kiln was doing.
        operation: String,
        /// The commit read.
        commit: String,
        /// libgit2's message.
        message: String,
    },
}

/// One commit of a repository, opened for reading.
///
/// Reading is done through libgit2's object database only, so bare mirrors (the operator's
/// source cache) and ordinary clones work alike. Not `Sync` (libgit2 handles are not); open one
/// per thread.
pub struct GitTree {
    repo: Repository,
    repo_dir: PathBuf,
    commit_hex: String,
    tree: Oid,
    /// ls-tree checksums already computed, by (scope, matcher id): werf caches them the same way
    /// (`GetOrCreateChecksum`), and several images often hash the same context.
    checksum_cache: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for GitTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitTree")
            .field("repo_dir", &self.repo_dir)
            .field("commit", &self.commit_hex)
            .finish()
    }
}

impl GitTree {
    /// Opens the repository at `repo_dir` (bare or with a work tree) and resolves `revision`
    /// (branch, tag, full or short commit, anything `git rev-parse` accepts; `HEAD` when None)
    /// to a commit.
    ///
    /// Errors: [`SourceError::NotARepository`], [`SourceError::RevisionNotFound`] (also when the
    /// revision names a non-commit object that does not peel to a commit).
    pub fn open(repo_dir: &Path, revision: Option<&str>) -> Result<GitTree, SourceError> {
        let repo = Repository::open(repo_dir).map_err(|e| SourceError::NotARepository {
            path: repo_dir.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let rev = revision.unwrap_or("HEAD");
        let not_found = || SourceError::RevisionNotFound {
            revision: rev.to_string(),
            path: repo_dir.to_path_buf(),
        };
        let object = repo.revparse_single(rev).map_err(|_| not_found())?;
        let commit = object.peel_to_commit().map_err(|_| not_found())?;
        let commit_id = commit.id();
        let tree = commit.tree_id();
        drop(commit);
        drop(object);
        Ok(GitTree {
            repo,
            repo_dir: repo_dir.to_path_buf(),
            commit_hex: commit_id.to_string(),
            tree,
            checksum_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The resolved commit, 40 lowercase hex.
    pub fn commit_id(&self) -> &str {
        &self.commit_hex
    }

    /// The directory the repository was opened from.
    pub fn repo_dir(&self) -> &Path {
        &self.repo_dir
    }

    /// The work tree of a non-bare repository (where `contextAddFiles` are read from).
    pub fn workdir(&self) -> Option<&Path> {
        self.repo.workdir()
    }

    pub(crate) fn repo(&self) -> &Repository {
        &self.repo
    }

    pub(crate) fn root_tree_id(&self) -> Oid {
        self.tree
    }

    pub(crate) fn git_error(&self, operation: &str, e: git2::Error) -> SourceError {
        SourceError::Git {
            operation: operation.to_string(),
            commit: self.commit_hex.clone(),
            message: e.message().to_string(),
        }
    }

    /// The file's bytes at a repo-relative path (`/`-separated; a leading `./` or `/` is
    /// ignored), `Ok(None)` if nothing exists there. A symlink yields its target path, as git
    /// stores it.
    ///
    /// Errors: [`SourceError::NotAFile`] for a directory or submodule.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let clean = clean_repo_path(path);
        if clean.is_empty() {
            return Err(SourceError::NotAFile {
                path: path.to_string(),
                commit: self.commit_hex.clone(),
            });
        }
        let Some((oid, mode)) = self.entry_at(&clean)? else {
            return Ok(None);
        };
        if mode == ls_tree::MODE_DIR || mode == ls_tree::MODE_SUBMODULE {
            return Err(SourceError::NotAFile {
                path: clean,
                commit: self.commit_hex.clone(),
            });
        }
        let blob = self
            .repo
            .find_blob(oid)
            .map_err(|e| self.git_error(&format!("reading {clean}"), e))?;
        Ok(Some(blob.content().to_vec()))
    }

    /// The object id and git file mode (e.g. `0o100644`) of the entry at a clean repo-relative
    /// path; the root tree for `""`. `Ok(None)` if absent.
    pub(crate) fn entry_at(&self, clean: &str) -> Result<Option<(Oid, i32)>, SourceError> {
        if clean.is_empty() {
            return Ok(Some((self.tree, ls_tree::MODE_DIR)));
        }
        let tree = self
            .repo
            .find_tree(self.tree)
            .map_err(|e| self.git_error("reading the root tree", e))?;
        match tree.get_path(Path::new(clean)) {
            Ok(entry) => Ok(Some((entry.id(), entry.filemode()))),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.git_error(&format!("looking up {clean}"), e)),
        }
    }

    /// Whether a file, symlink, directory or submodule exists at the repo-relative path.
    pub fn exists(&self, path: &str) -> Result<bool, SourceError> {
        Ok(self.entry_at(&clean_repo_path(path))?.is_some())
    }

    /// All non-directory entries (files, symlinks, submodules) under the repo-relative
    /// directory `dir` (`""` = the whole tree), recursively, sorted by path. Paths are
    /// repo-relative. A missing directory yields an empty list; a file yields itself.
    pub fn list_entries(&self, dir: &str) -> Result<Vec<LsTreeEntry>, SourceError> {
        let clean = clean_repo_path(dir);
        let Some((oid, mode)) = self.entry_at(&clean)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if mode != ls_tree::MODE_DIR {
            out.push(LsTreeEntry {
                path: clean,
                oid,
                mode,
            });
            return Ok(out);
        }
        self.walk_all(oid, &clean, &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn walk_all(
        &self,
        tree: Oid,
        prefix: &str,
        out: &mut Vec<LsTreeEntry>,
    ) -> Result<(), SourceError> {
        let t = self
            .repo
            .find_tree(tree)
            .map_err(|e| self.git_error(&format!("reading tree {prefix:?}"), e))?;
        for entry in t.iter() {
            let name = String::from_utf8_lossy(entry.name_bytes());
            let path = join_path(prefix, &name);
            if entry.kind() == Some(ObjectType::Tree) {
                self.walk_all(entry.id(), &path, out)?;
            } else {
                out.push(LsTreeEntry {
                    path,
                    oid: entry.id(),
                    mode: entry.filemode(),
                });
            }
        }
        Ok(())
    }

    /// werf's ls-tree checksum of the entries under `scope` selected by `matcher` (strict
    /// mode: with each entry's mode and path too); see [`ls_tree`] for exactly what is hashed.
    /// Returns `""` when nothing matches (as werf does). Results are cached per (scope,
    /// [`path_matcher::PathMatcher::id`], mode).
    pub fn ls_tree_checksum(
        &self,
        scope: &str,
        matcher: &dyn path_matcher::PathMatcher,
        mode: kiln_crds::imagebuild::DigestMode,
    ) -> Result<String, SourceError> {
        let key = (clean_repo_path(scope), format!("{mode:?}:{}", matcher.id()));
        if let Some(hit) = self
            .checksum_cache
            .lock()
            .expect("checksum cache")
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let entries = ls_tree::ls_tree(self, &key.0, matcher, false)?;
        let sum = ls_tree::checksum(&entries, &key.0, mode);
        self.checksum_cache
            .lock()
            .expect("checksum cache")
            .insert(key, sum.clone());
        Ok(sum)
    }

    /// Whether at least one entry under `scope` is selected by `matcher` (stops at the first).
    pub fn any_matching(
        &self,
        scope: &str,
        matcher: &dyn path_matcher::PathMatcher,
    ) -> Result<bool, SourceError> {
        Ok(!ls_tree::ls_tree(self, &clean_repo_path(scope), matcher, true)?.is_empty())
    }
}

/// Joins a repo-relative directory and a name with `/` (`""` is the root).
pub(crate) fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// Cleans a repo-relative path like Go's `path.Clean` and drops a leading `/`: `""`, `.`, `/`
/// become `""`; `a//b/./c/../d/` becomes `a/b/d`. `..` above the root is dropped.
pub fn clean_repo_path(path: &str) -> String {
    // Fast path: already clean (the common case for paths produced by the tree walk).
    if !path.is_empty()
        && !path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("//")
        && path.split('/').all(|p| p != "." && p != "..")
    {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_repo_path_follows_path_clean() {
        assert_eq!(clean_repo_path(""), "");
        assert_eq!(clean_repo_path("."), "");
        assert_eq!(clean_repo_path("/"), "");
        assert_eq!(clean_repo_path("./a//b/./c/../d/"), "a/b/d");
        assert_eq!(clean_repo_path("../x"), "x");
    }
}
