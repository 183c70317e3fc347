//! The two guest/host architectures lvh knows, and every per-architecture fact
//! (QEMU binary and machine, console, kernel image path, make variables, Debian
//! and OCI names) in one place, so no other module compares arch strings.

use std::fmt;
use std::str::FromStr;

/// A CPU architecture, for the host, a guest, or a kernel build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

/// An architecture name lvh does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown architecture {0:?} (known: amd64, arm64; also x86_64, aarch64)")]
pub struct UnknownArch(pub String);

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// The architecture this lvh binary was built for.
    pub const fn host() -> Arch {
        #[cfg(target_arch = "aarch64")]
        {
            Arch::Arm64
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            Arch::Amd64
        }
    }

    /// The Go/Debian-style name (`amd64`, `arm64`), used on the command line and in files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The name `uname -m` prints in a guest of this architecture.
    pub const fn uname_machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The QEMU system emulator for guests of this architecture.
    pub const fn qemu_binary(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    /// The QEMU user-mode emulator (for foreign-arch chroots, via binfmt).
    pub const fn qemu_user_binary(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-x86_64-static",
            Arch::Arm64 => "qemu-aarch64-static",
        }
    }

    /// The serial console device name the guest kernel writes to.
    pub const fn console(self) -> &'static str {
        match self {
            Arch::Amd64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        }
    }

    /// `ARCH=` for the kernel's make.
    pub const fn kernel_make_arch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The make target that produces the bootable kernel image.
    pub const fn kernel_image_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "bzImage",
            Arch::Arm64 => "Image.gz",
        }
    }

    /// The bootable kernel image, relative to the kernel tree.
    pub const fn kernel_image_path(self) -> &'static str {
        match self {
            Arch::Amd64 => "arch/x86/boot/bzImage",
            Arch::Arm64 => "arch/arm64/boot/Image.gz",
        }
    }

    /// The uncompressed kernel image QEMU can boot directly, relative to the kernel tree.
    pub const fn kernel_raw_image_path(self) -> &'static str {
        match self {
            Arch::Amd64 => "arch/x86/boot/bzImage",
            Arch::Arm64 => "arch/arm64/boot/Image",
        }
    }

    /// `CROSS_COMPILE=` prefix when building for this arch on another host.
    pub const fn cross_compile_prefix(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu-",
            Arch::Arm64 => "aarch64-linux-gnu-",
        }
    }

    /// The Debian package providing the cross compiler for this arch.
    pub const fn cross_gcc_package(self) -> &'static str {
        match self {
            Arch::Amd64 => "gcc-x86-64-linux-gnu",
            Arch::Arm64 => "gcc-aarch64-linux-gnu",
        }
    }

    /// The Debian architecture name (for mmdebstrap `--architectures`).
    pub const fn debian_arch(self) -> &'static str {
        self.as_str()
    }

    /// The OCI platform string (`linux/amd64`).
    pub const fn oci_platform(self) -> &'static str {
        match self {
            Arch::Amd64 => "linux/amd64",
            Arch::Arm64 => "linux/arm64",
        }
    }

    /// The OCI/Go architecture name in image configs and indexes.
    pub const fn oci_arch(self) -> &'static str {
        self.as_str()
    }

    /// True when this arch is the host's and can therefore use KVM.
    pub fn is_native(self) -> bool {
        self == Arch::host()
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "amd64" | "x86_64" | "x86-64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            _ => Err(UnknownArch(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_and_uname_names() {
        for (input, want) in [
            ("amd64", Arch::Amd64),
            ("x86_64", Arch::Amd64),
            ("AMD64", Arch::Amd64),
            ("arm64", Arch::Arm64),
            ("aarch64", Arch::Arm64),
        ] {
            assert_eq!(input.parse::<Arch>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn unknown_arch_names_the_value_and_the_choices() {
        let err = "riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("\"riscv64\""), "{err}");
        assert!(err.contains("amd64, arm64"), "{err}");
    }

    #[test]
    fn round_trips_through_display() {
        for a in Arch::ALL {
            assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
        }
    }

    #[test]
    fn per_arch_facts() {
        assert_eq!(Arch::Amd64.console(), "ttyS0");
        assert_eq!(Arch::Arm64.console(), "ttyAMA0");
        assert_eq!(Arch::Arm64.kernel_image_path(), "arch/arm64/boot/Image.gz");
        assert_eq!(Arch::Amd64.kernel_make_arch(), "x86_64");
        assert_eq!(Arch::Arm64.oci_platform(), "linux/arm64");
        assert_eq!(Arch::Arm64.cross_gcc_package(), "gcc-aarch64-linux-gnu");
    }
}
