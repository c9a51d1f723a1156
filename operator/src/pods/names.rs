//! Names, labels and annotations of builder pods.
//!
//! A builder pod's name is a pure function of its ImageBuild (uid), image, platform and the
//! stage digests it builds, so a restarted operator computes the same name and finds (adopts)
//! the pod it created before instead of starting a second one.

use sha2::{Digest, Sha256};

/// Label: name of the ImageBuild that owns the pod (hashed when longer than a label value).
pub const LABEL_IMAGEBUILD: &str = "kiln.dev/imagebuild";
/// Label: werf image name, label-safe.
pub const LABEL_IMAGE: &str = "kiln.dev/image";
/// Label: platform with `/` replaced by `-` (`linux-arm64`).
pub const LABEL_PLATFORM: &str = "kiln.dev/platform";
/// Label marking every object Kiln creates for a build; value [`COMPONENT_BUILDER`].
pub const LABEL_COMPONENT: &str = "kiln.dev/component";
/// Value of [`LABEL_COMPONENT`] on builder pods and their job ConfigMaps.
pub const COMPONENT_BUILDER: &str = "builder";
/// Standard label naming the managing tool.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Prefix of the per-stage labels: `stage.kiln.dev/<digest>: "true"` for each stage digest
/// the pod builds, so any operator can find a live pod building a digest with a label
/// selector (`stage.kiln.dev/<digest>`), across ImageBuilds.
pub const STAGE_LABEL_PREFIX: &str = "stage.kiln.dev/";
/// Annotation: the stage digests the pod builds, comma-separated, in build order.
pub const ANNOTATION_STAGE_DIGESTS: &str = "kiln.dev/stage-digests";
/// Annotation: the stages storage the pod publishes to (a digest names a stage only within
/// one stages storage).
pub const ANNOTATION_REPO: &str = "kiln.dev/repo";
/// Annotation: exact werf image name.
pub const ANNOTATION_IMAGE: &str = "kiln.dev/image";
/// Annotation: exact platform.
pub const ANNOTATION_PLATFORM: &str = "kiln.dev/platform";

/// Longest Kubernetes label value and DNS-1123 label (pod names are kept to it too).
pub const MAX_LABEL: usize = 63;

/// The stage label key of a digest.
pub fn stage_label(digest: &str) -> String {
    format!("{STAGE_LABEL_PREFIX}{digest}")
}

/// Lowercase hex of SHA-256 over `parts` separated by NUL bytes, cut to `len` characters.
fn short_hash(parts: &[&str], len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..len]
        .to_owned()
}

/// `s` reduced to `[a-z0-9-]`, runs of other characters turned into one `-`, no leading or
/// trailing `-`, at most `max` characters.
fn dns_part(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    out.trim_end_matches('-').to_owned()
}

/// A valid label value for `value`: itself when it already is one (≤ 63 characters of
/// `[A-Za-z0-9._-]`, alphanumeric at both ends), else a cleaned prefix plus a hash.
pub fn label_value(value: &str) -> String {
    let valid = value.len() <= MAX_LABEL
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && value
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_none_or(|b| b.is_ascii_alphanumeric());
    if valid {
        return value.to_owned();
    }
    let prefix = dns_part(value, MAX_LABEL - 11);
    let hash = short_hash(&[value], 10);
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// The platform as a label value: `linux/arm64/v8` → `linux-arm64-v8`.
pub fn platform_label(platform: &str) -> String {
    label_value(&platform.replace('/', "-"))
}

/// Name of the builder pod (and of its job ConfigMap): `<build>-<image>-<arch>-<hash>`,
/// a DNS-1123 label of at most 63 characters. The hash covers the ImageBuild uid, image,
/// platform and stage digests, so it is stable across operator restarts and differs for a
/// different set of stages.
pub fn builder_pod_name(
    build_name: &str,
    build_uid: &str,
    image: &str,
    platform: &str,
    digests: &[String],
) -> String {
    let mut parts = vec![build_uid, image, platform];
    parts.extend(digests.iter().map(String::as_str));
    let hash = short_hash(&parts, 10);
    let arch = dns_part(platform.split('/').nth(1).unwrap_or(platform), 8);
    let image = dns_part(image, 16);
    // 63 - hash (10) - arch - image - 3 separators.
    let room = MAX_LABEL - 10 - arch.len() - image.len() - 3;
    let build = dns_part(build_name, room.max(1));
    [build, image, arch, hash]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns1123_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn pod_names_are_short_stable_and_distinct() {
        let d = vec!["a".repeat(56)];
        let n = builder_pod_name("shop-7f3c2a1", "uid-1", "frontend", "linux/arm64", &d);
        assert!(n.starts_with("shop-7f3c2a1-frontend-arm64-"), "{n}");
        assert_eq!(n.len(), "shop-7f3c2a1-frontend-arm64-".len() + 10);
        assert!(dns1123_label(&n));
        // Same inputs, same name: an operator restart adopts the pod.
        assert_eq!(
            n,
            builder_pod_name("shop-7f3c2a1", "uid-1", "frontend", "linux/arm64", &d)
        );
        // Another ImageBuild object with the same name (recreated), another pod.
        assert_ne!(
            n,
            builder_pod_name("shop-7f3c2a1", "uid-2", "frontend", "linux/arm64", &d)
        );
        assert_ne!(
            n,
            builder_pod_name(
                "shop-7f3c2a1",
                "uid-1",
                "frontend",
                "linux/arm64",
                &["b".repeat(56)]
            )
        );
        let long = builder_pod_name(
            &"Very.Long_Build.Name".repeat(10),
            "u",
            "frontend/stage/assets with spaces",
            "linux/amd64",
            &d,
        );
        assert!(dns1123_label(&long), "{long}");
    }

    #[test]
    fn label_values() {
        assert_eq!(label_value("backend"), "backend");
        assert_eq!(label_value(""), "");
        let v = label_value("frontend/stage/build");
        assert!(v.starts_with("frontend-stage-build-"), "{v}");
        assert_eq!(v.len(), "frontend-stage-build-".len() + 10);
        let long = label_value(&"x".repeat(80));
        assert_eq!(long.len(), 63);
        assert_eq!(platform_label("linux/arm64/v8"), "linux-arm64-v8");
        assert_eq!(stage_label("abc"), "stage.kiln.dev/abc");
        // The longest stage label key name part (56 hex) fits the 63-character limit.
        assert!(stage_label(&"f".repeat(56)).len() - STAGE_LABEL_PREFIX.len() <= 63);
    }
}
