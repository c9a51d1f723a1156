//! werf.yaml as werf users write it builds for real: a templated werf.yaml (a loop over
//! services, a `.werf` partial, `.Files.Get` of a shared snippet, `env` values from the
//! ImageBuild and from a Secret, under a giterminism allow-list) is rendered, planned and
//! built by builder pods; a template error fails the build with `InvalidConfig` naming the
//! template and line, before any pod.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kiln_crds::imagebuild::{ConfigRenderingSpec, EnvValueSource, SecretKeyRef};
use kiln_crds::{ImageBuild, Phase};
use kiln_e2e::harness::{self, InProcessOperator};
use kiln_operator::storage::RepoRef;
use kube::api::{Api, PostParams};

const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

const WERF_YAML: &str = r#"project: shop
configVersion: 1
{{- $shared := .Files.Get "shared/build.yaml" | fromYaml }}
{{- range $name := splitList "," (env "CI_SERVICES") }}
---
{{ include "service" (dict "name" $name "greeting" (env "CI_GREETING" "hi") "shared" $shared) }}
{{- end }}
"#;

const PARTIAL: &str = r#"{{- define "service" }}
image: {{ .name }}
dockerfile: Dockerfile
args:
  GREETING: {{ printf "%s from %s" .greeting .name | quote }}
  SUFFIX: {{ .shared.suffix | quote }}
{{- end }}
"#;

const GITERMINISM: &str = "giterminismConfigVersion: 1\nconfig:\n  goTemplateRendering:\n    allowEnvVariables: [/CI_.*/]\n";

const DOCKERFILE: &str =
    "FROM busybox\nARG GREETING\nARG SUFFIX\nRUN echo \"$GREETING$SUFFIX\" > /greeting\n";

fn templated_build(name: &str, url: &str, registry: &str) -> ImageBuild {
    let mut ib = harness::sample_image_build(name, url, "main", registry);
    ib.spec.platforms = vec!["linux/amd64".into()];
    ib.spec.config_rendering = Some(ConfigRenderingSpec {
        env_values: BTreeMap::from([("CI_GREETING".to_string(), "hello".to_string())]),
        env_values_from: vec![EnvValueSource {
            name: "CI_SERVICES".into(),
            secret_key_ref: Some(SecretKeyRef {
                name: "build-env".into(),
                key: "services".into(),
            }),
            config_map_key_ref: None,
        }],
        ..ConfigRenderingSpec::default()
    });
    ib
}

#[tokio::test]
async fn a_templated_werf_yaml_with_env_values_from_the_spec_builds() {
    let (stack, client) = harness::start_build_stack().await.unwrap();
    let registry = stack.registry().address().to_owned();
    let (repo, _) = stack
        .git()
        .create_repo_with_files(
            "templated",
            &[
                ("werf.yaml", WERF_YAML),
                ("werf-giterminism.yaml", GITERMINISM),
                (".werf/service.tmpl", PARTIAL),
                ("shared/build.yaml", "suffix: \"!\"\n"),
                ("Dockerfile", DOCKERFILE),
            ],
        )
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "build-env"},
        "stringData": {"services": "api,worker"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let _operator = InProcessOperator::start(
        client.clone(),
        harness::build_settings("default", &[registry.as_str()]),
        cache.path(),
        &["default"],
    );
    let api: Api<ImageBuild> = Api::namespaced(client.clone(), "default");

    let built = harness::create_and_wait(
        &api,
        &templated_build("templated", repo.url(), &registry),
        BUILD_TIMEOUT,
    )
    .await
    .unwrap();
    let status = built.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.conditions);
    let report = status.report.as_ref().unwrap();
    let names: Vec<&str> = report.images.keys().map(String::as_str).collect();
    assert_eq!(names, ["api", "worker"]);
    let storage = harness::registry_client(&registry);
    let shop = RepoRef::from_str(&format!("{registry}/shop")).unwrap();
    for image in ["api", "worker"] {
        let tag = &report.images[image].docker_tag;
        let greeting = harness::file_in_image(&storage, &shop, tag, "greeting")
            .await
            .unwrap();
        assert_eq!(
            greeting.as_deref(),
            Some(format!("hello from {image}!\n").as_str())
        );
    }
    assert_eq!(
        harness::pods_left(&client, "default", "templated")
            .await
            .unwrap(),
        Vec::<String>::new()
    );

    // A template error: the build fails at planning with InvalidConfig, no pod.
    let mut broken = templated_build("broken", repo.url(), &registry);
    broken.spec.config = Some(kiln_crds::imagebuild::ConfigSpec {
        path: None,
        inline: Some("project: shop\nconfigVersion: 1\n---\nimage: app\nfrom: {{ required \"set CI_BASE\" (env \"CI_BASE\" \"\") }}\n".into()),
    });
    let failed = harness::create_and_wait(&api, &broken, BUILD_TIMEOUT)
        .await
        .unwrap();
    let status = failed.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Failed);
    let condition = status
        .conditions
        .iter()
        .find(|c| c.reason == "InvalidConfig")
        .unwrap_or_else(|| panic!("no InvalidConfig condition: {:?}", status.conditions));
    assert!(
        condition.message.starts_with("spec.config.inline, line 5: template: werfConfig:5:10: executing \"werfConfig\" at <required \"set CI_BASE\" (env \"CI_BASE\" \"\")>: error calling required: set CI_BASE"),
        "{}",
        condition.message
    );
    assert!(harness::builder_pods(&failed).is_empty());
}
