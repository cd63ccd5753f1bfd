//! What could be seen of a lock at one moment: who holds it, who waits, what was not
//! visible. Plain data with the wording of busy messages; every kind fills one in its own way.

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;

use super::process::ProcessInfo;
use crate::duration::format_seconds;
use crate::mode::LockMode;

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
    /// Held locks on part of the file only (OFD byte ranges): mode, first byte, last byte
    /// (`None`: to the end of the file).
    pub held_ranges: Vec<(LockMode, u64, Option<u64>)>,
    /// Things that could not be seen, and why.
    pub warnings: Vec<String>,
    /// A description of the holder when it is not a visible process (a soft marker from
    /// another host, a malformed marker…); replaces the holder list in messages.
    pub described: Option<String>,
    /// Something a person should know besides who holds it (a lock of another kind on the
    /// same path…); appended to the holder list in messages.
    pub note: Option<String>,
}

/// A descriptor inherited down a process tree makes every process in it a holder of the
/// same lock (flockrun, its COMMAND, the `cat` that COMMAND runs…). Each tree is reported
/// once, by its topmost process; for a flockrun, together with the COMMAND it runs (looked up
/// among its children when COMMAND does not hold the lock itself, as with `--close`).
#[must_use]
pub fn collapse_trees(found: Vec<Holder>) -> Vec<Holder> {
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
        if let Some(described) = &self.described {
            return f.write_str(described);
        }
        self.fmt_holders(f)?;
        if let Some(note) = &self.note {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

impl Sighting {
    fn fmt_holders(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 3;
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
