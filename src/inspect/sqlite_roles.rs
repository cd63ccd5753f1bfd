//! Who reads and who writes an SQLite lock database, from the POSIX byte-range locks SQLite
//! takes (rollback-journal mode; offsets from SQLite's `os_unix.c`). POSIX locks belong to a
//! process and never block in the kernel (SQLite uses `F_SETLK`), so `/proc/locks` names
//! the real pid and a waiting writer shows as one holding the PENDING byte.

use std::collections::BTreeMap;

#[cfg(test)]
use super::proc_locks;
use super::proc_locks::{KernelLocks, LockLine};
use super::process::ProcessInfo;
use super::sighting::{FileId, Holder, Sighting, Waiter, collapse_trees};
use crate::mode::LockMode;

/// Taken by a writer that wants EXCLUSIVE; while held, no new reader gets in.
pub const PENDING_BYTE: u64 = 0x4000_0000;
/// Taken by a writer that has reserved the right to write.
pub const RESERVED_BYTE: u64 = PENDING_BYTE + 1;
/// Readers take a read lock here, an exclusive writer a write lock over all of it.
pub const SHARED_FIRST: u64 = PENDING_BYTE + 2;

/// The part a process plays, from its lock lines on the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    /// Holds PENDING but not yet EXCLUSIVE: waits for readers to leave.
    WaitingWriter,
    /// Holds EXCLUSIVE (or RESERVED).
    Writer,
}

fn covers(line: &LockLine, byte: u64) -> bool {
    line.start <= byte && line.end.is_none_or(|end| byte <= end)
}

/// The role the lines of one process add up to.
#[must_use]
pub fn role(lines: &[&LockLine]) -> Option<Role> {
    let write_on = |byte| lines.iter().any(|l| l.write && covers(l, byte));
    if write_on(SHARED_FIRST) || (write_on(RESERVED_BYTE) && !write_on(PENDING_BYTE)) {
        Some(Role::Writer)
    } else if write_on(PENDING_BYTE) {
        Some(Role::WaitingWriter)
    } else if lines.iter().any(|l| !l.write && covers(l, SHARED_FIRST)) {
        Some(Role::Reader)
    } else {
        None
    }
}

/// Who reads, who writes and who waits to write the lock database `id`.
#[must_use]
pub fn sight(locks: &KernelLocks, id: FileId) -> Sighting {
    let mut sighting = Sighting::default();
    sighting.warnings.extend(locks.error.clone());
    let mut by_pid: BTreeMap<i32, Vec<&LockLine>> = BTreeMap::new();
    for line in locks
        .lines
        .iter()
        .filter(|l| l.class == "POSIX" && l.inode == id.ino && !l.waiter)
    {
        by_pid.entry(line.pid).or_default().push(line);
    }
    let me = nix::unistd::getpid().as_raw();
    let mut holders = Vec::new();
    for (pid, lines) in by_pid {
        if pid == me || pid <= 0 {
            continue;
        }
        let process = ProcessInfo::read(pid).ok();
        match role(&lines) {
            Some(Role::WaitingWriter) => sighting.waiters.push(Waiter {
                pid,
                mode: LockMode::Exclusive,
                process,
            }),
            Some(role) => {
                sighting.recorded_pids.push(pid);
                if role == Role::Writer {
                    sighting.held_mode = Some(LockMode::Exclusive);
                } else if sighting.held_mode.is_none() {
                    sighting.held_mode = Some(LockMode::Shared);
                }
                if let Some(process) = process {
                    holders.push(Holder {
                        process,
                        mode: if role == Role::Writer {
                            LockMode::Exclusive
                        } else {
                            LockMode::Shared
                        },
                        child: None,
                    });
                }
            }
            None => {}
        }
    }
    sighting.holders = collapse_trees(holders);
    sighting
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<LockLine> {
        proc_locks::parse_all(text)
    }

    #[test]
    fn tells_readers_writers_and_waiting_writers_apart() {
        let reader = lines("1: POSIX ADVISORY READ 5 fe:00:9 1073741826 1073742335");
        assert_eq!(role(&reader.iter().collect::<Vec<_>>()), Some(Role::Reader));
        let writer = lines("1: POSIX ADVISORY WRITE 5 fe:00:9 1073741824 1073742335");
        assert_eq!(role(&writer.iter().collect::<Vec<_>>()), Some(Role::Writer));
        let waiting = lines(
            "1: POSIX ADVISORY WRITE 5 fe:00:9 1073741824 1073741825\n\
             2: POSIX ADVISORY READ 5 fe:00:9 1073741826 1073742335",
        );
        assert_eq!(
            role(&waiting.iter().collect::<Vec<_>>()),
            Some(Role::WaitingWriter)
        );
        let reserved = lines(
            "1: POSIX ADVISORY WRITE 5 fe:00:9 1073741825 1073741825\n\
             2: POSIX ADVISORY READ 5 fe:00:9 1073741826 1073742335",
        );
        assert_eq!(
            role(&reserved.iter().collect::<Vec<_>>()),
            Some(Role::Writer)
        );
        let unrelated = lines("1: POSIX ADVISORY WRITE 5 fe:00:9 0 100");
        assert_eq!(role(&unrelated.iter().collect::<Vec<_>>()), None);
    }
}
