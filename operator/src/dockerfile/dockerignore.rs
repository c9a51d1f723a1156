//! `.dockerignore` with Docker's rules (`moby/patternmatcher` and its `ignorefile` reader).
//!
//! Reading a file: lines starting with `#` are comments; each line is trimmed; blank lines are
//! skipped; a leading `!` makes an exception (re-include); the pattern is cleaned like Go's
//! `filepath.Clean` and a leading `/` is dropped, so `/foo`, `./foo` and `foo/` all mean `foo`.
//!
//! Matching a context-relative path: every pattern is tried in order and the last one that
//! matches decides (an exception un-excludes). A pattern matches the path itself or any of its
//! parent directories, so `node_modules` excludes everything below it. Globs: `*` and `?` stop
//! at `/`, `[...]` classes, `\` escapes, `**` matches any number of directories (including
//! none), a trailing `**` matches everything.

use regex::Regex;

use super::DockerfileError;

/// One cleaned pattern.
#[derive(Debug, Clone)]
pub struct IgnorePattern {
    /// The cleaned pattern without the `!`.
    pub text: String,
    /// `!pattern`: re-includes what earlier patterns excluded.
    pub exclusion: bool,
    regex: Regex,
}

/// Parsed `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<IgnorePattern>,
}

impl DockerIgnore {
    /// Parses the text of an ignore file; `file` names it in errors.
    ///
    /// Errors ([`DockerfileError::Dockerignore`], with the line): a bare `!`, a malformed
    /// character class.
    pub fn parse(file: &str, text: &str) -> Result<DockerIgnore, DockerfileError> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let raw = if i == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let err = |message: String| DockerfileError::Dockerignore {
                file: file.to_string(),
                line: i + 1,
                message,
            };
            if p.is_empty() {
                return Err(err(format!("illegal exclusion pattern: {raw:?}")));
            }
            patterns.push(IgnorePattern::new(p, exclusion).map_err(err)?);
        }
        Ok(DockerIgnore { patterns })
    }

    /// Appends a pattern given in file syntax (`!x` for an exception).
    pub fn push(&mut self, pattern: &str) -> Result<(), String> {
        let (exclusion, p) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        self.patterns.push(IgnorePattern::new(p, exclusion)?);
        Ok(())
    }

    /// The patterns in file order.
    pub fn patterns(&self) -> &[IgnorePattern] {
        &self.patterns
    }

    /// Whether the context-relative path (`/`-separated) is excluded from the build context.
    pub fn matches(&self, path: &str) -> bool {
        // The parent directories are the prefixes of `path` ending before each `/`.
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an excluded path, an exception cannot change a kept one.
            if p.exclusion != matched {
                continue;
            }
            let m = p.regex.is_match(path) || parents.iter().any(|parent| p.regex.is_match(parent));
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }
}

impl IgnorePattern {
    fn new(pattern: &str, exclusion: bool) -> Result<IgnorePattern, String> {
        let mut text = go_clean(pattern);
        if text.len() > 1 && text.starts_with('/') {
            text = text[1..].to_string();
        }
        let regex =
            Regex::new(&to_regex(&text)?).map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
        Ok(IgnorePattern {
            text,
            exclusion,
            regex,
        })
    }
}

/// Go's `filepath.Clean` for `/` paths.
fn go_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Translates a cleaned pattern to an anchored regular expression, as patternmatcher does.
fn to_regex(p: &str) -> Result<String, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    re.push(']');
                }
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    re.push_str(&regex::escape(&chars[i].to_string()));
                }
                '[' => re.push_str("\\["),
                _ => re.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '*' => {
                if chars.get(i + 1) == Some(&'*') {
                    i += 1;
                    if chars.get(i + 1) == Some(&'/') {
                        i += 1;
                    }
                    if i + 1 >= chars.len() {
                        re.push_str(".*");
                    } else {
                        re.push_str("(.*/)?");
                    }
                } else {
                    re.push_str("[^/]*");
                }
            }
            '?' => re.push_str("[^/]"),
            '\\' => {
                if i + 1 < chars.len() {
                    i += 1;
                    re.push_str(&regex::escape(&chars[i].to_string()));
                } else {
                    re.push_str("\\\\");
                }
            }
            '[' => {
                in_class = true;
                re.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    re.push('^');
                    i += 1;
                }
            }
            _ => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if in_class {
        return Err(format!(
            "syntax error in pattern {p:?}: unterminated character class"
        ));
    }
    re.push('$');
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> DockerIgnore {
        DockerIgnore::parse(".dockerignore", text).unwrap()
    }

    #[test]
    fn a_pattern_excludes_the_path_and_everything_below() {
        let d = ig("node_modules\n");
        assert!(d.matches("node_modules"));
        assert!(d.matches("node_modules/a/b.js"));
        assert!(!d.matches("src/node_modules"));
        assert!(!d.matches("node_modules2"));
    }

    #[test]
    fn leading_slash_dot_and_trailing_slash_are_cleaned() {
        let d = ig("/build/\n./dist\ncomments#not\n# a comment\n\n");
        assert!(d.matches("build/x"));
        assert!(d.matches("dist"));
        assert!(d.matches("comments#not"));
        assert_eq!(d.patterns().len(), 3);
    }

    #[test]
    fn exceptions_re_include_and_the_last_match_wins() {
        let d = ig("*.md\n!README.md\ndocs\n!docs/keep.md\n");
        assert!(d.matches("CHANGELOG.md"));
        assert!(!d.matches("README.md"));
        assert!(!d.matches("sub/CHANGELOG.md"), "* does not cross /");
        assert!(d.matches("docs/a.md"));
        assert!(!d.matches("docs/keep.md"));
    }

    #[test]
    fn double_star_spans_directories() {
        let d = ig("**/*.log\nsrc/**/tmp\nout/**\n");
        assert!(d.matches("a.log"));
        assert!(d.matches("x/y/a.log"));
        assert!(d.matches("src/tmp"));
        assert!(d.matches("src/a/b/tmp/f"));
        assert!(d.matches("out/a/b"));
        assert!(!d.matches("src/a/tmpx"));
    }

    #[test]
    fn classes_question_marks_and_escapes() {
        let d = ig("file?.[ch]\n[^x]y\nlit\\*\n");
        assert!(d.matches("file1.c"));
        assert!(!d.matches("file12.c"));
        assert!(d.matches("ay"));
        assert!(!d.matches("xy"));
        assert!(d.matches("lit*"));
        assert!(!d.matches("litx"));
    }

    #[test]
    fn bad_patterns_are_errors_with_the_line() {
        let e = DockerIgnore::parse("ctx/.dockerignore", "ok\n!\n").unwrap_err();
        assert!(
            e.to_string().contains("ctx/.dockerignore") && e.to_string().contains("line 2"),
            "{e}"
        );
        let e = DockerIgnore::parse(".dockerignore", "a[b\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
