//! Retries with exponential backoff for transient registry failures, and the
//! classification of client errors into transient and final ones.
//!
//! Timeouts, connection failures, 5xx and 429 answers are retried (registries behind load
//! balancers drop connections and answer 502/503 during rollouts); 401, 403 and 404 are
//! final at once, because repeating them only delays a message the user has to act on.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use oci_client::errors::{OciDistributionError, OciErrorCode};

/// How often and how patiently a failing request is repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` requests at most).
    pub max_retries: usize,
    /// Delay before the first retry; doubled for each further one (with jitter).
    pub min_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 retries, 200 ms doubling up to 5 s: about 3 s of waiting in total, enough for a
    /// registry pod restart behind a Service without stalling a reconcile for long.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// A failed registry request, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Worth retrying: timeout, connection failure, 5xx, 429.
    Transient(String),
    /// 401 or a refused token request.
    Unauthorized(String),
    /// 403 / `DENIED`.
    Forbidden(String),
    /// 404 / `*_UNKNOWN`.
    NotFound(String),
    /// Anything else; not retried.
    Other(String),
}

impl Failure {
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Failure::Transient(_))
    }

    /// Classifies an HTTP status with the response body as detail.
    pub(crate) fn from_status(status: u16, detail: String) -> Failure {
        match status {
            401 => Failure::Unauthorized(detail),
            403 => Failure::Forbidden(detail),
            404 => Failure::NotFound(detail),
            408 | 429 => Failure::Transient(detail),
            s if s >= 500 => Failure::Transient(detail),
            _ => Failure::Other(detail),
        }
    }

    /// Classifies an error of a reqwest call (the tags list).
    pub(crate) fn from_reqwest(err: &reqwest::Error) -> Failure {
        if let Some(status) = err.status() {
            return Failure::from_status(status.as_u16(), err.to_string());
        }
        if err.is_timeout() || err.is_connect() || err.is_request() || err.is_body() {
            Failure::Transient(err.to_string())
        } else {
            Failure::Other(err.to_string())
        }
    }

    /// Classifies an oci-client error. oci-client keeps the status for non-JSON answers
    /// (`ServerError`) and the OCI error codes for JSON ones (`RegistryError`).
    pub(crate) fn from_oci(err: &OciDistributionError) -> Failure {
        let detail = err.to_string();
        match err {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => Failure::Unauthorized(detail),
            OciDistributionError::ServerError { code, message, .. } => {
                // Upload and manifest PUT answers keep the raw body; it may still carry
                // an OCI error code that says more than the status.
                match code_in_body(message) {
                    Some(f) if *code < 500 => f,
                    _ => Failure::from_status(*code, detail),
                }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized))
                {
                    Failure::Unauthorized(detail)
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied)) {
                    Failure::Forbidden(detail)
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    Failure::NotFound(detail)
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
                {
                    Failure::Transient(detail)
                } else {
                    Failure::Other(detail)
                }
            }
            OciDistributionError::ImageManifestNotFoundError(_) => Failure::NotFound(detail),
            OciDistributionError::RequestError(e) => {
                let f = Failure::from_reqwest(e);
                // Keep oci-client's wording, which names the URL.
                match f {
                    Failure::Transient(_) => Failure::Transient(detail),
                    Failure::Other(_) => Failure::Other(detail),
                    other => other,
                }
            }
            OciDistributionError::IoError(_) => Failure::Transient(detail),
            _ => Failure::Other(detail),
        }
    }
}

fn code_in_body(body: &str) -> Option<Failure> {
    let envelope: oci_client::errors::OciEnvelope = serde_json::from_str(body).ok()?;
    let first = envelope.errors.first()?;
    Some(match first.code {
        OciErrorCode::Unauthorized => Failure::Unauthorized(body.to_owned()),
        OciErrorCode::Denied => Failure::Forbidden(body.to_owned()),
        OciErrorCode::ManifestUnknown
        | OciErrorCode::BlobUnknown
        | OciErrorCode::NameUnknown
        | OciErrorCode::NotFound => Failure::NotFound(body.to_owned()),
        _ => return None,
    })
}

/// Runs `attempt` until it succeeds, fails with a non-transient [`Failure`], or the
/// policy's retries are used up. Returns the result and the number of attempts made.
pub(crate) async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    mut attempt: F,
) -> (Result<T, Failure>, usize)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let attempts = AtomicUsize::new(0);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter();
    let result = (|| {
        attempts.fetch_add(1, Ordering::Relaxed);
        attempt()
    })
    .retry(backoff)
    .when(Failure::is_transient)
    .await;
    (result, attempts.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    /// Plays back a script of outcomes, one per attempt.
    async fn run(script: Vec<Result<u32, Failure>>) -> (Result<u32, Failure>, usize) {
        let script = Mutex::new(script.into_iter());
        retrying(&fast(), || {
            let next = script.lock().unwrap().next().expect("script too short");
            async move { next }
        })
        .await
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let (r, attempts) = run(vec![
            Err(Failure::Transient("503".into())),
            Err(Failure::Transient("timeout".into())),
            Ok(7),
        ])
        .await;
        assert_eq!(r, Ok(7));
        assert_eq!(attempts, 3);
    }

    #[tokio::test]
    async fn final_failures_are_not_retried() {
        for f in [
            Failure::Unauthorized("401".into()),
            Failure::Forbidden("403".into()),
            Failure::NotFound("404".into()),
            Failure::Other("400".into()),
        ] {
            let (r, attempts) = run(vec![Err(f.clone()), Ok(1)]).await;
            assert_eq!(r, Err(f));
            assert_eq!(attempts, 1);
        }
    }

    #[tokio::test]
    async fn retries_stop_after_the_policy_limit() {
        let (r, attempts) = run(vec![Err(Failure::Transient("503".into())); 10]).await;
        assert!(r.is_err());
        assert_eq!(attempts, 4, "1 attempt + 3 retries");
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(
            Failure::from_status(401, "x".into()),
            Failure::Unauthorized("x".into())
        );
        assert_eq!(
            Failure::from_status(403, "x".into()),
            Failure::Forbidden("x".into())
        );
        assert_eq!(
            Failure::from_status(404, "x".into()),
            Failure::NotFound("x".into())
        );
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(Failure::from_status(s, String::new()).is_transient(), "{s}");
        }
        for s in [400, 405, 409, 412] {
            assert_eq!(
                Failure::from_status(s, "x".into()),
                Failure::Other("x".into()),
                "{s}"
            );
        }
    }

    #[test]
    fn oci_client_errors_are_classified() {
        let server = |code: u16, message: &str| OciDistributionError::ServerError {
            code,
            url: "http://r/v2/x".into(),
            message: message.into(),
        };
        assert!(Failure::from_oci(&server(503, "busy")).is_transient());
        assert!(matches!(
            Failure::from_oci(&server(401, "")),
            Failure::Unauthorized(_)
        ));
        assert!(matches!(
            Failure::from_oci(&server(
                400,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"m"}]}"#
            )),
            Failure::NotFound(_)
        ));
        let envelope = |code: &str| OciDistributionError::RegistryError {
            envelope: serde_json::from_str(&format!(
                r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#
            ))
            .unwrap(),
            url: "http://r/v2/x".into(),
        };
        assert!(matches!(
            Failure::from_oci(&envelope("DENIED")),
            Failure::Forbidden(_)
        ));
        assert!(matches!(
            Failure::from_oci(&envelope("UNAUTHORIZED")),
            Failure::Unauthorized(_)
        ));
        assert!(matches!(
            Failure::from_oci(&envelope("NAME_UNKNOWN")),
            Failure::NotFound(_)
        ));
        assert!(matches!(
            Failure::from_oci(&envelope("BLOB_UNKNOWN")),
            Failure::NotFound(_)
        ));
        assert!(Failure::from_oci(&envelope("TOOMANYREQUESTS")).is_transient());
        assert!(matches!(
            Failure::from_oci(&envelope("MANIFEST_INVALID")),
            Failure::Other(_)
        ));
        assert!(matches!(
            Failure::from_oci(&OciDistributionError::UnauthorizedError { url: "u".into() }),
            Failure::Unauthorized(_)
        ));
    }
}
