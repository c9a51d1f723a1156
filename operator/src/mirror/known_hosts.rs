//! OpenSSH `known_hosts` matching for the source cache's SSH fetches.
//!
//! The SSH server's host key (raw bytes, as the SSH wire format carries it) must equal a key
//! listed for that host. A line is `HOSTS KEYTYPE BASE64KEY [comment]`; `HOSTS` is a
//! comma-separated list of names, `[name]:port` for a port other than 22, and `*`/`?`
//! wildcards. Hashed names (`|1|salt|hash`, `ssh-keygen -H`) and `@cert-authority` /
//! `@revoked` markers are not understood: such lines never match (the error then says so).

use base64::Engine;

/// One usable `known_hosts` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHost {
    /// Host patterns as written (`github.com`, `[git.local]:2222`, `*.example.org`).
    pub patterns: Vec<String>,
    /// Key type, such as `ssh-ed25519`.
    pub key_type: String,
    /// The decoded key (SSH wire format).
    pub key: Vec<u8>,
}

/// Parses `known_hosts` text, skipping blank lines, comments, hashed entries, markers and
/// lines whose key is not base64.
pub fn parse(text: &str) -> Vec<KnownHost> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
                return None;
            }
            let mut fields = line.split_whitespace();
            let hosts = fields.next()?;
            let key_type = fields.next()?;
            let key = fields.next()?;
            if hosts.starts_with("|1|") {
                return None;
            }
            let key = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
            Some(KnownHost {
                patterns: hosts.split(',').map(str::to_owned).collect(),
                key_type: key_type.to_owned(),
                key,
            })
        })
        .collect()
}

/// True when `key` is listed for `host` (with `port`, 22 when `None`).
///
/// A negated pattern (`!name`) that matches excludes the line, as in OpenSSH.
pub fn is_known(entries: &[KnownHost], host: &str, port: Option<u16>, key: &[u8]) -> bool {
    let name = match port {
        Some(p) if p != 22 => format!("[{host}]:{p}"),
        _ => host.to_owned(),
    };
    entries.iter().any(|e| {
        e.key == key
            && e.patterns.iter().any(|p| glob(p, &name))
            && !e
                .patterns
                .iter()
                .any(|p| p.strip_prefix('!').is_some_and(|neg| glob(neg, &name)))
    })
}

/// OpenSSH host pattern match: `*` any run, `?` one character, case-insensitive.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some(b'?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some(c) => n.first().is_some_and(|d| c.eq_ignore_ascii_case(d)) && go(&p[1..], &n[1..]),
        }
    }
    !pattern.starts_with('!') && go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // "AAAAC3NzaC1lZDI1NTE5" is the wire-format prefix of an ed25519 key: u32 length 11 then
    // "ssh-ed25519".
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    fn raw(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    #[test]
    fn parses_plain_lines_and_skips_the_rest() {
        let text = format!(
            "# comment\n\ngit.example.org,10.0.0.1 ssh-ed25519 {KEY_A} me@host\n\
             |1|c2FsdA==|aGFzaA== ssh-ed25519 {KEY_A}\n@revoked * ssh-ed25519 {KEY_B}\n\
             broken ssh-ed25519 !!notbase64!!\n"
        );
        let entries = parse(&text);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].patterns, vec!["git.example.org", "10.0.0.1"]);
        assert_eq!(entries[0].key_type, "ssh-ed25519");
        // 4-byte length + "ssh-ed25519" + 4-byte length + 32-byte key.
        assert_eq!(entries[0].key.len(), 4 + 11 + 4 + 32);
        assert_eq!(&entries[0].key[4..15], b"ssh-ed25519");
    }

    #[test]
    fn matches_host_port_and_key() {
        let entries = parse(&format!(
            "git.example.org ssh-ed25519 {KEY_A}\n[git.local]:2222 ssh-ed25519 {KEY_B}\n"
        ));
        assert!(is_known(&entries, "git.example.org", None, &raw(KEY_A)));
        assert!(is_known(&entries, "GIT.example.org", Some(22), &raw(KEY_A)));
        // Right host, wrong key: a man in the middle.
        assert!(!is_known(&entries, "git.example.org", None, &raw(KEY_B)));
        // Non-default port must be listed as [host]:port.
        assert!(!is_known(
            &entries,
            "git.example.org",
            Some(2222),
            &raw(KEY_A)
        ));
        assert!(is_known(&entries, "git.local", Some(2222), &raw(KEY_B)));
        assert!(!is_known(&entries, "git.local", None, &raw(KEY_B)));
    }

    #[test]
    fn wildcards_and_negation() {
        let entries = parse(&format!(
            "*.example.org,!bad.example.org ssh-ed25519 {KEY_A}\n"
        ));
        assert!(is_known(&entries, "git.example.org", None, &raw(KEY_A)));
        assert!(!is_known(&entries, "bad.example.org", None, &raw(KEY_A)));
        assert!(!is_known(&entries, "example.org", None, &raw(KEY_A)));
        let q = parse(&format!("git?.local ssh-ed25519 {KEY_A}\n"));
        assert!(is_known(&q, "git1.local", None, &raw(KEY_A)));
        assert!(!is_known(&q, "git12.local", None, &raw(KEY_A)));
    }
}
