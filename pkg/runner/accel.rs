//! Accelerator choice: `--accel kvm|tcg|auto` (`--no-hw-accel` means tcg,
//! `LVH_ACCEL` sets the default). `auto` uses KVM when `/dev/kvm` opens
//! read-write and the guest architecture is the host's, else TCG.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::arch::Arch;

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

/// An `--accel` / `LVH_ACCEL` value lvh does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown accelerator {0:?} (--accel or LVH_ACCEL; known: kvm, tcg, auto)")]
pub struct UnknownAccel(pub String);

impl FromStr for AccelChoice {
    type Err = UnknownAccel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            _ => Err(UnknownAccel(s.to_string())),
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

/// Whether KVM can be opened (the same check little-vm-helper makes).
pub fn kvm_usable(dev: &Path) -> bool {
    std::fs::File::options()
        .read(true)
        .write(true)
        .open(dev)
        .is_ok()
}

/// Picks the accelerator. Pure: the probe result is passed in.
pub fn resolve(choice: AccelChoice, guest: Arch, host: Arch, kvm_opens: bool) -> Accel {
    match choice {
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Auto if guest == host && kvm_opens => Accel::Kvm,
        AccelChoice::Auto => Accel::Tcg,
    }
}

/// The choice from the flags and environment: `--no-hw-accel` wins, then
/// `--accel`, then `LVH_ACCEL`, then auto.
pub fn choose(
    no_hw_accel: bool,
    flag: Option<&str>,
    env: Option<&str>,
) -> Result<AccelChoice, UnknownAccel> {
    if no_hw_accel {
        return Ok(AccelChoice::Tcg);
    }
    match (flag, env) {
        (Some(f), _) => f.parse(),
        (None, Some(e)) => e.parse(),
        (None, None) => Ok(AccelChoice::Auto),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_uses_kvm_only_for_native_guests_when_it_opens() {
        use Arch::*;
        for (guest, host, opens, want) in [
            (Amd64, Amd64, true, Accel::Kvm),
            (Amd64, Amd64, false, Accel::Tcg),
            (Arm64, Amd64, true, Accel::Tcg),
            (Arm64, Arm64, true, Accel::Kvm),
        ] {
            assert_eq!(resolve(AccelChoice::Auto, guest, host, opens), want);
        }
        assert_eq!(
            resolve(AccelChoice::Tcg, Amd64, Amd64, true),
            Accel::Tcg,
            "explicit tcg"
        );
        assert_eq!(
            resolve(AccelChoice::Kvm, Amd64, Amd64, false),
            Accel::Kvm,
            "explicit kvm is obeyed (and fails loudly in QEMU)"
        );
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
        assert!(e.contains("\"hvf\"") && e.contains("LVH_ACCEL"), "{e}");
    }

    #[test]
    fn tcg_waits_longer() {
        assert!(Accel::Tcg.default_boot_timeout() > Accel::Kvm.default_boot_timeout());
    }

    #[test]
    fn a_missing_device_is_not_usable() {
        assert!(!kvm_usable(Path::new("/nonexistent/kvm")));
    }
}
