//! The election rules with hand-computed values, and the [`Elector`] against a
//! tower-test mock API server that checks each request (method, path, body) in order.
//! The real kube-apiserver path is e2e/tests/leader_election.rs.

use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use serde_json::{Value, json};

use http::Response;
use kiln_testkit::mock_api::{self, Expect, Handle, reply};
use kube::client::Body;

use super::record::{Decision, claim, decide, expiry, released};
use super::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn spec(holder: Option<&str>, renewed: &str, seconds: i32, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(str::to_owned),
        renew_time: Some(MicroTime(at(renewed))),
        acquire_time: Some(MicroTime(at("2026-01-01T09:00:00Z"))),
        lease_duration_seconds: Some(seconds),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

// ---- rules ----

#[test]
fn a_lease_without_a_holder_is_free() {
    assert_eq!(
        decide(None, "a", at("2026-01-01T10:00:00Z")),
        Decision::Acquire { previous: None }
    );
    let released = spec(None, "2026-01-01T10:00:00Z", 15, 2);
    assert_eq!(
        decide(Some(&released), "a", at("2026-01-01T10:00:01Z")),
        Decision::Acquire { previous: None }
    );
    // client-go writes "" on release.
    let empty = spec(Some(""), "2026-01-01T10:00:00Z", 15, 2);
    assert_eq!(
        decide(Some(&empty), "a", at("2026-01-01T10:00:01Z")),
        Decision::Acquire { previous: None }
    );
}

#[test]
fn another_holder_keeps_the_lease_until_renew_time_plus_duration() {
    // Renewed 10:00:00 for 15 s: valid through 10:00:14.999999, free at 10:00:15.
    let held = spec(Some("b"), "2026-01-01T10:00:00Z", 15, 1);
    assert_eq!(expiry(&held), Some(at("2026-01-01T10:00:15Z")));
    assert_eq!(
        decide(Some(&held), "a", at("2026-01-01T10:00:14.999999Z")),
        Decision::Standby {
            holder: "b".into(),
            expires: at("2026-01-01T10:00:15Z")
        }
    );
    assert_eq!(
        decide(Some(&held), "a", at("2026-01-01T10:00:15Z")),
        Decision::Acquire {
            previous: Some("b".into())
        }
    );
}

#[test]
fn a_holder_without_renew_time_or_duration_claims_nothing() {
    let mut no_renew = spec(Some("b"), "2026-01-01T10:00:00Z", 15, 1);
    no_renew.renew_time = None;
    assert_eq!(
        decide(Some(&no_renew), "a", at("2026-01-01T10:00:01Z")),
        Decision::Acquire {
            previous: Some("b".into())
        }
    );
    let mut no_duration = spec(Some("b"), "2026-01-01T10:00:00Z", 15, 1);
    no_duration.lease_duration_seconds = None;
    assert_eq!(expiry(&no_duration), None);
}

#[test]
fn the_holder_renews_even_after_its_claim_expired() {
    let mine = spec(Some("a"), "2026-01-01T10:00:00Z", 15, 1);
    assert_eq!(
        decide(Some(&mine), "a", at("2026-01-01T11:00:00Z")),
        Decision::Renew
    );
}

#[test]
fn claiming_a_new_lease_starts_at_zero_transitions() {
    let now = at("2026-01-01T10:00:00Z");
    let s = claim(None, "a", 15, now);
    assert_eq!(s.holder_identity.as_deref(), Some("a"));
    assert_eq!(s.lease_duration_seconds, Some(15));
    assert_eq!(s.renew_time, Some(MicroTime(now)));
    assert_eq!(s.acquire_time, Some(MicroTime(now)));
    assert_eq!(s.lease_transitions, Some(0));
}

#[test]
fn renewing_keeps_acquire_time_and_transitions() {
    let old = spec(Some("a"), "2026-01-01T10:00:00Z", 15, 3);
    let s = claim(Some(&old), "a", 15, at("2026-01-01T10:00:05Z"));
    assert_eq!(s.renew_time, Some(MicroTime(at("2026-01-01T10:00:05Z"))));
    assert_eq!(s.acquire_time, Some(MicroTime(at("2026-01-01T09:00:00Z"))));
    assert_eq!(s.lease_transitions, Some(3));
}

#[test]
fn taking_over_counts_a_transition() {
    let now = at("2026-01-01T10:00:20Z");
    let expired = spec(Some("b"), "2026-01-01T10:00:00Z", 15, 3);
    let s = claim(Some(&expired), "a", 15, now);
    assert_eq!(s.holder_identity.as_deref(), Some("a"));
    assert_eq!(s.acquire_time, Some(MicroTime(now)));
    assert_eq!(s.lease_transitions, Some(4));
    // After a release the next holder is a transition too (as client-go counts).
    let free = released(&s, at("2026-01-01T10:00:30Z"));
    let t = claim(Some(&free), "b", 15, at("2026-01-01T10:00:31Z"));
    assert_eq!(t.lease_transitions, Some(5));
}

#[test]
fn releasing_clears_the_holder_and_keeps_the_record() {
    let mine = spec(Some("a"), "2026-01-01T10:00:00Z", 15, 3);
    let now = at("2026-01-01T10:00:03Z");
    let r = released(&mine, now);
    assert_eq!(r.holder_identity, None);
    assert_eq!(r.renew_time, Some(MicroTime(now)));
    assert_eq!(r.lease_transitions, Some(3));
    assert_eq!(r.acquire_time, mine.acquire_time);
    // A standby may take it at once, long before 10:00:18.
    assert_eq!(
        decide(Some(&r), "b", at("2026-01-01T10:00:04Z")),
        Decision::Acquire { previous: None }
    );
}

#[test]
fn config_timing_is_checked() {
    let c = LeaseConfig::new("ns", "kiln-operator", "a");
    assert_eq!(c.renew_deadline(), Duration::from_secs(10));
    assert_eq!(c.lease_duration_seconds(), 15);
    assert_eq!(c.validate(), Ok(()));
    let slow = LeaseConfig {
        renew_interval: Duration::from_secs(10),
        ..c.clone()
    };
    assert_eq!(
        slow.validate(),
        Err(ConfigError::RenewTooSlow {
            renew: Duration::from_secs(10),
            lease: Duration::from_secs(15)
        })
    );
    let short = LeaseConfig {
        lease_duration: Duration::from_millis(500),
        ..c
    };
    assert_eq!(
        short.validate(),
        Err(ConfigError::LeaseTooShort(Duration::from_millis(500)))
    );
}

#[test]
fn identities_are_the_base_and_a_random_suffix() {
    let a = identity(Some("kiln-operator-7d9f-x2"));
    let b = identity(Some("kiln-operator-7d9f-x2"));
    assert!(a.starts_with("kiln-operator-7d9f-x2_"), "{a}");
    assert_eq!(a.len(), "kiln-operator-7d9f-x2_".len() + 8);
    assert_ne!(a, b);
    assert!(identity(None).starts_with("kiln-operator_"));
    assert!(identity(Some("")).starts_with("kiln-operator_"));
}

// ---- the elector against a mock API server ----

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ci/leases/kiln-operator";
const COLLECTION: &str = "/apis/coordination.k8s.io/v1/namespaces/ci/leases";

fn lease(rv: &str, spec: &LeaseSpec) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kiln-operator", "namespace": "ci", "resourceVersion": rv},
        "spec": spec})
}

fn failure(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{reason} (test)"), "reason": reason, "code": code})
}

fn elector(config: LeaseConfig) -> (Elector, Handle) {
    let (client, handle) = mock_api::client("ci");
    (Elector::new(client, config), handle)
}

fn config() -> LeaseConfig {
    LeaseConfig::new("ci", "kiln-operator", "me")
}

/// Serves `script` in order; returns the request bodies (JSON, `Null` when empty). No
/// timeout: these tests run under paused time.
async fn serve(handle: Handle, script: Vec<Expect>) -> Vec<Value> {
    mock_api::bodies(mock_api::serve(handle, script, None).await)
}

fn fresh(holder: &str) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        renew_time: Some(MicroTime(Timestamp::now())),
        lease_duration_seconds: Some(15),
        lease_transitions: Some(2),
        ..LeaseSpec::default()
    }
}

fn stale(holder: &str) -> LeaseSpec {
    LeaseSpec {
        renew_time: Some(MicroTime(
            Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(16),
        )),
        ..fresh(holder)
    }
}

#[tokio::test]
async fn an_absent_lease_is_created_held() {
    let (e, handle) = elector(config());
    let server = tokio::spawn(serve(
        handle,
        vec![
            reply("GET", PATH, 404, failure(404, "NotFound")),
            reply("POST", COLLECTION, 201, lease("1", &fresh("me"))),
        ],
    ));
    let seen = e.try_acquire_or_renew().await.unwrap();
    assert_eq!(
        seen,
        Observation::Held {
            took_over_from: None,
            transitions: 0
        }
    );
    let bodies = server.await.unwrap();
    let spec = &bodies[1]["spec"];
    assert_eq!(spec["holderIdentity"], "me");
    assert_eq!(spec["leaseDurationSeconds"], 15);
    assert_eq!(spec["leaseTransitions"], 0);
    assert_eq!(bodies[1]["metadata"]["name"], "kiln-operator");
}

#[tokio::test]
async fn losing_the_create_race_is_standby() {
    let (e, handle) = elector(config());
    let server = tokio::spawn(serve(
        handle,
        vec![
            reply("GET", PATH, 404, failure(404, "NotFound")),
            reply("POST", COLLECTION, 409, failure(409, "AlreadyExists")),
        ],
    ));
    assert_eq!(
        e.try_acquire_or_renew().await.unwrap(),
        Observation::Standby { holder: None }
    );
    server.await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_conditionally_on_its_resource_version() {
    let (e, handle) = elector(config());
    let server = tokio::spawn(serve(
        handle,
        vec![
            reply("GET", PATH, 200, lease("7", &stale("other"))),
            reply("PUT", PATH, 200, lease("8", &fresh("me"))),
        ],
    ));
    assert_eq!(
        e.try_acquire_or_renew().await.unwrap(),
        Observation::Held {
            took_over_from: Some("other".into()),
            transitions: 3
        }
    );
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "7");
    assert_eq!(bodies[1]["spec"]["holderIdentity"], "me");
    assert_eq!(bodies[1]["spec"]["leaseTransitions"], 3);
}

#[tokio::test]
async fn a_conflicting_write_is_standby() {
    let (e, handle) = elector(config());
    let server = tokio::spawn(serve(
        handle,
        vec![
            reply("GET", PATH, 200, lease("7", &stale("other"))),
            reply("PUT", PATH, 409, failure(409, "Conflict")),
        ],
    ));
    assert_eq!(
        e.try_acquire_or_renew().await.unwrap(),
        Observation::Standby { holder: None }
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_held_lease_is_not_written() {
    let (e, mut handle) = elector(config());
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(
            (request.method().as_str(), request.uri().path()),
            ("GET", PATH)
        );
        send.send_response(Response::new(Body::from(
            serde_json::to_vec(&lease("7", &fresh("other"))).unwrap(),
        )));
        // Nothing else comes before the client is dropped.
        handle.next_request().await.is_none()
    });
    assert_eq!(
        e.try_acquire_or_renew().await.unwrap(),
        Observation::Standby {
            holder: Some("other".into())
        }
    );
    drop(e);
    assert!(server.await.unwrap(), "a write followed the read");
}

#[tokio::test]
async fn a_refused_read_names_the_lease() {
    let (e, handle) = elector(config());
    let server = tokio::spawn(serve(
        handle,
        vec![reply("GET", PATH, 403, failure(403, "Forbidden"))],
    ));
    let err = e.try_acquire_or_renew().await.unwrap_err();
    assert_eq!(err.operation, "reading");
    assert!(
        err.to_string()
            .starts_with("reading Lease ci/kiln-operator: "),
        "{err}"
    );
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_standby_acquires_once_the_holder_released() {
    let (e, handle) = elector(config());
    let released = LeaseSpec {
        holder_identity: None,
        ..fresh("other")
    };
    let server = tokio::spawn(serve(
        handle,
        vec![
            reply("GET", PATH, 200, lease("7", &fresh("other"))),
            reply("GET", PATH, 200, lease("8", &released)),
            reply("PUT", PATH, 200, lease("9", &fresh("me"))),
        ],
    ));
    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    let connected = AtomicUsize::new(0);
    let started = Instant::now();
    let won = e
        .acquire(&mut rx, || {
            connected.fetch_add(1, Ordering::SeqCst);
        })
        .await;
    // One retry period after the first look.
    assert_eq!(won, Some(started + DEFAULT_RETRY_PERIOD));
    assert_eq!(connected.load(Ordering::SeqCst), 1);
    let bodies = server.await.unwrap();
    assert_eq!(bodies[2]["metadata"]["resourceVersion"], "8");
    assert_eq!(bodies[2]["spec"]["leaseTransitions"], 3);
}

#[tokio::test(start_paused = true)]
async fn a_standby_stops_waiting_on_shutdown() {
    let (e, handle) = elector(config());
    let _server = tokio::spawn(serve(
        handle,
        vec![reply("GET", PATH, 200, lease("7", &fresh("other")))],
    ));
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(true).unwrap();
    });
    assert_eq!(e.acquire(&mut rx, || {}).await, None);
}

#[tokio::test(start_paused = true)]
async fn the_holder_renews_every_renew_interval() {
    let (e, handle) = elector(config());
    let server = tokio::spawn(serve(
        handle,
        vec![
            reply("GET", PATH, 200, lease("7", &fresh("me"))),
            reply("PUT", PATH, 200, lease("8", &fresh("me"))),
            reply("GET", PATH, 200, lease("8", &fresh("me"))),
            reply("PUT", PATH, 200, lease("9", &fresh("me"))),
            reply("GET", PATH, 200, lease("9", &fresh("someone-else"))),
        ],
    ));
    let start = Instant::now();
    let lost = e.keep(start).await;
    assert_eq!(
        lost,
        Lost::TakenOver {
            lease: "ci/kiln-operator".into(),
            holder: "someone-else".into()
        }
    );
    // Renewals at 5 s and 10 s; the third look, at 15 s, finds another holder.
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "7");
    assert_eq!(bodies[3]["metadata"]["resourceVersion"], "8");
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_lose_the_lease_at_the_renew_deadline() {
    let (e, handle) = elector(config());
    // Renew at 5 s, then retries every 2 s (7, 9) all fail; the deadline is 10 s.
    let server = tokio::spawn(serve(
        handle,
        vec![
            reply("GET", PATH, 500, failure(500, "InternalError")),
            reply("GET", PATH, 500, failure(500, "InternalError")),
            reply("GET", PATH, 500, failure(500, "InternalError")),
        ],
    ));
    let start = Instant::now();
    let lost = e.keep(start).await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    match lost {
        Lost::NotRenewed {
            lease,
            deadline,
            last_error,
        } => {
            assert_eq!(lease, "ci/kiln-operator");
            assert_eq!(deadline, Duration::from_secs(10));
            assert!(last_error.contains("InternalError"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hanging_renewal_is_cut_off_at_the_deadline() {
    let (e, mut handle) = elector(config());
    let server = tokio::spawn(async move {
        // Take the request and never answer it.
        let (_request, send) = handle.next_request().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(send);
    });
    let start = Instant::now();
    let lost = e.keep(start).await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert!(matches!(lost, Lost::NotRenewed { .. }), "{lost:?}");
    server.abort();
}

#[tokio::test]
async fn release_clears_the_holder_only_when_it_is_us() {
    let (e, handle) = elector(config());
    let server = tokio::spawn(serve(
        handle,
        vec![
            reply("GET", PATH, 200, lease("7", &fresh("me"))),
            reply("PUT", PATH, 200, lease("8", &fresh("me"))),
            reply("GET", PATH, 200, lease("8", &fresh("other"))),
        ],
    ));
    assert!(e.release().await.unwrap());
    assert!(!e.release().await.unwrap());
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "7");
    assert!(
        bodies[1]["spec"].get("holderIdentity").is_none(),
        "{}",
        bodies[1]
    );
    assert_eq!(bodies[1]["spec"]["leaseTransitions"], 2);
}
