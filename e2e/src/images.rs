//! Kiln's own images for the real node: `kiln-builder:dev` made from the workspace's
//! `kiln-builder` binary by `hack/images.sh` (Debian root filesystem + the binary), as an
//! OCI archive the node imports. The archive is cached next to the binary, keyed by the
//! binary's SHA-256, so only the first stack after a rebuild of the binary pays for it.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// The name the builder image carries (what `kiln-builder:dev` means to containerd).
pub const BUILDER_IMAGE_NAME: &str = "docker.io/library/kiln-builder:dev";
/// The name the operator image carries.
pub const OPERATOR_IMAGE_NAME: &str = "docker.io/library/kiln-operator:dev";

/// The repository's `hack/images.sh`.
fn images_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/images.sh")
}

/// An OCI archive of image `kind` (`builder` or `operator`) holding the workspace binary
/// `kiln-<kind>` built next to the running executable; made by `hack/images.sh` when the
/// binary changed since the last one.
///
/// Errors: the binary is not built, or the script fails (its output is in the error).
pub fn workspace_image(kind: &str) -> anyhow::Result<PathBuf> {
    let binary_name = format!("kiln-{kind}");
    let binary = crate::stack::workspace_binary(&binary_name)
        .with_context(|| format!("{binary_name} is not built: `cargo build -p {binary_name}`"))?;
    image_from_binary(kind, &binary)
}

/// [`workspace_image`] from the given `binary`.
///
/// Errors: the binary cannot be read, or the script fails.
pub fn image_from_binary(kind: &str, binary: &Path) -> anyhow::Result<PathBuf> {
    let binary_name = format!("kiln-{kind}");
    let bytes = std::fs::read(binary).with_context(|| format!("reading {binary:?}"))?;
    let hash = Sha256::digest(&bytes);
    let key: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dir = binary
        .parent()
        .context("binary without a directory")?
        .join("kiln-images");
    std::fs::create_dir_all(&dir)?;
    let archive = dir.join(format!("{binary_name}-{key}.oci.tar"));
    if archive.is_file() {
        return Ok(archive);
    }
    // Parallel tests wait for one build instead of making the same archive twice.
    let lock = std::fs::File::create(dir.join(format!(".{binary_name}.lock")))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if archive.is_file() {
        return Ok(archive);
    }
    let name = if kind == "builder" {
        BUILDER_IMAGE_NAME
    } else {
        OPERATOR_IMAGE_NAME
    };
    let out = std::process::Command::new("bash")
        .arg(images_script())
        .arg(kind)
        .arg(binary)
        .arg(&archive)
        .arg(name)
        .output()
        .context("running hack/images.sh")?;
    if !out.status.success() {
        bail!(
            "hack/images.sh {kind} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(archive)
}
