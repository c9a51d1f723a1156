//! Where the control-plane binaries (etcd, kube-apiserver, kube-controller-manager)
//! built by `hack/setup.d/30-control-plane.sh` live.
//!
//! The setup script builds into `$KILN_CACHE_DIR/control-plane/<pin-hash>/bin`, where
//! `<pin-hash>` is the first 16 hex digits of the SHA-256 of `hack/control-plane/`'s
//! `build.sh`, `etcd/go.mod`, `etcd/go.sum`, `kubernetes/go.mod`, `kubernetes/go.sum`
//! concatenated in that order (`hack/control-plane/pin-hash.sh`). This module computes
//! the same key from the checkout, so a pin change without a re-run of setup is an
//! error naming the missing directory instead of a test against stale binaries.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Environment variable overriding the binary directory (used as is, no pin check).
pub const BIN_DIR_ENV: &str = "KILN_CONTROL_PLANE_BIN_DIR";

/// Files whose bytes, concatenated in this order, make up the pin hash.
pub const PIN_FILES: [&str; 5] = [
    "build.sh",
    "etcd/go.mod",
    "etcd/go.sum",
    "kubernetes/go.mod",
    "kubernetes/go.sum",
];

/// The binaries a control plane needs.
pub const REQUIRED: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

/// Errors locating the control-plane binaries.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// A pin file in `hack/control-plane` could not be read.
    #[error("reading control-plane pin file {path}: {source}")]
    PinFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The binary directory lacks a binary (setup was not run for these pins).
    #[error(
        "control-plane binary {binary} not found in {dir}: run hack/setup.sh \
         (hack/setup.d/30-control-plane.sh builds it), or point {BIN_DIR_ENV} at a directory \
         holding etcd, kube-apiserver and kube-controller-manager"
    )]
    Missing {
        /// Which binary.
        binary: String,
        /// The directory that was searched.
        dir: PathBuf,
    },
    /// Neither `KILN_CACHE_DIR` nor `HOME` is set.
    #[error("cannot locate the Kiln cache: neither KILN_CACHE_DIR nor HOME is set")]
    NoCacheDir,
}

/// The verified location of etcd, kube-apiserver and kube-controller-manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// Directory holding the three binaries.
    pub dir: PathBuf,
}

impl Binaries {
    /// Finds the binaries: `$KILN_CONTROL_PLANE_BIN_DIR` if set, else the pin-hash
    /// directory under the cache. Errors if any of [`REQUIRED`] is absent — the e2e
    /// tests fail loudly rather than skip.
    pub fn locate() -> Result<Self, BinariesError> {
        let dir = match std::env::var_os(BIN_DIR_ENV) {
            Some(d) => PathBuf::from(d),
            None => cache_dir()?
                .join("control-plane")
                .join(pin_hash(&control_plane_pins_dir())?)
                .join("bin"),
        };
        Self::in_dir(dir)
    }

    /// Uses `dir`, checking that it holds every binary in [`REQUIRED`].
    pub fn in_dir(dir: PathBuf) -> Result<Self, BinariesError> {
        for b in REQUIRED {
            if !dir.join(b).is_file() {
                return Err(BinariesError::Missing {
                    binary: b.to_owned(),
                    dir,
                });
            }
        }
        Ok(Self { dir })
    }

    /// Path of the binary `name` in [`Binaries::dir`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `$KILN_CACHE_DIR`, else `$HOME/.cache/kiln` (same default as `hack/setup.sh`).
pub fn cache_dir() -> Result<PathBuf, BinariesError> {
    if let Some(d) = std::env::var_os("KILN_CACHE_DIR") {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME").ok_or(BinariesError::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache").join("kiln"))
}

/// `hack/control-plane` of the checkout this crate was compiled from.
pub fn control_plane_pins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/control-plane")
}

/// The 16-hex-digit cache key of the pins in `dir` (see the module docs).
pub fn pin_hash(dir: &Path) -> Result<String, BinariesError> {
    let mut hasher = Sha256::new();
    for f in PIN_FILES {
        let path = dir.join(f);
        let bytes = std::fs::read(&path).map_err(|source| BinariesError::PinFile {
            path: path.clone(),
            source,
        })?;
        hasher.update(&bytes);
    }
    let digest = hasher.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_hash_is_sha256_of_the_concatenated_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etcd")).unwrap();
        std::fs::create_dir_all(dir.path().join("kubernetes")).unwrap();
        // Concatenation "abcde": sha256("abcde") =
        // 36bbe50ed96841d10443bcb670d6554f0a34b761be67ec9c4a8ad2c0c44ca42c
        for (f, c) in PIN_FILES.iter().zip(["a", "b", "c", "d", "e"]) {
            std::fs::write(dir.path().join(f), c).unwrap();
        }
        assert_eq!(pin_hash(dir.path()).unwrap(), "36bbe50ed96841d1");
    }

    #[test]
    fn missing_pin_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = pin_hash(dir.path()).unwrap_err().to_string();
        assert!(err.contains("build.sh"), "{err}");
    }

    #[test]
    fn missing_binary_names_it_and_the_setup_script() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd"), "").unwrap();
        let err = Binaries::in_dir(dir.path().to_owned())
            .unwrap_err()
            .to_string();
        assert!(err.contains("kube-apiserver"), "{err}");
        assert!(err.contains("hack/setup.sh"), "{err}");
    }
}
