//! `COPY` (`"From", from, "Sources", s..., "Dest", d, "Chown", c, "Chmod", m, "ExpandedFrom",
//! image`) and `ADD` (`"Sources", s..., "Dest", d, "Chown", c, "Chmod", m`), then
//! `"SourcesChecksum", sum` when the sources come from the context.

use super::{Ctx, Scope, Step};
use crate::digest::DigestError;
use crate::digest::context::is_remote_source;
use crate::digest::full::is_heredoc_source;
use crate::dockerfile::{CopyArgs, Instruction};
use kiln_crds::job::Instruction as JobInstruction;

/// A `COPY` or `ADD` stage. A `COPY --from=<stage>` hashes that stage's built image name.
pub(super) fn step(
    cx: &mut Ctx<'_, '_>,
    sc: &Scope<'_>,
    ins: &Instruction,
    c: &CopyArgs,
) -> Result<Step, DigestError> {
    let line = ins.line;
    let is_copy = ins.keyword == "COPY";
    let (sources, dest, chown, chmod, from) = {
        let vars = sc.vars();
        let mut sources = Vec::new();
        for s in &c.sources {
            if !ins.heredocs.is_empty() && is_heredoc_source(s) {
                continue;
            }
            sources.push(cx.expand(line, s, &vars)?);
        }
        let optional = |v: &Option<String>| -> Result<String, DigestError> {
            match v {
                Some(v) => cx.expand(line, v, &vars),
                None => Ok(String::new()),
            }
        };
        (
            sources,
            cx.expand(line, &c.dest, &vars)?,
            optional(&c.chown)?,
            optional(&c.chmod)?,
            optional(&c.from)?,
        )
    };
    let job_chown = (!chown.is_empty()).then(|| chown.clone());
    let job_chmod = (!chmod.is_empty()).then(|| chmod.clone());
    let mut deps = Vec::new();
    let mut job_from = None;
    if is_copy {
        let expanded_from = if from.is_empty() {
            String::new()
        } else {
            match cx
                .loaded
                .dockerfile
                .resolve_stage_ref(&from, sc.index, true)
            {
                Some(d) => sc.stage_image_name(cx, d),
                None => from.clone(),
            }
        };
        deps.extend(["From".to_string(), from.clone()]);
        if !from.is_empty() {
            job_from = Some(expanded_from.clone());
        }
        push_common(&mut deps, &sources, &dest, chown, chmod);
        deps.extend(["ExpandedFrom".to_string(), expanded_from]);
    } else {
        push_common(&mut deps, &sources, &dest, chown, chmod);
    }
    let context_sources: Vec<String> = sources
        .iter()
        .filter(|s| !is_remote_source(s))
        .cloned()
        .collect();
    let uses_context = !is_copy || from.is_empty();
    if uses_context && !context_sources.is_empty() {
        deps.push("SourcesChecksum".into());
        deps.push(cx.globs_checksum(&context_sources, line)?);
    }
    let text = format!("{} {} {}", ins.keyword, sources.join(" "), dest);
    let job = if !ins.heredocs.is_empty() {
        Err(format!("{} with a heredoc", ins.keyword))
    } else if c.parents || !c.exclude.is_empty() {
        Err(format!("{} --parents/--exclude", ins.keyword))
    } else if c.checksum.is_some() || c.keep_git_dir {
        Err("ADD --checksum/--keep-git-dir".to_string())
    } else if is_copy {
        Ok(JobInstruction::Copy {
            sources,
            dest,
            from: job_from,
            chown: job_chown,
            chmod: job_chmod,
        })
    } else {
        Ok(JobInstruction::Add {
            sources,
            dest,
            chown: job_chown,
            chmod: job_chmod,
        })
    };
    Ok(Step {
        deps,
        text: Some(text),
        job,
    })
}

fn push_common(
    deps: &mut Vec<String>,
    sources: &[String],
    dest: &str,
    chown: String,
    chmod: String,
) {
    deps.push("Sources".into());
    deps.extend(sources.iter().cloned());
    deps.extend([
        "Dest".to_string(),
        dest.to_string(),
        "Chown".into(),
        chown,
        "Chmod".into(),
        chmod,
    ]);
}
