//! The KVM probe's test guest (x86_64 hosts): a VM with 1 MiB of memory and
//! one vCPU started directly in 64-bit long mode (identity-mapped 2 MiB page,
//! flat segments, no firmware), running 16 instructions that touch
//! [`PAGES`] pages, spin [`SPIN`] times, write 0x42 to port 0x10 and halt.
//! Built through the rust-vmm `kvm-ioctls` crate.
//!
//! The vCPU runs on its own thread. At the deadline the caller sets a stop
//! flag and sends the thread [`kick_signal`] (a no-op handler installed
//! without `SA_RESTART`) until `KVM_RUN` returns `EINTR`; a thread that still
//! does not return is left behind rather than waited for.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

/// Pages the guest writes to (each is a fault KVM must handle).
pub const PAGES: u32 = 64;
/// Iterations of the guest's `dec; jnz` loop: about 0.3 ms on hardware.
pub const SPIN: u32 = 1_000_000;
const MEM_SIZE: usize = 0x10_0000;
const GDT: usize = 0x500;
const PML4: usize = 0x1000;
const PDPT: usize = 0x2000;
const PD: usize = 0x3000;
const CODE: usize = 0x8000;
const TOUCHED: usize = 0x1_0000;
const PORT: u16 = 0x10;
const MAGIC: u8 = 0x42;
/// How long the caller keeps kicking a vCPU thread past the deadline.
const KICK_GRACE: Duration = Duration::from_millis(200);

/// The guest's code (64-bit).
fn code() -> Vec<u8> {
    let mut c = vec![0x48, 0xc7, 0xc7]; // mov rdi, TOUCHED
    c.extend((TOUCHED as u32).to_le_bytes());
    c.extend([0x48, 0xc7, 0xc1]); // mov rcx, PAGES
    c.extend(PAGES.to_le_bytes());
    c.extend([0xc6, 0x07, 0x01]); // 1: mov byte [rdi], 1
    c.extend([0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00]); // add rdi, 4096
    c.extend([0x48, 0xff, 0xc9, 0x75, 0xf1]); // dec rcx; jnz 1b
    c.extend([0x48, 0xc7, 0xc1]); // mov rcx, SPIN
    c.extend(SPIN.to_le_bytes());
    c.extend([0x48, 0xff, 0xc9, 0x75, 0xfb]); // 2: dec rcx; jnz 2b
    c.extend([0xb0, MAGIC, 0xe6, PORT as u8, 0xf4]); // mov al, MAGIC; out PORT, al; hlt
    c
}

/// Guest memory: anonymous, page-aligned, unmapped on drop.
struct Mem(*mut u8);

impl Mem {
    fn new() -> Result<Mem, String> {
        // SAFETY: a fresh private anonymous mapping; checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "mmap of the test guest's memory failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Mem(p.cast()))
    }

    fn write(&self, off: usize, bytes: &[u8]) {
        assert!(off + bytes.len() <= MEM_SIZE);
        // SAFETY: in bounds of our mapping (checked above).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.0.add(off), bytes.len()) }
    }

    fn read(&self, off: usize) -> u8 {
        assert!(off < MEM_SIZE);
        // SAFETY: in bounds of our mapping.
        unsafe { self.0.add(off).read_volatile() }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: our mapping, of this size; the VM using it is gone by now.
        unsafe { libc::munmap(self.0.cast(), MEM_SIZE) };
    }
}

/// The signal that kicks the vCPU thread out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

extern "C" fn on_kick(_: libc::c_int) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a no-op handler; no SA_RESTART, so KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Creates the VM and runs the guest to its `hlt` (or an error). `stop` ends
/// the run when set and the thread is kicked.
fn guest(dev: &Path, stop: &AtomicBool) -> Result<(), String> {
    let fd = std::fs::File::options()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| format!("cannot open {}: {e}", dev.display()))?;
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: a freshly opened KVM device fd, handed over.
    let kvm = unsafe { Kvm::from_raw_fd(fd.into_raw_fd()) };
    let vm = kvm
        .create_vm()
        .map_err(|e| format!("KVM_CREATE_VM failed: {e}"))?;
    let mem = Mem::new()?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: mem.0 as u64,
        flags: 0,
    };
    // SAFETY: the region is our live mapping, which outlives the VM (dropped later).
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION failed: {e}"))?;
    // GDT: null, 64-bit code, data. Page tables: one 2 MiB identity page.
    mem.write(GDT, &0u64.to_le_bytes());
    mem.write(GDT + 8, &0x00af_9b00_0000_ffffu64.to_le_bytes());
    mem.write(GDT + 16, &0x00cf_9300_0000_ffffu64.to_le_bytes());
    mem.write(PML4, &(PDPT as u64 | 3).to_le_bytes());
    mem.write(PDPT, &(PD as u64 | 3).to_le_bytes());
    mem.write(PD, &0x83u64.to_le_bytes());
    mem.write(CODE, &code());
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU failed: {e}"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS failed: {e}"))?;
    sregs.gdt.base = GDT as u64;
    sregs.gdt.limit = 23;
    let mut cs = sregs.cs;
    (cs.base, cs.limit, cs.g, cs.selector, cs.type_) = (0, 0xfffff, 1, 8, 11);
    (cs.present, cs.dpl, cs.db, cs.s, cs.l) = (1, 0, 0, 1, 1);
    let mut ds = cs;
    (ds.selector, ds.type_, ds.l, ds.db) = (0x10, 3, 0, 1);
    (sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (cs, ds, ds, ds, ds, ds);
    sregs.cr3 = PML4 as u64;
    sregs.cr4 = 0x20; // PAE
    sregs.cr0 = 0x8000_0011; // PG, ET, PE
    sregs.efer = 0x500; // LMA, LME
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS (64-bit mode) failed: {e}"))?;
    let mut regs = vcpu
        .get_regs()
        .map_err(|e| format!("KVM_GET_REGS failed: {e}"))?;
    (regs.rip, regs.rflags, regs.rsp) = (CODE as u64, 2, 0x7000);
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS failed: {e}"))?;
    let mut said = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err("stopped".into());
        }
        match vcpu.run() {
            Ok(VcpuExit::IoOut(PORT, data)) if data == [MAGIC] => said = true,
            Ok(VcpuExit::Hlt) if said => break,
            Ok(exit) => {
                return Err(format!(
                    "the test guest stopped unexpectedly ({exit:?}){}",
                    if said { " after reporting" } else { "" }
                ))
            }
            Err(e) if e.errno() == libc::EINTR => continue,
            Err(e) => return Err(format!("KVM_RUN failed: {e}")),
        }
    }
    let touched = (0..PAGES as usize)
        .filter(|i| mem.read(TOUCHED + i * 0x1000) == 1)
        .count();
    if touched != PAGES as usize {
        return Err(format!(
            "the test guest halted but wrote only {touched} of its {PAGES} pages"
        ));
    }
    drop(vcpu);
    drop(vm);
    drop(mem);
    Ok(())
}

/// Runs the test guest with `deadline` for all of it; Err says what went wrong.
pub fn run(dev: &Path, deadline: Duration) -> Result<(), String> {
    install_kick_handler();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let dev = dev.to_path_buf();
    let flag = stop.clone();
    let start = Instant::now();
    let th = std::thread::Builder::new()
        .name("lvh-kvm-probe".into())
        .spawn(move || {
            let _ = tx.send(guest(&dev, &flag));
        })
        .map_err(|e| format!("cannot start the probe thread: {e}"))?;
    match rx.recv_timeout(deadline) {
        Ok(r) => {
            let _ = th.join();
            return r.map_err(|e| format!("{e} (after {} ms)", start.elapsed().as_millis()));
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err("the probe thread died".into());
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {}
    }
    stop.store(true, Ordering::SeqCst);
    use std::os::unix::thread::JoinHandleExt;
    let until = Instant::now() + KICK_GRACE;
    while Instant::now() < until {
        // SAFETY: the thread has not been joined, so its pthread_t is valid.
        unsafe { libc::pthread_kill(th.as_pthread_t(), kick_signal()) };
        if rx.recv_timeout(Duration::from_millis(5)).is_ok() {
            let _ = th.join();
            break;
        }
    }
    Err(format!(
        "a test guest that takes about 1 ms on working KVM did not finish within {} ms \
         (nested virtualization that runs only special guests?)",
        deadline.as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_code_is_what_the_doc_says() {
        let c = code();
        assert_eq!(c.len(), 7 + 7 + 3 + 7 + 5 + 7 + 5 + 5);
        assert!(c.ends_with(&[0xb0, MAGIC, 0xe6, PORT as u8, 0xf4]));
        // Both loops jump back to their own start.
        assert_eq!(c[14..17], [0xc6, 0x07, 0x01]);
        assert_eq!((c[28] as i8) as isize, -(3 + 7 + 5));
        assert_eq!((c[40] as i8) as isize, -5);
    }

    /// The probe against this host's real /dev/kvm, when it opens: it must
    /// come back within its deadline plus the kick grace whatever KVM does.
    #[test]
    fn the_probe_returns_within_its_deadline() {
        let dev = Path::new("/dev/kvm");
        if std::fs::File::options()
            .read(true)
            .write(true)
            .open(dev)
            .is_err()
        {
            let r = run(dev, Duration::from_millis(100));
            assert!(r.unwrap_err().contains("cannot open /dev/kvm"));
            return;
        }
        let t = Instant::now();
        let r = run(dev, Duration::from_millis(250));
        assert!(
            t.elapsed() < Duration::from_millis(250) + KICK_GRACE + Duration::from_millis(200),
            "{r:?} took {:?}",
            t.elapsed()
        );
        // A zero deadline always times out, and still returns promptly.
        let t = Instant::now();
        let r = run(dev, Duration::ZERO);
        assert!(r.unwrap_err().contains("did not finish within 0 ms"));
        assert!(t.elapsed() < KICK_GRACE + Duration::from_millis(200));
    }
}
