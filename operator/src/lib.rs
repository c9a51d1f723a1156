//! Kiln operator library.
