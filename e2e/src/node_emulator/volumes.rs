//! A pod's volumes as host directories, and each container's mounts of them.
//!
//! Secret and ConfigMap volumes become directories of files (one per key, or per
//! `items` entry, with `defaultMode`/`mode`), emptyDir an empty directory, hostPath the
//! host path itself. The container process sees them at its `volumeMounts` paths
//! through bind mounts in its own mount namespace ([`super::sandbox`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod};

use super::env::Sources;

/// One bind mount for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host path (directory or file).
    pub source: PathBuf,
    /// Path the container sees.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Errors materializing volumes; the kubelet reports these as mount failures
/// (`FailedMount`) and keeps the pod in `ContainerCreating`.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Referenced Secret/ConfigMap is missing and not optional.
    #[error("volume {volume}: {kind} {name} not found")]
    MissingObject {
        /// Volume name.
        volume: String,
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Object name.
        name: String,
    },
    /// An `items` key is missing and the volume is not optional.
    #[error("volume {volume}: key {key} not found in {kind} {name}")]
    MissingKey {
        /// Volume name.
        volume: String,
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The key.
        key: String,
    },
    /// A path escapes its volume (absolute or `..`).
    #[error("volume {volume}: path {path} must be relative and stay inside the volume")]
    BadPath {
        /// Volume name.
        volume: String,
        /// The offending path.
        path: String,
    },
    /// A volume type the emulator does not implement.
    #[error(
        "volume {volume}: only secret, configMap, projected, emptyDir and hostPath volumes are supported by the node emulator"
    )]
    Unsupported {
        /// Volume name.
        volume: String,
    },
    /// A container mounts a volume the pod does not declare.
    #[error("container {container}: volumeMount {volume} names no volume of the pod")]
    UnknownVolume {
        /// Container name.
        container: String,
        /// Volume name.
        volume: String,
    },
    /// Writing the files failed.
    #[error("materializing volume {volume} at {path}: {source}")]
    Io {
        /// Volume name.
        volume: String,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Names of the Secrets and ConfigMaps the pod references (volumes, env, envFrom).
pub fn referenced_objects(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut cms = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (secrets, cms);
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        if let Some(c) = &v.config_map {
            cms.insert(c.name.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                secrets.insert(s.name.clone());
            }
            if let Some(c) = &src.config_map {
                cms.insert(c.name.clone());
            }
        }
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for f in c.env_from.iter().flatten() {
            if let Some(s) = &f.secret_ref {
                secrets.insert(s.name.clone());
            }
            if let Some(m) = &f.config_map_ref {
                cms.insert(m.name.clone());
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(s) = &from.secret_key_ref {
                    secrets.insert(s.name.clone());
                }
                if let Some(m) = &from.config_map_key_ref {
                    cms.insert(m.name.clone());
                }
            }
        }
    }
    (secrets, cms)
}

fn check_relative(volume: &str, path: &str) -> Result<(), VolumeError> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) && !path.is_empty() {
        Ok(())
    } else {
        Err(VolumeError::BadPath {
            volume: volume.to_owned(),
            path: path.to_owned(),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn write_keys(
    volume: &str,
    dir: &Path,
    kind: &'static str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<(), VolumeError> {
    let io = |path: &Path, source| VolumeError::Io {
        volume: volume.to_owned(),
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let Some(data) = data else {
        return if optional {
            Ok(())
        } else {
            Err(VolumeError::MissingObject {
                volume: volume.to_owned(),
                kind,
                name: name.to_owned(),
            })
        };
    };
    let default_mode = default_mode.unwrap_or(0o644);
    let files: Vec<(String, &[u8], i32)> = match items {
        Some(items) => {
            let mut v = Vec::new();
            for it in items {
                match data.get(&it.key) {
                    Some(bytes) => v.push((
                        it.path.clone(),
                        bytes.as_slice(),
                        it.mode.unwrap_or(default_mode),
                    )),
                    None if optional => {}
                    None => {
                        return Err(VolumeError::MissingKey {
                            volume: volume.to_owned(),
                            kind,
                            name: name.to_owned(),
                            key: it.key.clone(),
                        });
                    }
                }
            }
            v
        }
        None => data
            .iter()
            .map(|(k, b)| (k.clone(), b.as_slice(), default_mode))
            .collect(),
    };
    for (rel, bytes, mode) in files {
        check_relative(volume, &rel)?;
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode as u32 & 0o7777))
            .map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// A projected volume: Secret and ConfigMap items, downward-API fields and the
/// ServiceAccount token (fetched beforehand into `sources`), all in one directory.
fn project(
    pod: &Pod,
    volume: &str,
    dir: &Path,
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    sources: &Sources,
) -> Result<(), VolumeError> {
    let io = |path: &Path, source| VolumeError::Io {
        volume: volume.to_owned(),
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    for src in p.sources.iter().flatten() {
        if let Some(s) = &src.secret {
            write_keys(
                volume,
                dir,
                "secret",
                &s.name,
                sources.secrets.get(&s.name),
                s.items.as_ref(),
                p.default_mode,
                s.optional == Some(true),
            )?;
        }
        if let Some(c) = &src.config_map {
            write_keys(
                volume,
                dir,
                "configmap",
                &c.name,
                sources.config_maps.get(&c.name),
                c.items.as_ref(),
                p.default_mode,
                c.optional == Some(true),
            )?;
        }
        if let Some(d) = &src.downward_api {
            for item in d.items.iter().flatten() {
                check_relative(volume, &item.path)?;
                let value = item
                    .field_ref
                    .as_ref()
                    .and_then(|f| super::env::field_ref(pod, &f.field_path))
                    .unwrap_or_default();
                let path = dir.join(&item.path);
                std::fs::write(&path, value).map_err(|e| io(&path, e))?;
            }
        }
        if let Some(t) = &src.service_account_token {
            check_relative(volume, &t.path)?;
            let path = dir.join(&t.path);
            let token = sources.service_account_token.as_deref().unwrap_or_default();
            std::fs::write(&path, token).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}

/// True if a projected volume of `pod` asks for a ServiceAccount token.
pub fn wants_service_account_token(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
        .any(|s| s.service_account_token.is_some())
}

/// Creates every volume of `pod` under `volumes_dir/<volume name>` (hostPath volumes
/// point at the host path) and returns volume name → host path.
pub fn materialize(
    pod: &Pod,
    sources: &Sources,
    volumes_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut out = BTreeMap::new();
    let Some(spec) = &pod.spec else {
        return Ok(out);
    };
    for v in spec.volumes.iter().flatten() {
        let dir = volumes_dir.join(&v.name);
        let path = if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            write_keys(
                &v.name,
                &dir,
                "secret",
                &name,
                sources.secrets.get(&name),
                s.items.as_ref(),
                s.default_mode,
                s.optional == Some(true),
            )?;
            dir
        } else if let Some(c) = &v.config_map {
            write_keys(
                &v.name,
                &dir,
                "configmap",
                &c.name,
                sources.config_maps.get(&c.name),
                c.items.as_ref(),
                c.default_mode,
                c.optional == Some(true),
            )?;
            dir
        } else if let Some(p) = &v.projected {
            project(pod, &v.name, &dir, p, sources)?;
            dir
        } else if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Io {
                volume: v.name.clone(),
                path: dir.clone(),
                source,
            })?;
            dir
        } else if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            if matches!(h.type_.as_deref(), Some("DirectoryOrCreate")) {
                std::fs::create_dir_all(&p).map_err(|source| VolumeError::Io {
                    volume: v.name.clone(),
                    path: p.clone(),
                    source,
                })?;
            }
            p
        } else {
            return Err(VolumeError::Unsupported {
                volume: v.name.clone(),
            });
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// The bind mounts of `container` given the materialized volumes (`subPath` selects a
/// file or directory inside the volume). Secret and ConfigMap volumes are always
/// read-only, as on a kubelet.
pub fn container_mounts(
    pod: &Pod,
    container: &Container,
    volumes: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Mount>, VolumeError> {
    let kinds: BTreeMap<&str, bool> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| {
            (
                v.name.as_str(),
                v.secret.is_some() || v.config_map.is_some(),
            )
        })
        .collect();
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let base = volumes
            .get(&m.name)
            .ok_or_else(|| VolumeError::UnknownVolume {
                container: container.name.clone(),
                volume: m.name.clone(),
            })?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                check_relative(&m.name, sub)?;
                let p = base.join(sub);
                if !p.exists() {
                    // The kubelet creates a missing subPath as a directory.
                    std::fs::create_dir_all(&p).map_err(|source| VolumeError::Io {
                        volume: m.name.clone(),
                        path: p.clone(),
                        source,
                    })?;
                }
                p
            }
            None => base.clone(),
        };
        mounts.push(Mount {
            source,
            target: PathBuf::from(&m.mount_path),
            read_only: m.read_only == Some(true) || kinds.get(m.name.as_str()) == Some(&true),
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.secrets.insert(
            "auth".into(),
            [
                ("user".to_string(), b"alice".to_vec()),
                ("token".to_string(), b"t0k".to_vec()),
            ]
            .into(),
        );
        s.config_maps.insert(
            "job".into(),
            [("job.json".to_string(), b"{}".to_vec())].into(),
        );
        s
    }

    #[test]
    fn secret_configmap_and_emptydir_become_files_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(json!({
            "containers": [{"name": "c", "image": "i", "volumeMounts": [
                {"name": "auth", "mountPath": "/secrets"},
                {"name": "job", "mountPath": "/job", "subPath": "sub"},
                {"name": "scratch", "mountPath": "/scratch"}
            ]}],
            "volumes": [
                {"name": "auth", "secret": {"secretName": "auth", "defaultMode": 0o400,
                    "items": [{"key": "token", "path": "dir/tok"}]}},
                {"name": "job", "configMap": {"name": "job"}},
                {"name": "scratch", "emptyDir": {}}
            ]
        }));
        let vols = materialize(&p, &sources(), dir.path()).unwrap();
        let tok = dir.path().join("auth/dir/tok");
        assert_eq!(std::fs::read(&tok).unwrap(), b"t0k");
        assert_eq!(
            std::fs::metadata(&tok).unwrap().permissions().mode() & 0o777,
            0o400
        );
        // Only the listed item is projected.
        assert!(!dir.path().join("auth/user").exists());
        assert_eq!(
            std::fs::read(dir.path().join("job/job.json")).unwrap(),
            b"{}"
        );
        assert!(dir.path().join("scratch").is_dir());

        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let mounts = container_mounts(&p, &c, &vols).unwrap();
        assert_eq!(
            mounts,
            vec![
                Mount {
                    source: dir.path().join("auth"),
                    target: "/secrets".into(),
                    read_only: true
                },
                Mount {
                    source: dir.path().join("job/sub"),
                    target: "/job".into(),
                    read_only: true
                },
                Mount {
                    source: dir.path().join("scratch"),
                    target: "/scratch".into(),
                    read_only: false
                },
            ]
        );
    }

    #[test]
    fn missing_secret_is_an_error_unless_optional() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(json!({"containers": [], "volumes": [
            {"name": "v", "secret": {"secretName": "nope"}}]}));
        let err = materialize(&p, &sources(), dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "volume v: secret nope not found");
        let p = pod(json!({"containers": [], "volumes": [
            {"name": "v", "secret": {"secretName": "nope", "optional": true}}]}));
        assert!(materialize(&p, &sources(), dir.path()).is_ok());
    }

    #[test]
    fn escaping_item_paths_and_unknown_types_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(json!({"containers": [], "volumes": [
            {"name": "v", "configMap": {"name": "job", "items": [{"key": "job.json", "path": "../x"}]}}]}));
        assert!(matches!(
            materialize(&p, &sources(), dir.path()).unwrap_err(),
            VolumeError::BadPath { .. }
        ));
        let p = pod(json!({"containers": [], "volumes": [
            {"name": "v", "nfs": {"server": "s", "path": "/"}}]}));
        assert!(matches!(
            materialize(&p, &sources(), dir.path()).unwrap_err(),
            VolumeError::Unsupported { .. }
        ));
    }

    #[test]
    fn references_are_collected_from_volumes_and_env() {
        let p = pod(json!({
            "containers": [{"name": "c", "image": "i",
                "envFrom": [{"configMapRef": {"name": "cm1"}}],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "s1"}}]
        }));
        let (s, c) = referenced_objects(&p);
        assert_eq!(s, ["s1".to_string(), "s2".to_string()].into());
        assert_eq!(c, ["cm1".to_string()].into());
    }
}
