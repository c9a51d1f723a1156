//! `ARG` (feeds expansion only, no stage), `ENV` (`"Env", k, v, ...`) and `LABEL`
//! (`"Labels", k, v, ...`), keys and values expanded.

use super::{Ctx, Scope, Step};
use crate::digest::DigestError;
use crate::dockerfile::{Instruction, KeyValue};
use kiln_crds::job::{Instruction as JobInstruction, KeyValue as JobKeyValue};

/// Records an `ARG`'s value in the scope: dependency build arg > werf.yaml `args` > the
/// default expanded > the meta arg of the same name.
pub(super) fn arg(
    cx: &Ctx<'_, '_>,
    sc: &mut Scope<'_>,
    ins: &Instruction,
    kvs: &[KeyValue],
) -> Result<(), DigestError> {
    for kv in kvs {
        let vars = sc.vars();
        let k = cx.expand(ins.line, &kv.key, &vars)?;
        let v = if let Some(v) = cx
            .input
            .dependency_args
            .get(&k)
            .or_else(|| cx.input.args.get(&k))
        {
            Some(v.clone())
        } else if let Some(raw) = &kv.value {
            Some(cx.expand(ins.line, raw, &vars)?)
        } else {
            cx.meta.get(&k).cloned()
        };
        if let Some(v) = v {
            sc.args.insert(k, v);
        }
    }
    Ok(())
}

/// An `ENV` or `LABEL` stage; an `ENV` also enters the scope's variables and image environment.
pub(super) fn step(
    cx: &Ctx<'_, '_>,
    sc: &mut Scope<'_>,
    ins: &Instruction,
    kvs: &[(String, String)],
) -> Result<Step, DigestError> {
    let is_env = ins.keyword == "ENV";
    let mut pairs = Vec::new();
    {
        let vars = sc.vars();
        for (k, v) in kvs {
            pairs.push((
                cx.expand(ins.line, k, &vars)?,
                cx.expand(ins.line, v, &vars)?,
            ));
        }
    }
    let mut deps = Vec::new();
    if !pairs.is_empty() {
        deps.push(if is_env { "Env" } else { "Labels" }.to_string());
        for (k, v) in &pairs {
            deps.push(k.clone());
            deps.push(v.clone());
        }
    }
    let text = format!(
        "{} {}",
        ins.keyword,
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let values: Vec<JobKeyValue> = pairs
        .iter()
        .map(|(name, value)| JobKeyValue {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    let job = if is_env {
        JobInstruction::Env { vars: values }
    } else {
        JobInstruction::Label { labels: values }
    };
    if is_env {
        for (k, v) in pairs {
            sc.envs.insert(k.clone(), v.clone());
            sc.image_env.insert(k, v);
        }
    }
    Ok(Step {
        deps,
        text: Some(text),
        job: Ok(job),
    })
}
