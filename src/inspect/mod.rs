//! Who holds a kernel or OFD lock and who waits for it, from `/proc/locks` and
//! `/proc/PID/fdinfo`. The pid in `/proc/locks` is the process that *took* the lock, which
//! may be dead or reused (a flockrun killed while its COMMAND still holds the inherited
//! descriptor); the real holders are the processes whose open descriptors carry a `lock:`
//! line, confirmed by a `stat` of the descriptor against the lock file's device and inode.

pub mod marker;
pub mod proc_locks;
pub mod process;
pub mod sqlite_roles;

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::duration::format_seconds;
use crate::kind::LockKind;
use crate::lock::LockMode;
use proc_locks::{KernelLocks, LockLine};
pub use process::ProcessInfo;

/// The identity of a lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    #[must_use]
    pub fn of(meta: &fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A process holding the lock through one of its descriptors.
#[derive(Debug, Clone)]
pub struct Holder {
    pub process: ProcessInfo,
    pub mode: LockMode,
    /// For a flockrun holder: the COMMAND it runs, if visible.
    pub child: Option<ProcessInfo>,
}

/// A process blocked waiting for the lock.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub pid: i32,
    pub mode: LockMode,
    pub process: Option<ProcessInfo>,
}

/// What could be seen of a lock at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sighting {
    pub holders: Vec<Holder>,
    pub waiters: Vec<Waiter>,
    /// Pids `/proc/locks` recorded for held entries (possibly stale).
    pub recorded_pids: Vec<i32>,
    /// The strongest mode `/proc/locks` shows held, whether or not a holder is visible.
    pub held_mode: Option<LockMode>,
    /// Things that could not be seen, and why.
    pub warnings: Vec<String>,
    /// A description of the holder when it is not a visible process (a soft marker from
    /// another host, a malformed marker…); replaces the holder list in messages.
    pub described: Option<String>,
}

/// Looks at the lock on `id` of `kind`: holders, waiters, and what was not visible.
#[must_use]
pub fn sight(id: FileId, kind: LockKind) -> Sighting {
    sight_in(&KernelLocks::read(), id, kind)
}

/// As `sight`, from a reading of `/proc/locks` the caller already has.
#[must_use]
pub fn sight_in(locks: &KernelLocks, id: FileId, kind: LockKind) -> Sighting {
    match kind {
        LockKind::Sqlite => return sqlite_roles::sight(locks, id),
        // A soft lock is seen through its marker, by path (kind::soft::sight).
        LockKind::Soft => return Sighting::default(),
        LockKind::Kernel | LockKind::Ofd => {}
    }
    let mut sighting = Sighting::default();
    let class = kind.proc_class();
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
            Err(()) => hidden += 1,
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

/// The mode in which `pid` holds a `class` lock on `id` through any of its descriptors.
/// `Err(())` when its descriptors cannot be read (another user's process).
pub(crate) fn process_lock(pid: i32, id: FileId, class: &str) -> Result<Option<LockMode>, ()> {
    let fd_dir = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(()),
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

/// A descriptor inherited down a process tree makes every process in it a holder of the
/// same lock (flockrun, its COMMAND, the `cat` that COMMAND runs…). Each tree is reported
/// once, by its topmost process; for a flockrun, together with the COMMAND it runs (looked up
/// among its children when COMMAND does not hold the lock itself, as with `--close`).
pub(crate) fn collapse_trees(found: Vec<Holder>) -> Vec<Holder> {
    let pids: Vec<i32> = found.iter().map(|h| h.process.pid).collect();
    let (inner, mut top): (Vec<Holder>, Vec<Holder>) = found
        .into_iter()
        .partition(|h| pids.contains(&h.process.ppid));
    for holder in &mut top {
        if !holder.process.is_flockrun() {
            continue;
        }
        holder.child = inner
            .iter()
            .find(|c| c.process.ppid == holder.process.pid)
            .map(|c| c.process.clone())
            .or_else(|| {
                let pid = *holder.process.children().first()?;
                ProcessInfo::read(pid).ok()
            });
    }
    top
}

const COMMAND_WIDTH: usize = 60;

impl fmt::Display for Holder {
    /// `pid 4242 (backup.sh) for 3m12s`, or for a flockrun
    /// `pid 4243 (backup.sh) under flockrun pid 4242 for 3m12s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, age) = match &self.child {
            Some(child) => (child, child.age()),
            None => (&self.process, self.process.age()),
        };
        write!(f, "pid {} ({})", shown.pid, shown.command(COMMAND_WIDTH))?;
        if self.child.is_some() {
            write!(f, " under flockrun pid {}", self.process.pid)?;
        }
        if let Some(age) = age {
            write!(f, " for {}", format_seconds(age))?;
        }
        Ok(())
    }
}

impl fmt::Display for Sighting {
    /// The tail of a busy message: `held by pid 4242 (backup.sh) for 3m12s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 3;
        if let Some(described) = &self.described {
            return f.write_str(described);
        }
        match self.holders.as_slice() {
            [] => match self.recorded_pids.as_slice() {
                [] => f.write_str("held by another process (not visible to this user)"),
                pids => {
                    let pids: Vec<String> = pids.iter().map(|p| format!("pid {p}")).collect();
                    write!(
                        f,
                        "held according to /proc/locks by {} (the holding process is not \
                         visible to this user)",
                        pids.join(", ")
                    )
                }
            },
            [one] => write!(f, "held by {one}"),
            many => {
                let shown: Vec<String> = many.iter().take(SHOWN).map(ToString::to_string).collect();
                write!(f, "held by {} processes: {}", many.len(), shown.join("; "))?;
                if many.len() > SHOWN {
                    write!(f, "; and {} more", many.len() - SHOWN)?;
                }
                Ok(())
            }
        }?;
        if let Some(writer) = self.waiters.iter().find(|w| w.mode == LockMode::Exclusive) {
            write!(f, "; pid {} waits for an exclusive lock", writer.pid)?;
            if let Some(p) = &writer.process {
                write!(f, " ({})", p.command(COMMAND_WIDTH))?;
            }
        }
        Ok(())
    }
}
