//! Stage locks against a real kube-apiserver: mutual exclusion, takeover of a crashed holder,
//! shared leases, werf compatibility of the stored annotation and the RBAC the operator needs.
//!
//! One control plane serves all scenarios (run one after another, each in its own namespace
//! or ConfigMap): starting etcd + kube-apiserver per scenario would cost more than the
//! scenarios themselves on a 2-core machine.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kiln_e2e::{ControlPlane, ControlPlaneOptions};
use kiln_operator::lock::{
    Clock, ConfigMapStore, LeaseRecord, LeaseState, LeaseTimings, LockError, LockMode, Locker,
    LostReason, StageLocks, StoreError, SystemClock, TryAcquire, annotation_key,
};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};

const WAIT: Duration = Duration::from_secs(120);

struct Env {
    control_plane: ControlPlane,
    admin: kube::Client,
}

impl Env {
    async fn start() -> Env {
        let control_plane = ControlPlane::start(ControlPlaneOptions {
            controller_manager: false,
            ..ControlPlaneOptions::default()
        })
        .await
        .expect("control plane starts");
        let admin = control_plane.client().await.unwrap();
        Env {
            control_plane,
            admin,
        }
    }

    async fn namespace(&self, name: &str) {
        self.control_plane
            .create_namespace(&self.admin, name)
            .await
            .unwrap();
    }

    /// A separate client (own connection pool), as another process would have.
    async fn client(&self) -> kube::Client {
        self.control_plane.client().await.unwrap()
    }

    async fn locker(&self, namespace: &str, configmap: &str, clock: Arc<dyn Clock>) -> Locker {
        let store = ConfigMapStore::new(self.client().await, namespace, configmap);
        Locker::new(Arc::new(store), clock, LeaseTimings::default())
    }

    async fn annotations(&self, namespace: &str, configmap: &str) -> Vec<(String, String)> {
        let cm = Api::<ConfigMap>::namespaced(self.admin.clone(), namespace)
            .get(configmap)
            .await
            .unwrap();
        cm.metadata
            .annotations
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.starts_with("lockgate.io/"))
            .collect()
    }

    async fn lease(&self, namespace: &str, configmap: &str, lock: &str) -> Option<LeaseRecord> {
        let key = annotation_key(lock);
        self.annotations(namespace, configmap)
            .await
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| LeaseRecord::parse(&v).unwrap().unwrap())
    }
}

fn unix_now() -> i64 {
    SystemClock.now().as_secs() as i64
}

/// A host whose clock runs ahead (clock skew between the operator and a werf CLI).
#[derive(Debug)]
struct AheadClock(Duration);

impl Clock for AheadClock {
    fn now(&self) -> Duration {
        SystemClock.now() + self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stage_locks_on_a_real_apiserver() {
    kiln_e2e::init_test_logging();
    let env = Env::start().await;
    env.namespace("locks").await;

    compatibility_vector(&env).await;
    werf_written_leases_are_honoured_and_taken_over(&env).await;
    twenty_acquirers_hold_one_at_a_time(&env).await;
    crashed_holder_is_taken_over_after_the_ttl(&env).await;
    renewal_detects_a_takeover(&env).await;
    shared_holders_count_up_and_down_and_exclusive_waits(&env).await;
    operator_rbac_is_enough_and_refusals_are_clear(&env).await;
    missing_namespace_is_reported(&env).await;
}

/// The annotation Kiln writes is werf's, byte for byte: key `lockgate.io/<SHA3-224>` (expected
/// value computed independently with Python's hashlib), value in lockgate's field order.
async fn compatibility_vector(env: &Env) {
    let stages = StageLocks::connect(env.client().await, "locks", "myproj")
        .await
        .unwrap();
    let digest = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";
    let before = unix_now();
    let guard = match stages.try_acquire(digest).await.unwrap() {
        TryAcquire::Held(guard) => guard,
        other => panic!("free lock must be acquired: {other:?}"),
    };
    let after = unix_now();
    let annotations = env.annotations("locks", "werf-myproj").await;
    assert_eq!(annotations.len(), 1, "{annotations:?}");
    let (key, value) = &annotations[0];
    assert_eq!(
        key,
        "lockgate.io/b9ec7098e7775d13438172a23ba9c57eedc503162bae7d72f70f159e"
    );
    let expire_at = LeaseRecord::parse(value).unwrap().unwrap().expire_at;
    assert!((before + 10..=after + 10).contains(&expire_at), "{value}");
    assert_eq!(
        value,
        &format!(
            r#"{{"uuid":"{}","lockName":"myproj/stage/e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe","ExpireAtTimestamp":{expire_at},"SharedHoldersCount":1,"IsShared":false}}"#,
            guard.uuid()
        )
    );
    guard.release().await.unwrap();
    assert!(env.annotations("locks", "werf-myproj").await.is_empty());
    eprintln!("compatibility vector: ok ({key})");
}

/// A lease written the way werf writes it (Go's JSON, lockgate HEAD's QueueMembers included)
/// blocks Kiln while live, and is taken over once expired.
async fn werf_written_leases_are_honoured_and_taken_over(env: &Env) {
    let stages = StageLocks::connect(env.client().await, "locks", "werfproj")
        .await
        .unwrap();
    let digest = "0f".repeat(28);
    let lock = stages.lock_name(&digest);
    let write = |expire_at: i64| {
        let admin = env.admin.clone();
        let lock = lock.clone();
        async move {
            let api = Api::<ConfigMap>::namespaced(admin, "locks");
            let mut cm = api.get("werf-werfproj").await.unwrap();
            cm.metadata.annotations.get_or_insert_default().insert(
                annotation_key(&lock),
                format!(
                    r#"{{"uuid":"6f1d2c3b-0000-4000-8000-00000000werf","lockName":"{lock}","ExpireAtTimestamp":{expire_at},"SharedHoldersCount":1,"IsShared":false,"QueueMembers":{{}}}}"#
                ),
            );
            api.replace("werf-werfproj", &PostParams::default(), &cm)
                .await
                .unwrap();
        }
    };
    write(unix_now() + 10).await;
    match stages.try_acquire(&digest).await.unwrap() {
        TryAcquire::MustWait {
            retry_after,
            holder,
        } => {
            assert_eq!(retry_after, Duration::from_secs(2));
            assert_eq!(holder.unwrap().uuid, "6f1d2c3b-0000-4000-8000-00000000werf");
        }
        TryAcquire::Held(g) => panic!("a live werf lease must block Kiln, got {}", g.uuid()),
    }
    write(unix_now() - 1).await;
    let guard = match stages.try_acquire(&digest).await.unwrap() {
        TryAcquire::Held(guard) => guard,
        other => panic!("an expired werf lease must be taken over: {other:?}"),
    };
    let stored = env.lease("locks", "werf-werfproj", &lock).await.unwrap();
    assert_eq!(stored.uuid, guard.uuid());
    assert!(stored.unknown.is_empty(), "takeover writes a fresh record");
    guard.release().await.unwrap();
    eprintln!("werf-written leases: ok");
}

/// 20 acquirers (separate clients) of one lock: never two holders at once, all get it.
async fn twenty_acquirers_hold_one_at_a_time(env: &Env) {
    const N: usize = 20;
    let lock = "race/stage/".to_owned() + &"ab".repeat(28);
    let holders = Arc::new(AtomicUsize::new(0));
    let max_holders = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..N {
        let locker = env
            .locker("locks", "werf-race", Arc::new(SystemClock))
            .await;
        let (lock, holders, max_holders) = (lock.clone(), holders.clone(), max_holders.clone());
        tasks.push(tokio::spawn(async move {
            let guard = locker
                .acquire(&lock, LockMode::Exclusive, WAIT)
                .await
                .unwrap();
            let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
            max_holders.fetch_max(now, Ordering::SeqCst);
            // The store agrees that this lease, and no other, holds the lock.
            let record = guard.verify().await.unwrap();
            assert_eq!(record.uuid, guard.uuid());
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(guard.is_held());
            holders.fetch_sub(1, Ordering::SeqCst);
            let uuid = guard.uuid().to_owned();
            guard.release().await.unwrap();
            uuid
        }));
    }
    let mut uuids = BTreeSet::new();
    for task in tasks {
        uuids.insert(task.await.unwrap());
    }
    assert_eq!(uuids.len(), N, "every acquirer got its own lease");
    assert_eq!(
        max_holders.load(Ordering::SeqCst),
        1,
        "never two holders at once"
    );
    assert!(env.annotations("locks", "werf-race").await.is_empty());
    eprintln!(
        "20 acquirers of one lock: all acquired one at a time in {:?}",
        started.elapsed()
    );
}

/// A holder that stops renewing (its renew task aborted: a crash) keeps the lock for the TTL,
/// is then taken over, and learns that it lost the lease.
async fn crashed_holder_is_taken_over_after_the_ttl(env: &Env) {
    let lock = "crash/stage/".to_owned() + &"cd".repeat(28);
    let old = env
        .locker("locks", "werf-crash", Arc::new(SystemClock))
        .await
        .acquire(&lock, LockMode::Exclusive, WAIT)
        .await
        .unwrap();
    let LeaseState::Held { expire_at } = old.state() else {
        panic!("fresh lease must be held");
    };
    old.abort_renewal();
    let lost = tokio::spawn(old.lost_signal().wait());

    let successor = env
        .locker("locks", "werf-crash", Arc::new(SystemClock))
        .await;
    let waiting_since = Instant::now();
    let new = successor
        .acquire(&lock, LockMode::Exclusive, WAIT)
        .await
        .unwrap();
    let waited = waiting_since.elapsed();
    let taken_at = SystemClock.now();
    assert!(
        taken_at > Duration::from_secs(expire_at as u64),
        "taken over at {taken_at:?}, before the old lease expired at {expire_at}"
    );
    assert_ne!(new.uuid(), old.uuid());
    assert_eq!(lost.await.unwrap(), LostReason::Expired);
    assert!(!old.is_held());
    assert!(matches!(
        old.verify().await,
        Err(LockError::LeaseLost { .. })
    ));
    // The old holder's late release must not remove the new lease.
    assert!(matches!(
        old.release().await,
        Err(LockError::LeaseLost { .. })
    ));
    assert_eq!(
        env.lease("locks", "werf-crash", &lock).await.unwrap().uuid,
        new.uuid()
    );
    new.release().await.unwrap();
    eprintln!("crashed holder: taken over after {waited:?} of waiting; old holder saw Expired");
}

/// A holder whose lease is taken over (here by a host whose clock runs 15 s ahead and so
/// judges the lease expired) learns it from its next renewal, and stops renewing.
async fn renewal_detects_a_takeover(env: &Env) {
    let lock = "skew/stage/".to_owned() + &"ef".repeat(28);
    let victim = env
        .locker("locks", "werf-skew", Arc::new(SystemClock))
        .await
        .acquire(&lock, LockMode::Exclusive, WAIT)
        .await
        .unwrap();
    let ahead = env
        .locker(
            "locks",
            "werf-skew",
            Arc::new(AheadClock(Duration::from_secs(15))),
        )
        .await;
    let thief = ahead
        .acquire(&lock, LockMode::Exclusive, WAIT)
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), victim.lost())
        .await
        .expect("the next renewal (within 3 s) notices the takeover");
    assert_eq!(
        reason,
        LostReason::TakenOver {
            by_uuid: thief.uuid().to_owned()
        }
    );
    // The thief's lease is intact and keeps being renewed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        env.lease("locks", "werf-skew", &lock).await.unwrap().uuid,
        thief.uuid()
    );
    assert!(thief.is_held());
    drop(victim);
    thief.release().await.unwrap();
    eprintln!("renewal detects takeover: ok");
}

/// Shared holders share one uuid and count up and down; an exclusive acquirer waits until the
/// last shared holder has released.
async fn shared_holders_count_up_and_down_and_exclusive_waits(env: &Env) {
    let lock = "shared/stage/".to_owned() + &"01".repeat(28);
    let count = || async {
        env.lease("locks", "werf-shared", &lock)
            .await
            .map(|r| (r.shared_holders_count, r.is_shared))
    };
    let mut shared = Vec::new();
    for n in 1..=3 {
        let locker = env
            .locker("locks", "werf-shared", Arc::new(SystemClock))
            .await;
        shared.push(locker.acquire(&lock, LockMode::Shared, WAIT).await.unwrap());
        assert_eq!(count().await, Some((n, true)));
    }
    assert!(shared.iter().all(|g| g.uuid() == shared[0].uuid()));

    let exclusive_locker = env
        .locker("locks", "werf-shared", Arc::new(SystemClock))
        .await;
    match exclusive_locker
        .try_acquire(&lock, LockMode::Exclusive)
        .await
        .unwrap()
    {
        TryAcquire::MustWait { holder, .. } => {
            assert_eq!(holder.unwrap().shared_holders_count, 3)
        }
        TryAcquire::Held(_) => panic!("exclusive must wait for shared holders"),
    }
    let exclusive = {
        let lock = lock.clone();
        tokio::spawn(async move {
            let guard = exclusive_locker
                .acquire(&lock, LockMode::Exclusive, WAIT)
                .await
                .unwrap();
            (Instant::now(), guard)
        })
    };
    let third = shared.pop().unwrap();
    let second = shared.pop().unwrap();
    let first = shared.pop().unwrap();
    first.release().await.unwrap();
    assert_eq!(count().await, Some((2, true)));
    // Longer than a renewal period and a poll period: the remaining holders keep the lease.
    tokio::time::sleep(Duration::from_secs(4)).await;
    second.release().await.unwrap();
    assert_eq!(count().await, Some((1, true)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !exclusive.is_finished(),
        "exclusive acquired while a shared holder held"
    );
    let last_released = Instant::now();
    third.release().await.unwrap();
    let (acquired_at, guard) = exclusive.await.unwrap();
    assert!(acquired_at >= last_released);
    assert_eq!(count().await, Some((1, false)));
    guard.release().await.unwrap();
    assert_eq!(count().await, None);
    eprintln!("shared holders: ok");
}

/// The operator's ServiceAccount with only get, create and update on configmaps in the lock
/// namespace can create the ConfigMap, acquire, renew and release; elsewhere it gets a clear
/// RBAC error.
async fn operator_rbac_is_enough_and_refusals_are_clear(env: &Env) {
    env.namespace("rbac-locks").await;
    let sa = Api::<ServiceAccount>::namespaced(env.admin.clone(), "rbac-locks");
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        namespace: Some("rbac-locks".into()),
        ..ObjectMeta::default()
    };
    sa.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: meta("kiln"),
            ..ServiceAccount::default()
        },
    )
    .await
    .unwrap();
    Api::<Role>::namespaced(env.admin.clone(), "rbac-locks")
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("kiln-locks"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["configmaps".into()]),
                    verbs: vec!["get".into(), "create".into(), "update".into()],
                    ..PolicyRule::default()
                }]),
            },
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(env.admin.clone(), "rbac-locks")
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta("kiln-locks"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "kiln-locks".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "kiln".into(),
                    namespace: Some("rbac-locks".into()),
                    ..Subject::default()
                }]),
            },
        )
        .await
        .unwrap();
    let token = sa
        .create_token_request(
            "kiln",
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            },
        )
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let kubeconfig = Kubeconfig::read_from(env.control_plane.kubeconfig_path()).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    config.auth_info =
        serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token })).unwrap();
    let operator = kube::Client::try_from(config).unwrap();

    let stages = StageLocks::connect(operator.clone(), "rbac-locks", "rbacproj")
        .await
        .expect("get + create suffice to set up the ConfigMap");
    let digest = "23".repeat(28);
    let guard = stages.acquire(&digest, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await; // one renewal (update)
    assert!(guard.is_held());
    assert_eq!(
        env.lease("rbac-locks", "werf-rbacproj", &stages.lock_name(&digest))
            .await
            .unwrap()
            .uuid,
        guard.uuid()
    );
    guard.release().await.unwrap();

    let err = StageLocks::connect(operator, "locks", "rbacproj")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            LockError::Store(StoreError::Forbidden { verb: "get", .. })
        ),
        "{text}"
    );
    assert!(text.contains("locks/werf-rbacproj") && text.contains("get, create and update"));
    eprintln!("operator RBAC: ok; refusal reads: {text}");
}

async fn missing_namespace_is_reported(env: &Env) {
    let err = StageLocks::connect(env.client().await, "no-such-namespace", "p")
        .await
        .unwrap_err();
    assert!(
        matches!(err, LockError::Store(StoreError::NamespaceMissing { .. })),
        "{err}"
    );
    eprintln!("missing namespace: {err}");
}
