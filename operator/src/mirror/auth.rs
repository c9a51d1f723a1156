//! Git credentials for the source cache, read from the Secret named by
//! `spec.source.git.secretRef`.
//!
//! Secret keys follow Kubernetes' built-in Secret types: `username` and `password`
//! (`kubernetes.io/basic-auth`) for HTTP(S), `ssh-privatekey` (`kubernetes.io/ssh-auth`) plus
//! `known_hosts` for SSH. The Secret's `type` is not required to match: the keys decide.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;

/// Credentials for one repository URL.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum GitAuth {
    /// Anonymous access.
    #[default]
    Anonymous,
    /// HTTP basic auth (a password or an access token).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// An SSH private key (OpenSSH or PEM text) and the server's host keys.
    Ssh {
        /// The private key text.
        private_key: String,
        /// `known_hosts` text; the server's host key must be listed for its host.
        known_hosts: String,
    },
}

// Never print secrets, even in debug logs.
impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitAuth::Anonymous => f.write_str("Anonymous"),
            GitAuth::Basic { username, .. } => write!(f, "Basic({username}, <password>)"),
            GitAuth::Ssh { .. } => f.write_str("Ssh(<private key>)"),
        }
    }
}

/// A Secret that does not hold usable git credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthSecretError {
    /// Neither `username`/`password` nor `ssh-privatekey` is present.
    #[error(
        "Secret {secret:?} has no git credentials: expected keys `username` and `password` (HTTP basic auth) or `ssh-privatekey` and `known_hosts` (SSH)"
    )]
    NoCredentials {
        /// Secret name.
        secret: String,
    },
    /// Only one of `username` and `password`.
    #[error(
        "Secret {secret:?}: key `{missing}` is missing (basic auth needs `username` and `password`)"
    )]
    IncompleteBasic {
        /// Secret name.
        secret: String,
        /// The missing key.
        missing: &'static str,
    },
    /// `ssh-privatekey` without `known_hosts`: the server's identity could not be checked.
    #[error(
        "Secret {secret:?}: key `known_hosts` is missing; SSH needs the server's host key to check it is talking to the right server"
    )]
    MissingKnownHosts {
        /// Secret name.
        secret: String,
    },
    /// A value is not UTF-8 text.
    #[error("Secret {secret:?}: key `{key}` is not UTF-8 text")]
    NotText {
        /// Secret name.
        secret: String,
        /// The key.
        key: String,
    },
}

impl GitAuth {
    /// Reads credentials from a Secret's `data` (values already base64-decoded by the
    /// Kubernetes client). SSH wins when both kinds of keys are present.
    ///
    /// Errors: see [`AuthSecretError`]; each names the Secret and the key.
    pub fn from_secret_data(
        secret: &str,
        data: &BTreeMap<String, ByteString>,
    ) -> Result<GitAuth, AuthSecretError> {
        let text = |key: &str| -> Result<Option<String>, AuthSecretError> {
            data.get(key)
                .map(|v| {
                    String::from_utf8(v.0.clone()).map_err(|_| AuthSecretError::NotText {
                        secret: secret.to_owned(),
                        key: key.to_owned(),
                    })
                })
                .transpose()
        };
        if let Some(private_key) = text("ssh-privatekey")? {
            let known_hosts =
                text("known_hosts")?.ok_or_else(|| AuthSecretError::MissingKnownHosts {
                    secret: secret.to_owned(),
                })?;
            return Ok(GitAuth::Ssh {
                private_key,
                known_hosts,
            });
        }
        match (text("username")?, text("password")?) {
            (Some(username), Some(password)) => Ok(GitAuth::Basic { username, password }),
            (Some(_), None) => Err(AuthSecretError::IncompleteBasic {
                secret: secret.to_owned(),
                missing: "password",
            }),
            (None, Some(_)) => Err(AuthSecretError::IncompleteBasic {
                secret: secret.to_owned(),
                missing: "username",
            }),
            (None, None) => Err(AuthSecretError::NoCredentials {
                secret: secret.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn basic_auth() {
        let auth =
            GitAuth::from_secret_data("git", &data(&[("username", b"ci"), ("password", b"t0k")]))
                .unwrap();
        assert_eq!(
            auth,
            GitAuth::Basic {
                username: "ci".into(),
                password: "t0k".into()
            }
        );
        // The password never reaches a log line.
        assert_eq!(format!("{auth:?}"), "Basic(ci, <password>)");
    }

    #[test]
    fn ssh_wins_and_needs_known_hosts() {
        let auth = GitAuth::from_secret_data(
            "k",
            &data(&[
                ("ssh-privatekey", b"KEY"),
                ("known_hosts", b"h ssh-ed25519 AAAA"),
                ("username", b"u"),
            ]),
        )
        .unwrap();
        assert!(matches!(auth, GitAuth::Ssh { ref private_key, .. } if private_key == "KEY"));
        let err = GitAuth::from_secret_data("k", &data(&[("ssh-privatekey", b"KEY")])).unwrap_err();
        assert_eq!(
            err,
            AuthSecretError::MissingKnownHosts { secret: "k".into() }
        );
        assert!(err.to_string().contains("known_hosts"));
    }

    #[test]
    fn incomplete_or_empty_secrets_name_the_key() {
        let err = GitAuth::from_secret_data("s", &data(&[("username", b"u")])).unwrap_err();
        assert_eq!(
            err,
            AuthSecretError::IncompleteBasic {
                secret: "s".into(),
                missing: "password"
            }
        );
        let err = GitAuth::from_secret_data("s", &data(&[("password", b"p")])).unwrap_err();
        assert!(err.to_string().contains("`username` is missing"), "{err}");
        let err = GitAuth::from_secret_data("s", &data(&[("token", b"x")])).unwrap_err();
        assert_eq!(err, AuthSecretError::NoCredentials { secret: "s".into() });
        let err =
            GitAuth::from_secret_data("s", &data(&[("username", &[0xff]), ("password", b"p")]))
                .unwrap_err();
        assert_eq!(
            err,
            AuthSecretError::NotText {
                secret: "s".into(),
                key: "username".into()
            }
        );
    }
}
