//! The `registries.conf` the builder hands to Buildah (via `CONTAINERS_REGISTRIES_CONF`):
//! docker.io mirrors (werf's `--container-registry-mirror`) and plain-HTTP registries.

use std::fmt::Write as _;

/// A docker.io mirror parsed from the job's `registryMirrors` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port][/path]` without a scheme.
    pub location: String,
    /// True for an `http://` mirror: reached without TLS.
    pub insecure: bool,
}

/// Why a mirror entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MirrorError {
    /// Empty, or a scheme other than `http://`/`https://`, or characters TOML would need
    /// escaped.
    #[error(
        "registry mirror {0:?}: expected host[:port][/path], optionally prefixed by http:// or https://"
    )]
    Invalid(String),
}

impl Mirror {
    /// Parses `mirror.gcr.io`, `https://mirror.gcr.io`, `http://127.0.0.1:5000`; a trailing
    /// `/` is dropped.
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
        if location.is_empty() || location.contains("://") || !location.chars().all(clean) {
            return Err(invalid());
        }
        Ok(Mirror {
            location: location.to_owned(),
            insecure,
        })
    }
}

/// Renders a registries.conf (v2 format) where unqualified names resolve on docker.io,
/// docker.io is tried through `mirrors` in order before itself, and each of
/// `insecure_registries` (`host[:port]`) is reached over plain HTTP. Short-name mode is
/// permissive so that no prompt is ever attempted in a pod.
pub fn registries_conf(mirrors: &[Mirror], insecure_registries: &[String]) -> String {
    let mut conf = String::from(
        "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n",
    );
    if !mirrors.is_empty() {
        conf.push_str("\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n");
        for mirror in mirrors {
            let _ = write!(
                conf,
                "\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = {}\n",
                mirror.location, mirror.insecure
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for host in insecure_registries {
        // containers/image refuses a file with two [[registry]] entries for one location.
        if host == "docker.io" || !seen.insert(host.as_str()) {
            continue;
        }
        let _ = write!(
            conf,
            "\n[[registry]]\nlocation = \"{host}\"\ninsecure = true\n"
        );
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_schemes() {
        assert_eq!(
            Mirror::parse("mirror.gcr.io").unwrap(),
            Mirror {
                location: "mirror.gcr.io".into(),
                insecure: false
            }
        );
        assert_eq!(
            Mirror::parse("https://mirror.gcr.io/").unwrap(),
            Mirror {
                location: "mirror.gcr.io".into(),
                insecure: false
            }
        );
        assert_eq!(
            Mirror::parse("http://127.0.0.1:5000").unwrap(),
            Mirror {
                location: "127.0.0.1:5000".into(),
                insecure: true
            }
        );
    }

    #[test]
    fn bad_mirrors_are_refused_by_name() {
        for bad in ["", "ftp://x", "http://", "a\"b", "x y"] {
            let err = Mirror::parse(bad).unwrap_err();
            assert_eq!(err, MirrorError::Invalid(bad.into()));
        }
        assert!(
            Mirror::parse("ftp://x")
                .unwrap_err()
                .to_string()
                .contains("\"ftp://x\"")
        );
    }

    #[test]
    fn conf_lists_mirrors_in_order_and_insecure_hosts() {
        let mirrors = [
            Mirror::parse("http://127.0.0.1:5000").unwrap(),
            Mirror::parse("mirror.gcr.io").unwrap(),
        ];
        let insecure = ["127.0.0.1:6000".to_owned(), "127.0.0.1:6000".to_owned()];
        let conf = registries_conf(&mirrors, &insecure);
        let expected = "unqualified-search-registries = [\"docker.io\"]\n\
short-name-mode = \"permissive\"\n\
\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n\
\n[[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n\
\n[[registry.mirror]]\nlocation = \"mirror.gcr.io\"\ninsecure = false\n\
\n[[registry]]\nlocation = \"127.0.0.1:6000\"\ninsecure = true\n";
        assert_eq!(conf, expected);
    }

    #[test]
    fn conf_without_mirrors_has_no_docker_io_entry() {
        let conf = registries_conf(&[], &[]);
        assert!(!conf.contains("[[registry]]"), "{conf}");
    }
}
