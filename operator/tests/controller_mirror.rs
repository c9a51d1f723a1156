//! The source cache against real git servers: a `file://` repository and `git daemon` on a
//! loopback port (the `git://` protocol), with repositories made by the git CLI.

use kiln_testkit::git_server::git_ok as git;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_crds::Reason;
use kiln_operator::mirror::{GitAuth, MirrorError, SourceCache};

/// A work-tree repository with: main (2 commits), branch `feature` (1 more), annotated tag
/// `v1` on main's first commit. Returns (dir, main head, first commit, feature head).
fn sample_repo(root: &Path) -> (PathBuf, String, String, String) {
    let dir = root.join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("werf.yaml"), "project: shop\nconfigVersion: 1\n").unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "one"]);
    let first = git(&dir, &["rev-parse", "HEAD"]);
    git(&dir, &["tag", "-a", "v1", "-m", "v1"]);
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\n").unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "two"]);
    let main = git(&dir, &["rev-parse", "HEAD"]);
    git(&dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("f.txt"), "f").unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "feature"]);
    let feature = git(&dir, &["rev-parse", "HEAD"]);
    git(&dir, &["checkout", "-q", "main"]);
    (dir, main, first, feature)
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

#[test]
fn resolves_branches_tags_commits_and_head() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, main, first, feature) = sample_repo(tmp.path());
    let cache = SourceCache::new(tmp.path().join("cache"));
    let url = file_url(&repo);
    let anon = GitAuth::Anonymous;
    let resolve = |rev: &str| cache.resolve(&url, rev, &anon).unwrap().commit;
    assert_eq!(resolve("HEAD"), main);
    assert_eq!(resolve("main"), main);
    assert_eq!(resolve("refs/heads/main"), main);
    assert_eq!(resolve("feature"), feature);
    // An annotated tag peels to its commit.
    assert_eq!(resolve("v1"), first);
    assert_eq!(resolve(&first), first);
    assert_eq!(resolve(&first[..8]), first);
    let resolved = cache.resolve(&url, "main", &anon).unwrap();
    assert_eq!(resolved.mirror, cache.mirror_path(&url));
    assert!(resolved.mirror.join("HEAD").exists(), "a bare mirror");
    assert!(!resolved.mirror.join(".git").exists());
}

#[test]
fn fetches_incrementally_and_follows_moved_branches() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, main, _, _) = sample_repo(tmp.path());
    let cache = SourceCache::new(tmp.path().join("cache"));
    let url = file_url(&repo);
    assert_eq!(
        cache
            .resolve(&url, "main", &GitAuth::Anonymous)
            .unwrap()
            .commit,
        main
    );
    std::fs::write(repo.join("new.txt"), "new").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "three"]);
    let newer = git(&repo, &["rev-parse", "HEAD"]);
    assert_ne!(newer, main);
    assert_eq!(
        cache
            .resolve(&url, "main", &GitAuth::Anonymous)
            .unwrap()
            .commit,
        newer
    );
    // A deleted branch disappears from the mirror (pruned).
    git(&repo, &["branch", "-D", "feature"]);
    let err = cache
        .resolve(&url, "feature", &GitAuth::Anonymous)
        .unwrap_err();
    assert!(matches!(err, MirrorError::RevisionNotFound { .. }), "{err}");
}

#[test]
fn a_known_commit_needs_no_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, main, _, _) = sample_repo(tmp.path());
    let cache = SourceCache::new(tmp.path().join("cache"));
    let url = file_url(&repo);
    cache.resolve(&url, "main", &GitAuth::Anonymous).unwrap();
    std::fs::remove_dir_all(&repo).unwrap();
    assert_eq!(
        cache
            .resolve(&url, &main, &GitAuth::Anonymous)
            .unwrap()
            .commit,
        main
    );
    // A branch needs the server, which is gone.
    let err = cache
        .resolve(&url, "main", &GitAuth::Anonymous)
        .unwrap_err();
    assert_eq!(err.reason(), Reason::SourceUnavailable, "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn missing_revision_and_missing_repository_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _, _, _) = sample_repo(tmp.path());
    let cache = SourceCache::new(tmp.path().join("cache"));
    let url = file_url(&repo);
    let err = cache
        .resolve(&url, "no-such-branch", &GitAuth::Anonymous)
        .unwrap_err();
    assert_eq!(err.reason(), Reason::RevisionNotFound);
    assert_eq!(
        err.to_string(),
        format!(
            "git repository {url}: revision \"no-such-branch\" is not a branch, tag or commit of the repository"
        )
    );
    // A full commit id that the repository does not have.
    let err = cache
        .resolve(
            &url,
            "0123456789012345678901234567890123456789",
            &GitAuth::Anonymous,
        )
        .unwrap_err();
    assert_eq!(err.reason(), Reason::RevisionNotFound);

    let missing = file_url(&tmp.path().join("nope"));
    let err = cache
        .resolve(&missing, "main", &GitAuth::Anonymous)
        .unwrap_err();
    assert_eq!(err.reason(), Reason::SourceUnavailable, "{err}");
}

struct GitDaemon {
    child: Child,
    port: u16,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn git_daemon(base: &Path) -> GitDaemon {
    let port = free_port();
    let child = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", base.display()),
        ])
        .arg(base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "git daemon did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    GitDaemon { child, port }
}

#[test]
fn fetches_over_the_git_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let (_repo, main, _, feature) = sample_repo(tmp.path());
    let daemon = git_daemon(tmp.path());
    let cache = SourceCache::new(tmp.path().join("cache"));
    let url = format!("git://127.0.0.1:{}/shop", daemon.port);
    assert_eq!(
        cache
            .resolve(&url, "HEAD", &GitAuth::Anonymous)
            .unwrap()
            .commit,
        main
    );
    assert_eq!(
        cache
            .resolve(&url, "feature", &GitAuth::Anonymous)
            .unwrap()
            .commit,
        feature
    );
    let err = cache.resolve(&url, "v9", &GitAuth::Anonymous).unwrap_err();
    assert_eq!(err.reason(), Reason::RevisionNotFound);
    // Another path on the same server: no such repository.
    let other = format!("git://127.0.0.1:{}/absent", daemon.port);
    let err = cache
        .resolve(&other, "main", &GitAuth::Anonymous)
        .unwrap_err();
    assert_eq!(err.reason(), Reason::SourceUnavailable, "{err}");
}

#[test]
fn a_closed_port_is_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = SourceCache::new(tmp.path().join("cache"));
    let url = format!("git://127.0.0.1:{}/shop", free_port());
    let err = cache
        .resolve(&url, "main", &GitAuth::Anonymous)
        .unwrap_err();
    assert!(matches!(err, MirrorError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("git repository {url}: cannot fetch")),
        "{err}"
    );
}
