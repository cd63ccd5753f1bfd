//! The soft-lease kind: `exec|try --soft --ttl SECONDS`, py-filelock's `SoftFileLease`, for
//! filesystems whose kernel locks do not reach every host (NFS, SMB, FUSE). The lock is a
//! `filelock/2` marker at LOCK with `mode=lease`, created with `O_EXCL` and renewed (its
//! times touched through our descriptor) every TTL/3 by a thread. A contender takes it over
//! once it has watched it unchanged for the TTL on its own monotonic clock, whatever the
//! hosts' clocks say, or at once when its owner is provably gone on the contender's host; the
//! takeover needs no `RENAME_EXCHANGE` (see `takeover`).
//!
//! flockrun itself holds the lease, so COMMAND inherits nothing and dies with flockrun. When
//! the lease cannot be renewed in time (the marker gone or replaced, renewals failing, the
//! file server hung), COMMAND is stopped before a contender could take over, and flockrun
//! exits 79. Nothing on the lock's filesystem is touched on the supervisor's thread while
//! COMMAND runs, so a hung server cannot hold the supervisor.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::marker::heartbeat::{self, Beat, Renew, Renewal};
use super::marker::slots as marker_slots;
use super::marker::file::{self as marker_file, DirectoryWatch, Unchanged, Woke};
use super::marker::status::{self as marker_status, Reader};
use super::marker::takeover::{self, Guard};
use crate::duration::Ttl;
use crate::error::Error;
use crate::identity::{self, StartToken};
use crate::inspect::marker::{self, Content, Record, RecordMode, Verdict};
use crate::inspect::sighting::FileId;
use crate::lock::{Claim, Hold, Kind, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::mounts;
use crate::nested::HeldKey;
use crate::open;
use crate::status::{LockStatus, State};
use crate::supervise::LostWatch;
use crate::wait::{self, Deadline, Polling, WaitObserver};

pub struct Lease;

/// A malformed marker is taken over once unchanged this long, as py-filelock does.
const MALFORMED_GRACE: Duration = Duration::from_secs(2);
/// First nap between attempts and its cap: py-filelock's lease polls every 0.05 s.
const FIRST_NAP: Duration = Duration::from_millis(1);
const MAX_NAP: Duration = Duration::from_millis(50);
/// On NFS, the longest sleep on a holder's release signal before looking at the marker
/// again: a contender must see a dead holder's marker age to take it over within the TTL
/// and half a second.
const SIGNALLED_WAIT: Duration = Duration::from_millis(500);
/// How long release may wait for the filesystem before leaving the marker to expire.
const RELEASE_BUDGET: Duration = Duration::from_secs(2);

impl Kind for Lease {
    fn name(&self) -> &'static str {
        "soft-lease"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        (request.soft && request.ttl.is_some() && !request.verb.is_read_write())
            .then_some(Claim::ByOption)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_descriptor_options("soft lease")?;
        let path = request.lock_file()?;
        let ttl = request.ttl.unwrap_or(Ttl::from_secs(30));
        Ok(Target {
            kind: self.name(),
            mode: LockMode::Exclusive,
            mode_names: LockMode::name,
            lock: path.clone().into_os_string(),
            shown: request.lock.display().to_string(),
            deadline: request.deadline,
            close: request.close,
            no_fork: false,
            lockable: Box::new(LeaseTarget {
                path,
                given: request.lock.clone(),
                ttl,
                create_mode: request.create_mode,
                slots: request.slots,
            }),
        })
    }

    fn recognises(&self, file: &LockFile<'_>) -> bool {
        matches!(
            marker::read(file.path),
            Ok(Some(Content::Protocol2(Record {
                mode: RecordMode::Lease { .. },
                ..
            })))
        )
    }

    fn inspect_file(&self, status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        marker_status::fill(status, file.path)
    }

    fn recognises_beside(&self, lock: &Path) -> bool {
        marker_slots::beside(lock) == Some(true)
    }

    fn inspect_missing(&self, status: &mut LockStatus) -> Result<(), Error> {
        if marker_slots::beside(&status.path).is_some() {
            let lock = status.path.clone();
            return marker_slots::fill_status(status, &lock);
        }
        status
            .warnings
            .extend(marker_status::stranded_warnings(&status.path));
        if !status.warnings.is_empty() {
            status.state = State::Held;
        }
        Ok(())
    }
}

/// The record of a lease, byte for byte as py-filelock 4.2 writes it.
fn lease_record(token: &str, ttl: Ttl) -> String {
    let pid = std::process::id();
    let mut record = format!(
        "filelock/2\npid={pid}\nhost={}\nmode=lease\ntoken={token}\nduration={}\n",
        identity::host_name(),
        ttl.python_repr()
    );
    if let Some(start) = i32::try_from(pid).ok().and_then(StartToken::of) {
        let _ = writeln!(record, "start={start}");
    }
    record
}

struct LeaseTarget {
    /// Absolute.
    path: PathBuf,
    /// As given, for the nesting check.
    given: PathBuf,
    ttl: Ttl,
    create_mode: Option<u32>,
    /// `--slots N`: a semaphore of N lease markers beside LOCK.
    slots: Option<u16>,
}

/// What a contender remembers between its attempts.
struct Contest {
    /// How long the marker at LOCK has looked the same.
    seen: Unchanged,
    guard: Guard,
    /// How long each takeover leftover beside LOCK has looked the same.
    leftovers: HashMap<PathBuf, Unchanged>,
    /// The kind of marker already warned about, so a wait warns once.
    warned: bool,
}

/// Warns where this host may answer `fstat` on the marker from a cache for so long that a
/// contender here could miss the holder's renewals and take over a live lease: the TTL must
/// exceed 1.5 times the cache time (see "Shared filesystems" in the README).
fn warn_of_attribute_cache(path: &Path, ttl: Duration, observer: &mut dyn WaitObserver) {
    let Some(directory) = path.parent() else {
        return;
    };
    let Ok(opened) = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(directory)
    else {
        return;
    };
    let Some((mount, cache)) = mounts::attribute_cache(&opened) else {
        return;
    };
    if ttl.as_secs_f64() <= cache.as_secs_f64() * 1.5 {
        observer.warn(&format!(
            "{}: this is a {} mounted nocto, which may keep file attributes cached for {} s, \
             so a contender on this host could miss the holder's renewals with a TTL of {} s; \
             give every user of the lease a TTL above {} s, or mount with actimeo= lower",
            path.display(),
            mount.describe(),
            cache.as_secs(),
            ttl.as_secs_f64(),
            cache.as_secs() * 3 / 2,
        ));
    }
}

impl Lockable for LeaseTarget {
    fn held_key(&self) -> Option<HeldKey> {
        // A semaphore's LOCK is no marker: its slots are.
        if self.slots.is_some() {
            return None;
        }
        HeldKey::of_path(Lease.name(), &self.given)
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let paths = marker_slots::marker_paths(&self.path, self.slots)?;
        let path = &paths[0];
        let ttl = self.ttl.duration();
        warn_of_attribute_cache(path, ttl, observer);
        let record = lease_record(&marker_file::random_hex(), self.ttl);
        let mut contests: Vec<Contest> = paths
            .iter()
            .map(|_| Contest {
                seen: Unchanged::default(),
                guard: Guard::new(ttl),
                leftovers: HashMap::new(),
                warned: false,
            })
            .collect();
        let mut polling = Polling::new(FIRST_NAP, MAX_NAP);
        // Created at the first contention only: an uncontended lock never pays for it. The
        // slot markers share LOCK's directory, so one watch sees each of them change.
        let mut watch: Option<DirectoryWatch> = None;
        let won = 'wait: loop {
            if let Some(signal) = wait::stop_signal() {
                break Err(Error::Interrupted { signal });
            }
            for (slot, (one, contest)) in paths.iter().zip(contests.iter_mut()).enumerate() {
                match self.attempt(one, &record, contest, observer) {
                    Ok(Some(file)) => {
                        break 'wait Ok((file, one, u16::try_from(slot).unwrap_or(u16::MAX)));
                    }
                    Ok(None) => {}
                    Err(e) => break 'wait Err(e),
                }
            }
            let sighting = || marker_status::sight_all(&paths, Reader::Lease);
            if let Some(nap) = polling.next_nap(deadline, observer, &sighting) {
                // On NFS, sleeping on the holder's release signal; the marker is looked at
                // again every half second all the same, to see it age.
                // While the holder's release signal is up, one fresh look at the markers'
                // times per sleep tells whether they are still renewed; only a change of
                // hands, or a marker left unchanged for the TTL, needs a full attempt.
                let watch = watch.get_or_insert_with(|| DirectoryWatch::new(path));
                while watch.wait_for_release(path, nap, deadline.remaining(), SIGNALLED_WAIT)
                    == Woke::Quiet
                    && wait::stop_signal().is_none()
                    && deadline.remaining() != Some(Duration::ZERO)
                    && paths.iter().zip(contests.iter_mut()).all(|(one, contest)| {
                        marker_file::fresh_state(one)
                            .is_some_and(|state| contest.seen.observe(state) < ttl)
                    })
                {}
                continue;
            }
            // Named as LOCK, also for a semaphore whose markers are beside it.
            break Err(wait::not_acquired(&self.path, deadline, sighting()));
        };
        if polling.blocked() {
            observer.finished();
        }
        let (file, path, slot) = won?;
        if let Some(slots) = self.slots
            && let Err(e) = marker_slots::settle_count(&self.path, slots, slot, self.create_mode)
        {
            // Give the slot back: our marker, still named by its path.
            if open::still_named_by(&file, path) {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        marker_file::signal_release(&file, watch.as_ref().map(DirectoryWatch::release_signals));
        let id = FileId::of(
            &file
                .metadata()
                .map_err(|e| Error::system("fstat on the lease marker", e))?,
        );
        let meta = file
            .metadata()
            .map_err(|e| Error::system("fstat on the lease marker", e))?;
        let second = file
            .try_clone()
            .map_err(|e| Error::system("duplicating the lease marker's descriptor", e))?;
        let renewer = Renewer {
            file,
            path: path.clone(),
            id: (meta.dev(), meta.ino()),
            misses: 0,
        };
        let beat = Beat::start(renewer, "its marker".to_owned(), ttl, Instant::now())?;
        Ok(Box::new(HeldLease {
            beat,
            file: second,
            path: path.clone(),
            key: HeldKey {
                kind: Lease.name(),
                id,
            },
            waited: deadline.elapsed(),
            _watch: watch,
            slot: self.slots.map(|slots| (slot, slots)),
        }))
    }
}

impl LeaseTarget {
    /// One attempt: create the marker, or judge the one that is there and take it over if
    /// its lease ran out or its owner is provably gone. `Ok(None)` means contention.
    fn attempt(
        &self,
        path: &Path,
        record: &str,
        state: &mut Contest,
        observer: &mut dyn WaitObserver,
    ) -> Result<Option<File>, Error> {
        let ttl = self.ttl.duration();
        if state.leftovers_remain(path, ttl) {
            return Ok(None);
        }
        match marker_file::create_marker(path, record, self.create_mode) {
            Ok(file) => return Ok(Some(file)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(open::classify_create_error(path, e)),
        }
        // Pinned while judged, so the judged inode's number cannot be reused meanwhile.
        let Some((pin, judged)) = marker_file::pin_inode(path) else {
            return Ok(None);
        };
        let read = marker::read_with_meta(path).map_err(|e| Error::Open {
            path: path.to_path_buf(),
            hint: "cannot read the existing marker; ask its owner for read access".to_owned(),
            source: e,
        })?;
        // What was read must be the pinned marker.
        let Some((content, fresh)) = read.filter(|(_, m)| {
            (m.dev(), m.ino()) == (judged.dev(), judged.ino())
        }) else {
            return Ok(None);
        };
        // Judged on the attributes of the open file: on NFS they come from the server.
        let unchanged_for = state.seen.observe(marker_file::state_of(&fresh));
        let dead = marker::judge(&content) == Verdict::Stale;
        let take = match &content {
            Content::Protocol2(Record {
                mode:
                    RecordMode::Lease {
                        duration,
                        duration_text,
                        ..
                    },
                ..
            }) => {
                // Compared as py-filelock compares them: the same float or a mismatch.
                #[allow(clippy::float_cmp)]
                if !dead && *duration != self.ttl.as_secs_f64() {
                    return Err(Error::NotALock {
                        path: path.to_path_buf(),
                        reason: format!(
                            "holds a soft lease with a TTL of {duration_text} s, and this \
                             flockrun asked for --ttl {}: every process sharing a lease must \
                             give it the same TTL (py-filelock's lease_duration); use --ttl \
                             {duration} (flockrun left the lease alone)",
                            self.ttl
                        ),
                    });
                }
                dead || unchanged_for >= ttl
            }
            Content::Malformed(_) => unchanged_for >= MALFORMED_GRACE,
            other => {
                // A marker of another contract: freed only by its owner's provable death.
                if !dead && !state.warned {
                    state.warned = true;
                    observer.warn(&format!(
                        "{} is {}, not a soft lease: flockrun waits for its owner to release \
                         it and never ages it out; every process on this lock must use --soft \
                         --ttl {}",
                        path.display(),
                        other_contract(other),
                        self.ttl
                    ));
                }
                dead
            }
        };
        if !take {
            return Ok(None);
        }
        let taken = takeover::take_over(path, &fresh, record, self.create_mode, &mut state.guard)?;
        drop(pin); // only now may the judged inode's number be reused
        Ok(taken)
    }
}

/// What a marker of another contract is, for the warning.
fn other_contract(content: &Content) -> String {
    match content {
        Content::Owner { pid, host, .. } => format!(
            "held by pid {pid} on host {} with a classic soft-lock marker (--soft without --ttl, or \
             py-filelock's SoftFileLock)",
            identity::readable_host(host)
        ),
        Content::Protocol2(Record {
            mode: RecordMode::Exclusive,
            ..
        }) => "held with a py-filelock MarkerSoftFileLock".to_owned(),
        Content::Protocol2(Record {
            mode: RecordMode::Unknown(mode),
            ..
        }) => format!("held with a filelock/2 record of mode {mode}, which flockrun does not know"),
        Content::Empty => "an empty marker".to_owned(),
        Content::Strict => "a py-filelock StrictSoftFileLock sentinel".to_owned(),
        _ => "another kind of marker".to_owned(),
    }
}

impl Contest {
    /// Leftovers of an interrupted takeover beside LOCK may hold a live holder's marker
    /// moved aside: the lock counts as held while any remains. A live holder renews its
    /// marker wherever it sits, so one unchanged for the TTL is nobody's: it is removed.
    fn leftovers_remain(&mut self, path: &Path, ttl: Duration) -> bool {
        let stranded = marker::stranded(path);
        self.leftovers.retain(|p, _| stranded.contains(p));
        let mut remain = false;
        for file in stranded {
            let Some((_pin, judged)) = marker_file::pin_inode(&file) else {
                continue; // gone meanwhile
            };
            let seen = self.leftovers.entry(file.clone()).or_default();
            let garbage = seen.observe(marker_file::state_of(&judged)) >= ttl
                && marker_file::same_file(&file, &judged);
            if !(garbage && fs::remove_file(&file).is_ok()) {
                remain = true;
            }
        }
        remain
    }
}

/// The lease's part of the heartbeat: LOCK must still name our marker, whose times are
/// touched through our descriptor.
struct Renewer {
    /// Our marker, kept open for the whole hold: renewals touch it through this descriptor,
    /// so they can only ever touch our own inode.
    file: File,
    path: PathBuf,
    id: (u64, u64),
    /// Renewals in a row that found LOCK not naming our marker.
    misses: u32,
}

impl Renew for Renewer {
    /// A marker missing or replaced at two renewals in a row (one could be a peer's
    /// takeover probe that puts it back) means the lease is gone.
    fn renew(&mut self) -> Renewal {
        match self.touch() {
            Ok(true) => {
                self.misses = 0;
                Renewal::Renewed
            }
            Ok(false) => {
                self.misses += 1;
                if self.misses >= 2 {
                    Renewal::Lost(format!(
                        "{} was removed or now names another file: another process took the \
                         lease over",
                        self.path.display()
                    ))
                } else {
                    Renewal::Failed("the marker was not where it belongs".to_owned())
                }
            }
            Err(e) => heartbeat::failed(&e),
        }
    }

    /// Unlinks LOCK only if it still names our marker (before the descriptor closes, so the
    /// inode number cannot be reused by a successor's marker in between).
    fn release(&mut self) {
        if open::still_named_by(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Renewer {
    /// `Ok(false)` when LOCK no longer names our marker.
    fn touch(&self) -> io::Result<bool> {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => {}
            Ok(_) => return Ok(false),
            Err(e) if crate::open::vanished(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        // SAFETY: a descriptor we own; a null times pointer sets both times to now.
        if unsafe { libc::futimens(self.file.as_raw_fd(), std::ptr::null()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(true)
    }
}

/// A held lease.
struct HeldLease {
    beat: Arc<Beat<Renewer>>,
    /// The marker (a second descriptor on it), for the deleted-lock check.
    file: File,
    path: PathBuf,
    key: HeldKey,
    waited: Duration,
    /// The inotify watch the wait used: closing it waits for the kernel to reap its marks,
    /// so it is closed after the marker is gone, not inside the handoff.
    _watch: Option<DirectoryWatch>,
    /// For a semaphore: the slot held, and N.
    slot: Option<(u16, u16)>,
}

impl Hold for HeldLease {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.waited
    }

    fn loss(&self) -> Option<LostWatch> {
        Some(self.beat.watch())
    }

    fn env(&self) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        crate::lock::slot_env(self.slot)
    }

    fn details(&self) -> String {
        crate::lock::slot_details(self.slot)
    }

    fn lost(&self) -> Option<String> {
        self.beat.lost_reason()
    }

    fn still_named(&self) -> bool {
        // Never asked of the filesystem once lost: it may be the part that hangs.
        self.beat.is_lost() || open::still_named_by(&self.file, &self.path)
    }

    fn release(self: Box<Self>) -> Option<String> {
        self.beat.end(RELEASE_BUDGET)
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // After release this finds the thread done; on an early return it releases.
        let _ = self.beat.end(RELEASE_BUDGET);
    }
}
