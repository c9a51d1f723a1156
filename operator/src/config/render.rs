//! werf.yaml rendering as werf v2 does it (`pkg/config/parser.go`): the file is a Go
//! template named `werfConfig`; every `*.tmpl` under the templates directory (`.werf` by
//! default) is parsed first under its path inside that directory, so `include` finds their
//! `define`s; the data is `.Files` (files of the commit, never a work tree), `.Env` (werf's
//! `--env`) and `.Commit` (`.Hash`, `.Date.Human`, `.Date.Unix` of the commit).
//!
//! `env NAME [DEFAULT]` follows werf's giterminism: unless giterminism is loose, a variable
//! must be allowed by `werf-giterminism.yaml` (`config.goTemplateRendering.allowEnvVariables`:
//! exact names or `/REGEX/`), even with a default; an unset variable without a default is an
//! error; an empty one takes the default. Where the values come from is the caller's choice
//! ([`EnvValues`]): the process environment for `kiln-operator plan`, the ImageBuild's
//! values in a cluster.

use std::collections::BTreeMap;

use super::template::{Host, TemplateError, TemplateSet, Value};

/// The template name werf gives werf.yaml (errors say `template: werfConfig:LINE:COL`).
pub const WERF_CONFIG_TEMPLATE: &str = "werfConfig";

/// werf's default templates directory.
pub const DEFAULT_TEMPLATES_DIR: &str = ".werf";

/// werf's giterminism configuration file at the project root.
pub const GITERMINISM_FILE: &str = "werf-giterminism.yaml";

/// Where `env` reads variables from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValues {
    /// The process environment (a workstation, `kiln-operator plan`).
    Process,
    /// Given values (an ImageBuild's `spec.config.env`, Secrets and ConfigMaps resolved).
    Map(BTreeMap<String, String>),
}

impl Default for EnvValues {
    fn default() -> Self {
        EnvValues::Map(BTreeMap::new())
    }
}

/// What werf.yaml templates see from outside the commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderContext {
    /// The values `env` reads.
    pub env: EnvValues,
    /// `.Env` (werf's `--env`); empty by default.
    pub werf_env: String,
    /// werf's `--loose-giterminism`: every variable allowed, an unset one without a default
    /// renders empty.
    pub loose_giterminism: bool,
    /// The templates directory (werf's `--config-templates-dir`); `.werf` when None.
    pub templates_dir: Option<String>,
}

/// The files of the commit, as rendering reads them.
pub trait CommitFiles {
    /// A file's bytes, `Ok(None)` when absent (or a directory).
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String>;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &str) -> Result<bool, String>;
    /// Every file path under directory `dir` (`""` = all), recursively, sorted.
    fn list(&self, dir: &str) -> Result<Vec<String>, String>;
}

/// The commit werf.yaml is rendered at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// 40 hex.
    pub hash: String,
    /// Author time, Unix seconds (werf uses the author date).
    pub time_unix: i64,
    /// The author time's UTC offset in minutes, as recorded in the commit.
    pub offset_minutes: i32,
}

impl CommitInfo {
    /// `.Commit.Date.Human`: Go's `time.Time.String()` of the author time in the commit's
    /// own offset, e.g. `2024-03-01 12:00:00 +0000 UTC` or `2024-03-01 15:00:00 +0300 +0300`
    /// (go-git names a zero offset UTC on a UTC host and leaves other offsets unnamed).
    pub fn human_date(&self) -> String {
        let offset_seconds = self.offset_minutes * 60;
        let civil = jiff::Timestamp::from_second(self.time_unix)
            .ok()
            .zip(jiff::tz::Offset::from_seconds(offset_seconds).ok())
            .map(|(ts, off)| {
                ts.to_zoned(jiff::tz::TimeZone::fixed(off))
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        let sign = if offset_seconds < 0 { '-' } else { '+' };
        let abs = self.offset_minutes.unsigned_abs();
        let zone = format!("{sign}{:02}{:02}", abs / 60, abs % 60);
        let name = if offset_seconds == 0 {
            "UTC".to_string()
        } else {
            zone.clone()
        };
        format!("{civil} {zone} {name}")
    }
}

/// Why werf.yaml could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A parse or execute error in werf.yaml or a `.werf` template.
    #[error(transparent)]
    Template(Box<TemplateError>),
    /// The commit could not be read, or `werf-giterminism.yaml` is malformed.
    #[error("{0}")]
    Project(String),
}

/// Whether `text` needs rendering at all: plain YAML (no `{{`) renders to itself.
pub fn is_template(text: &str) -> bool {
    text.contains("{{")
}

/// Renders werf.yaml `text` at `commit` with `files` of that commit and `context`.
///
/// Errors: [`RenderError::Template`] (with template, line, column, function and message),
/// [`RenderError::Project`] for unreadable files or a malformed giterminism file.
pub fn render(
    text: &str,
    files: &dyn CommitFiles,
    commit: &CommitInfo,
    context: &RenderContext,
) -> Result<String, RenderError> {
    let set = TemplateSet::new();
    let dir = context
        .templates_dir
        .as_deref()
        .unwrap_or(DEFAULT_TEMPLATES_DIR)
        .trim_matches('/');
    for path in files.list(dir).map_err(RenderError::Project)? {
        if !path.ends_with(".tmpl") {
            continue;
        }
        let bytes = files
            .read(&path)
            .map_err(RenderError::Project)?
            .unwrap_or_default();
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .trim_start_matches('/');
        set.add(name, &String::from_utf8_lossy(&bytes))
            .map_err(RenderError::Template)?;
    }
    set.add(WERF_CONFIG_TEMPLATE, text)
        .map_err(RenderError::Template)?;
    let allowed = allowed_env(files, context)?;
    let host = WerfHost {
        files,
        context,
        allowed,
    };
    let mut date = BTreeMap::new();
    date.insert("Human".to_string(), Value::from(commit.human_date()));
    date.insert(
        "Unix".to_string(),
        Value::from(commit.time_unix.to_string()),
    );
    let mut commit_data = BTreeMap::new();
    commit_data.insert("Hash".to_string(), Value::from(commit.hash.as_str()));
    commit_data.insert("Date".to_string(), Value::from(date));
    let mut data = BTreeMap::new();
    data.insert("Files".to_string(), Value::Files);
    data.insert("Env".to_string(), Value::from(context.werf_env.as_str()));
    data.insert("Commit".to_string(), Value::from(commit_data));
    set.execute(WERF_CONFIG_TEMPLATE, Value::from(data), &host)
        .map_err(RenderError::Template)
}

/// `config.goTemplateRendering.allowEnvVariables` of `werf-giterminism.yaml`.
#[derive(Debug, Default, serde::Deserialize)]
struct Giterminism {
    #[serde(default)]
    config: GiterminismConfig,
}

#[derive(Debug, Default, serde::Deserialize)]
struct GiterminismConfig {
    #[serde(default, rename = "goTemplateRendering")]
    go_template_rendering: GoTemplateRendering,
}

#[derive(Debug, Default, serde::Deserialize)]
struct GoTemplateRendering {
    #[serde(default, rename = "allowEnvVariables")]
    allow_env_variables: Vec<String>,
}

/// One allow-list entry: an exact name or an anchored regex (`/REGEX/`).
enum Allowed {
    Name(String),
    Pattern(regex::Regex),
}

fn allowed_env(
    files: &dyn CommitFiles,
    context: &RenderContext,
) -> Result<Vec<Allowed>, RenderError> {
    if context.loose_giterminism {
        return Ok(Vec::new());
    }
    let Some(bytes) = files.read(GITERMINISM_FILE).map_err(RenderError::Project)? else {
        return Ok(Vec::new());
    };
    let parsed: Giterminism = serde_yaml_ng::from_slice(&bytes)
        .map_err(|e| RenderError::Project(format!("{GITERMINISM_FILE}: {e}")))?;
    parsed
        .config
        .go_template_rendering
        .allow_env_variables
        .into_iter()
        .map(
            |entry| match entry.strip_prefix('/').and_then(|e| e.strip_suffix('/')) {
                Some(expr) if entry.len() >= 2 => regex::Regex::new(&format!("^{expr}$"))
                    .map(Allowed::Pattern)
                    .map_err(|e| {
                        RenderError::Project(format!(
                            "{GITERMINISM_FILE}: allowEnvVariables entry {entry:?}: {e}"
                        ))
                    }),
                _ => Ok(Allowed::Name(entry)),
            },
        )
        .collect()
}

struct WerfHost<'a> {
    files: &'a dyn CommitFiles,
    context: &'a RenderContext,
    allowed: Vec<Allowed>,
}

impl Host for WerfHost<'_> {
    fn env(&self, name: &str, fallback: Option<&str>) -> Result<String, String> {
        let giterministic = !self.context.loose_giterminism;
        if giterministic
            && !self.allowed.iter().any(|a| match a {
                Allowed::Name(n) => n == name,
                Allowed::Pattern(re) => re.is_match(name),
            })
        {
            return Err(format!(
                "the configuration with external dependency found in the werf config: env name '{name}' not allowed (allow it in {GITERMINISM_FILE}: config.goTemplateRendering.allowEnvVariables)"
            ));
        }
        let value = match &self.context.env {
            EnvValues::Process => std::env::var(name).ok(),
            EnvValues::Map(m) => m.get(name).cloned(),
        };
        match (value, fallback) {
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) if giterministic => Err(format!(
                "the environment variable {name:?} must be set or default must be provided"
            )),
            (None, None) => Ok(String::new()),
            (Some(v), Some(d)) if v.is_empty() => Ok(d.to_string()),
            (Some(v), _) => Ok(v),
        }
    }

    fn files(&self, method: &str, path: &str) -> Result<Value, String> {
        let clean = crate::source::clean_repo_path(path);
        match method {
            "Get" => match self.files.read(&clean)? {
                Some(bytes) => Ok(Value::from(String::from_utf8_lossy(&bytes).into_owned())),
                None => Err(format!(
                    "config go template file {path:?} not found in the commit"
                )),
            },
            "Exists" => Ok(Value::Bool(
                self.files.read(&clean)?.is_some() || self.files.is_dir(&clean)?,
            )),
            "IsDir" => Ok(Value::Bool(self.files.is_dir(&clean)?)),
            "Glob" => {
                let mut found = BTreeMap::new();
                let pattern = path.trim_start_matches("./");
                for file in self.files.list(&literal_prefix(pattern))? {
                    if crate::source::path_matcher::doublestar_match(pattern, &file) {
                        let bytes = self.files.read(&file)?.unwrap_or_default();
                        found.insert(
                            file,
                            Value::from(String::from_utf8_lossy(&bytes).into_owned()),
                        );
                    }
                }
                if found.is_empty() {
                    return Err(format!("{{{{ .Files.Glob {path:?} }}}}: no matches found"));
                }
                Ok(Value::from(found))
            }
            other => Err(format!("unknown method {other}")),
        }
    }
}

/// The directories of a glob before its first component with a wildcard (`services` for
/// `services/*/Dockerfile`): only files under it can match.
fn literal_prefix(pattern: &str) -> String {
    let parts: Vec<&str> = pattern.split('/').collect();
    let literal = parts[..parts.len().saturating_sub(1)]
        .iter()
        .take_while(|p| !p.contains(['*', '?', '[', '{', '\\']))
        .copied()
        .collect::<Vec<_>>();
    literal.join("/")
}

/// [`CommitFiles`] of a [`crate::source::GitTree`].
impl CommitFiles for crate::source::GitTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        match self.read_file(path) {
            Ok(found) => Ok(found),
            Err(crate::source::SourceError::NotAFile { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn is_dir(&self, path: &str) -> Result<bool, String> {
        let clean = crate::source::clean_repo_path(path);
        Ok(
            matches!(self.entry_at(&clean).map_err(|e| e.to_string())?, Some((_, mode)) if mode == crate::source::ls_tree::MODE_DIR),
        )
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, String> {
        if !dir.is_empty() && !self.is_dir(dir)? {
            return Ok(Vec::new());
        }
        Ok(self
            .list_entries(dir)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| e.path)
            .collect())
    }
}
