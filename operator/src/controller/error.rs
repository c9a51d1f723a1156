//! The controller's error enum: each variant knows the condition reason it ends a build
//! with and whether it ends the build at all.
//!
//! Two kinds of failure exist. *Terminal* ones are facts about the ImageBuild's input (a
//! missing revision, a malformed werf.yaml, a refused credential): retrying cannot help, so
//! the build ends `Failed` with a condition naming the cause. *Transient* ones (the
//! Kubernetes API briefly unavailable, a write conflict) go to the error policy, which counts
//! them by reason and requeues with a delay.

use kiln_crds::{Reason, SpecErrors};
use kube::runtime::finalizer;

use crate::mirror::{AuthSecretError, MirrorError};
use crate::plan::project::ProjectPlanError;
use crate::pods::PodBuildError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (transient; retried).
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// The status write was refused because the ImageBuild changed since this pass read
    /// it (a `409 Conflict` on the `resourceVersion` precondition): the pass worked from a
    /// stale copy, and the next one starts from the current object (transient; retried).
    #[error("the ImageBuild changed since this pass read it; its status was not written")]
    StaleImageBuild,
    /// The spec breaks a rule the schema cannot express.
    #[error("invalid ImageBuild spec: {0}")]
    InvalidSpec(#[source] SpecErrors),
    /// A feature the spec asks for that this operator does not implement yet.
    #[error("{0}")]
    Unsupported(String),
    /// A base image (`FROM`) that no registry it may come from has: the message names
    /// the image, platform and reference, the source says where it was looked for.
    #[error("{message}: {source}")]
    BaseImageNotFound {
        /// Image, platform and base reference.
        message: String,
        /// The registry's 404 (the last one asked).
        #[source]
        source: Box<crate::storage::StorageError>,
    },
    /// A platform of `spec.platforms` that werf does not know.
    #[error("spec.platforms: {platform:?}: {message}")]
    InvalidPlatform {
        /// The platform as given.
        platform: String,
        /// Why it is invalid.
        message: String,
    },
    /// A Secret named in the spec does not exist.
    #[error("Secret {name:?} (from {field}) not found in namespace {namespace:?}")]
    SecretNotFound {
        /// Secret name.
        name: String,
        /// Namespace.
        namespace: String,
        /// The spec field naming it.
        field: &'static str,
    },
    /// A Secret a `spec.buildSecrets` entry names lacks the entry's key.
    #[error(
        "Secret {name:?} in namespace {namespace:?} has no key {key:?} (from spec.buildSecrets id {id:?})"
    )]
    BuildSecretKeyNotFound {
        /// Secret name.
        name: String,
        /// Namespace.
        namespace: String,
        /// The key the entry names.
        key: String,
        /// The entry's id.
        id: String,
    },
    /// A Secret, ConfigMap or key that `spec.configRendering.envValuesFrom` names is missing.
    #[error(
        "{what} (for werf.yaml env variable {variable:?}, from {field}) not found in namespace {namespace:?}"
    )]
    TemplateEnvNotFound {
        /// What is missing (`Secret "x"`, `key "k" of ConfigMap "y"`).
        what: String,
        /// Namespace.
        namespace: String,
        /// The variable the entry gives.
        variable: String,
        /// The spec field.
        field: &'static str,
    },
    /// The git Secret does not hold usable credentials.
    #[error(transparent)]
    GitSecret(#[from] AuthSecretError),
    /// The source could not be fetched or the revision resolved.
    #[error(transparent)]
    Source(#[from] MirrorError),
    /// werf.yaml, a Dockerfile or the image graph is invalid.
    #[error(transparent)]
    Plan(#[from] ProjectPlanError),
    /// A builder pod could not be described.
    #[error(transparent)]
    PodBuild(#[from] PodBuildError),
    /// The finalizer helper failed (wraps the apply/cleanup error).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// A registry refused, failed or could not be reached.
    #[error("{operation}: {source}")]
    Storage {
        /// What Kiln was doing (`looking up stages of image "backend"`...).
        operation: String,
        /// The registry error, naming registry and repository.
        #[source]
        source: Box<crate::storage::StorageError>,
    },
    /// A stage lock could not be taken or read.
    #[error("stage locks: {0}")]
    Lock(#[source] crate::lock::LockError),
    /// A builder pod reported a failed instruction.
    #[error("{0}")]
    StageBuildFailed(String),
    /// A builder pod ended without a usable result.
    #[error("{0}")]
    BuilderPodFailed(String),
    /// A custom tag template is invalid.
    #[error("spec.customTags: {0}")]
    CustomTag(String),
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The job compiler's refusals keep their meaning: an unsupported image or stage and a spec
/// lacking a build secret end the build `InvalidSpec`, a disagreement is internal.
impl From<crate::job::JobError> for Error {
    fn from(e: crate::job::JobError) -> Self {
        use crate::job::JobError as J;
        match e {
            J::Unsupported(message) => Error::Unsupported(message),
            J::InvalidSpec(errors) => Error::InvalidSpec(errors),
            J::Internal(message) => Error::Internal(message),
        }
    }
}

/// Build-time facts failures keep their meaning (a registry error, a base image no
/// registry has, a source or Dockerfile error, an unsupported dependency).
impl From<crate::facts::FactsError> for Error {
    fn from(e: crate::facts::FactsError) -> Self {
        use crate::facts::FactsError as F;
        match e {
            F::Storage { operation, source } => Error::Storage { operation, source },
            F::BaseImageNotFound { message, source } => {
                Error::BaseImageNotFound { message, source }
            }
            F::Plan(e) => Error::Plan(e),
            F::Unsupported(message) => Error::Unsupported(message),
            F::Internal(message) => Error::Internal(message),
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl Error {
    /// The condition reason a terminal error ends the build with (also the Event reason).
    pub fn reason(&self) -> Reason {
        use ProjectPlanError as P;
        match self {
            Error::Kube(_) | Error::StaleImageBuild | Error::Internal(_) | Error::Lock(_) => {
                Reason::InternalError
            }
            Error::Storage { source, .. } => {
                use crate::storage::StorageError as S;
                match source.as_ref() {
                    S::Unauthorized { .. }
                    | S::Forbidden { .. }
                    | S::InvalidDockerConfig { .. } => Reason::RegistryAuthFailed,
                    S::InvalidRepo { .. } => Reason::InvalidSpec,
                    _ => Reason::RegistryUnavailable,
                }
            }
            Error::StageBuildFailed(_) => Reason::StageBuildFailed,
            Error::BaseImageNotFound { .. } => Reason::InvalidDockerfile,
            Error::CustomTag(_) => Reason::InvalidCustomTag,
            Error::BuilderPodFailed(_) => Reason::BuilderPodFailed,
            Error::InvalidSpec(_) | Error::Unsupported(_) | Error::InvalidPlatform { .. } => {
                Reason::InvalidSpec
            }
            Error::SecretNotFound { .. }
            | Error::BuildSecretKeyNotFound { .. }
            | Error::TemplateEnvNotFound { .. }
            | Error::GitSecret(_) => Reason::SecretNotFound,
            Error::Source(e) => e.reason(),
            Error::Plan(e) => match e {
                P::Source(_) => Reason::SourceUnavailable,
                P::ConfigNotFound { .. } | P::ConfigNotUtf8 { .. } | P::Config(_) | P::Plan(_) => {
                    Reason::InvalidConfig
                }
                P::DockerfileNotFound { .. } | P::Dockerfile { .. } | P::Digest(_) => {
                    Reason::InvalidDockerfile
                }
            },
            Error::PodBuild(PodBuildError::Platform(_)) => Reason::InvalidSpec,
            Error::PodBuild(_) => Reason::InternalError,
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.reason(),
                _ => Reason::InternalError,
            },
        }
    }

    /// The label of this error in the `kiln_reconcile_failures_total` metric: the reason,
    /// except `KubeApi` for transient API failures.
    pub fn metric_label(&self) -> &'static str {
        if matches!(self, Error::StaleImageBuild) {
            "StaleImageBuild"
        } else if self.is_transient() {
            "KubeApi"
        } else {
            self.reason().as_str()
        }
    }

    /// True for failures worth retrying (Kubernetes API errors); false for facts about the
    /// input that end the build.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(_) | Error::StaleImageBuild | Error::Lock(_) => true,
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.is_transient()
                }
                _ => true,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_crds::SpecError;

    #[test]
    fn a_stale_status_write_is_retried_under_its_own_label() {
        let stale = Error::StaleImageBuild;
        assert!(stale.is_transient());
        assert_eq!(stale.metric_label(), "StaleImageBuild");
    }

    #[test]
    fn reasons_and_labels() {
        let spec = Error::InvalidSpec(SpecErrors(vec![SpecError::ConfigBothSet]));
        assert_eq!(spec.reason(), Reason::InvalidSpec);
        assert_eq!(spec.metric_label(), "InvalidSpec");
        assert!(!spec.is_transient());
        assert_eq!(
            spec.to_string(),
            "invalid ImageBuild spec: spec.config: set either path or inline, not both"
        );
        let rev = Error::Source(MirrorError::RevisionNotFound {
            url: "u".into(),
            revision: "r".into(),
        });
        assert_eq!(rev.reason(), Reason::RevisionNotFound);
        let missing = Error::SecretNotFound {
            name: "git".into(),
            namespace: "ci".into(),
            field: "spec.source.git.secretRef",
        };
        assert_eq!(missing.reason(), Reason::SecretNotFound);
        assert_eq!(
            missing.to_string(),
            "Secret \"git\" (from spec.source.git.secretRef) not found in namespace \"ci\""
        );
        let cfg = Error::Plan(ProjectPlanError::ConfigNotFound {
            path: "werf.yaml".into(),
            commit: "c".into(),
        });
        assert_eq!(cfg.reason(), Reason::InvalidConfig);
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(cfg)));
        assert_eq!(wrapped.reason(), Reason::InvalidConfig);
        assert!(!wrapped.is_transient());
        let unnamed = Error::Finalizer(Box::new(finalizer::Error::UnnamedObject));
        assert!(unnamed.is_transient());
        assert_eq!(unnamed.metric_label(), "KubeApi");
    }
}
