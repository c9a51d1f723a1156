//! A scripted Kubernetes API for unit tests of reconcile logic (the one mock in this crate,
//! in the style of kube-rs' controller-rs `ApiServerVerifier`): a `kube::Client` over a
//! tower-test service, and a server that answers each request from a script in order,
//! asserting method, path and query, and returns what it saw.

use std::collections::VecDeque;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::Value;

/// The server side of a mock client.
pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A `kube::Client` whose default namespace is `namespace`, and the handle that serves it.
pub fn client(namespace: &str) -> (kube::Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, namespace), handle)
}

/// One expected request and the response to give.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The HTTP method (`GET`, `PATCH`...).
    pub method: &'static str,
    /// The path, matched exactly or as a prefix (see [`expect`] and [`reply`]).
    pub path: String,
    /// Whether `path` is a prefix of the request's path.
    pub prefix: bool,
    /// A text the decoded query must contain, when set.
    pub query: Option<String>,
    /// The response status.
    pub status: u16,
    /// The response body (JSON).
    pub response: Value,
}

/// A `200` answer to `method` on a path starting with `path`.
pub fn expect(method: &'static str, path: &str, response: Value) -> Expect {
    Expect {
        method,
        path: path.to_owned(),
        prefix: true,
        query: None,
        status: 200,
        response,
    }
}

/// A `status` answer to `method` on exactly `path`.
pub fn reply(method: &'static str, path: &str, status: u16, response: Value) -> Expect {
    Expect {
        method,
        path: path.to_owned(),
        prefix: false,
        query: None,
        status,
        response,
    }
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// `METHOD /path`.
    pub line: String,
    /// The request body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// Serves `script` in order and returns what it saw. Panics on a request out of order, and
/// — with `wait` — when no request comes within it (leave `wait` unset under paused time).
pub async fn serve(mut handle: Handle, script: Vec<Expect>, wait: Option<Duration>) -> Vec<Seen> {
    let mut script: VecDeque<Expect> = script.into();
    let mut seen = Vec::new();
    while let Some(e) = script.pop_front() {
        let next = handle.next_request();
        let next = match wait {
            Some(wait) => tokio::time::timeout(wait, next)
                .await
                .unwrap_or_else(|_| panic!("no request came; expected {} {}", e.method, e.path)),
            None => next.await,
        };
        let (request, send) =
            next.unwrap_or_else(|| panic!("client gone; expected {} {}", e.method, e.path));
        let line = format!("{} {}", request.method(), request.uri().path());
        assert_eq!(request.method().as_str(), e.method, "{}", request.uri());
        let path_ok = if e.prefix {
            request.uri().path().starts_with(&e.path)
        } else {
            request.uri().path() == e.path
        };
        assert!(
            path_ok,
            "expected {} {}, got {}",
            e.method,
            e.path,
            request.uri()
        );
        if let Some(q) = &e.query {
            let decoded = request
                .uri()
                .query()
                .unwrap_or_default()
                .replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/");
            assert!(decoded.contains(q.as_str()), "{decoded} lacks {q}");
        }
        let bytes = request.into_body().collect_bytes().await.unwrap();
        seen.push(Seen {
            line,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        });
        send.send_response(
            Response::builder()
                .status(e.status)
                .body(Body::from(serde_json::to_vec(&e.response).unwrap()))
                .unwrap(),
        );
    }
    seen
}

/// The request bodies of `seen`, in order.
pub fn bodies(seen: Vec<Seen>) -> Vec<Value> {
    seen.into_iter().map(|s| s.body).collect()
}
