//! The example images.json that `lvh images example-config` prints: the same
//! images as little-vm-helper's example, and valid input for `images build`.

use super::config::{Action, ImageConf, Op};
use crate::jsonpos::Pos;

/// The example images.
pub fn example() -> Vec<ImageConf> {
    let image = |name: &str, parent: Option<&str>, packages: &[&str], actions| ImageConf {
        name: name.into(),
        parent: parent.map(Into::into),
        image_size: None,
        bootable: None,
        packages: packages.iter().map(|p| p.to_string()).collect(),
        actions,
        suite: None,
        mirror: None,
        variant: None,
        flatten: None,
        pos: Pos::default(),
    };
    vec![
        image(
            "base.img",
            None,
            &["less", "vim", "sudo", "openssh-server", "curl"],
            vec![Action {
                comment: "disable password for root".into(),
                op: Op::RunCommand {
                    cmd: "passwd -d root".into(),
                },
            }],
        ),
        image("k8s.qcow2", Some("base.img"), &["docker.io"], vec![]),
    ]
}

/// The example as pretty JSON, with a trailing newline.
pub fn example_json() -> String {
    let ex = example();
    let v: Vec<_> = ex.iter().map(|c| c.to_wire()).collect();
    let mut s = serde_json::to_string_pretty(&v).expect("serializable");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::entry::parse;
    use std::path::Path;

    #[test]
    fn example_parses_back_to_itself() {
        let parsed = parse(Path::new("images.json"), &example_json()).unwrap();
        let ex = example();
        assert_eq!(parsed.len(), 2);
        for (p, e) in parsed.iter().zip(&ex) {
            assert_eq!(p.name, e.name);
            assert_eq!(p.parent, e.parent);
            assert_eq!(p.packages, e.packages);
            assert_eq!(p.actions, e.actions);
        }
        assert_eq!(
            parsed[0].packages,
            ["less", "vim", "sudo", "openssh-server", "curl"]
        );
        assert_eq!(
            parsed[0].actions[0].op,
            Op::RunCommand {
                cmd: "passwd -d root".into()
            }
        );
        assert_eq!(parsed[1].parent.as_deref(), Some("base.img"));
        assert_eq!(parsed[1].packages, ["docker.io"]);
    }
}
