//! The core every network kind shares: the lock lives in a server (an etcd cluster today,
//! the databases teams already run next), flockrun holds it through a session of its own,
//! and COMMAND inherits nothing. What such a kind has in common is here, so that the kind itself is its protocol:
//!
//! * `session`: the session's heartbeat thread, the deadline after which a hold that could
//!   not be renewed counts as lost (early enough that COMMAND is stopped before the server
//!   could hand the lock on), the reason it was lost, and the watch the supervisor keeps;
//! * `owner`: who holds or waits, as flockrun records itself in the server (host, pid,
//!   command, since) and as `status` and busy messages name it;
//! * here: the checks of a request every network kind makes (LOCK is text, no file-only
//!   options, a TTL in whole seconds where the server counts in seconds).

pub mod owner;
pub mod session;
pub mod socket;

use std::ffi::OsStr;

use crate::error::Error;
use crate::lock::Request;
use crate::mode::LockMode;

/// LOCK as text: a network LOCK is a URL. `scheme` names it in the message (`etcd://`).
///
/// # Errors
/// `Usage` when LOCK is not valid UTF-8.
pub fn lock_text<'a>(lock: &'a OsStr, scheme: &str) -> Result<&'a str, Error> {
    lock.to_str().ok_or_else(|| Error::Usage {
        message: format!(
            "{}: an {scheme} LOCK must be valid UTF-8",
            lock.to_string_lossy()
        ),
    })
}

/// Refuses the options that only make sense for a lock file (or a shared kernel lock) on a
/// lock held by flockrun itself in a server. `what` says what the lock is (`an etcd lock`).
///
/// # Errors
/// `Usage` naming the first such option given.
pub fn refuse_file_options(request: &Request, text: &str, what: &str) -> Result<(), Error> {
    let not_here = [
        (request.mode == LockMode::Shared, "-s/--shared"),
        (request.fcntl, "--fcntl"),
        (request.soft, "--soft"),
        (request.no_fork, "-F/--no-fork"),
        (request.create_mode.is_some(), "--mode"),
    ];
    match not_here.iter().find(|(given, _)| *given) {
        Some((_, flag)) => Err(Error::Usage {
            message: format!(
                "{flag} does not apply to {text}: {what} is exclusive, held by flockrun \
                 itself, and has no file"
            ),
        }),
        None => Ok(()),
    }
}

/// `--ttl` for a server that counts leases in whole seconds: `default` when not given.
/// `server` names the lease in the message (`an etcd lease`).
///
/// # Errors
/// `Usage` for a fraction, with the whole number to give instead.
pub fn whole_second_ttl(request: &Request, default: u32, server: &str) -> Result<u32, Error> {
    match request.ttl {
        None => Ok(default),
        Some(ttl) => ttl.whole_seconds().ok_or_else(|| Error::Usage {
            message: format!(
                "--ttl {ttl}: {server} lasts whole seconds; give a whole number such as {} \
                 (fractions are for --soft leases)",
                ttl.as_secs_f64().ceil()
            ),
        }),
    }
}
