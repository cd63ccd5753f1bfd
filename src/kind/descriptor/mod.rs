//! The road the kernel and ofd kinds share: their lock belongs to an open file description,
//! so COMMAND can inherit it. Open LOCK, try once, wait in the kernel if allowed, and make
//! sure the inode won is still the one the path names before calling it held. The two kinds
//! differ only in the lock call and in how `/proc/locks` names their locks. With `--fd`, the
//! descriptor is the caller's, locked in place.
#![allow(unsafe_code)]

mod nfs_watch;
pub(crate) mod slots;

use std::cell::OnceCell;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::inspect::descriptors;
use crate::inspect::sighting::{FileId, Sighting};
use crate::lock::{self, ByteRange, Hold, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::mounts::{Filesystem, KernelLock};
use crate::nested::HeldKey;
use crate::open::{self, Access, Shape};
use crate::status::{self, LockStatus};
use crate::supervise::LostWatch;
use crate::wait::{self, Deadline, WaitEnd, WaitObserver};
use nfs_watch::NfsWatch;

/// What tells the two descriptor kinds apart.
pub(crate) trait DescriptorLock: Sync {
    /// The kind's name.
    fn name(&self) -> &'static str;
    /// The lock class as `/proc/locks` and fdinfo print it.
    fn proc_class(&self) -> &'static str;
    /// Which of the kernel's two lock families it is.
    fn family(&self) -> KernelLock;
    /// What the descriptor must allow for a lock in `mode`.
    fn access(&self, mode: LockMode) -> Access;
    /// One attempt; `Ok(false)` when someone else holds a conflicting lock.
    fn try_lock(&self, fd: BorrowedFd<'_>, mode: LockMode, range: ByteRange) -> io::Result<bool>;
    /// Blocks until the lock is granted; `Interrupted` when a signal handler ran.
    fn lock_blocking(&self, fd: BorrowedFd<'_>, mode: LockMode, range: ByteRange)
    -> io::Result<()>;
    /// Removes the lock this open file description holds (the flock front end's `-u`).
    fn unlock(&self, fd: BorrowedFd<'_>, range: ByteRange) -> io::Result<()>;
}

/// The target for either descriptor kind: LOCK, or with `--fd` a descriptor this process
/// inherited.
pub(crate) fn target(
    lock: &'static dyn DescriptorLock,
    request: &Request,
) -> Result<Target, Error> {
    request.refuse_ttl()?;
    let (source, named, shown) = if let Some(fd) = request.fd {
        // What COMMAND is told LOCK is: the file the descriptor leads to, if /proc says.
        let named = std::fs::read_link(format!("/proc/self/fd/{fd}")).map_or_else(
            |_| format!("descriptor {fd}").into(),
            PathBuf::into_os_string,
        );
        (Source::Fd(fd), named, format!("descriptor {fd}"))
    } else {
        let path = request.lock_file()?;
        let named = path.clone().into_os_string();
        let source = Source::Path {
            path,
            given: request.lock.clone(),
        };
        (source, named, request.lock.display().to_string())
    };
    Ok(Target {
        kind: lock.name(),
        mode: request.mode,
        mode_names: LockMode::name,
        lock: named,
        shown,
        deadline: request.deadline,
        close: request.close,
        no_fork: request.no_fork,
        lockable: Box::new(DescriptorTarget {
            lock,
            source,
            mode: request.mode,
            unlock: request.unlock,
            range: request.range.unwrap_or_default(),
            create_mode: request.create_mode,
            refuse_host_local: request.refuse_host_local,
            filesystem: OnceCell::new(),
            nfs4: OnceCell::new(),
        }),
    })
}

/// `status` for either descriptor kind: holders and waiters from the kernel.
pub(crate) fn inspect(lock: &dyn DescriptorLock, report: &mut LockStatus, file: &LockFile<'_>) {
    let class = lock.proc_class();
    let sighting = descriptors::sight_in(file.locks, file.id, class);
    status::fill_from_sighting(report, &sighting, LockMode::name);
    // O_PATH: status neither creates LOCK nor opens what it is for reading.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(file.path);
    let filesystem = opened.ok().and_then(|f| Filesystem::of(f.as_fd()));
    if let Some((who, note)) = filesystem
        .as_ref()
        .and_then(|fs| fs.remote_holders(lock.family()))
    {
        let nfs3 = filesystem
            .as_ref()
            .is_some_and(|fs| fs.mount.fs_type == "nfs");
        inspect_remote(report, file.path, who, nfs3);
        report.warnings.extend(note.map(str::to_owned));
    }
    if let Some(local) = filesystem
        .as_ref()
        .and_then(|fs| fs.host_local(lock.family()))
    {
        report.warnings.push(format!(
            "this is a {} and {}: a holder on another host does not show here, and does not \
             keep this host's processes out; use --soft --ttl SECONDS (a soft lease) for a \
             lock every host sees",
            local.mount.describe(),
            local.why
        ));
    }
    if class == "OFDLCK" && report.waiters.iter().any(|w| w.pid.is_none()) {
        report
            .warnings
            .push("OFD lock requests do not record who waits; waiter pids are unknown".into());
    }
}

/// `status` on a network filesystem that passes locks on: a holder on another client is
/// not in this host's `/proc/locks`, so with no holder in sight the server is asked (a lock
/// test). The file is opened uncached (`mounts::uncached`): an NFSv4 client that holds a
/// read delegation answers lock tests itself and misses another client's shared lock. On
/// NFSv3 the test can still miss one: Linux's server answered that a write lock was free
/// beside another client's read lock, so there a free answer comes with that caveat.
fn inspect_remote(report: &mut LockStatus, path: &Path, who: &str, nfs3: bool) {
    report.warnings.push(format!(
        "on this network filesystem, this host sees its own processes only: {who} shows \
         without a pid, and waiters on other clients do not show"
    ));
    if !report.holders.is_empty() || !report.ranges.is_empty() {
        return;
    }
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            // On NFS, no read delegation: with one, the client answers the test itself.
            .custom_flags(
                libc::O_NONBLOCK
                    | libc::O_NOFOLLOW
                    | libc::O_NOCTTY
                    | crate::mounts::uncached_at(path),
            )
            .open(path)
    };
    let file = match open(true) {
        Ok(file) => file,
        Err(_) => match open(false) {
            Ok(file) => file,
            Err(e) => {
                report
                    .warnings
                    .push(format!("could not ask the server whether it is held: {e}"));
                return;
            }
        },
    };
    let mut test = ByteRange::default().request(libc::F_WRLCK);
    match nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_OFD_GETLK(&mut test)) {
        Ok(_) => {}
        Err(e) => {
            report.warnings.push(format!(
                "could not ask the server whether it is held: {}",
                io::Error::from(e)
            ));
            return;
        }
    }
    let mode = match i32::from(test.l_type) {
        libc::F_WRLCK => LockMode::Exclusive,
        libc::F_RDLCK => LockMode::Shared,
        _ => {
            if nfs3 {
                report.warnings.push(
                    "the server's lock test found it free, which rules out an exclusive \
                     holder on another client but not a shared one: NFSv3 servers may pass \
                     over read locks in a test"
                        .to_owned(),
                );
            }
            return;
        }
    };
    report.state = status::State::Held;
    report.mode = Some(mode.name());
    report.elsewhere = Some(format!("{who} (the server does not say which)"));
}

/// Where the lock's open file description comes from.
enum Source {
    /// LOCK, opened (and created if need be) by flockrun.
    Path {
        /// Absolute.
        path: PathBuf,
        /// As given, for the nesting check.
        given: PathBuf,
    },
    /// A descriptor this process inherited (`--fd`): its open file description belongs to
    /// the caller too, so the lock stays with the caller after flockrun exits.
    Fd(RawFd),
}

struct DescriptorTarget {
    lock: &'static dyn DescriptorLock,
    source: Source,
    mode: LockMode,
    unlock: bool,
    range: ByteRange,
    create_mode: Option<u32>,
    refuse_host_local: bool,
    /// The lock file's filesystem when other hosts may share it, looked at (and warned
    /// about) once per run.
    filesystem: OnceCell<Option<Filesystem>>,
    /// On NFSv4, the mount's lease and server for the hold's watch: read with the
    /// filesystem, before the wait, so that a handoff does not wait for
    /// `/proc/self/mountstats` between the lock and COMMAND.
    nfs4: OnceCell<Option<(Option<Duration>, String)>>,
}

impl Lockable for DescriptorTarget {
    fn held_key(&self) -> Option<HeldKey> {
        match &self.source {
            Source::Path { given, .. } => HeldKey::of_path(self.lock.name(), given),
            // The descriptor itself is the lock: nothing to find above.
            Source::Fd(_) => None,
        }
    }

    fn inherited_mode(&self, key: HeldKey) -> Option<LockMode> {
        let me = nix::unistd::getpid().as_raw();
        descriptors::process_lock(me, key.id, self.lock.proc_class())
            .ok()
            .flatten()
    }

    fn look_first(&self) -> bool {
        true
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        match &self.source {
            Source::Path { path, .. } => {
                let mut access = self.lock.access(self.mode);
                let (file, id) = lock::retry_while_replaced(path, || {
                    self.round(path, deadline, &mut access, observer)
                })?;
                Ok(Box::new(HeldDescriptor {
                    watch: OnceCell::new(),
                    nfs4: self.nfs4.get().cloned().flatten(),
                    mode: self.mode,
                    held: Held::Opened {
                        file,
                        path: path.clone(),
                    },
                    key: HeldKey {
                        kind: self.lock.name(),
                        id,
                    },
                    waited: deadline.elapsed(),
                }))
            }
            Source::Fd(fd) => self.take_inherited(*fd, deadline, observer),
        }
    }
}

impl DescriptorTarget {
    /// One round: open, take the lock, then check the won inode is still the one the path
    /// names.
    fn round(
        &self,
        path: &Path,
        deadline: &Deadline,
        access: &mut Access,
        observer: &mut dyn WaitObserver,
    ) -> Result<Option<(File, FileId)>, Error> {
        let (file, meta) =
            open::open_lock_file(path, *access, self.create_mode, Shape::AnyLockable)?;
        if self.filesystem.get().is_none() {
            let filesystem = Filesystem::of(file.as_fd());
            self.check_mount(path, filesystem.as_ref(), observer)?;
            let _ = self.nfs4.set(filesystem.as_ref().and_then(nfs4));
            let _ = self.filesystem.set(filesystem);
        }
        let id = FileId::of(&meta);
        match self.lock_fd(file.as_fd(), id, path, deadline, observer) {
            Ok(()) => {}
            // NFSv4 emulates flock(2) with POSIX locks, and an exclusive one needs a writable
            // descriptor: it answers EBADF (or EIO on older kernels) on a read-only one.
            // Reopen read-write once, as util-linux flock(1) does.
            Err(Error::LockFailed { source, .. })
                if *access == Access::Read
                    && self.mode == LockMode::Exclusive
                    && matches!(source.raw_os_error(), Some(libc::EBADF | libc::EIO)) =>
            {
                *access = Access::ReadWrite;
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        // The path may have been deleted or replaced while we waited; then the lock we won
        // guards an orphan inode and a newcomer may hold the real one.
        Ok(open::names(path, id).then_some((file, id)))
    }

    /// Locks (or unlocks) `fd`: one attempt, then a wait in the kernel if the deadline
    /// allows. `shown` names the lock in errors.
    fn lock_fd(
        &self,
        fd: BorrowedFd<'_>,
        id: FileId,
        shown: &Path,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<(), Error> {
        if self.unlock {
            return self
                .lock
                .unlock(fd, self.range)
                .map_err(|e| lock_error(shown, e));
        }
        let won = self
            .lock
            .try_lock(fd, self.mode, self.range)
            .map_err(|e| lock_error(shown, e))?;
        if won {
            return Ok(());
        }
        let sight = || self.sight(fd, id);
        wait::begin_wait(shown, deadline, observer, &sight)?;
        let tick_every = observer.tick_every();
        let waited = {
            let mut tick = |waited| observer.tick(waited, &sight);
            let mut attempt = || self.lock.lock_blocking(fd, self.mode, self.range);
            wait::wait_in_kernel(deadline, tick_every, &mut tick, &mut attempt)
        };
        observer.finished();
        match waited {
            Ok(()) => Ok(()),
            Err(WaitEnd::TimedOut) => Err(wait::not_acquired(shown, deadline, sight())),
            Err(WaitEnd::Stopped(signal)) => Err(Error::Interrupted { signal }),
            Err(WaitEnd::Failed(e)) => Err(lock_error(shown, e)),
        }
    }

    /// `--fd N`: lock the open file description N leads to, in place. It must be open, a
    /// file that can be locked and that is still named somewhere: a lock on a FIFO or on a
    /// deleted file would guard nothing anyone else can find.
    fn take_inherited(
        &self,
        raw: RawFd,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let shown = PathBuf::from(format!("descriptor {raw}"));
        let refuse = |reason: String| Error::NotALock {
            path: shown.clone(),
            reason,
        };
        if raw < 0 {
            return Err(Error::BadDescriptor {
                fd: raw,
                source: io::Error::from_raw_os_error(libc::EBADF),
            });
        }
        // SAFETY: the descriptor is only borrowed for the calls below, never closed; fstat
        // on a number that is not open answers EBADF, which is checked first.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let stat = match nix::sys::stat::fstat(fd) {
            Ok(stat) => stat,
            Err(e @ nix::errno::Errno::EBADF) => {
                return Err(Error::BadDescriptor {
                    fd: raw,
                    source: e.into(),
                });
            }
            Err(e) => return Err(Error::system("fstat on the descriptor", e)),
        };
        let file_type = stat.st_mode & libc::S_IFMT;
        if !matches!(file_type, libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK) {
            return Err(refuse(
                "is not a regular file or a directory (a FIFO, a socket or a device): a lock \
                 on it would not keep anyone out who opens a lock file; open a lock file on it"
                    .to_owned(),
            ));
        }
        let deleted = || {
            refuse(
                "leads to a file that was deleted: nobody else can open it, so a lock on it \
                 keeps nobody out; open the lock file again"
                    .to_owned(),
            )
        };
        if stat.st_nlink == 0 {
            return Err(deleted());
        }
        let id = FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        };
        self.lock_fd(fd, id, &shown, deadline, observer)?;
        // Deleted while we waited: the lock would guard nothing; give it back.
        if !self.unlock && nix::sys::stat::fstat(fd).is_ok_and(|s| s.st_nlink == 0) {
            let _ = self.lock.unlock(fd, self.range);
            return Err(deleted());
        }
        Ok(Box::new(HeldDescriptor {
            watch: OnceCell::new(),
            nfs4: Filesystem::of(fd).as_ref().and_then(nfs4),
            mode: self.mode,
            held: Held::Inherited(raw),
            key: HeldKey {
                kind: self.lock.name(),
                id,
            },
            waited: deadline.elapsed(),
        }))
    }
}

impl DescriptorTarget {
    /// Warns (or with `--refuse-host-local` refuses) when the kernel keeps this lock to this
    /// host while other hosts share the file.
    fn check_mount(
        &self,
        path: &Path,
        filesystem: Option<&Filesystem>,
        observer: &mut dyn WaitObserver,
    ) -> Result<(), Error> {
        let Some(local) = filesystem.and_then(|fs| fs.host_local(self.lock.family())) else {
            return Ok(());
        };
        let what = format!(
            "this is a {} and {}, so a process on another host can hold the same {} lock at \
             the same time",
            local.mount.describe(),
            local.why,
            self.lock.name()
        );
        if self.refuse_host_local {
            return Err(Error::NotALock {
                path: path.to_owned(),
                reason: format!(
                    "{what}; refused (--refuse-host-local). Use --soft --ttl SECONDS (a soft \
                     lease) for a lock every host sees"
                ),
            });
        }
        observer.warn(&format!(
            "{}: {what}. Use --soft --ttl SECONDS (a soft lease) for a lock every host sees, \
             or --refuse-host-local (FLOCKRUN_REFUSE_HOST_LOCAL=1) to make this an error",
            path.display()
        ));
        Ok(())
    }
}

impl DescriptorTarget {
    /// Who holds the lock, as far as this host can see. On a network filesystem that passes
    /// locks on, a lock no process here holds is held on another client, which the server
    /// does not name.
    fn sight(&self, fd: BorrowedFd<'_>, id: FileId) -> Sighting {
        let mut sighting = descriptors::sight(id, self.lock.proc_class());
        if sighting.holders.is_empty() && sighting.recorded_pids.is_empty() {
            let filesystem = self
                .filesystem
                .get()
                .cloned()
                .unwrap_or_else(|| Filesystem::of(fd));
            if let Some((who, note)) =
                filesystem.and_then(|fs| fs.remote_holders(self.lock.family()))
            {
                let mut described = format!("held by {who} (the server does not say which)");
                if let Some(note) = note {
                    described.push_str("; ");
                    described.push_str(note);
                }
                sighting.described = Some(described);
            }
        }
        sighting
    }
}

/// The lease and server of an NFSv4 mount, whose locks the holder must watch.
fn nfs4(filesystem: &Filesystem) -> Option<(Option<Duration>, String)> {
    filesystem
        .nfs4_lease()
        .map(|lease| (lease, filesystem.server()))
}

fn lock_error(path: &Path, e: io::Error) -> Error {
    Error::LockFailed {
        path: path.to_owned(),
        source: e,
    }
}

/// The locked open file description a hold keeps.
enum Held {
    /// Opened by flockrun: closing it releases the lock unless COMMAND inherited it.
    Opened { file: File, path: PathBuf },
    /// The caller's (`--fd`): never closed or unlocked here, the lock stays with the caller.
    Inherited(RawFd),
}

/// A held descriptor lock.
struct HeldDescriptor {
    /// Started once COMMAND runs under a lock on NFSv4 (declared before `held`: dropped, it
    /// stops the prober before the descriptor closes).
    watch: OnceCell<Option<Arc<NfsWatch>>>,
    /// On NFSv4: the lease the kernel reports for the mount, and the server.
    nfs4: Option<(Option<Duration>, String)>,
    mode: LockMode,
    held: Held,
    key: HeldKey,
    waited: Duration,
}

impl HeldDescriptor {
    fn raw_fd(&self) -> RawFd {
        match &self.held {
            Held::Opened { file, .. } => file.as_raw_fd(),
            Held::Inherited(fd) => *fd,
        }
    }

    fn started_watch(&self) -> Option<&Arc<NfsWatch>> {
        self.watch.get().and_then(Option::as_ref)
    }
}

impl Hold for HeldDescriptor {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.waited
    }

    fn descriptor(&self) -> Option<RawFd> {
        Some(self.raw_fd())
    }

    /// On NFSv4, a watch on the lock (see `nfs_watch`), started here: only a hold that
    /// COMMAND runs under is watched.
    fn loss(&self) -> Option<LostWatch> {
        let (lease, server) = self.nfs4.as_ref()?;
        let watch = self.watch.get_or_init(|| {
            match NfsWatch::start(self.raw_fd(), self.mode, *lease, server.clone()) {
                Ok(watch) => Some(Arc::new(watch)),
                Err(e) => {
                    let _ = writeln!(
                        io::stderr().lock(),
                        "flockrun: warning: cannot watch the lock on NFSv4 for a loss ({e}); \
                         COMMAND runs unwatched"
                    );
                    None
                }
            }
        });
        watch.as_ref().map(NfsWatch::watch)
    }

    fn lost(&self) -> Option<String> {
        self.started_watch()?.reason()
    }

    fn still_named(&self) -> bool {
        match &self.held {
            Held::Opened { file, path } => open::still_named_by(file, path),
            Held::Inherited(_) => true,
        }
    }

    fn release_named(self: Box<Self>) -> (bool, Option<String>) {
        if let Some(watch) = self.started_watch() {
            if watch.lost() {
                // The prober keeps the file open until flockrun has gone, so this close does
                // not wait for a server that may not answer; nothing of the lock is ours to
                // check any more.
                drop(self);
                return (true, None);
            }
            if !watch.stop() {
                return (
                    true,
                    Some(
                        "the NFS server did not answer while the lock was being released; \
                         it frees the lock once this client's lease runs out"
                            .to_owned(),
                    ),
                );
            }
        }
        let Held::Opened { file, path } = self.held else {
            return (true, None);
        };
        // The link count before closing, the name after: closing is what hands the lock to
        // the next waiter, and the path lookup need not delay it. An inode still linked when
        // it was closed cannot have been freed and its number reused by the time of the
        // lookup, so an equal identity then is this file.
        let linked = file
            .metadata()
            .ok()
            .filter(|held| std::os::unix::fs::MetadataExt::nlink(held) > 0)
            .map(|held| FileId::of(&held));
        drop(file);
        let named = linked.is_some_and(|held| {
            std::fs::symlink_metadata(&path).is_ok_and(|now| FileId::of(&now) == held)
        });
        (named, None)
    }
}
