//! Kiln operator library.

pub mod config;
pub mod mirror;
pub mod plan;
pub mod slug;
pub mod tags;
