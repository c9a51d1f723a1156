//! Where the control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler) and the kubelet built by `hack/setup.d/30-control-plane.sh` live.
//!
//! The setup script builds into `$KILN_CACHE_DIR/control-plane/<pin-hash>/bin`, where
//! `<pin-hash>` is the first 16 hex digits of the SHA-256 of `hack/control-plane/`'s
//! `build.sh`, `etcd/go.mod`, `etcd/go.sum`, `kubernetes/go.mod`, `kubernetes/go.sum`
//! concatenated in that order (`hack/control-plane/pin-hash.sh`). This module computes
//! the same key from the checkout, so a pin change without a re-run of setup is an
//! error naming the missing directory instead of a test against stale binaries.
//!
//! kubectl is built the same way by `hack/setup.d/35-kubectl.sh`, from its own wrapper
//! module `hack/kubectl` (so its dependencies leave the control plane's key alone), into
//! `$KILN_CACHE_DIR/kubectl/<kubectl-pin-hash>/kubectl`; [`kubectl`] finds it.

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
pub const REQUIRED: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
];

/// Environment variable naming a kubectl binary to use instead of the cached one (used
/// as is, no pin check).
pub const KUBECTL_ENV: &str = "KILN_KUBECTL";

/// Files of `hack/kubectl` whose bytes, concatenated in this order, make up kubectl's
/// pin hash (`hack/kubectl/pin-hash.sh`).
pub const KUBECTL_PIN_FILES: [&str; 4] = ["build.sh", "go.mod", "go.sum", "main.go"];

/// Errors locating the control-plane binaries.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// A pin file in `hack/control-plane` or `hack/kubectl` could not be read.
    #[error("reading pin file {path}: {source}")]
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
         holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet"
    )]
    Missing {
        /// Which binary.
        binary: String,
        /// The directory that was searched.
        dir: PathBuf,
    },
    /// No kubectl binary at the expected path (setup was not run for these pins, or
    /// `KILN_KUBECTL` names a missing file).
    #[error(
        "kubectl not found at {path}: run hack/setup.sh (hack/setup.d/35-kubectl.sh \
         builds it), or point {KUBECTL_ENV} at a kubectl binary"
    )]
    MissingKubectl {
        /// The path that was checked.
        path: PathBuf,
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

/// The kubectl binary: `$KILN_KUBECTL` if set, else
/// `$KILN_CACHE_DIR/kubectl/<kubectl-pin-hash>/kubectl` for this checkout's
/// `hack/kubectl` pins. Errors with [`BinariesError::MissingKubectl`] if that file is
/// absent — tests fail loudly rather than skip or pick up a stale or foreign kubectl
/// from `PATH`.
pub fn kubectl() -> Result<PathBuf, BinariesError> {
    let path = match std::env::var_os(KUBECTL_ENV) {
        Some(p) => PathBuf::from(p),
        None => cache_dir()?
            .join("kubectl")
            .join(kubectl_pin_hash(&kubectl_pins_dir())?)
            .join("kubectl"),
    };
    kubectl_at(path)
}

/// Uses `path` as kubectl, checking that it is a file.
pub fn kubectl_at(path: PathBuf) -> Result<PathBuf, BinariesError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(BinariesError::MissingKubectl { path })
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

/// `hack/kubectl` of the checkout this crate was compiled from.
pub fn kubectl_pins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/kubectl")
}

/// The 16-hex-digit cache key of the control-plane pins in `dir` (see the module docs).
pub fn pin_hash(dir: &Path) -> Result<String, BinariesError> {
    hash_files(dir, &PIN_FILES)
}

/// The 16-hex-digit cache key of the kubectl pins in `dir`: the first 8 bytes of the
/// SHA-256 of [`KUBECTL_PIN_FILES`] concatenated, in hex.
pub fn kubectl_pin_hash(dir: &Path) -> Result<String, BinariesError> {
    hash_files(dir, &KUBECTL_PIN_FILES)
}

/// First 8 bytes, in lower-case hex, of the SHA-256 of `files` (relative to `dir`)
/// concatenated in order — what `sha256sum | cut -c1-16` prints in the pin-hash scripts.
fn hash_files(dir: &Path, files: &[&str]) -> Result<String, BinariesError> {
    let mut hasher = Sha256::new();
    for f in files {
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
    fn kubectl_pin_hash_is_sha256_of_the_concatenated_files() {
        let dir = tempfile::tempdir().unwrap();
        // Concatenation "abcd": sha256("abcd") =
        // 88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589
        for (f, c) in KUBECTL_PIN_FILES.iter().zip(["a", "b", "c", "d"]) {
            std::fs::write(dir.path().join(f), c).unwrap();
        }
        assert_eq!(kubectl_pin_hash(dir.path()).unwrap(), "88d4266fd4e6338d");
    }

    #[test]
    fn kubectl_pin_hash_agrees_with_the_setup_script() {
        let dir = kubectl_pins_dir();
        let out = std::process::Command::new("bash")
            .arg(dir.join("pin-hash.sh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert_eq!(kubectl_pin_hash(&dir).unwrap(), script.trim());
    }

    #[test]
    fn missing_kubectl_pin_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.sh"), "").unwrap();
        let err = kubectl_pin_hash(dir.path()).unwrap_err().to_string();
        assert!(err.contains("go.mod"), "{err}");
    }

    #[test]
    fn missing_kubectl_names_the_path_and_the_setup_script() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubectl");
        let err = kubectl_at(path.clone()).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("35-kubectl.sh"), "{err}");
        assert!(err.contains(KUBECTL_ENV), "{err}");
        std::fs::write(&path, "").unwrap();
        assert_eq!(kubectl_at(path.clone()).unwrap(), path);
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
