//! `images.json`: little-vm-helper's wire format and the validated
//! [`ImageConf`]s it is parsed into (by `entry`). Every error names the file, line and column, the image and
//! the field. Keys are matched case-insensitively, as Go's decoder does.

use std::path::{Path, PathBuf};

pub use super::actions::{find_vmlinuz, parse_mode, resolve, Action, Mode, Op, ACTION_TYPES};
use crate::jsonpos::Pos;

/// The config file inside `--dir`.
pub const IMAGES_JSON: &str = "images.json";
/// The size of a root image when `image_size` is not given (sparse).
pub const DEFAULT_IMAGE_SIZE: u64 = 8 << 30;
/// The Debian suite root images use unless `--pkg-repo` or the image's `suite`
/// says otherwise. little-vm-helper used `sid`, whose Release file goes stale on
/// some mirrors; the current stable release always works.
pub const DEFAULT_SUITE: &str = "bookworm";
/// The Debian mirror unless the image's `mirror` says otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// How an image file is stored, from its name's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn from_name(name: &str) -> Format {
        if name.ends_with(".qcow2") {
            Format::Qcow2
        } else {
            Format::Raw
        }
    }

    /// The name qemu-img and libguestfs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

/// mmdebstrap's variants.
pub const VARIANTS: &[&str] = &[
    "extract",
    "custom",
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "debootstrap",
    "standard",
];

/// One validated image entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageConf {
    pub name: String,
    pub parent: Option<String>,
    /// `image_size` as written ("8G"), and in bytes.
    pub image_size: Option<(String, u64)>,
    pub bootable: Option<bool>,
    pub packages: Vec<String>,
    pub actions: Vec<Action>,
    /// Extension keys (little-vm-helper ignores them).
    pub suite: Option<String>,
    pub mirror: Option<String>,
    /// mmdebstrap `--variant` (e.g. `minbase`); mmdebstrap's default otherwise.
    pub variant: Option<String>,
    pub flatten: Option<bool>,
    /// Where the entry starts in the file, for later errors.
    pub pos: Pos,
}

impl ImageConf {
    pub fn format(&self) -> Format {
        Format::from_name(&self.name)
    }

    /// This entry in the wire format (what `example-config` prints), keys in
    /// little-vm-helper's order.
    pub fn to_wire(&self) -> WireImage<'_> {
        WireImage {
            name: &self.name,
            parent: self.parent.as_deref(),
            image_size: self.image_size.as_ref().map(|(s, _)| s.as_str()),
            bootable: self.bootable,
            packages: &self.packages,
            actions: self
                .actions
                .iter()
                .map(|a| WireAction {
                    comment: &a.comment,
                    op: WireOp(&a.op),
                    r#type: a.op.type_name(),
                })
                .collect(),
            suite: self.suite.as_deref(),
            mirror: self.mirror.as_deref(),
            variant: self.variant.as_deref(),
            flatten: self.flatten,
        }
    }
}

/// An image entry as written to images.json.
#[derive(Debug, serde::Serialize)]
pub struct WireImage<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_size: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bootable: Option<bool>,
    packages: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    actions: Vec<WireAction<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suite: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flatten: Option<bool>,
}

#[derive(Debug, serde::Serialize)]
struct WireAction<'a> {
    comment: &'a str,
    op: WireOp<'a>,
    r#type: &'static str,
}

/// An op as a JSON object with Go field names, in declaration order.
#[derive(Debug)]
struct WireOp<'a>(&'a Op);

impl serde::Serialize for WireOp<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = self.0.fields();
        let mut m = ser.serialize_map(Some(fields.len()))?;
        for (k, v) in fields {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A config error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}:{}: {msg}", .file.display(), .pos.line, .pos.col)]
pub struct ConfigError {
    pub file: PathBuf,
    pub pos: Pos,
    pub msg: String,
}

pub use crate::bytesize::parse_size;

/// Checks what needs the filesystem: every host input of every action exists
/// (relative paths are relative to `dir`) and is what its field takes (a
/// regular file or a directory on a real filesystem, never a FIFO, a device
/// or a `/proc` file), and an install-kernel dir has exactly one
/// `boot/vmlinuz-*`.
pub fn check_inputs(file: &Path, dir: &Path, confs: &[ImageConf]) -> Result<(), ConfigError> {
    for c in confs {
        for (j, a) in c.actions.iter().enumerate() {
            let e = |msg: String| ConfigError {
                file: file.to_owned(),
                pos: c.pos,
                msg: format!(
                    "image {:?}: actions[{j}] ({}): {msg}",
                    c.name,
                    a.op.type_name()
                ),
            };
            for (field, input, kind) in a.op.host_input_fields() {
                let p = resolve(dir, input);
                if !p.exists() {
                    return Err(e(format!("{} does not exist", p.display())));
                }
                // A FIFO, a device or a /proc file would block or never end
                // when hashed and copied in: refused before anything reads it.
                crate::fsutil::check_input(&p, kind)
                    .map_err(|err| e(format!("{field} {input:?}: {err}")))?;
            }
            if let Op::InstallKernel { kernel_install_dir } = &a.op {
                find_vmlinuz(&resolve(dir, kernel_install_dir)).map_err(e)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::entry::{parse, parse_with_warnings};

    fn p(text: &str) -> Result<Vec<ImageConf>, ConfigError> {
        parse(Path::new("images.json"), text)
    }

    #[test]
    fn op_keys_match_case_insensitively() {
        for key in ["Cmd", "cmd", "CMD", "cMd"] {
            let t = format!(
                r#"[{{"name":"a","actions":[{{"comment":"c","op":{{"{key}":"true"}},"type":"run-command"}}]}}]"#
            );
            let c = p(&t).unwrap();
            assert_eq!(
                c[0].actions[0].op,
                Op::RunCommand { cmd: "true".into() },
                "{key}"
            );
        }
    }

    #[test]
    fn every_action_type_parses() {
        let cases: &[(&str, &str, Op)] = &[
            (
                "run-command",
                r#"{"Cmd":"x"}"#,
                Op::RunCommand { cmd: "x".into() },
            ),
            (
                "copy-in",
                r#"{"LocalPath":"a","RemoteDir":"/b"}"#,
                Op::CopyIn {
                    local_path: "a".into(),
                    remote_dir: "/b".into(),
                },
            ),
            (
                "set-hostname",
                r#"{"hostname":"h"}"#,
                Op::SetHostname {
                    hostname: "h".into(),
                },
            ),
            ("mkdir", r#"{"DIR":"/d"}"#, Op::Mkdir { dir: "/d".into() }),
            (
                "upload",
                r#"{"File":"f","Dest":"/g"}"#,
                Op::Upload {
                    file: "f".into(),
                    dest: "/g".into(),
                },
            ),
            (
                "chmod",
                r#"{"Permissions":"0644","File":"/f"}"#,
                Op::Chmod {
                    mode: Mode {
                        bits: 0o644,
                        written: "0644".into(),
                    },
                    file: "/f".into(),
                },
            ),
            (
                "append-line",
                r#"{"file":"/f","line":"l"}"#,
                Op::AppendLine {
                    file: "/f".into(),
                    line: "l".into(),
                },
            ),
            (
                "link",
                r#"{"Target":"/t","Link":"/l"}"#,
                Op::Link {
                    target: "/t".into(),
                    link: "/l".into(),
                },
            ),
            (
                "install-kernel",
                r#"{"KernelInstallDir":"k"}"#,
                Op::InstallKernel {
                    kernel_install_dir: "k".into(),
                },
            ),
            (
                "tar-in",
                r#"{"TarFile":"t.tar","RemoteDir":"/"}"#,
                Op::TarIn {
                    tar_file: "t.tar".into(),
                    remote_dir: "/".into(),
                },
            ),
        ];
        assert_eq!(cases.len(), ACTION_TYPES.len());
        for (ty, op, want) in cases {
            let t = format!(r#"[{{"name":"a","actions":[{{"op":{op},"type":"{ty}"}}]}}]"#);
            let c = p(&t).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_eq!(&c[0].actions[0].op, want);
            // round trip through the wire format
            let back = serde_json::to_string(&vec![c[0].to_wire()]).unwrap();
            assert_eq!(p(&back).unwrap()[0].actions, c[0].actions);
        }
    }

    #[test]
    fn entry_fields() {
        let c = p(r#"[{"Name":"base.img","image_size":"10G","bootable":false,"packages":["vim","a+b"],"suite":"trixie"},
                      {"name":"k.qcow2","parent":"base.img","packages":null,"flatten":true}]"#)
        .unwrap();
        assert_eq!(c[0].image_size, Some(("10G".into(), 10 << 30)));
        assert_eq!(c[0].bootable, Some(false));
        assert_eq!(c[0].suite.as_deref(), Some("trixie"));
        assert_eq!(c[0].format(), Format::Raw);
        assert_eq!(c[1].parent.as_deref(), Some("base.img"));
        assert_eq!(c[1].format(), Format::Qcow2);
        assert_eq!(c[1].flatten, Some(true));
        assert!(c[1].packages.is_empty());
    }

    #[test]
    fn errors_name_place_and_field() {
        let cases: &[(&str, &str)] = &[
            ("[{\"name\": \"a\",}]", "images.json:1:15: invalid JSON"),
            ("{}", "images.json:1:1: expected a JSON array"),
            ("[{\"name\":\"a\"},\n {\"name\":\"a\"}]", "images.json:2:10: duplicate image name \"a\""),
            ("[{\"parent\":\"a\"}]", "images.json:1:2: image entry has no \"name\""),
            ("[{\"name\":\"a\",\"actions\":[{\"op\":{},\"type\":\"frobnicate\"}]}]", "unknown action type \"frobnicate\""),
            ("[{\"name\":\"a\",\"actions\":[{\"op\":{\"LocalPath\":\"x\"},\"type\":\"copy-in\"}]}]", "image \"a\": copy-in op is missing field \"RemoteDir\""),
            ("[{\"name\":\"a\",\"actions\":[{\"op\":{\"Cmd\":\"x\",\"cmd\":\"y\"},\"type\":\"run-command\"}]}]", "given twice"),
            ("[{\"name\":\"a\",\"actions\":[{\"op\":{\"Cmd\":\"x\"}}]}]", "action has no \"type\""),
            ("[{\"name\":\"a\",\"image_size\":\"8Q\"}]", "invalid image_size \"8Q\""),
            ("[{\"name\":\"a\",\"bootable\":\"yes\"}]", "bootable must be true or false"),
            ("[{\"name\":\"a/b\"}]", "invalid image name \"a/b\""),
            ("[{\"name\":\"a\",\"packages\":[\"--evil\"]}]", "invalid package name \"--evil\""),
            ("[{\"name\":\"a\",\"actions\":[{\"op\":{\"Permissions\":\"rwx\",\"File\":\"/f\"},\"type\":\"chmod\"}]}]", "not an octal mode"),
            ("[{\"name\":\"b\",\"parent\":\"a\",\"suite\":\"trixie\"}]", "suite applies to root images only"),
            // hostile values: file, place, field and value in the message
            ("[{\"name\":\"a\\u0000b\"}]", "images.json:1:10: invalid image name \"a\\0b\": it must not contain control characters"),
            ("[{\"name\":\"a\\nb\"}]", "images.json:1:10: invalid image name \"a\\nb\""),
            ("[{\"name\":\"b\",\"parent\":\"x\\ny\"}]", "invalid image name \"x\\ny\""),
            ("[{\"name\":\"a\",\"image_size\":\"18446744073709551615\"}]", "images.json:1:27: image \"a\": image_size \"18446744073709551615\" is 18446744073709551615 bytes, more than the 16T"),
            ("[{\"name\":\"a\",\"image_size\":\"16E\"}]", "invalid image_size \"16E\""),
            ("[{\"name\":\"a\",\"image_size\":\"17179869184G\"}]", "invalid image_size \"17179869184G\""),
        ];
        for (text, want) in cases {
            let e = p(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}\n got: {e}\nwant: {want}");
        }
    }

    #[test]
    fn unknown_keys_are_warnings_with_line_and_key() {
        let text = "[\n {\"name\":\"a\", \"colour\": 1,\n  \"actions\": [{\"op\": {\"Cmd\": \"x\", \"File\": \"y\"},\n     \"type\": \"run-command\", \"when\": 1}]}]";
        let (c, w) = parse_with_warnings(Path::new("images.json"), text).unwrap();
        assert_eq!(c[0].actions.len(), 1);
        let w: Vec<String> = w.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            w,
            [
                "images.json:2:25: unknown key \"colour\"",
                "images.json:3:43: unknown key \"File\"",
                "images.json:4:37: unknown key \"when\"",
            ]
        );
    }
}
