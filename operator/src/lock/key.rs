//! Names of stage locks and where their leases live.
//!
//! Reproduces werf v2's Kubernetes synchronization naming (`werf: pkg/storage/synchronization/
//! lock_manager/kubernetes.go`) and lockgate's annotation key (`lockgate: pkg/distributed_locker/
//! optimistic_locking_storage_base_backend.go`), so that Kiln and a werf CLI run with
//! `--synchronization kubernetes://NAMESPACE` contend for the same annotations.

use sha3::{Digest, Sha3_224};

use super::error::LockError;

/// Prefix of every lease annotation key; the rest is the SHA3-224 of the lock name.
pub const ANNOTATION_PREFIX: &str = "lockgate.io/";

/// Name of the ConfigMap holding a project's leases: `werf-<project>`.
///
/// Errors: [`LockError::InvalidProject`] when the result is not a valid ConfigMap name
/// (a DNS-1123 subdomain: at most 253 characters of `a-z`, `0-9`, `-`, `.`, starting and
/// ending with an alphanumeric). werf validates project names the same way before it gets here.
pub fn configmap_name(project: &str) -> Result<String, LockError> {
    let name = format!("werf-{project}");
    let invalid = |reason: &str| LockError::InvalidProject {
        project: project.to_owned(),
        reason: reason.to_owned(),
    };
    if project.is_empty() {
        return Err(invalid("the project name is empty"));
    }
    if name.len() > 253 {
        return Err(invalid(
            "ConfigMap name werf-<project> is longer than 253 characters",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(invalid(&format!(
            "character {c:?} is not allowed in a ConfigMap name (lowercase letters, digits, '-' and '.')"
        )));
    }
    if !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("a ConfigMap name must end with a letter or digit"));
    }
    Ok(name)
}

/// Lock name werf's Kubernetes lock manager uses for a stage: `<project>/stage/<stage digest>`.
///
/// (werf's local-file and HTTP lockers use `<project>.<digest>` instead; only the Kubernetes
/// form shares a store with Kiln.)
pub fn stage_lock_name(project: &str, stage_digest: &str) -> String {
    format!("{project}/stage/{stage_digest}")
}

/// Annotation key of a lock's lease: `lockgate.io/` + lowercase hex SHA3-224 of the lock name
/// (56 hex characters), as lockgate's `keyName` computes it.
pub fn annotation_key(lock_name: &str) -> String {
    let digest = Sha3_224::digest(lock_name.as_bytes());
    let mut key = String::with_capacity(ANNOTATION_PREFIX.len() + 56);
    key.push_str(ANNOTATION_PREFIX);
    for byte in digest {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";

    #[test]
    fn stage_lock_name_is_project_stage_digest() {
        assert_eq!(
            stage_lock_name("myproj", DIGEST),
            "myproj/stage/e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe"
        );
    }

    #[test]
    fn annotation_key_matches_independent_sha3_224() {
        // Expected values computed with Python: hashlib.sha3_224(name.encode()).hexdigest().
        assert_eq!(
            annotation_key(&stage_lock_name("myproj", DIGEST)),
            "lockgate.io/b9ec7098e7775d13438172a23ba9c57eedc503162bae7d72f70f159e"
        );
        assert_eq!(
            annotation_key(""),
            "lockgate.io/6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"
        );
    }

    #[test]
    fn configmap_name_is_werf_dash_project() {
        assert_eq!(configmap_name("myproj").unwrap(), "werf-myproj");
        assert_eq!(configmap_name("shop.v2").unwrap(), "werf-shop.v2");
    }

    #[test]
    fn configmap_name_rejects_names_kubernetes_would_refuse() {
        for (project, needle) in [
            ("", "empty"),
            ("Shop", "'S'"),
            ("shop_app", "'_'"),
            ("shop-", "end with"),
            (&"a".repeat(249), "253"),
        ] {
            let err = configmap_name(project).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, LockError::InvalidProject { .. }), "{text}");
            assert!(text.contains(needle), "{project:?}: {text}");
        }
        // 248 characters + "werf-" = 253: still valid.
        assert!(configmap_name(&"a".repeat(248)).is_ok());
    }
}
