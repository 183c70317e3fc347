//! The ten action types of images.json (little-vm-helper's names and op
//! fields) and the small helpers their validation and application share.

use std::path::{Path, PathBuf};

use crate::fsutil::InputKind;

/// One customization step, applied in order through libguestfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    RunCommand {
        cmd: String,
    },
    CopyIn {
        local_path: String,
        remote_dir: String,
    },
    SetHostname {
        hostname: String,
    },
    Mkdir {
        dir: String,
    },
    Upload {
        file: String,
        dest: String,
    },
    Chmod {
        mode: Mode,
        file: String,
    },
    AppendLine {
        file: String,
        line: String,
    },
    Link {
        target: String,
        link: String,
    },
    InstallKernel {
        kernel_install_dir: String,
    },
    TarIn {
        tar_file: String,
        remote_dir: String,
    },
}

/// A file mode from a chmod op: parsed once when the config is read, and kept
/// as written (for the config's canonical form and cache key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mode {
    pub bits: u32,
    pub written: String,
}

impl Mode {
    /// An octal file mode ("0755", "755").
    pub fn parse(s: &str) -> Option<Mode> {
        parse_mode(s).map(|bits| Mode {
            bits,
            written: s.to_string(),
        })
    }
}

/// Every action type and its op fields (Go names), in little-vm-helper's spelling.
pub const ACTION_TYPES: &[(&str, &[&str])] = &[
    ("run-command", &["Cmd"]),
    ("copy-in", &["LocalPath", "RemoteDir"]),
    ("set-hostname", &["Hostname"]),
    ("mkdir", &["Dir"]),
    ("upload", &["File", "Dest"]),
    ("chmod", &["Permissions", "File"]),
    ("append-line", &["File", "Line"]),
    ("link", &["Target", "Link"]),
    ("install-kernel", &["KernelInstallDir"]),
    ("tar-in", &["TarFile", "RemoteDir"]),
];

impl Op {
    pub fn type_name(&self) -> &'static str {
        match self {
            Op::RunCommand { .. } => "run-command",
            Op::CopyIn { .. } => "copy-in",
            Op::SetHostname { .. } => "set-hostname",
            Op::Mkdir { .. } => "mkdir",
            Op::Upload { .. } => "upload",
            Op::Chmod { .. } => "chmod",
            Op::AppendLine { .. } => "append-line",
            Op::Link { .. } => "link",
            Op::InstallKernel { .. } => "install-kernel",
            Op::TarIn { .. } => "tar-in",
        }
    }

    /// The op's fields as (Go name, value), in declaration order.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        match self {
            Op::RunCommand { cmd } => vec![("Cmd", cmd)],
            Op::CopyIn {
                local_path,
                remote_dir,
            } => vec![("LocalPath", local_path), ("RemoteDir", remote_dir)],
            Op::SetHostname { hostname } => vec![("Hostname", hostname)],
            Op::Mkdir { dir } => vec![("Dir", dir)],
            Op::Upload { file, dest } => vec![("File", file), ("Dest", dest)],
            Op::Chmod { mode, file } => vec![("Permissions", &mode.written), ("File", file)],
            Op::AppendLine { file, line } => vec![("File", file), ("Line", line)],
            Op::Link { target, link } => vec![("Target", target), ("Link", link)],
            Op::InstallKernel { kernel_install_dir } => {
                vec![("KernelInstallDir", kernel_install_dir)]
            }
            Op::TarIn {
                tar_file,
                remote_dir,
            } => vec![("TarFile", tar_file), ("RemoteDir", remote_dir)],
        }
        .into_iter()
        .map(|(k, v)| (k, v.as_str()))
        .collect()
    }

    /// Host paths this op reads (relative ones are relative to the config dir):
    /// their contents go into the image's cache key.
    pub fn host_inputs(&self) -> Vec<&str> {
        self.host_input_fields()
            .into_iter()
            .map(|(_, v, _)| v)
            .collect()
    }

    /// [`Op::host_inputs`] with each one's Go field name and what it must be.
    pub fn host_input_fields(&self) -> Vec<(&'static str, &str, InputKind)> {
        match self {
            Op::CopyIn { local_path, .. } => vec![("LocalPath", local_path, InputKind::FileOrDir)],
            Op::Upload { file, .. } => vec![("File", file, InputKind::File)],
            Op::InstallKernel { kernel_install_dir } => {
                vec![("KernelInstallDir", kernel_install_dir, InputKind::Dir)]
            }
            Op::TarIn { tar_file, .. } => vec![("TarFile", tar_file, InputKind::File)],
            _ => vec![],
        }
    }

    /// The op of type `ty` from its fields (`f` gives a field's value by its Go
    /// name); `None` for an unknown type, `Some(Err((field, message)))` for a
    /// value that is not valid.
    pub(crate) fn from_fields(
        ty: &str,
        f: &mut impl FnMut(&str) -> String,
    ) -> Option<Result<Op, (&'static str, String)>> {
        Some(Ok(match ty {
            "run-command" => Op::RunCommand { cmd: f("Cmd") },
            "copy-in" => Op::CopyIn {
                local_path: f("LocalPath"),
                remote_dir: f("RemoteDir"),
            },
            "set-hostname" => Op::SetHostname {
                hostname: f("Hostname"),
            },
            "mkdir" => Op::Mkdir { dir: f("Dir") },
            "upload" => Op::Upload {
                file: f("File"),
                dest: f("Dest"),
            },
            "chmod" => {
                let p = f("Permissions");
                let file = f("File");
                match Mode::parse(&p) {
                    Some(mode) => Op::Chmod { mode, file },
                    None => {
                        return Some(Err((
                            "Permissions",
                            format!("{p:?} is not an octal mode such as \"0755\""),
                        )))
                    }
                }
            }
            "append-line" => Op::AppendLine {
                file: f("File"),
                line: f("Line"),
            },
            "link" => Op::Link {
                target: f("Target"),
                link: f("Link"),
            },
            "install-kernel" => Op::InstallKernel {
                kernel_install_dir: f("KernelInstallDir"),
            },
            "tar-in" => Op::TarIn {
                tar_file: f("TarFile"),
                remote_dir: f("RemoteDir"),
            },
            _ => return None,
        }))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub comment: String,
    pub op: Op,
}

/// An octal file mode ("0755", "755").
pub fn parse_mode(s: &str) -> Option<u32> {
    let m = u32::from_str_radix(s, 8).ok()?;
    (m <= 0o7777).then_some(m)
}

/// A host path from the config: relative ones are relative to the config dir.
pub fn resolve(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

/// The single `boot/vmlinuz-*` of a kernel install tree, relative to the tree
/// (e.g. `boot/vmlinuz-6.12.0`).
pub fn find_vmlinuz(install_dir: &Path) -> Result<String, String> {
    let boot = install_dir.join("boot");
    let rd =
        std::fs::read_dir(&boot).map_err(|e| format!("cannot read {}: {e}", boot.display()))?;
    let mut found: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(format!("boot/{}", found[0])),
        0 => Err(format!("no vmlinuz-* in {}", boot.display())),
        _ => Err(format!(
            "more than one kernel in {}: {} (expected exactly one vmlinuz-*)",
            boot.display(),
            found.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmlinuz_lookup() {
        let d = tempfile::tempdir().unwrap();
        assert!(find_vmlinuz(d.path()).unwrap_err().contains("cannot read"));
        std::fs::create_dir(d.path().join("boot")).unwrap();
        assert!(find_vmlinuz(d.path()).unwrap_err().contains("no vmlinuz"));
        std::fs::write(d.path().join("boot/vmlinuz-6.1"), b"").unwrap();
        assert_eq!(find_vmlinuz(d.path()).unwrap(), "boot/vmlinuz-6.1");
        std::fs::write(d.path().join("boot/vmlinuz-6.2"), b"").unwrap();
        assert!(find_vmlinuz(d.path())
            .unwrap_err()
            .contains("more than one"));
    }
}
