//! `lvh kernels bisect` on a real history: seven commits on the 6.12 fixture
//! tree (one breaks the build, one plants a WARN in `/proc/version`'s read),
//! built incrementally by lvh and booted under QEMU at every step.

use lvh::arch::Arch;

use crate::support::fixtures::history;

#[test]
fn the_history_kernel_is_built_at_its_last_commit() {
    let h = history::history_kernel(Arch::Amd64).expect("history kernel");
    assert_eq!(h.commits.len(), 8, "{:?}", h.commits);
    assert!(h.kernel.image.is_file());
}
