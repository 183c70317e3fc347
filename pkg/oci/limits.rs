//! Caps on what a registry can make lvh read, hold, unpack or wait for. A
//! manifest or an image config is at most [`MANIFEST_MAX`] / [`CONFIG_MAX`]
//! bytes; a blob is cut at the size its descriptor declares; a pull unpacks at
//! most a set number of bytes per layer and in all, and at most a set number
//! of tar entries; a request that gets no answer, or a download that stops
//! making progress, ends after a timeout. The defaults are generous; the
//! `LVH_OCI_*` variables and the pull commands' flags change them.
//!
//! [`Budget`] keeps the count while layers are unpacked: every decompressed
//! byte (a layer's tar stream, and a `.zst` image inside it) goes through a
//! [`Counted`] reader, which also stops at once when lvh is interrupted (a
//! bomb decompresses without reading much from the network, so the network
//! side alone would not notice Ctrl-C).

use std::cell::Cell;
use std::io::{self, Read};
use std::time::Duration;

use super::error::OciError;
use crate::bytesize::{human, parse_size};
use crate::cancel::CancelToken;

/// The largest manifest or index lvh reads (the distribution registry's own
/// limit is 4 MiB).
pub const MANIFEST_MAX: u64 = 4 << 20;
/// The largest image config lvh reads.
pub const CONFIG_MAX: u64 = 4 << 20;
/// A blob download that brings less than this in a whole timeout window has
/// stalled (a byte every few seconds would otherwise never end).
pub const STALL_MIN_BYTES: u64 = 64 << 10;

/// `LVH_OCI_MAX_UNPACKED` (`--max-unpacked`): bytes one pull may unpack.
pub const ENV_MAX_UNPACKED: &str = "LVH_OCI_MAX_UNPACKED";
/// `LVH_OCI_MAX_LAYER_UNPACKED` (`--max-layer-unpacked`): bytes one layer may
/// unpack to.
pub const ENV_MAX_LAYER_UNPACKED: &str = "LVH_OCI_MAX_LAYER_UNPACKED";
/// `LVH_OCI_MAX_ENTRIES`: tar entries one pull may hold.
pub const ENV_MAX_ENTRIES: &str = "LVH_OCI_MAX_ENTRIES";
/// `LVH_OCI_TIMEOUT`: seconds a request may go unanswered (a manifest, a
/// config, a token) and a blob download may go without bringing
/// [`STALL_MIN_BYTES`].
pub const ENV_TIMEOUT: &str = "LVH_OCI_TIMEOUT";

/// The caps of one pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes unpacked by one pull, all layers together.
    pub unpacked: u64,
    /// Bytes unpacked from one layer.
    pub layer_unpacked: u64,
    /// Tar entries in one pull.
    pub entries: u64,
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            unpacked: 128 << 30,
            layer_unpacked: 64 << 30,
            entries: 1_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Caps given as flags; what is unset comes from the environment, then the
/// defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapFlags {
    pub unpacked: Option<u64>,
    pub layer_unpacked: Option<u64>,
}

impl Limits {
    /// The caps for `flags`, with the environment (`env` looks a variable up)
    /// filling what they leave unset. A value that does not parse is an error
    /// naming the variable and the value.
    pub fn resolve(
        flags: CapFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Limits, OciError> {
        let d = Limits::default();
        let size = |var: &str| -> Result<Option<u64>, OciError> {
            env(var)
                .map(|v| {
                    parse_size(&v).ok_or_else(|| {
                        OciError::InvalidInput(crate::error::InvalidInput::value(
                            var,
                            &v,
                            "not a size (examples: 64G, 512M, 4096)",
                        ))
                    })
                })
                .transpose()
        };
        let count = |var: &str| -> Result<Option<u64>, OciError> {
            env(var)
                .map(|v| match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(OciError::InvalidInput(crate::error::InvalidInput::value(
                        var,
                        &v,
                        "not a positive whole number",
                    ))),
                })
                .transpose()
        };
        Ok(Limits {
            unpacked: match flags.unpacked {
                Some(n) => n,
                None => size(ENV_MAX_UNPACKED)?.unwrap_or(d.unpacked),
            },
            layer_unpacked: match flags.layer_unpacked {
                Some(n) => n,
                None => size(ENV_MAX_LAYER_UNPACKED)?.unwrap_or(d.layer_unpacked),
            },
            entries: count(ENV_MAX_ENTRIES)?.unwrap_or(d.entries),
            timeout: count(ENV_TIMEOUT)?
                .map(Duration::from_secs)
                .unwrap_or(d.timeout),
        })
    }

    /// [`Limits::resolve`] with this process's environment.
    pub fn from_env(flags: CapFlags) -> Result<Limits, OciError> {
        Limits::resolve(flags, |k| std::env::var(k).ok())
    }
}

/// Why unpacking stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Layer,
    Pull,
    Entries,
    Interrupted,
}

/// What one pull has unpacked so far, against its [`Limits`].
#[derive(Debug)]
pub struct Budget {
    pub limits: Limits,
    unpacked: Cell<u64>,
    layer: Cell<u64>,
    entries: Cell<u64>,
    stop: Cell<Option<Stop>>,
    cancel: CancelToken,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(Limits::default(), CancelToken::global())
    }
}

impl Budget {
    pub fn new(limits: Limits, cancel: CancelToken) -> Budget {
        Budget {
            limits,
            unpacked: Cell::new(0),
            layer: Cell::new(0),
            entries: Cell::new(0),
            stop: Cell::new(None),
            cancel,
        }
    }

    /// A new layer starts: its own count starts from zero.
    pub fn start_layer(&self) {
        self.layer.set(0);
    }

    /// Counts `n` more unpacked bytes; false (and the reason kept) once a cap
    /// is passed or lvh is interrupted.
    pub fn take(&self, n: u64) -> bool {
        if self.cancel.is_cancelled() {
            self.stop.set(Some(Stop::Interrupted));
            return false;
        }
        let layer = self.layer.get().saturating_add(n);
        let all = self.unpacked.get().saturating_add(n);
        self.layer.set(layer);
        self.unpacked.set(all);
        let stop = if layer > self.limits.layer_unpacked {
            Some(Stop::Layer)
        } else if all > self.limits.unpacked {
            Some(Stop::Pull)
        } else {
            None
        };
        match stop {
            Some(s) => {
                self.stop.set(Some(s));
                false
            }
            None => true,
        }
    }

    /// Counts one more tar entry; false once there are too many.
    pub fn take_entry(&self) -> bool {
        let n = self.entries.get() + 1;
        self.entries.set(n);
        if n > self.limits.entries {
            self.stop.set(Some(Stop::Entries));
            return false;
        }
        true
    }

    pub fn unpacked(&self) -> u64 {
        self.unpacked.get()
    }

    /// Why unpacking stopped, as the error to report (`layer` names it).
    pub fn refusal(&self, layer: &str) -> Option<OciError> {
        let cap = |what: String, limit: u64, knob: &'static str| OciError::UnpackLimit {
            what,
            limit: human(limit),
            knob,
        };
        let l = &self.limits;
        Some(match self.stop.take()? {
            Stop::Interrupted => OciError::Interrupted,
            Stop::Layer => cap(
                format!("layer {layer}"),
                l.layer_unpacked,
                "--max-layer-unpacked, LVH_OCI_MAX_LAYER_UNPACKED",
            ),
            Stop::Pull => cap(
                "the pull".into(),
                l.unpacked,
                "--max-unpacked, LVH_OCI_MAX_UNPACKED",
            ),
            Stop::Entries => OciError::UnpackLimit {
                what: "the pull".into(),
                limit: format!("{} tar entries", l.entries),
                knob: "LVH_OCI_MAX_ENTRIES",
            },
        })
    }
}

/// A reader of decompressed bytes that counts them against a [`Budget`] and
/// fails once a cap is passed or lvh is interrupted.
pub struct Counted<'b, R> {
    pub inner: R,
    pub budget: &'b Budget,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.budget.take(n as u64) {
            return Err(io::Error::other("unpacking stopped (cap or interrupt)"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_then_environment_then_defaults() {
        let env = |k: &str| match k {
            ENV_MAX_UNPACKED => Some("10G".to_string()),
            ENV_MAX_LAYER_UNPACKED => Some("1M".to_string()),
            ENV_TIMEOUT => Some("3".to_string()),
            _ => None,
        };
        let l = Limits::resolve(CapFlags::default(), env).unwrap();
        assert_eq!(
            (l.unpacked, l.layer_unpacked, l.timeout),
            (10 << 30, 1 << 20, Duration::from_secs(3))
        );
        assert_eq!(l.entries, Limits::default().entries);
        let flags = CapFlags {
            unpacked: Some(5),
            layer_unpacked: None,
        };
        let l = Limits::resolve(flags, env).unwrap();
        assert_eq!((l.unpacked, l.layer_unpacked), (5, 1 << 20));
        assert_eq!(
            Limits::resolve(CapFlags::default(), |_| None).unwrap(),
            Limits::default()
        );
        for (var, bad) in [
            (ENV_MAX_UNPACKED, "lots"),
            (ENV_TIMEOUT, "0"),
            (ENV_MAX_ENTRIES, "-1"),
        ] {
            let e = Limits::resolve(CapFlags::default(), |k| (k == var).then(|| bad.to_string()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(var) && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_budget_stops_at_each_cap() {
        let l = Limits {
            unpacked: 100,
            layer_unpacked: 60,
            entries: 2,
            timeout: Duration::from_secs(1),
        };
        let b = Budget::new(l, CancelToken::new());
        assert!(b.take(60));
        assert!(!b.take(1));
        assert!(b
            .refusal("sha256:ab")
            .unwrap()
            .to_string()
            .contains("layer sha256:ab"));
        b.start_layer();
        assert!(b.take(39));
        assert!(!b.take(1));
        let e = b.refusal("l").unwrap().to_string();
        assert!(
            e.contains("the pull") && e.contains("LVH_OCI_MAX_UNPACKED"),
            "{e}"
        );
        assert!(b.take_entry() && b.take_entry() && !b.take_entry());
        assert!(b
            .refusal("l")
            .unwrap()
            .to_string()
            .contains("2 tar entries"));
        let cancel = CancelToken::new();
        let b = Budget::new(l, cancel.clone());
        cancel.cancel();
        assert!(!b.take(0));
        assert!(matches!(b.refusal("l"), Some(OciError::Interrupted)));
    }

    #[test]
    fn a_counted_reader_fails_past_the_cap() {
        let l = Limits {
            unpacked: 1 << 20,
            layer_unpacked: 1000,
            ..Limits::default()
        };
        let b = Budget::new(l, CancelToken::new());
        let mut r = Counted {
            inner: io::repeat(0),
            budget: &b,
        };
        let mut sink = Vec::new();
        assert!(r.by_ref().take(1000).read_to_end(&mut sink).is_ok());
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
        assert!(b.unpacked() <= 1000 + 8192);
    }
}
