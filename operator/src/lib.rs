//! Kiln operator library.

pub mod storage;
