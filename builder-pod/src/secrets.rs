//! Build secrets in the builder (werf.yaml `secrets:`, buildkit's `RUN
//! --mount=type=secret`): the job's secrets as files, the `buildah bud --secret` flags of a
//! non-staged build, and a staged RUN's secret mount as a read-only bind mount of the file
//! (Buildah 1.28's `buildah run` knows neither `--secret` nor `--mount=type=secret`).
//!
//! A secret never enters an image: `buildah bud` mounts it for the RUN only; for a staged
//! RUN the caller removes the mount point Buildah created in the container
//! ([`new_paths`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use kiln_crds::job::JobSecret;

/// What to tell a user whose `buildah bud` output `tail` shows Buildah 1.28's crash on a
/// bare `required` option of `RUN --mount=type=secret` (it reads the option's value
/// without checking there is one, and panics); `None` for any other failure.
pub fn bud_crash_hint(tail: &str) -> Option<&'static str> {
    (tail.contains("getSecretMount") && tail.contains("index out of range")).then_some(
        "Buildah crashed on a bare `required` in RUN --mount=type=secret; write `required=true`",
    )
}

/// Where buildkit puts a secret without `target`: `/run/secrets/ID`.
pub const DEFAULT_SECRETS_DIR: &str = "/run/secrets";

/// Why the job's secrets could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A secret's file (a mounted Secret key) is missing or unreadable.
    #[error("build secret {id:?}: file {path}: {source}")]
    File {
        /// The secret id.
        id: String,
        /// The file the job names.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `value` secret could not be written to its 0400 file.
    #[error("build secret {id:?}: writing {path}: {source}")]
    Write {
        /// The secret id.
        id: String,
        /// The file being written.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a `RUN --mount=type=secret` cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretMountError {
    /// The mount names neither `id` nor `target`, so no secret can be chosen.
    #[error("RUN --mount={0}: a secret mount needs id or target")]
    NoId(String),
    /// An option Kiln does not know.
    #[error("RUN --mount={spec}: option {option:?} is not supported for secret mounts")]
    Unsupported {
        /// The whole mount flag.
        spec: String,
        /// The option.
        option: String,
    },
    /// `required` and the job has no secret of that id.
    #[error(
        "RUN --mount={spec}: secret {id:?} is required but the build has none (werf.yaml `secrets:` of the image)"
    )]
    Missing {
        /// The whole mount flag.
        spec: String,
        /// The secret id.
        id: String,
    },
    /// `uid`, `gid` or `mode` is not a number (`mode` octal, as in buildkit).
    #[error("RUN --mount={spec}: {option}={value:?} is not a valid number")]
    BadNumber {
        /// The whole mount flag.
        spec: String,
        /// `uid`, `gid` or `mode`.
        option: &'static str,
        /// The value as written.
        value: String,
    },
    /// The copy of the secret with the requested owner and mode could not be made.
    #[error("RUN --mount={spec}: preparing the secret file: {message}")]
    Copy {
        /// The whole mount flag.
        spec: String,
        /// The I/O error.
        message: String,
    },
    /// A relative target (buildkit resolves it against the working directory; werf
    /// projects use absolute ones).
    #[error("RUN --mount={0}: the secret target must be an absolute path")]
    RelativeTarget(String),
}

/// The job's secrets as files, by id: mounted Secret keys as they are, `value` secrets
/// written to 0400 files.
#[derive(Debug, Clone, Default)]
pub struct SecretFiles {
    files: BTreeMap<String, PathBuf>,
    /// Where value files and owner/mode copies go.
    dir: PathBuf,
}

/// Owner and mode of a secret file in the container: buildkit's `uid`, `gid`, `mode`
/// (default 0, 0, 0400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            uid: 0,
            gid: 0,
            mode: 0o400,
        }
    }
}

impl SecretFiles {
    /// Checks each `path` secret is a readable file and writes each `value` secret to
    /// `dir/N` (N = its index in the job), mode 0400, created anew.
    ///
    /// Errors: [`SecretError`] naming the secret id and file.
    pub fn prepare(secrets: &[JobSecret], dir: &Path) -> Result<Self, SecretError> {
        let mut files = BTreeMap::new();
        for (index, secret) in secrets.iter().enumerate() {
            let path = match (&secret.path, &secret.value) {
                (Some(path), _) => {
                    std::fs::File::open(path).map_err(|source| SecretError::File {
                        id: secret.id.clone(),
                        path: path.clone(),
                        source,
                    })?;
                    PathBuf::from(path)
                }
                (None, value) => {
                    let path = dir.join(index.to_string());
                    let write_error = |source| SecretError::Write {
                        id: secret.id.clone(),
                        path: path.display().to_string(),
                        source,
                    };
                    std::fs::create_dir_all(dir).map_err(write_error)?;
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o400)
                        .open(&path)
                        .map_err(write_error)?;
                    file.write_all(value.as_deref().unwrap_or_default().as_bytes())
                        .map_err(write_error)?;
                    path
                }
            };
            files.insert(secret.id.clone(), path);
        }
        Ok(SecretFiles {
            files,
            dir: dir.to_owned(),
        })
    }

    /// The file of secret `id` (the builder asks [`SecretFiles::with_attributes`]).
    #[cfg(test)]
    pub fn get(&self, id: &str) -> Option<&Path> {
        self.files.get(id).map(PathBuf::as_path)
    }

    /// The file of secret `id` with owner and mode `attributes`: the file itself for the
    /// defaults (a mounted Secret key or a value file is root's, 0400), else a copy made
    /// once under the secrets directory. `None` when the job has no such secret.
    ///
    /// Errors: the copy cannot be written, chowned or chmodded.
    pub fn with_attributes(
        &self,
        id: &str,
        attributes: Attributes,
    ) -> Option<std::io::Result<PathBuf>> {
        let source = self.files.get(id)?;
        if attributes == Attributes::default() {
            return Some(Ok(source.clone()));
        }
        let Attributes { uid, gid, mode } = attributes;
        let copy = self
            .dir
            .join("attributes")
            .join(format!("{id}.{uid}.{gid}.{mode:o}"));
        Some((|| {
            if !copy.exists() {
                std::fs::create_dir_all(copy.parent().expect("a joined path has a parent"))?;
                std::fs::copy(source, &copy)?;
                std::os::unix::fs::chown(&copy, Some(uid), Some(gid))?;
                std::fs::set_permissions(
                    &copy,
                    std::os::unix::fs::PermissionsExt::from_mode(mode),
                )?;
            }
            Ok(copy)
        })())
    }

    /// `buildah bud` flags making every secret available to `RUN --mount=type=secret`:
    /// `--secret id=ID,src=FILE` each, in id order.
    pub fn bud_flags(&self) -> Vec<String> {
        self.files
            .iter()
            .flat_map(|(id, path)| {
                [
                    "--secret".to_owned(),
                    format!("id={id},src={}", path.display()),
                ]
            })
            .collect()
    }
}

/// A secret file to bind read-only at `target` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    /// The file in the builder.
    pub source: PathBuf,
    /// Absolute path in the container.
    pub target: String,
}

/// Whether a `--mount` flag (as written after `--mount=`) is a secret mount.
pub fn is_secret_mount(spec: &str) -> bool {
    spec.split(',').any(|field| field.trim() == "type=secret")
}

/// The bind mount for `RUN --mount=<spec>` with `type=secret`, following buildkit: `id`
/// defaults to the base name of `target`, `target` (also `dst`, `destination`) to
/// `/run/secrets/ID`; a secret the build lacks is skipped unless `required` (also
/// `required=true`); `uid`, `gid` (decimal) and `mode` (octal) give the file's owner and
/// mode (default root's, 0400), through a copy made here ([`SecretFiles::with_attributes`]).
/// `None` = skipped.
///
/// Errors: [`SecretMountError`] for a missing required secret, no id, a relative target,
/// a malformed number, a copy that cannot be made, or an unknown option.
pub fn secret_mount(
    spec: &str,
    files: &SecretFiles,
) -> Result<Option<SecretMount>, SecretMountError> {
    let mut id = None;
    let mut target = None;
    let mut required = false;
    let mut attributes = Attributes::default();
    let number = |option: &'static str, value: &str, radix: u32| {
        u32::from_str_radix(value, radix).map_err(|_| SecretMountError::BadNumber {
            spec: spec.to_owned(),
            option,
            value: value.to_owned(),
        })
    };
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "type" => {}
            "id" => id = Some(value.to_owned()),
            "target" | "dst" | "destination" => target = Some(value.to_owned()),
            "required" => required = value.is_empty() || value == "true",
            "uid" => attributes.uid = number("uid", value, 10)?,
            "gid" => attributes.gid = number("gid", value, 10)?,
            "mode" => attributes.mode = number("mode", value, 8)?,
            _ => {
                return Err(SecretMountError::Unsupported {
                    spec: spec.to_owned(),
                    option: key.to_owned(),
                });
            }
        }
    }
    let id = match (id.filter(|i| !i.is_empty()), &target) {
        (Some(id), _) => id,
        (None, Some(target)) => Path::new(target)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| SecretMountError::NoId(spec.to_owned()))?,
        (None, None) => return Err(SecretMountError::NoId(spec.to_owned())),
    };
    let target = target.unwrap_or_else(|| format!("{DEFAULT_SECRETS_DIR}/{id}"));
    if !target.starts_with('/') {
        return Err(SecretMountError::RelativeTarget(spec.to_owned()));
    }
    match files.with_attributes(&id, attributes) {
        Some(Ok(source)) => Ok(Some(SecretMount { source, target })),
        Some(Err(e)) => Err(SecretMountError::Copy {
            spec: spec.to_owned(),
            message: e.to_string(),
        }),
        None if required => Err(SecretMountError::Missing {
            spec: spec.to_owned(),
            id,
        }),
        None => Ok(None),
    }
}

/// The paths a bind mount at `target` would create in the container root `rootfs`: the
/// target and each missing parent directory, deepest first, as host paths. Buildah leaves
/// them behind as an empty file and directories; removing them after the RUN keeps the
/// layer free of them, as buildkit's is. Nothing is followed through a symlink (it could
/// point out of the container): below a symlink the answer is empty.
pub fn new_paths(rootfs: &Path, target: &str) -> Vec<PathBuf> {
    let mut created = Vec::new();
    let mut current = rootfs.to_owned();
    for component in Path::new(target).components() {
        let Component::Normal(part) = component else {
            if matches!(component, Component::ParentDir) {
                return Vec::new();
            }
            continue;
        };
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => return Vec::new(),
            Ok(_) => {}
            Err(_) => created.push(current.clone()),
        }
    }
    created.reverse();
    created
}

/// Removes what [`new_paths`] listed: files, then directories if empty. Errors are
/// ignored: a path the RUN removed or filled itself stays as the RUN left it.
pub fn remove_new_paths(paths: &[PathBuf]) {
    for path in paths {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let _ = std::fs::remove_dir(path);
            }
            Ok(meta) if meta.len() == 0 => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn files(dir: &Path) -> SecretFiles {
        let mounted = dir.join("mounted");
        std::fs::write(&mounted, "from-a-secret").unwrap();
        SecretFiles::prepare(
            &[
                JobSecret {
                    id: "aws".into(),
                    path: Some(mounted.display().to_string()),
                    value: None,
                },
                JobSecret {
                    id: "token".into(),
                    path: None,
                    value: Some("s3cr3t".into()),
                },
            ],
            &dir.join("values"),
        )
        .unwrap()
    }

    #[test]
    fn values_are_written_0400_and_paths_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let token = f.get("token").unwrap();
        assert_eq!(token, dir.path().join("values/1"));
        assert_eq!(std::fs::read_to_string(token).unwrap(), "s3cr3t");
        let mode = std::fs::metadata(token).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        assert_eq!(f.get("aws").unwrap(), dir.path().join("mounted"));
        assert_eq!(
            f.bud_flags(),
            vec![
                "--secret".to_owned(),
                format!("id=aws,src={}", dir.path().join("mounted").display()),
                "--secret".to_owned(),
                format!("id=token,src={}", dir.path().join("values/1").display()),
            ]
        );
    }

    #[test]
    fn a_missing_secret_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = SecretFiles::prepare(
            &[JobSecret {
                id: "aws".into(),
                path: Some("/nonexistent/kiln/secret".into()),
                value: None,
            }],
            dir.path(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("build secret \"aws\": file /nonexistent/kiln/secret:"),
            "{err}"
        );
    }

    #[test]
    fn mount_defaults_follow_buildkit() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let token = dir.path().join("values/1");
        // id only: /run/secrets/ID.
        assert_eq!(
            secret_mount("type=secret,id=token", &f).unwrap(),
            Some(SecretMount {
                source: token.clone(),
                target: "/run/secrets/token".into()
            })
        );
        // target only: the id is its base name.
        assert_eq!(
            secret_mount("type=secret,target=/etc/app/token,required", &f).unwrap(),
            Some(SecretMount {
                source: token.clone(),
                target: "/etc/app/token".into()
            })
        );
        assert_eq!(
            secret_mount("type=secret,id=aws,dst=/root/.aws/credentials", &f)
                .unwrap()
                .unwrap()
                .target,
            "/root/.aws/credentials"
        );
        // Not provided and not required: skipped, as buildkit does.
        assert_eq!(secret_mount("type=secret,id=other", &f).unwrap(), None);
        assert_eq!(
            secret_mount("type=secret,id=other,required=false", &f).unwrap(),
            None
        );
    }

    #[test]
    fn owner_and_mode_options_get_a_copy_made_once() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let spec = "type=secret,id=token,uid=1000,gid=1001,mode=0440";
        let mount = secret_mount(spec, &f).unwrap().unwrap();
        assert_eq!(
            mount.source,
            dir.path().join("values/attributes/token.1000.1001.440")
        );
        assert_eq!(std::fs::read_to_string(&mount.source).unwrap(), "s3cr3t");
        let meta = std::fs::metadata(&mount.source).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1000, 1001, 0o440)
        );
        // Asked again (another RUN): the same copy.
        assert_eq!(
            secret_mount(spec, &f).unwrap().unwrap().source,
            mount.source
        );
        // The defaults spelt out need no copy.
        assert_eq!(
            secret_mount("type=secret,id=token,uid=0,gid=0,mode=400", &f)
                .unwrap()
                .unwrap()
                .source,
            dir.path().join("values/1")
        );
    }

    #[test]
    fn bad_secret_mounts_are_named() {
        let f = SecretFiles::default();
        assert_eq!(
            secret_mount("type=secret,id=npm,required=true", &f).unwrap_err(),
            SecretMountError::Missing {
                spec: "type=secret,id=npm,required=true".into(),
                id: "npm".into()
            }
        );
        assert_eq!(
            secret_mount("type=secret", &f).unwrap_err(),
            SecretMountError::NoId("type=secret".into())
        );
        assert_eq!(
            secret_mount("type=secret,id=a,env=A", &f).unwrap_err(),
            SecretMountError::Unsupported {
                spec: "type=secret,id=a,env=A".into(),
                option: "env".into()
            }
        );
        assert_eq!(
            secret_mount("type=secret,id=a,mode=0999", &f).unwrap_err(),
            SecretMountError::BadNumber {
                spec: "type=secret,id=a,mode=0999".into(),
                option: "mode",
                value: "0999".into()
            }
        );
        assert_eq!(
            secret_mount("type=secret,id=a,target=rel/a", &f).unwrap_err(),
            SecretMountError::RelativeTarget("type=secret,id=a,target=rel/a".into())
        );
        let text = secret_mount("type=secret,id=npm,required", &f)
            .unwrap_err()
            .to_string();
        assert!(text.contains("secret \"npm\" is required"), "{text}");
    }

    #[test]
    fn the_bare_required_crash_gets_a_hint() {
        let tail = "STEP 2/5: RUN --mount=type=secret,id=t,required true\npanic: runtime error: index out of range [1] with length 1\n\ngoroutine 8 [running]:\ngithub.com/containers/buildah.(*Builder).getSecretMount(0xc0000fbc00)";
        assert!(bud_crash_hint(tail).unwrap().contains("required=true"));
        assert_eq!(
            bud_crash_hint("Error: building at STEP \"RUN false\": exit status 1"),
            None
        );
    }

    #[test]
    fn only_secret_mounts_are_recognised() {
        assert!(is_secret_mount("type=secret,id=a"));
        assert!(is_secret_mount("id=a,type=secret"));
        assert!(!is_secret_mount("type=cache,target=/secret"));
        assert!(!is_secret_mount("type=bind,source=type=secret"));
    }

    #[test]
    fn new_paths_lists_missing_parts_deepest_first_and_stops_at_symlinks() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        assert_eq!(
            new_paths(root.path(), "/run/secrets/token"),
            vec![
                root.path().join("run/secrets/token"),
                root.path().join("run/secrets"),
            ]
        );
        std::fs::create_dir_all(root.path().join("run/secrets")).unwrap();
        std::fs::write(root.path().join("run/secrets/token"), "").unwrap();
        assert!(new_paths(root.path(), "/run/secrets/token").is_empty());
        // A symlink could lead out of the container: nothing below it is touched.
        std::os::unix::fs::symlink("/", root.path().join("link")).unwrap();
        assert!(new_paths(root.path(), "/link/tmp/x").is_empty());

        // Removal: empty file and empty dirs go, a filled file stays.
        let listed = new_paths(root.path(), "/etc/app/token");
        std::fs::create_dir_all(root.path().join("etc/app")).unwrap();
        std::fs::write(root.path().join("etc/app/token"), "").unwrap();
        remove_new_paths(&listed);
        assert!(!root.path().join("etc").exists());
        let listed = new_paths(root.path(), "/opt/kept");
        std::fs::create_dir_all(root.path().join("opt")).unwrap();
        std::fs::write(root.path().join("opt/kept"), "written by RUN").unwrap();
        remove_new_paths(&listed);
        assert!(root.path().join("opt/kept").exists());
    }
}
