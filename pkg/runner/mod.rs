//! The VM runner: boots a kernel and an image in QEMU, runs a command in the
//! guest and returns its exit code (or a shell, the console, a daemon).
//!
//! One front door ([`prepare`]: options in, a checked plan out) serves `lvh
//! run` and `lvh test` alike; [`run_report`] runs the plan. Inside, by
//! responsibility, lowest first:
//!
//! - `guest`: the guest protocol (ports, tags, messages, environment) and
//!   the init's plan, run by the shell init (`init.sh`) or the static init
//!   (`guest_init.c` in an initramfs);
//! - `plan`: the options and their one vocabulary, what the host and files
//!   say, and the pure decision of the run (accelerator, fast boot, kernel
//!   command line, limits);
//! - `verdict`: how a run ends, decided without QEMU (the supervisor's state
//!   machine, splats and their allowlist, the result file);
//! - `session`: the one QEMU session type (spawn, run directory, channels,
//!   supervision, teardown) and its command-mode, daemon and console policies;
//! - `saved` (saved VMs) and `debug` (gdb, the interactive shell): further
//!   policies of the session;
//! - `front` (the front door) and `run` (which policy runs a plan).

pub(crate) mod debug;
pub(crate) mod error;
pub(crate) mod front;
pub(crate) mod guest;
pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod saved;
pub(crate) mod session;
pub(crate) mod verdict;

pub use debug::gdb::{find_symbols, KernelSymbols};
pub use error::RunError;
pub use front::{prepare, Host, Prepared, RunRequest, StateRequest};
pub use guest::initramfs::{compiler_package, embedded as guest_inits};
pub(crate) use guest::sh_quote;
pub use plan::accel::{choose as parse_accel, AccelChoice};
pub use plan::decision::{Mode, RunPlan};
pub(crate) use plan::options::file_key;
pub use plan::options::{
    duration, parse_ports, parse_root_dev, MemSize, RunOptions, DEFAULT_CPUS, DEFAULT_MEM,
    DEFAULT_SSH_TIMEOUT,
};
pub(crate) use plan::options::{Key, CPUS, CWD, HOST_MOUNT, MEMORY, TIMEOUT};
pub use plan::sharefs::FsRequest;
pub use plan::sshkey::{default_key, login_line};
pub use run::run_report;
pub use saved::state::states_dir;
pub use saved::state::{describe as describe_state, list as list_states, remove as remove_state};
pub use session::channel::Sinks;
pub use session::daemon::qemu_cmd;
pub use verdict::allow::{Date, SplatMode, SplatPolicy};
pub use verdict::outcome::{Outcome, RunReport};
pub use verdict::result::{ResultVerdict, RunResult};
