//! Deadlines and the blocking wait in the kernel.
//!
//! A blocking `flock(2)` or `F_OFD_SETLKW` returns `EINTR` when a signal handler installed
//! *without* `SA_RESTART` runs. Both ways out of a wait use that: the timeout is a per-thread
//! `CLOCK_MONOTONIC` timer delivering `SIGALRM` (as util-linux flock(1) does), and a
//! termination signal (INT, TERM, HUP, QUIT, USR1, USR2) sets a flag the wait loop checks.
//! No polling: between those events the process sleeps in the kernel's lock queue.
#![allow(unsafe_code)]

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::error::Error;
use crate::inspect::sighting::Sighting;

/// Signals that make flockrun give up a wait (and, once COMMAND runs, get forwarded to it).
pub const STOP_SIGNALS: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// First stop signal received, 0 if none. Written by the handler, read by the wait loop and
/// by the supervisor right before it starts COMMAND.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The `timer_t` of the wait in progress, or null. The stop handler re-arms it (see
/// `on_stop_signal`); the process is single-threaded, so handler and owner never race.
static ACTIVE_TIMER: AtomicPtr<libc::c_void> = AtomicPtr::new(ptr::null_mut());

/// If the timer fires before the lock call has started to block, the signal is lost and the
/// call would block forever. So the timer repeats at this interval until the wait loop
/// disarms it, exactly the guard util-linux's `lib/timer.c` uses.
const RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// When a wait should end: never, at once (a single attempt), or at an instant.
///
/// ```
/// use std::time::Duration;
/// use flockrun::wait::Deadline;
/// assert!(Deadline::after(Duration::ZERO).is_immediate());
/// assert!(!Deadline::forever().is_immediate());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    started: Instant,
    limit: Option<Duration>,
    /// A first look that nobody is told about: a busy lock is not described (see `probe`).
    quiet: bool,
}

impl Deadline {
    /// Wait as long as it takes.
    #[must_use]
    pub fn forever() -> Self {
        Deadline {
            started: Instant::now(),
            limit: None,
            quiet: false,
        }
    }

    /// Wait at most `limit`; `Duration::ZERO` means one attempt and no wait.
    #[must_use]
    pub fn after(limit: Duration) -> Self {
        Deadline {
            started: Instant::now(),
            limit: Some(limit),
            quiet: false,
        }
    }

    /// One attempt whose failure is not reported to anyone, so a busy lock is not described
    /// (finding its holders costs a scan of `/proc`): the first look of a caller that will
    /// decide for itself what to do about a busy lock.
    #[must_use]
    pub fn probe() -> Self {
        Deadline {
            quiet: true,
            ..Deadline::after(Duration::ZERO)
        }
    }

    /// True for a single non-blocking attempt (`try`, `-n`, `-w 0`).
    #[must_use]
    pub fn is_immediate(&self) -> bool {
        self.limit == Some(Duration::ZERO)
    }

    /// True for a `probe`: a busy lock need not be described.
    #[must_use]
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Time since the deadline was set.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Time left, `None` when unbounded.
    #[must_use]
    pub fn remaining(&self) -> Option<Duration> {
        self.limit.map(|limit| limit.saturating_sub(self.elapsed()))
    }
}

/// Hooks for showing a wait to a person. All methods have do-nothing defaults.
pub trait WaitObserver {
    /// The lock the wait is for, as messages show it.
    fn set_lock(&mut self, _shown: &str) {}
    /// Whether `blocked` wants to know who holds the lock (costs a scan of `/proc`).
    fn wants_holders(&self) -> bool {
        false
    }
    /// The first attempt found the lock busy and the wait begins.
    fn blocked(&mut self, _sighting: &Sighting) {}
    /// How often `tick` should be called while waiting, if at all.
    fn tick_every(&self) -> Option<Duration> {
        None
    }
    /// Still waiting after `_waited`; `_sighting` looks at the lock now (costly: call it
    /// only to show the result).
    fn tick(&mut self, _waited: Duration, _sighting: &dyn Fn() -> Sighting) {}
    /// The wait ended, either way.
    fn finished(&mut self) {}
    /// Something a person should know about this lock (shown once, unless `-q`).
    fn warn(&mut self, _message: &str) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl WaitObserver for Silent {}

/// The error for a lock that was not had: `Busy` after a single attempt, `TimedOut` after a
/// wait, or `Interrupted` when a stop signal is what ended it. `lock` is the lock as
/// messages show it.
#[must_use]
pub fn not_acquired(lock: &std::path::Path, deadline: &Deadline, sighting: Sighting) -> Error {
    if let Some(signal) = stop_signal() {
        return Error::Interrupted { signal };
    }
    let sighting = Box::new(sighting);
    if deadline.quiet {
        return Error::Busy {
            path: lock.to_owned(),
            sighting: Box::default(),
        };
    }
    if deadline.is_immediate() {
        Error::Busy {
            path: lock.to_owned(),
            sighting,
        }
    } else {
        Error::TimedOut {
            path: lock.to_owned(),
            waited: deadline.elapsed(),
            sighting,
        }
    }
}

/// The start of a wait for a lock found busy: with an immediate deadline, the busy error
/// (naming who holds the lock unless the deadline is quiet); otherwise the observer is told
/// that the wait begins, with who holds the lock if it wants to know.
///
/// # Errors
/// `Busy` for an immediate deadline.
pub fn begin_wait(
    lock: &std::path::Path,
    deadline: &Deadline,
    observer: &mut dyn WaitObserver,
    sight: &dyn Fn() -> Sighting,
) -> Result<(), Error> {
    if deadline.is_immediate() {
        let sighting = if deadline.is_quiet() {
            Sighting::default()
        } else {
            sight()
        };
        return Err(not_acquired(lock, deadline, sighting));
    }
    let sighting = if observer.wants_holders() {
        sight()
    } else {
        Sighting::default()
    };
    observer.blocked(&sighting);
    Ok(())
}

/// Why a blocking wait ended without the lock.
#[derive(Debug)]
pub enum WaitEnd {
    TimedOut,
    Stopped(i32),
    Failed(io::Error),
}

/// The signal that asked flockrun to stop, if one has arrived.
#[must_use]
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let _ = STOP_SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    // The signal may have landed between the loop's flag check and the start of the blocking
    // call; the call would then sleep until the holder lets go. Firing the wait's timer
    // shortly interrupts it so the loop sees the flag. timer_settime is async-signal-safe.
    let timer = ACTIVE_TIMER.load(Ordering::SeqCst);
    if !timer.is_null() {
        arm_raw(timer, Duration::from_millis(1));
    }
}

extern "C" fn on_timer_signal(_: libc::c_int) {
    // Nothing to do: running a handler is what makes the blocking call return EINTR, and
    // the loop decides on the monotonic clock whether the deadline has passed, so a stray
    // `kill -ALRM` cannot cut a wait short.
}

/// Installs the stop-signal handlers. No `SA_RESTART`: a blocking lock call must return
/// `EINTR` so the wait can end. (signal-hook always sets `SA_RESTART`, hence nix here.)
///
/// # Errors
/// When `sigaction` fails, which only happens for invalid signals.
pub fn install_stop_handlers() -> io::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in STOP_SIGNALS {
        // SAFETY: the handler only touches atomics and calls timer_settime, which are
        // async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    let alarm = SigAction::new(
        SigHandler::Handler(on_timer_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing.
    unsafe { sigaction(Signal::SIGALRM, &alarm) }?;
    Ok(())
}

/// A `CLOCK_MONOTONIC` timer whose `SIGALRM` goes to the thread that created it. A
/// process-directed signal could land on another thread and leave the waiting call asleep.
struct ThreadTimer {
    id: libc::timer_t,
}

impl ThreadTimer {
    fn create() -> io::Result<Self> {
        // SAFETY: sigevent is plain data; all-zero is a valid starting value.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = libc::SIGALRM;
        event.sigev_notify_thread_id = nix::unistd::gettid().as_raw();
        let mut id: libc::timer_t = ptr::null_mut();
        // SAFETY: both pointers are valid for the duration of the call.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &raw mut event, &raw mut id) } != 0 {
            return Err(io::Error::last_os_error());
        }
        ACTIVE_TIMER.store(id, Ordering::SeqCst);
        Ok(ThreadTimer { id })
    }

    /// Fire after `after`, then every `RETRY_INTERVAL` until re-armed or disarmed.
    fn arm(&self, after: Duration) {
        arm_raw(self.id, after.max(Duration::from_nanos(1)));
    }

    fn disarm(&self) {
        set_raw(self.id, Duration::ZERO, Duration::ZERO);
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        ACTIVE_TIMER.store(ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: the id came from timer_create and is deleted once.
        unsafe { libc::timer_delete(self.id) };
    }
}

fn arm_raw(id: libc::timer_t, after: Duration) {
    set_raw(id, after, RETRY_INTERVAL);
}

fn set_raw(id: libc::timer_t, value: Duration, interval: Duration) {
    let spec = libc::itimerspec {
        it_interval: timespec(interval),
        it_value: timespec(value),
    };
    // SAFETY: spec is valid; a failure (impossible for a live id) leaves the timer as it was.
    unsafe { libc::timer_settime(id, 0, &raw const spec, ptr::null_mut()) };
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    }
}

/// Runs `attempt` (a *blocking* lock call) until it succeeds, the deadline passes, a stop
/// signal arrives or it fails. `tick`, if given, is called about every `tick_every` with the
/// time waited so far, for a progress display.
pub fn wait_in_kernel(
    deadline: &Deadline,
    tick_every: Option<Duration>,
    tick: &mut dyn FnMut(Duration),
    attempt: &mut dyn FnMut() -> io::Result<()>,
) -> Result<(), WaitEnd> {
    // Created on first need: a wait with no deadline and no ticks (the common blocking
    // `exec`) needs no timer, and its wake-up should not have to delete one.
    let mut timer: Option<ThreadTimer> = None;
    let mut next_tick = tick_every;
    loop {
        if let Some(sig) = stop_signal() {
            return Err(WaitEnd::Stopped(sig));
        }
        let remaining = deadline.remaining();
        if remaining == Some(Duration::ZERO) {
            return Err(WaitEnd::TimedOut);
        }
        let until_tick = next_tick.map(|at| at.saturating_sub(deadline.elapsed()));
        let wake_in = match (remaining, until_tick) {
            (Some(r), Some(t)) => Some(r.min(t)),
            (Some(d), None) | (None, Some(d)) => Some(d),
            (None, None) => None,
        };
        match (wake_in, &timer) {
            (Some(d), Some(timer)) => timer.arm(d),
            (Some(d), None) => {
                let created = ThreadTimer::create().map_err(WaitEnd::Failed)?;
                created.arm(d);
                timer = Some(created);
            }
            (None, Some(timer)) => timer.disarm(),
            (None, None) => {}
        }
        match attempt() {
            Ok(()) => {
                if let Some(timer) = &timer {
                    timer.disarm();
                }
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if let (Some(every), Some(at)) = (tick_every, next_tick) {
                    let elapsed = deadline.elapsed();
                    if elapsed >= at {
                        tick(elapsed);
                        next_tick = Some(elapsed + every);
                    }
                }
            }
            Err(e) => return Err(WaitEnd::Failed(e)),
        }
    }
}

/// Runs `call`, a blocking system call, for at most `limit`: a timer signal to this thread
/// interrupts it, as a stop signal does. `Ok(true)` when the call completed, `Ok(false)`
/// when it was interrupted.
///
/// # Errors
/// When the timer cannot be created, or what the call fails with.
pub fn block_for(limit: Duration, call: &mut dyn FnMut() -> io::Result<()>) -> io::Result<bool> {
    let timer = ThreadTimer::create()?;
    timer.arm(limit);
    let result = call();
    timer.disarm();
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waiting by retrying, for kinds whose waits cannot sleep in the kernel's lock queue
/// (sqlite, soft): decides whether to try again, reports the wait to an observer, and
/// hands out naps that start short and double up to a cap.
pub struct Polling {
    nap: Duration,
    max_nap: Duration,
    next_tick: Option<Duration>,
    blocked: bool,
}

impl Polling {
    #[must_use]
    pub fn new(first_nap: Duration, max_nap: Duration) -> Self {
        Polling {
            nap: first_nap,
            max_nap,
            next_tick: None,
            blocked: false,
        }
    }

    /// Whether the wait goes on after a failed attempt, and if so how long to nap before the
    /// next one. `None` on a stop signal, a single-attempt deadline or an expired one.
    /// Tells `observer` the wait began (once) and ticks it along.
    pub fn next_nap(
        &mut self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
        sighting: &dyn Fn() -> Sighting,
    ) -> Option<Duration> {
        if stop_signal().is_some() || deadline.is_immediate() {
            return None;
        }
        if !self.blocked {
            self.blocked = true;
            self.next_tick = observer.tick_every();
            let seen = if observer.wants_holders() {
                sighting()
            } else {
                Sighting::default()
            };
            observer.blocked(&seen);
        }
        let remaining = deadline.remaining();
        if remaining == Some(Duration::ZERO) {
            return None;
        }
        let elapsed = deadline.elapsed();
        if let (Some(at), Some(every)) = (self.next_tick, observer.tick_every())
            && elapsed >= at
        {
            observer.tick(elapsed, sighting);
            self.next_tick = Some(elapsed + every);
        }
        let nap = remaining.map_or(self.nap, |r| r.min(self.nap));
        self.nap = (self.nap * 2).min(self.max_nap);
        Some(nap)
    }

    /// Whether the wait ever began (the observer was told `blocked`).
    #[must_use]
    pub fn blocked(&self) -> bool {
        self.blocked
    }
}

/// Sleeps for `d` unless a signal arrives first: unlike `std::thread::sleep`, no retry on
/// `EINTR`, so a stop signal ends the nap at once.
#[allow(unsafe_code)]
pub fn nap(d: Duration) {
    let request = timespec(d);
    // SAFETY: a valid timespec; the remainder is not wanted.
    unsafe { libc::nanosleep(&raw const request, ptr::null_mut()) };
}

/// Runs `body` on a new thread named `name` that blocks every signal, so signals sent to
/// flockrun reach the main thread only (its handlers and its `sigwaitinfo` depend on that).
///
/// # Errors
/// When the thread cannot be started or the signal mask cannot be set.
pub fn spawn_with_signals_blocked(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<()> {
    use nix::sys::signal::{SigmaskHow, pthread_sigmask};
    let mut previous = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::all()),
        Some(&mut previous),
    )?;
    // The new thread inherits the all-blocked mask from birth: no signal can land on it.
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body);
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)?;
    spawned.map(drop)
}
