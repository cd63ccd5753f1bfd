//! The file mechanics the marker-file kinds share (soft, soft-lease): creating a marker
//! complete and exclusively, pinning and re-checking the one that is there, the names and
//! the exchange of a takeover, noticing how long a file has stayed unchanged, and waking a
//! waiter when the lock's directory changes.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::identity::{self, StartToken};
use crate::lock::ByteRange;
use crate::mounts::{Filesystem, KernelLock};
use crate::wait;

/// A file's state as far as "did it change?" goes: inode, modification and change time.
/// A holder renewing its marker changes the times; a new marker changes the inode.
pub(crate) type FileState = (u64, i64, i64);

/// The state of `meta`.
pub(crate) fn state_of(meta: &fs::Metadata) -> FileState {
    (
        meta.ino(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
    )
}

/// Since when a file has been seen in one state, on this process's monotonic clock: the
/// only clock a takeover may trust, since the holder's and the file server's clocks can be
/// anywhere. A fresh observer has seen nothing, so it always waits the full span itself.
#[derive(Debug, Default)]
pub(crate) struct Unchanged {
    seen: Option<(FileState, Instant)>,
}

impl Unchanged {
    /// Records `state` as seen now and says for how long it has been seen unchanged.
    pub(crate) fn observe(&mut self, state: FileState) -> Duration {
        match self.seen {
            Some((seen, since)) if seen == state => since.elapsed(),
            _ => {
                self.seen = Some((state, Instant::now()));
                Duration::ZERO
            }
        }
    }
}

/// The record this process writes: `pid\nhost\n[token\n]`.
pub(crate) fn owner_record() -> String {
    let pid = nix::unistd::getpid().as_raw();
    let mut record = format!("{pid}\n{}\n", identity::host_name());
    if let Some(token) = StartToken::of(pid) {
        let _ = writeln!(record, "{token}");
    }
    record
}

/// 16 random bytes as 32 lowercase hex digits, as py-filelock writes its tokens.
pub(crate) fn random_hex() -> String {
    let mut random = [0u8; 16];
    // SAFETY: the buffer is valid for its length; a short read leaves zeros, still unique
    // enough beside the pid in every name that uses this.
    unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    let mut hex = String::with_capacity(32);
    for b in random {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// An `O_PATH` descriptor on the marker (not following a symlink) and the marker's
/// attributes through it, or `None` if it is gone. While the descriptor is open the inode's
/// number cannot be reused, so "the path still names the judged marker" cannot be fooled by
/// a holder that releases and a newcomer whose marker gets the same number. (On FUSE the
/// attributes of a file removed meanwhile fail with ENOENT: gone too.)
pub(crate) fn pin_inode(path: &Path) -> Option<(File, fs::Metadata)> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is fresh and owned by nobody else. fstat works on an O_PATH descriptor.
    let pin = unsafe { File::from_raw_fd(fd) };
    let meta = pin.metadata().ok()?;
    Some((pin, meta))
}

/// Whether `path` names the file `judged` describes, unchanged: same device, inode, size
/// and modification time to the nanosecond.
pub(crate) fn same_file(path: &Path, judged: &fs::Metadata) -> bool {
    fs::symlink_metadata(path).is_ok_and(|now| {
        now.dev() == judged.dev()
            && now.ino() == judged.ino()
            && now.len() == judged.len()
            && now.mtime() == judged.mtime()
            && now.mtime_nsec() == judged.mtime_nsec()
    })
}

/// Creates `path` exclusively with our record. The record is written to an unnamed file
/// first and linked in complete (`O_TMPFILE` + `linkat`), so a flockrun killed halfway leaves
/// no marker at all rather than an empty one, which every contender would take for a
/// lock held forever. Where the filesystem has no `O_TMPFILE`, the record is written under a
/// private name and linked to the path. Group and other never get write access: a record others could
/// rewrite is a record contenders would act on.
pub(crate) fn create_marker(
    path: &Path,
    record: &str,
    create_mode: Option<u32>,
) -> io::Result<File> {
    // Under contention the marker is nearly always there: say so without making (and
    // throwing away) an unnamed file, whose close also wakes every inotify waiter.
    // linkat below remains the real, atomic test.
    if fs::symlink_metadata(path).is_ok() {
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    match publish_complete(path, record, create_mode) {
        Ok(file) => return Ok(file),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(e),
        // No O_TMPFILE or no /proc here; the plain way below reports real errors properly.
        Err(_) => {}
    }
    // No O_TMPFILE here (NFS, FUSE): the record is written complete under a private name
    // beside LOCK and linked to LOCK. link(2) never replaces a file, so it is the O_EXCL
    // test, and LOCK never exists without its record.
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(
        ".{name}.{}.{}.new",
        std::process::id(),
        random_hex()
    ));
    let file = create_and_write(&temp, record, create_mode)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(file),
        // A link whose reply was lost and retried answers EEXIST although it was made: the
        // path then names our own file.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let ours = file.metadata().ok().map(|m| (m.dev(), m.ino()));
            let named = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
            if ours.is_some() && ours == named {
                Ok(file)
            } else {
                Err(e)
            }
        }
        // No hard links either: create LOCK itself exclusively, then write it.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS)
            ) =>
        {
            create_and_write(path, record, create_mode)
        }
        Err(e) => Err(e),
    }
}

/// Creates `path` with `O_EXCL` and writes `record` into it; removes it again if writing
/// fails.
fn create_and_write(path: &Path, record: &str, create_mode: Option<u32>) -> io::Result<File> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path; the descriptor is owned by the File below.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags, 0o644 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let written = (|| {
        if let Some(mode) = create_mode {
            file.set_permissions(fs::Permissions::from_mode(mode & !0o022))?;
        }
        // write_all loops until the whole record is written.
        file.write_all(record.as_bytes())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

/// The `O_TMPFILE` way of `create_marker`.
fn publish_complete(path: &Path, record: &str, create_mode: Option<u32>) -> io::Result<File> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c_dir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated path; the descriptor is owned by the File below.
    let fd = unsafe {
        libc::open(
            c_dir.as_ptr(),
            libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    if let Some(mode) = create_mode {
        file.set_permissions(fs::Permissions::from_mode(mode & !0o022))?;
    }
    file.write_all(record.as_bytes())?;
    let by_fd = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number");
    // SAFETY: both paths are NUL-terminated. linkat fails with EEXIST if LOCK exists, which
    // is the O_EXCL test; an unlinked O_TMPFILE file simply vanishes when closed.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            by_fd.as_ptr(),
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// `<name>.break.<pid>.<32 hex>` beside the lock, py-filelock's name for a takeover in
/// progress (its own recovery looks for exactly this shape).
pub(crate) fn aside_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        "{name}.break.{}.{}",
        std::process::id(),
        random_hex()
    ))
}

pub(crate) fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let a = CString::new(a.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let b = CString::new(b.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: both paths are NUL-terminated; renameat2 only reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An inotify watch on the lock's directory, so a waiter wakes when the marker goes away.
/// Absent where inotify does not work; the naps alone then pace the retries.
#[derive(Debug)]
pub(crate) struct DirectoryWatch {
    fd: Option<OwnedFd>,
    /// The directory is on NFS with record locks that reach every client: waiters sleep on
    /// the holder's release signal (`signal_release`), since inotify hears nothing another
    /// client does.
    release_signals: bool,
    /// The marker slept on last, kept open while it stays.
    marker: std::cell::RefCell<Option<SleptOn>>,
}

/// A marker a waiter sleeps on: its descriptor, its identity, and whether our read lock on
/// it was granted (its holder's signal is down).
#[derive(Debug)]
struct SleptOn {
    file: File,
    id: (u64, u64),
    granted: bool,
}

/// What ended a `wait_for_release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// The holder may have let go (or nothing tells): try again.
    Maybe,
    /// The holder's release signal is still up: it holds, and is alive or its lock has not
    /// been dropped by the server yet.
    Quiet,
}

/// Whether record locks on the filesystem of `fd` reach every host through a server (NFS
/// without `nolock` or `local_lock=posix|all`): there, a marker's holder can tell waiters on
/// other hosts that it let go.
pub(crate) fn signals_reach_other_hosts(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    Filesystem::of(fd).is_some_and(|fs| {
        fs.mount.fs_type.starts_with("nfs") && fs.remote_holders(KernelLock::Record).is_some()
    })
}

/// The attributes that tell whether the marker at `path` changed, fresh from the server
/// (`AT_STATX_FORCE_SYNC`: NFS asks for them even when its cache would answer), without
/// opening it; `None` when it is gone.
pub(crate) fn fresh_state(path: &Path) -> Option<FileState> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain data; all-zero is a valid starting value.
    let mut stat: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    let done = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_FORCE_SYNC,
            libc::STATX_INO | libc::STATX_MTIME | libc::STATX_CTIME,
            &raw mut stat,
        )
    };
    (done == 0).then(|| {
        (
            stat.stx_ino,
            stat.stx_mtime.tv_sec * 1_000_000_000 + i64::from(stat.stx_mtime.tv_nsec),
            stat.stx_ctime.tv_sec * 1_000_000_000 + i64::from(stat.stx_ctime.tv_nsec),
        )
    })
}

/// The holder's side of waking waiters on NFS, where inotify hears nothing another client
/// does: an OFD write lock on our own marker for as long as we hold it. A waiting flockrun
/// sleeps in a read lock on the marker, which the server grants the moment we close it,
/// after the marker is gone; a waiter on another client wakes at once, without polling. A
/// lock that cannot be taken (a waiter locked the marker first) only costs this hold the
/// signal. py-filelock neither takes nor awaits it. Elsewhere nothing happens (one
/// `fstatfs`).
///
/// `known` is what the caller already knows of the filesystem (a waiter's
/// `DirectoryWatch::release_signals`); `None` costs an `fstatfs`, which on NFS is a request
/// to the server.
pub(crate) fn signal_release(marker: &File, known: Option<bool>) {
    use std::os::fd::AsFd;
    if !known.unwrap_or_else(|| signals_reach_other_hosts(marker.as_fd())) {
        return;
    }
    let request = ByteRange::default().request(libc::F_WRLCK);
    // SAFETY: fcntl on a descriptor we own with a valid flock structure.
    unsafe { libc::fcntl(marker.as_raw_fd(), libc::F_OFD_SETLK, &raw const request) };
}

/// How long a waiter sleeps on NFS when the holder sends no release signal (py-filelock's
/// markers, a marker whose holder died): a few file operations each time, a fifth or less
/// of the load py-filelock's 50 ms polling puts on the server.
pub(crate) const UNSIGNALLED_NAP: Duration = Duration::from_millis(500);

impl DirectoryWatch {
    /// Watches the directory of the marker at `path` for a marker going away or arriving.
    pub(crate) fn new(path: &Path) -> Self {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let events =
            libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
        Self::watching(&[dir], events)
    }

    /// Watches each of `dirs` that exists for `events` (inotify's `IN_*` bits).
    pub(crate) fn watching(dirs: &[&Path], events: u32) -> Self {
        // SAFETY: plain system calls; the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return DirectoryWatch {
                fd: None,
                release_signals: false,
                marker: std::cell::RefCell::new(None),
            };
        }
        // SAFETY: fd is fresh.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut watched = false;
        for dir in dirs {
            let Ok(c_dir) = CString::new(dir.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: valid descriptor and path.
            let watch = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_dir.as_ptr(), events) };
            watched |= watch >= 0;
        }
        let release_signals = dirs.first().is_some_and(|dir| {
            fs::File::options()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
                .open(dir)
                .is_ok_and(|d| signals_reach_other_hosts(std::os::fd::AsFd::as_fd(&d)))
        });
        DirectoryWatch {
            fd: watched.then_some(fd),
            release_signals,
            marker: std::cell::RefCell::new(None),
        }
    }

    /// Sleeps until the holder of the marker at `marker` may have let go, and says what
    /// ended the sleep. On NFS with release signals: in a read lock on the marker for at
    /// most `budget` (or `cap`, if sooner), ended by the holder's release, or for
    /// `UNSIGNALLED_NAP` where the marker sends no signal. The descriptor stays open from
    /// one sleep to the next while the path names the same marker, so a quiet wait costs
    /// the server one lock request per sleep. Elsewhere as `wait(nap)`.
    pub(crate) fn wait_for_release(
        &self,
        marker: &Path,
        nap: Duration,
        cap: Option<Duration>,
        budget: Duration,
    ) -> Woke {
        if !self.release_signals {
            self.wait(nap);
            return Woke::Maybe;
        }
        let limit = |d: Duration| cap.map_or(d, |c| c.min(d)).max(Duration::from_millis(1));
        let request = ByteRange::default().request(libc::F_RDLCK);
        let mut held = self.marker.borrow_mut();
        // The cached descriptor serves while the path names its file (a cached lookup: no
        // trip to the server).
        let named = fs::symlink_metadata(marker)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if held.as_ref().is_none_or(|slept| Some(slept.id) != named) {
            *held = None;
            let Ok(file) = fs::File::options()
                .read(true)
                .custom_flags(libc::O_DIRECT | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
                .open(marker)
            else {
                return Woke::Maybe; // gone already: look at once
            };
            let Ok(meta) = file.metadata() else {
                return Woke::Maybe;
            };
            // SAFETY: fcntl on an open descriptor with a valid flock structure.
            if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &raw const request) } == 0
            {
                // No release signal on this marker: granted at once. Nap, then look.
                drop(file);
                wait::nap(limit(UNSIGNALLED_NAP));
                return Woke::Maybe;
            }
            *held = Some(SleptOn {
                file,
                id: (meta.dev(), meta.ino()),
                granted: false,
            });
        }
        let Some(slept) = held.as_mut() else {
            return Woke::Maybe;
        };
        if slept.granted {
            // The same marker, whose holder let go without removing it (it died): nothing
            // will signal; look again after a nap.
            wait::nap(limit(UNSIGNALLED_NAP));
            return Woke::Maybe;
        }
        let fd = slept.file.as_raw_fd();
        let outcome = wait::block_for(limit(budget), &mut || {
            // SAFETY: as above; F_OFD_SETLKW blocks until granted or interrupted.
            if unsafe { libc::fcntl(fd, libc::F_OFD_SETLKW, &raw const request) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
        match outcome {
            Ok(false) => Woke::Quiet,
            // Released: the read lock we were granted is on a marker that is gone (or dead),
            // so it keeps nobody out; it stays with the descriptor until the next sleep or
            // the end of the wait, to spare the handoff an unlock and a close.
            Ok(true) => {
                slept.granted = true;
                Woke::Maybe
            }
            Err(_) => {
                *held = None;
                Woke::Maybe
            }
        }
    }

    /// Whether the watched directory is on NFS with record locks that reach every client,
    /// where waiters sleep on release signals instead of hearing changes.
    pub(crate) fn release_signals(&self) -> bool {
        self.release_signals
    }

    /// Forgets the changes seen so far: those our own attempt made would otherwise wake us
    /// at once.
    pub(crate) fn discard(&self) {
        if let Some(fd) = &self.fd {
            drain(fd);
        }
    }

    /// Sleeps up to `nap`, less if a signal arrives or something changes in the watched
    /// directories under a name `ignored` does not pass over (changes this process makes
    /// itself, or that cannot free the lock).
    pub(crate) fn wait_unless_ignored(&self, nap: Duration, ignored: &dyn Fn(&[u8]) -> bool) {
        let Some(fd) = &self.fd else {
            wait::nap(nap);
            return;
        };
        let until = Instant::now() + nap;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut poll = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd; EINTR (a stop signal) simply ends the nap.
            if unsafe { libc::poll(&raw mut poll, 1, ms) } <= 0 {
                return;
            }
            let mut buf = [0u8; 4096];
            let mut woken = false;
            loop {
                // SAFETY: reading into a buffer of the given length from a non-blocking fd.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                let Ok(n) = usize::try_from(n) else { break };
                if n == 0 {
                    break;
                }
                woken |= event_names(&buf[..n]).any(|name| !ignored(name));
            }
            if woken {
                return;
            }
        }
    }

    /// Sleeps up to `nap`, less if the directory changes or a signal arrives.
    pub(crate) fn wait(&self, nap: Duration) {
        let Some(fd) = &self.fd else {
            wait::nap(nap);
            return;
        };
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(nap.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd; EINTR (a stop signal) simply ends the nap.
        let ready = unsafe { libc::poll(&raw mut poll, 1, ms) };
        if ready > 0 {
            drain(fd);
        }
    }
}

/// The names in a buffer of inotify events (empty for an event on a watched directory
/// itself).
fn event_names(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    // struct inotify_event: int wd; uint32_t mask, cookie, len; char name[len].
    const HEADER: usize = 16;
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = buf.get(at..at + HEADER)?;
        let len = u32::from_ne_bytes(header[12..16].try_into().ok()?) as usize;
        let name = buf.get(at + HEADER..at + HEADER + len)?;
        at += HEADER + len;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Some(&name[..end])
    })
}

/// Reads every pending event; their content does not matter, only that something changed.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    // SAFETY: reading into a buffer of the given length from a non-blocking fd.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}
