//! The ofd kind: a whole-file open-file-description lock (`F_OFD_SETLK[W]`, Linux ≥ 3.15),
//! the lock util-linux `flock --fcntl` takes. Unlike classic POSIX locks it belongs to the
//! open file description, so closing some other descriptor of the file does not drop it and
//! a child that inherits the descriptor holds it. It conflicts with POSIX and other OFD
//! locks, not with flock(2). The flock front end's `--start`/`--length` lock a byte range.

use std::io;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

use super::descriptor::{self, DescriptorLock};
use crate::error::Error;
use crate::lock::{ByteRange, Claim, Kind, LockFile, Request, Target};
use crate::mode::LockMode;
use crate::mounts::KernelLock;
use crate::open::Access;
use crate::status::LockStatus;

pub struct Ofd;

impl Kind for Ofd {
    fn name(&self) -> &'static str {
        "ofd"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        (request.fcntl || request.range.is_some()).then_some(Claim::ByOption)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        if request.slots.is_some() {
            // Slots are OFD byte locks, whichever of the two kinds was asked for.
            return descriptor::slots::target(Kind::name(self), &Ofd, request);
        }
        descriptor::target(&Ofd, request)
    }

    fn proc_class(&self) -> Option<&'static str> {
        Some(DescriptorLock::proc_class(self))
    }

    fn inspect_file(&self, status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        descriptor::inspect(self, status, file);
        // A semaphore's slots are OFD locks: this kind's status tells them.
        descriptor::slots::inspect(status, file);
        Ok(())
    }
}

fn lock_type(mode: LockMode) -> libc::c_int {
    match mode {
        LockMode::Exclusive => libc::F_WRLCK,
        LockMode::Shared => libc::F_RDLCK,
    }
}

impl DescriptorLock for Ofd {
    fn name(&self) -> &'static str {
        Kind::name(self)
    }

    fn proc_class(&self) -> &'static str {
        "OFDLCK"
    }

    fn family(&self) -> KernelLock {
        KernelLock::Record
    }

    /// An OFD write lock needs a writable descriptor; a read lock does not.
    fn access(&self, mode: LockMode) -> Access {
        match mode {
            LockMode::Exclusive => Access::ReadWrite,
            LockMode::Shared => Access::Read,
        }
    }

    fn try_lock(&self, fd: BorrowedFd<'_>, mode: LockMode, range: ByteRange) -> io::Result<bool> {
        match fcntl(fd, FcntlArg::F_OFD_SETLK(&range.request(lock_type(mode)))) {
            Ok(_) => Ok(true),
            Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn lock_blocking(
        &self,
        fd: BorrowedFd<'_>,
        mode: LockMode,
        range: ByteRange,
    ) -> io::Result<()> {
        fcntl(fd, FcntlArg::F_OFD_SETLKW(&range.request(lock_type(mode))))
            .map(drop)
            .map_err(io::Error::from)
    }

    fn unlock(&self, fd: BorrowedFd<'_>, range: ByteRange) -> io::Result<()> {
        fcntl(fd, FcntlArg::F_OFD_SETLK(&range.request(libc::F_UNLCK)))
            .map(drop)
            .map_err(io::Error::from)
    }
}
