//! Kiln operator library.

pub mod digest;
pub mod dockerfile;
pub mod source;
