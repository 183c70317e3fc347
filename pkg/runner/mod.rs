//! The VM runner: QEMU argv from small pure builders, VM supervision and the
//! guest command channel. Filled in by the runner work; the binary reports
//! "not implemented yet" until then.
