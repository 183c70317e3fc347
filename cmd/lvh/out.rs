//! Writing results to stdout (and messages to stderr) the way a Go program
//! does: when the reader has gone (`lvh kernels list | head -1`), lvh dies of
//! SIGPIPE quietly, as Go's runtime makes a program die on a broken fd 1 or 2,
//! instead of panicking. SIGPIPE stays ignored for every other descriptor, so a
//! dead QEMU socket or child pipe is still an error lvh reports.

use std::io::Write;

/// Dies of SIGPIPE, as a Go program does on a broken stdout/stderr (the shell
/// reports 141); the exit is a fallback should the signal not end the process.
pub fn die_of_sigpipe() -> ! {
    // SAFETY: resetting a signal disposition and raising it; no Rust state is touched.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

fn write_or_die(w: &mut dyn Write, bytes: &[u8]) {
    match w.write_all(bytes).and_then(|()| w.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => die_of_sigpipe(),
        // Go ignores other write errors on fd 1/2; so does lvh (nothing else could report them).
        Err(_) => {}
    }
}

/// Writes `bytes` to stdout.
pub fn stdout(bytes: &[u8]) {
    write_or_die(&mut std::io::stdout().lock(), bytes);
}

/// Writes `bytes` to stderr.
pub fn stderr(bytes: &[u8]) {
    write_or_die(&mut std::io::stderr().lock(), bytes);
}

/// `println!` for results: one line on stdout, a broken pipe ends lvh quietly.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::out::stdout(format!("{}\n", format_args!($($t)*)).as_bytes())
    };
}

/// `print!` for results.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out::stdout(format!($($t)*).as_bytes())
    };
}

/// `eprintln!` for messages: a broken stderr ends lvh quietly.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::out::stderr(format!("{}\n", format_args!($($t)*)).as_bytes())
    };
}

#[cfg(test)]
mod tests {
    /// Every write to stdout/stderr in cmd/ goes through this module: a bare
    /// `println!` would panic on a closed pipe.
    #[test]
    fn no_bare_print_macros_in_cmd() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cmd/lvh");
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for bad in ["println!(", "print!(", "eprintln!(", "eprint!("] {
                for (n, line) in code.lines().enumerate() {
                    let hit = line.match_indices(bad).any(|(i, _)| {
                        i == 0
                            || !line.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && line.as_bytes()[i - 1] != b'_'
                    });
                    assert!(
                        !hit,
                        "{}:{}: use outln!/out!/errln! instead of {bad}",
                        p.display(),
                        n + 1
                    );
                }
            }
        }
    }
}
