//! The kernel kind: `flock(2)` through fs4, what util-linux flock(1) and py-filelock's
//! `FileLock` take. The lock belongs to the open file description, so it survives `fork` and
//! `execve` (a child given the descriptor holds it too) and is released when the last
//! descriptor to it closes. The default kind of `exec` and `try`, and what `status` takes an
//! unlocked file without telling content for.

use std::fs::File;
use std::io;

use fs4::{FileExt, TryLockError};

use super::descriptor::{self, DescriptorLock};
use crate::error::Error;
use crate::lock::{Claim, Kind, LockFile, Request, Target};
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

// Called as `FileExt::…(file)`: since Rust 1.89 `File` has inherent methods of the same
// names, which would otherwise win.
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

    fn try_lock(&self, file: &File, mode: LockMode) -> io::Result<bool> {
        let attempt = match mode {
            LockMode::Exclusive => FileExt::try_lock(file),
            LockMode::Shared => FileExt::try_lock_shared(file),
        };
        match attempt {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// fs4 does not retry `EINTR`, which is exactly what the timeout needs.
    fn lock_blocking(&self, file: &File, mode: LockMode) -> io::Result<()> {
        match mode {
            LockMode::Exclusive => FileExt::lock(file),
            LockMode::Shared => FileExt::lock_shared(file),
        }
    }
}
