//! Local control plane for end-to-end tests.
