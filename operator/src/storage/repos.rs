//! The four repos of an ImageBuild and how stages move between them (seed section
//! "Использование container registry"; werf `--repo`, `--final-repo`, `--secondary-repo`,
//! `--cache-repo`):
//!
//! - `repo`, the stages storage: the source of truth; candidates always come from its
//!   tags list.
//! - `finalRepo`: final images are copied there under the same tag; its tags list is read
//!   once per reconcile to skip copies that exist.
//! - `secondaryRepos`: read-only; consulted in order only when `repo` has no suitable
//!   stage; a stage found there is copied into `repo` keeping its `DIGEST-TIMESTAMP`.
//! - `cacheRepos`: read first for descriptions; written through after every publish;
//!   listed (once per reconcile) only to know which stages they hold, never to discover
//!   stages: never the source of truth, never copied back to `repo`. Failures to
//!   write them are warnings. Unlike werf, a cache miss on a lookup is not refilled: a
//!   reused stage is never pulled (only described), so there is nothing to refill from;
//!   caches fill through publishes and secondary copies.
//!
//! A [`StagesStorage`] lives for one reconcile: its tags lists and descriptions are cached
//! for that long, so a fully cached image with N stages costs one tags list per repo
//! (stages storage and each cache repo) and at most one manifest request per stage (plus one config blob request per stage, for
//! labels and creation time).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::client::RegistryClient;
use super::counters::RequestCounts;
use super::description::{ImageConfig, Manifest, StageDescription};
use super::error::StorageError;
use super::publish::{self, CopyStats};
use super::reference::RepoRef;
use super::selection::{CandidateRule, OldestCreationTs, StageTagIndex, Verdict};
use super::stage_id::{StageDigest, StageId};

/// The repos of one ImageBuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRepos {
    /// The stages storage (`spec.repo`).
    pub repo: RepoRef,
    /// Where final images are copied (`spec.finalRepo`).
    pub final_repo: Option<RepoRef>,
    /// Read-only stage sources, in order (`spec.secondaryRepos`).
    pub secondary_repos: Vec<RepoRef>,
    /// Fast read caches, in order (`spec.cacheRepos`).
    pub cache_repos: Vec<RepoRef>,
}

impl StorageRepos {
    /// Only a stages storage.
    pub fn new(repo: RepoRef) -> Self {
        StorageRepos {
            repo,
            final_repo: None,
            secondary_repos: Vec::new(),
            cache_repos: Vec::new(),
        }
    }
}

/// Whether a tags list may come from the per-reconcile cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Use the list read earlier in this reconcile, if any.
    Cached,
    /// List again: the check-again under the stage lock before publishing (werf re-lists
    /// without cache there too).
    Fresh,
}

/// What [`StagesStorage::copy_to_final`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalCopy {
    /// No final repo is configured.
    NoFinalRepo,
    /// The final repo already had the tag.
    AlreadyThere,
    /// Copied; the manifest digest and how blobs got there.
    Copied {
        /// Manifest digest in the final repo (same as in `repo`).
        digest: String,
        /// Blob transfer statistics.
        stats: CopyStats,
    },
}

type TagSlot = Arc<tokio::sync::Mutex<Option<Arc<StageTagIndex>>>>;

/// Stage lookup and publishing across the repos of one ImageBuild, for one reconcile.
pub struct StagesStorage {
    client: RegistryClient,
    repos: StorageRepos,
    tags: Mutex<HashMap<RepoRef, TagSlot>>,
    descriptions: Mutex<HashMap<StageId, StageDescription>>,
    unusable_caches: Mutex<HashSet<RepoRef>>,
    lookup_concurrency: usize,
}

impl StagesStorage {
    /// A storage view for one reconcile, with empty caches.
    pub fn new(client: RegistryClient, repos: StorageRepos) -> Self {
        StagesStorage {
            client,
            repos,
            tags: Mutex::new(HashMap::new()),
            descriptions: Mutex::new(HashMap::new()),
            unusable_caches: Mutex::new(HashSet::new()),
            lookup_concurrency: 8,
        }
    }

    /// The repos this storage works on.
    pub fn repos(&self) -> &StorageRepos {
        &self.repos
    }

    /// The registry client (for its request counters or direct calls).
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Requests made so far by the underlying client.
    pub fn request_counts(&self) -> RequestCounts {
        self.client.request_counts()
    }

    fn slot(&self, repo: &RepoRef) -> TagSlot {
        self.tags
            .lock()
            .expect("tags cache poisoned")
            .entry(repo.clone())
            .or_default()
            .clone()
    }

    /// The indexed tags list of a repository: from this reconcile's cache, or listed (one
    /// listing per repo however many lookups wait for it).
    pub async fn tags(
        &self,
        repo: &RepoRef,
        freshness: Freshness,
    ) -> Result<Arc<StageTagIndex>, StorageError> {
        let slot = self.slot(repo);
        let mut guard = slot.lock().await;
        if let (Some(index), Freshness::Cached) = (guard.as_ref(), freshness) {
            return Ok(index.clone());
        }
        let tags = self.client.list_tags(repo).await?;
        let index = Arc::new(StageTagIndex::from_tags(&tags));
        *guard = Some(index.clone());
        Ok(index)
    }

    /// Records a tag just written to `repo` in the cached tags list, so later lookups in
    /// this reconcile see it without listing again.
    async fn record_tag(&self, repo: &RepoRef, tag: &str) {
        let slot = self.slot(repo);
        let mut guard = slot.lock().await;
        if let Some(index) = guard.as_mut() {
            Arc::make_mut(index).insert(tag);
        }
    }

    /// Reads a stage's description from one repository. `Ok(None)` when the tag is gone or
    /// its manifest or config is unusable (werf ignores such stages too); errors for
    /// anything that makes the repository unreadable (auth, outage).
    pub async fn describe_in(
        &self,
        repo: &RepoRef,
        stage: &StageId,
    ) -> Result<Option<StageDescription>, StorageError> {
        let tag = stage.tag();
        let raw = match self.client.get_manifest(repo, &tag).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let manifest = match Manifest::parse(&raw.bytes) {
            Ok(m) => m,
            Err(reason) => {
                tracing::warn!(%repo, %tag, %reason, "ignoring a stage with an unusable manifest");
                return Ok(None);
            }
        };
        let config = match &manifest {
            Manifest::Image { config, .. } => {
                let bytes = match self.client.get_blob(repo, &config.digest).await {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => {
                        tracing::warn!(%repo, %tag, digest = %config.digest, "ignoring a stage whose config blob is missing");
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                };
                match ImageConfig::parse(&bytes) {
                    Ok(c) => Some(c),
                    Err(reason) => {
                        tracing::warn!(%repo, %tag, %reason, "ignoring a stage with an unusable image config");
                        return Ok(None);
                    }
                }
            }
            Manifest::Index { .. } => None,
        };
        Ok(Some(StageDescription::new(
            stage.clone(),
            repo.clone(),
            raw.digest,
            raw.bytes.len() as u64,
            manifest,
            config,
        )))
    }

    /// A stage's description, read from the first cache repo whose tags list has it, else
    /// from `repo`; remembered for the rest of the reconcile. A cache repo that fails is
    /// skipped with a warning: caches are never the source of truth.
    pub async fn describe(
        &self,
        stage: &StageId,
    ) -> Result<Option<StageDescription>, StorageError> {
        if let Some(d) = self.descriptions.lock().expect("poisoned").get(stage) {
            return Ok(Some(d.clone()));
        }
        let mut found = None;
        for cache in &self.repos.cache_repos {
            if !self.cache_has(cache, stage).await {
                continue;
            }
            match self.describe_in(cache, stage).await {
                Ok(Some(d)) => {
                    found = Some(d);
                    break;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%cache, %stage, %error, "cache repo unreadable; using the stages storage");
                }
            }
        }
        if found.is_none() {
            found = self.describe_in(&self.repos.repo, stage).await?;
        }
        if let Some(d) = &found {
            self.descriptions
                .lock()
                .expect("poisoned")
                .insert(stage.clone(), d.clone());
        }
        Ok(found)
    }

    /// Whether a cache repo holds the stage's tag, from its tags list (read once per
    /// reconcile, so a cold cache costs one listing instead of a failed manifest request
    /// per stage). A cache repo that cannot be listed is left out for the rest of the
    /// reconcile, with a warning.
    async fn cache_has(&self, cache: &RepoRef, stage: &StageId) -> bool {
        if self
            .unusable_caches
            .lock()
            .expect("poisoned")
            .contains(cache)
        {
            return false;
        }
        match self.tags(cache, Freshness::Cached).await {
            Ok(index) => index.contains(stage),
            Err(error) => {
                tracing::warn!(%cache, %error, "cache repo unreadable; not using it in this reconcile");
                self.unusable_caches
                    .lock()
                    .expect("poisoned")
                    .insert(cache.clone());
                false
            }
        }
    }

    /// Finds the stage to reuse for `digest` in `repo`: candidates from its tags list
    /// (oldest first, rejected ones and those older than the parent stage dropped), then
    /// the first whose description is readable and that `rule` accepts. Reads one
    /// description per candidate tried, so with [`OldestCreationTs`] usually exactly one.
    pub async fn find_stage(
        &self,
        digest: &StageDigest,
        parent_creation_ts_ms: Option<u64>,
        rule: &dyn CandidateRule,
        freshness: Freshness,
    ) -> Result<Option<StageDescription>, StorageError> {
        let index = self.tags(&self.repos.repo, freshness).await?;
        for candidate in index.candidates(digest, parent_creation_ts_ms) {
            let Some(description) = self.describe(&candidate).await? else {
                continue;
            };
            match rule.judge(&description) {
                Verdict::Accept => return Ok(Some(description)),
                Verdict::Skip(reason) => {
                    tracing::debug!(stage = %candidate, %reason, "skipping stage candidate");
                }
            }
        }
        Ok(None)
    }

    /// [`find_stage`](Self::find_stage) with the oldest-timestamp rule for many digests at
    /// once (up to 8 lookups in flight), results in input order. Each item is a stage
    /// digest and its parent stage's creation timestamp.
    pub async fn find_stages(
        &self,
        lookups: &[(StageDigest, Option<u64>)],
    ) -> Vec<Result<Option<StageDescription>, StorageError>> {
        futures::stream::iter(lookups)
            .map(|(digest, parent)| {
                self.find_stage(digest, *parent, &OldestCreationTs, Freshness::Cached)
            })
            .buffered(self.lookup_concurrency)
            .collect()
            .await
    }

    /// The ID to publish a newly built stage of `digest` under, from `now_ms` (UTC
    /// milliseconds) moved past timestamps the digest already uses in `repo`. Call under
    /// the stage lock after the fresh re-check (`find_stage` with [`Freshness::Fresh`]),
    /// so the index it reads is current.
    pub async fn new_stage_id(
        &self,
        digest: &StageDigest,
        now_ms: u64,
    ) -> Result<StageId, StorageError> {
        let index = self.tags(&self.repos.repo, Freshness::Cached).await?;
        Ok(index.new_stage_id(digest, now_ms))
    }

    /// Looks for a suitable stage in the secondary repos, in order; the first found is
    /// copied into `repo` under its original `DIGEST-TIMESTAMP` tag and written through to
    /// the cache repos. Call under the stage lock, after [`find_stage`](Self::find_stage)
    /// found nothing in `repo`. Returns the stage as it now is in `repo`.
    pub async fn find_in_secondary(
        &self,
        digest: &StageDigest,
        parent_creation_ts_ms: Option<u64>,
        rule: &dyn CandidateRule,
    ) -> Result<Option<StageDescription>, StorageError> {
        for secondary in &self.repos.secondary_repos {
            let index = self.tags(secondary, Freshness::Cached).await?;
            for candidate in index.candidates(digest, parent_creation_ts_ms) {
                let Some(mut description) = self.describe_in(secondary, &candidate).await? else {
                    continue;
                };
                if let Verdict::Skip(reason) = rule.judge(&description) {
                    tracing::debug!(%secondary, stage = %candidate, %reason, "skipping secondary candidate");
                    continue;
                }
                let tag = candidate.tag();
                publish::copy_image(&self.client, secondary, &self.repos.repo, &tag).await?;
                self.record_tag(&self.repos.repo, &tag).await;
                description.repo = self.repos.repo.clone();
                self.descriptions
                    .lock()
                    .expect("poisoned")
                    .insert(candidate.clone(), description.clone());
                for (cache, error) in self.write_through(&candidate).await {
                    tracing::warn!(%cache, stage = %candidate, %error, "could not fill cache repo");
                }
                return Ok(Some(description));
            }
        }
        Ok(None)
    }

    /// Copies a stage from `repo` into every cache repo (same tag). Returns the cache
    /// repos that could not be written, with the error; these are warnings, not failures.
    pub async fn write_through(&self, stage: &StageId) -> Vec<(RepoRef, StorageError)> {
        let mut failures = Vec::new();
        for cache in &self.repos.cache_repos {
            match publish::copy_image(&self.client, &self.repos.repo, cache, &stage.tag()).await {
                Ok(_) => self.record_tag(cache, &stage.tag()).await,
                Err(e) => failures.push((cache.clone(), e)),
            }
        }
        failures
    }

    /// Call after a stage was pushed to `repo` (by a builder pod): records its tag for the
    /// rest of the reconcile and writes it through to the cache repos. Returns cache
    /// failures as warnings.
    pub async fn published(&self, stage: &StageId) -> Vec<(RepoRef, StorageError)> {
        self.record_tag(&self.repos.repo, &stage.tag()).await;
        self.write_through(stage).await
    }

    /// Copies a final image (its last stage, or a multi-platform manifest list by bare
    /// digest) from `repo` to the final repo under the same tag, unless the final repo's
    /// tags list (read once per reconcile) already has it.
    pub async fn copy_to_final(&self, stage: &StageId) -> Result<FinalCopy, StorageError> {
        let Some(final_repo) = &self.repos.final_repo else {
            return Ok(FinalCopy::NoFinalRepo);
        };
        let index = self.tags(final_repo, Freshness::Cached).await?;
        if index.contains(stage) {
            return Ok(FinalCopy::AlreadyThere);
        }
        let tag = stage.tag();
        let (digest, stats) =
            publish::copy_image(&self.client, &self.repos.repo, final_repo, &tag).await?;
        self.record_tag(final_repo, &tag).await;
        Ok(FinalCopy::Copied { digest, stats })
    }

    /// Pushes the manifest list of a multi-platform image to `repo` under its bare digest
    /// (the platform images must be in `repo`), records it and writes it through to the
    /// cache repos. Returns the list's manifest digest and cache warnings.
    pub async fn publish_manifest_list(
        &self,
        digest: &StageDigest,
        platforms: &[StageDescription],
    ) -> Result<(String, Vec<(RepoRef, StorageError)>), StorageError> {
        let stage = StageId::multi_platform(digest.clone());
        let manifest_digest =
            publish::push_manifest_list(&self.client, &self.repos.repo, &stage.tag(), platforms)
                .await?;
        self.descriptions.lock().expect("poisoned").remove(&stage);
        let warnings = self.published(&stage).await;
        Ok((manifest_digest, warnings))
    }

    /// Marks a stage rejected in `repo` (a selected stage that turned out unpullable);
    /// later lookups skip it.
    pub async fn reject(&self, stage: &StageId, project: &str) -> Result<(), StorageError> {
        publish::reject_stage(&self.client, &self.repos.repo, stage, project).await?;
        self.record_tag(&self.repos.repo, &stage.rejected_tag())
            .await;
        self.descriptions.lock().expect("poisoned").remove(stage);
        Ok(())
    }
}
