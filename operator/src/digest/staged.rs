//! Staged Dockerfile images (one stage per instruction), werf v1 and v2.

use super::{DigestError, DockerfileImageInput, Loaded, PlannedStage};

/// The stages of a staged Dockerfile image.
pub(crate) fn stages(
    _loaded: &Loaded<'_>,
    input: &DockerfileImageInput<'_>,
) -> Result<Vec<PlannedStage>, DigestError> {
    Err(DigestError::ContextAddFiles {
        image: input.image.to_string(),
        message: "staged Dockerfile digests are not implemented yet".into(),
    })
}
