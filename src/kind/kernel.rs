//! The kernel kind: `flock(2)` through fs4, what util-linux flock(1) and py-filelock's
//! `FileLock` take. The lock belongs to the open file description, so it survives `fork` and
//! `execve` (a child given the descriptor holds it too) and is released when the last
//! descriptor to it closes. The default kind of `exec` and `try`, and what `status` takes an
//! unlocked file without telling content for. (Called directly rather than through fs4, whose
//! calls want a `File`: with `--fd` the descriptor is only borrowed from the caller.)

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::descriptor::{self, DescriptorLock};
use crate::error::Error;
use crate::lock::{ByteRange, Claim, Kind, LockFile, Request, Target};
use crate::mode::LockMode;
use crate::mounts::KernelLock;
use crate::open::Access;
use crate::status::LockStatus;

pub struct Kernel;

impl Kind for Kernel {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        (!request.verb.is_read_write()).then_some(Claim::ByDefault)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        if request.slots.is_some() {
            // Slots are OFD byte locks, whichever of the two kinds was asked for.
            return descriptor::slots::target(Kind::name(self), &super::ofd::Ofd, request);
        }
        descriptor::target(&Kernel, request)
    }

    fn proc_class(&self) -> Option<&'static str> {
        Some(DescriptorLock::proc_class(self))
    }

    fn inspect_file(&self, status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        descriptor::inspect(self, status, file);
        Ok(())
    }
}

fn operation(mode: LockMode) -> libc::c_int {
    match mode {
        LockMode::Exclusive => libc::LOCK_EX,
        LockMode::Shared => libc::LOCK_SH,
    }
}

/// `flock(2)` on a descriptor.
fn flock(fd: BorrowedFd<'_>, operation: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid descriptor for the duration of the call; flock takes no pointers.
    if unsafe { libc::flock(fd.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl DescriptorLock for Kernel {
    fn name(&self) -> &'static str {
        Kind::name(self)
    }

    fn proc_class(&self) -> &'static str {
        "FLOCK"
    }

    fn family(&self) -> KernelLock {
        KernelLock::Flock
    }

    /// flock(2) works on a read-only descriptor, so a user who can only read the file (or a
    /// running script) can still be locked, as with flock(1).
    fn access(&self, _mode: LockMode) -> Access {
        Access::Read
    }

    fn try_lock(&self, fd: BorrowedFd<'_>, mode: LockMode, _range: ByteRange) -> io::Result<bool> {
        match flock(fd, operation(mode) | libc::LOCK_NB) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Not retried on `EINTR`, which is exactly what the timeout needs.
    fn lock_blocking(
        &self,
        fd: BorrowedFd<'_>,
        mode: LockMode,
        _range: ByteRange,
    ) -> io::Result<()> {
        flock(fd, operation(mode))
    }

    fn unlock(&self, fd: BorrowedFd<'_>, _range: ByteRange) -> io::Result<()> {
        flock(fd, libc::LOCK_UN)
    }
}
