//! `lvh version`: the release version on one line, as little-vm-helper prints
//! its own (scripts read it); with `-v`, how this binary was built.

use std::sync::OnceLock;

use lvh::version::BUILD;

/// The version `lvh version` and `--version` print (see `pkg/version.rs`).
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| BUILD.version())
}

/// The guest inits this binary carries, for `lvh version -v`.
fn guest_inits() -> String {
    guest_inits_line(&lvh::runner::guest_inits(), lvh::arch::Arch::host())
}

/// Which static guest inits this lvh has (`inits`, per architecture), and for
/// a missing one the Debian package whose compiler builds it on a `host` of
/// that architecture.
fn guest_inits_line(inits: &[(lvh::arch::Arch, bool)], host: lvh::arch::Arch) -> String {
    let each: Vec<String> = inits
        .iter()
        .map(|&(arch, has)| match has {
            true => format!("{arch} embedded"),
            false => format!(
                "{arch} missing (install {} and rebuild; {arch} guests boot with the slower shell init)",
                lvh::runner::compiler_package(arch, host)
            ),
        })
        .collect();
    each.join(", ")
}

/// What `lvh version` prints: the version line and, when `verbose`, one
/// `label: value` line per build fact.
pub fn render(verbose: bool) -> String {
    let mut s = format!("{}\n", version());
    if verbose {
        let mut facts = BUILD.details();
        facts.push(("guest inits", guest_inits()));
        for (label, value) in facts {
            s.push_str(&format!("{:<12} {value}\n", format!("{label}:")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvh::arch::Arch;

    #[test]
    fn version_says_which_guest_inits_are_missing_and_how_to_get_them() {
        let line = guest_inits_line(&[(Arch::Amd64, true), (Arch::Arm64, false)], Arch::Amd64);
        assert_eq!(
            line,
            "amd64 embedded, arm64 missing (install gcc-aarch64-linux-gnu and rebuild; \
             arm64 guests boot with the slower shell init)"
        );
        let both = guest_inits_line(&[(Arch::Amd64, true), (Arch::Arm64, true)], Arch::Amd64);
        assert_eq!(both, "amd64 embedded, arm64 embedded");
    }
}
