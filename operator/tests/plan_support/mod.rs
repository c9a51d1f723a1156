//! Test repositories for the planner: commits written straight into the object database with
//! git2 (blobs and nested trees, no checkout), so a 100,000-file commit takes seconds.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Oid, Repository, Signature, Time};

/// A git repository in a temporary directory.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    repo: Repository,
}

enum Node {
    File(Oid),
    Dir(BTreeMap<String, Node>),
}

impl TestRepo {
    /// `git init` (with a work tree, never checked out) in a fresh temporary directory.
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().expect("temporary directory");
        let repo = Repository::init(dir.path()).expect("git init");
        TestRepo { dir, repo }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Commits exactly `files` (a full snapshot: path → content) on top of HEAD and returns the
    /// commit id.
    pub fn commit<P: AsRef<str>, C: AsRef<[u8]>>(&self, files: &[(P, C)]) -> String {
        let mut root: BTreeMap<String, Node> = BTreeMap::new();
        for (path, content) in files {
            let oid = self.repo.blob(content.as_ref()).expect("write blob");
            let parts: Vec<&str> = path.as_ref().split('/').collect();
            let mut dir = &mut root;
            for part in &parts[..parts.len() - 1] {
                let entry = dir
                    .entry(part.to_string())
                    .or_insert_with(|| Node::Dir(BTreeMap::new()));
                dir = match entry {
                    Node::Dir(d) => d,
                    Node::File(_) => panic!("{} is both a file and a directory", path.as_ref()),
                };
            }
            dir.insert(parts[parts.len() - 1].to_string(), Node::File(oid));
        }
        let tree = self.write_tree(&root);
        let tree = self.repo.find_tree(tree).expect("tree");
        let sig = Signature::new(
            "Kiln Test",
            "test@kiln.invalid",
            &Time::new(1_700_000_000, 0),
        )
        .expect("signature");
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let id = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, "snapshot", &tree, &parents)
            .expect("commit");
        id.to_string()
    }

    fn write_tree(&self, dir: &BTreeMap<String, Node>) -> Oid {
        let mut builder = self.repo.treebuilder(None).expect("treebuilder");
        for (name, node) in dir {
            match node {
                Node::File(oid) => builder.insert(name, *oid, 0o100644),
                Node::Dir(children) => builder.insert(name, self.write_tree(children), 0o040000),
            }
            .expect("tree entry");
        }
        builder.write().expect("write tree")
    }
}

/// The seed document's werf.yaml (parallel build section) with a meta document.
pub const SEED_WERF_YAML: &str = "\
project: shop
configVersion: 1
---
image: backend
dockerfile: Dockerfile
context: backend
---
image: frontend
dockerfile: Dockerfile
context: frontend
target: application
---
image: frontend-assets
dockerfile: Dockerfile
context: frontend
target: assets
";

/// The seed's backend/Dockerfile.
pub const SEED_BACKEND_DOCKERFILE: &str = "\
FROM node as backend
WORKDIR /app
COPY package*.json /app/
RUN npm ci
COPY . .
CMD [\"node\", \"server.js\"]
";

/// The seed's frontend/Dockerfile.
pub const SEED_FRONTEND_DOCKERFILE: &str = "

FROM ruby as application
WORKDIR /app
COPY Gemfile* /app
RUN bundle install
COPY . .
RUN bundle exec rake assets:precompile
CMD [\"rails\", \"server\", \"-b\", \"0.0.0.0\"]

FROM nginx as assets
WORKDIR /usr/share/nginx/html
COPY configs/nginx.conf /etc/nginx/conf.d/default.conf
COPY --from=application /app/public/assets .
COPY --from=application /app/vendor .
ENTRYPOINT [\"nginx\", \"-g\", \"daemon off;\"]
";

/// The seed project's files, with `werf_yaml` as werf.yaml.
pub fn seed_files(werf_yaml: &str) -> Vec<(String, String)> {
    [
        ("werf.yaml", werf_yaml),
        ("backend/Dockerfile", SEED_BACKEND_DOCKERFILE),
        ("backend/package.json", "{\"name\":\"backend\"}\n"),
        ("backend/package-lock.json", "{}\n"),
        ("backend/server.js", "console.log('hi')\n"),
        ("frontend/Dockerfile", SEED_FRONTEND_DOCKERFILE),
        ("frontend/Gemfile", "source 'https://rubygems.org'\n"),
        ("frontend/Gemfile.lock", "GEM\n"),
        ("frontend/configs/nginx.conf", "server {}\n"),
        ("frontend/app/application.rb", "class App; end\n"),
        ("README.md", "shop\n"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect()
}

/// Replaces (or adds) one file in a snapshot.
pub fn with_file(
    mut files: Vec<(String, String)>,
    path: &str,
    content: &str,
) -> Vec<(String, String)> {
    files.retain(|(p, _)| p != path);
    files.push((path.to_string(), content.to_string()));
    files
}
