//! Stage selection against a real registry holding 10,000 tags.
//!
//! Setup (once): a distribution v3 registry (it pages the tags list, 1,000 tags per page)
//! with one small image tagged 10,000 times by manifest PUTs: 50 target digests with 3
//! candidates each (10 of them with the oldest rejected), 500 `meta-` service tags and
//! 9,340 other stages. Each iteration is a new reconcile (a fresh `StagesStorage`, so
//! nothing is cached) that selects the stages of the 50 digests, and prints wall time
//! and the request count per operation. `KILN_BENCH_ITERATIONS` (default 10) sets the
//! number of iterations; `KILN_BENCH_FLAVOR=2` uses Debian's docker-registry (2.8),
//! which returns the whole tags list in one response.

use std::time::{Duration, Instant};

use kiln_operator::storage::{
    DockerConfig, Freshness, Operation, RegistryClient, RegistryClientConfig, RepoRef, StageDigest,
    StageId, StageTagIndex, StagesStorage, StorageRepos,
};
use kiln_testkit::registry::{RegistryFlavor, RegistryOptions, TestRegistry};
use oci_client::client::{ClientConfig, ClientProtocol};
use sha2::Digest as _;

const TOTAL_TAGS: usize = 10_000;
const TARGETS: usize = 50;
const CANDIDATES: u64 = 3;
const REJECTED_TARGETS: usize = 10;
const META_TAGS: usize = 500;
const T0: u64 = 1_764_460_800_000;

fn digest(seed: &str) -> StageDigest {
    let hash = sha2::Sha256::digest(seed.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    hex[..56].parse().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// The 10,000 tags; the 50 target digests and the stage each must select.
fn tags() -> (Vec<String>, Vec<(StageDigest, StageId)>) {
    let mut tags = Vec::with_capacity(TOTAL_TAGS);
    let mut expected = Vec::new();
    for t in 0..TARGETS {
        let d = digest(&format!("target-{t}"));
        for c in 0..CANDIDATES {
            tags.push(StageId::new(d.clone(), T0 + 1000 * c + t as u64).tag());
        }
        let oldest = StageId::new(d.clone(), T0 + t as u64);
        if t < REJECTED_TARGETS {
            tags.push(oldest.rejected_tag());
            expected.push((d.clone(), StageId::new(d, T0 + 1000 + t as u64)));
        } else {
            expected.push((d, oldest));
        }
    }
    for m in 0..META_TAGS {
        tags.push(format!(
            "meta-afa96f8_{m:040x}_{}",
            digest(&format!("meta-{m}"))
        ));
    }
    let mut other = 0;
    while tags.len() < TOTAL_TAGS {
        tags.push(StageId::new(digest(&format!("other-{other}")), T0 + other).tag());
        other += 1;
    }
    (tags, expected)
}

async fn populate(registry: &TestRegistry, tags: &[String]) {
    use futures::StreamExt;
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: true,
        ..Default::default()
    });
    let layer = b"bench-layer".to_vec();
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2026-11-30T00:00:00Z", "architecture": "amd64", "os": "linux",
        "config": { "Labels": { "werf": "bench" } },
        "rootfs": { "type": "layers", "diff_ids": [sha256(&layer)] },
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer), "size": layer.len() }],
    }))
    .unwrap();
    let reference = |tag: &str| {
        oci_client::Reference::with_tag(registry.address().to_owned(), "bench".into(), tag.into())
    };
    client
        .push_blob(&reference("x"), layer.clone(), &sha256(&layer))
        .await
        .unwrap();
    client
        .push_blob(&reference("x"), config.clone(), &sha256(&config))
        .await
        .unwrap();
    futures::stream::iter(tags)
        .for_each_concurrent(16, |tag| {
            let client = client.clone();
            let manifest = manifest.clone();
            let reference = reference(tag);
            async move {
                client
                    .push_manifest_raw(
                        &reference,
                        manifest,
                        "application/vnd.oci.image.manifest.v1+json"
                            .parse()
                            .unwrap(),
                    )
                    .await
                    .expect("tag pushed");
            }
        })
        .await;
}

fn main() {
    let iterations: usize = std::env::var("KILN_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let flavor = match std::env::var("KILN_BENCH_FLAVOR").as_deref() {
        Ok("2") => RegistryFlavor::Distribution2,
        _ => RegistryFlavor::Distribution3,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = TestRegistry::start_with(RegistryOptions {
        flavor,
        ..Default::default()
    })
    .expect("registry starts");
    let (tags, expected) = tags();

    // Pure part: indexing 10,000 tags and picking candidates for 50 digests.
    let start = Instant::now();
    let index = StageTagIndex::from_tags(&tags);
    let picked: usize = expected
        .iter()
        .map(|(d, _)| index.candidates(d, None).len())
        .sum();
    let pure = start.elapsed();
    assert_eq!(picked, TARGETS * CANDIDATES as usize - REJECTED_TARGETS);

    let start = Instant::now();
    runtime.block_on(populate(&registry, &tags));
    println!(
        "setup: {:?} registry, {} tags pushed by manifest PUTs in {:.1?}",
        flavor,
        tags.len(),
        start.elapsed()
    );
    println!("pure: index 10,000 tags + candidates for 50 digests: {pure:.2?}");

    let repo: RepoRef = format!("{}/bench", registry.address()).parse().unwrap();
    let lookups: Vec<(StageDigest, Option<u64>)> =
        expected.iter().map(|(d, _)| (d.clone(), None)).collect();
    let mut times: Vec<Duration> = Vec::new();
    let mut list_times: Vec<Duration> = Vec::new();
    let mut last_counts = None;
    for i in 0..iterations {
        let client = RegistryClient::new(RegistryClientConfig {
            credentials: DockerConfig::anonymous(),
            ..Default::default()
        });
        let storage = StagesStorage::new(client, StorageRepos::new(repo.clone()));
        let start = Instant::now();
        runtime
            .block_on(storage.tags(&repo, Freshness::Cached))
            .expect("tags listed");
        let listed = start.elapsed();
        let found = runtime.block_on(storage.find_stages(&lookups));
        let elapsed = start.elapsed();
        list_times.push(listed);
        for (f, (_, want)) in found.iter().zip(&expected) {
            let got = f
                .as_ref()
                .expect("lookup works")
                .as_ref()
                .expect("stage found");
            assert_eq!(&got.stage_id, want);
        }
        let counts = storage.request_counts();
        // A second pass in the same reconcile must be free.
        runtime.block_on(storage.find_stages(&lookups));
        assert_eq!(
            storage.request_counts(),
            counts,
            "cached pass made requests"
        );
        println!("iteration {i}: {elapsed:.1?} (tags list {listed:.1?}); requests: {counts}");
        times.push(elapsed);
        last_counts = Some(counts);
    }
    times.sort();
    list_times.sort();
    let counts = last_counts.unwrap();
    println!(
        "select 50 digests among 10,000 tags (fresh reconcile): median {:.1?}, min {:.1?}, max {:.1?} over {} iterations",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        times.len()
    );
    println!(
        "  of which listing 10,000 tags: median {:.1?}",
        list_times[list_times.len() / 2]
    );
    for op in Operation::ALL {
        let n = counts.get(op);
        if n > 0 {
            println!("  {op}: {n} requests");
        }
    }
    println!("  total: {} requests", counts.total());
}
