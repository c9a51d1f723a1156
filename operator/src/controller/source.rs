//! Dereference step: the git Secret named by the spec, then the source cache resolving
//! `spec.source.git.revision` to a commit (fetching into the mirror).

use k8s_openapi::api::core::v1::Secret;
use kiln_crds::ImageBuild;
use kube::ResourceExt;
use kube::api::Api;

use super::context::Context;
use super::error::Error;
use crate::mirror::{GitAuth, ResolvedSource};

/// Reads the git credentials of `ib` (anonymous without `spec.source.git.secretRef`).
///
/// Errors: [`Error::SecretNotFound`], [`Error::GitSecret`] (no usable keys), API errors.
pub async fn git_auth(ib: &ImageBuild, ctx: &Context) -> Result<GitAuth, Error> {
    let Some(secret_ref) = &ib.spec.source.git.secret_ref else {
        return Ok(GitAuth::Anonymous);
    };
    let namespace = ib.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await?
        .ok_or_else(|| Error::SecretNotFound {
            name: secret_ref.name.clone(),
            namespace,
            field: "spec.source.git.secretRef",
        })?;
    Ok(GitAuth::from_secret_data(
        &secret_ref.name,
        &secret.data.unwrap_or_default(),
    )?)
}

/// Resolves the spec's revision in the source cache, on a blocking thread (libgit2 blocks).
///
/// With `pinned` (the commit already recorded in the status) that commit is resolved
/// instead, which needs no network once the mirror has it — a restarted build keeps
/// building the commit it started with even if the branch moved.
///
/// Errors: [`Error::Source`] (unreachable, authentication, revision not found).
pub async fn resolve(
    ib: &ImageBuild,
    ctx: &Context,
    pinned: Option<&str>,
) -> Result<ResolvedSource, Error> {
    let auth = git_auth(ib, ctx).await?;
    let sources = ctx.sources.clone();
    let url = ib.spec.source.git.url.clone();
    let revision = pinned.unwrap_or(&ib.spec.source.git.revision).to_owned();
    tokio::task::spawn_blocking(move || sources.resolve(&url, &revision, &auth))
        .await
        .map_err(|e| Error::Internal(format!("source fetch task: {e}")))?
        .map_err(Error::Source)
}
