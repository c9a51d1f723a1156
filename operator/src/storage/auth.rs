//! Registry credentials from the content of a `kubernetes.io/dockerconfigjson` secret
//! (`.dockerconfigjson` key), the format `docker login` writes to `~/.docker/config.json`.
//!
//! Each `auths` entry is keyed by a registry host, sometimes written as a URL
//! (`https://index.docker.io/v1/`, `http://127.0.0.1:5000`); keys are normalised to
//! `host[:port]`. An entry carries one of: `auth` (base64 of `user:password`),
//! `username` + `password`, `identitytoken` (an OAuth2 refresh token), or `registrytoken`
//! (a bearer token used as is). The legacy `kubernetes.io/dockercfg` shape (the host map
//! without the `auths` wrapper) is read too.

use std::collections::BTreeMap;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::error::StorageError;
use super::reference::DOCKER_HUB;

/// The key of a `kubernetes.io/dockerconfigjson` secret that holds the config.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryCredential {
    /// HTTP basic credentials; on bearer-token registries they are sent to the token
    /// endpoint (oci-client does the token request).
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// An identity token (OAuth2 refresh token) from `docker login` with an identity
    /// provider. Sent as the password of basic credentials to the token endpoint, the
    /// way Azure Container Registry and distribution-compatible token servers accept it;
    /// the OAuth2 `grant_type=refresh_token` POST exchange is not implemented.
    IdentityToken {
        /// The `username` the entry carries (often `<token>`), if any.
        username: Option<String>,
        /// The refresh token.
        token: String,
    },
    /// A bearer token sent as is on every request.
    RegistryToken(String),
}

impl std::fmt::Debug for RegistryCredential {
    // Secrets never reach logs or error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryCredential::Basic { username, .. } => {
                write!(f, "Basic({username:?}, <redacted>)")
            }
            RegistryCredential::IdentityToken { .. } => f.write_str("IdentityToken(<redacted>)"),
            RegistryCredential::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl RegistryCredential {
    /// The oci-client form of these credentials.
    pub fn to_registry_auth(&self) -> RegistryAuth {
        match self {
            RegistryCredential::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            RegistryCredential::IdentityToken { username, token } => RegistryAuth::Basic(
                username.clone().unwrap_or_else(|| "<token>".to_owned()),
                token.clone(),
            ),
            RegistryCredential::RegistryToken(token) => RegistryAuth::Bearer(token.clone()),
        }
    }
}

/// Credentials per registry host, parsed from a docker config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    auths: BTreeMap<String, RegistryCredential>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl DockerConfig {
    /// No credentials: every registry is accessed anonymously.
    pub fn anonymous() -> Self {
        DockerConfig::default()
    }

    /// Parses the JSON text of a docker config. Errors
    /// ([`StorageError::InvalidDockerConfig`]) name the registry key and the field.
    pub fn parse(json: &[u8]) -> Result<Self, StorageError> {
        let bad = |reason: String| StorageError::InvalidDockerConfig { reason };
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let map = match value.get("auths") {
            Some(auths) => auths.clone(),
            None if value.is_object() => value,
            None => return Err(bad("expected a JSON object with \"auths\"".into())),
        };
        let entries: BTreeMap<String, RawEntry> = serde_json::from_value(map)
            .map_err(|e| bad(format!("\"auths\" must map registry hosts to objects: {e}")))?;
        let mut auths = BTreeMap::new();
        for (key, entry) in entries {
            let host = normalize_registry_key(&key);
            if let Some(credential) = parse_entry(&key, entry)? {
                auths.insert(host, credential);
            }
        }
        Ok(DockerConfig { auths })
    }

    /// Reads the `.dockerconfigjson` key of a secret's data (values already base64-decoded,
    /// as `k8s_openapi`'s `ByteString` holds them).
    pub fn from_secret_data(
        secret_name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, StorageError> {
        let json =
            data.get(DOCKER_CONFIG_JSON_KEY)
                .ok_or_else(|| StorageError::InvalidDockerConfig {
                    reason: format!("secret {secret_name:?} has no {DOCKER_CONFIG_JSON_KEY:?} key"),
                })?;
        Self::parse(json).map_err(|e| match e {
            StorageError::InvalidDockerConfig { reason } => StorageError::InvalidDockerConfig {
                reason: format!("secret {secret_name:?}: {reason}"),
            },
            other => other,
        })
    }

    /// Adds or replaces the credentials of one registry (`host[:port]`).
    pub fn insert(&mut self, registry: &str, credential: RegistryCredential) {
        self.auths
            .insert(normalize_registry_key(registry), credential);
    }

    /// The credentials for a registry host, if the config has any.
    pub fn credential_for(&self, registry: &str) -> Option<&RegistryCredential> {
        self.auths.get(&normalize_registry_key(registry))
    }

    /// oci-client credentials for a registry host; anonymous when the config has none.
    pub fn registry_auth(&self, registry: &str) -> RegistryAuth {
        self.credential_for(registry)
            .map(RegistryCredential::to_registry_auth)
            .unwrap_or(RegistryAuth::Anonymous)
    }

    /// Registry hosts the config has credentials for.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.auths.keys().map(String::as_str)
    }
}

fn parse_entry(key: &str, entry: RawEntry) -> Result<Option<RegistryCredential>, StorageError> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if let Some(token) = non_empty(entry.identitytoken) {
        return Ok(Some(RegistryCredential::IdentityToken {
            username: non_empty(entry.username),
            token,
        }));
    }
    if let Some(token) = non_empty(entry.registrytoken) {
        return Ok(Some(RegistryCredential::RegistryToken(token)));
    }
    if let Some(auth) = non_empty(entry.auth) {
        let bad = |why: &str| StorageError::InvalidDockerConfig {
            reason: format!("auths[{key:?}].auth {why}"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8 text"))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| bad("must encode \"username:password\""))?;
        return Ok(Some(RegistryCredential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    match (non_empty(entry.username), entry.password) {
        (Some(username), Some(password)) => {
            Ok(Some(RegistryCredential::Basic { username, password }))
        }
        (Some(_), None) => Err(StorageError::InvalidDockerConfig {
            reason: format!("auths[{key:?}] has a username but no password"),
        }),
        // An empty entry (as `docker login` leaves with a credential helper) means
        // anonymous access for that registry.
        _ => Ok(None),
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://h:5000/v2/` → `h:5000`.
fn normalize_registry_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> RegistryCredential {
        RegistryCredential::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn reads_every_entry_form() {
        // "a2lsbjpzM2M6cmV0" is base64("kiln:s3c:ret"): the password keeps its colon.
        let json = br#"{"auths":{
            "https://index.docker.io/v1/": {"auth": "a2lsbjpzM2M6cmV0"},
            "http://127.0.0.1:5000/v2/": {"username": "u", "password": "p"},
            "acr.example.io": {"username": "<token>", "identitytoken": "refresh"},
            "tok.example.io": {"registrytoken": "bearer"},
            "helper.example.io": {}
        }}"#;
        let c = DockerConfig::parse(json).unwrap();
        assert_eq!(
            c.credential_for("docker.io"),
            Some(&basic("kiln", "s3c:ret"))
        );
        assert_eq!(c.credential_for("127.0.0.1:5000"), Some(&basic("u", "p")));
        assert_eq!(
            c.credential_for("acr.example.io"),
            Some(&RegistryCredential::IdentityToken {
                username: Some("<token>".into()),
                token: "refresh".into()
            })
        );
        assert_eq!(
            c.registry_auth("tok.example.io"),
            RegistryAuth::Bearer("bearer".into())
        );
        assert_eq!(c.credential_for("helper.example.io"), None);
        assert_eq!(c.registry_auth("other.example.io"), RegistryAuth::Anonymous);
        assert_eq!(
            c.registry_auth("acr.example.io"),
            RegistryAuth::Basic("<token>".into(), "refresh".into())
        );
    }

    #[test]
    fn legacy_dockercfg_shape() {
        let c = DockerConfig::parse(br#"{"r.example.io":{"auth":"dTpw"}}"#).unwrap();
        assert_eq!(c.credential_for("r.example.io"), Some(&basic("u", "p")));
    }

    #[test]
    fn errors_name_the_registry_and_field() {
        let cases: [(&[u8], &str); 5] = [
            (b"not json", "not JSON"),
            (
                br#"{"auths":{"r.io":{"auth":"***"}}}"#,
                "auths[\"r.io\"].auth is not base64",
            ),
            (
                br#"{"auths":{"r.io":{"auth":"bm9jb2xvbg=="}}}"#,
                "must encode",
            ),
            (
                br#"{"auths":{"r.io":{"username":"u"}}}"#,
                "auths[\"r.io\"] has a username but no password",
            ),
            (br#"{"auths":["r.io"]}"#, "must map registry hosts"),
        ];
        for (json, expected) in cases {
            let err = DockerConfig::parse(json).unwrap_err();
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn secret_without_the_key_is_named() {
        let err = DockerConfig::from_secret_data("push-auth", &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("secret \"push-auth\" has no \".dockerconfigjson\""),
            "{err}"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let shown = format!("{:?}", basic("kiln", "hunter2"));
        assert!(!shown.contains("hunter2"));
    }
}
