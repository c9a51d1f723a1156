//! Temporary git repositories for digest tests, written through a work tree and committed with
//! libgit2 (no git CLI needed).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use kiln_operator::digest::{
    DigestMode, DockerfileImageInput, PlannedStage, StagedMode, dockerfile_image_stages,
};
use kiln_operator::source::GitTree;

/// A repository in a temporary directory.
pub struct Repo {
    pub dir: tempfile::TempDir,
    repo: git2::Repository,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = git2::Repository::init(dir.path()).expect("git init");
        Repo { dir, repo }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (parents created) with mode 0644.
    pub fn write(&self, rel: &str, content: &str) -> &Self {
        self.write_mode(rel, content, 0o644)
    }

    pub fn write_mode(&self, rel: &str, content: &str, mode: u32) -> &Self {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.dir.path().join(rel)).unwrap();
        self
    }

    pub fn rename(&self, from: &str, to: &str) -> &Self {
        std::fs::rename(self.dir.path().join(from), self.dir.path().join(to)).unwrap();
        self
    }

    /// Commits the whole work tree; returns the commit id.
    pub fn commit(&self, msg: &str) -> String {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree_id = index.write_tree().unwrap();
        let tree = self.repo.find_tree(tree_id).unwrap();
        let sig = git2::Signature::new(
            "kiln",
            "kiln@example.org",
            &git2::Time::new(1_700_000_000, 0),
        )
        .unwrap();
        let parents: Vec<git2::Commit> = match self.repo.head() {
            Ok(h) => vec![h.peel_to_commit().unwrap()],
            Err(_) => vec![],
        };
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, msg, &tree, &parent_refs)
            .unwrap()
            .to_string()
    }

    pub fn tag(&self, name: &str) {
        let head = self.repo.head().unwrap().peel_to_commit().unwrap();
        self.repo
            .tag_lightweight(name, head.as_object(), false)
            .unwrap();
    }

    pub fn tree(&self, rev: Option<&str>) -> GitTree {
        GitTree::open(self.dir.path(), rev).expect("open tree")
    }
}

/// Owned inputs for [`DockerfileImageInput`].
#[derive(Clone)]
pub struct Img {
    pub image: String,
    pub context: String,
    pub dockerfile: String,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
    pub dependency_args: BTreeMap<String, String>,
    pub add_hosts: Vec<String>,
    pub context_add_files: Vec<String>,
    pub cache_version: Option<String>,
    pub staged: StagedMode,
    pub platform: String,
    pub digest_mode: DigestMode,
}

impl Default for Img {
    fn default() -> Self {
        Img {
            image: "app".into(),
            context: String::new(),
            dockerfile: "Dockerfile".into(),
            target: None,
            args: BTreeMap::new(),
            dependency_args: BTreeMap::new(),
            add_hosts: Vec::new(),
            context_add_files: Vec::new(),
            cache_version: None,
            staged: StagedMode::NonStaged,
            platform: "linux/amd64".into(),
            digest_mode: DigestMode::Werf,
        }
    }
}

impl Img {
    /// The same image in strict digest mode.
    pub fn strict(&self) -> Img {
        Img {
            digest_mode: DigestMode::Strict,
            ..self.clone()
        }
    }

    pub fn staged(mode: StagedMode) -> Img {
        Img {
            staged: mode,
            ..Img::default()
        }
    }

    pub fn stages(
        &self,
        tree: &GitTree,
    ) -> Result<Vec<PlannedStage>, kiln_operator::digest::DigestError> {
        let input = DockerfileImageInput {
            image: &self.image,
            context: &self.context,
            dockerfile: &self.dockerfile,
            target: self.target.as_deref(),
            args: &self.args,
            dependency_args: &self.dependency_args,
            add_hosts: &self.add_hosts,
            context_add_files: &self.context_add_files,
            cache_version: self.cache_version.as_deref(),
            staged: self.staged,
            platform: &self.platform,
            digest_mode: self.digest_mode,
        };
        dockerfile_image_stages(tree, &input)
    }

    /// The digests, in order.
    pub fn digests(&self, tree: &GitTree) -> Vec<String> {
        self.stages(tree)
            .expect("stages")
            .into_iter()
            .map(|s| s.digest)
            .collect()
    }

    /// The single digest of a non-staged image.
    pub fn digest(&self, tree: &GitTree) -> String {
        let d = self.digests(tree);
        assert_eq!(d.len(), 1);
        d[0].clone()
    }
}
