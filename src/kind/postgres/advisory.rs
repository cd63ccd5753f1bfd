//! The lock: a PostgreSQL advisory lock on a connection of flockrun's own, the same lock
//! `psql -c "select pg_advisory_lock(hashtext('NAME'))"` takes, kept as a lease.
//!
//! * Session mode (the default): a session-level lock. The session's own settings make the
//!   server end it, and free the lock, within about the TTL of flockrun going silent:
//!   `idle_session_timeout` (PostgreSQL 14 and later) for a holder, server-side TCP
//!   keepalives with `client_connection_check_interval` for a waiter that was cut off (so
//!   it is never granted the lock as a phantom). A heartbeat every third of the TTL keeps
//!   the session busy enough, and checks that the lock is still the session's.
//! * Pooled mode (`pooled=1`): a transaction-level lock inside one open READ COMMITTED
//!   transaction that never takes a transaction id, with `idle_in_transaction_session_timeout`
//!   as the TTL, which works through a transaction-pooling PgBouncer.
//!
//! Before taking a session lock flockrun makes sure it is talking to a primary
//! (`pg_is_in_recovery()`) in a session of its own (a setting made on this connection must
//! not show on a second one, as it does behind a transaction pooler).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::conninfo::{Conninfo, LockKey, Server, quote};
use super::tls::Tls;
use super::wire::{Conn, Failure, Row, Startup};
use crate::error::Error;
use crate::inspect::sighting::Sighting;
use crate::kind::network::owner::Owner;
use crate::kind::network::session::{Liveness, Renew, Renewal, locked};
use crate::mode::LockMode;
use crate::supervise::LostWatch;
use crate::wait::{self, Deadline, WaitObserver};

/// `--ttl` when not given.
pub const DEFAULT_TTL: u32 = 10;
/// Heartbeats per TTL.
const BEATS_PER_TTL: u32 = 3;
/// How long `status` and the final unlock may take.
const SHORT_BUDGET: Duration = Duration::from_secs(5);
const RELEASE_BUDGET: Duration = Duration::from_secs(2);
/// `server_version_num` from which `idle_session_timeout` and
/// `client_connection_check_interval` exist.
const PG14: u32 = 140_000;
/// The `application_name` limit (NAMEDATALEN - 1).
const APP_NAME_BYTES: usize = 63;

/// The kind's name for messages.
pub const SERVER: &str = "PostgreSQL";

/// What the lock needs to be taken.
pub struct Target {
    pub info: Conninfo,
    pub tls: Tls,
    pub ttl: u32,
    pub mode: LockMode,
    pub command: String,
}

/// flockrun's `application_name`: `flockrun:PID@HOST`, cut to what the server keeps.
fn application_name() -> String {
    let mut name = format!(
        "flockrun:{}@{}",
        std::process::id(),
        crate::identity::host_name()
    );
    while name.len() > APP_NAME_BYTES {
        name.pop();
    }
    name
}


impl Target {
    fn startup<'a>(&'a self, application_name: &'a str) -> Startup<'a> {
        Startup {
            info: &self.info,
            tls: &self.tls,
            application_name,
            keepalive_idle: Duration::from_secs(u64::from(self.ttl / BEATS_PER_TTL).max(1)),
        }
    }

    /// The password for `server`: the one given (LOCK, service, `PGPASSWORD`), else the
    /// password file's; `warn` hears why a password file was ignored.
    fn password(&self, server: &Server, warn: &mut dyn FnMut(String)) -> Option<String> {
        self.info
            .password
            .clone()
            .or_else(|| self.info.passfile_password(server, warn))
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl))
    }

    fn unreachable(&self, problems: Vec<String>) -> Error {
        Error::ServerUnreachable {
            lock: self.info.shown.clone(),
            server: SERVER,
            problems,
        }
    }

    fn refused(&self, message: String) -> Error {
        Error::ServerRefused {
            lock: self.info.shown.clone(),
            server: SERVER,
            message,
        }
    }

    fn unfit(&self, message: String) -> Error {
        Error::ServerUnfit {
            lock: self.info.shown.clone(),
            message,
        }
    }

    /// Maps a failed call on the lock's connection.
    fn failed(&self, failure: Failure, doing: &str) -> Error {
        match failure {
            Failure::Aborted => match wait::stop_signal() {
                Some(signal) => Error::Interrupted { signal },
                None => Error::Internal(anyhow::anyhow!("a PostgreSQL call stopped for no reason")),
            },
            Failure::Late => self.unreachable(vec![format!("{doing}: no answer in time")]),
            Failure::Unreachable(m) => self.unreachable(vec![format!("{doing}: {m}")]),
            Failure::Refused(m) => self.refused(m),
            Failure::Sql { code, message } => {
                self.refused(format!("{doing}: {message} (SQLSTATE {code})"))
            }
        }
    }

    /// A session with the first server, in LOCK's order, that takes us and is a primary.
    /// `warn` hears what a person should know (an ignored password file).
    fn connect(
        &self,
        application_name: &str,
        until: Instant,
        warn: &mut dyn FnMut(String),
    ) -> Result<Conn, Error> {
        let abort = || wait::stop_signal().is_some();
        let startup = self.startup(application_name);
        let mut problems = Vec::new();
        let mut standbys = Vec::new();
        for server in &self.info.servers {
            let mut password = || self.password(server, warn);
            let mut conn = match Conn::open(&startup, server, &mut password, until, &abort) {
                Ok(conn) => conn,
                Err(Failure::Unreachable(m)) => {
                    problems.push(m);
                    continue;
                }
                Err(Failure::Late) => {
                    problems.push(format!("{server}: no answer in time"));
                    break;
                }
                Err(e) => return Err(self.failed(e, &format!("logging in to {server}"))),
            };
            if conn.params.get("standard_conforming_strings").map(String::as_str) != Some("on") {
                return Err(self.unfit(format!(
                    "{server} has standard_conforming_strings off; flockrun needs it on \
                     (the default since PostgreSQL 9.1)"
                )));
            }
            let rows = conn
                .query("SELECT pg_is_in_recovery()", until, &abort)
                .map_err(|e| self.failed(e, &format!("asking {server} whether it is a standby")))?;
            if first(&rows).as_deref() == Some("t") {
                standbys.push(server.to_string());
                conn.terminate();
                continue;
            }
            return Ok(conn);
        }
        if !standbys.is_empty() && problems.is_empty() {
            return Err(self.unfit(format!(
                "{} is a hot standby: advisory locks taken there are its own and nobody on \
                 the primary sees them; name the primary in LOCK (with several hosts, \
                 flockrun takes the first primary)",
                standbys.join(", ")
            )));
        }
        problems.extend(standbys.iter().map(|s| format!("{s} is a standby")));
        Err(self.unreachable(problems))
    }

    fn version(conn: &Conn) -> u32 {
        conn.params
            .get("server_version")
            .and_then(|v| {
                let mut parts = v.split(|c: char| !c.is_ascii_digit());
                let major: u32 = parts.next()?.parse().ok()?;
                Some(major * 10_000)
            })
            .unwrap_or(0)
    }

    /// Whether `conn` shares its server session with other clients (a transaction-pooling
    /// pooler): a setting made on it shows on a second connection.
    fn shares_sessions(&self, conn: &mut Conn, application_name: &str, until: Instant) -> Result<bool, Error> {
        let abort = || wait::stop_signal().is_some();
        let probe = format!("{}-{}", std::process::id(), crate::kind::marker::file::random_hex());
        conn.query(
            &format!("SELECT set_config('flockrun.probe', {}, false)", quote(&probe)),
            until,
            &abort,
        )
        .map_err(|e| self.failed(e, "probing for a pooler"))?;
        let startup = self.startup(application_name);
        let mut password = || self.password(&conn.server, &mut |_| {});
        let mut second = Conn::open(&startup, &conn.server, &mut password, until, &abort)
            .map_err(|e| self.failed(e, "probing for a pooler"))?;
        let rows = second
            .query("SELECT current_setting('flockrun.probe', true)", until, &abort)
            .map_err(|e| self.failed(e, "probing for a pooler"));
        second.terminate();
        Ok(first(&rows?).as_deref() == Some(probe.as_str()))
    }
}

fn first(rows: &[Row]) -> Option<String> {
    rows.first().and_then(|r| r.first()).cloned().flatten()
}

/// A session row about the lock, from `pg_locks` and `pg_stat_activity`.
#[derive(Debug, Clone, Default)]
pub struct SessionRow {
    pub granted: bool,
    pub backend_pid: i32,
    pub mode: String,
    pub user: Option<String>,
    pub application: Option<String>,
    pub client: Option<String>,
    pub backend_start: Option<String>,
    /// What a flockrun says of itself in its heartbeat's comment, when the role may read it.
    pub owner: Option<Owner>,
}

impl SessionRow {
    /// Whether a flockrun holds or waits in this session (its `application_name`).
    #[must_use]
    pub fn flockrun_pid_host(&self) -> Option<(i32, String)> {
        let rest = self.application.as_deref()?.strip_prefix("flockrun:")?;
        let (pid, host) = rest.split_once('@')?;
        Some((pid.parse().ok()?, host.to_owned()))
    }

    /// `pid 4242 on web-1 (./job.sh) since …`, or the session as the server shows it.
    #[must_use]
    pub fn describe(&self) -> String {
        if let Some(owner) = &self.owner {
            return format!("{} (backend {})", owner.describe(), self.backend_pid);
        }
        if let Some((pid, host)) = self.flockrun_pid_host() {
            return format!("pid {pid} on {host} (backend {})", self.backend_pid);
        }
        let mut parts = Vec::new();
        if let Some(user) = &self.user {
            parts.push(format!("user {user}"));
        }
        if let Some(app) = self.application.as_deref().filter(|a| !a.is_empty()) {
            parts.push(format!("application {app}"));
        }
        if let Some(client) = &self.client {
            parts.push(format!("from {client}"));
        }
        if parts.is_empty() {
            format!("backend {}", self.backend_pid)
        } else {
            format!("backend {} ({})", self.backend_pid, parts.join(", "))
        }
    }
}

/// The heartbeat's comment: this flockrun's record, which `status` reads from
/// `pg_stat_activity.query` where the role may see it.
fn record_comment(command: &str) -> String {
    let record = Owner::mine(command, SystemTime::now()).to_string();
    // A comment cannot hold its own end.
    format!("/* flockrun {} */", record.replace("*/", "* /"))
}

/// The sessions that hold or wait for `key`, holders first.
fn sessions(conn: &mut Conn, key: &LockKey, until: Instant) -> Result<Vec<SessionRow>, Failure> {
    let sql = format!(
        "SELECT l.granted, l.pid, l.mode, a.usename, a.application_name, host(a.client_addr), \
         a.backend_start, a.query \
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND {} ORDER BY l.granted DESC, a.backend_start",
        key.pg_locks_filter()
    );
    let rows = conn.query(&sql, until, &|| wait::stop_signal().is_some())?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let col = |i: usize| r.get(i).cloned().flatten();
            let owner = col(7).and_then(|q| {
                let start = q.find("/* flockrun ")? + "/* flockrun ".len();
                let end = q[start..].find(" */")? + start;
                Owner::parse(&q.as_bytes()[start..end])
            });
            SessionRow {
                granted: col(0).as_deref() == Some("t"),
                backend_pid: col(1).and_then(|p| p.parse().ok()).unwrap_or(0),
                mode: match col(2).as_deref() {
                    Some("ShareLock") => "shared".to_owned(),
                    _ => "exclusive".to_owned(),
                },
                user: col(3),
                application: col(4),
                client: col(5),
                backend_start: col(6),
                owner,
            }
        })
        .collect())
}

fn held_by(rows: &[SessionRow]) -> Sighting {
    let holders: Vec<String> = rows.iter().filter(|r| r.granted).map(SessionRow::describe).collect();
    Sighting {
        described: Some(if holders.is_empty() {
            "held".to_owned()
        } else {
            format!("held by {}", holders.join(", "))
        }),
        ..Default::default()
    }
}

/// The sessions of a lock, for `status`.
///
/// # Errors
/// `ServerUnreachable`, `ServerRefused`, `ServerUnfit` as for taking it.
/// Also the key as the server computes it (`hashtext` of a name is the server's).
pub fn status(target: &Target) -> Result<(Vec<SessionRow>, Option<String>), Error> {
    let until = Instant::now() + SHORT_BUDGET;
    let name = application_name();
    let mut conn = target.connect(&name, until, &mut |w| eprintln!("flockrun: warning: {w}"))?;
    let key = &target.info.lock_key;
    let number = match key {
        LockKey::Text(_) => conn
            .query(&format!("SELECT {}", key.sql_args()), until, &|| false)
            .ok()
            .as_deref()
            .and_then(first),
        LockKey::Big(_) | LockKey::Pair(..) => None,
    };
    let rows = sessions(&mut conn, key, until).map_err(|e| target.failed(e, "reading pg_locks"));
    conn.terminate();
    Ok((rows?, number))
}

/// A held advisory lock.
pub struct HeldAdvisory {
    liveness: Arc<Liveness<()>>,
    conn: Arc<Mutex<Option<Conn>>>,
    pooled: bool,
    unlock: String,
    ttl: Duration,
    pub backend_pid: i32,
    pub fence: Option<String>,
    pub waited: Duration,
    /// The connection's socket, for COMMAND to inherit (see `Hold::session_fd`).
    pub socket: std::os::fd::RawFd,
    shown: String,
}

impl HeldAdvisory {
    #[must_use]
    pub fn lost(&self) -> Option<String> {
        self.liveness.lost()
    }

    #[must_use]
    pub fn watch(&self) -> LostWatch {
        self.liveness.watch(self.ttl)
    }

    /// Unlocks and ends the session. A warning when the server could not be told (the lock
    /// is then freed when the server notices the session is gone).
    #[must_use]
    pub fn release(self) -> Option<String> {
        let lost = self.liveness.stop();
        let conn = locked(&self.conn).take();
        let mut conn = conn?;
        if lost {
            return None;
        }
        let until = Instant::now() + RELEASE_BUDGET;
        let sql = if self.pooled { "ROLLBACK" } else { self.unlock.as_str() };
        let result = conn.query(sql, until, &|| false);
        conn.terminate();
        match result {
            Ok(_) => None,
            Err(e) => Some(format!(
                "could not unlock {} ({}); the server frees it when it sees the session end",
                self.shown,
                e.text()
            )),
        }
    }
}

/// The heartbeat: a query that also checks that the lock is still this session's.
struct Heartbeat {
    conn: Arc<Mutex<Option<Conn>>>,
    sql: String,
    backend_pid: i32,
}

impl Renew for Heartbeat {
    type Chore = ();

    fn renew(&mut self, until: Instant, stopping: &dyn Fn() -> bool) -> Renewal {
        let mut guard = locked(&self.conn);
        let Some(conn) = guard.as_mut() else {
            return Renewal::Stopped;
        };
        match conn.query(&self.sql, until, stopping) {
            Ok(rows) => {
                let row = rows.first();
                let col = |i: usize| row.and_then(|r| r.get(i)).cloned().flatten();
                if col(0).and_then(|p| p.parse::<i32>().ok()) != Some(self.backend_pid) {
                    Renewal::Lost(format!(
                        "the heartbeat reached another server session (backend {} instead of \
                         {}): a pooler moved the connection, so the lock may be shared",
                        col(0).unwrap_or_default(),
                        self.backend_pid
                    ))
                } else if col(1).as_deref() != Some("t") {
                    Renewal::Lost("the session no longer holds the lock".to_owned())
                } else {
                    Renewal::Renewed(None)
                }
            }
            Err(Failure::Aborted) => Renewal::Stopped,
            Err(Failure::Late) => Renewal::Lost(
                "the server did not answer the heartbeat in time, so it may free the lock"
                    .to_owned(),
            ),
            Err(e) => Renewal::Lost(format!("the session ended: {}", e.text())),
        }
    }

    /// The first heartbeat, sent as soon as the lock is held, so that `status` can show
    /// this flockrun's record at once.
    fn chore(&mut self, (): (), until: Instant, stopping: &dyn Fn() -> bool) {
        if let Some(conn) = locked(&self.conn).as_mut() {
            let _ = conn.query(&self.sql, until, stopping);
        }
    }
}

/// Sets up `conn` to hold the lock: in session mode, after making sure the session is not
/// shared through a pooler, the settings that make the server free the lock within about
/// the TTL of flockrun going silent; in pooled mode, the transaction that will hold it.
fn prepare(
    target: &Target,
    conn: &mut Conn,
    name: &str,
    reach: Instant,
    observer: &mut dyn WaitObserver,
) -> Result<(), Error> {
    let abort = || wait::stop_signal().is_some();
    let secs = target.ttl;
    if target.info.pooled {
        return conn
            .query(
                &format!(
                    "BEGIN ISOLATION LEVEL READ COMMITTED; \
                     SET LOCAL idle_in_transaction_session_timeout = '{secs}s'"
                ),
                reach,
                &abort,
            )
            .map(drop)
            .map_err(|e| target.failed(e, "opening the holding transaction"));
    }
    if target.shares_sessions(conn, name, reach)? {
        return Err(target.unfit(
            "the connection goes through a pooler that shares server sessions among clients \
             (PgBouncer in transaction mode): a session-level lock there would be granted to \
             other clients too and leak; connect to PostgreSQL directly or through session \
             pooling, or add pooled=1 to LOCK to hold the lock in a transaction, which works \
             through such a pooler"
                .to_owned(),
        ));
    }
    let keepalive = (secs / BEATS_PER_TTL).max(1);
    let mut settings = format!(
        "SET tcp_keepalives_idle = {keepalive}; SET tcp_keepalives_interval = 1; \
         SET tcp_keepalives_count = 3; SET tcp_user_timeout = {}",
        u64::from(secs) * 1000
    );
    if Target::version(conn) >= PG14 {
        let _ = write!(
            settings,
            "; SET idle_session_timeout = '{secs}s'; \
             SET client_connection_check_interval = '1s'"
        );
    } else {
        observer.warn(&format!(
            "{} runs PostgreSQL {} without idle_session_timeout (14 and later): if this host \
             is cut off while it holds the lock, the server frees the lock only when TCP \
             keepalives give up on the connection (about {}s), not within the TTL",
            conn.server,
            conn.params.get("server_version").cloned().unwrap_or_default(),
            keepalive + 3
        ));
    }
    conn.query(&settings, reach, &abort)
        .map(drop)
        .map_err(|e| target.failed(e, "setting up the session"))
}

/// The SQL names of the lock functions for `target`: (`_xact` or not, `_shared` or not).
fn function_parts(target: &Target) -> (&'static str, &'static str) {
    (
        if target.info.pooled { "_xact" } else { "" },
        if target.mode == LockMode::Shared {
            "_shared"
        } else {
            ""
        },
    )
}

/// Waits in the server's queue for the lock, with `lock_timeout` as the deadline's rest.
fn wait_in_queue(
    target: &Target,
    conn: &mut Conn,
    deadline: &Deadline,
    reach: Instant,
) -> Result<(), Error> {
    let abort = || wait::stop_signal().is_some();
    let (scope, suffix) = function_parts(target);
    let key = target.info.lock_key.sql_args();
    let timeout_ms = deadline
        .remaining()
        .map_or(0, |d| d.as_millis().clamp(1, u128::from(u32::MAX)));
    let local = if target.info.pooled { "LOCAL " } else { "" };
    // No client deadline: the server ends the wait (lock_timeout), a stop signal ends it
    // here, and TCP keepalives end it if the server goes away.
    let forever = Instant::now() + Duration::from_secs(u64::from(u32::MAX));
    let result = conn.query(
        &format!("SET {local}lock_timeout = {timeout_ms}; SELECT pg_advisory{scope}_lock{suffix}({key})"),
        forever,
        &abort,
    );
    match result {
        Ok(_) => {
            if !target.info.pooled {
                let _ = conn.query("SET lock_timeout = 0", reach, &abort);
            }
            Ok(())
        }
        Err(Failure::Sql { code, .. }) if code == "55P03" => {
            let rows = sessions(conn, &target.info.lock_key, Instant::now() + SHORT_BUDGET)
                .unwrap_or_default();
            Err(wait::not_acquired(
                std::path::Path::new(&target.info.shown),
                deadline,
                held_by(&rows),
            ))
        }
        Err(Failure::Aborted) => {
            conn.cancel(Instant::now() + Duration::from_secs(1));
            Err(target.failed(Failure::Aborted, "waiting"))
        }
        Err(e) => Err(target.failed(e, "waiting for the lock")),
    }
}

/// The fencing token: a transaction id, taken in its own statement; in pooled mode on a
/// connection of its own (an id inside the holding transaction would hold back vacuum for
/// as long as the lock is held).
fn fence(target: &Target, conn: &mut Conn, name: &str) -> Option<String> {
    let abort = || wait::stop_signal().is_some();
    let sql = if Target::version(conn) >= 130_000 {
        "SELECT pg_current_xact_id()"
    } else {
        "SELECT txid_current()"
    };
    let until = Instant::now() + SHORT_BUDGET;
    if !target.info.pooled {
        return conn.query(sql, until, &abort).ok().as_deref().and_then(first);
    }
    let server = conn.server.clone();
    let mut password = || target.password(&server, &mut |_| {});
    let mut other = Conn::open(&target.startup(name), &server, &mut password, until, &abort).ok()?;
    let rows = other.query(sql, until, &abort).ok();
    other.terminate();
    rows.as_deref().and_then(first)
}

/// A thread that watches the idle connection between heartbeats: the server ends a session
/// it terminates or shuts down with an error message and the connection's end, and the lock
/// is free at that moment, so the hold is declared lost at once rather than at the next
/// heartbeat. Only a message nobody asked for counts: the heartbeat holds the connection
/// while it waits for its own answer.
fn watch_for_the_end(
    liveness: &Arc<Liveness<()>>,
    conn: &Arc<Mutex<Option<Conn>>>,
    socket: std::os::fd::OwnedFd,
) -> Result<(), Error> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let (liveness, conn) = (Arc::clone(liveness), Arc::clone(conn));
    wait::spawn_with_signals_blocked("session-watch", move || {
        while !liveness.ended() {
            let mut fds = [PollFd::new(
                std::os::fd::AsFd::as_fd(&socket),
                PollFlags::POLLIN,
            )];
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(0) | Err(_) => continue,
                Ok(_) => {}
            }
            let mut guard = locked(&conn);
            if liveness.ended() {
                return;
            }
            let Some(session) = guard.as_mut() else {
                return;
            };
            if let Some(reason) = session.unsolicited() {
                liveness.lose(format!("the server ended the session: {reason}"));
                return;
            }
        }
    })
    .map_err(|e| Error::system("starting the PostgreSQL session watch", e))
}

/// Takes the lock, waiting as `deadline` allows.
///
/// # Errors
/// `Busy`/`TimedOut` naming the holder, `Interrupted`, `ServerUnreachable`,
/// `ServerRefused`, `ServerUnfit`.
pub fn acquire(
    target: &Target,
    deadline: &Deadline,
    observer: &mut dyn WaitObserver,
) -> Result<HeldAdvisory, Error> {
    let ttl = target.ttl();
    let reach = crate::kind::network::session::reach_until(deadline, ttl)
        .max(Instant::now() + target.info.connect_timeout.unwrap_or_default());
    let name = application_name();
    let mut warnings = Vec::new();
    let connected = target.connect(&name, reach, &mut |w| warnings.push(w));
    for w in &warnings {
        observer.warn(w);
    }
    let mut conn = connected?;
    let abort = || wait::stop_signal().is_some();
    if let Err(e) = prepare(target, &mut conn, &name, reach, observer) {
        conn.terminate();
        return Err(e);
    }
    let (scope, suffix) = function_parts(target);
    let key = target.info.lock_key.sql_args();
    let tried = conn
        .query(&format!("SELECT pg_try_advisory{scope}_lock{suffix}({key})"), reach, &abort)
        .map_err(|e| target.failed(e, "taking the lock"))?;
    let mut waited_from = None;
    if first(&tried).as_deref() != Some("t") {
        let rows = sessions(&mut conn, &target.info.lock_key, reach).unwrap_or_default();
        let sighting = held_by(&rows);
        if deadline.is_immediate() {
            conn.terminate();
            return Err(wait::not_acquired(
                std::path::Path::new(&target.info.shown),
                deadline,
                sighting,
            ));
        }
        observer.blocked(&sighting);
        waited_from = Some(Instant::now());
        let waited = wait_in_queue(target, &mut conn, deadline, reach);
        observer.finished();
        if let Err(e) = waited {
            conn.terminate();
            return Err(e);
        }
    }
    let fence = fence(target, &mut conn, &name);
    let backend_pid = conn.backend_pid;
    let socket = conn.raw_fd();
    let check = if target.info.pooled {
        "true".to_owned()
    } else {
        format!(
            "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
             AND l.pid = pg_backend_pid() AND {})",
            target.info.lock_key.pg_locks_filter()
        )
    };
    let heartbeat_sql = format!(
        "{} SELECT pg_backend_pid(), {check}",
        record_comment(&target.command)
    );
    let confirmed = Instant::now();
    let shared_conn = Arc::new(Mutex::new(Some(conn)));
    let liveness = Liveness::start(
        Heartbeat {
            conn: Arc::clone(&shared_conn),
            sql: heartbeat_sql,
            backend_pid,
        },
        ttl,
        BEATS_PER_TTL,
        confirmed,
        ("heartbeat", "starting the PostgreSQL heartbeat thread"),
    )?;
    liveness.queue(());
    if let Some(handle) = locked(&shared_conn).as_ref().and_then(|c| c.watch_handle().ok()) {
        watch_for_the_end(&liveness, &shared_conn, handle)?;
    }
    Ok(HeldAdvisory {
        liveness,
        conn: shared_conn,
        pooled: target.info.pooled,
        unlock: format!("SELECT pg_advisory_unlock{suffix}({key})"),
        ttl,
        backend_pid,
        fence,
        waited: waited_from.map_or(Duration::ZERO, |t| t.elapsed()),
        socket,
        shown: target.info.shown.clone(),
    })
}
