//! Semaphores in one lock file (`--slots N` with the kernel and ofd kinds). Slot i is byte
//! i of LOCK, held with an OFD write lock on `[i, i+1)`, so util-linux
//! `flock --fcntl --start i --length 1 LOCK` takes slot i by hand. Besides its slot, every
//! holder keeps an OFD read lock on byte `COUNT_BASE + N`: that is where N is recorded, and
//! a newcomer with another N finds the other holders' byte with `F_OFD_GETLK` and is refused.
//! The record lives as long as a holder does, like the locks themselves.
//!
//! A newcomer takes a free slot if there is one. Otherwise it queues on `QUEUE_BYTE` (an
//! exclusive OFD lock, waited for in the kernel); the waiter at the head of the queue waits
//! for whichever slot frees first with one thread per slot, each blocked in the kernel on
//! its slot's byte through its own open file description. The first thread to win keeps its
//! slot; the others are interrupted (SIGALRM, whose handler does nothing, ends a blocking
//! `F_OFD_SETLKW` with `EINTR`) and give back anything they won meanwhile.
#![allow(unsafe_code)]

use std::cell::OnceCell;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{FcntlArg, fcntl};

use super::{DescriptorLock, DescriptorTarget, Held, HeldDescriptor, Source};
use crate::error::Error;
use crate::inspect::descriptors;
use crate::inspect::proc_locks::LockLine;
use crate::inspect::process::ProcessInfo;
use crate::inspect::sighting::{FileId, Holder, collapse_trees};
use crate::lock::{self, ByteRange, Hold, LockFile, Lockable, MAX_SLOTS, Request, Target};
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::open::{self, Access, Shape};
use crate::status::{self, LockStatus, SemaphoreReport, SlotReport, State, WaiterReport};
use crate::supervise::LostWatch;
use crate::wait::{self, Deadline, WaitEnd, WaitObserver};

/// Byte `COUNT_BASE + N` carries the read locks that record N.
pub(crate) const COUNT_BASE: u64 = 1024;
/// The byte waiters queue on.
pub(crate) const QUEUE_BYTE: u64 = COUNT_BASE + MAX_SLOTS as u64 + 1;
/// `FLOCKRUN_HELD`'s name for a semaphore, distinct from a plain lock on the same file.
const HELD_KIND: &str = "slots";

/// A one-byte range.
fn byte(at: u64) -> ByteRange {
    ByteRange {
        start: at,
        length: 1,
    }
}

/// The target of `--slots N` for the kernel or ofd kind (`kind`); `ofd` is the ofd kind's
/// lock, which the slots are whichever kind was asked for.
pub(crate) fn target(
    kind: &'static str,
    ofd: &'static dyn DescriptorLock,
    request: &Request,
) -> Result<Target, Error> {
    let slots = request.slots.unwrap_or(1);
    let usage = |message: String| Err(Error::Usage { message });
    if request.mode == LockMode::Shared {
        return usage(
            "--slots makes each holder take one slot of its own, exclusively; -s/--shared does \
             not go with it"
                .to_owned(),
        );
    }
    if request.fd.is_some() {
        return usage(
            "--slots needs LOCK: a semaphore's slots are bytes of the file flockrun opens, \
             not of a descriptor you pass (--fd)"
                .to_owned(),
        );
    }
    request.refuse_ttl()?;
    let path = request.lock_file()?;
    Ok(Target {
        kind,
        mode: LockMode::Exclusive,
        mode_names: LockMode::name,
        lock: path.clone().into_os_string(),
        shown: request.lock.display().to_string(),
        deadline: request.deadline,
        close: request.close,
        no_fork: request.no_fork,
        lockable: Box::new(SlotsTarget {
            slots,
            inner: DescriptorTarget {
                lock: ofd,
                source: Source::Path {
                    path,
                    given: request.lock.clone(),
                },
                mode: LockMode::Exclusive,
                unlock: false,
                range: ByteRange::default(),
                create_mode: request.create_mode,
                refuse_host_local: request.refuse_host_local,
                filesystem: OnceCell::new(),
                nfs4: OnceCell::new(),
            },
        }),
    })
}

struct SlotsTarget {
    slots: u16,
    /// The plain OFD target on the same file (always `Source::Path`): LOCK, the ofd kind's
    /// lock calls, opening and the mount checks.
    inner: DescriptorTarget,
}

/// What a won round yields: the open file description that holds the slot, the file, the slot.
type Won = (File, FileId, u16);

// `look_first` stays false: a first try could win a second slot for a COMMAND whose
// ancestor holds one. `FLOCKRUN_HELD` is looked at first (it costs no scan here), so a nested
// flockrun runs in its ancestor's slot.
impl Lockable for SlotsTarget {
    fn held_key(&self) -> Option<HeldKey> {
        let Source::Path { given, .. } = &self.inner.source else {
            return None;
        };
        HeldKey::of_path(HELD_KIND, given)
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let Source::Path { path, .. } = &self.inner.source else {
            unreachable!("a semaphore is always opened by path");
        };
        let (file, id, slot) =
            lock::retry_while_replaced(path, || self.round(path, deadline, observer))?;
        Ok(Box::new(HeldSlot {
            slot,
            slots: self.slots,
            inner: HeldDescriptor {
                watch: OnceCell::new(),
                nfs4: None,
                mode: LockMode::Exclusive,
                held: Held::Opened {
                    file,
                    path: path.clone(),
                },
                key: HeldKey {
                    kind: HELD_KIND,
                    id,
                },
                waited: deadline.elapsed(),
            },
        }))
    }
}

impl SlotsTarget {
    /// One round: open LOCK, take a slot (waiting if allowed), record N, and check that the
    /// file won is still the one LOCK names.
    fn round(
        &self,
        path: &Path,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Option<Won>, Error> {
        let (file, meta) = open::open_lock_file(
            path,
            Access::ReadWrite,
            self.inner.create_mode,
            Shape::Regular,
        )?;
        if self.inner.filesystem.get().is_none() {
            let filesystem = crate::mounts::Filesystem::of(file.as_fd());
            self.inner
                .check_mount(path, filesystem.as_ref(), observer)?;
            let _ = self.inner.filesystem.set(filesystem);
        }
        let id = FileId::of(&meta);
        let failed = |e: io::Error| super::lock_error(path, e);
        // Another N in use: refused before any wait.
        self.refuse_other_count(path, file.as_fd())?;
        let (file, slot) = match self.free_slot(file.as_fd()).map_err(failed)? {
            Some(slot) => (file, slot),
            None => self.wait_for_slot(path, &file, id, deadline, observer)?,
        };
        // A read lock: it conflicts only with a write lock on the byte, which no holder takes.
        self.inner
            .lock
            .try_lock(
                file.as_fd(),
                LockMode::Shared,
                byte(COUNT_BASE + u64::from(self.slots)),
            )
            .map_err(failed)?;
        // Checked again with N recorded: of two newcomers with different numbers, the later
        // to record sees the other.
        self.refuse_other_count(path, file.as_fd())?;
        Ok(open::names(path, id).then_some((file, id, slot)))
    }

    /// `SlotsMismatch` when a holder recorded another N.
    fn refuse_other_count(&self, path: &Path, fd: BorrowedFd<'_>) -> Result<(), Error> {
        match recorded_count(fd, self.slots) {
            Ok(None) => Ok(()),
            Ok(Some(theirs)) => Err(Error::SlotsMismatch {
                lock: path.display().to_string(),
                ours: self.slots,
                theirs,
            }),
            Err(e) => Err(super::lock_error(path, e)),
        }
    }

    /// The first free slot, taken; `None` when all are held.
    fn free_slot(&self, fd: BorrowedFd<'_>) -> io::Result<Option<u16>> {
        for slot in 0..self.slots {
            if self
                .inner
                .lock
                .try_lock(fd, LockMode::Exclusive, byte(u64::from(slot)))?
            {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// Every slot is held: queue, then at the head of the queue wait for whichever slot
    /// frees first.
    fn wait_for_slot(
        &self,
        path: &Path,
        file: &File,
        id: FileId,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<(File, u16), Error> {
        let sight = || {
            let mut sighting = self.inner.sight(file.as_fd(), id);
            sighting.note = Some(format!("all {} slots are held", self.slots));
            sighting
        };
        wait::begin_wait(path, deadline, observer, &sight)?;
        let tick_every = observer.tick_every();
        let mut winner: Option<(File, u16)> = None;
        let waited = {
            let mut tick = |waited| observer.tick(waited, &sight);
            let mut in_queue = || {
                self.inner
                    .lock
                    .lock_blocking(file.as_fd(), LockMode::Exclusive, byte(QUEUE_BYTE))
            };
            wait::wait_in_kernel(deadline, tick_every, &mut tick, &mut in_queue).and_then(|()| {
                // At the head of the queue: a slot may have freed meanwhile.
                match self.free_slot(file.as_fd()) {
                    Ok(Some(slot)) => {
                        winner = Some((file.try_clone().map_err(WaitEnd::Failed)?, slot));
                        Ok(())
                    }
                    Ok(None) => {
                        winner = Some(race_for_a_slot(
                            self.inner.lock,
                            file,
                            self.slots,
                            deadline,
                            tick_every,
                            &mut tick,
                        )?);
                        Ok(())
                    }
                    Err(e) => Err(WaitEnd::Failed(e)),
                }
            })
        };
        observer.finished();
        // Leaving the queue: the next waiter is at its head.
        let _ = self.inner.lock.unlock(file.as_fd(), byte(QUEUE_BYTE));
        match waited {
            Ok(()) => Ok(winner.expect("a won wait has a winner")),
            Err(WaitEnd::TimedOut) => Err(wait::not_acquired(path, deadline, sight())),
            Err(WaitEnd::Stopped(signal)) => Err(Error::Interrupted { signal }),
            Err(WaitEnd::Failed(e)) => Err(super::lock_error(path, e)),
        }
    }
}

/// An N other than `ours` that another holder recorded (a read lock on `COUNT_BASE + N` by
/// another open file description), if there is one.
fn recorded_count(fd: BorrowedFd<'_>, ours: u16) -> io::Result<Option<u16>> {
    let own = COUNT_BASE + u64::from(ours);
    for (start, end) in [
        (COUNT_BASE + 1, own - 1),
        (own + 1, COUNT_BASE + u64::from(MAX_SLOTS)),
    ] {
        if start > end {
            continue;
        }
        let mut probe = ByteRange {
            start,
            length: end - start + 1,
        }
        .request(libc::F_WRLCK);
        fcntl(fd, FcntlArg::F_OFD_GETLK(&mut probe))?;
        if i32::from(probe.l_type) != libc::F_UNLCK {
            let at = u64::try_from(probe.l_start).unwrap_or(0);
            return Ok(at
                .checked_sub(COUNT_BASE)
                .and_then(|n| u16::try_from(n).ok()));
        }
    }
    Ok(None)
}

/// The waiting threads' common state.
struct Race {
    /// The first slot won, with the open file description that holds it.
    won: Mutex<Option<(File, u16)>>,
    failed: Mutex<Option<io::Error>>,
    over: AtomicBool,
    /// Written to when the race is decided, which wakes the main thread's `poll`.
    done: OwnedFd,
}

/// Waits for whichever of `slots` slots frees first: one thread per slot blocked in the
/// kernel, the main thread in `poll` on a pipe they write to, under the deadline and the
/// stop signals (`wait_in_kernel`).
fn race_for_a_slot(
    lock: &'static dyn DescriptorLock,
    file: &File,
    slots: u16,
    deadline: &Deadline,
    tick_every: Option<Duration>,
    tick: &mut dyn FnMut(Duration),
) -> Result<(File, u16), WaitEnd> {
    let (wake, done) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| WaitEnd::Failed(e.into()))?;
    let race = Arc::new(Race {
        won: Mutex::new(None),
        failed: Mutex::new(None),
        over: AtomicBool::new(false),
        done,
    });
    let reopen = format!("/proc/self/fd/{}", file.as_raw_fd());
    let mut runners = Vec::with_capacity(usize::from(slots));
    let mut started = Ok(());
    for slot in 0..slots {
        // Its own open file description of the same inode: locks of one description do not
        // wait for each other.
        let own = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&reopen)
        {
            Ok(own) => own,
            Err(e) => {
                started = Err(e);
                break;
            }
        };
        let race = Arc::clone(&race);
        match spawn_runner(move || run_for_slot(lock, &race, own, slot)) {
            Ok(handle) => runners.push(handle),
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    let result = started.map_err(WaitEnd::Failed).and_then(|()| {
        let mut readable = || wait_readable(wake.as_fd());
        wait::wait_in_kernel(deadline, tick_every, tick, &mut readable)
    });
    race.over.store(true, Ordering::SeqCst);
    stop_runners(runners);
    result?;
    if let Some(e) = race.failed.lock().map(|mut f| f.take()).ok().flatten() {
        return Err(WaitEnd::Failed(e));
    }
    race.won
        .lock()
        .ok()
        .and_then(|mut w| w.take())
        .ok_or_else(|| WaitEnd::Failed(io::Error::other("no slot was won")))
}

/// One waiting thread: blocks on its slot until it wins it or the race is over.
fn run_for_slot(lock: &dyn DescriptorLock, race: &Race, own: File, slot: u16) {
    loop {
        if race.over.load(Ordering::SeqCst) {
            return;
        }
        match lock.lock_blocking(own.as_fd(), LockMode::Exclusive, byte(u64::from(slot))) {
            Ok(()) => {
                let Ok(mut won) = race.won.lock() else { return };
                if won.is_none() && !race.over.load(Ordering::SeqCst) {
                    *won = Some((own, slot));
                    drop(won);
                    let _ = nix::unistd::write(&race.done, &[1]);
                }
                // Otherwise `own` closes here, which gives the slot back.
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if let Ok(mut failed) = race.failed.lock() {
                    failed.get_or_insert(e);
                }
                let _ = nix::unistd::write(&race.done, &[1]);
                return;
            }
        }
    }
}

/// Blocks until `fd` is readable; `Interrupted` when a signal handler ran.
fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&raw mut poll, 1, -1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a waiting thread with every signal blocked but SIGALRM (how it is interrupted),
/// and a small stack: a semaphore may have a thousand slots.
fn spawn_runner(body: impl FnOnce() + Send + 'static) -> io::Result<std::thread::JoinHandle<()>> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut blocked = SigSet::all();
    blocked.remove(Signal::SIGALRM);
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut previous))?;
    let spawned = std::thread::Builder::new()
        .name("slot".to_owned())
        .stack_size(64 * 1024)
        .spawn(body);
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
    spawned
}

/// Interrupts the waiting threads until each has seen the race is over, and joins them.
fn stop_runners(mut runners: Vec<std::thread::JoinHandle<()>>) {
    let mut rounds = 0u32;
    while !runners.is_empty() {
        for runner in &runners {
            if !runner.is_finished() {
                // SAFETY: the thread is alive (not joined); SIGALRM's handler does nothing.
                unsafe { libc::pthread_kill(runner.as_pthread_t(), libc::SIGALRM) };
            }
        }
        let (finished, running): (Vec<_>, Vec<_>) = runners
            .into_iter()
            .partition(std::thread::JoinHandle::is_finished);
        for runner in finished {
            let _ = runner.join();
        }
        runners = running;
        if !runners.is_empty() {
            // A thread between its check and its blocking call misses the signal: send it
            // again shortly. An interrupted thread ends within microseconds, and COMMAND
            // waits for this, so look again at once a few times before napping.
            rounds += 1;
            if rounds < 200 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

/// A held slot: the descriptor lock on its byte, and which slot it is.
struct HeldSlot {
    slot: u16,
    slots: u16,
    inner: HeldDescriptor,
}

impl Hold for HeldSlot {
    fn key(&self) -> HeldKey {
        self.inner.key
    }

    fn waited(&self) -> Duration {
        self.inner.waited
    }

    fn descriptor(&self) -> Option<RawFd> {
        self.inner.descriptor()
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        lock::slot_env(Some((self.slot, self.slots)))
    }

    fn details(&self) -> String {
        lock::slot_details(Some((self.slot, self.slots)))
    }

    fn loss(&self) -> Option<LostWatch> {
        None
    }

    fn still_named(&self) -> bool {
        self.inner.still_named()
    }

    fn release_named(self: Box<Self>) -> (bool, Option<String>) {
        Box::new(self.inner).release_named()
    }
}

/// `status` of a lock file that is a semaphore (a recorded N, or waiters queued): N, each
/// held slot with the process holding it, and the waiters, queued or at the head of the
/// queue. Leaves `report` alone for any other lock file.
pub(crate) fn inspect(report: &mut LockStatus, file: &LockFile<'_>) {
    let lines: Vec<&LockLine> = file
        .locks
        .lines
        .iter()
        .filter(|l| l.inode == file.id.ino && l.class == "OFDLCK")
        .collect();
    let one_byte = |l: &LockLine| l.end == Some(l.start);
    let count_bytes = COUNT_BASE + 1..=COUNT_BASE + u64::from(MAX_SLOTS);
    let slots = lines
        .iter()
        .find(|l| !l.waiter && !l.write && one_byte(l) && count_bytes.contains(&l.start))
        .and_then(|l| u16::try_from(l.start - COUNT_BASE).ok());
    let queued = lines
        .iter()
        .filter(|l| l.waiter && l.start == QUEUE_BYTE)
        .count();
    if slots.is_none() && queued == 0 {
        return;
    }
    let owners = descriptors::locks_by_process(file.id, "OFDLCK");
    let mut held = Vec::new();
    for line in lines
        .iter()
        .filter(|l| !l.waiter && l.write && one_byte(l) && l.start < COUNT_BASE)
    {
        let Ok(slot) = u16::try_from(line.start) else {
            continue;
        };
        let found: Vec<Holder> = owners
            .iter()
            .filter(|(_, held)| held.iter().any(|h| h.start == line.start && one_byte(h)))
            .filter_map(|(pid, _)| ProcessInfo::read(*pid).ok())
            .map(|process| Holder {
                process,
                mode: LockMode::Exclusive,
                child: None,
            })
            .collect();
        let holder = collapse_trees(found).first().map(status::holder_report);
        held.push(SlotReport {
            slot,
            holder,
            pid: None,
            host: None,
            verdict: None,
            since: None,
            command: None,
        });
    }
    held.sort_by_key(|s| s.slot);
    held.dedup_by_key(|s| s.slot);
    // The head of the queue waits on every slot byte at once: one waiter, not N.
    let at_head = usize::from(lines.iter().any(|l| l.waiter && l.start < COUNT_BASE));
    report.waiters = (0..queued + at_head)
        .map(|_| WaiterReport {
            pid: None,
            command: None,
            mode: LockMode::Exclusive.name(),
        })
        .collect();
    report.holders = held.iter().filter_map(|s| s.holder.clone()).collect();
    report.state = if held.is_empty() {
        State::Free
    } else {
        State::Held
    };
    report.mode = (!held.is_empty()).then_some(LockMode::Exclusive.name());
    // The slots are shown one by one; their bytes need no lines of their own.
    report.ranges.clear();
    report
        .warnings
        .retain(|w| !w.starts_with("OFD lock requests do not record"));
    if !report.waiters.is_empty() {
        report
            .warnings
            .push("OFD lock requests do not record who waits; waiter pids are unknown".into());
    }
    report.semaphore = Some(SemaphoreReport { slots, held });
}
