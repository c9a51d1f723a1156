//! The stages storage against real registries: Debian's docker-registry (distribution
//! 2.8) and distribution v3 (which paginates tags), anonymous and with htpasswd auth.

mod storage_support;

use std::path::PathBuf;
use std::time::Duration;

use kiln_operator::storage::client::RegistryClientConfig;
use kiln_operator::storage::publish;
use kiln_operator::storage::{
    CandidateRule, DockerConfig, FinalCopy, Freshness, OldestCreationTs, Operation, RegistryClient,
    RetryPolicy, StageContent, StageDescription, StageId, StagesStorage, StorageError,
    StorageRepos, Verdict,
};
use kiln_testkit::registry::{RegistryFlavor, RegistryOptions, TestRegistry};
use storage_support::*;

const T1: u64 = 1_764_460_800_100;
const T2: u64 = 1_764_460_800_200;
const T3: u64 = 1_764_460_800_300;

fn logged() -> TestRegistry {
    TestRegistry::start_with(RegistryOptions {
        access_log: true,
        ..Default::default()
    })
    .unwrap()
}

async fn oldest(storage: &StagesStorage, seed: &str) -> Option<u64> {
    storage
        .find_stage(&digest(seed), None, &OldestCreationTs, Freshness::Cached)
        .await
        .unwrap()
        .map(|d| d.stage_id.creation_ts_ms())
}

#[tokio::test]
async fn anonymous_registry_stage_description() {
    let registry = logged();
    let image = TestImage::new("layer-one").label("werf-stage-content-digest", "c0ffee");
    let id = stage("from", T1);
    let manifest_digest = push_image(&registry, "shop", &id.tag(), &image).await;

    let storage = StagesStorage::new(
        client_for(&registry),
        StorageRepos::new(repo(&registry, "shop")),
    );
    let found = storage
        .find_stage(id.digest(), None, &OldestCreationTs, Freshness::Cached)
        .await
        .unwrap()
        .expect("stage found");
    assert_eq!(found.stage_id, id);
    assert_eq!(found.manifest_digest, manifest_digest);
    assert_eq!(found.media_type, OCI_MANIFEST);
    let details = found.image().unwrap();
    let config = image.config_json();
    assert_eq!(details.image_id, sha256(&config));
    assert_eq!(details.size, (config.len() + "layer-one".len()) as u64);
    assert_eq!(details.labels["werf-stage-content-digest"], "c0ffee");
    assert_eq!(details.labels["werf"], "shop");
    assert_eq!(details.platform.to_string(), "linux/amd64");
    assert_eq!(details.created.unwrap().to_string(), "2026-11-30T01:02:03Z");

    // A digest without tags, and a repository that does not exist yet: nothing found.
    assert!(
        storage
            .find_stage(
                &digest("absent"),
                None,
                &OldestCreationTs,
                Freshness::Cached
            )
            .await
            .unwrap()
            .is_none()
    );
    let empty = StagesStorage::new(
        client_for(&registry),
        StorageRepos::new(repo(&registry, "nothing/here")),
    );
    assert!(
        empty
            .tags(&repo(&registry, "nothing/here"), Freshness::Cached)
            .await
            .unwrap()
            .tag_count()
            == 0
    );
}

#[tokio::test]
async fn htpasswd_registry_with_the_secret_credentials() {
    let registry = TestRegistry::start_with_basic_auth("kiln", "s3cret").unwrap();
    let id = stage("auth", T1);
    push_image(&registry, "team/shop", &id.tag(), &TestImage::new("x")).await;
    // Credentials come from the dockerconfigjson the secret would hold.
    let storage = StagesStorage::new(
        client_for(&registry),
        StorageRepos::new(repo(&registry, "team/shop")),
    );
    let found = storage
        .find_stage(id.digest(), None, &OldestCreationTs, Freshness::Cached)
        .await
        .unwrap();
    assert_eq!(found.unwrap().stage_id, id);
    // Writing works too: retag keeps the digest.
    let client = storage.client();
    let r = repo(&registry, "team/shop");
    let digest_a = client.get_manifest(&r, &id.tag()).await.unwrap().digest;
    let digest_b = publish::retag(client, &r, &id.tag(), "retagged")
        .await
        .unwrap();
    assert_eq!(digest_a, digest_b);
    assert_eq!(
        client.get_manifest(&r, "retagged").await.unwrap().digest,
        digest_a
    );
}

#[tokio::test]
async fn wrong_or_missing_credentials_give_a_clear_error() {
    let registry = TestRegistry::start_with_basic_auth("kiln", "s3cret").unwrap();
    let address = registry.address().to_owned();
    let wrong = format!(r#"{{"auths":{{"{address}":{{"username":"kiln","password":"wrong"}}}}}}"#);
    for (credentials, label) in [
        (
            DockerConfig::parse(wrong.as_bytes()).unwrap(),
            "wrong password",
        ),
        (DockerConfig::anonymous(), "no credentials"),
    ] {
        let client = RegistryClient::new(RegistryClientConfig {
            credentials,
            retry: fast_retry(),
            ..Default::default()
        });
        let r = repo(&registry, "team/shop");
        let before = client.request_counts();
        let err = client.list_tags(&r).await.unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Unauthorized {
                    operation: Operation::ListTags,
                    ..
                }
            ),
            "{label}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&address)
                && text.contains("team/shop")
                && text.contains("list tags")
                && text.contains("401"),
            "{label}: {text}"
        );
        // Not retried.
        assert_eq!(
            (client.request_counts() - before).get(Operation::ListTags),
            1,
            "{label}"
        );
        assert_eq!(err.reason(), "RegistryUnauthorized");

        let err = client.get_manifest(&r, "latest").await.unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Unauthorized {
                    operation: Operation::GetManifest,
                    ..
                }
            ),
            "{label}: {err:?}"
        );
        assert!(err.to_string().contains("get manifest in"), "{err}");
        let err = client
            .push_blob(&r, &sha256(b"x"), bytes::Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Unauthorized {
                    operation: Operation::PushBlob,
                    ..
                }
            ),
            "{label}: {err:?}"
        );
    }
}

/// Moves a repository's tag directory aside and puts a file in its place: the registry
/// then fails every tag read of that repository with 500.
fn break_tags(registry: &TestRegistry, repository: &str) -> (PathBuf, PathBuf) {
    let tags = registry
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repository)
        .join("_manifests/tags");
    let aside = tags.with_extension("aside");
    std::fs::rename(&tags, &aside).unwrap();
    std::fs::write(&tags, "not a directory").unwrap();
    (tags, aside)
}

fn repair_tags((tags, aside): &(PathBuf, PathBuf)) {
    std::fs::remove_file(tags).unwrap();
    std::fs::rename(aside, tags).unwrap();
}

#[tokio::test]
async fn server_errors_are_retried_then_named() {
    let registry = TestRegistry::start().unwrap();
    let r = repo(&registry, "shop");
    push_image(
        &registry,
        "shop",
        &stage("s", T1).tag(),
        &TestImage::new("x"),
    )
    .await;
    let broken = break_tags(&registry, "shop");

    // Always 500: retried, then a clear error with the attempt count.
    let client = client_for(&registry);
    let err = client.list_tags(&r).await.unwrap_err();
    let StorageError::Unavailable {
        attempts,
        operation,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*attempts, *operation),
        (3, Operation::ListTags),
        "1 attempt + 2 retries"
    );
    assert_eq!(client.request_counts().get(Operation::ListTags), 3);
    let text = err.to_string();
    assert!(
        text.contains(&format!("list tags in {}/shop", registry.address())) && text.contains("500"),
        "{text}"
    );
    let err = client
        .get_manifest(&r, &stage("s", T1).tag())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                attempts: 3,
                operation: Operation::GetManifest,
                ..
            }
        ),
        "{err:?}"
    );

    // 500 first, repaired before the retry: the retry succeeds.
    let patient = RegistryClient::new(RegistryClientConfig {
        retry: RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_millis(600),
            max_delay: Duration::from_secs(2),
        },
        ..Default::default()
    });
    let repair = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        repair_tags(&broken);
    });
    let tags = patient.list_tags(&r).await.unwrap();
    repair.join().unwrap();
    assert_eq!(tags, [stage("s", T1).tag()]);
    assert_eq!(patient.request_counts().get(Operation::ListTags), 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_named() {
    // A socket that accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let r: kiln_operator::storage::RepoRef = format!("{address}/shop").parse().unwrap();
    let client = RegistryClient::new(RegistryClientConfig {
        retry: fast_retry(),
        read_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let err = client.list_tags(&r).await.unwrap_err();
    let StorageError::Unavailable {
        attempts,
        ref registry,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(attempts, 3);
    assert_eq!(registry, &address);
    let err = client.get_manifest(&r, "latest").await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                attempts: 3,
                operation: Operation::GetManifest,
                ..
            }
        ),
        "{err:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn oldest_timestamp_wins_among_candidates() {
    let registry = TestRegistry::start().unwrap();
    let d = "install";
    // Pushed newest first so that neither push order nor tag order hints at the answer.
    for (ts, commit) in [(T3, "c3"), (T1, "c1"), (T2, "c2")] {
        let image = TestImage::new(&format!("layer-{ts}")).label("werf-git-x-commit", commit);
        push_image(&registry, "shop", &stage(d, ts).tag(), &image).await;
    }
    push_image(
        &registry,
        "shop",
        &stage("other", 1_000_000_000_000).tag(),
        &TestImage::new("o"),
    )
    .await;
    let storage = StagesStorage::new(
        client_for(&registry),
        StorageRepos::new(repo(&registry, "shop")),
    );
    let find = |parent, rule: &'static dyn CandidateRule| {
        let storage = &storage;
        async move {
            storage
                .find_stage(&digest(d), parent, rule, Freshness::Cached)
                .await
                .unwrap()
                .map(|s| s.stage_id.creation_ts_ms())
        }
    };
    assert_eq!(find(None, &OldestCreationTs).await, Some(T1));
    // Stages older than the parent stage are not candidates.
    assert_eq!(find(Some(T1 + 1), &OldestCreationTs).await, Some(T2));
    assert_eq!(find(Some(T3 + 1), &OldestCreationTs).await, None);
    // The rule hook (what the git-ancestry rule plugs into) sees labels.
    static ONLY_C3: fn(&StageDescription) -> Verdict = |d| {
        if d.labels().get("werf-git-x-commit").map(String::as_str) == Some("c3") {
            Verdict::Accept
        } else {
            Verdict::Skip("not an ancestor".into())
        }
    };
    assert_eq!(find(None, &ONLY_C3).await, Some(T3));
}

#[tokio::test]
async fn pagination_over_more_than_1000_tags() {
    let registry = TestRegistry::start_with(RegistryOptions {
        flavor: RegistryFlavor::Distribution3,
        access_log: true,
        ..Default::default()
    })
    .unwrap();
    let image = TestImage::new("paged");
    push_image(&registry, "shop", "seed", &image).await;
    // 1,204 stage tags: 1,200 of one digest plus 4 more.
    let mut tags: Vec<String> = (0..1200u64).map(|i| stage("many", T1 + i).tag()).collect();
    let wanted = ["zz-last", "aa-first", "middle", "late"];
    tags.extend(wanted.iter().map(|s| stage(s, T2).tag()));
    tag_many(&registry, "shop", &image, &tags).await;

    let storage = StagesStorage::new(
        client_for(&registry),
        StorageRepos::new(repo(&registry, "shop")),
    );
    let before = storage.request_counts();
    let index = storage
        .tags(&repo(&registry, "shop"), Freshness::Cached)
        .await
        .unwrap();
    assert_eq!(index.tag_count(), 1205, "1,204 stage tags plus `seed`");
    // Two pages of n=1000: the registry had to be followed through its Link header.
    assert_eq!(
        (storage.request_counts() - before).get(Operation::ListTags),
        2
    );
    let pages: Vec<String> = registry
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/tags/list"))
        .map(|r| r.path)
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(
        pages[1].contains("last="),
        "second page follows the Link header: {pages:?}"
    );
    let many = index.candidates(&digest("many"), None);
    assert_eq!(many.len(), 1200);
    assert_eq!(many[0].creation_ts_ms(), T1);
    for s in wanted {
        let found = storage
            .find_stage(&digest(s), None, &OldestCreationTs, Freshness::Cached)
            .await
            .unwrap();
        assert_eq!(found.map(|f| f.stage_id), Some(stage(s, T2)), "{s}");
    }
}

#[tokio::test]
async fn rejected_tags_are_ignored() {
    let registry = TestRegistry::start().unwrap();
    let r = repo(&registry, "shop");
    for ts in [T1, T2] {
        push_image(
            &registry,
            "shop",
            &stage("setup", ts).tag(),
            &TestImage::new(&format!("l{ts}")),
        )
        .await;
    }
    let storage = StagesStorage::new(client_for(&registry), StorageRepos::new(r.clone()));
    assert_eq!(oldest(&storage, "setup").await, Some(T1));
    storage.reject(&stage("setup", T1), "shop").await.unwrap();
    // Same reconcile (cached tags list updated) and a new one (fresh list) agree.
    assert_eq!(oldest(&storage, "setup").await, Some(T2));
    let next = StagesStorage::new(client_for(&registry), StorageRepos::new(r.clone()));
    assert_eq!(oldest(&next, "setup").await, Some(T2));
    // The stage's own tag stays (tags are never overwritten); only the record is added.
    let kept = next
        .describe_in(&r, &stage("setup", T1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.stage_id, stage("setup", T1));
    // The record is a manifest-only image labelled with the project.
    let rejected_tag = stage("setup", T1).rejected_tag();
    let raw = next.client().get_manifest(&r, &rejected_tag).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw.bytes).unwrap();
    let config = next
        .client()
        .get_blob(&r, manifest["config"]["digest"].as_str().unwrap())
        .await
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["config"]["Labels"]["werf"], "shop");
    // Both stages rejected: nothing left.
    next.reject(&stage("setup", T2), "shop").await.unwrap();
    assert_eq!(oldest(&next, "setup").await, None);
}

#[tokio::test]
async fn secondary_repo_stage_is_copied_with_its_timestamp() {
    let primary_registry = logged();
    let other_registry = TestRegistry::start_with_basic_auth("ci", "pw").unwrap();
    let primary = repo(&primary_registry, "shop");
    // One secondary on another registry (blobs streamed), one in the same registry
    // (blobs mounted).
    let far = repo(&other_registry, "ci-cache");
    let near = repo(&primary_registry, "ci-cache");
    let far_id = stage("far", T1);
    let near_id = stage("near", T2);
    let far_digest = push_image(
        &other_registry,
        "ci-cache",
        &far_id.tag(),
        &TestImage::new("far-layer"),
    )
    .await;
    let near_digest = push_image(
        &primary_registry,
        "ci-cache",
        &near_id.tag(),
        &TestImage::new("near-layer"),
    )
    .await;

    let client = client_for_all(&[&primary_registry, &other_registry]);
    let storage = StagesStorage::new(
        client.clone(),
        StorageRepos {
            repo: primary.clone(),
            final_repo: None,
            secondary_repos: vec![far.clone(), near.clone()],
            cache_repos: vec![],
        },
    );
    for (id, expected_digest) in [(&far_id, &far_digest), (&near_id, &near_digest)] {
        assert!(
            storage
                .find_stage(id.digest(), None, &OldestCreationTs, Freshness::Cached)
                .await
                .unwrap()
                .is_none()
        );
        let copied = storage
            .find_in_secondary(id.digest(), None, &OldestCreationTs)
            .await
            .unwrap()
            .expect("found in a secondary repo");
        assert_eq!(&copied.stage_id, id, "original DIGEST-TIMESTAMP kept");
        assert_eq!(copied.repo, primary);
        assert_eq!(&copied.manifest_digest, expected_digest);
        // In the primary now, under the same tag and digest, visible to the same
        // reconcile and to the next.
        let raw = client.get_manifest(&primary, &id.tag()).await.unwrap();
        assert_eq!(&raw.digest, expected_digest);
        assert!(
            storage
                .find_stage(id.digest(), None, &OldestCreationTs, Freshness::Cached)
                .await
                .unwrap()
                .is_some()
        );
        let next = StagesStorage::new(client.clone(), StorageRepos::new(primary.clone()));
        let again = next
            .find_stage(id.digest(), None, &OldestCreationTs, Freshness::Fresh)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&again.stage_id, id);
    }
    // The same-registry copy mounted its blobs instead of uploading them.
    let mounts = count_requests(&primary_registry, "POST", "mount=");
    assert_eq!(mounts, 2, "config and layer mounted");
    // A secondary repo is never written.
    assert!(
        client
            .get_manifest(&far, &near_id.tag())
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn cache_repo_is_read_first_and_written_through() {
    let registry = logged();
    let cache_registry = logged();
    let primary = repo(&registry, "shop");
    let cache = repo(&cache_registry, "shop-cache");
    let cached = stage("cached", T1);
    let uncached = stage("uncached", T1);
    push_image(
        &registry,
        "shop",
        &cached.tag(),
        &TestImage::new("p").label("where", "primary"),
    )
    .await;
    push_image(
        &registry,
        "shop",
        &uncached.tag(),
        &TestImage::new("u").label("where", "primary"),
    )
    .await;
    // The cache holds a different image under the same tag, so the answer shows which
    // repo was read. (A real cache copy is identical.)
    push_image(
        &cache_registry,
        "shop-cache",
        &cached.tag(),
        &TestImage::new("c").label("where", "cache"),
    )
    .await;

    let client = client_for_all(&[&registry, &cache_registry]);
    let repos = StorageRepos {
        repo: primary.clone(),
        final_repo: None,
        secondary_repos: vec![],
        cache_repos: vec![cache.clone()],
    };
    let storage = StagesStorage::new(client.clone(), repos.clone());
    let a = storage
        .find_stage(cached.digest(), None, &OldestCreationTs, Freshness::Cached)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.labels()["where"], "cache");
    assert_eq!(a.repo, cache);
    assert_eq!(
        count_requests(&registry, "GET", &format!("/manifests/{}", cached.tag())),
        0
    );
    let b = storage
        .find_stage(
            uncached.digest(),
            None,
            &OldestCreationTs,
            Freshness::Cached,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.labels()["where"], "primary");
    assert_eq!(b.repo, primary);
    // The cache repo is listed once, to know what it holds: the stage it lacks costs no
    // failed manifest request there.
    assert_eq!(count_requests(&cache_registry, "GET", "/tags/list"), 1);
    assert_eq!(count_requests(&cache_registry, "GET", "/manifests/"), 1);
    // A stage only in the cache is never discovered.
    let cache_only = stage("cache-only", T1);
    push_image(
        &cache_registry,
        "shop-cache",
        &cache_only.tag(),
        &TestImage::new("co"),
    )
    .await;
    assert!(
        storage
            .find_stage(
                cache_only.digest(),
                None,
                &OldestCreationTs,
                Freshness::Fresh
            )
            .await
            .unwrap()
            .is_none()
    );

    // Write-through after a publish: the builder pushed a new stage to the primary.
    let fresh = stage("fresh", T3);
    let fresh_digest = push_image(&registry, "shop", &fresh.tag(), &TestImage::new("f")).await;
    let warnings = storage.published(&fresh).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        client
            .get_manifest(&cache, &fresh.tag())
            .await
            .unwrap()
            .digest,
        fresh_digest
    );
    // Seen in this reconcile without listing again, and read from the cache next time.
    let lists_before = count_requests(&registry, "GET", "/tags/list");
    let next = StagesStorage::new(client.clone(), repos.clone());
    let f = next
        .find_stage(fresh.digest(), None, &OldestCreationTs, Freshness::Cached)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.repo, cache);
    assert_eq!(f.manifest_digest, fresh_digest);
    assert!(
        storage
            .find_stage(fresh.digest(), None, &OldestCreationTs, Freshness::Cached)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        count_requests(&registry, "GET", "/tags/list"),
        lists_before + 1,
        "only `next` listed"
    );

    // A cache repo that is down is skipped; the primary answers, and the dead cache is
    // tried once per reconcile, not once per stage.
    drop(cache_registry);
    let degraded = StagesStorage::new(client.clone(), repos);
    let lists_before = client.request_counts().get(Operation::ListTags);
    let u = degraded
        .find_stage(
            uncached.digest(),
            None,
            &OldestCreationTs,
            Freshness::Cached,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.repo, primary);
    let c = degraded
        .find_stage(cached.digest(), None, &OldestCreationTs, Freshness::Cached)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.labels()["where"], "primary");
    assert_eq!(
        client.request_counts().get(Operation::ListTags) - lists_before,
        1 + 3,
        "the primary once, the dead cache once (1 attempt + 2 retries)"
    );
    let warnings = degraded.published(&fresh).await;
    assert_eq!(warnings.len(), 1, "write-through failure is a warning");
    assert_eq!(warnings[0].0, cache);
}

#[tokio::test]
async fn final_repo_gets_the_same_tag() {
    let registry = logged();
    let final_registry = TestRegistry::start().unwrap();
    let primary = repo(&registry, "shop");
    let final_repo = repo(&final_registry, "shop-final");
    let same_registry_final = repo(&registry, "shop-final");
    let id = stage("last-stage", T2);
    let digest_in_primary =
        push_image(&registry, "shop", &id.tag(), &TestImage::new("final-layer")).await;
    let client = client_for_all(&[&registry, &final_registry]);
    for (target, mounted) in [(&final_repo, 0), (&same_registry_final, 2)] {
        let repos = StorageRepos {
            repo: primary.clone(),
            final_repo: Some(target.clone()),
            secondary_repos: vec![],
            cache_repos: vec![],
        };
        let storage = StagesStorage::new(client.clone(), repos.clone());
        let FinalCopy::Copied { digest, stats } = storage.copy_to_final(&id).await.unwrap() else {
            panic!("copied")
        };
        assert_eq!(digest, digest_in_primary);
        assert_eq!(stats.mounted, mounted, "{target}");
        assert_eq!(stats.mounted + stats.transferred, 2, "{target}");
        assert_eq!(
            client.get_manifest(target, &id.tag()).await.unwrap().digest,
            digest_in_primary
        );
        // Once per reconcile, and the next reconcile sees it in the final repo's tags.
        assert_eq!(
            storage.copy_to_final(&id).await.unwrap(),
            FinalCopy::AlreadyThere
        );
        let next = StagesStorage::new(client.clone(), repos);
        assert_eq!(
            next.copy_to_final(&id).await.unwrap(),
            FinalCopy::AlreadyThere
        );
    }
    let none = StagesStorage::new(client, StorageRepos::new(primary));
    assert_eq!(
        none.copy_to_final(&id).await.unwrap(),
        FinalCopy::NoFinalRepo
    );
}

#[tokio::test]
async fn manifest_list_with_two_platforms_is_readable_by_skopeo() {
    let registry = TestRegistry::start().unwrap();
    let final_registry = TestRegistry::start().unwrap();
    let primary = repo(&registry, "shop");
    let amd = stage("amd64-last", T1);
    let arm = stage("arm64-last", T2);
    push_image(
        &registry,
        "shop",
        &amd.tag(),
        &TestImage::new("amd").docker(),
    )
    .await;
    push_image(
        &registry,
        "shop",
        &arm.tag(),
        &TestImage::new("arm").platform("arm64").docker(),
    )
    .await;
    let client = client_for_all(&[&registry, &final_registry]);
    let storage = StagesStorage::new(
        client.clone(),
        StorageRepos {
            repo: primary.clone(),
            final_repo: Some(repo(&final_registry, "shop")),
            secondary_repos: vec![],
            cache_repos: vec![],
        },
    );
    // Given in reverse platform order; the list is ordered by platform name.
    let arm_d = storage.describe(&arm).await.unwrap().unwrap();
    let amd_d = storage.describe(&amd).await.unwrap().unwrap();
    let list_digest = digest("multi");
    let (manifest_digest, warnings) = storage
        .publish_manifest_list(&list_digest, &[arm_d.clone(), amd_d.clone()])
        .await
        .unwrap();
    assert!(warnings.is_empty());

    let raw = skopeo_raw(&format!("{}/shop:{list_digest}", registry.address()));
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let entries = raw["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["platform"]["architecture"], "amd64");
    assert_eq!(entries[0]["digest"], amd_d.manifest_digest.as_str());
    assert_eq!(entries[1]["platform"]["architecture"], "arm64");
    assert_eq!(entries[1]["platform"]["os"], "linux");
    assert_eq!(entries[1]["digest"], arm_d.manifest_digest.as_str());
    assert_eq!(entries[1]["size"], arm_d.manifest_size);

    // Described back as an index, and copied to the final repo with its platforms.
    let multi = StageId::multi_platform(list_digest.clone());
    let described = storage.describe(&multi).await.unwrap().unwrap();
    assert_eq!(described.manifest_digest, manifest_digest);
    assert!(matches!(described.content, StageContent::Index(ref m) if m.len() == 2));
    assert!(matches!(
        storage.copy_to_final(&multi).await.unwrap(),
        FinalCopy::Copied { .. }
    ));
    let in_final = skopeo_raw(&format!("{}/shop:{list_digest}", final_registry.address()));
    assert_eq!(in_final, raw);
    let arm_in_final = skopeo_raw(&format!(
        "{}/shop@{}",
        final_registry.address(),
        arm_d.manifest_digest
    ));
    assert_eq!(arm_in_final["config"]["digest"], arm_d.image_id().unwrap());

    // Mixed media types give an OCI index instead of a Docker list.
    let oci_arm = stage("arm64-oci", T3);
    push_image(
        &registry,
        "shop",
        &oci_arm.tag(),
        &TestImage::new("arm-oci").platform("arm64"),
    )
    .await;
    let oci_arm_d = storage.describe(&oci_arm).await.unwrap().unwrap();
    publish::push_manifest_list(
        storage.client(),
        &primary,
        "mixed",
        &[amd_d.clone(), oci_arm_d],
    )
    .await
    .unwrap();
    let mixed = skopeo_raw(&format!("{}/shop:mixed", registry.address()));
    assert_eq!(
        mixed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    // Two entries for one platform are refused with a clear error.
    let err =
        publish::push_manifest_list(storage.client(), &primary, "dup", &[amd_d.clone(), amd_d])
            .await
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("platform linux/amd64 appears twice"),
        "{err}"
    );
}

#[tokio::test]
async fn fully_cached_image_request_budget() {
    let registry = logged();
    let r = repo(&registry, "shop");
    let stages: Vec<StageId> = (0..6).map(|i| stage(&format!("s{i}"), T1 + i)).collect();
    for (i, s) in stages.iter().enumerate() {
        push_image(
            &registry,
            "shop",
            &s.tag(),
            &TestImage::new(&format!("layer{i}")),
        )
        .await;
        // Noise: older rejected and newer duplicate candidates, service tags.
        push_image(
            &registry,
            "shop",
            &StageId::new(s.digest().clone(), T3 + i as u64).tag(),
            &TestImage::new("dup"),
        )
        .await;
    }
    push_image(
        &registry,
        "shop",
        "managed-image-backend",
        &TestImage::new("m"),
    )
    .await;
    let requests_before = registry.requests().len();
    let storage = StagesStorage::new(client_for(&registry), StorageRepos::new(r));
    let before = storage.request_counts();
    let lookups: Vec<_> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.digest().clone(),
                if i == 0 {
                    None
                } else {
                    Some(stages[i - 1].creation_ts_ms())
                },
            )
        })
        .collect();
    let found = storage.find_stages(&lookups).await;
    for (f, s) in found.iter().zip(&stages) {
        assert_eq!(f.as_ref().unwrap().as_ref().unwrap().stage_id, *s);
    }
    let delta = storage.request_counts() - before;
    assert_eq!(delta.get(Operation::ListTags), 1);
    assert_eq!(delta.get(Operation::GetManifest), 6);
    assert_eq!(
        delta.get(Operation::GetBlob),
        6,
        "one config blob per stage"
    );
    assert_eq!(delta.total(), 13, "{delta}");
    // The registry saw the same: counted independently from its access log.
    let seen: Vec<_> = registry
        .requests()
        .into_iter()
        .skip(requests_before)
        .collect();
    assert_eq!(
        seen.iter()
            .filter(|r| r.path.contains("/tags/list"))
            .count(),
        1
    );
    assert_eq!(
        seen.iter()
            .filter(|r| r.path.contains("/manifests/"))
            .count(),
        6
    );
    // Asking again in the same reconcile costs nothing.
    let again = storage.request_counts();
    storage.find_stages(&lookups).await;
    assert_eq!((storage.request_counts() - again).total(), 0);
}

#[tokio::test]
async fn publishing_a_new_stage_never_overwrites_a_tag() {
    let registry = TestRegistry::start().unwrap();
    let r = repo(&registry, "shop");
    let d = digest("built");
    // Another builder published the same digest at the very millisecond we would use.
    let theirs = push_image(
        &registry,
        "shop",
        &StageId::new(d.clone(), T2).tag(),
        &TestImage::new("theirs"),
    )
    .await;
    let storage = StagesStorage::new(client_for(&registry), StorageRepos::new(r.clone()));
    // Under the lock: fresh re-check (it finds theirs, which is what a reconcile would
    // reuse); a stage published anyway gets the next free millisecond.
    let found = storage
        .find_stage(&d, None, &OldestCreationTs, Freshness::Fresh)
        .await
        .unwrap();
    assert_eq!(found.unwrap().stage_id.creation_ts_ms(), T2);
    let ours = storage.new_stage_id(&d, T2).await.unwrap();
    assert_eq!(ours, StageId::new(d.clone(), T2 + 1));
    push_image(&registry, "shop", &ours.tag(), &TestImage::new("ours")).await;
    assert!(storage.published(&ours).await.is_empty());
    assert_eq!(
        storage.new_stage_id(&d, T2).await.unwrap().creation_ts_ms(),
        T2 + 2
    );
    // Theirs is untouched and still the one selected (oldest).
    let client = storage.client();
    assert_eq!(
        client
            .get_manifest(&r, &StageId::new(d.clone(), T2).tag())
            .await
            .unwrap()
            .digest,
        theirs
    );
    let next = StagesStorage::new(client.clone(), StorageRepos::new(r));
    let chosen = next
        .find_stage(&d, None, &OldestCreationTs, Freshness::Cached)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chosen.stage_id.creation_ts_ms(), T2);
}

#[tokio::test]
async fn bearer_token_registry() {
    let registry = TestRegistry::start_with(RegistryOptions {
        auth: Some(kiln_testkit::registry::BasicAuth {
            username: "kiln".into(),
            password: "s3cret".into(),
        }),
        flavor: RegistryFlavor::Distribution3,
        access_log: false,
        token_auth: true,
        host: None,
    })
    .unwrap();
    let id = stage("token", T1);
    let pushed = push_image(&registry, "team/shop", &id.tag(), &TestImage::new("t")).await;
    let r = repo(&registry, "team/shop");

    // The secret's basic credentials buy tokens from the registry's token server.
    let storage = StagesStorage::new(client_for(&registry), StorageRepos::new(r.clone()));
    let found = storage
        .find_stage(id.digest(), None, &OldestCreationTs, Freshness::Cached)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.manifest_digest, pushed);
    let counts = storage.request_counts();
    assert_eq!(counts.get(Operation::Authenticate), 1, "{counts}");
    assert_eq!(
        counts.get(Operation::ListTags),
        2,
        "challenged once, then with the token"
    );
    // Later listings reuse the token.
    storage.tags(&r, Freshness::Fresh).await.unwrap();
    assert_eq!(
        (storage.request_counts() - counts).get(Operation::ListTags),
        1
    );
    assert!(registry.token_server().unwrap().tokens_issued() >= 2);

    // Writes: a copy into another repository of the registry.
    let other = repo(&registry, "team/shop-final");
    let (digest, stats) = publish::copy_image(storage.client(), &r, &other, &id.tag())
        .await
        .unwrap();
    assert_eq!(digest, pushed);
    assert_eq!(stats.mounted + stats.transferred, 2, "{stats:?}");
    assert_eq!(
        storage
            .client()
            .get_manifest(&other, &id.tag())
            .await
            .unwrap()
            .digest,
        pushed
    );

    // Wrong password: the token server refuses, and the error says where.
    let wrong = format!(
        r#"{{"auths":{{"{}":{{"username":"kiln","password":"nope"}}}}}}"#,
        registry.address()
    );
    let client = RegistryClient::new(RegistryClientConfig {
        credentials: DockerConfig::parse(wrong.as_bytes()).unwrap(),
        retry: fast_retry(),
        ..Default::default()
    });
    let err = client.list_tags(&r).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unauthorized {
                operation: Operation::ListTags,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("team/shop"), "{err}");
    let err = client.get_manifest(&r, &id.tag()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unauthorized {
                operation: Operation::GetManifest,
                ..
            }
        ),
        "{err:?}"
    );
}
