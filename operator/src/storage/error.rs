//! Errors of the stages storage. Every registry error names the registry, the repository
//! and the operation, so a condition message tells the user where to look.

use super::counters::Operation;

/// An error reading or writing a stages storage, final repo, secondary repo or cache repo.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A repo option is not `HOST[:PORT]/PATH`.
    #[error("invalid repository reference {input:?}: {reason}")]
    InvalidRepo {
        /// The text as written.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag does not match the distribution tag grammar.
    #[error("invalid tag {tag:?} for {repo}: {reason}")]
    InvalidTag {
        /// `registry/repository`.
        repo: String,
        /// The tag as given.
        tag: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry secret's content is not a usable docker config.
    #[error("invalid registry credentials (kubernetes.io/dockerconfigjson): {reason}")]
    InvalidDockerConfig {
        /// What is wrong and where (registry key, field).
        reason: String,
    },
    /// HTTP 401 (or a refused token request): credentials are missing or wrong.
    #[error(
        "{operation} in {registry}/{repository}: unauthorized (401); the registry secret has \
         no or wrong credentials for {registry}: {detail}"
    )]
    Unauthorized {
        /// `host[:port]`.
        registry: String,
        /// Repository path.
        repository: String,
        /// What Kiln was doing.
        operation: Operation,
        /// The registry's own message.
        detail: String,
    },
    /// HTTP 403: the credentials are valid but may not do this.
    #[error(
        "{operation} in {registry}/{repository}: access denied (403); the credentials may \
         not {operation} here: {detail}"
    )]
    Forbidden {
        /// `host[:port]`.
        registry: String,
        /// Repository path.
        repository: String,
        /// What Kiln was doing.
        operation: Operation,
        /// The registry's own message.
        detail: String,
    },
    /// HTTP 404 on something that had to exist (a blob or manifest being copied).
    #[error("{operation} in {registry}/{repository}: {reference} not found (404): {detail}")]
    NotFound {
        /// `host[:port]`.
        registry: String,
        /// Repository path.
        repository: String,
        /// What Kiln was doing.
        operation: Operation,
        /// The tag or digest that was asked for.
        reference: String,
        /// The registry's own message.
        detail: String,
    },
    /// Timeouts, connection failures or 5xx/429 answers outlasted every retry.
    #[error(
        "{operation} in {registry}/{repository}: registry unavailable after {attempts} \
         attempts: {detail}"
    )]
    Unavailable {
        /// `host[:port]`.
        registry: String,
        /// Repository path.
        repository: String,
        /// What Kiln was doing.
        operation: Operation,
        /// How many requests were made.
        attempts: usize,
        /// The last failure.
        detail: String,
    },
    /// Any other refusal by the registry (400, 405, 409, a malformed answer).
    #[error("{operation} in {registry}/{repository} failed: {detail}")]
    Registry {
        /// `host[:port]`.
        registry: String,
        /// Repository path.
        repository: String,
        /// What Kiln was doing.
        operation: Operation,
        /// The registry's answer or the client error.
        detail: String,
    },
    /// A manifest that is not an image manifest, manifest list or OCI index, or lacks
    /// required fields.
    #[error("invalid manifest {reference} in {repo}: {reason}")]
    InvalidManifest {
        /// `registry/repository`.
        repo: String,
        /// The tag or digest.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image config blob that is not JSON of the OCI/Docker image config shape.
    #[error("invalid image config {digest} in {repo}: {reason}")]
    InvalidImageConfig {
        /// `registry/repository`.
        repo: String,
        /// The config blob digest (the image ID).
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A manifest list was asked for with entries that cannot go into it.
    #[error("cannot build the manifest list {tag} in {repo}: {reason}")]
    InvalidManifestList {
        /// `registry/repository`.
        repo: String,
        /// The tag it would get.
        tag: String,
        /// What is wrong.
        reason: String,
    },
}

impl StorageError {
    /// A stable, short reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            StorageError::InvalidRepo { .. } => "InvalidRepo",
            StorageError::InvalidTag { .. } => "InvalidTag",
            StorageError::InvalidDockerConfig { .. } => "InvalidRegistrySecret",
            StorageError::Unauthorized { .. } => "RegistryUnauthorized",
            StorageError::Forbidden { .. } => "RegistryForbidden",
            StorageError::NotFound { .. } => "RegistryNotFound",
            StorageError::Unavailable { .. } => "RegistryUnavailable",
            StorageError::Registry { .. } => "RegistryError",
            StorageError::InvalidManifest { .. } => "InvalidManifest",
            StorageError::InvalidImageConfig { .. } => "InvalidImageConfig",
            StorageError::InvalidManifestList { .. } => "InvalidManifestList",
        }
    }

    /// Whether this is a 404 from the registry.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}
