//! `helm template` output of charts/kiln, applied object by object with server-side
//! apply, `dryRun=All` and strict field validation to a real kube-apiserver: every
//! object of the chart passes the API server's schemas, defaulting and admission, for
//! the default values and for the namespaced (RoleBinding-per-namespace) variant.

mod chart_support;

use chart_support::{apply, describe, helm_template, parse_objects};
use k8s_openapi::api::apps::v1::Deployment;
use kiln_e2e::{ControlPlane, ControlPlaneOptions};
use kube::api::Api;

/// Applies every object of `yaml` with dry-run; returns the objects' descriptions and
/// fails listing every refused object with the API server's message.
async fn dry_run_all(client: &kube::Client, yaml: &str) -> anyhow::Result<Vec<String>> {
    let objects = parse_objects(yaml)?;
    let mut refused = Vec::new();
    let mut accepted = Vec::new();
    for obj in &objects {
        match apply(client, obj, "kiln-system", true).await {
            Ok(_) => accepted.push(describe(obj)),
            Err(e) => refused.push(format!("{}: {e}", describe(obj))),
        }
    }
    anyhow::ensure!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    Ok(accepted)
}

#[tokio::test]
async fn every_rendered_object_passes_server_side_dry_run() -> anyhow::Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions {
        controller_manager: false,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let client = cp.client().await?;
    for ns in ["kiln-system", "kiln-locks", "ci", "qa"] {
        cp.create_namespace(&client, ns).await?;
    }

    let default = dry_run_all(&client, &helm_template("kiln-system", &[])?).await?;
    let mut kinds: Vec<&str> = default
        .iter()
        .map(|d| d.split('/').next().unwrap())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Lease",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ],
        "objects: {default:?}"
    );

    let namespaced = dry_run_all(
        &client,
        &helm_template(
            "kiln-system",
            &[
                "--set",
                "watchNamespaces={ci,qa}",
                "--set",
                "lockNamespace=kiln-locks",
                "--set",
                "builder.privileged=false",
                "--set",
                "metrics.service.enabled=false",
            ],
        )?,
    )
    .await?;
    assert!(namespaced.contains(&"RoleBinding/qa/kiln-builds".to_owned()));

    // A dry run stores nothing.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kiln-system");
    assert!(deployments.get_opt("kiln-operator").await?.is_none());

    // The dry run really validates (so the acceptance above means something): a
    // misspelt field is refused, and strict validation names it.
    let broken = helm_template("kiln-system", &[])?.replace(
        "readOnlyRootFilesystem: true",
        "readOnlyRootFileSystem: true",
    );
    let err = dry_run_all(&client, &broken).await.unwrap_err().to_string();
    assert!(
        err.contains("Deployment/kiln-system/kiln-operator"),
        "{err}"
    );
    assert!(err.contains("readOnlyRootFileSystem"), "{err}");
    Ok(())
}
