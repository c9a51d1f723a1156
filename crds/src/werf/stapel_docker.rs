//! A Stapel image's `docker:` section (werf: `pkg/build/stage/docker_instructions.go`),
//! expanded once into what its stage digest hashes and what the builder applies, so the two
//! cannot drift apart.

use std::collections::BTreeMap;

use crate::job::{Instruction, KeyValue};

/// A `CMD` or `ENTRYPOINT` value: a string is shell form, a list exec form (werf keeps the
/// difference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `CMD: "nginx -g 'daemon off;'"`.
    Shell(String),
    /// `CMD: ["nginx", "-g", "daemon off;"]`.
    Exec(Vec<String>),
}

impl Command {
    /// werf's `prepareCommand`: a string as written; a list as `["a", "b"]` (`[]` when empty).
    pub fn digest_text(&self) -> String {
        match self {
            Command::Shell(s) => s.clone(),
            Command::Exec(l) if l.is_empty() => "[]".to_owned(),
            Command::Exec(l) => format!("[\"{}\"]", l.join("\", \"")),
        }
    }

    fn job_form(&self) -> (Vec<String>, bool) {
        match self {
            Command::Shell(s) => (vec![s.clone()], true),
            Command::Exec(l) => (l.clone(), false),
        }
    }
}

/// A `docker:` section with its ENV and LABEL values already scalars.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerSection {
    /// `VOLUME` paths.
    pub volume: Vec<String>,
    /// `EXPOSE` ports.
    pub expose: Vec<String>,
    /// `ENV` pairs (a map: werf sorts the keys bytewise).
    pub env: BTreeMap<String, String>,
    /// `LABEL` pairs.
    pub label: BTreeMap<String, String>,
    /// `CMD`.
    pub cmd: Option<Command>,
    /// `ENTRYPOINT`.
    pub entrypoint: Option<Command>,
    /// `WORKDIR`.
    pub workdir: Option<String>,
    /// `USER`.
    pub user: Option<String>,
    /// `HEALTHCHECK` as written (hashed; the builder has no form for it yet).
    pub healthcheck: Option<String>,
}

impl DockerSection {
    /// The parts werf hashes for the `dockerInstructions` stage, in order: VOLUMEs, EXPOSEs,
    /// ENV and LABEL pairs sorted by key, CMD (`[]` when only ENTRYPOINT is set), ENTRYPOINT,
    /// WORKDIR, USER, HEALTHCHECK. `exactValues` only enters werf's digest with its
    /// Docker-daemon builder, never with Buildah, so it does not enter here.
    pub fn dependency_parts(&self) -> Vec<String> {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.volume.iter().cloned());
        parts.extend(self.expose.iter().cloned());
        for map in [&self.env, &self.label] {
            for (k, v) in map {
                parts.push(k.clone());
                parts.push(v.clone());
            }
        }
        let entrypoint = self
            .entrypoint
            .as_ref()
            .map(Command::digest_text)
            .unwrap_or_default();
        let mut cmd = self
            .cmd
            .as_ref()
            .map(Command::digest_text)
            .unwrap_or_default();
        if !entrypoint.is_empty() && cmd.is_empty() {
            cmd = "[]".to_owned();
        }
        parts.push(cmd);
        parts.push(entrypoint);
        parts.push(self.workdir.clone().unwrap_or_default());
        parts.push(self.user.clone().unwrap_or_default());
        parts.push(self.healthcheck.clone().unwrap_or_default());
        parts
    }

    /// The config changes the builder applies, in werf's order: VOLUME, EXPOSE, ENV, LABEL
    /// (keys sorted), CMD, ENTRYPOINT, WORKDIR, USER; each with its Dockerfile-like text.
    pub fn instructions(&self) -> Vec<(String, Instruction)> {
        let mut steps = Vec::new();
        if !self.volume.is_empty() {
            steps.push((
                format!("VOLUME {}", self.volume.join(" ")),
                Instruction::Volume {
                    paths: self.volume.clone(),
                },
            ));
        }
        if !self.expose.is_empty() {
            steps.push((
                format!("EXPOSE {}", self.expose.join(" ")),
                Instruction::Expose {
                    ports: self.expose.clone(),
                },
            ));
        }
        for (section, map) in [("ENV", &self.env), ("LABEL", &self.label)] {
            if map.is_empty() {
                continue;
            }
            let pairs: Vec<KeyValue> = map
                .iter()
                .map(|(k, v)| KeyValue {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect();
            let text = format!(
                "{section} {}",
                pairs
                    .iter()
                    .map(|p| format!("{}={:?}", p.name, p.value))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let instruction = if section == "ENV" {
                Instruction::Env { vars: pairs }
            } else {
                Instruction::Label { labels: pairs }
            };
            steps.push((text, instruction));
        }
        if let Some(cmd) = &self.cmd {
            let (command, prepend_shell) = cmd.job_form();
            steps.push((
                format!("CMD {command:?}"),
                Instruction::Cmd {
                    command,
                    prepend_shell,
                },
            ));
        }
        if let Some(entrypoint) = &self.entrypoint {
            let (command, prepend_shell) = entrypoint.job_form();
            steps.push((
                format!("ENTRYPOINT {command:?}"),
                Instruction::Entrypoint {
                    command,
                    prepend_shell,
                },
            ));
        }
        if let Some(path) = &self.workdir {
            steps.push((
                format!("WORKDIR {path}"),
                Instruction::Workdir { path: path.clone() },
            ));
        }
        if let Some(user) = &self.user {
            steps.push((
                format!("USER {user}"),
                Instruction::User { user: user.clone() },
            ));
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> DockerSection {
        DockerSection {
            volume: vec!["/data".into()],
            env: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
            entrypoint: Some(Command::Exec(vec!["/app".into()])),
            user: Some("app".into()),
            ..DockerSection::default()
        }
    }

    #[test]
    fn what_is_hashed_follows_werf_order() {
        assert_eq!(
            section().dependency_parts(),
            [
                "/data",
                "A",
                "1",
                "B",
                "2",
                "[]",
                "[\"/app\"]",
                "",
                "app",
                ""
            ]
        );
    }

    #[test]
    fn what_is_built_is_the_same_section_in_werf_order() {
        let texts: Vec<String> = section()
            .instructions()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            texts,
            [
                "VOLUME /data",
                "ENV A=\"1\" B=\"2\"",
                "ENTRYPOINT [\"/app\"]",
                "USER app"
            ]
        );
    }
}
