//! Taking a lock: open the lock file, try once, wait in the kernel if allowed, and make sure
//! the inode we won is still the one the path names before calling it held.

use std::fmt;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::inspect::{self, FileId, Sighting};
use crate::kind::{LockKind, soft, sqlite};
use crate::open::{self, Access, Shape};
use crate::wait::{self, Deadline, WaitEnd};

/// Exclusive (one holder) or shared (any number of shared holders, no exclusive one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Exclusive,
    Shared,
}

impl LockMode {
    /// The name used in `FLOCKRUN_MODE` and in messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Exclusive => "exclusive",
            LockMode::Shared => "shared",
        }
    }

    /// Whether holding `self` already grants a request for `wanted`.
    #[must_use]
    pub fn covers(self, wanted: LockMode) -> bool {
        self == LockMode::Exclusive || wanted == LockMode::Shared
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to lock and how long to wait for it.
#[derive(Debug, Clone)]
pub struct LockRequest {
    pub path: PathBuf,
    pub kind: LockKind,
    pub mode: LockMode,
    pub deadline: Deadline,
    /// Permission bits for a lock file flockrun creates; `None` = `0o666 & ~umask`.
    pub create_mode: Option<u32>,
}

/// Hooks for showing a wait to a person. All methods have do-nothing defaults.
pub trait WaitObserver {
    /// Whether `blocked` wants to know who holds the lock (costs a scan of `/proc`).
    fn wants_holders(&self) -> bool {
        false
    }
    /// The first attempt found the lock busy and the wait begins.
    fn blocked(&mut self, _sighting: &Sighting) {}
    /// How often `tick` should be called while waiting, if at all.
    fn tick_every(&self) -> Option<Duration> {
        None
    }
    /// Still waiting after `_waited`; `_sighting` looks at the lock now (costly: call it
    /// only to show the result).
    fn tick(&mut self, _waited: Duration, _sighting: &dyn Fn() -> Sighting) {}
    /// The wait ended, either way.
    fn finished(&mut self) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl WaitObserver for Silent {}

/// A lock this process holds. Dropping it releases the lock (the descriptor closes, or the
/// transaction rolls back), unless a child inherited the descriptor, which then keeps
/// holding it.
#[derive(Debug)]
pub struct HeldLock {
    guard: Guard,
    path: PathBuf,
    kind: LockKind,
    mode: LockMode,
    id: FileId,
    waited: Duration,
}

/// What keeps the lock held.
#[derive(Debug)]
enum Guard {
    /// kernel and ofd kinds: the locked open file description.
    Descriptor(File),
    /// soft kind: our marker at the lock path.
    Soft(soft::HeldMarker),
    /// sqlite kind: the open transaction.
    Sqlite(sqlite::Transaction),
}

impl HeldLock {
    /// The locked descriptor a child can inherit; `None` for kinds whose lock belongs to
    /// this process alone (sqlite).
    #[must_use]
    pub fn fd(&self) -> Option<RawFd> {
        match &self.guard {
            Guard::Descriptor(file) => Some(file.as_raw_fd()),
            Guard::Sqlite(_) | Guard::Soft(_) => None,
        }
    }
    /// The absolute path of the lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
    #[must_use]
    pub fn kind(&self) -> LockKind {
        self.kind
    }
    #[must_use]
    pub fn mode(&self) -> LockMode {
        self.mode
    }
    #[must_use]
    pub fn id(&self) -> FileId {
        self.id
    }
    /// Whether LOCK still names the file this lock is on. When it does not, someone deleted
    /// or replaced it during the hold, and processes that opened LOCK since then locked a
    /// different file.
    #[must_use]
    pub fn still_named(&self) -> bool {
        let file = match &self.guard {
            Guard::Descriptor(file) => file,
            Guard::Soft(marker) => marker.file(),
            Guard::Sqlite(transaction) => transaction.file(),
        };
        open::still_named_by(file, &self.path)
    }
    /// How long the wait took.
    #[must_use]
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

/// How many times a won lock may turn out to be on a stale inode before giving up; each
/// round needs another process to delete or replace the lock file in between.
const REPLACED_RETRIES: usize = 1000;

/// Takes the lock `request` describes.
///
/// ```no_run
/// use std::time::Duration;
/// use flockrun::{LockKind, LockMode, LockRequest, Silent, acquire, wait::Deadline};
/// let request = LockRequest {
///     path: "/tmp/demo.lock".into(),
///     kind: LockKind::Kernel,
///     mode: LockMode::Exclusive,
///     deadline: Deadline::after(Duration::from_secs(5)),
///     create_mode: None,
/// };
/// let held = acquire(&request, &mut Silent).expect("lock");
/// println!("locked {} after {:?}", held.path().display(), held.waited());
/// drop(held); // released
/// ```
///
/// # Errors
/// `Busy` for a single attempt that failed, `TimedOut`, `Interrupted` by a stop signal, or
/// an error opening or locking the file.
pub fn acquire(request: &LockRequest, observer: &mut dyn WaitObserver) -> Result<HeldLock, Error> {
    let path = std::path::absolute(&request.path).map_err(|e| Error::Open {
        path: request.path.clone(),
        hint: "the current directory is not accessible".to_owned(),
        source: e,
    })?;
    let mut access = request.kind.access(request.mode);
    for _ in 0..REPLACED_RETRIES {
        // Each attempt yields `None` when the lock it won no longer guards the file at the
        // path (deleted or replaced while we waited): then we start over.
        let won = match request.kind {
            LockKind::Sqlite => sqlite::acquire(
                &path,
                request.mode,
                &request.deadline,
                request.create_mode,
                observer,
            )?
            .map(|(transaction, id)| (Guard::Sqlite(transaction), id)),
            LockKind::Soft => {
                let marker =
                    soft::acquire(&path, &request.deadline, request.create_mode, observer)?;
                marker.id().map(|id| (Guard::Soft(marker), id))
            }
            LockKind::Kernel | LockKind::Ofd => {
                lock_descriptor(&path, request, &mut access, observer)?
                    .map(|(file, id)| (Guard::Descriptor(file), id))
            }
        };
        if let Some((guard, id)) = won {
            return Ok(HeldLock {
                guard,
                path,
                kind: request.kind,
                mode: request.mode,
                id,
                waited: request.deadline.elapsed(),
            });
        }
    }
    Err(Error::Open {
        path,
        hint: "it keeps being deleted or replaced by another process".to_owned(),
        source: std::io::Error::from_raw_os_error(libc::ESTALE),
    })
}

/// One round for the kernel and ofd kinds: open, try once, wait in the kernel if allowed,
/// then check the won inode is still the one the path names.
fn lock_descriptor(
    path: &Path,
    request: &LockRequest,
    access: &mut Access,
    observer: &mut dyn WaitObserver,
) -> Result<Option<(File, FileId)>, Error> {
    let file = open::open_lock_file(path, *access, request.create_mode, Shape::AnyLockable)?;
    let id = FileId::of(
        &file
            .metadata()
            .map_err(|e| Error::system("fstat on the lock file", e))?,
    );
    let won = match request.kind.try_lock(&file, request.mode) {
        Ok(won) => won,
        // NFSv4 emulates flock(2) with POSIX locks, and an exclusive one needs a writable
        // descriptor: it answers EBADF (or EIO on older kernels) on a read-only one. Reopen
        // read-write once, as util-linux flock(1) does.
        Err(e)
            if *access == Access::Read
                && request.mode == LockMode::Exclusive
                && matches!(e.raw_os_error(), Some(libc::EBADF | libc::EIO)) =>
        {
            *access = Access::ReadWrite;
            return Ok(None);
        }
        Err(e) => return Err(lock_error(path, e)),
    };
    if !won {
        if request.deadline.is_immediate() {
            let sighting = inspect::sight(id, request.kind);
            return Err(Error::not_acquired(path, &request.deadline, sighting));
        }
        let sighting = if observer.wants_holders() {
            inspect::sight(id, request.kind)
        } else {
            Sighting::default()
        };
        observer.blocked(&sighting);
        let tick_every = observer.tick_every();
        let waited = {
            let mut tick = |waited| observer.tick(waited, &|| inspect::sight(id, request.kind));
            let mut attempt = || request.kind.lock_blocking(&file, request.mode);
            wait::wait_in_kernel(&request.deadline, tick_every, &mut tick, &mut attempt)
        };
        observer.finished();
        match waited {
            Ok(()) => {}
            Err(WaitEnd::TimedOut) => {
                let sighting = inspect::sight(id, request.kind);
                return Err(Error::not_acquired(path, &request.deadline, sighting));
            }
            Err(WaitEnd::Stopped(signal)) => return Err(Error::Interrupted { signal }),
            Err(WaitEnd::Failed(e)) => return Err(lock_error(path, e)),
        }
    }
    // The path may have been deleted or replaced while we waited; then the lock we won
    // guards an orphan inode and a newcomer may hold the real one.
    Ok(open::still_named_by(&file, path).then_some((file, id)))
}

fn lock_error(path: &Path, e: std::io::Error) -> Error {
    Error::LockFailed {
        path: path.to_owned(),
        source: e,
    }
}

/// The identity of the file at `path` without following a final symlink, if it exists.
#[must_use]
pub fn file_id(path: &Path) -> Option<FileId> {
    fs::symlink_metadata(path).ok().map(|m| FileId::of(&m))
}
