//! Dockerfile text → logical lines, the way BuildKit's parser reads it.
//!
//! - Parser directives (`# syntax=…`, `# escape=…`, `# check=…`) are recognised only before
//!   anything else; the first other line (comment, blank line, instruction) ends them.
//! - The escape character (`\`, or `` ` `` with `# escape=`` ` ``) at the end of a line, before
//!   optional spaces and tabs, continues the instruction on the next line; the escape character
//!   and the line break are removed, leading whitespace of continuation lines is kept.
//! - Comment lines (first non-blank character `#`) are dropped, also inside a continuation;
//!   blank continuation lines are skipped.
//! - `RUN`, `COPY` and `ADD` (also under `ONBUILD`) in shell form may carry heredocs
//!   (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`): the following lines up to the terminator are the
//!   body and are not parsed as instructions.

use super::DockerfileError;

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word, unquoted.
    pub name: String,
    /// The body, every line with its line break; leading tabs removed for `<<-`.
    pub content: String,
    /// Variables in the body are expanded (the terminator was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped.
    pub chomp: bool,
    /// The file descriptor before `<<` (0 when absent).
    pub fd: u32,
}

/// One instruction's text after continuation joining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based line where the instruction starts.
    pub start_line: usize,
    /// 1-based line where it ends (heredoc bodies included).
    pub end_line: usize,
    /// The joined text (BuildKit's `Node.Original`), trimmed.
    pub text: String,
    /// Heredocs, in the order they appear.
    pub heredocs: Vec<Heredoc>,
}

/// The lexed file.
#[derive(Debug, Clone)]
pub struct Lexed {
    /// The escape character.
    pub escape: char,
    /// Parser directives found at the top, lower-case name → value.
    pub directives: Vec<(String, String)>,
    /// Instructions in order.
    pub lines: Vec<LogicalLine>,
}

/// Splits into physical lines, each without its `\n`/`\r\n` ending.
fn physical_lines(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.split('\n').collect();
    if text.ends_with('\n') {
        v.pop();
    }
    v.into_iter()
        .map(|l| l.trim_end_matches(['\r', '\n']))
        .collect()
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// BuildKit's continuation regex `([^E])E[ \t]*$|^E[ \t]*$` for escape character `E`: returns
/// the line without the continuation marker, and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape)
        && (before.is_empty() || !before.ends_with(escape))
    {
        return (before.to_string(), false);
    }
    (line.to_string(), true)
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn parse_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_end = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    let key = &rest[..key_end];
    if key.is_empty() || !key.as_bytes()[0].is_ascii_alphabetic() {
        return None;
    }
    let value = rest[key_end..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.to_string()))
}

/// Instructions whose shell form may carry heredocs.
fn can_contain_heredoc(text: &str) -> bool {
    let mut words = text.split_whitespace();
    let mut kw = words.next().unwrap_or("").to_ascii_uppercase();
    if kw == "ONBUILD" {
        kw = words.next().unwrap_or("").to_ascii_uppercase();
    }
    if !matches!(kw.as_str(), "RUN" | "COPY" | "ADD") {
        return false;
    }
    // JSON (exec) form never has heredocs.
    let rest = super::parse::split_flags(super::parse::after_keyword(text), '\\').1;
    !(rest.starts_with('[') && serde_json::from_str::<Vec<String>>(rest).is_ok())
}

/// Words split at unquoted whitespace, quotes and escapes kept (BuildKit's heredoc scan).
fn raw_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                } else if c == '\\'
                    && q == '"'
                    && let Some(n) = chars.next()
                {
                    word.push(n);
                }
            }
            None => {
                if c.is_whitespace() {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                    continue;
                }
                in_word = true;
                word.push(c);
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if c == '\\'
                    && let Some(n) = chars.next()
                {
                    word.push(n);
                }
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// `^(\d*)<<(-?)([^<]*)$` on one raw word, then the terminator unquoted.
fn heredoc_from_word(word: &str) -> Option<Heredoc> {
    let lt = word.find("<<")?;
    let fd_str = &word[..lt];
    if !fd_str.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &word[lt + 2..];
    let chomp = rest.starts_with('-');
    if chomp {
        rest = &rest[1..];
    }
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let quoted = rest.contains(['\'', '"']);
    let name = super::shell::process_word(rest, &super::shell::NoEnv, '\\').ok()?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some(Heredoc {
        name,
        content: String::new(),
        expand: !quoted,
        chomp,
        fd: fd_str.parse().unwrap_or(0),
    })
}

/// Lexes a Dockerfile; `file` names it in errors.
pub fn lex(file: &str, text: &str) -> Result<Lexed, DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = physical_lines(text);
    let mut escape = '\\';
    let mut directives: Vec<(String, String)> = Vec::new();
    let mut directives_done = false;
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let token = raw.trim_start();
        if !directives_done {
            match parse_directive(token) {
                Some((k, v)) if matches!(k.as_str(), "syntax" | "escape" | "check") => {
                    if directives.iter().any(|(dk, _)| *dk == k) {
                        return Err(DockerfileError::Syntax {
                            file: file.into(),
                            line: i + 1,
                            message: format!("only one {k} parser directive can be used"),
                        });
                    }
                    if k == "escape" {
                        escape = match v.as_str() {
                            "\\" => '\\',
                            "`" => '`',
                            _ => {
                                return Err(DockerfileError::Syntax {
                                    file: file.into(),
                                    line: i + 1,
                                    message: format!(
                                        "invalid escape token '{v}' does not match ` or \\"
                                    ),
                                });
                            }
                        };
                    }
                    directives.push((k, v));
                    i += 1;
                    continue;
                }
                _ => directives_done = true,
            }
        }
        let token = if is_comment(token) { "" } else { token };
        i += 1;
        let start_line = i;
        let (first, mut eol) = trim_continuation(token, escape);
        if eol && first.is_empty() {
            continue;
        }
        let mut buf = first;
        while !eol && i < lines.len() {
            let raw = lines[i];
            i += 1;
            if is_comment(raw) || raw.trim().is_empty() {
                continue;
            }
            let (part, end) = trim_continuation(raw, escape);
            buf.push_str(&part);
            eol = end;
        }
        let text_line = buf.trim().to_string();
        let mut heredocs = Vec::new();
        if text_line.contains("<<") && can_contain_heredoc(&text_line) {
            for word in raw_words(&text_line) {
                let Some(mut doc) = heredoc_from_word(&word) else {
                    continue;
                };
                let mut terminated = false;
                while i < lines.len() {
                    let body_line = lines[i];
                    i += 1;
                    let candidate = if doc.chomp {
                        body_line.trim_start_matches('\t')
                    } else {
                        body_line
                    };
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    let kept = if doc.chomp { candidate } else { body_line };
                    doc.content.push_str(kept);
                    doc.content.push('\n');
                }
                if !terminated {
                    return Err(DockerfileError::Syntax {
                        file: file.into(),
                        line: start_line,
                        message: format!("unterminated heredoc {:?}", doc.name),
                    });
                }
                heredocs.push(doc);
            }
        }
        out.push(LogicalLine {
            start_line,
            end_line: i,
            text: text_line,
            heredocs,
        });
    }
    Ok(Lexed {
        escape,
        directives,
        lines: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        lex("Dockerfile", src)
            .unwrap()
            .lines
            .into_iter()
            .map(|l| l.text)
            .collect()
    }

    #[test]
    fn joins_continuations_and_drops_comments() {
        let src = "FROM a\n  RUN echo 1 \\\n  # inner comment\n\n    && echo 2  \nCMD x\n# tail\n";
        // Continuation lines keep their leading whitespace.
        assert_eq!(texts(src), ["FROM a", "RUN echo 1     && echo 2", "CMD x"]);
        // Spaces after the escape character still continue the line.
        assert_eq!(texts("RUN a\\  \t\n b\n"), ["RUN a b"]);
        let l = lex("Dockerfile", src).unwrap();
        assert_eq!((l.lines[1].start_line, l.lines[1].end_line), (2, 5));
    }

    #[test]
    fn escaped_escape_does_not_continue() {
        assert_eq!(texts("RUN a \\\\\nRUN b\n"), ["RUN a \\\\", "RUN b"]);
    }

    #[test]
    fn directives_only_at_the_top() {
        let l = lex(
            "Dockerfile",
            "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN x `\n  y\n# escape=\\\n",
        )
        .unwrap();
        assert_eq!(l.escape, '`');
        assert_eq!(l.directives.len(), 2);
        assert_eq!(l.lines[1].text, "RUN x   y");
        // After a comment, `# escape=` is just a comment.
        let l = lex("Dockerfile", "# hello\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(l.escape, '\\');
        // A blank line ends the directives too.
        let l = lex("Dockerfile", "\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(l.escape, '\\');
    }

    #[test]
    fn duplicate_and_bad_directives_are_errors() {
        let e = lex("Dockerfile", "# escape=`\n# escape=`\nFROM a\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(lex("Dockerfile", "# escape=x\nFROM a\n").is_err());
    }

    #[test]
    fn heredoc_bodies_are_not_instructions() {
        let src = "FROM a\nRUN <<EOF\nFROM evil\nEOF\nCOPY <<-'END' /x\n\tline $A\n\tEND\nRUN cat <<A 3<<B\na\nA\nb\nB\n";
        let l = lex("Dockerfile", src).unwrap();
        assert_eq!(l.lines.len(), 4);
        assert_eq!(l.lines[1].heredocs[0].content, "FROM evil\n");
        let d = &l.lines[2].heredocs[0];
        assert_eq!(
            (d.name.as_str(), d.content.as_str(), d.expand, d.chomp),
            ("END", "line $A\n", false, true)
        );
        assert_eq!(l.lines[3].heredocs.len(), 2);
        assert_eq!(l.lines[3].heredocs[1].fd, 3);
        assert_eq!(l.lines[3].end_line, 12);
    }

    #[test]
    fn unterminated_heredoc_names_the_line() {
        let e = lex("Dockerfile", "FROM a\nRUN <<EOF\necho\n").unwrap_err();
        assert!(
            e.to_string().contains("Dockerfile") && e.to_string().contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn json_form_and_quoted_shift_are_not_heredocs() {
        let l = lex(
            "Dockerfile",
            "FROM a\nRUN [\"sh\", \"-c\", \"cat <<EOF\"]\nRUN echo \"a<<b\"\n",
        )
        .unwrap();
        assert!(l.lines.iter().all(|l| l.heredocs.is_empty()));
    }
}
