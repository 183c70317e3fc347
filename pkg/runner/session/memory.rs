//! Where the guest's RAM lives: QEMU's own memory, a shared memfd that
//! vhost-user devices (virtiofsd) map, or a file mapped as the guest's RAM
//! (saved VMs: a save writes the guest's memory through to the state's
//! file, a restore maps it privately). One enum and the builders of its QEMU
//! arguments, used by `qemu::argv`.

use std::path::PathBuf;

/// The guest RAM's backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MemoryBacking {
    /// QEMU's own anonymous memory (`-m` alone).
    #[default]
    Anonymous,
    /// A shared memfd: vhost-user devices (virtiofsd) map guest RAM.
    SharedMemfd,
    /// A file mapped as the guest's RAM: `share` writes the guest's memory
    /// through to it (a save); otherwise the mapping is private and
    /// copy-on-write (a restore: the file is never written, and any number
    /// of VMs can map it at once).
    File { path: PathBuf, share: bool },
}

/// The id of the memory backend object.
const MEM_ID: &str = "lvhmem";

/// The `-machine` property that makes the backend the guest's RAM, if not
/// QEMU's default.
pub fn machine_prop(m: &MemoryBacking) -> Option<String> {
    (*m != MemoryBacking::Anonymous).then(|| format!("memory-backend={MEM_ID}"))
}

/// The backend object for a guest of `mem` (QEMU's `-m` value), if not
/// QEMU's default.
pub fn args(m: &MemoryBacking, mem: &str) -> Vec<String> {
    let object = match m {
        MemoryBacking::Anonymous => return vec![],
        MemoryBacking::SharedMemfd => {
            format!("memory-backend-memfd,id={MEM_ID},size={mem},share=on")
        }
        MemoryBacking::File { path, share } => format!(
            "memory-backend-file,id={MEM_ID},size={mem},mem-path={},share={}",
            // Commas doubled, as in every QEMU option value.
            path.to_string_lossy().replace(',', ",,"),
            if *share { "on" } else { "off" }
        ),
    };
    vec!["-object".into(), object]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends() {
        assert!(args(&MemoryBacking::Anonymous, "4G").is_empty());
        assert_eq!(machine_prop(&MemoryBacking::Anonymous), None);
        assert_eq!(
            args(&MemoryBacking::SharedMemfd, "2048M").join(" "),
            "-object memory-backend-memfd,id=lvhmem,size=2048M,share=on"
        );
        for (share, want) in [(true, "on"), (false, "off")] {
            let m = MemoryBacking::File {
                path: "/s/a,b/ram".into(),
                share,
            };
            assert_eq!(
                args(&m, "4G").join(" "),
                format!(
                    "-object memory-backend-file,id=lvhmem,size=4G,mem-path=/s/a,,b/ram,share={want}"
                )
            );
            assert_eq!(machine_prop(&m).as_deref(), Some("memory-backend=lvhmem"));
        }
    }
}
