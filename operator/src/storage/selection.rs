//! Stage candidates and selection rules (werf's `GetStagesIDsByDigest` and
//! `SelectSuitableStageDesc`), as pure functions over a repository's tags.
//!
//! Candidates for a digest are its `DIGEST-TIMESTAMP_MILLISEC` tags, minus those with a
//! `-rejected` record, minus those older than the parent stage (a stage published before
//! the image it was built on cannot have been built on it), sorted oldest first. The
//! oldest candidate whose description can be read and that the selection rule accepts is
//! the stage to reuse: oldest-timestamp selection for most stages, the git-ancestry rule
//! for Stapel git stages (supplied later through [`CandidateRule`]).

use std::collections::{HashMap, HashSet};

use super::description::StageDescription;
use super::stage_id::{StageDigest, StageId, StageTag, classify_tag};

/// The stage tags of one repository, indexed by digest. Built once per tags list; lookups
/// cost a hash probe, so selecting stages for many digests stays linear in the tag count.
#[derive(Debug, Clone, Default)]
pub struct StageTagIndex {
    // Creation timestamps per digest, ascending, without duplicates.
    stages: HashMap<StageDigest, Vec<u64>>,
    rejected: HashSet<StageId>,
    multi_platform: HashSet<StageDigest>,
    other_tags: HashSet<String>,
    tag_count: usize,
}

impl StageTagIndex {
    /// Indexes a tags list (any order).
    pub fn from_tags<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut index = StageTagIndex::default();
        for tag in tags {
            index.insert(tag.as_ref());
        }
        index
    }

    /// Adds one tag, as after publishing it (keeps the per-reconcile cache current).
    pub fn insert(&mut self, tag: &str) {
        self.tag_count += 1;
        match classify_tag(tag) {
            StageTag::Stage(id) => {
                let ts = self.stages.entry(id.digest().clone()).or_default();
                if let Err(pos) = ts.binary_search(&id.creation_ts_ms()) {
                    ts.insert(pos, id.creation_ts_ms());
                }
            }
            StageTag::MultiPlatform(digest) => {
                self.multi_platform.insert(digest);
            }
            StageTag::Rejected(id) => {
                self.rejected.insert(id);
            }
            StageTag::Other => {
                self.other_tags.insert(tag.to_owned());
            }
        }
    }

    /// Number of tags indexed.
    pub fn tag_count(&self) -> usize {
        self.tag_count
    }

    /// Candidates for `digest`, oldest first: not rejected, and not older than
    /// `parent_creation_ts_ms` when the stage has a parent stage.
    ///
    /// Unlike werf v2 (which keys its rejected set by the current digest and thus can miss
    /// a record), a candidate is dropped exactly when its own `-rejected` tag exists.
    pub fn candidates(
        &self,
        digest: &StageDigest,
        parent_creation_ts_ms: Option<u64>,
    ) -> Vec<StageId> {
        let min_ts = parent_creation_ts_ms.unwrap_or(0);
        self.stages
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|&&ts| ts >= min_ts)
            .map(|&ts| StageId::new(digest.clone(), ts))
            .filter(|id| !self.rejected.contains(id))
            .collect()
    }

    /// Whether the stage's tag is present (and not rejected); for a multi-platform ID,
    /// whether its bare-digest tag is present.
    pub fn contains(&self, id: &StageId) -> bool {
        if id.is_multi_platform() {
            return self.multi_platform.contains(id.digest());
        }
        !self.rejected.contains(id)
            && self
                .stages
                .get(id.digest())
                .is_some_and(|ts| ts.binary_search(&id.creation_ts_ms()).is_ok())
    }

    /// Whether a `-rejected` record exists for the stage.
    pub fn is_rejected(&self, id: &StageId) -> bool {
        self.rejected.contains(id)
    }

    /// The stage ID for a stage built now: `now_ms` (UTC milliseconds), moved forward
    /// past any timestamp this digest already uses (as a stage or a rejection record), so a
    /// `DIGEST-TIMESTAMP` tag is never overwritten. werf v2 meant to do this but its loop
    /// never advanced; v3 advances by one millisecond, as here. Use the index of a fresh
    /// listing taken under the stage lock.
    pub fn new_stage_id(&self, digest: &StageDigest, now_ms: u64) -> StageId {
        let mut ts = now_ms.max(1);
        let used = |ts: u64| {
            let id = StageId::new(digest.clone(), ts);
            self.rejected.contains(&id)
                || self
                    .stages
                    .get(digest)
                    .is_some_and(|all| all.binary_search(&ts).is_ok())
        };
        while used(ts) {
            ts += 1;
        }
        StageId::new(digest.clone(), ts)
    }

    /// Whether a non-stage tag (a custom tag, `latest`, …) is present.
    pub fn contains_other_tag(&self, tag: &str) -> bool {
        self.other_tags.contains(tag)
    }
}

/// A selection rule's verdict on one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Use this stage.
    Accept,
    /// Do not use it; the reason goes to the log (werf logs skipped candidates too).
    Skip(String),
}

/// Decides whether a candidate (oldest first) may be reused. The default,
/// [`OldestCreationTs`], accepts every readable candidate, so the oldest wins. Stapel git
/// stages plug in werf's ancestry rule here: accept a candidate only when the commit in
/// each `werf-git-<h>-commit` label is an ancestor of the current commit.
///
/// Any `Fn(&StageDescription) -> Verdict + Send + Sync` is a rule.
pub trait CandidateRule: Send + Sync {
    /// Judges one candidate by its description (labels carry the git commits).
    fn judge(&self, candidate: &StageDescription) -> Verdict;
}

/// werf's `selectStageDescByOldestCreationTs`: the oldest readable candidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct OldestCreationTs;

impl CandidateRule for OldestCreationTs {
    fn judge(&self, _candidate: &StageDescription) -> Verdict {
        Verdict::Accept
    }
}

impl<F> CandidateRule for F
where
    F: Fn(&StageDescription) -> Verdict + Send + Sync,
{
    fn judge(&self, candidate: &StageDescription) -> Verdict {
        self(candidate)
    }
}

/// Picks the first accepted description from candidates already sorted oldest first;
/// returns it with the reasons other candidates were skipped.
pub fn select<'a>(
    candidates: &'a [StageDescription],
    rule: &dyn CandidateRule,
) -> (Option<&'a StageDescription>, Vec<(StageId, String)>) {
    let mut skipped = Vec::new();
    for candidate in candidates {
        match rule.judge(candidate) {
            Verdict::Accept => return (Some(candidate), skipped),
            Verdict::Skip(reason) => skipped.push((candidate.stage_id.clone(), reason)),
        }
    }
    (None, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::description::{Descriptor, Manifest};

    fn digest(c: char) -> StageDigest {
        c.to_string().repeat(56).parse().unwrap()
    }

    fn tag(c: char, ts: u64) -> String {
        format!("{}-{ts}", digest(c))
    }

    #[test]
    fn candidates_sorted_oldest_first_whatever_the_list_order() {
        let tags = vec![
            tag('a', 1_700_000_000_300),
            "latest".to_owned(),
            tag('b', 1_700_000_000_050),
            tag('a', 1_700_000_000_100),
            tag('a', 1_700_000_000_200),
            tag('a', 1_700_000_000_100), // listed twice by a flaky registry
        ];
        let index = StageTagIndex::from_tags(&tags);
        let got: Vec<u64> = index
            .candidates(&digest('a'), None)
            .iter()
            .map(StageId::creation_ts_ms)
            .collect();
        assert_eq!(
            got,
            [1_700_000_000_100, 1_700_000_000_200, 1_700_000_000_300]
        );
        assert_eq!(index.candidates(&digest('c'), None), []);
        assert_eq!(index.tag_count(), 6);
        assert!(index.contains_other_tag("latest"));
    }

    #[test]
    fn rejected_and_pre_parent_candidates_are_dropped() {
        let tags = [
            tag('a', 1_700_000_000_100),
            tag('a', 1_700_000_000_200),
            format!("{}-rejected", tag('a', 1_700_000_000_200)),
            tag('a', 1_700_000_000_300),
            // A rejected record of another digest does not affect 'a'.
            format!("{}-rejected", tag('b', 1_700_000_000_300)),
        ];
        let index = StageTagIndex::from_tags(&tags);
        let ts = |p| -> Vec<u64> {
            index
                .candidates(&digest('a'), p)
                .iter()
                .map(StageId::creation_ts_ms)
                .collect()
        };
        assert_eq!(ts(None), [1_700_000_000_100, 1_700_000_000_300]);
        // Parent published at ..150: the ..100 candidate predates it.
        assert_eq!(ts(Some(1_700_000_000_150)), [1_700_000_000_300]);
        // Equal timestamps are kept (werf drops only ts < parent ts).
        assert_eq!(ts(Some(1_700_000_000_300)), [1_700_000_000_300]);
        let rejected = StageId::new(digest('a'), 1_700_000_000_200);
        assert!(index.is_rejected(&rejected));
        assert!(!index.contains(&rejected));
        assert!(index.contains(&StageId::new(digest('a'), 1_700_000_000_100)));
    }

    #[test]
    fn new_stage_ids_never_reuse_a_tag() {
        let index = StageTagIndex::from_tags([
            tag('a', 1_700_000_000_500),
            tag('a', 1_700_000_000_501),
            format!("{}-rejected", tag('a', 1_700_000_000_502)),
            tag('b', 1_700_000_000_503),
        ]);
        // ..500 and ..501 are stages, ..502 a rejection record: next free is ..503.
        assert_eq!(
            index
                .new_stage_id(&digest('a'), 1_700_000_000_500)
                .creation_ts_ms(),
            1_700_000_000_503
        );
        // Another digest's timestamps do not matter.
        assert_eq!(
            index
                .new_stage_id(&digest('b'), 1_700_000_000_500)
                .creation_ts_ms(),
            1_700_000_000_500
        );
        assert_eq!(
            index
                .new_stage_id(&digest('a'), 1_700_000_000_400)
                .creation_ts_ms(),
            1_700_000_000_400
        );
    }

    #[test]
    fn multi_platform_tags_are_indexed_apart() {
        let index = StageTagIndex::from_tags([digest('f').to_string()]);
        assert!(index.contains(&StageId::multi_platform(digest('f'))));
        assert_eq!(index.candidates(&digest('f'), None), []);
    }

    fn description(ts: u64, commit: &str) -> StageDescription {
        let manifest = Manifest::Image {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            config: Descriptor {
                media_type: String::new(),
                digest: format!("sha256:{ts}"),
                size: 1,
                platform: None,
            },
            layers: vec![],
        };
        let config = crate::storage::description::ImageConfig::parse(
            format!(r#"{{"os":"linux","architecture":"amd64","config":{{"Labels":{{"werf-git-x-commit":"{commit}"}}}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        StageDescription::new(
            StageId::new(digest('a'), ts),
            "r.example.io/shop".parse().unwrap(),
            format!("sha256:m{ts}"),
            1,
            manifest,
            Some(config),
        )
    }

    #[test]
    fn oldest_rule_takes_the_first_and_a_custom_rule_can_skip() {
        let candidates = [
            description(100, "c1"),
            description(200, "c2"),
            description(300, "c3"),
        ];
        let (chosen, skipped) = select(&candidates, &OldestCreationTs);
        assert_eq!(chosen.unwrap().stage_id.creation_ts_ms(), 100);
        assert!(skipped.is_empty());

        // An ancestry-like rule: only commit c3 is an ancestor of the current commit.
        let ancestors = ["c3"];
        let rule = |d: &StageDescription| match d.labels().get("werf-git-x-commit") {
            Some(c) if ancestors.contains(&c.as_str()) => Verdict::Accept,
            Some(c) => Verdict::Skip(format!("commit {c} is not an ancestor")),
            None => Verdict::Skip("no git labels".into()),
        };
        let (chosen, skipped) = select(&candidates, &rule);
        assert_eq!(chosen.unwrap().stage_id.creation_ts_ms(), 300);
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].1, "commit c1 is not an ancestor");

        let none = |_: &StageDescription| Verdict::Skip("no".into());
        assert!(select(&candidates, &none).0.is_none());
    }
}
