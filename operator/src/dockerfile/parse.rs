//! Logical lines → typed instructions, with BuildKit's argument rules (`parser/line_parsers.go`,
//! `instructions/parse.go`): leading `--flag=value` words, JSON (exec) or shell form,
//! whitespace-separated lists for COPY/ADD/VOLUME/EXPOSE/FROM, quote-aware `key=value` words
//! for ARG/ENV/LABEL, and the legacy `ENV key value` form.

use super::lexer::LogicalLine;
use super::{
    Args, Command, CopyArgs, DockerfileError, HealthcheckArgs, Instruction, KeyValue, Mount,
    RunArgs,
};

/// The text after the instruction keyword, left-trimmed.
pub(super) fn after_keyword(line: &str) -> &str {
    let t = line.trim_start();
    match t.find(char::is_whitespace) {
        Some(i) => t[i..].trim_start(),
        None => "",
    }
}

/// BuildKit's `extractBuilderFlags`: leading words that start with `--` (quotes and `\` escapes
/// inside them removed); a bare `--` ends the flags. Returns the flags and the rest.
pub(super) fn split_flags(s: &str, _escape: char) -> (Vec<String>, &str) {
    let b: Vec<(usize, char)> = s.char_indices().collect();
    let mut flags = Vec::new();
    let mut k = 0;
    loop {
        while k < b.len() && b[k].1.is_whitespace() {
            k += 1;
        }
        if k >= b.len() {
            return (flags, "");
        }
        let starts_flag = b[k].1 == '-' && k + 1 < b.len() && b[k + 1].1 == '-';
        if !starts_flag {
            return (flags, &s[b[k].0..]);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while k < b.len() {
            let c = b[k].1;
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) if c == '\\' && k + 1 < b.len() => {
                    k += 1;
                    word.push(b[k].1);
                }
                Some(_) => word.push(c),
                None if c.is_whitespace() => break,
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c == '\\' && k + 1 < b.len() => {
                    k += 1;
                    word.push(b[k].1);
                }
                None if c == '\\' => {}
                None => word.push(c),
            }
            k += 1;
        }
        if word == "--" {
            let rest = if k < b.len() {
                s[b[k].0..].trim_start()
            } else {
                ""
            };
            return (flags, rest);
        }
        flags.push(word);
    }
}

/// BuildKit's `parseWords`: split at unquoted whitespace, keeping quotes and escapes.
pub(super) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if quote.is_none() {
            if c.is_whitespace() {
                if in_word && (blank_ok || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
                blank_ok = false;
                i += 1;
                continue;
            }
            in_word = true;
            if c == '\'' || c == '"' {
                quote = Some(c);
                blank_ok = true;
            }
            if c == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                word.push(c);
                i += 1;
                word.push(chars[i]);
                i += 1;
                continue;
            }
            word.push(c);
        } else {
            let q = quote.expect("quoted");
            if c == q {
                quote = None;
            } else if c == escape && q != '\'' {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                word.push(c);
                i += 1;
                word.push(chars[i]);
                i += 1;
                continue;
            }
            word.push(c);
        }
        i += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

fn whitespace_list(rest: &str) -> Vec<String> {
    rest.split([' ', '\t', '\x0b', '\x0c', '\r'])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

struct Ctx<'a> {
    file: &'a str,
    line: usize,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> DockerfileError {
        DockerfileError::Syntax {
            file: self.file.to_string(),
            line: self.line,
            message: message.into(),
        }
    }
}

/// JSON array of strings → `Some(list)`; anything else → `None`; an array with non-strings is
/// an error (BuildKit's `parseJSON`).
fn maybe_json(rest: &str, cx: &Ctx<'_>) -> Result<Option<Vec<String>>, DockerfileError> {
    if !rest.starts_with('[') {
        return Ok(None);
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Ok(values) => {
            let mut out = Vec::new();
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => {
                        return Err(cx.err(
                            "JSON arrays in Dockerfile instructions must contain only strings",
                        ));
                    }
                }
            }
            Ok(Some(out))
        }
        Err(_) => Ok(None),
    }
}

fn command(rest: &str, cx: &Ctx<'_>) -> Result<Command, DockerfileError> {
    Ok(match maybe_json(rest, cx)? {
        Some(list) => Command::Exec(list),
        None => Command::Shell(rest.to_string()),
    })
}

fn list(rest: &str, cx: &Ctx<'_>) -> Result<Vec<String>, DockerfileError> {
    Ok(match maybe_json(rest, cx)? {
        Some(list) => list,
        None => whitespace_list(rest),
    })
}

/// `ENV`/`LABEL` pairs: `k=v k2="v 2"` or legacy `k value with spaces`.
fn name_values(
    keyword: &str,
    rest: &str,
    escape: char,
    cx: &Ctx<'_>,
) -> Result<Vec<(String, String)>, DockerfileError> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err(cx.err(format!("{keyword} requires at least one argument")));
    }
    if !words[0].contains('=') {
        let mut parts = rest.splitn(2, [' ', '\t']);
        let k = parts.next().unwrap_or("").to_string();
        let v = parts.next().map(str::trim_start).unwrap_or("");
        if v.is_empty() {
            return Err(cx.err(format!("{keyword} must have two arguments")));
        }
        return Ok(vec![(k, v.to_string())]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(cx.err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            )));
        };
        if k.is_empty() {
            return Err(cx.err(format!("{keyword} names can not be blank")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn flag_value(flags: &[(String, Option<String>)], name: &str) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone().unwrap_or_default())
}

fn flag_bool(
    flags: &[(String, Option<String>)],
    name: &str,
    cx: &Ctx<'_>,
) -> Result<bool, DockerfileError> {
    match flag_value(flags, name) {
        None => Ok(false),
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(cx.err(format!(
            "expecting boolean value for flag --{name}, not: {v}"
        ))),
    }
}

/// Parses `--mount` values: comma-separated `key=value` fields (`ro`, `rw`, `readonly` may stand
/// alone); `type` defaults to `bind`.
fn parse_mount(value: &str, cx: &Ctx<'_>) -> Result<Mount, DockerfileError> {
    let mut fields = Vec::new();
    for field in value.split(',') {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (field.to_ascii_lowercase(), String::new()),
        };
        let known = [
            "type",
            "from",
            "source",
            "src",
            "target",
            "dst",
            "destination",
            "ro",
            "readonly",
            "rw",
            "readwrite",
            "id",
            "sharing",
            "mode",
            "uid",
            "gid",
            "required",
            "size",
            "env",
        ];
        if !known.contains(&k.as_str()) {
            return Err(cx.err(format!("unexpected key '{k}' in '{field}' of --mount")));
        }
        fields.push((k, v));
    }
    let m = Mount { fields };
    if !matches!(
        m.mount_type(),
        "bind" | "cache" | "tmpfs" | "secret" | "ssh"
    ) {
        return Err(cx.err(format!("unsupported mount type {:?}", m.mount_type())));
    }
    Ok(m)
}

fn copy_args(
    keyword: &str,
    flags: &[(String, Option<String>)],
    rest: &str,
    cx: &Ctx<'_>,
) -> Result<CopyArgs, DockerfileError> {
    let words = list(rest, cx)?;
    if words.len() < 2 {
        return Err(cx.err(format!(
            "{keyword} requires at least two arguments, but only {} provided",
            words.len()
        )));
    }
    let (dest, sources) = words.split_last().expect("two words");
    Ok(CopyArgs {
        sources: sources.to_vec(),
        dest: dest.clone(),
        from: flag_value(flags, "from").filter(|v| !v.is_empty()),
        chown: flag_value(flags, "chown").filter(|v| !v.is_empty()),
        chmod: flag_value(flags, "chmod").filter(|v| !v.is_empty()),
        link: flag_bool(flags, "link", cx)?,
        parents: flag_bool(flags, "parents", cx)?,
        exclude: flags
            .iter()
            .filter(|(n, _)| n == "exclude")
            .map(|(_, v)| v.clone().unwrap_or_default())
            .collect(),
        checksum: flag_value(flags, "checksum").filter(|v| !v.is_empty()),
        keep_git_dir: flag_bool(flags, "keep-git-dir", cx)?,
    })
}

/// The flags an instruction accepts (BuildKit rejects others).
fn allowed_flags(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "FROM" => &["platform"],
        "COPY" => &["from", "chown", "chmod", "link", "parents", "exclude"],
        "ADD" => &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "keep-git-dir",
            "exclude",
            "unpack",
        ],
        "RUN" => &["mount", "network", "security", "device"],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

/// Instructions BuildKit knows.
pub(super) const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses one logical line into an [`Instruction`].
pub(super) fn instruction(
    file: &str,
    ll: &LogicalLine,
    escape: char,
) -> Result<Instruction, DockerfileError> {
    let cx = Ctx {
        file,
        line: ll.start_line,
    };
    let word = ll.text.split_whitespace().next().unwrap_or("");
    let keyword = word.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(DockerfileError::UnknownInstruction {
            file: file.to_string(),
            line: ll.start_line,
            instruction: word.to_string(),
        });
    }
    let after = after_keyword(&ll.text);
    let (raw_flags, rest) = if keyword == "ONBUILD" {
        (Vec::new(), after)
    } else {
        split_flags(after, escape)
    };
    let allowed = allowed_flags(&keyword);
    let mut flags = Vec::new();
    for f in raw_flags {
        let body = f.trim_start_matches("--");
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        if !allowed.contains(&name.as_str()) {
            return Err(cx.err(format!("unknown flag: --{name} for {keyword}")));
        }
        flags.push((name, value));
    }
    let args = match keyword.as_str() {
        "FROM" => {
            let words = whitespace_list(rest);
            let (image, name) = match words.len() {
                1 => (words[0].clone(), None),
                3 if words[1].eq_ignore_ascii_case("as") => {
                    let name = words[2].to_ascii_lowercase();
                    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && name.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return Err(cx.err(format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                            words[2]
                        )));
                    }
                    (words[0].clone(), Some(name))
                }
                _ => return Err(cx.err("FROM requires either one or three arguments")),
            };
            Args::From {
                image,
                name,
                platform: flag_value(&flags, "platform").filter(|v| !v.is_empty()),
            }
        }
        "ARG" => {
            let words = parse_words(rest, escape);
            if words.is_empty() {
                return Err(cx.err("ARG requires at least one argument"));
            }
            let mut kvs = Vec::new();
            for w in words {
                let (k, v) = match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w, None),
                };
                if k.is_empty() {
                    return Err(cx.err("ARG names can not be blank"));
                }
                kvs.push(KeyValue { key: k, value: v });
            }
            Args::Arg(kvs)
        }
        "ENV" => Args::Env(name_values("ENV", rest, escape, &cx)?),
        "LABEL" => Args::Label(name_values("LABEL", rest, escape, &cx)?),
        "COPY" => Args::Copy(copy_args("COPY", &flags, rest, &cx)?),
        "ADD" => Args::Add(copy_args("ADD", &flags, rest, &cx)?),
        "RUN" => {
            if rest.is_empty() {
                return Err(cx.err("RUN requires at least one argument"));
            }
            let mut mounts = Vec::new();
            for (n, v) in &flags {
                if n == "mount" {
                    mounts.push(parse_mount(v.as_deref().unwrap_or(""), &cx)?);
                }
            }
            Args::Run(RunArgs {
                command: command(rest, &cx)?,
                mounts,
                network: flag_value(&flags, "network").filter(|v| !v.is_empty()),
                security: flag_value(&flags, "security").filter(|v| !v.is_empty()),
            })
        }
        "CMD" => Args::Cmd(command(rest, &cx)?),
        "ENTRYPOINT" => Args::Entrypoint(command(rest, &cx)?),
        "SHELL" => match maybe_json(rest, &cx)? {
            Some(l) if !l.is_empty() => Args::Shell(l),
            _ => return Err(cx.err("SHELL requires the arguments to be in JSON form")),
        },
        "HEALTHCHECK" => {
            let mut words = rest.splitn(2, char::is_whitespace);
            let kind = words.next().unwrap_or("").to_ascii_uppercase();
            let tail = words.next().unwrap_or("").trim_start();
            match kind.as_str() {
                "NONE" if tail.is_empty() => Args::Healthcheck(None),
                "NONE" => return Err(cx.err("HEALTHCHECK NONE takes no arguments")),
                "CMD" if !tail.is_empty() => Args::Healthcheck(Some(HealthcheckArgs {
                    command: command(tail, &cx)?,
                    interval: flag_value(&flags, "interval"),
                    timeout: flag_value(&flags, "timeout"),
                    start_period: flag_value(&flags, "start-period"),
                    start_interval: flag_value(&flags, "start-interval"),
                    retries: flag_value(&flags, "retries"),
                })),
                _ => return Err(cx.err("HEALTHCHECK requires NONE or CMD followed by a command")),
            }
        }
        "EXPOSE" => Args::Expose(whitespace_list(rest)),
        "VOLUME" => Args::Volume(list(rest, &cx)?),
        "WORKDIR" | "USER" | "STOPSIGNAL" | "MAINTAINER" => {
            if rest.is_empty() {
                return Err(cx.err(format!("{keyword} requires exactly one argument")));
            }
            match keyword.as_str() {
                "WORKDIR" => Args::Workdir(rest.to_string()),
                "USER" => Args::User(rest.to_string()),
                "STOPSIGNAL" => Args::StopSignal(rest.to_string()),
                _ => Args::Maintainer(rest.to_string()),
            }
        }
        "ONBUILD" => {
            let trigger = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match trigger.as_str() {
                "" => return Err(cx.err("ONBUILD requires at least one argument")),
                "ONBUILD" => {
                    return Err(cx.err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
                }
                "FROM" | "MAINTAINER" => {
                    return Err(cx.err(format!("{trigger} isn't allowed as an ONBUILD trigger")));
                }
                t if !KEYWORDS.contains(&t) => {
                    return Err(DockerfileError::UnknownInstruction {
                        file: file.to_string(),
                        line: ll.start_line,
                        instruction: rest.split_whitespace().next().unwrap_or("").to_string(),
                    });
                }
                _ => {}
            }
            Args::Onbuild(rest.to_string())
        }
        _ => unreachable!("keyword checked against KEYWORDS"),
    };
    Ok(Instruction {
        line: ll.start_line,
        end_line: ll.end_line,
        keyword,
        original: ll.text.clone(),
        flags,
        heredocs: ll.heredocs.clone(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_leading_double_dash_words() {
        let (f, rest) = split_flags("--from=build --chown=\"a b\" src dst", '\\');
        assert_eq!(f, ["--from=build", "--chown=a b"]);
        assert_eq!(rest, "src dst");
        let (f, rest) = split_flags("-- --notflag x", '\\');
        assert!(f.is_empty());
        assert_eq!(rest, "--notflag x");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="b c" d=e\ f 'g h'"#, '\\'),
            [r#"a="b c""#, r"d=e\ f", "'g h'"]
        );
    }
}
