//! Staged Dockerfile images (one stage per instruction), werf v1 and v2.

mod digest_support;

use std::collections::BTreeMap;

use digest_support::{Img, Repo};
use kiln_operator::digest::staged::StagedInputs;
use kiln_operator::digest::{DockerfileImageInput, StagedMode, dockerfile_image_stages_with};

fn names(img: &Img, r: &Repo) -> Vec<String> {
    img.stages(&r.tree(None))
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

// Expected values computed with Python's hashlib over the documented parts:
//   FROM    = sha3_224("1.2:::FROM:::" + sha256("BaseImageReference:::alpine:3.18"))
//   WORKDIR = sha3_224("1.2:::WORKDIR:::" + sha256("Path:::/app") + ":::" + FROM + ":::")
//   CMD     = sha3_224("1.2:::CMD:::" + sha256("Cmd:::run:::PrependShell:::false") + ":::" + WORKDIR + ":::")
// and for v1 (no FROM stage, base image appended to the first stage):
//   WORKDIR = sha3_224("1.2:::WORKDIR:::" + sha256("Path:::/app") + ":::alpine:3.18")
// (the stage name is the keyword as written, BuildKit's node.Value)
#[test]
fn formula_v2_and_v1() {
    let r = Repo::new();
    r.write(
        "Dockerfile",
        "FROM alpine:3.18\nWORKDIR /app\nCMD [\"run\"]\n",
    );
    r.commit("init");
    let v2 = Img::staged(StagedMode::StagedV2);
    assert_eq!(names(&v2, &r), ["FROM", "WORKDIR", "CMD"]);
    assert_eq!(
        v2.digests(&r.tree(None)),
        [
            "65944b13bf74ae87b3eec0e91bbd5f38d2db7a50ee4cd1e92896fd90",
            "928c899bfe761f755647ee8c7cf5a6f13ae7ba1cd46143a21b0a77a6",
            "2ea9e1fbaab48da1880c4e4a6b62b2776cab33c7c1a91300f866b4a9",
        ]
    );
    let v1 = Img::staged(StagedMode::StagedV1);
    assert_eq!(names(&v1, &r), ["WORKDIR", "CMD"]);
    assert_eq!(
        v1.digests(&r.tree(None)),
        [
            "f5b54a0b14d142799a39d06f5837e95246062acdf9339f24cd07b927",
            "86a30445b9a764589343107d417087f1a6fc2355178d337806df3e58",
        ]
    );
}

#[test]
fn cache_version_enters_the_v2_from_stage_and_not_v1() {
    let r = Repo::new();
    r.write(
        "Dockerfile",
        "FROM alpine:3.18\nWORKDIR /app\nCMD [\"run\"]\n",
    );
    r.commit("init");
    let t = r.tree(None);
    let v2 = Img::staged(StagedMode::StagedV2);
    let v2cv = Img {
        cache_version: Some("7".into()),
        ..v2.clone()
    };
    let a = v2.digests(&t);
    let b = v2cv.digests(&t);
    // sha3_224("1.2:::FROM:::" + sha256("BaseImageReference:::alpine:3.18:::ImageCacheVersion:::7"))
    assert_eq!(
        b[0],
        "0a5c64d4f9f0b676b49cf7e8864fa85be993e630e7b67c7d8d351664"
    );
    assert!(
        a.iter().zip(&b).all(|(x, y)| x != y),
        "the change propagates down the chain"
    );
    let v1 = Img::staged(StagedMode::StagedV1);
    let v1cv = Img {
        cache_version: Some("7".into()),
        ..v1.clone()
    };
    assert_eq!(v1.digests(&t), v1cv.digests(&t));
}

const APP: &str = "FROM alpine:3.18\nARG V=1\nWORKDIR /app\nCOPY go.mod ./\nRUN echo deps\nCOPY src/ ./src/\nRUN echo build $V\nCMD [\"/app/bin\"]\n";

fn app_repo() -> Repo {
    let r = Repo::new();
    r.write("Dockerfile", APP);
    r.write("go.mod", "module x\n");
    r.write("src/main.go", "package main\n");
    r.write("README.md", "x\n");
    r
}

/// Index of the first differing stage, and whether everything from there on differs.
fn first_change(a: &[String], b: &[String]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    let i = a.iter().zip(b).position(|(x, y)| x != y)?;
    assert!(
        a[i..].iter().zip(&b[i..]).all(|(x, y)| x != y),
        "all stages after {i} change"
    );
    Some(i)
}

#[test]
fn a_changed_file_rebuilds_only_from_the_copy_that_uses_it() {
    for mode in [StagedMode::StagedV1, StagedMode::StagedV2] {
        let r = app_repo();
        r.commit("one");
        let img = Img::staged(mode);
        let stages = img.stages(&r.tree(None)).unwrap();
        let before: Vec<String> = stages.iter().map(|s| s.digest.clone()).collect();
        let copy_src = stages
            .iter()
            .position(|s| s.instruction.as_deref() == Some("COPY src/ ./src/"))
            .expect("copy src stage");
        r.write("src/main.go", "package main // changed\n");
        r.commit("two");
        let after = img.digests(&r.tree(None));
        assert_eq!(first_change(&before, &after), Some(copy_src), "{mode:?}");
        r.write("README.md", "changed\n");
        r.commit("three");
        assert_eq!(
            img.digests(&r.tree(None)),
            after,
            "unrelated file, {mode:?}"
        );
    }
}

#[test]
fn an_arg_value_rebuilds_from_the_first_instruction_that_sees_it() {
    let r = app_repo();
    r.commit("one");
    let t = r.tree(None);
    let img = Img::staged(StagedMode::StagedV2);
    let stages = img.stages(&t).unwrap();
    let before: Vec<String> = stages.iter().map(|s| s.digest.clone()).collect();
    let mut changed = img.clone();
    changed.args.insert("V".into(), "2".into());
    let after = changed.digests(&t);
    // V is in every RUN's environment: the first RUN is the first stage to change.
    let first_run = stages.iter().position(|s| s.name == "RUN").unwrap();
    assert_eq!(first_change(&before, &after), Some(first_run));
    assert_eq!(
        stages[first_run].instruction.as_deref(),
        Some("RUN echo deps")
    );
}

#[test]
fn a_comment_change_keeps_every_stage_and_platform_changes_all() {
    let r = app_repo();
    r.commit("one");
    let img = Img::staged(StagedMode::StagedV2);
    let before = img.digests(&r.tree(None));
    r.write(
        "Dockerfile",
        &format!(
            "# comment\n{}",
            APP.replace("WORKDIR /app\n", "# here\nWORKDIR /app\n")
        ),
    );
    r.commit("comments");
    assert_eq!(img.digests(&r.tree(None)), before);
    let arm = Img {
        platform: "linux/arm64".into(),
        ..img.clone()
    };
    let a = arm.digests(&r.tree(None));
    assert!(a.iter().zip(&before).all(|(x, y)| x != y));
}

#[test]
fn dockerignored_changes_keep_staged_digests() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nCOPY . /app\n");
    r.write(".dockerignore", "*.log\n");
    r.write("a.txt", "1\n");
    r.write("x.log", "1\n");
    r.commit("one");
    let img = Img::staged(StagedMode::StagedV2);
    let before = img.digests(&r.tree(None));
    r.write("x.log", "2\n");
    r.commit("two");
    assert_eq!(img.digests(&r.tree(None)), before);
    r.write("a.txt", "2\n");
    r.commit("three");
    assert_ne!(img.digests(&r.tree(None)), before);
}

#[test]
fn multi_stage_targets_list_dependencies_first_and_are_provisional_offline() {
    let r = Repo::new();
    r.write(
        "Dockerfile",
        "FROM alpine:3.18 AS build\nRUN make\nFROM build AS test\nRUN test\nFROM alpine:3.18\nCOPY --from=build /out /out\n",
    );
    r.commit("init");
    let img = Img::staged(StagedMode::StagedV2);
    let stages = img.stages(&r.tree(None)).unwrap();
    let images: Vec<&str> = stages
        .iter()
        .map(|s| s.werf_image.as_deref().unwrap())
        .collect();
    assert_eq!(
        images,
        ["app/stage/build", "app/stage/build", "app", "app"],
        "the test stage is not needed"
    );
    // Offline, the base image env and the built name of `build` are unknown: `build`'s FROM
    // does not depend on them, its RUN does (environment); `app`'s FROM (alpine) does not, its
    // COPY --from=build does (build's image name).
    let provisional: Vec<bool> = stages.iter().map(|s| s.provisional).collect();
    assert_eq!(provisional, [false, true, false, true]);

    struct Known;
    impl StagedInputs for Known {
        fn base_image_env(&self, reference: &str, _: &str) -> Option<BTreeMap<String, String>> {
            (reference == "alpine:3.18")
                .then(|| BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]))
        }
        fn stage_image_name(&self, werf_image: &str, digest: &str) -> Option<String> {
            Some(format!(
                "registry.example.org/app:{digest}-1700000000000-{}",
                werf_image.len()
            ))
        }
    }
    let owned = img.clone();
    let input = DockerfileImageInput {
        image: &owned.image,
        context: &owned.context,
        dockerfile: &owned.dockerfile,
        target: None,
        args: &owned.args,
        dependency_args: &owned.dependency_args,
        add_hosts: &owned.add_hosts,
        context_add_files: &owned.context_add_files,
        cache_version: None,
        staged: owned.staged,
        platform: &owned.platform,
        digest_mode: kiln_operator::digest::DigestMode::Werf,
    };
    let known = dockerfile_image_stages_with(&r.tree(None), &input, &Known).unwrap();
    assert!(known.iter().all(|s| !s.provisional));
    // `build`'s FROM stage does not depend on build-time facts; its RUN sees the base env.
    assert_eq!(known[0].digest, stages[0].digest);
    assert_ne!(known[1].digest, stages[1].digest);
    // The final COPY --from=build depends on build's built image name.
    assert_ne!(known[3].digest, stages[3].digest);
}

#[test]
fn v1_rejects_a_stage_with_only_from() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\n");
    r.commit("init");
    let e = Img::staged(StagedMode::StagedV1)
        .stages(&r.tree(None))
        .unwrap_err();
    assert!(
        e.to_string().contains("Dockerfile, line 1") && e.to_string().contains("v2"),
        "{e}"
    );
    assert_eq!(names(&Img::staged(StagedMode::StagedV2), &r), ["FROM"]);
}

#[test]
fn staged_copy_source_matching_nothing_is_an_error() {
    let r = Repo::new();
    r.write(
        "Dockerfile",
        "FROM alpine:3.18\nWORKDIR /x\nCOPY nothing*.txt ./\n",
    );
    r.commit("init");
    let e = Img::staged(StagedMode::StagedV2)
        .stages(&r.tree(None))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("line 3") && msg.contains("nothing*.txt"),
        "{msg}"
    );
}
