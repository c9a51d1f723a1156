//! The stages storage on a container registry: where every stage lives as
//! `REPO:DIGEST-TIMESTAMP_MILLISEC`, and how Kiln finds, describes, copies and publishes
//! stages across the stages storage, final repo, secondary repos and cache repos.
//!
//! Concerns, one module each:
//! - [`reference`]: `registry/repository` references and tag grammar;
//! - [`stage_id`]: stage digests, stage IDs and classifying tags (werf's tag format);
//! - [`selection`]: candidates for a digest and selection rules (pure);
//! - [`description`]: manifests, image configs and stage descriptions (pure);
//! - [`client`]: the registry transport (auth, plain HTTP, retries, request counters);
//! - [`publish`]: retag, copy, manifest lists, rejection records;
//! - [`repos`]: the four repos and the per-reconcile caches;
//! - [`auth`], [`retry`], [`counters`], [`error`]: credentials, backoff, request counts,
//!   errors.

#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod counters;
pub mod description;
pub mod error;
pub mod publish;
pub mod reference;
pub mod repos;
pub mod retry;
pub mod selection;
pub mod stage_id;

pub use auth::{DockerConfig, RegistryCredential};
pub use client::{RegistryClient, RegistryClientConfig};
pub use counters::{Operation, RequestCounts};
pub use description::{Platform, StageContent, StageDescription};
pub use error::StorageError;
pub use reference::RepoRef;
pub use repos::{FinalCopy, Freshness, StagesStorage, StorageRepos};
pub use retry::RetryPolicy;
pub use selection::{CandidateRule, OldestCreationTs, StageTagIndex, Verdict};
pub use stage_id::{StageDigest, StageId, StageTag};
