//! Finish: every stage is in the stages storage. Publish manifest lists for multi-platform
//! images, copy final images to the final repo, add custom tags, and assemble the build
//! report (werf's field names) with its per-image summaries.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kiln_crds::ImageBuild;
use kiln_crds::ImageBuildStatus;
use kiln_crds::job::BuildResult;
use kiln_crds::report::{BACKEND_BUILDAH, BuildReport, ImageRecord, RuntimeInfo};
use kiln_crds::status::{
    REPORT_CONFIGMAP_ENV_KEY, REPORT_CONFIGMAP_JSON_KEY, image_summaries, rebuilt_stage_count,
    report_fits_in_status,
};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::children::{children_selector, owned_by};
use super::context::{Context, MANAGER};
use super::error::Error;
use super::observe::lookup_unit;
use crate::config::WerfConfig;
use crate::plan::project::{ImagePlan, ProjectPlan};
use crate::pods::{PodOutcome, pod_outcome};
use crate::report::{
    final_image_names, image_names, manifest_list_digest, multi_platform_record, platform_record,
};
use crate::storage::{Freshness, StageDescription, StageDigest, StageId, StagesStorage, publish};
use crate::tags::validate_custom_tags;

/// What [`publish`] produced.
#[derive(Debug)]
pub struct FinishOutcome {
    /// The build report.
    pub report: BuildReport,
    /// Custom tags published per image.
    pub custom_tags: BTreeMap<String, Vec<String>>,
    /// The Succeeded condition message.
    pub message: String,
}

/// Stage tags (`DIGEST-TIMESTAMP`) this build's builder pods published, with build seconds,
/// read from the succeeded pods' termination messages.
async fn built_by_us(ib: &ImageBuild, ctx: &Context) -> Result<HashMap<String, f64>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ib.namespace().unwrap_or_default());
    let uid = ib.uid().unwrap_or_default();
    let mut built = HashMap::new();
    for pod in pods
        .list(&ListParams::default().labels(&children_selector(ib)))
        .await?
    {
        if !owned_by(&pod.metadata, &uid) {
            continue;
        }
        if let PodOutcome::Terminated {
            exit_code: 0,
            message,
            ..
        } = pod_outcome(&pod)
            && let Ok(result) = serde_json::from_str::<BuildResult>(&message)
        {
            for s in result.stages {
                let tag = s.tag.rsplit(':').next().unwrap_or(&s.tag).to_owned();
                built.insert(tag, s.build_seconds.unwrap_or(0.0));
            }
        }
    }
    Ok(built)
}

/// Publishes and reports (see the module docs).
///
/// Errors: a custom tag template is invalid, a registry refuses, a stage vanished.
#[tracing::instrument(name = "publish", skip_all)]
pub async fn publish(
    ib: &ImageBuild,
    ctx: &Context,
    _config: &WerfConfig,
    plan: &ProjectPlan,
    storage: &StagesStorage,
) -> Result<FinishOutcome, Error> {
    let built = built_by_us(ib, ctx).await?;
    let final_images = final_image_names(plan);
    let templates = validate_custom_tags(&ib.spec.custom_tags, &final_images)
        .map_err(|e| Error::CustomTag(e.to_string()))?;
    let mut report = BuildReport {
        runtime: Some(RuntimeInfo {
            backend: BACKEND_BUILDAH.to_owned(),
            in_container: true,
        }),
        ..BuildReport::default()
    };
    let mut custom_tags = BTreeMap::new();
    let names = image_names(plan);
    let mut reused = 0usize;
    for name in names {
        let units: Vec<&ImagePlan> = plan.images.iter().filter(|u| u.name == name).collect();
        let mut records: BTreeMap<String, (ImageRecord, StageDescription)> = BTreeMap::new();
        for unit in &units {
            let found = lookup_unit(storage, unit, Freshness::Cached).await?;
            let stages: Vec<StageDescription> = found.into_iter().flatten().collect();
            if stages.len() != unit.stages.len() || stages.is_empty() {
                return Err(Error::Internal(format!(
                    "image {name:?} ({}): a stage is missing from {} after building",
                    unit.platform, ib.spec.repo
                )));
            }
            let record = platform_record(unit, plan, &stages, &built);
            reused += record
                .stages
                .iter()
                .flatten()
                .filter(|s| !s.rebuilt)
                .count();
            records.insert(
                unit.platform.to_string(),
                (record, stages.last().cloned().expect("non-empty")),
            );
        }
        let is_final = units.first().is_some_and(|u| u.is_final);
        let (mut record, stage_id) = if records.len() == 1 {
            let (record, last) = records.values().next().cloned().expect("one record");
            (record, last.stage_id.clone())
        } else {
            let ids: BTreeMap<String, String> = records
                .iter()
                .map(|(p, (_, d))| (p.clone(), d.stage_id.to_string()))
                .collect();
            let digest_hex = manifest_list_digest(&ids);
            let digest = StageDigest::from_str(&digest_hex)
                .map_err(|e| Error::Internal(format!("manifest list digest: {e}")))?;
            let lasts: Vec<StageDescription> = records.values().map(|(_, d)| d.clone()).collect();
            let (list_digest, _warnings) = storage
                .publish_manifest_list(&digest, &lasts)
                .await
                .map_err(|source| Error::Storage {
                    source: Box::new(source),
                    operation: format!("pushing the manifest list of image {name:?}"),
                })?;
            let stage_id = StageId::multi_platform(digest);
            let repo = storage.repos().repo.to_string();
            let by_platform: BTreeMap<String, ImageRecord> = records
                .iter()
                .map(|(p, (r, _))| (p.clone(), r.clone()))
                .collect();
            let record = multi_platform_record(
                name,
                &by_platform,
                &repo,
                &stage_id.tag(),
                &list_digest,
                is_final,
                &plan.commit,
            );
            report
                .images_by_platform
                .insert(name.to_owned(), by_platform);
            (record, stage_id)
        };
        let mut target_repo = storage.repos().repo.clone();
        if is_final && let Some(final_repo) = storage.repos().final_repo.clone() {
            storage
                .copy_to_final(&stage_id)
                .await
                .map_err(|source| Error::Storage {
                    source: Box::new(source),
                    operation: format!("copying image {name:?} to the final repo"),
                })?;
            record.docker_repo = final_repo.to_string();
            record.docker_image_name = format!("{final_repo}:{}", stage_id.tag());
            target_repo = final_repo;
        }
        if is_final && !templates.is_empty() {
            let mut tags = Vec::new();
            for t in &templates {
                let tag = t.render(name, &stage_id.tag());
                publish::retag(storage.client(), &target_repo, &stage_id.tag(), &tag)
                    .await
                    .map_err(|source| Error::Storage {
                        source: Box::new(source),
                        operation: format!("adding custom tag {tag:?} to image {name:?}"),
                    })?;
                tags.push(tag);
            }
            custom_tags.insert(name.to_owned(), tags);
        }
        report.images.insert(name.to_owned(), record);
    }
    ctx.metrics.stages("reused", reused as u64);
    let rebuilt = rebuilt_stage_count(&report);
    let message = format!(
        "{} image(s) published at commit {}: {rebuilt} stage(s) built, {reused} reused",
        report.images.len(),
        &plan.commit[..12.min(plan.commit.len())]
    );
    Ok(FinishOutcome {
        report,
        custom_tags,
        message,
    })
}

/// Puts the outcome into `status`: summaries and counts always; the report itself when it
/// fits, else into an owned ConfigMap `<name>-report` (keys `report.json`, `report.env`).
///
/// Errors: writing the ConfigMap failed.
pub async fn record(
    ib: &ImageBuild,
    ctx: &Context,
    status: &mut ImageBuildStatus,
    outcome: FinishOutcome,
) -> Result<(), Error> {
    let report = outcome.report;
    let mut summaries = image_summaries(&report);
    for s in &mut summaries {
        s.custom_tags = outcome
            .custom_tags
            .get(&s.image)
            .cloned()
            .unwrap_or_default();
    }
    status.images = summaries;
    status.image_count = Some(i32::try_from(report.images.len()).unwrap_or(i32::MAX));
    status.rebuilt_stages = Some(i32::try_from(rebuilt_stage_count(&report)).unwrap_or(i32::MAX));
    if report_fits_in_status(&report) {
        status.report = Some(report);
        return Ok(());
    }
    let name = format!("{}-report", ib.name_any());
    let json = report
        .to_json()
        .map_err(|e| Error::Internal(format!("rendering the build report: {e}")))?;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: ib.namespace(),
            owner_references: Some(vec![
                crate::pods::owner_reference(ib).map_err(Error::PodBuild)?,
            ]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (REPORT_CONFIGMAP_JSON_KEY.to_owned(), json),
            (REPORT_CONFIGMAP_ENV_KEY.to_owned(), report.to_env_file()),
        ])),
        ..ConfigMap::default()
    };
    let maps: Api<ConfigMap> =
        Api::namespaced(ctx.client.clone(), &ib.namespace().unwrap_or_default());
    maps.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    status.report = None;
    status.report_config_map = Some(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_list_digest_orders_by_platform() {
        let a = "a".repeat(56) + "-1";
        let b = "b".repeat(56) + "-2";
        let by_platform = BTreeMap::from([
            ("linux/arm64".to_owned(), b.clone()),
            ("linux/amd64".to_owned(), a.clone()),
        ]);
        // amd64 sorts first: SHA3-224("<a>:::<b>"), computed with Python's hashlib.
        let expected = "ad28f569af4b37e4976ee67ee43959a14da79669901106a480943995";
        assert_eq!(manifest_list_digest(&by_platform), expected);
    }
}
