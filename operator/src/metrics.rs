//! Prometheus metrics of the operator and the HTTP endpoint serving them with the health
//! probes: `GET /metrics` (OpenMetrics text), `GET /healthz` (the process serves requests)
//! and `GET /readyz` (the controller is watching ImageBuilds).
//!
//! Metric names, all prefixed `kiln_`:
//! - `kiln_reconciles_total` — reconcile runs;
//! - `kiln_reconcile_failures_total{reason}` — failed reconciles and builds, by stable reason
//!   (the condition reason, or `KubeApi` for a transient API failure);
//! - `kiln_builds_total{phase}` — builds that reached Succeeded, Failed or Cancelled;
//! - `kiln_stages_total{result}` — stages looked up, `result` = `reused` (found in the stages
//!   storage: a cache hit) or `built`;
//! - `kiln_build_duration_seconds` — from a build's start to its end (histogram);
//! - `kiln_reconcile_duration_seconds` — one reconcile run (histogram).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Label set with one `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A stable reason (condition reason or `KubeApi`).
    pub reason: String,
}

/// Label set with one `phase` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// Succeeded, Failed or Cancelled.
    pub phase: String,
}

/// Label set with one `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `reused` or `built`.
    pub result: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconcile runs.
    pub reconciles: Counter,
    /// Failures by reason.
    pub failures: Family<ReasonLabel, Counter>,
    /// Finished builds by phase.
    pub builds: Family<PhaseLabel, Counter>,
    /// Stages by lookup result.
    pub stages: Family<StageLabel, Counter>,
    /// Build durations, seconds.
    pub build_duration: Histogram,
    /// Reconcile durations, seconds.
    pub reconcile_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kiln");
        let reconciles = Counter::default();
        let failures = Family::<ReasonLabel, Counter>::default();
        let builds = Family::<PhaseLabel, Counter>::default();
        let stages = Family::<StageLabel, Counter>::default();
        // 1 s .. ~4.5 h: builds range from a fully cached second to long compiles.
        let build_duration = Histogram::new(exponential_buckets(1.0, 2.0, 15));
        // 1 ms .. ~16 s.
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register("reconciles", "Reconcile runs", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconciles and builds by stable reason",
            failures.clone(),
        );
        registry.register("builds", "Finished builds by phase", builds.clone());
        registry.register(
            "stages",
            "Stages looked up, by result: reused (cache hit) or built",
            stages.clone(),
        );
        registry.register(
            "build_duration_seconds",
            "Time from a build's start to its end",
            build_duration.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile run",
            reconcile_duration.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            builds,
            stages,
            build_duration,
            reconcile_duration,
        }
    }

    /// Counts a failure with `reason`.
    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a finished build in `phase` that took `seconds`.
    pub fn build_finished(&self, phase: &str, seconds: f64) {
        self.builds
            .get_or_create(&PhaseLabel {
                phase: phase.to_owned(),
            })
            .inc();
        self.build_duration.observe(seconds);
    }

    /// Counts `n` stages with `result` (`reused` or `built`).
    pub fn stages(&self, result: &str, n: u64) {
        self.stages
            .get_or_create(&StageLabel {
                result: result.to_owned(),
            })
            .inc_by(n);
    }

    /// The metrics in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Readiness of the operator, flipped by the controller once it watches ImageBuilds.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks the operator ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// True when ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn route(
    req: &Request<Incoming>,
    metrics: &Metrics,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if readiness.get() => respond(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready: the controller is not watching ImageBuilds yet\n".into(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Binds `address` and returns the bound address with a future serving `/metrics`,
/// `/healthz` and `/readyz` until `shutdown` completes.
///
/// Errors: the address cannot be bound (in use, no permission).
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let server = async move {
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = route(&req, &metrics, &readiness);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics endpoint: connection ended");
                }
            });
        }
    };
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn encodes_counters_by_label() {
        let m = Metrics::new();
        m.reconciles.inc();
        m.failure("RevisionNotFound");
        m.failure("RevisionNotFound");
        m.build_finished("Succeeded", 3.0);
        m.stages("reused", 5);
        m.stages("built", 2);
        let text = m.encode();
        assert!(text.contains("kiln_reconciles_total 1\n"), "{text}");
        assert!(
            text.contains("kiln_reconcile_failures_total{reason=\"RevisionNotFound\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("kiln_builds_total{phase=\"Succeeded\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kiln_stages_total{result=\"reused\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("kiln_stages_total{result=\"built\"} 2\n"),
            "{text}"
        );
        // 3 s lands in the 4 s bucket and above, not in the 2 s one.
        assert!(
            text.contains("kiln_build_duration_seconds_bucket{le=\"2.0\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("kiln_build_duration_seconds_bucket{le=\"4.0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kiln_build_duration_seconds_sum 3.0\n"),
            "{text}"
        );
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_probes_until_shutdown() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconciles.inc();
        let readiness = Arc::new(Readiness::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            readiness.clone(),
            async {
                let _ = stop_rx.await;
            },
        )
        .await
        .unwrap();
        let task = tokio::spawn(server);
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("kiln_reconciles_total 1"), "{m}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        readiness.set(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        stop_tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("server stops on shutdown")
            .unwrap();
    }
}
