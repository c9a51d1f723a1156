//! The registry transport: every request Kiln makes to a registry goes through
//! [`RegistryClient`], which picks credentials and the URL scheme per registry, retries
//! transient failures, counts requests per [`Operation`] and turns failures into
//! [`StorageError`]s that name the registry, the repository and the operation.
//!
//! Built on oci-client. One gap is filled with a direct HTTP call: oci-client's
//! `list_tags` does not expose the `Link` header, and registries paginate the tags list
//! with opaque `Link` URLs (distribution v3 and most hosted registries), so following
//! `rel="next"` is the only portable way to read a repository with many tags. That call
//! reuses oci-client for the bearer-token handshake.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use oci_client::RegistryOperation;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{HeaderValue, LINK, WWW_AUTHENTICATE};
use serde::Deserialize;
use sha2::Digest as _;

use super::auth::{DockerConfig, RegistryCredential};
use super::counters::{Operation, RequestCounters, RequestCounts};
use super::description::{ACCEPTED_MANIFESTS, Descriptor};
use super::error::StorageError;
use super::reference::{RepoRef, is_loopback_host};
use super::retry::{Failure, RetryPolicy, retrying};

/// How a [`RegistryClient`] reaches registries.
#[derive(Debug, Clone)]
pub struct RegistryClientConfig {
    /// Credentials per registry host (from the `registrySecretRef` secret).
    pub credentials: DockerConfig,
    /// Registries (`host[:port]`) reached over plain HTTP instead of HTTPS.
    pub plain_http_registries: Vec<String>,
    /// Reach loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) over plain HTTP,
    /// as docker does. On by default.
    pub plain_http_loopback: bool,
    /// Retries of timeouts, connection failures, 5xx and 429.
    pub retry: RetryPolicy,
    /// `n` asked for per tags-list page. Registries may return fewer (and distribution
    /// 2.x ignores `n` and returns every tag at once).
    pub tags_page_size: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout for each read from a response.
    pub read_timeout: Duration,
}

impl Default for RegistryClientConfig {
    fn default() -> Self {
        RegistryClientConfig {
            credentials: DockerConfig::anonymous(),
            plain_http_registries: Vec::new(),
            plain_http_loopback: true,
            retry: RetryPolicy::default(),
            tags_page_size: 1000,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The exact bytes (their SHA-256 is the manifest digest).
    pub bytes: Bytes,
    /// `sha256:…` of the bytes, checked against `Docker-Content-Digest` by oci-client.
    pub digest: String,
}

/// A client for the registries of one ImageBuild (one set of credentials). Cheap to clone;
/// clones share connections, tokens and request counters.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryClientConfig,
    http: reqwest::Client,
    // One oci-client per registry: the scheme is a per-client setting, and oci-client
    // keeps one stored credential per registry anyway.
    oci: Mutex<HashMap<String, oci_client::Client>>,
    // Bearer tokens for the tags-list call, per repository.
    tag_tokens: Mutex<HashMap<RepoRef, String>>,
    counters: RequestCounters,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field(
                "registries_with_credentials",
                &self
                    .inner
                    .config
                    .credentials
                    .registries()
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RegistryClient {
    /// A client with the given configuration.
    pub fn new(config: RegistryClientConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .build()
            .unwrap_or_default();
        RegistryClient {
            inner: Arc::new(Inner {
                config,
                http,
                oci: Mutex::new(HashMap::new()),
                tag_tokens: Mutex::new(HashMap::new()),
                counters: RequestCounters::default(),
            }),
        }
    }

    /// Requests made so far, per operation (every attempt counts).
    pub fn request_counts(&self) -> RequestCounts {
        self.inner.counters.snapshot()
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.config.retry
    }

    fn plain_http(&self, registry: &str) -> bool {
        self.inner
            .config
            .plain_http_registries
            .iter()
            .any(|r| r == registry)
            || (self.inner.config.plain_http_loopback && is_loopback_host(registry))
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if self.plain_http(registry) {
            "http"
        } else {
            "https"
        }
    }

    fn registry_auth(&self, registry: &str) -> RegistryAuth {
        self.inner.config.credentials.registry_auth(registry)
    }

    /// The oci-client for a registry, with its credentials stored.
    async fn oci(&self, registry: &str) -> oci_client::Client {
        let client = {
            let mut clients = self.inner.oci.lock().expect("oci client map poisoned");
            clients
                .entry(registry.to_owned())
                .or_insert_with(|| {
                    oci_client::Client::new(ClientConfig {
                        protocol: if self.plain_http(registry) {
                            ClientProtocol::Http
                        } else {
                            ClientProtocol::Https
                        },
                        // A blob upload in two requests (POST, PUT) instead of three or more.
                        use_monolithic_push: true,
                        connect_timeout: Some(self.inner.config.connect_timeout),
                        read_timeout: Some(self.inner.config.read_timeout),
                        platform_resolver: None,
                        ..Default::default()
                    })
                })
                .clone()
        };
        client
            .store_auth_if_needed(registry, &self.registry_auth(registry))
            .await;
        client
    }

    /// Runs one logical operation with retries, counting every attempt.
    async fn call<T, F, Fut>(
        &self,
        repo: &RepoRef,
        op: Operation,
        reference: &str,
        mut attempt: F,
    ) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let counters = &self.inner.counters;
        let (result, attempts) = retrying(&self.inner.config.retry, || {
            counters.record(op);
            attempt()
        })
        .await;
        result.map_err(|f| self.error(repo, op, reference, f, attempts))
    }

    fn error(
        &self,
        repo: &RepoRef,
        operation: Operation,
        reference: &str,
        failure: Failure,
        attempts: usize,
    ) -> StorageError {
        let registry = repo.registry().to_owned();
        let repository = repo.repository().to_owned();
        match failure {
            Failure::Transient(detail) => StorageError::Unavailable {
                registry,
                repository,
                operation,
                attempts,
                detail,
            },
            Failure::Unauthorized(detail) => StorageError::Unauthorized {
                registry,
                repository,
                operation,
                detail,
            },
            Failure::Forbidden(detail) => StorageError::Forbidden {
                registry,
                repository,
                operation,
                detail,
            },
            Failure::NotFound(detail) => StorageError::NotFound {
                registry,
                repository,
                operation,
                reference: reference.to_owned(),
                detail,
            },
            Failure::Other(detail) => StorageError::Registry {
                registry,
                repository,
                operation,
                detail,
            },
        }
    }

    /// Every tag of a repository, following `Link: <…>; rel="next"` pages. A repository
    /// that does not exist yet (`NAME_UNKNOWN`) has no tags. Order is the registry's; never
    /// rely on it.
    pub async fn list_tags(&self, repo: &RepoRef) -> Result<Vec<String>, StorageError> {
        let base = format!("{}://{}", self.scheme(repo.registry()), repo.registry());
        let mut url = format!(
            "{base}/v2/{}/tags/list?n={}",
            repo.repository(),
            self.inner.config.tags_page_size
        );
        let mut tags = Vec::new();
        loop {
            let page = self
                .call(repo, Operation::ListTags, "tags list", || {
                    self.tags_page(repo, &url)
                })
                .await;
            let (page_tags, next) = match page {
                Ok(p) => p,
                Err(e) if e.is_not_found() && tags.is_empty() => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            tags.extend(page_tags);
            match next {
                Some(next) if next.starts_with('/') => url = format!("{base}{next}"),
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
    }

    /// One tags-list page: its tags and the next page's URL.
    async fn tags_page(
        &self,
        repo: &RepoRef,
        url: &str,
    ) -> Result<(Vec<String>, Option<String>), Failure> {
        let cached_token = self
            .inner
            .tag_tokens
            .lock()
            .expect("token map poisoned")
            .get(repo)
            .cloned();
        let response = self
            .send_tags_request(repo, url, cached_token.as_deref())
            .await?;
        let response = if response.status() == reqwest::StatusCode::UNAUTHORIZED
            && is_bearer_challenge(response.headers().get(WWW_AUTHENTICATE))
        {
            // A bearer-token registry: get a pull token (oci-client does the handshake
            // with the configured credentials) and ask again once.
            self.inner.counters.record(Operation::Authenticate);
            let token = self
                .oci(repo.registry())
                .await
                .auth(
                    &repo.repo_only(),
                    &self.registry_auth(repo.registry()),
                    RegistryOperation::Pull,
                )
                .await
                .map_err(|e| Failure::from_oci(&e))?
                .ok_or_else(|| {
                    Failure::Unauthorized(
                        "the registry asked for a bearer token but issued none".into(),
                    )
                })?;
            self.inner
                .tag_tokens
                .lock()
                .expect("token map poisoned")
                .insert(repo.clone(), token.clone());
            self.inner.counters.record(Operation::ListTags);
            self.send_tags_request(repo, url, Some(&token)).await?
        } else {
            response
        };
        let status = response.status();
        let next = response
            .headers()
            .get_all(LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link);
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::from_reqwest(&e))?;
        if !status.is_success() {
            return Err(Failure::from_status(
                status.as_u16(),
                format!("GET {url}: {status}: {}", String::from_utf8_lossy(&body)),
            ));
        }
        let page: TagsPage = serde_json::from_slice(&body).map_err(|e| {
            Failure::Other(format!(
                "GET {url}: the tags list is not JSON of the distribution shape: {e}"
            ))
        })?;
        Ok((page.tags.unwrap_or_default(), next))
    }

    async fn send_tags_request(
        &self,
        repo: &RepoRef,
        url: &str,
        token: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.inner.http.get(url);
        request = match (
            token,
            self.inner
                .config
                .credentials
                .credential_for(repo.registry()),
        ) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(RegistryCredential::RegistryToken(token))) => request.bearer_auth(token),
            (None, Some(c)) => match c.to_registry_auth() {
                RegistryAuth::Basic(u, p) => request.basic_auth(u, Some(p)),
                _ => request,
            },
            (None, None) => request,
        };
        request.send().await.map_err(|e| Failure::from_reqwest(&e))
    }

    fn reference(repo: &RepoRef, reference: &str) -> Result<oci_client::Reference, StorageError> {
        if reference.starts_with("sha256:") {
            Ok(repo.by_digest(reference))
        } else {
            repo.tagged(reference)
        }
    }

    /// `GET` a manifest by tag or digest, accepting OCI and Docker images, indexes and
    /// manifest lists. 404 gives [`StorageError::NotFound`].
    pub async fn get_manifest(
        &self,
        repo: &RepoRef,
        reference: &str,
    ) -> Result<RawManifest, StorageError> {
        let image = Self::reference(repo, reference)?;
        let oci = self.oci(repo.registry()).await;
        let auth = self.registry_auth(repo.registry());
        let (bytes, digest) = self
            .call(repo, Operation::GetManifest, reference, || async {
                oci.pull_manifest_raw(&image, &auth, &ACCEPTED_MANIFESTS)
                    .await
                    .map_err(|e| Failure::from_oci(&e))
            })
            .await?;
        Ok(RawManifest { bytes, digest })
    }

    /// `PUT` manifest bytes under a tag or digest with their media type; returns the
    /// manifest digest (SHA-256 of the bytes, which the registry keeps unchanged).
    pub async fn put_manifest(
        &self,
        repo: &RepoRef,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<String, StorageError> {
        let image = Self::reference(repo, reference)?;
        let content_type =
            HeaderValue::from_str(media_type).map_err(|_| StorageError::InvalidManifest {
                repo: repo.to_string(),
                reference: reference.to_owned(),
                reason: format!("media type {media_type:?} is not a header value"),
            })?;
        let oci = self.oci(repo.registry()).await;
        self.call(repo, Operation::PutManifest, reference, || async {
            oci.push_manifest_raw(&image, bytes.clone(), content_type.clone())
                .await
                .map_err(|e| Failure::from_oci(&e))
        })
        .await?;
        Ok(sha256_digest(&bytes))
    }

    /// `GET` a whole blob into memory (config blobs; small by nature). The digest is
    /// verified by oci-client.
    pub async fn get_blob(&self, repo: &RepoRef, digest: &str) -> Result<Vec<u8>, StorageError> {
        let image = repo.repo_only();
        let oci = self.oci(repo.registry()).await;
        let descriptor = OciDescriptor {
            digest: digest.to_owned(),
            ..Default::default()
        };
        self.call(repo, Operation::GetBlob, digest, || async {
            let mut out = Vec::new();
            oci.pull_blob(&image, &descriptor, &mut out)
                .await
                .map_err(|e| Failure::from_oci(&e))?;
            Ok(out)
        })
        .await
    }

    /// `HEAD` a blob: whether the repository already has it.
    pub async fn blob_exists(&self, repo: &RepoRef, digest: &str) -> Result<bool, StorageError> {
        let image = repo.repo_only();
        let oci = self.oci(repo.registry()).await;
        self.call(repo, Operation::CheckBlob, digest, || async {
            oci.blob_exists(&image, digest)
                .await
                .map_err(|e| Failure::from_oci(&e))
        })
        .await
    }

    /// Uploads a blob held in memory under its digest.
    pub async fn push_blob(
        &self,
        repo: &RepoRef,
        digest: &str,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let image = repo.repo_only();
        let oci = self.oci(repo.registry()).await;
        self.call(repo, Operation::PushBlob, digest, || async {
            oci.push_blob(&image, data.clone(), digest)
                .await
                .map(drop)
                .map_err(|e| Failure::from_oci(&e))
        })
        .await
    }

    /// Asks the registry to link a blob of `from` into `to` without transferring it
    /// (cross-repository blob mount). `Ok(false)` when the registry declines (it answers
    /// 202 and opens an upload instead, or refuses access to `from`); the caller copies.
    pub async fn mount_blob(
        &self,
        to: &RepoRef,
        from: &RepoRef,
        digest: &str,
    ) -> Result<bool, StorageError> {
        if to.registry() != from.registry() {
            return Ok(false);
        }
        let target = to.repo_only();
        let source = from.repo_only();
        let oci = self.oci(to.registry()).await;
        let outcome = self
            .call(to, Operation::MountBlob, digest, || async {
                match oci.mount_blob(&target, &source, digest).await {
                    Ok(()) => Ok(true),
                    Err(e) => match Failure::from_oci(&e) {
                        f @ Failure::Transient(_) => Err(f),
                        _ => Ok(false),
                    },
                }
            })
            .await;
        match outcome {
            Ok(mounted) => Ok(mounted),
            // Even a registry that keeps failing the mount may accept a plain upload.
            Err(StorageError::Unavailable { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Streams a blob from one repository to another (any registries) without holding it
    /// in memory. Counts one blob GET and one blob push per attempt.
    pub async fn copy_blob(
        &self,
        from: &RepoRef,
        to: &RepoRef,
        blob: &Descriptor,
    ) -> Result<(), StorageError> {
        let source = from.repo_only();
        let target = to.repo_only();
        let from_oci = self.oci(from.registry()).await;
        let to_oci = self.oci(to.registry()).await;
        let descriptor = OciDescriptor {
            digest: blob.digest.clone(),
            size: blob.size as i64,
            media_type: blob.media_type.clone(),
            ..Default::default()
        };
        let counters = &self.inner.counters;
        // Which side failed last, to name the right repository in the error.
        let failed = Mutex::new(Operation::GetBlob);
        let (result, attempts) = retrying(&self.inner.config.retry, || async {
            counters.record(Operation::GetBlob);
            *failed.lock().expect("poisoned") = Operation::GetBlob;
            let stream = from_oci
                .pull_blob_stream(&source, &descriptor)
                .await
                .map_err(|e| Failure::from_oci(&e))?;
            let stream = stream.stream.map_err(OciDistributionError::IoError);
            counters.record(Operation::PushBlob);
            *failed.lock().expect("poisoned") = Operation::PushBlob;
            to_oci
                .push_blob_stream(&target, stream, &blob.digest, Some(blob.size))
                .await
                .map(drop)
                .map_err(|e| Failure::from_oci(&e))
        })
        .await;
        result.map_err(|f| {
            let op = *failed.lock().expect("poisoned");
            let repo = if op == Operation::GetBlob { from } else { to };
            self.error(repo, op, &blob.digest, f, attempts)
        })
    }
}

/// SHA-256 digest string (`sha256:<64 hex>`) of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn is_bearer_challenge(header: Option<&HeaderValue>) -> bool {
    header
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.trim_start().to_ascii_lowercase().starts_with("bearer"))
}

/// The URL of a `Link` header entry with `rel="next"` (RFC 8288):
/// `</v2/x/tags/list?last=a&n=2>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next_target() {
        assert_eq!(
            next_link(r#"</v2/shop/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/shop/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r.io/v2/a/tags/list?x=1>; rel="prev", <https://r.io/v2/a/tags/list?x=3>; rel=next"#)
                .as_deref(),
            Some("https://r.io/v2/a/tags/list?x=3")
        );
        assert_eq!(next_link(r#"</v2/a>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn bearer_challenges() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(is_bearer_challenge(Some(&h(
            r#"Bearer realm="https://auth.io/token",service="r""#
        ))));
        assert!(!is_bearer_challenge(Some(&h(r#"Basic realm="kiln-test""#))));
        assert!(!is_bearer_challenge(None));
    }

    #[test]
    fn sha256_of_known_input() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            sha256_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn plain_http_by_host() {
        let client = RegistryClient::new(RegistryClientConfig {
            plain_http_registries: vec!["registry.internal:5000".into()],
            ..Default::default()
        });
        assert_eq!(client.scheme("registry.internal:5000"), "http");
        assert_eq!(client.scheme("127.0.0.1:5000"), "http");
        assert_eq!(client.scheme("registry.internal"), "https");
        assert_eq!(client.scheme("registry.example.org"), "https");
        let strict = RegistryClient::new(RegistryClientConfig {
            plain_http_loopback: false,
            ..Default::default()
        });
        assert_eq!(strict.scheme("127.0.0.1:5000"), "https");
    }
}
