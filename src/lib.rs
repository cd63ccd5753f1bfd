//! flockrun: run a command while holding a lock.
//!
//! The library does the locking; the `flockrun` binary only parses arguments (`cli`) and
//! turns outcomes into exit statuses (`run`). The pieces:
//!
//! * [`acquire`] takes a lock of a [`LockKind`] in a [`LockMode`] before a
//!   [`wait::Deadline`], waiting in the kernel and re-checking the inode it won;
//! * [`supervise`] runs a command under a held lock and passes signals on to it;
//! * [`inspect`] says who holds a lock and who waits, from `/proc`;
//! * [`nested`] recognises a lock an ancestor flockrun already holds;
//! * [`etcd`] takes a lock across machines through an etcd cluster, as `etcdctl lock` does.

pub mod cli;
pub mod duration;
pub mod error;
pub mod etcd;
pub mod exit;
pub mod identity;
pub mod inspect;
pub mod kind;
pub mod lock;
pub mod nested;
mod open;
pub mod run;
pub mod status;
pub mod supervise;
pub mod wait;

pub use error::Error;
pub use kind::LockKind;
pub use lock::{HeldLock, LockMode, LockRequest, Silent, WaitObserver, acquire};
