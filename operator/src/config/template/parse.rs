//! Go `text/template` parser: tokens → trees of nodes. `define`/`block` make named trees;
//! `else if`/`else with` chain like Go's (one shared `end`).

use std::rc::Rc;

use super::error::{Located, Phase};
use super::lex::{Tok, Token, lex};
use super::value::Value;

/// A list of nodes (a template body or a branch).
pub(crate) type List = Vec<Node>;

/// One node of a template body.
#[derive(Debug)]
pub(crate) enum Node {
    Text(Rc<str>),
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break,
    Continue,
}

/// `if`/`with`/`range`: the pipeline, the body and the `else` body.
#[derive(Debug)]
pub(crate) struct Branch {
    pub pipe: Pipe,
    pub list: List,
    pub else_list: Option<List>,
}

/// A pipeline with its optional variable declarations (`$x :=`, `$i, $v :=`) or
/// assignment (`$x =`).
#[derive(Debug)]
pub(crate) struct Pipe {
    pub pos: usize,
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

/// One command of a pipeline: a function with arguments, or a single operand.
#[derive(Debug)]
pub(crate) struct Cmd {
    pub pos: usize,
    /// Byte offset after the command (the source slice names the node in errors).
    pub end: usize,
    pub args: Vec<Arg>,
}

/// An operand or a function name, at a position.
#[derive(Debug)]
pub(crate) struct Arg {
    pub pos: usize,
    pub term: Term,
}

/// What an operand is.
#[derive(Debug)]
pub(crate) enum Term {
    Func(String),
    Dot,
    Nil,
    Const(Value),
    /// `.a.b` on dot.
    Field(Vec<String>),
    /// `$x.a.b`.
    Var(String, Vec<String>),
    /// `(pipeline).a.b`.
    Chain(Box<Pipe>, Vec<String>),
}

/// The result of parsing one source: its body and the templates it defines.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub body: List,
    pub defines: Vec<(String, List)>,
}

struct Parser<'a> {
    toks: Vec<Token>,
    i: usize,
    end_pos: usize,
    is_func: &'a dyn Fn(&str) -> bool,
    defines: Vec<(String, List)>,
    range_depth: usize,
}

/// What ended a list.
enum Stop {
    Eof,
    End(usize),
    Else(usize),
}

/// Parses `src`; `is_func` says whether a function name is defined (Go rejects unknown
/// functions at parse time).
pub(crate) fn parse(src: &str, is_func: &dyn Fn(&str) -> bool) -> Result<Parsed, Located> {
    let mut p = Parser {
        toks: lex(src)?,
        i: 0,
        end_pos: src.len(),
        is_func,
        defines: Vec::new(),
        range_depth: 0,
    };
    let (body, stop) = p.list(true)?;
    match stop {
        Stop::Eof => Ok(Parsed {
            body,
            defines: p.defines,
        }),
        Stop::End(pos) => Err(err(pos, "unexpected {{end}}")),
        Stop::Else(pos) => Err(err(pos, "unexpected {{else}}")),
    }
}

fn err(pos: usize, message: impl Into<String>) -> Located {
    Located::new(pos, Phase::Parse, message)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end_pos, |t| t.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn expect_close(&mut self, context: &str) -> Result<(), Located> {
        match self.next() {
            Some(Token {
                tok: Tok::Close, ..
            }) => Ok(()),
            Some(t) => Err(err(t.pos, format!("unexpected {:?} in {context}", t.tok))),
            None => Err(err(self.end_pos, format!("unclosed action in {context}"))),
        }
    }

    /// Nodes until EOF, `{{end}}` or `{{else}}` (the terminator's Close is consumed for
    /// `end`; for `else` the caller reads on).
    fn list(&mut self, top: bool) -> Result<(List, Stop), Located> {
        let mut nodes = Vec::new();
        loop {
            let Some(token) = self.next() else {
                return Ok((nodes, Stop::Eof));
            };
            match token.tok {
                Tok::Text(t) => nodes.push(Node::Text(t.into())),
                Tok::Open => {
                    let pos = self.pos();
                    let keyword = match self.peek() {
                        Some(Tok::Ident(k)) => Some(k.clone()),
                        _ => None,
                    };
                    match keyword.as_deref() {
                        Some("end") => {
                            self.i += 1;
                            self.expect_close("end")?;
                            return Ok((nodes, Stop::End(pos)));
                        }
                        Some("else") => {
                            self.i += 1;
                            return Ok((nodes, Stop::Else(pos)));
                        }
                        Some("if") => {
                            self.i += 1;
                            nodes.push(Node::If(self.branch("if", pos)?));
                        }
                        Some("with") => {
                            self.i += 1;
                            nodes.push(Node::With(self.branch("with", pos)?));
                        }
                        Some("range") => {
                            self.i += 1;
                            self.range_depth += 1;
                            let branch = self.branch("range", pos);
                            self.range_depth -= 1;
                            nodes.push(Node::Range(branch?));
                        }
                        Some("break") | Some("continue") => {
                            let is_break = keyword.as_deref() == Some("break");
                            if self.range_depth == 0 {
                                return Err(err(
                                    pos,
                                    format!(
                                        "{{{{{}}}}} outside {{{{range}}}}",
                                        keyword.unwrap_or_default()
                                    ),
                                ));
                            }
                            self.i += 1;
                            self.expect_close("break/continue")?;
                            nodes.push(if is_break {
                                Node::Break
                            } else {
                                Node::Continue
                            });
                        }
                        Some("template") => {
                            self.i += 1;
                            let (name, pipe) = self.template_call("template")?;
                            nodes.push(Node::Template { pos, name, pipe });
                        }
                        Some("block") => {
                            self.i += 1;
                            let (name, pipe) = self.template_call("block")?;
                            let (body, stop) = self.list(false)?;
                            if !matches!(stop, Stop::End(_)) {
                                return Err(err(pos, "unexpected EOF in block clause"));
                            }
                            self.defines.push((name.clone(), body));
                            nodes.push(Node::Template { pos, name, pipe });
                        }
                        Some("define") => {
                            if !top {
                                return Err(err(pos, "unexpected <define> in command"));
                            }
                            self.i += 1;
                            let name = match self.next() {
                                Some(Token {
                                    tok: Tok::Str(s), ..
                                }) => s,
                                _ => return Err(err(pos, "expected name string in define clause")),
                            };
                            self.expect_close("define clause")?;
                            let (body, stop) = self.list(false)?;
                            if !matches!(stop, Stop::End(_)) {
                                return Err(err(pos, "unexpected EOF in define clause"));
                            }
                            self.defines.push((name, body));
                        }
                        _ => {
                            let pipe = self.pipeline(false, "command")?;
                            self.expect_close("command")?;
                            nodes.push(Node::Action(pipe));
                        }
                    }
                }
                other => return Err(err(token.pos, format!("unexpected {other:?}"))),
            }
        }
    }

    /// `if`/`with`/`range` after the keyword: pipeline, body, optional else (or `else if`).
    fn branch(&mut self, keyword: &str, pos: usize) -> Result<Branch, Located> {
        let pipe = self.pipeline(keyword == "range", keyword)?;
        self.expect_close(keyword)?;
        let (list, stop) = self.list(false)?;
        let else_list = match stop {
            Stop::End(_) => None,
            Stop::Eof => return Err(err(pos, format!("unexpected EOF in {{{{{keyword}}}}}"))),
            Stop::Else(else_pos) => {
                let chained = matches!(self.peek(), Some(Tok::Ident(k)) if (k == "if" || k == "with") && k == keyword);
                if chained {
                    // `{{else if X}}` is `{{else}}{{if X}}...{{end}}` sharing the outer end.
                    self.i += 1;
                    let inner_pos = self.pos();
                    let inner = self.branch(keyword, inner_pos)?;
                    Some(vec![if keyword == "if" {
                        Node::If(inner)
                    } else {
                        Node::With(inner)
                    }])
                } else {
                    self.expect_close("else")?;
                    let (else_list, stop) = self.list(false)?;
                    match stop {
                        Stop::End(_) => Some(else_list),
                        Stop::Else(p) => {
                            return Err(err(
                                p,
                                format!("expected end; found {{{{else}}}} in {keyword}"),
                            ));
                        }
                        Stop::Eof => {
                            return Err(err(
                                else_pos,
                                format!("unexpected EOF in {{{{{keyword}}}}}"),
                            ));
                        }
                    }
                }
            }
        };
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    /// `"name" [pipeline]}}` of `template`/`block`.
    fn template_call(&mut self, keyword: &str) -> Result<(String, Option<Pipe>), Located> {
        let pos = self.pos();
        let name = match self.next() {
            Some(Token {
                tok: Tok::Str(s), ..
            }) => s,
            _ => {
                return Err(err(
                    pos,
                    format!("expected name string in {keyword} clause"),
                ));
            }
        };
        if matches!(self.peek(), Some(Tok::Close)) {
            self.i += 1;
            return Ok((name, None));
        }
        let pipe = self.pipeline(false, keyword)?;
        self.expect_close(keyword)?;
        Ok((name, Some(pipe)))
    }

    /// A pipeline up to (not including) `}}` or `)`.
    fn pipeline(&mut self, allow_two: bool, context: &str) -> Result<Pipe, Located> {
        let pos = self.pos();
        let mut decl = Vec::new();
        let mut assign = false;
        // Declarations: `$x :=`, `$x =`, `$i, $v :=`.
        if let Some(Tok::Var(first)) = self.peek().cloned() {
            let after = self.toks.get(self.i + 1).map(|t| t.tok.clone());
            match after {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    assign = after == Some(Tok::Assign);
                    decl.push(first);
                    self.i += 2;
                }
                Some(Tok::Comma) if allow_two => {
                    let second = self.toks.get(self.i + 2).map(|t| t.tok.clone());
                    let op = self.toks.get(self.i + 3).map(|t| t.tok.clone());
                    match (second, op) {
                        (Some(Tok::Var(second)), Some(Tok::Declare | Tok::Assign)) => {
                            assign = matches!(self.toks[self.i + 3].tok, Tok::Assign);
                            decl.push(first);
                            decl.push(second);
                            self.i += 4;
                        }
                        _ => return Err(err(pos, "too many declarations in range")),
                    }
                }
                _ => {}
            }
        }
        let mut cmds = Vec::new();
        loop {
            cmds.push(self.command()?);
            match self.peek() {
                Some(Tok::Pipe) => {
                    self.i += 1;
                }
                _ => break,
            }
        }
        if cmds.is_empty() || cmds.iter().any(|c| c.args.is_empty()) {
            return Err(err(pos, format!("missing value for {context}")));
        }
        for cmd in &cmds[1..] {
            if !matches!(
                cmd.args[0].term,
                Term::Func(_) | Term::Field(_) | Term::Var(..) | Term::Chain(..)
            ) {
                return Err(err(cmd.pos, "non executable command in pipeline stage"));
            }
        }
        Ok(Pipe {
            pos,
            decl,
            assign,
            cmds,
        })
    }

    fn command(&mut self) -> Result<Cmd, Located> {
        let pos = self.pos();
        let mut args = Vec::new();
        loop {
            match self.peek() {
                None | Some(Tok::Close) | Some(Tok::RParen) | Some(Tok::Pipe) => break,
                _ => {}
            }
            if !args.is_empty()
                && !self.toks[self.i].space_before
                && !matches!(self.peek(), Some(Tok::LParen))
            {
                let t = &self.toks[self.i];
                return Err(err(t.pos, format!("missing space before {:?}", t.tok)));
            }
            args.push(self.operand()?);
        }
        let end = self.toks.get(self.i).map_or(self.end_pos, |t| t.pos);
        if let [
            Arg {
                term: Term::Nil,
                pos,
            },
        ] = args.as_slice()
        {
            return Err(err(*pos, "nil is not a command"));
        }
        Ok(Cmd { pos, end, args })
    }

    fn operand(&mut self) -> Result<Arg, Located> {
        let Some(token) = self.next() else {
            return Err(err(self.end_pos, "unexpected EOF"));
        };
        let pos = token.pos;
        let term = match token.tok {
            Tok::Ident(name) => {
                if matches!(
                    name.as_str(),
                    "if" | "else"
                        | "end"
                        | "range"
                        | "with"
                        | "define"
                        | "template"
                        | "block"
                        | "break"
                        | "continue"
                ) {
                    return Err(err(pos, format!("unexpected <{name}> in command")));
                }
                if !(self.is_func)(&name) {
                    return Err(err(pos, format!("function {name:?} not defined")));
                }
                Term::Func(name)
            }
            Tok::Dot => Term::Dot,
            Tok::Nil => Term::Nil,
            Tok::Bool(b) => Term::Const(Value::Bool(b)),
            Tok::Str(s) => Term::Const(Value::from(s)),
            Tok::Number(n) => Term::Const(
                parse_number(&n).ok_or_else(|| err(pos, format!("bad number syntax: {n:?}")))?,
            ),
            Tok::Field(f) => {
                let mut fields = vec![f];
                fields.extend(self.chained_fields());
                Term::Field(fields)
            }
            Tok::Var(v) => Term::Var(v, self.chained_fields()),
            Tok::LParen => {
                let pipe = self.pipeline(false, "parenthesized pipeline")?;
                match self.next() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => {}
                    _ => return Err(err(pos, "unclosed left paren")),
                }
                Term::Chain(Box::new(pipe), self.chained_fields())
            }
            other => return Err(err(pos, format!("unexpected {other:?} in operand"))),
        };
        Ok(Arg { pos, term })
    }

    /// `.b.c` directly after an operand (no space between).
    fn chained_fields(&mut self) -> Vec<String> {
        let mut fields = Vec::new();
        while let Some(t) = self.toks.get(self.i) {
            match &t.tok {
                Tok::Field(f) if !t.space_before => {
                    fields.push(f.clone());
                    self.i += 1;
                }
                _ => break,
            }
        }
        fields
    }
}

/// A Go number literal: integers (decimal, `0x`, `0o`, `0b`, `_` separators) become
/// [`Value::Int`], the rest [`Value::Float`].
fn parse_number(text: &str) -> Option<Value> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let lower = digits.to_ascii_lowercase();
    let int = if let Some(hex) = lower.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = lower.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if let Some(bin) = lower.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Some(Value::Int(if neg { -i } else { i }));
    }
    let f: f64 = lower.parse().ok()?;
    Some(Value::Float(if neg { -f } else { f }))
}
