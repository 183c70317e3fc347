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
///
/// LEAD: connect the runner's listing of the embedded guest inits here (the
/// one call site); until then the line says it does not know.
fn guest_inits() -> String {
    "unknown".into()
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
