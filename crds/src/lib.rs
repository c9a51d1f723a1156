//! Kiln API types.

pub mod job;
