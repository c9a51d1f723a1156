//! The kubectl that `hack/setup.d/35-kubectl.sh` builds works against the local stack
//! the way the README's demo uses it: `apply -f -` of the CRD, `wait
//! --for=condition=...`, `apply -k` of the samples (kustomize built in), `get` by short
//! name as a table and as JSON. Its pins follow the control plane's Kubernetes version.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use kiln_crds::ImageBuild;
use kiln_e2e::TestCluster;
use tokio::io::AsyncWriteExt;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// Runs the built kubectl against the cluster whose admin kubeconfig is `kubeconfig`,
/// with `home` as HOME (kubectl's discovery cache lands there, not in the user's home),
/// feeding `stdin` if given. Returns stdout; a failure quotes stderr.
async fn kubectl(
    kubeconfig: &Path,
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let bin = kiln_e2e::binaries::kubectl()?;
    let mut child = tokio::process::Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes()).await?;
        // Dropping the pipe closes it: kubectl reads `-f -` to end of file.
        drop(pipe);
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `(namespace, name)` of every ImageBuild in config/samples, read from the files
/// themselves, sorted.
fn sample_builds() -> Vec<(String, String)> {
    let dir = repo_root().join("config/samples");
    let mut builds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let build: ImageBuild =
                serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                build.metadata.namespace.expect("samples name a namespace"),
                build.metadata.name.expect("samples have a name"),
            )
        })
        .collect();
    builds.sort();
    builds
}

#[tokio::test]
async fn kubectl_applies_waits_for_and_gets_kiln_resources() {
    kiln_e2e::init_test_logging();
    let cluster = TestCluster::start().await.unwrap();
    let kubeconfig = cluster.control_plane().kubeconfig_path().to_owned();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &'static [&'static str], stdin: Option<String>| {
        let kubeconfig = kubeconfig.clone();
        let home = home.path().to_owned();
        async move { kubectl(&kubeconfig, &home, args, stdin.as_deref()).await }
    };

    // The binary reports the version it was stamped with, and it is the server's.
    let version: serde_json::Value =
        serde_json::from_str(&run(&["version", "-o", "json"], None).await.unwrap()).unwrap();
    let client = &version["clientVersion"]["gitVersion"];
    assert!(
        client.as_str().is_some_and(|v| v.starts_with("v1.")),
        "{version}"
    );
    assert_eq!(client, &version["serverVersion"]["gitVersion"], "{version}");

    let applied = run(&["apply", "-f", "-"], Some(kiln_crds::crd_yaml()))
        .await
        .unwrap();
    assert_eq!(
        applied.trim(),
        "customresourcedefinition.apiextensions.k8s.io/imagebuilds.kiln.dev created"
    );
    let waited = run(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/imagebuilds.kiln.dev",
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        waited.trim(),
        "customresourcedefinition.apiextensions.k8s.io/imagebuilds.kiln.dev condition met"
    );

    // No ImageBuild yet: `get` by short name succeeds with an empty list.
    let empty: serde_json::Value =
        serde_json::from_str(&run(&["get", "ib", "-A", "-o", "json"], None).await.unwrap())
            .unwrap();
    assert_eq!(empty["items"], serde_json::json!([]), "{empty}");

    // The samples through kubectl's built-in kustomize, as the README suggests.
    let expected = sample_builds();
    assert!(!expected.is_empty());
    let mut namespaces: Vec<&str> = expected.iter().map(|(ns, _)| ns.as_str()).collect();
    namespaces.dedup();
    for ns in namespaces {
        let ns = ns.to_owned();
        kubectl(
            &kubeconfig,
            home.path(),
            &["create", "namespace", &ns],
            None,
        )
        .await
        .unwrap();
    }
    let applied = run(&["apply", "-k", "config/samples"], None).await.unwrap();
    assert_eq!(applied.lines().count(), expected.len(), "{applied}");
    for (_, name) in &expected {
        assert!(
            applied
                .lines()
                .any(|l| l == format!("imagebuild.kiln.dev/{name} created")),
            "{name} not created:\n{applied}"
        );
    }

    let listed: serde_json::Value =
        serde_json::from_str(&run(&["get", "ib", "-A", "-o", "json"], None).await.unwrap())
            .unwrap();
    let mut got: Vec<(String, String)> = listed["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {listed}"))
        .iter()
        .map(|item| {
            let meta = &item["metadata"];
            (
                meta["namespace"].as_str().unwrap().to_owned(),
                meta["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);

    // The table comes from the CRD's printer columns (server-side printing).
    let table = run(&["get", "ib", "-A"], None).await.unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "PHASE", "IMAGES", "REBUILT", "AGE"],
        "{table}"
    );
    assert_eq!(table.lines().count(), expected.len() + 1, "{table}");
}

/// `k8s.io/<module>` version pinned in the go.mod at `path`: the `replace` target if
/// there is one (the control plane pins staging modules that way), else the `require`.
fn go_mod_version(path: &Path, module: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let replaced = format!("replace {module} => {module} ");
    let required = format!("{module} ");
    let line = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&replaced))
        .or_else(|| {
            text.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(&required))
        })
        .unwrap_or_else(|| panic!("{module} not in {}", path.display()));
    line.split_whitespace().next().unwrap().to_owned()
}

/// kubectl's client libraries are those of the control plane's Kubernetes release:
/// staging modules are published as v0.X.Y for Kubernetes v1.X.Y.
#[test]
fn kubectl_pins_the_control_planes_kubernetes_release() {
    let root = repo_root();
    let control_plane = root.join("hack/control-plane/kubernetes/go.mod");
    let kubectl_mod = root.join("hack/kubectl/go.mod");
    let kubernetes = go_mod_version(&control_plane, "k8s.io/kubernetes");
    let release = kubernetes
        .strip_prefix("v1.")
        .unwrap_or_else(|| panic!("k8s.io/kubernetes {kubernetes} is not a v1.X.Y release"));
    for module in [
        "k8s.io/kubectl",
        "k8s.io/client-go",
        "k8s.io/component-base",
        "k8s.io/cli-runtime",
        "k8s.io/api",
        "k8s.io/apimachinery",
    ] {
        assert_eq!(
            go_mod_version(&kubectl_mod, module),
            format!("v0.{release}"),
            "{module} in hack/kubectl/go.mod"
        );
        assert_eq!(
            go_mod_version(&kubectl_mod, module),
            go_mod_version(&control_plane, module),
            "{module}: hack/kubectl and hack/control-plane disagree"
        );
    }
}
