//! Go `text/template` lexer: text, `{{ }}` actions with `{{-`/`-}}` whitespace trimming,
//! `/* */` comments, and the tokens inside actions. Positions are byte offsets into the
//! template source (turned into line:column only when an error is reported).

use super::error::{Located, Phase};

/// One token of an action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Text outside actions, already trimmed by neighbouring trim markers.
    Text(String),
    /// `{{` (with or without trim marker).
    Open,
    /// `}}` (with or without trim marker).
    Close,
    /// A function name or keyword (`if`, `range`, `end`, `and`, `include`...).
    Ident(String),
    /// `.Name` (without the dot).
    Field(String),
    /// `$name` (`$` alone is `"$"`).
    Var(String),
    /// `.` alone.
    Dot,
    /// A string constant, unquoted.
    Str(String),
    /// A numeric constant as written (or a char constant's code point).
    Number(String),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `|`.
    Pipe,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `,` (in `range $i, $v :=`).
    Comma,
}

/// A token with its position and whether whitespace precedes it (Go separates arguments
/// with spaces and chains fields without: `.a.b` vs `.a .b`).
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
    pub space_before: bool,
}

/// Splits `src` into tokens; errors carry the byte offset.
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, Located> {
    let mut out = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    let mut trim_next_text = false;
    while i <= bytes.len() {
        let open = src[i..].find("{{").map(|o| i + o);
        let text_end = open.unwrap_or(bytes.len());
        let mut text = &src[i..text_end];
        if trim_next_text {
            text = text.trim_start_matches(is_space);
        }
        let Some(open) = open else {
            push_text(&mut out, text, i);
            break;
        };
        let mut j = open + 2;
        let left_trim = bytes.get(j) == Some(&b'-')
            && bytes.get(j + 1).is_some_and(|b| is_space(char::from(*b)));
        if left_trim {
            text = text.trim_end_matches(is_space);
            j += 2;
        }
        push_text(&mut out, text, i);
        // Comment: `{{/* ... */}}`, the comment right after the delimiter (and its spaces).
        let after_space = j + count_spaces(&src[j..]);
        if src[if left_trim { after_space } else { j }..].starts_with("/*") {
            let start = if left_trim { after_space } else { j };
            let Some(end) = src[start + 2..].find("*/").map(|e| start + 2 + e + 2) else {
                return Err(Located::new(open, Phase::Parse, "unclosed comment"));
            };
            let (close_len, right_trim) = close_at(src, end).ok_or_else(|| {
                Located::new(open, Phase::Parse, "comment ends before closing delimiter")
            })?;
            trim_next_text = right_trim;
            i = end + close_len;
            continue;
        }
        out.push(Token {
            tok: Tok::Open,
            pos: open,
            space_before: false,
        });
        let (next, right_trim) = lex_action(src, j, &mut out)?;
        trim_next_text = right_trim;
        i = next;
    }
    Ok(out)
}

fn push_text(out: &mut Vec<Token>, text: &str, pos: usize) {
    if !text.is_empty() {
        out.push(Token {
            tok: Tok::Text(text.to_string()),
            pos,
            space_before: false,
        });
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn count_spaces(s: &str) -> usize {
    s.len() - s.trim_start_matches(is_space).len()
}

/// At `at` (after optional spaces) a closing delimiter: its length from `at` and whether
/// it trims (` -}}`).
fn close_at(src: &str, at: usize) -> Option<(usize, bool)> {
    let spaces = count_spaces(&src[at..]);
    let rest = &src[at + spaces..];
    if spaces > 0 && rest.starts_with("-}}") {
        return Some((spaces + 3, true));
    }
    if rest.starts_with("}}") {
        return Some((spaces + 2, false));
    }
    None
}

/// Lexes the inside of one action from `start`; returns the offset after `}}` and whether
/// the action trims the following text.
fn lex_action(src: &str, start: usize, out: &mut Vec<Token>) -> Result<(usize, bool), Located> {
    let bytes = src.as_bytes();
    let mut i = start;
    let mut space_before = true;
    let mut parens = 0usize;
    loop {
        if let Some((len, trim)) = close_at(src, i) {
            if parens > 0 {
                return Err(Located::new(i, Phase::Parse, "unclosed left paren"));
            }
            out.push(Token {
                tok: Tok::Close,
                pos: i,
                space_before: false,
            });
            return Ok((i + len, trim));
        }
        let Some(&b) = bytes.get(i) else {
            return Err(Located::new(i, Phase::Parse, "unclosed action"));
        };
        let c = char::from(b);
        if is_space(c) {
            i += 1;
            space_before = true;
            continue;
        }
        let pos = i;
        let tok = match b {
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b'(' => {
                i += 1;
                parens += 1;
                Tok::LParen
            }
            b')' => {
                if parens == 0 {
                    return Err(Located::new(i, Phase::Parse, "unexpected right paren"));
                }
                parens -= 1;
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'"' => {
                let (s, next) = lex_quoted(src, i)?;
                i = next;
                Tok::Str(s)
            }
            b'`' => {
                let Some(end) = src[i + 1..].find('`') else {
                    return Err(Located::new(
                        i,
                        Phase::Parse,
                        "unterminated raw quoted string",
                    ));
                };
                let s = src[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Str(s)
            }
            b'\'' => {
                let (c, next) = lex_char(src, i)?;
                i = next;
                Tok::Number((c as u32).to_string())
            }
            b'$' => {
                let end = ident_end(src, i + 1);
                let name = src[i..end].to_string();
                i = end;
                Tok::Var(name)
            }
            b'.' => {
                if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    let end = number_end(src, i);
                    let n = src[i..end].to_string();
                    i = end;
                    Tok::Number(n)
                } else {
                    let end = ident_end(src, i + 1);
                    if end == i + 1 {
                        i += 1;
                        Tok::Dot
                    } else {
                        let name = src[i + 1..end].to_string();
                        i = end;
                        Tok::Field(name)
                    }
                }
            }
            b'0'..=b'9' | b'+' | b'-' => {
                let end = number_end(src, i);
                if end == i || (end == i + 1 && !b.is_ascii_digit()) {
                    return Err(Located::new(
                        i,
                        Phase::Parse,
                        format!("bad character {:?}", c),
                    ));
                }
                let n = src[i..end].to_string();
                i = end;
                Tok::Number(n)
            }
            _ if c == '_' || c.is_ascii_alphabetic() || b >= 0x80 => {
                let end = ident_end(src, i);
                if end == i {
                    return Err(Located::new(i, Phase::Parse, "bad character in action"));
                }
                let word = &src[i..end];
                i = end;
                match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    _ => Tok::Ident(word.to_string()),
                }
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or(' ');
                return Err(Located::new(
                    i,
                    Phase::Parse,
                    format!("unexpected {ch:?} in command"),
                ));
            }
        };
        out.push(Token {
            tok,
            pos,
            space_before,
        });
        space_before = false;
    }
}

fn ident_end(src: &str, from: usize) -> usize {
    let mut end = from;
    for (k, c) in src[from..].char_indices() {
        if c == '_' || c.is_alphanumeric() {
            end = from + k + c.len_utf8();
        } else {
            break;
        }
    }
    end
}

/// The end of a Go number literal at `from` (sign, digits, `_`, `.`, exponent, hex).
fn number_end(src: &str, from: usize) -> usize {
    let bytes = src.as_bytes();
    let mut i = from;
    if matches!(bytes.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut prev_exp = false;
    while let Some(&b) = bytes.get(i) {
        let ok = b.is_ascii_alphanumeric()
            || b == b'_'
            || b == b'.'
            || (prev_exp && (b == b'+' || b == b'-'));
        if !ok {
            break;
        }
        let hex = src[from..i].contains(['x', 'X']);
        prev_exp = matches!(b, b'e' | b'E') && !hex || matches!(b, b'p' | b'P');
        i += 1;
    }
    i
}

fn lex_quoted(src: &str, start: usize) -> Result<(String, usize), Located> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '"' => return Ok((out, start + 1 + k + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let code = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        match code {
                            Some(c) => out.push(c),
                            None => {
                                return Err(Located::new(
                                    start,
                                    Phase::Parse,
                                    "bad escape in string",
                                ));
                            }
                        }
                    }
                    _ => {
                        return Err(Located::new(
                            start,
                            Phase::Parse,
                            format!("unknown escape sequence \\{e}"),
                        ));
                    }
                }
            }
            _ => out.push(c),
        }
    }
    Err(Located::new(
        start,
        Phase::Parse,
        "unterminated quoted string",
    ))
}

fn lex_char(src: &str, start: usize) -> Result<(char, usize), Located> {
    let rest = &src[start + 1..];
    let mut chars = rest.char_indices();
    let bad = || Located::new(start, Phase::Parse, "bad character constant");
    let (_, c) = chars.next().ok_or_else(bad)?;
    let c = if c == '\\' {
        let (_, e) = chars.next().ok_or_else(bad)?;
        match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '\\' => '\\',
            '\'' => '\'',
            _ => return Err(bad()),
        }
    } else {
        c
    };
    match chars.next() {
        Some((k, '\'')) => Ok((c, start + 1 + k + 1)),
        _ => Err(bad()),
    }
}
