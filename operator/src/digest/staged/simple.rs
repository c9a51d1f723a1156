//! One-field instructions: `EXPOSE` `"Ports"`, `VOLUME` `"Volumes"`, `USER` `"User"`, `WORKDIR`
//! `"Path"`, `STOPSIGNAL` `"Signal"` (all expanded), `MAINTAINER` `"Maintainer"`, `SHELL`
//! `"Shell"`, `ONBUILD` `"Expression"` (as written).

use super::{Ctx, Scope, Step};
use crate::digest::DigestError;
use crate::dockerfile::{Args, Instruction};
use kiln_crds::job::Instruction as JobInstruction;

/// The stage of a one-field instruction. Any other instruction (a `FROM`, which starts a
/// Dockerfile stage and is never one of its instructions) hashes nothing and is not built.
pub(super) fn step(
    cx: &Ctx<'_, '_>,
    sc: &Scope<'_>,
    ins: &Instruction,
) -> Result<Step, DigestError> {
    let vars = sc.vars();
    let line = ins.line;
    let expand_all = |words: &[String]| -> Result<Vec<String>, DigestError> {
        words.iter().map(|w| cx.expand(line, w, &vars)).collect()
    };
    let (deps, job) = match &ins.args {
        Args::Expose(ports) => {
            let ports = expand_all(ports)?;
            let mut deps = vec!["Ports".to_string()];
            deps.extend(ports.iter().cloned());
            (deps, JobInstruction::Expose { ports })
        }
        Args::Volume(v) => {
            let paths = expand_all(v)?;
            let mut deps = vec!["Volumes".to_string()];
            deps.extend(paths.iter().cloned());
            (deps, JobInstruction::Volume { paths })
        }
        Args::User(u) => {
            let user = cx.expand(line, u, &vars)?;
            (
                vec!["User".to_string(), user.clone()],
                JobInstruction::User { user },
            )
        }
        Args::Workdir(p) => {
            let path = cx.expand(line, p, &vars)?;
            (
                vec!["Path".to_string(), path.clone()],
                JobInstruction::Workdir { path },
            )
        }
        Args::StopSignal(s) => {
            let signal = cx.expand(line, s, &vars)?;
            (
                vec!["Signal".to_string(), signal.clone()],
                JobInstruction::Stopsignal { signal },
            )
        }
        Args::Maintainer(m) => (
            vec!["Maintainer".to_string(), m.clone()],
            JobInstruction::Maintainer { name: m.clone() },
        ),
        Args::Shell(s) => {
            let mut deps = vec!["Shell".to_string()];
            deps.extend(s.iter().cloned());
            (deps, JobInstruction::Shell { shell: s.clone() })
        }
        Args::Onbuild(e) => (
            vec!["Expression".to_string(), e.clone()],
            JobInstruction::Onbuild {
                expression: e.clone(),
            },
        ),
        _ => {
            return Ok(Step {
                deps: Vec::new(),
                text: None,
                job: Err(format!("{} inside a stage", ins.keyword)),
            });
        }
    };
    Ok(Step {
        deps,
        text: None,
        job: Ok(job),
    })
}
