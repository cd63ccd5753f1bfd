//! Layout v2 of py-filelock's `SoftReadWriteLock` (py-filelock 4.0 and later): the lock's
//! whole state is a log of immutable snapshots `LOCK.rw/gen/<N>`, each naming the writer and
//! the readers at generation N. A transition writes the next snapshot complete under a
//! private name and hard-links it to `gen/<N+1>`; the link fails if a peer got there first,
//! so committing is a compare-and-swap any filesystem with hard links can do, NFS included.
//! Liveness is a nonce each participant rewrites in `holders/<token>`: a member whose record
//! stayed unchanged for the stale threshold, on the observer's own monotonic clock, is
//! committed out. Byte for byte and step for step as py-filelock 4.2.11's `_soft_rw`
//! (`research/pyfilelock_soft_family.md` §3), with one addition: a member whose record names a
//! process of this host (same host name and pid namespace) that is gone is evicted at once.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{self, Dir, DirError, Ledger, MAX_RECORD, Record};
use crate::duration::python_repr;
use crate::identity;
use crate::inspect::marker::pid_exists;

const PROTOCOL: &str = "filelock-rw/1";
const DIGITS: usize = 20;
/// Snapshots older than this many generations are removed by whoever commits; also how far
/// `latest` probes past a gap.
const RETAINED: u64 = 64;
const RETAINED_COUNT: usize = 64;
const GENERATIONS: &str = "gen";
const HOLDERS: &str = "holders";
const EPOCH: &str = "epoch";
const HEAD: &str = "HEAD";
const TEMPORARY_PREFIX: &str = ".commit-";
/// Attempts of one `advance`: a lost commit race is retried at once.
const ATTEMPTS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    Write,
}

/// Why the log cannot be used.
#[derive(Debug)]
pub(crate) enum Trouble {
    /// State that cannot be read without risking two holders (py-filelock raises
    /// `SoftFileLockProtocolError` at once too): a malformed generation record, a log that
    /// names no readable snapshot.
    Malformed(String),
    /// A protocol directory that is a link, not a directory, or another account's.
    Refused(String),
    /// The filesystem makes no hard links, and every commit needs one.
    NoHardLinks(io::Error),
    Io(io::Error),
}

impl From<io::Error> for Trouble {
    fn from(e: io::Error) -> Self {
        Trouble::Io(e)
    }
}

impl From<DirError> for Trouble {
    fn from(e: DirError) -> Self {
        match e {
            DirError::Refused(why) => Trouble::Refused(why),
            DirError::Io(e) => Trouble::Io(e),
        }
    }
}

type R<T> = Result<T, Trouble>;

/// The state at one generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Snapshot {
    pub generation: u64,
    pub writer: Option<String>,
    pub readers: BTreeSet<String>,
}

impl Snapshot {
    fn empty(generation: u64) -> Self {
        Snapshot {
            generation,
            ..Snapshot::default()
        }
    }

    pub(crate) fn members(&self) -> BTreeSet<String> {
        let mut members = self.readers.clone();
        members.extend(self.writer.clone());
        members
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut text = format!("{PROTOCOL}\ngeneration={}\n", self.generation);
        if let Some(writer) = &self.writer {
            let _ = writeln!(text, "writer={writer}");
        }
        for reader in &self.readers {
            let _ = writeln!(text, "reader={reader}");
        }
        text.into_bytes()
    }
}

/// The snapshot a `gen/<N>` record encodes, `None` when malformed (any unknown line, a
/// duplicate, a non-canonical number, no final newline).
pub(crate) fn parse_snapshot(data: &[u8]) -> Option<Snapshot> {
    if data.is_empty() || data.len() > MAX_RECORD || !data.is_ascii() {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let lines: Vec<&str> = text.split('\n').collect();
    let (first, rest) = lines.split_first()?;
    let (last, middle) = rest.split_last()?;
    if *first != PROTOCOL || !last.is_empty() {
        return None;
    }
    let mut generation = None;
    let mut snapshot = Snapshot::default();
    for line in middle {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        match key {
            "generation"
                if generation.is_none()
                    && value.len() <= DIGITS
                    && !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && (value == "0" || !value.starts_with('0')) =>
            {
                generation = Some(value.parse::<u64>().ok()?);
            }
            "writer" if snapshot.writer.is_none() && files::is_token(value) => {
                snapshot.writer = Some(value.to_owned());
            }
            "reader" if files::is_token(value) && !snapshot.readers.contains(value) => {
                snapshot.readers.insert(value.to_owned());
            }
            _ => return None,
        }
    }
    snapshot.generation = generation?;
    Some(snapshot)
}

fn generation_name(generation: u64) -> String {
    format!("{generation:0DIGITS$}")
}

/// A generation number from a listed name: exactly 20 ASCII digits.
pub(crate) fn listed_generation(name: &OsStr) -> Option<u64> {
    let name = name.to_str()?;
    (name.len() == DIGITS && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The `holders/<token>` record; only the nonce changes between heartbeats, so its length
/// stays the same.
fn encode_holder(token: &str, nonce: &str, host: &str, lease: &str) -> Vec<u8> {
    format!(
        "{PROTOCOL}\ntoken={token}\npid={}\nhost={host}\nlease={lease}\nnonce={nonce}\n",
        std::process::id()
    )
    .into_bytes()
}

/// A field of a holder record (`pid`, `host`, `lease`…), if present.
pub(crate) fn holder_field<'a>(record: &'a [u8], key: &str) -> Option<&'a str> {
    std::str::from_utf8(record)
        .ok()?
        .split('\n')
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

/// The `lease` a holder record carries, only in the exact spelling Python's `repr` writes.
pub(crate) fn holder_lease(record: Option<&[u8]>) -> Option<Duration> {
    let text = holder_field(record?, "lease")?;
    let lease: f64 = text.parse().ok()?;
    (lease.is_finite() && lease > 0.0 && python_repr(lease) == text)
        .then(|| Duration::try_from_secs_f64(lease).ok())
        .flatten()
}

/// Whether a holder record names a process of this host (same host name, same pid
/// namespace) that no longer runs.
fn owner_gone_here(record: Option<&[u8]>, host: &str) -> bool {
    let Some(record) = record else {
        return false;
    };
    let pid = holder_field(record, "pid").and_then(|p| p.parse::<i32>().ok());
    holder_field(record, "host") == Some(host) && pid.is_some_and(|pid| pid > 0 && !pid_exists(pid))
}

/// The protocol directories under `LOCK.rw`, opened anew for every operation (a log removed
/// and started again is then found by name, as py-filelock finds it).
#[derive(Debug)]
struct Tree {
    /// The directory that holds `LOCK` (and `LOCK.rw`).
    parent: PathBuf,
    /// `LOCK.rw`'s file name.
    root_name: std::ffi::OsString,
    /// The root whose ownership was checked.
    admitted: Option<(u64, u64)>,
}

impl Tree {
    fn root_path(&self) -> PathBuf {
        self.parent.join(&self.root_name)
    }

    /// `LOCK.rw/<sub>`, `None` when it (or the root) does not exist.
    fn dir(&mut self, sub: &str) -> R<Option<Dir>> {
        let Some(root) = Dir::open(&self.root_path())? else {
            return Ok(None);
        };
        let stat = root.stat()?;
        if self.admitted != Some((stat.st_dev, stat.st_ino)) {
            let parent = Dir::open(&self.parent)?
                .ok_or_else(|| Trouble::Io(io::Error::from_raw_os_error(libc::ENOENT)))?;
            files::refuse_foreign(&root, &parent.stat()?)?;
            self.admitted = Some((stat.st_dev, stat.st_ino));
        }
        Ok(root.sub(sub)?)
    }

    /// Creates `LOCK.rw`, `gen` and `holders` (0700) where missing, refusing what is there
    /// but not a directory of ours.
    fn prepare(&mut self) -> R<()> {
        let parent = Dir::open(&self.parent)?
            .ok_or_else(|| Trouble::Io(io::Error::from_raw_os_error(libc::ENOENT)))?;
        let root = parent.make_sub(&self.root_name)?;
        root.make_sub(GENERATIONS)?;
        root.make_sub(HOLDERS)?;
        let stat = root.stat()?;
        self.admitted = Some((stat.st_dev, stat.st_ino));
        Ok(())
    }
}

fn read(dir: Option<&Dir>, name: &str) -> R<Option<Record>> {
    match dir {
        Some(dir) => Ok(dir.read(name, MAX_RECORD)?),
        None => Ok(None),
    }
}

/// How a temporary file is put in place.
#[derive(Clone, Copy)]
enum Place {
    /// `link(2)`: never replaces, so it is the compare-and-swap of a commit.
    Link,
    /// `rename(2)` over the target: for `HEAD` only.
    Replace,
}

/// The generation log: found by listing and probing, advanced by linking the next snapshot.
#[derive(Debug)]
pub(crate) struct Log {
    tree: Tree,
    epoch: Option<Vec<u8>>,
    latest: Option<Snapshot>,
    /// For `status`: never create the epoch, never remove old snapshots.
    read_only: bool,
}

impl Log {
    fn new(tree: Tree, read_only: bool) -> Self {
        Log {
            tree,
            epoch: None,
            latest: None,
            read_only,
        }
    }

    /// The newest snapshot: from the newest readable generation among those `gen/HEAD`, the
    /// listing and memory name, probing forward by name; the empty log is generation 0.
    ///
    /// # Errors
    /// `Malformed` for a malformed snapshot or a log that names none it can read.
    pub(crate) fn latest(&mut self) -> R<Snapshot> {
        for _ in 0..2 {
            if let Some(latest) = self.find()? {
                self.latest = Some(latest.clone());
                return Ok(latest);
            }
        }
        Err(Trouble::Malformed(
            "the generation log names no readable snapshot".to_owned(),
        ))
    }

    fn find(&mut self) -> R<Option<Snapshot>> {
        let gen_dir = self.tree.dir(GENERATIONS)?;
        let gen_dir = gen_dir.as_ref();
        let epoch = self.incarnation(gen_dir)?;
        if epoch != self.epoch {
            self.epoch = epoch;
            self.latest = None;
        }
        let mut named: BTreeSet<u64> = self.list(gen_dir)?.into_iter().collect();
        if let Some(latest) = &self.latest
            && latest.generation > 0
        {
            named.insert(latest.generation);
        }
        let head = self.head_generation(gen_dir)?;
        named.extend(head);
        for &generation in named.iter().rev() {
            if let Some(start) = read_generation(gen_dir, generation)? {
                let patience = if Some(generation) == head {
                    1
                } else {
                    RETAINED
                };
                return Ok(Some(probe(gen_dir, start, patience)?));
            }
        }
        let newest = named.last().copied().unwrap_or(0);
        let found = probe(gen_dir, Snapshot::empty(newest), RETAINED)?;
        Ok((found.generation > newest || named.is_empty()).then_some(found))
    }

    /// The log's epoch, created (exclusively, durably) by the first participant that finds
    /// it missing.
    fn incarnation(&self, gen_dir: Option<&Dir>) -> R<Option<Vec<u8>>> {
        let Some(dir) = gen_dir else {
            return Ok(None);
        };
        if let Some(epoch) = dir.read(EPOCH, MAX_RECORD)? {
            return Ok(Some(epoch.data));
        }
        if self.read_only {
            return Ok(None);
        }
        let token = format!("{}\n", files::new_token());
        match dir.create(EPOCH, token.as_bytes(), true) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) if crate::open::vanished(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        Ok(dir.read(EPOCH, MAX_RECORD)?.map(|r| r.data))
    }

    /// The listed generations, newest 64 only; older ones are removed on the way.
    fn list(&self, gen_dir: Option<&Dir>) -> R<Vec<u64>> {
        let listed = listed(gen_dir)?;
        let keep_from = listed.len().saturating_sub(RETAINED_COUNT);
        if let Some(dir) = gen_dir
            && !self.read_only
        {
            for &old in &listed[..keep_from] {
                dir.unlink(generation_name(old))?;
            }
        }
        Ok(listed[keep_from..].to_vec())
    }

    fn valid_epoch(&self) -> Option<&[u8]> {
        let epoch = self.epoch.as_deref()?;
        let text = String::from_utf8_lossy(epoch);
        files::is_token(text.strip_suffix('\n').unwrap_or(&text)).then_some(epoch)
    }

    /// `gen/HEAD`'s snapshot, if its epoch is this log's.
    fn head_record(&self, gen_dir: Option<&Dir>) -> R<Option<Vec<u8>>> {
        let Some(head) = read(gen_dir, HEAD)? else {
            return Ok(None);
        };
        let data = head.data;
        let split = data
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |i| i + 1);
        let (epoch, record) = data.split_at(split);
        Ok((self.valid_epoch() == Some(epoch)).then(|| record.to_vec()))
    }

    fn head_generation(&self, gen_dir: Option<&Dir>) -> R<Option<u64>> {
        Ok(self
            .head_record(gen_dir)?
            .and_then(|r| parse_snapshot(&r))
            .map(|s| s.generation)
            .filter(|&g| g > 0))
    }

    /// Publishes `successor` as the next generation; `Ok(false)` when a peer published that
    /// generation first, the log changed incarnation, or compaction freed the slot.
    fn commit(&mut self, successor: &Snapshot) -> R<bool> {
        let Some(dir) = self.tree.dir(GENERATIONS)? else {
            return Ok(false);
        };
        let generation = successor.generation;
        if dir.read(EPOCH, MAX_RECORD)?.map(|r| r.data) != self.epoch
            || !self.extends_the_log(&dir, generation)?
        {
            return Ok(false);
        }
        let data = successor.encode();
        let name = generation_name(generation);
        if !publish(&dir, &name, &data, Place::Link, true)? {
            return Ok(false);
        }
        let newest = listed(Some(&dir))?
            .last()
            .copied()
            .unwrap_or(0)
            .max(self.head_generation(Some(&dir))?.unwrap_or(0));
        let lead = i128::from(newest) - i128::from(generation);
        if lead >= i128::from(RETAINED) || !self.extends_the_log(&dir, generation)? {
            if !(0 < lead && lead < i128::from(RETAINED)) {
                dir.unlink(&name)?;
            }
            return Ok(false);
        }
        self.latest = Some(successor.clone());
        // HEAD is a hint for clients whose listing is stale; it only moves forward, and a
        // failed update costs a reader a probe, not the commit.
        if let Some(epoch) = self.valid_epoch().map(<[u8]>::to_vec)
            && dir.read(EPOCH, MAX_RECORD).ok().flatten().map(|r| r.data) == Some(epoch.clone())
            && self.head_generation(Some(&dir)).ok().flatten().unwrap_or(0) < generation
        {
            let mut head = epoch;
            head.extend_from_slice(&data);
            let _ = publish(&dir, HEAD, &head, Place::Replace, false);
        }
        if let Some(expired) = generation.checked_sub(RETAINED + 1).filter(|&e| e > 0) {
            compact_through(&dir, expired)?;
        }
        Ok(true)
    }

    /// Compaction removes oldest first, so a missing predecessor means this slot was freed.
    fn extends_the_log(&self, dir: &Dir, generation: u64) -> R<bool> {
        if generation > 1 {
            Ok(dir
                .read(generation_name(generation - 1), MAX_RECORD)?
                .is_some())
        } else {
            Ok(self.head_record(Some(dir))?.is_none())
        }
    }
}

fn listed(gen_dir: Option<&Dir>) -> R<Vec<u64>> {
    let Some(dir) = gen_dir else {
        return Ok(Vec::new());
    };
    let mut generations: Vec<u64> = dir
        .names()?
        .iter()
        .filter_map(|n| listed_generation(n))
        .collect();
    generations.sort_unstable();
    Ok(generations)
}

fn read_generation(gen_dir: Option<&Dir>, generation: u64) -> R<Option<Snapshot>> {
    let name = generation_name(generation);
    let Some(record) = read(gen_dir, &name)? else {
        return Ok(None);
    };
    match parse_snapshot(&record.data) {
        Some(snapshot) if snapshot.generation == generation => Ok(Some(snapshot)),
        _ => Err(Trouble::Malformed(format!(
            "the generation record gen/{name} is malformed"
        ))),
    }
}

fn probe(gen_dir: Option<&Dir>, start: Snapshot, patience: u64) -> R<Snapshot> {
    let mut latest = start;
    let mut generation = latest.generation;
    let mut gap = 0;
    while gap < patience {
        generation += 1;
        match read_generation(gen_dir, generation)? {
            Some(snapshot) => {
                latest = snapshot;
                gap = 0;
            }
            None => gap += 1,
        }
    }
    Ok(latest)
}

/// Writes `data` complete under a private name, then puts it at `target`.
fn publish(dir: &Dir, target: &str, data: &[u8], place: Place, durable: bool) -> R<bool> {
    let temporary = format!("{TEMPORARY_PREFIX}{}", files::new_token());
    match dir.create(&temporary, data, durable) {
        Ok(_) => {}
        // No gen/: removed, or not prepared yet; the caller reads whatever log exists next.
        Err(e) if crate::open::vanished(&e) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let placed = match place {
        Place::Link => dir.link(&temporary, target).map_err(|e| {
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EXDEV | libc::EOPNOTSUPP | libc::EPERM)
            ) {
                Trouble::NoHardLinks(e)
            } else {
                Trouble::Io(e)
            }
        }),
        Place::Replace => dir
            .rename(&temporary, target)
            .map(|()| true)
            .map_err(Trouble::Io),
    };
    let _ = dir.unlink(&temporary);
    placed
}

fn compact_through(dir: &Dir, expired: u64) -> R<()> {
    let mut oldest = expired;
    while oldest > 1 && dir.read(generation_name(oldest - 1), MAX_RECORD)?.is_some() {
        oldest -= 1;
    }
    for generation in oldest..=expired {
        dir.unlink(generation_name(generation))?;
    }
    Ok(())
}

/// What one heartbeat found.
#[derive(Debug)]
pub(crate) enum Pulse {
    Ok,
    /// Evicted, or our record is gone or replaced.
    Lost,
    /// The record could not be rewritten this time.
    Transient(io::Error),
}

/// One acquisition: publishing a claim, waiting, holding, leaving.
#[derive(Debug)]
pub(crate) struct Participant {
    pub token: String,
    mode: Mode,
    /// The generation of the commit that granted the lock: the fencing token.
    pub generation: Option<u64>,
    threshold: Duration,
    /// `threshold` as Python's `repr` of a float, for the `lease=` line.
    lease: String,
    host: String,
    ledger: Ledger<String>,
    log: Log,
    holder_id: Option<(u64, u64)>,
    entered: bool,
    next_sweep: Instant,
}

impl Participant {
    /// A participant on the log beside `lock` (absolute; its directory already resolved).
    pub(crate) fn new(lock: &Path, mode: Mode, threshold: Duration) -> Self {
        Participant {
            token: files::new_token(),
            mode,
            generation: None,
            threshold,
            lease: python_repr(threshold.as_secs_f64()),
            host: identity::host_name(),
            ledger: Ledger::default(),
            log: Log::new(tree_of(lock), false),
            holder_id: None,
            entered: false,
            next_sweep: Instant::now(),
        }
    }

    /// The log's root, `LOCK.rw`.
    pub(crate) fn root(&self) -> PathBuf {
        self.log.tree.root_path()
    }

    fn record(&self) -> Vec<u8> {
        encode_holder(&self.token, &files::new_token(), &self.host, &self.lease)
    }

    /// Creates our holder record, which exists before our token appears in any snapshot.
    fn publish(&mut self) -> R<()> {
        self.log.tree.prepare()?;
        self.create_holder()
    }

    fn create_holder(&mut self) -> R<()> {
        let record = self.record();
        let holders = if let Some(dir) = self.log.tree.dir(HOLDERS)? {
            dir
        } else {
            // Removing the whole log takes the directories with it.
            self.log.tree.prepare()?;
            self.log
                .tree
                .dir(HOLDERS)?
                .ok_or_else(|| Trouble::Io(io::Error::from_raw_os_error(libc::ENOENT)))?
        };
        self.holder_id = Some(holders.create(&self.token, &record, false)?);
        Ok(())
    }

    /// Whether the latest snapshot we read names us (a writer's claim, or a hold).
    pub(crate) fn entered(&self) -> bool {
        self.entered
    }

    /// One step towards holding the lock; `true` once granted. A reader enters as soon as
    /// no live writer is named; a writer enters likewise, which keeps new readers out, then
    /// waits for the named readers to leave, and its final admission is a commit of its own.
    /// Publishes our holder record first if it is not there yet.
    pub(crate) fn advance(&mut self) -> R<bool> {
        if self.holder_id.is_none() {
            self.publish()?;
        }
        for _ in 0..ATTEMPTS {
            if let Some(outcome) = self.attempt()? {
                return Ok(outcome);
            }
        }
        Ok(false)
    }

    fn attempt(&mut self) -> R<Option<bool>> {
        let latest = self.log.latest()?;
        self.keep_claim_fresh(&latest)?;
        self.sweep(&latest)?;
        let mut stale = BTreeSet::new();
        for token in latest.members() {
            if token != self.token && self.is_stale(&token)? {
                stale.insert(token);
            }
        }
        let mut writer = latest.writer.clone().filter(|w| !stale.contains(w));
        let mut readers: BTreeSet<String> = latest.readers.difference(&stale).cloned().collect();
        if !self.entered {
            if writer.is_some() {
                // A live writer keeps everyone out; only an eviction is worth committing.
                if !stale.is_empty() {
                    self.commit(&latest, writer, readers, &stale)?;
                }
                return Ok(Some(false));
            }
            match self.mode {
                Mode::Write => writer = Some(self.token.clone()),
                Mode::Read => {
                    readers.insert(self.token.clone());
                }
            }
        }
        let granted = self.mode == Mode::Read || readers.is_empty();
        if self.entered && stale.is_empty() && !granted {
            return Ok(Some(false));
        }
        let Some(generation) = self.commit(&latest, writer, readers, &stale)? else {
            return Ok(None);
        };
        self.entered = true;
        if granted {
            self.generation = Some(generation);
        }
        Ok(Some(granted))
    }

    /// Takes membership from the snapshot (a commit reported lost may have landed; a peer
    /// may have evicted us) and rewrites our nonce, so a patient waiter never looks dead.
    fn keep_claim_fresh(&mut self, latest: &Snapshot) -> R<()> {
        self.entered = latest.members().contains(&self.token);
        if !self.refresh_nonce()? {
            match self.create_holder() {
                Ok(()) => {}
                Err(Trouble::Io(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn refresh_nonce(&mut self) -> R<bool> {
        let Some(id) = self.holder_id else {
            return Ok(false);
        };
        let record = self.record();
        match self.log.tree.dir(HOLDERS)? {
            Some(dir) => Ok(dir.overwrite(&self.token, &record, id)?),
            None => Ok(false),
        }
    }

    /// Removes holder records no snapshot names and commit leftovers, once unchanged for a
    /// threshold; at most every half threshold.
    fn sweep(&mut self, latest: &Snapshot) -> R<()> {
        let now = Instant::now();
        if now < self.next_sweep {
            return Ok(());
        }
        self.next_sweep = now + self.threshold / 2;
        let members = latest.members();
        let mut watched: HashSet<String> = members.iter().cloned().collect();
        if let Some(holders) = self.log.tree.dir(HOLDERS)? {
            for name in holders.names()? {
                let Some(name) = name.to_str() else { continue };
                if name != self.token && !members.contains(name) && files::is_token(name) {
                    let key = format!("holder:{name}");
                    watched.insert(key.clone());
                    self.collect(&holders, &key, name)?;
                }
            }
        }
        if let Some(generations) = self.log.tree.dir(GENERATIONS)? {
            for name in generations.names()? {
                let Some(name) = name.to_str() else { continue };
                if name.starts_with(TEMPORARY_PREFIX) {
                    let key = format!("temporary:{name}");
                    watched.insert(key.clone());
                    self.collect(&generations, &key, name)?;
                }
            }
        }
        self.ledger.retain(&watched);
        Ok(())
    }

    fn collect(&mut self, dir: &Dir, key: &String, name: &str) -> R<()> {
        let asked = Instant::now();
        let record = dir.read(name, MAX_RECORD)?.map(|r| r.data);
        if self.aged_out(key, record.as_deref(), asked) {
            dir.unlink(name)?;
            self.ledger.forget(key);
        }
        Ok(())
    }

    /// Unchanged for the longer of our threshold and the holder's own.
    fn aged_out(&mut self, key: &String, record: Option<&[u8]>, asked: Instant) -> bool {
        let unchanged = self.ledger.observe(key, record, asked);
        unchanged
            >= self
                .threshold
                .max(holder_lease(record).unwrap_or(Duration::ZERO))
    }

    fn is_stale(&mut self, token: &String) -> R<bool> {
        let asked = Instant::now();
        let record = match self.log.tree.dir(HOLDERS)? {
            Some(dir) => dir.read(token, MAX_RECORD)?.map(|r| r.data),
            None => None,
        };
        let aged = self.aged_out(token, record.as_deref(), asked);
        Ok(aged || owner_gone_here(record.as_deref(), &self.host))
    }

    fn commit(
        &mut self,
        latest: &Snapshot,
        writer: Option<String>,
        readers: BTreeSet<String>,
        stale: &BTreeSet<String>,
    ) -> R<Option<u64>> {
        let successor = Snapshot {
            generation: latest.generation + 1,
            writer,
            readers,
        };
        if !self.log.commit(&successor)? {
            return Ok(None);
        }
        if let Some(holders) = self.log.tree.dir(HOLDERS)? {
            for token in stale {
                holders.unlink(token)?;
            }
        }
        for token in stale {
            self.ledger.forget(token);
        }
        Ok(Some(successor.generation))
    }

    /// Ages the members' records in our ledger without entering, so that once this process
    /// does enter (after taking layout v1), a dead member has already been watched for as
    /// long as we waited.
    pub(crate) fn observe(&mut self) {
        let Ok(latest) = self.log.latest() else {
            return;
        };
        for token in latest.members() {
            let _ = self.is_stale(&token);
        }
    }

    /// Rewrites our nonce and checks that the latest snapshot still names us.
    pub(crate) fn heartbeat(&mut self) -> Pulse {
        match self.refresh_nonce() {
            Ok(true) => {}
            Ok(false) | Err(Trouble::Refused(_)) => return Pulse::Lost,
            Err(Trouble::Io(e) | Trouble::NoHardLinks(e)) => return Pulse::Transient(e),
            Err(Trouble::Malformed(why)) => return Pulse::Transient(io::Error::other(why)),
        }
        // A failure to read the log says nothing about our own liveness.
        let Ok(latest) = self.log.latest() else {
            return Pulse::Ok;
        };
        let _ = self.sweep(&latest);
        if latest.members().contains(&self.token) {
            Pulse::Ok
        } else {
            Pulse::Lost
        }
    }

    /// Commits us out of the latest snapshot, then removes our holder record (also when the
    /// log cannot be read: a member still named ages out the same way without one).
    pub(crate) fn leave(&mut self) {
        for _ in 0..1000 {
            let Ok(latest) = self.log.latest() else { break };
            if !latest.members().contains(&self.token) {
                break;
            }
            let mut successor = latest.clone();
            successor.generation += 1;
            if successor.writer.as_deref() == Some(self.token.as_str()) {
                successor.writer = None;
            }
            successor.readers.remove(&self.token);
            match self.log.commit(&successor) {
                Ok(true) | Err(_) => break,
                Ok(false) => {}
            }
        }
        self.entered = false;
        self.generation = None;
        if let Ok(Some(holders)) = self.log.tree.dir(HOLDERS) {
            let _ = holders.unlink(&self.token);
        }
        self.holder_id = None;
    }
}

/// A holder record as `status` shows it.
#[derive(Debug, Clone)]
pub(crate) struct HolderView {
    pub token: String,
    pub pid: Option<i32>,
    pub host: Option<String>,
    /// How long ago the record was last rewritten, by this host's clock against its mtime.
    pub age: Duration,
    /// The record's own threshold (`lease=`), if it gives one.
    pub lease: Option<Duration>,
    /// It names a process of this host that is gone.
    pub gone_here: bool,
}

/// What `status` sees of a log, read without writing anything.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub snapshot: Snapshot,
    /// Every holder record, members and waiters alike.
    pub holders: Vec<HolderView>,
}

/// The log beside `lock`, `None` when there is none.
///
/// # Errors
/// A malformed log or an unusable directory.
pub(crate) fn view(lock: &Path) -> R<Option<View>> {
    let mut log = Log::new(tree_of(lock), true);
    if Dir::open(&log.tree.root_path())?.is_none() {
        return Ok(None);
    }
    let snapshot = log.latest()?;
    let host = identity::host_name();
    let mut holders = Vec::new();
    if let Some(dir) = log.tree.dir(HOLDERS)? {
        for name in dir.names()? {
            let Some(token) = name.to_str().filter(|n| files::is_token(n)) else {
                continue;
            };
            let Some(record) = dir.read(token, MAX_RECORD)? else {
                continue;
            };
            holders.push(HolderView {
                token: token.to_owned(),
                pid: holder_field(&record.data, "pid").and_then(|p| p.parse().ok()),
                host: holder_field(&record.data, "host").map(str::to_owned),
                age: record.age(),
                lease: holder_lease(Some(&record.data)),
                gone_here: owner_gone_here(Some(&record.data), &host),
            });
        }
    }
    holders.sort_by(|a, b| a.token.cmp(&b.token));
    Ok(Some(View { snapshot, holders }))
}

fn tree_of(lock: &Path) -> Tree {
    let parent = lock
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut root_name = lock.file_name().unwrap_or_default().to_os_string();
    root_name.push(".rw");
    Tree {
        parent,
        root_name,
        admitted: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn snapshots_are_written_and_read_as_py_filelock_does() {
        let snapshot = Snapshot {
            generation: 2,
            writer: Some(B.to_owned()),
            readers: [B.to_owned(), A.to_owned()].into_iter().collect(),
        };
        let bytes = snapshot.encode();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!("filelock-rw/1\ngeneration=2\nwriter={B}\nreader={A}\nreader={B}\n")
        );
        assert_eq!(parse_snapshot(&bytes), Some(snapshot));
        assert_eq!(
            parse_snapshot(b"filelock-rw/1\ngeneration=0\n"),
            Some(Snapshot::empty(0))
        );
    }

    #[test]
    fn malformed_snapshots_are_refused() {
        let upper = A.to_uppercase();
        for bad in [
            String::new(),
            "filelock-rw/1\ngeneration=1".to_owned(),
            "filelock-rw/2\ngeneration=1\n".to_owned(),
            "filelock-rw/1\ngeneration=01\n".to_owned(),
            "filelock-rw/1\ngeneration=+1\n".to_owned(),
            "filelock-rw/1\n".to_owned(),
            "filelock-rw/1\ngeneration=1\ngeneration=1\n".to_owned(),
            "filelock-rw/1\ngeneration=1\n\n".to_owned(),
            format!("filelock-rw/1\ngeneration=1\nwriter={A}\nwriter={B}\n"),
            format!("filelock-rw/1\ngeneration=1\nreader={A}\nreader={A}\n"),
            format!("filelock-rw/1\ngeneration=1\nreader={upper}\n"),
            "filelock-rw/1\ngeneration=1\nextra=1\n".to_owned(),
            "filelock-rw/1\ngeneration=123456789012345678901\n".to_owned(),
        ] {
            assert_eq!(parse_snapshot(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn holder_records_carry_their_lease_only_in_repr_spelling() {
        let record = encode_holder(A, B, "vm", "90.0");
        assert_eq!(
            String::from_utf8(record.clone()).unwrap(),
            format!(
                "filelock-rw/1\ntoken={A}\npid={}\nhost=vm\nlease=90.0\nnonce={B}\n",
                std::process::id()
            )
        );
        assert_eq!(holder_lease(Some(&record)), Some(Duration::from_secs(90)));
        for bad in [
            "lease=90",
            "lease=1_000.0",
            "lease= 9.0",
            "lease=inf",
            "lease=-1.0",
        ] {
            let text = format!("filelock-rw/1\n{bad}\n");
            assert_eq!(holder_lease(Some(text.as_bytes())), None, "{bad}");
        }
    }

    #[test]
    fn listed_names_are_exactly_twenty_ascii_digits() {
        assert_eq!(
            listed_generation(OsStr::new("00000000000000000042")),
            Some(42)
        );
        for bad in [
            "0000000000000000042",
            "000000000000000000042",
            "HEAD",
            "epoch",
        ] {
            assert_eq!(listed_generation(OsStr::new(bad)), None, "{bad}");
        }
    }
}
