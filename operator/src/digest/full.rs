//! The non-staged `dockerfile` stage (`werf: pkg/build/stage/full_dockerfile.go`,
//! `FullDockerfileStage.GetDependencies`): one stage for the whole Dockerfile build.
//!
//! Its dependencies string is SHA-256 hex over the `:::`-joined list:
//! - for each Dockerfile stage, its own list:
//!   1. every `addHost` entry;
//!   2. the `FROM` base expanded with the meta args (`ARG`s before the first `FROM`, valued
//!      dependency build arg > werf.yaml `args` > Dockerfile default, merged over the platform
//!      meta args `TARGETPLATFORM`…`BUILDVARIANT`); empty is an error;
//!   3. per instruction:
//!      - `ARG k[=v]`: `"ARG k=v"`, the value from dependency args > `args` > the default
//!        expanded with the stage's variables, or, for an empty default, the meta arg's value;
//!      - `ENV k=v`: `"ENV k=v"`, expanded;
//!      - `ADD`: the instruction text as written, then the files checksum of its sources
//!        ([`super::context::BuildContext::files_checksum`]);
//!      - `COPY`: the text as written, then (without `--from`) the files checksum;
//!      - `ONBUILD x`: the text `x` (and `x`'s own inputs go to stages built `FROM` this one);
//!      - anything else: the whole instruction text after werf's word processing (variables
//!        expanded with the stage's ARGs first, then ENVs; quotes and escapes removed);
//! - then stage lists are propagated in stage order: a stage whose `FROM` names another stage
//!   gets that stage's list (and its ONBUILD inputs) appended; `COPY --from=<stage|index>` and
//!   `RUN --mount=from=<stage|index>` append the referenced stage's list;
//! - only the target stage's list is used, followed by the cache version when set.
//!
//! Strict mode ([`super::DigestMode::Strict`]) also hashes what werf leaves out although it
//! changes the image (`docs/werf-compatibility.md`): per instruction, each heredoc body and
//! the instruction text as written when werf's quote removal loses word boundaries; file modes
//! and paths in the files checksum; and a `FROM ${ARG}` that names a stage after expansion
//! propagates that stage's list (werf compares the `FROM` text as written with stage names).

use std::collections::{BTreeMap, BTreeSet};

use super::context::BuildContext;
use super::{DigestError, DigestMode, DockerfileImageInput, Loaded, platform};
use crate::dockerfile::shell::{self, Env};
use crate::dockerfile::{Args, Dockerfile, Instruction};

/// A stage's variables: werf looks ARGs up before ENVs (`toArgsArray` keeps the first key).
pub(crate) struct StageVars<'a> {
    pub args: Option<&'a BTreeMap<String, String>>,
    pub envs: &'a BTreeMap<String, String>,
}

impl Env for StageVars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.args
            .and_then(|a| a.get(name))
            .or_else(|| self.envs.get(name))
            .map(String::as_str)
    }
}

/// Characters whose quoting or escaping matters to a shell or to a JSON array: removing the
/// quotes around them (as werf's word processing does) can make two different instructions
/// look the same.
const QUOTE_SIGNIFICANT: &[char] = &[
    ';', '&', '|', '<', '>', '(', ')', '$', '`', '*', '?', '[', ']', '{', '}', '#', '~', '!', '"',
    '\'', ',', '\\',
];

/// Whether werf's quote removal on `text` loses information: a quoted or escaped character is
/// whitespace or shell/JSON-significant.
pub(crate) fn quoting_significant(text: &str) -> bool {
    let mut chars = text.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(q) => {
                let c = if c == '\\' && q == '"' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                };
                if c.is_whitespace() || QUOTE_SIGNIFICANT.contains(&c) {
                    return true;
                }
            }
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '\\' => {
                if let Some(n) = chars.next()
                    && (n.is_whitespace() || QUOTE_SIGNIFICANT.contains(&n))
                {
                    return true;
                }
            }
            None => {}
        }
    }
    false
}

/// Strict mode's extra inputs for an instruction (see the module docs).
pub(crate) fn kiln_extras(ins: &Instruction, processed_whole_text: bool) -> Vec<String> {
    let mut out = Vec::new();
    if processed_whole_text && quoting_significant(&ins.original) {
        out.push(format!("kiln:original:{}", ins.original));
    }
    for h in &ins.heredocs {
        out.push(format!("kiln:heredoc:{}:{}:{}", h.fd, h.name, h.content));
    }
    out
}

/// The meta args: `ARG`s before the first `FROM` resolved in order (dependency args > `args` >
/// default expanded with the meta args resolved so far), over the platform meta args.
pub(crate) fn resolve_meta_args(
    df: &Dockerfile,
    input: &DockerfileImageInput<'_>,
    target_platform: &platform::Platform,
) -> Result<BTreeMap<String, String>, DigestError> {
    let mut resolved: BTreeMap<String, String> = BTreeMap::new();
    for ins in &df.meta_args {
        let Args::Arg(kvs) = &ins.args else { continue };
        for kv in kvs {
            let key = expand(input, df, ins.line, &kv.key, &resolved)?;
            let value = match input
                .dependency_args
                .get(&key)
                .or_else(|| input.args.get(&key))
            {
                Some(v) => v.clone(),
                None => expand(
                    input,
                    df,
                    ins.line,
                    kv.value.as_deref().unwrap_or(""),
                    &resolved,
                )?,
            };
            resolved.insert(key, value);
        }
    }
    let mut merged = platform::platform_meta_args(target_platform);
    merged.extend(resolved);
    Ok(merged)
}

/// Word processing as werf does it (always with `\` as the escape character); an error names
/// the file and line.
pub(crate) fn expand(
    input: &DockerfileImageInput<'_>,
    df: &Dockerfile,
    line: usize,
    word: &str,
    env: &dyn Env,
) -> Result<String, DigestError> {
    shell::process_word(word, env, '\\').map_err(|e| DigestError::Expansion {
        image: input.image.to_string(),
        file: df.path.clone(),
        line,
        message: format!("cannot expand {word:?}: {e}"),
    })
}

/// werf's processing of a whole instruction text. Where werf fails (an apostrophe in a shell
/// command makes an unterminated quote), Kiln keeps the text as written: werf cannot build such
/// an image, so no werf digest exists to match.
fn expand_lenient(word: &str, env: &dyn Env) -> String {
    shell::process_word(word, env, '\\').unwrap_or_else(|_| word.to_string())
}

struct StageState {
    args: BTreeMap<String, String>,
    envs: BTreeMap<String, String>,
}

struct Computer<'a, 'b> {
    loaded: &'a Loaded<'b>,
    input: &'a DockerfileImageInput<'a>,
    meta: BTreeMap<String, String>,
}

impl Computer<'_, '_> {
    fn df(&self) -> &Dockerfile {
        &self.loaded.dockerfile
    }

    fn ctx(&self) -> &BuildContext<'_> {
        &self.loaded.context
    }

    fn sources_checksum(
        &self,
        ins: &Instruction,
        sources: &[String],
        vars: &dyn Env,
    ) -> Result<String, DigestError> {
        let mut resolved = Vec::new();
        for s in sources {
            if !ins.heredocs.is_empty() && is_heredoc_source(s) {
                continue;
            }
            resolved.push(expand(self.input, self.df(), ins.line, s, vars)?);
        }
        self.ctx().check_sources_exist(&resolved, ins.line)?;
        self.ctx().files_checksum(&resolved, self.input.digest_mode)
    }

    /// The dependency strings of one instruction and its ONBUILD inputs (werf's
    /// `dockerfileInstructionDependencies`). `onbuild`: the instruction is an ONBUILD trigger,
    /// expanded with the stage's ENVs only and not recorded.
    fn instruction(
        &self,
        ins: &Instruction,
        st: &mut StageState,
        onbuild: bool,
    ) -> Result<(Vec<String>, Vec<String>), DigestError> {
        let mut deps = Vec::new();
        let mut onbuild_deps = Vec::new();
        let mut whole_text = false;
        match &ins.args {
            Args::Arg(kvs) => {
                for kv in kvs {
                    let (k, v) = {
                        let vars = StageVars {
                            args: if onbuild { None } else { Some(&st.args) },
                            envs: &st.envs,
                        };
                        let k = expand(self.input, self.df(), ins.line, &kv.key, &vars)?;
                        let raw = kv.value.clone().unwrap_or_default();
                        let v = if onbuild {
                            expand(self.input, self.df(), ins.line, &raw, &vars)?
                        } else if let Some(v) = self
                            .input
                            .dependency_args
                            .get(&k)
                            .or_else(|| self.input.args.get(&k))
                        {
                            v.clone()
                        } else if raw.is_empty() {
                            self.meta.get(&k).cloned().unwrap_or_default()
                        } else {
                            expand(self.input, self.df(), ins.line, &raw, &vars)?
                        };
                        (k, v)
                    };
                    if !onbuild {
                        st.args.insert(k.clone(), v.clone());
                    }
                    deps.push(format!("ARG {k}={v}"));
                }
            }
            Args::Env(kvs) => {
                for (key, value) in kvs {
                    let (k, v) = {
                        let vars = StageVars {
                            args: if onbuild { None } else { Some(&st.args) },
                            envs: &st.envs,
                        };
                        (
                            expand(self.input, self.df(), ins.line, key, &vars)?,
                            expand(self.input, self.df(), ins.line, value, &vars)?,
                        )
                    };
                    if !onbuild {
                        st.envs.insert(k.clone(), v.clone());
                    }
                    deps.push(format!("ENV {k}={v}"));
                }
            }
            Args::Add(c) | Args::Copy(c) => {
                deps.push(ins.original.clone());
                if ins.keyword == "ADD" || c.from.is_none() {
                    let vars = StageVars {
                        args: if onbuild { None } else { Some(&st.args) },
                        envs: &st.envs,
                    };
                    deps.push(self.sources_checksum(ins, &c.sources, &vars)?);
                }
            }
            Args::Onbuild(expr) => {
                deps.push(expr.clone());
                let trigger = Dockerfile::parse_instruction(&self.df().path, ins.line, expr)
                    .map_err(|e| DigestError::Dockerfile {
                        image: self.input.image.to_string(),
                        source: e,
                    })?;
                let (nested, _) = self.instruction(&trigger, st, true)?;
                onbuild_deps.extend(nested);
            }
            _ => {
                let vars = StageVars {
                    args: if onbuild { None } else { Some(&st.args) },
                    envs: &st.envs,
                };
                deps.push(expand_lenient(&ins.original, &vars));
                whole_text = true;
            }
        }
        if self.input.digest_mode == DigestMode::Strict {
            deps.extend(kiln_extras(ins, whole_text));
        }
        Ok((deps, onbuild_deps))
    }

    /// One Dockerfile stage's own list and ONBUILD inputs.
    fn stage(&self, index: usize) -> Result<(Vec<String>, Vec<String>), DigestError> {
        let stage = &self.df().stages[index];
        let mut deps: Vec<String> = self.input.add_hosts.to_vec();
        let base = expand(
            self.input,
            self.df(),
            stage.from.line,
            &stage.base_name,
            &self.meta,
        )?;
        if base.is_empty() {
            return Err(DigestError::InvalidBaseImage {
                image: self.input.image.to_string(),
                file: self.df().path.clone(),
                line: stage.from.line,
                base: stage.base_name.clone(),
            });
        }
        deps.push(base);
        let mut st = StageState {
            args: BTreeMap::new(),
            envs: BTreeMap::new(),
        };
        let mut onbuild = Vec::new();
        for ins in &stage.instructions {
            let (d, o) = self.instruction(ins, &mut st, false)?;
            deps.extend(d);
            onbuild.extend(o);
        }
        Ok((deps, onbuild))
    }
}

/// A COPY/ADD source that is a heredoc marker (`<<EOF`, `<<-EOF`, `3<<"EOF"`).
pub(crate) fn is_heredoc_source(s: &str) -> bool {
    let rest = s.trim_start_matches(|c: char| c.is_ascii_digit());
    match rest.strip_prefix("<<") {
        Some(r) => {
            let r = r.strip_prefix('-').unwrap_or(r);
            !r.is_empty() && !r.contains('<')
        }
        None => false,
    }
}

/// werf's stage relations for propagation: `FROM` by raw base == stage name (`from_stages`),
/// and `COPY --from` / `RUN --mount from=` after name → index resolution (`copy_stages`).
/// `expanded_bases` (strict mode): each stage's base after meta-arg expansion, compared too, so
/// that `FROM ${ARG}` naming a stage propagates it.
pub(crate) fn werf_relations(
    df: &Dockerfile,
    expanded_bases: Option<&[String]>,
) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let n = df.stages.len();
    let mut name_to_index: BTreeMap<String, usize> = BTreeMap::new();
    for s in &df.stages {
        let name = s.name.clone().unwrap_or_default();
        if name != s.index.to_string() {
            name_to_index.insert(name, s.index);
        }
    }
    let resolve = |from: &str| -> Option<usize> {
        let lower = from.to_ascii_lowercase();
        let v = match name_to_index.get(&lower) {
            Some(i) => *i,
            None => from.parse::<usize>().ok()?,
        };
        (v < n).then_some(v)
    };
    let mut from_stages = vec![Vec::new(); n];
    let mut copy_stages = vec![Vec::new(); n];
    for (i, s) in df.stages.iter().enumerate() {
        for (j, r) in df.stages.iter().enumerate() {
            let name = r.name.as_deref().unwrap_or("");
            let expanded = expanded_bases
                .and_then(|b| b.get(i))
                .is_some_and(|b| r.name.is_some() && b.to_ascii_lowercase() == name);
            if i != j && (s.base_name == name || (expanded && j < i)) {
                from_stages[i].push(j);
            }
        }
        for ins in &s.instructions {
            match &ins.args {
                Args::Copy(c) => {
                    if let Some(j) = c.from.as_deref().and_then(resolve) {
                        copy_stages[i].push(j);
                    }
                }
                Args::Run(r) => {
                    for m in &r.mounts {
                        if let Some(j) = m.from().and_then(resolve) {
                            copy_stages[i].push(j);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    (from_stages, copy_stages)
}

/// The dependency list of the `dockerfile` stage (before hashing), see the module docs.
pub(crate) fn dependency_list(
    loaded: &Loaded<'_>,
    input: &DockerfileImageInput<'_>,
) -> Result<Vec<String>, DigestError> {
    let df = &loaded.dockerfile;
    let meta = resolve_meta_args(df, input, &loaded.platform)?;
    let c = Computer {
        loaded,
        input,
        meta,
    };
    let expanded_bases: Option<Vec<String>> = match input.digest_mode {
        DigestMode::Werf => None,
        DigestMode::Strict => Some(
            df.stages
                .iter()
                .map(|s| expand_lenient(&s.base_name, &c.meta))
                .collect(),
        ),
    };
    let (from_stages, copy_stages) = werf_relations(df, expanded_bases.as_deref());
    // Only stages that reach the target's list are computed (werf computes all; the others
    // cannot change the digest, and BuildKit does not build them either).
    let mut needed = BTreeSet::from([loaded.target]);
    let mut queue = vec![loaded.target];
    while let Some(i) = queue.pop() {
        for &j in from_stages[i].iter().chain(copy_stages[i].iter()) {
            if needed.insert(j) {
                queue.push(j);
            }
        }
    }
    let n = df.stages.len();
    let mut lists: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut onbuild: Vec<Vec<String>> = vec![Vec::new(); n];
    for &i in &needed {
        let (d, o) = c.stage(i)?;
        lists[i] = d;
        onbuild[i] = o;
    }
    for i in 0..n {
        for &j in &from_stages[i] {
            let add: Vec<String> = lists[j].iter().chain(onbuild[j].iter()).cloned().collect();
            lists[i].extend(add);
        }
        for &j in &copy_stages[i] {
            let add = lists[j].clone();
            lists[i].extend(add);
        }
    }
    let mut out = std::mem::take(&mut lists[loaded.target]);
    if let Some(cv) = input.cache_version.filter(|v| !v.is_empty()) {
        out.push(cv.to_string());
    }
    Ok(out)
}

/// The dependencies string of the `dockerfile` stage: SHA-256 hex of [`dependency_list`].
pub(crate) fn dependencies(
    loaded: &Loaded<'_>,
    input: &DockerfileImageInput<'_>,
) -> Result<String, DigestError> {
    let list = dependency_list(loaded, input)?;
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    Ok(super::sha256_hex(&refs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_significance() {
        assert!(!quoting_significant("RUN echo hello"));
        assert!(!quoting_significant("RUN echo \"hello\""));
        assert!(!quoting_significant("CMD [\"node\", \"server.js\"]"));
        assert!(quoting_significant("RUN touch \"a b\""));
        assert!(quoting_significant("RUN echo 'a;b'"));
        assert!(quoting_significant("RUN touch a\\ b"));
        assert!(quoting_significant("CMD [\"sh\", \"-c\", \"a b\"]"));
    }
}
