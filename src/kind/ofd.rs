//! The ofd kind: a whole-file open-file-description lock (`F_OFD_SETLK[W]`, Linux ≥ 3.15),
//! the lock util-linux `flock --fcntl` takes. Unlike classic POSIX locks it belongs to the
//! open file description, so closing some other descriptor of the file does not drop it and
//! a child that inherits the descriptor holds it. It conflicts with POSIX and other OFD
//! locks, not with flock(2).

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

use crate::lock::LockMode;

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

pub(crate) fn try_lock(file: &File, mode: LockMode) -> io::Result<bool> {
    match fcntl(file, FcntlArg::F_OFD_SETLK(&whole_file(mode))) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn lock_blocking(file: &File, mode: LockMode) -> io::Result<()> {
    fcntl(file, FcntlArg::F_OFD_SETLKW(&whole_file(mode)))
        .map(drop)
        .map_err(io::Error::from)
}
