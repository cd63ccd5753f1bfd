//! Watching a kernel lock held on NFSv4 while COMMAND runs.
//!
//! An NFSv4 server keeps a client's locks only while the client renews its lease. A client
//! cut off from the server for longer than the lease loses its locks to the next client that
//! asks, and nothing tells its processes: the client's own lock table still lists the lock.
//! The client's kernel learns of the loss only when it talks to the server again, and from
//! then on fails every read and write through the lost lock's descriptor with EIO.
//!
//! So a holder must ask, and must not wait for an answer that may never come. A prober
//! process reads one byte of the lock file through the locked open file description with
//! `O_DIRECT` every lease/10 (between 0.5 and 5 s): a page-cache read would never reach the
//! server, and the lock file's contents are not touched. The read carries the lock's state
//! to the server, so an answer proves the lock was still this client's when the read was
//! sent, and renews the lease; EIO says the kernel knows it lost the lock. A descriptor
//! that cannot read (`exec 9>LOCK`) is probed with a lock test instead, which finds a
//! conflicting lock once another client holds it. The supervisor counts from the last
//! answered probe: once no probe has been answered for the lease minus COMMAND's grace and a
//! margin (1 s for the server's whole-second accounting, plus a twentieth of the lease), the
//! server could soon hand the lock on, and COMMAND is stopped first. A server
//! that restarts looks the same from here until it answers again (then the client reclaims
//! its locks), so a restart longer than that stops COMMAND too.
//!
//! The prober is a process of its own rather than a thread, for two reasons. A read on a
//! hard-mounted NFS file waits as long as the server is away, and a thread stuck there
//! would keep flockrun from exiting; and the last close of a locked file sends the unlock to
//! the server, which waits just as long. The prober holds a reference to the locked file
//! description, so flockrun's own close is never the last one while the server is away: it
//! exits at once with 79, and the prober, left behind, lets go of the file once the server
//! answers again. While the hold is good, releasing stops the prober first, so flockrun's
//! close releases the lock as usual. The prober is not flockrun's child (it is started
//! through an intermediate process), so stopping COMMAND's tree after a loss leaves it alone,
//! and it exits when flockrun does.
#![allow(unsafe_code)]

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::duration::format_seconds;
use crate::lock::ByteRange;
use crate::mode::LockMode;
use crate::supervise::{self, LostWatch};

/// The lease assumed when the kernel does not say (before Linux 4.18): the shortest one
/// Linux's nfsd accepts, so the guess never outlasts the real lease.
const SHORTEST_LEASE: Duration = Duration::from_secs(10);

/// How long releasing waits for the prober to go before closing the lock file anyway.
const STOP_BUDGET: Duration = Duration::from_secs(2);

/// Why a hold is lost, as the prober records it.
const LOST_EIO: u32 = 1;
const LOST_TAKEN: u32 = 2;

/// What the prober and flockrun share: one anonymous shared page.
#[repr(C)]
struct Page {
    /// `CLOCK_MONOTONIC` nanoseconds at which the last probe the server answered was sent.
    last_answered: AtomicU64,
    /// `LOST_*` once a probe proved the lock gone; 0 until then.
    lost: AtomicU32,
    /// Set by flockrun: stop probing and exit.
    quit: AtomicU32,
    /// errno of the last probe that failed without proving anything (for the message).
    last_errno: AtomicI32,
    /// The prober's pid, written by the intermediate process that started it.
    prober: AtomicI32,
}

struct SharedPage(std::ptr::NonNull<Page>);

// SAFETY: the page holds atomics only, and lives until the `SharedPage` is dropped.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    fn new() -> io::Result<Self> {
        // SAFETY: an anonymous mapping; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Page>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Zero-filled by the kernel: every field starts at 0, a valid atomic value.
        std::ptr::NonNull::new(ptr.cast())
            .map(SharedPage)
            .ok_or_else(|| io::Error::other("mmap"))
    }

    fn get(&self) -> &Page {
        // SAFETY: mapped, aligned (page-aligned) and of the right size until drop.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; nothing refers to it after this.
        unsafe { libc::munmap(self.0.as_ptr().cast(), std::mem::size_of::<Page>()) };
    }
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; CLOCK_MONOTONIC is system-wide, so both processes agree.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just gave us, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(RawFd::try_from(fd).unwrap_or(-1)) })
}

/// Everything the prober needs, prepared before the fork (the prober allocates nothing).
struct Probe {
    fd: RawFd,
    /// Whether the descriptor can read (else the lock test).
    readable: bool,
    /// `F_RDLCK` or `F_WRLCK`: the type held, for the lock test.
    lock_type: libc::c_int,
    interval_ms: libc::c_int,
    flockrun: libc::pid_t,
    flockrun_pidfd: RawFd,
    page: *const Page,
}

/// A kernel lock on NFSv4 under watch.
pub(crate) struct NfsWatch {
    page: SharedPage,
    /// A pidfd of the prober, to wait for it to go.
    prober: Option<OwnedFd>,
    lease: Duration,
    lease_known: bool,
    /// No answer for this long and the lock counts as lost.
    lose_after: Duration,
    server: String,
}

impl NfsWatch {
    /// Starts watching the lock `fd` holds in `mode`, on a mount whose server is `server`
    /// and whose lease the kernel says is `lease` (`None`: it does not say). The lock was
    /// granted by the server just now, which counts as the first answer.
    pub(crate) fn start(
        fd: RawFd,
        mode: LockMode,
        lease: Option<Duration>,
        server: String,
    ) -> io::Result<NfsWatch> {
        let lease_known = lease.is_some();
        let lease = lease.unwrap_or(SHORTEST_LEASE);
        let grace = supervise::grace_for(lease);
        // The server counts leases in whole seconds, so it may let one run out up to a
        // second early; the rest covers the round trip of the last answered probe.
        let margin = Duration::from_secs(1) + lease / 20;
        let interval = (lease / 10).clamp(Duration::from_millis(500), Duration::from_secs(5));
        let page = SharedPage::new()?;
        page.get()
            .last_answered
            .store(monotonic_ns(), Ordering::SeqCst);
        // SAFETY: fcntl on a descriptor the hold owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let own = pidfd_open(nix::unistd::getpid().as_raw())?;
        let probe = Probe {
            fd,
            readable: flags >= 0 && flags & libc::O_ACCMODE != libc::O_WRONLY,
            lock_type: match mode {
                LockMode::Exclusive => libc::F_WRLCK,
                LockMode::Shared => libc::F_RDLCK,
            },
            interval_ms: libc::c_int::try_from(interval.as_millis()).unwrap_or(5000),
            flockrun: nix::unistd::getpid().as_raw(),
            flockrun_pidfd: own.as_raw_fd(),
            page: page.0.as_ptr(),
        };
        start_prober(&probe)?;
        drop(own);
        let prober = pidfd_open(page.get().prober.load(Ordering::SeqCst)).ok();
        Ok(NfsWatch {
            page,
            prober,
            lease,
            lease_known,
            lose_after: lease.saturating_sub(grace + margin),
            server,
        })
    }

    fn unanswered_for(&self) -> Duration {
        let last = self.page.get().last_answered.load(Ordering::SeqCst);
        Duration::from_nanos(monotonic_ns().saturating_sub(last))
    }

    fn is_lost(&self) -> bool {
        self.page.get().lost.load(Ordering::SeqCst) != 0 || self.unanswered_for() >= self.lose_after
    }

    /// Why the hold is lost, if it is.
    pub(crate) fn reason(&self) -> Option<String> {
        let server = &self.server;
        match self.page.get().lost.load(Ordering::SeqCst) {
            LOST_EIO => {
                return Some(format!(
                    "the NFS client lost it: reading the lock file through the locked \
                     descriptor fails with EIO, which is how Linux says the server ({server}) \
                     no longer holds this client's lock (after a cut longer than the server's \
                     lease, or a server restart without reclaim); another client may hold it"
                ));
            }
            LOST_TAKEN => {
                return Some(format!(
                    "the NFS server ({server}) says another client holds it now"
                ));
            }
            _ => {}
        }
        let silent = self.unanswered_for();
        if silent < self.lose_after {
            return None;
        }
        let mut text = format!(
            "the NFS server ({server}) has not answered for {}, and once this client has been \
             silent for the server's lease ({}{}) the server may give the lock to another \
             client",
            format_seconds(silent),
            format_seconds(self.lease),
            if self.lease_known {
                ""
            } else {
                ", assumed: the kernel does not say"
            }
        );
        let errno = self.page.get().last_errno.load(Ordering::SeqCst);
        if errno != 0 {
            let _ = write!(
                text,
                " (the last probe failed: {})",
                io::Error::from_raw_os_error(errno)
            );
        }
        text.push_str(
            ". A server that restarts looks the same from here; if that is what happened, the \
             client may have kept the lock",
        );
        Some(text)
    }

    /// How the supervisor notices: SIGALRM from the prober, or the clock.
    pub(crate) fn watch(self: &Arc<Self>) -> LostWatch {
        let watch = Arc::clone(self);
        let grace = supervise::grace_for(self.lease);
        LostWatch {
            is_lost: Arc::new(move || watch.is_lost()),
            grace,
            poll: Some((grace / 4).min(Duration::from_millis(250))),
        }
    }

    /// Stops the prober of a hold that is still good and waits (within a budget) until it
    /// is gone, so that closing flockrun's descriptor releases the lock; false when it did
    /// not go in time (stuck in a call the server does not answer). A lost hold's prober is
    /// left alone: it keeps the file open until flockrun has gone, so that no close of
    /// flockrun's waits for the server.
    pub(crate) fn stop(&self) -> bool {
        let page = self.page.get();
        page.quit.store(1, Ordering::SeqCst);
        let pid = page.prober.load(Ordering::SeqCst);
        let Some(pidfd) = &self.prober else {
            return true;
        };
        if pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let budget = libc::c_int::try_from(STOP_BUDGET.as_millis()).unwrap_or(2000);
        // SAFETY: one valid pollfd. A pidfd turns readable once the process has exited.
        unsafe { libc::poll(&raw mut poll, 1, budget) > 0 }
    }

    /// Whether the hold is lost (for release: then nothing of it is ours to clean).
    pub(crate) fn lost(&self) -> bool {
        self.is_lost()
    }
}

/// Starts the prober through an intermediate process, so that it is not flockrun's child.
fn start_prober(probe: &Probe) -> io::Result<()> {
    // SAFETY: between fork and _exit the intermediate process only forks again and stores
    // an integer; the prober runs `prober`, which allocates nothing and makes only system
    // calls, as a child of a possibly multi-threaded process must.
    let middle = unsafe { libc::fork() };
    if middle < 0 {
        return Err(io::Error::last_os_error());
    }
    if middle == 0 {
        // SAFETY: see above.
        unsafe {
            let prober = libc::fork();
            if prober == 0 {
                run_prober(probe);
            }
            (*probe.page).prober.store(prober, Ordering::SeqCst);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for the intermediate child, which exits at once.
    unsafe { libc::waitpid(middle, &raw mut status, 0) };
    // SAFETY: the page is mapped; the intermediate process wrote the pid before exiting.
    if unsafe { (*probe.page).prober.load(Ordering::SeqCst) } <= 0 {
        return Err(io::Error::other("could not start the NFS lock prober"));
    }
    Ok(())
}

/// The prober's life: probe now and every interval until flockrun is gone or says quit.
///
/// # Safety
/// Only in the prober process, right after its fork.
unsafe fn run_prober(probe: &Probe) -> ! {
    // SAFETY: plain system calls on values prepared before the fork.
    unsafe {
        // Out of the terminal's process group, deaf to every signal but SIGKILL.
        libc::setpgid(0, 0);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &raw const all, std::ptr::null_mut());
        close_all_but(&mut [probe.fd, probe.flockrun_pidfd]);
        let page = &*probe.page;
        loop {
            if page.quit.load(Ordering::SeqCst) != 0 {
                libc::_exit(0);
            }
            if page.lost.load(Ordering::SeqCst) == 0 {
                let sent = monotonic_ns();
                match probe_once(probe) {
                    Ok(()) => {
                        page.last_answered.fetch_max(sent, Ordering::SeqCst);
                    }
                    Err(Verdict::Lost(why)) => {
                        page.lost.store(why, Ordering::SeqCst);
                        libc::kill(probe.flockrun, libc::SIGALRM);
                    }
                    Err(Verdict::Failed(errno)) => page.last_errno.store(errno, Ordering::SeqCst),
                }
            }
            let mut gone = libc::pollfd {
                fd: probe.flockrun_pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&raw mut gone, 1, probe.interval_ms) > 0 {
                libc::_exit(0);
            }
        }
    }
}

enum Verdict {
    Lost(u32),
    Failed(i32),
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// One question to the server about the lock.
///
/// # Safety
/// `probe.fd` is open.
unsafe fn probe_once(probe: &Probe) -> Result<(), Verdict> {
    // SAFETY: fcntl and pread on an open descriptor, with a one-byte stack buffer.
    unsafe {
        if probe.readable {
            let flags = libc::fcntl(probe.fd, libc::F_GETFL);
            if flags >= 0 && libc::fcntl(probe.fd, libc::F_SETFL, flags | libc::O_DIRECT) == 0 {
                let mut byte = 0u8;
                let read = libc::pread(probe.fd, (&raw mut byte).cast(), 1, 0);
                let error = errno();
                libc::fcntl(probe.fd, libc::F_SETFL, flags);
                return match (read, error) {
                    (r, _) if r >= 0 => Ok(()),
                    (_, libc::EIO) => Err(Verdict::Lost(LOST_EIO)),
                    (_, e) => Err(Verdict::Failed(e)),
                };
            }
        }
        let mut test = ByteRange::default().request(probe.lock_type);
        if libc::fcntl(probe.fd, libc::F_OFD_GETLK, &raw mut test) < 0 {
            return Err(Verdict::Failed(errno()));
        }
        if i32::from(test.l_type) == libc::F_UNLCK {
            Ok(())
        } else {
            Err(Verdict::Lost(LOST_TAKEN))
        }
    }
}

/// Closes every descriptor but `keep`.
///
/// # Safety
/// In a process whose other descriptors nobody needs.
unsafe fn close_all_but(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut from: libc::c_uint = 0;
    for &fd in keep.iter() {
        let Ok(fd) = libc::c_uint::try_from(fd) else {
            continue;
        };
        if fd > from {
            // SAFETY: close_range takes two numbers and flags.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) };
}
