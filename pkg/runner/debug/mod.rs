//! Debugging a kernel: QEMU's gdbstub and the command to attach to it
//! ([`gdb`]), and the interactive root shell on the console ([`shell`], a
//! policy of the QEMU session) with the host terminal's handling ([`term`]).

pub mod gdb;
pub mod shell;
pub mod term;
