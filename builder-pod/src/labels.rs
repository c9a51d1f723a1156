//! Stage names, tags and labels as werf writes them (reference §1.1 and §3).

use std::collections::BTreeMap;

use kiln_crds::job::{BuildJob, StageBuild, StageJob};

/// Label with the werf project name.
pub const LABEL_PROJECT: &str = "werf";
/// Label with the stage content digest.
pub const LABEL_CONTENT_DIGEST: &str = "werf-stage-content-digest";
/// Label with the parent stage ID `DIGEST-TIMESTAMP_MILLISEC`.
pub const LABEL_PARENT_STAGE_ID: &str = "werf.io/parent-stage-id";
/// Legacy label with the parent image ID (werf sets it only for a previous stage).
pub const LABEL_BASE_IMAGE_ID: &str = "werf.io/base-image-id";
/// Label with the project repository's HEAD commit.
pub const LABEL_PROJECT_COMMIT: &str = "werf-project-repo-commit";

/// The content-based tag `DIGEST-TIMESTAMP_MILLISEC`: the shared werf model's format.
pub use kiln_crds::werf::stage_tag::stage_tag;

/// Milliseconds since the Unix epoch, UTC, now (werf takes it at publish time, after the
/// build).
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The stage ID (`DIGEST-TIMESTAMP_MILLISEC`) of a published stage reference
/// `REPO:DIGEST-TIMESTAMP_MILLISEC`, i.e. the tag; `None` when the reference has no tag.
pub use kiln_crds::werf::stage_tag::stage_tag_of_reference as stage_id_of_reference;

/// Labels of one stage image, werf-compatible:
/// - `werf` = project, `werf-stage-content-digest` = the stage's content digest (always);
/// - `werf.io/parent-stage-id` = `parent_stage_id` when the stage is built on another stage;
/// - `werf.io/base-image-id` = `parent_image_id` for that case too (legacy label);
/// - `werf-project-repo-commit` = `commit` for a non-staged Dockerfile or a `FROM` stage
///   (werf does not write it on staged instruction stages);
/// - then the job's own labels for the stage, which win on conflicts.
pub fn stage_labels(
    job: &BuildJob,
    stage: &StageJob,
    parent_stage_id: Option<&str>,
    parent_image_id: Option<&str>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_PROJECT.to_owned(), job.project.clone());
    labels.insert(
        LABEL_CONTENT_DIGEST.to_owned(),
        stage.content_digest.clone(),
    );
    if let Some(id) = parent_stage_id {
        labels.insert(LABEL_PARENT_STAGE_ID.to_owned(), id.to_owned());
        if let Some(image) = parent_image_id {
            labels.insert(LABEL_BASE_IMAGE_ID.to_owned(), image.to_owned());
        }
    }
    let commit = job
        .commit
        .as_deref()
        .or(job.source.as_ref().map(|s| s.commit.as_str()));
    if let (Some(commit), false) = (
        commit,
        matches!(stage.build, StageBuild::Instruction { .. }),
    ) {
        labels.insert(LABEL_PROJECT_COMMIT.to_owned(), commit.to_owned());
    }
    for (name, value) in &stage.labels {
        labels.insert(name.clone(), value.clone());
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_crds::job::{Instruction, JOB_API_VERSION, KeyValue, ParentRef, Source};

    const D1: &str = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";
    const D2: &str = "0000000000000000000000000000000000000000000000000000beef";

    fn job(stage: StageJob) -> BuildJob {
        BuildJob {
            api_version: JOB_API_VERSION.into(),
            project: "shop".into(),
            image: "backend".into(),
            commit: None,
            source: Some(Source {
                url: "file:///repo".into(),
                commit: "c0ffee".into(),
                auth: None,
            }),
            context_dir: String::new(),
            dockerfile_path: "Dockerfile".into(),
            target: None,
            build_args: Default::default(),
            add_hosts: vec![],
            platform: None,
            network: Default::default(),
            ssh_key_paths: vec![],
            secrets: vec![],
            registry_mirrors: vec![],
            insecure_registries: vec![],
            registry_auth_path: None,
            repo: "r.example/shop".into(),
            cache_repos: vec![],
            base_images: vec![],
            stages: vec![stage],
        }
    }

    fn stage(build: StageBuild) -> StageJob {
        StageJob {
            name: "x".into(),
            digest: D1.into(),
            content_digest: D2.into(),
            parent: ParentRef::Previous,
            build,
            labels: Default::default(),
        }
    }

    #[test]
    fn tag_is_digest_dash_millis_70_chars() {
        let tag = stage_tag(D1, 1_700_000_000_123);
        assert_eq!(tag, format!("{D1}-1700000000123"));
        assert_eq!(tag.len(), 70);
    }

    #[test]
    fn stage_id_is_the_tag_not_the_port() {
        assert_eq!(
            stage_id_of_reference("127.0.0.1:5000/shop:abc-1"),
            Some("abc-1")
        );
        assert_eq!(stage_id_of_reference("127.0.0.1:5000/shop"), None);
        assert_eq!(stage_id_of_reference("shop"), None);
    }

    #[test]
    fn dockerfile_stage_gets_project_content_digest_and_commit() {
        let st = stage(StageBuild::Dockerfile { dockerfile: None });
        let labels = stage_labels(&job(st.clone()), &st, None, None);
        let expected: BTreeMap<String, String> = [
            ("werf", "shop"),
            ("werf-project-repo-commit", "c0ffee"),
            ("werf-stage-content-digest", D2),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, expected);
    }

    #[test]
    fn instruction_stage_gets_parent_ids_but_no_commit() {
        let st = stage(StageBuild::Instruction {
            text: "ENV A=1".into(),
            instruction: Instruction::Env {
                vars: vec![KeyValue {
                    name: "A".into(),
                    value: "1".into(),
                }],
            },
        });
        let labels = stage_labels(&job(st.clone()), &st, Some("p-1"), Some("sha256:aa"));
        assert_eq!(labels["werf.io/parent-stage-id"], "p-1");
        assert_eq!(labels["werf.io/base-image-id"], "sha256:aa");
        assert!(!labels.contains_key("werf-project-repo-commit"));
    }

    #[test]
    fn job_labels_win_and_explicit_commit_beats_source() {
        let mut st = stage(StageBuild::From);
        st.labels.insert("werf".into(), "other".into());
        st.labels.insert("werf-version".into(), "v2.0.0".into());
        let mut j = job(st.clone());
        j.commit = Some("feed".into());
        let labels = stage_labels(&j, &st, None, None);
        assert_eq!(labels["werf"], "other");
        assert_eq!(labels["werf-version"], "v2.0.0");
        assert_eq!(labels["werf-project-repo-commit"], "feed");
    }
}
