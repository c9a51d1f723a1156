//! Dockerfiles with BuildKit's syntax: parsing ([`Dockerfile::parse`]), stages and the target
//! chain ([`Dockerfile::target_index`], [`Dockerfile::stage_dependencies`]), word expansion
//! ([`shell`]) and `.dockerignore` ([`dockerignore`]).
//!
//! Parsing follows BuildKit's `frontend/dockerfile/parser` and `instructions` packages, which
//! werf uses too: the same logical lines, the same instruction text (`original`, the line after
//! continuation joining — werf hashes it), the same argument splitting.

pub mod dockerignore;
pub mod lexer;
mod parse;
pub mod shell;

use std::collections::BTreeSet;

pub use lexer::Heredoc;

/// Errors in a Dockerfile or a `.dockerignore`; every variant names the file, and the line where
/// one applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// Malformed text: bad flag, wrong argument count, unterminated heredoc, bad directive.
    #[error("{file}, line {line}: {message}")]
    Syntax {
        /// The Dockerfile path as given to [`Dockerfile::parse`].
        file: String,
        /// 1-based line of the instruction.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An instruction keyword BuildKit does not know.
    #[error("{file}, line {line}: unknown instruction {instruction:?}")]
    UnknownInstruction {
        /// The Dockerfile path.
        file: String,
        /// 1-based line.
        line: usize,
        /// The keyword as written.
        instruction: String,
    },
    /// An instruction other than `ARG` before the first `FROM`.
    #[error(
        "{file}, line {line}: {instruction} before the first FROM (no build stage in current context)"
    )]
    NoBuildStage {
        /// The Dockerfile path.
        file: String,
        /// 1-based line.
        line: usize,
        /// The keyword.
        instruction: String,
    },
    /// The file has no `FROM` at all.
    #[error("{file}: no FROM instruction, the Dockerfile has no build stage")]
    NoStages {
        /// The Dockerfile path.
        file: String,
    },
    /// `target` names no stage.
    #[error("{file}: target stage {target:?} does not exist (stages: {})", stages.join(", "))]
    UnknownTarget {
        /// The Dockerfile path.
        file: String,
        /// The requested target.
        target: String,
        /// The stages that exist, by name (or `#index` when unnamed).
        stages: Vec<String>,
    },
    /// A malformed `.dockerignore` line.
    #[error("{file}, line {line}: {message}")]
    Dockerignore {
        /// The ignore file path.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// An `ARG` entry: `key` or `key=value` (value as written, quotes included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The variable name.
    pub key: String,
    /// The default, unprocessed; `None` for a bare `ARG key`.
    pub value: Option<String>,
}

/// Shell form (a string run by the stage's shell) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `RUN echo hi`.
    Shell(String),
    /// `RUN ["echo", "hi"]`.
    Exec(Vec<String>),
}

/// `COPY`/`ADD` arguments, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyArgs {
    /// Source paths or globs (relative to the context), or `<<EOF` heredoc markers.
    pub sources: Vec<String>,
    /// Destination in the image.
    pub dest: String,
    /// `--from=<stage name|index|image>`.
    pub from: Option<String>,
    /// `--chown=user:group`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=pattern` (repeatable).
    pub exclude: Vec<String>,
    /// ADD `--checksum=`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
}

/// One `RUN --mount=` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `key=value` fields in the order written, keys lower-case.
    pub fields: Vec<(String, String)>,
}

impl Mount {
    fn field(&self, names: &[&str]) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }
    /// `type=`: bind (default), cache, tmpfs, secret, ssh.
    pub fn mount_type(&self) -> &str {
        self.field(&["type"]).unwrap_or("bind")
    }
    /// `from=`: a stage name or index, or an image.
    pub fn from(&self) -> Option<&str> {
        self.field(&["from"]).filter(|v| !v.is_empty())
    }
    /// `source=`/`src=`.
    pub fn source(&self) -> Option<&str> {
        self.field(&["source", "src"])
    }
    /// `target=`/`dst=`/`destination=`.
    pub fn target(&self) -> Option<&str> {
        self.field(&["target", "dst", "destination"])
    }
}

/// `RUN` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// The command.
    pub command: Command,
    /// `--mount=` values.
    pub mounts: Vec<Mount>,
    /// `--network=`.
    pub network: Option<String>,
    /// `--security=`.
    pub security: Option<String>,
}

/// `HEALTHCHECK CMD` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckArgs {
    /// The check command.
    pub command: Command,
    /// `--interval=`.
    pub interval: Option<String>,
    /// `--timeout=`.
    pub timeout: Option<String>,
    /// `--start-period=`.
    pub start_period: Option<String>,
    /// `--start-interval=`.
    pub start_interval: Option<String>,
    /// `--retries=`.
    pub retries: Option<String>,
}

/// Typed instruction arguments, unexpanded (expansion depends on build args, see
/// [`shell::process_word`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `FROM [--platform=p] image [AS name]`; the name is lower-cased as BuildKit does.
    From {
        /// The base: an image reference or an earlier stage's name.
        image: String,
        /// `AS name`.
        name: Option<String>,
        /// `--platform=`.
        platform: Option<String>,
    },
    /// `ARG k[=v] ...`.
    Arg(Vec<KeyValue>),
    /// `ENV k=v ...` (values as written).
    Env(Vec<(String, String)>),
    /// `LABEL k=v ...`.
    Label(Vec<(String, String)>),
    /// `COPY`.
    Copy(CopyArgs),
    /// `ADD`.
    Add(CopyArgs),
    /// `RUN`.
    Run(RunArgs),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `SHELL [..]`.
    Shell(Vec<String>),
    /// `HEALTHCHECK NONE` (`None`) or `HEALTHCHECK CMD ...`.
    Healthcheck(Option<HealthcheckArgs>),
    /// `EXPOSE`.
    Expose(Vec<String>),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `MAINTAINER`.
    Maintainer(String),
    /// `ONBUILD <instruction>`: the trigger instruction's text.
    Onbuild(String),
}

/// One instruction with its position and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based first line.
    pub line: usize,
    /// 1-based last line (including heredoc bodies).
    pub end_line: usize,
    /// Upper-case keyword, e.g. `RUN`.
    pub keyword: String,
    /// The instruction text after continuation joining, trimmed (BuildKit's `Node.Original`,
    /// werf's `String()`); heredoc bodies are not part of it.
    pub original: String,
    /// Leading flags: name (without `--`) and value (`None` for a bare `--link`).
    pub flags: Vec<(String, Option<String>)>,
    /// Heredocs attached to the instruction.
    pub heredocs: Vec<Heredoc>,
    /// Typed arguments.
    pub args: Args,
}

impl Instruction {
    /// The staged stage name werf uses: the keyword as written in the Dockerfile (BuildKit's
    /// `node.Value`: `RUN` in an upper-case Dockerfile, `run` or `Expose` where written so).
    pub fn stage_name(&self) -> String {
        self.original
            .split_whitespace()
            .next()
            .filter(|w| w.eq_ignore_ascii_case(&self.keyword))
            .unwrap_or(&self.keyword)
            .to_string()
    }
}

/// One build stage: its `FROM` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, from 0.
    pub index: usize,
    /// `AS name`, lower-case.
    pub name: Option<String>,
    /// The base as written (may contain `$ARG`s).
    pub base_name: String,
    /// `FROM --platform=` as written.
    pub platform: Option<String>,
    /// The `FROM` instruction.
    pub from: Instruction,
    /// The instructions after `FROM`.
    pub instructions: Vec<Instruction>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The path given to [`Dockerfile::parse`], for messages.
    pub path: String,
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
    /// Parser directives found at the top (`syntax`, `escape`, `check`).
    pub directives: Vec<(String, String)>,
    /// `ARG`s before the first `FROM` (meta args).
    pub meta_args: Vec<Instruction>,
    /// The stages in order.
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// Parses Dockerfile text; `path` is only used in error messages (file + line).
    ///
    /// Errors: [`DockerfileError::Syntax`], [`DockerfileError::UnknownInstruction`],
    /// [`DockerfileError::NoBuildStage`], [`DockerfileError::NoStages`].
    pub fn parse(path: &str, text: &str) -> Result<Dockerfile, DockerfileError> {
        let lexed = lexer::lex(path, text)?;
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for ll in &lexed.lines {
            let ins = parse::instruction(path, ll, lexed.escape)?;
            if let Args::From {
                image,
                name,
                platform,
            } = &ins.args
            {
                stages.push(Stage {
                    index: stages.len(),
                    name: name.clone(),
                    base_name: image.clone(),
                    platform: platform.clone(),
                    from: ins.clone(),
                    instructions: Vec::new(),
                });
                continue;
            }
            match stages.last_mut() {
                Some(stage) => stage.instructions.push(ins),
                None if ins.keyword == "ARG" => meta_args.push(ins),
                None => {
                    return Err(DockerfileError::NoBuildStage {
                        file: path.to_string(),
                        line: ins.line,
                        instruction: ins.keyword,
                    });
                }
            }
        }
        if stages.is_empty() {
            return Err(DockerfileError::NoStages {
                file: path.to_string(),
            });
        }
        Ok(Dockerfile {
            path: path.to_string(),
            escape: lexed.escape,
            directives: lexed.directives,
            meta_args,
            stages,
        })
    }

    /// Parses one instruction line (an ONBUILD trigger); `line` is reported in errors.
    pub fn parse_instruction(
        path: &str,
        line: usize,
        text: &str,
    ) -> Result<Instruction, DockerfileError> {
        let lexed = lexer::lex(path, text)?;
        let Some(ll) = lexed.lines.first() else {
            return Err(DockerfileError::Syntax {
                file: path.to_string(),
                line,
                message: "empty instruction".into(),
            });
        };
        let mut ll = ll.clone();
        ll.start_line = line;
        ll.end_line = line;
        parse::instruction(path, &ll, lexed.escape)
    }

    /// Index of the target stage: the named stage, or the last one when None.
    ///
    /// Errors: [`DockerfileError::UnknownTarget`] naming the target and the stages that exist.
    pub fn target_index(&self, target: Option<&str>) -> Result<usize, DockerfileError> {
        let Some(target) = target.filter(|t| !t.is_empty()) else {
            return Ok(self.stages.len() - 1);
        };
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(target))
            .ok_or_else(|| DockerfileError::UnknownTarget {
                file: self.path.clone(),
                target: target.to_string(),
                stages: self
                    .stages
                    .iter()
                    .map(|s| s.name.clone().unwrap_or_else(|| format!("#{}", s.index)))
                    .collect(),
            })
    }

    /// Stage name (`AS name`) of stage `index`, if it has one.
    pub fn stage_name(&self, index: usize) -> Option<&str> {
        self.stages.get(index).and_then(|s| s.name.as_deref())
    }

    /// The stage a `FROM`, `--from=` or `from=` value refers to: a stage name (case-insensitive)
    /// or a decimal index (not for `FROM`); `None` for an image reference. Only stages before
    /// `before` count, as in BuildKit.
    pub fn resolve_stage_ref(
        &self,
        value: &str,
        before: usize,
        allow_index: bool,
    ) -> Option<usize> {
        let lower = value.to_ascii_lowercase();
        if let Some(i) = self.stages[..before.min(self.stages.len())]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        if allow_index
            && let Ok(i) = value.parse::<usize>()
            && i < before
        {
            return Some(i);
        }
        None
    }

    /// The stages stage `index` uses directly: its `FROM` stage, `COPY --from=` and
    /// `RUN --mount=…,from=` stages (by name or index).
    pub fn direct_stage_dependencies(&self, index: usize) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let Some(stage) = self.stages.get(index) else {
            return out;
        };
        if let Some(i) = self.resolve_stage_ref(&stage.base_name, index, false) {
            out.insert(i);
        }
        for ins in &stage.instructions {
            match &ins.args {
                Args::Copy(c) => {
                    if let Some(i) = c
                        .from
                        .as_deref()
                        .and_then(|f| self.resolve_stage_ref(f, index, true))
                    {
                        out.insert(i);
                    }
                }
                Args::Run(r) => {
                    for m in &r.mounts {
                        if let Some(i) = m
                            .from()
                            .and_then(|f| self.resolve_stage_ref(f, index, true))
                        {
                            out.insert(i);
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The `COPY`/`ADD` instructions that read the build context in stage `index` and the
    /// stages it needs (`COPY --from` excluded), in stage then line order, with their source
    /// paths as written (unexpanded; heredoc sources excluded).
    pub fn context_sources(&self, index: usize) -> Vec<(&Instruction, Vec<&str>)> {
        let mut stages: Vec<usize> = self.stage_dependencies(index).into_iter().collect();
        stages.push(index);
        stages.sort_unstable();
        let mut out = Vec::new();
        for i in stages {
            for ins in &self.stages[i].instructions {
                let (Args::Copy(c) | Args::Add(c)) = &ins.args else {
                    continue;
                };
                if c.from.is_some() {
                    continue;
                }
                let sources = c
                    .sources
                    .iter()
                    .map(String::as_str)
                    .filter(|s| {
                        ins.heredocs.is_empty()
                            || !s
                                .trim_start_matches(|c: char| c.is_ascii_digit())
                                .starts_with("<<")
                    })
                    .collect();
                out.push((ins, sources));
            }
        }
        out
    }

    /// Indices of the stages stage `index` needs (FROM <stage>, COPY --from=<stage|index>,
    /// RUN --mount=...,from=<stage|index>), transitively, not including `index` itself.
    pub fn stage_dependencies(&self, index: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut queue = vec![index];
        while let Some(i) = queue.pop() {
            for d in self.direct_stage_dependencies(i) {
                if d != index && seen.insert(d) {
                    queue.push(d);
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests;
