//! Platform strings (`os/arch[/variant]`) normalised the way containerd's `platforms.Parse` +
//! `Format` do, and the platform meta args BuildKit predefines (werf:
//! `platformutil.GetPlatformMetaArgsMap`).

use std::collections::BTreeMap;

/// The platform the builder runs on, for `BUILDPLATFORM`/`BUILDOS`/`BUILDARCH`/`BUILDVARIANT`.
/// werf takes its own host's platform; Kiln's builder pods run on linux/amd64 nodes, so Kiln
/// fixes it (listed in docs/werf-compatibility.md).
pub const BUILD_PLATFORM: &str = "linux/amd64";

/// A parsed platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`, `arm`.
    pub arch: String,
    /// e.g. `v7`, or empty.
    pub variant: String,
}

impl Platform {
    /// Parses and normalises `os/arch[/variant]` (`aarch64`→`arm64`, `x86_64`→`amd64`,
    /// `arm64/v8`→`arm64`, bare `arm`→`arm/v7`). `None` for a malformed string.
    pub fn parse(s: &str) -> Option<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let valid = |p: &str| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !parts.iter().all(|p| valid(p)) {
            return None;
        }
        let os = parts[0].to_ascii_lowercase();
        let mut arch = parts[1].to_ascii_lowercase();
        let mut variant = parts
            .get(2)
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        match arch.as_str() {
            "i386" => arch = "386".into(),
            "x86_64" | "x86-64" => {
                arch = "amd64".into();
            }
            "aarch64" | "arm64" => {
                arch = "arm64".into();
                if matches!(variant.as_str(), "8" | "v8" | "v8.0") {
                    variant.clear();
                }
            }
            "armhf" => {
                arch = "arm".into();
                variant = "v7".into();
            }
            "armel" => {
                arch = "arm".into();
                variant = "v6".into();
            }
            "arm" => {
                variant = match variant.as_str() {
                    "" | "7" => "v7".into(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    v => v.to_string(),
                };
            }
            _ => {}
        }
        if arch == "amd64" && variant == "v1" {
            variant.clear();
        }
        Some(Platform { os, arch, variant })
    }

    /// `os/arch[/variant]`.
    pub fn format(&self) -> String {
        if self.variant.is_empty() {
            format!("{}/{}", self.os, self.arch)
        } else {
            format!("{}/{}/{}", self.os, self.arch, self.variant)
        }
    }
}

/// `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`, `BUILDVARIANT`, `TARGETPLATFORM`, `TARGETOS`,
/// `TARGETARCH`, `TARGETVARIANT` for a target platform.
pub fn platform_meta_args(target: &Platform) -> BTreeMap<String, String> {
    let build = Platform::parse(BUILD_PLATFORM).expect("constant platform");
    let mut m = BTreeMap::new();
    for (prefix, p) in [("BUILD", &build), ("TARGET", target)] {
        m.insert(format!("{prefix}PLATFORM"), p.format());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.arch.clone());
        m.insert(format!("{prefix}VARIANT"), p.variant.clone());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_containerd() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().format(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/aarch64").unwrap().format(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().format(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().format(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("Linux/X86_64").unwrap().format(),
            "linux/amd64"
        );
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux/").is_none());
        assert!(Platform::parse("linux/amd64/v2/x").is_none());
    }

    #[test]
    fn meta_args_for_arm64() {
        let m = platform_meta_args(&Platform::parse("linux/arm64").unwrap());
        assert_eq!(m["TARGETPLATFORM"], "linux/arm64");
        assert_eq!(m["TARGETARCH"], "arm64");
        assert_eq!(m["TARGETVARIANT"], "");
        assert_eq!(m["BUILDPLATFORM"], "linux/amd64");
        assert_eq!(m.len(), 8);
    }
}
