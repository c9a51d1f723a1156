//! Every sample ImageBuild in config/samples is accepted by the API server's schema
//! validation once the CRD is installed (created for real, strict field validation), and
//! invalid ImageBuilds are refused with messages naming the offending field.

mod chart_support;

use chart_support::{api_for, apply, describe, install_crd, parse_objects, repo_root};
use kiln_crds::ImageBuild;
use kiln_e2e::{ControlPlane, ControlPlaneOptions};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::response::StatusCause;

/// The sample files (everything in config/samples but the kustomization), sorted.
fn sample_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("config/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

/// The kustomization lists every sample, so `kubectl apply -k config/samples` applies
/// them all.
#[test]
fn the_samples_kustomization_lists_every_sample() {
    let text =
        std::fs::read_to_string(repo_root().join("config/samples/kustomization.yaml")).unwrap();
    for f in sample_files() {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(text.contains(&format!("- {name}")), "{name} is not listed");
    }
}

/// Each sample also passes Kiln's own checks beyond the schema (exactly one config
/// source, a parseable timeout, ...): what the controller would otherwise report as
/// InvalidSpec.
#[test]
fn every_sample_passes_the_operators_spec_validation() {
    let files = sample_files();
    assert_eq!(files.len(), 8, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let build: ImageBuild =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        build
            .spec
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

/// An ImageBuild from YAML text.
fn object(yaml: &str) -> DynamicObject {
    parse_objects(yaml).unwrap().remove(0)
}

/// Creates `yaml` with POST, as `kubectl create` does, expecting a 422 Invalid; returns
/// its causes (field path and message each).
async fn refused(client: &kube::Client, yaml: &str) -> anyhow::Result<Vec<StatusCause>> {
    let obj = object(yaml);
    match api_for(client, &obj, "ci")
        .await?
        .create(&PostParams::default(), &obj)
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 422 => {
            Ok(status.details.map(|d| d.causes).unwrap_or_default())
        }
        other => anyhow::bail!("expected 422 Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn samples_are_accepted_and_invalid_builds_refused_by_field() -> anyhow::Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions {
        controller_manager: false,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    cp.create_namespace(&client, "ci").await?;

    let mut names = Vec::new();
    for f in sample_files() {
        for obj in parse_objects(&std::fs::read_to_string(&f)?)? {
            apply(&client, &obj, "ci", false)
                .await
                .map_err(|e| anyhow::anyhow!("{} ({}): {e}", describe(&obj), f.display()))?;
            names.push(obj.metadata.name.clone().unwrap());
        }
    }
    // Stored, and readable back as the typed resource.
    let builds: Api<ImageBuild> = Api::namespaced(client.clone(), "ci");
    for name in &names {
        builds.get(name).await?;
    }
    assert_eq!(names.len(), 8);

    // Schema errors: every offending field is named in the 422's causes — an empty repo
    // (minLength), a string where an integer belongs, a malformed timeout (pattern).
    let causes = refused(
        &client,
        r#"
apiVersion: kiln.dev/v1alpha1
kind: ImageBuild
metadata: { name: invalid, namespace: ci }
spec:
  source: { git: { url: "https://git.example.org/shop.git" } }
  repo: ""
  parallelTasksLimit: five
  timeout: 10 minutes
"#,
    )
    .await?;
    // By field; the API server adds a "<nil>" cause saying CEL rules were skipped.
    let by_field: std::collections::BTreeMap<&str, &str> = causes
        .iter()
        .filter(|c| c.field != "<nil>")
        .map(|c| (c.field.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(
        by_field.keys().copied().collect::<Vec<_>>(),
        ["spec.parallelTasksLimit", "spec.repo", "spec.timeout"],
        "{causes:?}"
    );
    assert!(by_field["spec.repo"].contains("at least 1 chars long"));
    assert!(by_field["spec.parallelTasksLimit"].contains("must be of type integer"));
    assert!(by_field["spec.timeout"].contains("should match"));

    // The CRD's CEL rule (checked once the schema passes): both config sources.
    let causes = refused(
        &client,
        r#"
apiVersion: kiln.dev/v1alpha1
kind: ImageBuild
metadata: { name: invalid, namespace: ci }
spec:
  source: { git: { url: "https://git.example.org/shop.git" } }
  config: { path: werf.yaml, inline: "project: shop" }
  repo: registry.example.org/shop
"#,
    )
    .await?;
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].field, "spec.config");
    assert!(
        causes[0]
            .message
            .contains("exactly one of config.path and config.inline must be set"),
        "{causes:?}"
    );

    // Build secrets: ids are the list's map key (a duplicate is refused) and must fit the
    // `--secret id=...` syntax.
    let causes = refused(
        &client,
        r#"
apiVersion: kiln.dev/v1alpha1
kind: ImageBuild
metadata: { name: invalid, namespace: ci }
spec:
  source: { git: { url: "https://git.example.org/shop.git" } }
  repo: registry.example.org/shop
  buildSecrets:
    - { id: aws, secretKeyRef: { name: a, key: k } }
    - { id: aws, secretKeyRef: { name: b, key: k } }
    - { id: "a,src=/etc/shadow", secretKeyRef: { name: c, key: "" } }
"#,
    )
    .await?;
    let fields: Vec<&str> = causes
        .iter()
        .filter(|c| c.field != "<nil>")
        .map(|c| c.field.as_str())
        .collect();
    assert!(
        fields.contains(&"spec.buildSecrets[1]"),
        "duplicate id not refused: {causes:?}"
    );
    assert!(
        fields.contains(&"spec.buildSecrets[2].id"),
        "bad id not refused: {causes:?}"
    );
    assert!(
        fields.contains(&"spec.buildSecrets[2].secretKeyRef.key"),
        "empty key not refused: {causes:?}"
    );

    // An unknown (misspelt) field is refused by strict validation, by name.
    let misspelt = object(
        r#"
apiVersion: kiln.dev/v1alpha1
kind: ImageBuild
metadata: { name: misspelt, namespace: ci }
spec:
  source: { git: { url: "https://git.example.org/shop.git" } }
  repo: registry.example.org/shop
  customTag: [latest]
"#,
    );
    let err = apply(&client, &misspelt, "ci", false)
        .await
        .expect_err("an unknown field is refused")
        .to_string();
    assert!(err.contains("spec.customTag"), "{err}");
    assert!(builds.get_opt("invalid").await?.is_none());
    assert!(builds.get_opt("misspelt").await?.is_none());
    Ok(())
}
