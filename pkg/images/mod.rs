//! Root images: `images.json` parsing and validation, the parent forest, and the
//! build pipeline (mmdebstrap, filesystem, libguestfs actions). Filled in by the
//! image-builder work; the binary reports "not implemented yet" until then.
