//! `flockrun status`: for each LOCK, its kind (from what is on disk and in the kernel, or as
//! forced), whether it is held, by whom and since when, who waits, and what could not be
//! seen. Rendered for people or as one JSON document whose field names are part of the
//! interface (documented in README.md).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::format_seconds;
use crate::error::Error;
use crate::inspect::marker::{self, Content, Verdict};
use crate::inspect::proc_locks::{self, KernelLocks};
use crate::inspect::process::{ProcessInfo, user_name};
use crate::inspect::{self, FileId, Holder};
use crate::kind::LockKind;
use crate::lock::LockMode;
use crate::open::{self, Shape};

/// The kinds `status` can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Kernel,
    Ofd,
    Sqlite,
    /// A py-filelock `SoftFileLock` marker, or flockrun's own `--soft`.
    Soft,
    /// A lock in an etcd cluster (`etcd://…` LOCK); never detected from a file.
    Etcd,
}

impl StatusKind {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            StatusKind::Kernel => "kernel",
            StatusKind::Ofd => "ofd",
            StatusKind::Sqlite => "sqlite",
            StatusKind::Soft => "soft",
            StatusKind::Etcd => "etcd",
        }
    }

    /// Parses a `--kind` value.
    ///
    /// # Errors
    /// For names other than kernel, ofd, sqlite and soft.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "kernel" => Ok(StatusKind::Kernel),
            "ofd" => Ok(StatusKind::Ofd),
            "sqlite" => Ok(StatusKind::Sqlite),
            "soft" => Ok(StatusKind::Soft),
            _ => Err("expected kernel, ofd, sqlite or soft".to_owned()),
        }
    }

    fn lock_kind(self) -> Option<LockKind> {
        match self {
            StatusKind::Kernel => Some(LockKind::Kernel),
            StatusKind::Ofd => Some(LockKind::Ofd),
            StatusKind::Sqlite => Some(LockKind::Sqlite),
            StatusKind::Soft | StatusKind::Etcd => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Free,
    Held,
    /// A soft marker whose owner is provably gone: the next contender takes it over.
    Stale,
}

impl State {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            State::Free => "free",
            State::Held => "held",
            State::Stale => "stale",
        }
    }
}

/// One holder as reported.
#[derive(Debug, Clone)]
pub struct HolderReport {
    pub pid: i32,
    pub command: String,
    pub user: Option<String>,
    /// When the hold began, as seconds since the Unix epoch: the start of a flockrun's
    /// COMMAND, otherwise the start of the holding process.
    pub since: Option<u64>,
    pub held_for: Option<Duration>,
    pub flockrun: bool,
    pub child_pid: Option<i32>,
    pub child_command: Option<String>,
}

/// One waiter as reported; OFD requests carry no pid.
#[derive(Debug, Clone)]
pub struct WaiterReport {
    pub pid: Option<i32>,
    pub command: Option<String>,
    pub mode: &'static str,
}

/// What a soft marker says.
#[derive(Debug, Clone)]
pub struct MarkerReport {
    pub pid: Option<i32>,
    pub host: Option<String>,
    pub start_token: Option<String>,
    pub verdict: Verdict,
    /// Why it is malformed, or what kind of record it is.
    pub note: Option<String>,
}

/// The status of one lock.
#[derive(Debug, Clone)]
pub struct LockStatus {
    pub path: PathBuf,
    pub exists: bool,
    pub kind: Option<StatusKind>,
    pub state: State,
    pub mode: Option<&'static str>,
    pub holders: Vec<HolderReport>,
    pub waiters: Vec<WaiterReport>,
    pub marker: Option<MarkerReport>,
    pub warnings: Vec<String>,
    /// The `/proc/locks` lines on the lock's inode at the time of inspection.
    pub kernel_lines: Vec<String>,
    /// For an etcd lock: its queue, holder first (then `holders` and `waiters` are empty).
    pub etcd_queue: Vec<crate::etcd::QueueEntry>,
}

/// The status of an etcd lock: its queue of keys, the oldest holding it.
///
/// # Errors
/// A LOCK that does not parse (`Usage`), an unreachable cluster, a refusal.
pub fn inspect_etcd(text: &str) -> Result<LockStatus, Error> {
    let queue = crate::etcd::queue(&crate::etcd::Target::parse_lock(text)?)?;
    Ok(LockStatus {
        path: PathBuf::from(text),
        exists: true,
        kind: Some(StatusKind::Etcd),
        state: if queue.is_empty() {
            State::Free
        } else {
            State::Held
        },
        mode: (!queue.is_empty()).then_some("exclusive"),
        holders: Vec::new(),
        waiters: Vec::new(),
        marker: None,
        warnings: Vec::new(),
        kernel_lines: Vec::new(),
        etcd_queue: queue,
    })
}

/// Inspects the lock at `path`, as `forced` kind or as detected.
///
/// # Errors
/// When the path cannot be inspected: a symbolic link, a FIFO/socket/device, no permission
/// to look at it.
pub fn inspect(path: &Path, forced: Option<StatusKind>) -> Result<LockStatus, Error> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut status = LockStatus {
        path: absolute.clone(),
        exists: false,
        kind: forced,
        state: State::Free,
        mode: None,
        holders: Vec::new(),
        waiters: Vec::new(),
        marker: None,
        warnings: Vec::new(),
        kernel_lines: Vec::new(),
        etcd_queue: Vec::new(),
    };
    let meta = match fs::symlink_metadata(&absolute) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if forced == Some(StatusKind::Soft) {
                status.warnings.extend(stranded_warnings(&absolute));
                if !status.warnings.is_empty() {
                    status.state = State::Held;
                }
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
    let kind = forced.unwrap_or_else(|| detect(&locks, &absolute, id, &meta));
    status.kind = Some(kind);
    status.kernel_lines = locks
        .text
        .lines()
        .filter(|l| proc_locks::parse_line(l).is_some_and(|p| p.inode == id.ino))
        .map(str::to_owned)
        .collect();
    match kind.lock_kind() {
        Some(lock_kind) => fill_from_kernel(&mut status, &locks, id, lock_kind),
        None => fill_from_marker(&mut status, &absolute)?,
    }
    Ok(status)
}

/// Kernel locks on the inode name the kind; otherwise the content does: an SQLite header
/// means sqlite, a soft-lock record means soft, anything else (an empty file, a directory,
/// data) means kernel, the default of `exec`.
fn detect(locks: &KernelLocks, path: &Path, id: FileId, meta: &fs::Metadata) -> StatusKind {
    let on_inode = |class: &str| {
        locks
            .lines
            .iter()
            .any(|l| l.inode == id.ino && l.class == class)
    };
    if on_inode("FLOCK") {
        return StatusKind::Kernel;
    }
    if on_inode("OFDLCK") {
        return StatusKind::Ofd;
    }
    if on_inode("POSIX") {
        return StatusKind::Sqlite;
    }
    if !meta.is_file() || meta.len() == 0 {
        return StatusKind::Kernel;
    }
    if let Ok(Some(Content::Owner { .. } | Content::Strict | Content::Protocol2)) =
        marker::read(path)
    {
        return StatusKind::Soft;
    }
    let mut header = [0u8; 16];
    let is_sqlite = fs::File::open(path)
        .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut header, 0))
        .is_ok()
        && &header == b"SQLite format 3\0";
    if is_sqlite {
        StatusKind::Sqlite
    } else {
        StatusKind::Kernel
    }
}

fn fill_from_kernel(status: &mut LockStatus, locks: &KernelLocks, id: FileId, kind: LockKind) {
    let sighting = inspect::sight_in(locks, id, kind);
    let held = sighting.held_mode.is_some() || !sighting.holders.is_empty();
    status.state = if held { State::Held } else { State::Free };
    status.mode = sighting
        .held_mode
        .or_else(|| sighting.holders.first().map(|h| h.mode))
        .map(|m| kind.mode_name(m));
    status.holders = sighting.holders.iter().map(holder_report).collect();
    status.waiters = sighting
        .waiters
        .iter()
        .map(|w| WaiterReport {
            pid: (w.pid > 0).then_some(w.pid),
            command: w.process.as_ref().map(|p| p.command(usize::MAX)),
            mode: kind.mode_name(w.mode),
        })
        .collect();
    status.warnings.clone_from(&sighting.warnings);
    let shown: Vec<i32> = status
        .holders
        .iter()
        .flat_map(|h| [Some(h.pid), h.child_pid])
        .flatten()
        .collect();
    for pid in &sighting.recorded_pids {
        if shown.contains(pid) {
            continue;
        }
        if ProcessInfo::read(*pid).is_err() {
            status.warnings.push(format!(
                "/proc/locks records pid {pid}, which has exited: the lock lives on in a \
                 descriptor it passed to another process"
            ));
        } else if status.holders.is_empty() {
            status.warnings.push(format!(
                "/proc/locks records pid {pid}, whose descriptors this user may not inspect"
            ));
        }
    }
    if kind == LockKind::Ofd && status.waiters.iter().any(|w| w.pid.is_none()) {
        status
            .warnings
            .push("OFD lock requests do not record who waits; waiter pids are unknown".into());
    }
}

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
                let holders = inspect::collapse_trees(vec![Holder {
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

fn holder_report(holder: &Holder) -> HolderReport {
    let started = holder.child.as_ref().unwrap_or(&holder.process);
    HolderReport {
        pid: holder.process.pid,
        command: holder.process.command(usize::MAX),
        user: holder.process.uid.map(user_name),
        since: started.started_at(),
        held_for: started.age(),
        flockrun: holder.process.is_flockrun(),
        child_pid: holder.child.as_ref().map(|c| c.pid),
        child_command: holder.child.as_ref().map(|c| c.command(usize::MAX)),
    }
}

/// `2026-11-23T19:00:01Z` for seconds since the epoch (UTC, proleptic Gregorian).
#[must_use]
pub fn utc_timestamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days, after Howard Hinnant's public-domain algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch for `2026-11-23T19:00:01Z` (the form `utc_timestamp` writes).
#[must_use]
pub fn parse_utc_timestamp(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days-from-civil, the inverse of the algorithm in utc_timestamp.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

fn age_of(since: u64) -> Option<Duration> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    now.checked_sub(since).map(Duration::from_secs)
}

/// The human form: a short aligned block per lock.
#[must_use]
pub fn render_human(status: &LockStatus) -> String {
    let mut out = String::new();
    let kind = status.kind.map_or("", StatusKind::name);
    let _ = write!(out, "{}: {}", status.path.display(), status.state.name());
    match (status.exists, status.mode) {
        (false, _) => out.push_str(" (does not exist)"),
        (true, Some(mode)) => {
            let _ = write!(out, " ({mode}, {kind})");
        }
        (true, None) => {
            let _ = write!(out, " ({kind})");
        }
    }
    out.push('\n');
    for h in &status.holders {
        let _ = write!(out, "  holder   pid {} ", h.pid);
        match (&h.child_pid, &h.child_command) {
            (Some(child), Some(command)) if h.flockrun => {
                let _ = write!(out, "flockrun running pid {child} ({command})");
            }
            _ => {
                let _ = write!(out, "({})", h.command);
            }
        }
        if let Some(user) = &h.user {
            let _ = write!(out, ", user {user}");
        }
        if let (Some(since), Some(held)) = (h.since, h.held_for) {
            let _ = write!(
                out,
                ", since {} ({})",
                utc_timestamp(since),
                format_seconds(held)
            );
        }
        out.push('\n');
    }
    for (i, entry) in status.etcd_queue.iter().enumerate() {
        let role = if i == 0 { "holder" } else { "waiter" };
        let _ = write!(out, "  {role:<8} {}", entry.describe());
        if let Some(age) = entry
            .owner
            .as_ref()
            .and_then(|o| o.since.as_deref())
            .and_then(parse_utc_timestamp)
            .and_then(age_of)
        {
            let _ = write!(out, " ({})", format_seconds(age));
        }
        if entry.owner.is_some() {
            let _ = write!(
                out,
                ", key {}, revision {}",
                entry.key, entry.create_revision
            );
        }
        out.push('\n');
    }
    for w in &status.waiters {
        let who = w
            .pid
            .map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"));
        let what = w
            .command
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  waiter   {who}{what}, {}", w.mode);
    }
    if let Some(m) = &status.marker {
        let _ = write!(out, "  marker   {}", m.verdict.name());
        if let (Some(pid), Some(host)) = (m.pid, &m.host) {
            let _ = write!(out, ": pid {pid} on host {host}");
        }
        if let Some(token) = &m.start_token {
            let _ = write!(out, ", start token {token}");
        }
        if let Some(note) = &m.note {
            let _ = write!(out, " ({note})");
        }
        out.push('\n');
    }
    for w in &status.warnings {
        let _ = writeln!(out, "  warning  {w}");
    }
    out
}

/// The kernel's lock lines for the lock's inode (for `-v`).
#[must_use]
pub fn render_kernel_lines(status: &LockStatus) -> String {
    let mut out = String::new();
    for line in &status.kernel_lines {
        let _ = writeln!(out, "  kernel   {line}");
    }
    out
}

/// The JSON document for several locks: `{"locks":[…]}`.
#[must_use]
pub fn render_json(statuses: &[LockStatus]) -> String {
    let locks: Vec<String> = statuses.iter().map(lock_json).collect();
    format!("{{\"locks\":[{}]}}\n", locks.join(","))
}

fn lock_json(s: &LockStatus) -> String {
    let mut holders: Vec<String> = s
        .holders
        .iter()
        .map(|h| {
            format!(
                "{{\"pid\":{},\"command\":{},\"user\":{},\"since\":{},\"flockrun\":{},\"child_pid\":{},\"child_command\":{}}}",
                h.pid,
                json_str(&h.command),
                opt(h.user.as_deref().map(json_str)),
                opt(h.since.map(|t| json_str(&utc_timestamp(t)))),
                h.flockrun,
                opt(h.child_pid.map(|p| p.to_string())),
                opt(h.child_command.as_deref().map(json_str)),
            )
        })
        .collect();
    let mut waiters: Vec<String> = s
        .waiters
        .iter()
        .map(|w| {
            format!(
                "{{\"pid\":{},\"command\":{},\"mode\":{}}}",
                opt(w.pid.map(|p| p.to_string())),
                opt(w.command.as_deref().map(json_str)),
                json_str(w.mode)
            )
        })
        .collect();
    for (i, entry) in s.etcd_queue.iter().enumerate() {
        let owner = entry.owner.clone().unwrap_or_default();
        let json = format!(
            "{{\"pid\":{},\"host\":{},\"command\":{},\"since\":{},\"key\":{},\"revision\":{},\"lease\":{}}}",
            opt(owner.pid.map(|p| p.to_string())),
            opt(owner.host.as_deref().map(json_str)),
            opt(owner.command.as_deref().map(json_str)),
            opt(owner.since.as_deref().map(json_str)),
            json_str(&entry.key),
            entry.create_revision,
            json_str(&crate::etcd::lease_hex(entry.lease)),
        );
        if i == 0 {
            holders.push(json);
        } else {
            waiters.push(json);
        }
    }
    let marker = s.marker.as_ref().map(|m| {
        format!(
            "{{\"pid\":{},\"host\":{},\"start_token\":{},\"verdict\":{},\"note\":{}}}",
            opt(m.pid.map(|p| p.to_string())),
            opt(m.host.as_deref().map(json_str)),
            opt(m.start_token.as_deref().map(json_str)),
            json_str(m.verdict.name()),
            opt(m.note.as_deref().map(json_str)),
        )
    });
    let warnings: Vec<String> = s.warnings.iter().map(|w| json_str(w)).collect();
    format!(
        "{{\"path\":{},\"exists\":{},\"kind\":{},\"state\":{},\"mode\":{},\"holders\":[{}],\"waiters\":[{}],\"marker\":{},\"warnings\":[{}]}}",
        json_str(&s.path.to_string_lossy()),
        s.exists,
        opt(s.kind.map(|k| json_str(k.name()))),
        json_str(s.state.name()),
        opt(s.mode.map(json_str)),
        holders.join(","),
        waiters.join(","),
        opt(marker),
        warnings.join(",")
    )
}

fn opt(value: Option<String>) -> String {
    value.unwrap_or_else(|| "null".to_owned())
}

/// A JSON string literal, escaping quotes, backslashes and control characters.
fn json_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_460_401), "2026-11-23T19:00:01Z");
    }

    #[test]
    fn parses_utc_timestamps_back() {
        for secs in [0, 951_782_400, 1_795_460_401, 4_102_444_799] {
            assert_eq!(parse_utc_timestamp(&utc_timestamp(secs)), Some(secs));
        }
        for bad in [
            "",
            "2026-11-23 19:00:01Z",
            "2026-13-01T00:00:00Z",
            "2026-11-23T19:00:01",
            "+026-11-23T19:00:01Z",
        ] {
            assert_eq!(parse_utc_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
