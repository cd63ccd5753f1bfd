//! Replacing a marker whose owner is gone (or whose lease ran out) with our own, safely while
//! other contenders try the same. The caller has pinned the judged marker (an `O_PATH`
//! descriptor, so its inode number cannot be reused) and passes what it judged.
//!
//! Where the filesystem has `renameat2(RENAME_EXCHANGE)`, our marker is swapped in for the
//! judged one in one step, as py-filelock 4.2 does: the path never stands empty, and if the
//! file swapped out is not the judged one, it is swapped back.
//!
//! Where it has not (NFS, SMB, FUSE), py-filelock gives up; flockrun takes over in three
//! steps under a guard. The guard is `LOCK.takeover`, created with `O_EXCL`, so only one
//! flockrun breaks a marker at a time. Under it: re-check that the path still names the
//! judged marker, unchanged; move whatever the path names aside with `rename(2)`, which is
//! atomic; check that what was moved is the judged marker. If it is, remove it and create our
//! marker with `O_EXCL` like any newcomer (a py-filelock or flockrun waiter that gets there
//! first has simply won). If it is not, put it back with `link(2)`, which never replaces
//! anything. README.md ("Shared filesystems") gives the safety argument.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{self as marker_file, Unchanged};
use crate::error::Error;
use crate::inspect::marker::{self, Verdict};
use crate::open;

/// A guard whose breaker has not finished for this long is taken for dead: a takeover takes
/// milliseconds.
pub(crate) const GUARD_STALE_MIN: Duration = Duration::from_secs(10);

/// What a contender remembers about the takeover guard between its attempts.
#[derive(Debug)]
pub(crate) struct Guard {
    seen: Unchanged,
    stale_after: Duration,
    /// The filesystem refused `RENAME_EXCHANGE` once: no need to ask again.
    no_exchange: bool,
}

impl Guard {
    /// A guard taken for dead once unchanged for `stale_after` (or once its breaker, on this
    /// host, is provably gone).
    pub(crate) fn new(stale_after: Duration) -> Self {
        Guard {
            seen: Unchanged::default(),
            stale_after: stale_after.max(GUARD_STALE_MIN),
            no_exchange: false,
        }
    }
}

/// Takes over the judged marker at `path` with a marker holding `record`. `Ok(None)` when
/// something changed meanwhile or another contender is at it: then the caller contends again.
///
/// # Errors
/// When the filesystem fails in a way contending again cannot help.
pub(crate) fn take_over(
    path: &Path,
    judged: &fs::Metadata,
    record: &str,
    create_mode: Option<u32>,
    guard: &mut Guard,
) -> Result<Option<File>, Error> {
    if !guard.no_exchange {
        match by_exchange(path, judged, record, create_mode)? {
            Exchange::Taken(file) => return Ok(Some(file)),
            Exchange::NotTaken => return Ok(None),
            Exchange::Refused => guard.no_exchange = true,
        }
    }
    guarded(path, judged, record, create_mode, guard)
}

enum Exchange {
    Taken(File),
    NotTaken,
    /// The filesystem has no `RENAME_EXCHANGE`.
    Refused,
}

fn by_exchange(
    path: &Path,
    judged: &fs::Metadata,
    record: &str,
    create_mode: Option<u32>,
) -> Result<Exchange, Error> {
    let unchanged = |p: &Path| marker_file::same_file(p, judged);
    if !unchanged(path) {
        return Ok(Exchange::NotTaken);
    }
    let aside = marker_file::aside_path(path);
    let ours = match marker_file::create_marker(&aside, record, create_mode) {
        Ok(file) => file,
        Err(e) => return Err(open::classify_create_error(&aside, e)),
    };
    let remove_ours = |at: &Path| {
        if open::still_named_by(&ours, at) {
            let _ = fs::remove_file(at);
        }
    };
    if !unchanged(path) {
        remove_ours(&aside);
        return Ok(Exchange::NotTaken);
    }
    if let Err(e) = marker_file::exchange(&aside, path) {
        remove_ours(&aside);
        return match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENOSYS | libc::EXDEV | libc::EOPNOTSUPP) => {
                Ok(Exchange::Refused)
            }
            // The judged marker left the path meanwhile.
            Some(libc::ENOENT) => Ok(Exchange::NotTaken),
            _ => Err(Error::system("exchanging the stale marker", e)),
        };
    }
    // Our marker is at the path now. What went aside must be the one we judged; if a
    // newcomer slipped in between, swap back and leave it its lock.
    if unchanged(&aside) {
        let _ = fs::remove_file(&aside);
        return Ok(Exchange::Taken(ours));
    }
    if marker_file::exchange(&aside, path).is_ok() {
        remove_ours(&aside);
    }
    Ok(Exchange::NotTaken)
}

/// `LOCK.takeover`: held by the one flockrun that is breaking a marker on LOCK.
fn guard_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".takeover");
    path.with_file_name(name)
}

fn guarded(
    path: &Path,
    judged: &fs::Metadata,
    record: &str,
    create_mode: Option<u32>,
    guard: &mut Guard,
) -> Result<Option<File>, Error> {
    let guard_path = guard_path(path);
    let held = match marker_file::create_marker(&guard_path, &marker_file::owner_record(), None) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            break_dead_guard(&guard_path, guard);
            return Ok(None);
        }
        Err(e) => return Err(open::classify_create_error(&guard_path, e)),
    };
    let taken = move_aside_and_take(path, judged, record, create_mode);
    // Only our own guard, and before closing it, so its inode number cannot be reused by a
    // successor's guard in between.
    if open::still_named_by(&held, &guard_path) {
        let _ = fs::remove_file(&guard_path);
    }
    taken
}

/// The three steps, under the guard.
fn move_aside_and_take(
    path: &Path,
    judged: &fs::Metadata,
    record: &str,
    create_mode: Option<u32>,
) -> Result<Option<File>, Error> {
    if !marker_file::same_file(path, judged) {
        return Ok(None);
    }
    let aside = marker_file::aside_path(path);
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if crate::open::vanished(&e) => return Ok(None),
        Err(e) => return Err(Error::system("moving the stale marker aside", e)),
    }
    if !marker_file::same_file(&aside, judged) {
        // Someone's newer marker (its owner released and a newcomer took the path between our
        // check and the rename): put it back. link(2) fails rather than replace a marker
        // created at the path meanwhile; then that one's owner holds the lock, and the owner
        // of the file left aside finds its marker gone at its next renewal.
        if fs::hard_link(&aside, path).is_ok() {
            let _ = fs::remove_file(&aside);
        }
        return Ok(None);
    }
    let _ = fs::remove_file(&aside);
    match marker_file::create_marker(path, record, create_mode) {
        Ok(file) => Ok(Some(file)),
        // Another contender created the path after the judged marker left it: it won.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(None),
        Err(e) => Err(open::classify_create_error(path, e)),
    }
}

/// Removes a guard whose breaker is provably gone (same host) or that has stayed unchanged
/// for the guard's stale time; the same move-aside-and-check as a takeover, without a guard
/// of its own (two contenders breaking one dead guard at the same moment is the only race
/// left, and it needs a breaker to have died holding it).
fn break_dead_guard(guard_path: &Path, guard: &mut Guard) {
    let Some((pin, judged)) = marker_file::pin_inode(guard_path) else {
        return;
    };
    let unchanged_for = guard.seen.observe(marker_file::state_of(&judged));
    let dead = match marker::read(guard_path) {
        Ok(Some(content)) => marker::judge(&content) == Verdict::Stale,
        _ => false,
    };
    if !(dead || unchanged_for >= guard.stale_after) || !marker_file::same_file(guard_path, &judged)
    {
        return;
    }
    let aside = marker_file::aside_path(guard_path);
    if fs::rename(guard_path, &aside).is_err() {
        return;
    }
    // Not the judged guard: a newer one, put back where nothing newer stands.
    if marker_file::same_file(&aside, &judged) || fs::hard_link(&aside, guard_path).is_ok() {
        let _ = fs::remove_file(&aside);
    }
    drop(pin);
}
