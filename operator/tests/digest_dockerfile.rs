//! Non-staged Dockerfile image digests against temporary git repositories: the exact formula
//! (expected values computed independently with Python's hashlib) and digest stability.

mod digest_support;

use digest_support::{Img, Repo};

// Expected digests below were computed outside Kiln with Python's hashlib:
//   deps   = sha256(":::".join(list)).hexdigest()
//   digest = sha3_224(("[platform:::]1.2:::dockerfile:::" + deps)).hexdigest()
// with git object ids from sha1(b"blob %d\0" % len + content) and
// sha1(b"tree %d\0" % len + entries) for trees.

#[test]
fn formula_for_a_dockerfile_without_context_files() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nRUN echo hi\n");
    r.commit("init");
    let t = r.tree(None);
    // list = ["alpine:3.18", "RUN echo hi"]
    assert_eq!(
        Img::default().digest(&t),
        "9a61a05308b3edee15d1a801d7e876248ebab99e7f19a71da0abad0e"
    );
    // The platform enters first for anything but linux/amd64.
    let arm = Img {
        platform: "linux/arm64".into(),
        ..Img::default()
    };
    assert_eq!(
        arm.digest(&t),
        "da48160867866e18b4731ce4be01f510e932b409498e17f5e0dea1fd"
    );
}

#[test]
fn formula_with_args_env_and_a_copied_file() {
    let r = Repo::new();
    r.write(
        "Dockerfile",
        "ARG BASE=alpine:3.18\nFROM $BASE\nARG GREETING=hello\nENV WHO=world\nCOPY app.txt /app/\nRUN echo $GREETING $WHO\n",
    );
    r.write("app.txt", "v1\n");
    r.commit("init");
    // list = ["alpine:3.18", "ARG GREETING=hello", "ENV WHO=world", "COPY app.txt /app/",
    //         sha256(ls), "RUN echo hello world"]
    // ls = sha256(blob("v1\n"))   (werf hashes the object id only)
    assert_eq!(
        Img::default().digest(&r.tree(None)),
        "39f7d1a7772724c90cecfad4d4dfec6e63d77a6ff3730673089b5c19"
    );
    // strict: ls = sha256(blob("v1\n") + "0100644" + "app.txt\0"), salt "1.2+kiln-strict"
    assert_eq!(
        Img::default().strict().digest(&r.tree(None)),
        "d1159c883a8d472202a8b4e9b8e276cadf34cbc3a88a5cfdf9a3472f"
    );
}

#[test]
fn formula_for_copy_of_the_whole_context_hashes_the_root_tree_like_werf() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nCOPY . /app\n");
    r.write("app.txt", "v1\n");
    r.commit("init");
    // list = ["alpine:3.18", "COPY . /app", sha256(sha256(tree))]
    assert_eq!(
        Img::default().digest(&r.tree(None)),
        "8d76bf2d4467a53afbdc7df87ca405502be5ea38888e619ea6856de5"
    );
    // strict: sha256(sha256(tree + "0040000")), salt "1.2+kiln-strict"
    assert_eq!(
        Img::default().strict().digest(&r.tree(None)),
        "8a28e1df383c8bb2e99aa3601af2f9b661ec862c66b4f66d4f3cb9a0"
    );
}

fn base_repo() -> Repo {
    let r = Repo::new();
    r.write(
        "Dockerfile",
        "FROM alpine:3.18 AS build\nARG VERSION=1\nCOPY src/ /src/\nRUN make VERSION=$VERSION\n\nFROM alpine:3.18 AS final\nCOPY --from=build /out /out\nCOPY config.yaml /etc/app.yaml\n",
    );
    r.write("src/main.c", "int main() {}\n");
    r.write("config.yaml", "a: 1\n");
    r.write("README.md", "docs\n");
    r
}

#[test]
fn an_unrelated_file_change_keeps_the_digest() {
    let r = base_repo();
    r.commit("one");
    let before = Img::default().digest(&r.tree(None));
    r.write("README.md", "more docs\n");
    r.write("other/new.txt", "x\n");
    r.commit("two");
    assert_eq!(Img::default().digest(&r.tree(None)), before);
}

#[test]
fn a_comment_only_dockerfile_change_keeps_the_digest() {
    let r = base_repo();
    r.commit("one");
    let before = Img::default().digest(&r.tree(None));
    r.write(
        "Dockerfile",
        "# syntax=docker/dockerfile:1\n# builds the app\nFROM alpine:3.18 AS build\n# the version\nARG VERSION=1\nCOPY src/ /src/\nRUN make \\\n  # inline comment\nVERSION=$VERSION\n\nFROM alpine:3.18 AS final\nCOPY --from=build /out /out\nCOPY config.yaml /etc/app.yaml\n",
    );
    r.commit("comments");
    assert_eq!(Img::default().digest(&r.tree(None)), before);
}

#[test]
fn a_change_in_a_copied_file_changes_the_digest_of_the_stages_that_use_it() {
    let r = base_repo();
    r.commit("one");
    let t1 = r.tree(None);
    let final1 = Img::default().digest(&t1);
    let build1 = Img {
        target: Some("build".into()),
        ..Img::default()
    }
    .digest(&t1);
    // config.yaml is copied only by the final stage.
    r.write("config.yaml", "a: 2\n");
    r.commit("config");
    let t2 = r.tree(None);
    assert_ne!(Img::default().digest(&t2), final1);
    let build2 = Img {
        target: Some("build".into()),
        ..Img::default()
    }
    .digest(&t2);
    assert_eq!(build2, build1, "the build stage does not copy config.yaml");
    // src/ is copied by the build stage, which the final stage copies from.
    r.write("src/main.c", "int main() { return 1; }\n");
    r.commit("src");
    let t3 = r.tree(None);
    assert_ne!(
        Img {
            target: Some("build".into()),
            ..Img::default()
        }
        .digest(&t3),
        build2
    );
}

#[test]
fn an_arg_value_changes_the_digest_and_an_unused_arg_does_not() {
    let r = base_repo();
    r.commit("one");
    let t = r.tree(None);
    let base = Img::default().digest(&t);
    let mut with_version = Img::default();
    with_version.args.insert("VERSION".into(), "2".into());
    assert_ne!(with_version.digest(&t), base);
    let mut unused = Img::default();
    unused.args.insert("NOT_DECLARED".into(), "x".into());
    assert_eq!(unused.digest(&t), base);
    // The declared default passed explicitly is the same input.
    let mut same = Img::default();
    same.args.insert("VERSION".into(), "1".into());
    assert_eq!(same.digest(&t), base);
    // A dependency build arg wins over `args`.
    let mut dep = with_version.clone();
    dep.dependency_args.insert("VERSION".into(), "1".into());
    assert_eq!(dep.digest(&t), base);
}

#[test]
fn target_cache_version_add_host_and_platform_change_the_digest() {
    let r = base_repo();
    r.commit("one");
    let t = r.tree(None);
    let base = Img::default().digest(&t);
    let explicit_last = Img {
        target: Some("final".into()),
        ..Img::default()
    };
    assert_eq!(
        explicit_last.digest(&t),
        base,
        "the last stage is the default target"
    );
    let build = Img {
        target: Some("build".into()),
        ..Img::default()
    };
    assert_ne!(build.digest(&t), base);
    let cv = Img {
        cache_version: Some("2".into()),
        ..Img::default()
    };
    assert_ne!(cv.digest(&t), base);
    let hosts = Img {
        add_hosts: vec!["db:10.0.0.1".into()],
        ..Img::default()
    };
    assert_ne!(hosts.digest(&t), base);
    let arm = Img {
        platform: "linux/arm64".into(),
        ..Img::default()
    };
    assert_ne!(arm.digest(&t), base);
    let arm_alias = Img {
        platform: "linux/aarch64".into(),
        ..Img::default()
    };
    assert_eq!(
        arm_alias.digest(&t),
        arm.digest(&t),
        "platforms are normalised"
    );
}

#[test]
fn a_dockerignored_file_change_keeps_the_digest() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nCOPY . /app\n");
    r.write(".dockerignore", "*.log\ntmp/\n!tmp/keep\n");
    r.write("app.txt", "v1\n");
    r.write("debug.log", "1\n");
    r.write("tmp/cache", "1\n");
    r.write("tmp/keep", "1\n");
    r.commit("one");
    let before = Img::default().digest(&r.tree(None));
    r.write("debug.log", "2\n");
    r.write("tmp/cache", "2\n");
    r.commit("ignored changes");
    assert_eq!(Img::default().digest(&r.tree(None)), before);
    r.write("tmp/keep", "2\n");
    r.commit("exception changes");
    let after_keep = Img::default().digest(&r.tree(None));
    assert_ne!(after_keep, before, "!tmp/keep is re-included");
    r.write("app.txt", "v2\n");
    r.commit("app");
    assert_ne!(Img::default().digest(&r.tree(None)), after_keep);
}

#[test]
fn the_dockerfile_specific_ignore_file_wins() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nCOPY . /app\n");
    r.write("Dockerfile.dockerignore", "a.txt\n");
    r.write(".dockerignore", "b.txt\n");
    r.write("a.txt", "1\n");
    r.write("b.txt", "1\n");
    r.commit("one");
    let before = Img::default().digest(&r.tree(None));
    r.write("a.txt", "2\n");
    r.commit("a");
    assert_eq!(
        Img::default().digest(&r.tree(None)),
        before,
        "a.txt ignored by Dockerfile.dockerignore"
    );
    r.write("b.txt", "2\n");
    r.commit("b");
    assert_ne!(
        Img::default().digest(&r.tree(None)),
        before,
        ".dockerignore is not read"
    );
}

#[test]
fn mode_bits_and_renames_of_glob_matched_files_keep_werfs_digest() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nCOPY *.sh /bin/\n");
    r.write("a.sh", "echo\n");
    r.commit("one");
    let before = Img::default().digest(&r.tree(None));
    r.write_mode("a.sh", "echo\n", 0o755);
    r.commit("exec");
    assert_eq!(
        Img::default().digest(&r.tree(None)),
        before,
        "werf hashes the blob id only"
    );
    r.rename("a.sh", "b.sh");
    r.commit("rename");
    assert_eq!(Img::default().digest(&r.tree(None)), before);
    r.write("b.sh", "echo changed\n");
    r.commit("edit");
    assert_ne!(Img::default().digest(&r.tree(None)), before);
}

#[test]
fn context_subdirectory_and_dockerfile_path() {
    let r = Repo::new();
    r.write(
        "svc/docker/Dockerfile",
        "FROM alpine:3.18\nCOPY app.txt /\n",
    );
    r.write("svc/app.txt", "1\n");
    r.write("app.txt", "root\n");
    r.commit("one");
    let img = Img {
        context: "svc".into(),
        dockerfile: "docker/Dockerfile".into(),
        ..Img::default()
    };
    let before = img.digest(&r.tree(None));
    r.write("app.txt", "root changed\n");
    r.commit("outside the context");
    assert_eq!(img.digest(&r.tree(None)), before);
    r.write("svc/app.txt", "2\n");
    r.commit("inside");
    assert_ne!(img.digest(&r.tree(None)), before);
}

#[test]
fn heredoc_bodies_stay_out_of_werfs_digest() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nRUN <<EOF\necho one\nEOF\n");
    r.commit("one");
    let before = Img::default().digest(&r.tree(None));
    r.write("Dockerfile", "FROM alpine:3.18\nRUN <<EOF\necho two\nEOF\n");
    r.commit("two");
    assert_eq!(Img::default().digest(&r.tree(None)), before);
}

#[test]
fn quoting_removed_by_word_processing_stays_out_of_werfs_digest() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nRUN touch \"a b\"\n");
    r.commit("one");
    let quoted = Img::default().digest(&r.tree(None));
    r.write("Dockerfile", "FROM alpine:3.18\nRUN touch a b\n");
    r.commit("two");
    assert_eq!(Img::default().digest(&r.tree(None)), quoted);
}

#[test]
fn revisions_resolve_by_branch_tag_and_short_commit() {
    let r = base_repo();
    let c1 = r.commit("one");
    r.tag("v1");
    let d1 = Img::default().digest(&r.tree(None));
    r.write("config.yaml", "a: 9\n");
    r.commit("two");
    assert_eq!(Img::default().digest(&r.tree(Some("v1"))), d1);
    assert_eq!(Img::default().digest(&r.tree(Some(&c1[..8]))), d1);
    assert_eq!(r.tree(Some(&c1)).commit_id(), c1);
    assert_ne!(Img::default().digest(&r.tree(Some("HEAD"))), d1);
}
