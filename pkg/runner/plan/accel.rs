//! Accelerator choice: `--accel kvm|tcg|auto` (`--no-hw-accel` means tcg,
//! `LVH_ACCEL` sets the default). `auto` uses KVM when the guest architecture
//! is the host's and KVM can really run a guest (`/dev/kvm` opens and a tiny
//! guest finishes in time, see [`super::kvm_probe`]); otherwise TCG, with a
//! note saying why. The decision ([`decide`]) is pure: what was found out
//! about KVM comes in as a [`KvmStatus`].

use std::fmt;
use std::time::Duration;

use crate::arch::Arch;
use crate::error::InvalidInput;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// What the VM runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl AccelChoice {
    /// `kvm`, `tcg` or `auto` (any case; empty is `auto`).
    pub fn parse(s: &str) -> Option<AccelChoice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(AccelChoice::Auto),
            "kvm" => Some(AccelChoice::Kvm),
            "tcg" => Some(AccelChoice::Tcg),
            _ => None,
        }
    }
}

impl Accel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// How long a guest may stay silent / take to start the command before lvh
    /// gives up, unless `--boot-timeout` says otherwise. Emulation is 10-50x
    /// slower, and CI machines are shared, hence the generous TCG value.
    pub const fn default_boot_timeout(self) -> Duration {
        match self {
            Accel::Kvm => Duration::from_secs(20),
            Accel::Tcg => Duration::from_secs(90),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What lvh found out about KVM on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvmStatus {
    /// Not looked at (TCG was asked for, or the guest is foreign).
    NotChecked,
    /// `/dev/kvm` opens (and, where the probe ran, a tiny guest ran in time).
    Usable,
    /// No `/dev/kvm`.
    Missing,
    /// `/dev/kvm` exists but cannot be opened; the reason names the fix.
    NoAccess(String),
    /// `/dev/kvm` opens but a tiny guest did not run properly; the reason says how.
    Broken(String),
}

/// The accelerator to use and, when `auto` fell back to TCG, the one line
/// that says why (the binary prints it on stderr).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelDecision {
    pub accel: Accel,
    pub note: Option<String>,
}

/// How much to find out about KVM before deciding: nothing for TCG or a
/// foreign guest, whether it opens for an explicit `kvm`, the full probe
/// (cached per host boot) for `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvmCheck {
    None,
    Open,
    Probe,
}

/// What [`decide`] needs to know about KVM for this choice.
pub fn kvm_check(choice: AccelChoice, guest: Arch, host: Arch) -> KvmCheck {
    match choice {
        AccelChoice::Tcg => KvmCheck::None,
        AccelChoice::Kvm => KvmCheck::Open,
        AccelChoice::Auto if guest != host => KvmCheck::None,
        AccelChoice::Auto => KvmCheck::Probe,
    }
}

/// Picks the accelerator. Pure: what was found out about KVM is passed in.
/// `auto` uses KVM only for a native guest on a KVM that works, else TCG
/// with a note when KVM was there but not usable. An explicit `kvm` is
/// obeyed, except that a foreign guest, a missing `/dev/kvm` or one that
/// cannot be opened is an error naming the fix (QEMU would fail anyway).
pub fn decide(
    choice: AccelChoice,
    guest: Arch,
    host: Arch,
    kvm: &KvmStatus,
) -> Result<AccelDecision, String> {
    let tcg = |note: Option<String>| {
        Ok(AccelDecision {
            accel: Accel::Tcg,
            note,
        })
    };
    let kvm_ok = Ok(AccelDecision {
        accel: Accel::Kvm,
        note: None,
    });
    match (choice, kvm) {
        (AccelChoice::Tcg, _) => tcg(None),
        (AccelChoice::Kvm, _) if guest != host => Err(format!(
            "--accel kvm cannot run a {guest} guest on this {host} host (KVM runs only the host's architecture); use --accel tcg or auto"
        )),
        (AccelChoice::Kvm, KvmStatus::Missing) => Err(
            "--accel kvm: there is no /dev/kvm on this host (load the kvm module, or use --accel tcg)"
                .into(),
        ),
        (AccelChoice::Kvm, KvmStatus::NoAccess(why)) => Err(format!("--accel kvm: {why}")),
        (AccelChoice::Kvm, _) => kvm_ok,
        (AccelChoice::Auto, _) if guest != host => tcg(None),
        (AccelChoice::Auto, KvmStatus::Usable | KvmStatus::NotChecked) => kvm_ok,
        (AccelChoice::Auto, KvmStatus::Missing) => tcg(None),
        (AccelChoice::Auto, KvmStatus::NoAccess(why) | KvmStatus::Broken(why)) => tcg(Some(
            format!("KVM is not usable, so lvh uses TCG (slower; --accel tcg skips this check): {why}"),
        )),
    }
}

/// The choice from the flags and environment: `--no-hw-accel` wins, then
/// `--accel`, then `LVH_ACCEL`, then auto.
pub fn choose(
    no_hw_accel: bool,
    flag: Option<&str>,
    env: Option<&str>,
) -> Result<AccelChoice, InvalidInput> {
    if no_hw_accel {
        return Ok(AccelChoice::Tcg);
    }
    let (field, value) = match (flag, env) {
        (Some(f), _) => ("--accel", f),
        (None, Some(e)) => ("LVH_ACCEL", e),
        (None, None) => return Ok(AccelChoice::Auto),
    };
    AccelChoice::parse(value).ok_or_else(|| {
        InvalidInput::value(
            field,
            value,
            "unknown accelerator: expected kvm, tcg or auto",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every choice against every KVM state, native and foreign: which
    /// accelerator, whether a note is printed, whether it is an error.
    #[test]
    fn decisions() {
        use Arch::*;
        use KvmStatus::*;
        let no_access = NoAccess("/dev/kvm: permission denied; add yourself to group kvm".into());
        let broken = Broken("the test guest did not finish within 250 ms".into());
        // (choice, guest, status, Ok((accel, note contains)) or Err(error contains))
        type Want = Result<(Accel, Option<&'static str>), &'static str>;
        let cases: Vec<(AccelChoice, Arch, KvmStatus, Want)> = vec![
            (AccelChoice::Tcg, Amd64, Usable, Ok((Accel::Tcg, None))),
            (
                AccelChoice::Tcg,
                Amd64,
                broken.clone(),
                Ok((Accel::Tcg, None)),
            ),
            (AccelChoice::Tcg, Arm64, NotChecked, Ok((Accel::Tcg, None))),
            (AccelChoice::Auto, Amd64, Usable, Ok((Accel::Kvm, None))),
            (AccelChoice::Auto, Amd64, NotChecked, Ok((Accel::Kvm, None))),
            (AccelChoice::Auto, Amd64, Missing, Ok((Accel::Tcg, None))),
            (
                AccelChoice::Auto,
                Amd64,
                no_access.clone(),
                Ok((Accel::Tcg, Some("group kvm"))),
            ),
            (
                AccelChoice::Auto,
                Amd64,
                broken.clone(),
                Ok((Accel::Tcg, Some("KVM is not usable, so lvh uses TCG"))),
            ),
            (AccelChoice::Auto, Arm64, Usable, Ok((Accel::Tcg, None))),
            (
                AccelChoice::Auto,
                Arm64,
                broken.clone(),
                Ok((Accel::Tcg, None)),
            ),
            (AccelChoice::Kvm, Amd64, Usable, Ok((Accel::Kvm, None))),
            (AccelChoice::Kvm, Amd64, NotChecked, Ok((Accel::Kvm, None))),
            (AccelChoice::Kvm, Amd64, broken, Ok((Accel::Kvm, None))),
            (AccelChoice::Kvm, Amd64, Missing, Err("no /dev/kvm")),
            (AccelChoice::Kvm, Amd64, no_access, Err("group kvm")),
            (
                AccelChoice::Kvm,
                Arm64,
                Usable,
                Err("cannot run a arm64 guest"),
            ),
        ];
        for (choice, guest, status, want) in cases {
            let got = decide(choice, guest, Amd64, &status);
            let what = format!("{choice:?} {guest} {status:?}: {got:?}");
            match (want, got) {
                (Ok((accel, note)), Ok(d)) => {
                    assert_eq!(d.accel, accel, "{what}");
                    match (note, &d.note) {
                        (None, None) => {}
                        (Some(w), Some(n)) => assert!(n.contains(w), "{what}"),
                        _ => panic!("note: {what}"),
                    }
                }
                (Err(w), Err(e)) => assert!(e.contains(w), "{what}"),
                _ => panic!("{what}"),
            }
        }
    }

    #[test]
    fn what_to_check() {
        use Arch::*;
        for (choice, guest, want) in [
            (AccelChoice::Tcg, Amd64, KvmCheck::None),
            (AccelChoice::Auto, Arm64, KvmCheck::None),
            (AccelChoice::Auto, Amd64, KvmCheck::Probe),
            (AccelChoice::Kvm, Amd64, KvmCheck::Open),
            (AccelChoice::Kvm, Arm64, KvmCheck::Open),
        ] {
            assert_eq!(kvm_check(choice, guest, Amd64), want, "{choice:?} {guest}");
        }
    }

    #[test]
    fn flags_then_env_then_auto() {
        assert_eq!(
            choose(true, Some("kvm"), Some("kvm")).unwrap(),
            AccelChoice::Tcg
        );
        assert_eq!(
            choose(false, Some("kvm"), Some("tcg")).unwrap(),
            AccelChoice::Kvm
        );
        assert_eq!(choose(false, None, Some("TCG")).unwrap(), AccelChoice::Tcg);
        assert_eq!(choose(false, None, None).unwrap(), AccelChoice::Auto);
        let e = choose(false, None, Some("hvf")).unwrap_err().to_string();
        assert_eq!(
            e,
            "LVH_ACCEL \"hvf\": unknown accelerator: expected kvm, tcg or auto"
        );
        let e = choose(false, Some("hvf"), Some("tcg"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--accel \"hvf\""), "{e}");
    }

    #[test]
    fn tcg_waits_longer() {
        assert!(Accel::Tcg.default_boot_timeout() > Accel::Kvm.default_boot_timeout());
    }
}
