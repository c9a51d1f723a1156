//! The build's children (builder pods and job ConfigMaps, matched by label and owner uid)
//! and its status write.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kiln_crds::{ImageBuild, ImageBuildStatus};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, MANAGER};
use super::error::Error;
use crate::pods::names::{COMPONENT_BUILDER, LABEL_COMPONENT, LABEL_IMAGEBUILD, label_value};

/// The label selector of a build's builder pods and job ConfigMaps.
pub fn children_selector(ib: &ImageBuild) -> String {
    format!(
        "{LABEL_COMPONENT}={COMPONENT_BUILDER},{LABEL_IMAGEBUILD}={}",
        label_value(&ib.name_any())
    )
}

/// Whether `meta` names the object with `uid` as its controller.
pub fn owned_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    uid: &str,
) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Deletes the builder pods and job ConfigMaps this build owns (matched by label and by
/// owner uid, so a same-named newer ImageBuild's pods are left alone).
pub async fn delete_children(ib: &ImageBuild, ctx: &Context) -> Result<(), Error> {
    let namespace = ib.namespace().unwrap_or_default();
    let uid = ib.uid().unwrap_or_default();
    let selector = children_selector(ib);
    let lp = ListParams::default().labels(&selector);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    for pod in pods.list(&lp).await? {
        if owned_by(&pod.metadata, &uid) {
            ctx.leases.release_pods(&[pod.name_any()]).await;
            ignore_not_found(
                pods.delete(&pod.name_any(), &DeleteParams::background())
                    .await,
            )?;
        }
    }
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    for cm in maps.list(&lp).await? {
        if owned_by(&cm.metadata, &uid) {
            ignore_not_found(
                maps.delete(&cm.name_any(), &DeleteParams::background())
                    .await,
            )?;
        }
    }
    Ok(())
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Writes `status` with server-side apply (field manager [`MANAGER`]), unless it equals the
/// current one.
///
/// The write is conditional on the `resourceVersion` this pass read: a pass that started
/// from a stale copy of the ImageBuild (the watch had not yet delivered the previous pass's
/// write) gets [`Error::StaleImageBuild`] instead of overwriting a newer status — for
/// example a `Succeeded` status with a report, after the builder pods it was read from
/// are gone.
pub async fn write_status(
    ib: &ImageBuild,
    ctx: &Context,
    status: &ImageBuildStatus,
) -> Result<(), Error> {
    if ib.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api = ctx.builds(&ib.namespace().unwrap_or_default());
    let patch = status_patch(ib, status);
    match api
        .patch_status(
            &ib.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::StaleImageBuild),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// The server-side apply patch of a status write; carries the read `resourceVersion` (when
/// known) as the optimistic-concurrency precondition.
fn status_patch(ib: &ImageBuild, status: &ImageBuildStatus) -> serde_json::Value {
    let mut patch = json!({
        "apiVersion": ImageBuild::api_version(&()),
        "kind": ImageBuild::kind(&()),
        "status": status,
    });
    if let Some(rv) = &ib.metadata.resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_crds::ImageBuildSpec;

    fn build(resource_version: Option<&str>) -> ImageBuild {
        let spec: ImageBuildSpec = serde_json::from_value(json!({
            "source": {"git": {"url": "https://git.example.org/a.git"}},
            "repo": "registry.example.org/a",
        }))
        .unwrap();
        let mut ib = ImageBuild::new("a", spec);
        ib.metadata.resource_version = resource_version.map(str::to_owned);
        ib
    }

    #[test]
    fn status_patch_is_conditional_on_the_read_resource_version() {
        let patch = status_patch(&build(Some("42")), &ImageBuildStatus::default());
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(patch["kind"], "ImageBuild");
    }

    #[test]
    fn status_patch_without_a_resource_version_is_unconditional() {
        let patch = status_patch(&build(None), &ImageBuildStatus::default());
        assert!(patch.get("metadata").is_none());
    }
}
