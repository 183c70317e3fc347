//! Kernels: `kernels.json`, git worktrees in one shared bare repository, option
//! groups and `.config` verification, native and cross builds. Filled in by the
//! kernel-builder work; the binary reports "not implemented yet" until then.
