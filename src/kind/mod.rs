//! The lock kinds flockrun speaks, one file each. A kind knows how to open its lock file and
//! how to take its lock once or blocking; waiting, re-checking and reporting are shared.

pub mod kernel;
pub mod ofd;
pub(crate) mod soft;
pub(crate) mod sqlite;

use std::fmt;
use std::fs::File;
use std::io;

use crate::lock::LockMode;
use crate::open::Access;

/// Which on-disk protocol a lock uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `flock(2)` on the lock file: what util-linux flock(1) and py-filelock's `FileLock` use.
    Kernel,
    /// A whole-file open-file-description lock (`F_OFD_SETLK`), as `flock --fcntl`.
    Ofd,
    /// An open transaction on an empty SQLite database: py-filelock's `ReadWriteLock`.
    /// Shared = reader, exclusive = writer.
    Sqlite,
    /// A marker file created with `O_EXCL`: py-filelock's `SoftFileLock`. Exclusive only.
    Soft,
}

impl LockKind {
    /// The name used in `FLOCKRUN_KIND` and in messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Kernel => "kernel",
            LockKind::Ofd => "ofd",
            LockKind::Sqlite => "sqlite",
            LockKind::Soft => "soft",
        }
    }

    /// The name of `mode` for this kind: `read`/`write` for sqlite, else
    /// `shared`/`exclusive`. Used in `FLOCKRUN_MODE` and in messages.
    #[must_use]
    pub fn mode_name(self, mode: LockMode) -> &'static str {
        match (self, mode) {
            (LockKind::Sqlite, LockMode::Shared) => "read",
            (LockKind::Sqlite, LockMode::Exclusive) => "write",
            (_, mode) => mode.name(),
        }
    }

    /// Whether a child process can hold the lock by inheriting a descriptor. SQLite's POSIX
    /// locks belong to the process that took them.
    #[must_use]
    pub fn inheritable(self) -> bool {
        matches!(self, LockKind::Kernel | LockKind::Ofd)
    }

    /// The lock class as `/proc/locks` and fdinfo print it.
    #[must_use]
    pub fn proc_class(self) -> &'static str {
        match self {
            LockKind::Kernel => "FLOCK",
            LockKind::Ofd => "OFDLCK",
            LockKind::Sqlite => "POSIX",
            LockKind::Soft => "",
        }
    }

    pub(crate) fn access(self, mode: LockMode) -> Access {
        match (self, mode) {
            (LockKind::Ofd, LockMode::Exclusive) | (LockKind::Sqlite | LockKind::Soft, _) => {
                Access::ReadWrite
            }
            _ => Access::Read,
        }
    }

    /// One attempt; `Ok(false)` when someone else holds a conflicting lock.
    pub(crate) fn try_lock(self, file: &File, mode: LockMode) -> io::Result<bool> {
        match self {
            LockKind::Kernel => kernel::try_lock(file, mode),
            LockKind::Ofd => ofd::try_lock(file, mode),
            LockKind::Sqlite | LockKind::Soft => Err(not_a_descriptor_kind()),
        }
    }

    /// Blocks until the lock is granted; returns `Interrupted` when a signal handler ran.
    pub(crate) fn lock_blocking(self, file: &File, mode: LockMode) -> io::Result<()> {
        match self {
            LockKind::Kernel => kernel::lock_blocking(file, mode),
            LockKind::Ofd => ofd::lock_blocking(file, mode),
            LockKind::Sqlite | LockKind::Soft => Err(not_a_descriptor_kind()),
        }
    }
}

/// The sqlite kind is taken through SQLite (see `sqlite::acquire`), never by these calls.
fn not_a_descriptor_kind() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "sqlite locks are taken through SQLite",
    )
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
