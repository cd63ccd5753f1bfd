//! From arguments to an exit status: parse, take the lock, run COMMAND, and in one place
//! (`exit_status`) decide what every outcome exits with. Messages are written here too, all
//! to stderr, all starting with `flockrun: `; a failing write never changes the status.
//!
//! Every kind takes the same road (`run_locked`): the command line becomes a `Request`, the
//! kind that claims it makes a `Target`, and taking it yields a `Hold` (see `flockrun::lock`).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command, KernelLockArgs, RunArgs, StatusArgs};
use flockrun::duration::format_seconds;
use flockrun::error::Error;
use flockrun::exit;
use flockrun::inspect::sighting::Sighting;
use flockrun::kind;
use flockrun::lock::{Hold, Request, SoftLayout, Target, Verb};
use flockrun::mode::LockMode;
use flockrun::road::{Voice, run_locked, say_as};
use flockrun::status::{self, State};
use flockrun::supervise;
use flockrun::wait::{Deadline, WaitObserver};

/// Runs flockrun with `args` (including the program name) and returns its exit status.
#[must_use]
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    if let Some(verbose) = flockrun::version::asked(&args) {
        let text = if verbose {
            flockrun::version::verbose()
        } else {
            flockrun::version::line() + "\n"
        };
        let _ = io::stdout().lock().write_all(text.as_bytes());
        return 0;
    }
    let parsed = match Cli::plain_exec_or_try(&args).or_else(|| parse_exec_or_try(&args)) {
        Some(cli) => Ok(cli),
        None => Cli::try_parse_from(&args),
    };
    let mut cli = match parsed {
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
    match &mut cli.command {
        Command::Exec(a) => a.lock.run.settle_fd_mode(),
        Command::Try(a) => a.lock.run.settle_fd_mode(),
        Command::Read(a) | Command::Write(a) => a.run.settle_fd_mode(),
        Command::Status(_) => {}
        Command::Flock(a) => {
            return crate::flock::run(std::iter::once("flock".into()).chain(a.args.drain(..)));
        }
    }
    let (verb, deadline, run, lock_args) = match &cli.command {
        Command::Status(args) => return run_status(args),
        Command::Flock(_) => unreachable!("handled above"),
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
    if soft_rw.is_some_and(|a| a.slots.is_some()) {
        say(
            "--slots applies to exec and try: a reader/writer lock already lets many readers \
             in; use `flockrun exec --slots N LOCK` for a semaphore",
        );
        return exit::USAGE;
    }
    let command = command_of(run);
    let mut request = request_of(verb, deadline, run, lock_args, command.as_ref());
    if let Some(a) = soft_rw {
        request.soft = a.soft;
        request.ttl = a.ttl;
        request.layout = a.layout.unwrap_or(SoftLayout::Both);
    }
    let mut reporter = Reporter::new(run.verbose, run.quiet);
    let outcome = run_locked(&request, command.as_ref(), &mut reporter);
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

/// `exec` and `try`, the commands scripts run over and over, parsed with their own
/// definition alone: building the whole command line (every subcommand, every option)
/// costs more than the parse itself. `None` for anything else, and for anything the lone
/// definition does not accept (`--help`, `--version`, errors): the full parse then runs and
/// says what it says.
fn parse_exec_or_try(args: &[OsString]) -> Option<Cli> {
    use clap::{Args, FromArgMatches};
    let sub = args.get(1)?.to_str()?;
    let rest = || args[1..].iter();
    let command = match sub {
        "exec" => Command::Exec(
            crate::cli::ExecArgs::from_arg_matches_mut(
                &mut crate::cli::ExecArgs::augment_args(clap::Command::new("exec"))
                    .try_get_matches_from(rest())
                    .ok()?,
            )
            .ok()?,
        ),
        "try" => Command::Try(
            crate::cli::TryArgs::from_arg_matches_mut(
                &mut crate::cli::TryArgs::augment_args(clap::Command::new("try"))
                    .try_get_matches_from(rest())
                    .ok()?,
            )
            .ok()?,
        ),
        _ => return None,
    };
    Some(Cli { command })
}

/// The command line in no kind's terms.
fn request_of(
    verb: Verb,
    deadline: Deadline,
    run: &RunArgs,
    lock_args: Option<&KernelLockArgs>,
    command: Option<&supervise::Command>,
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
        lock: run.lock.clone().unwrap_or_default(),
        mode,
        fcntl: flag(|a| a.fcntl),
        soft: flag(|a| a.soft),
        close: flag(|a| a.close),
        no_fork: flag(|a| a.no_fork),
        ttl: lock_args.and_then(|a| a.ttl),
        layout: SoftLayout::Both,
        refuse_host_local: flag(|a| a.refuse_host_local),
        fd: run.fd,
        range: None,
        unlock: false,
        create_mode: run.mode,
        deadline,
        command: command
            .map(supervise::Command::describe)
            .unwrap_or_default(),
        etcd: lock_args.map(|a| a.etcd.access()).unwrap_or_default(),
        slots: lock_args.and_then(|a| a.slots),
        // 0 means no limit, as with timeout(1).
        run_limit: run.run_limit.filter(|l| !l.is_zero()),
        kill_after: run.kill_after,
        replace: flag(|a| a.replace),
    }
}

/// `flockrun status`: 0 when every LOCK is free (or stale), 1 when any is held, 66 when any
/// cannot be inspected.
fn run_status(args: &StatusArgs) -> i32 {
    let etcd = args.etcd.access();
    let mut reports = Vec::new();
    let mut failed: Option<i32> = None;
    for path in &args.locks {
        match kind::inspect(path, args.kind, &etcd) {
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
        Error::Busy { .. }
        | Error::TimedOut { .. }
        | Error::WouldDeadlock { .. }
        | Error::NotReplaced { .. } => i32::from(conflict),
        Error::RunLimit { .. } => exit::RUN_LIMIT,
        Error::Interrupted { signal } => exit::from_signal(*signal),
        Error::Open { .. }
        | Error::OptionFile {
            unreadable: true, ..
        } => exit::NO_INPUT,
        Error::NotALock { .. }
        | Error::SlotsMismatch { .. }
        | Error::BadDescriptor { .. }
        | Error::OptionFile { .. }
        | Error::ServerUnfit { .. } => exit::DATA,
        Error::CannotCreate { .. } => exit::CANT_CREATE,
        Error::Spawn { source, .. } => match source.kind() {
            io::ErrorKind::NotFound => exit::NOT_FOUND,
            _ => exit::NOT_EXECUTABLE,
        },
        Error::LockFailed { .. } | Error::System { .. } => exit::OS_ERROR,
        Error::Usage { .. } => exit::USAGE,
        Error::EtcdUnreachable { .. } | Error::ServerUnreachable { .. } => exit::UNAVAILABLE,
        Error::EtcdRefused { .. } | Error::ServerRefused { .. } => exit::PROTOCOL,
        Error::LockLost { .. } => exit::LOCK_LOST,
        Error::Internal(_) => exit::SOFTWARE,
    }
}

fn say(message: &str) {
    say_as("flockrun", message);
}

/// COMMAND, if one was given (clap requires one unless `--fd` is).
fn command_of(run: &RunArgs) -> Option<supervise::Command> {
    match &run.shell_command {
        Some(script) => Some(supervise::Command::shell(script.clone())),
        None => supervise::Command::from_argv(run.command.clone()),
    }
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
    fn new(verbose: bool, quiet: bool) -> Self {
        Reporter {
            path: String::new(),
            verbose,
            quiet,
            live: !quiet && io::stderr().is_terminal(),
            held_meanwhile: None,
            line_shown: false,
        }
    }
}

impl Voice for Reporter {
    fn name(&self) -> &'static str {
        "flockrun"
    }

    fn flockrun_additions(&self) -> bool {
        true
    }

    fn verbose(&self) -> bool {
        self.verbose
    }

    fn acquired(&mut self, target: &Target, hold: &dyn Hold) {
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
    fn set_lock(&mut self, shown: &str) {
        shown.clone_into(&mut self.path);
    }

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
