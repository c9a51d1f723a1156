//! Kiln operator library.

pub mod config;
pub mod digest;
pub mod dockerfile;
pub mod lock;
pub mod mirror;
pub mod plan;
pub mod pods;
pub mod slug;
pub mod source;
pub mod storage;
pub mod tags;
