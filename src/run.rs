//! From arguments to an exit status: parse, take the lock, run COMMAND, and in one place
//! (`exit_status`) decide what every outcome exits with. Messages are written here too, all
//! to stderr, all starting with `flockrun: `; a failing write never changes the status.
//!
//! Every kind takes the same road (`run_locked`): the command line becomes a `Request`, the
//! kind that claims it makes a `Target`, and taking it yields a `Hold` (see `crate::lock`).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command, KernelLockArgs, RunArgs, StatusArgs};
use crate::duration::format_seconds;
use crate::error::Error;
use crate::exit;
use crate::inspect::sighting::Sighting;
use crate::kind;
use crate::lock::{Hold, Request, SoftLayout, Target, Verb};
use crate::mode::LockMode;
use crate::nested::{self, HeldAbove};
use crate::status::{self, State};
use crate::supervise::{self, Launch};
use crate::wait::{self, Deadline, WaitObserver};

/// Runs flockrun with `args` (including the program name) and returns its exit status.
#[must_use]
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            // Every message starts with "flockrun: ", clap's too; and clap's status for
            // usage errors is 2, while flockrun documents 64 (EX_USAGE).
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            let _ = write!(io::stderr().lock(), "flockrun: {text}");
            return exit::USAGE;
        }
    };
    let (verb, deadline, run, lock_args) = match &cli.command {
        Command::Status(args) => return run_status(args),
        Command::Exec(a) => (Verb::Exec, a.wait.deadline(), &a.lock.run, Some(&a.lock)),
        Command::Try(a) => (
            Verb::Try,
            Deadline::after(Duration::ZERO),
            &a.lock.run,
            Some(&a.lock),
        ),
        Command::Read(a) | Command::Write(a) => {
            let verb = if matches!(cli.command, Command::Read(_)) {
                Verb::Read
            } else {
                Verb::Write
            };
            (verb, a.wait.deadline(), &a.run, None)
        }
    };
    let soft_rw = match &cli.command {
        Command::Read(a) | Command::Write(a) => Some(a),
        _ => None,
    };
    let outcome = command_of(run).and_then(|command| {
        let mut request = request_of(verb, deadline, run, lock_args, &command);
        if let Some(a) = soft_rw {
            request.soft = a.soft;
            request.ttl = a.ttl;
            request.layout = a.layout.unwrap_or(SoftLayout::Both);
        }
        run_locked(&request, &command, run)
    });
    match outcome {
        Ok(status) => status,
        Err(e) => {
            let status = exit_status(&e, run.conflict_exit_code);
            let routine = matches!(e, Error::Busy { .. } | Error::TimedOut { .. });
            if !(run.quiet && routine) {
                say(&e.to_string());
            }
            status
        }
    }
}

/// The command line in no kind's terms.
fn request_of(
    verb: Verb,
    deadline: Deadline,
    run: &RunArgs,
    lock_args: Option<&KernelLockArgs>,
    command: &supervise::Command,
) -> Request {
    let flag = |f: fn(&KernelLockArgs) -> bool| lock_args.is_some_and(f);
    let shared = match verb {
        Verb::Read => true,
        Verb::Write => false,
        Verb::Exec | Verb::Try => flag(|a| a.shared),
    };
    let mode = if shared {
        LockMode::Shared
    } else {
        LockMode::Exclusive
    };
    Request {
        verb,
        lock: run.lock.clone(),
        mode,
        fcntl: flag(|a| a.fcntl),
        soft: flag(|a| a.soft),
        close: flag(|a| a.close),
        no_fork: flag(|a| a.no_fork),
        ttl: lock_args.and_then(|a| a.ttl),
        layout: SoftLayout::Both,
        refuse_host_local: flag(|a| a.refuse_host_local),
        create_mode: run.mode,
        deadline,
        command: std::iter::once(&command.program)
            .chain(&command.args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `flockrun status`: 0 when every LOCK is free (or stale), 1 when any is held, 66 when any
/// cannot be inspected.
fn run_status(args: &StatusArgs) -> i32 {
    let mut reports = Vec::new();
    let mut failed: Option<i32> = None;
    for path in &args.locks {
        match kind::inspect(path, args.kind) {
            Ok(report) => reports.push(report),
            Err(e) => {
                // The first failure decides the status: 66 for a lock file that cannot be
                // inspected, 69 for an unreachable etcd, 64 for a bad etcd LOCK.
                failed = failed.or(Some(exit_status(&e, exit::CONFLICT_DEFAULT)));
                if !args.quiet {
                    say(&e.to_string());
                }
            }
        }
    }
    if !args.quiet {
        let text = if args.json {
            status::render_json(&reports)
        } else {
            reports
                .iter()
                .map(|r| {
                    let mut block = status::render_human(r);
                    if args.verbose {
                        block.push_str(&status::render_kernel_lines(r));
                    }
                    block
                })
                .collect()
        };
        // stdout is status's own output; a closed pipe (| head) is not an error.
        let _ = io::stdout().lock().write_all(text.as_bytes());
    }
    if let Some(status) = failed {
        status
    } else {
        i32::from(reports.iter().any(|r| r.state == State::Held))
    }
}

/// The exit status for a failure, given the `-E` conflict status. The table in README.md
/// and the man page mirrors this function.
#[must_use]
pub fn exit_status(error: &Error, conflict: u8) -> i32 {
    match error {
        Error::Busy { .. } | Error::TimedOut { .. } | Error::WouldDeadlock { .. } => {
            i32::from(conflict)
        }
        Error::Interrupted { signal } => exit::from_signal(*signal),
        Error::NotALock { .. } => exit::DATA,
        Error::Open { .. } => exit::NO_INPUT,
        Error::CannotCreate { .. } => exit::CANT_CREATE,
        Error::Spawn { source, .. } => match source.kind() {
            io::ErrorKind::NotFound => exit::NOT_FOUND,
            _ => exit::NOT_EXECUTABLE,
        },
        Error::LockFailed { .. } | Error::System { .. } => exit::OS_ERROR,
        Error::Usage { .. } => exit::USAGE,
        Error::EtcdUnreachable { .. } => exit::UNAVAILABLE,
        Error::EtcdRefused { .. } => exit::PROTOCOL,
        Error::LockLost { .. } => exit::LOCK_LOST,
        Error::Internal(_) => exit::SOFTWARE,
    }
}

fn say(message: &str) {
    let _ = writeln!(io::stderr().lock(), "flockrun: {message}");
}

/// The one road for every kind: resolve the target, run COMMAND under an ancestor's hold if
/// there is one, else take the lock, run COMMAND under it (stopping COMMAND if the hold is
/// lost), and release.
fn run_locked(
    request: &Request,
    command: &supervise::Command,
    run: &RunArgs,
) -> Result<i32, Error> {
    let target = kind::target(request)?;
    wait::install_stop_handlers().map_err(|e| Error::system("installing signal handlers", e))?;
    let inherited_held = std::env::var_os(nested::HELD_VAR);
    if let Some(key) = target.lockable.held_key()
        && let Some(above) = nested::held_above(
            key,
            inherited_held.as_deref(),
            target.lockable.inherited_mode(key),
        )
    {
        return run_under_ancestor(&target, command, above, inherited_held, run.verbose);
    }

    let mut reporter = Reporter::new(&target.shown, run.verbose, run.quiet);
    let hold = target.lockable.take(&target.deadline, &mut reporter)?;
    reporter.acquired(&target, hold.as_ref());

    let me = nix::unistd::getpid().as_raw();
    let mut env = lock_env(&target, None);
    env.extend(hold.env());
    env.push((
        nested::HELD_VAR.into(),
        nested::held_var_with(inherited_held.as_deref(), hold.key(), target.mode, me),
    ));
    let inherit_fd = if target.close {
        None
    } else {
        hold.descriptor()
    };
    let launch = Launch {
        command,
        inherit_fd,
        // COMMAND must never run on without the lock: when it does not hold the lock
        // itself, it dies with flockrun.
        die_with_flockrun: inherit_fd.is_none(),
        env,
        lost: hold.loss(),
    };
    if target.no_fork {
        // The hold stays open across exec: COMMAND inherits the descriptor (clap and the
        // kinds allow -F only where a descriptor carries the lock).
        return Err(supervise::exec_in_place(&launch));
    }
    let status = supervise::run(&launch);
    let lost = hold.lost();
    if !hold.still_named() {
        // Nothing can undo that now, but whoever reads the log should know.
        say(&format!(
            "warning: {} was deleted or replaced while the lock was held; processes that \
             opened it since then locked another file and did not wait",
            target.lock.to_string_lossy()
        ));
    }
    if let Some(warning) = hold.release() {
        say(&format!("warning: {warning}"));
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

/// An ancestor flockrun holds the lock already: waiting would wait for ourselves. COMMAND
/// runs at once if the held mode covers the one asked for; otherwise the request would
/// deadlock and is refused.
fn run_under_ancestor(
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
        say(&format!(
            "{} is already held with a {held} lock by ancestor pid {}; running COMMAND under it",
            target.shown, above.pid
        ));
    }
    let launch = Launch {
        command,
        inherit_fd: None,
        die_with_flockrun: false,
        env: lock_env(target, inherited_held),
        lost: None,
    };
    if target.no_fork {
        Err(supervise::exec_in_place(&launch))
    } else {
        supervise::run(&launch)
    }
}

fn command_of(run: &RunArgs) -> Result<supervise::Command, Error> {
    match &run.shell_command {
        Some(script) => Ok(supervise::Command::shell(script.clone())),
        None => supervise::Command::from_argv(run.command.clone())
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("clap let an empty COMMAND through"))),
    }
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

/// Shows a wait to the person running flockrun: with `-v` a summary once the lock is won;
/// on a terminal a live line after about a second of waiting.
#[allow(clippy::struct_excessive_bools)] // one per option, and whether a line is shown
struct Reporter {
    path: String,
    verbose: bool,
    quiet: bool,
    live: bool,
    held_meanwhile: Option<Sighting>,
    line_shown: bool,
}

const LIVE_LINE_AFTER: Duration = Duration::from_secs(1);

impl Reporter {
    fn new(shown: &str, verbose: bool, quiet: bool) -> Self {
        Reporter {
            path: shown.to_owned(),
            verbose,
            quiet,
            live: !quiet && io::stderr().is_terminal(),
            held_meanwhile: None,
            line_shown: false,
        }
    }

    fn acquired(&self, target: &Target, hold: &dyn Hold) {
        if !self.verbose {
            return;
        }
        let mut message = format!(
            "locked {} ({}, {}) after waiting {}{}",
            target.lock.to_string_lossy(),
            target.mode_name(),
            target.kind,
            format_seconds(hold.waited()),
            hold.details()
        );
        if let Some(sighting) = &self.held_meanwhile {
            let _ = write!(message, "; meanwhile it was {sighting}");
        }
        say(&message);
    }
}

impl WaitObserver for Reporter {
    fn wants_holders(&self) -> bool {
        self.verbose
    }

    fn blocked(&mut self, sighting: &Sighting) {
        if self.verbose {
            self.held_meanwhile = Some(sighting.clone());
        }
    }

    fn tick_every(&self) -> Option<Duration> {
        self.live.then_some(LIVE_LINE_AFTER)
    }

    fn tick(&mut self, waited: Duration, sighting: &dyn Fn() -> Sighting) {
        let sighting = sighting();
        let line = format!(
            "flockrun: waiting {} for {}: {sighting}",
            format_seconds(waited),
            self.path
        );
        let line: String = line
            .chars()
            .take(terminal_width().saturating_sub(1))
            .collect();
        // \r and "erase line": one line, rewritten in place.
        let _ = write!(io::stderr().lock(), "\r\x1b[2K{line}");
        self.line_shown = true;
    }

    fn warn(&mut self, message: &str) {
        if self.quiet {
            return;
        }
        // Below a live line, if one is shown: it is redrawn at the next tick.
        self.finished();
        say(&format!("warning: {message}"));
    }

    fn finished(&mut self) {
        if self.line_shown {
            let _ = write!(io::stderr().lock(), "\r\x1b[2K");
            self.line_shown = false;
        }
    }
}

#[allow(unsafe_code)]
fn terminal_width() -> usize {
    // SAFETY: winsize is plain data; TIOCGWINSZ only writes into it.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: stderr is a valid descriptor; the pointer is valid.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &raw mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        80
    }
}
