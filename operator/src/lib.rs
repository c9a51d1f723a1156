//! Kiln operator library.

pub mod config;
pub mod lock;
pub mod plan;
pub mod slug;
pub mod tags;
