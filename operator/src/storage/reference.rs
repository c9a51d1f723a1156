//! Repository references (`registry/repository`), tag validation, image references split
//! into repository and tag, and the registries a docker.io image is read through
//! (`spec.registryMirrors`).
//!
//! A stages storage, final repo, secondary repo or cache repo is written the way werf's
//! `--repo` is: `HOST[:PORT]/PATH` (`registry.example.org/shop`, `127.0.0.1:5000/shop`).
//! A first path component without `.` or `:` and other than `localhost` is not a host, so
//! `shop` and `library/shop` name Docker Hub repositories, as `docker pull` reads them.

use std::fmt;
use std::str::FromStr;

use kiln_crds::werf::RegistryMirror;

use super::error::StorageError;

/// The registry host Docker Hub references resolve to when no host is written.
pub const DOCKER_HUB: &str = "docker.io";

/// A repository in a registry: `registry` is `host[:port]` (no scheme), `repository` the
/// slash-separated path (`shop`, `team/shop`). Display gives `registry/repository`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoRef {
    registry: String,
    repository: String,
}

impl RepoRef {
    /// Builds a reference from its parts, validating both (errors:
    /// [`StorageError::InvalidRepo`]).
    pub fn new(registry: &str, repository: &str) -> Result<Self, StorageError> {
        let input = format!("{registry}/{repository}");
        validate_registry(registry).map_err(|reason| invalid(&input, reason))?;
        validate_repository(repository).map_err(|reason| invalid(&input, reason))?;
        Ok(RepoRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
        })
    }

    /// `host[:port]` of the registry, as written (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/busybox`, `shop`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Whether the registry host is a loopback address (`localhost`, `127.x.x.x`,
    /// `[::1]`); such registries are reached over plain HTTP by default.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }

    /// The image reference `registry/repository:tag` (tag validated by [`validate_tag`]).
    pub fn tagged(&self, tag: &str) -> Result<oci_client::Reference, StorageError> {
        validate_tag(tag).map_err(|reason| StorageError::InvalidTag {
            repo: self.to_string(),
            tag: tag.to_owned(),
            reason,
        })?;
        Ok(oci_client::Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            tag.to_owned(),
        ))
    }

    /// The image reference `registry/repository@digest` (`sha256:<64 hex>`).
    pub fn by_digest(&self, digest: &str) -> oci_client::Reference {
        oci_client::Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_owned(),
        )
    }

    /// A reference that only names the repository (tag `latest`), for calls that need a
    /// repository but no manifest (blob uploads, tag listing, authentication).
    pub(crate) fn repo_only(&self) -> oci_client::Reference {
        oci_client::Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            "latest".to_owned(),
        )
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

impl FromStr for RepoRef {
    type Err = StorageError;

    /// Parses `HOST[:PORT]/PATH` or a Docker Hub short name; a tag or digest suffix
    /// (`:tag`, `@sha256:…`) is refused because a repo option names a repository only.
    fn from_str(input: &str) -> Result<Self, StorageError> {
        if input.is_empty() {
            return Err(invalid(input, "empty repository reference".into()));
        }
        if input.contains('@') {
            return Err(invalid(
                input,
                "a repo names a repository, not an image digest".into(),
            ));
        }
        let (registry, path) = match input.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            Some(_) => (DOCKER_HUB.to_owned(), input.to_owned()),
            None => (DOCKER_HUB.to_owned(), format!("library/{input}")),
        };
        if path.contains(':') {
            return Err(invalid(
                input,
                "a repo names a repository, not a tagged image".into(),
            ));
        }
        validate_registry(&registry).map_err(|reason| invalid(input, reason))?;
        validate_repository(&path).map_err(|reason| invalid(input, reason))?;
        Ok(RepoRef {
            registry,
            repository: path,
        })
    }
}

fn invalid(input: &str, reason: String) -> StorageError {
    StorageError::InvalidRepo {
        input: input.to_owned(),
        reason,
    }
}

fn validate_registry(registry: &str) -> Result<(), String> {
    if registry.is_empty() {
        return Err("empty registry host".into());
    }
    if registry.contains("://") {
        return Err("write the registry host without a scheme".into());
    }
    let ok = registry
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !ok {
        return Err(format!("invalid registry host {registry:?}"));
    }
    Ok(())
}

/// Repository path grammar of the distribution spec:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
fn validate_repository(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty repository path".into());
    }
    if path.len() > 255 {
        return Err("repository path longer than 255 characters".into());
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(format!(
                "invalid repository path component {component:?}: use lowercase letters, \
                 digits and single '.', '_', '__' or '-' runs between them"
            ));
        }
    }
    Ok(())
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &component[start..i];
        let ok = matches!(run, "." | "_" | "__") || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Checks a tag against the distribution grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
/// Errors name what is wrong.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err("empty tag".into()),
        Some(c) if !(c.is_ascii_alphanumeric() || c == '_') => {
            return Err(format!(
                "tag must start with a letter, digit or '_', not {c:?}"
            ));
        }
        _ => {}
    }
    if tag.len() > 128 {
        return Err(format!(
            "tag is {} characters long, the limit is 128",
            tag.len()
        ));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("tag contains {c:?}"));
    }
    Ok(())
}

/// Whether `host[:port]` names a loopback host.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An image reference split into repository and tag or digest (`latest` when neither).
///
/// Errors: [`StorageError::InvalidRepo`] when the name is not a repository.
pub fn split_reference(reference: &str) -> Result<(RepoRef, String), StorageError> {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let repo = RepoRef::from_str(name)?;
    let at = match (digest, tag) {
        (Some(d), _) => d.to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    Ok((repo, at))
}

/// Where a docker.io repository is read through `mirrors` (`spec.registryMirrors`, parsed
/// by the shared [`RegistryMirror`] rule the spec check and the builder use), in order, then
/// from docker.io itself — the order the builder pulls in. Other registries are read
/// directly. An entry the spec check refuses never gets here.
pub fn mirrored_repos(repo: &RepoRef, mirrors: &[String]) -> Vec<RepoRef> {
    let mut out = Vec::new();
    if repo.registry() == DOCKER_HUB {
        for mirror in mirrors.iter().filter_map(|m| RegistryMirror::parse(m).ok()) {
            let repository = if mirror.path().is_empty() {
                repo.repository().to_owned()
            } else {
                format!("{}/{}", mirror.path(), repo.repository())
            };
            if let Ok(r) = RepoRef::new(mirror.host(), &repository) {
                out.push(r);
            }
        }
    }
    out.push(repo.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_path() {
        let r: RepoRef = "127.0.0.1:5000/team/shop".parse().unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/shop");
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/shop");
        assert!(r.is_loopback());
        let r: RepoRef = "registry.example.org/shop".parse().unwrap();
        assert_eq!(r.registry(), "registry.example.org");
        assert!(!r.is_loopback());
        let r: RepoRef = "localhost/shop".parse().unwrap();
        assert_eq!(r.registry(), "localhost");
    }

    #[test]
    fn docker_hub_short_names() {
        let r: RepoRef = "busybox".parse().unwrap();
        assert_eq!(
            (r.registry(), r.repository()),
            ("docker.io", "library/busybox")
        );
        let r: RepoRef = "team/shop".parse().unwrap();
        assert_eq!((r.registry(), r.repository()), ("docker.io", "team/shop"));
    }

    #[test]
    fn refuses_tags_digests_schemes_and_bad_paths() {
        for bad in [
            "",
            "registry.example.org/shop:latest",
            "registry.example.org/shop@sha256:00",
            "https://registry.example.org/shop",
            "registry.example.org/Shop",
            "registry.example.org/shop/",
            "registry.example.org/a..b",
            "registry.example.org/-a",
        ] {
            let err = bad.parse::<RepoRef>().unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidRepo { ref input, .. } if input == bad),
                "{bad}: {err}"
            );
        }
        assert!(
            "r.example.org/a__b/c-d/e.f/g---h"
                .parse::<RepoRef>()
                .is_ok()
        );
    }

    #[test]
    fn tag_grammar() {
        assert!(validate_tag("latest").is_ok());
        assert!(validate_tag("_x.y-Z").is_ok());
        assert!(validate_tag(&"a".repeat(128)).is_ok());
        assert!(validate_tag(&"a".repeat(129)).is_err());
        assert!(validate_tag("").is_err());
        assert!(validate_tag(".hidden").is_err());
        assert!(validate_tag("-x").is_err());
        assert!(validate_tag("a/b").is_err());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.1.2.3"));
        assert!(is_loopback_host("localhost:5000"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
        assert!(!is_loopback_host("registry.example.org"));
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        let (repo, at) = split_reference("busybox").unwrap();
        assert_eq!(
            (repo.to_string().as_str(), at.as_str()),
            ("docker.io/library/busybox", "latest")
        );
        let (repo, at) = split_reference("127.0.0.1:5000/base/img:1.2").unwrap();
        assert_eq!(
            (repo.to_string().as_str(), at.as_str()),
            ("127.0.0.1:5000/base/img", "1.2")
        );
        let digest = format!("sha256:{}", "f".repeat(64));
        let (repo, at) = split_reference(&format!("alpine:3.20@{digest}")).unwrap();
        assert_eq!(
            (repo.to_string().as_str(), at.as_str()),
            ("docker.io/library/alpine", digest.as_str())
        );
        assert!(split_reference("UPPER/Case").is_err());
    }

    #[test]
    fn docker_hub_images_go_through_the_mirrors_first() {
        let hub = RepoRef::from_str("busybox").unwrap();
        let mirrors = vec![
            "http://127.0.0.1:5000".to_owned(),
            "https://mirror.example.org/hub/".to_owned(),
        ];
        let names: Vec<String> = mirrored_repos(&hub, &mirrors)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "127.0.0.1:5000/library/busybox",
                "mirror.example.org/hub/library/busybox",
                "docker.io/library/busybox",
            ]
        );
        let other = RepoRef::from_str("quay.io/org/img").unwrap();
        assert_eq!(mirrored_repos(&other, &mirrors), vec![other]);
    }
}
