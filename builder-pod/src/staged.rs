//! One staged-Dockerfile instruction as Buildah operations on a working container (what
//! werf's staged Dockerfile builder does per instruction, reference §1.4): `RUN` →
//! `buildah run`, `COPY`/`ADD` → `buildah copy`/`buildah add`, everything else →
//! `buildah config`. The caller runs the resulting [`Step`]; the only I/O here is the copy
//! of a build secret a `RUN --mount=type=secret` wants with another owner or mode.

use std::path::Path;

use kiln_crds::job::{Instruction, NetworkMode, RunMount};

use crate::secrets::{SecretFiles, SecretMountError, is_secret_mount, secret_mount};

/// Where buildkit mounts the SSH agent socket by default; kept so that Dockerfiles that
/// hard-code it work the same.
pub const DEFAULT_SSH_TARGET: &str = "/run/buildkit/ssh_agent.0";

/// What an instruction needs to know about the working container (from `buildah inspect`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerState {
    /// The image's `SHELL`; empty = `/bin/sh -c`.
    pub shell: Vec<String>,
    /// The image's working directory; empty = `/`.
    pub workdir: String,
}

impl ContainerState {
    fn shell(&self) -> Vec<String> {
        if self.shell.is_empty() {
            vec!["/bin/sh".to_owned(), "-c".to_owned()]
        } else {
            self.shell.clone()
        }
    }
}

/// What the build offers an instruction.
#[derive(Debug, Clone, Copy)]
pub struct StepContext<'a> {
    /// The job's network mode.
    pub network: NetworkMode,
    /// The checked-out build context, when the job has a source.
    pub context_dir: Option<&'a Path>,
    /// `.dockerignore` of the context, when present.
    pub ignore_file: Option<&'a Path>,
    /// The ssh-agent socket, when the job has SSH keys.
    pub ssh_socket: Option<&'a Path>,
    /// The job's build secrets as files.
    pub secrets: &'a SecretFiles,
    /// The working container's image settings.
    pub state: &'a ContainerState,
}

/// One Buildah operation; the working container name goes after the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `buildah run FLAGS CONTAINER -- COMMAND...`
    Run {
        /// Flags before the container name.
        flags: Vec<String>,
        /// The command with its shell prepended for the shell form.
        command: Vec<String>,
        /// Run in an empty network namespace (`network: none`).
        isolated: bool,
        /// Container paths where secret files are bind-mounted; the mount points Buildah
        /// creates for them are removed after the run so that no layer holds them.
        secret_targets: Vec<String>,
    },
    /// `buildah copy|add FLAGS CONTAINER SOURCES... DEST`
    Copy {
        /// `add` (archives unpacked, URLs fetched) rather than `copy`.
        add: bool,
        /// Flags before the container name.
        flags: Vec<String>,
        /// Absolute host paths (context files), paths in `--from`'s root, or URLs.
        sources: Vec<String>,
        /// Destination in the image.
        dest: String,
    },
    /// `buildah config FLAGS CONTAINER`
    Config {
        /// The settings.
        flags: Vec<String>,
    },
}

/// Why an instruction cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StepError {
    /// `RUN --mount=type=ssh` in a job without SSH keys (buildkit refuses this too).
    #[error("RUN --mount=type=ssh needs an SSH key, but the job has no sshKeyPaths")]
    NoSshAgent,
    /// COPY/ADD of context files in a job without a source.
    #[error("{0} reads the build context, but the job has no source")]
    NoContext(&'static str),
    /// A source path leaves the build context.
    #[error("{kind} source {path:?} leaves the build context")]
    OutsideContext {
        /// `COPY` or `ADD`.
        kind: &'static str,
        /// The offending path.
        path: String,
    },
    /// A `RUN --mount=type=secret` cannot be applied.
    #[error(transparent)]
    SecretMount(#[from] SecretMountError),
    /// An instruction field that must not be empty is.
    #[error("{0} has nothing to apply")]
    Empty(&'static str),
}

/// Maps `instruction` to the Buildah operation that applies it.
pub fn plan_step(instruction: &Instruction, ctx: &StepContext<'_>) -> Result<Step, StepError> {
    let config = |flags: Vec<String>| Ok(Step::Config { flags });
    let pairs = |flag: &str, items: &[kiln_crds::job::KeyValue]| {
        items
            .iter()
            .flat_map(|kv| [flag.to_owned(), format!("{}={}", kv.name, kv.value)])
            .collect::<Vec<_>>()
    };
    let each = |flag: &str, items: &[String]| {
        items
            .iter()
            .flat_map(|item| [flag.to_owned(), item.clone()])
            .collect::<Vec<_>>()
    };
    match instruction {
        Instruction::Run {
            command,
            prepend_shell,
            env,
            mounts,
            network,
        } => {
            if command.is_empty() {
                return Err(StepError::Empty("RUN"));
            }
            let mut flags = pairs("--env", env);
            let mut secret_targets = Vec::new();
            for mount in mounts {
                match mount {
                    RunMount::Ssh { target } => {
                        let socket = ctx.ssh_socket.ok_or(StepError::NoSshAgent)?;
                        let target = target.as_deref().unwrap_or(DEFAULT_SSH_TARGET);
                        flags.push("--volume".into());
                        flags.push(format!("{}:{target}", socket.display()));
                        flags.push("--env".into());
                        flags.push(format!("SSH_AUTH_SOCK={target}"));
                    }
                    // `buildah run` has no secret mounts: bind the file read-only.
                    RunMount::Other { spec } if is_secret_mount(spec) => {
                        if let Some(m) = secret_mount(spec, ctx.secrets)? {
                            flags.push("--volume".into());
                            flags.push(format!("{}:{}:ro", m.source.display(), m.target));
                            secret_targets.push(m.target);
                        }
                    }
                    RunMount::Other { spec } => {
                        flags.push("--mount".into());
                        flags.push(spec.clone());
                    }
                }
            }
            if let Some(dir) = ctx.context_dir {
                flags.push("--contextdir".into());
                flags.push(dir.display().to_string());
            }
            let command = if *prepend_shell {
                let mut full = ctx.state.shell();
                full.push(command.join(" "));
                full
            } else {
                command.clone()
            };
            // The job's `none` wins over a step's `--network=host`: the operator chose
            // isolation for the whole image.
            let isolated = ctx.network == NetworkMode::None || *network == Some(NetworkMode::None);
            Ok(Step::Run {
                flags,
                command,
                isolated,
                secret_targets,
            })
        }
        Instruction::Copy {
            sources,
            dest,
            from,
            chown,
            chmod,
        } => {
            let mut flags = Vec::new();
            let sources = match from {
                Some(image) => {
                    flags.extend(["--from".to_owned(), image.clone()]);
                    sources.clone()
                }
                None => context_sources("COPY", sources, ctx, &mut flags)?,
            };
            ownership(&mut flags, chown, chmod);
            copy_step(false, flags, sources, dest)
        }
        Instruction::Add {
            sources,
            dest,
            chown,
            chmod,
        } => {
            let mut flags = Vec::new();
            let sources = context_sources("ADD", sources, ctx, &mut flags)?;
            ownership(&mut flags, chown, chmod);
            copy_step(true, flags, sources, dest)
        }
        Instruction::Env { vars } => config(pairs("--env", vars)),
        Instruction::Label { labels } => config(pairs("--label", labels)),
        Instruction::Workdir { path } => {
            let path = if path.starts_with('/') {
                path.clone()
            } else {
                let base = ctx.state.workdir.trim_end_matches('/');
                format!("{base}/{path}")
            };
            config(vec!["--workingdir".into(), path])
        }
        Instruction::User { user } => config(vec!["--user".into(), user.clone()]),
        Instruction::Cmd {
            command,
            prepend_shell,
        } => config(vec![
            "--cmd".into(),
            exec_json(command, *prepend_shell, ctx.state),
        ]),
        Instruction::Entrypoint {
            command,
            prepend_shell,
        } => config(vec![
            "--entrypoint".into(),
            exec_json(command, *prepend_shell, ctx.state),
        ]),
        Instruction::Expose { ports } => config(each("--port", ports)),
        Instruction::Volume { paths } => config(each("--volume", paths)),
        Instruction::Shell { shell } => {
            if shell.is_empty() {
                return Err(StepError::Empty("SHELL"));
            }
            config(vec!["--shell".into(), shell.join(" ")])
        }
        Instruction::Stopsignal { signal } => config(vec!["--stop-signal".into(), signal.clone()]),
        Instruction::Healthcheck {
            test,
            interval,
            timeout,
            start_period,
            retries,
        } => {
            if test.is_empty() {
                return Err(StepError::Empty("HEALTHCHECK"));
            }
            let mut flags = vec!["--healthcheck".to_owned(), test.join(" ")];
            for (flag, value) in [
                ("--healthcheck-interval", interval),
                ("--healthcheck-timeout", timeout),
                ("--healthcheck-start-period", start_period),
            ] {
                if let Some(value) = value {
                    flags.extend([flag.to_owned(), value.clone()]);
                }
            }
            if let Some(retries) = retries {
                flags.extend(["--healthcheck-retries".to_owned(), retries.to_string()]);
            }
            config(flags)
        }
        Instruction::Maintainer { name } => config(vec!["--author".into(), name.clone()]),
        Instruction::Onbuild { expression } => config(vec!["--onbuild".into(), expression.clone()]),
    }
}

fn copy_step(
    add: bool,
    flags: Vec<String>,
    sources: Vec<String>,
    dest: &str,
) -> Result<Step, StepError> {
    if sources.is_empty() {
        return Err(StepError::Empty(if add { "ADD" } else { "COPY" }));
    }
    Ok(Step::Copy {
        add,
        flags,
        sources,
        dest: dest.to_owned(),
    })
}

fn ownership(flags: &mut Vec<String>, chown: &Option<String>, chmod: &Option<String>) {
    if let Some(chown) = chown {
        flags.extend(["--chown".to_owned(), chown.clone()]);
    }
    if let Some(chmod) = chmod {
        flags.extend(["--chmod".to_owned(), chmod.clone()]);
    }
}

/// Context sources as absolute paths under the context (Buildah resolves relative sources
/// against its working directory, not `--contextdir`); URLs stay as they are.
fn context_sources(
    kind: &'static str,
    sources: &[String],
    ctx: &StepContext<'_>,
    flags: &mut Vec<String>,
) -> Result<Vec<String>, StepError> {
    let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
    if sources.iter().all(|s| is_url(s)) {
        return Ok(sources.to_vec());
    }
    let dir = ctx.context_dir.ok_or(StepError::NoContext(kind))?;
    flags.extend(["--contextdir".to_owned(), dir.display().to_string()]);
    if let Some(ignore) = ctx.ignore_file {
        flags.extend(["--ignorefile".to_owned(), ignore.display().to_string()]);
    }
    sources
        .iter()
        .map(|source| {
            if is_url(source) {
                return Ok(source.clone());
            }
            let relative = source.trim_start_matches('/');
            if relative.split('/').any(|part| part == "..") {
                return Err(StepError::OutsideContext {
                    kind,
                    path: source.clone(),
                });
            }
            let relative = if relative.is_empty() { "." } else { relative };
            Ok(dir.join(relative).display().to_string())
        })
        .collect()
}

/// The JSON exec form Buildah's `--cmd`/`--entrypoint` take; the shell form becomes
/// `SHELL + [command line]`, as Docker stores it.
fn exec_json(command: &[String], prepend_shell: bool, state: &ContainerState) -> String {
    let argv = if prepend_shell {
        let mut full = state.shell();
        full.push(command.join(" "));
        full
    } else {
        command.to_vec()
    };
    serde_json::to_string(&argv).expect("strings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_crds::job::KeyValue;
    use std::path::PathBuf;

    fn kv(name: &str, value: &str) -> KeyValue {
        KeyValue {
            name: name.into(),
            value: value.into(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    struct Fixture {
        state: ContainerState,
        context: PathBuf,
        socket: PathBuf,
        secrets: SecretFiles,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                state: ContainerState {
                    shell: vec![],
                    workdir: "/app".into(),
                },
                context: "/ctx".into(),
                socket: "/tmp/agent.sock".into(),
                secrets: SecretFiles::default(),
            }
        }
        fn ctx(&self, network: NetworkMode) -> StepContext<'_> {
            StepContext {
                network,
                context_dir: Some(&self.context),
                ignore_file: None,
                ssh_socket: Some(&self.socket),
                secrets: &self.secrets,
                state: &self.state,
            }
        }
    }

    #[test]
    fn shell_form_run_uses_default_shell_and_arg_env() {
        let f = Fixture::new();
        let step = plan_step(
            &Instruction::Run {
                command: strings(&["echo $A > /x"]),
                prepend_shell: true,
                env: vec![kv("A", "1")],
                mounts: vec![],
                network: None,
            },
            &f.ctx(NetworkMode::Default),
        )
        .unwrap();
        assert_eq!(
            step,
            Step::Run {
                flags: strings(&["--env", "A=1", "--contextdir", "/ctx"]),
                command: strings(&["/bin/sh", "-c", "echo $A > /x"]),
                isolated: false,
                secret_targets: vec![],
            }
        );
    }

    #[test]
    fn exec_form_run_keeps_argv_and_image_shell_is_used_for_shell_form() {
        let mut f = Fixture::new();
        f.state.shell = strings(&["/bin/bash", "-eo", "pipefail", "-c"]);
        let exec = Instruction::Run {
            command: strings(&["/bin/echo", "a b"]),
            prepend_shell: false,
            env: vec![],
            mounts: vec![],
            network: None,
        };
        let Step::Run { command, .. } = plan_step(&exec, &f.ctx(NetworkMode::Host)).unwrap() else {
            panic!()
        };
        assert_eq!(command, strings(&["/bin/echo", "a b"]));
        let shell = Instruction::Run {
            command: strings(&["make"]),
            prepend_shell: true,
            env: vec![],
            mounts: vec![],
            network: None,
        };
        let Step::Run { command, .. } = plan_step(&shell, &f.ctx(NetworkMode::Host)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            command,
            strings(&["/bin/bash", "-eo", "pipefail", "-c", "make"])
        );
    }

    #[test]
    fn network_none_of_job_or_step_isolates() {
        let f = Fixture::new();
        let run = |network| Instruction::Run {
            command: strings(&["true"]),
            prepend_shell: true,
            env: vec![],
            mounts: vec![],
            network,
        };
        let isolated =
            |instruction: &Instruction, job| match plan_step(instruction, &f.ctx(job)).unwrap() {
                Step::Run { isolated, .. } => isolated,
                _ => panic!(),
            };
        assert!(!isolated(&run(None), NetworkMode::Default));
        assert!(!isolated(&run(None), NetworkMode::Host));
        assert!(isolated(&run(None), NetworkMode::None));
        assert!(isolated(&run(Some(NetworkMode::None)), NetworkMode::Host));
        assert!(isolated(&run(Some(NetworkMode::Host)), NetworkMode::None));
    }

    #[test]
    fn ssh_mount_binds_the_agent_socket_and_sets_ssh_auth_sock() {
        let f = Fixture::new();
        let run = Instruction::Run {
            command: strings(&["ssh-add -l"]),
            prepend_shell: true,
            env: vec![],
            mounts: vec![
                RunMount::Ssh { target: None },
                RunMount::Other {
                    spec: "type=tmpfs,target=/t".into(),
                },
            ],
            network: None,
        };
        let Step::Run { flags, .. } = plan_step(&run, &f.ctx(NetworkMode::Default)).unwrap() else {
            panic!()
        };
        assert_eq!(
            flags,
            strings(&[
                "--volume",
                "/tmp/agent.sock:/run/buildkit/ssh_agent.0",
                "--env",
                "SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0",
                "--mount",
                "type=tmpfs,target=/t",
                "--contextdir",
                "/ctx",
            ])
        );
        let mut no_agent = f.ctx(NetworkMode::Default);
        no_agent.ssh_socket = None;
        assert_eq!(
            plan_step(&run, &no_agent).unwrap_err(),
            StepError::NoSshAgent
        );
    }

    #[test]
    fn secret_mounts_become_read_only_binds_and_other_mounts_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Fixture::new();
        f.secrets = SecretFiles::prepare(
            &[kiln_crds::job::JobSecret {
                id: "token".into(),
                path: None,
                value: Some("s3cr3t".into()),
            }],
            dir.path(),
        )
        .unwrap();
        let file = dir.path().join("0").display().to_string();
        let run = |mounts: Vec<RunMount>| Instruction::Run {
            command: strings(&["cat /run/secrets/token"]),
            prepend_shell: true,
            env: vec![],
            mounts,
            network: None,
        };
        let other = |spec: &str| RunMount::Other { spec: spec.into() };
        let step = plan_step(
            &run(vec![
                other("type=secret,id=token"),
                other("type=secret,id=token,target=/etc/token"),
                other("type=secret,id=absent"),
                other("type=cache,target=/var/cache/apt"),
            ]),
            &f.ctx(NetworkMode::Default),
        )
        .unwrap();
        let Step::Run {
            flags,
            secret_targets,
            ..
        } = step
        else {
            panic!("{step:?}")
        };
        assert_eq!(
            flags,
            vec![
                "--volume".to_owned(),
                format!("{file}:/run/secrets/token:ro"),
                "--volume".to_owned(),
                format!("{file}:/etc/token:ro"),
                "--mount".to_owned(),
                "type=cache,target=/var/cache/apt".to_owned(),
                "--contextdir".to_owned(),
                "/ctx".to_owned(),
            ]
        );
        assert_eq!(
            secret_targets,
            strings(&["/run/secrets/token", "/etc/token"])
        );
        let err = plan_step(
            &run(vec![other("type=secret,id=absent,required")]),
            &f.ctx(NetworkMode::Default),
        )
        .unwrap_err();
        assert!(matches!(err, StepError::SecretMount(_)), "{err:?}");
        assert!(err.to_string().contains("\"absent\" is required"), "{err}");
    }

    #[test]
    fn copy_sources_become_absolute_context_paths() {
        let f = Fixture::new();
        let step = plan_step(
            &Instruction::Copy {
                sources: strings(&["src/*.rs", "/Cargo.toml", "."]),
                dest: "/app/".into(),
                from: None,
                chown: Some("1000:1000".into()),
                chmod: None,
            },
            &f.ctx(NetworkMode::Default),
        )
        .unwrap();
        assert_eq!(
            step,
            Step::Copy {
                add: false,
                flags: strings(&["--contextdir", "/ctx", "--chown", "1000:1000"]),
                sources: strings(&["/ctx/src/*.rs", "/ctx/Cargo.toml", "/ctx/."]),
                dest: "/app/".into(),
            }
        );
    }

    #[test]
    fn copy_from_image_keeps_paths_and_needs_no_context() {
        let state = ContainerState::default();
        let ctx = StepContext {
            network: NetworkMode::Default,
            context_dir: None,
            ignore_file: None,
            ssh_socket: None,
            secrets: &SecretFiles::default(),
            state: &state,
        };
        let step = plan_step(
            &Instruction::Copy {
                sources: strings(&["/usr/bin/tool"]),
                dest: "/bin/".into(),
                from: Some("r.example/shop:abc-1".into()),
                chown: None,
                chmod: Some("0755".into()),
            },
            &ctx,
        )
        .unwrap();
        assert_eq!(
            step,
            Step::Copy {
                add: false,
                flags: strings(&["--from", "r.example/shop:abc-1", "--chmod", "0755"]),
                sources: strings(&["/usr/bin/tool"]),
                dest: "/bin/".into(),
            }
        );
        let err = plan_step(
            &Instruction::Copy {
                sources: strings(&["a"]),
                dest: "/".into(),
                from: None,
                chown: None,
                chmod: None,
            },
            &ctx,
        )
        .unwrap_err();
        assert_eq!(err, StepError::NoContext("COPY"));
    }

    #[test]
    fn parent_directory_escape_is_refused() {
        let f = Fixture::new();
        let err = plan_step(
            &Instruction::Add {
                sources: strings(&["../secret"]),
                dest: "/".into(),
                chown: None,
                chmod: None,
            },
            &f.ctx(NetworkMode::Default),
        )
        .unwrap_err();
        assert_eq!(
            err,
            StepError::OutsideContext {
                kind: "ADD",
                path: "../secret".into()
            }
        );
    }

    #[test]
    fn add_url_passes_through() {
        let f = Fixture::new();
        let Step::Copy { add, sources, .. } = plan_step(
            &Instruction::Add {
                sources: strings(&["https://x.example/a.tgz"]),
                dest: "/".into(),
                chown: None,
                chmod: None,
            },
            &f.ctx(NetworkMode::Default),
        )
        .unwrap() else {
            panic!()
        };
        assert!(add);
        assert_eq!(sources, strings(&["https://x.example/a.tgz"]));
    }

    #[test]
    fn config_instructions() {
        let f = Fixture::new();
        let cfg =
            |instruction: Instruction| match plan_step(&instruction, &f.ctx(NetworkMode::Default))
                .unwrap()
            {
                Step::Config { flags } => flags,
                other => panic!("{other:?}"),
            };
        assert_eq!(
            cfg(Instruction::Env {
                vars: vec![kv("A", "1"), kv("B", "x y")]
            }),
            strings(&["--env", "A=1", "--env", "B=x y"])
        );
        assert_eq!(
            cfg(Instruction::Label {
                labels: vec![kv("l", "v")]
            }),
            strings(&["--label", "l=v"])
        );
        assert_eq!(
            cfg(Instruction::Workdir { path: "src".into() }),
            strings(&["--workingdir", "/app/src"])
        );
        assert_eq!(
            cfg(Instruction::Workdir {
                path: "/srv".into()
            }),
            strings(&["--workingdir", "/srv"])
        );
        assert_eq!(
            cfg(Instruction::User {
                user: "app:app".into()
            }),
            strings(&["--user", "app:app"])
        );
        assert_eq!(
            cfg(Instruction::Cmd {
                command: strings(&["echo hi"]),
                prepend_shell: true
            }),
            strings(&["--cmd", r#"["/bin/sh","-c","echo hi"]"#])
        );
        assert_eq!(
            cfg(Instruction::Entrypoint {
                command: strings(&["/app", "--flag"]),
                prepend_shell: false
            }),
            strings(&["--entrypoint", r#"["/app","--flag"]"#])
        );
        assert_eq!(
            cfg(Instruction::Expose {
                ports: strings(&["80", "53/udp"])
            }),
            strings(&["--port", "80", "--port", "53/udp"])
        );
        assert_eq!(
            cfg(Instruction::Volume {
                paths: strings(&["/data"])
            }),
            strings(&["--volume", "/data"])
        );
        assert_eq!(
            cfg(Instruction::Shell {
                shell: strings(&["/bin/ash", "-c"])
            }),
            strings(&["--shell", "/bin/ash -c"])
        );
        assert_eq!(
            cfg(Instruction::Stopsignal {
                signal: "SIGQUIT".into()
            }),
            strings(&["--stop-signal", "SIGQUIT"])
        );
        assert_eq!(
            cfg(Instruction::Healthcheck {
                test: strings(&["CMD-SHELL", "wget -q localhost"]),
                interval: Some("30s".into()),
                timeout: None,
                start_period: None,
                retries: Some(3),
            }),
            strings(&[
                "--healthcheck",
                "CMD-SHELL wget -q localhost",
                "--healthcheck-interval",
                "30s",
                "--healthcheck-retries",
                "3"
            ])
        );
        assert_eq!(
            cfg(Instruction::Maintainer { name: "ops".into() }),
            strings(&["--author", "ops"])
        );
        assert_eq!(
            cfg(Instruction::Onbuild {
                expression: "RUN true".into()
            }),
            strings(&["--onbuild", "RUN true"])
        );
    }

    #[test]
    fn empty_instructions_are_refused() {
        let f = Fixture::new();
        let err = plan_step(
            &Instruction::Shell { shell: vec![] },
            &f.ctx(NetworkMode::Default),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "SHELL has nothing to apply");
    }
}
