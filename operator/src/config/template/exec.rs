//! Executing parsed templates with Go's semantics: dot and `$`, variable scopes per control
//! structure, `range` over lists, maps (sorted keys) and integers, `break`/`continue`,
//! `and`/`or` short-circuit, `template`/`include`/`tpl`, and werf's `env` and `.Files`
//! through a [`Host`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::error::{Located, Phase, TemplateError, line_col};
use super::funcs;
use super::parse::{Arg, Branch, Cmd, List, Node, Pipe, Term, parse};
use super::value::Value;

/// What templates can ask of their environment (werf's `env` and `.Files`).
pub trait Host {
    /// `env NAME [DEFAULT]`: the variable's value or the error werf gives.
    fn env(&self, name: &str, fallback: Option<&str>) -> Result<String, String>;
    /// `.Files.METHOD PATH` for `Get`, `Glob`, `Exists`, `IsDir`; `Err` names the problem.
    fn files(&self, method: &str, path: &str) -> Result<Value, String>;
}

/// A parsed body with the source it came from (for line:column in errors).
#[derive(Debug)]
struct Tree {
    parse_name: Rc<str>,
    src: Rc<str>,
    body: List,
}

/// Templates nest at most this deep (`include` recursion); deeper is an error, not a stack
/// overflow. Go allows 100000 on its growable stacks; a level takes ~25 KiB of
/// stack in a debug build, so 40 fits a 2 MiB thread stack with room to spare and is far
/// beyond what werf.yaml files nest.
const MAX_DEPTH: usize = 40;

/// A set of named templates, like a Go `*template.Template` with its associated templates.
#[derive(Debug, Default)]
pub struct TemplateSet {
    trees: RefCell<HashMap<String, Rc<Tree>>>,
    tpl_count: RefCell<usize>,
}

impl TemplateSet {
    /// An empty set.
    pub fn new() -> TemplateSet {
        TemplateSet::default()
    }

    /// Parses `src` as template `name` (Go's `tmpl.New(name).Parse(src)`): its body becomes
    /// template `name`, its `define`s become templates of their own. A later definition
    /// replaces an earlier one, except that an empty body never replaces a non-empty one.
    ///
    /// Errors: a [`TemplateError`] with [`Phase::Parse`] naming `name`, line and column.
    pub fn add(&self, name: &str, src: &str) -> Result<(), Box<TemplateError>> {
        let parsed = parse(src, &|f| funcs::is_func(f))
            .map_err(|e| Box::new(to_error(e, name, src, None)))?;
        let parse_name: Rc<str> = name.into();
        let src: Rc<str> = src.into();
        let mut trees = self.trees.borrow_mut();
        let mut insert = |tree_name: String, body: List| {
            let empty = body
                .iter()
                .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()));
            if empty && trees.contains_key(&tree_name) {
                return;
            }
            trees.insert(
                tree_name,
                Rc::new(Tree {
                    parse_name: parse_name.clone(),
                    src: src.clone(),
                    body,
                }),
            );
        };
        insert(name.to_string(), parsed.body);
        for (define, body) in parsed.defines {
            insert(define, body);
        }
        Ok(())
    }

    /// Whether template `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.trees.borrow().contains_key(name)
    }

    /// Executes template `name` with `data` as dot and `$`.
    ///
    /// Errors: [`TemplateError`] with [`Phase::Execute`]: the innermost failing template,
    /// line, column, node and function.
    pub fn execute(
        &self,
        name: &str,
        data: Value,
        host: &dyn Host,
    ) -> Result<String, Box<TemplateError>> {
        let mut out = String::new();
        let mut exec = Exec {
            set: self,
            host,
            depth: 0,
        };
        exec.template(name, data, &mut out)?;
        Ok(out)
    }
}

fn to_error(e: Located, template: &str, src: &str, executing: Option<&str>) -> TemplateError {
    let (line, column) = line_col(src, e.pos);
    TemplateError {
        phase: e.phase,
        template: template.to_string(),
        line,
        column,
        executing: executing.map(str::to_string),
        node: e.node,
        function: e.function,
        message: e.message,
        via: Vec::new(),
    }
}

/// Control flow out of a list.
enum Flow {
    Normal,
    Break,
    Continue,
}

/// An error inside one tree, or one already located in a nested template.
enum Fail {
    Here(Box<Located>),
    Nested(Box<TemplateError>),
}

impl From<Located> for Fail {
    fn from(l: Located) -> Fail {
        Fail::Here(Box::new(l))
    }
}

struct Exec<'a> {
    set: &'a TemplateSet,
    host: &'a dyn Host,
    depth: usize,
}

/// One template invocation: its tree, name and variables.
struct Frame<'t> {
    tree: &'t Tree,
    vars: Vec<(String, Value)>,
}

impl Exec<'_> {
    fn template(
        &mut self,
        name: &str,
        data: Value,
        out: &mut String,
    ) -> Result<(), Box<TemplateError>> {
        let tree = self.set.trees.borrow().get(name).cloned();
        let Some(tree) = tree else {
            return Err(Box::new(TemplateError {
                phase: Phase::Execute,
                template: name.to_string(),
                line: 0,
                column: 0,
                executing: None,
                node: None,
                function: None,
                message: format!("no template {name:?} associated with template \"werfConfig\""),
                via: Vec::new(),
            }));
        };
        if self.depth >= MAX_DEPTH {
            return Err(Box::new(to_error(
                Located::new(
                    0,
                    Phase::Execute,
                    format!("exceeded maximum template depth ({MAX_DEPTH})"),
                ),
                &tree.parse_name,
                &tree.src,
                Some(name),
            )));
        }
        self.depth += 1;
        let mut frame = Frame {
            tree: &tree,
            vars: vec![("$".to_string(), data.clone())],
        };
        let result = self.list(&mut frame, &tree.body, &data, out);
        self.depth -= 1;
        match result {
            Ok(_) => Ok(()),
            Err(Fail::Here(e)) => Err(Box::new(to_error(
                *e,
                &tree.parse_name,
                &tree.src,
                Some(name),
            ))),
            Err(Fail::Nested(e)) => Err(e),
        }
    }

    fn list(
        &mut self,
        f: &mut Frame<'_>,
        list: &List,
        dot: &Value,
        out: &mut String,
    ) -> Result<Flow, Fail> {
        for node in list {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(pipe) => {
                    let v = self.pipe(f, pipe, dot)?;
                    if pipe.decl.is_empty() {
                        match v {
                            // Go turns a nil interface result into "no value" before printing.
                            Value::Nil => out.push_str("<no value>"),
                            v => v.write_go(out),
                        }
                    }
                }
                Node::If(b) => {
                    let mark = f.vars.len();
                    let cond = self.pipe(f, &b.pipe, dot)?;
                    let flow = if cond.truthy() {
                        self.list(f, &b.list, dot, out)?
                    } else if let Some(e) = &b.else_list {
                        self.list(f, e, dot, out)?
                    } else {
                        Flow::Normal
                    };
                    f.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With(b) => {
                    let mark = f.vars.len();
                    let v = self.pipe(f, &b.pipe, dot)?;
                    let flow = if v.truthy() {
                        self.list(f, &b.list, &v, out)?
                    } else if let Some(e) = &b.else_list {
                        self.list(f, e, dot, out)?
                    } else {
                        Flow::Normal
                    };
                    f.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => self.range(f, b, dot, out)?,
                Node::Template { pos, name, pipe } => {
                    let data = match pipe {
                        Some(p) => self.pipe(f, p, dot)?,
                        None => Value::Nil,
                    };
                    if !self.set.contains(name) {
                        return Err(Located::new(
                            *pos,
                            Phase::Execute,
                            format!("template {name:?} not defined"),
                        )
                        .into());
                    }
                    self.template(name, data, out).map_err(Fail::Nested)?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(
        &mut self,
        f: &mut Frame<'_>,
        b: &Branch,
        dot: &Value,
        out: &mut String,
    ) -> Result<(), Fail> {
        let mark = f.vars.len();
        // The declared variables are set per element, not to the pipeline's value.
        let value = self.pipe_value(f, &b.pipe, dot)?;
        let items: Vec<(Value, Value)> = match &value {
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::Map(m) => m
                .borrow()
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), v.clone()))
                .collect(),
            Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            Value::Missing | Value::Nil => Vec::new(),
            other => {
                return Err(Located::new(
                    b.pipe.pos,
                    Phase::Execute,
                    format!("range can't iterate over {}", other.print()),
                )
                .into());
            }
        };
        if items.is_empty() {
            if let Some(e) = &b.else_list {
                self.list(f, e, dot, out)?;
            }
            f.vars.truncate(mark);
            return Ok(());
        }
        for (key, item) in items {
            match b.pipe.decl.len() {
                1 => self.set_var(f, &b.pipe.decl[0], item.clone(), b.pipe.assign, b.pipe.pos)?,
                2 => {
                    self.set_var(f, &b.pipe.decl[0], key, b.pipe.assign, b.pipe.pos)?;
                    self.set_var(f, &b.pipe.decl[1], item.clone(), b.pipe.assign, b.pipe.pos)?;
                }
                _ => {}
            }
            let inner = f.vars.len();
            let flow = self.list(f, &b.list, &item, out)?;
            f.vars.truncate(inner);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        f.vars.truncate(mark);
        Ok(())
    }

    fn set_var(
        &mut self,
        f: &mut Frame<'_>,
        name: &str,
        value: Value,
        assign: bool,
        pos: usize,
    ) -> Result<(), Fail> {
        if assign {
            match f.vars.iter_mut().rev().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value,
                None => {
                    return Err(Located::new(
                        pos,
                        Phase::Parse,
                        format!("undefined variable: {name}"),
                    )
                    .into());
                }
            }
        } else {
            f.vars.push((name.to_string(), value));
        }
        Ok(())
    }

    /// Evaluates a pipeline and performs its declaration, returning its value.
    fn pipe(&mut self, f: &mut Frame<'_>, pipe: &Pipe, dot: &Value) -> Result<Value, Fail> {
        let value = self.pipe_value(f, pipe, dot)?;
        if let Some(name) = pipe.decl.first() {
            self.set_var(f, name, value.clone(), pipe.assign, pipe.pos)?;
        }
        Ok(value)
    }

    fn pipe_value(&mut self, f: &mut Frame<'_>, pipe: &Pipe, dot: &Value) -> Result<Value, Fail> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.cmd(f, cmd, dot, value)?);
        }
        Ok(value.unwrap_or(Value::Missing))
    }

    fn node_text(f: &Frame<'_>, cmd: &Cmd) -> String {
        f.tree
            .src
            .get(cmd.pos..cmd.end)
            .unwrap_or("")
            .trim()
            .to_string()
    }

    fn cmd(
        &mut self,
        f: &mut Frame<'_>,
        cmd: &Cmd,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, Fail> {
        let first = &cmd.args[0];
        let result = match &first.term {
            Term::Func(name) => self.call(f, cmd, name, dot, piped),
            Term::Field(fields) => self.fields(
                f,
                dot.clone(),
                fields,
                &cmd.args[1..],
                piped,
                dot,
                first.pos,
            ),
            Term::Var(name, fields) => {
                let value = lookup_var(f, name, first.pos)?;
                if fields.is_empty() {
                    no_args(cmd, piped.is_some(), value)
                } else {
                    self.fields(f, value, fields, &cmd.args[1..], piped, dot, first.pos)
                }
            }
            Term::Chain(pipe, fields) => {
                let value = self.pipe_value(f, pipe, dot)?;
                if fields.is_empty() {
                    no_args(cmd, piped.is_some(), value)
                } else {
                    self.fields(f, value, fields, &cmd.args[1..], piped, dot, first.pos)
                }
            }
            Term::Dot => no_args(cmd, piped.is_some(), dot.clone()),
            Term::Nil => {
                Err(Located::new(first.pos, Phase::Execute, "nil is not a command").into())
            }
            Term::Const(v) => no_args(cmd, piped.is_some(), v.clone()),
        };
        result.map_err(|e| match e {
            Fail::Here(mut l) => {
                if l.node.is_none() {
                    l.node = Some(Self::node_text(f, cmd));
                }
                Fail::Here(l)
            }
            nested => nested,
        })
    }

    /// An argument's value (a nested function call is not allowed bare, as in Go).
    fn arg(&mut self, f: &mut Frame<'_>, arg: &Arg, dot: &Value) -> Result<Value, Fail> {
        Ok(match &arg.term {
            Term::Func(name) => {
                // A bare function name as an argument is a call without arguments.
                let cmd = Cmd {
                    pos: arg.pos,
                    end: arg.pos + name.len(),
                    args: vec![Arg {
                        pos: arg.pos,
                        term: Term::Func(name.clone()),
                    }],
                };
                self.call(f, &cmd, name, dot, None)?
            }
            Term::Dot => dot.clone(),
            Term::Nil => Value::Nil,
            Term::Const(v) => v.clone(),
            Term::Field(fields) => self.fields(f, dot.clone(), fields, &[], None, dot, arg.pos)?,
            Term::Var(name, fields) => {
                let v = lookup_var(f, name, arg.pos)?;
                if fields.is_empty() {
                    v
                } else {
                    self.fields(f, v, fields, &[], None, dot, arg.pos)?
                }
            }
            Term::Chain(pipe, fields) => {
                let v = self.pipe_value(f, pipe, dot)?;
                if fields.is_empty() {
                    v
                } else {
                    self.fields(f, v, fields, &[], None, dot, arg.pos)?
                }
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn fields(
        &mut self,
        f: &mut Frame<'_>,
        mut receiver: Value,
        fields: &[String],
        args: &[Arg],
        piped: Option<Value>,
        dot: &Value,
        pos: usize,
    ) -> Result<Value, Fail> {
        let last = fields.len() - 1;
        for (k, name) in fields.iter().enumerate() {
            let has_args = k == last && (!args.is_empty() || piped.is_some());
            receiver = match receiver {
                Value::Map(m) => {
                    if has_args {
                        return Err(Located::new(
                            pos,
                            Phase::Execute,
                            format!("{name} is not a method but has arguments"),
                        )
                        .into());
                    }
                    let v = m.borrow().get(name).cloned();
                    v.unwrap_or(Value::Missing)
                }
                Value::Files
                    if matches!(name.as_str(), "Get" | "Glob" | "Exists" | "IsDir")
                        && k == last =>
                {
                    let mut values = Vec::new();
                    for a in args {
                        values.push(self.arg(f, a, dot)?);
                    }
                    values.extend(piped.clone());
                    if values.len() != 1 {
                        return Err(Located::new(
                            pos,
                            Phase::Execute,
                            format!(
                                "wrong number of args for {name}: want 1 got {}",
                                values.len()
                            ),
                        )
                        .into());
                    }
                    let path = values[0].print();
                    self.host.files(name, &path).map_err(|message| {
                        let mut e = Located::new(pos, Phase::Execute, message);
                        e.function = Some(name.clone());
                        Fail::Here(Box::new(e))
                    })?
                }
                Value::Missing | Value::Nil => {
                    return Err(Located::new(
                        pos,
                        Phase::Execute,
                        format!("nil pointer evaluating interface {{}}.{name}"),
                    )
                    .into());
                }
                other => {
                    return Err(Located::new(
                        pos,
                        Phase::Execute,
                        format!("can't evaluate field {name} in type {}", other.type_name()),
                    )
                    .into());
                }
            };
        }
        Ok(receiver)
    }

    fn call(
        &mut self,
        f: &mut Frame<'_>,
        cmd: &Cmd,
        name: &str,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, Fail> {
        let pos = cmd.args[0].pos;
        let fail = |message: String| {
            let mut e = Located::new(pos, Phase::Execute, message);
            e.function = Some(name.to_string());
            Fail::Here(Box::new(e))
        };
        // `and`/`or` evaluate their arguments only as far as needed (Go 1.18).
        if name == "and" || name == "or" {
            let n = cmd.args.len() - 1 + usize::from(piped.is_some());
            if n == 0 {
                return Err(Located::new(
                    pos,
                    Phase::Execute,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                )
                .into());
            }
            let mut last = Value::Nil;
            for a in &cmd.args[1..] {
                last = self.arg(f, a, dot)?;
                if last.truthy() != (name == "and") {
                    return Ok(last);
                }
            }
            if let Some(p) = piped {
                last = p;
            }
            return Ok(last);
        }
        let mut args = Vec::with_capacity(cmd.args.len());
        for a in &cmd.args[1..] {
            args.push(self.arg(f, a, dot)?.arg());
        }
        if let Some(p) = piped {
            args.push(p.arg());
        }
        match name {
            "include" => {
                check_arity(name, &args, 2).map_err(fail)?;
                let template = args[0].print();
                if !self.set.contains(&template) {
                    return Err(fail(format!(
                        "template: no template {template:?} associated with template \"werfConfig\""
                    )));
                }
                let mut out = String::new();
                self.template(&template, args[1].clone(), &mut out)
                    .map_err(|e| self.nested(e, f, cmd, name))?;
                Ok(Value::from(out))
            }
            "tpl" => {
                check_arity(name, &args, 2).map_err(fail)?;
                let text = args[0].print();
                let template = {
                    let mut count = self.set.tpl_count.borrow_mut();
                    *count += 1;
                    format!("tpl#{}", *count)
                };
                self.set
                    .add(&template, &text)
                    .map_err(|e| self.nested(e, f, cmd, name))?;
                let mut out = String::new();
                let result = self.template(&template, args[1].clone(), &mut out);
                self.set.trees.borrow_mut().remove(&template);
                result.map_err(|e| self.nested(e, f, cmd, name))?;
                Ok(Value::from(out))
            }
            "env" => {
                if args.is_empty() || args.len() > 2 {
                    if args.len() > 2 {
                        return Err(fail("more than 1 optional argument prohibited".into()));
                    }
                    return Err(fail(
                        "wrong number of args for env: want at least 1 got 0".into(),
                    ));
                }
                let var = args[0].print();
                let fallback = args.get(1).map(Value::print);
                self.host
                    .env(&var, fallback.as_deref())
                    .map(Value::from)
                    .map_err(fail)
            }
            _ => funcs::call(name, &args).map_err(fail),
        }
    }

    /// An error from a nested template, keeping the innermost location and recording this
    /// call as the way it was reached.
    fn nested(&self, mut e: Box<TemplateError>, f: &Frame<'_>, cmd: &Cmd, name: &str) -> Fail {
        let (line, column) = line_col(&f.tree.src, cmd.pos);
        e.via.push(format!(
            "{}:{line}:{column}: {name} ({})",
            f.tree.parse_name,
            Self::node_text(f, cmd)
        ));
        Fail::Nested(e)
    }
}

fn check_arity(name: &str, args: &[Value], want: usize) -> Result<(), String> {
    if args.len() != want {
        return Err(format!(
            "wrong number of args for {name}: want {want} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn lookup_var(f: &Frame<'_>, name: &str, pos: usize) -> Result<Value, Fail> {
    match f.vars.iter().rev().find(|(n, _)| n == name) {
        Some((_, v)) => Ok(v.clone()),
        None => {
            Err(Located::new(pos, Phase::Execute, format!("undefined variable: {name}")).into())
        }
    }
}

fn no_args(cmd: &Cmd, piped: bool, value: Value) -> Result<Value, Fail> {
    if cmd.args.len() > 1 || piped {
        return Err(Located::new(
            cmd.pos,
            Phase::Execute,
            format!("can't give argument to non-function {}", value.print()),
        )
        .into());
    }
    Ok(value)
}
