//! Fetching the build context: one commit of one git repository, checked out into a
//! directory.
//!
//! Uses the git CLI rather than libgit2: `git fetch --depth 1 URL COMMIT` asks for exactly
//! the one commit (protocol v2 servers serve any reachable commit by hash), so a pod
//! downloads one tree instead of a whole history, and the CLI brings OpenSSH's
//! `known_hosts` checking and HTTP auth without extra code. The builder image carries git
//! anyway.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use kiln_crds::job::{Source, SourceAuth};

use crate::runner::{CommandError, Runner};

/// Why the source could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A credentials file named in the job could not be read.
    #[error("git credentials {path}: {source}")]
    Credentials {
        /// The path from the job.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A git command failed (unreachable URL, unknown commit, refused credentials).
    #[error("fetching {url} at {commit}: {source}")]
    Git {
        /// Repository URL.
        url: String,
        /// Commit asked for.
        commit: String,
        /// The failing git command (boxed to keep results small).
        #[source]
        source: Box<CommandError>,
    },
    /// The checked-out commit is not the one asked for (e.g. an abbreviated hash).
    #[error("fetching {url}: checked out {found} but the job asks for {commit}")]
    WrongCommit {
        /// Repository URL.
        url: String,
        /// Commit asked for.
        commit: String,
        /// Commit found.
        found: String,
    },
}

/// Environment variables that hand credentials to git without putting them on a command
/// line (`ps` shows arguments, not the environment). `scratch` receives a 0600 copy of an
/// SSH key.
pub fn git_auth_env(
    auth: Option<&SourceAuth>,
    scratch: &Path,
) -> Result<Vec<(String, String)>, SourceError> {
    let read = |path: &String| {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|source| SourceError::Credentials {
                path: path.clone(),
                source,
            })
    };
    let mut env = vec![("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned())];
    match auth {
        None => {}
        Some(SourceAuth::Basic {
            username_path,
            password_path,
        }) => {
            let token = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                read(username_path)?,
                read(password_path)?
            ));
            // GIT_CONFIG_COUNT/KEY/VALUE: config from the environment (git ≥ 2.31).
            env.push(("GIT_CONFIG_COUNT".into(), "1".into()));
            env.push(("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()));
            env.push((
                "GIT_CONFIG_VALUE_0".into(),
                format!("Authorization: Basic {token}"),
            ));
        }
        Some(SourceAuth::Ssh {
            private_key_path,
            known_hosts_path,
        }) => {
            let key = scratch.join("git-ssh-key");
            let copy = || -> std::io::Result<()> {
                std::fs::copy(private_key_path, &key)?;
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            };
            copy().map_err(|source| SourceError::Credentials {
                path: private_key_path.clone(),
                source,
            })?;
            std::fs::metadata(known_hosts_path).map_err(|source| SourceError::Credentials {
                path: known_hosts_path.clone(),
                source,
            })?;
            env.push((
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} \
                     -o StrictHostKeyChecking=yes -o BatchMode=yes",
                    shell_quote(&key.display().to_string()),
                    shell_quote(known_hosts_path)
                ),
            ));
        }
    }
    Ok(env)
}

/// Single-quotes `s` for `sh` (GIT_SSH_COMMAND is run through the shell).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Checks out `source.commit` of `source.url` into `dir` (created if needed), fetching only
/// that commit. `scratch` holds credential copies.
pub fn fetch(
    source: &Source,
    dir: &Path,
    scratch: &Path,
    runner: &Runner,
) -> Result<(), SourceError> {
    let env = git_auth_env(source.auth.as_ref(), scratch)?;
    let git_error = |source_err| SourceError::Git {
        url: source.url.clone(),
        commit: source.commit.clone(),
        source: Box::new(source_err),
    };
    let git = |args: &[&str]| {
        let mut command = Command::new("git");
        command.arg("-C").arg(dir).args(args);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        command
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        git_error(CommandError::Spawn {
            operation: "create checkout directory".into(),
            program: "git".into(),
            source: e,
        })
    })?;
    runner
        .run("git init", &mut git(&["init", "-q"]))
        .map_err(git_error)?;
    runner
        .run(
            "git fetch",
            &mut git(&[
                "fetch",
                "-q",
                "--depth",
                "1",
                "--no-tags",
                &source.url,
                &source.commit,
            ]),
        )
        .map_err(git_error)?;
    runner
        .run(
            "git checkout",
            &mut git(&[
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "-q",
                "FETCH_HEAD",
            ]),
        )
        .map_err(git_error)?;
    let head = runner
        .run("git rev-parse", &mut git(&["rev-parse", "HEAD"]))
        .map_err(git_error)?;
    let head = head.trim();
    if head != source.commit {
        return Err(SourceError::WrongCommit {
            url: source.url.clone(),
            commit: source.commit.clone(),
            found: head.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A bare repository with two commits; returns (url, first commit, second commit).
    fn repo(dir: &Path) -> (String, String, String) {
        sh(
            dir,
            "git init -q -b main work && cd work && git config user.email t@e && git config user.name t \
             && echo one > f && git add f && git commit -qm one",
        );
        let first = sh(&dir.join("work"), "git rev-parse HEAD");
        sh(&dir.join("work"), "echo two > f && git commit -qam two");
        let second = sh(&dir.join("work"), "git rev-parse HEAD");
        sh(dir, "git clone -q --bare work bare.git");
        (format!("file://{}/bare.git", dir.display()), first, second)
    }

    #[test]
    fn fetches_exactly_the_commit_asked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let (url, first, _second) = repo(tmp.path());
        let checkout = tmp.path().join("checkout");
        let source = Source {
            url,
            commit: first.clone(),
            auth: None,
        };
        fetch(&source, &checkout, tmp.path(), &Runner::new("", 5)).unwrap();
        assert_eq!(
            std::fs::read_to_string(checkout.join("f")).unwrap(),
            "one\n"
        );
        assert_eq!(
            sh(&checkout, "git rev-list --count HEAD"),
            "1",
            "shallow: one commit"
        );
    }

    #[test]
    fn unknown_commit_names_url_and_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let (url, _, _) = repo(tmp.path());
        let missing = "0123456789abcdef0123456789abcdef01234567";
        let source = Source {
            url: url.clone(),
            commit: missing.into(),
            auth: None,
        };
        let err = fetch(
            &source,
            &tmp.path().join("c"),
            tmp.path(),
            &Runner::new("", 5),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&url) && text.contains(missing), "{text}");
        assert!(matches!(err, SourceError::Git { .. }));
    }

    #[test]
    fn basic_auth_becomes_an_authorization_header_in_the_environment() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("u"), "kiln\n").unwrap();
        std::fs::write(tmp.path().join("p"), "s3cret").unwrap();
        let auth = SourceAuth::Basic {
            username_path: tmp.path().join("u").display().to_string(),
            password_path: tmp.path().join("p").display().to_string(),
        };
        let env = git_auth_env(Some(&auth), tmp.path()).unwrap();
        // base64("kiln:s3cret") computed independently: a2lsbjpzM2NyZXQ=
        assert!(env.contains(&(
            "GIT_CONFIG_VALUE_0".into(),
            "Authorization: Basic a2lsbjpzM2NyZXQ=".into()
        )));
    }

    #[test]
    fn ssh_auth_pins_key_and_known_hosts() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("key"), "KEY").unwrap();
        std::fs::write(tmp.path().join("kh"), "").unwrap();
        let auth = SourceAuth::Ssh {
            private_key_path: tmp.path().join("key").display().to_string(),
            known_hosts_path: tmp.path().join("kh").display().to_string(),
        };
        let env = git_auth_env(Some(&auth), tmp.path()).unwrap();
        let (_, command) = env.iter().find(|(k, _)| k == "GIT_SSH_COMMAND").unwrap();
        assert!(command.contains("StrictHostKeyChecking=yes"), "{command}");
        assert!(command.contains(&format!("UserKnownHostsFile='{}/kh'", tmp.path().display())));
        let copy = tmp.path().join("git-ssh-key");
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn missing_credentials_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let auth = SourceAuth::Basic {
            username_path: "/nonexistent/username".into(),
            password_path: "/nonexistent/password".into(),
        };
        let err = git_auth_env(Some(&auth), tmp.path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("git credentials /nonexistent/username:"),
            "{err}"
        );
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
