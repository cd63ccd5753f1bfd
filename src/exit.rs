//! Exit statuses flockrun can end with, named once so the README table, the tests and the
//! code agree. They follow sysexits.h where one fits, and the shell's 126/127/128+N otherwise.

/// The default status when the lock is busy or the wait timed out (`EX_TEMPFAIL`).
pub const CONFLICT_DEFAULT: u8 = 75;
/// Usage error: unknown option, bad value, missing LOCK or COMMAND (`EX_USAGE`).
pub const USAGE: i32 = 64;
/// LOCK exists but is not a valid lock of the requested kind (`EX_DATAERR`).
pub const DATA: i32 = 65;
/// LOCK cannot be opened or created (`EX_NOINPUT`).
pub const NO_INPUT: i32 = 66;
/// An etcd cluster cannot be reached (`EX_UNAVAILABLE`).
pub const UNAVAILABLE: i32 = 69;
/// Internal error: a bug in flockrun (`EX_SOFTWARE`).
pub const SOFTWARE: i32 = 70;
/// Operating-system failure: fork, descriptors exhausted, unexpected lock error (`EX_OSERR`).
pub const OS_ERROR: i32 = 71;
/// LOCK cannot be created: read-only filesystem or no space (`EX_CANTCREAT`).
pub const CANT_CREATE: i32 = 73;
/// etcd answered with an error or something that is not an etcd reply (`EX_PROTOCOL`).
pub const PROTOCOL: i32 = 76;
/// The lock was lost while held (an etcd lease that could not be renewed); COMMAND was
/// stopped. Outside sysexits.h, so it is never mistaken for another failure.
pub const LOCK_LOST: i32 = 79;
/// COMMAND ran longer than `--run-limit` and was stopped (timeout(1)'s status).
pub const RUN_LIMIT: i32 = 124;
/// COMMAND was found but cannot be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// COMMAND was not found.
pub const NOT_FOUND: i32 = 127;

/// The status for a process that died of (or a wait stopped by) signal `signal`.
#[must_use]
pub fn from_signal(signal: i32) -> i32 {
    128 + signal
}
