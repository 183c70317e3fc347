//! Source lines for a report's frames, from a `vmlinux` carrying DWARF: every
//! `func+0xoff/0xlen` becomes `func (file:line inlined-caller:line ...)` as
//! the kernel's `scripts/decode_stacktrace.sh` prints it, read in process with
//! a Rust DWARF reader (addr2line/gimli) rather than one `addr2line` run per
//! frame. The function's address comes from vmlinux's symbol table (the
//! running kernel's addresses may be randomized, its `func+off` are not);
//! frames in modules (`[mod]`) stay as they are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use super::frames::{symbol_token, Role, SourceLine};
use super::report::Report;

/// Why a vmlinux cannot symbolize.
#[derive(Debug, thiserror::Error)]
pub enum SymbolizeError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not an ELF file the symbolizer can read: {reason}", path.display())]
    NotElf { path: PathBuf, reason: String },
    #[error("{} has no DWARF debug info (build the kernel with CONFIG_DEBUG_INFO)", path.display())]
    NoDwarf { path: PathBuf },
}

/// A vmlinux opened for symbolization.
pub struct Symbolizer {
    dwarf: addr2line::Loader,
    /// Function name to (address, size), for every text symbol.
    symbols: HashMap<String, Vec<(u64, u64)>>,
    /// The build directory that DWARF paths start with, cut from them.
    base: String,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("symbols", &self.symbols.len())
            .field("base", &self.base)
            .finish()
    }
}

impl Symbolizer {
    /// Reads vmlinux's symbol table and prepares its DWARF (parsed lazily,
    /// per compilation unit, as frames need it).
    pub fn open(vmlinux: &Path) -> Result<Self, SymbolizeError> {
        let read = |source| SymbolizeError::Read {
            path: vmlinux.to_path_buf(),
            source,
        };
        let not_elf = |reason: String| SymbolizeError::NotElf {
            path: vmlinux.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(vmlinux).map_err(read)?;
        // SAFETY: the map is read only and dropped before this function
        // returns; a vmlinux rewritten meanwhile gives wrong lines, not UB
        // in safe code that copies what it reads.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read)?;
        let obj = object::File::parse(&*map).map_err(|e| not_elf(e.to_string()))?;
        let has_dwarf = obj
            .section_by_name(".debug_info")
            .is_some_and(|s| s.size() > 0);
        if !has_dwarf {
            return Err(SymbolizeError::NoDwarf {
                path: vmlinux.to_path_buf(),
            });
        }
        let mut symbols: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for s in obj.symbols() {
            if s.kind() != SymbolKind::Text {
                continue;
            }
            if let Ok(name) = s.name() {
                symbols
                    .entry(name.to_string())
                    .or_default()
                    .push((s.address(), s.size()));
            }
        }
        drop(obj);
        drop(map);
        let dwarf = addr2line::Loader::new(vmlinux).map_err(|e| not_elf(e.to_string()))?;
        let mut s = Symbolizer {
            dwarf,
            symbols,
            base: String::new(),
        };
        s.base = s.build_dir(vmlinux);
        Ok(s)
    }

    /// The directory the kernel was built in, as `decode_stacktrace.sh` finds
    /// it: where `kernel_init`'s `init/main.c` is; else vmlinux's directory.
    fn build_dir(&self, vmlinux: &Path) -> String {
        let found = self
            .locate("kernel_init", 0, 0, true)
            .into_iter()
            .find_map(|l| l.file.strip_suffix("init/main.c").map(str::to_string))
            .filter(|b| !b.is_empty());
        found.unwrap_or_else(|| {
            let dir = vmlinux.parent().unwrap_or(Path::new(""));
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            format!("{}/", dir.display())
        })
    }

    /// The source lines of `func+off` (of length `size`, which picks among
    /// functions of the same name), innermost inlined function first. A
    /// return address (`exact` false) is looked up one byte back, inside the
    /// call that returns there.
    pub fn locate(&self, func: &str, off: u64, size: u64, exact: bool) -> Vec<SourceLine> {
        let Some(cands) = self.symbols.get(func) else {
            return vec![];
        };
        let start = cands
            .iter()
            .find(|(_, s)| *s == size)
            .unwrap_or(&cands[0])
            .0;
        let pc = start + off - u64::from(!exact && off > 0);
        let mut out = Vec::new();
        let Ok(mut it) = self.dwarf.find_frames(pc) else {
            return out;
        };
        while let Ok(Some(f)) = it.next() {
            let Some(loc) = f.location else { continue };
            let (Some(file), Some(line)) = (loc.file, loc.line) else {
                continue;
            };
            out.push(SourceLine {
                function: f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(|n| n.into_owned()),
                file: relative(file, &self.base).to_string(),
                line,
                inlined: true,
            });
        }
        if let Some(last) = out.last_mut() {
            last.inlined = false;
        }
        out
    }

    /// Adds source lines to `report`'s frames and rewrites its text the way
    /// `decode_stacktrace.sh` prints it.
    pub fn symbolize(&self, report: &mut Report) {
        for f in &mut report.frames {
            if f.module.is_none() {
                f.source = self.locate(&f.function, f.offset, f.size, f.role == Role::Ip);
            }
        }
        let warn_site = report.kind == super::report::Kind::Warning;
        for (i, l) in report.lines.iter_mut().enumerate() {
            let exact = (i == 0 && warn_site) || is_ip_line(l);
            if let Some(s) = self.decode_line(l, exact) {
                *l = s;
            }
        }
    }

    /// `line` with its last `func+0xoff/0xlen` replaced by `func (file:line ...)`.
    fn decode_line(&self, line: &str, exact: bool) -> Option<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (idx, (name, off, size)) = words
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, w)| symbol_token(w).map(|t| (i, t)))?;
        if words.get(idx + 1).is_some_and(|w| w.starts_with('[')) {
            return None; // a module frame: no debug info for it here
        }
        let locs = self.locate(name, off, size, exact);
        if locs.is_empty() {
            return None;
        }
        let code: Vec<String> = locs
            .iter()
            .map(|l| format!("{}:{}", l.file, l.line))
            .collect();
        let tok = words[idx];
        let at = line.rfind(tok)?;
        let segment = tok.find(name).map_or("", |p| &tok[..p]);
        let segment = segment.trim_start_matches('(');
        Some(format!(
            "{}{segment}{name} ({}){}",
            &line[..at],
            code.join(" "),
            &line[at + tok.len()..]
        ))
    }
}

/// `file` below the build directory `base`, without the `./` DWARF puts in
/// front of header paths.
fn relative<'a>(file: &'a str, base: &str) -> &'a str {
    let f = file.strip_prefix(base).unwrap_or(file);
    f.strip_prefix("./").unwrap_or(f)
}

/// A line that prints the faulting instruction, not a return address.
fn is_ip_line(l: &str) -> bool {
    let t = l.trim_start();
    ["RIP:", "EIP:", "IP:", "NIP", "pc :", "PC is at"]
        .iter()
        .any(|p| t.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_the_build_directory() {
        let base = "/build/linux/";
        assert_eq!(
            relative("/build/linux/drivers/misc/lkdtm/bugs.c", base),
            "drivers/misc/lkdtm/bugs.c"
        );
        assert_eq!(
            relative("/build/linux/./include/linux/list.h", base),
            "include/linux/list.h"
        );
        assert_eq!(relative("/elsewhere/x.c", base), "/elsewhere/x.c");
    }

    #[test]
    fn ip_lines_are_exact_and_others_return_addresses() {
        for l in [
            "RIP: 0010:f+0x1/0x2",
            " pc : f+0x8/0x18",
            "PC is at f+0x1/0x2",
        ] {
            assert!(is_ip_line(l), "{l}");
        }
        for l in [" f+0x1/0x2", "lr : f+0x1/0x2", "Call Trace:"] {
            assert!(!is_ip_line(l), "{l}");
        }
    }

    #[test]
    fn files_without_dwarf_or_elf_are_refused_by_name() {
        let d = tempfile::tempdir().expect("tempdir");
        let junk = d.path().join("vmlinux");
        std::fs::write(&junk, b"not an ELF file").expect("write");
        let e = Symbolizer::open(&junk).expect_err("junk");
        assert!(matches!(e, SymbolizeError::NotElf { .. }), "{e}");
        assert!(e.to_string().contains(&junk.display().to_string()), "{e}");
        // Debian ships its programs stripped: an ELF file without DWARF.
        let e = Symbolizer::open(Path::new("/bin/true")).expect_err("stripped");
        assert!(matches!(e, SymbolizeError::NoDwarf { .. }), "{e}");
        assert!(e.to_string().contains("CONFIG_DEBUG_INFO"), "{e}");
        let missing = d.path().join("nope");
        assert!(matches!(
            Symbolizer::open(&missing),
            Err(SymbolizeError::Read { .. })
        ));
    }
}
