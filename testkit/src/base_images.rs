//! Offline base images: `busybox` for linux/amd64 and linux/arm64 built from Debian's
//! `busybox-static` with `buildah from scratch`, pushed with a two-platform manifest list to
//! a (test) registry. Nothing comes from the internet.
//!
//! The amd64 binary is the installed `/bin/busybox`; the arm64 one comes from the
//! `busybox-static:arm64` .deb cached under `$KILN_CACHE_DIR/debs` (put there by
//! `hack/setup.d/20-buildah-qemu.sh`, or downloaded here with `apt-get download` when the
//! machine has the arm64 architecture enabled).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The amd64 busybox installed by Debian's `busybox-static`.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// `PATH` set in the images, as in Docker Hub's busybox.
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// References of the pushed base images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImages {
    /// `HOST/REPOSITORY:latest`: the manifest list with both platforms.
    pub list: String,
    /// `HOST/REPOSITORY:amd64`: the linux/amd64 image.
    pub amd64: String,
    /// `HOST/REPOSITORY:arm64`: the linux/arm64 image.
    pub arm64: String,
}

/// The cache directory for slow downloads: `$KILN_CACHE_DIR`, else `$HOME/.cache/kiln`
/// (as `hack/setup.sh`), else `kiln-cache` in the temporary directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/kiln"),
        None => std::env::temp_dir().join("kiln-cache"),
    }
}

/// Builds busybox images for linux/amd64 and linux/arm64 and pushes them, plus a manifest
/// list of both, to `registry` (`host:port`, plain HTTP) as `REPOSITORY:amd64`,
/// `REPOSITORY:arm64` and `REPOSITORY:latest`. Use `library/busybox` as the repository to
/// let the registry stand in as a docker.io mirror for `FROM busybox`.
///
/// Uses a private Buildah store (vfs) in a temporary directory, removed afterwards. Errors
/// name the missing package or the failing command.
pub fn push_busybox(registry: &str, repository: &str) -> anyhow::Result<BaseImages> {
    let tmp = tempfile::Builder::new()
        .prefix("kiln-base-images-")
        .tempdir()?;
    let arm64_busybox = arm64_busybox(tmp.path())?;
    let buildah = Store::new(tmp.path());
    let applets = applets()?;
    let repo = format!("{registry}/{repository}");
    let images = BaseImages {
        list: format!("{repo}:latest"),
        amd64: format!("{repo}:amd64"),
        arm64: format!("{repo}:arm64"),
    };
    for (arch, binary, reference) in [
        ("amd64", Path::new(HOST_BUSYBOX), &images.amd64),
        ("arm64", arm64_busybox.as_path(), &images.arm64),
    ] {
        let image = buildah.busybox_image(arch, binary, &applets)?;
        buildah.run(&[
            "push",
            "--quiet",
            "--tls-verify=false",
            &image,
            &format!("docker://{reference}"),
        ])?;
    }
    let list = "kiln-base-busybox-list";
    buildah.run(&["manifest", "create", list])?;
    for reference in [&images.amd64, &images.arm64] {
        buildah.run(&[
            "manifest",
            "add",
            "--tls-verify=false",
            list,
            &format!("docker://{reference}"),
        ])?;
    }
    buildah.run(&[
        "manifest",
        "push",
        "--quiet",
        "--all",
        "--tls-verify=false",
        list,
        &format!("docker://{}", images.list),
    ])?;
    Ok(images)
}

/// The arm64 busybox binary, unpacked into `dir` from the cached .deb.
pub fn arm64_busybox(dir: &Path) -> anyhow::Result<PathBuf> {
    let deb = arm64_deb()?;
    let root = dir.join("busybox-arm64");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    let binary = root.join("bin/busybox");
    if !binary.is_file() {
        bail!("{} has no bin/busybox", deb.display());
    }
    Ok(binary)
}

/// The cached `busybox-static_*_arm64.deb`, downloaded into the cache first if missing.
fn arm64_deb() -> anyhow::Result<PathBuf> {
    let debs = cache_dir().join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let find = || -> anyhow::Result<Option<PathBuf>> {
        for entry in std::fs::read_dir(&debs)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if name.starts_with("busybox-static_") && name.ends_with("_arm64.deb") {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    if let Some(deb) = find()? {
        return Ok(deb);
    }
    run(Command::new("apt-get")
        .args(["download", "-q", "busybox-static:arm64"])
        .current_dir(&debs))
    .context(
        "downloading busybox-static:arm64 (run hack/setup.sh: it enables the arm64 architecture)",
    )?;
    find()?.with_context(|| format!("apt-get download left no arm64 .deb in {}", debs.display()))
}

/// Applet names of the host busybox (`busybox --list`); the arm64 package is the same
/// version, so the list fits both.
fn applets() -> anyhow::Result<Vec<String>> {
    let out = run(Command::new(HOST_BUSYBOX).arg("--list"))
        .context("listing busybox applets (install busybox-static)")?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
        .map(str::to_owned)
        .collect())
}

/// A private Buildah store.
struct Store {
    global: Vec<String>,
}

impl Store {
    fn new(dir: &Path) -> Self {
        Store {
            global: vec![
                "--root".into(),
                dir.join("root").display().to_string(),
                "--runroot".into(),
                dir.join("runroot").display().to_string(),
                "--storage-driver".into(),
                "vfs".into(),
            ],
        }
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("buildah")
            .args(&self.global)
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot"))
    }

    /// A busybox image for `arch` with every applet linked into /bin; returns its ID.
    fn busybox_image(
        &self,
        arch: &str,
        busybox: &Path,
        applets: &[String],
    ) -> anyhow::Result<String> {
        let container = self.run(&["from", "--quiet", "scratch"])?.trim().to_owned();
        let root = PathBuf::from(self.run(&["mount", &container])?.trim());
        let bin = root.join("bin");
        for dir in ["bin", "etc", "root", "tmp", "var/tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        std::fs::copy(busybox, bin.join("busybox"))
            .with_context(|| format!("copying {}", busybox.display()))?;
        for applet in applets {
            let link = bin.join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", &link)?;
            }
        }
        use std::os::unix::fs::PermissionsExt;
        for tmp in ["tmp", "var/tmp"] {
            std::fs::set_permissions(root.join(tmp), std::fs::Permissions::from_mode(0o1777))?;
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
        std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
        self.run(&["umount", &container])?;
        self.run(&[
            "config",
            "--os",
            "linux",
            "--arch",
            arch,
            "--env",
            &format!("PATH={IMAGE_PATH}"),
            "--cmd",
            "[\"sh\"]",
            &container,
        ])?;
        let id = self.run(&[
            "commit", "--quiet", "--rm", "--format", "docker", &container,
        ])?;
        Ok(id.trim().to_owned())
    }
}

/// Runs a command, returning stdout; the error carries the command and its stderr.
fn run(command: &mut Command) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::TestRegistry;

    #[test]
    fn arm64_busybox_runs_under_qemu() {
        crate::qemu::ensure_aarch64().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let binary = arm64_busybox(tmp.path()).unwrap();
        let out = run(Command::new(&binary).args(["uname", "-m"])).unwrap();
        assert_eq!(out.trim(), "aarch64");
    }

    #[test]
    fn pushes_both_platforms_and_a_manifest_list() {
        let registry = TestRegistry::start().unwrap();
        let images = push_busybox(registry.address(), "library/busybox").unwrap();
        assert_eq!(
            images.list,
            format!("{}/library/busybox:latest", registry.address())
        );
        let raw = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}", images.list),
        ]))
        .unwrap();
        let list: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let mut platforms: Vec<String> = list["manifests"]
            .as_array()
            .expect("a manifest list")
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        platforms.sort();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
        let config = run(Command::new("skopeo").args([
            "inspect",
            "--config",
            "--tls-verify=false",
            &format!("docker://{}", images.arm64),
        ]))
        .unwrap();
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    }
}
