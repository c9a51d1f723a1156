//! Kiln operator library.
pub mod lock;
