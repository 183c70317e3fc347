//! `lvh run --ssh-key [FILE]`: root's authorized keys given to the guest at
//! boot without changing the image, so a root account needs no empty password.
//!
//! - Command mode (`--kernel`, lvh's init): the init's ssh-keys step mounts a
//!   tmpfs over `/root/.ssh`, copies what the image had there and appends the
//!   keys (`guest::steps`); the root disk is never written, not even with
//!   `--persist`.
//! - Booting the image's own init (bootable images, daemon mode): a systemd
//!   credential, `ssh.authorized_keys.root`, passed in an SMBIOS type 11 string
//!   ([`credential_args`]). systemd (252 and later, Debian bookworm's) imports it at
//!   boot and its `tmpfiles.d/provision.conf` writes `/root/.ssh/authorized_keys`
//!   when the image has none. The credential lives in the VM's firmware tables,
//!   never on a disk.
//!
//! Only public keys are accepted: a file that holds a private key is refused
//! without its content being echoed anywhere.

use std::path::{Path, PathBuf};

use crate::runner::error::RunError;

/// The public keys `--ssh-key` without a file looks for, in order, in `~/.ssh`.
pub const DEFAULT_KEYS: [&str; 3] = ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"];
/// The systemd credential whose content becomes root's authorized_keys.
pub const CREDENTIAL: &str = "ssh.authorized_keys.root";
/// The key types an authorized_keys line may start with (OpenSSH's list).
const KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-",
];

/// The first of `DEFAULT_KEYS` found in `home/.ssh`.
pub fn default_key(home: Option<&Path>) -> Result<PathBuf, RunError> {
    let Some(home) = home else {
        return Err(RunError::refused(
            "--ssh-key",
            "without a file looks in ~/.ssh, but HOME is not set: give the public key file, e.g. --ssh-key ~/.ssh/id_ed25519.pub",
        ));
    };
    let dir = home.join(".ssh");
    DEFAULT_KEYS
        .iter()
        .map(|k| dir.join(k))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            RunError::refused(
                "--ssh-key",
                format!(
                    "no public key in {} (looked for {}); create one with `ssh-keygen -t ed25519` or give the file (--ssh-key FILE)",
                    dir.display(),
                    DEFAULT_KEYS.join(", ")
                ),
            )
        })
}

/// Checks `text` (the content of `file`) as authorized_keys lines: every line
/// that is not blank or a comment must be a public key. Returns the lines, each
/// ending in a newline.
pub fn check_public_keys(file: &Path, text: &str) -> Result<String, RunError> {
    let bad = |what: &str| RunError::invalid("--ssh-key", file.display(), what);
    if text.contains("PRIVATE KEY") {
        return Err(bad(
            "this is a private key; give the public one (usually the same name with .pub)",
        ));
    }
    let mut keys = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if !KEY_TYPES.iter().any(|t| l.starts_with(t)) || l.split_whitespace().count() < 2 {
            return Err(bad(&format!(
                "line {} is not an ssh public key (expected e.g. `ssh-ed25519 AAAA... comment`)",
                i + 1
            )));
        }
        keys.push_str(l);
        keys.push('\n');
    }
    if keys.is_empty() {
        return Err(bad("the file holds no public key"));
    }
    Ok(keys)
}

/// The largest `--ssh-key` file lvh reads (an authorized_keys file of
/// thousands of keys fits).
pub const MAX_KEY_FILE: u64 = 1 << 20;

/// Reads and checks the public key file.
pub fn read_public_keys(file: &Path) -> Result<String, RunError> {
    // A regular file of sane size: `/dev/zero` or a FIFO is refused, not read.
    let bytes = crate::fsutil::read_input(file, MAX_KEY_FILE)
        .map_err(|e| RunError::invalid("--ssh-key", file.display(), e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        RunError::invalid(
            "--ssh-key",
            file.display(),
            "not a text file, so not an ssh public key",
        )
    })?;
    check_public_keys(file, &text)
}

/// The private key beside a public key file (`x.pub` → `x`), if it exists:
/// for the `ssh -i` hint. Only the path is ever used, never the content.
pub fn private_beside(public: &Path) -> Option<PathBuf> {
    let s = public.to_str()?;
    let p = PathBuf::from(s.strip_suffix(".pub")?);
    p.is_file().then_some(p)
}

/// The line `--wait-ssh` prints: how to log in. `-i` only for a key ssh would
/// not try by itself.
pub fn login_line(port: u16, key: Option<&Path>) -> String {
    let identity = key
        .and_then(private_beside)
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let dir = p
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str());
            !(dir == Some(".ssh")
                && DEFAULT_KEYS
                    .iter()
                    .any(|k| k.strip_suffix(".pub") == Some(name)))
        })
        .map(|p| {
            format!(
                " -i {}",
                crate::runner::guest::sh_quote(&p.to_string_lossy())
            )
        })
        .unwrap_or_default();
    format!("ssh -p {port}{identity} root@127.0.0.1")
}

/// Standard base64 (RFC 4648, with padding).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// QEMU arguments that hand `keys` to systemd as the `ssh.authorized_keys.root`
/// credential: an SMBIOS type 11 (OEM strings) entry, base64 so that no comma
/// or newline reaches QEMU's option parser.
pub fn credential_args(keys: &str) -> Vec<String> {
    vec![
        "-smbios".into(),
        format!(
            "type=11,value=io.systemd.credential.binary:{CREDENTIAL}={}",
            base64(keys.as_bytes())
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 me@host";

    #[test]
    fn the_first_default_key_found_wins_and_none_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let e = default_key(Some(d.path())).unwrap_err().to_string();
        assert!(
            e.contains("no public key in")
                && e.contains("id_ed25519.pub, id_ecdsa.pub, id_rsa.pub"),
            "{e}"
        );
        assert!(default_key(None)
            .unwrap_err()
            .to_string()
            .contains("HOME is not set"));
        std::fs::create_dir(d.path().join(".ssh")).unwrap();
        std::fs::write(d.path().join(".ssh/id_rsa.pub"), KEY).unwrap();
        assert_eq!(
            default_key(Some(d.path())).unwrap(),
            d.path().join(".ssh/id_rsa.pub")
        );
        std::fs::write(d.path().join(".ssh/id_ecdsa.pub"), KEY).unwrap();
        assert_eq!(
            default_key(Some(d.path())).unwrap(),
            d.path().join(".ssh/id_ecdsa.pub")
        );
    }

    #[test]
    fn a_device_a_fifo_or_a_huge_file_is_refused_without_reading_it() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("k.pub");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let big = d.path().join("big.pub");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_KEY_FILE + 1)
            .unwrap();
        for (p, want) in [
            (Path::new("/dev/zero"), "--ssh-key \"/dev/zero\""),
            (&fifo, "FIFO"),
            (&big, "larger than 1048576 bytes"),
        ] {
            let start = std::time::Instant::now();
            let e = read_public_keys(p).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(start.elapsed() < std::time::Duration::from_secs(2));
        }
    }

    #[test]
    fn only_public_keys_pass_and_a_private_key_is_never_echoed() {
        let f = Path::new("k.pub");
        assert_eq!(
            check_public_keys(f, &format!("# mine\n\n{KEY}\n")).unwrap(),
            format!("{KEY}\n")
        );
        let two = format!("{KEY}\necdsa-sha2-nistp256 AAAAE2 x\n");
        assert_eq!(check_public_keys(f, &two).unwrap(), two);
        let secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let e = check_public_keys(f, secret).unwrap_err().to_string();
        assert!(
            e.contains("--ssh-key \"k.pub\": this is a private key"),
            "{e}"
        );
        assert!(!e.contains("b3BlbnNzaC1rZXktdjEAAAAA"), "{e}");
        for (bad, want) in [
            ("", "holds no public key"),
            ("hello world\n", "line 1 is not an ssh public key"),
            (&format!("{KEY}\nssh-ed25519\n") as &str, "line 2 is not"),
        ] {
            let e = check_public_keys(f, bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn the_credential_is_one_smbios_string_without_commas() {
        let a = credential_args(&format!("{KEY}\n"));
        assert_eq!(a[0], "-smbios");
        let v = a[1]
            .strip_prefix("type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root=")
            .unwrap();
        assert!(!v.contains(',') && !v.contains('\n'));
        assert_eq!(v, base64(format!("{KEY}\n").as_bytes()));
    }

    #[test]
    fn the_login_line() {
        assert_eq!(login_line(2222, None), "ssh -p 2222 root@127.0.0.1");
        let d = tempfile::tempdir().unwrap();
        let pubk = d.path().join("test key.pub");
        std::fs::write(&pubk, KEY).unwrap();
        // no private key beside it: nothing to point -i at
        assert_eq!(login_line(22, Some(&pubk)), "ssh -p 22 root@127.0.0.1");
        std::fs::write(d.path().join("test key"), "x").unwrap();
        assert_eq!(
            login_line(22, Some(&pubk)),
            format!(
                "ssh -p 22 -i '{}/test key' root@127.0.0.1",
                d.path().display()
            )
        );
        // ssh's own default identities need no -i
        let ssh = d.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        std::fs::write(ssh.join("id_ed25519.pub"), KEY).unwrap();
        std::fs::write(ssh.join("id_ed25519"), "x").unwrap();
        assert_eq!(
            login_line(22, Some(&ssh.join("id_ed25519.pub"))),
            "ssh -p 22 root@127.0.0.1"
        );
    }
}
