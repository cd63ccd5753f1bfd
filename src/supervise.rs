//! Running COMMAND under a held lock: start it with clean signal state, pass on the signals
//! flockrun receives, wait for it, and turn its end into an exit status. flockrun returns
//! only after COMMAND has exited, so "flockrun returned" means "the lock is released".
//!
//! While COMMAND runs, the forwarded signals and SIGCHLD are blocked and taken one at a time
//! with `sigwaitinfo`, which also says who sent each one (`si_code`), so a signal the
//! terminal already sent to COMMAND's process group is not delivered twice.
#![allow(unsafe_code)]

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgid, getpid};

use crate::error::Error;
use crate::exit;
use crate::wait;

/// Signals passed on to COMMAND while it runs.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The program and arguments to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: OsString,
    pub args: Vec<OsString>,
}

impl Command {
    /// `STRING` run by `$SHELL -c`, or `/bin/sh -c` when `SHELL` is unset or empty.
    #[must_use]
    pub fn shell(script: OsString) -> Self {
        let shell = std::env::var_os("SHELL")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".into());
        Command {
            program: shell,
            args: vec!["-c".into(), script],
        }
    }

    /// The command line as a person reads it.
    #[must_use]
    pub fn describe(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An argv; `None` when it is empty.
    #[must_use]
    pub fn from_argv(mut argv: Vec<OsString>) -> Option<Self> {
        if argv.is_empty() {
            return None;
        }
        let program = argv.remove(0);
        Some(Command {
            program,
            args: argv,
        })
    }
}

/// How to start COMMAND.
#[derive(Debug)]
pub struct Launch<'a> {
    pub command: &'a Command,
    /// The locked descriptor COMMAND inherits, if any (`None` with `--close`, and when an
    /// ancestor holds the lock).
    pub inherit_fd: Option<RawFd>,
    /// A descriptor COMMAND must not inherit although it is not close-on-exec (`--close`
    /// with `--fd`: the caller's descriptor).
    pub close_fd: Option<RawFd>,
    /// Kill COMMAND if flockrun dies: for a lock COMMAND does not hold itself, so it never
    /// runs on unprotected.
    pub die_with_flockrun: bool,
    /// Extra environment (`FLOCKRUN_*`).
    pub env: Vec<(OsString, OsString)>,
    /// For a lock that can be lost while held (etcd): how to notice and how to react.
    pub lost: Option<LostWatch>,
    /// `--run-limit`: how long COMMAND may run.
    pub run_limit: Option<RunLimit>,
}

/// `--run-limit` and `--kill-after`: COMMAND running longer than `limit` is stopped with
/// everything it started, SIGTERM first and SIGKILL `kill_after` later.
#[derive(Debug, Clone)]
pub struct RunLimit {
    pub limit: Duration,
    pub kill_after: Duration,
    /// LOCK as messages show it.
    pub lock: String,
}

/// A lock that can stop being ours while COMMAND runs. The party that notices sends flockrun
/// SIGALRM, or the supervisor finds out by asking `is_lost` every `poll`; then COMMAND and
/// everything it started get SIGTERM, and SIGKILL after `grace`.
#[derive(Clone)]
pub struct LostWatch {
    pub is_lost: Arc<dyn Fn() -> bool + Send + Sync>,
    pub grace: Duration,
    /// How often to ask `is_lost` besides when SIGALRM arrives: for a hold whose loss the
    /// clock tells, even while the thread that renews it is stuck in a system call.
    pub poll: Option<Duration>,
}

/// The reaction time after a lost hold: COMMAND gets SIGTERM this long before another
/// process could take the lock, and SIGKILL when it could.
#[must_use]
pub fn grace_for(ttl: Duration) -> Duration {
    (ttl / 4).min(Duration::from_secs(2))
}

impl std::fmt::Debug for LostWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LostWatch")
            .field("lost", &(self.is_lost)())
            .field("grace", &self.grace)
            .field("poll", &self.poll)
            .finish()
    }
}

/// Forks COMMAND, forwards signals to it, waits, and returns the status flockrun should exit
/// with: COMMAND's own, or 128+N when a signal killed it.
///
/// # Errors
/// `Interrupted` when a stop signal arrived before COMMAND could start; `Spawn` when it
/// cannot be executed; `System` when signals or waiting fail.
pub fn run(launch: &Launch<'_>) -> Result<i32, Error> {
    let mut watched = SigSet::empty();
    for sig in FORWARDED {
        watched.add(sig);
    }
    watched.add(Signal::SIGCHLD);
    if launch.lost.is_some() {
        watched.add(Signal::SIGALRM);
    }
    let mut previous = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched), Some(&mut previous))
        .map_err(|e| Error::system("blocking signals", e))?;
    let result = spawn_and_wait(launch, &watched);
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    result
}

fn spawn_and_wait(launch: &Launch<'_>, watched: &SigSet) -> Result<i32, Error> {
    // A stop signal that arrived after the lock was won but before the signals were blocked
    // means: do not start COMMAND.
    if let Some(signal) = wait::stop_signal() {
        return Err(Error::Interrupted { signal });
    }
    // Likewise a lock lost before COMMAND started: COMMAND must not start. The caller sees
    // the lost lock and reports it.
    if launch.lost.as_ref().is_some_and(|l| (l.is_lost)()) {
        return Ok(exit::LOCK_LOST);
    }
    if launch.lost.is_some() || launch.run_limit.is_some() {
        // Whatever COMMAND leaves behind (a daemon it double-forked) is re-parented to
        // flockrun rather than to init, so a lost hold can stop all of it. The process group
        // is left alone: moving COMMAND out of the terminal's foreground group would break
        // job control.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    if !launch.die_with_flockrun {
        match spawn_directly(launch) {
            Ok(pid) => return forward_until_exit(pid, watched, launch),
            // A script without `#!`: the C library's posix_spawnp does not hand it to
            // /bin/sh as execvp does (and as flock(1) does); the fork road below will.
            Err(Error::Spawn { source, .. }) if source.raw_os_error() == Some(libc::ENOEXEC) => {}
            Err(e) => return Err(e),
        }
    }
    let parent = getpid().as_raw();
    let mut cmd = prepare(launch);
    let die_with_parent = launch.die_with_flockrun;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid); see `reset_in_child` for the rest.
    unsafe {
        cmd.pre_exec(move || {
            if die_with_parent {
                // The death signal fires when the *thread* that forked exits; flockrun forks
                // from its only thread, which lives until COMMAND is reaped.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // flockrun may have died before the prctl: then nobody holds the lock.
                if libc::getppid() != parent {
                    libc::_exit(exit::OS_ERROR);
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| spawn_error(launch, e))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|e| Error::Internal(e.into()))?);
    forward_until_exit(pid, watched, launch)
}

/// The kernel's `struct sigaction` (generic layout, x86-64 and arm64 alike), for resetting
/// dispositions with the raw system call: the C library's `sigaction` refuses to touch the
/// two signals it reserves for itself (32 and 33), and those can arrive ignored too.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

impl KernelSigaction {
    const DEFAULT: KernelSigaction = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
}

/// Puts signal `sig` back to its default action (SIGKILL and SIGSTOP have no other). The
/// raw system call, because the C library's `sigaction` refuses to touch the two signals it
/// reserves for itself (32 and 33), and those can arrive ignored too. Async-signal-safe and
/// allocation-free, for a child between fork or clone and exec; a failure changes nothing,
/// so it is not checked.
fn reset_disposition(sig: libc::c_int) {
    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return;
    }
    let default = KernelSigaction::DEFAULT;
    // SAFETY: rt_sigaction reads a valid struct of the size it is told.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &raw const default,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

/// What the child of `spawn_directly` needs, all prepared by the parent: until it execs,
/// the child shares the parent's memory and may not allocate or take locks.
struct ChildPlan {
    /// The paths to try in turn (COMMAND's program looked up along PATH, as execvp does).
    candidates: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// The lock descriptor to hand on (its close-on-exec flag cleared), or -1.
    inherit_fd: RawFd,
    /// A descriptor to close, or -1.
    close_fd: RawFd,
    /// Why exec failed; stays 0 when it worked (then the child is COMMAND).
    error: AtomicI32,
}

/// The child of `spawn_directly`: raw system calls only (the C library's wrappers may
/// take locks or touch state the parent owns). Every signal back to its default action,
/// the mask cleared, descriptors arranged, then exec along the candidates.
extern "C" fn exec_child(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the parent passes a ChildPlan that outlives this child (CLONE_VFORK keeps the
    // parent waiting until the child has exec'd or exited).
    let plan = unsafe { &*plan.cast::<ChildPlan>() };
    let empty: u64 = 0;
    for sig in 1..=64 {
        reset_disposition(sig);
    }
    // SAFETY: system calls on valid pointers to data on this stack or in the plan.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const empty,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        if plan.inherit_fd >= 0 {
            libc::syscall(libc::SYS_fcntl, plan.inherit_fd, libc::F_SETFD, 0);
        }
        if plan.close_fd >= 0 {
            libc::syscall(libc::SYS_close, plan.close_fd);
        }
        // As execvp: a path that is not there goes on to the next; one that is there but
        // may not be run is remembered; anything else ends the search.
        let mut failure = libc::ENOENT;
        for path in &plan.candidates {
            libc::syscall(
                libc::SYS_execve,
                path.as_ptr(),
                plan.argv.as_ptr(),
                plan.envp.as_ptr(),
            );
            let errno = *libc::__errno_location();
            match errno {
                libc::ENOENT | libc::ENOTDIR | libc::ENODEV | libc::ESTALE | libc::ETIMEDOUT => {}
                libc::EACCES => failure = libc::EACCES,
                _ => {
                    failure = errno;
                    break;
                }
            }
        }
        plan.error.store(failure, Ordering::SeqCst);
        libc::syscall(libc::SYS_exit, 127);
    }
    127
}

/// Starts COMMAND with a `vfork`-style clone (`CLONE_VM | CLONE_VFORK`), as the C
/// library's `posix_spawn` does, but with a child that does exactly what COMMAND needs:
/// every signal disposition back to default (`posix_spawn` leaves the C library's two
/// internal signals ignored across exec) and nothing blocked, the lock descriptor handed
/// on or another closed. No copy of flockrun's page tables, and no pipe to learn whether
/// exec worked: the child shares the parent's memory until it execs, and writes the
/// failure there. A COMMAND that must die with flockrun needs `prctl` in the child and
/// takes the fork road instead.
fn spawn_directly(launch: &Launch<'_>) -> Result<Pid, Error> {
    use std::os::unix::ffi::OsStrExt;
    let spawn_failed = |e: io::Error| spawn_error(launch, e);
    let c_string = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| spawn_failed(io::Error::from_raw_os_error(libc::EINVAL)))
    };
    let program = launch.command.program.as_bytes();
    let mut words = vec![c_string(program)?];
    for arg in &launch.command.args {
        words.push(c_string(arg.as_bytes())?);
    }
    let candidates = if program.contains(&b'/') {
        vec![c_string(program)?]
    } else {
        // PATH as execvp reads it; an empty entry is the current directory.
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
        path.as_bytes()
            .split(|&b| b == b':')
            .map(|dir| {
                let dir = if dir.is_empty() { b".".as_slice() } else { dir };
                c_string(&[dir, b"/", program].concat())
            })
            .collect::<Result<_, _>>()?
    };
    // The environment as it is, with the launch's variables in place of any of the same
    // name: pointers to the strings that are there, no copy of them.
    let extra: Vec<CString> = launch
        .env
        .iter()
        .map(|(k, v)| c_string(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<Result<_, _>>()?;
    let mut envp: Vec<*const libc::c_char> = extra.iter().map(|e| e.as_ptr()).collect();
    // SAFETY: environ is a NULL-terminated array of C strings; this thread is the only one
    // (kinds that start threads have COMMAND die with flockrun, and take the fork road).
    unsafe {
        let mut entry = libc::environ;
        while !entry.is_null() && !(*entry).is_null() {
            let text = std::ffi::CStr::from_ptr(*entry).to_bytes();
            let name = text.split(|&b| b == b'=').next().unwrap_or_default();
            if !launch.env.iter().any(|(k, _)| k.as_bytes() == name) {
                envp.push((*entry).cast_const());
            }
            entry = entry.add(1);
        }
    }
    envp.push(std::ptr::null());
    let mut argv: Vec<*const libc::c_char> = words.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let plan = ChildPlan {
        candidates,
        argv,
        envp,
        inherit_fd: launch.inherit_fd.unwrap_or(-1),
        close_fd: launch.close_fd.unwrap_or(-1),
        error: AtomicI32::new(0),
    };
    // Not zeroed: the child uses only the top of it, and zeroing all of it cost more than
    // anything else flockrun does on the uncontended path (a 64 KiB memset, 16 pages
    // faulted in).
    let mut stack: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(CHILD_STACK);
    // No signal handler may run in the child while it shares our memory: all blocked
    // around the clone (the child sets its own mask before exec).
    let mut previous = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&SigSet::all()),
        Some(&mut previous),
    )
    .map_err(|e| Error::system("blocking signals", e))?;
    // SAFETY: the stack's allocation is ours and CHILD_STACK bytes long (the capacity),
    // enough for exec_child, which runs on its top (it grows down) and writes before it
    // reads; the plan lives until after the clone returns, and with CLONE_VFORK
    // that is after the child has exec'd or exited.
    let pid = unsafe {
        libc::clone(
            exec_child,
            stack.as_mut_ptr().add(CHILD_STACK).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw const plan).cast_mut().cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    drop(stack);
    if pid < 0 {
        return Err(Error::system("starting COMMAND", clone_error));
    }
    let failure = plan.error.load(Ordering::SeqCst);
    if failure != 0 {
        // The child ended without exec: collect it, and say why.
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(spawn_failed(io::Error::from_raw_os_error(failure)));
    }
    Ok(Pid::from_raw(pid))
}

/// The child's stack: `exec_child` needs little, but a page fault in it must not overrun.
const CHILD_STACK: usize = 64 * 1024;

/// The std command with environment and child-side reset; shared by fork and no-fork.
fn prepare(launch: &Launch<'_>) -> process::Command {
    let mut cmd = process::Command::new(&launch.command.program);
    cmd.args(&launch.command.args);
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    let inherit = launch.inherit_fd;
    let close = launch.close_fd;
    let ignored = ignored_signals();
    // SAFETY: only async-signal-safe calls (rt_sigaction, fcntl, pthread_sigmask, close).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = close {
                libc::close(fd);
            }
            reset_in_child(ignored, inherit)
        });
    }
    cmd
}

/// The signals this process ignores, as a bit mask (bit N-1 for signal N), read before the
/// fork. Caught signals revert to their default action on `execve` by themselves; ignored
/// ones (an inherited `SIG_IGN`, Rust's own for SIGPIPE) do not, so only those need a reset.
/// When `/proc` cannot tell, every signal is reset.
fn ignored_signals() -> u64 {
    crate::inspect::process::read_proc("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .unwrap_or(u64::MAX)
}

/// COMMAND starts with every signal at its default action and nothing blocked; an ignored
/// SIGINT inherited from a background shell would otherwise survive `execve`. Dispositions
/// are reset *before* the mask is cleared, so a signal pending at that moment acts as it
/// would on COMMAND. Then the lock descriptor, opened `O_CLOEXEC`, is handed on if wanted.
fn reset_in_child(ignored: u64, inherit: Option<RawFd>) -> io::Result<()> {
    for sig in 1..=64 {
        if ignored & (1 << (sig - 1)) != 0 {
            reset_disposition(sig);
        }
    }
    // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: pointers are valid for the calls.
    unsafe {
        libc::sigemptyset(&raw mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut());
    }
    if let Some(fd) = inherit {
        // SAFETY: fcntl on a descriptor this process owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Replaces flockrun with COMMAND (`--no-fork`): the lock descriptor is inherited, so the
/// program itself holds the lock. Returns only on failure.
///
/// # Errors
/// `Interrupted` when a stop signal arrived before exec, `Spawn` when exec fails.
#[must_use]
pub fn exec_in_place(launch: &Launch<'_>) -> Error {
    let mut block = SigSet::empty();
    for sig in wait::STOP_SIGNALS {
        block.add(sig);
    }
    // Blocked from here: a signal that arrives now stays pending and, once the child-side
    // reset has restored default actions, acts on COMMAND as it would have on flockrun.
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), None) {
        return Error::system("blocking signals", e);
    }
    if let Some(signal) = wait::stop_signal() {
        return Error::Interrupted { signal };
    }
    let e = prepare(launch).exec();
    spawn_error(launch, e)
}

fn spawn_error(launch: &Launch<'_>, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE) => {
            Error::system("starting COMMAND", e)
        }
        _ => Error::Spawn {
            program: launch.command.program.clone(),
            source: e,
        },
    }
}

fn forward_until_exit(child: Pid, watched: &SigSet, launch: &Launch<'_>) -> Result<i32, Error> {
    let lost = launch.lost.as_ref();
    let own_group = getpgid(None).ok();
    // The run limit counts from here: COMMAND has just started.
    let limit_at = launch.run_limit.as_ref().map(|l| Instant::now() + l.limit);
    let mut limit_hit = false;
    // Once the lock is lost or the run limit passed: COMMAND and its descendants have had
    // SIGTERM, and get SIGKILL at `kill_at`; `killing` once they have.
    let mut kill_at: Option<Instant> = None;
    let mut stopping = false;
    let mut killing = false;
    let mut status: Option<i32> = None;
    loop {
        let timeout = if killing {
            // Something may have forked while being killed: look again soon.
            Some(KILL_ROUND)
        } else {
            let now = Instant::now();
            let until = |at: Instant| at.saturating_duration_since(now);
            [
                kill_at.map(until),
                limit_at.filter(|_| !stopping).map(until),
                lost.and_then(|l| l.poll).filter(|_| !stopping),
            ]
            .into_iter()
            .flatten()
            .min()
        };
        // SAFETY: siginfo_t is plain data, zero is a valid initial value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let sig = match timeout {
            // SAFETY: both pointers are valid; the set is blocked, as sigwaitinfo requires.
            None => unsafe { libc::sigwaitinfo(watched.as_ref(), &raw mut info) },
            Some(left) => {
                let timeout = libc::timespec {
                    tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                    tv_nsec: libc::c_long::from(left.subsec_nanos()),
                };
                // SAFETY: as above, plus a valid timespec.
                unsafe { libc::sigtimedwait(watched.as_ref(), &raw mut info, &raw const timeout) }
            }
        };
        if sig < 0 {
            match Errno::last() {
                Errno::EINTR | Errno::EAGAIN => {}
                e => return Err(Error::system("waiting for signals", e)),
            }
        } else if sig != libc::SIGALRM
            && sig != libc::SIGCHLD
            && let Ok(signal) = Signal::try_from(sig)
        {
            // SI_KERNEL: sent by the terminal to the foreground process group, which COMMAND
            // shares unless it moved to a group of its own.
            let from_terminal = info.si_code == libc::SI_KERNEL;
            if status.is_none() && (!from_terminal || getpgid(Some(child)).ok() != own_group) {
                let _ = kill(child, signal);
            }
        }
        // A stray SIGALRM or a poll changes nothing unless the lock is in fact lost.
        if let Some(lost) = lost
            && !stopping
            && (lost.is_lost)()
        {
            stopping = true;
            signal_tree(Signal::SIGTERM);
            kill_at = Some(Instant::now() + lost.grace);
        }
        if let (Some(limit), Some(at)) = (&launch.run_limit, limit_at)
            && !stopping
            && status.is_none()
            && Instant::now() >= at
        {
            stopping = true;
            limit_hit = true;
            signal_tree(Signal::SIGTERM);
            kill_at = Some(Instant::now() + limit.kill_after);
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            kill_at = None;
            killing = true;
        }
        if killing {
            signal_tree(Signal::SIGKILL);
        }
        if let Some(code) = reap(child)? {
            status = Some(code);
        }
        match (status, &launch.run_limit) {
            // The lock is ours: COMMAND's end is flockrun's, whatever it left running.
            (Some(code), _) if !stopping => return Ok(code),
            (Some(_), Some(limit))
                if limit_hit && descendants().iter().all(|&pid| exiting(pid)) =>
            {
                return Err(Error::RunLimit {
                    lock: limit.lock.clone(),
                    limit: limit.limit,
                    kill_after: limit.kill_after,
                    killed: killing,
                });
            }
            // Lost: done once nothing COMMAND started is left (or can run again: a process
            // already in its exit may wait there for a file server that does not answer).
            (Some(code), _) if descendants().iter().all(|&pid| exiting(pid)) => return Ok(code),
            _ => {}
        }
    }
}

/// While killing what is left after a lost lock: how often to look for stragglers.
const KILL_ROUND: Duration = Duration::from_millis(10);

/// The pids of this process's descendants, found through every thread's children list (a
/// daemon COMMAND left behind is among them: flockrun is its subreaper).
fn descendants() -> Vec<i32> {
    descendants_of(getpid().as_raw())
}

/// The pids under `pid`, through every thread's children list.
#[must_use]
pub fn descendants_of(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut next = children_of(pid);
    while let Some(pid) = next.pop() {
        if found.contains(&pid) {
            continue;
        }
        found.push(pid);
        next.extend(children_of(pid));
    }
    found
}

/// Whether `pid` has begun to exit (`PF_EXITING` in `/proc/PID/stat`'s flags): it runs no
/// more of its own code. Its last closes may still wait for a hung NFS server.
fn exiting(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(6)?.parse::<u64>().ok())
            .is_some_and(|flags| flags & PF_EXITING != 0)
    })
}

/// Leaves this process's open files to a child that outlives it, so that exiting does not
/// wait for a file server that does not answer. The last close of a file on a hard-mounted
/// NFS share sends the server a request (a CLOSE, or the unlock of a lock held on it) and
/// waits for the answer, which on a hung or unreachable server means waiting until it is
/// back; a close that is not the last returns at once. The child keeps a copy of every
/// descriptor but the standard ones (so that nobody waits for flockrun's output to end),
/// waits for flockrun to be gone, and exits, doing the last closes then, out of everyone's
/// way. For a hold that was lost or could not be released in time.
pub fn leave_files_to_a_keeper() {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let me = unsafe { libc::syscall(libc::SYS_pidfd_open, getpid().as_raw(), 0) };
    let Ok(me) = libc::c_int::try_from(me) else {
        return;
    };
    if me < 0 {
        return;
    }
    // SAFETY: the child makes only system calls (no allocation: this process may have
    // threads) and ends with _exit.
    unsafe {
        if libc::fork() == 0 {
            libc::setsid();
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&raw mut all);
            libc::sigprocmask(libc::SIG_BLOCK, &raw const all, std::ptr::null_mut());
            for fd in 0..3 {
                libc::close(fd);
            }
            let mut gone = libc::pollfd {
                fd: me,
                events: libc::POLLIN,
                revents: 0,
            };
            while libc::poll(&raw mut gone, 1, -1) <= 0 {}
            libc::_exit(0);
        }
        libc::close(me);
    }
}

/// The children of `pid`, from every thread's list.
#[must_use]
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Sends `signal` to COMMAND and everything under it.
fn signal_tree(signal: Signal) {
    for pid in descendants() {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// COMMAND's exit status once it has ended. Reaps every other child that ended too (what
/// COMMAND left behind, re-parented to flockrun), discarding their statuses.
fn reap(child: Pid) -> Result<Option<i32>, Error> {
    let mut ended = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => ended = Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                ended = Some(exit::from_signal(signal as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(ended),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::system("waiting for COMMAND", e)),
        }
    }
}
