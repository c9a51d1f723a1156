//! Harness for builder integration tests: a real registry with offline busybox base
//! images, local git repositories as sources, and `kiln-builder` run as a process with its
//! own Buildah store — the way a builder pod runs it.

#![allow(dead_code)]

use kiln_testkit::git_server::git_ok as git;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_crds::job::{
    BuildJob, BuildResult, Instruction, JOB_API_VERSION, KeyValue, NetworkMode, ParentRef, Source,
    StageBuild, StageJob,
};
use kiln_testkit::base_images::{BaseImages, push_busybox};
use kiln_testkit::registry::TestRegistry;

/// A registry with base images, plus a scratch directory for stores and repositories.
pub struct Harness {
    pub registry: TestRegistry,
    pub base: BaseImages,
    pub tmp: tempfile::TempDir,
}

/// What one `kiln-builder` run produced.
#[derive(Debug)]
pub struct Outcome {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The termination message, raw.
    pub message: String,
    pub result: BuildResult,
    /// Wall-clock ms before the process started and after it ended.
    pub started_ms: u64,
    pub ended_ms: u64,
}

impl Harness {
    pub fn new() -> Self {
        let registry = TestRegistry::start().expect("registry starts");
        // `library/busybox` so that the registry can also stand in as a docker.io mirror.
        let base = push_busybox(registry.address(), "library/busybox").expect("base images");
        let tmp = tempfile::Builder::new()
            .prefix("kiln-builder-test-")
            .tempdir()
            .unwrap();
        Harness {
            registry,
            base,
            tmp,
        }
    }

    /// The stages storage for a test.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.address())
    }

    /// A job skeleton: project `kiln-test`, plain-HTTP registry, no stages.
    pub fn job(&self, repo: &str) -> BuildJob {
        BuildJob {
            api_version: JOB_API_VERSION.into(),
            project: "kiln-test".into(),
            image: "app".into(),
            commit: None,
            source: None,
            context_dir: String::new(),
            dockerfile_path: "Dockerfile".into(),
            target: None,
            build_args: BTreeMap::new(),
            add_hosts: vec![],
            platform: None,
            network: NetworkMode::Default,
            ssh_key_paths: vec![],
            secrets: vec![],
            registry_mirrors: vec![],
            insecure_registries: vec![self.registry.address().to_owned()],
            registry_auth_path: None,
            repo: repo.to_owned(),
            cache_repos: vec![],
            base_images: vec![],
            stages: vec![],
        }
    }

    /// Runs `kiln-builder` on `job` with a fresh Buildah store under this harness.
    pub fn run(&self, job: &BuildJob) -> Outcome {
        self.run_json(&job.to_json())
    }

    pub fn run_json(&self, job_json: &str) -> Outcome {
        self.run_json_with_driver(job_json, "vfs")
    }

    /// [`Harness::run`] with another Buildah storage driver (`overlay`, `fuse-overlayfs`).
    pub fn run_with_driver(&self, job: &BuildJob, driver: &str) -> Outcome {
        self.run_json_with_driver(&job.to_json(), driver)
    }

    fn run_json_with_driver(&self, job_json: &str, driver: &str) -> Outcome {
        let run = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(self.tmp.path())
            .unwrap();
        let job_file = run.path().join("job.json");
        std::fs::write(&job_file, job_json).unwrap();
        let message_file = run.path().join("termination-log");
        let started_ms = now_ms();
        let out = Command::new(env!("CARGO_BIN_EXE_kiln-builder"))
            .arg("--job-file")
            .arg(&job_file)
            .arg("--termination-log")
            .arg(&message_file)
            .arg("--root")
            .arg(run.path().join("root"))
            .arg("--runroot")
            .arg(run.path().join("runroot"))
            .arg("--storage-driver")
            .arg(driver)
            .arg("--work-dir")
            .arg(run.path())
            .env_remove("KILN_JOB")
            .output()
            .expect("kiln-builder runs");
        let ended_ms = now_ms();
        let message = std::fs::read_to_string(&message_file).unwrap_or_default();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let result = serde_json::from_str(&message).unwrap_or_else(|e| {
            panic!("termination message is not a BuildResult ({e}): {message}\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
        Outcome {
            exit_code: out.status.code(),
            stdout,
            stderr,
            message,
            result,
            started_ms,
            ended_ms,
        }
    }

    /// `skopeo inspect --config` of a pushed image.
    pub fn config(&self, reference: &str) -> serde_json::Value {
        json(&skopeo(&[
            "inspect",
            "--config",
            &format!("docker://{reference}"),
        ]))
    }

    /// `skopeo inspect --raw` of a pushed image (its manifest).
    pub fn manifest(&self, reference: &str) -> (String, serde_json::Value) {
        let raw = skopeo(&["inspect", "--raw", &format!("docker://{reference}")]);
        let value = json(&raw);
        (raw, value)
    }

    /// The content of file `path` in a pushed image (from its topmost layer holding it), or
    /// `None`. Reads the layers themselves: Buildah 1.28's chroot isolation now and then
    /// drops the last output lines of a RUN from its log, so tests check what a RUN wrote
    /// into the image rather than what it printed.
    pub fn file(&self, reference: &str, path: &str) -> Option<String> {
        let dir = tempfile::tempdir_in(self.tmp.path()).unwrap();
        let copy = Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("dir:{}", dir.path().display()))
            .output()
            .unwrap();
        assert!(
            copy.status.success(),
            "skopeo copy {reference}: {}",
            String::from_utf8_lossy(&copy.stderr)
        );
        let manifest = json(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap());
        let wanted = path.trim_start_matches('/');
        for layer in manifest["layers"].as_array().unwrap().iter().rev() {
            let digest = layer["digest"].as_str().unwrap();
            let blob = dir.path().join(digest.trim_start_matches("sha256:"));
            let list = Command::new("tar").arg("-tzf").arg(&blob).output().unwrap();
            let listing = String::from_utf8_lossy(&list.stdout);
            if let Some(entry) = listing
                .lines()
                .find(|e| e.trim_start_matches("./") == wanted)
            {
                let out = Command::new("tar")
                    .arg("-xzOf")
                    .arg(&blob)
                    .arg(entry)
                    .output()
                    .unwrap();
                return Some(String::from_utf8(out.stdout).unwrap());
            }
        }
        None
    }

    /// Every blob of a pushed image as bytes: the config, then each layer as its
    /// uncompressed tar (entry headers and file contents), bottom layer first. For
    /// checking that some text is in no part of an image.
    pub fn blobs(&self, reference: &str) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir_in(self.tmp.path()).unwrap();
        let copy = Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("dir:{}", dir.path().display()))
            .output()
            .unwrap();
        assert!(
            copy.status.success(),
            "skopeo copy {reference}: {}",
            String::from_utf8_lossy(&copy.stderr)
        );
        let manifest = json(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap());
        let blob = |digest: &str| dir.path().join(digest.trim_start_matches("sha256:"));
        let mut blobs =
            vec![std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()];
        for layer in manifest["layers"].as_array().unwrap() {
            let out = Command::new("gzip")
                .arg("-dc")
                .arg(blob(layer["digest"].as_str().unwrap()))
                .output()
                .unwrap();
            assert!(out.status.success(), "gunzip layer of {reference}");
            blobs.push(out.stdout);
        }
        blobs
    }

    /// Paths of every entry in every layer of a pushed image, without `./`.
    pub fn layer_paths(&self, reference: &str) -> Vec<String> {
        let mut paths = Vec::new();
        for tar in self.blobs(reference).into_iter().skip(1) {
            let dir = tempfile::tempdir_in(self.tmp.path()).unwrap();
            let file = dir.path().join("layer.tar");
            std::fs::write(&file, tar).unwrap();
            let out = Command::new("tar").arg("-tf").arg(&file).output().unwrap();
            paths.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned()),
            );
        }
        paths
    }

    /// Tags of a repository, sorted; empty when the repository does not exist.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let out = Command::new("skopeo")
            .args([
                "list-tags",
                "--tls-verify=false",
                &format!("docker://{repo}"),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && (stderr.contains("name unknown") || stderr.contains("404")) {
            return vec![];
        }
        assert!(out.status.success(), "skopeo list-tags {repo}: {stderr}");
        let out = String::from_utf8(out.stdout).unwrap();
        let mut tags: Vec<String> = json(&out)["Tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }
}

impl Outcome {
    /// Panics with the whole log unless the build succeeded.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.exit_code == Some(0) && self.result.ok,
            "build failed (exit {:?}): {}\nstdout:\n{}\nstderr:\n{}",
            self.exit_code,
            self.message,
            self.stdout,
            self.stderr
        );
        self
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(&args[..1])
        .arg("--tls-verify=false")
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A local git repository served as a bare repo over `file://`.
pub struct GitRepo {
    work: PathBuf,
    bare: PathBuf,
}

impl GitRepo {
    pub fn new(dir: &Path) -> Self {
        let work = dir.join("work");
        let bare = dir.join("bare.git");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["config", "user.email", "test@kiln.invalid"]);
        git(&work, &["config", "user.name", "kiln test"]);
        git(dir, &["init", "-q", "--bare", bare.to_str().unwrap()]);
        GitRepo { work, bare }
    }

    /// Writes `files` (path, content), commits, pushes; returns the commit.
    pub fn commit(&self, files: &[(&str, &[u8])]) -> String {
        self.commit_mode(files, 0o644)
    }

    /// Like [`GitRepo::commit`] with every file executable (mode 755 in git).
    pub fn commit_executable(&self, files: &[(&str, &[u8])]) -> String {
        self.commit_mode(files, 0o755)
    }

    fn commit_mode(&self, files: &[(&str, &[u8])], mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        for (path, content) in files {
            let path = self.work.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", "change"]);
        git(
            &self.work,
            &["push", "-q", self.bare.to_str().unwrap(), "main"],
        );
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_owned()
    }

    pub fn source(&self, commit: &str) -> Source {
        Source {
            url: format!("file://{}", self.bare.display()),
            commit: commit.to_owned(),
            auth: None,
        }
    }
}

/// A stage digest for tests: 56 hex chars derived from a label (the operator's job in real
/// life; the builder only carries it).
pub fn digest(label: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut state: u64 = 0xcbf29ce484222325;
    while out.len() < 56 {
        for b in label.bytes() {
            state = (state ^ b as u64).wrapping_mul(0x100000001b3);
        }
        let _ = write!(out, "{state:016x}");
    }
    out.truncate(56);
    out
}

pub fn dockerfile_stage(name: &str, dockerfile: &str) -> StageJob {
    StageJob {
        name: "dockerfile".into(),
        digest: digest(name),
        content_digest: digest(&format!("{name}-content")),
        parent: ParentRef::None,
        build: StageBuild::Dockerfile {
            dockerfile: Some(dockerfile.to_owned()),
        },
        labels: BTreeMap::new(),
    }
}

pub fn instruction_stage(
    key: &str,
    parent: ParentRef,
    text: &str,
    instruction: Instruction,
) -> StageJob {
    StageJob {
        name: text.split_whitespace().next().unwrap().to_lowercase(),
        digest: digest(key),
        content_digest: digest(&format!("{key}-content")),
        parent,
        build: StageBuild::Instruction {
            text: text.to_owned(),
            instruction,
        },
        labels: BTreeMap::new(),
    }
}

pub fn shell_run(command: &str) -> Instruction {
    Instruction::Run {
        command: vec![command.to_owned()],
        prepend_shell: true,
        env: vec![],
        mounts: vec![],
        network: None,
    }
}

pub fn kv(name: &str, value: &str) -> KeyValue {
    KeyValue {
        name: name.into(),
        value: value.into(),
    }
}
