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
