//! Stage digests of a Dockerfile image whose build context is a git repository of 100,000 files
//! (100 directories × 10 subdirectories × 100 files): `COPY . .` with and without a
//! `.dockerignore`, narrower globs, and a staged (v2) image. Every run opens a fresh `GitTree`,
//! so nothing is cached from the previous run.

use std::collections::BTreeMap;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use git2::{Oid, Repository};
use kiln_operator::digest::{DockerfileImageInput, StagedMode, dockerfile_image_stages};
use kiln_operator::source::GitTree;

const DIRS: usize = 100;
const SUBDIRS: usize = 10;
const FILES: usize = 100;

/// Writes the tree object by object (no work tree): `files` → blobs → trees → one commit,
/// through an in-memory object database dumped as one pack (100,000 loose objects would take
/// ~500 MB of disk blocks).
fn build_repo(dir: &Path, extra: &[(&str, &str)]) {
    let repo = Repository::init_bare(dir).unwrap();
    let odb = repo.odb().unwrap();
    let mempack = odb.add_new_mempack_backend(1000).unwrap();
    let mut root = repo.treebuilder(None).unwrap();
    for d in 0..DIRS {
        let mut dtree = repo.treebuilder(None).unwrap();
        for s in 0..SUBDIRS {
            let mut stree = repo.treebuilder(None).unwrap();
            for f in 0..FILES {
                let ext = if f % 2 == 0 { "go" } else { "txt" };
                let content = format!("package p{d}_{s} // file {f}\n");
                let blob = repo.blob(content.as_bytes()).unwrap();
                stree
                    .insert(format!("f{f:03}.{ext}"), blob, 0o100644)
                    .unwrap();
            }
            let sid: Oid = stree.write().unwrap();
            dtree.insert(format!("s{s:02}"), sid, 0o040000).unwrap();
        }
        let did = dtree.write().unwrap();
        root.insert(format!("d{d:03}"), did, 0o040000).unwrap();
    }
    for (name, content) in extra {
        let blob = repo.blob(content.as_bytes()).unwrap();
        root.insert(*name, blob, 0o100644).unwrap();
    }
    let tree_id = root.write().unwrap();
    let tree = repo.find_tree(tree_id).unwrap();
    let sig = git2::Signature::new(
        "kiln",
        "kiln@example.org",
        &git2::Time::new(1_700_000_000, 0),
    )
    .unwrap();
    let commit = repo.commit(None, &sig, &sig, "bench", &tree, &[]).unwrap();
    let mut pack = git2::Buf::new();
    mempack.dump(&repo, &mut pack).unwrap();
    let mut writer = odb.packwriter().unwrap();
    std::io::Write::write_all(&mut writer, &pack).unwrap();
    writer.commit().unwrap();
    mempack.reset().unwrap();
    repo.reference("refs/heads/main", commit, true, "bench")
        .unwrap();
    repo.set_head("refs/heads/main").unwrap();
}

fn stages(dir: &Path, dockerfile: &str, staged: StagedMode) -> usize {
    let tree = GitTree::open(dir, None).unwrap();
    let empty = BTreeMap::new();
    let input = DockerfileImageInput {
        image: "app",
        context: "",
        dockerfile,
        target: None,
        args: &empty,
        dependency_args: &empty,
        add_hosts: &[],
        context_add_files: &[],
        cache_version: None,
        staged,
        platform: "linux/amd64",
        digest_mode: kiln_operator::digest::DigestMode::Werf,
    };
    dockerfile_image_stages(&tree, &input).unwrap().len()
}

fn digests_of_a_100k_file_context(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build_repo(
        dir,
        &[
            (
                "Dockerfile.all",
                "FROM alpine:3.18\nWORKDIR /app\nCOPY . .\nRUN make\n",
            ),
            (
                "Dockerfile.ignored",
                "FROM alpine:3.18\nWORKDIR /app\nCOPY . .\nRUN make\n",
            ),
            (
                "Dockerfile.ignored.dockerignore",
                "d00*/s0[0-4]\n**/*.txt\n!d099/s09/f001.txt\n",
            ),
            (
                "Dockerfile.globs",
                "FROM alpine:3.18\nWORKDIR /app\nCOPY d001/s01/f001.txt ./\nCOPY d00*/s0[12]/ ./src/\nCOPY d05*/*/*.go ./go/\nRUN make\n",
            ),
            (
                "Dockerfile.deep",
                "FROM alpine:3.18\nCOPY **/f000.go /one/\n",
            ),
            (
                "Dockerfile.staged",
                "FROM alpine:3.18\nWORKDIR /app\nCOPY d00*/ ./\nRUN make\nCOPY . .\n",
            ),
        ],
    );
    let mut group = c.benchmark_group("digest 100k-file context");
    group.sample_size(10);
    group.bench_function("COPY . . (whole tree, one tree id)", |b| {
        b.iter(|| stages(dir, "Dockerfile.all", StagedMode::NonStaged))
    });
    group.bench_function("COPY . . with .dockerignore (walk every entry)", |b| {
        b.iter(|| stages(dir, "Dockerfile.ignored", StagedMode::NonStaged))
    });
    group.bench_function("three narrower COPY globs", |b| {
        b.iter(|| stages(dir, "Dockerfile.globs", StagedMode::NonStaged))
    });
    group.bench_function("COPY **/f000.go (deep glob)", |b| {
        b.iter(|| stages(dir, "Dockerfile.deep", StagedMode::NonStaged))
    });
    group.bench_function(
        "staged v2, COPY of 10k files then COPY . . (reads every blob)",
        |b| b.iter(|| stages(dir, "Dockerfile.staged", StagedMode::StagedV2)),
    );
    group.finish();
}

criterion_group!(benches, digests_of_a_100k_file_context);
criterion_main!(benches);
