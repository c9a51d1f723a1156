//! The content-based tag of a stage in the stages storage: `DIGEST-TIMESTAMP_MILLISEC`
//! (werf's `RepoStage_ImageFormatWithCreationTs` without the repo), e.g.
//! `e1e7…-1700000000000`. A bare `DIGEST` (timestamp 0) is a multi-platform manifest list.

/// The tag of the stage with `digest` published at `timestamp_millis` (milliseconds since
/// the Unix epoch, UTC).
pub fn stage_tag(digest: &str, timestamp_millis: u64) -> String {
    format!("{digest}-{timestamp_millis}")
}

/// Splits a stage tag `DIGEST-TIMESTAMP_MILLISEC` into digest and timestamp; `None` when
/// the part after the last `-` is not a decimal number.
pub fn split_stage_tag(tag: &str) -> Option<(&str, u64)> {
    let (digest, ts) = tag.rsplit_once('-')?;
    if digest.is_empty() || ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digest, ts.parse().ok()?))
}

/// The stage tag of a published stage reference `REPO:DIGEST-TIMESTAMP_MILLISEC`; `None`
/// when the reference has no tag (a colon before the last `/` is a registry port).
pub fn stage_tag_of_reference(reference: &str) -> Option<&str> {
    let (repo, tag) = reference.rsplit_once(':')?;
    (!tag.contains('/') && !repo.is_empty()).then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let tag = stage_tag("abc", 1_700_000_000_123);
        assert_eq!(tag, "abc-1700000000123");
        assert_eq!(split_stage_tag(&tag), Some(("abc", 1_700_000_000_123)));
        assert_eq!(split_stage_tag("abc-12x"), None);
        assert_eq!(split_stage_tag("abc"), None);
    }

    #[test]
    fn the_tag_of_a_reference_skips_a_registry_port() {
        assert_eq!(
            stage_tag_of_reference("127.0.0.1:5000/shop:abc-1"),
            Some("abc-1")
        );
        assert_eq!(stage_tag_of_reference("127.0.0.1:5000/shop"), None);
        assert_eq!(stage_tag_of_reference("shop"), None);
    }
}
