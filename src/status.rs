//! What `flockrun status` reports of a lock: its kind, whether it is held, by whom and since
//! when, who waits, and what could not be seen; rendered for people or as one JSON document
//! whose field names are part of the interface (documented in README.md). Each kind fills a
//! report in (see `Kind::inspect_file`); this module knows no kind.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration::format_seconds;
use crate::identity::readable_host;
use crate::inspect::process::{ProcessInfo, user_name};
use crate::inspect::sighting::{Holder, Sighting};
use crate::mode::LockMode;
use crate::utc::{parse_utc_timestamp, utc_timestamp};

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
    /// held, stale, malformed, foreign host, or for a lease expired.
    pub verdict: &'static str,
    /// Why it is malformed, or what kind of record it is.
    pub note: Option<String>,
    /// For a `filelock/2` record: lease, exclusive, or the unknown mode it names.
    pub mode: Option<String>,
    /// For a lease: its TTL in seconds.
    pub ttl: Option<f64>,
    /// For a lease: how long ago it was last renewed, by this host's clock against the
    /// file's modification time.
    pub renewed_ago: Option<Duration>,
}

/// A participant of a soft reader/writer lock, in one of its layouts.
#[derive(Debug, Clone)]
pub struct RwMemberReport {
    /// `v1` or `v2`.
    pub layout: &'static str,
    /// `writer` or `reader`; `None` for a v2 participant that has not entered (its record
    /// does not say which it wants).
    pub role: Option<&'static str>,
    pub pid: Option<i32>,
    pub host: Option<String>,
    /// Its claim token.
    pub token: Option<String>,
    /// How long ago its record was last renewed, by this host's clock against the file's
    /// modification time.
    pub heartbeat_ago: Option<Duration>,
    /// `live`, `stale` (not renewed within its threshold: the next contender evicts it) or
    /// `dead` (its process is gone from this host).
    pub verdict: &'static str,
}

/// A lock held on a byte range of the file.
#[derive(Debug, Clone)]
pub struct RangeReport {
    pub mode: &'static str,
    pub start: u64,
    /// The last byte; `None` when the range runs to the end of the file.
    pub end: Option<u64>,
}

/// A semaphore (`--slots N`): its number of slots and who holds which.
#[derive(Debug, Clone, Default)]
pub struct SemaphoreReport {
    /// N as the holders recorded it; `None` when no record is there (no holder).
    pub slots: Option<u16>,
    /// The held slots, lowest first.
    pub held: Vec<SlotReport>,
}

/// One held slot of a semaphore.
#[derive(Debug, Clone)]
pub struct SlotReport {
    pub slot: u16,
    /// The holding process, when this host can see it.
    pub holder: Option<HolderReport>,
    /// For a marker slot: the pid and host its marker names, and its verdict (held, stale,
    /// expired, malformed, foreign host).
    pub pid: Option<i32>,
    pub host: Option<String>,
    pub verdict: Option<&'static str>,
    /// Since when the slot is held (seconds since the epoch) and what the holder runs, when
    /// only a record says so (an etcd key's value); a visible holder's are in `holder`.
    pub since: Option<u64>,
    pub command: Option<String>,
}

/// What a soft reader/writer lock's files say beyond holders and waiters.
#[derive(Debug, Clone, Default)]
pub struct RwReport {
    /// The layouts whose files exist: `v1`, `v2`.
    pub layouts: Vec<&'static str>,
    /// Layout v2's latest generation.
    pub generation: Option<u64>,
}

/// The status of one lock.
#[derive(Debug, Clone)]
pub struct LockStatus {
    pub path: PathBuf,
    pub exists: bool,
    /// The kind's name; `None` for a lock file that does not exist (and no `--kind`).
    pub kind: Option<&'static str>,
    pub state: State,
    pub mode: Option<&'static str>,
    pub holders: Vec<HolderReport>,
    /// A holder on another host that this host cannot see, in words (a process on another
    /// NFS client: the server says the lock is held, not by whom).
    pub elsewhere: Option<String>,
    pub waiters: Vec<WaiterReport>,
    pub marker: Option<MarkerReport>,
    pub warnings: Vec<String>,
    /// The `/proc/locks` lines on the lock's inode at the time of inspection.
    pub kernel_lines: Vec<String>,
    /// For an etcd lock: its queue, holder first (then `holders` and `waiters` are empty).
    pub etcd_queue: Vec<crate::kind::etcd::mutex::QueueEntry>,
    /// For a lock held in a database server: its sessions, each with whether it holds
    /// (`true`) or waits, holders first (then `holders` and `waiters` are empty).
    pub sessions: Vec<(bool, SessionReport)>,
    /// For a lock held in a database server: the key it is, as the server sees it.
    pub server_key: Option<String>,
    /// Locks held on part of the file only (OFD byte ranges).
    pub ranges: Vec<RangeReport>,
    /// For a soft reader/writer lock: its participants (then `holders` and `waiters` are
    /// empty) and what its files say.
    pub rw_holders: Vec<RwMemberReport>,
    pub rw_waiters: Vec<RwMemberReport>,
    pub soft_rw: Option<RwReport>,
    /// For a semaphore: N and the held slots (the holders are in `holders` too).
    pub semaphore: Option<SemaphoreReport>,
    /// For a Redis lock: its key and what the key holds.
    pub redis: Option<RedisReport>,
}

/// A Redis lock's key as `status` read it.
#[derive(Debug, Clone, Default)]
pub struct RedisReport {
    pub key: String,
    /// The holder, from a flockrun's record in the key.
    pub owner: Option<crate::kind::network::owner::Owner>,
    /// The holder in words (a foreign value shown as it is), with its time left.
    pub described: Option<String>,
    /// The key's value as it is; `None` when the key does not exist.
    pub value: Option<String>,
    /// `None`: no expiry (or no key).
    pub ttl_left: Option<Duration>,
    /// The last fencing token handed out.
    pub fence: Option<String>,
}

impl LockStatus {
    /// A report on `path` that says nothing yet: free, kind unknown.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        LockStatus {
            path,
            exists: false,
            kind: None,
            state: State::Free,
            mode: None,
            holders: Vec::new(),
            elsewhere: None,
            waiters: Vec::new(),
            marker: None,
            warnings: Vec::new(),
            kernel_lines: Vec::new(),
            etcd_queue: Vec::new(),
            sessions: Vec::new(),
            server_key: None,
            ranges: Vec::new(),
            rw_holders: Vec::new(),
            rw_waiters: Vec::new(),
            soft_rw: None,
            semaphore: None,
            redis: None,
        }
    }
}

/// A database session that holds or waits for a lock: a flockrun's (with what it recorded
/// of itself, as far as the server lets this role read it) or another program's.
#[derive(Debug, Clone, Default)]
pub struct SessionReport {
    /// The session in words, as busy messages say it.
    pub described: String,
    pub pid: Option<i32>,
    pub host: Option<String>,
    pub command: Option<String>,
    pub since: Option<String>,
    /// The server process serving the session.
    pub backend_pid: i32,
    pub user: Option<String>,
    pub application: Option<String>,
    pub client: Option<String>,
    /// `exclusive` or `shared`.
    pub mode: String,
}

/// Fills in state, mode, holders, waiters and warnings from what was seen of a lock the
/// kernel keeps (flock, OFD, SQLite's POSIX locks), naming modes with `mode_name`.
pub fn fill_from_sighting(
    status: &mut LockStatus,
    sighting: &Sighting,
    mode_name: fn(LockMode) -> &'static str,
) {
    let held = sighting.held_mode.is_some() || !sighting.holders.is_empty();
    status.state = if held { State::Held } else { State::Free };
    status.mode = sighting
        .held_mode
        .or_else(|| sighting.holders.first().map(|h| h.mode))
        .map(mode_name);
    status.holders = sighting.holders.iter().map(holder_report).collect();
    status.waiters = sighting
        .waiters
        .iter()
        .map(|w| WaiterReport {
            pid: (w.pid > 0).then_some(w.pid),
            command: w.process.as_ref().map(|p| p.command(usize::MAX)),
            mode: mode_name(w.mode),
        })
        .collect();
    status.warnings.clone_from(&sighting.warnings);
    status.ranges = sighting
        .held_ranges
        .iter()
        .map(|&(mode, start, end)| RangeReport {
            mode: mode_name(mode),
            start,
            end,
        })
        .collect();
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
}

/// A holder as `status` reports it.
#[must_use]
pub fn holder_report(holder: &Holder) -> HolderReport {
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

fn age_of(since: u64) -> Option<Duration> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    now.checked_sub(since).map(Duration::from_secs)
}

/// The first line: `PATH: STATE (MODE, KIND)`.
fn render_title(out: &mut String, status: &LockStatus) {
    let kind = status.kind.unwrap_or("");
    let _ = write!(out, "{}: {}", status.path.display(), status.state.name());
    match (status.exists, status.mode) {
        (false, _) if status.semaphore.is_some() => {
            let _ = write!(
                out,
                " ({}{kind}: slot markers beside it)",
                status.mode.map(|m| format!("{m}, ")).unwrap_or_default()
            );
        }
        (false, _) => out.push_str(" (does not exist)"),
        (true, Some(mode)) => {
            let _ = write!(out, " ({mode}, {kind})");
        }
        (true, None) => {
            let _ = write!(out, " ({kind})");
        }
    }
}

/// A Redis lock's holder (from its record, or the value as it is) and its key.
fn render_redis(out: &mut String, status: &LockStatus) {
    let Some(r) = &status.redis else {
        return;
    };
    if let Some(described) = &r.described {
        let _ = write!(out, "  holder   {described}");
        if let Some(age) = r
            .owner
            .as_ref()
            .and_then(|o| o.since.as_deref())
            .and_then(parse_utc_timestamp)
            .and_then(age_of)
        {
            let _ = write!(out, " (held {})", format_seconds(age));
        }
        out.push('\n');
    }
    let _ = write!(out, "  key      {}", r.key);
    if let Some(fence) = &r.fence {
        let _ = write!(out, ", last fencing token {fence}");
    }
    out.push('\n');
}

/// The human form: a short aligned block per lock.
#[must_use]
pub fn render_human(status: &LockStatus) -> String {
    let mut out = String::new();
    render_title(&mut out, status);
    out.push('\n');
    if status.semaphore.is_some() {
        render_semaphore(&mut out, status);
    } else {
        render_holders(&mut out, status);
    }
    // The oldest key holds, or for a semaphore the N oldest (shown as slots above).
    let holding = status.semaphore.as_ref().map_or(1, |s| s.held.len());
    for (i, entry) in status.etcd_queue.iter().enumerate() {
        if i < holding && status.semaphore.is_some() {
            continue;
        }
        let role = if i < holding { "holder" } else { "waiter" };
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
    for (granted, session) in &status.sessions {
        let role = if *granted { "holder" } else { "waiter" };
        let _ = write!(out, "  {role:<8} {}", session.described);
        if let Some(age) = session
            .since
            .as_deref()
            .and_then(parse_utc_timestamp)
            .and_then(age_of)
        {
            let _ = write!(out, " ({})", format_seconds(age));
        }
        let _ = writeln!(out, ", {}", session.mode);
    }
    if let Some(key) = &status.server_key {
        let _ = writeln!(out, "  key      {key}");
    }
    render_redis(&mut out, status);
    for r in &status.ranges {
        let end = r
            .end
            .map_or_else(|| "end of file".to_owned(), |e| e.to_string());
        let _ = writeln!(out, "  range    bytes {} to {end}, {}", r.start, r.mode);
    }
    render_soft_rw(&mut out, status);
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
        let _ = write!(out, "  marker   {}", m.verdict);
        if let (Some(pid), Some(host)) = (m.pid, &m.host) {
            let _ = write!(out, ": pid {pid} on host {}", readable_host(host));
        }
        if let Some(ttl) = m.ttl {
            let _ = write!(out, ", lease TTL {ttl} s");
            if let Some(ago) = m.renewed_ago {
                let _ = write!(out, ", renewed {} ago", format_seconds(ago));
            }
        } else if let Some(mode) = &m.mode {
            let _ = write!(out, ", mode {mode}");
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

/// The lines of a semaphore: how many slots are held, then each held slot.
fn render_semaphore(out: &mut String, status: &LockStatus) {
    let Some(semaphore) = &status.semaphore else {
        return;
    };
    let total = semaphore
        .slots
        .map_or_else(|| "?".to_owned(), |n| n.to_string());
    let _ = writeln!(out, "  slots    {} of {total} held", semaphore.held.len());
    for slot in &semaphore.held {
        let _ = write!(out, "  slot {:<3} ", slot.slot);
        if let Some(h) = &slot.holder {
            describe_holder(out, h);
        } else {
            if let (Some(pid), Some(host)) = (slot.pid, &slot.host) {
                let _ = write!(out, "pid {pid} on host {}", readable_host(host));
            } else {
                out.push_str("held by a process this host cannot see");
            }
            if let Some(command) = &slot.command {
                let _ = write!(out, " ({command})");
            }
            if let Some(since) = slot.since {
                let _ = write!(out, ", since {}", utc_timestamp(since));
            }
        }
        if let Some(host) = slot.host.as_deref().filter(|_| slot.holder.is_some()) {
            let _ = write!(out, ", host {}", readable_host(host));
        }
        if let Some(verdict) = slot.verdict.filter(|v| *v != "held") {
            let _ = write!(out, " ({verdict})");
        }
        out.push('\n');
    }
}

/// `pid 4242 flockrun running pid 4243 (backup.sh), user root, since … (3m12s)`.
fn describe_holder(out: &mut String, h: &HolderReport) {
    let _ = write!(out, "pid {} ", h.pid);
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
}

/// The holder lines: processes this host sees, and one it cannot see on another host.
fn render_holders(out: &mut String, status: &LockStatus) {
    for h in &status.holders {
        out.push_str("  holder   ");
        describe_holder(out, h);
        out.push('\n');
    }
    if let Some(who) = &status.elsewhere {
        let _ = writeln!(out, "  holder   {who}, pid unknown");
    }
}

/// The lines of a soft reader/writer lock: its layouts, holders and waiters.
fn render_soft_rw(out: &mut String, status: &LockStatus) {
    if let Some(rw) = &status.soft_rw {
        let _ = write!(out, "  layouts  {}", rw.layouts.join(", "));
        if let Some(generation) = rw.generation {
            let _ = write!(out, " (generation {generation})");
        }
        out.push('\n');
    }
    for (label, members) in [
        ("holder", &status.rw_holders),
        ("waiter", &status.rw_waiters),
    ] {
        for m in members {
            let _ = writeln!(out, "  {label:<8} {}", describe_rw_member(m));
        }
    }
}

/// A soft reader/writer participant as a person reads it: `writer pid 4242 on host vm (v2),
/// renewed 1.2s ago, live`.
#[must_use]
pub fn describe_rw_member(m: &RwMemberReport) -> String {
    let mut text = m.role.unwrap_or("participant").to_owned();
    match (m.pid, &m.host) {
        (Some(pid), Some(host)) => {
            let _ = write!(text, " pid {pid} on host {}", readable_host(host));
        }
        (Some(pid), None) => {
            let _ = write!(text, " pid {pid}");
        }
        _ => text.push_str(" (record unreadable)"),
    }
    let _ = write!(text, " ({})", m.layout);
    if let Some(ago) = m.heartbeat_ago {
        let _ = write!(text, ", renewed {} ago", format_seconds(ago));
    }
    let _ = write!(text, ", {}", m.verdict);
    text
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
    let mut holders: Vec<String> = s.holders.iter().map(holder_json).collect();
    if let Some(who) = &s.elsewhere {
        holders.push(format!("{{\"pid\":null,\"elsewhere\":{}}}", json_str(who)));
    }
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
    let holding = s.semaphore.as_ref().map_or(1, |sem| sem.held.len());
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
            json_str(&crate::kind::etcd::target::lease_hex(entry.lease)),
        );
        if i < holding {
            holders.push(json);
        } else {
            waiters.push(json);
        }
    }
    for (granted, session) in &s.sessions {
        let json = format!(
            "{{\"pid\":{},\"host\":{},\"command\":{},\"since\":{},\"backend_pid\":{},\"user\":{},\"application\":{},\"client\":{},\"mode\":{}}}",
            opt(session.pid.map(|p| p.to_string())),
            opt(session.host.as_deref().map(json_str)),
            opt(session.command.as_deref().map(json_str)),
            opt(session.since.as_deref().map(json_str)),
            session.backend_pid,
            opt(session.user.as_deref().map(json_str)),
            opt(session.application.as_deref().map(json_str)),
            opt(session.client.as_deref().map(json_str)),
            json_str(&session.mode),
        );
        if *granted {
            holders.push(json);
        } else {
            waiters.push(json);
        }
    }
    holders.extend(redis_holder_json(s));
    for (members, list) in [(&s.rw_holders, &mut holders), (&s.rw_waiters, &mut waiters)] {
        for m in members {
            list.push(format!(
                "{{\"pid\":{},\"host\":{},\"layout\":{},\"role\":{},\"token\":{},\"heartbeat_ago\":{},\"verdict\":{}}}",
                opt(m.pid.map(|p| p.to_string())),
                opt(m.host.as_deref().map(json_str)),
                json_str(m.layout),
                opt(m.role.map(json_str)),
                opt(m.token.as_deref().map(json_str)),
                opt(m.heartbeat_ago.map(|d| format!("{:.3}", d.as_secs_f64()))),
                json_str(m.verdict),
            ));
        }
    }
    let ranges = ranges_json(s);
    let soft_rw = soft_rw_json(s);
    let marker = marker_json(s);
    let semaphore = semaphore_json(s);
    let warnings: Vec<String> = s.warnings.iter().map(|w| json_str(w)).collect();
    format!(
        "{{\"path\":{},\"exists\":{},\"kind\":{},\"state\":{},\"mode\":{},\"holders\":[{}],\"waiters\":[{}],\"marker\":{},\"soft_rw\":{},\"semaphore\":{},\"ranges\":[{}],\"warnings\":[{}]}}",
        json_str(&s.path.to_string_lossy()),
        s.exists,
        opt(s.kind.map(json_str)),
        json_str(s.state.name()),
        opt(s.mode.map(json_str)),
        holders.join(","),
        waiters.join(","),
        opt(marker),
        opt(soft_rw),
        opt(semaphore),
        ranges.join(","),
        warnings.join(",")
    )
}

/// A Redis lock's holder: `{pid, host, command, since, key, ttl_left, flockrun, value}`.
fn redis_holder_json(s: &LockStatus) -> Option<String> {
    let r = s.redis.as_ref()?;
    let value = r.value.as_ref()?;
    let owner = r.owner.clone().unwrap_or_default();
    Some(format!(
        "{{\"pid\":{},\"host\":{},\"command\":{},\"since\":{},\"key\":{},\"ttl_left\":{},\"flockrun\":{},\"value\":{}}}",
        opt(owner.pid.map(|p| p.to_string())),
        opt(owner.host.as_deref().map(json_str)),
        opt(owner.command.as_deref().map(json_str)),
        opt(owner.since.as_deref().map(json_str)),
        json_str(&r.key),
        opt(r.ttl_left.map(|d| format!("{:.3}", d.as_secs_f64()))),
        r.owner.is_some(),
        json_str(value),
    ))
}

/// A process holder: `{pid, command, user, since, flockrun, child_pid, child_command}`.
fn holder_json(h: &HolderReport) -> String {
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
}

/// The `ranges` of a lock: `{start, end, mode}` each.
fn ranges_json(s: &LockStatus) -> Vec<String> {
    s.ranges
        .iter()
        .map(|r| {
            format!(
                "{{\"start\":{},\"end\":{},\"mode\":{}}}",
                r.start,
                opt(r.end.map(|e| e.to_string())),
                json_str(r.mode)
            )
        })
        .collect()
}

/// The `soft_rw` object of a soft reader/writer lock, `None` for other kinds.
fn soft_rw_json(s: &LockStatus) -> Option<String> {
    s.soft_rw.as_ref().map(|rw| {
        let layouts: Vec<String> = rw.layouts.iter().map(|l| json_str(l)).collect();
        format!(
            "{{\"layouts\":[{}],\"generation\":{}}}",
            layouts.join(","),
            opt(rw.generation.map(|g| g.to_string()))
        )
    })
}

/// The `semaphore` object: `{slots, held, holders: [{slot, pid, host, command, user, since,
/// flockrun, child_pid, child_command, verdict}]}`; `None` for a lock that is no semaphore.
fn semaphore_json(s: &LockStatus) -> Option<String> {
    s.semaphore.as_ref().map(|sem| {
        let holders: Vec<String> = sem
            .held
            .iter()
            .map(|slot| {
                let h = slot.holder.as_ref();
                format!(
                    "{{\"slot\":{},\"pid\":{},\"host\":{},\"command\":{},\"user\":{},\"since\":{},\"flockrun\":{},\"child_pid\":{},\"child_command\":{},\"verdict\":{}}}",
                    slot.slot,
                    opt(h.map(|h| h.pid).or(slot.pid).map(|p| p.to_string())),
                    opt(slot.host.as_deref().map(json_str)),
                    opt(h.map(|h| h.command.as_str()).or(slot.command.as_deref()).map(json_str)),
                    opt(h.and_then(|h| h.user.as_deref()).map(json_str)),
                    opt(h.and_then(|h| h.since).or(slot.since).map(|t| json_str(&utc_timestamp(t)))),
                    h.is_some_and(|h| h.flockrun),
                    opt(h.and_then(|h| h.child_pid).map(|p| p.to_string())),
                    opt(h.and_then(|h| h.child_command.as_deref()).map(json_str)),
                    opt(slot.verdict.map(json_str)),
                )
            })
            .collect();
        format!(
            "{{\"slots\":{},\"held\":{},\"holders\":[{}]}}",
            opt(sem.slots.map(|n| n.to_string())),
            sem.held.len(),
            holders.join(",")
        )
    })
}

/// The `marker` object of a soft lock, `None` for other kinds.
fn marker_json(s: &LockStatus) -> Option<String> {
    s.marker.as_ref().map(|m| {
        format!(
            "{{\"pid\":{},\"host\":{},\"start_token\":{},\"verdict\":{},\"note\":{},\"mode\":{},\"ttl\":{},\"renewed_ago\":{}}}",
            opt(m.pid.map(|p| p.to_string())),
            opt(m.host.as_deref().map(json_str)),
            opt(m.start_token.as_deref().map(json_str)),
            json_str(m.verdict),
            opt(m.note.as_deref().map(json_str)),
            opt(m.mode.as_deref().map(json_str)),
            opt(m.ttl.map(|t| format!("{t:?}"))),
            opt(m.renewed_ago.map(|d| format!("{:.3}", d.as_secs_f64()))),
        )
    })
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
    fn escapes_json_strings() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
