//! `kiln-builder` against real Buildah and a real registry (issue "Must show").

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use kiln_crds::job::{Instruction, NetworkMode, ParentRef, RunMount, StageBuild};

#[test]
fn overlay_and_fuse_overlayfs_storage_build_like_vfs() {
    let h = Harness::new();
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let commit = git.commit(&[("hello.txt", b"hello over overlay\n")]);
    let dockerfile = format!(
        "FROM {base}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /seen && echo layered > /second\n",
        base = h.base.amd64
    );
    for driver in ["overlay", "fuse-overlayfs"] {
        let repo = h.repo(&format!("storage-{driver}"));
        let mut job = h.job(&repo);
        job.source = Some(git.source(&commit));
        job.stages = vec![dockerfile_stage(driver, &dockerfile)];
        let out = h.run_with_driver(&job, driver);
        out.assert_ok();
        let reference = format!("{repo}:{}", out.result.stages[0].tag);
        assert_eq!(
            h.file(&reference, "/seen").as_deref(),
            Some("hello over overlay\n"),
            "{driver}"
        );
        assert_eq!(h.file(&reference, "/second").as_deref(), Some("layered\n"));
    }
    // Nothing stays mounted from the builds' stores (the temporary directory goes away).
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let tmp = h.tmp.path().display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&tmp)),
        "mounts left under {tmp}"
    );
}

#[test]
fn non_staged_multi_stage_dockerfile_builds_the_target_and_publishes_it() {
    let h = Harness::new();
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let commit = git.commit(&[("app/hello.txt", b"hello from git\n")]);
    let dockerfile = format!(
        "FROM {base} AS base\nRUN echo base > /base\n\
         FROM base AS app\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt > /seen\n\
         FROM app AS extra\nRUN echo extra-stage-ran > /extra\n",
        base = h.base.list
    );
    let repo = h.repo("multi");
    let mut job = h.job(&repo);
    job.source = Some(git.source(&commit));
    job.context_dir = "app".into();
    job.target = Some("app".into());
    job.stages = vec![dockerfile_stage("multi", &dockerfile)];
    let out = h.run(&job);
    out.assert_ok();

    // One stage, tagged DIGEST-TIMESTAMP_MILLISEC with the timestamp taken during the run.
    assert_eq!(out.result.stages.len(), 1);
    let stage = &out.result.stages[0];
    let (digest, ts) = stage.tag.split_once('-').unwrap();
    assert_eq!(digest, job.stages[0].digest);
    assert_eq!(ts.len(), 13);
    let ts: u64 = ts.parse().unwrap();
    assert!(
        out.started_ms <= ts && ts <= out.ended_ms,
        "{ts} not in run"
    );
    assert_eq!(h.tags(&repo), vec![stage.tag.clone()]);

    // The target's RUNs ran on the git file; the later stage did not run.
    let reference = format!("{repo}:{}", stage.tag);
    assert_eq!(
        h.file(&reference, "/seen").as_deref(),
        Some("hello from git\n")
    );
    assert_eq!(h.file(&reference, "/base").as_deref(), Some("base\n"));
    assert_eq!(h.file(&reference, "/extra"), None);
    assert!(
        !out.stdout.contains("extra-stage-ran > /extra"),
        "{}",
        out.stdout
    );

    // werf labels, and the reported IDs match the registry.
    let config = h.config(&reference);
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["werf"], "kiln-test");
    assert_eq!(
        labels["werf-stage-content-digest"],
        job.stages[0].content_digest
    );
    assert_eq!(labels["werf-project-repo-commit"], commit);
    let (raw, manifest) = h.manifest(&reference);
    assert_eq!(
        stage.image_id.as_deref(),
        manifest["config"]["digest"].as_str()
    );
    let expected_digest = format!("sha256:{}", sha256_hex(raw.as_bytes()));
    assert_eq!(
        stage.manifest_digest.as_deref(),
        Some(expected_digest.as_str())
    );
    let size: u64 = manifest["config"]["size"].as_u64().unwrap()
        + manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>();
    assert_eq!(stage.size, Some(size));
    assert!(stage.build_seconds.unwrap() > 0.0);
    let history: Vec<String> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str().map(str::to_owned))
        .collect();
    assert!(
        history.iter().any(|h| h.contains("cat /hello.txt")),
        "{history:?}"
    );
    assert!(
        !history.iter().any(|h| h.contains("extra-stage-ran")),
        "{history:?}"
    );
}

#[test]
fn staged_dockerfile_second_run_rebuilds_only_from_the_changed_copy() {
    let h = Harness::new();
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let first_commit = git.commit(&[("app.txt", b"version one\n")]);
    let repo = h.repo("staged");

    // What the operator would send for `FROM base; ENV; COPY app.txt; RUN` (staged v2).
    let from = |key: &str| {
        let mut s = instruction_stage(
            key,
            ParentRef::Image {
                reference: h.base.list.clone(),
            },
            "FROM x",
            shell_run("x"),
        );
        s.name = "FROM1".into();
        s.build = StageBuild::From;
        s
    };
    let env = |key: &str| {
        instruction_stage(
            key,
            ParentRef::Previous,
            "ENV GREETING=hi",
            Instruction::Env {
                vars: vec![kv("GREETING", "hi")],
            },
        )
    };
    let copy = |key: &str, parent: ParentRef| {
        instruction_stage(
            key,
            parent,
            "COPY app.txt /app.txt",
            Instruction::Copy {
                sources: vec!["app.txt".into()],
                dest: "/app.txt".into(),
                from: None,
                chown: None,
                chmod: None,
            },
        )
    };
    let run = |key: &str| {
        instruction_stage(
            key,
            ParentRef::Previous,
            "RUN cat /app.txt > /copy && echo \"$GREETING\" > /greeting",
            shell_run("cat /app.txt > /copy && echo \"$GREETING\" > /greeting"),
        )
    };

    let mut job = h.job(&repo);
    job.source = Some(git.source(&first_commit));
    job.stages = vec![
        from("from"),
        env("env"),
        copy("copy-1", ParentRef::Previous),
        run("run-1"),
    ];
    let first = h.run(&job);
    first.assert_ok();
    assert_eq!(first.result.stages.len(), 4);
    let tags1: Vec<String> = first.result.stages.iter().map(|s| s.tag.clone()).collect();
    let last1 = format!("{repo}:{}", tags1[3]);
    assert_eq!(h.file(&last1, "/copy").as_deref(), Some("version one\n"));
    assert_eq!(h.file(&last1, "/greeting").as_deref(), Some("hi\n"));
    // Each stage is labelled with its parent stage; FROM (no stage parent) with the commit.
    let cfg = |i: usize, r: &Outcome| h.config(&format!("{repo}:{}", r.result.stages[i].tag));
    let from_labels = cfg(0, &first)["config"]["Labels"].clone();
    assert_eq!(from_labels["werf-project-repo-commit"], first_commit);
    assert!(from_labels.get("werf.io/parent-stage-id").is_none());
    for i in 1..4 {
        let labels = cfg(i, &first)["config"]["Labels"].clone();
        assert_eq!(
            labels["werf.io/parent-stage-id"],
            tags1[i - 1].as_str(),
            "stage {i}"
        );
        assert_eq!(
            labels["werf-stage-content-digest"],
            job.stages[i].content_digest
        );
        // Instruction stages do not set the commit (as in werf); they inherit the FROM
        // stage's label with the rest of its config.
        assert_eq!(
            labels["werf-project-repo-commit"], first_commit,
            "stage {i}"
        );
    }
    assert!(
        cfg(1, &first)["config"]["Env"]
            .to_string()
            .contains("GREETING=hi")
    );

    // The COPY source changes: FROM and ENV keep their digests and are reused; the operator
    // sends only COPY (on the published ENV stage) and RUN.
    let second_commit = git.commit(&[("app.txt", b"version two\n")]);
    let mut job2 = h.job(&repo);
    job2.source = Some(git.source(&second_commit));
    job2.stages = vec![
        copy(
            "copy-2",
            ParentRef::Stage {
                reference: format!("{repo}:{}", tags1[1]),
            },
        ),
        run("run-2"),
    ];
    let second = h.run(&job2);
    second.assert_ok();
    assert_eq!(second.result.stages.len(), 2);
    assert!(
        !second.stdout.contains(&job.stages[0].digest),
        "FROM rebuilt: {}",
        second.stdout
    );
    let last2 = format!("{repo}:{}", second.result.stages[1].tag);
    assert_eq!(h.file(&last2, "/copy").as_deref(), Some("version two\n"));
    assert_eq!(h.file(&last2, "/greeting").as_deref(), Some("hi\n"));
    let copy_labels = cfg(0, &second)["config"]["Labels"].clone();
    assert_eq!(copy_labels["werf.io/parent-stage-id"], tags1[1].as_str());
    assert_eq!(copy_labels["werf-project-repo-commit"], first_commit);
    // The new stages sit on the reused ENV stage's layers.
    let (_, env_manifest) = h.manifest(&format!("{repo}:{}", tags1[1]));
    let (_, run_manifest) = h.manifest(&format!("{repo}:{}", second.result.stages[1].tag));
    let layers = |m: &serde_json::Value| -> Vec<String> {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let env_layers = layers(&env_manifest);
    assert_eq!(
        &layers(&run_manifest)[..env_layers.len()],
        env_layers.as_slice()
    );
    // All six stages are in the stages storage, none overwritten.
    let mut expected: Vec<String> = tags1
        .iter()
        .chain(second.result.stages.iter().map(|s| &s.tag))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(h.tags(&repo), expected);
}

#[test]
fn arm64_runs_under_qemu_staged_and_not() {
    kiln_testkit::qemu::ensure_aarch64().unwrap();
    let h = Harness::new();
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let commit = git.commit(&[("README", b"arm\n")]);
    let repo = h.repo("arm");
    let mut job = h.job(&repo);
    job.platform = Some("linux/arm64".into());
    job.source = Some(git.source(&commit));
    job.stages = vec![dockerfile_stage(
        "arm",
        &format!("FROM {}\nRUN uname -m | tee /arch\n", h.base.list),
    )];
    let out = h.run(&job);
    out.assert_ok();
    let reference = format!("{repo}:{}", out.result.stages[0].tag);
    assert_eq!(h.file(&reference, "/arch").as_deref(), Some("aarch64\n"));
    assert_eq!(h.config(&reference)["architecture"], "arm64");

    let mut staged = h.job(&repo);
    staged.platform = Some("linux/arm64".into());
    staged.stages = vec![
        instruction_stage(
            "arm-env",
            ParentRef::Image {
                reference: h.base.list.clone(),
            },
            "ENV ARCH_NOTE=emulated",
            Instruction::Env {
                vars: vec![kv("ARCH_NOTE", "emulated")],
            },
        ),
        instruction_stage(
            "arm-run",
            ParentRef::Previous,
            "RUN echo \"$(uname -m) $ARCH_NOTE\" | tee /arch",
            shell_run("echo \"$(uname -m) $ARCH_NOTE\" | tee /arch"),
        ),
    ];
    let out = h.run(&staged);
    out.assert_ok();
    let last = format!("{repo}:{}", out.result.stages[1].tag);
    assert_eq!(
        h.file(&last, "/arch").as_deref(),
        Some("aarch64 emulated\n")
    );
    for stage in &out.result.stages {
        let config = h.config(&format!("{repo}:{}", stage.tag));
        assert_eq!(config["architecture"], "arm64");
    }
}

/// A loopback listener that answers `pong` and counts connections.
fn pong_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 16];
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"pong\n");
        }
    });
    (port, count)
}

#[test]
fn network_none_cuts_off_loopback_and_host_reaches_it() {
    let h = Harness::new();
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let commit = git.commit(&[("README", b"net\n")]);
    let (port, connections) = pong_listener();
    let repo = h.repo("net");
    let probe = format!("echo ping | nc -w 3 127.0.0.1 {port} > /reply");
    let dockerfile = format!("FROM {}\nRUN {probe}\n", h.base.list);
    let job = |network: NetworkMode, key: &str| {
        let mut job = h.job(&repo);
        job.network = network;
        job.source = Some(git.source(&commit));
        job.base_images = vec![h.base.list.clone()];
        job.stages = vec![dockerfile_stage(key, &dockerfile)];
        job
    };

    let isolated = h.run(&job(NetworkMode::None, "none"));
    assert_eq!(isolated.exit_code, Some(1), "{}", isolated.stdout);
    let failure = isolated.result.failure.as_ref().unwrap();
    assert_eq!(failure.instruction, format!("RUN {probe}"));
    assert_eq!(failure.exit_code, Some(1));
    assert_eq!(connections.load(Ordering::SeqCst), 0);

    let host = h.run(&job(NetworkMode::Host, "host"));
    host.assert_ok();
    let reference = format!("{repo}:{}", host.result.stages[0].tag);
    assert_eq!(h.file(&reference, "/reply").as_deref(), Some("pong\n"));
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // Staged RUN: the same isolation per instruction.
    let mut staged = h.job(&repo);
    staged.network = NetworkMode::None;
    staged.stages = vec![instruction_stage(
        "staged-none",
        ParentRef::Image {
            reference: h.base.list.clone(),
        },
        &format!("RUN {probe}"),
        shell_run(&probe),
    )];
    let out = h.run(&staged);
    assert_eq!(out.exit_code, Some(1), "{}", out.stdout);
    assert_eq!(out.result.failure.as_ref().unwrap().exit_code, Some(1));
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    assert!(
        h.tags(&repo)
            .iter()
            .all(|t| !t.starts_with(&digest("staged-none")))
    );
}

/// ssh-add and the shared libraries it needs, laid out under `tools/` at their absolute
/// paths, so that `COPY tools/ /` makes a busybox image able to talk to an ssh-agent.
fn ssh_add_tree() -> Vec<(String, Vec<u8>)> {
    let ldd = std::process::Command::new("ldd")
        .arg("/usr/bin/ssh-add")
        .output()
        .unwrap();
    let mut files = vec![(
        "tools/usr/bin/ssh-add".to_owned(),
        std::fs::read("/usr/bin/ssh-add").unwrap(),
    )];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split_whitespace().find(|w| w.starts_with('/'));
        if let Some(path) = path {
            files.push((format!("tools{path}"), std::fs::read(path).unwrap()));
        }
    }
    files
}

#[test]
fn ssh_key_reaches_run_mount_type_ssh() {
    let h = Harness::new();
    let keys = h.tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("deploy");
    let made = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "kiln-deploy-key",
            "-f",
        ])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let tree = ssh_add_tree();
    let files: Vec<(&str, &[u8])> = tree
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    let commit = git.commit_executable(&files);
    let repo = h.repo("ssh");
    let probe = "(echo \"sock=$SSH_AUTH_SOCK\" && ssh-add -l) > /ssh.txt";
    let mut job = h.job(&repo);
    job.source = Some(git.source(&commit));
    job.ssh_key_paths = vec![key.display().to_string()];
    job.stages = vec![dockerfile_stage(
        "ssh",
        &format!(
            "FROM {}\nCOPY tools/ /\nRUN --mount=type=ssh {probe}\n",
            h.base.list
        ),
    )];
    let out = h.run(&job);
    out.assert_ok();
    let seen = h
        .file(&format!("{repo}:{}", out.result.stages[0].tag), "/ssh.txt")
        .unwrap();
    let mut lines = seen.lines();
    assert!(lines.next().unwrap().starts_with("sock=/"), "{seen}");
    assert!(
        lines.next().unwrap().ends_with("kiln-deploy-key (ED25519)"),
        "{seen}"
    );

    // Staged: COPY the tools, then RUN --mount=type=ssh through buildah run.
    let mut staged = h.job(&repo);
    staged.source = Some(git.source(&commit));
    staged.ssh_key_paths = vec![key.display().to_string()];
    staged.stages = vec![
        instruction_stage(
            "ssh-copy",
            ParentRef::Image {
                reference: h.base.list.clone(),
            },
            "COPY tools/ /",
            Instruction::Copy {
                sources: vec!["tools/".into()],
                dest: "/".into(),
                from: None,
                chown: None,
                chmod: None,
            },
        ),
        instruction_stage(
            "ssh-run",
            ParentRef::Previous,
            &format!("RUN --mount=type=ssh {probe}"),
            Instruction::Run {
                command: vec![probe.into()],
                prepend_shell: true,
                env: vec![],
                mounts: vec![RunMount::Ssh { target: None }],
                network: None,
            },
        ),
    ];
    let out = h.run(&staged);
    out.assert_ok();
    let seen = h
        .file(&format!("{repo}:{}", out.result.stages[1].tag), "/ssh.txt")
        .unwrap();
    let mut lines = seen.lines();
    assert_eq!(
        lines.next(),
        Some("sock=/run/buildkit/ssh_agent.0"),
        "{seen}"
    );
    assert!(
        lines.next().unwrap().ends_with("kiln-deploy-key (ED25519)"),
        "{seen}"
    );
}

#[test]
fn docker_io_mirror_resolves_from_busybox_to_the_local_registry() {
    let h = Harness::new();
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let commit = git.commit(&[("README", b"mirror\n")]);
    let repo = h.repo("mirror");
    let mut job = h.job(&repo);
    job.registry_mirrors = vec![format!("http://{}", h.registry.address())];
    job.source = Some(git.source(&commit));
    job.stages = vec![dockerfile_stage(
        "mirror",
        "FROM busybox\nRUN echo through-the-mirror > /note\n",
    )];
    let out = h.run(&job);
    out.assert_ok();
    assert!(
        out.stdout.contains("library/busybox"),
        "pulled through the mirror: {}",
        out.stdout
    );
    // The built image sits on the amd64 busybox layer pushed to the local registry.
    let (_, base) = h.manifest(&h.base.amd64);
    let (_, built) = h.manifest(&format!("{repo}:{}", out.result.stages[0].tag));
    assert_eq!(built["layers"][0]["digest"], base["layers"][0]["digest"]);

    // Staged: the parent `busybox` resolves the same way.
    let mut staged = h.job(&repo);
    staged.registry_mirrors = job.registry_mirrors.clone();
    staged.stages = vec![instruction_stage(
        "mirror-staged",
        ParentRef::Image {
            reference: "busybox".into(),
        },
        "RUN echo staged-mirror > /note",
        shell_run("echo staged-mirror > /note"),
    )];
    let out = h.run(&staged);
    out.assert_ok();
    let reference = format!("{repo}:{}", out.result.stages[0].tag);
    let (_, built) = h.manifest(&reference);
    assert_eq!(built["layers"][0]["digest"], base["layers"][0]["digest"]);
    assert_eq!(
        h.file(&reference, "/note").as_deref(),
        Some("staged-mirror\n")
    );
}

#[test]
fn failing_run_reports_stage_instruction_exit_code_and_log_tail() {
    let h = Harness::new();
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let commit = git.commit(&[("README", b"fail\n")]);
    let repo = h.repo("fail");
    let mut job = h.job(&repo);
    job.source = Some(git.source(&commit));
    job.stages = vec![dockerfile_stage(
        "fail",
        &format!(
            "FROM {}\nRUN echo about-to-fail && exit 3\nRUN echo never\n",
            h.base.list
        ),
    )];
    let out = h.run(&job);
    assert_eq!(out.exit_code, Some(1));
    assert!(out.message.len() <= 4096);
    let failure = out.result.failure.as_ref().unwrap();
    assert_eq!(failure.stage_index, 1);
    assert_eq!(failure.stage, "dockerfile");
    assert_eq!(failure.digest, digest("fail"));
    assert_eq!(failure.instruction, "RUN echo about-to-fail && exit 3");
    assert_eq!(failure.exit_code, Some(3));
    // Buildah's own last line; the RUN's own output may be cut short by Buildah 1.28's
    // chroot runner, so it is not asserted on.
    assert!(
        failure.log_tail.ends_with("exit status 3"),
        "{}",
        failure.log_tail
    );
    assert!(out.result.stages.is_empty());
    assert!(h.tags(&repo).is_empty(), "nothing published");

    // Staged: stage 1 is published (valid cache), stage 2 fails, nothing under its digest.
    let mut staged = h.job(&repo);
    staged.stages = vec![
        instruction_stage(
            "ok-env",
            ParentRef::Image {
                reference: h.base.list.clone(),
            },
            "ENV A=1",
            Instruction::Env {
                vars: vec![kv("A", "1")],
            },
        ),
        instruction_stage(
            "bad-run",
            ParentRef::Previous,
            "RUN echo $A; exit 5",
            shell_run("echo $A; exit 5"),
        ),
    ];
    let out = h.run(&staged);
    assert_eq!(out.exit_code, Some(1));
    let failure = out.result.failure.as_ref().unwrap();
    assert_eq!((failure.stage_index, failure.stage.as_str()), (2, "run"));
    assert_eq!(failure.instruction, "RUN echo $A; exit 5");
    assert_eq!(failure.exit_code, Some(5));
    assert!(
        failure.log_tail.ends_with("exit status 5"),
        "{}",
        failure.log_tail
    );
    assert_eq!(out.result.stages.len(), 1);
    assert_eq!(h.tags(&repo), vec![out.result.stages[0].tag.clone()]);

    // A long log: the termination message stays within 4,096 bytes and keeps the end.
    let noisy = "i=0; while [ $i -lt 3000 ]; do echo \"noise line $i\"; i=$((i+1)); done; exit 7";
    let mut loud = h.job(&repo);
    loud.stages = vec![instruction_stage(
        "noisy",
        ParentRef::Image {
            reference: h.base.list.clone(),
        },
        &format!("RUN {noisy}"),
        shell_run(noisy),
    )];
    let out = h.run(&loud);
    assert_eq!(out.exit_code, Some(1));
    assert!(out.message.len() <= 4096, "{}", out.message.len());
    let failure = out.result.failure.as_ref().unwrap();
    assert_eq!(failure.exit_code, Some(7));
    assert!(
        failure.log_tail.ends_with("exit status 7"),
        "{}",
        failure.log_tail
    );
    // At most 40 lines are kept: none of the first noise lines survive.
    assert!(failure.log_tail.lines().count() <= 40);
    assert!(!failure.log_tail.contains("noise line 100\n"));
}

#[test]
fn unreadable_job_exits_2_with_the_cause_in_the_termination_message() {
    let h = Harness::new();
    let out = h.run_json(r#"{"apiVersion":"kiln.dev/job/v2","stages":[]}"#);
    assert_eq!(out.exit_code, Some(2));
    let failure = out.result.failure.unwrap();
    assert_eq!(failure.instruction, "read job");
    assert!(
        failure
            .message
            .contains("unsupported apiVersion \"kiln.dev/job/v2\""),
        "{}",
        failure.message
    );
}

#[test]
fn job_from_the_environment_is_read_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let message = tmp.path().join("termination-log");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-builder"))
        .arg("--termination-log")
        .arg(&message)
        .env_remove("KILN_JOB_FILE")
        .env(
            "KILN_JOB",
            r#"{"apiVersion":"kiln.dev/job/v1","project":"p"}"#,
        )
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
    let result: kiln_crds::job::BuildResult =
        serde_json::from_str(&std::fs::read_to_string(&message).unwrap()).unwrap();
    let failure = result.failure.unwrap();
    assert!(
        failure.message.starts_with("build job KILN_JOB:"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("missing field"),
        "{}",
        failure.message
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn pushes_with_dockerconfigjson_credentials_copies_to_cache_repo_and_passes_args_and_hosts() {
    let h = Harness::new();
    let secured =
        kiln_testkit::registry::TestRegistry::start_with_basic_auth("kiln", "s3cret").unwrap();
    let auth = h.tmp.path().join("dockerconfigjson");
    std::fs::write(&auth, secured.docker_config_json()).unwrap();
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let commit = git.commit(&[("README", b"auth\n")]);
    let repo = format!("{}/shop", secured.address());
    let cache = h.repo("cache");
    let mut job = h.job(&repo);
    job.insecure_registries.push(secured.address().to_owned());
    job.registry_auth_path = Some(auth.display().to_string());
    job.cache_repos = vec![cache.clone()];
    job.build_args.insert("GREETING".into(), "hello-arg".into());
    job.add_hosts = vec!["kiln-extra-host:10.1.2.3".into()];
    job.source = Some(git.source(&commit));
    job.stages = vec![dockerfile_stage(
        "auth",
        &format!(
            "FROM {}\nARG GREETING\nRUN (echo \"$GREETING\" && grep kiln-extra-host /etc/hosts) > /seen\n",
            h.base.list
        ),
    )];
    let out = h.run(&job);
    out.assert_ok();
    let tag = &out.result.stages[0].tag;
    // The cache repo got the same tag (anonymous registry, readable without credentials).
    assert_eq!(h.tags(&cache), vec![tag.clone()]);
    let seen = h.file(&format!("{cache}:{tag}"), "/seen").unwrap();
    let mut lines = seen.lines();
    assert_eq!(lines.next(), Some("hello-arg"), "{seen}");
    let host = lines.next().unwrap();
    assert!(
        host.starts_with("10.1.2.3") && host.contains("kiln-extra-host"),
        "{seen}"
    );

    // Wrong credentials: the push fails, is reported as such, and nothing is tagged.
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            secured.address(),
            kiln_testkit::registry::base64_encode(b"kiln:wrong")
        ),
    )
    .unwrap();
    job.stages[0].digest = digest("auth-wrong");
    let out = h.run(&job);
    assert_eq!(out.exit_code, Some(1));
    let failure = out.result.failure.as_ref().unwrap();
    assert_eq!(failure.instruction, "push");
    assert!(
        failure.log_tail.contains(secured.address()),
        "{}",
        failure.log_tail
    );
}

/// Whether `needle` occurs anywhere in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn build_secrets_reach_run_mounts_and_stay_out_of_every_layer() {
    let h = Harness::new();
    // One secret from a file (a mounted Secret key in a pod), one inline value. The
    // Dockerfile compares hashes, so the values appear in no instruction text either.
    let token = "s3cr3t-token-from-a-kubernetes-secret";
    let inline = "inline-werf-yaml-value-42";
    let file = h.tmp.path().join("token");
    std::fs::write(&file, token).unwrap();
    let secrets = vec![
        kiln_crds::job::JobSecret {
            id: "token".into(),
            path: Some(file.display().to_string()),
            value: None,
        },
        kiln_crds::job::JobSecret {
            id: "inline".into(),
            path: None,
            value: Some(inline.into()),
        },
    ];
    let check = format!(
        "sha256sum /run/secrets/token | grep -q {} && sha256sum /etc/inline | grep -q {} && stat -c '%u %g %a' /etc/inline > /owner && echo ok > /proof",
        sha256_hex(token.as_bytes()),
        sha256_hex(inline.as_bytes()),
    );
    let git = GitRepo::new(&h.tmp.path().join("git"));
    let commit = git.commit(&[("README", b"context\n")]);
    let repo = h.repo("secrets");
    let assert_clean = |reference: &str| {
        assert_eq!(
            h.file(reference, "/proof").as_deref(),
            Some("ok\n"),
            "{reference}"
        );
        // uid, gid and mode as the mount asked.
        assert_eq!(
            h.file(reference, "/owner").as_deref(),
            Some("1000 1001 440\n"),
            "{reference}"
        );
        for (i, blob) in h.blobs(reference).iter().enumerate() {
            assert!(!contains(blob, token.as_bytes()), "blob {i} of {reference}");
            assert!(
                !contains(blob, inline.as_bytes()),
                "blob {i} of {reference}"
            );
        }
        let paths = h.layer_paths(reference);
        assert!(paths.iter().any(|p| p == "proof"), "{paths:?}");
        assert!(
            !paths
                .iter()
                .any(|p| p == "run/secrets/token" || p == "etc/inline"),
            "secret mount points left in a layer: {paths:?}"
        );
        paths
    };

    // Non-staged: `buildah bud --secret`. (Buildah 1.28's bud crashes on a bare
    // `required`; `required=true` works.)
    let mut job = h.job(&repo);
    job.source = Some(git.source(&commit));
    job.secrets = secrets.clone();
    job.stages = vec![dockerfile_stage(
        "secrets",
        &format!(
            "FROM {}\nRUN --mount=type=secret,id=token,required=true --mount=type=secret,id=inline,target=/etc/inline,uid=1000,gid=1001,mode=0440 {check}\n",
            h.base.list
        ),
    )];
    let out = h.run(&job);
    out.assert_ok();
    assert_clean(&format!("{repo}:{}", out.result.stages[0].tag));

    // Staged: the RUN becomes `buildah run` with the secret files bound read-only.
    let mut staged = h.job(&repo);
    staged.secrets = secrets.clone();
    staged.stages = vec![instruction_stage(
        "secrets-run",
        ParentRef::Image {
            reference: h.base.list.clone(),
        },
        "RUN --mount=type=secret,id=token ...",
        Instruction::Run {
            command: vec![check.clone()],
            prepend_shell: true,
            env: vec![],
            mounts: vec![
                RunMount::Other {
                    spec: "type=secret,id=token,required".into(),
                },
                RunMount::Other {
                    spec: "type=secret,id=inline,target=/etc/inline,uid=1000,gid=1001,mode=0440"
                        .into(),
                },
            ],
            network: None,
        },
    )];
    let out = h.run(&staged);
    out.assert_ok();
    let paths = assert_clean(&format!("{repo}:{}", out.result.stages[0].tag));
    // `buildah bud` leaves an empty /run/secrets behind; the staged RUN leaves nothing
    // of its mounts (busybox has no /run).
    assert!(
        !paths.iter().any(|p| p.starts_with("run")),
        "mount points left by the staged RUN: {paths:?}"
    );

    // Buildah 1.28's bud crashes on a bare `required`; the failure says what to write.
    let mut bare = h.job(&repo);
    bare.source = Some(git.source(&commit));
    bare.secrets = staged.secrets.clone();
    bare.stages = vec![dockerfile_stage(
        "secrets-bare-required",
        &format!(
            "FROM {}\nRUN --mount=type=secret,id=token,required true\n",
            h.base.list
        ),
    )];
    let out = h.run(&bare);
    let failure = out.result.failure.expect("the crash fails the stage");
    assert!(
        failure.message.contains("write `required=true`"),
        "{}",
        failure.message
    );

    // A required secret the job lacks fails the stage, naming the id.
    let mut missing = h.job(&repo);
    missing.stages = vec![instruction_stage(
        "secrets-missing",
        ParentRef::Image {
            reference: h.base.list.clone(),
        },
        "RUN --mount=type=secret,id=npm,required true",
        Instruction::Run {
            command: vec!["true".into()],
            prepend_shell: true,
            env: vec![],
            mounts: vec![RunMount::Other {
                spec: "type=secret,id=npm,required".into(),
            }],
            network: None,
        },
    )];
    let out = h.run(&missing);
    assert!(!out.result.ok);
    let failure = out.result.failure.unwrap();
    assert!(
        failure.message.contains("secret \"npm\" is required"),
        "{}",
        failure.message
    );
}
