//! `RUN`: `"Env", sorted k=v...` (default `PATH`, base image env, the stage's ARGs and ENVs,
//! dependency args), `"Command", cmd..., "PrependShell", bool, "Network", n, "Security", s`,
//! the `--mount`s, and `"SourcesChecksum"` of bind-mount sources from the context.

use std::collections::BTreeMap;

use super::{Ctx, Scope, Step, command_parts};
use crate::digest::DigestError;
use crate::dockerfile::{Instruction, RunArgs};
use kiln_crds::job::{
    Instruction as JobInstruction, KeyValue as JobKeyValue, NetworkMode as JobNetwork, RunMount,
};

/// A `RUN` stage. Its command is not expanded (the shell does that at run time); its
/// environment is.
pub(super) fn step(
    cx: &mut Ctx<'_, '_>,
    sc: &Scope<'_>,
    ins: &Instruction,
    r: &RunArgs,
) -> Result<Step, DigestError> {
    let line = ins.line;
    let mut deps: Vec<String> = Vec::new();
    let mut env: BTreeMap<String, String> = sc.expansion_base.clone();
    env.extend(sc.args.clone());
    env.extend(sc.envs.clone());
    env.extend(cx.input.dependency_args.clone());
    let mut sorted: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sorted.sort();
    deps.push("Env".into());
    deps.extend(sorted);
    let (cmd, prepend) = command_parts(&r.command);
    deps.push("Command".into());
    deps.extend(cmd);
    deps.extend([
        "PrependShell".to_string(),
        prepend.to_string(),
        "Network".into(),
        r.network.clone().unwrap_or_else(|| "default".into()),
        "Security".into(),
        r.security.clone().unwrap_or_else(|| "sandbox".into()),
    ]);
    let mut bind_sources = Vec::new();
    if !r.mounts.is_empty() {
        deps.push("Mounts".into());
        for m in &r.mounts {
            let ty = m.mount_type().to_string();
            let from = m.from().unwrap_or("").to_string();
            let source = m.source().unwrap_or("").to_string();
            let target = m.target().unwrap_or("").to_string();
            let ro_default = ty == "bind";
            let ro = m
                .fields
                .iter()
                .rev()
                .find_map(|(k, v)| match k.as_str() {
                    "ro" | "readonly" => Some(v.is_empty() || v == "true"),
                    "rw" | "readwrite" => Some(!(v.is_empty() || v == "true")),
                    _ => None,
                })
                .unwrap_or(ro_default);
            let field = |n: &str| {
                m.fields
                    .iter()
                    .rev()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
            };
            let sharing = field("sharing").unwrap_or_else(|| {
                if ty == "cache" {
                    "shared".into()
                } else {
                    String::new()
                }
            });
            deps.extend([
                "Type".to_string(),
                ty.clone(),
                "From".into(),
                from.clone(),
                "Source".into(),
                source.clone(),
                "Target".into(),
                target,
                "ReadOnly".into(),
                ro.to_string(),
                "CacheID".into(),
                field("id").unwrap_or_default(),
                "CacheSharing".into(),
                sharing,
                "Required".into(),
                field("required")
                    .map(|v| v.is_empty() || v == "true")
                    .unwrap_or(false)
                    .to_string(),
            ]);
            for (k, label) in [("mode", "Mode"), ("uid", "UID"), ("gid", "GID")] {
                if let Some(v) = field(k) {
                    let n = if k == "mode" {
                        u32::from_str_radix(&v, 8)
                            .map(|n| n.to_string())
                            .unwrap_or(v)
                    } else {
                        v
                    };
                    deps.push(label.into());
                    deps.push(n);
                }
            }
            if ty == "bind" && from.is_empty() && !source.is_empty() {
                bind_sources.push(source);
            }
        }
    }
    if !bind_sources.is_empty() {
        deps.push("SourcesChecksum".into());
        deps.push(cx.globs_checksum(&bind_sources, line)?);
    }
    Ok(Step {
        deps,
        text: None,
        job: run_job(r, &sc.args, !ins.heredocs.is_empty()),
    })
}

/// The job form of a `RUN`: the command unexpanded (the shell expands it at run time), the
/// stage's build args in its environment (Docker sets them for `RUN` only), the mounts as
/// written.
fn run_job(
    r: &RunArgs,
    args: &BTreeMap<String, String>,
    heredoc: bool,
) -> Result<JobInstruction, String> {
    if heredoc {
        return Err("RUN with a heredoc".into());
    }
    if r.security.as_deref() == Some("insecure") {
        return Err("RUN --security=insecure".into());
    }
    let (command, prepend_shell) = command_parts(&r.command);
    let network = match r.network.as_deref() {
        None => None,
        Some("none") => Some(JobNetwork::None),
        Some("host") => Some(JobNetwork::Host),
        Some("default") => Some(JobNetwork::Default),
        Some(other) => return Err(format!("RUN --network={other}")),
    };
    let mounts = r
        .mounts
        .iter()
        .map(|m| {
            if m.mount_type() == "ssh" {
                RunMount::Ssh {
                    target: m.target().map(str::to_string),
                }
            } else {
                let spec = m
                    .fields
                    .iter()
                    .map(|(k, v)| {
                        if v.is_empty() {
                            k.clone()
                        } else {
                            format!("{k}={v}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                RunMount::Other { spec }
            }
        })
        .collect();
    Ok(JobInstruction::Run {
        command,
        prepend_shell,
        env: args
            .iter()
            .map(|(name, value)| JobKeyValue {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        network,
    })
}
