//! Stapel stage chains on real git commits (written with git2 into a temporary repository).
//! Expected digests were computed with Python's hashlib over the exact strings werf joins:
//! `sha3_224(":::".join(parts))` for stage digests, `sha256(...)` for dependencies; the blob id
//! of `package.json` (`{}\n`) is `sha1(b"blob 3\0{}\n")`.

use std::collections::BTreeMap;

use git2::{Repository, Signature, Time};

use super::*;
use crate::config::StapelImage;

struct Repo {
    _dir: tempfile::TempDir,
    tree: GitTree,
}

fn repo(files: &[(&str, &str)]) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path()).unwrap();
    let mut index = repo.index().unwrap();
    for (path, content) in files {
        let oid = repo.blob(content.as_bytes()).unwrap();
        let entry = git2::IndexEntry {
            ctime: git2::IndexTime::new(0, 0),
            mtime: git2::IndexTime::new(0, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: content.len() as u32,
            id: oid,
            flags: 0,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        };
        index.add(&entry).unwrap();
    }
    let tree_id = index.write_tree().unwrap();
    let tree = repo.find_tree(tree_id).unwrap();
    let sig = Signature::new("t", "t@kiln.invalid", &Time::new(1_700_000_000, 0)).unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &[])
        .unwrap();
    let tree = GitTree::open(dir.path(), None).unwrap();
    Repo { _dir: dir, tree }
}

fn image(yaml: &str) -> StapelImage {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn input<'a>(cfg: &'a StapelImage, base: StapelBase, platform: &'a str) -> StapelImageInput<'a> {
    StapelImageInput {
        image: "app",
        config: cfg,
        cache_version: None,
        base,
        image_spec: false,
        platform,
        digest_mode: DigestMode::Werf,
    }
}

fn ext(r: &str) -> StapelBase {
    StapelBase::External(r.to_string())
}

/// Every git-related stage image is recorded at this commit.
struct Recorded(BTreeMap<&'static str, String>);

impl StapelInputs for Recorded {
    fn recorded_commits(&self, _: &str, stage: &str, _: &str) -> Option<Vec<String>> {
        self.0.get(stage).map(|c| vec![c.clone()])
    }
}

fn recorded_everywhere(commit: &str) -> Recorded {
    Recorded(
        ["gitArchive", "install", "beforeSetup", "setup"]
            .into_iter()
            .map(|s| (s, commit.to_string()))
            .collect(),
    )
}

const APP: &str = r#"
from: alpine:3.18
git:
- add: /
  to: /app
  stageDependencies:
    install: package.json
shell:
  beforeInstall: [a]
  install: [b]
  setup: [c]
docker:
  WORKDIR: /app
"#;

fn digests(stages: &[StapelStage]) -> Vec<(&str, Option<&str>)> {
    stages
        .iter()
        .map(|s| (s.name, s.digest.as_deref()))
        .collect()
}

#[test]
fn chain_with_git_mapping_and_recorded_commits() {
    let r = repo(&[("package.json", "{}\n"), ("src/main.js", "x\n")]);
    let cfg = image(APP);
    let old = "c".repeat(40);
    let stages = stapel_image_stages(
        &r.tree,
        &input(&cfg, ext("alpine:3.18"), "linux/amd64"),
        &recorded_everywhere(&old),
    )
    .unwrap();
    assert_eq!(
        digests(&stages)[..5],
        [
            // sha3("1.2:::from:::" + sha256("alpine:3.18"))
            (
                "from",
                Some("3dbd6d44689162ca0ebbdef149f0c467c9ba147c6e9a7759164efc0a")
            ),
            // sha3("1.2:::beforeInstall:::" + sha256("a") + ":::" + from + ":::")
            (
                "beforeInstall",
                Some("5ab1f9650193c69e573230394ce29214e265257492354d1748fe45a7")
            ),
            // sha3("1.2:::gitArchive:::" + sha256(paramshash) + ":::" + beforeInstall + ":::"),
            // paramshash = sha256("own_own:::/app::::::::::::::::::::::::")
            (
                "gitArchive",
                Some("d7b66e13de1a653b1bff068af96d1a019f2ca829862b4b0b56f0a577")
            ),
            // sha3("1.2:::install:::" + sha256(sha256("b") + ":::" + sha256(M)) + ":::" +
            // gitArchive + ":::" + sha256("c"*40)), M = sha256(ls-tree checksum of
            // package.json) = sha256(sha256(blob id)) (werf hashes object ids only)
            (
                "install",
                Some("bd46059f2a16f3463f2da202d618d73a83a17320d7d16aca12ef431c")
            ),
            // setup lists no stageDependencies: the mapping's checksum is "".
            // sha3("1.2:::setup:::" + sha256(sha256("c") + ":::" + sha256("")) + ":::" +
            // install + ":::" + sha256("c"*40))
            (
                "setup",
                Some("b8a92d88e2187c28b50e92851f9e180f20fdca60a07e94cd4dfed168")
            ),
        ]
    );
    assert!(
        stages[..5]
            .iter()
            .all(|s| !s.provisional && s.note.is_none())
    );
    // The recorded commit is older than the current one: the patch stages hash a git patch
    // the plan does not compute, so they and dockerInstructions are pending.
    let rest: Vec<&str> = stages[5..].iter().map(|s| s.name).collect();
    assert_eq!(rest, ["gitCache", "gitLatestPatch", "dockerInstructions"]);
    assert!(stages[5..].iter().all(|s| s.digest.is_none()));
    assert!(
        stages[7].note.as_deref().unwrap().contains("git patch"),
        "{:?}",
        stages[7].note
    );
}

#[test]
fn offline_stages_after_a_git_stage_are_provisional() {
    let r = repo(&[("package.json", "{}\n")]);
    let cfg = image(APP);
    let stages = stapel_image_stages(
        &r.tree,
        &input(&cfg, ext("alpine:3.18"), "linux/amd64"),
        &Offline,
    )
    .unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s.name).collect();
    // At the current commit the patch stages are empty and skipped.
    assert_eq!(
        names,
        [
            "from",
            "beforeInstall",
            "gitArchive",
            "install",
            "setup",
            "dockerInstructions"
        ]
    );
    assert!(stages[..3].iter().all(|s| !s.provisional));
    assert_eq!(
        stages[2].digest.as_deref(),
        Some("d7b66e13de1a653b1bff068af96d1a019f2ca829862b4b0b56f0a577"),
        "gitArchive does not depend on the commit"
    );
    for s in &stages[3..] {
        assert!(s.provisional, "{} must be provisional", s.name);
        let note = s.note.as_deref().unwrap();
        assert!(
            note.contains("gitArchive") && note.contains(r.tree.commit_id()),
            "{note}"
        );
    }
    // With the current commit recorded, the stages are exact and equal the assumption.
    let exact = stapel_image_stages(
        &r.tree,
        &input(&cfg, ext("alpine:3.18"), "linux/amd64"),
        &recorded_everywhere(r.tree.commit_id()),
    )
    .unwrap();
    assert_eq!(digests(&exact), digests(&stages));
    assert!(exact.iter().all(|s| !s.provisional));
}

#[test]
fn chain_without_git_mappings_is_exact() {
    let r = repo(&[("README", "r\n")]);
    let cfg = image("from: scratch\nshell:\n  install: b\ndocker:\n  WORKDIR: /app\n");
    let stages = stapel_image_stages(
        &r.tree,
        &input(&cfg, StapelBase::Scratch, "linux/amd64"),
        &Offline,
    )
    .unwrap();
    assert_eq!(
        digests(&stages),
        [
            // sha3("1.2:::from:::" + sha256("scratch"))
            (
                "from",
                Some("4d70aab559df44c9925c6d3565de33fe6ca1bdb88f403dd4aa964852")
            ),
            // sha3("1.2:::install:::" + sha256(sha256("b") + ":::" + sha256("")) + ":::" +
            // from + ":::")
            (
                "install",
                Some("c521b09a5e20dc72fcab52511ef5d764d808a88b7d12d7ef9c8a3eae")
            ),
            // install has no git mapping: its next-stage dependencies are sha256("").
            // sha3("1.2:::dockerInstructions:::" + sha256("::::::/app::::::") + ":::" +
            // install + ":::" + sha256(""))
            (
                "dockerInstructions",
                Some("4a342582c3419edb723873a8a5ab5e043ca780918010f1a8af082bf8")
            ),
        ]
    );
    assert!(stages.iter().all(|s| !s.provisional));
}

#[test]
fn platform_other_than_amd64_enters_every_digest() {
    let r = repo(&[("README", "r\n")]);
    let cfg = image("from: alpine:3.18\n");
    let stages = stapel_image_stages(
        &r.tree,
        &input(&cfg, ext("alpine:3.18"), "linux/arm64"),
        &Offline,
    )
    .unwrap();
    // sha3("linux/arm64:::1.2:::from:::" + sha256("alpine:3.18"))
    assert_eq!(
        stages[0].digest.as_deref(),
        Some("88970e8ae133a58fdd339ae79a46677657d2a6db8c35e20d70ecb914")
    );
}

#[test]
fn from_image_hashes_the_base_content_digest_after_cache_version() {
    let r = repo(&[("README", "r\n")]);
    let cfg = image("fromImage: base\n");
    // sha3("1.2:::dockerfile-content:::" + "" + ":::" + "d"*56 + ":::")
    let content = content_digest("linux/amd64", "dockerfile", &"d".repeat(56), "");
    assert_eq!(
        content,
        "2f504322f7ea065c5174dc04c00b360a75890f4c8e91059eb936ed0f"
    );
    let mut inp = input(
        &cfg,
        StapelBase::Image {
            name: "base".into(),
            content_digest: Known::Final(content.clone()),
        },
        "linux/amd64",
    );
    inp.cache_version = Some("v1");
    let stages = stapel_image_stages(&r.tree, &inp, &Offline).unwrap();
    // sha3("1.2:::from:::" + sha256("v1:::" + content))
    assert_eq!(
        stages[0].digest.as_deref(),
        Some("e8544ac55b26731b8e0085312123adff2ccf792d0bac3b6a887f8ae6")
    );
    // A provisional base content digest makes the whole chain provisional.
    inp.base = StapelBase::Image {
        name: "base".into(),
        content_digest: Known::Provisional {
            value: content,
            assumes: "base assumption".into(),
        },
    };
    let stages = stapel_image_stages(&r.tree, &inp, &Offline).unwrap();
    assert!(stages[0].provisional);
    assert_eq!(stages[0].note.as_deref(), Some("base assumption"));
    // A pending one leaves it pending.
    inp.base = StapelBase::Image {
        name: "base".into(),
        content_digest: Known::Pending("base not known".into()),
    };
    let stages = stapel_image_stages(&r.tree, &inp, &Offline).unwrap();
    assert_eq!(stages[0].digest, None);
    assert_eq!(stages[0].note.as_deref(), Some("base not known"));
}

#[test]
fn unknown_inputs_leave_stages_pending_from_where_they_enter() {
    let r = repo(&[("README", "r\n")]);
    let cfg = image(
        "from: alpine\nimport:\n- image: lib\n  add: /out\n  after: install\nshell:\n  beforeInstall: a\n  install: b\n  setup: c\n",
    );
    let stages = stapel_image_stages(
        &r.tree,
        &input(&cfg, ext("alpine"), "linux/amd64"),
        &Offline,
    )
    .unwrap();
    let names: Vec<(&str, bool)> = stages
        .iter()
        .map(|s| (s.name, s.digest.is_some()))
        .collect();
    assert_eq!(
        names,
        [
            ("from", true),
            ("beforeInstall", true),
            ("install", true),
            ("dependenciesAfterInstall", false),
            ("setup", false),
        ]
    );
    assert!(stages[4].note.as_deref().unwrap().contains("after install"));

    let latest = image("from: alpine\nfromLatest: true\nshell:\n  install: b\n");
    let stages = stapel_image_stages(
        &r.tree,
        &input(&latest, ext("alpine"), "linux/amd64"),
        &Offline,
    )
    .unwrap();
    assert!(stages.iter().all(|s| s.digest.is_none()));
    assert!(stages[0].note.as_deref().unwrap().contains("fromLatest"));

    let remote = image(
        "from: alpine\nshell:\n  beforeInstall: a\n  install: b\ngit:\n- url: https://example.org/x.git\n  to: /x\n",
    );
    let stages = stapel_image_stages(
        &r.tree,
        &input(&remote, ext("alpine"), "linux/amd64"),
        &Offline,
    )
    .unwrap();
    let known: Vec<(&str, bool)> = stages
        .iter()
        .map(|s| (s.name, s.digest.is_some()))
        .collect();
    assert_eq!(
        known,
        [
            ("from", true),
            ("beforeInstall", true),
            ("gitArchive", false),
            ("install", false)
        ]
    );

    let spec = image("from: alpine\n");
    let mut inp = input(&spec, ext("alpine"), "linux/amd64");
    inp.image_spec = true;
    let stages = stapel_image_stages(&r.tree, &inp, &Offline).unwrap();
    assert_eq!(stages[1].name, "imageSpec");
    assert!(stages[1].digest.is_none());
}

#[test]
fn mapping_selecting_nothing_is_dropped() {
    let r = repo(&[("README", "r\n")]);
    let cfg = image("from: alpine\ngit:\n- add: /missing\n  to: /app\nshell:\n  install: b\n");
    let stages = stapel_image_stages(
        &r.tree,
        &input(&cfg, ext("alpine"), "linux/amd64"),
        &Offline,
    )
    .unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s.name).collect();
    assert_eq!(names, ["from", "install"]);
    assert!(
        !stages[1].provisional,
        "no git mapping left: nothing to assume"
    );
}

#[test]
fn bad_input_is_an_error_naming_the_image() {
    let r = repo(&[("README", "r\n")]);
    let ansible = image("from: alpine\nansible:\n  install:\n  - shell: make\n");
    let err = stapel_image_stages(
        &r.tree,
        &input(&ansible, ext("alpine"), "linux/amd64"),
        &Offline,
    )
    .unwrap_err();
    assert!(matches!(err, DigestError::StapelAnsible { .. }));
    assert!(err.to_string().contains("image app") && err.to_string().contains("ansible"));

    let no_to = image("from: alpine\ngit:\n- add: /\n");
    let err = stapel_image_stages(
        &r.tree,
        &input(&no_to, ext("alpine"), "linux/amd64"),
        &Offline,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "image app: git[0]: `to` is required (the path the files are copied to)"
    );

    let env = image("from: alpine\ndocker:\n  ENV:\n    X: [1]\n");
    let err = stapel_image_stages(
        &r.tree,
        &input(&env, ext("alpine"), "linux/amd64"),
        &Offline,
    )
    .unwrap_err();
    assert!(err.to_string().contains("docker.ENV.X"), "{err}");
}

#[test]
fn legacy_stage_names_enter_digests() {
    assert_eq!(
        digest_stage_name("dependenciesAfterSetup"),
        "importsAfterSetup"
    );
    assert_eq!(digest_stage_name("install"), "install");
}

#[test]
fn stage_dependencies_checksum_below_add_respects_excludes() {
    let r = repo(&[
        ("src/package.json", "{}\n"),
        ("src/docs/a.md", "m\n"),
        ("src/lib/x.js", "x\n"),
        ("README", "r\n"),
    ]);
    let cfg = image(
        "from: alpine\ngit:\n- add: /src\n  to: /app\n  excludePaths: docs\n  stageDependencies:\n    install: '**/*'\n    beforeSetup: [package.json, missing.txt]\n    setup: nothing-here\n",
    );
    let mapping = git::Mapping::from_config(&cfg.git[0]).unwrap();
    // `**/*` selects src/lib as a whole (its tree id) and src/package.json; docs is excluded.
    // python3: tree = sha1(b"tree 32\0100644 x.js\0" + bytes.fromhex(blob("x\n")));
    // werf: ls = sha256(tree + blob("{}\n")); expected = sha256(ls)
    assert_eq!(
        mapping
            .stage_dependencies_checksum(&r.tree, git::UserStage::Install, DigestMode::Werf)
            .unwrap(),
        "5867454fc00c96eee422b9bec97ca264b54e60564fddc253f5c8022a0c65deb3"
    );
    // strict: ls = sha256(tree + "0040000lib\0" + blob("{}\n") + "0100644package.json\0")
    assert_eq!(
        mapping
            .stage_dependencies_checksum(&r.tree, git::UserStage::Install, DigestMode::Strict)
            .unwrap(),
        "d129568b128d6de6cded2b358b9b87529cac7cd0da580b4c9798fb25352f0c9b"
    );
    // A glob selecting nothing adds nothing: sha256(ls of package.json alone).
    assert_eq!(
        mapping
            .stage_dependencies_checksum(&r.tree, git::UserStage::BeforeSetup, DigestMode::Werf)
            .unwrap(),
        "0ef8e6567312d94d6e1dbe42068b33b0201900de36846c2d55d965eaccb1f114"
    );
    assert_eq!(
        mapping
            .stage_dependencies_checksum(&r.tree, git::UserStage::BeforeSetup, DigestMode::Strict)
            .unwrap(),
        "20d0c9a7ede3523e97b274490cabf613f7d322c92d8230dbf20fec1064568c51"
    );
    // Nothing selected at all still hashes: sha256("") (werf only warns).
    assert_eq!(
        mapping
            .stage_dependencies_checksum(&r.tree, git::UserStage::Setup, DigestMode::Werf)
            .unwrap(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn shell_cache_version_alone_makes_every_user_stage() {
    // werf's shell builder treats a stage as empty only when its checksum is "": a
    // `shell.cacheVersion` gives every user stage a checksum, so all four exist.
    let r = repo(&[("README", "r\n")]);
    let cfg = image("from: alpine\nshell:\n  cacheVersion: '2'\n");
    let stages = stapel_image_stages(
        &r.tree,
        &input(&cfg, ext("alpine"), "linux/amd64"),
        &Offline,
    )
    .unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["from", "beforeInstall", "install", "beforeSetup", "setup"]
    );
    // beforeInstall's dependencies are the builder checksum itself, sha256(sha256("2")):
    // python3: sha3_224("1.2:::beforeInstall:::" + sha256(sha256("2")) + ":::" +
    // sha3_224("1.2:::from:::" + sha256("alpine")) + ":::")
    assert_eq!(
        stages[1].digest.as_deref(),
        Some("81c3dce158d535071ed0c7b779f58e83d90e1002148d02ad848c59df")
    );
}
