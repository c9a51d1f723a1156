//! `kiln-builder`: runs inside a Kiln builder pod. Reads one build job (see
//! `kiln_crds::job`), builds its missing stages with Buildah, pushes each one as soon as it
//! is built, and reports the result as JSON in the pod's termination message.
//!
//! Exit status: 0 when every stage was published, 1 when a stage failed, 2 when the job
//! could not be read.

mod build;
mod buildah;
mod labels;
mod registries;
mod report;
mod runner;
mod secrets;
mod source;
mod ssh_agent;
mod staged;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kiln_crds::job::{BuildJob, BuildResult, JobError, StageFailure};

/// Command line and environment of the builder.
#[derive(Debug, Parser)]
#[command(name = "kiln-builder", version, about)]
struct Cli {
    /// File holding the build job (JSON).
    #[arg(long, env = "KILN_JOB_FILE", conflicts_with = "job")]
    job_file: Option<PathBuf>,
    /// The build job itself (JSON text), when no file is given.
    #[arg(long, env = "KILN_JOB", hide_env_values = true)]
    job: Option<String>,
    /// Where the result JSON goes (Kubernetes reads at most 4,096 bytes of it).
    #[arg(
        long,
        env = "KILN_TERMINATION_LOG",
        default_value = "/dev/termination-log"
    )]
    termination_log: PathBuf,
    /// Buildah storage driver: `vfs` works everywhere; `overlay` (kernel) and
    /// `fuse-overlayfs` are faster where allowed (see docs/security.md).
    #[arg(long, env = "KILN_STORAGE_DRIVER", value_enum, default_value = "vfs")]
    storage_driver: buildah::StorageDriver,
    /// Buildah `--root` (image store); Buildah's default when unset.
    #[arg(long, env = "KILN_BUILDAH_ROOT")]
    root: Option<PathBuf>,
    /// Buildah `--runroot` (state); Buildah's default when unset.
    #[arg(long, env = "KILN_BUILDAH_RUNROOT")]
    runroot: Option<PathBuf>,
    /// Directory for the source checkout and generated files.
    #[arg(long, env = "KILN_WORK_DIR", default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// The buildah binary.
    #[arg(long, env = "KILN_BUILDAH", default_value = "buildah")]
    buildah: PathBuf,
    /// The skopeo binary (reads pushed manifests back).
    #[arg(long, env = "KILN_SKOPEO", default_value = "skopeo")]
    skopeo: PathBuf,
    /// Output lines of a failed command kept for the termination message.
    #[arg(long, env = "KILN_LOG_TAIL_LINES", default_value_t = 40)]
    log_tail_lines: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (result, code) = match load_job(&cli) {
        Ok(job) => {
            println!(
                "[kiln-builder] image {} of project {}: {} stage(s) to {}",
                job.image,
                job.project,
                job.stages.len(),
                job.repo
            );
            let settings = build::Settings {
                buildah: cli.buildah.clone(),
                skopeo: cli.skopeo.clone(),
                storage: cli
                    .storage_driver
                    .storage(cli.root.clone(), cli.runroot.clone()),
                work_dir: cli.work_dir.clone(),
                tail_lines: cli.log_tail_lines,
            };
            let result = build::run_job(&job, &settings);
            let code = if result.ok { 0 } else { 1 };
            (result, code)
        }
        Err(error) => {
            let result = BuildResult {
                ok: false,
                failure: Some(StageFailure {
                    stage_index: 0,
                    stage: String::new(),
                    digest: String::new(),
                    instruction: "read job".into(),
                    exit_code: None,
                    message: error.to_string(),
                    log_tail: String::new(),
                }),
                ..BuildResult::default()
            };
            (result, 2)
        }
    };
    let message = report::default_termination_message(&result);
    println!("[kiln-builder] result {message}");
    if let Err(error) = std::fs::write(&cli.termination_log, &message) {
        eprintln!(
            "[kiln-builder] cannot write termination message to {}: {error}",
            cli.termination_log.display()
        );
    }
    ExitCode::from(code)
}

/// The job from `--job-file`/`KILN_JOB_FILE`, else `--job`/`KILN_JOB`.
fn load_job(cli: &Cli) -> Result<BuildJob, JobError> {
    if let Some(path) = &cli.job_file {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| JobError::Invalid {
            origin: origin.clone(),
            problem: format!("cannot read: {e}"),
        })?;
        return BuildJob::from_json(&text, &origin);
    }
    match &cli.job {
        Some(text) => BuildJob::from_json(text, "KILN_JOB"),
        None => Err(JobError::Invalid {
            origin: "(none)".into(),
            problem: "no job given: set --job-file/KILN_JOB_FILE or --job/KILN_JOB".into(),
        }),
    }
}
