//! Strict digest mode: each input werf leaves out changes the strict digest (and keeps the
//! werf-mode one), and a strict digest never equals a werf-mode one.

mod digest_support;

use digest_support::{Img, Repo};
use kiln_operator::digest::{DigestMode, StagedMode, stage_digest_in};

/// Commits `change` on top of `r` and returns (werf digests before, after; strict before, after).
fn around(r: &Repo, img: &Img, change: impl FnOnce(&Repo)) -> [Vec<String>; 4] {
    let werf_before = img.digests(&r.tree(None));
    let strict_before = img.strict().digests(&r.tree(None));
    change(r);
    r.commit("change");
    [
        werf_before,
        img.digests(&r.tree(None)),
        strict_before,
        img.strict().digests(&r.tree(None)),
    ]
}

/// werf keeps its digests through the change, strict mode changes the last one.
fn assert_strict_only(
    what: &str,
    [werf_before, werf_after, strict_before, strict_after]: [Vec<String>; 4],
) {
    assert_eq!(werf_before, werf_after, "{what}: werf mode");
    assert_ne!(
        strict_before.last(),
        strict_after.last(),
        "{what}: strict mode"
    );
}

#[test]
fn rename_of_a_file_a_glob_selects() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nCOPY *.sh /bin/\n")
        .write("a.sh", "echo\n");
    r.commit("one");
    let d = around(&r, &Img::default(), |r| {
        r.rename("a.sh", "b.sh");
    });
    assert_strict_only("rename", d);
}

#[test]
fn chmod_of_a_file_a_glob_selects() {
    for staged in [StagedMode::NonStaged, StagedMode::StagedV1] {
        let r = Repo::new();
        r.write("Dockerfile", "FROM alpine:3.18\nCOPY *.sh /bin/\n")
            .write("a.sh", "echo\n");
        r.commit("one");
        let d = around(&r, &Img::staged(staged), |r| {
            r.write_mode("a.sh", "echo\n", 0o755);
        });
        assert_strict_only(&format!("chmod +x, {staged:?}"), d);
    }
}

#[test]
fn heredoc_body_edit() {
    for staged in [StagedMode::NonStaged, StagedMode::StagedV2] {
        let r = Repo::new();
        r.write("Dockerfile", "FROM alpine:3.18\nRUN <<EOF\necho one\nEOF\n");
        r.commit("one");
        let d = around(&r, &Img::staged(staged), |r| {
            r.write("Dockerfile", "FROM alpine:3.18\nRUN <<EOF\necho two\nEOF\n");
        });
        assert_strict_only(&format!("heredoc, {staged:?}"), d);
    }
}

#[test]
fn quoting_that_word_processing_removes() {
    let r = Repo::new();
    r.write("Dockerfile", "FROM alpine:3.18\nRUN touch \"a b\"\n");
    r.commit("one");
    let d = around(&r, &Img::default(), |r| {
        r.write("Dockerfile", "FROM alpine:3.18\nRUN touch a b\n");
    });
    assert_strict_only("quoting", d);
}

#[test]
fn edited_stage_reached_through_from_arg() {
    let r = Repo::new();
    let dockerfile = |msg: &str| {
        format!(
            "ARG BASE=build\nFROM alpine:3.18 AS build\nRUN echo {msg} > /m\n\nFROM ${{BASE}}\nCMD [\"cat\", \"/m\"]\n"
        )
    };
    r.write("Dockerfile", &dockerfile("one"));
    r.commit("one");
    let d = around(&r, &Img::default(), |r| {
        r.write("Dockerfile", &dockerfile("two"));
    });
    assert_strict_only("FROM ${BASE}", d);
}

#[test]
fn strict_and_werf_digests_never_coincide() {
    // The salt takes the place of werf's "1.2": same parts, different digest.
    for platform in ["linux/amd64", "linux/arm64"] {
        assert_ne!(
            stage_digest_in(DigestMode::Werf, platform, "dockerfile", "d", None, None),
            stage_digest_in(DigestMode::Strict, platform, "dockerfile", "d", None, None)
        );
    }
    // Where strict mode hashes nothing more (no context file, no quoting), the digest still
    // differs, so a strict build never reuses a werf-mode stage nor the other way round.
    let r = Repo::new();
    r.write(
        "Dockerfile",
        "FROM alpine:3.18\nWORKDIR /app\nCMD [\"run\"]\n",
    );
    r.commit("one");
    for staged in [
        StagedMode::NonStaged,
        StagedMode::StagedV1,
        StagedMode::StagedV2,
    ] {
        let img = Img::staged(staged);
        let werf = img.digests(&r.tree(None));
        let strict = img.strict().digests(&r.tree(None));
        assert_eq!(werf.len(), strict.len());
        for s in &strict {
            assert!(!werf.contains(s), "{staged:?}: {s} in both modes");
        }
    }
}
