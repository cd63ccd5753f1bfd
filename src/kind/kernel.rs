//! The kernel kind: `flock(2)` through fs4. The lock belongs to the open file description,
//! so it survives `fork` and `execve` (a child given the descriptor holds it too) and is
//! released when the last descriptor to it closes.

use std::fs::File;
use std::io;

use fs4::{FileExt, TryLockError};

use crate::lock::LockMode;

// Called as `FileExt::…(file)`: since Rust 1.89 `File` has inherent methods of the same
// names, which would otherwise win.

pub(crate) fn try_lock(file: &File, mode: LockMode) -> io::Result<bool> {
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
pub(crate) fn lock_blocking(file: &File, mode: LockMode) -> io::Result<()> {
    match mode {
        LockMode::Exclusive => FileExt::lock(file),
        LockMode::Shared => FileExt::lock_shared(file),
    }
}
