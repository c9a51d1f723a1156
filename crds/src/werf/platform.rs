//! Target platforms (`os/arch[/variant]`), parsed and normalized the way werf does it through
//! containerd's platform rules (`platforms.Parse` + `Normalize`), so that the platform string
//! that enters stage digests is the same one werf hashes (`linux/i386` → `linux/386`,
//! `linux/aarch64` → `linux/arm64`, `linux/arm64/v8.0` → `linux/arm64`, `linux/amd64/v1` →
//! `linux/amd64`, `linux/arm` → `linux/arm/v7`, ...), and the platform meta args BuildKit
//! predefines (werf: `platformutil.GetPlatformMetaArgsMap`). The one platform type of Kiln:
//! werf.yaml, the spec, digests and node selection all parse through it.

use std::collections::BTreeMap;

use std::fmt;
use std::str::FromStr;

/// A normalized target platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in Go/OCI terms, e.g. `amd64`, `arm64`, `386`.
    pub arch: String,
    /// Architecture variant, e.g. `v7` for `arm`; `None` when there is none.
    pub variant: Option<String>,
}

/// Operating systems Go (and so containerd and werf) knows.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// Architectures Go (and so containerd and werf) knows, after normalization.
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

impl Platform {
    /// `linux/amd64`, the default target when nothing names a platform (and the one platform
    /// werf leaves out of stage digests).
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        }
    }

    /// Parses and normalizes `os/arch[/variant]`. The error is a human reason (the caller adds
    /// the directive and value).
    pub fn parse(value: &str) -> Result<Platform, String> {
        let lowered = value.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lowered.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err("expected os/arch or os/arch/variant, e.g. linux/amd64".into());
        }
        let os = match parts[0] {
            "macos" => "darwin",
            other => other,
        };
        if !KNOWN_OS.contains(&os) {
            return Err(format!("unknown operating system {os:?}"));
        }
        let variant = parts.get(2).copied().unwrap_or("");
        let (arch, variant) = normalize_arch(parts[1], variant);
        if !KNOWN_ARCH.contains(&arch.as_str()) {
            return Err(format!("unknown architecture {:?}", parts[1]));
        }
        if let Some(v) = variant.as_ref().filter(|v| !variant_is_known(&arch, v)) {
            return Err(format!("unknown variant {v:?} for architecture {arch}"));
        }
        Ok(Platform {
            os: os.to_string(),
            arch,
            variant,
        })
    }

    /// The variant, `""` when there is none.
    pub fn variant_str(&self) -> &str {
        self.variant.as_deref().unwrap_or("")
    }

    /// Whether this is `linux/amd64` (stage digests leave the platform out for it).
    pub fn is_linux_amd64(&self) -> bool {
        self.os == "linux" && self.arch == "amd64" && self.variant.is_none()
    }
}

/// containerd's `normalizeArch`: aliases to Go names, default and redundant variants.
fn normalize_arch(arch: &str, variant: &str) -> (String, Option<String>) {
    let (arch, variant) = match (arch, variant) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64", ""),
        ("aarch64" | "arm64", "9" | "9.0" | "v9.0") => ("arm64", "v9"),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5") => ("arm", "v5"),
        ("arm", "6") => ("arm", "v6"),
        ("arm", "8") => ("arm", "v8"),
        (a, v) => (a, v),
    };
    let variant = (!variant.is_empty()).then(|| variant.to_string());
    (arch.to_string(), variant)
}

fn variant_is_known(arch: &str, variant: &str) -> bool {
    let Some(version) = variant.strip_prefix('v') else {
        return false;
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = match version.split_once('.') {
        Some((major, minor)) => numeric(major) && numeric(minor),
        None => numeric(version),
    };
    well_formed && matches!(arch, "arm" | "arm64" | "amd64")
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

/// The platform the builder runs on, for `BUILDPLATFORM`/`BUILDOS`/`BUILDARCH`/`BUILDVARIANT`.
/// werf takes its own host's platform; Kiln's builder pods run on linux/amd64 nodes, so Kiln
/// fixes it (listed in docs/werf-compatibility.md).
pub const BUILD_PLATFORM: &str = "linux/amd64";

/// `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`, `BUILDVARIANT`, `TARGETPLATFORM`, `TARGETOS`,
/// `TARGETARCH`, `TARGETVARIANT` for a target platform.
pub fn platform_meta_args(target: &Platform) -> BTreeMap<String, String> {
    let build = Platform::linux_amd64();
    let mut m = BTreeMap::new();
    for (prefix, p) in [("BUILD", &build), ("TARGET", target)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.arch.clone());
        m.insert(format!("{prefix}VARIANT"), p.variant_str().to_owned());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Platform::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_aliases() {
        assert_eq!(norm("linux/amd64"), "linux/amd64");
        assert_eq!(norm("Linux/X86_64"), "linux/amd64");
        assert_eq!(norm("linux/amd64/v1"), "linux/amd64");
        assert_eq!(norm("linux/amd64/v3"), "linux/amd64/v3");
        assert_eq!(norm("linux/aarch64"), "linux/arm64");
        assert_eq!(norm("linux/arm64/v8"), "linux/arm64");
        // The two rules two copies of this parser once disagreed on.
        assert_eq!(norm("linux/arm64/v8.0"), "linux/arm64");
        assert_eq!(norm("linux/amd64/v1"), "linux/amd64");
        assert_eq!(norm("linux/arm64/v9.0"), "linux/arm64/v9");
        assert_eq!(norm("linux/i386"), "linux/386");
        assert_eq!(norm("linux/arm"), "linux/arm/v7");
        assert_eq!(norm("linux/arm/7"), "linux/arm/v7");
        assert_eq!(norm("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(norm("linux/armhf"), "linux/arm/v7");
        assert_eq!(norm("macos/arm64"), "darwin/arm64");
        assert_eq!(norm("linux/s390x"), "linux/s390x");
    }

    #[test]
    fn rejects_bad_platforms() {
        for bad in [
            "linux",
            "amd64",
            "linux/",
            "/amd64",
            "linux/amd64/v2/x",
            "plan10/amd64",
            "linux/amd65",
            "linux/s390x/v1",
            "linux/arm/vX",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            Platform::parse("linux/amd65").unwrap_err(),
            "unknown architecture \"amd65\""
        );
    }

    #[test]
    fn linux_amd64_is_recognized() {
        assert!(Platform::parse("linux/x86_64").unwrap().is_linux_amd64());
        assert!(!Platform::parse("linux/arm64").unwrap().is_linux_amd64());
    }
}

#[cfg(test)]
mod meta_tests {
    use super::*;

    #[test]
    fn meta_args_for_arm64() {
        let m = platform_meta_args(&Platform::parse("linux/arm64").unwrap());
        assert_eq!(m["TARGETPLATFORM"], "linux/arm64");
        assert_eq!(m["TARGETARCH"], "arm64");
        assert_eq!(m["TARGETVARIANT"], "");
        assert_eq!(m["BUILDPLATFORM"], BUILD_PLATFORM);
        assert_eq!(m.len(), 8);
    }
}
