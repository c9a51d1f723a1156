//! The `registries.conf` the builder hands to Buildah (via `CONTAINERS_REGISTRIES_CONF`):
//! docker.io mirrors (werf's `--container-registry-mirror`) and plain-HTTP registries.

use std::fmt::Write as _;

/// A docker.io mirror parsed from the job's `registryMirrors` entry: the shared werf
/// model's strict parser (the operator refuses a bad entry before any pod).
pub use kiln_crds::werf::mirror::{MirrorError, RegistryMirror as Mirror};

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
