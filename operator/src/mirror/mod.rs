//! The operator's source cache: one bare mirror per git repository URL, fetched
//! incrementally with libgit2, and resolution of `spec.source.git.revision` to a commit.
//!
//! Layout: `<cache dir>/<first 32 hex of SHA-256(url)>.git`, a bare repository whose
//! `refs/heads/*` and `refs/tags/*` mirror the remote's (pruned on each fetch) and whose
//! `refs/kiln/remote-head` is the remote's HEAD. Hashing the URL keeps credentials that a
//! URL may carry out of file names and gives every URL its own mirror. Objects are only
//! ever added, so a fetch after the first one transfers just the new commits.
//!
//! Files are then read from the resolved commit (not from a working tree), as werf does;
//! the `source` module opens the mirror for that.
//!
//! Calls block (libgit2 does network and disk I/O): run them on a blocking thread. Two
//! calls for the same URL are serialized by a per-mirror mutex; different URLs run in
//! parallel.

mod auth;
pub mod known_hosts;

pub use auth::{AuthSecretError, GitAuth};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, FetchPrune, Oid,
    RemoteCallbacks, Repository,
};
use kiln_crds::Reason;
use sha2::{Digest, Sha256};

/// Ref holding the remote's HEAD after a fetch (the default branch's commit).
pub const REMOTE_HEAD_REF: &str = "refs/kiln/remote-head";

/// Refspecs of a mirror fetch: branches, tags and the remote HEAD, force-updated.
const FETCH_REFSPECS: [&str; 3] = [
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
    "+HEAD:refs/kiln/remote-head",
];

/// Marker in a credential callback error: the server asked for credentials we do not have.
const NO_CREDENTIALS: &str = "the server asks for credentials but none are configured";
/// Marker in a credential callback error: the server refused the credentials we sent.
const CREDENTIALS_REJECTED: &str = "the server refused the credentials";

/// Why a revision could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The repository could not be reached or read (network, DNS, no such repository, TLS,
    /// unknown SSH host key).
    #[error("git repository {url}: cannot fetch: {message}")]
    Unreachable {
        /// Repository URL.
        url: String,
        /// libgit2's explanation.
        message: String,
    },
    /// The server asked for credentials, or refused the ones from the Secret.
    #[error("git repository {url}: authentication failed: {message}")]
    AuthFailed {
        /// Repository URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// No branch, tag or commit of that name.
    #[error(
        "git repository {url}: revision {revision:?} is not a branch, tag or commit of the repository"
    )]
    RevisionNotFound {
        /// Repository URL.
        url: String,
        /// The revision as given.
        revision: String,
    },
    /// The mirror directory could not be created or opened.
    #[error("source cache {}: {source}", path.display())]
    Cache {
        /// Mirror directory.
        path: PathBuf,
        /// The libgit2 or I/O error.
        #[source]
        source: git2::Error,
    },
}

impl MirrorError {
    /// The condition reason this error ends a build with.
    pub fn reason(&self) -> Reason {
        match self {
            MirrorError::Unreachable { .. } => Reason::SourceUnavailable,
            MirrorError::AuthFailed { .. } => Reason::SourceAuthFailed,
            MirrorError::RevisionNotFound { .. } => Reason::RevisionNotFound,
            MirrorError::Cache { .. } => Reason::InternalError,
        }
    }
}

/// A revision resolved in a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSource {
    /// The bare mirror holding the commit.
    pub mirror: PathBuf,
    /// The commit id, 40 lowercase hex.
    pub commit: String,
}

/// The source cache: bare mirrors under one directory.
#[derive(Debug)]
pub struct SourceCache {
    root: PathBuf,
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
}

impl SourceCache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> SourceCache {
        SourceCache {
            root: root.into(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The directory holding `url`'s mirror.
    pub fn mirror_path(&self, url: &str) -> PathBuf {
        let hash = Sha256::digest(url.as_bytes());
        let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.root.join(format!("{hex}.git"))
    }

    /// Resolves `revision` of `url` to a commit, fetching into the mirror first.
    ///
    /// `revision` is `HEAD` (the remote's default branch), a branch or tag name, a full
    /// ref name (`refs/heads/main`), a full commit id or a commit prefix of 4+ hex digits.
    /// Branches and tags win over a commit prefix of the same spelling, as in git. A full
    /// commit id already in the mirror is returned without touching the network, so a
    /// pinned build keeps working while the server is down.
    ///
    /// Errors: [`MirrorError::Unreachable`], [`MirrorError::AuthFailed`],
    /// [`MirrorError::RevisionNotFound`], [`MirrorError::Cache`].
    pub fn resolve(
        &self,
        url: &str,
        revision: &str,
        auth: &GitAuth,
    ) -> Result<ResolvedSource, MirrorError> {
        let path = self.mirror_path(url);
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(path.clone()).or_default().clone()
        };
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let repo = open_or_init(&path)?;
        let revision = revision.trim();
        if is_full_commit(revision)
            && let Some(commit) = find_commit(&repo, revision)
        {
            return Ok(ResolvedSource {
                mirror: path,
                commit,
            });
        }
        fetch(&repo, url, auth)?;
        let commit = resolve_in(&repo, revision).ok_or_else(|| MirrorError::RevisionNotFound {
            url: url.to_owned(),
            revision: revision.to_owned(),
        })?;
        Ok(ResolvedSource {
            mirror: path,
            commit,
        })
    }
}

fn open_or_init(path: &Path) -> Result<Repository, MirrorError> {
    let cache_err = |source| MirrorError::Cache {
        path: path.to_owned(),
        source,
    };
    if path.join("HEAD").exists() {
        Repository::open_bare(path).map_err(cache_err)
    } else {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| cache_err(git2::Error::from_str(&e.to_string())))?;
        }
        Repository::init_bare(path).map_err(cache_err)
    }
}

fn is_full_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn find_commit(repo: &Repository, id: &str) -> Option<String> {
    let oid = Oid::from_str(id).ok()?;
    repo.find_commit(oid).ok().map(|c| c.id().to_string())
}

/// Resolution order: HEAD, full commit, full ref name, branch, tag, commit prefix.
fn resolve_in(repo: &Repository, revision: &str) -> Option<String> {
    let peel = |name: &str| {
        repo.find_reference(name)
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| c.id().to_string())
    };
    if revision == "HEAD" {
        return peel(REMOTE_HEAD_REF);
    }
    if is_full_commit(revision) {
        return find_commit(repo, &revision.to_ascii_lowercase());
    }
    if revision.starts_with("refs/") {
        return peel(revision);
    }
    if let Some(c) = peel(&format!("refs/heads/{revision}")) {
        return Some(c);
    }
    if let Some(c) = peel(&format!("refs/tags/{revision}")) {
        return Some(c);
    }
    if revision.len() >= 4 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        return repo
            .revparse_single(revision)
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id().to_string());
    }
    None
}

fn fetch(repo: &Repository, url: &str, auth: &GitAuth) -> Result<(), MirrorError> {
    let mut callbacks = RemoteCallbacks::new();
    // libgit2 calls back again after a refused credential; answering once per kind
    // turns a wrong password into an error instead of an endless loop.
    let mut offered = false;
    callbacks.credentials(move |_url, username_from_url, allowed| {
        if allowed.contains(CredentialType::USERNAME) && !allowed.contains(CredentialType::SSH_KEY)
        {
            return Cred::username(username_from_url.unwrap_or("git"));
        }
        if offered {
            return Err(git2::Error::from_str(CREDENTIALS_REJECTED));
        }
        offered = true;
        match auth {
            GitAuth::Basic { username, password }
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(username, password)
            }
            GitAuth::Ssh { private_key, .. } if allowed.contains(CredentialType::SSH_KEY) => {
                Cred::ssh_key_from_memory(
                    username_from_url.unwrap_or("git"),
                    None,
                    private_key,
                    None,
                )
            }
            _ => Err(git2::Error::from_str(NO_CREDENTIALS)),
        }
    });
    let ssh_port = ssh_port(url);
    callbacks.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2's own verification against the system CAs.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let GitAuth::Ssh { known_hosts, .. } = auth else {
            return Err(git2::Error::from_str(
                "SSH needs a Secret with `ssh-privatekey` and `known_hosts` (spec.source.git.secretRef)",
            ));
        };
        let entries = known_hosts::parse(known_hosts);
        match hostkey.hostkey() {
            Some(key) if known_hosts::is_known(&entries, host, ssh_port, key) => {
                Ok(CertificateCheckStatus::CertificateOk)
            }
            _ => Err(git2::Error::from_str(&format!(
                "the SSH host key of {host} is not listed for it in known_hosts (hashed entries are not supported)"
            ))),
        }
    });
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::None);
    let mut remote = repo.remote_anonymous(url).map_err(|e| classify(url, e))?;
    remote
        .fetch(&FETCH_REFSPECS, Some(&mut options), None)
        .map_err(|e| classify(url, e))
}

/// The port of an `ssh://` URL, if it names one (`git@host:path` never does).
fn ssh_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("ssh://")?;
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit('@').next()?;
    let (_, port) = hostport.rsplit_once(':')?;
    port.parse().ok()
}

fn classify(url: &str, e: git2::Error) -> MirrorError {
    let message = e.message().to_owned();
    let auth = e.code() == git2::ErrorCode::Auth
        || message.contains(NO_CREDENTIALS)
        || message.contains(CREDENTIALS_REJECTED)
        || message.contains("status code: 401")
        || message.contains("status code: 403");
    if auth {
        let message = if message.contains(NO_CREDENTIALS) {
            format!("{message}; set spec.source.git.secretRef")
        } else {
            message
        };
        MirrorError::AuthFailed {
            url: url.to_owned(),
            message,
        }
    } else {
        MirrorError::Unreachable {
            url: url.to_owned(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_dir_is_a_hash_of_the_url() {
        let cache = SourceCache::new("/cache");
        let a = cache.mirror_path("https://git.example.org/shop.git");
        let b = cache.mirror_path("https://git.example.org/shop");
        assert_ne!(a, b);
        // SHA-256("https://git.example.org/shop.git"), first 16 bytes, computed with
        // `printf %s URL | sha256sum`.
        assert_eq!(
            a,
            PathBuf::from("/cache/b626faad6c6d508dd2a25600570ddabc.git")
        );
        // Credentials in a URL do not leak into the path.
        let c = cache.mirror_path("https://user:secret@git.example.org/shop.git");
        assert!(!c.to_string_lossy().contains("secret"));
    }

    #[test]
    fn ssh_ports() {
        assert_eq!(ssh_port("ssh://git@host:2222/shop.git"), Some(2222));
        assert_eq!(ssh_port("ssh://host/shop.git"), None);
        assert_eq!(ssh_port("git@host:shop.git"), None);
        assert_eq!(ssh_port("https://host:8443/shop.git"), None);
    }

    #[test]
    fn reasons() {
        let url = "u".to_owned();
        assert_eq!(
            MirrorError::Unreachable {
                url: url.clone(),
                message: String::new()
            }
            .reason(),
            Reason::SourceUnavailable
        );
        assert_eq!(
            MirrorError::AuthFailed {
                url: url.clone(),
                message: String::new()
            }
            .reason(),
            Reason::SourceAuthFailed
        );
        assert_eq!(
            MirrorError::RevisionNotFound {
                url,
                revision: "x".into()
            }
            .reason(),
            Reason::RevisionNotFound
        );
    }
}
