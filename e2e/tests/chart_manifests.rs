//! The chart renders as intended for given values (checked with `helm template` and
//! `helm lint`, no cluster), bad values fail with a message saying why, and the plain
//! manifests under `config/` are what `hack/render-manifests.sh` renders from the chart.

mod chart_support;

use std::path::Path;
use std::process::Command;

use chart_support::{chart_dir, helm, helm_command, helm_template, parse_objects, repo_root, run};
use k8s_openapi::api::apps::v1::Deployment;

/// The operator Deployment of a rendering.
fn deployment(yaml: &str) -> Deployment {
    let objects = parse_objects(yaml).expect("helm output parses");
    let obj = objects
        .into_iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "Deployment"))
        .expect("the chart renders a Deployment");
    serde_json::from_value(serde_json::to_value(obj).unwrap()).expect("a valid Deployment")
}

fn operator_args(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
}

#[test]
fn helm_lint_accepts_the_chart() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = helm_command(home.path()).unwrap();
    cmd.arg("lint").arg("--strict").arg(chart_dir());
    let out = run(cmd).unwrap();
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn default_values_give_the_operator_its_run_flags() {
    let d = deployment(&helm_template("kiln-system", &[]).unwrap());
    // The chart's appVersion tags both images; locks in the release namespace; every
    // namespace watched (no --namespace flag).
    assert_eq!(
        operator_args(&d),
        [
            "run",
            "--lock-namespace=kiln-system",
            "--cache-dir=/var/cache/kiln",
            "--builder-image=kiln-builder:0.1.0",
            "--builder-cpu=500m",
            "--builder-memory=2Gi",
            "--metrics-address=0.0.0.0:8080",
            "--log-format=json",
            "--leader-election-namespace=kiln-system",
        ]
    );
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("kiln-operator:0.1.0"));
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(probe_path(&c.liveness_probe), "/healthz");
    assert_eq!(probe_path(&c.readiness_probe), "/readyz");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("kiln"));
}

#[test]
fn values_become_flags() {
    let yaml = helm_template(
        "ops",
        &[
            "--set",
            "watchNamespaces={ci,qa}",
            "--set",
            "lockNamespace=kiln-locks",
            "--set",
            "builder.image.repository=registry.example.org/kiln-builder",
            "--set",
            "builder.image.tag=2.0",
            "--set",
            "builder.image.pullPolicy=Always",
            "--set",
            "builder.nodeSelector.pool=builders",
            "--set",
            "builder.tolerations={dedicated=builds:NoSchedule}",
            "--set",
            "builder.privileged=false",
            "--set",
            "builder.storageDriver=fuse-overlayfs",
            "--set",
            "builder.scheduleTimeout=30m",
            "--set",
            "operator.insecureRegistries={registry.ci.svc:5000}",
            "--set",
            "operator.extraArgs={--builder-cpu=2}",
            "--set",
            "builder.resources.cpu=",
            "--set",
            "operator.logFormat=text",
        ],
    )
    .unwrap();
    assert_eq!(
        operator_args(&deployment(&yaml)),
        [
            "run",
            "--namespace=ci",
            "--namespace=qa",
            "--lock-namespace=kiln-locks",
            "--cache-dir=/var/cache/kiln",
            "--builder-image=registry.example.org/kiln-builder:2.0",
            "--builder-image-pull-policy=Always",
            "--builder-memory=2Gi",
            "--builder-node-selector=pool=builders",
            "--builder-toleration=dedicated=builds:NoSchedule",
            "--builder-unprivileged",
            "--builder-storage-driver=fuse-overlayfs",
            "--builder-schedule-timeout=30m",
            "--insecure-registry=registry.ci.svc:5000",
            "--metrics-address=0.0.0.0:8080",
            "--log-format=text",
            "--leader-election-namespace=ops",
            "--builder-cpu=2",
        ]
    );
    // Watching two namespaces: one RoleBinding in each, no ClusterRoleBinding.
    let objects = parse_objects(&yaml).unwrap();
    let bindings: Vec<_> = objects
        .iter()
        .filter(|o| o.types.as_ref().unwrap().kind == "RoleBinding")
        .map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap(),
                o.metadata.name.as_deref().unwrap()
            )
        })
        .collect();
    assert_eq!(
        bindings,
        [
            "ci/kiln-builds",
            "qa/kiln-builds",
            "kiln-locks/kiln-locks",
            "ops/kiln-leader-election"
        ]
    );
    assert!(
        !objects
            .iter()
            .any(|o| o.types.as_ref().unwrap().kind == "ClusterRoleBinding")
    );
}

fn strategy(d: &Deployment) -> (String, Option<String>, Option<String>) {
    let s = d.spec.as_ref().unwrap().strategy.clone().unwrap();
    let rolling = s.rolling_update.unwrap_or_default();
    let text = |v: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| {
        v.map(|v| match v {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s,
        })
    };
    (
        s.type_.unwrap(),
        text(rolling.max_surge),
        text(rolling.max_unavailable),
    )
}

#[test]
fn two_replicas_elect_a_leader_and_roll_with_a_standby_first() {
    let d = deployment(&helm_template("kiln-system", &["--set", "operator.replicas=2"]).unwrap());
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
    assert!(operator_args(&d).contains(&"--leader-election-namespace=kiln-system".to_owned()));
    // The new pod becomes a ready standby before the old one stops.
    assert_eq!(
        strategy(&d),
        ("RollingUpdate".into(), Some("1".into()), Some("0".into()))
    );
}

#[test]
fn without_leader_election_one_replica_recreated() {
    let yaml = helm_template("kiln-system", &["--set", "leaderElection.enabled=false"]).unwrap();
    let d = deployment(&yaml);
    assert!(operator_args(&d).contains(&"--leader-elect=false".to_owned()));
    assert!(
        !operator_args(&d)
            .iter()
            .any(|a| a.starts_with("--leader-election-namespace"))
    );
    assert_eq!(strategy(&d).0, "Recreate");
    // No Lease RBAC either.
    assert!(!yaml.contains("leader-election"), "{yaml}");
    let err = helm_template(
        "kiln-system",
        &[
            "--set",
            "operator.replicas=2",
            "--set",
            "leaderElection.enabled=false",
        ],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("operator.replicas > 1 needs leaderElection.enabled=true"),
        "{err}"
    );
}

#[test]
fn a_bad_log_format_is_refused_by_name() {
    let err = helm_template("kiln-system", &["--set", "operator.logFormat=xml"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("operator.logFormat must be text or json, not \"xml\""),
        "{err}"
    );
}

#[test]
fn an_unknown_storage_driver_is_refused_by_name() {
    let err = helm_template("kiln-system", &["--set", "builder.storageDriver=btrfs"]).unwrap_err();
    assert!(
        err.to_string().contains(
            "builder.storageDriver must be vfs, overlay or fuse-overlayfs, not \"btrfs\""
        ),
        "{err}"
    );
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn plain_manifests_are_rendered_from_the_chart() {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("hack/render-manifests.sh"))
        .arg(out.path())
        .env("HELM", helm().unwrap());
    run(cmd).unwrap();
    let rendered = files(out.path());
    let config = repo_root().join("config");
    // The rendered tree: everything under config/ except the hand-written samples.
    let committed: Vec<String> = files(&config)
        .into_iter()
        .filter(|f| !f.starts_with("samples/"))
        .collect();
    assert_eq!(
        rendered, committed,
        "config/ and the rendering list different files; run hack/render-manifests.sh"
    );
    for f in &rendered {
        let want = std::fs::read_to_string(out.path().join(f)).unwrap();
        let have = std::fs::read_to_string(config.join(f)).unwrap();
        assert!(
            want == have,
            "config/{f} differs from the chart's rendering; run hack/render-manifests.sh"
        );
    }
}
