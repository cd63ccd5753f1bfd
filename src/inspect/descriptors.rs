//! Who holds a flock(2) or OFD lock and who waits for it, from `/proc/locks` and
//! `/proc/PID/fdinfo`. The pid in `/proc/locks` is the process that *took* the lock, which
//! may be dead or reused (a flockrun killed while its COMMAND still holds the inherited
//! descriptor); the real holders are the processes whose open descriptors carry a `lock:`
//! line, confirmed by a `stat` of the descriptor against the lock file's device and inode.

use std::fs;

use super::proc_locks::{self, KernelLocks, LockLine};
use super::process::ProcessInfo;
use super::sighting::{FileId, Holder, Sighting, Waiter, collapse_trees};
use crate::mode::LockMode;

/// Looks at the `class` lock (`FLOCK` or `OFDLCK`, as `/proc/locks` prints it) on `id`:
/// holders, waiters, and what was not visible.
#[must_use]
pub fn sight(id: FileId, class: &str) -> Sighting {
    sight_in(&KernelLocks::read(), id, class)
}

/// As `sight`, from a reading of `/proc/locks` the caller already has.
#[must_use]
pub fn sight_in(locks: &KernelLocks, id: FileId, class: &str) -> Sighting {
    let mut sighting = Sighting::default();
    sighting.warnings.extend(locks.error.clone());
    for line in &locks.lines {
        if line.inode != id.ino || line.class != class {
            continue;
        }
        if line.waiter {
            sighting.waiters.push(Waiter {
                pid: line.pid,
                mode: mode_of(line),
                process: ProcessInfo::read(line.pid).ok(),
            });
        } else {
            let mode = mode_of(line);
            if sighting.held_mode != Some(LockMode::Exclusive) {
                sighting.held_mode = Some(mode);
            }
            if line.start != 0 || line.end.is_some() {
                sighting.held_ranges.push((mode, line.start, line.end));
            }
            if line.pid > 0 && !sighting.recorded_pids.contains(&line.pid) {
                sighting.recorded_pids.push(line.pid);
            }
        }
    }
    // Every held lock has a /proc/locks line: with none on this inode there is no holder to
    // look for, and the scan of every process's descriptors (the costly part) is skipped.
    if sighting.held_mode.is_none() {
        return sighting;
    }
    let me = nix::unistd::getpid().as_raw();
    let mut hidden = 0usize;
    let mut found: Vec<Holder> = Vec::new();
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        match process_lock(pid, id, class) {
            Ok(Some(mode)) => {
                if let Ok(process) = ProcessInfo::read(pid) {
                    found.push(Holder {
                        process,
                        mode,
                        child: None,
                    });
                }
            }
            Ok(None) => {}
            Err(NotVisible) => hidden += 1,
        }
    }
    if hidden > 0 {
        sighting.warnings.push(format!(
            "{hidden} processes of other users could not be inspected (run as root to see them)"
        ));
    }
    sighting.holders = collapse_trees(found);
    sighting
}

fn mode_of(line: &LockLine) -> LockMode {
    if line.write {
        LockMode::Exclusive
    } else {
        LockMode::Shared
    }
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The descriptors of another user's process, which this one may not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotVisible;

/// The mode in which `pid` holds a `class` lock on `id` through any of its descriptors.
///
/// # Errors
/// `NotVisible` when its descriptors cannot be read (another user's process).
pub fn process_lock(pid: i32, id: FileId, class: &str) -> Result<Option<LockMode>, NotVisible> {
    let fd_dir = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(NotVisible),
        Err(_) => return Ok(None), // gone meanwhile
    };
    for entry in fd_dir.filter_map(Result::ok) {
        // stat follows the magic link to the open file: one syscall, and it gives the dev
        // and inode that `stat` reports, whatever /proc/locks prints on btrfs or overlayfs.
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        if FileId::of(&meta) != id {
            continue;
        }
        let fdinfo = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        let Ok(text) = fs::read_to_string(fdinfo) else {
            continue;
        };
        if let Some(line) = proc_locks::parse_fdinfo(&text)
            .into_iter()
            .find(|l| l.class == class && l.inode == id.ino && !l.waiter)
        {
            return Ok(Some(mode_of(&line)));
        }
    }
    Ok(None)
}

/// Every process with a descriptor on `id`, and the `class` locks held through each of its
/// descriptors (a lock shows in every process that shares its open file description).
/// Processes whose descriptors this user may not read are left out.
#[must_use]
pub fn locks_by_process(id: FileId, class: &str) -> Vec<(i32, Vec<LockLine>)> {
    let me = nix::unistd::getpid().as_raw();
    let mut found = Vec::new();
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Ok(fd_dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut lines = Vec::new();
        for entry in fd_dir.filter_map(Result::ok) {
            if fs::metadata(entry.path()).map(|m| FileId::of(&m)).ok() != Some(id) {
                continue;
            }
            let fdinfo = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
            if let Ok(text) = fs::read_to_string(fdinfo) {
                lines.extend(
                    proc_locks::parse_fdinfo(&text)
                        .into_iter()
                        .filter(|l| l.class == class && l.inode == id.ino && !l.waiter),
                );
            }
        }
        if !lines.is_empty() {
            found.push((pid, lines));
        }
    }
    found
}
