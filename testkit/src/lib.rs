//! Real components for Kiln's tests, started on loopback by the tests that use them.
//!
//! Each module owns one component; nothing here is a mock.

pub mod base_images;
pub mod git_server;
pub mod qemu;
pub mod registry;
