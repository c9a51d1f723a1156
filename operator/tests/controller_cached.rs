//! The Building phase of a fully cached build against a real registry: every stage of the
//! seed's three images on two platforms is already in the stages storage, so reconcile
//! creates no builder pod, publishes one manifest list per image and ends Succeeded with a
//! report whose digests match the registry. The Kubernetes API is a tower-test mock that
//! asserts each request (a fully cached build must not create pods, locks or ConfigMaps).

use kiln_testkit::git_server::git_ok as git;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kiln_crds::ImageBuild;
use kiln_operator::config::Platform;
use kiln_operator::controller::{self, Context, FINALIZER, Settings};
use kiln_operator::metrics::Metrics;
use kiln_operator::mirror::SourceCache;
use kiln_operator::plan::project::{PlanRequest, plan_project};
use kiln_operator::source::GitTree;
use kiln_operator::storage::client::sha256_digest;
use kiln_operator::storage::{RegistryClient, RegistryClientConfig, RepoRef};
use kiln_testkit::mock_api::{self, Expect, Handle, expect};
use kiln_testkit::registry::TestRegistry;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

fn seed_repo(root: &Path) -> (std::path::PathBuf, String) {
    let dir = root.join("shop");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("werf.yaml"),
        "project: shop\nconfigVersion: 1\n---\nimage: backend\ndockerfile: Dockerfile\ntarget: backend\n---\nimage: frontend\ndockerfile: Dockerfile\ntarget: application\n---\nimage: frontend-assets\ndockerfile: Dockerfile\ntarget: assets\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox AS backend\nCOPY src/ /src/\n\nFROM busybox AS application\nCOPY src/ /app/\n\nFROM busybox AS assets\nCOPY --from=application /app /assets\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.txt"), "hello").unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "seed"]);
    let commit = git(&dir, &["rev-parse", "HEAD"]);
    (dir, commit)
}

/// Pushes a one-layer OCI image for `platform` tagged `tag`; returns its manifest digest.
async fn push_stage(client: &RegistryClient, repo: &RepoRef, tag: &str, platform: &str) -> String {
    let (os, arch) = platform.split_once('/').unwrap();
    let layer = Bytes::from(format!("layer of {tag}"));
    let layer_digest = sha256_digest(&layer);
    client
        .push_blob(repo, &layer_digest, layer.clone())
        .await
        .unwrap();
    let config = Bytes::from(
        json!({"architecture": arch, "os": os, "created": "2026-01-01T00:00:00Z",
               "config": {"Labels": {"werf": "shop"}},
               "rootfs": {"type": "layers", "diff_ids": [layer_digest]}})
        .to_string(),
    );
    let config_digest = sha256_digest(&config);
    client
        .push_blob(repo, &config_digest, config.clone())
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}]
    });
    client
        .put_manifest(
            repo,
            tag,
            Bytes::from(manifest.to_string()),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await
        .unwrap()
}

/// Serves `script` in order; returns `METHOD /path` and body of each request.
async fn serve(handle: Handle, script: Vec<Expect>) -> Vec<(String, Value)> {
    mock_api::serve(handle, script, Some(Duration::from_secs(30)))
        .await
        .into_iter()
        .map(|s| (s.line, s.body))
        .collect()
}

fn empty_list(kind: &str) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": []})
}

#[tokio::test]
async fn a_fully_cached_build_succeeds_without_pods() {
    let registry = TestRegistry::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, commit) = seed_repo(tmp.path());
    let repo_name = format!("{}/shop", registry.address());
    let repo: RepoRef = repo_name.parse().unwrap();
    let client = RegistryClient::new(RegistryClientConfig::default());

    // Publish every planned stage, as an earlier build would have.
    let platforms = [
        Platform::parse("linux/amd64").unwrap(),
        Platform::parse("linux/arm64").unwrap(),
    ];
    let tree = GitTree::open(&dir, Some(&commit)).unwrap();
    let plan = plan_project(
        &tree,
        &PlanRequest {
            platforms: &platforms,
            ..PlanRequest::default()
        },
    )
    .unwrap();
    let mut stage_digests = std::collections::BTreeMap::new();
    for (i, unit) in plan.images.iter().enumerate() {
        let digest = unit.stages[0].digest.clone().unwrap();
        let tag = format!("{digest}-{}", 1_767_225_600_000u64 + i as u64);
        let manifest = push_stage(&client, &repo, &tag, &unit.platform.to_string()).await;
        stage_digests.insert(
            (unit.name.clone(), unit.platform.to_string()),
            (tag, manifest),
        );
    }
    assert_eq!(stage_digests.len(), 6);

    let (kube, handle) = mock_api::client("ci");
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(Context::new(
        kube,
        metrics.clone(),
        Arc::new(SourceCache::new(tmp.path().join("cache"))),
        Settings::default(),
    ));
    let ib: ImageBuild = serde_json::from_value(json!({
        "apiVersion": "kiln.dev/v1alpha1", "kind": "ImageBuild",
        "metadata": {"name": "shop-1", "namespace": "ci", "uid": "uid-1", "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": {"source": {"git": {"url": format!("file://{}", dir.display()), "revision": "main"}},
                 "repo": repo_name, "platforms": ["linux/amd64", "linux/arm64"],
                 "customTags": ["%image%-main"]},
        "status": {"phase": "Building", "commit": commit, "startTime": "2026-01-01T00:00:00Z"}
    }))
    .unwrap();
    let ib_json = serde_json::to_value(&ib).unwrap();
    let script = vec![
        // Building: our builder pods (none).
        expect("GET", "/api/v1/namespaces/ci/pods", empty_list("PodList")),
        // Finish: which stages our pods built (none).
        expect("GET", "/api/v1/namespaces/ci/pods", empty_list("PodList")),
        // Cleanup of children (none), then the final status and its Event.
        expect("GET", "/api/v1/namespaces/ci/pods", empty_list("PodList")),
        expect(
            "GET",
            "/api/v1/namespaces/ci/configmaps",
            empty_list("ConfigMapList"),
        ),
        expect(
            "PATCH",
            "/apis/kiln.dev/v1alpha1/namespaces/ci/imagebuilds/shop-1/status",
            ib_json,
        ),
        expect(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/ci/events",
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}, "eventTime": null}),
        ),
    ];
    let server = tokio::spawn(serve(handle, script));
    let action = controller::reconcile(Arc::new(ib), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let seen = server.await.unwrap();
    let status = &seen[4].1["status"];
    assert_eq!(status["phase"], "Succeeded", "{status}");
    assert_eq!(status["conditions"][0]["reason"], "AllImagesPublished");
    assert_eq!(status["rebuiltStages"], 0);
    assert_eq!(status["imageCount"], 3);

    // One manifest list per image, tagged with its bare digest, matching the report.
    let tags = client.list_tags(&repo).await.unwrap();
    let report = &status["report"];
    for image in ["backend", "frontend", "frontend-assets"] {
        let record = &report["Images"][image];
        assert_eq!(record["Rebuilt"], false);
        assert_eq!(record["TargetPlatform"], "");
        let list_tag = record["DockerTag"].as_str().unwrap();
        assert_eq!(
            list_tag.len(),
            56,
            "a manifest list is tagged with its bare digest"
        );
        assert!(
            tags.contains(&list_tag.to_owned()),
            "{list_tag} not in {tags:?}"
        );
        let raw = client.get_manifest(&repo, list_tag).await.unwrap();
        assert_eq!(record["DockerImageDigest"], raw.digest.as_str());
        // The custom tag points to the same manifest list.
        let custom = client
            .get_manifest(&repo, &format!("{image}-main"))
            .await
            .unwrap();
        assert_eq!(custom.digest, raw.digest);
        for platform in ["linux/amd64", "linux/arm64"] {
            let per = &report["ImagesByPlatform"][image][platform];
            let (tag, manifest) = &stage_digests[&(image.to_owned(), platform.to_owned())];
            assert_eq!(per["DockerTag"], tag.as_str());
            assert_eq!(per["DockerImageDigest"], manifest.as_str());
            assert_eq!(per["Rebuilt"], false);
        }
    }
    assert_eq!(status["images"].as_array().unwrap().len(), 3);
    assert!(
        metrics
            .encode()
            .contains("kiln_stages_total{result=\"reused\"} 6")
    );
    // Six stage tags, three manifest lists, three custom tags; nothing else was pushed.
    assert_eq!(tags.len(), 12, "{tags:?}");
}
