//! werf's stage digest formula (`werf: pkg/build/stage/base.go calculateDigest` and
//! `pkg/util/sha.go Sha3_224Hash`) and the stage content digest werf writes into the
//! `werf-stage-content-digest` label.

use sha3::{Digest as _, Sha3_224};

use crate::imagebuild::DigestMode;

/// werf's stage digest version salt (`werf: pkg/image/const.go BuildCacheVersion`). Every
/// stage digest and content digest hashes it, so bumping it invalidates every stage.
pub const BUILD_CACHE_VERSION: &str = "1.2";

/// Lowercase hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// werf's `Sha3_224Hash`: SHA3-224 hex (56 chars) over the `:::`-joined parts.
pub fn sha3_224_hex(parts: &[&str]) -> String {
    let mut h = Sha3_224::new();
    h.update(parts.join(":::").as_bytes());
    hex_lower(&h.finalize())
}

/// The salt of strict digests ([`DigestMode::Strict`]) in place of [`BUILD_CACHE_VERSION`].
/// werf's first part is `"1.2"` or a platform (`os/arch[/variant]`), never this text, so no
/// werf preimage equals a strict one and the two kinds of digest cannot collide.
pub const STRICT_SALT: &str = "1.2+kiln-strict";

/// The salt part of the formula in `mode`.
pub fn digest_salt(mode: DigestMode) -> &'static str {
    match mode {
        DigestMode::Werf => BUILD_CACHE_VERSION,
        DigestMode::Strict => STRICT_SALT,
    }
}

/// werf's `calculateDigest` for one stage: SHA3-224 over the platform (left out for
/// `linux/amd64` and an empty platform), [`BUILD_CACHE_VERSION`], the stage name, its
/// dependencies string, then — for a stage built on a previous stage — that stage's digest
/// and its next-stage dependencies, then — staged v1 only — the base image reference.
pub fn stage_digest(
    platform: &str,
    stage_name: &str,
    dependencies: &str,
    prev: Option<(&str, &str)>,
    base_image: Option<&str>,
) -> String {
    stage_digest_in(
        DigestMode::Werf,
        platform,
        stage_name,
        dependencies,
        prev,
        base_image,
    )
}

/// [`stage_digest`] with the salt of `mode` ([`digest_salt`]).
pub fn stage_digest_in(
    mode: DigestMode,
    platform: &str,
    stage_name: &str,
    dependencies: &str,
    prev: Option<(&str, &str)>,
    base_image: Option<&str>,
) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if !platform.is_empty() && platform != "linux/amd64" {
        parts.push(platform);
    }
    parts.push(digest_salt(mode));
    parts.push(stage_name);
    parts.push(dependencies);
    if let Some((digest, next)) = prev {
        parts.push(digest);
        parts.push(next);
    }
    if let Some(b) = base_image {
        parts.push(b);
    }
    sha3_224_hex(&parts)
}

/// werf's stage content digest (the `werf-stage-content-digest` label): the stage digest
/// formula for the stage `<name>-content` with no dependencies, built on the stage itself
/// (`digest`) and its next-stage dependencies `next` (`""` for a Dockerfile stage).
pub fn content_digest(platform: &str, stage_name: &str, digest: &str, next: &str) -> String {
    stage_digest(
        platform,
        &format!("{stage_name}-content"),
        "",
        Some((digest, next)),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";

    #[test]
    fn content_digest_follows_the_werf_formula() {
        // Independently: Python's hashlib.sha3_224 over "1.2:::dockerfile-content::::::<d>:::".
        assert_eq!(
            content_digest("linux/amd64", "dockerfile", D, ""),
            "3bb1594b36870a0afdadaf733612cc815f9b59e89c6e688b9e7820ad"
        );
        assert_eq!(
            content_digest("linux/arm64", "dockerfile", D, ""),
            "663200ae712ed50339cc2bf159889e8ffb2fcb661774ef937fa09852"
        );
    }

    #[test]
    fn linux_amd64_and_no_platform_hash_alike() {
        assert_eq!(
            stage_digest("linux/amd64", "from", "x", None, None),
            stage_digest("", "from", "x", None, None)
        );
        assert_ne!(
            stage_digest("linux/arm64", "from", "x", None, None),
            stage_digest("", "from", "x", None, None)
        );
    }

    #[test]
    fn strict_salt_replaces_werfs() {
        // Python: hashlib.sha3_224(b"1.2+kiln-strict:::dockerfile:::d").hexdigest()
        assert_eq!(
            stage_digest_in(
                DigestMode::Strict,
                "linux/amd64",
                "dockerfile",
                "d",
                None,
                None
            ),
            sha3_224_hex(&["1.2+kiln-strict", "dockerfile", "d"])
        );
        assert_ne!(
            stage_digest_in(DigestMode::Strict, "", "dockerfile", "d", None, None),
            stage_digest("", "dockerfile", "d", None, None)
        );
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
