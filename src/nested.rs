//! Re-entrancy: a COMMAND (or anything under it) that asks flockrun for a lock an ancestor
//! flockrun already holds must not wait for itself.
//!
//! Two pieces of evidence count. For kernel and ofd locks, a descriptor this process
//! inherited that carries the lock (its fdinfo has a `lock:` line): the lock is then held by
//! our own open file description, whoever took it, even an ancestor that has since died.
//! Otherwise (`--close`, or the descriptor was closed on the way), the `FLOCKRUN_HELD`
//! entries each flockrun adds to COMMAND's environment, trusted only when the recorded pid
//! and start time name this process or one of its ancestors, alive.

use std::ffi::{OsStr, OsString};

use crate::inspect::{self, FileId, ProcessInfo};
use crate::kind::LockKind;
use crate::lock::{HeldLock, LockMode};

/// The environment variable listing locks held by ancestor flockruns.
pub const HELD_VAR: &str = "FLOCKRUN_HELD";

/// A lock found held on our behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAbove {
    pub mode: LockMode,
    /// The flockrun (or other process) that took it, as best known.
    pub pid: i32,
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

/// The `FLOCKRUN_HELD` value to give COMMAND: what we inherited plus `held`, taken by
/// process `pid` (flockrun itself, or the COMMAND it becomes with `--no-fork`).
#[must_use]
pub fn held_var_with(inherited: Option<&OsStr>, held: &HeldLock, pid: i32) -> OsString {
    with_entry(
        inherited,
        held.kind().name(),
        held.mode().name(),
        held.id(),
        pid,
    )
}

/// `inherited` with one more entry, `kind:mode:dev:ino:pid:start`.
fn with_entry(inherited: Option<&OsStr>, kind: &str, mode: &str, id: FileId, pid: i32) -> OsString {
    let start = ProcessInfo::identity(pid).map_or(0, |(_, started)| started);
    let entry = format!("{kind}:{mode}:{}:{}:{pid}:{start}", id.dev, id.ino);
    match inherited.and_then(OsStr::to_str).filter(|s| !s.is_empty()) {
        Some(previous) => format!("{previous},{entry}").into(),
        None => entry.into(),
    }
}

/// The entries of `held_var` for the lock `id` of kind `kind`.
fn entries_for(held_var: Option<&OsStr>, kind: &str, id: FileId) -> Vec<Entry> {
    held_var
        .and_then(OsStr::to_str)
        .map(parse_entries)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.kind == kind && e.id == id)
        .collect()
}

/// Whether the lock on `id` of `kind` is already held for this process by an ancestor.
#[must_use]
pub fn held_above(id: FileId, kind: LockKind, held_var: Option<&OsStr>) -> Option<HeldAbove> {
    let entries = entries_for(held_var, kind.name(), id);
    let me = nix::unistd::getpid().as_raw();
    if kind.inheritable()
        && let Ok(Some(mode)) = inspect::process_lock(me, id, kind.proc_class())
    {
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
        .find(|e| lineage.contains(&(e.pid, e.start_ticks)))
        .map(|e| HeldAbove {
            mode: e.mode,
            pid: e.pid,
        })
}

/// The kind name and identity an etcd lock has in `FLOCKRUN_HELD`: `etcd`, with the
/// target's hash in the dev field and 0 in the ino field, so the entry has the shape of
/// every other one.
fn etcd_id(target_hash: u64) -> FileId {
    FileId {
        dev: target_hash,
        ino: 0,
    }
}

/// Whether an ancestor flockrun holds the etcd lock with identity `target_hash` (see
/// `etcd::Target::identity`).
#[must_use]
pub fn etcd_held_above(target_hash: u64, held_var: Option<&OsStr>) -> Option<HeldAbove> {
    held_by_living_ancestor(&entries_for(held_var, "etcd", etcd_id(target_hash)))
}

/// The `FLOCKRUN_HELD` value to give COMMAND after taking the etcd lock `target_hash`.
#[must_use]
pub fn etcd_held_var_with(inherited: Option<&OsStr>, target_hash: u64, pid: i32) -> OsString {
    with_entry(inherited, "etcd", "exclusive", etcd_id(target_hash), pid)
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
    fn lineage_starts_with_self() {
        let me = nix::unistd::getpid().as_raw();
        let chain = lineage(me);
        assert_eq!(chain.first().map(|c| c.0), Some(me));
        assert!(chain.iter().any(|c| c.0 == nix::unistd::getppid().as_raw()));
    }
}
