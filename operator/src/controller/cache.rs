//! What a building reconcile computes that does not change between polls of one build
//! generation: the plan of the pinned commit (with the source mirror it was read from), the
//! environments of base images and the registry credentials decoded from
//! `spec.registrySecretRef`. Keyed by the ImageBuild's uid and valid only for the
//! same generation and commit; forgotten when the build ends. Only an optimisation: after a
//! restart everything is recomputed from the status and the outside world.
//!
//! Reading base-image environments once per build generation also matches werf, which
//! reads a base image's config once per build process, and reading the registry Secret once
//! matches werf reading its docker config once per process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::plan::project::ProjectPlan;
use crate::storage::DockerConfig;

/// (base reference, platform) → the `Env` of its config.
pub use crate::facts::BaseEnvs;

/// What is remembered of one build.
#[derive(Debug, Clone)]
struct Entry {
    generation: Option<i64>,
    commit: String,
    mirror: PathBuf,
    plan: Option<ProjectPlan>,
    envs: BaseEnvs,
    credentials: Option<DockerConfig>,
}

/// The per-build cache, shared by all reconciles.
#[derive(Debug, Default)]
pub struct BuildCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl BuildCache {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut entries)
    }

    /// The plan (before build-time facts) and mirror of `uid` at `generation` and `commit`,
    /// when computed by an earlier pass and the mirror is still there.
    pub fn plan(
        &self,
        uid: &str,
        generation: Option<i64>,
        commit: &str,
    ) -> Option<(PathBuf, ProjectPlan)> {
        self.with(|entries| {
            let e = entries.get(uid)?;
            (e.generation == generation && e.commit == commit && e.mirror.exists())
                .then(|| e.plan.clone().map(|p| (e.mirror.clone(), p)))
                .flatten()
        })
    }

    /// Remembers the plan of `uid` at `generation` and `commit`, read from `mirror`; an
    /// entry of another generation or commit is replaced.
    pub fn store_plan(
        &self,
        uid: &str,
        generation: Option<i64>,
        commit: &str,
        mirror: PathBuf,
        plan: &ProjectPlan,
    ) {
        self.with(|entries| {
            let entry = entries.entry(uid.to_owned()).or_insert_with(|| Entry {
                generation,
                commit: commit.to_owned(),
                mirror: mirror.clone(),
                plan: None,
                envs: BaseEnvs::new(),
                credentials: None,
            });
            if entry.generation != generation || entry.commit != commit {
                entry.envs.clear();
                entry.credentials = None;
            }
            entry.generation = generation;
            entry.commit = commit.to_owned();
            entry.mirror = mirror;
            entry.plan = Some(plan.clone());
        });
    }

    /// The base-image environments read so far for `uid` at `generation` and `commit`.
    pub fn envs(&self, uid: &str, generation: Option<i64>, commit: &str) -> BaseEnvs {
        self.with(|entries| {
            entries
                .get(uid)
                .filter(|e| e.generation == generation && e.commit == commit)
                .map(|e| e.envs.clone())
                .unwrap_or_default()
        })
    }

    /// Adds base-image environments for `uid`, when its entry is of `generation` and
    /// `commit`.
    pub fn store_envs(&self, uid: &str, generation: Option<i64>, commit: &str, envs: BaseEnvs) {
        self.with(|entries| {
            if let Some(e) = entries
                .get_mut(uid)
                .filter(|e| e.generation == generation && e.commit == commit)
            {
                e.envs.extend(envs);
            }
        });
    }

    /// The registry credentials decoded for `uid` at `generation` and `commit` by an earlier
    /// pass.
    pub fn credentials(
        &self,
        uid: &str,
        generation: Option<i64>,
        commit: &str,
    ) -> Option<DockerConfig> {
        self.with(|entries| {
            entries
                .get(uid)
                .filter(|e| e.generation == generation && e.commit == commit)
                .and_then(|e| e.credentials.clone())
        })
    }

    /// Remembers the registry credentials of `uid`, when its entry is of `generation` and
    /// `commit` (the plan is stored first).
    pub fn store_credentials(
        &self,
        uid: &str,
        generation: Option<i64>,
        commit: &str,
        credentials: DockerConfig,
    ) {
        self.with(|entries| {
            if let Some(e) = entries
                .get_mut(uid)
                .filter(|e| e.generation == generation && e.commit == commit)
            {
                e.credentials = Some(credentials);
            }
        });
    }

    /// Forgets `uid` (its build ended or was deleted).
    pub fn forget(&self, uid: &str) {
        self.with(|entries| entries.remove(uid));
    }

    /// How many builds are remembered.
    pub fn len(&self) -> usize {
        self.with(|entries| entries.len())
    }

    /// Whether no build is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ProjectPlan {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("werf.yaml"), "project: p\nconfigVersion: 1\n").unwrap();
        let run = |args: &[&str]| kiln_testkit::git_server::git_ok(&dir, args);
        run(&["init", "-q", "-b", "main"]);
        run(&["add", "."]);
        run(&["commit", "-q", "-m", "c"]);
        let commit = run(&["rev-parse", "HEAD"]);
        let tree = crate::source::GitTree::open(&dir, Some(&commit)).unwrap();
        crate::plan::project::plan_project(&tree, &Default::default()).unwrap()
    }

    #[test]
    fn a_plan_is_reused_only_for_the_same_generation_and_commit() {
        let cache = BuildCache::default();
        let mirror = std::env::temp_dir();
        let p = plan();
        assert!(cache.plan("u", Some(1), "c1").is_none());
        cache.store_plan("u", Some(1), "c1", mirror.clone(), &p);
        assert!(cache.plan("u", Some(1), "c1").is_some());
        assert!(cache.plan("u", Some(2), "c1").is_none());
        assert!(cache.plan("u", Some(1), "c2").is_none());
        assert!(cache.plan("other", Some(1), "c1").is_none());

        let mut envs = BaseEnvs::new();
        envs.insert(
            ("alpine".into(), "linux/amd64".into()),
            std::collections::BTreeMap::new(),
        );
        cache.store_envs("u", Some(1), "c1", envs);
        assert_eq!(cache.envs("u", Some(1), "c1").len(), 1);
        assert!(cache.envs("u", Some(2), "c1").is_empty());
        assert_eq!(cache.credentials("u", Some(1), "c1"), None);
        cache.store_credentials("u", Some(1), "c1", DockerConfig::anonymous());
        assert_eq!(
            cache.credentials("u", Some(1), "c1"),
            Some(DockerConfig::anonymous())
        );
        assert_eq!(cache.credentials("u", Some(1), "c2"), None);
        // A new generation starts over.
        cache.store_plan("u", Some(2), "c1", mirror, &p);
        assert!(cache.envs("u", Some(2), "c1").is_empty());
        assert_eq!(cache.credentials("u", Some(2), "c1"), None);
        cache.forget("u");
        assert!(cache.is_empty());
    }
}
