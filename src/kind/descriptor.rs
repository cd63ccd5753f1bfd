//! The road the kernel and ofd kinds share: their lock belongs to an open file description,
//! so COMMAND can inherit it. Open LOCK, try once, wait in the kernel if allowed, and make
//! sure the inode won is still the one the path names before calling it held. The two kinds
//! differ only in the lock call and in how `/proc/locks` names their locks.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::inspect::descriptors;
use crate::inspect::sighting::{FileId, Sighting};
use crate::lock::{self, Hold, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::mounts::{self, KernelLock};
use crate::nested::HeldKey;
use crate::open::{self, Access, Shape};
use crate::status::{self, LockStatus};
use crate::wait::{self, Deadline, WaitEnd, WaitObserver};

/// What tells the two descriptor kinds apart.
pub(super) trait DescriptorLock: Sync {
    /// The kind's name.
    fn name(&self) -> &'static str;
    /// The lock class as `/proc/locks` and fdinfo print it.
    fn proc_class(&self) -> &'static str;
    /// Which of the kernel's two lock families it is.
    fn family(&self) -> KernelLock;
    /// What the descriptor must allow for a lock in `mode`.
    fn access(&self, mode: LockMode) -> Access;
    /// One attempt; `Ok(false)` when someone else holds a conflicting lock.
    fn try_lock(&self, file: &File, mode: LockMode) -> io::Result<bool>;
    /// Blocks until the lock is granted; `Interrupted` when a signal handler ran.
    fn lock_blocking(&self, file: &File, mode: LockMode) -> io::Result<()>;
}

/// The target for either descriptor kind.
pub(super) fn target(
    lock: &'static dyn DescriptorLock,
    request: &Request,
) -> Result<Target, Error> {
    request.refuse_ttl()?;
    let path = request.lock_file()?;
    Ok(Target {
        kind: lock.name(),
        mode: request.mode,
        mode_names: LockMode::name,
        lock: path.clone().into_os_string(),
        shown: request.lock.display().to_string(),
        deadline: request.deadline,
        close: request.close,
        no_fork: request.no_fork,
        lockable: Box::new(DescriptorTarget {
            lock,
            path,
            given: request.lock.clone(),
            mode: request.mode,
            create_mode: request.create_mode,
            refuse_host_local: request.refuse_host_local,
        }),
    })
}

/// `status` for either descriptor kind: holders and waiters from the kernel.
pub(super) fn inspect(lock: &dyn DescriptorLock, report: &mut LockStatus, file: &LockFile<'_>) {
    let class = lock.proc_class();
    let sighting = descriptors::sight_in(file.locks, file.id, class);
    status::fill_from_sighting(report, &sighting, LockMode::name);
    // O_PATH: status neither creates LOCK nor opens what it is for reading.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(file.path);
    if let Some(local) = opened
        .ok()
        .and_then(|f| mounts::host_local_locks(&f, lock.family()))
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

struct DescriptorTarget {
    lock: &'static dyn DescriptorLock,
    /// Absolute.
    path: PathBuf,
    /// As given, for the nesting check.
    given: PathBuf,
    mode: LockMode,
    create_mode: Option<u32>,
    refuse_host_local: bool,
}

impl Lockable for DescriptorTarget {
    fn held_key(&self) -> Option<HeldKey> {
        let meta = std::fs::symlink_metadata(&self.given).ok()?;
        Some(HeldKey {
            kind: self.lock.name(),
            id: FileId::of(&meta),
        })
    }

    fn inherited_mode(&self, key: HeldKey) -> Option<LockMode> {
        let me = nix::unistd::getpid().as_raw();
        descriptors::process_lock(me, key.id, self.lock.proc_class())
            .ok()
            .flatten()
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let mut access = self.lock.access(self.mode);
        let mut mount_checked = false;
        let (file, id) = lock::retry_while_replaced(&self.path, || {
            self.round(deadline, &mut access, &mut mount_checked, observer)
        })?;
        Ok(Box::new(HeldDescriptor {
            file,
            path: self.path.clone(),
            key: HeldKey {
                kind: self.lock.name(),
                id,
            },
            waited: deadline.elapsed(),
        }))
    }
}

impl DescriptorTarget {
    /// One round: open, try once, wait in the kernel if allowed, then check the won inode is
    /// still the one the path names.
    fn round(
        &self,
        deadline: &Deadline,
        access: &mut Access,
        mount_checked: &mut bool,
        observer: &mut dyn WaitObserver,
    ) -> Result<Option<(File, FileId)>, Error> {
        let path = &self.path;
        let file = open::open_lock_file(path, *access, self.create_mode, Shape::AnyLockable)?;
        if !std::mem::replace(mount_checked, true) {
            self.check_mount(&file, observer)?;
        }
        let id = FileId::of(
            &file
                .metadata()
                .map_err(|e| Error::system("fstat on the lock file", e))?,
        );
        let class = self.lock.proc_class();
        let won = match self.lock.try_lock(&file, self.mode) {
            Ok(won) => won,
            // NFSv4 emulates flock(2) with POSIX locks, and an exclusive one needs a writable
            // descriptor: it answers EBADF (or EIO on older kernels) on a read-only one.
            // Reopen read-write once, as util-linux flock(1) does.
            Err(e)
                if *access == Access::Read
                    && self.mode == LockMode::Exclusive
                    && matches!(e.raw_os_error(), Some(libc::EBADF | libc::EIO)) =>
            {
                *access = Access::ReadWrite;
                return Ok(None);
            }
            Err(e) => return Err(lock_error(path, e)),
        };
        if !won {
            if deadline.is_immediate() {
                let sighting = descriptors::sight(id, class);
                return Err(wait::not_acquired(path, deadline, sighting));
            }
            let sighting = if observer.wants_holders() {
                descriptors::sight(id, class)
            } else {
                Sighting::default()
            };
            observer.blocked(&sighting);
            let tick_every = observer.tick_every();
            let waited = {
                let mut tick = |waited| observer.tick(waited, &|| descriptors::sight(id, class));
                let mut attempt = || self.lock.lock_blocking(&file, self.mode);
                wait::wait_in_kernel(deadline, tick_every, &mut tick, &mut attempt)
            };
            observer.finished();
            match waited {
                Ok(()) => {}
                Err(WaitEnd::TimedOut) => {
                    let sighting = descriptors::sight(id, class);
                    return Err(wait::not_acquired(path, deadline, sighting));
                }
                Err(WaitEnd::Stopped(signal)) => return Err(Error::Interrupted { signal }),
                Err(WaitEnd::Failed(e)) => return Err(lock_error(path, e)),
            }
        }
        // The path may have been deleted or replaced while we waited; then the lock we won
        // guards an orphan inode and a newcomer may hold the real one.
        Ok(open::still_named_by(&file, path).then_some((file, id)))
    }
}

impl DescriptorTarget {
    /// Warns (or with `--refuse-host-local` refuses) when the kernel keeps this lock to this
    /// host while other hosts share the file.
    fn check_mount(&self, file: &File, observer: &mut dyn WaitObserver) -> Result<(), Error> {
        let Some(local) = mounts::host_local_locks(file, self.lock.family()) else {
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
                path: self.path.clone(),
                reason: format!(
                    "{what}; refused (--refuse-host-local). Use --soft --ttl SECONDS (a soft \
                     lease) for a lock every host sees"
                ),
            });
        }
        observer.warn(&format!(
            "{}: {what}. Use --soft --ttl SECONDS (a soft lease) for a lock every host sees, \
             or --refuse-host-local (FLOCKRUN_REFUSE_HOST_LOCAL=1) to make this an error",
            self.path.display()
        ));
        Ok(())
    }
}

fn lock_error(path: &Path, e: io::Error) -> Error {
    Error::LockFailed {
        path: path.to_owned(),
        source: e,
    }
}

/// A held descriptor lock: the locked open file description. Dropping it closes the
/// descriptor, which releases the lock unless COMMAND inherited it and still runs.
struct HeldDescriptor {
    file: File,
    path: PathBuf,
    key: HeldKey,
    waited: Duration,
}

impl Hold for HeldDescriptor {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.waited
    }

    fn descriptor(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn still_named(&self) -> bool {
        open::still_named_by(&self.file, &self.path)
    }
}
