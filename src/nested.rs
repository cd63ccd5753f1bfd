//! Re-entrancy: a COMMAND (or anything under it) that asks flockrun for a lock an ancestor
//! flockrun already holds must not wait for itself.
//!
//! Two pieces of evidence count. For kinds whose lock a descriptor carries (kernel, ofd), a
//! descriptor this process inherited with the lock on it, which the kind itself finds (see
//! `Lockable::inherited_mode`): the lock is then held by our own open file description,
//! whoever took it, even an ancestor that has since died. Otherwise (`--close`, the
//! descriptor closed on the way, or a kind no descriptor carries), the `FLOCKRUN_HELD`
//! entries each flockrun adds to COMMAND's environment, trusted only when the recorded pid
//! and start time name this process or one of its ancestors, alive.

use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::inspect::process::ProcessInfo;
use crate::inspect::sighting::FileId;
use crate::mode::LockMode;

/// The environment variable listing locks held by ancestor flockruns.
pub const HELD_VAR: &str = "FLOCKRUN_HELD";

/// How a lock is known in `FLOCKRUN_HELD`: its kind's name and an identity, the device and
/// inode of a lock file, or for a lock that is no file a hash in the device field and 0 as
/// the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldKey {
    pub kind: &'static str,
    pub id: FileId,
}

impl HeldKey {
    /// The key of a `kind` lock on the file `path` names (not following a symbolic link);
    /// `None` when nothing is there, since a lock file that does not exist yet cannot be
    /// held by anyone.
    #[must_use]
    pub fn of_path(kind: &'static str, path: &std::path::Path) -> Option<HeldKey> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(HeldKey {
            kind,
            id: FileId::of(&meta),
        })
    }

    /// The key of a `kind` lock that is no file but a name in a server: `text` names the
    /// server and the lock (hashed into the device field, the inode left 0), so a nested
    /// flockrun that names them the same way sees the lock held.
    #[must_use]
    pub fn of_name(kind: &'static str, text: &str) -> HeldKey {
        HeldKey {
            kind,
            id: FileId {
                dev: name_hash(text.as_bytes()),
                ino: 0,
            },
        }
    }
}

/// A stable 64-bit hash (FNV-1a) of a lock's name, for `HeldKey`s of locks that are no
/// inode: stable across flockrun builds, unlike std's hasher.
#[must_use]
pub fn name_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A lock found held on our behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAbove {
    pub mode: LockMode,
    /// The flockrun (or other process) that took it, as best known.
    pub pid: i32,
}

/// How far (in seconds) the start time an entry records may lie after the start time
/// `/proc/PID/stat` shows for the same process: the entry's is read from the clock when
/// `main` begins, a few milliseconds after the kernel's, more on a loaded machine.
const START_SLACK_SECONDS: u64 = 2;

/// `CLOCK_BOOTTIME` in nanoseconds when `main` began, 0 if `note_process_start` was not called.
static STARTED_NS: AtomicU64 = AtomicU64::new(0);

/// Notes when this process started, so that the `FLOCKRUN_HELD` entry it writes later needs
/// no read of `/proc/self/stat` on the uncontended path. Called first thing in `main`.
pub fn note_process_start() {
    if let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        let ns = u64::try_from(now.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(now.tv_nsec()).unwrap_or(0);
        STARTED_NS.store(ns, Ordering::Relaxed);
    }
}

/// The start time of process `pid` in clock ticks since boot, as `/proc/PID/stat` counts: for
/// this process, from the clock reading `note_process_start` took (the same clock, which a
/// time namespace shifts for both alike), otherwise from `/proc`.
fn start_ticks_of(pid: i32) -> u64 {
    let noted = STARTED_NS.load(Ordering::Relaxed);
    if noted != 0
        && pid == nix::unistd::getpid().as_raw()
        && let Some(per_second) = crate::inspect::process::ticks_per_second()
    {
        return noted / (1_000_000_000 / per_second.min(1_000_000_000));
    }
    ProcessInfo::identity(pid).map_or(0, |(_, started)| started)
}

/// Whether an entry's recorded start time names the process that `/proc` says started at
/// `actual` ticks: the same, or up to `START_SLACK_SECONDS` later (see above).
fn same_start(recorded: u64, actual: u64) -> bool {
    let slack = crate::inspect::process::ticks_per_second().unwrap_or(100) * START_SLACK_SECONDS;
    actual <= recorded + 1 && recorded - actual.min(recorded) <= slack
}

/// One `FLOCKRUN_HELD` entry: `kind:mode:dev:ino:pid:start_ticks`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: String,
    mode: LockMode,
    id: FileId,
    pid: i32,
    start_ticks: u64,
}

fn parse_entries(value: &str) -> Vec<Entry> {
    value
        .split(',')
        .filter_map(|item| {
            let f: Vec<&str> = item.split(':').collect();
            let [kind, mode, dev, ino, pid, start] = f.as_slice() else {
                return None;
            };
            let mode = match *mode {
                "exclusive" => LockMode::Exclusive,
                "shared" => LockMode::Shared,
                _ => return None,
            };
            Some(Entry {
                kind: (*kind).to_owned(),
                mode,
                id: FileId {
                    dev: dev.parse().ok()?,
                    ino: ino.parse().ok()?,
                },
                pid: pid.parse().ok()?,
                start_ticks: start.parse().ok()?,
            })
        })
        .collect()
}

/// The `FLOCKRUN_HELD` value to give COMMAND: what we inherited plus the lock `key`, held in
/// `mode` by process `pid` (flockrun itself, or the COMMAND it becomes with `--no-fork`).
#[must_use]
pub fn held_var_with(
    inherited: Option<&OsStr>,
    key: HeldKey,
    mode: LockMode,
    pid: i32,
) -> OsString {
    let start = start_ticks_of(pid);
    let entry = format!(
        "{}:{}:{}:{}:{pid}:{start}",
        key.kind,
        mode.name(),
        key.id.dev,
        key.id.ino
    );
    match inherited.and_then(OsStr::to_str).filter(|s| !s.is_empty()) {
        Some(previous) => format!("{previous},{entry}").into(),
        None => entry.into(),
    }
}

/// The entries of `held_var` for the lock `key`.
fn entries_for(held_var: Option<&OsStr>, key: HeldKey) -> Vec<Entry> {
    held_var
        .and_then(OsStr::to_str)
        .map(parse_entries)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.kind == key.kind && e.id == key.id)
        .collect()
}

/// Whether the lock `key` is already held for this process by an ancestor. `inherited` is
/// the mode in which a descriptor this process inherited holds it, if the kind found one.
#[must_use]
pub fn held_above(
    key: HeldKey,
    held_var: Option<&OsStr>,
    inherited: Option<LockMode>,
) -> Option<HeldAbove> {
    let entries = entries_for(held_var, key);
    if let Some(mode) = inherited {
        let pid = entries
            .last()
            .map_or_else(|| nix::unistd::getppid().as_raw(), |e| e.pid);
        return Some(HeldAbove { mode, pid });
    }
    held_by_living_ancestor(&entries)
}

/// The last of `entries` taken by this process or a living ancestor (same start time).
fn held_by_living_ancestor(entries: &[Entry]) -> Option<HeldAbove> {
    if entries.is_empty() {
        return None;
    }
    let lineage = lineage(nix::unistd::getpid().as_raw());
    entries
        .iter()
        .rev()
        .find(|e| {
            lineage
                .iter()
                .any(|&(pid, started)| pid == e.pid && same_start(e.start_ticks, started))
        })
        .map(|e| HeldAbove {
            mode: e.mode,
            pid: e.pid,
        })
}

/// `(pid, start_ticks)` of this process and its ancestors up to init.
fn lineage(mut pid: i32) -> Vec<(i32, u64)> {
    let mut chain = Vec::new();
    // Bounded in case /proc is odd; real process trees are far shallower.
    for _ in 0..4096 {
        let Ok((parent, started)) = ProcessInfo::identity(pid) else {
            break;
        };
        chain.push((pid, started));
        if parent <= 0 {
            break;
        }
        pid = parent;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_skips_junk() {
        let entries = parse_entries("kernel:exclusive:2049:77:100:5,bad,ofd:shared:1:2:3:4,x:y");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, FileId { dev: 2049, ino: 77 });
        assert_eq!(entries[1].mode, LockMode::Shared);
        assert!(parse_entries("").is_empty());
        assert!(parse_entries("kernel:sideways:1:2:3:4").is_empty());
    }

    #[test]
    fn start_times_match_within_the_slack_only() {
        let tck = crate::inspect::process::ticks_per_second().unwrap_or(100);
        assert!(same_start(5000, 5000));
        assert!(same_start(5001, 5000 + 1));
        assert!(same_start(5000 + 2 * tck, 5000));
        assert!(!same_start(5000 + 2 * tck + 1, 5000));
        assert!(!same_start(5000, 5002));
        assert!(!same_start(3, 500));
    }

    #[test]
    fn noted_start_agrees_with_proc() {
        note_process_start();
        let me = nix::unistd::getpid().as_raw();
        let (_, actual) = ProcessInfo::identity(me).unwrap();
        let noted = start_ticks_of(me);
        assert!(same_start(noted, actual), "noted {noted}, /proc {actual}");
        // Another process's start comes from /proc.
        let parent = nix::unistd::getppid().as_raw();
        assert_eq!(
            start_ticks_of(parent),
            ProcessInfo::identity(parent).unwrap().1
        );
    }

    #[test]
    fn lineage_starts_with_self() {
        let me = nix::unistd::getpid().as_raw();
        let chain = lineage(me);
        assert_eq!(chain.first().map(|c| c.0), Some(me));
        assert!(chain.iter().any(|c| c.0 == nix::unistd::getppid().as_raw()));
    }
}
