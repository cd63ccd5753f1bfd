//! A network hold's session: a thread renews it on a schedule, each renewal with a deadline,
//! and the hold counts as lost when the server says so or when no renewal has been confirmed
//! for the TTL minus the grace COMMAND gets (`supervise::grace_for`). Either way the thread
//! records why and wakes the main thread with SIGALRM, so the supervisor stops COMMAND's
//! tree while the server still keeps the lock: a contender can take it only after the TTL,
//! counted by the server from a renewal it received, which is no earlier than when flockrun
//! sent it.
//!
//! Unlike a marker hold's heartbeat (`kind::marker::heartbeat`), whose filesystem calls can
//! hang past any deadline, every call a network kind makes has a deadline of its own, so the
//! thread itself notices in time and the supervisor need not watch the clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::supervise::{self, LostWatch};
use crate::wait;

/// What a renewal (or the check after it) found.
#[derive(Debug)]
pub enum Renewal {
    /// Renewed; the server may state the TTL it now grants.
    Renewed(Option<Duration>),
    /// The hold is gone, and why.
    Lost(String),
    /// The session is ending (released, or flockrun is stopping): end quietly.
    Stopped,
}

/// A kind's protocol for keeping its session alive.
pub trait Renew: Send + 'static {
    /// Work the holder hands to the renewal thread, so the main thread need not wait on it.
    type Chore: Send + 'static;

    /// Renews the session, giving up at `until`; `stopping` says the session is ending.
    fn renew(&mut self, until: Instant, stopping: &dyn Fn() -> bool) -> Renewal;

    /// After a renewal went through: checks that the hold is still ours (etcd: the key
    /// still exists), by `until`, counted from that renewal.
    fn check(&mut self, until: Instant, stopping: &dyn Fn() -> bool) -> Renewal {
        let _ = (until, stopping);
        Renewal::Renewed(None)
    }

    /// Does a chore the holder queued; best effort (a failure shows in the next renewal).
    fn chore(&mut self, chore: Self::Chore, until: Instant, stopping: &dyn Fn() -> bool);
}

/// The state the renewal thread shares with the holder.
pub struct Liveness<C> {
    lost: AtomicBool,
    stop: AtomicBool,
    reason: Mutex<String>,
    /// A chore for the renewal thread to do at once; also the mutex the thread sleeps on.
    chore: Mutex<Option<C>>,
    wake: Condvar,
}

/// The mutex's data, also after a panic elsewhere poisoned it: every value the network kinds
/// keep under a mutex is complete at all times.
pub fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// When a session confirmed at `confirmed` with `ttl` stops counting as held: TTL minus
/// the grace COMMAND gets to stop.
#[must_use]
pub fn give_up_at(confirmed: Instant, ttl: Duration) -> Instant {
    confirmed + ttl.saturating_sub(supervise::grace_for(ttl))
}

impl<C: Send + 'static> Liveness<C> {
    /// Starts renewing: `renewer` is called every `ttl / per_ttl`, counted from the last
    /// confirmed renewal (`confirmed`, when the session was made, to begin with). `name`
    /// names the thread and `starting` says what failed if it cannot be started.
    ///
    /// # Errors
    /// `System` when the thread cannot be started.
    pub fn start<R: Renew<Chore = C>>(
        renewer: R,
        ttl: Duration,
        per_ttl: u32,
        confirmed: Instant,
        (name, starting): (&str, &'static str),
    ) -> Result<Arc<Self>, Error> {
        let liveness = Arc::new(Liveness {
            lost: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            chore: Mutex::new(None),
            wake: Condvar::new(),
        });
        let shared = Arc::clone(&liveness);
        wait::spawn_with_signals_blocked(name, move || {
            shared.renew(renewer, ttl, per_ttl, confirmed);
        })
        .map_err(|e| Error::system(starting, e))?;
        Ok(liveness)
    }

    /// Records that the hold is lost and wakes the main thread: it may sleep in a socket
    /// call or in sigwaitinfo, and SIGALRM interrupts the first (its handler is installed
    /// without `SA_RESTART`) and is taken by the second (supervise watches it for network
    /// kinds). The renewal thread blocks every signal, so this process-directed signal can
    /// only reach the main thread.
    pub fn lose(&self, reason: String) {
        *locked(&self.reason) = reason;
        self.lost.store(true, Ordering::SeqCst);
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGALRM);
    }

    #[must_use]
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Whether the session is ending: released, or lost.
    #[must_use]
    pub fn ended(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.is_lost()
    }

    /// Why the hold is lost, if it is.
    #[must_use]
    pub fn lost(&self) -> Option<String> {
        self.is_lost().then(|| locked(&self.reason).clone())
    }

    /// Whether a call on the main thread should give up: a stop signal, or the hold lost.
    #[must_use]
    pub fn ending(&self) -> bool {
        wait::stop_signal().is_some() || self.is_lost()
    }

    /// Hands `chore` to the renewal thread, which does it at once.
    pub fn queue(&self, chore: C) {
        *locked(&self.chore) = Some(chore);
        self.wake.notify_all();
    }

    /// Stops the renewal thread (it ends after the call in flight, if any). Returns whether
    /// the hold was lost by then: then there is nothing left to release.
    pub fn stop(&self) -> bool {
        {
            // Under the mutex the thread sleeps on, so the wake-up cannot slip in between
            // its check and its sleep.
            let _chore = locked(&self.chore);
            self.stop.store(true, Ordering::SeqCst);
            self.wake.notify_all();
        }
        self.is_lost()
    }

    /// How the supervisor notices a loss of a hold with `ttl`: SIGALRM from the thread.
    #[must_use]
    pub fn watch(self: &Arc<Self>, ttl: Duration) -> LostWatch {
        let liveness = Arc::clone(self);
        LostWatch {
            is_lost: Arc::new(move || liveness.is_lost()),
            grace: supervise::grace_for(ttl),
            // The renewal thread signals a loss; its calls all have deadlines.
            poll: None,
        }
    }

    /// The renewal thread.
    fn renew<R: Renew<Chore = C>>(
        &self,
        mut renewer: R,
        mut ttl: Duration,
        per_ttl: u32,
        mut confirmed: Instant,
    ) {
        let stopping = || self.stop.load(Ordering::SeqCst);
        loop {
            let next = confirmed + ttl / per_ttl;
            let mut chore = locked(&self.chore);
            while !stopping() && Instant::now() < next && chore.is_none() {
                let left = next.saturating_duration_since(Instant::now());
                chore = self
                    .wake
                    .wait_timeout(chore, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            let work = chore.take();
            drop(chore);
            if stopping() {
                return;
            }
            if let Some(work) = work {
                renewer.chore(work, give_up_at(confirmed, ttl), &stopping);
                if Instant::now() < next {
                    continue;
                }
            }
            let sent = Instant::now();
            match renewer.renew(give_up_at(confirmed, ttl), &stopping) {
                Renewal::Renewed(granted) => {
                    confirmed = sent;
                    ttl = granted.unwrap_or(ttl);
                }
                Renewal::Lost(reason) => return self.lose(reason),
                Renewal::Stopped => return,
            }
            match renewer.check(give_up_at(confirmed, ttl), &stopping) {
                Renewal::Renewed(_) => {}
                Renewal::Lost(reason) => return self.lose(reason),
                Renewal::Stopped => return,
            }
        }
    }
}

/// How long an unreachable server is tried before giving up: `budget` (the TTL), or less
/// when the wait itself ends sooner, but never under half a second.
#[must_use]
pub fn reach_until(deadline: &wait::Deadline, budget: Duration) -> Instant {
    let budget = match deadline.remaining() {
        Some(left) if !deadline.is_immediate() => budget.min(left.max(Duration::from_millis(500))),
        _ => budget,
    };
    Instant::now() + budget
}
