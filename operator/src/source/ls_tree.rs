//! werf's lazy ls-tree walk and its checksum (`werf: pkg/true_git/ls_tree`).
//!
//! # Which entries
//! The walk starts at the scope (the build context directory; `""` = repository root) and asks
//! the matcher about each entry, combined with a scope matcher as werf does:
//! - a directory the matcher wants to *go through* is descended into;
//! - otherwise a directory the matcher *selects* enters as one entry (its tree object id), so a
//!   fully selected directory costs one lookup however many files it holds;
//! - a file or symlink enters when selected;
//! - a submodule (gitlink) enters as its commit id when selected or gone through. werf descends
//!   into checked-out submodules; Kiln reads bare mirrors without submodule objects, so this is
//!   a listed deviation.
//!
//! # What is hashed
//! `checksum` = lowercase hex SHA-256 over, for each entry in byte order of its repo-relative
//! path, the object id as 40 lowercase hex — and nothing else, exactly as werf's
//! `Result.Checksum` writes `lsTreeEntry.Hash.String()` only. So a file selected on its own
//! (`COPY *.txt /dst/`) keeps the checksum through a `chmod +x` or a rename to another selected
//! name; inside a selected directory both change the directory's tree id, and the checksum.
//!
//! Strict mode ([`DigestMode::Strict`]) adds, after each object id, the git mode as 7 octal
//! digits (`0100644`, `0100755`, `0120000`, `0040000`, `0160000`) and, for every entry except
//! the scope itself, its path relative to the scope followed by a NUL byte. The scope's own
//! path is left out because it does not reach the image.
//!
//! No entry at all gives `""` (werf: same).

use git2::{ObjectType, Oid};
use sha2::{Digest, Sha256};

use super::path_matcher::PathMatcher;
use super::{GitTree, SourceError, join_path};
use kiln_crds::imagebuild::DigestMode;

/// Git mode of a tree entry that is a directory.
pub const MODE_DIR: i32 = 0o040000;
/// Git mode of a gitlink (submodule commit).
pub const MODE_SUBMODULE: i32 = 0o160000;

/// One entry of a git tree, as found by a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsTreeEntry {
    /// Repo-relative path, `/`-separated (`""` for the root tree).
    pub path: String,
    /// Blob, tree or commit id.
    pub oid: Oid,
    /// Git file mode, e.g. `0o100644`.
    pub mode: i32,
}

/// The scope (context dir) combined with the caller's matcher, as werf's
/// `LsTreeOptions.formattedPathMatcher` combines them.
struct Scoped<'a> {
    scope: &'a str,
    inner: &'a dyn PathMatcher,
}

impl Scoped<'_> {
    fn in_scope(&self, path: &str) -> bool {
        self.scope.is_empty()
            || path == self.scope
            || (path.len() > self.scope.len()
                && path.starts_with(self.scope)
                && path.as_bytes()[self.scope.len()] == b'/')
    }
    fn above_scope(&self, path: &str) -> bool {
        !self.scope.is_empty()
            && self.scope != path
            && (path.is_empty()
                || (self.scope.len() > path.len()
                    && self.scope.starts_with(path)
                    && self.scope.as_bytes()[path.len()] == b'/'))
    }
    fn is_path_matched(&self, path: &str) -> bool {
        self.in_scope(path) && self.inner.is_path_matched(path)
    }
    fn should_go_through(&self, path: &str) -> bool {
        let scope_go = self.above_scope(path);
        if !scope_go && !self.in_scope(path) {
            return false;
        }
        let inner_go = self.inner.should_go_through(path);
        if !inner_go && !self.inner.is_path_matched(path) {
            return false;
        }
        scope_go || inner_go
    }
}

struct Walk<'a> {
    tree: &'a GitTree,
    matcher: Scoped<'a>,
    first_only: bool,
    out: Vec<LsTreeEntry>,
}

impl Walk<'_> {
    fn done(&self) -> bool {
        self.first_only && !self.out.is_empty()
    }

    fn entry(&mut self, path: String, oid: Oid, mode: i32) -> Result<(), SourceError> {
        if self.done() {
            return Ok(());
        }
        if mode == MODE_DIR {
            if self.matcher.should_go_through(&path) {
                self.children(&path, oid)?;
            } else if self.matcher.is_path_matched(&path) {
                self.out.push(LsTreeEntry { path, oid, mode });
            }
        } else if mode == MODE_SUBMODULE {
            if self.matcher.should_go_through(&path) || self.matcher.is_path_matched(&path) {
                self.out.push(LsTreeEntry { path, oid, mode });
            }
        } else if self.matcher.is_path_matched(&path) {
            self.out.push(LsTreeEntry { path, oid, mode });
        }
        Ok(())
    }

    fn children(&mut self, path: &str, oid: Oid) -> Result<(), SourceError> {
        let repo = self.tree.repo();
        let t = repo
            .find_tree(oid)
            .map_err(|e| self.tree.git_error(&format!("reading tree {path:?}"), e))?;
        for e in t.iter() {
            if self.done() {
                break;
            }
            let name = String::from_utf8_lossy(e.name_bytes());
            let child = join_path(path, &name);
            let mode = match e.kind() {
                Some(ObjectType::Tree) => MODE_DIR,
                Some(ObjectType::Commit) => MODE_SUBMODULE,
                _ => e.filemode(),
            };
            self.entry(child, e.id(), mode)?;
        }
        Ok(())
    }
}

/// Walks the commit's tree from `scope` and returns the entries `matcher` selects (unsorted).
/// With `first_only`, stops after the first entry.
pub(crate) fn ls_tree(
    tree: &GitTree,
    scope: &str,
    matcher: &dyn PathMatcher,
    first_only: bool,
) -> Result<Vec<LsTreeEntry>, SourceError> {
    let mut walk = Walk {
        tree,
        matcher: Scoped {
            scope,
            inner: matcher,
        },
        first_only,
        out: Vec::new(),
    };
    if scope.is_empty() {
        walk.entry(String::new(), tree.root_tree_id(), MODE_DIR)?;
    } else if let Some((oid, mode)) = tree.entry_at(scope)? {
        walk.entry(scope.to_string(), oid, mode)?;
    }
    Ok(walk.out)
}

/// The checksum of walked entries in `mode`; see the module docs for the exact bytes.
pub fn checksum(entries: &[LsTreeEntry], scope: &str, mode: DigestMode) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<&LsTreeEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for e in sorted {
        h.update(e.oid.to_string().as_bytes());
        if mode == DigestMode::Werf {
            continue;
        }
        h.update(format!("{:07o}", e.mode).as_bytes());
        if e.path != scope {
            let rel = if scope.is_empty() {
                e.path.as_str()
            } else {
                &e.path[scope.len() + 1..]
            };
            h.update(rel.as_bytes());
            h.update([0u8]);
        }
    }
    hex_lower(&h.finalize())
}

/// Lowercase hex of bytes.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}
