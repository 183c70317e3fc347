//! What a run asks of saved VMs, settled before the plan: `--from-state`
//! takes the machine from the state ([`restore_options`]), a bootable
//! image's state runs its command over ssh ([`ssh_run`]), and a save has its
//! own rules ([`check`]). The result rides in the plan as a `StateOp`.

use std::path::Path;

use super::state::{SshRun, StateMeta, StateOp};
use crate::runner::error::RunError;
use crate::runner::plan::accel::AccelChoice;
use crate::runner::plan::decision::{Mode, RunPlan};
use crate::runner::plan::options::{parse_root_dev, RunOptions};
use crate::runner::plan::ports::PortForward;
use crate::runner::plan::sshkey;

/// The checks `--save-state` adds to a plan.
pub fn check(plan: &RunPlan, op: &StateOp) -> Result<(), RunError> {
    let StateOp::Save { ssh, .. } = op else {
        return Ok(());
    };
    if ssh.is_none() && !matches!(plan.mode, Mode::Command { .. }) {
        return Err(RunError::refused(
            "--save-state",
            "needs a setup command (-- SETUP), with --kernel or a bootable image",
        ));
    }
    if plan.persist {
        return Err(RunError::refused(
            "--save-state",
            "keeps the disk in the state; it cannot be combined with --persist",
        ));
    }
    Ok(())
}

/// `lvh run --from-state`'s options: the saved VM's kernel, machine and disk,
/// with this run's command, ports, deadlines and logs.
pub fn restore_options(
    o: &RunOptions,
    dir: &Path,
    meta: &StateMeta,
) -> Result<RunOptions, RunError> {
    if o.cmd.is_empty() {
        return Err(RunError::refused(
            "--from-state",
            "needs a command (-- CMD): the restored VM runs it",
        ));
    }
    if o.persist || o.daemonize {
        return Err(RunError::refused(
            "--from-state",
            "runs a command on a throwaway copy: no --persist or --daemonize",
        ));
    }
    if o.host_mount.is_some() != meta.host_mount {
        return Err(RunError::invalid(
            "--from-state",
            &meta.name,
            format!(
                "state {:?} was saved {} --host-mount: a restore needs the same devices, so {}",
                meta.name,
                if meta.host_mount { "with" } else { "without" },
                if meta.host_mount {
                    "give --host-mount DIR"
                } else {
                    "leave --host-mount out (or save a state with it)"
                }
            ),
        ));
    }
    let bad = |what: &str, v: &str| {
        RunError::invalid(
            "--from-state",
            &meta.name,
            format!("state {:?}: bad {what} {v:?}", meta.name),
        )
    };
    let mut r = o.clone();
    r.image = Some(dir.join(super::state::DISK));
    // A bootable image's state boots no kernel of lvh's (see `saved::boot`).
    r.kernel = (!meta.booted).then(|| meta.kernel.clone());
    r.arch = meta.arch.parse().map_err(|_| bad("arch", &meta.arch))?;
    r.accel = match meta.accel.as_str() {
        "kvm" => AccelChoice::Kvm,
        _ => AccelChoice::Tcg,
    };
    r.cpus = meta.cpus;
    r.mem = meta.mem.parse().map_err(|_| bad("mem", &meta.mem))?;
    r.cpu_kind = meta.cpu_kind.clone();
    r.root_dev = parse_root_dev(&meta.root_dev).map_err(|_| bad("root_dev", &meta.root_dev))?;
    Ok(r)
}

/// A free TCP port on 127.0.0.1 (the kernel's pick; free when asked).
fn free_port() -> Result<u16, RunError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| RunError::io("find a free port for ssh", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| RunError::io("find a free port for ssh", e))
}

/// Moves a bootable-image state run's command out of `o` (whose plan then
/// boots the image's own init) and forwards a host port to guest port 22
/// (the first `-p H:22`, else a free one). `flag` is `--save-state` or
/// `--from-state`.
pub fn ssh_run(o: &mut RunOptions, flag: &str) -> Result<SshRun, RunError> {
    if o.cmd.is_empty() {
        return Err(RunError::refused(
            flag,
            "with a bootable image needs a command (-- CMD), run over ssh",
        ));
    }
    if o.host_mount.is_some() {
        return Err(RunError::refused(
            flag,
            "with a bootable image cannot use --host-mount: its own init does not mount it, and a mounted 9p share blocks saving",
        ));
    }
    if o.daemonize || o.persist || o.shell {
        return Err(RunError::refused(
            flag,
            "runs a command and returns: no --daemonize, --persist or --shell",
        ));
    }
    let port = match o.ports.iter().find(|p| p.guest_port == 22) {
        Some(p) => p.host_port,
        None => {
            let p = free_port()?;
            o.ports.push(PortForward::parse(&format!("{p}:22"))?);
            p
        }
    };
    let user_keys = o
        .ssh_key
        .take()
        .map(|f| sshkey::read_public_keys(&f))
        .transpose()?;
    o.wait_ssh = false;
    Ok(SshRun {
        cmd: std::mem::take(&mut o.cmd),
        cwd: o.cwd.take(),
        timeout: o.timeout.take(),
        port,
        login_timeout: o.ssh_timeout,
        user_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::plan::tests::{options, ports};

    fn opts(cmd: &[&str], fwd: &[&str]) -> RunOptions {
        let d = tempfile::tempdir().unwrap();
        RunOptions {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ports: ports(fwd),
            kernel: None,
            ..options(d.path())
        }
    }

    #[test]
    fn a_bootable_state_moves_the_command_out_and_forwards_ssh() {
        let mut o = opts(&["true"], &["8080:80", "2299:22"]);
        let s = ssh_run(&mut o, "--save-state").unwrap();
        assert_eq!(s.cmd, ["true"]);
        assert_eq!(s.port, 2299);
        assert!(o.cmd.is_empty());
        assert_eq!(o.ports.len(), 2);
        let mut o = opts(&["true"], &[]);
        let s = ssh_run(&mut o, "--save-state").unwrap();
        assert_eq!(o.ports, ports(&[&format!("{}:22", s.port)]));
        for (mut o, want) in [
            (opts(&[], &[]), "needs a command"),
            (
                RunOptions {
                    host_mount: Some("/x".into()),
                    ..opts(&["true"], &[])
                },
                "cannot use --host-mount",
            ),
            (
                RunOptions {
                    persist: true,
                    ..opts(&["true"], &[])
                },
                "no --daemonize, --persist",
            ),
        ] {
            let e = ssh_run(&mut o, "--from-state").unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("--from-state"), "{e}");
        }
    }
}
