//! Where the guest's RAM lives: QEMU's own memory, or a file mapped as the
//! guest's RAM (saved VMs: a save writes the guest's memory through to the
//! state's file, a restore maps it privately). One enum and the one builder
//! of its QEMU arguments, used by `qemu::argv`.

use std::path::PathBuf;

/// The guest RAM's backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MemoryBacking {
    /// QEMU's own anonymous memory (`-m` alone).
    #[default]
    Anonymous,
    /// A file mapped as the guest's RAM: `share` writes the guest's memory
    /// through to it (a save); otherwise the mapping is private and
    /// copy-on-write (a restore: the file is never written, and any number
    /// of VMs can map it at once).
    File { path: PathBuf, share: bool },
}

/// The backend's arguments for a guest of `mem` (QEMU's `-m` value); the
/// second `-machine` merges with the first.
pub fn args(m: &MemoryBacking, mem: &str) -> Vec<String> {
    match m {
        MemoryBacking::Anonymous => vec![],
        MemoryBacking::File { path, share } => vec![
            "-object".into(),
            format!(
                "memory-backend-file,id=mem,size={mem},mem-path={},share={}",
                // Commas doubled, as in every QEMU option value.
                path.to_string_lossy().replace(',', ",,"),
                if *share { "on" } else { "off" }
            ),
            "-machine".into(),
            "memory-backend=mem".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends() {
        assert!(args(&MemoryBacking::Anonymous, "4G").is_empty());
        for (share, want) in [(true, "on"), (false, "off")] {
            let m = MemoryBacking::File {
                path: "/s/a,b/ram".into(),
                share,
            };
            assert_eq!(
                args(&m, "4G").join(" "),
                format!(
                    "-object memory-backend-file,id=mem,size=4G,mem-path=/s/a,,b/ram,share={want} -machine memory-backend=mem"
                )
            );
        }
    }
}
