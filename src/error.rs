//! The library's typed errors. Each variant carries what the binary needs to print a message
//! that names the path and says what to do, and to pick the exit status (see the binary's `run`)
//! without parsing strings.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::inspect::sighting::Sighting;

/// Everything that can go wrong while taking a lock or running a command under it.
#[derive(Debug)]
pub enum Error {
    /// A single attempt found the lock held by someone else.
    Busy {
        path: PathBuf,
        sighting: Box<Sighting>,
    },
    /// The wait reached its deadline.
    TimedOut {
        path: PathBuf,
        waited: Duration,
        sighting: Box<Sighting>,
    },
    /// An ancestor holds the lock in a mode that does not cover this request; waiting would
    /// wait for ourselves forever.
    WouldDeadlock {
        path: PathBuf,
        /// The held and the wanted mode, named as the kind names them (`read`, `shared`…).
        held: &'static str,
        wanted: &'static str,
        holder_pid: i32,
    },
    /// A termination signal arrived while waiting (or before COMMAND could start).
    Interrupted { signal: i32 },
    /// LOCK exists but cannot serve as a lock of this kind (FIFO, socket, character device…).
    NotALock { path: PathBuf, reason: String },
    /// `--fd N` names a descriptor that is not open.
    BadDescriptor { fd: i32, source: io::Error },
    /// LOCK cannot be opened: permission, symlink refused, missing directory…
    Open {
        path: PathBuf,
        hint: String,
        source: io::Error,
    },
    /// LOCK does not exist and cannot be created: read-only filesystem, no space.
    CannotCreate {
        path: PathBuf,
        hint: String,
        source: io::Error,
    },
    /// The kernel refused the lock operation itself (ENOLCK, ENOSYS, EOPNOTSUPP…).
    LockFailed { path: PathBuf, source: io::Error },
    /// COMMAND could not be started.
    Spawn {
        program: OsString,
        source: io::Error,
    },
    /// A system call flockrun depends on failed (fork, signals, timers, descriptors).
    System {
        what: &'static str,
        source: io::Error,
    },
    /// Options that cannot go together with this LOCK (checked after clap).
    Usage { message: String },
    /// No member of an etcd cluster answered in time.
    EtcdUnreachable { lock: String, problems: Vec<String> },
    /// etcd answered, but with an error or something that is not an etcd reply.
    EtcdRefused { lock: String, message: String },
    /// A server a network kind names (a PostgreSQL server) could not be reached in time.
    ServerUnreachable {
        lock: String,
        server: &'static str,
        problems: Vec<String>,
    },
    /// The server refused us: login, database, TLS (76).
    ServerRefused {
        lock: String,
        server: &'static str,
        message: String,
    },
    /// The server answered, but a lock taken there would not be one (a hot standby, a
    /// pooler that shares sessions): 65, with what to do.
    ServerUnfit { lock: String, message: String },
    /// A file an option or setting names (etcd's `--cacert`, `--cert`, `--key`,
    /// `--password-file`; PostgreSQL's `sslrootcert`, `sslcert`, `sslkey`, a service file)
    /// cannot be read (`unreadable`, 66) or does not hold what it should (65).
    OptionFile {
        option: &'static str,
        path: PathBuf,
        problem: String,
        unreadable: bool,
    },
    /// The lock stopped being ours (an etcd lease that could not be renewed); COMMAND, if it
    /// ran, was stopped.
    LockLost {
        lock: String,
        reason: String,
        command_ran: bool,
    },
    /// COMMAND ran past `--run-limit` and was stopped, with everything it started (124).
    RunLimit {
        lock: String,
        limit: Duration,
        kill_after: Duration,
        /// Whether SIGKILL was needed.
        killed: bool,
    },
    /// A semaphore is in use with another number of slots (65).
    SlotsMismatch {
        lock: String,
        ours: u16,
        theirs: u16,
    },
    /// `--replace` found a holder it cannot stop (75, or `-E`).
    NotReplaced { lock: String, why: String },
    /// A bug: a state flockrun believed impossible.
    Internal(anyhow::Error),
}

impl Error {
    pub(crate) fn system(what: &'static str, source: impl Into<io::Error>) -> Self {
        Error::System {
            what,
            source: source.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Busy { path, sighting } => {
                write!(f, "{} is busy: {sighting}", path.display())
            }
            Error::TimedOut {
                path,
                waited,
                sighting,
            } => write!(
                f,
                "timed out after {} waiting for {}: {sighting}",
                crate::duration::format_seconds(*waited),
                path.display()
            ),
            Error::WouldDeadlock {
                path,
                held,
                wanted,
                holder_pid,
            } => {
                write!(
                    f,
                    "{} is already held with a {held} lock by an ancestor (pid {holder_pid}); a nested \
                     {wanted} request would wait for itself forever: take the {wanted} lock in \
                     the outer flockrun instead",
                    path.display()
                )
            }
            Error::Interrupted { signal } => {
                write!(
                    f,
                    "stopped by signal {} while waiting",
                    signal_name(*signal)
                )
            }
            Error::NotALock { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::BadDescriptor { fd, source } => write!(
                f,
                "descriptor {fd} cannot be locked: {}; open the lock file on it first \
                 (exec {fd}>LOCK in a shell)",
                os_message(source)
            ),
            Error::Open { path, hint, source } => fmt_cannot(f, "open", path, hint, source),
            Error::CannotCreate { path, hint, source } => {
                fmt_cannot(f, "create", path, hint, source)
            }
            Error::LockFailed { path, source } => {
                write!(f, "cannot lock {}: {}", path.display(), os_message(source))?;
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOLCK | libc::ENOSYS | libc::EOPNOTSUPP)
                ) {
                    write!(
                        f,
                        "; this filesystem does not support kernel locks: use --soft for a \
                         marker-file lock, or put the lock on a local filesystem such as /run/lock"
                    )?;
                }
                Ok(())
            }
            Error::Spawn { program, source } => {
                let program = program.to_string_lossy();
                match source.kind() {
                    io::ErrorKind::NotFound => write!(
                        f,
                        "cannot run {program}: command not found (check the name and PATH)"
                    ),
                    io::ErrorKind::PermissionDenied => write!(
                        f,
                        "cannot run {program}: permission denied (is it executable? chmod +x)"
                    ),
                    _ => write!(f, "cannot run {program}: {}", os_message(source)),
                }
            }
            Error::System { what, source } => write!(f, "{what} failed: {}", os_message(source)),
            Error::Usage { message } => f.write_str(message),
            Error::RunLimit { .. } | Error::SlotsMismatch { .. } | Error::NotReplaced { .. } => {
                self.fmt_job(f)
            }
            Error::EtcdUnreachable { .. }
            | Error::EtcdRefused { .. }
            | Error::ServerUnreachable { .. }
            | Error::ServerRefused { .. }
            | Error::ServerUnfit { .. }
            | Error::OptionFile { .. }
            | Error::LockLost { .. } => self.fmt_etcd(f),
            Error::Internal(e) => write!(f, "internal error (please report it): {e:#}"),
        }
    }
}

impl Error {
    /// The job-control errors: `--run-limit`, `--slots`, `--replace`.
    fn fmt_job(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RunLimit {
                lock,
                limit,
                kill_after,
                killed,
            } => {
                let how = if *killed {
                    format!(
                        "SIGTERM, then SIGKILL after {}",
                        crate::duration::format_seconds(*kill_after)
                    )
                } else {
                    "SIGTERM".to_owned()
                };
                write!(
                    f,
                    "COMMAND ran longer than --run-limit {}: stopped it and everything it \
                     started ({how}) and released {lock}",
                    crate::duration::format_seconds(*limit)
                )
            }
            Error::SlotsMismatch { lock, ours, theirs } => write!(
                f,
                "{lock} is a semaphore of {theirs} slots in use, and this asks for --slots \
                 {ours}: give every user of it the same number (--slots {theirs}), or wait \
                 until nobody holds a slot to change it"
            ),
            Error::NotReplaced { lock, why } => write!(f, "{lock} was not replaced: {why}"),
            _ => unreachable!("fmt_job is called for job-control errors only"),
        }
    }
}

/// "cannot open (or create) lock PATH: WHY; HINT".
fn fmt_cannot(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    path: &std::path::Path,
    hint: &str,
    source: &io::Error,
) -> fmt::Result {
    write!(
        f,
        "cannot {what} lock {}: {}",
        path.display(),
        os_message(source)
    )?;
    if !hint.is_empty() {
        write!(f, "; {hint}")?;
    }
    Ok(())
}

impl Error {
    /// The messages of the network kinds' errors.
    fn fmt_etcd(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ServerUnreachable {
                lock,
                server,
                problems,
            } => {
                write!(f, "cannot reach {server} for {lock}")?;
                if !problems.is_empty() {
                    write!(f, " ({})", problems.join("; "))?;
                }
                if *server == "PostgreSQL" {
                    write!(
                        f,
                        "; check that the server runs and that LOCK (or PGHOST and PGPORT) \
                         names it"
                    )
                } else {
                    write!(f, "; check that the server runs and that LOCK names it")
                }
            }
            Error::ServerRefused {
                lock,
                server,
                message,
            } => write!(f, "{server} refused {lock}: {message}"),
            Error::ServerUnfit { lock, message } => write!(f, "{lock}: {message}"),
            Error::EtcdUnreachable { lock, problems } => {
                write!(f, "cannot reach etcd for {lock}")?;
                if !problems.is_empty() {
                    write!(f, " ({})", problems.join("; "))?;
                }
                write!(
                    f,
                    "; check that the members listed in LOCK run and that their client port \
                     (usually 2379) is reachable from here"
                )
            }
            Error::EtcdRefused { lock, message } => {
                write!(f, "etcd refused the request for {lock}: {message}")?;
                if message.contains("user name is empty") || message.contains("invalid auth token")
                {
                    write!(
                        f,
                        "; this cluster requires authentication: give --user NAME with \
                         --password-file FILE (or set ETCDCTL_USER and ETCDCTL_PASSWORD)"
                    )?;
                }
                Ok(())
            }
            Error::OptionFile {
                option,
                path,
                problem,
                ..
            } => write!(f, "{option} {}: {problem}", path.display()),
            Error::LockLost {
                lock,
                reason,
                command_ran,
            } => {
                write!(f, "lost the lock {lock}: {reason}")?;
                if *command_ran {
                    write!(
                        f,
                        "; COMMAND was stopped (SIGTERM, then SIGKILL if it lingered), since \
                         another process may now hold the lock"
                    )?;
                } else {
                    write!(f, "; COMMAND was not started")?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Open { source, .. }
            | Error::CannotCreate { source, .. }
            | Error::LockFailed { source, .. }
            | Error::Spawn { source, .. }
            | Error::System { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `strerror` text without std's " (os error N)" suffix, which means nothing to a user.
pub(crate) fn os_message(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

/// `SIGTERM` for 15, and so on; the number when the name is unknown.
#[must_use]
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| signal.to_string(), |s| s.as_str().to_owned())
}
