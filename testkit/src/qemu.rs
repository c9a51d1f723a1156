//! QEMU user emulation for other platforms: registers Debian's `qemu-aarch64` interpreter
//! with the kernel's binfmt_misc so that arm64 binaries (e.g. a `RUN` in a linux/arm64
//! build) run on an amd64 host.
//!
//! Needs root and `qemu-user-static`. Idempotent and safe to call from tests running in
//! parallel: an already mounted binfmt_misc or an already registered interpreter is fine.

use std::path::Path;

use anyhow::{Context, bail};

/// Where the kernel exposes binfmt_misc.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Debian's registration line for qemu-aarch64 (flags `OPF`: `F` opens the interpreter at
/// registration time, so it also works inside chroots such as Buildah's).
pub const QEMU_AARCH64_CONF: &str = "/usr/lib/binfmt.d/qemu-aarch64.conf";

/// Makes sure arm64 ELF binaries run through QEMU: mounts binfmt_misc if needed and
/// registers `qemu-aarch64` unless an entry of that name exists. Errors name the file or
/// command that failed (not root, qemu-user-static missing, registration refused).
pub fn ensure_aarch64() -> anyhow::Result<()> {
    ensure_binfmt_mounted()?;
    let entry = Path::new(BINFMT_DIR).join("qemu-aarch64");
    if !entry.exists() {
        let conf = std::fs::read_to_string(QEMU_AARCH64_CONF)
            .with_context(|| format!("reading {QEMU_AARCH64_CONF} (install qemu-user-static)"))?;
        let line = registration_line(&conf)
            .with_context(|| format!("{QEMU_AARCH64_CONF} has no registration line"))?;
        let register = Path::new(BINFMT_DIR).join("register");
        if let Err(error) = std::fs::write(&register, line.as_bytes()) {
            // Another test may have registered it in the meantime (EEXIST).
            if !entry.exists() {
                return Err(error).with_context(|| format!("writing {}", register.display()));
            }
        }
    }
    let status =
        std::fs::read_to_string(&entry).with_context(|| format!("reading {}", entry.display()))?;
    if status.lines().next() != Some("enabled") {
        bail!(
            "{} is registered but not enabled:\n{status}",
            entry.display()
        );
    }
    Ok(())
}

/// Whether binfmt_misc is mounted and `qemu-aarch64` registered and enabled, without
/// changing anything.
pub fn aarch64_registered() -> bool {
    std::fs::read_to_string(Path::new(BINFMT_DIR).join("qemu-aarch64"))
        .map(|s| s.lines().next() == Some("enabled"))
        .unwrap_or(false)
}

fn ensure_binfmt_mounted() -> anyhow::Result<()> {
    let register = Path::new(BINFMT_DIR).join("register");
    if register.exists() {
        return Ok(());
    }
    let out = std::process::Command::new("mount")
        .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR])
        .output()
        .context("running mount")?;
    // A concurrent mount by another test is success too.
    if !out.status.success() && !register.exists() {
        bail!(
            "mount -t binfmt_misc binfmt_misc {BINFMT_DIR}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The first line of a binfmt.d file that is neither empty nor a comment.
pub fn registration_line(conf: &str) -> Option<&str> {
    conf.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_line_skips_comments() {
        let conf = "# comment\n\n:qemu-aarch64:M::\\x7fELF:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n";
        assert_eq!(
            registration_line(conf),
            Some(":qemu-aarch64:M::\\x7fELF:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF")
        );
        assert_eq!(registration_line("# only\n"), None);
    }

    #[test]
    fn ensure_is_idempotent() {
        ensure_aarch64().expect("first registration");
        ensure_aarch64().expect("second call is a no-op");
        assert!(aarch64_registered());
    }
}
