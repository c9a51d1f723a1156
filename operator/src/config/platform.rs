//! Target platforms: the one platform type of the shared werf model
//! ([`kiln_crds::werf::platform`]), re-exported where werf.yaml is read.

pub use kiln_crds::werf::platform::Platform;
