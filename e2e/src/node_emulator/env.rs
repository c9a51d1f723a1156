//! A container's environment and `$(VAR)` expansion, the way the kubelet computes them.
//!
//! Order (kubelet `makeEnvironmentVariables`): `envFrom` sources in order (each key
//! with its prefix), then `env` entries in order, later names overriding earlier
//! ones. An `env` value may reference variables defined before it as `$(NAME)`;
//! `command` and `args` are expanded against the final environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

/// Secrets and ConfigMaps of the pod's namespace that the pod references, by name,
/// each as key → bytes (ConfigMap `data` and `binaryData` merged).
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// Secrets by name.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// A token for the pod's ServiceAccount (TokenRequest API), when a projected
    /// volume asks for one.
    pub service_account_token: Option<String>,
}

/// Why an environment could not be built; the kubelet reports these as
/// `CreateContainerConfigError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A referenced Secret or ConfigMap does not exist and the reference is not optional.
    #[error("env {var} of container {container}: {kind} {name} not found")]
    MissingObject {
        /// Container name.
        container: String,
        /// Variable (or envFrom source) that referenced it.
        var: String,
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Object name.
        name: String,
    },
    /// The object exists but lacks the key and the reference is not optional.
    #[error("env {var} of container {container}: key {key} not found in {kind} {name}")]
    MissingKey {
        /// Container name.
        container: String,
        /// Variable name.
        var: String,
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The key.
        key: String,
    },
    /// A `valueFrom` the emulator does not implement (e.g. `resourceFieldRef`).
    #[error("env {var} of container {container}: {what} is not supported by the node emulator")]
    Unsupported {
        /// Container name.
        container: String,
        /// Variable name.
        var: String,
        /// What was asked for.
        what: String,
    },
}

/// Expands `$(NAME)` in `input` with `lookup`, following Kubernetes' rules: `$$` is a
/// literal `$`; an undefined `$(NAME)` and an unterminated `$(` stay as written; a `$`
/// before any other character stays as is.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a downward-API `fieldPath` of `pod`; `None` if unsupported.
pub fn field_ref(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let from_map = |m: Option<&BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(m.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        // Containers run in the host network namespace.
        "status.podIP" | "status.hostIP" => Some(
            status
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".into()),
        ),
        _ => from_map(meta.labels.as_ref(), "metadata.labels['")
            .or_else(|| from_map(meta.annotations.as_ref(), "metadata.annotations['")),
    }
}

/// The environment of `container` (name → value, in definition order, later entries
/// overriding earlier ones), with `env` values expanded.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let cname = container.name.clone();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional, objects) = if let Some(s) = &from.secret_ref {
            ("secret", s.name.clone(), s.optional, &sources.secrets)
        } else if let Some(c) = &from.config_map_ref {
            (
                "configmap",
                c.name.clone(),
                c.optional,
                &sources.config_maps,
            )
        } else {
            continue;
        };
        match objects.get(&name) {
            Some(data) => {
                for (k, v) in data {
                    set(
                        &mut env,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(v).into_owned(),
                    );
                }
            }
            None if optional == Some(true) => {}
            None => {
                return Err(EnvError::MissingObject {
                    container: cname,
                    var: format!("envFrom[{kind} {name}]"),
                    kind,
                    name,
                });
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            let keyed = if let Some(r) = &from.secret_key_ref {
                Some(("secret", &r.name, &r.key, r.optional, &sources.secrets))
            } else {
                from.config_map_key_ref.as_ref().map(|r| {
                    (
                        "configmap",
                        &r.name,
                        &r.key,
                        r.optional,
                        &sources.config_maps,
                    )
                })
            };
            if let Some((kind, name, key, optional, objects)) = keyed {
                match objects.get(name).map(|d| d.get(key)) {
                    Some(Some(v)) => String::from_utf8_lossy(v).into_owned(),
                    _ if optional == Some(true) => continue,
                    None => {
                        return Err(EnvError::MissingObject {
                            container: cname,
                            var: var.name.clone(),
                            kind,
                            name: name.clone(),
                        });
                    }
                    Some(None) => {
                        return Err(EnvError::MissingKey {
                            container: cname,
                            var: var.name.clone(),
                            kind,
                            name: name.clone(),
                            key: key.clone(),
                        });
                    }
                }
            } else if let Some(f) = &from.field_ref {
                field_ref(pod, &f.field_path).ok_or_else(|| EnvError::Unsupported {
                    container: cname.clone(),
                    var: var.name.clone(),
                    what: format!("fieldRef {}", f.field_path),
                })?
            } else {
                return Err(EnvError::Unsupported {
                    container: cname,
                    var: var.name.clone(),
                    what: "resourceFieldRef".into(),
                });
            }
        } else {
            let defined = env.clone();
            expand(var.value.as_deref().unwrap_or(""), &|n| {
                defined.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
            })
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// `command` and `args` of `container` expanded against `env`.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    items.iter().map(|s| expand(s, &lookup)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n| m.get(n).cloned()
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let l = vars(&[("A", "x"), ("B", "y")]);
        assert_eq!(expand("$(A)-$(B)", &l), "x-y");
        assert_eq!(expand("$$(A)", &l), "$(A)");
        assert_eq!(expand("$(UNDEFINED)", &l), "$(UNDEFINED)");
        assert_eq!(expand("$(A", &l), "$(A");
        assert_eq!(expand("cost $5 and $", &l), "cost $5 and $");
        assert_eq!(expand("$$$(A)", &l), "$x");
        assert_eq!(expand("", &l), "");
    }

    fn pod_with(container: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [container]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.secrets.insert(
            "creds".into(),
            [("user".to_string(), b"alice".to_vec())].into(),
        );
        s.config_maps.insert(
            "cfg".into(),
            [
                ("LEVEL".to_string(), b"debug".to_vec()),
                ("MODE".to_string(), b"fast".to_vec()),
            ]
            .into(),
        );
        s
    }

    #[test]
    fn env_resolves_refs_fields_and_earlier_vars() {
        let (pod, c) = pod_with(json!({
            "name": "c", "image": "i",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "GREETING", "value": "hi $(USER) on $(POD) ($(CFG_MODE)) $(LATER)"},
                {"name": "LATER", "value": "z"},
                {"name": "CFG_LEVEL", "value": "info"}
            ]
        }));
        let env = container_env(&pod, &c, &sources()).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("USER"), Some("alice"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("GREETING"), Some("hi alice on p (fast) $(LATER)"));
        // env overrides envFrom.
        assert_eq!(get("CFG_LEVEL"), Some("info"));
        assert_eq!(
            expand_all(&["echo $(GREETING)".into()], &env),
            ["echo hi alice on p (fast) $(LATER)"]
        );
    }

    #[test]
    fn missing_references_are_named_errors_unless_optional() {
        let (pod, c) = pod_with(json!({
            "name": "c", "image": "i",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]
        }));
        assert_eq!(
            container_env(&pod, &c, &sources()).unwrap_err(),
            EnvError::MissingObject {
                container: "c".into(),
                var: "X".into(),
                kind: "secret",
                name: "nope".into()
            }
        );
        let (pod, c) = pod_with(json!({
            "name": "c", "image": "i",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]
        }));
        let err = container_env(&pod, &c, &sources()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "env X of container c: key k not found in configmap cfg"
        );
        let (pod, c) = pod_with(json!({
            "name": "c", "image": "i",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}}]
        }));
        assert!(container_env(&pod, &c, &sources()).unwrap().is_empty());
    }
}
