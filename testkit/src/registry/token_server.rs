//! A bearer-token server for distribution v3's `token` auth: the Docker token protocol
//! (`GET /token?service=…&scope=repository:NAME:pull,push` with HTTP basic credentials,
//! answered with `{"token": JWT}`), signing RS256 JWTs with `openssl` so the test kit needs
//! no crypto crate. The registry trusts the key through a JWKS file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;

use super::BasicAuth;

/// `service` and `aud` the registry and its tokens agree on.
pub const SERVICE: &str = "kiln-test-registry";
/// `iss` of the tokens.
pub const ISSUER: &str = "kiln-test-token-server";
const KEY_ID: &str = "kiln-test-key";

/// A running token server; Drop stops it.
#[derive(Debug)]
pub struct TokenServer {
    address: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    issued: Arc<AtomicU64>,
}

impl TokenServer {
    /// Generates an RSA key in `dir`, writes `dir/jwks.json` for the registry and starts
    /// serving tokens to holders of `auth` on a free loopback port.
    pub fn start(dir: &Path, auth: BasicAuth) -> anyhow::Result<Self> {
        let key = dir.join("token-key.pem");
        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048"))?;
        let modulus = run(Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&key))?;
        let hex = String::from_utf8(modulus)?
            .trim()
            .strip_prefix("Modulus=")
            .context("openssl rsa -modulus output")?
            .to_owned();
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<_, _>>()?;
        let jwks = serde_json::json!({ "keys": [{
            "kty": "RSA", "kid": KEY_ID, "alg": "RS256", "use": "sig",
            "n": b64url(&n), "e": "AQAB",
        }]});
        std::fs::write(dir.join("jwks.json"), jwks.to_string())?;

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, issued) = (stop.clone(), issued.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // Errors only affect the one request; the client sees them.
                        let _ = serve(stream, &key, &auth, &issued);
                    }
                }
            })
        };
        Ok(TokenServer {
            address,
            stop,
            thread: Some(thread),
            issued,
        })
    }

    /// The realm URL the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.address)
    }

    /// The JWKS file [`TokenServer::start`] wrote into `dir`.
    pub fn jwks_path(dir: &Path) -> PathBuf {
        dir.join("jwks.json")
    }

    /// How many tokens were issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.address);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(command: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .context("running openssl (install it with hack/setup.sh)")?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn serve(
    stream: TcpStream,
    key: &Path,
    auth: &BasicAuth,
    issued: &AtomicU64,
) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let expected = format!(
        "Basic {}",
        super::base64_encode(format!("{}:{}", auth.username, auth.password).as_bytes())
    );
    let mut stream = stream;
    if path != "/token" {
        return respond(
            &mut stream,
            "404 Not Found",
            r#"{"details":"no such endpoint"}"#,
        );
    }
    if authorization.as_deref() != Some(expected.as_str()) {
        return respond(
            &mut stream,
            "401 Unauthorized",
            r#"{"details":"invalid username or password"}"#,
        );
    }
    let mut access = Vec::new();
    for (name, value) in query.split('&').filter_map(|p| p.split_once('=')) {
        if name != "scope" {
            continue;
        }
        let scope = percent_decode(value);
        let mut parts = scope.splitn(3, ':');
        if let (Some(kind), Some(repo), Some(actions)) = (parts.next(), parts.next(), parts.next())
        {
            access.push(serde_json::json!({
                "type": kind, "name": repo,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }));
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let jti = issued.fetch_add(1, Ordering::Relaxed);
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": KEY_ID });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": auth.username, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 10, "iat": now, "jti": format!("t{jti}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = sign(key, signing_input.as_bytes())?;
    let token = format!("{signing_input}.{}", b64url(&signature));
    let body = serde_json::json!({ "token": token, "access_token": token, "expires_in": 600 });
    respond(&mut stream, "200 OK", &body.to_string())
}

/// RS256: RSASSA-PKCS1-v1_5 over SHA-256, which `openssl dgst -sha256 -sign` produces.
fn sign(key: &Path, input: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(input)?;
    let mut signature = Vec::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_end(&mut signature)?;
    if !child.wait()?.success() {
        bail!("openssl dgst -sign failed");
    }
    Ok(signature)
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> anyhow::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_scopes() {
        assert_eq!(
            percent_decode("repository%3Ashop%3Apull%2Cpush"),
            "repository:shop:pull,push"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("x%zzy"), "x%zzy");
    }
}
