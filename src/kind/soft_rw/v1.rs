//! Layout v1 of py-filelock's `SoftReadWriteLock` (py-filelock 3.27 to 3.32, 3.28 among
//! them): `LOCK.write` is the writer's marker, `LOCK.readers/` holds one marker per reader,
//! and every transition happens under `LOCK.state`, a plain 3.28 `SoftFileLock`. A marker
//! lives while its mtime is renewed; one older than the stale threshold by the observer's
//! wall clock is evicted. Written byte for byte as 3.28 writes it
//! (`research/pyfilelock_soft_family.md` §2), and safe where 3.28 is not: the `LOCK.state`
//! wait ends at flockrun's deadline, release and a timed-out writer remove `LOCK.write` only
//! if it is still theirs, a record this process saw renewed within the threshold is never
//! evicted, an eviction that meets a renewed marker puts it back, and a lost hold is noticed.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::kind::marker::file::{self as marker_file, Unchanged};
use super::files::{self, Dir, DirError, Ledger, Record};
use crate::kind::marker::takeover::{self, Guard};
use crate::error::Error;
use crate::inspect::marker::pid_exists;
use crate::open;

/// Markers are at most this long (3.28's `_MAX_MARKER_SIZE`).
const MAX_MARKER: usize = 1024;
/// What 3.28 takes for housekeeping in `LOCK.readers/`: ignored when counting readers.
const BREAK: &str = ".break";
/// A dead same-host `LOCK.state` owner's marker is broken once unchanged this long: a
/// transition takes milliseconds, and a container with the same host name but its own pid
/// namespace would otherwise look dead at once.
const STATE_DEAD_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Outside,
    /// A writer that created `LOCK.write` and waits for readers to leave.
    Claimed,
    Held,
}

/// A v1 marker: `<token>\n<pid>\n<host>\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub token: String,
    pub pid: i32,
    pub host: String,
}

/// 3.28's parser: non-empty, at most 1024 bytes of ASCII, a 32-hex token, a pid without
/// leading zero up to 2³¹−1, a host of 1–253 printable characters, then only newlines.
pub(crate) fn parse_marker(data: &[u8]) -> Option<Marker> {
    if data.is_empty() || data.len() > MAX_MARKER || !data.is_ascii() {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?.trim_end_matches('\n');
    let mut lines = text.splitn(3, '\n');
    let (token, pid, host) = (lines.next()?, lines.next()?, lines.next()?);
    let pid_ok = (1..=10).contains(&pid.len())
        && !pid.starts_with('0')
        && pid.bytes().all(|b| b.is_ascii_digit());
    let host_ok =
        (1..=253).contains(&host.len()) && host.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !(files::is_token(token) && pid_ok && host_ok) {
        return None;
    }
    Some(Marker {
        token: token.to_owned(),
        pid: pid.parse().ok()?,
        host: host.to_owned(),
    })
}

/// The host name as 3.28 writes it (`socket.gethostname()`, raw), or py-filelock 4's
/// escaped form when the raw name has bytes a v1 marker cannot carry.
pub(crate) fn raw_host_name() -> String {
    let node = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_owned())
        .unwrap_or_default();
    match node.to_str() {
        Some(name) if !name.is_empty() && name.bytes().all(|b| (0x21..=0x7e).contains(&b)) => {
            name.to_owned()
        }
        _ => crate::identity::host_name(),
    }
}

fn with_suffix(name: &OsStr, suffix: &str) -> OsString {
    let mut full = name.to_os_string();
    full.push(suffix);
    full
}

/// Names a reader's marker does not have: 3.28's housekeeping, ignored when counting.
fn housekeeping(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.starts_with(b".") || bytes.windows(BREAK.len()).any(|w| w == BREAK.as_bytes())
}

/// The name an eviction moves a marker to: `<name>.break.<pid>.<32 hex>`, housekeeping.
fn aside_name(name: &OsStr) -> OsString {
    with_suffix(
        name,
        &format!("{BREAK}.{}.{}", std::process::id(), files::new_token()),
    )
}

/// Files of layout v1 beside `LOCK`.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub parent: PathBuf,
    pub state: OsString,
    pub write: OsString,
    pub readers: OsString,
}

impl Paths {
    pub(crate) fn of(lock: &Path) -> Self {
        let name = lock.file_name().unwrap_or_default();
        Paths {
            parent: lock
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            state: with_suffix(name, ".state"),
            write: with_suffix(name, ".write"),
            readers: with_suffix(name, ".readers"),
        }
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.parent.join(&self.state)
    }
}

/// `LOCK.state`, held for one transition.
struct State {
    file: File,
    path: PathBuf,
}

impl Drop for State {
    fn drop(&mut self) {
        // Only our own marker, before its descriptor closes (so its inode number cannot be
        // reused by a successor's marker in between).
        if open::still_named_by(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where a hold's marker is.
#[derive(Debug, Clone)]
enum Slot {
    Write,
    Reader(OsString),
}

/// One process's part in layout v1.
pub(crate) struct Layout {
    paths: Paths,
    mode: Mode,
    threshold: Duration,
    token: String,
    host: String,
    phase: Phase,
    slot: Option<Slot>,
    /// Renewals of every marker this process watched, for "never evict a record this
    /// process saw change within the threshold".
    ledger: Ledger<PathBuf>,
    state_seen: Unchanged,
    guard: Guard,
    /// A warning waiting to be shown (at most one per kind of trouble).
    pub warning: Option<String>,
    warned_state: bool,
    /// When our marker was last written or touched.
    renewed: Instant,
    /// The last step found `LOCK.state` taken by someone else's transition.
    pub state_busy: bool,
}

type R<T> = Result<T, Error>;

impl Layout {
    pub(crate) fn new(lock: &Path, mode: Mode, threshold: Duration) -> Self {
        Layout {
            paths: Paths::of(lock),
            mode,
            threshold,
            token: files::new_token(),
            host: raw_host_name(),
            phase: Phase::Outside,
            slot: None,
            ledger: Ledger::default(),
            state_seen: Unchanged::default(),
            guard: Guard::new(threshold),
            warning: None,
            warned_state: false,
            renewed: Instant::now(),
            state_busy: false,
        }
    }

    fn record(&self) -> String {
        format!("{}\n{}\n{}\n", self.token, std::process::id(), self.host)
    }

    fn parent(&self) -> R<Dir> {
        match Dir::open(&self.paths.parent) {
            Ok(Some(dir)) => Ok(dir),
            Ok(None) => Err(open::classify_open_error(
                &self.paths.parent,
                open::Access::Read,
                io::Error::from_raw_os_error(libc::ENOENT),
            )),
            Err(e) => Err(dir_error(&self.paths.parent, e)),
        }
    }

    fn readers(&self, parent: &Dir) -> R<Dir> {
        parent
            .make_sub(&self.paths.readers)
            .map_err(|e| dir_error(&self.paths.parent.join(&self.paths.readers), e))
    }

    /// One step towards holding the lock, under `LOCK.state`; `Ok(true)` once held.
    pub(crate) fn step(&mut self) -> R<bool> {
        if self.phase == Phase::Held {
            return Ok(true);
        }
        let state = self.try_state()?;
        self.state_busy = state.is_none();
        let Some(_state) = state else {
            return Ok(false);
        };
        let parent = self.parent()?;
        match self.mode {
            Mode::Read => self.enter_as_reader(&parent),
            Mode::Write => {
                if self.phase == Phase::Outside && !self.claim_as_writer(&parent)? {
                    return Ok(false);
                }
                self.drain(&parent)
            }
        }
    }

    /// One attempt at `LOCK.state`: created with `O_EXCL` holding 3.28's two-line record,
    /// so a 3.28 peer can break it if we die in a transition; a dead owner's marker is
    /// broken, and so is one left unchanged for the stale threshold (a transition never
    /// takes that long; without this a host that crashed inside one would block every v1
    /// user forever).
    fn try_state(&mut self) -> R<Option<State>> {
        let path = self.paths.state_path();
        let record = format!("{}\n{}\n", std::process::id(), self.host);
        match marker_file::create_marker(&path, &record, None) {
            Ok(file) => return Ok(Some(State { file, path })),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(open::classify_create_error(&path, e)),
        }
        let Some((pin, judged)) = marker_file::pin_inode(&path) else {
            return Ok(None);
        };
        let unchanged = self.state_seen.observe(marker_file::state_of(&judged));
        // Not following a link, and never blocking on a FIFO planted there.
        let mut content = Vec::new();
        if let Ok(file) = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | crate::mounts::uncached_at(&path))
            .open(&path)
        {
            let _ = file.take(MAX_MARKER as u64).read_to_end(&mut content);
        }
        let text = String::from_utf8_lossy(&content);
        let lines: Vec<&str> = text.trim().lines().collect();
        let dead_here = match lines.as_slice() {
            [pid, host] => {
                *host == self.host && pid.parse::<i32>().is_ok_and(|p| p > 0 && !pid_exists(p))
            }
            _ => false,
        };
        let abandoned = unchanged >= self.threshold;
        if !((dead_here && unchanged >= STATE_DEAD_GRACE) || abandoned) {
            return Ok(None);
        }
        if abandoned && !dead_here && !self.warned_state {
            self.warned_state = true;
            self.warning = Some(format!(
                "{} has not changed for {} s, longer than any transition takes: its owner is \
                 taken for dead (crashed or cut off) and the marker is broken",
                path.display(),
                self.threshold.as_secs()
            ));
        }
        let taken = takeover::take_over(&path, &judged, &record, None, &mut self.guard)?;
        drop(pin);
        Ok(taken.map(|file| State { file, path }))
    }

    fn enter_as_reader(&mut self, parent: &Dir) -> R<bool> {
        self.evict_if_stale(parent, &self.paths.write.clone())?;
        if self.writer_marker_present(parent)? {
            return Ok(false);
        }
        let readers = self.readers(parent)?;
        let name = OsString::from(format!("{}.{}", files::new_token(), std::process::id()));
        readers
            .create(&name, self.record().as_bytes(), false)
            .map_err(|e| open::classify_create_error(&readers.path.join(&name), e))?;
        self.slot = Some(Slot::Reader(name));
        self.phase = Phase::Held;
        self.renewed = Instant::now();
        Ok(true)
    }

    /// Whether `LOCK.write` exists as a marker; anything else at its name is refused.
    fn writer_marker_present(&self, parent: &Dir) -> R<bool> {
        let name = &self.paths.write;
        match parent
            .lstat(name)
            .map_err(|e| io_error(&self.paths.parent.join(name), e))?
        {
            None => Ok(false),
            Some(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFREG => Ok(true),
            Some(_) => Err(not_a_marker(&self.paths.parent.join(name))),
        }
    }

    /// Phase 1 of a writer: evict a stale `LOCK.write`, then create ours, which from then
    /// on keeps every new reader out.
    fn claim_as_writer(&mut self, parent: &Dir) -> R<bool> {
        let name = self.paths.write.clone();
        self.evict_if_stale(parent, &name)?;
        if self.writer_marker_present(parent)? {
            return Ok(false);
        }
        match parent.create(&name, self.record().as_bytes(), false) {
            Ok(_) => {
                self.slot = Some(Slot::Write);
                self.phase = Phase::Claimed;
                self.renewed = Instant::now();
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(open::classify_create_error(
                &self.paths.parent.join(&name),
                e,
            )),
        }
    }

    /// Phase 2 of a writer: keep our marker fresh, evict stale readers, and hold once no
    /// reader is left. A claim evicted meanwhile sends us back to phase 1.
    fn drain(&mut self, parent: &Dir) -> R<bool> {
        let name = self.paths.write.clone();
        let ours = parent
            .read(&name, MAX_MARKER)
            .map_err(|e| io_error(&self.paths.parent.join(&name), e))?
            .and_then(|r| parse_marker(&r.data))
            .is_some_and(|m| m.token == self.token);
        if !ours {
            self.slot = None;
            self.phase = Phase::Outside;
            return Ok(false);
        }
        if parent.touch(&name).unwrap_or(false) {
            self.renewed = Instant::now();
        }
        let readers = self.readers(parent)?;
        let mut left = false;
        for reader in Self::reader_names(&readers)? {
            if !self.evict_if_stale(&readers, &reader)? {
                left = true;
            }
        }
        if left {
            return Ok(false);
        }
        self.phase = Phase::Held;
        Ok(true)
    }

    fn reader_names(readers: &Dir) -> R<Vec<OsString>> {
        Ok(readers
            .names()
            .map_err(|e| io_error(&readers.path, e))?
            .into_iter()
            .filter(|n| !housekeeping(n))
            .collect())
    }

    /// Evicts the marker `name` in `dir` if it is stale (older than the threshold by this
    /// host's clock, and not seen renewed by this process within it): moved aside, checked
    /// to be the file judged, removed; a marker renewed meanwhile is put back. `Ok(true)`
    /// when nothing is there any more.
    fn evict_if_stale(&mut self, dir: &Dir, name: &OsStr) -> R<bool> {
        let path = dir.path.join(name);
        let asked = Instant::now();
        let Some(record) = dir.read(name, MAX_MARKER).map_err(|e| io_error(&path, e))? else {
            return Ok(true);
        };
        if record.data.is_empty()
            && dir
                .lstat(name)
                .map_err(|e| io_error(&path, e))?
                .is_some_and(|s| s.st_mode & libc::S_IFMT != libc::S_IFREG)
        {
            return Err(not_a_marker(&path));
        }
        self.ledger
            .observe(&path, Some(&state_bytes(&record)), asked);
        if record.age() <= self.threshold || self.ledger.changed_within(&path, self.threshold) {
            return Ok(false);
        }
        let aside = aside_name(name);
        match dir.rename(name, &aside) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESTALE)) => {
                return Ok(true);
            }
            Err(e) => return Err(Error::system("moving a stale marker aside", e)),
        }
        let moved = dir
            .read(&aside, MAX_MARKER)
            .map_err(|e| io_error(&path, e))?;
        if moved.as_ref().is_some_and(|m| same_state(m, &record)) {
            let _ = dir.unlink(&aside);
            self.ledger.forget(&path);
            return Ok(true);
        }
        // Renewed (or replaced) between the look and the move: put it back, unless a new
        // marker already took the name (then the one aside has lost its hold, and its owner
        // finds out at its next renewal).
        if dir.link(&aside, name).unwrap_or(false) {
            let _ = dir.unlink(&aside);
        }
        Ok(false)
    }

    /// Where our marker is: its directory and name.
    fn marker_at(&self) -> R<Option<(Dir, OsString)>> {
        let parent = self.parent()?;
        Ok(match &self.slot {
            None => None,
            Some(Slot::Write) => Some((parent, self.paths.write.clone())),
            Some(Slot::Reader(name)) => {
                let readers = parent
                    .sub(&self.paths.readers)
                    .map_err(|e| dir_error(&self.paths.parent.join(&self.paths.readers), e))?;
                readers.map(|dir| (dir, name.clone()))
            }
        })
    }

    /// Whether a change to the file `name` (in LOCK's directory or `LOCK.readers`) is one
    /// of our own steps or a transition in progress, which cannot free the lock by itself:
    /// `LOCK.state` and its takeover files, and our readers' markers (`<token>.<our pid>`).
    pub(crate) fn is_noise(&self, name: &[u8]) -> bool {
        let state = self.paths.state.as_encoded_bytes();
        let ours = format!(".{}", std::process::id());
        name.starts_with(state) || name.ends_with(ours.as_bytes())
    }

    /// Whether we hold the lock or, as a writer, the claim on it.
    pub(crate) fn has_claim(&self) -> bool {
        self.phase != Phase::Outside
    }

    /// When our marker was last written or touched.
    pub(crate) fn renewed(&self) -> Instant {
        self.renewed
    }

    /// Renews our marker (its times, after checking it still carries our token).
    /// `Ok(false)` when it is gone or another's: the hold is lost.
    pub(crate) fn renew(&mut self) -> io::Result<bool> {
        let Ok(Some((dir, name))) = self.marker_at() else {
            return Ok(false);
        };
        let ours = dir
            .read(&name, MAX_MARKER)?
            .and_then(|r| parse_marker(&r.data))
            .is_some_and(|m| m.token == self.token);
        let renewed = ours && dir.touch(&name)?;
        if renewed {
            self.renewed = Instant::now();
        }
        Ok(renewed)
    }

    /// Removes our marker if it is still ours (by its token; 3.28 removes whatever is
    /// there, even a successor's).
    pub(crate) fn release(&mut self) {
        if let Ok(Some((dir, name))) = self.marker_at() {
            let ours = dir
                .read(&name, MAX_MARKER)
                .ok()
                .flatten()
                .and_then(|r| parse_marker(&r.data))
                .is_some_and(|m| m.token == self.token);
            if ours {
                let _ = dir.unlink(&name);
            }
        }
        self.slot = None;
        self.phase = Phase::Outside;
    }

    /// What the hold is, for messages.
    pub(crate) fn describe(&self) -> String {
        let mut text = String::new();
        match &self.slot {
            Some(Slot::Reader(name)) => {
                let _ = write!(
                    text,
                    "{}",
                    self.paths
                        .parent
                        .join(&self.paths.readers)
                        .join(name)
                        .display()
                );
            }
            _ => {
                let _ = write!(
                    text,
                    "{}",
                    self.paths.parent.join(&self.paths.write).display()
                );
            }
        }
        text
    }
}

/// The identity and modification time of a record, as bytes for the ledger.
fn state_bytes(record: &Record) -> Vec<u8> {
    format!("{}:{}:{}", record.id.0, record.id.1, record.mtime_ns).into_bytes()
}

fn same_state(a: &Record, b: &Record) -> bool {
    a.id == b.id && a.mtime_ns == b.mtime_ns
}

fn io_error(path: &Path, e: io::Error) -> Error {
    open::classify_open_error(path, open::Access::Read, e)
}

fn dir_error(path: &Path, e: DirError) -> Error {
    match e {
        DirError::Refused(why) => Error::NotALock {
            path: path.to_owned(),
            reason: format!(
                "cannot hold a soft read/write lock's records: {why}; remove it (py-filelock \
                 refuses it too)"
            ),
        },
        DirError::Io(e) => io_error(path, e),
    }
}

fn not_a_marker(path: &Path) -> Error {
    Error::NotALock {
        path: path.to_owned(),
        reason: "is not a regular file, so it is no soft read/write lock marker (py-filelock \
                 would wait behind it forever); remove it"
            .to_owned(),
    }
}

/// What `status` sees of layout v1.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// `LOCK.state`'s content and age, if it exists (a transition in progress, or a marker
    /// left by a crash).
    pub state: Option<(String, Duration)>,
    pub writer: Option<MarkerView>,
    pub readers: Vec<MarkerView>,
}

/// A v1 marker as `status` shows it.
#[derive(Debug, Clone)]
pub(crate) struct MarkerView {
    pub name: OsString,
    pub marker: Option<Marker>,
    /// By this host's clock against its mtime.
    pub age: Duration,
}

/// Layout v1 beside `lock`, `None` when none of its files exist.
///
/// # Errors
/// When a directory cannot be read.
pub(crate) fn view(lock: &Path) -> Result<Option<View>, Error> {
    let paths = Paths::of(lock);
    let Some(parent) = Dir::open(&paths.parent).map_err(|e| dir_error(&paths.parent, e))? else {
        return Ok(None);
    };
    let read = |dir: &Dir, name: &OsStr| -> Result<Option<MarkerView>, Error> {
        let path = dir.path.join(name);
        Ok(dir
            .read(name, MAX_MARKER)
            .map_err(|e| io_error(&path, e))?
            .map(|r| MarkerView {
                name: name.to_os_string(),
                marker: parse_marker(&r.data),
                age: r.age(),
            }))
    };
    let state = parent
        .read(&paths.state, MAX_MARKER)
        .map_err(|e| io_error(&paths.state_path(), e))?
        .map(|r| (String::from_utf8_lossy(&r.data).trim().to_owned(), r.age()));
    let writer = read(&parent, &paths.write)?;
    let readers_dir = parent
        .sub(&paths.readers)
        .map_err(|e| dir_error(&paths.parent.join(&paths.readers), e))?;
    let mut readers = Vec::new();
    if let Some(dir) = &readers_dir {
        for name in dir.names().map_err(|e| io_error(&dir.path, e))? {
            if !housekeeping(&name)
                && let Some(reader) = read(dir, &name)?
            {
                readers.push(reader);
            }
        }
    }
    readers.sort_by(|a, b| a.name.cmp(&b.name));
    if state.is_none() && writer.is_none() && readers_dir.is_none() {
        return Ok(None);
    }
    Ok(Some(View {
        state,
        writer,
        readers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "3d5a34700123456789abcdef00e950f6";

    #[test]
    fn markers_parse_as_3_28_parses_them() {
        let marker = parse_marker(format!("{T}\n18262\nvm\n").as_bytes()).unwrap();
        assert_eq!(
            marker,
            Marker {
                token: T.to_owned(),
                pid: 18262,
                host: "vm".to_owned()
            }
        );
        assert!(parse_marker(format!("{T}\n1\nvm\n\n\n").as_bytes()).is_some());
        for bad in [
            String::new(),
            format!("{T}\n0\nvm\n"),
            format!("{T}\n018\nvm\n"),
            format!("{T}\n12345678901\nvm\n"),
            format!("{T}\n1\nv m\n"),
            format!("{T}\n1\n\n"),
            format!("{}\n1\nvm\n", T.to_uppercase()),
            format!("{T}\n1\nvm\nextra\n"),
            format!("{T}\n1\nvé\n"),
        ] {
            assert_eq!(parse_marker(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn housekeeping_names_are_3_28s() {
        for name in [".hidden", "x.break", "abc.break.12.ff"] {
            assert!(housekeeping(OsStr::new(name)), "{name}");
        }
        assert!(!housekeeping(OsStr::new("3d5a3470.1234")));
        assert!(housekeeping(&aside_name(OsStr::new("x.write"))));
    }
}
