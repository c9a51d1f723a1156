//! Go standard-library behaviour that werf's staged digests inherit: `dirhash.Hash1`,
//! `filepath.Match` per path component, and `time.Duration.String()`.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Go's `dirhash.Hash1`: SHA-256 over sorted `"<hex sha256>  <name>\n"` lines, `h1:` + base64.
pub fn dirhash_h1(mut files: Vec<(String, String)>) -> String {
    files.sort();
    let mut h = Sha256::new();
    for (name, sum) in files {
        h.update(format!("{sum}  {name}\n").as_bytes());
    }
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )
}

/// Go's `filepath.Match` applied component by component (no `**`).
pub(super) fn go_path_match(pattern: &str, path: &str) -> bool {
    let pc: Vec<&str> = pattern.split('/').collect();
    let nc: Vec<&str> = path.split('/').collect();
    pc.len() == nc.len()
        && pc
            .iter()
            .zip(nc.iter())
            .all(|(p, n)| crate::source::path_matcher::match_component(&p.replace("**", "*"), n))
}

/// Go's `time.Duration.String()` of a Docker duration flag (`30s`, `1m30s`, `500ms`); `0s`
/// when unset or unparsable.
pub fn go_duration(flag: Option<&str>) -> String {
    let nanos = flag.and_then(parse_duration).unwrap_or(0);
    format_go_duration(nanos)
}

fn parse_duration(s: &str) -> Option<u128> {
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * mult;
        rest = &rest[unit_end..];
    }
    Some(total.round() as u128)
}

fn frac(v: u128, unit: u128) -> String {
    let int = v / unit;
    let mut f = format!("{:0width$}", v % unit, width = unit.to_string().len() - 1);
    while f.ends_with('0') {
        f.pop();
    }
    if f.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{f}")
    }
}

fn format_go_duration(n: u128) -> String {
    if n == 0 {
        return "0s".into();
    }
    if n < 1_000 {
        return format!("{n}ns");
    }
    if n < 1_000_000 {
        return format!("{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{}ms", frac(n, 1_000_000));
    }
    let h = n / 3_600_000_000_000;
    let m = (n / 60_000_000_000) % 60;
    let s = n % 60_000_000_000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", frac(s, 1_000_000_000)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ls_tree::hex_lower;

    #[test]
    fn go_duration_strings() {
        assert_eq!(go_duration(None), "0s");
        assert_eq!(go_duration(Some("30s")), "30s");
        assert_eq!(go_duration(Some("90s")), "1m30s");
        assert_eq!(go_duration(Some("1h")), "1h0m0s");
        assert_eq!(go_duration(Some("1.5s")), "1.5s");
        assert_eq!(go_duration(Some("500ms")), "500ms");
        assert_eq!(go_duration(Some("2m")), "2m0s");
    }

    #[test]
    fn dirhash_of_one_file() {
        // Go: dirhash.Hash1([]string{"a.txt"}, open) for content "hello\n"; computed with
        // Python: base64(sha256(f"{sha256(b'hello\n').hexdigest()}  a.txt\n")).
        let sum = hex_lower(&Sha256::digest(b"hello\n"));
        assert_eq!(
            dirhash_h1(vec![("a.txt".into(), sum)]),
            "h1:xULs+l4jrMyt60GIZwYIw7bhbzwK3CkR1JyTboQZesk="
        );
    }

    #[test]
    fn go_glob_components() {
        assert!(go_path_match("src/*.go", "src/a.go"));
        assert!(!go_path_match("src/*.go", "src/x/a.go"));
        assert!(go_path_match("*", "dir"));
    }
}
