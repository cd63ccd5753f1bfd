//! The soft reader/writer kind: `read --soft` and `write --soft`, py-filelock's
//! `SoftReadWriteLock`, for filesystems where neither kernel locks nor SQLite's locking reach
//! every host (NFS, SMB, FUSE). It has two on-disk layouts that do not see each other: v1
//! (`LOCK.state`, `LOCK.write`, `LOCK.readers/`; py-filelock 3.27–3.32) in `v1`, and v2
//! (the generation log `LOCK.rw/`; 4.0 and later) in `v2`. A Python peer of either age
//! may share the path, and a lock that silently fails to exclude is the worst outcome, so by
//! default a hold takes both, always v1 first; `--layout` narrows it to one.
//!
//! Why taking both cannot deadlock: every flockrun that takes both takes v1 before it asks
//! for anything in v2, and holds nothing in v2 while it waits in v1 (it only watches v2's
//! records age, which blocks no one); py-filelock peers take one layout only. A cycle of
//! waits would need someone holding something in v2 while waiting in v1, and nobody does.
//!
//! flockrun holds the lock itself, so COMMAND inherits nothing and dies with flockrun. A
//! thread renews the records every TTL/3; when they are evicted, replaced, or cannot be
//! renewed in time, COMMAND is stopped and flockrun exits 79.

mod files;
pub(super) mod v1;
pub(super) mod v2;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::marker::heartbeat::{Beat, Renew, Renewal};
use super::marker::file::{self as marker_file, DirectoryWatch};
use v1::MarkerView;
use v2::{Participant, Pulse, Trouble};
use crate::duration::Ttl;
use crate::error::Error;
use crate::inspect::sighting::{FileId, Sighting};
use crate::lock::{Claim, Hold, Kind, LockFile, Lockable, Request, SoftLayout, Target};
use crate::mode::LockMode;
use crate::nested::{self, HeldKey};
use crate::open;
use crate::status::{LockStatus, RwMemberReport, RwReport, State, describe_rw_member};
use crate::supervise::LostWatch;
use crate::wait::{self, Deadline, Polling, WaitObserver};
use nix::fcntl::{FcntlArg, fcntl};

pub struct SoftRw;

/// py-filelock's default stale threshold (3 × its 30 s heartbeat), so that mixed fleets
/// agree without anyone giving `--ttl`.
const DEFAULT_TTL: u32 = 90;
/// First nap between attempts and its cap, well under py-filelock's 0.25 s poll.
const FIRST_NAP: Duration = Duration::from_millis(1);
const MAX_NAP: Duration = Duration::from_millis(50);
/// The nap after finding `LOCK.state` taken: a transition takes moments.
const STATE_BUSY_NAP: Duration = Duration::from_millis(2);
/// How long release may wait for the filesystem before leaving the records to age out.
const RELEASE_BUDGET: Duration = Duration::from_secs(2);
/// On NFS, the longest sleep on the holders' release signals before the next attempt (which
/// also keeps a waiting writer's claims fresh and sees crashed holders age), or a sixth of
/// the threshold if that is shorter. An attempt over both layouts costs the server some 45
/// requests, so this keeps a waiter at about a fifth of what py-filelock's polling costs.
const SIGNALLED_WAIT: Duration = Duration::from_secs(6);

impl Kind for SoftRw {
    fn name(&self) -> &'static str {
        "soft-rw"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        (request.verb.is_read_write() && request.soft).then_some(Claim::ByOption)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_descriptor_options("soft read/write")?;
        if request.create_mode.is_some() {
            return Err(Error::Usage {
                message: "--mode does not apply to a soft read/write lock: its records are \
                          private to their owner (0600, directories 0700), as py-filelock \
                          makes them"
                    .to_owned(),
            });
        }
        let path = request.lock_file()?;
        let lock = canonical(&path)?;
        Ok(Target {
            kind: self.name(),
            mode: request.mode,
            mode_names: LockMode::read_write_name,
            lock: path.into_os_string(),
            shown: request.lock.display().to_string(),
            deadline: request.deadline,
            close: false,
            no_fork: false,
            lockable: Box::new(RwTarget {
                lock,
                mode: request.mode,
                ttl: request.ttl.unwrap_or(Ttl::from_secs(DEFAULT_TTL)),
                layout: request.layout,
            }),
        })
    }

    fn recognises_beside(&self, lock: &Path) -> bool {
        [".rw", ".state", ".write", ".readers"].iter().any(|suffix| {
            let mut name = lock.as_os_str().to_os_string();
            name.push(suffix);
            fs::symlink_metadata(name).is_ok()
        })
    }

    fn inspect_file(&self, status: &mut LockStatus, _file: &LockFile<'_>) -> Result<(), Error> {
        fill(status)
    }

    fn inspect_missing(&self, status: &mut LockStatus) -> Result<(), Error> {
        fill(status)
    }
}

/// LOCK with its directory resolved (the final component as given), as py-filelock names
/// the log: so `./a/../x.lock` and `/abs/x.lock` are one lock. The directory must exist.
fn canonical(path: &Path) -> Result<PathBuf, Error> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Open {
            path: path.to_owned(),
            hint: "LOCK must name a file in a directory".to_owned(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        });
    };
    match fs::canonicalize(parent) {
        Ok(parent) if parent.is_dir() => Ok(parent.join(name)),
        Ok(_) => Err(open::classify_open_error(
            path,
            open::Access::Read,
            io::Error::from_raw_os_error(libc::ENOTDIR),
        )),
        Err(e) => Err(open::classify_open_error(path, open::Access::Read, e)),
    }
}

fn v1_mode(mode: LockMode) -> v1::Mode {
    match mode {
        LockMode::Shared => v1::Mode::Read,
        LockMode::Exclusive => v1::Mode::Write,
    }
}

fn v2_mode(mode: LockMode) -> v2::Mode {
    match mode {
        LockMode::Shared => v2::Mode::Read,
        LockMode::Exclusive => v2::Mode::Write,
    }
}

/// A v2 trouble as flockrun's error about the log at `root`.
fn trouble(root: &Path, t: Trouble) -> Error {
    match t {
        Trouble::Malformed(why) => Error::NotALock {
            path: root.to_owned(),
            reason: format!(
                "{why}: the lock's state cannot be read without risking two holders, so \
                 flockrun leaves it alone (py-filelock refuses it too); if no process uses the \
                 lock, remove {} to start a new log",
                root.display()
            ),
        },
        Trouble::Refused(why) => Error::NotALock {
            path: root.to_owned(),
            reason: format!(
                "cannot hold the lock's records: {why}; remove it (py-filelock refuses it too)"
            ),
        },
        Trouble::NoHardLinks(e) => Error::NotALock {
            path: root.to_owned(),
            reason: format!(
                "its filesystem cannot make hard links ({e}), which layout v2 needs for every \
                 change of state (py-filelock refuses it too); use --layout v1 if every peer \
                 uses py-filelock 3.x, or put the lock on a filesystem with hard links"
            ),
        },
        Trouble::Io(e) => open::classify_open_error(root, open::Access::Read, e),
    }
}

struct RwTarget {
    /// Absolute, its directory resolved.
    lock: PathBuf,
    mode: LockMode,
    ttl: Ttl,
    layout: SoftLayout,
}

impl RwTarget {
    fn key(&self) -> HeldKey {
        HeldKey {
            kind: SoftRw.name(),
            id: FileId {
                dev: nested::name_hash(self.lock.as_os_str().as_encoded_bytes()),
                ino: 0,
            },
        }
    }

    fn threshold(&self) -> Duration {
        self.ttl.duration()
    }

    /// The directories whose changes may free the lock: LOCK's own (v1's `.write` and
    /// `.state`), `LOCK.readers` and `LOCK.rw/gen`.
    fn watch(&self) -> DirectoryWatch {
        let parent = self.lock.parent().unwrap_or(Path::new("/"));
        let beside = |suffix: &str| {
            let mut name = self.lock.as_os_str().to_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        let readers = beside(".readers");
        let generations = beside(".rw").join("gen");
        let mut dirs: Vec<&Path> = vec![parent];
        if self.layout.has_v1() {
            dirs.push(&readers);
        }
        if self.layout.has_v2() {
            dirs.push(&generations);
        }
        DirectoryWatch::watching(
            &dirs,
            libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO,
        )
    }
}

/// What this process has entered so far; given up again (our records removed or committed
/// out) unless it becomes a hold.
struct Entry {
    v1: Option<v1::Layout>,
    v2: Option<Participant>,
}

impl Entry {
    fn give_up(&mut self) {
        if let Some(v2) = &mut self.v2 {
            v2.leave();
        }
        if let Some(v1) = &mut self.v1 {
            v1.release();
        }
    }
}

impl Lockable for RwTarget {
    fn held_key(&self) -> Option<HeldKey> {
        Some(self.key())
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let threshold = self.threshold();
        let mut entry = Entry {
            v1: self
                .layout
                .has_v1()
                .then(|| v1::Layout::new(&self.lock, v1_mode(self.mode), threshold)),
            v2: self
                .layout
                .has_v2()
                .then(|| Participant::new(&self.lock, v2_mode(self.mode), threshold)),
        };
        let mut polling = Polling::new(FIRST_NAP, MAX_NAP);
        // Created at the first contention only: an uncontended lock never pays for it.
        let mut watch: Option<DirectoryWatch> = None;
        let taken = self.wait(&mut entry, deadline, observer, &mut polling, &mut watch);
        if polling.blocked() {
            observer.finished();
        }
        let renewed_at = match taken {
            Ok(at) => at,
            Err(e) => {
                entry.give_up();
                // Said only now, so that our own records are not named as the holder's.
                return Err(e.unwrap_or_else(|| {
                    wait::not_acquired(&self.lock, deadline, sight(&self.lock, self.layout))
                }));
            }
        };
        let signal = self.raise_signal();
        let fence = entry.v2.as_ref().and_then(|p| p.generation);
        let layouts = self.layout_names();
        let renewer = Renewer {
            v1: entry.v1,
            v2: entry.v2,
        };
        let beat = Beat::start(renewer, "its records".to_owned(), threshold, renewed_at)?;
        Ok(Box::new(HeldRw {
            beat,
            key: self.key(),
            waited: deadline.elapsed(),
            fence,
            layouts,
            _watch: watch,
            _signal: signal,
        }))
    }
}

impl RwTarget {
    /// `LOCK.wake`: on NFS, where inotify hears nothing another client does, flockrun's
    /// holders of this lock each keep a read lock on it while they hold, and waiters sleep
    /// in a write lock on it, which the server grants once the last of them has let go. Not
    /// part of py-filelock's protocol: its holders send no signal, and its waiters do not
    /// listen.
    fn wake_path(&self) -> PathBuf {
        let mut name = self.lock.as_os_str().to_os_string();
        name.push(".wake");
        PathBuf::from(name)
    }

    fn open_wake(&self, write: bool) -> Option<fs::File> {
        fs::File::options()
            .read(true)
            .write(write)
            .create(write)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(self.wake_path())
            .ok()
    }

    /// The holder's release signal on NFS (see `wake_path`); `None` elsewhere, or when it
    /// cannot be raised (a waiter holds the write lock at this moment): then this hold
    /// sends none, and waiters look again on their own.
    fn raise_signal(&self) -> Option<fs::File> {
        let dir = fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(self.lock.parent().unwrap_or(Path::new("/")))
            .ok()?;
        if !marker_file::signals_reach_other_hosts(std::os::fd::AsFd::as_fd(&dir)) {
            return None;
        }
        let file = self.open_wake(true).or_else(|| self.open_wake(false))?;
        let request = crate::lock::ByteRange::default().request(libc::F_RDLCK);
        fcntl(&file, FcntlArg::F_OFD_SETLK(&request))
            .is_ok()
            .then_some(file)
    }

    /// On NFS: sleeps until every flockrun holder of the lock has let go (a write lock on
    /// `LOCK.wake` granted), for at most `SIGNALLED_WAIT`, a sixth of the threshold, or
    /// `cap`; where no holder signals (py-filelock's), for `UNSIGNALLED_NAP`.
    fn sleep_on_holders(&self, nap: Duration, cap: Option<Duration>) {
        let limit = |d: Duration| cap.map_or(d, |c| c.min(d)).max(Duration::from_millis(1));
        let Some(file) = self.open_wake(true) else {
            wait::nap(limit(nap));
            return;
        };
        let request = crate::lock::ByteRange::default().request(libc::F_WRLCK);
        if fcntl(&file, FcntlArg::F_OFD_SETLK(&request)).is_ok() {
            drop(file); // nobody signals: let go at once
            wait::nap(limit(marker_file::UNSIGNALLED_NAP));
            return;
        }
        let budget = SIGNALLED_WAIT.min(self.threshold() / 6);
        let _ = wait::block_for(limit(budget), &mut || {
            fcntl(&file, FcntlArg::F_OFD_SETLKW(&request))
                .map(drop)
                .map_err(io::Error::from)
        });
        // Closing lets go of the write lock if it was granted.
    }

    fn layout_names(&self) -> &'static str {
        match self.layout {
            SoftLayout::V1 => "v1",
            SoftLayout::V2 => "v2",
            SoftLayout::Both => "v1+v2",
        }
    }

    /// Waits until every layout is held; returns when the v1 marker was last renewed.
    /// `Err(None)` when the wait ended without the lock (deadline or stop signal).
    ///
    /// With both layouts, a writer claims v1 (`LOCK.write`), then v2 (its name in the log),
    /// and waits for readers to leave both, so new readers of either layout wait behind it.
    /// A reader that is let into v1 but finds v2 closed to it gives v1 back before it waits.
    /// So a reader never waits while holding anything, and writers take the two claims in
    /// one order: no cycle of waits can form (README.md, "Soft read/write locks").
    fn wait(
        &self,
        entry: &mut Entry,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
        polling: &mut Polling,
        watch: &mut Option<DirectoryWatch>,
    ) -> Result<Instant, Option<Error>> {
        let sighting = || sight(&self.lock, self.layout);
        let writer = self.mode == LockMode::Exclusive;
        loop {
            if let Some(signal) = wait::stop_signal() {
                return Err(Some(Error::Interrupted { signal }));
            }
            // What changed before this attempt, the attempt sees for itself.
            if let Some(watch) = watch {
                watch.discard();
            }
            let v1_held = match &mut entry.v1 {
                Some(v1) => {
                    let held = v1.step()?;
                    if let Some(warning) = v1.warning.take() {
                        observer.warn(&warning);
                    }
                    if held && v1.renewed().elapsed() >= self.threshold() / 3 {
                        self.keep_v1(v1)?;
                    }
                    held
                }
                None => true,
            };
            let v1_claimed = entry.v1.as_ref().is_none_or(v1::Layout::has_claim);
            let v2_held = match &mut entry.v2 {
                None => true,
                // Granted while v1 still drains: kept fresh, not committed again. Only while
                // our v1 claim stands: a writer whose claim was evicted meanwhile gives v2
                // back below, or it would hold v2 against the writer now claiming v1, which
                // waits in v2 for it (both waiting forever).
                Some(v2) if v2.generation.is_some() && v1_claimed => match v2.heartbeat() {
                    Pulse::Ok | Pulse::Transient(_) => true,
                    Pulse::Lost => {
                        v2.leave();
                        false
                    }
                },
                Some(v2) if v1_claimed => {
                    let root = v2.root();
                    v2.advance().map_err(|t| trouble(&root, t))?
                }
                Some(v2) => {
                    // Not in v1 (any more): nothing of v2 may be kept while waiting there,
                    // but its records are watched, so a dead member has aged by the time we
                    // enter.
                    if v2.entered() {
                        v2.leave();
                    }
                    v2.observe();
                    false
                }
            };
            if v1_held && v2_held {
                // The v1 marker was last renewed before v2 was settled, which can take long
                // on a slow filesystem: the heartbeat counts from that renewal, so bring it
                // up to date rather than start with a hold that looks half expired.
                if let Some(v1) = &mut entry.v1
                    && v1.renewed().elapsed() >= self.threshold() / 3
                {
                    self.keep_v1(v1)?;
                }
                return Ok(entry.v1.as_ref().map_or_else(Instant::now, v1::Layout::renewed));
            }
            if !writer
                && v1_held
                && let Some(v1) = &mut entry.v1
            {
                v1.release();
            }
            match polling.next_nap(deadline, observer, &sighting) {
                Some(mut nap) => {
                    let watch = watch.get_or_insert_with(|| self.watch());
                    let v1 = entry.v1.as_ref();
                    // Another's transition holds LOCK.state for moments, and its end is
                    // noise below: look again soon instead.
                    if v1.is_some_and(|v1| v1.state_busy) {
                        nap = nap.min(STATE_BUSY_NAP);
                    }
                    if watch.release_signals() {
                        // NFS: no inotify news from other clients; sleep on the holders'
                        // release signals instead.
                        self.sleep_on_holders(nap, deadline.remaining());
                        continue;
                    }
                    // Changes made during the attempt by others wake us at once; our own
                    // (LOCK.state, our reader markers) must not, or we would spin.
                    watch.wait_unless_ignored(nap, &|name| v1.is_some_and(|v1| v1.is_noise(name)));
                }
                None => return Err(None),
            }
        }
    }

    /// Renews the v1 marker a writer holds while it waits for v2.
    fn keep_v1(&self, v1: &mut v1::Layout) -> Result<(), Option<Error>> {
        match v1.renew() {
            Ok(false) => Err(Some(Error::LockLost {
                lock: self.lock.display().to_string(),
                reason: format!(
                    "while waiting for layout v2, our layout v1 marker {} was evicted or \
                     removed",
                    v1.describe()
                ),
                command_ran: false,
            })),
            // A failing filesystem: the heartbeat's clock decides once the lock is held.
            Ok(true) | Err(_) => Ok(()),
        }
    }
}

/// Both layouts' records, renewed together by the heartbeat thread.
struct Renewer {
    v1: Option<v1::Layout>,
    v2: Option<Participant>,
}

impl Renew for Renewer {
    fn renew(&mut self) -> Renewal {
        let mut failed = None;
        if let Some(v1) = &mut self.v1 {
            match v1.renew() {
                Ok(true) => {}
                Ok(false) => {
                    return Renewal::Lost(format!(
                        "its layout v1 marker {} was evicted or removed: another process took \
                         the lock",
                        v1.describe()
                    ));
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        if let Some(v2) = &mut self.v2 {
            match v2.heartbeat() {
                Pulse::Ok => {}
                Pulse::Lost => {
                    return Renewal::Lost(format!(
                        "it was evicted from the generation log {}: another process took the \
                         lock",
                        v2.root().display()
                    ));
                }
                Pulse::Transient(e) => failed = Some(e.to_string()),
            }
        }
        match failed {
            Some(why) => Renewal::Failed(why),
            None => Renewal::Renewed,
        }
    }

    fn release(&mut self) {
        if let Some(v2) = &mut self.v2 {
            v2.leave();
        }
        if let Some(v1) = &mut self.v1 {
            v1.release();
        }
    }
}

/// A held soft reader/writer lock.
struct HeldRw {
    beat: Arc<Beat<Renewer>>,
    key: HeldKey,
    waited: Duration,
    /// Layout v2's granting generation.
    fence: Option<u64>,
    layouts: &'static str,
    /// The inotify watch the wait used, closed after release (closing it takes a while).
    _watch: Option<DirectoryWatch>,
    /// On NFS, the release signal: a read lock on `LOCK.wake`, dropped last, after our
    /// records are gone.
    _signal: Option<fs::File>,
}

impl Hold for HeldRw {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.waited
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        self.fence
            .map(|g| vec![("FLOCKRUN_FENCE".into(), g.to_string().into())])
            .unwrap_or_default()
    }

    fn details(&self) -> String {
        let mut text = format!(": layout {}", self.layouts);
        if let Some(generation) = self.fence {
            let _ = write!(text, ", fencing token {generation}");
        }
        text
    }

    fn loss(&self) -> Option<LostWatch> {
        Some(self.beat.watch())
    }

    fn lost(&self) -> Option<String> {
        self.beat.lost_reason()
    }

    fn release(self: Box<Self>) -> Option<String> {
        self.beat.end(RELEASE_BUDGET)
    }
}

impl Drop for HeldRw {
    fn drop(&mut self) {
        // After release this finds the thread done; on an early return it releases.
        let _ = self.beat.end(RELEASE_BUDGET);
    }
}

/// The stale threshold `status` judges v1 markers by: theirs is not written down, so
/// py-filelock's default.
const ASSUMED_V1_THRESHOLD: Duration = Duration::from_secs(DEFAULT_TTL as u64);

/// What `status` and busy messages know of the lock at `lock`.
struct Seen {
    report: RwReport,
    holders: Vec<RwMemberReport>,
    waiters: Vec<RwMemberReport>,
    /// Mode of the holders: write when a writer holds.
    mode: Option<LockMode>,
    warnings: Vec<String>,
}

fn v1_member(view: &MarkerView, role: &'static str) -> RwMemberReport {
    let verdict = if view.age > ASSUMED_V1_THRESHOLD {
        "stale"
    } else {
        "live"
    };
    RwMemberReport {
        layout: "v1",
        role: Some(role),
        pid: view.marker.as_ref().map(|m| m.pid),
        host: view.marker.as_ref().map(|m| m.host.clone()),
        token: view.marker.as_ref().map(|m| m.token.clone()),
        heartbeat_ago: Some(view.age),
        verdict: if view.marker.is_some() {
            verdict
        } else {
            "malformed"
        },
    }
}

fn look(lock: &Path, layout: SoftLayout) -> Result<Seen, Error> {
    let mut seen = Seen {
        report: RwReport::default(),
        holders: Vec::new(),
        waiters: Vec::new(),
        mode: None,
        warnings: Vec::new(),
    };
    if layout.has_v1()
        && let Some(v1) = v1::view(lock)?
    {
        seen.report.layouts.push("v1");
        if let Some(writer) = &v1.writer {
            let member = v1_member(writer, "writer");
            if v1.readers.is_empty() {
                seen.mode = Some(LockMode::Exclusive);
                seen.holders.push(member);
            } else {
                seen.waiters.push(member);
            }
        }
        for reader in &v1.readers {
            seen.mode.get_or_insert(LockMode::Shared);
            seen.holders.push(v1_member(reader, "reader"));
        }
        if let Some((content, age)) = &v1.state
            && *age > Duration::from_secs(2)
        {
            seen.warnings.push(format!(
                "the layout v1 state marker (\"{}\") has stood for {}: a transition that \
                 never finished (flockrun breaks it once unchanged for its threshold)",
                content.replace('\n', " "),
                crate::duration::format_seconds(*age)
            ));
        }
    }
    if layout.has_v2() {
        let mut root = lock.as_os_str().to_os_string();
        root.push(".rw");
        if let Some(v2) = v2::view(lock).map_err(|t| trouble(Path::new(&root), t))? {
            seen.report.layouts.push("v2");
            seen.report.generation = Some(v2.snapshot.generation);
            let snapshot = &v2.snapshot;
            let member = |token: &str, role: Option<&'static str>| {
                let record = v2.holders.iter().find(|h| h.token == token);
                let lease = record
                    .and_then(|r| r.lease)
                    .unwrap_or(Duration::from_secs(u64::from(DEFAULT_TTL)));
                let verdict = match record {
                    Some(r) if r.gone_here => "dead",
                    Some(r) if r.age > lease => "stale",
                    Some(_) => "live",
                    None => "stale",
                };
                RwMemberReport {
                    layout: "v2",
                    role,
                    pid: record.and_then(|r| r.pid),
                    host: record.and_then(|r| r.host.clone()),
                    token: Some(token.to_owned()),
                    heartbeat_ago: record.map(|r| r.age),
                    verdict,
                }
            };
            if let Some(writer) = &snapshot.writer {
                if snapshot.readers.is_empty() {
                    seen.mode = Some(LockMode::Exclusive);
                    seen.holders.push(member(writer, Some("writer")));
                } else {
                    seen.waiters.push(member(writer, Some("writer")));
                }
            }
            for reader in &snapshot.readers {
                seen.mode.get_or_insert(LockMode::Shared);
                seen.holders.push(member(reader, Some("reader")));
            }
            let members = snapshot.members();
            for waiting in v2.holders.iter().filter(|h| !members.contains(&h.token)) {
                seen.waiters.push(member(&waiting.token, None));
            }
        }
    }
    Ok(seen)
}

/// Fills `status` in for a soft reader/writer lock.
fn fill(status: &mut LockStatus) -> Result<(), Error> {
    let lock = canonical(&status.path).unwrap_or_else(|_| status.path.clone());
    let seen = look(&lock, SoftLayout::Both)?;
    status.exists = !seen.report.layouts.is_empty();
    status.state = if seen.holders.is_empty() {
        State::Free
    } else if seen.holders.iter().all(|h| h.verdict != "live") {
        State::Stale
    } else {
        State::Held
    };
    status.mode = seen.mode.map(LockMode::read_write_name);
    status.rw_holders = seen.holders;
    status.rw_waiters = seen.waiters;
    status.soft_rw = Some(seen.report);
    status.warnings.extend(seen.warnings);
    Ok(())
}

/// Who holds the lock, for busy and timeout messages.
fn sight(lock: &Path, layout: SoftLayout) -> Sighting {
    let mut sighting = Sighting::default();
    match look(lock, layout) {
        Ok(seen) => {
            let mut parts: Vec<String> = seen
                .holders
                .iter()
                .map(|m| format!("held by {}", describe_rw_member(m)))
                .collect();
            parts.extend(
                seen.waiters
                    .iter()
                    .filter(|m| m.role == Some("writer"))
                    .map(|m| {
                        format!(
                            "a waiting {} keeps new readers out",
                            describe_rw_member(m)
                        )
                    }),
            );
            if !parts.is_empty() {
                sighting.described = Some(parts.join("; "));
            }
            sighting.warnings = seen.warnings;
        }
        Err(e) => sighting.warnings.push(e.to_string()),
    }
    sighting
}
