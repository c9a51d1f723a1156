//! `kiln-operator plan`: the offline plan of a project at a git commit — the concurrent builds
//! plan (build sets) as werf prints it, then each image × platform with its stages and stage
//! digests. Reads werf.yaml and Dockerfiles from the commit, never from the working tree.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;
use serde::Serialize;

use kiln_operator::config::Platform;
use kiln_operator::config::render::{EnvValues, RenderContext};
use kiln_operator::digest::DigestMode;
use kiln_operator::plan::project::{
    ImageBuildKind, PlanRequest, ProjectPlan, StagedDockerfileVersion, plan_project, render_config,
};
use kiln_operator::plan::stage_images::{werf_images, werf_sets};
use kiln_operator::plan::{DEFAULT_PARALLEL_TASKS_LIMIT, ParallelOptions};
use kiln_operator::source::GitTree;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// werf-style text.
    Text,
    /// `{"sets":[[…]],"images":[{"name","platform","stages":[{"name","digest"}]}]}`.
    Json,
}

/// `WERF_STAGED_DOCKERFILE_VERSION` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StagedVersion {
    /// One stage per instruction (werf's default).
    V1,
    /// v1 plus a separate FROM stage.
    V2,
}

/// `--digest-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DigestModeArg {
    /// Byte-identical to werf v2 (the default).
    Werf,
    /// Also hash what werf leaves out (file modes and paths, heredoc bodies, quoting, stages
    /// reached through `FROM ${ARG}`), under a salt of its own.
    Strict,
}

impl From<DigestModeArg> for DigestMode {
    fn from(arg: DigestModeArg) -> DigestMode {
        match arg {
            DigestModeArg::Werf => DigestMode::Werf,
            DigestModeArg::Strict => DigestMode::Strict,
        }
    }
}

/// Flags of `kiln-operator plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The git repository (bare or with a work tree).
    #[arg(long, value_name = "DIR")]
    pub repo_dir: PathBuf,
    /// Branch, tag or commit to plan; HEAD when absent.
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// werf.yaml path inside the repository.
    #[arg(long, value_name = "PATH", default_value = "werf.yaml")]
    pub config: String,
    /// Target platforms (os/arch[/variant]), comma-separated or repeated; override werf.yaml.
    #[arg(long, value_name = "P[,P…]", value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Staged Dockerfile builder revision (werf's WERF_STAGED_DOCKERFILE_VERSION).
    #[arg(
        long,
        value_enum,
        default_value = "v1",
        env = "WERF_STAGED_DOCKERFILE_VERSION"
    )]
    pub staged_dockerfile_version: StagedVersion,
    /// What stage digests hash: `werf` (werf-identical) or `strict`.
    #[arg(long, value_enum, default_value = "werf")]
    pub digest_mode: DigestModeArg,
    /// Build the images of a set at the same time (false: one image per set).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub parallel: bool,
    /// At most this many images built at the same time; 0 or less: no limit.
    #[arg(long, default_value_t = DEFAULT_PARALLEL_TASKS_LIMIT, allow_negative_numbers = true, value_name = "N")]
    pub parallel_tasks_limit: i64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Print werf.yaml rendered (Go templates, `.werf` partials, `env`) and stop, as
    /// `werf config render` does.
    #[arg(long)]
    pub render: bool,
    /// `.Env` of werf.yaml templates (werf's `--env`).
    #[arg(long = "env", value_name = "ENV", default_value = "", env = "WERF_ENV")]
    pub werf_env: String,
    /// Templates directory inside the repository (werf's `--config-templates-dir`).
    #[arg(long, value_name = "DIR", env = "WERF_CONFIG_TEMPLATES_DIR")]
    pub config_templates_dir: Option<String>,
    /// werf's `--loose-giterminism`: `env` may read any variable, an unset one without a
    /// default renders empty.
    #[arg(long, env = "WERF_LOOSE_GITERMINISM")]
    pub loose_giterminism: bool,
    /// Images to plan (with what they depend on); all when none are given.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Runs `plan`: prints the plan to stdout; bad input is an error naming its cause.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let platforms = args
        .platform
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            Platform::parse(p)
                .map_err(|reason| anyhow::anyhow!("invalid --platform {p:?}: {reason}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tree = GitTree::open(&args.repo_dir, args.revision.as_deref())
        .with_context(|| format!("opening {}", args.repo_dir.display()))?;
    let request = PlanRequest {
        config_path: &args.config,
        inline_config: None,
        images: &args.images,
        platforms: &platforms,
        staged_dockerfile_version: match args.staged_dockerfile_version {
            StagedVersion::V1 => StagedDockerfileVersion::V1,
            StagedVersion::V2 => StagedDockerfileVersion::V2,
        },
        parallel: ParallelOptions {
            parallel: args.parallel,
            tasks_limit: args.parallel_tasks_limit,
        },
        // On a workstation `env` reads the process environment, as werf does.
        render: RenderContext {
            env: EnvValues::Process,
            werf_env: args.werf_env.clone(),
            loose_giterminism: args.loose_giterminism,
            templates_dir: args.config_templates_dir.clone(),
        },
        digest_mode: args.digest_mode.into(),
    };
    if args.render {
        let (_, rendered) = render_config(&tree, &request)?;
        print!("{rendered}");
        return Ok(ExitCode::SUCCESS);
    }
    let plan = plan_project(&tree, &request)?;
    let out = match args.output {
        Output::Text => render_text(&plan),
        Output::Json => render_json(&plan)?,
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    sets: &'a [Vec<String>],
    images: Vec<JsonImage<'a>>,
}

#[derive(Serialize)]
struct JsonImage<'a> {
    name: &'a str,
    platform: String,
    stages: Vec<JsonStage<'a>>,
}

#[derive(Serialize)]
struct JsonStage<'a> {
    name: &'a str,
    /// `null` while the digest waits for something known at build time.
    digest: Option<&'a str>,
    /// Present when the digest holds only under an assumption (which it names).
    #[serde(skip_serializing_if = "Option::is_none")]
    provisional: Option<&'a str>,
}

/// The JSON document: sets of image names, and each image × platform with its stages.
pub fn render_json(plan: &ProjectPlan) -> anyhow::Result<String> {
    let sets = werf_sets(&plan.sets, &plan.stage_images);
    let doc = JsonPlan {
        sets: &sets,
        images: werf_images(&plan.images)
            .into_iter()
            .map(|i| JsonImage {
                name: i.name,
                platform: i.platform.to_string(),
                stages: i
                    .stages
                    .into_iter()
                    .map(|s| JsonStage {
                        name: &s.name,
                        digest: s.digest.as_deref(),
                        provisional: s.provisional.as_deref(),
                    })
                    .collect(),
            })
            .collect(),
    };
    Ok(serde_json::to_string(&doc)? + "\n")
}

fn image_label(name: &str) -> String {
    if name.is_empty() {
        "image ~".to_string()
    } else {
        format!("image {name}")
    }
}

/// werf-style text: the plan block, then one block per image × platform.
pub fn render_text(plan: &ProjectPlan) -> String {
    let mut out = String::new();
    let title = plan.sets.title();
    let _ = writeln!(out, "Project {}, commit {}", plan.project, plan.commit);
    let _ = writeln!(out, "┌ {title}");
    for (i, set) in werf_sets(&plan.sets, &plan.stage_images).iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out, "│");
        }
        let _ = writeln!(out, "│ Set #{i}:");
        for name in set {
            let _ = writeln!(out, "│ - ⛵ {}", image_label(name));
        }
    }
    let _ = writeln!(out, "└ {title}");
    for image in &plan.images {
        let header = format!("⛵ {} ({})", image_label(&image.name), image.platform);
        let _ = writeln!(out, "\n┌ {header}");
        let kind = match image.kind {
            ImageBuildKind::Dockerfile => "Dockerfile",
            ImageBuildKind::StagedDockerfile => "staged Dockerfile",
            ImageBuildKind::Stapel => "Stapel",
        };
        let final_note = if image.is_final { "" } else { ", not final" };
        let _ = writeln!(out, "│ {kind}{final_note}");
        for (dep, relation) in &image.depends_on {
            let _ = writeln!(out, "│ after {} ({relation})", image_label(dep));
        }
        let width = image.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
        let split = plan.stage_images.contains_key(&image.name);
        let mut werf_image: Option<&str> = None;
        for stage in &image.stages {
            if split && stage.werf_image.as_deref() != werf_image {
                werf_image = stage.werf_image.as_deref();
                let _ = writeln!(out, "│ {}", image_label(werf_image.unwrap_or(&image.name)));
            }
            let digest = stage.digest.as_deref().unwrap_or("pending");
            let _ = write!(out, "│ {:width$}  {digest}", stage.name);
            if let Some(instruction) = &stage.instruction {
                let _ = write!(out, "  {instruction}");
            }
            let _ = writeln!(out);
            if let Some((by, platform)) = &stage.built_by {
                let _ = writeln!(
                    out,
                    "│ {:width$}  planned once: built by {} ({platform})",
                    "",
                    image_label(by)
                );
            }
            if let Some(assumes) = &stage.provisional {
                let _ = writeln!(out, "│ {:width$}  provisional: {assumes}", "");
            }
            if !stage.pending_on.is_empty() {
                let _ = writeln!(
                    out,
                    "│ {:width$}  waits for {}",
                    "",
                    stage.pending_on.join(", ")
                );
            }
        }
        let _ = writeln!(out, "└ {header}");
    }
    out
}
