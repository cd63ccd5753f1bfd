//! Semaphores of markers (`--soft --slots N`, with or without `--ttl`): slot i is a marker of
//! its own, `LOCK.slot-i`, each exactly the marker of the plain kind (so py-filelock's
//! `SoftFileLock("LOCK.slot-2")`, or `SoftFileLease`, takes slot 2), and N is recorded in
//! `LOCK.slots` (`N` and a newline).
//!
//! The record is checked after a slot is won: the holder that finds no record, or the
//! record of another N while no other slot is held, writes its own N (atomically, by
//! rename); one that finds another N while another slot is held gives its slot back and is
//! refused. Each newcomer wins its slot before it reads the record, so of two newcomers with
//! different numbers at least the later one sees the other's slot and is refused.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::inspect::marker::{self, Content, Record, RecordMode, Verdict};
use crate::lock::MAX_SLOTS;
use crate::status::{LockStatus, SemaphoreReport, SlotReport, State};

/// The marker of slot `slot` of the semaphore at `lock`.
#[must_use]
pub(crate) fn slot_path(lock: &Path, slot: u16) -> PathBuf {
    let mut name = lock.as_os_str().to_owned();
    name.push(format!(".slot-{slot}"));
    PathBuf::from(name)
}

/// The markers of slots 0 to `slots - 1`.
#[must_use]
pub(crate) fn slot_paths(lock: &Path, slots: u16) -> Vec<PathBuf> {
    (0..slots).map(|slot| slot_path(lock, slot)).collect()
}

/// The markers a marker kind takes: LOCK itself, or with `--slots N` the N slot markers;
/// each must be a regular file where it exists.
///
/// # Errors
/// `NotALock` for something else at one of the paths.
pub(crate) fn marker_paths(lock: &Path, slots: Option<u16>) -> Result<Vec<PathBuf>, Error> {
    let paths = match slots {
        Some(slots) => slot_paths(lock, slots),
        None => vec![lock.to_owned()],
    };
    for path in &paths {
        crate::open::refuse_unlockable(
            path,
            fs::symlink_metadata(path).ok().as_ref(),
            crate::open::Shape::Regular,
        )?;
    }
    Ok(paths)
}

/// Where N is recorded.
#[must_use]
pub(crate) fn count_path(lock: &Path) -> PathBuf {
    let mut name = lock.as_os_str().to_owned();
    name.push(".slots");
    PathBuf::from(name)
}

/// The N recorded for the semaphore at `lock`, if a readable record is there.
#[must_use]
pub(crate) fn recorded(lock: &Path) -> Option<u16> {
    fs::read_to_string(count_path(lock))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=MAX_SLOTS).contains(n))
}

/// Whether a marker at `path` may belong to a live holder: there, and not provably dead.
fn maybe_held(path: &Path) -> bool {
    match marker::read(path) {
        Ok(Some(content)) => matches!(
            marker::judge(&content),
            Verdict::Held | Verdict::ForeignHost
        ),
        Ok(None) => false,
        // Cannot be read: count it as held, which can only refuse more.
        Err(_) => true,
    }
}

/// Checks (and if need be writes) the record of N, holding slot `mine` of `slots`.
///
/// # Errors
/// `SlotsMismatch` when another N is recorded while another slot is held; `CannotCreate`
/// when the record cannot be written.
pub(crate) fn settle_count(
    lock: &Path,
    slots: u16,
    mine: u16,
    create_mode: Option<u32>,
) -> Result<(), Error> {
    let theirs = recorded(lock);
    if theirs == Some(slots) {
        return Ok(());
    }
    if let Some(theirs) = theirs {
        let upto = theirs.max(slots);
        let other_held = (0..upto)
            .filter(|slot| *slot != mine)
            .any(|slot| maybe_held(&slot_path(lock, slot)));
        if other_held {
            return Err(Error::SlotsMismatch {
                lock: lock.display().to_string(),
                ours: slots,
                theirs,
            });
        }
    }
    write_count(lock, slots, create_mode)
}

/// Writes `LOCK.slots` whole: a temporary file renamed over it.
fn write_count(lock: &Path, slots: u16, create_mode: Option<u32>) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = count_path(lock);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(create_mode.unwrap_or(0o666))
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        writeln!(file, "{slots}")?;
        fs::rename(&temporary, &path)
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        Error::CannotCreate {
            path: path.clone(),
            hint: "the semaphore records its number of slots there; let this user write \
                   in LOCK's directory"
                .to_owned(),
            source: e,
        }
    })
}

/// The slots whose markers exist beside `lock`, lowest first.
#[must_use]
pub(crate) fn existing_slots(lock: &Path) -> Vec<u16> {
    let (Some(directory), Some(name)) = (lock.parent(), lock.file_name()) else {
        return Vec::new();
    };
    let mut prefix = name.to_owned();
    prefix.push(".slot-");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let mut found: Vec<u16> = fs::read_dir(directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name();
                    let rest = name.as_encoded_bytes().strip_prefix(prefix.as_slice())?;
                    let text = std::str::from_utf8(rest).ok()?;
                    // Digits only, as flockrun names them (no sign, no leading zero).
                    let canonical = text.bytes().all(|b| b.is_ascii_digit())
                        && (text == "0" || !text.starts_with('0'));
                    text.parse::<u16>()
                        .ok()
                        .filter(|slot| canonical && *slot < MAX_SLOTS)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    found
}

/// Whether `lock` is a semaphore of markers (its record or a slot marker is beside it), and
/// if so whether of leases (`Some(true)`) or of classic soft markers.
#[must_use]
pub(crate) fn beside(lock: &Path) -> Option<bool> {
    let existing = existing_slots(lock);
    if existing.is_empty() && fs::symlink_metadata(count_path(lock)).is_err() {
        return None;
    }
    let lease = existing.iter().any(|slot| {
        matches!(
            marker::read(&slot_path(lock, *slot)),
            Ok(Some(Content::Protocol2(Record {
                mode: RecordMode::Lease { .. },
                ..
            })))
        )
    });
    Some(lease)
}

/// `status` of a semaphore of markers: N, and each slot whose marker is there.
///
/// # Errors
/// When a slot marker cannot be read.
pub(crate) fn fill_status(status: &mut LockStatus, lock: &Path) -> Result<(), Error> {
    let mut held = Vec::new();
    let mut any_held = false;
    let mut any_stale = false;
    for slot in existing_slots(lock) {
        let path = slot_path(lock, slot);
        let mut one = LockStatus::new(path.clone());
        super::status::fill(&mut one, &path)?;
        let Some(marker) = one.marker else {
            continue; // removed meanwhile
        };
        match one.state {
            State::Held => any_held = true,
            State::Stale => any_stale = true,
            State::Free => continue,
        }
        held.push(SlotReport {
            slot,
            holder: one.holders.first().cloned(),
            pid: marker.pid,
            host: marker.host,
            verdict: Some(marker.verdict),
            since: None,
            command: None,
        });
        status.holders.extend(one.holders);
        status.warnings.extend(
            one.warnings
                .into_iter()
                .map(|w| format!("slot {slot}: {w}")),
        );
    }
    status.state = if any_held {
        State::Held
    } else if any_stale {
        State::Stale
    } else {
        State::Free
    };
    status.mode = any_held.then_some("exclusive");
    status.semaphore = Some(SemaphoreReport {
        slots: recorded(lock),
        held,
    });
    Ok(())
}
