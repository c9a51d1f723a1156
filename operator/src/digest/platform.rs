//! Platforms in digests: the one platform type of the shared werf model
//! ([`kiln_crds::werf::platform`], containerd's normalisation) and the platform meta args
//! BuildKit predefines (werf: `platformutil.GetPlatformMetaArgsMap`).

pub use kiln_crds::werf::platform::{BUILD_PLATFORM, Platform, platform_meta_args};
