//! The soft kind: py-filelock's `SoftFileLock`, for filesystems whose kernel locks do not
//! work. The lock is a marker file at LOCK, created with `O_CREAT|O_EXCL` and holding
//! `pid\nhost\nstart_token\n` (flockrun's own pid: flockrun outlives the hold, and COMMAND
//! dies with it). Release unlinks the marker only if the path still names our inode.
//!
//! A marker is reclaimed only on proof that its owner is gone (same host and the pid dead or
//! reused), or after it has stayed malformed and unchanged for 2 s. Reclaiming swaps our
//! own marker in with `renameat2(RENAME_EXCHANGE)`, so the path never stands empty for a
//! third process to grab; where the filesystem refuses the exchange, nothing is broken and
//! the wait goes on. Waiting polls with backoff and, on local filesystems, wakes at once on
//! an inotify event in the lock's directory.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::identity::{self, StartToken};
use crate::inspect::marker::{self, Content, Verdict};
use crate::inspect::process::ProcessInfo;
use crate::inspect::sighting::{FileId, Holder, Sighting, collapse_trees};
use crate::lock::{Claim, Hold, Kind, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::open::{self, Shape};
use crate::status::{LockStatus, MarkerReport, State, holder_report};
use crate::wait::{self, Deadline, Polling, WaitObserver};

pub struct Soft;

impl Kind for Soft {
    fn name(&self) -> &'static str {
        "soft"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        (request.soft && !request.verb.is_read_write()).then_some(Claim::ByOption)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_ttl()?;
        let path = request.lock_file()?;
        Ok(Target {
            kind: self.name(),
            mode: LockMode::Exclusive,
            mode_names: LockMode::name,
            lock: path.clone().into_os_string(),
            shown: request.lock.display().to_string(),
            deadline: request.deadline,
            close: request.close,
            no_fork: false,
            lockable: Box::new(SoftTarget {
                path,
                given: request.lock.clone(),
                create_mode: request.create_mode,
            }),
        })
    }

    fn recognises(&self, file: &LockFile<'_>) -> bool {
        matches!(
            marker::read(file.path),
            Ok(Some(
                Content::Owner { .. } | Content::Strict | Content::Protocol2
            ))
        )
    }

    fn inspect_file(&self, status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        fill_from_marker(status, file.path)
    }

    fn inspect_missing(&self, status: &mut LockStatus) {
        status.warnings.extend(stranded_warnings(&status.path));
        if !status.warnings.is_empty() {
            status.state = State::Held;
        }
    }
}

struct SoftTarget {
    /// Absolute.
    path: PathBuf,
    /// As given, for the nesting check.
    given: PathBuf,
    create_mode: Option<u32>,
}

impl Lockable for SoftTarget {
    fn held_key(&self) -> Option<HeldKey> {
        let meta = fs::symlink_metadata(&self.given).ok()?;
        Some(HeldKey {
            kind: Soft.name(),
            id: FileId::of(&meta),
        })
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let (marker, id) = crate::lock::retry_while_replaced(&self.path, || {
            let marker = acquire(&self.path, deadline, self.create_mode, observer)?;
            // A marker whose inode cannot be read is dropped (and removed) and taken again.
            Ok(marker.id().map(|id| (marker, id)))
        })?;
        Ok(Box::new(HeldSoft {
            marker,
            key: HeldKey {
                kind: Soft.name(),
                id,
            },
            waited: deadline.elapsed(),
        }))
    }
}

/// A held soft lock: our marker, removed when this is dropped.
struct HeldSoft {
    marker: HeldMarker,
    key: HeldKey,
    waited: Duration,
}

impl Hold for HeldSoft {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.waited
    }

    fn still_named(&self) -> bool {
        open::still_named_by(&self.marker.file, &self.marker.path)
    }
}

/// A malformed marker is evicted once it has stayed unchanged this long (py-filelock 4.x).
const MALFORMED_GRACE: Duration = Duration::from_secs(2);
/// First nap between attempts and its cap; inotify usually ends a nap early.
const FIRST_NAP: Duration = Duration::from_millis(1);
const MAX_NAP: Duration = Duration::from_millis(50);

/// Our marker at the lock path; dropping it releases the lock.
#[derive(Debug)]
struct HeldMarker {
    file: File,
    path: PathBuf,
    /// The inotify watch the wait used, if it waited. Closing an inotify descriptor waits
    /// for the kernel to reap its marks (several milliseconds), so it is closed only after
    /// the marker is gone: after the handoff, not inside it.
    #[allow(dead_code)] // held for its Drop, which runs after HeldMarker's own
    watch: Option<DirectoryWatch>,
}

impl Drop for HeldMarker {
    fn drop(&mut self) {
        // Unlink only our own inode, and before closing it, so the inode number cannot be
        // reused by a successor's marker in between.
        if open::still_named_by(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl HeldMarker {
    fn id(&self) -> Option<FileId> {
        self.file.metadata().ok().map(|m| FileId::of(&m))
    }
}

/// The record this process writes: `pid\nhost\n[token\n]`.
fn own_record() -> String {
    let pid = nix::unistd::getpid().as_raw();
    let mut record = format!("{pid}\n{}\n", identity::host_name());
    if let Some(token) = StartToken::of(pid) {
        let _ = writeln!(record, "{token}");
    }
    record
}

/// Takes the soft lock at `path`.
fn acquire(
    path: &Path,
    deadline: &Deadline,
    create_mode: Option<u32>,
    observer: &mut dyn WaitObserver,
) -> Result<HeldMarker, Error> {
    open::refuse_unlockable(
        path,
        fs::symlink_metadata(path).ok().as_ref(),
        Shape::Regular,
    )?;
    let record = own_record();
    let mut polling = Polling::new(FIRST_NAP, MAX_NAP);
    // Created at the first contention only: an uncontended lock never pays for its teardown.
    let mut watch: Option<DirectoryWatch> = None;
    // The malformed marker being timed: (inode, mtime, ctime) and when it was first seen so.
    let mut malformed: Option<((u64, i64, i64), Instant)> = None;
    let result = loop {
        if let Some(signal) = wait::stop_signal() {
            break Err(Error::Interrupted { signal });
        }
        match attempt(path, &record, create_mode, &mut malformed) {
            Ok(Some(mut held)) => {
                held.watch = watch.take();
                break Ok(held);
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let sighting = || sight(path);
        if let Some(nap) = polling.next_nap(deadline, observer, &sighting) {
            watch
                .get_or_insert_with(|| DirectoryWatch::new(path))
                .wait(nap);
            continue;
        }
        break Err(wait::not_acquired(path, deadline, sight(path)));
    };
    if polling.blocked() {
        observer.finished();
    }
    result
}

/// One attempt: create the marker, or judge the one that is there and take it over if its
/// owner is provably gone. `Ok(None)` means contention.
fn attempt(
    path: &Path,
    record: &str,
    create_mode: Option<u32>,
    malformed: &mut Option<((u64, i64, i64), Instant)>,
) -> Result<Option<HeldMarker>, Error> {
    // Leftovers of an interrupted takeover may hold a live owner's marker: fail closed,
    // unless they can be proved garbage.
    if leftovers_remain(path) {
        return Ok(None);
    }
    match create_marker(path, record, create_mode) {
        Ok(file) => {
            return Ok(Some(HeldMarker {
                file,
                path: path.to_owned(),
                watch: None,
            }));
        }
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(open::classify_create_error(path, e)),
    }
    // Pin the marker's inode with an O_PATH descriptor before judging it: while pinned, its
    // inode number cannot be reused, so "the path still names the judged marker" cannot be
    // fooled by a holder that releases and a newcomer whose new marker gets the same number.
    let Some(pin) = pin_inode(path) else {
        return Ok(None); // gone meanwhile: the next attempt creates it
    };
    let judged = pin
        .metadata()
        .map_err(|e| Error::system("fstat on the pinned marker", e))?;
    let content = marker::read(path).map_err(|e| Error::Open {
        path: path.to_owned(),
        hint: "cannot read the existing marker; ask its owner for read access".to_owned(),
        source: e,
    })?;
    // The content must be the pinned marker's.
    let (Some(content), true) = (content, same_file(path, &judged)) else {
        return Ok(None);
    };
    let reclaim = match marker::judge(&content) {
        Verdict::Stale => true,
        Verdict::Malformed => {
            let key = (
                judged.ino(),
                judged.mtime() * 1_000_000_000 + judged.mtime_nsec(),
                judged.ctime() * 1_000_000_000 + judged.ctime_nsec(),
            );
            match malformed {
                Some((seen, since)) if *seen == key => since.elapsed() >= MALFORMED_GRACE,
                _ => {
                    *malformed = Some((key, Instant::now()));
                    false
                }
            }
        }
        Verdict::Held | Verdict::ForeignHost => false,
    };
    if !reclaim {
        return Ok(None);
    }
    let taken = take_over(path, &judged, record, create_mode);
    drop(pin); // only now may the judged inode's number be reused
    taken
}

/// An `O_PATH` descriptor on the marker (not following a symlink), or `None` if it is gone.
fn pin_inode(path: &Path) -> Option<File> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    // SAFETY: fd is fresh and owned by nobody else. fstat works on an O_PATH descriptor.
    (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) })
}

/// Whether `path` names the file `judged` describes, unchanged: same device, inode, size
/// and modification time to the nanosecond.
fn same_file(path: &Path, judged: &fs::Metadata) -> bool {
    fs::symlink_metadata(path).is_ok_and(|now| {
        now.dev() == judged.dev()
            && now.ino() == judged.ino()
            && now.len() == judged.len()
            && now.mtime() == judged.mtime()
            && now.mtime_nsec() == judged.mtime_nsec()
    })
}

/// Removes the leftovers of interrupted takeovers beside `path` that nobody can act on any
/// more, and says whether any remain. A leftover is garbage when the process named in its
/// file name (the breaker) is gone and the marker inside is provably dead or malformed: a
/// live holder's marker that a dying breaker left aside stays, and keeps the lock held.
fn leftovers_remain(path: &Path) -> bool {
    let mut remain = false;
    for file in marker::stranded(path) {
        let breaker_alive = marker::stranded_breaker(&file).is_none_or(marker::pid_exists);
        let Some(pin) = pin_inode(&file) else {
            continue; // gone meanwhile
        };
        let garbage = !breaker_alive
            && pin.metadata().is_ok_and(|judged| {
                matches!(marker::read(&file), Ok(Some(content))
                    if matches!(marker::judge(&content), Verdict::Stale | Verdict::Malformed))
                    && same_file(&file, &judged)
            });
        if !(garbage && fs::remove_file(&file).is_ok()) {
            remain = true;
        }
    }
    remain
}

/// Creates `path` exclusively with our record. The record is written to an unnamed file
/// first and linked in complete (`O_TMPFILE` + `linkat`), so a flockrun killed halfway leaves
/// no marker at all rather than an empty one, which every contender would take for a
/// lock held forever. Where the filesystem has no `O_TMPFILE`, the marker is created with
/// `O_EXCL` and then written. Group and other never get write access: a record others could
/// rewrite is a record contenders would act on.
fn create_marker(path: &Path, record: &str, create_mode: Option<u32>) -> io::Result<File> {
    // Under contention the marker is nearly always there: say so without making (and
    // throwing away) an unnamed file, whose close also wakes every inotify waiter.
    // linkat below remains the real, atomic test.
    if fs::symlink_metadata(path).is_ok() {
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    match publish_complete(path, record, create_mode) {
        Ok(file) => return Ok(file),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Err(e),
        // No O_TMPFILE or no /proc here; the plain way below reports real errors properly.
        Err(_) => {}
    }
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path; the descriptor is owned by the File below.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags, 0o644 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let written = (|| {
        if let Some(mode) = create_mode {
            file.set_permissions(fs::Permissions::from_mode(mode & !0o022))?;
        }
        // write_all loops until the whole record is written.
        file.write_all(record.as_bytes())
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

/// The `O_TMPFILE` way of `create_marker`.
fn publish_complete(path: &Path, record: &str, create_mode: Option<u32>) -> io::Result<File> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c_dir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated path; the descriptor is owned by the File below.
    let fd = unsafe {
        libc::open(
            c_dir.as_ptr(),
            libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    if let Some(mode) = create_mode {
        file.set_permissions(fs::Permissions::from_mode(mode & !0o022))?;
    }
    file.write_all(record.as_bytes())?;
    let by_fd = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number");
    // SAFETY: both paths are NUL-terminated. linkat fails with EEXIST if LOCK exists, which
    // is the O_EXCL test; an unlinked O_TMPFILE file simply vanishes when closed.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            by_fd.as_ptr(),
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Swaps our marker in for the judged one (pinned by the caller), which must still be
/// there unchanged. Returns
/// `Ok(None)` when something changed meanwhile or the filesystem refuses the exchange (then
/// nothing is broken: we keep waiting).
fn take_over(
    path: &Path,
    judged: &fs::Metadata,
    record: &str,
    create_mode: Option<u32>,
) -> Result<Option<HeldMarker>, Error> {
    let unchanged = |p: &Path| same_file(p, judged);
    if !unchanged(path) {
        return Ok(None);
    }
    let aside = aside_path(path);
    let ours = match create_marker(&aside, record, create_mode) {
        Ok(file) => file,
        Err(e) => return Err(open::classify_create_error(&aside, e)),
    };
    let remove_ours = |at: &Path| {
        if open::still_named_by(&ours, at) {
            let _ = fs::remove_file(at);
        }
    };
    if !unchanged(path) {
        remove_ours(&aside);
        return Ok(None);
    }
    if let Err(e) = exchange(&aside, path) {
        remove_ours(&aside);
        return match e.raw_os_error() {
            // No atomic exchange here (NFS, SMB, overlayfs…): never break, just wait.
            Some(libc::EINVAL | libc::ENOSYS | libc::EXDEV | libc::EOPNOTSUPP) => Ok(None),
            _ => Err(Error::system("exchanging the stale marker", e)),
        };
    }
    // Our marker is at the path now. What went aside must be the one we judged; if a
    // newcomer slipped in between, swap back and leave it its lock.
    if unchanged(&aside) {
        let _ = fs::remove_file(&aside);
        return Ok(Some(HeldMarker {
            file: ours,
            path: path.to_owned(),
            watch: None,
        }));
    }
    if exchange(&aside, path).is_ok() {
        remove_ours(&aside);
    }
    Ok(None)
}

/// `<name>.break.<pid>.<32 hex>` beside the lock, py-filelock's name for a takeover in
/// progress (its own recovery looks for exactly this shape).
fn aside_path(path: &Path) -> PathBuf {
    let mut random = [0u8; 16];
    // SAFETY: the buffer is valid for its length; a short read leaves zeros, still unique
    // enough with the pid in the name.
    unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    let mut hex = String::with_capacity(32);
    for b in random {
        let _ = write!(hex, "{b:02x}");
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{name}.break.{}.{hex}", std::process::id()))
}

fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let a = CString::new(a.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let b = CString::new(b.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: both paths are NUL-terminated; renameat2 only reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Who holds a soft lock, from its marker, for busy messages.
#[must_use]
fn sight(path: &Path) -> Sighting {
    let mut sighting = Sighting::default();
    match marker::read(path) {
        Ok(Some(content)) => {
            let verdict = marker::judge(&content);
            match &content {
                Content::Owner { pid, host, .. } if verdict == Verdict::ForeignHost => {
                    sighting.described = Some(format!("held by pid {pid} on host {host}"));
                }
                Content::Owner { pid, .. } => {
                    if let Ok(process) = ProcessInfo::read(*pid) {
                        sighting.holders = collapse_trees(vec![Holder {
                            process,
                            mode: LockMode::Exclusive,
                            child: None,
                        }]);
                    }
                    sighting.recorded_pids.push(*pid);
                }
                Content::Malformed(why) => {
                    sighting.described = Some(format!(
                        "held by a malformed marker ({why}), removed once unchanged for 2 s"
                    ));
                }
                Content::Empty => {
                    sighting.described = Some("held by a marker with no pid in it".to_owned());
                }
                Content::Strict | Content::Protocol2 => {
                    sighting.described =
                        Some("held by another kind of py-filelock marker on this path".to_owned());
                }
            }
        }
        Ok(None) => {}
        Err(e) => sighting
            .warnings
            .push(format!("cannot read the marker: {e}")),
    }
    if sighting.described.is_none() && !marker::stranded(path).is_empty() {
        sighting.described =
            Some("held: files of an interrupted takeover are beside it".to_owned());
    }
    sighting
}

/// `status` for a marker at `path`.
fn fill_from_marker(status: &mut LockStatus, path: &Path) -> Result<(), Error> {
    let content = marker::read(path).map_err(|e| Error::Open {
        path: path.to_owned(),
        hint: "cannot read the marker; ask its owner for read access".to_owned(),
        source: e,
    })?;
    let Some(content) = content else {
        return Ok(()); // removed meanwhile: free
    };
    let verdict = marker::judge(&content);
    let mut report = MarkerReport {
        pid: None,
        host: None,
        start_token: None,
        verdict,
        note: None,
    };
    match &content {
        Content::Owner { pid, host, token } => {
            report.pid = Some(*pid);
            report.host = Some(host.clone());
            report.start_token = token.map(|t| t.to_string());
            if verdict == Verdict::Held
                && let Ok(process) = ProcessInfo::read(*pid)
            {
                let holders = collapse_trees(vec![Holder {
                    process,
                    mode: LockMode::Exclusive,
                    child: None,
                }]);
                status.holders = holders.iter().map(holder_report).collect();
            }
        }
        Content::Empty => report.note = Some("empty: the owner recorded no pid".into()),
        Content::Strict => report.note = Some("a StrictSoftFileLock sentinel".into()),
        Content::Protocol2 => {
            report.note = Some("a filelock/2 record (lease or marker lock)".into());
        }
        Content::Malformed(why) => report.note = Some(why.clone()),
    }
    status.state = match verdict {
        Verdict::Stale => State::Stale,
        Verdict::Held | Verdict::ForeignHost | Verdict::Malformed => State::Held,
    };
    if verdict == Verdict::Malformed {
        status.warnings.push(
            "the marker is malformed: py-filelock 4.x removes it once it has stayed unchanged \
             for 2 s"
                .into(),
        );
    }
    let stranded = stranded_warnings(path);
    if !stranded.is_empty() && status.state == State::Stale {
        status.state = State::Held;
    }
    status.warnings.extend(stranded);
    status.mode = (status.state == State::Held).then_some("exclusive");
    status.marker = Some(report);
    Ok(())
}

fn stranded_warnings(path: &Path) -> Vec<String> {
    marker::stranded(path)
        .into_iter()
        .map(|p| {
            format!(
                "{} is left from an interrupted takeover and may hold a live owner's marker: \
                 the lock counts as held",
                p.display()
            )
        })
        .collect()
}

/// An inotify watch on the lock's directory, so a waiter wakes when the marker goes away.
/// Absent where inotify does not work; the naps alone then pace the retries.
#[derive(Debug)]
struct DirectoryWatch {
    fd: Option<OwnedFd>,
}

impl DirectoryWatch {
    fn new(path: &Path) -> Self {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // SAFETY: plain system calls; the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return DirectoryWatch { fd: None };
        }
        // SAFETY: fd is fresh.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let Ok(c_dir) = CString::new(dir.as_os_str().as_bytes()) else {
            return DirectoryWatch { fd: None };
        };
        let events =
            libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
        // SAFETY: valid descriptor and path.
        let watch = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_dir.as_ptr(), events) };
        DirectoryWatch {
            fd: (watch >= 0).then_some(fd),
        }
    }

    /// Sleeps up to `nap`, less if the directory changes or a signal arrives.
    fn wait(&self, nap: Duration) {
        let Some(fd) = &self.fd else {
            wait::nap(nap);
            return;
        };
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(nap.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd; EINTR (a stop signal) simply ends the nap.
        let ready = unsafe { libc::poll(&raw mut poll, 1, ms) };
        if ready > 0 {
            // Drain the events; their content does not matter, only that something changed.
            let mut buf = [0u8; 4096];
            // SAFETY: reading into a buffer of the given length from a non-blocking fd.
            while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        }
    }
}
