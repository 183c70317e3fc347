//! OCI artifacts: pull and push root images and kernels in little-vm-helper's
//! layout, with a content-addressed local cache. Filled in by the OCI work; the
//! binary reports "not implemented yet" until then.
