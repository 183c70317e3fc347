//! The runner's one front door: `lvh run` and every combination of `lvh
//! test` come through [`prepare`], so they accept and refuse the same things
//! with the same words. It settles saved states (the machine of
//! `--from-state`, the ssh side of a bootable image's state), asks the host
//! about KVM ([`Host`], probing once per process), reads what the options
//! point at (`plan::facts`), decides the plan (pure, `plan::decision`),
//! then checks the host (memory, ports: `plan::preflight`) and the kernel's
//! configuration (`plan::kcheck`) before anything boots.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::arch::Arch;
use crate::runner::error::RunError;
use crate::runner::guest;
use crate::runner::plan::accel::{kvm_check, KvmCheck, KvmStatus};
use crate::runner::plan::decision::{Mode, RunPlan};
use crate::runner::plan::options::RunOptions;
use crate::runner::plan::{facts, kcheck, kvm_probe, preflight};
use crate::runner::saved::request;
use crate::runner::saved::state::{self, StateOp};

/// A saved VM to make or to start from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateRequest {
    /// `--save-state NAME`, into the `states` directory.
    Save { states: PathBuf, name: String },
    /// `--from-state NAME`, from the `states` directory.
    Restore { states: PathBuf, name: String },
}

/// What a caller asks the runner for.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRequest {
    pub options: RunOptions,
    pub state: Option<StateRequest>,
    /// Check the host (memory, busy ports) and the kernel's configuration
    /// before booting: off for a dry run, the kernel's with `--no-kernel-check`.
    pub check_host: bool,
    pub check_kernel: bool,
}

impl RunRequest {
    /// A request with every check on.
    pub fn new(options: RunOptions) -> RunRequest {
        RunRequest {
            options,
            state: None,
            check_host: true,
            check_kernel: true,
        }
    }
}

/// A run ready to boot, and what the caller should tell the user.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub plan: RunPlan,
    /// Say these (e.g. why `auto` did not use KVM).
    pub warnings: Vec<String>,
    /// Say these with `-v` (e.g. why the slower shell init boots the guest).
    pub notes: Vec<String>,
    /// Where the kernel's configuration came from, when it was checked.
    pub kernel_checked: Option<String>,
}

/// The host as the front door asks it: what KVM can do, found out once per
/// process for each kind of check (the full probe's answer is also cached
/// per host boot, see `plan::kvm_probe`).
pub struct Host {
    kvm: Mutex<HashMap<KvmCheck, KvmStatus>>,
    fixed: Option<KvmStatus>,
}

impl Host {
    /// The real host.
    pub fn probe() -> Host {
        Host {
            kvm: Mutex::new(HashMap::new()),
            fixed: None,
        }
    }

    /// A host whose KVM is known to be `status` (tests).
    pub fn with_kvm(status: KvmStatus) -> Host {
        Host {
            kvm: Mutex::new(HashMap::new()),
            fixed: Some(status),
        }
    }

    fn kvm(&self, check: KvmCheck) -> KvmStatus {
        if let Some(s) = &self.fixed {
            return s.clone();
        }
        let mut m = self.kvm.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(check)
            .or_insert_with(|| kvm_probe::status(check))
            .clone()
    }
}

/// `--kmemleak`: the command runs under the scanning wrapper and the kernel
/// prints what a scan finds; it needs `--kernel` (lvh's init) and a command.
fn kmemleak_options(o: &mut RunOptions) -> Result<(), RunError> {
    if o.kernel.is_none() {
        return Err(RunError::refused(
            "--kmemleak",
            "needs --kernel: lvh's init scans for leaks after the command",
        ));
    }
    if o.cmd.is_empty() || o.daemonize {
        return Err(RunError::refused(
            "--kmemleak",
            "needs a command (-- CMD) to scan after, without --daemonize",
        ));
    }
    o.cmd = guest::kmemleak_argv(&o.cmd);
    o.append
        .extend(guest::KMEMLEAK_APPEND.iter().map(|a| a.to_string()));
    Ok(())
}

/// Turns a request into a plan ready to boot, or refuses it.
pub fn prepare(req: RunRequest, host: &Host) -> Result<Prepared, RunError> {
    let mut o = req.options;
    let state = match req.state {
        None => None,
        Some(StateRequest::Restore { states, name }) => {
            if o.image.is_some() || o.kernel.is_some() {
                return Err(RunError::refused(
                    "--from-state",
                    "takes the kernel and image from the saved state: leave out --kernel and --image",
                ));
            }
            let (dir, meta) = state::load(&states, &name)?;
            o = request::restore_options(&o, &dir, &meta)?;
            // A bootable image's state: the command goes over ssh.
            let ssh = match meta.booted {
                true => Some(Box::new(request::ssh_run(&mut o, "--from-state")?)),
                false => None,
            };
            Some(StateOp::Restore {
                dir,
                meta: Box::new(meta),
                ssh,
            })
        }
        Some(StateRequest::Save { states, name }) => {
            state::check_name("--save-state", &name)?;
            let ssh = match o.kernel {
                None => Some(Box::new(request::ssh_run(&mut o, "--save-state")?)),
                Some(_) => None,
            };
            Some(StateOp::Save {
                states: std::path::absolute(&states).unwrap_or(states),
                name,
                ssh,
            })
        }
    };
    let kmemleak = o.kmemleak;
    if kmemleak {
        kmemleak_options(&mut o)?;
    }
    let kvm = host.kvm(kvm_check(o.accel, o.arch, Arch::host()));
    let facts = facts::gather(&o, kvm)?;
    let plan = RunPlan::decide(&o, &facts, state)?;
    if let Some(op) = &plan.state {
        request::check(&plan, op)?;
    }
    if req.check_host {
        preflight::check(&plan)?;
    }
    let kernel_checked = match req.check_kernel {
        true => {
            let command = matches!(plan.mode, Mode::Command { .. });
            let mut needs = kcheck::needs(plan.arch, plan.root_dev, command);
            if kmemleak {
                needs.push(kcheck::KMEMLEAK);
            }
            kcheck::check(plan.kernel.as_deref(), plan.kernel_config.as_ref(), &needs)?
                .map(|s| s.to_string())
        }
        false => None,
    };
    let mut warnings: Vec<String> = plan.accel_note.iter().cloned().collect();
    warnings.extend(plan.host_mount_note.iter().cloned());
    warnings.extend(plan.exposure_warnings());
    if let Some(ci) = &plan.cloud_init {
        warnings.extend(ci.warnings.iter().cloned());
    }
    Ok(Prepared {
        warnings,
        notes: plan.init_note.iter().cloned().collect(),
        kernel_checked,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::plan::tests::options;

    #[test]
    fn a_request_becomes_a_plan_and_says_what_it_fell_back_to() {
        let d = tempfile::tempdir().unwrap();
        let mut o = options(d.path());
        o.accel = crate::runner::plan::accel::AccelChoice::Auto;
        o.arch = Arch::host();
        let host = Host::with_kvm(KvmStatus::Broken("too slow".into()));
        let p = prepare(RunRequest::new(o.clone()), &host).unwrap();
        assert_eq!(p.plan.accel, crate::runner::plan::accel::Accel::Tcg);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].ends_with(": too slow"));
        assert_eq!(p.kernel_checked, None, "no configuration known");
    }

    #[test]
    fn a_restore_takes_kernel_and_image_from_the_state() {
        let d = tempfile::tempdir().unwrap();
        let o = options(d.path());
        let req = RunRequest {
            state: Some(StateRequest::Restore {
                states: d.path().join("states"),
                name: "s".into(),
            }),
            ..RunRequest::new(o.clone())
        };
        let e = prepare(req.clone(), &Host::with_kvm(KvmStatus::Missing))
            .unwrap_err()
            .to_string();
        assert!(e.contains("leave out --kernel and --image"), "{e}");
        let mut bare = req;
        bare.options.kernel = None;
        bare.options.image = None;
        let e = prepare(bare, &Host::with_kvm(KvmStatus::Missing))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--from-state \"s\": no saved state \"s\""),
            "{e}"
        );
    }

    #[test]
    fn the_host_is_checked_unless_asked_not_to() {
        let d = tempfile::tempdir().unwrap();
        let mut o = options(d.path());
        o.mem = "1000T".parse().unwrap();
        let host = Host::with_kvm(KvmStatus::Missing);
        let e = prepare(RunRequest::new(o.clone()), &host)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the host has"), "{e}");
        let dry = RunRequest {
            check_host: false,
            check_kernel: false,
            ..RunRequest::new(o)
        };
        prepare(dry, &host).unwrap();
    }
}
