//! What a state's files are and how QEMU saves and loads them, per layout:
//!
//! - **mapped** (layout 2, what lvh saves): `ram`, the guest's memory as a
//!   file (the saving QEMU's RAM is that file, shared), and `devices`, the
//!   migration stream with the device state only (QEMU's `x-ignore-shared`
//!   capability leaves shared RAM out). A restore maps `ram` private and
//!   copy-on-write and loads `devices`: nothing is copied, the files are
//!   never written, and restores of one state can run at once;
//! - **streamed** (layout 1, saved by earlier lvh versions): `memory`, one
//!   migration stream with RAM and devices, which a restore reads whole.
//!
//! Before a restore the files are checked against the metadata ([`problem`]):
//! the RAM file's size, the device state's checksum.

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::runner::error::RunError;
use crate::runner::guest::sh_quote;
use crate::runner::session::memory::MemoryBacking;

/// The guest's memory of a mapped state.
pub const RAM: &str = "ram";
/// The device state of a mapped state (a migration stream without the RAM).
pub const DEVICES: &str = "devices";
/// The whole migration stream of a streamed state.
pub const MEMORY: &str = "memory";

/// The sha256 of a file, in hex.
pub fn sha256_file(p: &Path) -> Result<String, RunError> {
    let mut f =
        std::fs::File::open(p).map_err(|e| RunError::io(format!("open {}", p.display()), e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| RunError::io(format!("read {}", p.display()), e))?;
    Ok(format!("{:x}", h.finalize()))
}

/// What the metadata recorded about a mapped state's files.
#[derive(Clone, Copy, Debug)]
pub struct Recorded<'a> {
    /// The RAM file's size in bytes, and `-m` as given.
    pub ram_size: u64,
    pub mem: &'a str,
    pub devices_sha256: &'a str,
}

/// How a state holds the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Streamed,
    Mapped,
}

impl Layout {
    /// The layout of `state.json`'s version, if this lvh reads it.
    pub fn of(version: u32) -> Option<Layout> {
        match version {
            1 => Some(Layout::Streamed),
            2 => Some(Layout::Mapped),
            _ => None,
        }
    }
}

/// The saving QEMU's memory: the state's RAM file, shared.
pub fn save_memory(state: &Path) -> MemoryBacking {
    MemoryBacking::File {
        path: state.join(RAM),
        share: true,
    }
}

/// The restoring QEMU's memory: the RAM file mapped private (copy-on-write).
pub fn restore_memory(layout: Layout, state: &Path) -> MemoryBacking {
    match layout {
        Layout::Streamed => MemoryBacking::Anonymous,
        Layout::Mapped => MemoryBacking::File {
            path: state.join(RAM),
            share: false,
        },
    }
}

/// `exec:` URIs of migrations to and from files.
fn exec_uri(cmd: &str, p: &Path) -> String {
    format!("exec:{cmd} {}", sh_quote(&p.to_string_lossy()))
}

/// The capability that keeps shared RAM out of the migration stream.
fn ignore_shared() -> (&'static str, Value) {
    (
        "migrate-set-capabilities",
        json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] }),
    )
}

/// The QMP commands that save the stopped VM's devices into `state`.
pub fn save_commands(state: &Path) -> Vec<(&'static str, Value)> {
    vec![
        ignore_shared(),
        (
            "migrate",
            json!({ "uri": exec_uri("cat >", &state.join(DEVICES)) }),
        ),
    ]
}

/// The restoring QEMU's `-incoming`: a streamed state loads at once; a
/// mapped one waits for its capability ([`incoming_commands`]).
pub fn incoming_args(layout: Layout, state: &Path) -> Vec<String> {
    let uri = match layout {
        Layout::Streamed => exec_uri("cat", &state.join(MEMORY)),
        Layout::Mapped => "defer".into(),
    };
    vec!["-incoming".into(), uri]
}

/// The QMP commands that start loading a state (after QEMU started with
/// [`incoming_args`]).
pub fn incoming_commands(layout: Layout, state: &Path) -> Vec<(&'static str, Value)> {
    match layout {
        Layout::Streamed => vec![],
        Layout::Mapped => vec![
            ignore_shared(),
            (
                "migrate-incoming",
                json!({ "uri": exec_uri("cat", &state.join(DEVICES)) }),
            ),
        ],
    }
}

/// What a state's files look like on disk now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The size of `ram` (mapped) or `memory` (streamed), if it is a file.
    pub memory_len: Option<u64>,
    /// The sha256 of `devices`, if it is a readable file (mapped only).
    pub devices_sha256: Option<String>,
}

/// Looks at the files of a `layout` state in `state`.
pub fn observe(layout: Layout, state: &Path) -> Observed {
    let len = |f: &str| {
        std::fs::metadata(state.join(f))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    };
    match layout {
        Layout::Streamed => Observed {
            memory_len: len(MEMORY),
            devices_sha256: None,
        },
        Layout::Mapped => Observed {
            memory_len: len(RAM),
            devices_sha256: sha256_file(&state.join(DEVICES)).ok(),
        },
    }
}

/// Why the files of a state in `state` do not fit what its metadata
/// recorded, if they do not.
pub fn problem(meta: Recorded, layout: Layout, state: &Path, seen: &Observed) -> Option<String> {
    let p = |f: &str| state.join(f).display().to_string();
    match layout {
        Layout::Streamed => seen
            .memory_len
            .is_none()
            .then(|| format!("its memory file {} is missing", p(MEMORY))),
        Layout::Mapped => match (seen.memory_len, &seen.devices_sha256) {
            (None, _) => Some(format!("its RAM file {} is missing", p(RAM))),
            (Some(n), _) if n != meta.ram_size => Some(format!(
                "its RAM file {} is {n} bytes, not the {} bytes ({}) the VM was saved with: it was truncated or replaced",
                p(RAM),
                meta.ram_size,
                meta.mem
            )),
            (_, None) => Some(format!("its device state {} is missing", p(DEVICES))),
            (_, Some(sum)) if *sum != meta.devices_sha256 => Some(format!(
                "its device state {} does not match the checksum recorded when it was saved (sha256 {}, recorded {}): it is corrupted",
                p(DEVICES),
                sum,
                meta.devices_sha256
            )),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Recorded<'static> {
        Recorded {
            ram_size: 536870912,
            mem: "512M",
            devices_sha256: "ab",
        }
    }

    #[test]
    fn layouts_by_version() {
        assert_eq!(Layout::of(1), Some(Layout::Streamed));
        assert_eq!(Layout::of(2), Some(Layout::Mapped));
        assert_eq!(Layout::of(3), None);
    }

    #[test]
    fn a_save_shares_the_ram_file_and_a_restore_maps_it_private() {
        let d = Path::new("/s/x y");
        assert_eq!(
            save_memory(d),
            MemoryBacking::File {
                path: "/s/x y/ram".into(),
                share: true
            }
        );
        assert_eq!(
            restore_memory(Layout::Mapped, d),
            MemoryBacking::File {
                path: "/s/x y/ram".into(),
                share: false
            }
        );
        assert_eq!(
            restore_memory(Layout::Streamed, d),
            MemoryBacking::Anonymous
        );
        let cmds = save_commands(d);
        assert_eq!(cmds[0].0, "migrate-set-capabilities");
        assert_eq!(
            cmds[0].1["capabilities"][0]["capability"],
            "x-ignore-shared"
        );
        assert_eq!(cmds[0].1["capabilities"][0]["state"], true);
        assert_eq!(cmds[1].0, "migrate");
        assert_eq!(cmds[1].1["uri"], "exec:cat > '/s/x y/devices'");
        assert_eq!(incoming_args(Layout::Mapped, d), ["-incoming", "defer"]);
        let cmds = incoming_commands(Layout::Mapped, d);
        assert_eq!(cmds[0], save_commands(d)[0], "both sides ignore shared RAM");
        assert_eq!(cmds[1].0, "migrate-incoming");
        assert_eq!(cmds[1].1["uri"], "exec:cat '/s/x y/devices'");
        // An earlier lvh's state streams its memory file, as it did.
        assert_eq!(
            incoming_args(Layout::Streamed, d),
            ["-incoming", "exec:cat '/s/x y/memory'"]
        );
        assert!(incoming_commands(Layout::Streamed, d).is_empty());
    }

    #[test]
    fn damaged_files_are_refused_naming_the_file() {
        let m = meta();
        let d = Path::new("/s");
        let seen = |len: Option<u64>, sum: Option<&str>| Observed {
            memory_len: len,
            devices_sha256: sum.map(String::from),
        };
        let ok = seen(Some(536870912), Some("ab"));
        assert_eq!(problem(m, Layout::Mapped, d, &ok), None);
        for (s, want) in [
            (seen(None, Some("ab")), "its RAM file /s/ram is missing"),
            (
                seen(Some(4096), Some("ab")),
                "its RAM file /s/ram is 4096 bytes, not the 536870912 bytes (512M) the VM was saved with: it was truncated or replaced",
            ),
            (seen(Some(536870912), None), "its device state /s/devices is missing"),
            (
                seen(Some(536870912), Some("cd")),
                "its device state /s/devices does not match the checksum recorded when it was saved (sha256 cd, recorded ab): it is corrupted",
            ),
        ] {
            assert_eq!(problem(m, Layout::Mapped, d, &s).as_deref(), Some(want));
        }
        assert_eq!(problem(m, Layout::Streamed, d, &seen(Some(1), None)), None);
        assert_eq!(
            problem(m, Layout::Streamed, d, &seen(None, None)).as_deref(),
            Some("its memory file /s/memory is missing")
        );
    }

    #[test]
    fn observes_sizes_and_checksums() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(observe(Layout::Mapped, d.path()), Observed::default());
        std::fs::write(d.path().join(RAM), vec![0u8; 8192]).unwrap();
        std::fs::write(d.path().join(DEVICES), "abc").unwrap();
        let o = observe(Layout::Mapped, d.path());
        assert_eq!(o.memory_len, Some(8192));
        assert_eq!(
            o.devices_sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }
}
