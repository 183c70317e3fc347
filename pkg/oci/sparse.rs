//! Writing a stream into a sparse file: all-zero blocks become holes (as
//! `zstd -d --sparse` does), and the writes run on their own thread so they
//! overlap with decompression.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Block size for hole detection (what `zstd -d --sparse` does too).
pub const SPARSE_BLOCK: usize = 64 << 10;

fn is_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(16);
    let rest = words.remainder();
    words
        .map(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")))
        .fold(0, |a, x| a | x)
        == 0
        && rest.iter().all(|&x| x == 0)
}

/// Copies `r` into `f` on this thread, seeking over all-zero blocks: for the
/// many small files of a kernel tree ([`write_sparse`]'s two threads and
/// buffers are for large images), so that a layer full of zeros costs no
/// disk. Returns the bytes copied; `f` is sized to them.
pub fn copy_sparse(mut r: impl Read, f: &mut File) -> io::Result<u64> {
    let mut buf = vec![0u8; SPARSE_BLOCK];
    let mut total = 0u64;
    let mut hole = 0i64;
    loop {
        let n = read_full(&mut r, &mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if is_zero(&buf[..n]) {
            hole += n as i64;
            continue;
        }
        if hole > 0 {
            f.seek(SeekFrom::Current(hole))?;
            hole = 0;
        }
        f.write_all(&buf[..n])?;
    }
    f.set_len(total)?;
    Ok(total)
}

/// Copies `r` into a new file at `dst`, leaving holes for all-zero blocks.
/// Reading (decompression) and writing run on two threads, so the file
/// system's copy and hole detection overlap with zstd.
pub fn write_sparse(mut r: impl Read, dst: &Path) -> io::Result<u64> {
    const BUF: usize = 4 << 20;
    const IN_FLIGHT: usize = 3;
    let f = File::create(dst)?;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(IN_FLIGHT);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
    for _ in 0..=IN_FLIGHT {
        let _ = empty_tx.send(vec![0u8; BUF]);
    }
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_blocks(f, full_rx, empty_tx));
        let mut total = 0u64;
        let read_result = loop {
            let Ok(mut buf) = empty_rx.recv() else {
                break Ok(());
            };
            let n = match read_full(&mut r, &mut buf) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n == 0 {
                break Ok(());
            }
            total += n as u64;
            if full_tx.send((buf, n)).is_err() {
                break Ok(());
            }
        };
        drop(full_tx);
        let written = writer
            .join()
            .map_err(|_| io::Error::other("the writer thread panicked"))??;
        read_result?;
        if written != total {
            return Err(io::Error::other(format!(
                "wrote {written} of {total} bytes"
            )));
        }
        Ok(total)
    })
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The writer half of [`write_sparse`]: seeks over zero blocks, writes runs
/// of data blocks, hands buffers back, and sizes the file at the end.
fn write_blocks(
    mut f: File,
    full: std::sync::mpsc::Receiver<(Vec<u8>, usize)>,
    empty: std::sync::mpsc::SyncSender<Vec<u8>>,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut pending_hole = 0i64;
    for (buf, n) in full {
        total += n as u64;
        let mut start = 0;
        while start < n {
            let end = (start + SPARSE_BLOCK).min(n);
            if is_zero(&buf[start..end]) {
                pending_hole += (end - start) as i64;
                start = end;
                continue;
            }
            let mut run_end = end;
            while run_end < n {
                let e2 = (run_end + SPARSE_BLOCK).min(n);
                if is_zero(&buf[run_end..e2]) {
                    break;
                }
                run_end = e2;
            }
            if pending_hole > 0 {
                f.seek(SeekFrom::Current(pending_hole))?;
                pending_hole = 0;
            }
            f.write_all(&buf[start..run_end])?;
            start = run_end;
        }
        let _ = empty.send(buf);
    }
    // No fsync: atomicity comes from the rename after verification; durability
    // against power loss is not worth seconds per GiB here (zstd(1) does not either).
    f.set_len(total)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_detection() {
        for len in [0usize, 1, 15, 16, 17, 100] {
            let mut b = vec![0u8; len];
            assert!(is_zero(&b), "{len}");
            if len > 0 {
                b[len - 1] = 1;
                assert!(!is_zero(&b), "{len}");
                b[len - 1] = 0;
                b[0] = 0x80;
                assert!(!is_zero(&b), "{len}");
            }
        }
    }

    #[test]
    fn small_copies_keep_content_and_leave_holes() {
        let d = tempfile::tempdir().unwrap();
        for len in [0usize, 5, 3 * SPARSE_BLOCK + 7] {
            let mut data = vec![0u8; len];
            if len > 2 * SPARSE_BLOCK {
                data[2 * SPARSE_BLOCK + 1] = 9;
            } else if len > 0 {
                data[len - 1] = 9;
            }
            let p = d.path().join(format!("s{len}"));
            let mut f = File::create(&p).unwrap();
            assert_eq!(copy_sparse(&data[..], &mut f).unwrap(), len as u64);
            drop(f);
            assert_eq!(std::fs::read(&p).unwrap(), data);
            if len > 2 * SPARSE_BLOCK {
                let m = std::fs::metadata(&p).unwrap();
                assert!(
                    m.blocks() * 512 <= 2 * SPARSE_BLOCK as u64,
                    "{}",
                    m.blocks()
                );
            }
        }
    }

    #[test]
    fn content_is_kept_and_zeros_become_holes() {
        let d = tempfile::tempdir().unwrap();
        for (len, zero_from, zero_to) in [
            (0usize, 0usize, 0usize),
            (10, 0, 0),
            (10 << 20, 1 << 20, 9 << 20),
            ((9 << 20) + 3, 0, 9 << 20),
        ] {
            let mut data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
            data[zero_from..zero_to].fill(0);
            let p = d.path().join(format!("f{len}"));
            assert_eq!(write_sparse(&data[..], &p).unwrap(), len as u64);
            assert!(
                std::fs::read(&p).unwrap() == data,
                "content differs for {len}"
            );
            let m = std::fs::metadata(&p).unwrap();
            let allocated = m.blocks() * 512;
            assert!(
                allocated <= (len - (zero_to - zero_from)) as u64 + (1 << 20),
                "{len}: {allocated} allocated"
            );
        }
    }
}
