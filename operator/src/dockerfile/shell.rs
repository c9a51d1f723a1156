//! Dockerfile word processing: BuildKit's shell lexer in "process one word" mode (variable
//! expansion plus quote and escape removal, whitespace kept), which both BuildKit (for
//! instruction arguments) and werf (for every digest input) apply.
//!
//! Supported: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
//! `${VAR+alt}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`,
//! `${VAR%%pat}`, `${VAR/pat/repl}`, `${VAR//pat/repl}`; single quotes (literal), double quotes
//! (expansion inside; `\"`, `\$` and `\\` escapes), and the escape character outside quotes.
//! Unset variables expand to `""`.

use std::collections::HashMap;

/// A word that cannot be processed (unterminated quote, bad substitution, `${X:?}` on an
/// unset variable). The message follows BuildKit's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShellError(pub String);

/// Variables visible to expansion.
pub trait Env {
    /// The value, `None` when unset.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Env for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(String::as_str)
    }
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _: &str) -> Option<&str> {
        None
    }
}

/// BuildKit's `ShellLex.ProcessWord` with escape character `escape`: expands variables from
/// `env` and removes quotes and escapes, keeping whitespace as it is.
pub fn process_word(word: &str, env: &dyn Env, escape: char) -> Result<String, ShellError> {
    let mut lx = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        env,
        escape,
    };
    lx.process_stop_on(None, false)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    escape: char,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<String, ShellError> {
        let mut out = String::new();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok(out);
            }
            match ch {
                '\'' => out.push_str(&self.single_quote()?),
                '"' => out.push_str(&self.double_quote()?),
                '$' => out.push_str(&self.dollar()?),
                _ => {
                    let mut c = self.next().expect("peeked");
                    if c == self.escape {
                        if raw_escapes {
                            out.push(c);
                        }
                        match self.next() {
                            Some(n) => c = n,
                            None => break,
                        }
                    }
                    out.push(c);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(ShellError(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok(out)
    }

    fn single_quote(&mut self) -> Result<String, ShellError> {
        self.next();
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ShellError(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    ));
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ShellError> {
        self.next();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ShellError(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    ));
                }
                Some('"') => {
                    self.next();
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(_) => {
                    let mut c = self.next().expect("peeked");
                    if c == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                c = self.next().expect("peeked");
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ShellError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.env.get(&name).unwrap_or("").to_string());
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError("syntax error: missing '}'".into())),
            Some('{' | '}' | ':') => {
                return Err(ShellError("syntax error: bad substitution".into()));
            }
            _ => {}
        }
        let name = self.name();
        let Some(mut ch) = self.next() else {
            return Err(ShellError("syntax error: missing '}'".into()));
        };
        let mut modifier = ch.to_string();
        let value = self.env.get(&name).map(str::to_string);
        match ch {
            '}' => Ok(value.unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    ch = self
                        .next()
                        .ok_or_else(|| ShellError("syntax error: missing '}'".into()))?;
                    modifier.push(ch);
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(ShellError(format!(
                        "unsupported modifier ({modifier}) in substitution"
                    )));
                }
                let word = self.process_stop_on(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        ShellError("syntax error: missing '}'".into())
                    } else {
                        e
                    }
                })?;
                let set = value.is_some();
                let v = value.unwrap_or_default();
                let unset_like = !set || (null_is_unset && v.is_empty());
                match ch {
                    '-' => Ok(if unset_like { word } else { v }),
                    '+' => Ok(if unset_like { String::new() } else { word }),
                    '?' => {
                        if !set {
                            let m = if word.is_empty() {
                                "is not allowed to be unset".to_string()
                            } else {
                                word
                            };
                            Err(ShellError(format!("{name}: {m}")))
                        } else if null_is_unset && v.is_empty() {
                            let m = if word.is_empty() {
                                "is not allowed to be empty".to_string()
                            } else {
                                word
                            };
                            Err(ShellError(format!("{name}: {m}")))
                        } else {
                            Ok(v)
                        }
                    }
                    '#' | '%' => {
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        Ok(trim_pattern(&v, &pat, ch == '#', greedy))
                    }
                    _ => Err(ShellError(format!(
                        "unsupported modifier ({modifier}) in substitution"
                    ))),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pat = self.process_stop_on(Some('/'), true)?;
                let repl = self.process_stop_on(Some('}'), true)?;
                Ok(replace_pattern(
                    &value.unwrap_or_default(),
                    &pat,
                    &repl,
                    all,
                ))
            }
            _ => Err(ShellError(format!(
                "unsupported modifier ({modifier}) in substitution"
            ))),
        }
    }
}

fn shell_match(pat: &str, s: &str) -> bool {
    crate::source::path_matcher::match_component(pat, s)
}

/// `${v#p}`/`${v##p}` (prefix) and `${v%p}`/`${v%%p}` (suffix) removal.
fn trim_pattern(v: &str, pat: &str, prefix: bool, greedy: bool) -> String {
    let idx: Vec<usize> = v.char_indices().map(|(i, _)| i).chain([v.len()]).collect();
    if prefix {
        let order: Box<dyn Iterator<Item = &usize>> = if greedy {
            Box::new(idx.iter().rev())
        } else {
            Box::new(idx.iter())
        };
        for &i in order {
            if shell_match(pat, &v[..i]) {
                return v[i..].to_string();
            }
        }
    } else {
        let order: Box<dyn Iterator<Item = &usize>> = if greedy {
            Box::new(idx.iter())
        } else {
            Box::new(idx.iter().rev())
        };
        for &i in order {
            if shell_match(pat, &v[i..]) {
                return v[..i].to_string();
            }
        }
    }
    v.to_string()
}

/// `${v/p/r}` (first, leftmost-longest match) and `${v//p/r}` (all matches).
fn replace_pattern(v: &str, pat: &str, repl: &str, all: bool) -> String {
    let idx: Vec<usize> = v.char_indices().map(|(i, _)| i).chain([v.len()]).collect();
    let mut out = String::new();
    let mut k = 0;
    while k < idx.len() {
        let start = idx[k];
        let found = idx[k..]
            .iter()
            .rev()
            .find(|&&end| end > start && shell_match(pat, &v[start..end]));
        match found {
            Some(&end) => {
                out.push_str(repl);
                if !all {
                    out.push_str(&v[end..]);
                    return out;
                }
                k = idx.iter().position(|&i| i == end).expect("boundary");
            }
            None => {
                if k + 1 < idx.len() {
                    out.push_str(&v[start..idx[k + 1]]);
                }
                k += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        [("A", "1"), ("E", ""), ("P", "dir/sub/file.tar.gz")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pw(s: &str) -> String {
        process_word(s, &env(), '\\').unwrap()
    }

    #[test]
    fn expands_plain_and_braced_variables() {
        assert_eq!(pw("x$A-${A}y"), "x1-1y");
        assert_eq!(pw("$UNSET|${UNSET}"), "|");
        assert_eq!(pw("cost $ 5"), "cost $ 5");
    }

    #[test]
    fn expands_default_and_alternative_forms() {
        assert_eq!(pw("${UNSET:-d}"), "d");
        assert_eq!(pw("${E:-d}"), "d");
        assert_eq!(pw("${E-d}"), "");
        assert_eq!(pw("${A:-d}"), "1");
        assert_eq!(pw("${A:+alt}"), "alt");
        assert_eq!(pw("${E:+alt}"), "");
        assert_eq!(pw("${E+alt}"), "alt");
        assert_eq!(pw("${UNSET:-${A}x}"), "1x");
        assert!(process_word("${UNSET:?needed}", &env(), '\\').is_err());
    }

    #[test]
    fn trims_prefix_and_suffix_patterns() {
        assert_eq!(pw("${P#*/}"), "sub/file.tar.gz");
        assert_eq!(pw("${P##*/}"), "file.tar.gz");
        assert_eq!(pw("${P%.*}"), "dir/sub/file.tar");
        assert_eq!(pw("${P%%.*}"), "dir/sub/file");
        assert_eq!(pw("${P/sub/X}"), "dir/X/file.tar.gz");
        assert_eq!(pw("${P//[ai]/_}"), "d_r/sub/f_le.t_r.gz");
    }

    #[test]
    fn removes_quotes_and_escapes() {
        assert_eq!(
            pw(r#"echo "a  $A" 'b $A' c\ d \$A"#),
            "echo a  1 b $A c d $A"
        );
        assert_eq!(pw(r#""q\"x\y""#), r#"q"x\y"#);
        assert_eq!(process_word("a`$A", &env(), '`').unwrap(), "a$A");
    }

    #[test]
    fn reports_unterminated_quotes_and_bad_substitutions() {
        assert!(process_word("it's", &env(), '\\').is_err());
        assert!(process_word("\"open", &env(), '\\').is_err());
        assert!(process_word("${A", &env(), '\\').is_err());
        assert!(process_word("${}", &env(), '\\').is_err());
        assert!(process_word("${A B}", &env(), '\\').is_err());
    }
}
