//! Real components for Kiln's tests, started on loopback by the tests that use them.
//!
//! Each module owns one component; nothing here is a mock except [`mock_api`], the scripted
//! Kubernetes API for unit tests of reconcile logic.

pub mod base_images;
pub mod git_server;
pub mod mock_api;
pub mod qemu;
pub mod registry;
