//! The lock kinds flockrun speaks, one file each behind the interface in `crate::lock`, and
//! the two places that choose among them: which kind a command line asks for, and which kind
//! `status` finds at a path.

mod descriptor;
mod marker;
pub mod network;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::Error;
use crate::inspect::proc_locks::{self, KernelLocks};
use crate::inspect::sighting::FileId;
use crate::lock::{Kind, LockFile, Request, Target};
use crate::open::{self, Shape};
use crate::status::LockStatus;

/// Declares each kind's module and lists the kind in `KINDS`; the kinds a LOCK's own form
/// names also go in `NAMED` with their schemes, the others in `FILE_KINDS`.
macro_rules! kinds {
    (
        files: $($module:ident :: $kind:ident),+ ;
        named: $($nmodule:ident :: $nkind:ident => [$($scheme:literal),+]),+ $(;)?
    ) => {
        $(pub mod $module;)+
        $(pub mod $nmodule;)+
        /// Every kind, in the order `status` lists them and looks for them in a file.
        pub const KINDS: &[&dyn Kind] = &[$(&$module::$kind,)+ $(&$nmodule::$nkind),+];
        /// The kinds of lock files, which a request's verb and options choose among.
        const FILE_KINDS: &[&dyn Kind] = &[$(&$module::$kind),+];
        /// The kinds LOCK's own form names, by scheme. `for_request` looks them up here, as
        /// data, before asking the file kinds: a lock file's road then never runs (and never
        /// pages in) the network kinds' code, which keeps an uncontended `write` within its
        /// memory target. Each of these kinds claims exactly the LOCKs its schemes start.
        const NAMED: &[(&str, &dyn Kind)] = &[$($(($scheme, &$nmodule::$nkind),)+)+];
    };
}

// A new kind is its file and one entry here.
kinds![
    files: kernel::Kernel, ofd::Ofd, sqlite::Sqlite, soft::Soft, lease::Lease, soft_rw::SoftRw;
    named: etcd::Etcd => ["etcd://", "etcds://"], postgres::Postgres => ["postgresql://", "postgres://"],
        redis::Redis => ["redis://", "rediss://", "valkey://", "valkeys://", "unix://", "redis+unix://", "valkey+unix://"];
];

/// What `status` takes a lock file for when neither its kernel locks nor its content say.
const DEFAULT_FILE_KIND: &dyn Kind = &kernel::Kernel;

/// The kind that claims `request` most strongly.
///
/// # Errors
/// `Internal` if no kind claims it (every subcommand has a default kind).
pub fn for_request(request: &Request) -> Result<&'static dyn Kind, Error> {
    let lock = request.lock.as_os_str().as_encoded_bytes();
    if let Some((_, kind)) = NAMED
        .iter()
        .find(|(scheme, _)| lock.starts_with(scheme.as_bytes()))
    {
        return Ok(*kind);
    }
    FILE_KINDS
        .iter()
        .filter_map(|kind| kind.claims(request).map(|claim| (claim, *kind)))
        .max_by_key(|(claim, _)| *claim)
        .map(|(_, kind)| kind)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("no lock kind serves {request:?}")))
}

/// The target `request` names.
///
/// ```
/// use std::time::Duration;
/// use flockrun::kind;
/// use flockrun::lock::{Request, Verb};
/// use flockrun::wait::{Deadline, Silent};
///
/// let path = std::env::temp_dir().join("flockrun-doc-example.lock");
/// let mut request = Request::new(Verb::Exec, &path);
/// request.deadline = Deadline::after(Duration::from_secs(5));
/// let target = kind::target(&request)?;
/// assert_eq!(target.kind, "kernel");
/// let hold = target.lockable.take(&target.deadline, &mut Silent)?;
/// assert!(hold.descriptor().is_some()); // COMMAND could inherit it
/// drop(hold); // released
/// # Ok::<(), flockrun::Error>(())
/// ```
///
/// # Errors
/// A usage error for options the kind cannot honour, or an error about LOCK.
pub fn target(request: &Request) -> Result<Target, Error> {
    let kind = for_request(request)?;
    if request.etcd.any() && ![etcd::Etcd.name(), redis::Redis.name()].contains(&kind.name()) {
        return Err(Error::Usage {
            message: format!(
                "--cacert, --cert, --key, --user and --password-file apply to etcd:// and \
                 redis:// locks (and their TLS forms), and {} is {}",
                request.lock.display(),
                if kind.name() == postgres::Postgres.name() {
                    "a PostgreSQL lock, which takes them in LOCK or the PG* variables"
                } else {
                    "a lock file"
                }
            ),
        });
    }
    if request.slots.is_some() && !SEMAPHORE_KINDS.contains(&kind.name()) {
        return Err(Error::Usage {
            message: format!(
                "--slots makes a semaphore of a lock file (kernel, --fcntl, --soft, --soft \
                 --ttl) or of an etcd:// lock, and {} is a lock of kind {}: {}",
                request.lock.display(),
                kind.name(),
                if kind.name() == postgres::Postgres.name() {
                    "a PostgreSQL session cannot wait for whichever of N advisory keys frees \
                     first without polling, so flockrun does not offer it; see README.md"
                } else if kind.name() == redis::Redis.name() {
                    "Redis semaphores are not offered yet (use an etcd:// semaphore across \
                     machines); see README.md"
                } else {
                    "see README.md"
                }
            ),
        });
    }
    kind.target(request)
}

/// The kinds `--slots` makes semaphores of.
const SEMAPHORE_KINDS: &[&str] = &["kernel", "ofd", "soft", "soft-lease", "etcd"];

/// Parses a `status --kind` value: a kind that inspects lock files.
///
/// # Errors
/// For other names, with the list of those it takes (`kernel, ofd, sqlite or soft`).
pub fn parse_inspectable(name: &str) -> Result<&'static dyn Kind, String> {
    let mut names: Vec<&str> = Vec::new();
    for kind in KINDS.iter().filter(|k| k.inspects_files()) {
        if kind.name() == name {
            return Ok(*kind);
        }
        names.push(kind.name());
    }
    let listed = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    };
    Err(format!("expected {listed}"))
}

/// `status` of one LOCK: the kind its form names, else the lock file as `forced` kind or as
/// detected from its kernel locks and content.
///
/// # Errors
/// When LOCK cannot be inspected: a symbolic link, a FIFO/socket/device, no permission to
/// look at it, an etcd cluster out of reach; `Usage` for `--kind` with a LOCK whose form
/// names its kind.
pub fn inspect(
    lock: &Path,
    forced: Option<&'static dyn Kind>,
    etcd_access: &etcd::Access,
) -> Result<LockStatus, Error> {
    for kind in KINDS {
        if let Some(report) = kind.inspect_named(lock.as_os_str(), etcd_access) {
            if forced.is_some() {
                return Err(Error::Usage {
                    message: format!(
                        "--kind does not apply to {}: its kind is {}",
                        lock.display(),
                        kind.name()
                    ),
                });
            }
            return report;
        }
    }
    inspect_file(lock, forced)
}

fn inspect_file(path: &Path, forced: Option<&'static dyn Kind>) -> Result<LockStatus, Error> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut status = LockStatus::new(absolute.clone());
    status.kind = forced.map(Kind::name);
    let meta = match fs::symlink_metadata(&absolute) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let beside = || {
                KINDS
                    .iter()
                    .copied()
                    .find(|k| k.recognises_beside(&absolute))
            };
            if let Some(kind) = forced.or_else(beside) {
                status.kind = Some(kind.name());
                kind.inspect_missing(&mut status)?;
            }
            return Ok(status);
        }
        Err(e) => {
            return Err(Error::Open {
                path: absolute,
                hint: "cannot examine it; check the permissions of its directories".to_owned(),
                source: e,
            });
        }
    };
    status.exists = true;
    open::refuse_unlockable(&absolute, Some(&meta), Shape::AnyLockable)?;
    let id = FileId::of(&meta);
    let locks = KernelLocks::read();
    let file = LockFile {
        path: &absolute,
        meta: &meta,
        id,
        locks: &locks,
    };
    let kind = forced.unwrap_or_else(|| detect(&file));
    status.kind = Some(kind.name());
    status.kernel_lines = locks
        .text
        .lines()
        .filter(|l| proc_locks::parse_line(l).is_some_and(|p| p.inode == id.ino))
        .map(str::to_owned)
        .collect();
    kind.inspect_file(&mut status, &file)?;
    Ok(status)
}

/// Kernel locks on the inode name the kind; otherwise the content does (a soft-lock record,
/// an SQLite header), or files beside it (a soft read/write lock's); anything else, an
/// empty file, a directory or data, is the default kind's.
fn detect(file: &LockFile<'_>) -> &'static dyn Kind {
    let locked_as = |class: &str| {
        file.locks
            .lines
            .iter()
            .any(|l| l.inode == file.id.ino && l.class == class)
    };
    if let Some(kind) = KINDS.iter().find(|k| k.proc_class().is_some_and(locked_as)) {
        return *kind;
    }
    let by_content = || {
        (file.meta.is_file() && file.meta.len() > 0)
            .then(|| KINDS.iter().copied().find(|k| k.recognises(file)))
            .flatten()
    };
    let beside = || {
        KINDS
            .iter()
            .copied()
            .find(|k| k.recognises_beside(file.path))
    };
    by_content().or_else(beside).unwrap_or(DEFAULT_FILE_KIND)
}

/// The soft read/write kinds' record parsers, private to their modules, for `crate::fuzz`:
/// a v1 marker (`LOCK.write`, `LOCK.readers/*`) and a v2 generation record (`gen/<N>`).
/// Each checks what must hold of any record it accepts: writing it out again gives a record
/// that parses to the same thing.
pub(crate) fn replay_soft_rw_record(bytes: &[u8]) {
    if let Some(marker) = soft_rw::v1::parse_marker(bytes) {
        let again = format!("{}\n{}\n{}\n", marker.token, marker.pid, marker.host);
        assert_eq!(soft_rw::v1::parse_marker(again.as_bytes()), Some(marker));
    }
    if let Some(snapshot) = soft_rw::v2::parse_snapshot(bytes) {
        assert_eq!(
            soft_rw::v2::parse_snapshot(&snapshot.encode()),
            Some(snapshot)
        );
    }
    // A v2 holder record's lease, and the bytes as a name listed in `gen/`.
    let _ = soft_rw::v2::holder_lease(Some(bytes));
    let _ = soft_rw::v2::listed_generation(std::ffi::OsStr::from_bytes(bytes));
}

/// Opens `path` as the SQLite kind's lock file, short of waiting or locking anything for
/// long: the file checks and the protocol's statements in a read transaction, rolled back.
/// For `crate::fuzz`, with a file of arbitrary bytes.
pub(crate) fn replay_sqlite_file(path: &Path) -> Result<bool, Error> {
    sqlite::examine(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{Claim, Verb};

    /// The lookup by scheme gives what asking every kind would give.
    #[test]
    fn for_request_agrees_with_every_kinds_claim() {
        let locks = [
            "/tmp/x.lock",
            "etcd://127.0.0.1:2379/job",
            "etcds://h/job",
            "postgresql://db/app/job",
            "postgres:///job",
            "postgresqlish/file",
            "redis://h/job",
            "rediss://h:6380/2/job",
            "unix:///run/redis.sock?name=job",
            "redisish/file",
        ];
        for lock in locks {
            for verb in [Verb::Exec, Verb::Try, Verb::Read, Verb::Write] {
                for soft in [false, true] {
                    let mut request = Request::new(verb, lock);
                    request.soft = soft;
                    let asked = KINDS
                        .iter()
                        .filter_map(|k| k.claims(&request).map(|c| (c, k.name())))
                        .max_by_key(|(c, _)| *c)
                        .map(|(_, name)| name);
                    let chosen = for_request(&request).ok().map(Kind::name);
                    assert_eq!(chosen, asked, "{lock} {verb:?} soft={soft}");
                }
            }
        }
        for (scheme, kind) in NAMED {
            let request = Request::new(Verb::Exec, format!("{scheme}h/x"));
            assert_eq!(kind.claims(&request), Some(Claim::ByName), "{scheme}");
        }
    }
}
