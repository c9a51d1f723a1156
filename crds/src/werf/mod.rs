//! The werf model shared by the operator and the builder pod: the pure rules werf applies
//! to stages, kept in one place so that what the operator hashes and what the builder
//! writes cannot drift apart.
//!
//! - [`digest`]: werf's stage digest formula, its `BUILD_CACHE_VERSION` salt and the
//!   stage content digest (`werf: pkg/build/stage/base.go calculateDigest`).
//! - [`platform`]: one target platform type, normalised with containerd's rules.
//! - [`mirror`]: a `registryMirrors` entry (werf `--container-registry-mirror`), parsed
//!   strictly once for the spec check, the base-image reads and the builder.
//! - [`stage_tag`]: the content-based tag `DIGEST-TIMESTAMP_MILLISEC` of a stage.
//! - [`stapel_docker`]: a Stapel `docker:` section expanded once for the digest and the job.
//!
//! No I/O here.

pub mod digest;
pub mod mirror;
pub mod platform;
pub mod stage_tag;
pub mod stapel_docker;

pub use digest::{
    BUILD_CACHE_VERSION, STRICT_SALT, content_digest, sha3_224_hex, stage_digest, stage_digest_in,
};
pub use mirror::{MirrorError, RegistryMirror};
pub use platform::Platform;
