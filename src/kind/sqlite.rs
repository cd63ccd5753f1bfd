//! The sqlite kind: py-filelock's `ReadWriteLock` protocol. LOCK is an SQLite database in
//! rollback-journal mode that nobody ever writes to; the lock is SQLite's own file locking.
//! A reader runs `BEGIN` and one `SELECT` (SHARED lock); a writer runs `BEGIN EXCLUSIVE`
//! (EXCLUSIVE lock); holding is keeping the transaction open; releasing is `ROLLBACK`.
//!
//! Why not WAL: in WAL mode readers never wait for a writer, so an exclusive transaction
//! would not keep readers out. `journal_mode=MEMORY` keeps the classic SHARED / RESERVED /
//! PENDING / EXCLUSIVE ladder without a journal file on disk (nothing is written anyway).
//! Writer preference comes from the ladder: a writer waiting for readers to leave holds the
//! PENDING byte, which turns new readers away, and it keeps holding it while SQLite's busy
//! handler (ours, below) sleeps between attempts.
//!
//! SQLite's locks are classic POSIX byte-range locks, owned by the process: closing *any*
//! descriptor of the database file in this process drops them all. So the descriptor used
//! to create and check the file stays open until the connection has closed, nothing else
//! opens the file while it is held, and a child cannot inherit the lock.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, ffi};

use crate::error::Error;
use crate::inspect::proc_locks::KernelLocks;
use crate::inspect::sighting::FileId;
use crate::inspect::sqlite_roles;
use crate::lock::{self, Claim, Hold, Kind, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::open::{self, Access, Shape};
use crate::status::{self, LockStatus};
use crate::wait::{self, Deadline, Polling, WaitObserver};

pub struct Sqlite;

impl Kind for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        request.verb.is_read_write().then_some(Claim::ByDefault)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_descriptor_options("read/write")?;
        if request.ttl.is_some() {
            return Err(Error::Usage {
                message: format!(
                    "--ttl applies to read and write with --soft, or with a postgresql:// \
                     LOCK; {} is a SQLite lock file, held until flockrun lets go",
                    request.lock.display()
                ),
            });
        }
        let path = request.lock_file()?;
        Ok(Target {
            kind: self.name(),
            mode: request.mode,
            mode_names: LockMode::read_write_name,
            lock: path.clone().into_os_string(),
            shown: request.lock.display().to_string(),
            deadline: request.deadline,
            close: false,
            no_fork: false,
            lockable: Box::new(SqliteTarget {
                path,
                given: request.lock.clone(),
                mode: request.mode,
                create_mode: request.create_mode,
            }),
        })
    }

    fn proc_class(&self) -> Option<&'static str> {
        Some("POSIX")
    }

    fn recognises(&self, file: &LockFile<'_>) -> bool {
        let mut header = [0u8; 16];
        File::open(file.path)
            .and_then(|f| f.read_exact_at(&mut header, 0))
            .is_ok()
            && &header == b"SQLite format 3\0"
    }

    fn inspect_file(&self, status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        let sighting = sqlite_roles::sight(file.locks, file.id);
        status::fill_from_sighting(status, &sighting, LockMode::read_write_name);
        Ok(())
    }
}

struct SqliteTarget {
    /// Absolute.
    path: std::path::PathBuf,
    /// As given, for the nesting check.
    given: std::path::PathBuf,
    mode: LockMode,
    create_mode: Option<u32>,
}

impl Lockable for SqliteTarget {
    fn held_key(&self) -> Option<HeldKey> {
        HeldKey::of_path(Sqlite.name(), &self.given)
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let (transaction, id) = lock::retry_while_replaced(&self.path, || {
            acquire(&self.path, self.mode, deadline, self.create_mode, observer)
        })?;
        Ok(Box::new(HeldTransaction {
            transaction,
            path: self.path.clone(),
            key: HeldKey {
                kind: Sqlite.name(),
                id,
            },
            waited: deadline.elapsed(),
        }))
    }
}

/// A held reader or writer lock: the open transaction.
struct HeldTransaction {
    transaction: Transaction,
    path: std::path::PathBuf,
    key: HeldKey,
    waited: Duration,
}

impl Hold for HeldTransaction {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.waited
    }

    fn still_named(&self) -> bool {
        open::still_named_by(&self.transaction.file, &self.path)
    }
}

/// An open transaction that holds the lock; dropping it releases the lock.
#[derive(Debug)]
struct Transaction {
    connection: Option<Connection>,
    /// Kept open until the connection is closed (see the module comment).
    file: File,
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = connection.execute_batch("ROLLBACK");
            let _ = connection.close();
        }
    }
}

/// First busy-handler sleep and its cap: a handoff costs about a millisecond, where SQLite's
/// default ladder sleeps up to 100 ms between attempts.
const FIRST_SLEEP: Duration = Duration::from_micros(50);
const MAX_SLEEP: Duration = Duration::from_millis(2);

/// One round: takes a reader (`Shared`) or writer (`Exclusive`) lock on the database at
/// `path`; `None` when the path turned out to name another file.
fn acquire(
    path: &Path,
    mode: LockMode,
    deadline: &Deadline,
    create_mode: Option<u32>,
    observer: &mut dyn WaitObserver,
) -> Result<Option<(Transaction, FileId)>, Error> {
    let (file, _) = open::open_lock_file(path, Access::ReadWrite, create_mode, Shape::Regular)?;
    let meta = file
        .metadata()
        .map_err(|e| Error::system("fstat on the lock file", e))?;
    let id = FileId::of(&meta);
    refuse_content(&file, meta.len(), path)?;

    // SQLite opens the file again by its path. If the path was deleted or replaced since
    // our own open, that fails or reaches another inode: start over, as after a lost inode.
    let connection = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(connection) => connection,
        Err(_) if !open::still_named_by(&file, path) => return Ok(None),
        Err(e) => return Err(sqlite_error(path, &e)),
    };
    let mut busy = BusyWait {
        deadline,
        observer,
        id,
        polling: Polling::new(FIRST_SLEEP, MAX_SLEEP),
    };
    let outcome = {
        let _handler = BusyHandler::install(&connection, &mut busy);
        begin(&connection, mode)
    };
    if busy.polling.blocked() {
        busy.observer.finished();
    }
    let transaction = Transaction {
        connection: Some(connection),
        file,
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            drop(transaction);
            return Err(Error::NotALock {
                path: path.to_owned(),
                reason: "is an SQLite database with tables, not an empty lock database; \
                         flockrun leaves it untouched: use a separate, empty lock file"
                    .to_owned(),
            });
        }
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
            drop(transaction);
            let sighting = sqlite_roles::sight(&KernelLocks::read(), id);
            return Err(wait::not_acquired(path, deadline, sighting));
        }
        Err(e) => return Err(sqlite_error(path, &e)),
    }
    // Deleted or replaced while we waited: this lock guards nothing any more.
    if !open::still_named_by(&transaction.file, path) {
        return Ok(None);
    }
    Ok(Some((transaction, id)))
}

/// The checks `acquire` makes of a file's content and the protocol's statements in a read
/// transaction, without waiting: `Ok(true)` for an empty lock database. SQLite rolls the
/// transaction back when the connection closes. What the fuzz target for foreign lock files
/// drives (see `crate::fuzz`).
pub(super) fn examine(path: &Path) -> Result<bool, Error> {
    let (file, _) = open::open_lock_file(path, Access::ReadWrite, None, Shape::Regular)?;
    let size = file
        .metadata()
        .map_err(|e| Error::system("fstat on the lock file", e))?
        .len();
    refuse_content(&file, size, path)?;
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(path, &e))?;
    begin(&connection, LockMode::Shared).map_err(|e| sqlite_error(path, &e))
}

/// Runs the protocol's statements; `Ok(false)` when the database turns out to have tables.
fn begin(connection: &Connection, mode: LockMode) -> rusqlite::Result<bool> {
    // After the busy handler: switching the journal mode can itself wait for a lock.
    let _: String = connection.query_row("PRAGMA journal_mode=MEMORY", [], |row| row.get(0))?;
    connection.execute_batch(match mode {
        LockMode::Exclusive => "BEGIN EXCLUSIVE TRANSACTION",
        LockMode::Shared => "BEGIN TRANSACTION",
    })?;
    // For a reader this SELECT is what takes the SHARED lock (a deferred BEGIN takes none);
    // for both it tells an empty lock database from someone's data.
    let mut statement = connection.prepare("SELECT name FROM sqlite_master LIMIT 1")?;
    let empty = statement.query([])?.next()?.is_none();
    Ok(empty)
}

/// Refuses a non-empty file that is not an SQLite database, and a WAL database (switching
/// it back would write to it, and in WAL mode a writer would not exclude readers).
fn refuse_content(file: &File, size: u64, path: &Path) -> Result<(), Error> {
    if size == 0 {
        return Ok(());
    }
    let mut header = [0u8; 100];
    let complete = file.read_exact_at(&mut header, 0).is_ok();
    let refuse = |reason: &str| {
        Err(Error::NotALock {
            path: path.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if !complete || &header[..16] != b"SQLite format 3\0" {
        return refuse(
            "is not empty and not an SQLite database; a read/write lock needs an empty file or \
             an empty SQLite database: choose another path (flockrun left this one untouched)",
        );
    }
    if header[18] == 2 || header[19] == 2 {
        return refuse(
            "is an SQLite database in WAL mode, where a writer cannot keep readers out; use a \
             separate, empty lock file (flockrun left this one untouched)",
        );
    }
    Ok(())
}

fn sqlite_error(path: &Path, e: &rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotALock {
            path: path.to_owned(),
            reason: "is not an SQLite database (flockrun left it untouched)".to_owned(),
        },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            // SQLite does not say why it could not open the file; opening it the way SQLite
            // does tells (out of descriptors, permission, ...).
            let probe = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path);
            match probe {
                Err(cause) => open::classify_open_error(path, Access::ReadWrite, cause),
                Ok(_) => Error::LockFailed {
                    path: path.to_owned(),
                    source: std::io::Error::other(format!("SQLite: {e}")),
                },
            }
        }
        _ => Error::LockFailed {
            path: path.to_owned(),
            source: std::io::Error::other(format!("SQLite: {e}")),
        },
    }
}

/// The state SQLite's busy handler works with while one `BEGIN` waits.
struct BusyWait<'a> {
    deadline: &'a Deadline,
    observer: &'a mut dyn WaitObserver,
    id: FileId,
    polling: Polling,
}

impl BusyWait<'_> {
    /// Whether SQLite should try again: naps a little first. Short, growing naps keep a
    /// handoff to about a millisecond without spinning.
    fn keep_waiting(&mut self) -> bool {
        let id = self.id;
        let sighting = move || sqlite_roles::sight(&KernelLocks::read(), id);
        match self
            .polling
            .next_nap(self.deadline, self.observer, &sighting)
        {
            Some(nap) => {
                wait::nap(nap);
                true
            }
            None => false,
        }
    }
}

extern "C" fn on_busy(context: *mut c_void, _attempts: c_int) -> c_int {
    // SAFETY: `context` is the BusyWait that BusyHandler::install registered; it outlives
    // the registration, which is removed before the BusyWait goes out of scope, and SQLite
    // calls the handler only from inside the statement this thread is running.
    let wait = unsafe { &mut *context.cast::<BusyWait<'_>>() };
    c_int::from(wait.keep_waiting())
}

/// Registers `on_busy` with a pointer to a `BusyWait` for as long as it lives. The raw C
/// interface is used because rusqlite's handler must be `'static`, and this one needs the
/// observer borrowed for the wait.
struct BusyHandler<'c> {
    connection: &'c Connection,
}

impl<'c> BusyHandler<'c> {
    fn install(connection: &'c Connection, wait: &mut BusyWait<'_>) -> Self {
        let context: *mut BusyWait<'_> = wait;
        // SAFETY: the handle is valid while `connection` lives; the context pointer stays
        // valid until Drop unregisters it (the caller keeps `wait` borrowed meanwhile).
        unsafe {
            ffi::sqlite3_busy_handler(connection.handle(), Some(on_busy), context.cast());
        }
        BusyHandler { connection }
    }
}

impl Drop for BusyHandler<'_> {
    fn drop(&mut self) {
        // SAFETY: as in install; afterwards SQLite holds no pointer to the BusyWait.
        unsafe {
            ffi::sqlite3_busy_handler(self.connection.handle(), None, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_sqlite_and_wal_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"hello").unwrap();
        let file = File::open(&path).unwrap();
        assert!(refuse_content(&file, 5, &path).is_err());
        let mut header = b"SQLite format 3\0".to_vec();
        header.resize(100, 0);
        header[18] = 1;
        header[19] = 1;
        std::fs::write(&path, &header).unwrap();
        let file = File::open(&path).unwrap();
        assert!(refuse_content(&file, 100, &path).is_ok());
        header[18] = 2;
        header[19] = 2;
        std::fs::write(&path, &header).unwrap();
        let file = File::open(&path).unwrap();
        let err = refuse_content(&file, 100, &path).unwrap_err().to_string();
        assert!(err.contains("WAL"), "{err}");
        assert!(refuse_content(&file, 0, &path).is_ok());
    }
}
