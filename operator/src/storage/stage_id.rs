//! Stage IDs and the tags that carry them: `DIGEST-TIMESTAMP_MILLISEC` for a stage image,
//! a bare `DIGEST` for a multi-platform manifest list, and the tags that are not stages.
//!
//! Reproduces werf v2's tag grammar (`pkg/storage/repo_stages_storage.go`,
//! `pkg/image/stage.go`): DIGEST is a 56-character SHA3-224 hex string, TIMESTAMP_MILLISEC
//! the 13-digit UTC publish time in milliseconds; a stage tag is exactly 70 characters with
//! one `-`, a multi-platform tag exactly 56. Tags starting with `managed-image-` or `meta-`
//! and tags ending in `-rejected` are not stages.

use std::fmt;
use std::str::FromStr;

/// Length of a stage digest: SHA3-224 in lowercase hex.
pub const STAGE_DIGEST_LEN: usize = 56;
/// Length of a `DIGEST-TIMESTAMP_MILLISEC` stage tag (56 + 1 + 13).
pub const STAGE_TAG_LEN: usize = 70;
/// Suffix of the tag that marks a stage as unusable (werf's `-rejected`).
pub const REJECTED_SUFFIX: &str = "-rejected";

/// A 56-character lowercase-hex SHA3-224 stage digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageDigest(String);

impl StageDigest {
    /// The digest's hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not a stage digest or stage ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageIdError {
    /// Not 56 lowercase hex characters.
    #[error("{input:?} is not a stage digest: expected 56 lowercase hex characters (SHA3-224)")]
    BadDigest {
        /// The text that was parsed.
        input: String,
    },
    /// The part after `-` is not a 13-digit millisecond timestamp.
    #[error("{input:?} is not a stage ID: expected DIGEST-TIMESTAMP_MILLISEC with 13 digits")]
    BadTimestamp {
        /// The text that was parsed.
        input: String,
    },
}

impl FromStr for StageDigest {
    type Err = StageIdError;

    fn from_str(input: &str) -> Result<Self, StageIdError> {
        let ok = input.len() == STAGE_DIGEST_LEN
            && input
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(StageDigest(input.to_owned()))
        } else {
            Err(StageIdError::BadDigest {
                input: input.to_owned(),
            })
        }
    }
}

/// A stage in a stages storage: its digest and its creation timestamp in milliseconds
/// since the Unix epoch (UTC). A timestamp of 0 marks a multi-platform manifest list,
/// tagged by the bare digest (werf's `StageID{Digest, CreationTs}` with `IsMultiplatform`).
///
/// Display and [`StageId::tag`] give `DIGEST-TIMESTAMP_MILLISEC`, or `DIGEST` when the
/// timestamp is 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId {
    digest: StageDigest,
    creation_ts_ms: u64,
}

impl StageId {
    /// A single-platform stage published at `creation_ts_ms` (UTC milliseconds, > 0 and
    /// at most 13 digits so the tag keeps werf's 70-character shape).
    pub fn new(digest: StageDigest, creation_ts_ms: u64) -> Self {
        StageId {
            digest,
            creation_ts_ms,
        }
    }

    /// A multi-platform manifest list, tagged by its bare digest.
    pub fn multi_platform(digest: StageDigest) -> Self {
        StageId {
            digest,
            creation_ts_ms: 0,
        }
    }

    /// The stage digest.
    pub fn digest(&self) -> &StageDigest {
        &self.digest
    }

    /// Milliseconds since the Unix epoch (UTC) when the stage was published; 0 for a
    /// multi-platform manifest list.
    pub fn creation_ts_ms(&self) -> u64 {
        self.creation_ts_ms
    }

    /// Whether this is a multi-platform manifest list (timestamp 0).
    pub fn is_multi_platform(&self) -> bool {
        self.creation_ts_ms == 0
    }

    /// The tag this stage is stored under.
    pub fn tag(&self) -> String {
        self.to_string()
    }

    /// The tag that marks this stage rejected: `DIGEST-TIMESTAMP_MILLISEC-rejected`.
    pub fn rejected_tag(&self) -> String {
        format!("{self}{REJECTED_SUFFIX}")
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.creation_ts_ms == 0 {
            write!(f, "{}", self.digest)
        } else {
            write!(f, "{}-{}", self.digest, self.creation_ts_ms)
        }
    }
}

impl FromStr for StageId {
    type Err = StageIdError;

    /// Parses `DIGEST-TIMESTAMP_MILLISEC` (70 characters) or a bare `DIGEST` (56).
    fn from_str(input: &str) -> Result<Self, StageIdError> {
        match input.split_once('-') {
            None => Ok(StageId::multi_platform(input.parse()?)),
            Some((digest, ts)) => {
                let digest: StageDigest = digest.parse().map_err(|_| StageIdError::BadDigest {
                    input: input.to_owned(),
                })?;
                let bad_ts = || StageIdError::BadTimestamp {
                    input: input.to_owned(),
                };
                if ts.len() != STAGE_TAG_LEN - STAGE_DIGEST_LEN - 1
                    || !ts.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(bad_ts());
                }
                let ts: u64 = ts.parse().map_err(|_| bad_ts())?;
                if ts == 0 {
                    return Err(bad_ts());
                }
                Ok(StageId::new(digest, ts))
            }
        }
    }
}

/// What a tag in a stages storage is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageTag {
    /// `DIGEST-TIMESTAMP_MILLISEC`: a single-platform stage image.
    Stage(StageId),
    /// Bare `DIGEST`: a multi-platform manifest list.
    MultiPlatform(StageDigest),
    /// `DIGEST-TIMESTAMP_MILLISEC-rejected`: the named stage must not be used.
    Rejected(StageId),
    /// Anything else: `managed-image-…`, `meta-…`, custom tags, `latest`, malformed
    /// stage-like tags. Never a stage.
    Other,
}

/// Classifies a tag of a stages storage (werf's `GetStagesIDs` listing filter, plus the
/// `-rejected` records it collects separately).
pub fn classify_tag(tag: &str) -> StageTag {
    if tag.starts_with("managed-image-") || tag.starts_with("meta-") {
        return StageTag::Other;
    }
    if let Some(stage) = tag.strip_suffix(REJECTED_SUFFIX) {
        return match stage_tag(stage) {
            Some(id) if !id.is_multi_platform() => StageTag::Rejected(id),
            _ => StageTag::Other,
        };
    }
    match stage_tag(tag) {
        Some(id) if id.is_multi_platform() => StageTag::MultiPlatform(id.digest),
        Some(id) => StageTag::Stage(id),
        None => StageTag::Other,
    }
}

fn stage_tag(tag: &str) -> Option<StageId> {
    match tag.len() {
        STAGE_DIGEST_LEN | STAGE_TAG_LEN => tag.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";

    #[test]
    fn stage_id_display_and_parse_round_trip() {
        let id: StageId = format!("{D}-1700000000123").parse().unwrap();
        assert_eq!(id.digest().as_str(), D);
        assert_eq!(id.creation_ts_ms(), 1_700_000_000_123);
        assert!(!id.is_multi_platform());
        assert_eq!(id.tag().len(), 70);
        assert_eq!(id.to_string(), format!("{D}-1700000000123"));
        assert_eq!(id.rejected_tag(), format!("{D}-1700000000123-rejected"));

        let mp: StageId = D.parse().unwrap();
        assert!(mp.is_multi_platform());
        assert_eq!(mp.to_string(), D);
    }

    #[test]
    fn classifies_stage_multi_platform_rejected_and_service_tags() {
        let stage = format!("{D}-1700000000123");
        assert!(
            matches!(classify_tag(&stage), StageTag::Stage(id) if id.creation_ts_ms() == 1_700_000_000_123)
        );
        assert!(matches!(classify_tag(D), StageTag::MultiPlatform(d) if d.as_str() == D));
        assert!(
            matches!(classify_tag(&format!("{stage}-rejected")), StageTag::Rejected(id) if id.to_string() == stage)
        );
        for other in [
            "latest".to_owned(),
            "managed-image-backend".to_owned(),
            format!("meta-afa96f8_{D}_{stage}"),
            format!("custom-tag-meta-{D}"),
            format!("{D}-rejected"),     // a manifest list cannot be rejected
            format!("{D}-170000000012"), // 12-digit timestamp: 69 characters
            format!("{D}-17000000001234"), // 14 digits: 71 characters
            format!("{D}-170000000012x"), // not digits
            format!("{}G-1700000000123", &D[..55]), // not hex
            D.to_uppercase(),            // werf digests are lowercase
            format!("{D}-0000000000000"), // timestamp 0 is the multi-platform marker
            format!("client-id-{D}"),
        ] {
            assert_eq!(classify_tag(&other), StageTag::Other, "{other}");
        }
    }

    #[test]
    fn parse_errors_name_the_input() {
        let err = "abc".parse::<StageDigest>().unwrap_err();
        assert!(err.to_string().contains("\"abc\""));
        let err = format!("{D}-12").parse::<StageId>().unwrap_err();
        assert_eq!(
            err,
            StageIdError::BadTimestamp {
                input: format!("{D}-12")
            }
        );
    }
}
