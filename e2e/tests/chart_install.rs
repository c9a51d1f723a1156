//! `helm install` of charts/kiln for real against a real kube-apiserver (with
//! kube-controller-manager): the release is deployed, the operator Deployment is
//! accepted and rolled out into a ReplicaSet and a Pod (which stays Pending: there is no
//! kubelet), and the operator's ServiceAccount gets exactly the rights it needs —
//! checked the way `kubectl auth can-i --as=system:serviceaccount:NS:NAME` checks
//! (impersonation + SelfSubjectAccessReview) and by real requests made as that
//! ServiceAccount.

mod chart_support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chart_support::{chart_dir, helm_command, run};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kiln_e2e::{ControlPlane, ControlPlaneOptions};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

const RELEASE_NS: &str = "kiln-system";
const LOCK_NS: &str = "kiln-locks";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:kiln-system:kiln";

/// `helm install|upgrade kiln charts/kiln -n kiln-system ARGS` against the cluster.
fn helm(kubeconfig: &Path, home: &Path, verb: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = helm_command(home)?;
    cmd.args([verb, "kiln"])
        .arg(chart_dir())
        .args(["--namespace", RELEASE_NS])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args);
    run(cmd)
}

/// A client that acts as `user` (Impersonate-User header, as `kubectl --as` sends; the
/// API server adds a ServiceAccount's groups itself).
async fn impersonating(kubeconfig: &Path, user: &str) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    config.auth_info.impersonate = Some(user.to_owned());
    Ok(kube::Client::try_from(config)?)
}

/// One `kubectl auth can-i VERB RESOURCE[/SUBRESOURCE][.GROUP] -n NAMESPACE` question.
struct Question {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    /// Empty: all namespaces (`--all-namespaces`).
    namespace: &'static str,
}

fn q(verb: &'static str, resource: &'static str, namespace: &'static str) -> Question {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    Question {
        verb,
        group,
        resource,
        subresource,
        namespace,
    }
}

impl std::fmt::Display for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.subresource.is_empty() {
            write!(f, "/{}", self.subresource)?;
        }
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if self.namespace.is_empty() {
            write!(f, " --all-namespaces")
        } else {
            write!(f, " -n {}", self.namespace)
        }
    }
}

/// Asks the API server whether the impersonated user may do `q`.
async fn can_i(as_user: &kube::Client, q: &Question) -> anyhow::Result<bool> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(q.verb.into()),
                group: Some(q.group.into()),
                resource: Some(q.resource.into()),
                subresource: (!q.subresource.is_empty()).then(|| q.subresource.into()),
                namespace: (!q.namespace.is_empty()).then(|| q.namespace.into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(as_user.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .with_context(|| format!("can-i {q}"))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Checks every question; fails listing all wrong answers at once.
async fn expect(
    as_user: &kube::Client,
    allowed: bool,
    questions: &[Question],
) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    for question in questions {
        if can_i(as_user, question).await? != allowed {
            wrong.push(question.to_string());
        }
    }
    if !wrong.is_empty() {
        bail!(
            "expected {} for {SERVICE_ACCOUNT}, got the opposite for:\n  {}",
            if allowed { "yes" } else { "no" },
            wrong.join("\n  ")
        );
    }
    Ok(())
}

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>, what: &str) -> anyhow::Result<()> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(()),
        other => bail!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// Polls `get` (at most 60 s) until it yields something.
async fn eventually<T, F, Fut>(what: &str, mut get: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = get().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what} did not happen within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn helm_install_is_accepted_and_rbac_is_least_privilege() -> anyhow::Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let admin = cp.client().await?;
    for ns in [RELEASE_NS, LOCK_NS, "ci", "qa"] {
        cp.create_namespace(&admin, ns).await?;
    }
    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    let home = tempfile::tempdir()?;

    // --- Install, watching namespace ci only, locks in kiln-locks.
    let namespaced = [
        "--set",
        "watchNamespaces={ci}",
        "--set",
        "lockNamespace=kiln-locks",
    ];
    helm(&kubeconfig, home.path(), "install", &namespaced)?;
    let mut status = helm_command(home.path())?;
    status
        .args([
            "status",
            "kiln",
            "--namespace",
            RELEASE_NS,
            "-o",
            "json",
            "--kubeconfig",
        ])
        .arg(&kubeconfig);
    let status: serde_json::Value = serde_json::from_str(&run(status)?)?;
    assert_eq!(status["info"]["status"], "deployed", "{status}");

    // The Deployment is stored as rendered...
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), RELEASE_NS);
    let d = deployments.get("kiln-operator").await?;
    let pod_spec = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod_spec.service_account_name.as_deref(), Some("kiln"));
    let args = pod_spec.containers[0].args.clone().unwrap_or_default();
    assert!(args.contains(&"--namespace=ci".to_owned()), "{args:?}");
    assert!(
        args.contains(&"--lock-namespace=kiln-locks".to_owned()),
        "{args:?}"
    );
    // ...and the Deployment controller accepted it: a ReplicaSet and a Pod for the
    // ServiceAccount exist (the Pod stays Pending: no node runs it).
    let replica_sets: Api<ReplicaSet> = Api::namespaced(admin.clone(), RELEASE_NS);
    let selector = "app.kubernetes.io/name=kiln,app.kubernetes.io/component=operator";
    eventually("a ReplicaSet of kiln-operator", || async {
        Ok(replica_sets
            .list(&ListParams::default().labels(selector))
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), RELEASE_NS);
    let pod = eventually("an operator Pod", || async {
        Ok(pods
            .list(&ListParams::default().labels(selector))
            .await?
            .items
            .into_iter()
            .next())
    })
    .await?;
    assert_eq!(
        pod.spec.unwrap().service_account_name.as_deref(),
        Some("kiln")
    );

    // --- RBAC, asked as the ServiceAccount.
    let sa = impersonating(&kubeconfig, SERVICE_ACCOUNT).await?;
    expect(
        &sa,
        true,
        &[
            q("list", "imagebuilds.kiln.dev", "ci"),
            q("watch", "imagebuilds.kiln.dev", "ci"),
            q("patch", "imagebuilds.kiln.dev", "ci"),
            // spec.retention: finished builds past their TTL are deleted.
            q("delete", "imagebuilds.kiln.dev", "ci"),
            q("patch", "imagebuilds.kiln.dev/status", "ci"),
            q("update", "imagebuilds.kiln.dev/finalizers", "ci"),
            q("create", "pods", "ci"),
            q("watch", "pods", "ci"),
            q("delete", "pods", "ci"),
            q("create", "configmaps", "ci"),
            q("delete", "configmaps", "ci"),
            q("get", "secrets", "ci"),
            q("create", "events", "ci"),
            q("patch", "events.events.k8s.io", "ci"),
            q("get", "configmaps", LOCK_NS),
            q("create", "configmaps", LOCK_NS),
            q("update", "configmaps", LOCK_NS),
            q("get", "leases.coordination.k8s.io", RELEASE_NS),
            q("create", "leases.coordination.k8s.io", RELEASE_NS),
            q("update", "leases.coordination.k8s.io", RELEASE_NS),
        ],
    )
    .await?;
    expect(
        &sa,
        false,
        &[
            // Secrets: read one by name in a build namespace, nothing more.
            q("list", "secrets", ""),
            q("get", "secrets", "qa"),
            q("get", "secrets", RELEASE_NS),
            q("list", "secrets", "ci"),
            q("watch", "secrets", "ci"),
            q("create", "secrets", "ci"),
            q("update", "secrets", "ci"),
            q("delete", "secrets", "ci"),
            // ConfigMaps: locks only in the lock namespace, and no list/delete there.
            q("get", "configmaps", "qa"),
            q("get", "configmaps", "kube-system"),
            q("list", "configmaps", ""),
            q("list", "configmaps", LOCK_NS),
            q("delete", "configmaps", LOCK_NS),
            // Pods and builds only in watched namespaces; builds are never created.
            q("create", "pods", "qa"),
            q("create", "pods", RELEASE_NS),
            q("list", "imagebuilds.kiln.dev", "qa"),
            q("delete", "imagebuilds.kiln.dev", "qa"),
            q("create", "imagebuilds.kiln.dev", "ci"),
            q("create", "pods/exec", "ci"),
            // Leases only in the release namespace; no RBAC or CRD writes.
            q("update", "leases.coordination.k8s.io", "ci"),
            q(
                "create",
                "clusterrolebindings.rbac.authorization.k8s.io",
                "",
            ),
            q("create", "rolebindings.rbac.authorization.k8s.io", "ci"),
            q(
                "update",
                "customresourcedefinitions.apiextensions.k8s.io",
                "",
            ),
        ],
    )
    .await?;

    // The same, by doing it: a stage lock ConfigMap can be created and updated...
    let locks: Api<ConfigMap> = Api::namespaced(sa.clone(), LOCK_NS);
    let mut lock = locks
        .create(&PostParams::default(), &config_map("werf-shop"))
        .await
        .context("creating a lock ConfigMap as the operator")?;
    lock.data = Some([("k".to_owned(), "v".to_owned())].into());
    locks
        .replace("werf-shop", &PostParams::default(), &lock)
        .await
        .context("updating a lock ConfigMap as the operator")?;
    // ...but other namespaces' ConfigMaps and any Secret write are refused.
    let other: Api<ConfigMap> = Api::namespaced(sa.clone(), "qa");
    forbidden(other.get_opt("anything").await, "get a ConfigMap in qa")?;
    forbidden(
        Api::<Secret>::namespaced(sa.clone(), "ci")
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some("stolen".into()),
                        ..ObjectMeta::default()
                    },
                    ..Secret::default()
                },
            )
            .await,
        "create a Secret in ci",
    )?;
    forbidden(
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await,
        "list Secrets cluster-wide",
    )?;

    // --- Upgrade to the all-namespaces mode: Secrets become readable by name in every
    // namespace (documented), still never listable or writable.
    helm(
        &kubeconfig,
        home.path(),
        "upgrade",
        &["--set", "lockNamespace=kiln-locks"],
    )?;
    expect(
        &sa,
        true,
        &[
            q("get", "secrets", "qa"),
            q("create", "pods", "qa"),
            q("list", "imagebuilds.kiln.dev", ""),
        ],
    )
    .await?;
    expect(
        &sa,
        false,
        &[
            q("list", "secrets", ""),
            q("watch", "secrets", ""),
            q("create", "secrets", "qa"),
            q("patch", "secrets", "qa"),
            q("delete", "secrets", "qa"),
        ],
    )
    .await?;
    Ok(())
}
