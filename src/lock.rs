//! The one road from LOCK to a held lock, for every kind. The command line becomes a
//! [`Request`]; the kind that claims it most strongly (see `kind::KINDS`) turns it into a
//! [`Target`]; taking the target yields a [`Hold`], which tells the supervisor what COMMAND
//! inherits (a descriptor or nothing), what COMMAND finds in its environment, whether the
//! hold can be lost and how that is noticed, and how it ends. Nesting, `-v`, the live line,
//! supervision, the deleted-lock warning and release are written once, in `run`, on top of
//! these types.
//!
//! # Adding a kind
//!
//! 1. One new file under `src/kind/` with a unit struct that implements [`Kind`]: its name,
//!    which requests it claims ([`Claim`]), how it turns one into a [`Target`] (refusing the
//!    options it cannot honour with `Error::Usage`), and what `status` shows of it. Its
//!    [`Lockable`] takes the lock and returns a [`Hold`]; the trait defaults fit a lock that
//!    no descriptor carries, that cannot be lost, and that is released by dropping it.
//! 2. One entry, `NAME::Struct`, in the `kinds!` list in `src/kind/mod.rs`.
//!
//! The options a kind reads come through [`Request`]; a new option means a field there and
//! a flag in `cli`.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::inspect::proc_locks::KernelLocks;
use crate::inspect::sighting::FileId;
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::status::LockStatus;
use crate::supervise::LostWatch;
use crate::wait::{Deadline, WaitObserver};

/// The subcommand that asks for the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Exec,
    Try,
    Read,
    Write,
}

impl Verb {
    /// `read` and `write`: the reader/writer commands.
    #[must_use]
    pub fn is_read_write(self) -> bool {
        matches!(self, Verb::Read | Verb::Write)
    }
}

/// Which on-disk layouts of py-filelock's `SoftReadWriteLock` a soft read/write lock takes:
/// v1 (py-filelock 3.27–3.32), v2 (4.0 and later), or both, v1 first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SoftLayout {
    V1,
    V2,
    Both,
}

impl SoftLayout {
    #[must_use]
    pub fn has_v1(self) -> bool {
        self != SoftLayout::V2
    }

    #[must_use]
    pub fn has_v2(self) -> bool {
        self != SoftLayout::V1
    }
}

/// What the command line asks for, in no kind's terms yet.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // one per flag
pub struct Request {
    pub verb: Verb,
    /// LOCK as given.
    pub lock: PathBuf,
    /// `-s` for exec and try; shared for read, exclusive for write.
    pub mode: LockMode,
    pub fcntl: bool,
    pub soft: bool,
    /// `-o`: COMMAND does not inherit the lock.
    pub close: bool,
    /// `-F`: COMMAND replaces flockrun.
    pub no_fork: bool,
    pub ttl: Option<crate::duration::Ttl>,
    /// `--layout` of a soft read/write lock.
    pub layout: SoftLayout,
    /// `--refuse-host-local`: a kernel lock on a filesystem that keeps kernel locks to this
    /// host is an error, not a warning.
    pub refuse_host_local: bool,
    /// `--fd N`: lock the descriptor N this process inherited instead of opening LOCK.
    pub fd: Option<std::os::fd::RawFd>,
    /// `--start`/`--length` of the flock front end: a byte range (an OFD lock).
    pub range: Option<ByteRange>,
    /// `-u` of the flock front end: remove a lock instead of taking one.
    pub unlock: bool,
    /// `--mode`: permission bits of a lock file flockrun creates.
    pub create_mode: Option<u32>,
    pub deadline: Deadline,
    /// COMMAND as a person reads it, for kinds that record who holds them.
    pub command: String,
    /// `--cacert`, `--cert`, `--key`, `--user`, `--password-file`: how to reach an etcd
    /// cluster.
    pub etcd: crate::kind::etcd::access::Access,
    /// `--slots N`: a semaphore of N slots (`None`: a plain lock).
    pub slots: Option<u16>,
    /// `--run-limit`: how long COMMAND may run.
    pub run_limit: Option<Duration>,
    /// `--kill-after`: SIGTERM to SIGKILL, for the run limit and `--replace` (`None`: the
    /// default, [`KILL_AFTER_DEFAULT`]).
    pub kill_after: Option<Duration>,
    /// `--replace`: stop the holder on this host, then take the lock.
    pub replace: bool,
}

/// `--kill-after`'s default, as timeout(1) users write it.
pub const KILL_AFTER_DEFAULT: Duration = Duration::from_secs(10);

/// The most slots a semaphore may have.
pub const MAX_SLOTS: u16 = 1024;

/// `FLOCKRUN_SLOT` and `FLOCKRUN_SLOTS`, for a hold of slot `slot.0` of `slot.1` (none for a
/// plain lock).
#[must_use]
pub fn slot_env(slot: Option<(u16, u16)>) -> Vec<(OsString, OsString)> {
    slot.map(|(slot, slots)| {
        vec![
            ("FLOCKRUN_SLOT".into(), slot.to_string().into()),
            ("FLOCKRUN_SLOTS".into(), slots.to_string().into()),
        ]
    })
    .unwrap_or_default()
}

/// What `-v` adds for a held slot: `, slot 2 of 4`.
#[must_use]
pub fn slot_details(slot: Option<(u16, u16)>) -> String {
    slot.map(|(slot, slots)| format!(", slot {slot} of {slots}"))
        .unwrap_or_default()
}

impl Request {
    /// `verb` on `lock` with every option at its default: exclusive (shared for `read`), no
    /// flags, wait as long as it takes.
    #[must_use]
    pub fn new(verb: Verb, lock: impl Into<PathBuf>) -> Self {
        Request {
            verb,
            lock: lock.into(),
            mode: if verb == Verb::Read {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            },
            fcntl: false,
            soft: false,
            close: false,
            no_fork: false,
            ttl: None,
            layout: SoftLayout::Both,
            refuse_host_local: false,
            fd: None,
            range: None,
            unlock: false,
            create_mode: None,
            deadline: Deadline::forever(),
            command: String::new(),
            etcd: crate::kind::etcd::access::Access::default(),
            slots: None,
            run_limit: None,
            kill_after: None,
            replace: false,
        }
    }

    /// LOCK as an absolute path, for the kinds whose lock is a file: `Open` (66) when LOCK is
    /// empty or the current directory cannot be read.
    ///
    /// # Errors
    /// As above.
    pub fn lock_file(&self) -> Result<PathBuf, Error> {
        if self.lock.as_os_str().is_empty() {
            return Err(Error::Open {
                path: self.lock.clone(),
                hint: "LOCK is empty; give the path of a lock file".to_owned(),
                source: std::io::Error::from_raw_os_error(libc::ENOENT),
            });
        }
        std::path::absolute(&self.lock).map_err(|e| Error::Open {
            path: self.lock.clone(),
            hint: "the current directory is not accessible".to_owned(),
            source: e,
        })
    }

    /// `--kill-after`, or its default.
    #[must_use]
    pub fn kill_after(&self) -> Duration {
        self.kill_after.unwrap_or(KILL_AFTER_DEFAULT)
    }

    /// The usage error for `--ttl` on a lock file of a kind without one.
    ///
    /// # Errors
    /// When `--ttl` was given.
    pub fn refuse_ttl(&self) -> Result<(), Error> {
        if self.ttl.is_none() {
            return Ok(());
        }
        Err(Error::Usage {
            message: format!(
                "--ttl applies to etcd:// locks and to soft leases (--soft --ttl), and {} \
                 would be another kind of lock file: add --soft for a lease",
                self.lock.display()
            ),
        })
    }
}

/// A byte range of a file: `length` bytes from `start`, or to the end of the file however
/// long it grows when `length` is 0 (as `fcntl(2)` counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteRange {
    pub start: u64,
    pub length: u64,
}

impl ByteRange {
    /// The `fcntl` record-lock request of `kind` (`F_RDLCK`, `F_WRLCK`, `F_UNLCK`) for this
    /// range, for the OFD calls.
    #[must_use]
    pub fn request(self, kind: libc::c_int) -> libc::flock {
        libc::flock {
            #[allow(clippy::cast_possible_truncation)] // F_RDLCK, F_WRLCK, F_UNLCK are 0, 1, 2
            l_type: kind as libc::c_short,
            #[allow(clippy::cast_possible_truncation)]
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: libc::off_t::try_from(self.start).unwrap_or(libc::off_t::MAX),
            l_len: libc::off_t::try_from(self.length).unwrap_or(libc::off_t::MAX),
            // Must be 0 for OFD requests.
            l_pid: 0,
        }
    }
}

impl Request {
    /// The usage error for `--fd`, `-u` or a byte range with a kind that has no descriptor
    /// to lock in place.
    ///
    /// # Errors
    /// When one of them was given.
    pub fn refuse_descriptor_options(&self, kind: &str) -> Result<(), Error> {
        let given = if self.fd.is_some() {
            "--fd"
        } else if self.unlock {
            "--unlock"
        } else if self.range.is_some() {
            "--start and --length"
        } else {
            return Ok(());
        };
        Err(Error::Usage {
            message: format!(
                "{given} applies to exec and try with the kernel (flock) and --fcntl kinds, \
                 not to a {kind} lock"
            ),
        })
    }
}

/// How strongly a kind claims a request; the strongest claim wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Claim {
    /// The kind a subcommand takes when no option names another (kernel for exec, sqlite for
    /// read and write).
    ByDefault,
    /// An option asks for it (`--fcntl`, `--soft`).
    ByOption,
    /// LOCK's own form names it (`etcd://`), whatever the options say.
    ByName,
}

/// What `status` has read of a lock file before asking its kind for the rest.
pub struct LockFile<'a> {
    /// Absolute.
    pub path: &'a Path,
    pub meta: &'a std::fs::Metadata,
    pub id: FileId,
    pub locks: &'a KernelLocks,
}

/// A lock kind: one protocol, one file under `src/kind/`.
pub trait Kind: Sync {
    /// The name in `FLOCKRUN_KIND`, `FLOCKRUN_HELD`, `status` and messages.
    fn name(&self) -> &'static str;

    /// Whether (and how strongly) this kind serves `request`.
    fn claims(&self, request: &Request) -> Option<Claim>;

    /// The lock `request` names, or a usage error for an option this kind cannot honour.
    ///
    /// # Errors
    /// `Usage`, or an error about LOCK itself.
    fn target(&self, request: &Request) -> Result<Target, Error>;

    /// For `status`: the whole report when LOCK's form names this kind (`etcd://…`), else
    /// `None`.
    fn inspect_named(
        &self,
        _lock: &std::ffi::OsStr,
        _etcd: &crate::kind::etcd::access::Access,
    ) -> Option<Result<LockStatus, Error>> {
        None
    }

    /// Whether `status --kind NAME` can inspect a lock file as this kind.
    fn inspects_files(&self) -> bool {
        true
    }

    /// The `/proc/locks` class of this kind's kernel locks, which tells `status` a file's
    /// kind while it is locked.
    fn proc_class(&self) -> Option<&'static str> {
        None
    }

    /// Whether a lock file no kernel lock tells about is this kind's, by its content.
    fn recognises(&self, _file: &LockFile<'_>) -> bool {
        false
    }

    /// Whether files beside LOCK (absolute) show it is this kind's, for a kind whose lock is
    /// not the file LOCK names.
    fn recognises_beside(&self, _lock: &Path) -> bool {
        false
    }

    /// Fills `status` in for an existing lock file of this kind.
    ///
    /// # Errors
    /// When what `status` needs cannot be read.
    fn inspect_file(&self, status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error>;

    /// Fills `status` in for a LOCK path where no file exists.
    ///
    /// # Errors
    /// When what `status` needs cannot be read.
    fn inspect_missing(&self, _status: &mut LockStatus) -> Result<(), Error> {
        Ok(())
    }
}

impl std::fmt::Debug for dyn Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A lock to take: LOCK and the options, resolved for one kind.
pub struct Target {
    /// The kind's name.
    pub kind: &'static str,
    pub mode: LockMode,
    /// How the kind names modes (`FLOCKRUN_MODE`, messages): `LockMode::name` or
    /// `LockMode::read_write_name`.
    pub mode_names: fn(LockMode) -> &'static str,
    /// What `FLOCKRUN_LOCK` gives COMMAND: the absolute path of a lock file, or LOCK itself.
    pub lock: OsString,
    /// LOCK as messages show it before the lock is taken.
    pub shown: String,
    pub deadline: Deadline,
    /// `-o`: COMMAND must not inherit the lock.
    pub close: bool,
    /// `-F`: COMMAND replaces flockrun (only for a lock a descriptor carries).
    pub no_fork: bool,
    pub lockable: Box<dyn Lockable>,
}

impl Target {
    /// The mode as the kind names it.
    #[must_use]
    pub fn mode_name(&self) -> &'static str {
        (self.mode_names)(self.mode)
    }
}

/// The part of a target only its kind knows: how to take it.
pub trait Lockable {
    /// The key under which an ancestor's hold of this lock is recorded in `FLOCKRUN_HELD`, if
    /// the lock can be identified before it is taken (a lock file that does not exist yet
    /// cannot be held by anyone).
    fn held_key(&self) -> Option<HeldKey>;

    /// The mode in which a descriptor this process inherited already holds the lock `key`;
    /// only kinds whose lock a descriptor carries can say.
    fn inherited_mode(&self, _key: HeldKey) -> Option<LockMode> {
        None
    }

    /// Whether to try the lock once before asking `inherited_mode`, which for the
    /// descriptor kinds scans this process's descriptors: a lock taken at the first try
    /// cannot be held by an ancestor in a conflicting mode, so an uncontended lock never
    /// pays for the scan. Kinds whose attempt is costly (etcd grants a lease) or leaves
    /// something behind keep the default.
    fn look_first(&self) -> bool {
        false
    }

    /// Takes the lock before `deadline`, telling `observer` about the wait.
    ///
    /// # Errors
    /// `Busy`, `TimedOut`, `Interrupted`, or what went wrong with LOCK.
    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error>;
}

/// A lock this process holds. Dropping it releases the lock (as `release` does, without the
/// warning).
pub trait Hold {
    /// What `FLOCKRUN_HELD` records for the held lock.
    fn key(&self) -> HeldKey;

    /// How long the wait took.
    fn waited(&self) -> Duration;

    /// The locked descriptor COMMAND can inherit; `None` when the lock belongs to this
    /// process alone (then COMMAND dies with flockrun, so it never runs on unlocked).
    fn descriptor(&self) -> Option<RawFd> {
        None
    }

    /// A descriptor COMMAND inherits although the lock is not on it: the connection of a
    /// lock the server frees when the connection closes, so that the connection stays open,
    /// and the lock held, until COMMAND and what it started are gone even if flockrun is
    /// killed (they die with flockrun, but the kernel closes flockrun's descriptors first).
    fn session_fd(&self) -> Option<RawFd> {
        None
    }

    /// Variables COMMAND gets besides `FLOCKRUN_LOCK`, `FLOCKRUN_KIND`, `FLOCKRUN_MODE` and
    /// `FLOCKRUN_HELD` (a fencing token, names other tools use).
    fn env(&self) -> Vec<(OsString, OsString)> {
        Vec::new()
    }

    /// What `-v` adds after "locked LOCK (mode, kind) after waiting T".
    fn details(&self) -> String {
        String::new()
    }

    /// For a hold that can stop being ours while COMMAND runs: how the supervisor notices.
    fn loss(&self) -> Option<LostWatch> {
        None
    }

    /// Why the hold was lost, if it was.
    fn lost(&self) -> Option<String> {
        None
    }

    /// Whether LOCK still names the file this lock is on (a lock that is no file: always).
    fn still_named(&self) -> bool {
        true
    }

    /// Releases the lock; a warning when it could not be released cleanly.
    #[must_use]
    fn release(self: Box<Self>) -> Option<String> {
        None
    }

    /// Releases the lock and says whether LOCK still named its file up to then (see
    /// `still_named`) and what `release` warns of. A kind that can tell whether its file was
    /// still named after letting go does so, so that a waiter is not kept waiting for the check.
    #[must_use]
    fn release_named(self: Box<Self>) -> (bool, Option<String>) {
        let named = self.still_named();
        (named, self.release())
    }
}

/// How many times a won lock may turn out to be on a stale inode before giving up; each
/// round needs another process to delete or replace the lock file in between.
const REPLACED_RETRIES: usize = 1000;

/// Runs `round` until it takes the lock: a round yields `None` when the lock it won no
/// longer guards the file at `path` (deleted or replaced while it waited), and the next
/// round starts over on whatever the path names now.
///
/// # Errors
/// What a round fails with, or `Open` when the file keeps being replaced.
pub fn retry_while_replaced<T>(
    path: &Path,
    mut round: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    for _ in 0..REPLACED_RETRIES {
        if let Some(won) = round()? {
            return Ok(won);
        }
    }
    Err(Error::Open {
        path: path.to_owned(),
        hint: "it keeps being deleted or replaced by another process".to_owned(),
        source: std::io::Error::from_raw_os_error(libc::ESTALE),
    })
}
