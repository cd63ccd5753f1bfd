//! `--replace`: stop the process that holds the lock, then take it. The holder is the one
//! `status` finds (the kernel's lock tables, a marker's record, etcd's key, a database
//! session), never a process picked by its command line. Only a holder on this host that
//! this user may signal is stopped: SIGTERM (a flockrun holder passes it to COMMAND and
//! releases once COMMAND has ended), then a wait of `--kill-after` for the lock, then SIGKILL
//! for the holder and everything it had started. The lock is then taken as any waiter takes
//! it: never before the holder has let go.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::error::Error;
use crate::identity;
use crate::kind;
use crate::lock::{Hold, Request, Target, Verb};
use crate::status::{LockStatus, State};
use crate::supervise::{children_of, descendants_of};
use crate::wait::{Deadline, WaitObserver};

/// After SIGKILL, how long `try --replace` waits for the lock (a killed holder's kernel
/// locks go at once, its markers at the next attempt, which proves it dead).
const AFTER_KILL: Duration = Duration::from_secs(5);

/// A holder to stop.
struct Victim {
    pid: i32,
    /// Whether the holder passes SIGTERM on to what it runs (a flockrun); if not (flock(1),
    /// other programs), what it started gets SIGTERM too, since it may hold the lock through
    /// an inherited descriptor.
    passes_signals: bool,
    /// In words, for messages.
    described: String,
}

/// Takes the lock `target` names, stopping its holder first if it is held.
///
/// # Errors
/// `NotReplaced` when the holder cannot be stopped, or what taking the lock fails with.
pub fn take_replacing(
    request: &Request,
    target: &Target,
    observer: &mut dyn WaitObserver,
) -> Result<Box<dyn Hold>, Error> {
    match target.lockable.take(&Deadline::probe(), observer) {
        Err(Error::Busy { .. }) => {}
        other => return other,
    }
    let status = kind::inspect(&request.lock, None, &request.etcd)?;
    let refuse = |why: String| Error::NotReplaced {
        lock: target.shown.clone(),
        why,
    };
    if status.state != State::Held {
        // Let go meanwhile: take it as anyone would.
        return target.lockable.take(&target.deadline, observer);
    }
    let victim = choose(&status).map_err(refuse)?;
    check_signalable(&victim).map_err(refuse)?;
    // What the holder runs, before it can re-parent anything: all of it is killed if it
    // does not let go in time. Pidfds, so that a pid reused meanwhile is never signalled.
    let first = pidfds(std::iter::once(victim.pid));
    let under = descendants_of(victim.pid);
    // A flockrun passes SIGTERM on to its COMMAND; the rest of the tree (what COMMAND
    // started, which may hold an inherited lock) gets it from here, as a lost hold stops it.
    let told = if victim.passes_signals {
        children_of(victim.pid)
    } else {
        Vec::new()
    };
    let rest = pidfds(under.iter().copied().filter(|pid| !told.contains(pid)));
    let commands = pidfds(told.into_iter());
    signal_all(&first, libc::SIGTERM);
    signal_all(&rest, libc::SIGTERM);
    observer.warn(&format!(
        "--replace: stopping {} (SIGTERM; SIGKILL after {})",
        victim.described,
        crate::duration::format_seconds(request.kill_after())
    ));
    match target
        .lockable
        .take(&Deadline::after(request.kill_after()), observer)
    {
        Err(Error::TimedOut { .. } | Error::Busy { .. }) => {}
        other => return other,
    }
    for group in [&first, &commands, &rest] {
        signal_all(group, libc::SIGKILL);
    }
    let deadline = match request.verb {
        Verb::Try => Deadline::after(AFTER_KILL),
        _ => target.deadline,
    };
    target.lockable.take(&deadline, observer)
}

/// The holder to stop: the one holder, or with a semaphore the slot held longest.
fn choose(status: &LockStatus) -> Result<Victim, String> {
    let here = identity::host_name();
    let elsewhere = |pid: Option<i32>, host: &str| {
        format!(
            "it is held by {}on host {}, not this one ({}); flockrun stops only holders on \
             this host",
            pid.map(|p| format!("pid {p} ")).unwrap_or_default(),
            identity::readable_host(host),
            identity::readable_host(&here)
        )
    };
    if let Some(semaphore) = &status.semaphore {
        let longest = semaphore
            .held
            .iter()
            .min_by_key(|slot| {
                slot.holder
                    .as_ref()
                    .and_then(|h| h.since)
                    .unwrap_or(u64::MAX)
            })
            .ok_or_else(|| "no slot holder could be seen".to_owned())?;
        if let Some(host) = longest.host.as_deref().filter(|h| *h != here) {
            return Err(elsewhere(longest.pid, host));
        }
        return match &longest.holder {
            Some(h) => Ok(victim_of(h.pid, h.flockrun, &h.command)),
            None => match longest.pid {
                Some(pid) => Ok(victim_of(pid, false, "")),
                None => Err(format!(
                    "slot {} is held by a process this user cannot see",
                    longest.slot
                )),
            },
        };
    }
    if let Some(found) = server_holder(status, &here, &elsewhere) {
        return found;
    }
    if let Some(marker) = &status.marker
        && let Some(host) = marker.host.as_deref().filter(|h| *h != here)
    {
        return Err(elsewhere(marker.pid, host));
    }
    if let Some(who) = &status.elsewhere {
        return Err(format!(
            "it is held by {who}; flockrun stops only holders on this host"
        ));
    }
    match status.holders.as_slice() {
        [h] => Ok(victim_of(h.pid, h.flockrun, &h.command)),
        // Not visible to this user: the kernel's lock table still names who took it.
        [] => recorded_holder(status)
            .map(|pid| victim_of(pid, false, ""))
            .ok_or_else(|| {
                "its holder is not visible to this user (run as root to see it)".to_owned()
            }),
        many => Err(format!(
            "it is held by {} processes (a shared lock), not one holder to replace",
            many.len()
        )),
    }
}

/// The holder a server records (an etcd key, a database session, a Redis key), where a
/// flockrun wrote its host, pid and command; `None` for a lock no server keeps.
fn server_holder(
    status: &LockStatus,
    here: &str,
    elsewhere: &dyn Fn(Option<i32>, &str) -> String,
) -> Option<Result<Victim, String>> {
    let recorded = |host: Option<&str>,
                    pid: Option<i32>,
                    command: Option<&str>,
                    nameless: String| match (host, pid) {
        (Some(host), Some(pid)) if host == here => Ok(victim_of(pid, true, command.unwrap_or(""))),
        (Some(host), _) => Err(elsewhere(pid, host)),
        _ => Err(nameless),
    };
    if let Some(entry) = status.etcd_queue.first() {
        let owner = entry.owner.as_ref();
        return Some(recorded(
            owner.and_then(|o| o.host.as_deref()),
            owner.and_then(|o| o.pid),
            owner.and_then(|o| o.command.as_deref()),
            format!(
                "it is held through etcd key {} by a holder that recorded no host and pid",
                entry.key
            ),
        ));
    }
    if let Some((_, session)) = status.sessions.iter().find(|(granted, _)| *granted) {
        return Some(recorded(
            session.host.as_deref(),
            session.pid,
            session.command.as_deref(),
            format!(
                "it is held by {}, a session that does not say which process it serves",
                session.described
            ),
        ));
    }
    if let Some(redis) = &status.redis {
        let owner = redis.owner.as_ref();
        return Some(recorded(
            owner.and_then(|o| o.host.as_deref()),
            owner.and_then(|o| o.pid),
            owner.and_then(|o| o.command.as_deref()),
            format!(
                "it is held through Redis key {} by {}, a value that names no process",
                redis.key,
                redis.described.as_deref().unwrap_or("another program")
            ),
        ));
    }
    None
}

/// The live process `/proc/locks` records as having taken the lock, if there is one.
fn recorded_holder(status: &LockStatus) -> Option<i32> {
    status
        .kernel_lines
        .iter()
        .filter_map(|line| crate::inspect::proc_locks::parse_line(line))
        .filter(|line| !line.waiter && line.pid > 0)
        .map(|line| line.pid)
        .find(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn victim_of(pid: i32, flockrun: bool, command: &str) -> Victim {
    Victim {
        pid,
        passes_signals: flockrun,
        described: if command.is_empty() {
            format!("pid {pid}")
        } else {
            format!("pid {pid} ({command})")
        },
    }
}

/// Whether this process may signal the victim, and it is not this process or an ancestor.
fn check_signalable(victim: &Victim) -> Result<(), String> {
    let mut ancestor = nix::unistd::getpid().as_raw();
    while ancestor > 1 {
        if ancestor == victim.pid {
            return Err(format!(
                "it is held by {}, which is this flockrun or one of its ancestors",
                victim.described
            ));
        }
        ancestor = crate::inspect::process::ProcessInfo::read(ancestor).map_or(0, |p| p.ppid);
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.pid), None) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let owner = crate::inspect::process::ProcessInfo::read(victim.pid)
                .ok()
                .and_then(|p| p.uid)
                .map_or_else(
                    || "another user".to_owned(),
                    crate::inspect::process::user_name,
                );
            Err(format!(
                "it is held by {} of user {owner}, which this user may not signal",
                victim.described
            ))
        }
        Err(e) => Err(format!(
            "it is held by {}, which could not be signalled: {e}",
            victim.described
        )),
    }
}

/// Pidfds for the processes `pids` that still exist.
fn pidfds(pids: impl Iterator<Item = i32>) -> Vec<OwnedFd> {
    pids.filter_map(|pid| {
        // SAFETY: pidfd_open takes a pid and flags; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: a descriptor just opened and owned by no one else.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    })
    .collect()
}

fn signal_all(pidfds: &[OwnedFd], signal: libc::c_int) {
    for fd in pidfds {
        // SAFETY: a valid pidfd; no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
}
