//! The one road from LOCK to a held lock and back, for every kind and both command lines
//! (flockrun's own and the flock(1) front end's): resolve the target, run COMMAND under an
//! ancestor's hold if there is one, else take the lock, run COMMAND under it (stopping
//! COMMAND if the hold is lost), warn if LOCK was deleted meanwhile, release. Who speaks on
//! the way, and in which words, is the caller's `Voice`.

use std::ffi::OsString;
use std::io::{self, Write};

use crate::error::Error;
use crate::exit;
use crate::kind;
use crate::lock::{Hold, Request, Target};
use crate::nested::{self, HeldAbove};
use crate::supervise::{self, Launch};
use crate::wait::{self, Deadline, WaitObserver};

/// A message on stderr, after `name: `; a failing write never changes the status.
pub fn say_as(name: &str, message: &str) {
    let _ = writeln!(io::stderr().lock(), "{name}: {message}");
}

/// Who speaks on the road and what it adds to it: flockrun's own voice (the binary's `run`), or the
/// flock(1) front end's (the binary's `flock`).
pub trait Voice: WaitObserver {
    /// The word before every message: `flockrun` or `flock`.
    fn name(&self) -> &'static str;
    /// Whether flockrun's own additions apply: an ancestor's hold recognised (nested use),
    /// and the `FLOCKRUN_*` variables for COMMAND. flock(1) has neither.
    fn flockrun_additions(&self) -> bool;
    fn verbose(&self) -> bool;
    /// The lock was taken.
    fn acquired(&mut self, target: &Target, hold: &dyn Hold);
    /// COMMAND is about to start.
    fn launching(&mut self, _command: &supervise::Command) {}
}

/// Takes the lock `request` names and runs `command` under it (or, without one, leaves the
/// lock with the caller's descriptor: `--fd`); returns COMMAND's exit status.
///
/// # Errors
/// Whatever kept the lock from being taken, COMMAND from running, or the hold from lasting.
pub fn run_locked(
    request: &Request,
    command: Option<&supervise::Command>,
    voice: &mut dyn Voice,
) -> Result<i32, Error> {
    check_job_options(request, command.is_some())?;
    let target = kind::target(request)?;
    wait::install_stop_handlers().map_err(|e| Error::system("installing signal handlers", e))?;
    voice.set_lock(&target.shown);
    let additions = voice.flockrun_additions();
    let inherited_held = additions
        .then(|| std::env::var_os(nested::HELD_VAR))
        .flatten();
    // Whether an ancestor holds the lock already, from FLOCKRUN_HELD or, if `scan`, from a
    // descriptor this process inherited.
    let above = |scan: bool| -> Option<HeldAbove> {
        let key = target.lockable.held_key()?;
        let inherited = scan.then(|| target.lockable.inherited_mode(key)).flatten();
        nested::held_above(key, inherited_held.as_deref(), inherited)
    };
    let mut hold = None;
    let mut ancestor = None;
    if additions && target.lockable.look_first() {
        // A lock won at the first try needs no look for an ancestor's hold (nor a
        // description of who holds it); only a busy one does.
        match target.lockable.take(&Deadline::probe(), voice) {
            Ok(won) => hold = Some(won),
            Err(Error::Busy { .. }) => ancestor = above(true),
            Err(e) => return Err(e),
        }
    } else if additions {
        ancestor = above(true);
    }
    if let Some(above) = ancestor {
        return match command {
            Some(command) => run_under_ancestor(
                request,
                &target,
                command,
                above,
                inherited_held,
                voice.verbose(),
            ),
            None => Ok(0),
        };
    }
    let hold = match hold {
        Some(hold) => hold,
        None if request.replace => crate::replace::take_replacing(request, &target, voice)?,
        None => target.lockable.take(&target.deadline, voice)?,
    };
    voice.acquired(&target, hold.as_ref());
    match command {
        Some(command) => run_held(
            request,
            &target,
            hold,
            command,
            inherited_held.as_ref(),
            voice,
        ),
        // `--fd N` without COMMAND: the lock stays with the caller's descriptor.
        None => Ok(0),
    }
}

/// Runs `command` under `hold`, then releases it, warning if LOCK was deleted meanwhile.
fn run_held(
    request: &Request,
    target: &Target,
    hold: Box<dyn Hold>,
    command: &supervise::Command,
    inherited_held: Option<&OsString>,
    voice: &mut dyn Voice,
) -> Result<i32, Error> {
    let additions = voice.flockrun_additions();
    let mut env = Vec::new();
    if additions {
        let me = nix::unistd::getpid().as_raw();
        env = lock_env(target, None);
        env.extend(hold.env());
        env.push((
            nested::HELD_VAR.into(),
            nested::held_var_with(
                inherited_held.map(OsString::as_os_str),
                hold.key(),
                target.mode,
                me,
            ),
        ));
    }
    let inherit_fd = if target.close {
        None
    } else {
        hold.descriptor()
    };
    let session_fd = hold.session_fd();
    voice.launching(command);
    let launch = Launch {
        command,
        inherit_fd: inherit_fd.or(session_fd),
        // `--close` with `--fd`: the caller's descriptor is not CLOEXEC, so COMMAND would
        // inherit it unless it is closed on the way.
        close_fd: if target.close && request.fd.is_some() {
            hold.descriptor()
        } else {
            None
        },
        // COMMAND must never run on without the lock: when it does not hold the lock
        // itself, it dies with flockrun.
        die_with_flockrun: inherit_fd.is_none(),
        env,
        // With -F nothing stays behind to watch the hold: COMMAND replaces flockrun.
        lost: if target.no_fork { None } else { hold.loss() },
        run_limit: run_limit(request, target),
    };
    if target.no_fork {
        // The hold stays open across exec: COMMAND inherits the descriptor (clap and the
        // kinds allow -F only where a descriptor carries the lock).
        return Err(supervise::exec_in_place(&launch));
    }
    let status = supervise::run(&launch);
    let lost = hold.lost();
    let (named, warning) = hold.release_named();
    if !named {
        // Nothing can undo that now, but whoever reads the log should know.
        say_as(
            voice.name(),
            &format!(
                "warning: {} was deleted or replaced while the lock was held; processes that \
                 opened it since then locked another file and did not wait",
                target.lock.to_string_lossy()
            ),
        );
    }
    if let Some(warning) = &warning {
        say_as(voice.name(), &format!("warning: {warning}"));
    }
    if lost.is_some() || warning.is_some() {
        // The file server may not be answering: exiting must not wait for it.
        supervise::leave_files_to_a_keeper();
    }
    match lost {
        Some(reason) => Err(Error::LockLost {
            lock: target.lock.to_string_lossy().into_owned(),
            reason,
            command_ran: !matches!(status, Ok(exit::LOCK_LOST)),
        }),
        None => status,
    }
}

/// `--run-limit`, `--replace` and `--kill-after` against the rest of the command line.
fn check_job_options(request: &Request, has_command: bool) -> Result<(), Error> {
    let refuse = |message: &str| {
        Err(Error::Usage {
            message: message.to_owned(),
        })
    };
    if request.run_limit.is_some() && request.no_fork {
        return refuse(
            "--run-limit needs flockrun to stay beside COMMAND to stop it in time; it cannot \
             go with -F/--no-fork",
        );
    }
    if request.run_limit.is_some() && !has_command {
        return refuse("--run-limit limits COMMAND, and none was given");
    }
    if request.replace && request.fd.is_some() {
        return refuse(
            "--replace takes LOCK from the process that holds it, and with --fd the lock is \
             the descriptor you pass: give LOCK instead of --fd",
        );
    }
    if request.replace && request.no_fork {
        return refuse("--replace cannot go with -F/--no-fork");
    }
    if request.kill_after.is_some() && request.run_limit.is_none() && !request.replace {
        return refuse("--kill-after applies with --run-limit or --replace");
    }
    Ok(())
}

/// An ancestor flockrun holds the lock already: waiting would wait for ourselves. COMMAND
/// runs at once if the held mode covers the one asked for; otherwise the request would
/// deadlock and is refused.
fn run_under_ancestor(
    request: &Request,
    target: &Target,
    command: &supervise::Command,
    above: HeldAbove,
    inherited_held: Option<OsString>,
    verbose: bool,
) -> Result<i32, Error> {
    let held = (target.mode_names)(above.mode);
    if !above.mode.covers(target.mode) {
        return Err(Error::WouldDeadlock {
            path: target.lock.clone().into(),
            held,
            wanted: target.mode_name(),
            holder_pid: above.pid,
        });
    }
    if verbose {
        say_as(
            "flockrun",
            &format!(
                "{} is already held with a {held} lock by ancestor pid {}; running COMMAND \
                 under it",
                target.shown, above.pid
            ),
        );
    }
    let launch = Launch {
        command,
        inherit_fd: None,
        close_fd: None,
        die_with_flockrun: false,
        env: lock_env(target, inherited_held),
        lost: None,
        run_limit: run_limit(request, target),
    };
    if target.no_fork {
        Err(supervise::exec_in_place(&launch))
    } else {
        supervise::run(&launch)
    }
}

/// `--run-limit` in the supervisor's terms.
fn run_limit(request: &Request, target: &Target) -> Option<supervise::RunLimit> {
    request.run_limit.map(|limit| supervise::RunLimit {
        limit,
        kill_after: request.kill_after(),
        lock: target.lock.to_string_lossy().into_owned(),
    })
}

/// `FLOCKRUN_LOCK`, `FLOCKRUN_KIND`, `FLOCKRUN_MODE`, and the inherited `FLOCKRUN_HELD`.
fn lock_env(target: &Target, held: Option<OsString>) -> Vec<(OsString, OsString)> {
    let mut env = vec![
        ("FLOCKRUN_LOCK".into(), target.lock.clone()),
        ("FLOCKRUN_KIND".into(), target.kind.into()),
        ("FLOCKRUN_MODE".into(), target.mode_name().into()),
    ];
    if let Some(held) = held {
        env.push((nested::HELD_VAR.into(), held));
    }
    env
}
