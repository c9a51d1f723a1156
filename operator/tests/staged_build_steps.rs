//! What the builder gets for each staged stage: the instruction after the same expansion
//! the digest used (build args, ENVs, `--from` stage images), and the base of the first
//! stage of each Dockerfile stage. Expected values are written out by hand from the
//! Dockerfile (Docker's expansion rules), not taken from the code.

mod digest_support;

use std::collections::BTreeMap;

use digest_support::{Img, Repo};
use kiln_crds::job::{Instruction, KeyValue, NetworkMode, RunMount};
use kiln_operator::digest::staged::{StageBase, StagedInputs, StagedStep};
use kiln_operator::digest::{
    DockerfileImageInput, PlannedStage, StagedMode, dockerfile_image_stages_with,
};
use kiln_operator::source::GitTree;

fn kv(name: &str, value: &str) -> KeyValue {
    KeyValue {
        name: name.into(),
        value: value.into(),
    }
}

fn stages_with(img: &Img, tree: &GitTree, inputs: &dyn StagedInputs) -> Vec<PlannedStage> {
    let input = DockerfileImageInput {
        image: &img.image,
        context: &img.context,
        dockerfile: &img.dockerfile,
        target: img.target.as_deref(),
        args: &img.args,
        dependency_args: &img.dependency_args,
        add_hosts: &img.add_hosts,
        context_add_files: &img.context_add_files,
        cache_version: img.cache_version.as_deref(),
        staged: img.staged,
        platform: &img.platform,
        digest_mode: kiln_operator::digest::DigestMode::Werf,
    };
    dockerfile_image_stages_with(tree, &input, inputs).unwrap()
}

/// Known facts: busybox has `PATH` only; the `base` Dockerfile stage is built as `built`.
struct Facts {
    built: Option<String>,
}

impl StagedInputs for Facts {
    fn base_image_env(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("PATH".into(), "/bin".into())]))
    }
    fn stage_image_name(&self, werf_image: &str, _: &str) -> Option<String> {
        assert_eq!(werf_image, "app/stage/base");
        self.built.clone()
    }
}

fn instruction(stage: &PlannedStage) -> (&str, &Instruction) {
    match &stage.build.as_ref().unwrap().step {
        StagedStep::Instruction { text, instruction } => (text, instruction),
        other => panic!("{}: {other:?}", stage.name),
    }
}

const DOCKERFILE: &str = r#"ARG TAG=1.36
FROM busybox:${TAG}
ARG V=7
ENV P=/opt/$V
LABEL a=b
COPY --chown=1:1 src/ $P/
RUN --mount=type=cache,target=/c --network=none echo $V
WORKDIR $P
USER u$V
EXPOSE 80$V
CMD ["run"]
HEALTHCHECK --interval=5s --retries=3 CMD true
"#;

#[test]
fn instruction_stages_carry_the_expanded_instruction() {
    let repo = Repo::new();
    repo.write("Dockerfile", DOCKERFILE)
        .write("src/a", "a\n")
        .commit("c");
    let tree = repo.tree(None);
    let mut img = Img::staged(StagedMode::StagedV1);
    // werf.yaml `args` win over the ARG default.
    img.args.insert("V".into(), "9".into());
    let stages = stages_with(&img, &tree, &Facts { built: None });
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ENV",
            "LABEL",
            "COPY",
            "RUN",
            "WORKDIR",
            "USER",
            "EXPOSE",
            "CMD",
            "HEALTHCHECK"
        ]
    );
    // Only the first stage has a base: the FROM after expanding the meta ARG.
    assert_eq!(
        stages[0].build.as_ref().unwrap().base,
        Some(StageBase::Image("busybox:1.36".into()))
    );
    assert!(
        stages[1..]
            .iter()
            .all(|s| s.build.as_ref().unwrap().base.is_none())
    );
    let expected = [
        Instruction::Env {
            vars: vec![kv("P", "/opt/9")],
        },
        Instruction::Label {
            labels: vec![kv("a", "b")],
        },
        Instruction::Copy {
            sources: vec!["src/".into()],
            dest: "/opt/9/".into(),
            from: None,
            chown: Some("1:1".into()),
            chmod: None,
        },
        // The command is left to the shell; the build args are in its environment.
        Instruction::Run {
            command: vec!["echo $V".into()],
            prepend_shell: true,
            env: vec![kv("V", "9")],
            mounts: vec![RunMount::Other {
                spec: "type=cache,target=/c".into(),
            }],
            network: Some(NetworkMode::None),
        },
        Instruction::Workdir {
            path: "/opt/9".into(),
        },
        Instruction::User { user: "u9".into() },
        Instruction::Expose {
            ports: vec!["809".into()],
        },
        Instruction::Cmd {
            command: vec!["run".into()],
            prepend_shell: false,
        },
        Instruction::Healthcheck {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: Some("5s".into()),
            timeout: None,
            start_period: None,
            retries: Some(3),
        },
    ];
    for (stage, want) in stages.iter().zip(&expected) {
        assert_eq!(instruction(stage).1, want, "{}", stage.name);
    }
    assert_eq!(instruction(&stages[2]).0, "COPY src/ /opt/9/");
}

#[test]
fn v2_has_a_from_stage_on_the_base() {
    let repo = Repo::new();
    repo.write("Dockerfile", "FROM alpine:3.20\nENV A=1\n")
        .commit("c");
    let tree = repo.tree(None);
    let stages = stages_with(
        &Img::staged(StagedMode::StagedV2),
        &tree,
        &Facts { built: None },
    );
    let from = stages[0].build.as_ref().unwrap();
    assert_eq!(stages[0].name, "FROM");
    assert_eq!(from.step, StagedStep::From);
    assert_eq!(from.base, Some(StageBase::Image("alpine:3.20".into())));
    assert_eq!(stages[1].build.as_ref().unwrap().base, None);
}

#[test]
fn a_stage_built_on_another_uses_its_built_image() {
    let repo = Repo::new();
    repo.write(
        "Dockerfile",
        "FROM busybox AS base\nENV B=1\nFROM base\nCOPY --from=base /etc/passwd /p\n",
    )
    .commit("c");
    let tree = repo.tree(None);
    let img = Img::staged(StagedMode::StagedV1);
    let built = "registry.example.org/app:0123-1700000000000".to_owned();
    let stages = stages_with(
        &img,
        &tree,
        &Facts {
            built: Some(built.clone()),
        },
    );
    assert_eq!(stages.len(), 2);
    assert!(!stages[1].provisional);
    match &stages[1].build.as_ref().unwrap().base {
        Some(StageBase::Stage {
            werf_image,
            last_stage_digest,
            image_name,
        }) => {
            assert_eq!(werf_image, "app/stage/base");
            assert_eq!(last_stage_digest, &stages[0].digest);
            assert_eq!(image_name, &built);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        instruction(&stages[1]).1,
        &Instruction::Copy {
            sources: vec!["/etc/passwd".into()],
            dest: "/p".into(),
            from: Some(built),
            chown: None,
            chmod: None,
        }
    );
    // Not built yet: the stage is provisional, with the placeholder name.
    let offline = stages_with(&img, &tree, &Facts { built: None });
    assert!(offline[1].provisional);
}

#[test]
fn add_with_a_checksum_is_refused_for_the_build_only() {
    let repo = Repo::new();
    repo.write(
        "Dockerfile",
        "FROM busybox\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://example.org/a /a\n",
    )
    .commit("c");
    let tree = repo.tree(None);
    let stages = stages_with(
        &Img::staged(StagedMode::StagedV1),
        &tree,
        &Facts { built: None },
    );
    match &stages[0].build.as_ref().unwrap().step {
        StagedStep::Unsupported(reason) => {
            assert!(reason.contains("ADD --checksum"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn heredocs_are_refused_for_the_build_only() {
    let repo = Repo::new();
    repo.write("Dockerfile", "FROM busybox\nRUN <<EOF\necho hi\nEOF\n")
        .commit("c");
    let tree = repo.tree(None);
    let stages = stages_with(
        &Img::staged(StagedMode::StagedV1),
        &tree,
        &Facts { built: None },
    );
    match &stages[0].build.as_ref().unwrap().step {
        StagedStep::Unsupported(reason) => {
            assert!(reason.contains("Dockerfile, line 2"), "{reason}");
            assert!(reason.contains("RUN with a heredoc"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
