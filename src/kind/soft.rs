//! The soft kind: py-filelock's `SoftFileLock`, for filesystems whose kernel locks do not
//! work. The lock is a marker file at LOCK, created with `O_CREAT|O_EXCL` and holding
//! `pid\nhost\nstart_token\n` (flockrun's own pid: flockrun outlives the hold, and COMMAND
//! dies with it). Release unlinks the marker only if the path still names our inode.
//!
//! A marker is reclaimed only on proof that its owner is gone (same host and the pid dead or
//! reused), or after it has stayed malformed and unchanged for 2 s. Reclaiming swaps our
//! own marker in with `renameat2(RENAME_EXCHANGE)`, so the path never stands empty for a
//! third process to grab; where the filesystem refuses the exchange, nothing is broken and
//! the wait goes on. Waiting polls with backoff and, on local filesystems, wakes at once on
//! an inotify event in the lock's directory.
#![allow(unsafe_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::marker::file::{Woke, self as marker_file, DirectoryWatch, Unchanged};
use super::marker::slots as marker_slots;
use super::marker::status::{self as marker_status, Reader};
use super::marker::takeover::{self, GUARD_STALE_MIN, Guard};
use crate::error::Error;
use crate::inspect::marker::{self, Content, Record, RecordMode, Verdict};
use crate::inspect::sighting::FileId;
use crate::lock::{Claim, Hold, Kind, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::open;
use crate::status::{LockStatus, State};
use crate::wait::{self, Deadline, Polling, WaitObserver};

pub struct Soft;

impl Kind for Soft {
    fn name(&self) -> &'static str {
        "soft"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        (request.soft && !request.verb.is_read_write()).then_some(Claim::ByOption)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_descriptor_options("soft")?;
        request.refuse_ttl()?;
        let path = request.lock_file()?;
        Ok(Target {
            kind: self.name(),
            mode: LockMode::Exclusive,
            mode_names: LockMode::name,
            lock: path.clone().into_os_string(),
            shown: request.lock.display().to_string(),
            deadline: request.deadline,
            close: request.close,
            no_fork: false,
            lockable: Box::new(SoftTarget {
                path,
                given: request.lock.clone(),
                create_mode: request.create_mode,
                slots: request.slots,
            }),
        })
    }

    fn recognises(&self, file: &LockFile<'_>) -> bool {
        matches!(
            marker::read(file.path),
            Ok(Some(
                Content::Owner { .. }
                    | Content::Strict
                    | Content::Protocol2(Record {
                        mode: RecordMode::Exclusive | RecordMode::Unknown(_),
                        ..
                    })
            ))
        )
    }

    fn inspect_file(&self, status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        marker_status::fill(status, file.path)
    }

    fn recognises_beside(&self, lock: &Path) -> bool {
        marker_slots::beside(lock) == Some(false)
    }

    fn inspect_missing(&self, status: &mut LockStatus) -> Result<(), Error> {
        if marker_slots::beside(&status.path).is_some() {
            let lock = status.path.clone();
            return marker_slots::fill_status(status, &lock);
        }
        status.warnings.extend(marker_status::stranded_warnings(&status.path));
        if !status.warnings.is_empty() {
            status.state = State::Held;
        }
        Ok(())
    }
}

struct SoftTarget {
    /// Absolute.
    path: PathBuf,
    /// As given, for the nesting check.
    given: PathBuf,
    create_mode: Option<u32>,
    /// `--slots N`: a semaphore of N markers beside LOCK.
    slots: Option<u16>,
}

impl Lockable for SoftTarget {
    fn held_key(&self) -> Option<HeldKey> {
        // A semaphore's LOCK is no marker: its slots are.
        if self.slots.is_some() {
            return None;
        }
        HeldKey::of_path(Soft.name(), &self.given)
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let paths = marker_slots::marker_paths(&self.path, self.slots)?;
        let (marker, id, slot) = crate::lock::retry_while_replaced(&self.path, || {
            let (marker, slot) = acquire(&self.path, &paths, deadline, self.create_mode, observer)?;
            // A marker whose inode cannot be read is dropped (and removed) and taken again.
            Ok(marker.id().map(|id| (marker, id, slot)))
        })?;
        if let Some(slots) = self.slots {
            // On a refusal the marker is dropped, which gives the slot back.
            marker_slots::settle_count(&self.path, slots, slot, self.create_mode)?;
        }
        Ok(Box::new(HeldSoft {
            marker,
            key: HeldKey {
                kind: Soft.name(),
                id,
            },
            waited: deadline.elapsed(),
            slot: self.slots.map(|slots| (slot, slots)),
        }))
    }
}

/// A held soft lock: our marker, removed when this is dropped.
struct HeldSoft {
    marker: HeldMarker,
    key: HeldKey,
    waited: Duration,
    /// For a semaphore: the slot held, and N.
    slot: Option<(u16, u16)>,
}

impl Hold for HeldSoft {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.waited
    }

    fn still_named(&self) -> bool {
        open::still_named_by(&self.marker.file, &self.marker.path)
    }

    fn env(&self) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        crate::lock::slot_env(self.slot)
    }

    fn details(&self) -> String {
        crate::lock::slot_details(self.slot)
    }
}

/// A malformed marker is evicted once it has stayed unchanged this long (py-filelock 4.x).
const MALFORMED_GRACE: Duration = Duration::from_secs(2);
/// First nap between attempts and its cap; inotify usually ends a nap early.
const FIRST_NAP: Duration = Duration::from_millis(1);
const MAX_NAP: Duration = Duration::from_millis(50);
/// On NFS, the longest sleep on a holder's release signal before looking again (for a
/// holder that died on this host, or a stop signal).
const SIGNALLED_WAIT: Duration = Duration::from_secs(1);

/// Our marker at the lock path; dropping it releases the lock.
#[derive(Debug)]
struct HeldMarker {
    file: File,
    path: PathBuf,
    /// The inotify watch the wait used, if it waited. Closing an inotify descriptor waits
    /// for the kernel to reap its marks (several milliseconds), so it is closed only after
    /// the marker is gone: after the handoff, not inside it.
    #[allow(dead_code)] // held for its Drop, which runs after HeldMarker's own
    watch: Option<DirectoryWatch>,
}

impl Drop for HeldMarker {
    fn drop(&mut self) {
        // Unlink only our own inode, and before closing it, so the inode number cannot be
        // reused by a successor's marker in between.
        if open::still_named_by(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl HeldMarker {
    fn id(&self) -> Option<FileId> {
        self.file.metadata().ok().map(|m| FileId::of(&m))
    }
}

/// Takes the soft lock at one of `paths` (one path, or a semaphore's slot markers, in slot
/// order), and says which. `lock` is LOCK, as messages name it.
fn acquire(
    lock: &Path,
    paths: &[PathBuf],
    deadline: &Deadline,
    create_mode: Option<u32>,
    observer: &mut dyn WaitObserver,
) -> Result<(HeldMarker, u16), Error> {
    let path = &paths[0];
    let record = marker_file::owner_record();
    let mut guards: Vec<Guard> = paths.iter().map(|_| Guard::new(GUARD_STALE_MIN)).collect();
    let mut polling = Polling::new(FIRST_NAP, MAX_NAP);
    // Created at the first contention only: an uncontended lock never pays for its teardown.
    // The slot markers share LOCK's directory, so one watch sees each of them change.
    let mut watch: Option<DirectoryWatch> = None;
    // How long each malformed marker has stayed as it is.
    let mut malformed: Vec<Unchanged> = paths.iter().map(|_| Unchanged::default()).collect();
    let result = 'wait: loop {
        if let Some(signal) = wait::stop_signal() {
            break Err(Error::Interrupted { signal });
        }
        let signals = watch.as_ref().map(DirectoryWatch::release_signals);
        for (slot, one) in paths.iter().enumerate() {
            match attempt(
                one,
                &record,
                create_mode,
                &mut malformed[slot],
                &mut guards[slot],
                signals,
            ) {
                Ok(Some(mut held)) => {
                    held.watch = watch.take();
                    break 'wait Ok((held, u16::try_from(slot).unwrap_or(u16::MAX)));
                }
                Ok(None) => {}
                Err(e) => break 'wait Err(e),
            }
        }
        let sighting = || marker_status::sight_all(paths, Reader::Classic);
        if let Some(nap) = polling.next_nap(deadline, observer, &sighting) {
            // A release signal still up says the holder holds: sleep on it again.
            let watch = watch.get_or_insert_with(|| DirectoryWatch::new(path));
            while watch.wait_for_release(path, nap, deadline.remaining(), SIGNALLED_WAIT)
                == Woke::Quiet
                && wait::stop_signal().is_none()
                && deadline.remaining() != Some(Duration::ZERO)
            {}
            continue;
        }
        break Err(wait::not_acquired(
            lock,
            deadline,
            marker_status::sight_all(paths, Reader::Classic),
        ));
    };
    if polling.blocked() {
        observer.finished();
    }
    result
}

/// One attempt: create the marker, or judge the one that is there and take it over if its
/// owner is provably gone. `Ok(None)` means contention.
fn attempt(
    path: &Path,
    record: &str,
    create_mode: Option<u32>,
    malformed: &mut Unchanged,
    guard: &mut Guard,
    signals: Option<bool>,
) -> Result<Option<HeldMarker>, Error> {
    // Leftovers of an interrupted takeover may hold a live owner's marker: fail closed,
    // unless they can be proved garbage.
    if leftovers_remain(path) {
        return Ok(None);
    }
    match marker_file::create_marker(path, record, create_mode) {
        Ok(file) => {
            marker_file::signal_release(&file, signals);
            return Ok(Some(HeldMarker {
                file,
                path: path.to_owned(),
                watch: None,
            }));
        }
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(open::classify_create_error(path, e)),
    }
    // Pin the marker's inode with an O_PATH descriptor before judging it: while pinned, its
    // inode number cannot be reused, so "the path still names the judged marker" cannot be
    // fooled by a holder that releases and a newcomer whose new marker gets the same number.
    let Some((pin, judged)) = marker_file::pin_inode(path) else {
        return Ok(None); // gone meanwhile: the next attempt creates it
    };
    let content = marker::read(path).map_err(|e| Error::Open {
        path: path.to_owned(),
        hint: "cannot read the existing marker; ask its owner for read access".to_owned(),
        source: e,
    })?;
    // The content must be the pinned marker's.
    let (Some(content), true) = (content, marker_file::same_file(path, &judged)) else {
        return Ok(None);
    };
    let reclaim = match marker::judge(&content) {
        Verdict::Stale => true,
        Verdict::Malformed => malformed.observe(marker_file::state_of(&judged)) >= MALFORMED_GRACE,
        Verdict::Held | Verdict::ForeignHost => false,
    };
    if !reclaim {
        return Ok(None);
    }
    let taken = takeover::take_over(path, &judged, record, create_mode, guard)?;
    drop(pin); // only now may the judged inode's number be reused
    Ok(taken.map(|file| {
        marker_file::signal_release(&file, signals);
        HeldMarker {
            file,
            path: path.to_owned(),
            watch: None,
        }
    }))
}

/// Removes the leftovers of interrupted takeovers beside `path` that nobody can act on any
/// more, and says whether any remain. A leftover is garbage when the process named in its
/// file name (the breaker) is gone and the marker inside is provably dead or malformed: a
/// live holder's marker that a dying breaker left aside stays, and keeps the lock held.
fn leftovers_remain(path: &Path) -> bool {
    let mut remain = false;
    for file in marker::stranded(path) {
        let breaker_alive = marker::stranded_breaker(&file).is_none_or(marker::pid_exists);
        let Some((_pin, judged)) = marker_file::pin_inode(&file) else {
            continue; // gone meanwhile
        };
        let garbage = !breaker_alive
            && matches!(marker::read(&file), Ok(Some(content))
                if matches!(marker::judge(&content), Verdict::Stale | Verdict::Malformed))
            && marker_file::same_file(&file, &judged);
        if !(garbage && fs::remove_file(&file).is_ok()) {
            remain = true;
        }
    }
    remain
}
