//! lvh: build Debian root images and Linux kernels, and boot them in QEMU fast.
//!
//! This is the library behind the `lvh` binary. It never prints: long operations
//! emit [`progress::Event`]s to a [`progress::Reporter`] that the binary renders.
//!
//! How the pieces fit: [`images`] turns `images.json` into root images
//! (mmdebstrap, libguestfs, qemu-img); [`kernels`] fetches, configures and
//! builds kernel trees from `kernels.json`; [`runner`] boots a kernel and an
//! image in QEMU and runs a command in the guest; [`matrix`] runs many such
//! commands over kernels × images (`lvh test`) on the runner, and [`bisect`]
//! walks a kernel's history, building each step with `kernels` and running
//! it with the runner (`lvh kernels bisect`). That is the pipeline
//! images → kernels → runner, and the runner only takes paths, so it needs
//! neither of the others. [`oci`] sits beside them: it pushes what `images` and
//! `kernels` built and pulls what the runner boots, without a Docker daemon.
//! All of them share the plumbing: [`arch`] (the target architecture as a
//! runtime enum), [`exec`] (the one way to run a child process), [`cancel`]
//! (Ctrl-C), [`progress`] (events), [`error`] (exit codes and input errors),
//! [`fsutil`] (atomic outputs, locks, cache paths, private files and checked
//! inputs), [`bytesize`] (sizes as users write them) and [`date`] (UTC calendar
//! dates). [`triage`] reads kernel console logs: it finds, titles,
//! fingerprints and symbolizes crash reports, for the runner, the matrix and
//! the binary alike, and uses none of them. Two crate-internal helpers
//! complete it: `sched` runs a forest of jobs in parallel (image builds, each
//! after its parent), and `jsonpos`
//! records where each JSON value sits and strips the keys Go would ignore, so
//! config errors and warnings can name file, line and key. The subsystems
//! never reach into each other's internals; only what the binary and the tests
//! use is public.

pub mod arch;
pub mod bisect;
pub mod bytesize;
pub mod cancel;
pub mod date;
pub mod error;
pub mod exec;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzz;
pub mod images;
pub(crate) mod jsonpos;
pub mod kernels;
pub mod matrix;
pub mod oci;
pub mod progress;
pub mod runner;
pub(crate) mod sched;
pub mod stale;
pub mod triage;
pub mod version;

/// The version of lvh, as built.
pub const VERSION: &str = version::PKG_VERSION;
