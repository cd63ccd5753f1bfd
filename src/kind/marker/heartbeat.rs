//! The renewal thread of a hold that lives by heartbeat (soft lease, soft reader/writer
//! lock): every TTL/3 it renews the hold's records, and it says the hold is lost when they
//! are gone or were taken over, or when no renewal has succeeded for long enough that a
//! contender could take over (so COMMAND is stopped first). The supervisor asks `is_lost`
//! by the clock as well, so a renewal stuck in a hung filesystem call cannot hold it up;
//! nothing on the lock's filesystem is touched on the supervisor's thread. Release runs on
//! this thread too, within a budget, for the same reason.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::supervise::{self, LostWatch};
use crate::wait;

/// What one renewal found.
#[derive(Debug)]
pub(crate) enum Renewal {
    Renewed,
    /// Not renewed this time, for a reason that may pass (a filesystem error, a record
    /// moved aside for a moment); lost only if it lasts.
    Failed(String),
    /// The hold is no longer ours, and why.
    Lost(String),
}

/// The records a heartbeat keeps alive.
pub(crate) trait Renew: Send + 'static {
    fn renew(&mut self) -> Renewal;
    /// Gives the hold up (removes or commits out our records).
    fn release(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Renew,
    Stop,
    Release,
    Released,
}

/// The state the renewal thread shares with the holder.
pub(crate) struct Beat<R> {
    renewer: Mutex<R>,
    /// What the lock is, for messages.
    what: String,
    ttl: Duration,
    /// When the hold stops counting as ours unless renewed: TTL minus the grace COMMAND
    /// gets and a margin, after the last renewal that succeeded.
    lose_after: Duration,
    started: Instant,
    /// Nanoseconds after `started` at which the last successful renewal was sent.
    last_ok: AtomicU64,
    lost: AtomicBool,
    reason: Mutex<String>,
    order: Mutex<Order>,
    wake: Condvar,
    interval: Duration,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<R: Renew> Beat<R> {
    /// Starts renewing `renewer` every TTL/3. `renewed_at` is when its records were last
    /// written (the hold counts from then). `what` names the lock in messages.
    pub(crate) fn start(
        renewer: R,
        what: String,
        ttl: Duration,
        renewed_at: Instant,
    ) -> Result<Arc<Self>, Error> {
        let grace = supervise::grace_for(ttl);
        let margin = (ttl / 10).min(Duration::from_millis(500));
        let started = Instant::now();
        let beat = Arc::new(Beat {
            renewer: Mutex::new(renewer),
            what,
            ttl,
            lose_after: ttl.saturating_sub(grace + margin),
            started: renewed_at.min(started),
            last_ok: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            order: Mutex::new(Order::Renew),
            wake: Condvar::new(),
            interval: ttl / 3,
        });
        let thread_beat = Arc::clone(&beat);
        wait::spawn_with_signals_blocked("heartbeat", move || thread_beat.run())
            .map_err(|e| Error::system("starting the heartbeat thread", e))?;
        Ok(beat)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Time since the last renewal that succeeded (or since the records were made).
    fn unrenewed_for(&self) -> Duration {
        Duration::from_nanos(
            self.now()
                .saturating_sub(self.last_ok.load(Ordering::SeqCst)),
        )
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst) || self.unrenewed_for() >= self.lose_after
    }

    fn lose(&self, reason: String) {
        if self.lost.swap(true, Ordering::SeqCst) {
            return;
        }
        *locked(&self.reason) = reason;
        // Wakes the supervisor (it waits for SIGALRM while COMMAND runs); this thread blocks
        // every signal, so the process-directed signal reaches the main thread.
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGALRM);
    }

    pub(crate) fn lost_reason(&self) -> Option<String> {
        if self.lost.load(Ordering::SeqCst) {
            return Some(locked(&self.reason).clone());
        }
        (self.unrenewed_for() >= self.lose_after).then(|| {
            format!(
                "{} could not be renewed for {} (the filesystem did not answer in time, or \
                 flockrun was stopped), so another process may take it over",
                self.what,
                crate::duration::format_seconds(self.lose_after)
            )
        })
    }

    /// The renewal thread.
    fn run(&self) {
        let mut next = Instant::now() + self.interval;
        loop {
            let order = {
                let mut order = locked(&self.order);
                while *order == Order::Renew && Instant::now() < next {
                    let left = next.saturating_duration_since(Instant::now());
                    order = self
                        .wake
                        .wait_timeout(order, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                *order
            };
            match order {
                Order::Stop | Order::Released => return,
                Order::Release => {
                    locked(&self.renewer).release();
                    *locked(&self.order) = Order::Released;
                    self.wake.notify_all();
                    return;
                }
                Order::Renew => {}
            }
            next = Instant::now() + self.interval;
            let sent = self.now();
            let renewal = locked(&self.renewer).renew();
            match renewal {
                Renewal::Renewed => self.last_ok.store(sent, Ordering::SeqCst),
                Renewal::Lost(reason) => {
                    self.lose(reason);
                    return;
                }
                Renewal::Failed(why) => {
                    if self.unrenewed_for() >= self.lose_after {
                        self.lose(format!("{} could not be renewed: {why}", self.what));
                        return;
                    }
                }
            }
            if self.is_lost() {
                self.lose(self.lost_reason().unwrap_or_default());
                return;
            }
        }
    }

    /// Asks the thread to release and waits for it, within `budget`. False when the
    /// filesystem did not answer in time.
    pub(crate) fn release(&self, budget: Duration) -> bool {
        let until = Instant::now() + budget;
        let mut order = locked(&self.order);
        if *order == Order::Released {
            return true;
        }
        *order = Order::Release;
        self.wake.notify_all();
        while *order != Order::Released {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            order = self
                .wake
                .wait_timeout(order, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Stops renewing without releasing (the hold is lost: nothing of it is ours).
    pub(crate) fn stop(&self) {
        let mut order = locked(&self.order);
        if *order == Order::Renew {
            *order = Order::Stop;
        }
        self.wake.notify_all();
    }

    /// Ends the hold: releases it unless it is lost (then the filesystem may not answer,
    /// and the records are no longer ours anyway). A warning when the filesystem did not
    /// answer within `budget`.
    pub(crate) fn end(&self, budget: Duration) -> Option<String> {
        if self.is_lost() {
            self.stop();
            return None;
        }
        if self.release(budget) {
            return None;
        }
        Some(format!(
            "could not release {} in time (the filesystem did not answer); it frees itself \
             once unchanged for its TTL",
            self.what
        ))
    }

    /// How the supervisor notices a loss: SIGALRM from this thread, or the clock.
    pub(crate) fn watch(self: &Arc<Self>) -> LostWatch {
        let beat = Arc::clone(self);
        let grace = supervise::grace_for(self.ttl);
        LostWatch {
            is_lost: Arc::new(move || beat.is_lost()),
            grace,
            poll: Some((grace / 4).min(Duration::from_millis(250))),
        }
    }
}

/// The text of an I/O error for `Renewal::Failed`.
pub(crate) fn failed(e: &io::Error) -> Renewal {
    Renewal::Failed(e.to_string())
}
