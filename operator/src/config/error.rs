//! Errors of werf.yaml parsing and validation. Every error says where: the file, the document
//! (1-based, in file order), the image and the line when they are known.

use std::fmt;

/// A werf.yaml error with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file as the user named it (e.g. `werf.yaml`).
    pub file: String,
    /// 1-based document number in the file, when the error belongs to one document.
    pub document: Option<usize>,
    /// The werf image name the error belongs to (`""` for a nameless image).
    pub image: Option<String>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong (boxed to keep `Result<_, ConfigError>` small).
    pub kind: Box<ConfigErrorKind>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(document) = self.document {
            write!(f, ", document {document}")?;
        }
        if let Some(image) = &self.image {
            if image.is_empty() {
                write!(f, ", nameless image")?;
            } else {
                write!(f, ", image {image:?}")?;
            }
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The cause of a [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// The file is not valid YAML.
    #[error("YAML syntax error: {0}")]
    Syntax(String),
    /// A document is a scalar or a list instead of a mapping.
    #[error("a werf.yaml document must be a mapping of directives")]
    NotAMapping,
    /// A document has none of `project`/`configVersion` (meta), `image` or `artifact`.
    #[error(
        "cannot tell what this document is: it needs `project` and `configVersion` (the meta document) or `image` (an image)"
    )]
    UnrecognizedDocument,
    /// A key that werf.yaml does not define at this place.
    #[error("unknown directive `{key}`{}", expected_suffix(.expected))]
    UnknownDirective {
        /// The key, with its path inside the document (`git[0].foo`).
        key: String,
        /// The directives allowed at that place, as serde lists them.
        expected: String,
    },
    /// A directive has the wrong type or value.
    #[error("{0}")]
    InvalidValue(String),
    /// More than one document has `project`/`configVersion`.
    #[error(
        "more than one meta document (`project`, `configVersion`); the first one is document {first}"
    )]
    DuplicateMeta {
        /// The first meta document.
        first: usize,
    },
    /// No meta document or no `project` in it.
    #[error("`project` is required (in the meta document, together with `configVersion: 1`)")]
    MissingProject,
    /// `project` does not match werf's project name rule.
    #[error(
        "project name {0:?} is invalid: it must match ^(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$ and be at most 50 characters"
    )]
    InvalidProject(String),
    /// `configVersion` is missing or not 1.
    #[error("`configVersion` must be 1, found {0}")]
    ConfigVersion(String),
    /// An image document has neither `dockerfile` nor `from`/`fromImage`/`fromArtifact`.
    #[error(
        "image has neither `dockerfile` (a Dockerfile image) nor `from`/`fromImage`/`fromArtifact` (a Stapel image)"
    )]
    NoDockerfileNorFrom,
    /// An image document has both `dockerfile` and a Stapel base.
    #[error(
        "image has both `dockerfile` and `{0}`: a Dockerfile image takes its base from the Dockerfile, a Stapel image from `from`/`fromImage`"
    )]
    BothDockerfileAndFrom(String),
    /// The same image name is defined twice.
    #[error("image {name:?} is already defined in document {first_document}")]
    DuplicateImage {
        /// The repeated name.
        name: String,
        /// Where it was first defined.
        first_document: usize,
    },
    /// A nameless image (`image: ~`) next to other images.
    #[error("a nameless image (`image: ~`) is only allowed when it is the only image")]
    NamelessAmongOthers,
    /// A platform string that is not `os/arch[/variant]` with known values.
    #[error("invalid platform {value:?} in `{directive}`: {reason}")]
    InvalidPlatform {
        /// The directive (`platform`, `build.platform`, `--platform`).
        directive: String,
        /// The value as written.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A directive names an image that werf.yaml does not define.
    #[error("`{directive}` names image {name:?}, which is not defined in werf.yaml")]
    UnknownImage {
        /// The directive (`dependencies[0].image`, `fromImage`, `import[1].image`, ...).
        directive: String,
        /// The missing image.
        name: String,
    },
    /// werf.yaml (or a `.werf` template) failed to render: the template, line, column,
    /// function and message.
    #[error("{0}")]
    Template(super::template::TemplateError),
    /// Rendering could not read the project (`werf-giterminism.yaml`, files of the commit).
    #[error("rendering werf.yaml: {0}")]
    Render(String),
    /// Images depend on each other in a cycle.
    #[error("dependency cycle: {}", .0.join(" → "))]
    DependencyCycle(
        /// The image names along the cycle, the first repeated at the end (`a → b → a`).
        Vec<String>,
    ),
}

fn expected_suffix(expected: &str) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!(" (expected one of {expected})")
    }
}
