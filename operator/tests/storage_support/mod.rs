//! Helpers for the stages-storage tests: registries, clients, and small images pushed
//! blob by blob with oci-client (no image builder needed).

#![allow(dead_code)]

use std::time::Duration;

use kiln_operator::storage::{
    DockerConfig, RegistryClient, RegistryClientConfig, RepoRef, RetryPolicy, StageDigest, StageId,
};
use kiln_testkit::registry::TestRegistry;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use sha2::Digest as _;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A retry policy that keeps failing tests fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 2,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

/// A client with the registry's own credentials (none for an anonymous registry).
pub fn client_for(registry: &TestRegistry) -> RegistryClient {
    let credentials = DockerConfig::parse(registry.docker_config_json().as_bytes()).unwrap();
    RegistryClient::new(RegistryClientConfig {
        credentials,
        retry: fast_retry(),
        ..Default::default()
    })
}

/// A client with several registries' credentials.
pub fn client_for_all(registries: &[&TestRegistry]) -> RegistryClient {
    let mut credentials = DockerConfig::anonymous();
    for r in registries {
        let one = DockerConfig::parse(r.docker_config_json().as_bytes()).unwrap();
        if let Some(c) = one.credential_for(r.address()) {
            credentials.insert(r.address(), c.clone());
        }
    }
    RegistryClient::new(RegistryClientConfig {
        credentials,
        retry: fast_retry(),
        ..Default::default()
    })
}

pub fn repo(registry: &TestRegistry, path: &str) -> RepoRef {
    format!("{}/{path}", registry.address()).parse().unwrap()
}

/// A stage digest derived from a seed (the first 56 hex characters of SHA-256(seed)).
pub fn digest(seed: &str) -> StageDigest {
    hex(&sha2::Sha256::digest(seed.as_bytes()))[..56]
        .parse()
        .unwrap()
}

pub fn stage(seed: &str, ts: u64) -> StageId {
    StageId::new(digest(seed), ts)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

/// What to put into a test image.
#[derive(Debug, Clone)]
pub struct TestImage {
    pub os: &'static str,
    pub architecture: &'static str,
    pub labels: Vec<(String, String)>,
    /// Layer bytes (registries do not look inside layers).
    pub layer: Vec<u8>,
    pub created: &'static str,
    /// Docker schema 2 media types instead of OCI ones.
    pub docker: bool,
}

impl TestImage {
    pub fn new(layer: &str) -> Self {
        TestImage {
            os: "linux",
            architecture: "amd64",
            labels: vec![("werf".into(), "shop".into())],
            layer: layer.as_bytes().to_vec(),
            created: "2026-11-30T01:02:03Z",
            docker: false,
        }
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.into(), v.into()));
        self
    }

    pub fn platform(mut self, architecture: &'static str) -> Self {
        self.architecture = architecture;
        self
    }

    pub fn docker(mut self) -> Self {
        self.docker = true;
        self
    }

    pub fn config_json(&self) -> Vec<u8> {
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "created": self.created,
            "architecture": self.architecture,
            "os": self.os,
            "config": { "Labels": labels },
            "rootfs": { "type": "layers", "diff_ids": [sha256(&self.layer)] },
        }))
        .unwrap()
    }

    /// The manifest bytes for this image.
    pub fn manifest_json(&self) -> (Vec<u8>, &'static str) {
        let config = self.config_json();
        let (mt, config_mt, layer_mt) = if self.docker {
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": { "mediaType": config_mt, "digest": sha256(&config), "size": config.len() },
            "layers": [{ "mediaType": layer_mt, "digest": sha256(&self.layer), "size": self.layer.len() }],
        });
        (serde_json::to_vec(&manifest).unwrap(), mt)
    }
}

/// An oci-client for a test registry, straight from the library (independent of Kiln's
/// client), with the registry's credentials.
pub async fn raw_oci(registry: &TestRegistry) -> (oci_client::Client, RegistryAuth) {
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: true,
        ..Default::default()
    });
    let auth = match registry.auth() {
        Some(a) => RegistryAuth::Basic(a.username.clone(), a.password.clone()),
        None => RegistryAuth::Anonymous,
    };
    client.store_auth_if_needed(registry.address(), &auth).await;
    (client, auth)
}

/// Pushes `image` as `registry/repository:tag` blob by blob; returns the manifest digest.
pub async fn push_image(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    image: &TestImage,
) -> String {
    let (client, _) = raw_oci(registry).await;
    let reference = oci_client::Reference::with_tag(
        registry.address().to_owned(),
        repository.to_owned(),
        tag.to_owned(),
    );
    let config = image.config_json();
    client
        .push_blob(&reference, image.layer.clone(), &sha256(&image.layer))
        .await
        .expect("layer pushed");
    client
        .push_blob(&reference, config.clone(), &sha256(&config))
        .await
        .expect("config pushed");
    let (manifest, media_type) = image.manifest_json();
    client
        .push_manifest_raw(&reference, manifest.clone(), media_type.parse().unwrap())
        .await
        .expect("manifest pushed");
    sha256(&manifest)
}

/// Puts the same manifest under many tags (manifest PUTs only, 16 at a time).
pub async fn tag_many(
    registry: &TestRegistry,
    repository: &str,
    image: &TestImage,
    tags: &[String],
) {
    use futures::StreamExt;
    let (client, _) = raw_oci(registry).await;
    let (manifest, media_type) = image.manifest_json();
    futures::stream::iter(tags)
        .for_each_concurrent(16, |tag| {
            let client = client.clone();
            let manifest = manifest.clone();
            async move {
                let reference = oci_client::Reference::with_tag(
                    registry.address().to_owned(),
                    repository.to_owned(),
                    tag.clone(),
                );
                client
                    .push_manifest_raw(&reference, manifest, media_type.parse().unwrap())
                    .await
                    .expect("tag pushed");
            }
        })
        .await;
}

/// `skopeo inspect --raw` of an image, parsed.
pub fn skopeo_raw(image: &str) -> serde_json::Value {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

/// Counts logged requests by method and a path fragment.
pub fn count_requests(registry: &TestRegistry, method: &str, fragment: &str) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains(fragment))
        .count()
}
