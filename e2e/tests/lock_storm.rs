//! Conflict storm on a real kube-apiserver: 50 acquirers of 50 different stage locks, all in
//! one ConfigMap, start at once (each with its own client, as separate processes would). Every
//! write is a full-object UPDATE with resourceVersion, so writers keep colliding; no lease may
//! be lost — neither while acquiring nor while all 50 are renewed together — and every lease
//! is released at the end.
//!
//! Prints the acquire latency median and worst case (figures, not assertions).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

use k8s_openapi::api::core::v1::ConfigMap;
use kiln_e2e::{ControlPlane, ControlPlaneOptions};
use kiln_operator::lock::{
    ConfigMapStore, LeaseRecord, LeaseStore, LeaseTimings, LockMode, Locker, StoreError,
    SystemClock, annotation_key,
};
use kube::api::Api;
use tokio::sync::Barrier;

const LOCKS: usize = 50;

/// The real ConfigMap store, counting the optimistic-locking conflicts it reports, to show
/// the storm really happened.
#[derive(Debug)]
struct CountingStore {
    inner: ConfigMapStore,
    conflicts: Arc<AtomicU64>,
    saves: Arc<AtomicU64>,
}

impl LeaseStore for CountingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn load(&self) -> BoxFuture<'_, Result<ConfigMap, StoreError>> {
        self.inner.load()
    }

    fn save(&self, object: ConfigMap) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let result = self.inner.save(object).await;
            match &result {
                Ok(()) => self.saves.fetch_add(1, Ordering::Relaxed),
                Err(e) if e.is_retryable_conflict() => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed)
                }
                Err(_) => 0,
            };
            result
        }
        .boxed()
    }
}

async fn lockgate_annotations(client: &kube::Client) -> Vec<(String, LeaseRecord)> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "storm")
        .get("werf-storm")
        .await
        .unwrap();
    cm.metadata
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with("lockgate.io/"))
        .map(|(k, v)| (k, LeaseRecord::parse(&v).unwrap().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflict_storm_of_50_locks_in_one_configmap_loses_no_lease() {
    kiln_e2e::init_test_logging();
    let control_plane = ControlPlane::start(ControlPlaneOptions {
        controller_manager: false,
        ..ControlPlaneOptions::default()
    })
    .await
    .expect("control plane starts");
    let admin = control_plane.client().await.unwrap();
    control_plane
        .create_namespace(&admin, "storm")
        .await
        .unwrap();

    let all_acquired = Arc::new(Barrier::new(LOCKS + 1));
    let all_checked = Arc::new(Barrier::new(LOCKS + 1));
    let start = Arc::new(Barrier::new(LOCKS));
    let conflicts = Arc::new(AtomicU64::new(0));
    let saves = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..LOCKS {
        let client = control_plane.client().await.unwrap();
        let locker = Locker::new(
            Arc::new(CountingStore {
                inner: ConfigMapStore::new(client, "storm", "werf-storm"),
                conflicts: conflicts.clone(),
                saves: saves.clone(),
            }),
            Arc::new(SystemClock),
            LeaseTimings::default(),
        );
        let lock = format!("storm/stage/{i:056x}");
        let (start, all_acquired, all_checked) =
            (start.clone(), all_acquired.clone(), all_checked.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let began = Instant::now();
            let guard = locker
                .acquire(&lock, LockMode::Exclusive, Duration::from_secs(300))
                .await
                .unwrap();
            let latency = began.elapsed();
            let lost = guard.lost_signal();
            all_acquired.wait().await;
            all_checked.wait().await;
            // All 50 renew through the same ConfigMap for a while: conflicts on every period.
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert_eq!(
                lost.lost_reason(),
                None,
                "lease of {lock} lost during renewals"
            );
            let record = guard.verify().await.unwrap();
            assert_eq!(record.lock_name, lock);
            let uuid = guard.uuid().to_owned();
            guard.release().await.unwrap();
            (lock, uuid, latency)
        }));
    }
    all_acquired.wait().await;
    let held = lockgate_annotations(&admin).await;
    assert_eq!(
        held.len(),
        LOCKS,
        "one annotation per lock while all are held"
    );
    for (key, record) in &held {
        assert_eq!(*key, annotation_key(&record.lock_name));
        assert_eq!((record.shared_holders_count, record.is_shared), (1, false));
    }
    all_checked.wait().await;

    let mut latencies = Vec::new();
    let mut uuids = Vec::new();
    for task in tasks {
        let (lock, uuid, latency) = task.await.unwrap();
        let stored = held.iter().find(|(_, r)| r.lock_name == lock).unwrap();
        assert_eq!(
            stored.1.uuid, uuid,
            "lease of {lock} replaced during the storm"
        );
        uuids.push(uuid);
        latencies.push(latency);
    }
    assert!(
        lockgate_annotations(&admin).await.is_empty(),
        "every lease released"
    );

    let conflicts = conflicts.load(Ordering::Relaxed);
    let saves = saves.load(Ordering::Relaxed);
    assert!(
        conflicts > 0,
        "50 simultaneous writers to one ConfigMap must collide"
    );

    latencies.sort();
    let median = latencies[LOCKS / 2];
    let worst = latencies[LOCKS - 1];
    let best = latencies[0];
    eprintln!(
        "acquire latency, {LOCKS} concurrent locks in one ConfigMap: median {median:?}, worst {worst:?}, best {best:?}; {saves} writes landed, {conflicts} conflicts retried"
    );
}
