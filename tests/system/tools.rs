//! Every external tool the system tests use must be installed (by
//! `scripts/install-deps.sh`); a missing one fails here with its name.

/// Tools and the Debian package that provides each.
pub const REQUIRED: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-system-aarch64", "qemu-system-arm"),
    ("qemu-img", "qemu-utils"),
    ("mmdebstrap", "mmdebstrap"),
    ("guestfish", "libguestfs-tools"),
    ("mkfs.ext4", "e2fsprogs"),
    ("skopeo", "skopeo"),
    ("docker-registry", "docker-registry"),
    ("zstd", "zstd"),
    ("git", "git"),
    ("make", "make"),
    ("gcc", "gcc"),
    ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    ("bc", "bc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("qemu-aarch64-static", "qemu-user-static"),
    ("gdb", "gdb"),
    ("expect", "expect"),
];

#[test]
fn every_required_tool_is_installed() {
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(tool, _)| lvh::exec::which(tool).is_none())
        .map(|(tool, pkg)| format!("{tool} (Debian package {pkg})"))
        .collect();
    assert!(
        missing.is_empty(),
        "missing tools, run scripts/install-deps.sh: {}",
        missing.join(", ")
    );
}

#[test]
fn a_host_kernel_exists_for_the_libguestfs_appliance() {
    let found = std::fs::read_dir("/boot")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        })
        .unwrap_or(false);
    assert!(found, "no /boot/vmlinuz-*: install linux-image-amd64");
}
