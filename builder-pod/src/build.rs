//! Runs one build job: prepares registries, source and ssh-agent, then builds and publishes
//! each stage in order, stopping at the first failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backon::{BlockingRetryable, ExponentialBuilder};

use kiln_crds::job::{
    BuildJob, BuildResult, NetworkMode, ParentRef, StageBuild, StageFailure, StageJob, StageResult,
};

use crate::buildah::{Buildah, Storage};
use crate::labels::{now_millis, stage_id_of_reference, stage_labels, stage_tag};
use crate::registries::{Mirror, registries_conf};
use crate::runner::{CommandError, Runner};
use crate::secrets::{SecretFiles, new_paths, remove_new_paths};
use crate::ssh_agent::SshAgent;
use crate::staged::{ContainerState, Step, StepContext, plan_step};

/// How the builder runs, independent of the job (from flags and environment).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The buildah binary.
    pub buildah: PathBuf,
    /// The skopeo binary, used to read a pushed manifest back (size, existence).
    pub skopeo: PathBuf,
    /// Buildah storage.
    pub storage: Storage,
    /// Directory for the checkout and generated files (a fresh subdirectory is used).
    pub work_dir: PathBuf,
    /// Lines of command output kept for a failure report.
    pub tail_lines: usize,
}

/// Why a stage (or the preparation before the first stage) failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The instruction cannot be applied.
    #[error(transparent)]
    Step(#[from] crate::staged::StepError),
    /// The source could not be fetched (boxed: the largest variant by far).
    #[error(transparent)]
    Source(Box<crate::source::SourceError>),
    /// The ssh-agent could not be prepared.
    #[error(transparent)]
    Ssh(Box<crate::ssh_agent::SshAgentError>),
    /// The job's build secrets could not be made available.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// A registry mirror entry is malformed.
    #[error(transparent)]
    Mirror(#[from] crate::registries::MirrorError),
    /// A file the build needs could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A command succeeded but its output was not what Buildah documents.
    #[error("{0}")]
    Output(String),
}

impl From<crate::source::SourceError> for StageError {
    fn from(error: crate::source::SourceError) -> Self {
        StageError::Source(Box::new(error))
    }
}

impl From<crate::ssh_agent::SshAgentError> for StageError {
    fn from(error: crate::ssh_agent::SshAgentError) -> Self {
        StageError::Ssh(Box::new(error))
    }
}

impl StageError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StageError {
        let path = path.display().to_string();
        move |source| StageError::Io { what, path, source }
    }
}

/// One failure with the instruction it happened in.
struct Failed {
    instruction: String,
    error: StageError,
}

/// Runs `job` and returns the result to report. Never panics on bad input; every failure
/// ends up in [`BuildResult::failure`].
pub fn run_job(job: &BuildJob, settings: &Settings) -> BuildResult {
    let mut result = BuildResult::default();
    let work = match tempfile::Builder::new()
        .prefix("kiln-builder-")
        .tempdir_in(&settings.work_dir)
    {
        Ok(work) => work,
        Err(source) => {
            result.failure = Some(failure(
                0,
                None,
                "prepare".into(),
                &StageError::Io {
                    what: "work directory",
                    path: settings.work_dir.display().to_string(),
                    source,
                },
            ));
            return result;
        }
    };
    let prep = Runner::new("[prepare] ", settings.tail_lines);
    let env = match Environment::prepare(job, settings, work.path(), &prep) {
        Ok(env) => env,
        Err(Failed { instruction, error }) => {
            result.failure = Some(failure(0, None, instruction, &error));
            return result;
        }
    };
    let total = job.stages.len();
    let mut previous: Option<Published> = None;
    for (index, stage) in job.stages.iter().enumerate() {
        let runner = Runner::new(
            format!("[{}/{total} {}] ", index + 1, stage.name),
            settings.tail_lines,
        );
        let started = Instant::now();
        runner.say(&format!("building stage {}", stage.digest));
        match env.build_and_publish(stage, index, previous.as_ref(), &runner) {
            Ok(published) => {
                let seconds = started.elapsed().as_secs_f64();
                runner.say(&format!(
                    "published {}:{} in {seconds:.2}s",
                    job.repo, published.tag
                ));
                result.stages.push(StageResult {
                    tag: published.tag.clone(),
                    image_id: Some(published.image_id.clone()),
                    manifest_digest: Some(published.manifest_digest.clone()),
                    size: published.size,
                    build_seconds: Some((seconds * 1000.0).round() / 1000.0),
                });
                previous = Some(published);
            }
            Err(Failed { instruction, error }) => {
                runner.say(&format!("FAILED at {instruction}: {error}"));
                result.failure = Some(failure(index + 1, Some(stage), instruction, &error));
                return result;
            }
        }
    }
    result.ok = true;
    result
}

fn failure(
    stage_index: usize,
    stage: Option<&StageJob>,
    instruction: String,
    error: &StageError,
) -> StageFailure {
    let (exit_code, log_tail) = match error {
        StageError::Command(command) => (command.exit_code(), command.tail().to_owned()),
        StageError::Source(boxed) => match boxed.as_ref() {
            crate::source::SourceError::Git { source, .. } => {
                (source.exit_code(), source.tail().to_owned())
            }
            _ => (None, String::new()),
        },
        _ => (None, String::new()),
    };
    // `buildah bud` exits 1 whatever the RUN returned; the RUN's own status is in its
    // last error line ("error building at STEP "RUN …": exit status 3").
    let (instruction, exit_code) = match bud_failure(&log_tail) {
        Some((step, code)) if instruction == BUD => (step, code.or(exit_code)),
        _ => (instruction, exit_code),
    };
    StageFailure {
        stage_index,
        stage: stage.map(|s| s.name.clone()).unwrap_or_default(),
        digest: stage.map(|s| s.digest.clone()).unwrap_or_default(),
        instruction,
        exit_code,
        message: match crate::secrets::bud_crash_hint(&log_tail) {
            Some(hint) => format!("{error}: {hint}"),
            None => error.to_string(),
        },
        log_tail,
    }
}

const BUD: &str = "buildah bud";

/// Extra attempts of a stage push the registry refused (1 s, 2 s apart).
const PUSH_RETRIES: usize = 2;

/// The failing instruction and its exit status from `buildah bud` output: the last
/// `building at STEP "INSTRUCTION": exit status N` line (Buildah 1.28 prints it after
/// `Error: `), else the last `STEP n/m: INSTRUCTION` line.
pub fn bud_failure(tail: &str) -> Option<(String, Option<i32>)> {
    const MARK: &str = "building at STEP \"";
    let exit_status = |line: &str| {
        let at = line.rfind("exit status ")?;
        let digits: String = line[at + 12..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    for line in tail.lines().rev() {
        if let Some(at) = line.find(MARK) {
            let rest = &line[at + MARK.len()..];
            // The instruction may itself contain `": `; the status follows the last one.
            if let Some(end) = rest.rfind("\": ") {
                return Some((rest[..end].to_owned(), exit_status(&rest[end..])));
            }
        }
    }
    let step = tail.lines().rev().find_map(|line| {
        let rest = line.strip_prefix("STEP ")?;
        let (_, instruction) = rest.split_once(": ")?;
        Some(instruction.to_owned())
    })?;
    let code = tail.lines().rev().find_map(exit_status);
    Some((step, code))
}

/// A stage as published.
#[derive(Debug, Clone)]
struct Published {
    tag: String,
    image_id: String,
    manifest_digest: String,
    size: Option<u64>,
}

/// What every stage of one job shares.
struct Environment<'a> {
    job: &'a BuildJob,
    settings: &'a Settings,
    buildah: Buildah,
    work: PathBuf,
    checkout: Option<PathBuf>,
    context: Option<PathBuf>,
    ignore_file: Option<PathBuf>,
    agent: Option<SshAgent>,
    secrets: SecretFiles,
    isolated: bool,
}

impl<'a> Environment<'a> {
    fn prepare(
        job: &'a BuildJob,
        settings: &'a Settings,
        work: &Path,
        runner: &Runner,
    ) -> Result<Self, Failed> {
        let at = |instruction: &str| {
            let instruction = instruction.to_owned();
            move |error: StageError| Failed { instruction, error }
        };
        let registries = (|| {
            let mirrors = job
                .registry_mirrors
                .iter()
                .map(|m| Mirror::parse(m))
                .collect::<Result<Vec<_>, _>>()?;
            let path = work.join("registries.conf");
            std::fs::write(&path, registries_conf(&mirrors, &job.insecure_registries))
                .map_err(StageError::io("registries.conf", &path))?;
            Ok(path)
        })()
        .map_err(at("configure registries"))?;
        let mut buildah = Buildah::new(&settings.buildah, settings.storage.clone())
            .with_registries_conf(registries);
        if let Some(auth) = &job.registry_auth_path {
            let path = Path::new(auth);
            std::fs::metadata(path)
                .map_err(StageError::io("registry auth file", path))
                .map_err(at("configure registries"))?;
            buildah = buildah.with_auth_file(path);
        }
        let (checkout, context, ignore_file) = match (&job.source, job.needs_context()) {
            (Some(source), true) => {
                let checkout = work.join("source");
                crate::source::fetch(source, &checkout, work, runner)
                    .map_err(StageError::from)
                    .map_err(at("fetch source"))?;
                let context = checkout.join(&job.context_dir);
                if !context.is_dir() {
                    return Err(Failed {
                        instruction: "fetch source".into(),
                        error: StageError::Output(format!(
                            "context directory {:?} does not exist at commit {}",
                            job.context_dir, source.commit
                        )),
                    });
                }
                let ignore = context.join(".dockerignore");
                let ignore = ignore.is_file().then_some(ignore);
                (Some(checkout), Some(context), ignore)
            }
            _ => (None, None, None),
        };
        let agent = if job.ssh_key_paths.is_empty() {
            None
        } else {
            let dir = work.join("ssh");
            std::fs::create_dir_all(&dir)
                .map_err(StageError::io("ssh directory", &dir))
                .map_err(at("start ssh-agent"))?;
            Some(
                SshAgent::start(&dir, &job.ssh_key_paths, runner)
                    .map_err(StageError::from)
                    .map_err(at("start ssh-agent"))?,
            )
        };
        let secrets = SecretFiles::prepare(&job.secrets, &work.join("secrets"))
            .map_err(StageError::from)
            .map_err(at("prepare build secrets"))?;
        let isolated = job.network == NetworkMode::None;
        let env = Environment {
            job,
            settings,
            buildah,
            work: work.to_owned(),
            checkout,
            context,
            ignore_file,
            agent,
            secrets,
            isolated,
        };
        if isolated {
            // Steps run without network; everything they read must be in the store first.
            for image in job.base_images.iter().filter(|i| *i != "scratch") {
                let mut args = vec!["pull".to_owned(), "--quiet".to_owned()];
                args.extend(env.platform_args());
                args.push(image.clone());
                runner
                    .run("buildah pull", &mut env.buildah.command(&args))
                    .map_err(StageError::from)
                    .map_err(at(&format!("pull {image}")))?;
            }
        }
        Ok(env)
    }

    fn platform_args(&self) -> Vec<String> {
        match &self.job.platform {
            Some(platform) => vec!["--platform".to_owned(), platform.clone()],
            None => vec![],
        }
    }

    fn build_and_publish(
        &self,
        stage: &StageJob,
        index: usize,
        previous: Option<&Published>,
        runner: &Runner,
    ) -> Result<Published, Failed> {
        let image_id = match &stage.build {
            StageBuild::Dockerfile { dockerfile } => {
                self.build_dockerfile(stage, index, dockerfile.as_deref(), runner)?
            }
            StageBuild::From => self.build_staged(stage, index, &[], previous, runner)?,
            StageBuild::Instruction { text, instruction } => {
                self.build_staged(stage, index, &[(text, instruction)], previous, runner)?
            }
            StageBuild::Instructions { steps } => {
                let steps: Vec<_> = steps.iter().map(|s| (&s.text, &s.instruction)).collect();
                self.build_staged(stage, index, &steps, previous, runner)?
            }
        };
        self.publish(stage, index, &image_id, runner)
            .map_err(|error| Failed {
                instruction: "push".into(),
                error,
            })
    }

    /// Non-staged: the whole Dockerfile with `buildah bud`.
    fn build_dockerfile(
        &self,
        stage: &StageJob,
        index: usize,
        text: Option<&str>,
        runner: &Runner,
    ) -> Result<String, Failed> {
        let at = |error| Failed {
            instruction: BUD.into(),
            error,
        };
        let context = self
            .context
            .as_deref()
            .ok_or_else(|| at(StageError::Output("no build context".into())))?;
        let dockerfile = match text {
            Some(text) => {
                let path = self.work.join(format!("Dockerfile.{}", index + 1));
                std::fs::write(&path, text)
                    .map_err(StageError::io("Dockerfile", &path))
                    .map_err(at)?;
                path
            }
            None => self
                .checkout
                .as_deref()
                .unwrap_or(context)
                .join(&self.job.dockerfile_path),
        };
        let iidfile = self.work.join(format!("iid.{}", index + 1));
        let mut args: Vec<String> = vec![
            "bud".into(),
            "--format".into(),
            "docker".into(),
            "--iidfile".into(),
            iidfile.display().to_string(),
            "-f".into(),
            dockerfile.display().to_string(),
        ];
        args.extend(self.platform_args());
        if let Some(target) = &self.job.target {
            args.extend(["--target".into(), target.clone()]);
        }
        for (name, value) in &self.job.build_args {
            args.extend(["--build-arg".into(), format!("{name}={value}")]);
        }
        for host in &self.job.add_hosts {
            args.extend(["--add-host".into(), host.clone()]);
        }
        for (name, value) in stage_labels(self.job, stage, None, None) {
            args.extend(["--label".into(), format!("{name}={value}")]);
        }
        if self.agent.is_some() {
            args.extend(["--ssh".into(), "default".into()]);
        }
        args.extend(self.secrets.bud_flags());
        if self.isolated {
            args.push("--pull=never".into());
        }
        args.push(context.display().to_string());
        let mut command = if self.isolated {
            self.buildah.command_isolated(&args)
        } else {
            self.buildah.command(&args)
        };
        if let Some(agent) = &self.agent {
            command.env("SSH_AUTH_SOCK", agent.socket());
        }
        runner
            .run(BUD, &mut command)
            .map_err(StageError::from)
            .map_err(at)?;
        read_id(&iidfile).map_err(at)
    }

    /// Staged: a working container from the parent, one instruction (or none for a v2
    /// `FROM` stage), the labels, `buildah commit`.
    fn build_staged(
        &self,
        stage: &StageJob,
        index: usize,
        steps: &[(&String, &kiln_crds::job::Instruction)],
        previous: Option<&Published>,
        runner: &Runner,
    ) -> Result<String, Failed> {
        let text = steps
            .first()
            .map(|(text, _)| (*text).clone())
            .unwrap_or_else(|| "FROM".to_owned());
        let at = |instruction: &str| {
            let instruction = instruction.to_owned();
            move |error: StageError| Failed { instruction, error }
        };
        let (from, parent_stage_id, pull) = match &stage.parent {
            ParentRef::Previous => {
                let previous = previous.ok_or_else(|| {
                    at(&text)(StageError::Output(
                        "parent `Previous` but no stage was built before".into(),
                    ))
                })?;
                (
                    previous.image_id.clone(),
                    Some(previous.tag.clone()),
                    "never",
                )
            }
            ParentRef::Stage { reference } => (
                reference.clone(),
                stage_id_of_reference(reference).map(str::to_owned),
                "missing",
            ),
            ParentRef::Image { reference } => (reference.clone(), None, "missing"),
            ParentRef::None => {
                return Err(at(&text)(StageError::Output(
                    "a staged stage needs a parent".into(),
                )));
            }
        };
        let mut args: Vec<String> = vec![
            "from".into(),
            "--quiet".into(),
            "--format".into(),
            "docker".into(),
            format!("--pull={}", if from == "scratch" { "never" } else { pull }),
        ];
        if from != "scratch" {
            args.extend(self.platform_args());
        }
        for host in &self.job.add_hosts {
            args.extend(["--add-host".into(), host.clone()]);
        }
        args.push(from.clone());
        let out = runner
            .run("buildah from", &mut self.buildah.command(&args))
            .map_err(StageError::from)
            .map_err(at(&format!("FROM {from}")))?;
        let container = out
            .lines()
            .last()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                at(&text)(StageError::Output(
                    "buildah from printed no container name".into(),
                ))
            })?
            .to_owned();
        let guard = ContainerGuard {
            buildah: &self.buildah,
            container: container.clone(),
            committed: false,
        };
        let (mut state, parent_image_id) = self.inspect(&container).map_err(at(&text))?;
        for (k, &(text, instruction)) in steps.iter().enumerate() {
            if k > 0 {
                // An earlier step of the stage may have changed the shell or working directory.
                state = self.inspect(&container).map_err(at(text))?.0;
            }
            let ctx = StepContext {
                network: self.job.network,
                context_dir: self.context.as_deref(),
                ignore_file: self.ignore_file.as_deref(),
                ssh_socket: self.agent.as_ref().map(|a| a.socket()),
                secrets: &self.secrets,
                state: &state,
            };
            let step = plan_step(instruction, &ctx)
                .map_err(StageError::from)
                .map_err(at(text))?;
            runner.say(text);
            self.apply(&container, step, runner)
                .map_err(StageError::from)
                .map_err(at(text))?;
        }
        let labels = stage_labels(
            self.job,
            stage,
            parent_stage_id.as_deref(),
            parent_stage_id.as_ref().and(parent_image_id.as_deref()),
        );
        let mut config: Vec<String> = vec!["config".into()];
        for (name, value) in labels {
            config.extend(["--label".into(), format!("{name}={value}")]);
        }
        config.push(container.clone());
        runner
            .run("buildah config", &mut self.buildah.command(&config))
            .map_err(StageError::from)
            .map_err(at("set labels"))?;
        let iidfile = self.work.join(format!("iid.{}", index + 1));
        let commit = [
            "commit".to_owned(),
            "--quiet".into(),
            "--format".into(),
            "docker".into(),
            "--rm".into(),
            "--iidfile".into(),
            iidfile.display().to_string(),
            container.clone(),
        ];
        runner
            .run("buildah commit", &mut self.buildah.command(commit))
            .map_err(StageError::from)
            .map_err(at("commit"))?;
        guard.committed();
        read_id(&iidfile).map_err(at("commit"))
    }

    /// The container's shell and working directory, and the ID of the image it came from.
    fn inspect(&self, container: &str) -> Result<(ContainerState, Option<String>), StageError> {
        let out = Runner::quiet(self.settings.tail_lines).run(
            "buildah inspect",
            &mut self
                .buildah
                .command(["inspect", "--type", "container", container]),
        );
        // Inspect output is large JSON; don't echo it into the stage log.
        let out = out?;
        let value: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| StageError::Output(format!("buildah inspect {container}: {e}")))?;
        let config = &value["Docker"]["config"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let state = ContainerState {
            shell: strings(&config["Shell"]),
            workdir: config["WorkingDir"].as_str().unwrap_or_default().to_owned(),
        };
        let image_id = value["FromImageID"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(|id| format!("sha256:{}", id.trim_start_matches("sha256:")));
        Ok((state, image_id))
    }

    fn apply(&self, container: &str, step: Step, runner: &Runner) -> Result<(), CommandError> {
        match step {
            Step::Run {
                flags,
                command,
                isolated,
                secret_targets,
            } => {
                let mut args = vec!["run".to_owned()];
                args.extend(flags);
                args.push(container.to_owned());
                args.push("--".into());
                args.extend(command);
                let mut cmd = if isolated {
                    self.buildah.command_isolated(&args)
                } else {
                    self.buildah.command(&args)
                };
                if secret_targets.is_empty() {
                    return runner.run("buildah run", &mut cmd).map(drop);
                }
                // Buildah creates the mount points of the secret binds in the container
                // and leaves them there; remove the ones the RUN's mounts created.
                let rootfs = runner.run(
                    "buildah mount",
                    &mut self.buildah.command(["mount", container]),
                )?;
                let rootfs = PathBuf::from(rootfs.lines().last().unwrap_or_default().trim());
                // Never resolve container paths against our own working directory.
                let created: Vec<PathBuf> = if rootfs.is_absolute() && rootfs.is_dir() {
                    secret_targets
                        .iter()
                        .flat_map(|target| new_paths(&rootfs, target))
                        .collect()
                } else {
                    Vec::new()
                };
                let ran = runner.run("buildah run", &mut cmd).map(drop);
                remove_new_paths(&created);
                runner
                    .run(
                        "buildah umount",
                        &mut self.buildah.command(["umount", container]),
                    )
                    .map(drop)?;
                ran
            }
            Step::Copy {
                add,
                flags,
                sources,
                dest,
            } => {
                let verb = if add { "add" } else { "copy" };
                let mut args = vec![verb.to_owned(), "--quiet".into()];
                args.extend(flags);
                args.push(container.to_owned());
                args.extend(sources);
                args.push(dest);
                runner
                    .run(&format!("buildah {verb}"), &mut self.buildah.command(&args))
                    .map(drop)
            }
            Step::Config { flags } => {
                let mut args = vec!["config".to_owned()];
                args.extend(flags);
                args.push(container.to_owned());
                runner
                    .run("buildah config", &mut self.buildah.command(&args))
                    .map(drop)
            }
        }
    }

    /// Tags the image `REPO:DIGEST-TIMESTAMP_MILLISEC` with the timestamp taken now (werf
    /// takes it at publish time) and pushes it; a push either completes with the manifest
    /// (the tag appears) or leaves only unreferenced blobs — never a half image under the
    /// tag. Then reads the manifest back for the size and copies to cache repos.
    fn publish(
        &self,
        stage: &StageJob,
        index: usize,
        image_id: &str,
        runner: &Runner,
    ) -> Result<Published, StageError> {
        let tag = stage_tag(&stage.digest, now_millis());
        let reference = format!("{}:{tag}", self.job.repo);
        let digestfile = self.work.join(format!("digest.{}", index + 1));
        let push = || {
            runner.run(
                "buildah push",
                &mut self.buildah.command([
                    "push",
                    "--quiet",
                    "--digestfile",
                    &digestfile.display().to_string(),
                    image_id,
                    &format!("docker://{reference}"),
                ]),
            )
        };
        // Buildah retries network errors itself, but not a registry's refusal of the
        // manifest: registries answer "blob unknown" / "digest invalid" when two pods
        // push the same layer into one repository at the same moment (the layers of two
        // platforms' COPY stages are often byte-identical). Pushing again is safe: the
        // tag appears only with a complete manifest.
        push.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_times(PUSH_RETRIES),
        )
        .sleep(std::thread::sleep)
        .notify(|error, delay| {
            runner.say(&format!(
                "buildah push of {reference} failed, pushing again in {delay:?}: {error}"
            ))
        })
        .call()?;
        let manifest_digest = read_id(&digestfile)?;
        let size = match self.pushed_size(&reference) {
            Ok(size) => Some(size),
            Err(error) => {
                runner.say(&format!("warning: reading {reference} back: {error}"));
                None
            }
        };
        for cache in &self.job.cache_repos {
            let copy = format!("docker://{cache}:{tag}");
            if let Err(error) = runner.run(
                "buildah push (cache repo)",
                &mut self
                    .buildah
                    .command(["push", "--quiet", image_id, copy.as_str()]),
            ) {
                runner.say(&format!("warning: copy to cache repo {cache}: {error}"));
            }
        }
        Ok(Published {
            tag,
            image_id: image_id.to_owned(),
            manifest_digest,
            size,
        })
    }

    /// Config plus layer sizes of the pushed manifest, read back from the registry.
    fn pushed_size(&self, reference: &str) -> Result<u64, StageError> {
        let mut command = std::process::Command::new(&self.settings.skopeo);
        command.arg("inspect").arg("--raw");
        // skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF; pass the file explicitly.
        if let Some(conf) = self.buildah.registries_conf() {
            command.arg("--registries-conf").arg(conf);
        }
        if let Some(auth) = self.buildah.auth_file() {
            command.arg("--authfile").arg(auth);
        }
        command.arg(format!("docker://{reference}"));
        let raw = Runner::quiet(self.settings.tail_lines).run("skopeo inspect", &mut command)?;
        manifest_size(&raw).ok_or_else(|| {
            StageError::Output(format!(
                "manifest of {reference} has no config/layers sizes"
            ))
        })
    }
}

/// Sum of `config.size` and every `layers[].size` of an image manifest (Docker v2 schema 2
/// or OCI); `None` for other documents.
pub fn manifest_size(raw: &str) -> Option<u64> {
    let manifest: serde_json::Value = serde_json::from_str(raw).ok()?;
    let config = manifest["config"]["size"].as_u64()?;
    let layers = manifest["layers"].as_array()?;
    layers
        .iter()
        .map(|layer| layer["size"].as_u64())
        .sum::<Option<u64>>()
        .map(|sum| sum + config)
}

/// Reads an `--iidfile`/`--digestfile`: `sha256:HEX`, prefix added when missing.
fn read_id(path: &Path) -> Result<String, StageError> {
    let text =
        std::fs::read_to_string(path).map_err(StageError::io("buildah output file", path))?;
    let id = text.trim();
    if id.is_empty() {
        return Err(StageError::Output(format!("{} is empty", path.display())));
    }
    Ok(if id.contains(':') {
        id.to_owned()
    } else {
        format!("sha256:{id}")
    })
}

/// Removes a working container that was not committed (failed stage).
struct ContainerGuard<'a> {
    buildah: &'a Buildah,
    container: String,
    committed: bool,
}

impl ContainerGuard<'_> {
    fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self
                .buildah
                .command(["rm", self.container.as_str()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bud_failure_reads_the_error_line() {
        let tail = "STEP 1/3: FROM busybox\nSTEP 2/3: RUN echo hi\nhi\nSTEP 3/3: RUN exit 3\n\
                    subprocess exited with status 3\n\
                    Error: building at STEP \"RUN exit 3\": exit status 3";
        assert_eq!(bud_failure(tail), Some(("RUN exit 3".into(), Some(3))));
        let quoted = "Error: building at STEP \"RUN echo \"a\": b\": exit status 126";
        assert_eq!(
            bud_failure(quoted),
            Some(("RUN echo \"a\": b".into(), Some(126)))
        );
    }

    #[test]
    fn bud_failure_falls_back_to_the_last_step_line() {
        let tail = "STEP 1/2: FROM busybox\nSTEP 2/2: COPY missing /x\nError: no such file";
        assert_eq!(bud_failure(tail), Some(("COPY missing /x".into(), None)));
        assert_eq!(bud_failure("nothing useful"), None);
    }

    #[test]
    fn manifest_size_sums_config_and_layers() {
        let raw = r#"{"schemaVersion":2,"config":{"size":989,"digest":"sha256:a"},
                     "layers":[{"size":1083749},{"size":100}]}"#;
        assert_eq!(manifest_size(raw), Some(989 + 1_083_749 + 100));
        assert_eq!(manifest_size(r#"{"manifests":[]}"#), None);
    }

    #[test]
    fn read_id_adds_the_algorithm() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("iid");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(read_id(&p).unwrap(), "sha256:abc");
        std::fs::write(&p, "sha256:def").unwrap();
        assert_eq!(read_id(&p).unwrap(), "sha256:def");
        std::fs::write(&p, "").unwrap();
        assert!(read_id(&p).is_err());
        let missing = read_id(&tmp.path().join("none")).unwrap_err();
        assert!(
            missing.to_string().starts_with("buildah output file "),
            "{missing}"
        );
    }
}
