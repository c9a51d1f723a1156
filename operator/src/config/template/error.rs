//! Template errors, worded like Go's `text/template` (`template: NAME:LINE:COL: executing
//! "NAME" at <NODE>: error calling FUNC: MESSAGE`) so a werf user recognises them.

use std::fmt;

/// Whether an error came from parsing or executing a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The template text is malformed (unclosed action, unknown function, bad `end`...).
    Parse,
    /// Rendering failed (a function returned an error, a field of nil, `required`...).
    Execute,
}

/// An error at a byte offset of a template source, before the source is known.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub pos: usize,
    pub phase: Phase,
    pub message: String,
    pub function: Option<String>,
    pub node: Option<String>,
}

impl Located {
    pub(crate) fn new(pos: usize, phase: Phase, message: impl Into<String>) -> Located {
        Located {
            pos,
            phase,
            message: message.into(),
            function: None,
            node: None,
        }
    }
}

/// A template error with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    /// Parse or execute.
    pub phase: Phase,
    /// The template file the failing text is in, as werf names it: `werfConfig` for
    /// werf.yaml, the path inside the templates directory for `.werf/*.tmpl` files.
    pub template: String,
    /// 1-based line in that file (0 when unknown).
    pub line: usize,
    /// 1-based column (in characters) in that line (0 when unknown).
    pub column: usize,
    /// The template being executed when it failed (a `define`d name, `werfConfig`...).
    pub executing: Option<String>,
    /// The node that failed, as written (`<required "x" .Y>`).
    pub node: Option<String>,
    /// The function whose call failed (`required`, `env`, `include`...).
    pub function: Option<String>,
    /// What went wrong (the function's own message for a failed call).
    pub message: String,
    /// The `include`/`tpl` calls that led to the failing template, innermost first
    /// (`werfConfig:12:5: include (include "base" .)`).
    pub via: Vec<String>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "template: {}:{}:{}: ",
            self.template, self.line, self.column
        )?;
        if let Some(executing) = &self.executing {
            write!(f, "executing {executing:?} ")?;
            if let Some(node) = &self.node {
                write!(f, "at <{node}>")?;
            }
            write!(f, ": ")?;
        }
        if let Some(function) = &self.function {
            write!(f, "error calling {function}: ")?;
        }
        write!(f, "{}", self.message)?;
        for call in &self.via {
            write!(f, "\n  called from {call}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte offset `pos` in `src`.
pub(crate) fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(src.len());
    let before = &src[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
