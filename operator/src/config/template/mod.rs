//! A Go `text/template` engine with the Sprig function library, as werf renders werf.yaml
//! (`pkg/config/parser.go`).
//!
//! Why not an existing crate: `gtmpl` (0.7) is the only maintained Go-template crate. Its
//! functions are plain `fn` pointers with no state (no way to give `include`, `tpl`, `env`
//! or `.Files` the template set, the environment or the commit), its values are copied (so
//! Sprig's `set` cannot change `.` in place, which werf.yaml files rely on:
//! `{{ $_ := set . "Base" "node:20" }}`), maps are `HashMap`s (ranging over a map is not in
//! key order, so output is not deterministic), errors carry no column, and it has no
//! `break`/`continue`, no `$x = ...` assignment and no Sprig functions. This module keeps the
//! same Go semantics with those pieces.
//!
//! Layout: [`lex`](self) → `parse` (trees) → `exec` (values in [`Value`], functions in
//! `funcs`, `printf`). werf's own data and functions (`.Files`, `.Env`, `.Commit`, `env`
//! rules) live in [`crate::config::render`], behind [`Host`].

mod error;
mod exec;
mod funcs;
mod lex;
mod parse;
mod printf;
mod value;

#[cfg(test)]
mod tests;

pub use error::{Phase, TemplateError};
pub use exec::{Host, TemplateSet};
pub use value::{Map, Value};
