//! Record files of the soft reader/writer lock (py-filelock's `SoftReadWriteLock`), for both
//! of its layouts. Every operation works relative to a directory descriptor opened without
//! following symbolic links, so a protocol directory swapped for a link after it was checked
//! cannot send a record elsewhere; reads open with `O_NONBLOCK`, so a FIFO planted at a
//! record's name cannot hang a reader; and "how long has this stayed the same" is measured
//! on this process's monotonic clock (`Ledger`), the only clock two hosts need not agree on.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::hash::Hash;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

/// The largest record either layout reads (py-filelock's `MAX_RECORD_SIZE`).
pub(crate) const MAX_RECORD: usize = 1 << 20;

/// What a record's name led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The bytes, empty when the name is not a regular file.
    pub data: Vec<u8>,
    pub id: (u64, u64),
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

impl Record {
    /// How long ago it was modified by this host's wall clock (zero if in the future).
    pub(crate) fn age(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let now = i128::try_from(now).unwrap_or(i128::MAX);
        let age = now.saturating_sub(self.mtime_ns).max(0);
        Duration::from_nanos(u64::try_from(age).unwrap_or(u64::MAX))
    }
}

fn mtime_ns(stat: &FileStat) -> i128 {
    i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec)
}

fn is_regular(stat: &FileStat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn is_directory(stat: &FileStat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Missing, for a record: ENOENT, and ESTALE (an NFS client's word for a file a peer
/// removed under its cached handle).
fn gone(errno: Errno) -> bool {
    matches!(errno, Errno::ENOENT | Errno::ESTALE)
}

/// Why a protocol directory cannot be used.
#[derive(Debug)]
pub(crate) enum DirError {
    /// It is a symbolic link or not a directory, or another account owns it under a sticky
    /// parent: someone else could move the records.
    Refused(String),
    Io(io::Error),
}

impl From<io::Error> for DirError {
    fn from(e: io::Error) -> Self {
        DirError::Io(e)
    }
}

impl From<Errno> for DirError {
    fn from(e: Errno) -> Self {
        DirError::Io(e.into())
    }
}

/// An open directory of records.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    /// For messages.
    pub path: PathBuf,
    /// `O_DIRECT` on NFS (no read delegations, no cached reads: `mounts::uncached`).
    direct: OFlag,
}

impl Dir {
    /// Opens `path` (no symbolic link at its last component); `None` when it does not exist.
    pub(crate) fn open(path: &Path) -> Result<Option<Dir>, DirError> {
        let mut dir = open_dir(nix::fcntl::AT_FDCWD, path, path, OFlag::empty())?;
        if let Some(dir) = &mut dir {
            dir.direct = OFlag::from_bits_truncate(crate::mounts::uncached(dir.fd.as_fd()));
        }
        Ok(dir)
    }

    /// Opens the subdirectory `name`; `None` when it does not exist.
    pub(crate) fn sub(&self, name: impl AsRef<OsStr>) -> Result<Option<Dir>, DirError> {
        let name = name.as_ref();
        open_dir(
            self.fd.as_fd(),
            Path::new(name),
            &self.path.join(name),
            self.direct,
        )
    }

    /// Creates the subdirectory `name` (0700) if missing and opens it, refusing a link, a
    /// non-directory, and one another account owns when this directory is sticky.
    pub(crate) fn make_sub(&self, name: impl AsRef<OsStr>) -> Result<Dir, DirError> {
        let name = name.as_ref();
        match mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = self
            .sub(name)?
            .ok_or_else(|| DirError::Io(io::Error::from_raw_os_error(libc::ENOENT)))?;
        refuse_foreign(&dir, &self.stat()?)?;
        Ok(dir)
    }

    pub(crate) fn stat(&self) -> io::Result<FileStat> {
        Ok(fstat(self.fd.as_fd())?)
    }

    /// The record at `name`, `None` when missing. Reads at most `limit` + 1 bytes.
    pub(crate) fn read(&self, name: impl AsRef<OsStr>, limit: usize) -> io::Result<Option<Record>> {
        let name = name.as_ref();
        let fd = match openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC
                | self.direct,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if gone(e) => return Ok(None),
            // A symbolic link at a record's name is no record anyone wrote: empty bytes.
            Err(Errno::ELOOP) => {
                return Ok(self.lstat(name)?.map(|stat| Record {
                    data: Vec::new(),
                    id: (stat.st_dev, stat.st_ino),
                    mtime_ns: mtime_ns(&stat),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        let stat = match fstat(fd.as_fd()) {
            Ok(stat) => stat,
            Err(e) if gone(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut data = Vec::new();
        if is_regular(&stat) {
            std::fs::File::from(fd)
                .take(limit as u64 + 1)
                .read_to_end(&mut data)?;
        }
        Ok(Some(Record {
            data,
            id: (stat.st_dev, stat.st_ino),
            mtime_ns: mtime_ns(&stat),
        }))
    }

    /// The attributes of `name` itself (a link is not followed); `None` when missing.
    pub(crate) fn lstat(&self, name: impl AsRef<OsStr>) -> io::Result<Option<FileStat>> {
        let name = name.as_ref();
        match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(e) if gone(e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates `name` exclusively (0600, not following a link) with all of `data` in it,
    /// flushed to stable storage if `durable`; removes it again if writing fails. Returns
    /// its device and inode, which `overwrite` checks. `EEXIST` when it exists.
    pub(crate) fn create(
        &self,
        name: impl AsRef<OsStr>,
        data: &[u8],
        durable: bool,
    ) -> io::Result<(u64, u64)> {
        let name = name.as_ref();
        let fd = openat(
            self.fd.as_fd(),
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | self.direct,
            Mode::from_bits_truncate(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        let written = (|| {
            file.write_all(data)?;
            if durable {
                file.sync_all()?;
            }
            let stat = fstat(file.as_fd())?;
            Ok((stat.st_dev, stat.st_ino))
        })();
        if written.is_err() {
            // The name was ours alone a moment ago: removing it takes nothing from anyone.
            let _ = self.unlink(name);
        }
        written
    }

    /// Rewrites `name` from offset 0 with `data` if it is still the file `id` names, a
    /// regular file with no second name. `Ok(false)` when it is not (gone, replaced, linked).
    pub(crate) fn overwrite(
        &self,
        name: impl AsRef<OsStr>,
        data: &[u8],
        id: (u64, u64),
    ) -> io::Result<bool> {
        let name = name.as_ref();
        let fd = match openat(
            self.fd.as_fd(),
            name,
            OFlag::O_WRONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC
                | self.direct,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if gone(e) => return Ok(false),
            // A link (ELOOP) or a FIFO without a reader (ENXIO) is not our record.
            Err(Errno::ELOOP | Errno::ENXIO) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let stat = fstat(fd.as_fd())?;
        if !is_regular(&stat) || (stat.st_dev, stat.st_ino) != id || stat.st_nlink != 1 {
            return Ok(false);
        }
        let mut file = std::fs::File::from(fd);
        file.write_all(data)?;
        Ok(true)
    }

    /// Removes `name`; one already gone is fine.
    pub(crate) fn unlink(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = name.as_ref();
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(()),
            Err(e) if gone(e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Hard-links `source` to `target` without replacing anything. What the filesystem says
    /// is not trusted (an NFS client can report a link that landed as failed): `Ok(true)`
    /// when `target` names `source`'s file afterwards, `Ok(false)` when another file is there.
    /// An error that says the filesystem has no hard links is returned as it is.
    pub(crate) fn link(
        &self,
        source: impl AsRef<OsStr>,
        target: impl AsRef<OsStr>,
    ) -> io::Result<bool> {
        let (source, target) = (source.as_ref(), target.as_ref());
        let result = linkat(
            self.fd.as_fd(),
            source,
            self.fd.as_fd(),
            target,
            AtFlags::empty(),
        );
        let landed = match (self.lstat(source)?, self.lstat(target)?) {
            (Some(s), Some(t)) => (s.st_dev, s.st_ino) == (t.st_dev, t.st_ino),
            _ => false,
        };
        match result {
            _ if landed => Ok(true),
            Ok(()) | Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames `source` to `target` in this directory, replacing `target`.
    pub(crate) fn rename(
        &self,
        source: impl AsRef<OsStr>,
        target: impl AsRef<OsStr>,
    ) -> io::Result<()> {
        let (source, target) = (source.as_ref(), target.as_ref());
        Ok(nix::fcntl::renameat(
            self.fd.as_fd(),
            source,
            self.fd.as_fd(),
            target,
        )?)
    }

    /// The names in the directory (without `.` and `..`).
    pub(crate) fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = openat(
            self.fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(names)
    }

    /// Touches `name`'s times (now), through a descriptor so a link is never followed.
    /// `Ok(false)` when it is gone.
    pub(crate) fn touch(&self, name: impl AsRef<OsStr>) -> io::Result<bool> {
        let name = name.as_ref();
        let fd = match openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC
                | self.direct,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if gone(e) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let now = nix::sys::time::TimeSpec::UTIME_NOW;
        nix::sys::stat::futimens(fd.as_fd(), &now, &now)?;
        Ok(true)
    }
}

fn open_dir<Fd: AsFd>(
    at: Fd,
    name: &Path,
    full: &Path,
    direct: OFlag,
) -> Result<Option<Dir>, DirError> {
    match openat(
        at,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(Dir {
            fd,
            path: full.to_owned(),
            direct,
        })),
        Err(e) if gone(e) => Ok(None),
        Err(Errno::ELOOP | Errno::ENOTDIR) => Err(DirError::Refused(format!(
            "{} is not a directory or is a symbolic link",
            full.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Refuses `dir` when its parent is sticky (such as /tmp) and `dir` belongs to an account
/// other than ours or the parent's: that account could move our records away.
pub(crate) fn refuse_foreign(dir: &Dir, parent: &FileStat) -> Result<(), DirError> {
    let stat = dir.stat()?;
    if !is_directory(&stat) {
        return Err(DirError::Refused(format!(
            "{} is not a directory",
            dir.path.display()
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if parent.st_mode & libc::S_ISVTX != 0 && stat.st_uid != me && stat.st_uid != parent.st_uid {
        return Err(DirError::Refused(format!(
            "{} belongs to uid {}, not to this user or the owner of its sticky parent \
             directory",
            dir.path.display(),
            stat.st_uid
        )));
    }
    Ok(())
}

/// 16 random bytes as 32 lowercase hex digits: a claim token, a nonce, an epoch.
pub(crate) fn new_token() -> String {
    crate::kind::marker::file::random_hex()
}

/// Whether `text` is a token: exactly 32 lowercase hex digits.
pub(crate) fn is_token(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How long each observed value has stayed the same, on this process's monotonic clock. A
/// value never seen change has no history: a fresh observer waits the full span itself.
#[derive(Debug)]
pub(crate) struct Ledger<K> {
    seen: HashMap<K, Seen>,
}

#[derive(Debug)]
struct Seen {
    value: Option<Vec<u8>>,
    since: Instant,
    /// Whether this observer saw the value change (rather than just meeting it).
    changed: bool,
}

impl<K: Hash + Eq> Default for Ledger<K> {
    fn default() -> Self {
        Ledger {
            seen: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Ledger<K> {
    /// Records `value` for `key` and says how long it has stayed the same, counted up to
    /// `asked` (the clock reading taken before the value was fetched, so a pause between the
    /// fetch and this call adds nothing).
    pub(crate) fn observe(&mut self, key: &K, value: Option<&[u8]>, asked: Instant) -> Duration {
        match self.seen.get_mut(key) {
            Some(seen) if seen.value.as_deref() == value => {
                asked.saturating_duration_since(seen.since)
            }
            Some(seen) => {
                seen.value = value.map(<[u8]>::to_vec);
                seen.since = Instant::now();
                seen.changed = true;
                Duration::ZERO
            }
            None => {
                self.seen.insert(
                    key.clone(),
                    Seen {
                        value: value.map(<[u8]>::to_vec),
                        since: Instant::now(),
                        changed: false,
                    },
                );
                Duration::ZERO
            }
        }
    }

    /// Whether this observer saw `key`'s value change less than `span` ago.
    pub(crate) fn changed_within(&self, key: &K, span: Duration) -> bool {
        self.seen
            .get(key)
            .is_some_and(|s| s.changed && s.since.elapsed() < span)
    }

    pub(crate) fn forget(&mut self, key: &K) {
        self.seen.remove(key);
    }

    /// Forgets every key not in `keys`: peers that left would otherwise stay forever.
    pub(crate) fn retain(&mut self, keys: &std::collections::HashSet<K>) {
        self.seen.retain(|k, _| keys.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_lowercase_hex_digits() {
        assert!(is_token(&new_token()));
        assert!(is_token("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde",
        ] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_ledger_counts_only_unchanged_time_and_remembers_changes() {
        let mut ledger: Ledger<&str> = Ledger::default();
        let t0 = Instant::now();
        assert_eq!(ledger.observe(&"a", Some(b"x"), t0), Duration::ZERO);
        assert!(!ledger.changed_within(&"a", Duration::from_secs(60)));
        let later = Instant::now() + Duration::from_secs(5);
        assert!(ledger.observe(&"a", Some(b"x"), later) >= Duration::from_secs(4));
        assert_eq!(ledger.observe(&"a", Some(b"y"), later), Duration::ZERO);
        assert!(ledger.changed_within(&"a", Duration::from_secs(60)));
        assert_eq!(ledger.observe(&"a", None, later), Duration::ZERO);
        ledger.forget(&"a");
        assert!(!ledger.changed_within(&"a", Duration::from_secs(60)));
    }
}
