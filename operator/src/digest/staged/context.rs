//! The sources checksum of staged `COPY`/`ADD`/`RUN --mount=type=bind` (werf's
//! `CalculateGlobsChecksum`): the context (after `.dockerignore`) is globbed like Go's
//! `filepath.Glob`, each match is hashed with Go's `dirhash.Hash1` (a file: its base name and
//! content; a directory: every file below it as `/relative/path`), and the list of those hashes
//! is SHA-256-joined. Strict mode adds each file's git mode to its line.

use std::collections::BTreeSet;

use sha2::{Digest as _, Sha256};

use super::super::context::normalize_source;
use super::super::{DigestError, DigestMode, sha256_hex};
use super::Ctx;
use super::go::{dirhash_h1, go_path_match};
use crate::source::ls_tree::{LsTreeEntry, hex_lower};
use crate::source::path_matcher::{
    BasePathMatcher, DockerignoreMatcher, MultiMatcher, PathMatcher, TrueMatcher,
};

impl Ctx<'_, '_> {
    /// The context files `.dockerignore` keeps, relative to the context, read once.
    pub(super) fn context_files(&mut self) -> Result<&[LsTreeEntry], DigestError> {
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
    pub(super) fn globs_checksum(
        &mut self,
        globs: &[String],
        line: usize,
    ) -> Result<String, DigestError> {
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
        let mode = self.input.digest_mode;
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
                    lines.push((name, blob_sum(repo, f, &image, mode)?));
                }
                None => {
                    for f in files.iter().filter(|f| f.path.starts_with(&prefix)) {
                        lines.push((
                            format!("/{}", &f.path[prefix.len()..]),
                            blob_sum(repo, f, &image, mode)?,
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

/// A file's line in the dirhash: its content's SHA-256 hex (strict mode: then `:` and its git
/// mode in octal, so that a `chmod +x` changes the checksum).
fn blob_sum(
    tree: &crate::source::GitTree,
    f: &LsTreeEntry,
    image: &str,
    mode: DigestMode,
) -> Result<String, DigestError> {
    let blob = tree
        .repo()
        .find_blob(f.oid)
        .map_err(|e| DigestError::Source {
            image: image.to_string(),
            source: tree.git_error(&format!("reading {}", f.path), e),
        })?;
    let sum = hex_lower(&Sha256::digest(blob.content()));
    Ok(match mode {
        DigestMode::Werf => sum,
        DigestMode::Strict => format!("{sum}:{:07o}", f.mode),
    })
}
