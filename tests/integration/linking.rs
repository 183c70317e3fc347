//! What the built binary needs at load time: libguestfs is opened at run time
//! only when an appliance is needed, so `lvh` must not link it.

use std::process::Command;

#[test]
fn the_binary_does_not_link_libguestfs() {
    let out = Command::new("ldd")
        .arg(crate::common::lvh_bin())
        .output()
        .expect("run ldd (Debian package libc-bin)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd failed: {text}");
    // ldd really listed the dependencies (libc is always there) ...
    assert!(text.contains("libc.so"), "unexpected ldd output:\n{text}");
    // ... and libguestfs is not among them.
    assert!(!text.contains("guestfs"), "lvh links libguestfs:\n{text}");
}
