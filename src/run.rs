//! From arguments to an exit status: parse, take the lock, run COMMAND, and in one place
//! (`exit_status`) decide what every outcome exits with. Messages are written here too, all
//! to stderr, all starting with `flockrun: `; a failing write never changes the status.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command, KernelLockArgs, RunArgs, StatusArgs};
use crate::duration::format_seconds;
use crate::error::Error;
use crate::etcd;
use crate::exit;
use crate::inspect::Sighting;
use crate::kind::LockKind;
use crate::lock::{self, HeldLock, LockMode, LockRequest, WaitObserver};
use crate::nested;
use crate::status;
use crate::supervise::{self, Launch};
use crate::wait::{self, Deadline};

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
    let (plan, run, lock_args) = match &cli.command {
        Command::Status(args) => return run_status(args),
        Command::Exec(a) => (
            Plan::kernel(&a.lock, a.wait.deadline()),
            &a.lock.run,
            Some(&a.lock),
        ),
        Command::Try(a) => (
            Plan::kernel(&a.lock, Deadline::after(Duration::ZERO)),
            &a.lock.run,
            Some(&a.lock),
        ),
        Command::Read(a) => (
            Plan::sqlite(LockMode::Shared, a.wait.deadline()),
            &a.run,
            None,
        ),
        Command::Write(a) => (
            Plan::sqlite(LockMode::Exclusive, a.wait.deadline()),
            &a.run,
            None,
        ),
    };
    let outcome = if etcd::is_target(run.lock.as_os_str()) {
        run_etcd(&plan, lock_args, run)
    } else if let Some(args) = lock_args
        && args.ttl.is_some()
    {
        Err(Error::Usage {
            message: format!(
                "--ttl applies to etcd:// locks only, and {} is a lock file",
                run.lock.display()
            ),
        })
    } else {
        run_locked(&plan, run)
    };
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

/// `flockrun status`: 0 when every LOCK is free (or stale), 1 when any is held, 66 when any
/// cannot be inspected.
fn run_status(args: &StatusArgs) -> i32 {
    let mut reports = Vec::new();
    let mut failed: Option<i32> = None;
    for path in &args.locks {
        let inspected = if etcd::is_target(path.as_os_str()) {
            match (path.to_str(), args.kind) {
                (Some(text), None) => status::inspect_etcd(text),
                (None, _) => Err(Error::Usage {
                    message: format!("{}: an etcd:// LOCK must be valid UTF-8", path.display()),
                }),
                (Some(text), Some(_)) => Err(Error::Usage {
                    message: format!("--kind does not apply to {text}: its kind is etcd"),
                }),
            }
        } else {
            status::inspect(path, args.kind)
        };
        match inspected {
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
        i32::from(reports.iter().any(|r| r.state == status::State::Held))
    }
}

/// What a subcommand asks for, besides LOCK and COMMAND.
struct Plan {
    kind: LockKind,
    mode: LockMode,
    deadline: Deadline,
    close: bool,
    no_fork: bool,
}

impl Plan {
    fn kernel(args: &KernelLockArgs, deadline: Deadline) -> Self {
        Plan {
            kind: if args.soft {
                LockKind::Soft
            } else if args.fcntl {
                LockKind::Ofd
            } else {
                LockKind::Kernel
            },
            mode: if args.shared {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            },
            deadline,
            close: args.close,
            no_fork: args.no_fork,
        }
    }

    fn sqlite(mode: LockMode, deadline: Deadline) -> Self {
        Plan {
            kind: LockKind::Sqlite,
            mode,
            deadline,
            close: false,
            no_fork: false,
        }
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

fn run_locked(plan: &Plan, run: &RunArgs) -> Result<i32, Error> {
    if run.lock.as_os_str().is_empty() {
        return Err(Error::Open {
            path: run.lock.clone(),
            hint: "LOCK is empty; give the path of a lock file".to_owned(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        });
    }
    let command = command_of(run)?;
    let request = LockRequest {
        path: run.lock.clone(),
        kind: plan.kind,
        mode: plan.mode,
        deadline: plan.deadline,
        create_mode: run.mode,
    };
    wait::install_stop_handlers().map_err(|e| Error::system("installing signal handlers", e))?;

    let inherited_held = std::env::var_os(nested::HELD_VAR);
    if let Some(id) = lock::file_id(&request.path)
        && let Some(above) = nested::held_above(id, request.kind, inherited_held.as_deref())
    {
        if !above.mode.covers(request.mode) {
            return Err(Error::WouldDeadlock {
                path: std::path::absolute(&request.path).unwrap_or(request.path.clone()),
                kind: request.kind,
                held: above.mode,
                wanted: request.mode,
                holder_pid: above.pid,
            });
        }
        if run.verbose {
            say(&format!(
                "{} is already held with a {} lock by ancestor pid {}; running COMMAND under it",
                request.path.display(),
                request.kind.mode_name(above.mode),
                above.pid
            ));
        }
        let env = lock_env(&request.path, request.kind, request.mode, inherited_held);
        let launch = Launch {
            command: &command,
            inherit_fd: None,
            die_with_flockrun: false,
            env,
            lost: None,
        };
        return if plan.no_fork {
            Err(supervise::exec_in_place(&launch))
        } else {
            supervise::run(&launch)
        };
    }

    let mut reporter = Reporter::new(&request.path, run.verbose, run.quiet);
    let held = lock::acquire(&request, &mut reporter)?;
    reporter.acquired(&held);

    let me = nix::unistd::getpid().as_raw();
    let mut env = lock_env(held.path(), held.kind(), held.mode(), None);
    env.push((
        nested::HELD_VAR.into(),
        nested::held_var_with(inherited_held.as_deref(), &held, me),
    ));
    let inherit_fd = if plan.close { None } else { held.fd() };
    let launch = Launch {
        command: &command,
        inherit_fd,
        // COMMAND must never run on without the lock: when it does not hold the lock
        // itself, it dies with flockrun.
        die_with_flockrun: inherit_fd.is_none(),
        env,
        lost: None,
    };
    if plan.no_fork {
        return Err(supervise::exec_in_place(&launch));
    }
    let status = supervise::run(&launch);
    if !held.still_named() {
        // Nothing can undo that now, but whoever reads the log should know.
        eprintln!(
            "flockrun: warning: {} was deleted or replaced while the lock was held; \
             processes that opened it since then locked another file and did not wait",
            held.path().display()
        );
    }
    drop(held);
    status
}

fn command_of(run: &RunArgs) -> Result<supervise::Command, Error> {
    match &run.shell_command {
        Some(script) => Ok(supervise::Command::shell(script.clone())),
        None => supervise::Command::from_argv(run.command.clone())
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("clap let an empty COMMAND through"))),
    }
}

/// LOCK as an etcd target, after refusing the options that make no sense for one.
fn etcd_request<'a>(
    lock_args: Option<&'a KernelLockArgs>,
    run: &'a RunArgs,
) -> Result<(&'a str, etcd::Target, &'a KernelLockArgs), Error> {
    let usage = |message: String| Error::Usage { message };
    let text = run.lock.to_str().ok_or_else(|| {
        usage(format!(
            "{}: an etcd:// LOCK must be valid UTF-8",
            run.lock.display()
        ))
    })?;
    let Some(args) = lock_args else {
        return Err(usage(format!(
            "read and write take a SQLite lock file, not {text}; an etcd lock is exclusive: \
             use exec or try"
        )));
    };
    let not_for_etcd = [
        (args.shared, "-s/--shared"),
        (args.fcntl, "--fcntl"),
        (args.soft, "--soft"),
        (args.no_fork, "-F/--no-fork"),
        (run.mode.is_some(), "--mode"),
    ];
    if let Some((_, flag)) = not_for_etcd.iter().find(|(given, _)| *given) {
        return Err(usage(format!(
            "{flag} does not apply to {text}: an etcd lock is exclusive, held by flockrun \
             itself, and has no file"
        )));
    }
    Ok((text, etcd::Target::parse_lock(text)?, args))
}

/// `exec` and `try` on an `etcd://` LOCK: a lease-backed lock held by flockrun itself, so
/// COMMAND dies with flockrun, and is stopped if the lease is lost.
fn run_etcd(plan: &Plan, lock_args: Option<&KernelLockArgs>, run: &RunArgs) -> Result<i32, Error> {
    let (text, target, args) = etcd_request(lock_args, run)?;
    let command = command_of(run)?;
    wait::install_stop_handlers().map_err(|e| Error::system("installing signal handlers", e))?;
    let inherited_held = std::env::var_os(nested::HELD_VAR);
    let identity = target.identity();
    if let Some(above) = nested::etcd_held_above(identity, inherited_held.as_deref()) {
        // The lock is ours already, through an ancestor: waiting would wait for ourselves.
        if run.verbose {
            say(&format!(
                "{text} is already held by ancestor pid {}; running COMMAND under it",
                above.pid
            ));
        }
        let launch = Launch {
            command: &command,
            inherit_fd: None,
            die_with_flockrun: false,
            env: Vec::new(),
            lost: None,
        };
        return supervise::run(&launch);
    }
    let ttl = args.ttl.unwrap_or(etcd::DEFAULT_TTL);
    let mut reporter = Reporter::new(Path::new(text), run.verbose, run.quiet);
    let shown = std::iter::once(&command.program)
        .chain(&command.args)
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let held = etcd::acquire(&target, ttl, &plan.deadline, &shown, &mut reporter)?;
    if run.verbose {
        let mut message = format!(
            "locked {text} (exclusive, etcd) after waiting {}: key {}, fencing token {}",
            format_seconds(held.waited),
            held.key,
            held.revision
        );
        if let Some(sighting) = &reporter.held_meanwhile {
            let _ = write!(message, "; meanwhile it was {sighting}");
        }
        say(&message);
    }
    let revision = held.revision.to_string();
    let env: Vec<(OsString, OsString)> = vec![
        ("FLOCKRUN_LOCK".into(), text.into()),
        ("FLOCKRUN_KIND".into(), "etcd".into()),
        ("FLOCKRUN_MODE".into(), "exclusive".into()),
        ("FLOCKRUN_FENCE".into(), revision.clone().into()),
        // What etcdctl lock gives its command, for scripts written for it.
        ("ETCD_LOCK_KEY".into(), held.key.clone().into()),
        ("ETCD_LOCK_REV".into(), revision.into()),
        (
            nested::HELD_VAR.into(),
            nested::etcd_held_var_with(
                inherited_held.as_deref(),
                identity,
                nix::unistd::getpid().as_raw(),
            ),
        ),
    ];
    let launch = Launch {
        command: &command,
        inherit_fd: None,
        // Nothing of the lock can be inherited: if flockrun dies, its lease expires, and
        // COMMAND must not run on without it.
        die_with_flockrun: true,
        env,
        lost: Some(supervise::LostWatch {
            is_lost: held.session.lost_flag(),
            grace: etcd::grace_for(held.session.ttl()),
        }),
    };
    let status = supervise::run(&launch);
    let lost = held.session.lost();
    if let Some(warning) = held.session.release() {
        say(&format!("warning: {warning}"));
    }
    match lost {
        Some(reason) => Err(Error::LockLost {
            lock: text.to_owned(),
            reason,
            command_ran: !matches!(status, Ok(exit::LOCK_LOST)),
        }),
        None => status,
    }
}

/// `FLOCKRUN_LOCK`, `FLOCKRUN_KIND`, `FLOCKRUN_MODE`, and the inherited `FLOCKRUN_HELD`.
fn lock_env(
    path: &Path,
    kind: LockKind,
    mode: LockMode,
    held: Option<OsString>,
) -> Vec<(OsString, OsString)> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut env = vec![
        ("FLOCKRUN_LOCK".into(), absolute.into_os_string()),
        ("FLOCKRUN_KIND".into(), kind.name().into()),
        ("FLOCKRUN_MODE".into(), kind.mode_name(mode).into()),
    ];
    if let Some(held) = held {
        env.push((nested::HELD_VAR.into(), held));
    }
    env
}

/// Shows a wait to the person running flockrun: with `-v` a summary once the lock is won;
/// on a terminal a live line after about a second of waiting.
struct Reporter {
    path: String,
    verbose: bool,
    live: bool,
    held_meanwhile: Option<Sighting>,
    line_shown: bool,
}

const LIVE_LINE_AFTER: Duration = Duration::from_secs(1);

impl Reporter {
    fn new(path: &Path, verbose: bool, quiet: bool) -> Self {
        Reporter {
            path: path.display().to_string(),
            verbose,
            live: !quiet && io::stderr().is_terminal(),
            held_meanwhile: None,
            line_shown: false,
        }
    }

    fn acquired(&self, held: &HeldLock) {
        if !self.verbose {
            return;
        }
        let mut message = format!(
            "locked {} ({}, {}) after waiting {}",
            held.path().display(),
            held.kind().mode_name(held.mode()),
            held.kind(),
            format_seconds(held.waited())
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
