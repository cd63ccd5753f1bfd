//! flockrun: run a command while holding a lock.
//!
//! The library does the locking; the `flockrun` binary (`src/main.rs` with its own modules
//! `cli`, `run` and `flock`) only parses its two command lines, flockrun's and util-linux
//! flock(1)'s, and turns outcomes into exit statuses. The pieces, bottom up:
//!
//! * [`mode`], [`error`], [`inspect::sighting`]: plain types every other part names;
//! * [`wait`] (deadlines, stop signals, waiting in the kernel), [`open`] (opening lock files
//!   safely), [`inspect`] (who holds a lock, from `/proc`), [`nested`] (locks an ancestor
//!   flockrun holds), [`supervise`] (running COMMAND and passing signals on);
//! * [`lock`]: the interface every kind implements: a request becomes a target, taking it
//!   yields a hold;
//! * [`kind`]: one file per kind (kernel, ofd, sqlite, soft, lease, soft-rw, etcd), a
//!   folder per family of kinds for what they share (the network kinds' session core is
//!   `kind::network`), and the choice among them;
//! * [`replace`]: `--replace`, stopping the holder `status` names before taking the lock;
//! * [`road`]: the one road from a request through a hold and COMMAND back to a status,
//!   which both command lines take, each in its own words; [`exit`] the statuses they
//!   answer with; [`version`] what `--version` says.

pub mod duration;
pub mod error;
pub mod exit;
pub mod fuzz;
pub mod identity;
pub mod inspect;
pub mod kind;
pub mod lock;
pub mod mode;
pub mod mounts;
pub mod nested;
pub mod nss;
pub mod open;
pub mod replace;
pub mod road;
pub mod status;
pub mod supervise;
pub mod utc;
pub mod version;
pub mod wait;

pub use error::Error;
pub use mode::LockMode;
