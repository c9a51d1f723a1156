//! Logic tests of the locker and guards over the in-memory store, in paused tokio time with a
//! clock that follows it (so TTLs pass instantly and deterministically). The same behaviours
//! are exercised against a real kube-apiserver in the e2e crate's `lock_*` tests.

use std::sync::Arc;
use std::time::Duration;

use super::store::{annotation, set_annotation};
use super::*;

const START: Duration = Duration::from_secs(1_767_225_600);
const NAME: &str = "myproj/stage/e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";
const KEY: &str = "lockgate.io/b9ec7098e7775d13438172a23ba9c57eedc503162bae7d72f70f159e";

fn setup() -> (Arc<MemoryStore>, Locker) {
    let store = Arc::new(MemoryStore::new());
    let locker = Locker::new(
        store.clone(),
        Arc::new(TokioClock::starting_at(START)),
        LeaseTimings::default(),
    );
    (store, locker)
}

fn stored(store: &MemoryStore) -> Option<LeaseRecord> {
    annotation(&store.snapshot(), KEY).map(|v| LeaseRecord::parse(v).unwrap().unwrap())
}

async fn held(locker: &Locker, mode: LockMode) -> LeaseGuard {
    match locker.try_acquire(NAME, mode).await.unwrap() {
        TryAcquire::Held(guard) => guard,
        TryAcquire::MustWait { holder, .. } => panic!("expected to hold, blocked by {holder:?}"),
    }
}

async fn blocked_by(locker: &Locker, mode: LockMode) -> (Duration, Option<LeaseRecord>) {
    match locker.try_acquire(NAME, mode).await.unwrap() {
        TryAcquire::Held(guard) => panic!("expected to wait, got lease {}", guard.uuid()),
        TryAcquire::MustWait {
            retry_after,
            holder,
        } => (retry_after, holder),
    }
}

async fn sleep(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn acquire_writes_a_lockgate_record_under_the_sha3_key() {
    let (store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    let value = annotation(&store.snapshot(), KEY)
        .expect("annotation written")
        .to_owned();
    let expected = format!(
        r#"{{"uuid":"{}","lockName":"{NAME}","ExpireAtTimestamp":1767225610,"SharedHoldersCount":1,"IsShared":false}}"#,
        guard.uuid()
    );
    assert_eq!(value, expected);
    assert_eq!(guard.uuid().len(), 36, "uuid v4 text form");
    assert!(guard.is_held());
}

#[tokio::test(start_paused = true)]
async fn a_held_lock_makes_others_wait_with_the_poll_period() {
    let (_store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    let (retry_after, holder) = blocked_by(&locker, LockMode::Exclusive).await;
    assert_eq!(retry_after, Duration::from_secs(2));
    assert_eq!(holder.unwrap().uuid, guard.uuid());
    let (_, holder) = blocked_by(&locker, LockMode::Shared).await;
    assert_eq!(holder.unwrap().uuid, guard.uuid());
}

#[tokio::test(start_paused = true)]
async fn renewal_keeps_the_lease_alive_past_many_ttls() {
    let (store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    sleep(60).await;
    assert!(guard.is_held());
    let record = stored(&store).unwrap();
    assert_eq!(record.uuid, guard.uuid());
    // Renewed every 3 s: the expiry is at most 10 s and at least 7 s ahead.
    let now = START.as_secs() as i64 + 60;
    assert!(
        (now + 7..=now + 10).contains(&record.expire_at),
        "{record:?}"
    );
    assert!(
        matches!(guard.state(), LeaseState::Held { expire_at } if expire_at == record.expire_at)
    );
    blocked_by(&locker, LockMode::Exclusive).await;
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_stops_renewing_is_taken_over_and_learns_it() {
    let (_store, locker) = setup();
    let old = held(&locker, LockMode::Exclusive).await;
    old.abort_renewal();
    let lost = tokio::spawn(old.lost_signal().wait());
    sleep(10).await;
    // At the expiry second the lease is not yet expired (Go's time.After semantics).
    blocked_by(&locker, LockMode::Exclusive).await;
    sleep(1).await;
    assert!(!old.is_held());
    assert_eq!(lost.await.unwrap(), LostReason::Expired);
    let new = held(&locker, LockMode::Exclusive).await;
    assert_ne!(new.uuid(), old.uuid());
    match old.verify().await.unwrap_err() {
        LockError::LeaseLost { reason, .. } => assert_eq!(reason, LostReason::Expired),
        other => panic!("{other}"),
    }
    // Releasing the lost lease does not touch the new holder's lease.
    assert!(matches!(
        old.release().await,
        Err(LockError::LeaseLost { .. })
    ));
    assert!(new.verify().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn renewal_reports_a_takeover_as_lost_lease() {
    let (store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    // Someone else overwrites the record (e.g. a werf process that judged it expired).
    let mut object = store.snapshot();
    let mut foreign = stored(&store).unwrap();
    foreign.uuid = "11111111-2222-4333-8444-555555555555".into();
    set_annotation(&mut object, KEY, Some(foreign.to_json()));
    store.save(object).await.unwrap();
    let reason = guard.lost().await;
    assert_eq!(
        reason,
        LostReason::TakenOver {
            by_uuid: "11111111-2222-4333-8444-555555555555".into()
        }
    );
    assert!(matches!(
        guard.state(),
        LeaseState::Lost(LostReason::TakenOver { .. })
    ));
    // The other holder's record is left alone.
    assert_eq!(
        stored(&store).unwrap().uuid,
        "11111111-2222-4333-8444-555555555555"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deleted_annotation_is_reported_as_missing() {
    let (store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    let mut object = store.snapshot();
    set_annotation(&mut object, KEY, None);
    store.save(object).await.unwrap();
    assert_eq!(guard.lost().await, LostReason::Missing);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_makes_the_lease_expire_for_its_holder() {
    let (store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    store.set_unavailable(true);
    let started = tokio::time::Instant::now();
    assert_eq!(guard.lost().await, LostReason::Expired);
    // Expired once the 10th second after acquiring has begun, not before.
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    sleep(3).await;
    assert_eq!(guard.state(), LeaseState::Lost(LostReason::Expired));
}

#[tokio::test(start_paused = true)]
async fn a_short_outage_does_not_lose_the_lease() {
    let (store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    store.set_unavailable(true);
    sleep(4).await; // the renewal at 3 s fails
    store.set_unavailable(false);
    sleep(30).await;
    assert!(guard.is_held());
    assert_eq!(stored(&store).unwrap().uuid, guard.uuid());
}

#[tokio::test(start_paused = true)]
async fn shared_holders_count_up_and_down_and_exclusive_waits_for_them() {
    let (store, locker) = setup();
    let first = held(&locker, LockMode::Shared).await;
    let second = held(&locker, LockMode::Shared).await;
    assert_eq!(
        first.uuid(),
        second.uuid(),
        "shared holders share one lease uuid"
    );
    let record = stored(&store).unwrap();
    assert_eq!((record.shared_holders_count, record.is_shared), (2, true));
    let (_, holder) = blocked_by(&locker, LockMode::Exclusive).await;
    assert_eq!(holder.unwrap().shared_holders_count, 2);

    first.release().await.unwrap();
    assert_eq!(stored(&store).unwrap().shared_holders_count, 1);
    sleep(20).await; // the remaining shared holder keeps renewing the common lease
    blocked_by(&locker, LockMode::Exclusive).await;
    assert!(second.is_held());

    second.release().await.unwrap();
    assert_eq!(stored(&store), None, "last release deletes the annotation");
    let exclusive = held(&locker, LockMode::Exclusive).await;
    blocked_by(&locker, LockMode::Shared).await;
    exclusive.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn try_acquire_absorbs_a_few_conflicts_then_says_wait() {
    let (store, locker) = setup();
    store.inject_conflicts(3);
    let guard = held(&locker, LockMode::Exclusive).await;
    assert_eq!(store.conflicts(), 3);
    guard.release().await.unwrap();

    store.inject_conflicts(4);
    let (retry_after, holder) = blocked_by(&locker, LockMode::Exclusive).await;
    assert!(holder.is_none(), "contention, not a holder");
    assert!(
        retry_after >= Duration::from_millis(500) && retry_after < Duration::from_millis(1500),
        "{retry_after:?}"
    );
    assert_eq!(stored(&store), None);
}

#[tokio::test(start_paused = true)]
async fn renewal_and_release_retry_through_conflicts() {
    let (store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    store.inject_conflicts(2);
    // The renewal at 3 s re-reads twice after 0.5–1.5 s pauses, so it lands in [4 s, 6 s).
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    assert!(guard.is_held());
    assert_eq!(store.conflicts(), 2);
    let expire_at = stored(&store).unwrap().expire_at - START.as_secs() as i64;
    assert!(
        (14..=15).contains(&expire_at),
        "renewed expiry {expire_at} s after start"
    );
    store.inject_conflicts(2);
    guard.release().await.unwrap();
    assert_eq!(stored(&store), None);
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_by_polling_until_the_holder_releases() {
    let (_store, locker) = setup();
    let holder = held(&locker, LockMode::Exclusive).await;
    let waiter = {
        let locker = locker.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let guard = locker
                .acquire(NAME, LockMode::Exclusive, Duration::from_secs(60))
                .await
                .unwrap();
            (started.elapsed(), guard)
        })
    };
    sleep(5).await;
    holder.release().await.unwrap();
    let (waited, guard) = waiter.await.unwrap();
    // Polls at 0, 2, 4, 6 s: the first poll after the release at 5 s wins.
    assert_eq!(waited.as_secs(), 6, "{waited:?}");
    assert!(guard.is_held());
}

#[tokio::test(start_paused = true)]
async fn acquire_times_out_naming_the_holder() {
    let (_store, locker) = setup();
    let holder = held(&locker, LockMode::Exclusive).await;
    let err = locker
        .acquire(NAME, LockMode::Exclusive, Duration::from_secs(7))
        .await
        .unwrap_err();
    match &err {
        LockError::Timeout {
            lock_name,
            waited,
            holder: Some(uuid),
        } => {
            assert_eq!(lock_name, NAME);
            assert_eq!(uuid, holder.uuid());
            assert!(*waited <= Duration::from_secs(7));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(holder.uuid()), "{err}");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_guard_releases_its_lease() {
    let (store, locker) = setup();
    let guard = held(&locker, LockMode::Exclusive).await;
    let signal = guard.lost_signal();
    drop(guard);
    assert_eq!(signal.clone().wait().await, LostReason::Released);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(stored(&store), None);
    held(&locker, LockMode::Exclusive).await;
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_annotation_is_a_clear_error() {
    let (store, locker) = setup();
    let mut object = store.snapshot();
    set_annotation(&mut object, KEY, Some("{not json".into()));
    store.save(object).await.unwrap();
    let err = locker
        .try_acquire(NAME, LockMode::Exclusive)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LockError::CorruptLease { .. }), "{text}");
    for part in [NAME, KEY, "werf-memory", "{not json"] {
        assert!(text.contains(part), "{part:?} missing in: {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn joining_a_shared_lease_keeps_fields_of_newer_lockgate_writers() {
    let (store, locker) = setup();
    let exp = START.as_secs() + 5;
    let foreign = format!(
        r#"{{"uuid":"u-werf","lockName":"{NAME}","ExpireAtTimestamp":{exp},"SharedHoldersCount":1,"IsShared":true,"QueueMembers":{{"q":{{"AcquirerId":"q","AcquiredAtTimestamp":1,"ExpireAtTimestamp":2}}}}}}"#
    );
    let mut object = store.snapshot();
    set_annotation(&mut object, KEY, Some(foreign));
    set_annotation(&mut object, "unrelated", Some("kept".into()));
    store.save(object).await.unwrap();

    let guard = held(&locker, LockMode::Shared).await;
    assert_eq!(guard.uuid(), "u-werf");
    let value = annotation(&store.snapshot(), KEY).unwrap().to_owned();
    assert_eq!(
        value,
        format!(
            r#"{{"uuid":"u-werf","lockName":"{NAME}","ExpireAtTimestamp":{},"SharedHoldersCount":2,"IsShared":true,"QueueMembers":{{"q":{{"AcquirerId":"q","AcquiredAtTimestamp":1,"ExpireAtTimestamp":2}}}}}}"#,
            START.as_secs() + 10
        )
    );
    assert_eq!(annotation(&store.snapshot(), "unrelated"), Some("kept"));
}

#[tokio::test(start_paused = true)]
async fn stage_locks_name_locks_by_project_and_digest() {
    let (store, locker) = setup();
    let stages = StageLocks::new(locker, "myproj");
    let digest = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";
    assert_eq!(stages.lock_name(digest), NAME);
    let guard = match stages.try_acquire(digest).await.unwrap() {
        TryAcquire::Held(guard) => guard,
        other => panic!("{other:?}"),
    };
    assert_eq!(stored(&store).unwrap().uuid, guard.uuid());
    assert!(matches!(
        stages.try_acquire(digest).await.unwrap(),
        TryAcquire::MustWait { .. }
    ));
    guard.release().await.unwrap();
    let again = stages
        .acquire(digest, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(again.is_held());
}
