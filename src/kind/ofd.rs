//! The ofd kind: a whole-file open-file-description lock (`F_OFD_SETLK[W]`, Linux ≥ 3.15),
//! the lock util-linux `flock --fcntl` takes. Unlike classic POSIX locks it belongs to the
//! open file description, so closing some other descriptor of the file does not drop it and
//! a child that inherits the descriptor holds it. It conflicts with POSIX and other OFD
//! locks, not with flock(2).

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

use super::descriptor::{self, DescriptorLock};
use crate::error::Error;
use crate::lock::{Claim, Kind, LockFile, Request, Target};
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
        request.fcntl.then_some(Claim::ByOption)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        descriptor::target(&Ofd, request)
    }

    fn proc_class(&self) -> Option<&'static str> {
        Some(DescriptorLock::proc_class(self))
    }

    fn inspect_file(&self, status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        descriptor::inspect(self, status, file);
        Ok(())
    }
}

fn whole_file(mode: LockMode) -> libc::flock {
    let kind = match mode {
        LockMode::Exclusive => libc::F_WRLCK,
        LockMode::Shared => libc::F_RDLCK,
    };
    libc::flock {
        #[allow(clippy::cast_possible_truncation)] // F_WRLCK and F_RDLCK are 0 and 1
        l_type: kind as libc::c_short,
        #[allow(clippy::cast_possible_truncation)]
        l_whence: libc::SEEK_SET as libc::c_short,
        // start 0, length 0: the whole file, however long it grows.
        l_start: 0,
        l_len: 0,
        // Must be 0 for OFD requests.
        l_pid: 0,
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

    fn try_lock(&self, file: &File, mode: LockMode) -> io::Result<bool> {
        match fcntl(file, FcntlArg::F_OFD_SETLK(&whole_file(mode))) {
            Ok(_) => Ok(true),
            Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn lock_blocking(&self, file: &File, mode: LockMode) -> io::Result<()> {
        fcntl(file, FcntlArg::F_OFD_SETLKW(&whole_file(mode)))
            .map(drop)
            .map_err(io::Error::from)
    }
}
