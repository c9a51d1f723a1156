//! A `spec.registryMirrors` entry: a docker.io mirror (werf `--container-registry-mirror`).
//! Parsed strictly, once: the spec check refuses a bad entry before any pod, the operator
//! reads base images through the same mirrors, and the builder writes them into Buildah's
//! `registries.conf`.

/// A docker.io mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryMirror {
    /// `host[:port][/path]` without a scheme or trailing `/`.
    pub location: String,
    /// True for an `http://` mirror: reached without TLS.
    pub insecure: bool,
}

/// Why a mirror entry was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MirrorError {
    /// Empty, or a scheme other than `http://`/`https://`, or characters a registry host or
    /// path cannot have (and TOML would need escaped).
    #[error(
        "registry mirror {0:?}: expected host[:port][/path], optionally prefixed by http:// or https://"
    )]
    Invalid(String),
}

impl RegistryMirror {
    /// Parses `mirror.gcr.io`, `https://mirror.gcr.io`, `http://127.0.0.1:5000`,
    /// `registry.example.org/dockerhub`; a trailing `/` is dropped.
    ///
    /// Errors: [`MirrorError::Invalid`] naming the entry.
    pub fn parse(entry: &str) -> Result<Self, MirrorError> {
        let invalid = || MirrorError::Invalid(entry.to_owned());
        let (rest, insecure) = if let Some(rest) = entry.strip_prefix("http://") {
            (rest, true)
        } else if let Some(rest) = entry.strip_prefix("https://") {
            (rest, false)
        } else {
            (entry, false)
        };
        let location = rest.trim_end_matches('/');
        let clean = |c: char| c.is_ascii_alphanumeric() || "-._:/".contains(c);
        if location.is_empty()
            || location.contains("://")
            || location.starts_with('/')
            || !location.chars().all(clean)
        {
            return Err(invalid());
        }
        Ok(RegistryMirror {
            location: location.to_owned(),
            insecure,
        })
    }

    /// The registry host (`host[:port]`).
    pub fn host(&self) -> &str {
        self.location
            .split_once('/')
            .map_or(self.location.as_str(), |(h, _)| h)
    }

    /// The path under the host that docker.io repositories are mirrored at (`""` for none).
    pub fn path(&self) -> &str {
        self.location.split_once('/').map_or("", |(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_ports_and_paths() {
        let m = RegistryMirror::parse("https://mirror.gcr.io/").unwrap();
        assert_eq!((m.location.as_str(), m.insecure), ("mirror.gcr.io", false));
        let m = RegistryMirror::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            (m.host(), m.path(), m.insecure),
            ("127.0.0.1:5000", "", true)
        );
        let m = RegistryMirror::parse("registry.example.org/hub/library").unwrap();
        assert_eq!(
            (m.host(), m.path()),
            ("registry.example.org", "hub/library")
        );
    }

    #[test]
    fn refuses_what_is_not_a_registry() {
        for bad in [
            "",
            "ftp://x",
            "http://",
            "a b",
            "x\"y",
            "/path",
            "https://a://b",
        ] {
            assert_eq!(
                RegistryMirror::parse(bad),
                Err(MirrorError::Invalid(bad.to_owned())),
                "{bad:?}"
            );
        }
    }
}
