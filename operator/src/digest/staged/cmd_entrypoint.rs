//! `CMD` (`"Cmd", args..., "PrependShell", bool`) and `ENTRYPOINT` (`"Entrypoint", ...`),
//! unexpanded as Docker keeps them.

use super::{Step, command_parts};
use crate::dockerfile::{Command, Instruction};
use kiln_crds::job::Instruction as JobInstruction;

/// A `CMD` or `ENTRYPOINT` stage.
pub(super) fn step(ins: &Instruction, c: &Command) -> Step {
    let (cmd, prepend) = command_parts(c);
    let is_cmd = ins.keyword == "CMD";
    let mut deps = vec![if is_cmd { "Cmd" } else { "Entrypoint" }.to_string()];
    deps.extend(cmd.iter().cloned());
    deps.push("PrependShell".into());
    deps.push(prepend.to_string());
    let job = if is_cmd {
        JobInstruction::Cmd {
            command: cmd,
            prepend_shell: prepend,
        }
    } else {
        JobInstruction::Entrypoint {
            command: cmd,
            prepend_shell: prepend,
        }
    };
    Step {
        deps,
        text: None,
        job: Ok(job),
    }
}
