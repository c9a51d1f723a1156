//! werf.yaml: multi-document YAML with one meta document (`project`, `configVersion`,
//! `build`) and one document per image (Dockerfile or Stapel), parsed into typed structs and
//! validated the way werf v2 does. Effective values (staged, cache version, platforms) follow
//! werf's precedence rules.
//!
//! werf.yaml is a Go template first ([`render`]: `.werf/*.tmpl` partials, Sprig, `env`,
//! `.Files`, `.Commit`); [`WerfConfig::load`] renders and then parses, [`WerfConfig::parse`]
//! parses text that is already plain YAML.

mod error;
mod lines;
mod platform;
pub mod render;
pub mod template;
mod types;
mod validate;

use serde::Deserialize;
use serde_yaml_ng::Value;

pub use error::{ConfigError, ConfigErrorKind};
pub use platform::Platform;
pub use types::*;

use lines::DocumentLines;

/// A parsed and validated werf.yaml.
#[derive(Debug, Clone)]
pub struct WerfConfig {
    /// The file name used in errors.
    pub file: String,
    /// `project`.
    pub project: String,
    /// `build` of the meta document (defaults when absent).
    pub build: BuildMeta,
    /// `build.platform`, normalized.
    pub build_platforms: Vec<Platform>,
    /// Images in file order (an `image: [a, b]` document gives two entries).
    pub images: Vec<ImageConfig>,
}

/// One werf image.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    /// Image name; `""` for the nameless image (`image: ~`).
    pub name: String,
    /// 1-based document number in werf.yaml.
    pub document: usize,
    /// 1-based line of its `image:` (or `artifact:`) key, when found.
    pub line: Option<usize>,
    /// `platform`, normalized (empty when not set).
    pub platforms: Vec<Platform>,
    /// The directives.
    pub kind: ImageKind,
}

/// What kind of image a document describes.
#[derive(Debug, Clone)]
pub enum ImageKind {
    /// `dockerfile:` image.
    Dockerfile(Box<DockerfileImage>),
    /// `from:`/`fromImage:`/`fromArtifact:` image (legacy `artifact:` documents too).
    Stapel(Box<StapelImage>),
}

/// How an image refers to another werf image (the edges of the image DAG from werf.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RelationKind {
    /// `dependencies[].image`.
    Dependency,
    /// Stapel `fromImage`.
    FromImage,
    /// Stapel `from` naming a werf image (otherwise `from` is an external reference).
    From,
    /// Stapel `fromArtifact`.
    FromArtifact,
    /// Stapel `import[].image` / `import[].artifact`.
    Import,
}

/// A reference from one image to another in werf.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The directive, e.g. `dependencies[0].image`.
    pub directive: String,
    /// The referenced image name.
    pub image: String,
    /// The kind of relation.
    pub relation: RelationKind,
}

impl ImageConfig {
    /// Whether the image is final: `final` (default true); artifacts are never final.
    pub fn is_final(&self) -> bool {
        match &self.kind {
            ImageKind::Dockerfile(d) => d.is_final.unwrap_or(true),
            ImageKind::Stapel(s) => s.artifact.is_none() && s.is_final.unwrap_or(true),
        }
    }

    /// `dependencies` of either kind.
    pub fn dependencies(&self) -> &[Dependency] {
        match &self.kind {
            ImageKind::Dockerfile(d) => &d.dependencies,
            ImageKind::Stapel(s) => &s.dependencies,
        }
    }

    /// The image's own `cacheVersion`.
    pub fn cache_version(&self) -> Option<&str> {
        match &self.kind {
            ImageKind::Dockerfile(d) => d.cache_version.as_deref(),
            ImageKind::Stapel(s) => s.cache_version.as_deref(),
        }
    }

    /// References to other werf images. `is_image` tells whether a name is a werf image, which
    /// decides whether Stapel `from` is a relation or an external base image.
    pub fn image_references(&self, is_image: impl Fn(&str) -> bool) -> Vec<ImageReference> {
        let mut refs = Vec::new();
        let mut push = |directive: String, image: &str, relation| {
            refs.push(ImageReference {
                directive,
                image: image.to_string(),
                relation,
            })
        };
        for (i, dep) in self.dependencies().iter().enumerate() {
            push(
                format!("dependencies[{i}].image"),
                &dep.image,
                RelationKind::Dependency,
            );
        }
        if let ImageKind::Stapel(s) = &self.kind {
            if let Some(name) = &s.from_image {
                push("fromImage".into(), name, RelationKind::FromImage);
            } else if let Some(name) = s.from.as_deref().filter(|n| is_image(n)) {
                push("from".into(), name, RelationKind::From);
            }
            if let Some(name) = &s.from_artifact {
                push("fromArtifact".into(), name, RelationKind::FromArtifact);
            }
            for (i, import) in s.import.iter().enumerate() {
                if let Some(name) = &import.image {
                    push(format!("import[{i}].image"), name, RelationKind::Import);
                }
                if let Some(name) = &import.artifact {
                    push(format!("import[{i}].artifact"), name, RelationKind::Import);
                }
            }
        }
        refs
    }
}

impl WerfConfig {
    /// Parses and validates werf.yaml text. `file` names the file in errors.
    ///
    /// Errors ([`ConfigError`], with file, document, image and line where known): YAML syntax,
    /// unknown directives, an image with neither or both of `dockerfile` and `from`, duplicate
    /// names, `configVersion` ≠ 1, missing or invalid `project`, invalid platforms, references
    /// to undefined images, dependency cycles, malformed dependencies and secrets.
    pub fn parse(file: &str, text: &str) -> Result<WerfConfig, ConfigError> {
        parse(file, text)
    }

    /// Renders werf.yaml `text` as werf does ([`render::render`]) and parses the result.
    /// Returns the config and the rendered text (`werf config render`'s output). Text
    /// without `{{` is not rendered (it renders to itself).
    ///
    /// Errors: everything [`WerfConfig::parse`] reports, plus
    /// [`ConfigErrorKind::Template`] (line of werf.yaml when the error is in it) and
    /// [`ConfigErrorKind::Render`].
    pub fn load(
        file: &str,
        text: &str,
        files: &dyn render::CommitFiles,
        commit: &render::CommitInfo,
        context: &render::RenderContext,
    ) -> Result<(WerfConfig, String), ConfigError> {
        let rendered = render_text(file, text, files, commit, context)?;
        let config = parse(file, &rendered)?;
        Ok((config, rendered))
    }

    /// The image named `name`.
    pub fn image(&self, name: &str) -> Option<&ImageConfig> {
        self.images.iter().find(|i| i.name == name)
    }

    /// Effective `staged` of a Dockerfile image: the image's value, else `build.staged`, else
    /// false (werf's rule; Stapel images are always staged and return true).
    pub fn effective_staged(&self, image: &ImageConfig) -> bool {
        match &image.kind {
            ImageKind::Dockerfile(d) => d.staged.or(self.build.staged).unwrap_or(false),
            ImageKind::Stapel(_) => true,
        }
    }

    /// Effective cache version: the image's `cacheVersion`, else `build.cacheVersion`.
    pub fn effective_cache_version<'a>(&'a self, image: &'a ImageConfig) -> Option<&'a str> {
        image
            .cache_version()
            .or(self.build.cache_version.as_deref())
    }

    /// Effective target platforms: `cli` (`--platform`) when non-empty, else the image's
    /// `platform`, else `build.platform`, else `linux/amd64`.
    pub fn effective_platforms(&self, image: &ImageConfig, cli: &[Platform]) -> Vec<Platform> {
        if !cli.is_empty() {
            cli.to_vec()
        } else if !image.platforms.is_empty() {
            image.platforms.clone()
        } else if !self.build_platforms.is_empty() {
            self.build_platforms.clone()
        } else {
            vec![Platform::linux_amd64()]
        }
    }
}

/// Renders werf.yaml `text` (unchanged when it has no `{{`); errors as in [`WerfConfig::load`].
pub fn render_text(
    file: &str,
    text: &str,
    files: &dyn render::CommitFiles,
    commit: &render::CommitInfo,
    context: &render::RenderContext,
) -> Result<String, ConfigError> {
    if !render::is_template(text) {
        return Ok(text.to_string());
    }
    render::render(text, files, commit, context).map_err(|e| {
        let (line, kind) = match e {
            render::RenderError::Template(t) => (
                (t.template == render::WERF_CONFIG_TEMPLATE && t.line > 0).then_some(t.line),
                ConfigErrorKind::Template(*t),
            ),
            render::RenderError::Project(message) => (None, ConfigErrorKind::Render(message)),
        };
        ConfigError {
            file: file.to_string(),
            document: None,
            image: None,
            line,
            kind: Box::new(kind),
        }
    })
}

/// What pass one learned about a document.
enum DocClass {
    Empty,
    Meta,
    Dockerfile(Vec<String>),
    Stapel(Vec<String>),
}

pub(crate) struct Ctx<'a> {
    file: &'a str,
    lines: DocumentLines<'a>,
}

impl Ctx<'_> {
    pub(crate) fn err(
        &self,
        document: Option<usize>,
        image: Option<&str>,
        line: Option<usize>,
        kind: ConfigErrorKind,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            document,
            image: image.map(str::to_string),
            line,
            kind: Box::new(kind),
        }
    }

    pub(crate) fn key_line(&self, document: usize, key: &str) -> Option<usize> {
        self.lines.key_line(document, key)
    }

    pub(crate) fn line_containing(&self, document: usize, needle: &str) -> Option<usize> {
        self.lines.line_containing(document, needle)
    }

    /// Turns a serde error into a located [`ConfigError`]; `unknown field` becomes
    /// [`ConfigErrorKind::UnknownDirective`] with the key's path.
    fn serde_err(
        &self,
        document: usize,
        image: Option<&str>,
        err: serde_yaml_ng::Error,
    ) -> ConfigError {
        let line = err.location().map(|l| l.line());
        let (path, message) = split_serde_message(&err.to_string());
        let kind = match message.strip_prefix("unknown field `") {
            Some(rest) => {
                let (field, tail) = rest.split_once('`').unwrap_or((rest, ""));
                let key = match &path {
                    Some(p) => format!("{p}.{field}"),
                    None => field.to_string(),
                };
                let expected = tail
                    .trim_start_matches(", expected one of ")
                    .trim_start_matches(", expected ")
                    .to_string();
                ConfigErrorKind::UnknownDirective { key, expected }
            }
            None => ConfigErrorKind::InvalidValue(match path {
                Some(p) => format!("`{p}`: {message}"),
                None => message,
            }),
        };
        self.err(Some(document), image, line, kind)
    }
}

/// Splits serde_yaml's `path: message at line L column C` into the path (None at top level)
/// and the bare message.
fn split_serde_message(text: &str) -> (Option<String>, String) {
    let mut message = text.to_string();
    if let Some(pos) = message.rfind(" at line ") {
        let tail = &message[pos + " at line ".len()..];
        if tail
            .split(' ')
            .next()
            .is_some_and(|n| n.parse::<usize>().is_ok())
        {
            message.truncate(pos);
        }
    }
    // A path is a `.`-free-of-spaces prefix before ": " (e.g. `git[0]`, `dependencies[1]`).
    if let Some((head, rest)) = message
        .split_once(": ")
        .filter(|(head, _)| !head.is_empty() && !head.contains([' ', '`']))
    {
        return (Some(head.to_string()), rest.to_string());
    }
    (None, message)
}

fn classify(
    ctx: &Ctx<'_>,
    document: usize,
    value: &Value,
) -> Result<(DocClass, Option<String>), ConfigError> {
    let map = match value {
        Value::Null => return Ok((DocClass::Empty, None)),
        Value::Mapping(m) => m,
        _ => {
            return Err(ctx.err(
                Some(document),
                None,
                ctx.lines.first_content_line(document),
                ConfigErrorKind::NotAMapping,
            ));
        }
    };
    let has = |k: &str| map.contains_key(k);
    let names = image_names(ctx, document, map)?;
    let first_name = names.as_ref().and_then(|n| n.first().cloned());
    let Some(names) = names else {
        if has("project") || has("configVersion") {
            return Ok((DocClass::Meta, None));
        }
        return Err(ctx.err(
            Some(document),
            None,
            None,
            ConfigErrorKind::UnrecognizedDocument,
        ));
    };
    let image = first_name.as_deref();
    let stapel_base = ["from", "fromImage", "fromArtifact"]
        .into_iter()
        .find(|k| has(k));
    let is_artifact = has("artifact") && !has("image");
    if has("dockerfile") {
        if let Some(base) = stapel_base {
            let line = ctx.key_line(document, base);
            return Err(ctx.err(
                Some(document),
                image,
                line,
                ConfigErrorKind::BothDockerfileAndFrom(base.to_string()),
            ));
        }
        if is_artifact {
            return Err(ctx.err(
                Some(document),
                image,
                ctx.key_line(document, "artifact"),
                ConfigErrorKind::InvalidValue(
                    "`artifact` documents are Stapel images; use `image` with `final: false` for a Dockerfile image".into(),
                ),
            ));
        }
        return Ok((DocClass::Dockerfile(names), first_name));
    }
    if stapel_base.is_none() {
        // A misspelled `dockerfile:` or `from:` is the likelier cause: name it first.
        if let Some(key) = unknown_image_key(map) {
            return Err(ctx.err(
                Some(document),
                image,
                ctx.key_line(document, &key),
                ConfigErrorKind::UnknownDirective {
                    key,
                    expected: String::new(),
                },
            ));
        }
        let line = ctx
            .key_line(document, "image")
            .or_else(|| ctx.key_line(document, "artifact"));
        return Err(ctx.err(
            Some(document),
            image,
            line,
            ConfigErrorKind::NoDockerfileNorFrom,
        ));
    }
    Ok((DocClass::Stapel(names), first_name))
}

/// The first top-level key of an image document that neither a Dockerfile image nor a Stapel
/// image defines (each key is tried alone against both, so only unknown keys fail as unknown).
fn unknown_image_key(map: &serde_yaml_ng::Mapping) -> Option<String> {
    let unknown = |e: serde_yaml_ng::Error| e.to_string().starts_with("unknown field");
    map.iter().find_map(|(key, value)| {
        let name = key.as_str()?;
        let mut alone = serde_yaml_ng::Mapping::new();
        alone.insert(key.clone(), value.clone());
        let alone = Value::Mapping(alone);
        let dockerfile = types::DockerfileImage::deserialize(&alone).err();
        let stapel = types::StapelImage::deserialize(&alone).err();
        (dockerfile.is_some_and(unknown) && stapel.is_some_and(unknown)).then(|| name.to_string())
    })
}

/// The names an image document defines: `image` (string, list or null) or `artifact`;
/// `Ok(None)` when the document has neither key.
fn image_names(
    ctx: &Ctx<'_>,
    document: usize,
    map: &serde_yaml_ng::Mapping,
) -> Result<Option<Vec<String>>, ConfigError> {
    let bad = |what: &str| {
        ctx.err(
            Some(document),
            None,
            ctx.key_line(document, "image"),
            ConfigErrorKind::InvalidValue(format!(
                "`image` must be a name, a list of names or null (~), found {what}"
            )),
        )
    };
    if let Some(value) = map.get("image") {
        if map.contains_key("artifact") {
            return Err(ctx.err(
                Some(document),
                None,
                ctx.key_line(document, "artifact"),
                ConfigErrorKind::InvalidValue(
                    "a document has either `image` or `artifact`, not both".into(),
                ),
            ));
        }
        return match value {
            Value::Null => Ok(Some(vec![String::new()])),
            Value::String(s) if !s.is_empty() => Ok(Some(vec![s.clone()])),
            Value::Sequence(items) if !items.is_empty() => items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(bad("a list item that is not a name")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Value::String(_) => Err(bad("an empty string")),
            Value::Sequence(_) => Err(bad("an empty list")),
            _ => Err(bad("another type")),
        };
    }
    match map.get("artifact") {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(vec![s.clone()])),
        Some(_) => Err(ctx.err(
            Some(document),
            None,
            ctx.key_line(document, "artifact"),
            ConfigErrorKind::InvalidValue("`artifact` must be a non-empty name".into()),
        )),
    }
}

fn parse(file: &str, text: &str) -> Result<WerfConfig, ConfigError> {
    // Pass 1: every document as a generic value, to classify it (and catch syntax errors).
    let mut values = Vec::new();
    let mut syntax_error = None;
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        match Value::deserialize(document) {
            Ok(value) => values.push(value),
            Err(err) => {
                // A failed stream yields its error forever: stop at the first one.
                syntax_error = Some(err);
                break;
            }
        }
    }
    let expected = syntax_error.is_none().then_some(values.len());
    let lines = DocumentLines::new(text, expected);
    let ctx = Ctx { file, lines };
    if let Some(err) = syntax_error {
        let line = err.location().map(|l| l.line());
        let (_, message) = split_serde_message(&err.to_string());
        let document = line
            .and_then(|l| ctx.lines.document_of_line(l))
            .or(Some(values.len() + 1));
        return Err(ctx.err(document, None, line, ConfigErrorKind::Syntax(message)));
    }

    let mut classes = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        classes.push(classify(&ctx, i + 1, value)?);
    }
    drop(values);

    // Pass 2: typed deserialization of each document, with serde's positions.
    let mut meta: Option<(usize, RawMeta)> = None;
    let mut images = Vec::new();
    for (i, (document, (class, first_name))) in serde_yaml_ng::Deserializer::from_str(text)
        .zip(classes)
        .enumerate()
    {
        let number = i + 1;
        let image = first_name.as_deref();
        match class {
            DocClass::Empty => {}
            DocClass::Meta => {
                let raw =
                    RawMeta::deserialize(document).map_err(|e| ctx.serde_err(number, None, e))?;
                if let Some((first, _)) = &meta {
                    return Err(ctx.err(
                        Some(number),
                        None,
                        ctx.key_line(number, "project")
                            .or_else(|| ctx.key_line(number, "configVersion")),
                        ConfigErrorKind::DuplicateMeta { first: *first },
                    ));
                }
                meta = Some((number, raw));
            }
            DocClass::Dockerfile(names) => {
                let parsed = DockerfileImage::deserialize(document)
                    .map_err(|e| ctx.serde_err(number, image, e))?;
                let kind = ImageKind::Dockerfile(Box::new(parsed));
                push_images(&ctx, &mut images, number, names, kind, "image")?;
            }
            DocClass::Stapel(names) => {
                let parsed = StapelImage::deserialize(document)
                    .map_err(|e| ctx.serde_err(number, image, e))?;
                let key = if parsed.artifact.is_some() {
                    "artifact"
                } else {
                    "image"
                };
                let kind = ImageKind::Stapel(Box::new(parsed));
                push_images(&ctx, &mut images, number, names, kind, key)?;
            }
        }
    }

    let (meta_document, meta) = meta.unwrap_or_default();
    let meta_document = Some(meta_document).filter(|d| *d > 0);
    validate::validate(&ctx, meta_document, meta, images)
}

fn push_images(
    ctx: &Ctx<'_>,
    images: &mut Vec<ImageConfig>,
    document: usize,
    names: Vec<String>,
    kind: ImageKind,
    key: &str,
) -> Result<(), ConfigError> {
    let line = ctx.key_line(document, key);
    let platforms = {
        let raw = match &kind {
            ImageKind::Dockerfile(d) => d.platform.as_ref(),
            ImageKind::Stapel(s) => s.platform.as_ref(),
        };
        let image = names.first().map(String::as_str);
        validate::parse_platforms(ctx, document, image, "platform", raw)?
    };
    for name in names {
        images.push(ImageConfig {
            name,
            document,
            line,
            platforms: platforms.clone(),
            kind: kind.clone(),
        });
    }
    Ok(())
}
