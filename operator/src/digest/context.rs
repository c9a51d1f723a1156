//! The build context of a Dockerfile image as werf sees it: the `context` directory of the git
//! commit, filtered by `.dockerignore`, plus `contextAddFiles` from the work tree; and the files
//! checksum of COPY/ADD sources (`werf: FullDockerfileStage.calculateFilesChecksum`).

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{DigestError, DigestMode, sha256_hex};
use crate::dockerfile::dockerignore::DockerIgnore;
use crate::source::path_matcher::{
    BasePathMatcher, DockerignoreMatcher, IncludeMatcher, MultiMatcher, PathMatcher, TrueMatcher,
};
use crate::source::{GitTree, clean_repo_path, join_path};

/// A Dockerfile image's build context at one commit.
pub struct BuildContext<'a> {
    tree: &'a GitTree,
    image: String,
    /// Repo-relative context directory, clean (`""` = root).
    pub context: String,
    /// Repo-relative Dockerfile path, clean.
    pub dockerfile_path: String,
    ignore: Option<DockerIgnore>,
    context_add_files: Vec<String>,
}

/// werf's `NormalizeCopyAddSourcesForPathMatcher`: `path.Clean`, `/` → `.`, leading `/` dropped.
pub fn normalize_source(src: &str) -> String {
    let cleaned = clean_repo_path(src);
    if cleaned.is_empty() {
        ".".to_string()
    } else {
        cleaned
    }
}

/// A source Docker fetches rather than reads from the context (ADD of a URL or git repo).
pub fn is_remote_source(src: &str) -> bool {
    src.starts_with("http://")
        || src.starts_with("https://")
        || src.starts_with("git@")
        || src.starts_with("git://")
}

impl<'a> BuildContext<'a> {
    /// Locates the context and its ignore file: `<context>/<dockerfile>.dockerignore` first, then
    /// `<context>/.dockerignore` (werf's `createDockerIgnorePathMatcher`). When the ignore rules
    /// exclude the Dockerfile, `!<dockerfile>` is appended, as werf does.
    pub fn new(
        tree: &'a GitTree,
        image: &str,
        context: &str,
        dockerfile: &str,
        context_add_files: &[String],
    ) -> Result<BuildContext<'a>, DigestError> {
        let context = clean_repo_path(context);
        let dockerfile_rel = clean_repo_path(dockerfile);
        let dockerfile_path = clean_repo_path(&join_path(&context, &dockerfile_rel));
        let mut ignore = None;
        for candidate in [
            format!("{dockerfile_rel}.dockerignore"),
            ".dockerignore".to_string(),
        ] {
            let path = clean_repo_path(&join_path(&context, &candidate));
            let Some(bytes) = tree.read_file(&path).map_err(|e| DigestError::Source {
                image: image.to_string(),
                source: e,
            })?
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let mut parsed =
                DockerIgnore::parse(&path, &text).map_err(|e| DigestError::Dockerfile {
                    image: image.to_string(),
                    source: e,
                })?;
            if parsed.matches(&dockerfile_rel) {
                parsed
                    .push(&format!("!{dockerfile_rel}"))
                    .expect("a plain exception pattern is valid");
            }
            ignore = Some(parsed);
            break;
        }
        Ok(BuildContext {
            tree,
            image: image.to_string(),
            context,
            dockerfile_path,
            ignore: ignore.filter(|i| !i.patterns().is_empty()),
            context_add_files: context_add_files.to_vec(),
        })
    }

    /// The commit read.
    pub fn tree(&self) -> &'a GitTree {
        self.tree
    }

    /// The `.dockerignore` rules in effect, if any.
    pub fn ignore(&self) -> Option<&DockerIgnore> {
        self.ignore.as_ref()
    }

    fn source_err(&self, e: crate::source::SourceError) -> DigestError {
        DigestError::Source {
            image: self.image.clone(),
            source: e,
        }
    }

    fn ignore_matcher(&self) -> Box<dyn PathMatcher + Send + Sync> {
        let inner: Box<dyn PathMatcher + Send + Sync> = match &self.ignore {
            Some(i) => Box::new(DockerignoreMatcher::new(i.clone())),
            None => Box::new(TrueMatcher),
        };
        Box::new(BasePathMatcher::new(
            &self.context,
            Box::new(MultiMatcher::new(vec![inner])),
        ))
    }

    fn include_matcher(&self, globs: &[String]) -> Box<dyn PathMatcher + Send + Sync> {
        let inner: Vec<Box<dyn PathMatcher + Send + Sync>> = if globs.is_empty() {
            Vec::new()
        } else {
            vec![Box::new(IncludeMatcher::new(globs))]
        };
        Box::new(BasePathMatcher::new(
            &self.context,
            Box::new(MultiMatcher::new(inner)),
        ))
    }

    /// werf's files checksum of COPY/ADD sources (already expanded): SHA-256 hex of the
    /// ls-tree checksum (in `mode`, see [`crate::source::ls_tree`]) of the context entries the
    /// sources select and `.dockerignore` keeps; combined with the `contextAddFiles` checksum
    /// when that is non-empty. No sources (a heredoc-only COPY) selects the whole context, as
    /// in werf.
    pub fn files_checksum(
        &self,
        sources: &[String],
        mode: DigestMode,
    ) -> Result<String, DigestError> {
        let globs: Vec<String> = sources.iter().map(|s| normalize_source(s)).collect();
        let matcher = MultiMatcher::new(vec![self.ignore_matcher(), self.include_matcher(&globs)]);
        let ls = self
            .tree
            .ls_tree_checksum(&self.context, &matcher, mode)
            .map_err(|e| self.source_err(e))?;
        let mut sum = sha256_hex(&[&ls]);
        if !self.context_add_files.is_empty() {
            let add = self.context_add_checksum(&globs, mode)?;
            if !add.is_empty() {
                sum = sha256_hex(&[&sum, &add]);
            }
        }
        Ok(sum)
    }

    /// Fails with [`DigestError::CopySourceNotFound`] when a source (not `.`, not a URL)
    /// selects no entry of the context that `.dockerignore` keeps (nor a `contextAddFiles`
    /// file): Docker fails such a build.
    pub fn check_sources_exist(&self, sources: &[String], line: usize) -> Result<(), DigestError> {
        for src in sources {
            if is_remote_source(src) {
                continue;
            }
            let glob = normalize_source(src);
            if glob == "." {
                continue;
            }
            let matcher = MultiMatcher::new(vec![
                self.ignore_matcher(),
                self.include_matcher(std::slice::from_ref(&glob)),
            ]);
            let found = self
                .tree
                .any_matching(&self.context, &matcher)
                .map_err(|e| self.source_err(e))?;
            if found || self.context_add_file_matches(&glob) {
                continue;
            }
            return Err(DigestError::CopySourceNotFound {
                image: self.image.clone(),
                file: self.dockerfile_path.clone(),
                line,
                source_path: src.clone(),
                context: if self.context.is_empty() {
                    ".".into()
                } else {
                    self.context.clone()
                },
            });
        }
        Ok(())
    }

    fn context_add_file_matches(&self, glob: &str) -> bool {
        let m = IncludeMatcher::new(&[glob.to_string()]);
        self.context_add_files
            .iter()
            .any(|f| m.is_path_matched(&clean_repo_path(f)))
    }

    /// werf's `ContextAddFilesChecksum`: SHA-256 over each `contextAddFiles` file (read from the
    /// work tree, directories walked in lexical order) that the globs select: its repo-relative
    /// path and its bytes (strict mode: then a NUL byte and its permission bits in octal). `""`
    /// when no file is selected.
    fn context_add_checksum(
        &self,
        globs: &[String],
        mode: DigestMode,
    ) -> Result<String, DigestError> {
        let Some(workdir) = self.tree.workdir() else {
            return Err(DigestError::ContextAddFiles {
                image: self.image.clone(),
                message: "contextAddFiles are read from a work tree, but the repository is bare"
                    .into(),
            });
        };
        let matcher = self.include_matcher(globs);
        let mut files: Vec<String> = Vec::new();
        for add in &self.context_add_files {
            let rel = clean_repo_path(&join_path(&self.context, add));
            let abs = workdir.join(&rel);
            collect_files(&abs, &rel, &mut files).map_err(|e| DigestError::ContextAddFiles {
                image: self.image.clone(),
                message: format!(
                    "contextAddFile {add:?} (relative to the context {:?}): {e}",
                    self.context
                ),
            })?;
        }
        let mut seen = std::collections::HashSet::new();
        files.retain(|f| seen.insert(f.clone()));
        let selected: Vec<&String> = files
            .iter()
            .filter(|f| matcher.is_path_matched(f))
            .collect();
        if selected.is_empty() {
            return Ok(String::new());
        }
        let mut h = Sha256::new();
        for rel in selected {
            h.update(rel.as_bytes());
            let abs = workdir.join(rel);
            let meta =
                std::fs::symlink_metadata(&abs).map_err(|e| DigestError::ContextAddFiles {
                    image: self.image.clone(),
                    message: format!("{rel}: {e}"),
                })?;
            let bytes = if meta.file_type().is_symlink() {
                std::fs::read_link(&abs).map(|p| p.to_string_lossy().into_owned().into_bytes())
            } else {
                std::fs::read(&abs)
            }
            .map_err(|e| DigestError::ContextAddFiles {
                image: self.image.clone(),
                message: format!("{rel}: {e}"),
            })?;
            h.update(&bytes);
            if mode == DigestMode::Strict {
                use std::os::unix::fs::PermissionsExt;
                h.update(format!("\0{:o}", meta.permissions().mode() & 0o7777).as_bytes());
            }
        }
        Ok(crate::source::ls_tree::hex_lower(&h.finalize()))
    }
}

fn collect_files(abs: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(abs)?;
    if !meta.is_dir() {
        out.push(rel.to_string());
        return Ok(());
    }
    let mut names: Vec<String> = std::fs::read_dir(abs)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        collect_files(&abs.join(&n), &join_path(rel, &n), out)?;
    }
    Ok(())
}
