//! Opening (and if need be creating) a lock file without being tricked by what sits at the
//! path. flockrun never truncates or writes a lock file; it only needs a descriptor to lock.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::Error;
use crate::inspect::sighting::FileId;

/// What the descriptor must allow. flock(2) works on a read-only descriptor (so a user who
/// can only read the file, or a running script, can still be locked, as with flock(1)); an
/// OFD write lock needs a writable one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// Which file types the lock can live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Regular files, directories and block devices (kernel and ofd kinds).
    AnyLockable,
    /// Regular files only (an SQLite database, a marker file).
    Regular,
}

/// How many times a file that vanishes between the create probe and the plain open is
/// retried before giving up. Each round is two syscalls; this only loops under an attacker
/// or a pathological peer that deletes the file in a tight loop.
const VANISHED_RETRIES: usize = 1000;

/// Opens `path` for locking, creating it with `create_mode` (default `0o666 & ~umask`) when
/// it is missing. Regular files, directories and block devices are accepted. Returns the
/// open file and its attributes.
///
/// Flags and why:
/// * `O_NOFOLLOW`: a symlink at the lock path could point the lock (or the file creation)
///   anywhere; it is refused.
/// * `O_NONBLOCK`: opening a FIFO without a writer would otherwise hang. It has no effect on
///   the regular files and directories that pass the checks, so it stays set (COMMAND,
///   which inherits the descriptor, would not notice it either); on a block device it is
///   cleared.
/// * `O_CLOEXEC`: the supervisor decides explicitly which child, if any, inherits it.
/// * `O_NOCTTY`: a terminal at the path must not become our controlling terminal.
/// * A file that is there is opened as it is; a missing one with `O_CREAT|O_EXCL`, which
///   tells whether we created it (only then is `--mode` applied) and so never meets
///   `EACCES` from `O_CREAT` on another user's file in a sticky directory
///   (`fs.protected_regular`). If the file comes or goes between the look and the open,
///   the other way is tried.
/// * never `O_TRUNC`: the file may be someone's data, or a peer's lock content.
///
/// # Errors
/// `Error::Open`, `Error::CannotCreate`, `Error::NotALock` or `Error::System`, each naming
/// the path and what to do.
pub fn open_lock_file(
    path: &Path,
    access: Access,
    create_mode: Option<u32>,
    shape: Shape,
) -> Result<(File, fs::Metadata), Error> {
    let seen = fs::symlink_metadata(path).ok();
    refuse_special(path, seen.as_ref(), shape)?;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Open {
        path: path.to_owned(),
        hint: "the path contains a NUL byte".to_owned(),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    let base = libc::O_NOFOLLOW
        | libc::O_NONBLOCK
        | libc::O_CLOEXEC
        | libc::O_NOCTTY
        | match access {
            Access::Read => libc::O_RDONLY,
            Access::ReadWrite => libc::O_RDWR,
        };
    let mut result = None;
    let mut exists = seen.is_some();
    for _ in 0..VANISHED_RETRIES {
        if exists {
            match raw_open(&c_path, base, None) {
                Ok(file) => {
                    result = Some(file);
                    break;
                }
                // Deleted since: create it.
                Err(e) if vanished(&e) => exists = false,
                // A file lease is being broken (possible only with O_NONBLOCK): try again.
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
                Err(e) => return Err(classify_open_error(path, access, e)),
            }
        } else {
            match raw_open(&c_path, base | libc::O_CREAT | libc::O_EXCL, create_mode) {
                Ok(file) => {
                    if let Some(mode) = create_mode {
                        // Only for a file we just created: the exact bits asked for, umask
                        // or not, as py-filelock does for an explicit mode.
                        file.set_permissions(fs::Permissions::from_mode(mode))
                            .map_err(|e| Error::system("setting the lock file mode", e))?;
                    }
                    result = Some(file);
                    break;
                }
                // Created by someone else since: open theirs.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => exists = true,
                Err(e) => return Err(classify_create_error(path, e)),
            }
        }
    }
    let file = result.ok_or_else(|| Error::Open {
        path: path.to_owned(),
        hint: "it keeps being deleted and re-created by another process".to_owned(),
        source: io::Error::from_raw_os_error(libc::ENOENT),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::system("fstat on the lock file", e))?;
    // It may have been swapped for something else since the lstat above.
    refuse_special(path, Some(&meta), shape)?;
    if meta.file_type().is_block_device() {
        clear_nonblock(&file)?;
    }
    Ok((file, meta))
}

fn raw_open(c_path: &CString, flags: libc::c_int, create_mode: Option<u32>) -> io::Result<File> {
    // The mode given to open(2) is filtered by the umask; an explicit --mode is applied
    // afterwards with fchmod. Until then, keep the file private when a mode was given.
    let mode: libc::c_uint = if create_mode.is_some() { 0o600 } else { 0o666 };
    // SAFETY: c_path is NUL-terminated; the returned descriptor is owned by the File.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn clear_nonblock(file: &File) -> Result<(), Error> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(file, FcntlArg::F_GETFL).map_err(|e| Error::system("fcntl(F_GETFL)", e))?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(file, FcntlArg::F_SETFL(flags)).map_err(|e| Error::system("fcntl(F_SETFL)", e))?;
    Ok(())
}

/// Refuses, without opening anything, a path that cannot hold a lock of `shape`: a symbolic
/// link, a FIFO, socket or character device, and for `Shape::Regular` a directory or block
/// device. `meta` is the path's `lstat`, `None` when it is missing (which passes).
pub(crate) fn refuse_unlockable(
    path: &Path,
    meta: Option<&fs::Metadata>,
    shape: Shape,
) -> Result<(), Error> {
    if meta.is_some_and(|m| m.file_type().is_symlink()) {
        return Err(classify_open_error(
            path,
            Access::Read,
            io::Error::from_raw_os_error(libc::ELOOP),
        ));
    }
    refuse_special(path, meta, shape)
}

/// FIFOs, sockets and character devices are refused before they are opened: opening some
/// devices has side effects, and a lock on `/dev/null` is shared with the whole machine.
fn refuse_special(path: &Path, meta: Option<&fs::Metadata>, shape: Shape) -> Result<(), Error> {
    let Some(meta) = meta else { return Ok(()) };
    let kind = meta.file_type();
    if shape == Shape::Regular && (kind.is_dir() || kind.is_block_device()) {
        let what = if kind.is_dir() {
            "a directory"
        } else {
            "a block device"
        };
        return Err(Error::NotALock {
            path: path.to_owned(),
            reason: format!(
                "is {what}; this lock kind keeps its lock in a regular file: choose a file path"
            ),
        });
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else {
        return Ok(());
    };
    Err(Error::NotALock {
        path: path.to_owned(),
        reason: format!(
            "is {what}, not a file flockrun can lock; lock a regular file or a directory instead"
        ),
    })
}

fn missing_parent(path: &Path) -> Option<&Path> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    (!parent.is_dir()).then_some(parent)
}

pub(crate) fn classify_create_error(path: &Path, e: io::Error) -> Error {
    let errno = e.raw_os_error().unwrap_or(0);
    match errno {
        libc::EROFS => Error::CannotCreate {
            path: path.to_owned(),
            hint: "the filesystem is read-only; create the lock file while it is writable, or \
                   choose a lock path on a writable filesystem such as /run/lock"
                .to_owned(),
            source: e,
        },
        libc::ENOSPC | libc::EDQUOT => Error::CannotCreate {
            path: path.to_owned(),
            hint: "free some space, or choose a lock path on another filesystem".to_owned(),
            source: e,
        },
        _ => classify_open_error(path, Access::Read, e),
    }
}

pub(crate) fn classify_open_error(path: &Path, access: Access, e: io::Error) -> Error {
    let errno = e.raw_os_error().unwrap_or(0);
    let hint = match errno {
        libc::ENOENT => match missing_parent(path) {
            Some(parent) => format!(
                "directory {} does not exist; create it first (mkdir -p)",
                parent.display()
            ),
            None => "no such file".to_owned(),
        },
        libc::ENOTDIR => "a component of the path is not a directory".to_owned(),
        libc::ELOOP => {
            "it is a symbolic link, which flockrun refuses to follow (a link could redirect \
             the lock elsewhere); lock the link's target path directly"
                .to_owned()
        }
        libc::EACCES | libc::EPERM => match (path.exists(), access) {
            (true, Access::ReadWrite) => "this lock needs write permission on the file (an \
                 exclusive --fcntl lock and read/write locks need a writable descriptor); ask \
                 its owner for write access, or for exec use -s or drop --fcntl"
                .to_owned(),
            (true, Access::Read) => {
                "you may not read it; ask its owner for read access or use another lock path"
                    .to_owned()
            }
            (false, _) => {
                "you may not create files in its directory; create the lock file with the \
                 right owner first, or use a lock path in a directory you can write"
                    .to_owned()
            }
        },
        libc::EISDIR => "it is a directory: an exclusive --fcntl lock needs a writable \
             descriptor, which a directory cannot give; use -s or the default kernel kind"
            .to_owned(),
        libc::ENXIO => "it is a socket or a device without a driver".to_owned(),
        libc::ENAMETOOLONG => "the path is too long; use a shorter one".to_owned(),
        libc::EMFILE | libc::ENFILE | libc::ENOMEM => {
            return Error::system("opening the lock file", e);
        }
        libc::EROFS => "the filesystem is read-only and this lock needs write access; use the \
             default kernel kind, which locks read-only files"
            .to_owned(),
        _ => String::new(),
    };
    Error::Open {
        path: path.to_owned(),
        hint,
        source: e,
    }
}

/// True when `file` is still the inode that `path` names: same device and inode, not
/// unlinked. After winning a lock this is checked so that a lock file deleted (or renamed
/// over) while we waited cannot give two holders: one on the old inode, one on the new.
#[must_use]
pub fn still_named_by(file: &File, path: &Path) -> bool {
    let (Ok(held), Ok(named)) = (file.metadata(), fs::symlink_metadata(path)) else {
        return false;
    };
    held.nlink() > 0 && held.dev() == named.dev() && held.ino() == named.ino()
}

/// `still_named_by` for a file this process keeps open and whose identity `id` it knows:
/// one lookup of `path`. While a descriptor keeps the inode alive its number cannot be
/// reused, so `path` naming that identity means the inode is still linked there.
#[must_use]
pub fn names(path: &Path, id: FileId) -> bool {
    fs::symlink_metadata(path).is_ok_and(|named| FileId::of(&named) == id)
}

/// Whether an error says the file is gone: ENOENT, or ESTALE, which is how an NFS client
/// reports a file another client removed after this one looked it up.
#[must_use]
pub fn vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESTALE))
}
