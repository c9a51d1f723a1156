//! The Kubernetes ConfigMap lease store.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};

use super::LeaseStore;
use crate::lock::error::StoreError;

/// Leases in the annotations of ConfigMap `name` in `namespace` (werf: `werf-<project>`).
///
/// RBAC needed by the operator's ServiceAccount, in that namespace only:
/// `configmaps`: `get` (read before every change), `create` (first use, or after someone
/// deleted the ConfigMap), `update` (every acquire, renew and release: a full PUT with
/// resourceVersion). No `list`, `watch`, `patch` or `delete`.
#[derive(Clone)]
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for ConfigMapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapStore")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish()
    }
}

impl ConfigMapStore {
    /// A store for ConfigMap `name` in `namespace`; nothing is requested until first use.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        ConfigMapStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Namespace of the ConfigMap.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Name of the ConfigMap.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn api_error(&self, verb: &'static str, source: kube::Error) -> StoreError {
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        match &source {
            kube::Error::Api(status) if status.is_forbidden() => StoreError::Forbidden {
                verb,
                namespace,
                name,
                message: status.message.clone(),
                source: Box::new(source),
            },
            _ => StoreError::Api {
                verb,
                namespace,
                name,
                source: Box::new(source),
            },
        }
    }

    /// GETs the ConfigMap, creating it (empty, name only, as werf does) when missing. A 409
    /// on create means another process created it first: read theirs.
    pub async fn get_or_create(&self) -> Result<ConfigMap, StoreError> {
        loop {
            if let Some(found) = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| self.api_error("get", e))?
            {
                return Ok(found);
            }
            let empty = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            };
            match self.api.create(&PostParams::default(), &empty).await {
                Ok(created) => return Ok(created),
                Err(kube::Error::Api(status)) if status.is_already_exists() => continue,
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    return Err(StoreError::NamespaceMissing {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                    });
                }
                Err(e) => return Err(self.api_error("create", e)),
            }
        }
    }

    async fn replace(&self, object: ConfigMap) -> Result<(), StoreError> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), &object)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_conflict() => Err(StoreError::Conflict {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            }),
            Err(kube::Error::Api(status)) if status.is_not_found() => Err(StoreError::Gone {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            }),
            Err(e) => Err(self.api_error("update", e)),
        }
    }
}

impl LeaseStore for ConfigMapStore {
    fn describe(&self) -> String {
        format!("ConfigMap {}/{}", self.namespace, self.name)
    }

    fn load(&self) -> BoxFuture<'_, Result<ConfigMap, StoreError>> {
        self.get_or_create().boxed()
    }

    fn save(&self, object: ConfigMap) -> BoxFuture<'_, Result<(), StoreError>> {
        self.replace(object).boxed()
    }
}

#[cfg(test)]
mod tests {
    //! Request shapes and error mapping, against a scripted API server (tower-test). The
    //! behaviour against a real kube-apiserver is covered by the e2e crate's `lock_*` tests.

    use std::pin::pin;

    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;
    use crate::lock::store::{annotation, set_annotation};

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn store() -> (ConfigMapStore, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        (ConfigMapStore::new(client, "ci", "werf-shop"), handle)
    }

    fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code});
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn object(resource_version: &str) -> Response<Body> {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "werf-shop", "namespace": "ci", "resourceVersion": resource_version}});
        Response::new(Body::from(serde_json::to_vec(&body).unwrap()))
    }

    async fn body_json(request: Request<Body>) -> Value {
        let bytes = request.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    const PATH: &str = "/api/v1/namespaces/ci/configmaps/werf-shop";

    #[tokio::test]
    async fn load_creates_a_missing_configmap_and_reads_it_after_losing_the_create_race() {
        let (store, handle) = store();
        let server = tokio::spawn(async move {
            let mut handle = pin!(handle);
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!((req.method(), req.uri().path()), (&Method::GET, PATH));
            send.send_response(status(
                404,
                "NotFound",
                "configmaps \"werf-shop\" not found",
            ));

            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(
                (req.method(), req.uri().path()),
                (&Method::POST, "/api/v1/namespaces/ci/configmaps")
            );
            let created = body_json(req).await;
            // Created empty, with only a name, as werf does.
            assert_eq!(
                created["metadata"],
                json!({"name": "werf-shop", "namespace": "ci"})
            );
            assert!(created.get("data").is_none(), "{created}");
            send.send_response(status(
                409,
                "AlreadyExists",
                "configmaps \"werf-shop\" already exists",
            ));

            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!((req.method(), req.uri().path()), (&Method::GET, PATH));
            send.send_response(object("42"));
        });
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.metadata.resource_version.as_deref(), Some("42"));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn save_replaces_the_whole_object_with_its_resource_version() {
        let (store, handle) = store();
        let server = tokio::spawn(async move {
            let mut handle = pin!(handle);
            for answer in [
                object("8"),
                status(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled on configmaps \"werf-shop\": the object has been modified; please apply your changes to the latest version and try again",
                ),
                status(404, "NotFound", "gone"),
            ] {
                let (req, send) = handle.next_request().await.unwrap();
                assert_eq!((req.method(), req.uri().path()), (&Method::PUT, PATH));
                let sent = body_json(req).await;
                assert_eq!(sent["metadata"]["resourceVersion"], "7");
                assert_eq!(sent["metadata"]["annotations"]["lockgate.io/k"], "v");
                assert_eq!(sent["data"]["kept"], "yes", "the whole object is sent");
                send.send_response(answer);
            }
        });
        let mut cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "werf-shop",
            "namespace": "ci", "resourceVersion": "7"}, "data": {"kept": "yes"}}))
        .unwrap();
        set_annotation(&mut cm, "lockgate.io/k", Some("v".into()));
        assert_eq!(annotation(&cm, "lockgate.io/k"), Some("v"));
        store.save(cm.clone()).await.unwrap();
        let conflict = store.save(cm.clone()).await.unwrap_err();
        assert!(
            matches!(conflict, StoreError::Conflict { .. }),
            "{conflict}"
        );
        let gone = store.save(cm).await.unwrap_err();
        assert!(matches!(gone, StoreError::Gone { .. }), "{gone}");
        assert!(gone.is_retryable_conflict());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn rbac_refusal_names_the_verb_and_the_needed_permissions() {
        let (store, handle) = store();
        let server = tokio::spawn(async move {
            let mut handle = pin!(handle);
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(status(
                403,
                "Forbidden",
                "configmaps \"werf-shop\" is forbidden",
            ));
        });
        let err = store.load().await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::Forbidden { verb: "get", .. }),
            "{text}"
        );
        assert!(
            text.contains("ci/werf-shop")
                && text.contains("get, create and update")
                && text.contains("(API server: configmaps \"werf-shop\" is forbidden)"),
            "{text}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_namespace_is_reported_as_such() {
        let (store, handle) = store();
        let server = tokio::spawn(async move {
            let mut handle = pin!(handle);
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(status(
                404,
                "NotFound",
                "configmaps \"werf-shop\" not found",
            ));
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(status(404, "NotFound", "namespaces \"ci\" not found"));
        });
        let err = store.load().await.unwrap_err();
        assert!(matches!(err, StoreError::NamespaceMissing { .. }), "{err}");
        assert!(
            err.to_string().contains("namespace \"ci\" does not exist"),
            "{err}"
        );
        server.await.unwrap();
    }
}
