//! What a container runs on the host instead of its image.
//!
//! The emulator pulls no images: a container's `command` + `args` run as a host
//! process. An [`ImageMap`] entry gives an image's *entrypoint* as a host binary, used
//! when the container has no `command`, and also replaces a `command[0]` that names
//! that binary (by file name, e.g. `/usr/local/bin/kiln-builder` → the workspace's
//! `target/debug/kiln-builder`). Images match by repository, ignoring tag and digest.

use std::path::{Path, PathBuf};

/// Errors turning a container into a host command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageMapError {
    /// Neither `command` nor a mapped entrypoint.
    #[error(
        "container {container}: image {image} has no host entrypoint in the node emulator's \
         image map and the container sets no command"
    )]
    NoEntrypoint {
        /// Container name.
        container: String,
        /// Its image.
        image: String,
    },
}

/// Image repository → host entrypoint binary.
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    entries: Vec<(String, PathBuf)>,
}

/// `registry/repo:tag@digest` → `registry/repo` (a `:` after the last `/` starts the tag;
/// a `:` before it belongs to a registry port).
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].find(':') {
        Some(colon) => &no_digest[..last_slash + colon],
        None => no_digest,
    }
}

impl ImageMap {
    /// An empty map: containers must set `command`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps every tag and digest of `image`'s repository to `entrypoint`.
    pub fn with(mut self, image: &str, entrypoint: impl Into<PathBuf>) -> Self {
        self.entries
            .push((repository(image).to_owned(), entrypoint.into()));
        self
    }

    /// The host entrypoint for `image`, if mapped.
    pub fn entrypoint(&self, image: &str) -> Option<&Path> {
        let repo = repository(image);
        self.entries
            .iter()
            .find(|(r, _)| r == repo)
            .map(|(_, p)| p.as_path())
    }

    /// The host argv for a container: `command` (or the mapped entrypoint) followed by
    /// `args`, with `command[0]` replaced by the mapped binary when their file names
    /// agree.
    pub fn argv(
        &self,
        container: &str,
        image: &str,
        command: &[String],
        args: &[String],
    ) -> Result<Vec<String>, ImageMapError> {
        let entry = self.entrypoint(image);
        let mut argv: Vec<String> = match (command.first(), entry) {
            (Some(first), Some(bin))
                if Path::new(first).file_name().is_some()
                    && Path::new(first).file_name() == bin.file_name() =>
            {
                std::iter::once(bin.display().to_string())
                    .chain(command[1..].iter().cloned())
                    .collect()
            }
            (Some(_), _) => command.to_vec(),
            (None, Some(bin)) => vec![bin.display().to_string()],
            (None, None) => {
                return Err(ImageMapError::NoEntrypoint {
                    container: container.to_owned(),
                    image: image.to_owned(),
                });
            }
        };
        argv.extend(args.iter().cloned());
        Ok(argv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn repository_strips_tag_and_digest_but_not_port() {
        assert_eq!(repository("busybox"), "busybox");
        assert_eq!(repository("busybox:1.36"), "busybox");
        assert_eq!(
            repository("127.0.0.1:5000/kiln/builder:dev"),
            "127.0.0.1:5000/kiln/builder"
        );
        assert_eq!(
            repository("127.0.0.1:5000/kiln/builder"),
            "127.0.0.1:5000/kiln/builder"
        );
        assert_eq!(
            repository("ghcr.io/kiln/builder@sha256:abc"),
            "ghcr.io/kiln/builder"
        );
    }

    #[test]
    fn argv_uses_mapped_entrypoint_and_replaces_matching_command() {
        let map = ImageMap::new().with("ghcr.io/kiln/builder:latest", "/build/kiln-builder");
        let img = "ghcr.io/kiln/builder:v1";
        assert_eq!(
            map.argv("b", img, &[], &s(&["build", "--job", "/j"]))
                .unwrap(),
            s(&["/build/kiln-builder", "build", "--job", "/j"])
        );
        assert_eq!(
            map.argv("b", img, &s(&["/usr/bin/kiln-builder", "x"]), &s(&["y"]))
                .unwrap(),
            s(&["/build/kiln-builder", "x", "y"])
        );
        assert_eq!(
            map.argv("b", img, &s(&["sh", "-c", "true"]), &[]).unwrap(),
            s(&["sh", "-c", "true"])
        );
    }

    #[test]
    fn unmapped_image_without_command_is_an_error() {
        let err = ImageMap::new()
            .argv("app", "nginx:1", &[], &s(&["-g"]))
            .unwrap_err();
        assert_eq!(
            err,
            ImageMapError::NoEntrypoint {
                container: "app".into(),
                image: "nginx:1".into()
            }
        );
    }
}
