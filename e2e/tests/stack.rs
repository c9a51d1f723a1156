//! The whole local stack starts as one library call with a real node (container runtime
//! containerd), and its git server serves a repository the test created.

use std::process::Command;

use k8s_openapi::api::core::v1::Node;
use kiln_e2e::stack::{LocalStack, StackOptions};
use kube::api::Api;

#[tokio::test]
async fn stack_serves_a_created_repo_and_registers_its_node() {
    kiln_e2e::init_test_logging();
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();

    let (repo, commit) = stack
        .git()
        .create_repo_with_files(
            "shop",
            &[
                ("werf.yaml", "project: shop\nconfigVersion: 1\n"),
                ("Dockerfile", "FROM busybox\n"),
            ],
        )
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new("git")
        .args(["clone", "--quiet", repo.url()])
        .arg(dest.path().join("shop"))
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dest.path().join("shop/Dockerfile")).unwrap(),
        "FROM busybox\n"
    );
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dest.path().join("shop"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), commit);

    let info = stack.info();
    assert_eq!(info.registry, stack.registry().address());
    assert!(info.kubeconfig.is_file());
    let node = Api::<Node>::all(stack.cluster().client())
        .get(&info.node)
        .await
        .unwrap();
    let labels = node.metadata.labels.unwrap();
    assert_eq!(
        labels.get("kubernetes.io/arch").map(String::as_str),
        Some(kiln_e2e::node::host_arch())
    );
    let runtime = node
        .status
        .unwrap()
        .node_info
        .unwrap()
        .container_runtime_version;
    assert!(runtime.starts_with("containerd://"), "{runtime}");
}
