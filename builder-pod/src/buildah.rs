//! Buildah command lines: global storage options, isolation and registry configuration in
//! one place, so that every call of one build sees the same store and registries.
//!
//! Isolation is always `chroot`: it needs no OCI runtime in the builder image and no
//! cgroup setup. `network: none` is therefore made with a fresh network namespace around
//! the step (`unshare -n`, see [`Buildah::command_isolated`]) rather than with Buildah's
//! `--network none`, which chroot isolation refuses.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where fuse-overlayfs is in the builder image (Debian's `fuse-overlayfs` package).
pub const FUSE_OVERLAYFS: &str = "/usr/bin/fuse-overlayfs";

/// The storage drivers a builder pod can use (`KILN_STORAGE_DRIVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageDriver {
    /// Every layer a full copy: slow and disk-hungry, works everywhere Buildah runs.
    Vfs,
    /// Kernel overlayfs: cheap layers; needs mount rights and storage not on overlayfs.
    Overlay,
    /// overlay through the `fuse-overlayfs` program: needs `/dev/fuse`, no kernel
    /// overlay mount rights.
    FuseOverlayfs,
}

impl StorageDriver {
    /// The [`Storage`] of this driver with `root` and `runroot`.
    pub fn storage(self, root: Option<PathBuf>, runroot: Option<PathBuf>) -> Storage {
        let (driver, mount_program) = match self {
            StorageDriver::Vfs => ("vfs", None),
            StorageDriver::Overlay => ("overlay", None),
            StorageDriver::FuseOverlayfs => ("overlay", Some(PathBuf::from(FUSE_OVERLAYFS))),
        };
        Storage {
            driver: Some(driver.to_owned()),
            mount_program,
            root,
            runroot,
        }
    }
}

/// Where Buildah keeps images and containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Storage {
    /// Storage driver (`vfs`, `overlay`); `None` = Buildah's configured default.
    pub driver: Option<String>,
    /// overlay's `mount_program` (fuse-overlayfs); `None` = kernel overlay.
    pub mount_program: Option<PathBuf>,
    /// `--root`: image and container store; `None` = Buildah's default.
    pub root: Option<PathBuf>,
    /// `--runroot`: state files; `None` = Buildah's default.
    pub runroot: Option<PathBuf>,
}

/// How to call Buildah for one build.
#[derive(Debug, Clone)]
pub struct Buildah {
    program: PathBuf,
    storage: Storage,
    registries_conf: Option<PathBuf>,
    auth_file: Option<PathBuf>,
}

impl Buildah {
    /// `program` is the buildah binary (usually `buildah` on `PATH`).
    pub fn new(program: impl Into<PathBuf>, storage: Storage) -> Self {
        Buildah {
            program: program.into(),
            storage,
            registries_conf: None,
            auth_file: None,
        }
    }

    /// Uses this registries.conf for every call (`CONTAINERS_REGISTRIES_CONF`).
    pub fn with_registries_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.registries_conf = Some(path.into());
        self
    }

    /// Uses this docker config.json for registry credentials (`REGISTRY_AUTH_FILE`).
    pub fn with_auth_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth_file = Some(path.into());
        self
    }

    /// The registries.conf in use, if any.
    pub fn registries_conf(&self) -> Option<&Path> {
        self.registries_conf.as_deref()
    }

    /// The credentials file in use, if any.
    pub fn auth_file(&self) -> Option<&Path> {
        self.auth_file.as_deref()
    }

    /// `buildah GLOBAL-OPTIONS ARGS...` with the build's environment.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(&self.program);
        self.prepare(&mut command, args);
        command
    }

    /// Like [`Buildah::command`] but run in a new, empty network namespace
    /// (`unshare -n buildah ...`): only a loopback device that is down, so every connection
    /// fails — also to the pod's own loopback listeners. Images the step needs must already
    /// be in the store.
    pub fn command_isolated<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new("unshare");
        command.arg("-n").arg(&self.program);
        self.prepare(&mut command, args);
        command
    }

    fn prepare<I, S>(&self, command: &mut Command, args: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        command.args(self.global_args()).args(args);
        command.env("BUILDAH_ISOLATION", "chroot");
        if let Some(conf) = &self.registries_conf {
            command.env("CONTAINERS_REGISTRIES_CONF", conf);
        }
        if let Some(auth) = &self.auth_file {
            command.env("REGISTRY_AUTH_FILE", auth);
        }
    }

    /// `--root`, `--runroot`, `--storage-driver` as configured.
    pub fn global_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(root) = &self.storage.root {
            args.push("--root".to_owned());
            args.push(root.display().to_string());
        }
        if let Some(runroot) = &self.storage.runroot {
            args.push("--runroot".to_owned());
            args.push(runroot.display().to_string());
        }
        if let Some(driver) = &self.storage.driver {
            args.push("--storage-driver".to_owned());
            args.push(driver.clone());
        }
        if let Some(program) = &self.storage.mount_program {
            args.push("--storage-opt".to_owned());
            args.push(format!("overlay.mount_program={}", program.display()));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_overlayfs_is_overlay_with_its_mount_program() {
        let args = |driver: StorageDriver| {
            Buildah::new("buildah", driver.storage(None, None)).global_args()
        };
        assert_eq!(args(StorageDriver::Vfs), ["--storage-driver", "vfs"]);
        assert_eq!(
            args(StorageDriver::Overlay),
            ["--storage-driver", "overlay"]
        );
        assert_eq!(
            args(StorageDriver::FuseOverlayfs),
            [
                "--storage-driver",
                "overlay",
                "--storage-opt",
                "overlay.mount_program=/usr/bin/fuse-overlayfs"
            ]
        );
    }

    #[test]
    fn global_args_and_environment() {
        let buildah = Buildah::new(
            "buildah",
            StorageDriver::Vfs.storage(Some("/s/root".into()), Some("/s/run".into())),
        )
        .with_registries_conf("/w/registries.conf")
        .with_auth_file("/w/auth.json");
        let command = buildah.command(["images"]);
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--root",
                "/s/root",
                "--runroot",
                "/s/run",
                "--storage-driver",
                "vfs",
                "images"
            ]
        );
        let env: Vec<_> = command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.unwrap().to_string_lossy().into_owned(),
                )
            })
            .collect();
        assert!(env.contains(&("BUILDAH_ISOLATION".into(), "chroot".into())));
        assert!(env.contains(&(
            "CONTAINERS_REGISTRIES_CONF".into(),
            "/w/registries.conf".into()
        )));
        assert!(env.contains(&("REGISTRY_AUTH_FILE".into(), "/w/auth.json".into())));
    }

    #[test]
    fn isolated_command_runs_buildah_under_unshare_n() {
        let buildah = Buildah::new("/usr/bin/buildah", Storage::default());
        let command = buildah.command_isolated(["run", "ctr", "--", "true"]);
        assert_eq!(command.get_program(), "unshare");
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["-n", "/usr/bin/buildah", "run", "ctr", "--", "true"]);
    }
}
