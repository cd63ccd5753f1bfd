//! The lock: the key `flockrun:NAME`, set with `NX PX` to this flockrun's record (host, pid,
//! command, since) with a random token in it, the recipe of the Redis manual's "Distributed
//! locks" page for a single instance:
//!
//! * taking it and drawing the fencing token (`INCR flockrun-fence:NAME`) is one script, so a
//!   token is drawn exactly when the key is set; a busy answer brings the holder's record
//!   and its time to live in the same round trip;
//! * renewing (every third of the TTL) and releasing are scripts that act only while the key
//!   still holds our record; a renewal that finds it gone or changed is a lost lock;
//! * a waiter tries again when the holder releases (the release script publishes on
//!   `flockrun-released:NAME`), when the server's keyspace notifications say the key
//!   changed (where they are enabled), and otherwise with a backoff from 50 ms up to a tenth
//!   of the TTL, so an expiry or a `DEL` by hand is noticed too.
//!
//! The lock is not bound to the connection: a connection that breaks is made again and the
//! renewal repeated, until the renewal deadline (`kind::network::session`) passes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::resp::{Conn, Login, Value, refusal};
use super::url::Location;
use crate::error::Error;
use crate::inspect::sighting::Sighting;
use crate::kind::network::owner::Owner;
use crate::kind::network::session::{Liveness, Renew, Renewal, locked};
use crate::kind::network::socket::Failure;
use crate::supervise::LostWatch;
use crate::wait::{self, Deadline, WaitObserver};

/// `--ttl` when not given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The shortest TTL: renewals every third of it must fit round trips and a reconnection.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Renewals per TTL.
const RENEWALS_PER_TTL: u32 = 3;
/// The fastest and (at most) slowest a waiter asks again without news.
const MIN_PAUSE: Duration = Duration::from_millis(50);
/// How long `status`, the replica check and the release may take.
const SHORT_BUDGET: Duration = Duration::from_secs(5);
const RELEASE_BUDGET: Duration = Duration::from_secs(2);
/// How long the replicas get to acknowledge a new holder's key, at most.
const REPLICA_WAIT: Duration = Duration::from_millis(500);

/// The kind's name for messages.
pub const SERVER: &str = "Redis";

/// Sets the key if it is free and draws the fencing token; else the holder and its TTL.
const ACQUIRE: &str = "local holder = redis.call('GET', KEYS[1]) \
     if holder then return {0, holder, redis.call('PTTL', KEYS[1])} end \
     redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
     return {1, redis.call('INCR', KEYS[2])}";
/// Extends the key while it holds our record: 1; else 0 (gone) or what it holds instead.
const RENEW: &str = "local holder = redis.call('GET', KEYS[1]) \
     if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
     if holder then return holder end \
     return 0";
/// Deletes the key while it holds our record and tells the waiters: 1; else 0.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('DEL', KEYS[1]) redis.pcall('PUBLISH', ARGV[2], '1') return 1 end \
     return 0";

/// What the lock needs to be taken.
pub struct Target {
    pub location: Location,
    pub login: Login,
    pub ttl: Duration,
    pub command: String,
}

impl Target {
    fn unreachable(&self, problems: Vec<String>) -> Error {
        Error::ServerUnreachable {
            lock: self.location.shown.clone(),
            server: SERVER,
            problems,
        }
    }

    fn refused(&self, message: String) -> Error {
        Error::ServerRefused {
            lock: self.location.shown.clone(),
            server: SERVER,
            message,
        }
    }

    fn unfit(&self, message: String) -> Error {
        Error::ServerUnfit {
            lock: self.location.shown.clone(),
            message,
        }
    }

    fn failed(&self, failure: Failure, doing: &str) -> Error {
        match failure {
            Failure::Aborted => match wait::stop_signal() {
                Some(signal) => Error::Interrupted { signal },
                None => Error::Internal(anyhow::anyhow!("a Redis call stopped for no reason")),
            },
            Failure::Late => self.unreachable(vec![format!(
                "{doing}: no answer from {} in time",
                self.location.endpoint
            )]),
            Failure::Unreachable(m) => self.unreachable(vec![format!("{doing}: {m}")]),
            Failure::Refused(m) => self.refused(m),
        }
    }

    /// An error reply to one of the lock's commands: a key of another type is the key's
    /// fault (65), a read-only replica is no place for a lock (65), the rest is a refusal.
    fn error_reply(&self, error: &str, doing: &str) -> Error {
        if error.starts_with("WRONGTYPE") {
            self.unfit(format!(
                "the key {} holds something other than a string, so it is not a lock: \
                 something else uses this key; pick another NAME",
                self.location.key()
            ))
        } else if error.starts_with("READONLY") {
            self.unfit(format!(
                "{} is a read-only replica: a lock there would not be seen on the primary; \
                 name the primary in LOCK",
                self.location.endpoint
            ))
        } else if error.starts_with("MOVED") || error.starts_with("CROSSSLOT") {
            self.unfit(format!(
                "{} is a Redis Cluster node: flockrun locks on a single primary (see \
                 README.md, \"Redis locks\")",
                self.location.endpoint
            ))
        } else {
            match refusal(error, doing, &self.login) {
                Failure::Refused(m) => self.refused(m),
                other => self.failed(other, doing),
            }
        }
    }

    fn connect(&self, until: Instant) -> Result<Conn, Error> {
        let abort = || wait::stop_signal().is_some();
        Conn::open(&self.location, &self.login, until, &abort)
            .map_err(|e| self.failed(e, "connecting"))
    }

    fn ttl_ms(&self) -> String {
        self.ttl.as_millis().max(1).to_string()
    }
}

/// The record this flockrun keeps in the key: who it is, and a token no other holder has.
fn record(command: &str) -> String {
    let mut value = Owner::mine(command, SystemTime::now());
    value["token"] = serde_json::Value::String(crate::kind::marker::file::random_hex());
    value.to_string()
}

/// What the key says about its holder, in words: a flockrun's record, or the value as it
/// is (another program's), with the time it has left.
#[must_use]
pub fn describe_value(value: &[u8], ttl_left: Option<Duration>) -> String {
    let holder = Owner::parse(value).map_or_else(
        || {
            let shown: String = String::from_utf8_lossy(value).chars().take(80).collect();
            format!("a value flockrun did not write ({shown:?})")
        },
        |owner| owner.describe(),
    );
    match ttl_left {
        Some(left) => format!("{holder}, {:.1} s left", left.as_secs_f64()),
        None => format!("{holder}, with no expiry"),
    }
}

/// A PTTL reply as a time left: `None` for a key that never expires (-1).
fn ttl_left(pttl: i64) -> Option<Duration> {
    u64::try_from(pttl).ok().map(Duration::from_millis)
}

fn held_by(value: &[u8], pttl: i64) -> Sighting {
    Sighting {
        described: Some(format!("held by {}", describe_value(value, ttl_left(pttl)))),
        ..Default::default()
    }
}

/// What the acquire script said.
enum Attempt {
    Taken(i64),
    Busy(Vec<u8>, i64),
}

fn attempt(target: &Target, conn: &mut Conn, value: &str, until: Instant) -> Result<Attempt, Error> {
    let abort = || wait::stop_signal().is_some();
    let (key, fence) = (target.location.key(), target.location.fence_key());
    let ttl = target.ttl_ms();
    let args: [&[u8]; 7] = [
        b"EVAL",
        ACQUIRE.as_bytes(),
        b"2",
        key.as_bytes(),
        fence.as_bytes(),
        value.as_bytes(),
        ttl.as_bytes(),
    ];
    let reply = conn
        .call(&args, until, &abort)
        .map_err(|e| target.failed(e, "taking the lock"))?;
    match reply {
        Value::Array(Some(items)) => match items.as_slice() {
            [Value::Int(1), Value::Int(fence)] => Ok(Attempt::Taken(*fence)),
            [Value::Int(0), Value::Bulk(Some(holder)), Value::Int(pttl)] => {
                Ok(Attempt::Busy(holder.clone(), *pttl))
            }
            _ => Err(target.refused(format!("unexpected answer to the lock script: {items:?}"))),
        },
        Value::Error(e) => Err(target.error_reply(&e, "taking the lock")),
        other => Err(target.refused(format!("unexpected answer to the lock script: {other:?}"))),
    }
}

/// How many replicas the server has: `None` when it may not be asked (an ACL without
/// `INFO`). A replica itself is refused.
fn replicas(target: &Target, conn: &mut Conn, until: Instant) -> Result<Option<u32>, Error> {
    let abort = || wait::stop_signal().is_some();
    let reply = conn
        .call(&[b"INFO", b"replication"], until, &abort)
        .map_err(|e| target.failed(e, "asking for the server's role"))?;
    let Some(info) = reply.text() else {
        return Ok(None);
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    if field("role") == Some("slave") {
        return Err(target.error_reply("READONLY", "taking the lock"));
    }
    Ok(field("connected_slaves").and_then(|n| n.parse().ok()))
}

/// A second connection subscribed to the news about the key: our release channel and the
/// key's keyspace notifications. `None` when it cannot be had (an ACL without channels);
/// the waiter then only backs off.
fn subscribe(target: &Target, until: Instant) -> Option<Conn> {
    let abort = || wait::stop_signal().is_some();
    let mut conn = Conn::open(&target.location, &target.login, until, &abort).ok()?;
    let (released, keyspace) = (
        target.location.release_channel(),
        target.location.keyspace_channel(),
    );
    conn.send(
        &[b"SUBSCRIBE", released.as_bytes(), keyspace.as_bytes()],
        until,
        &abort,
    )
    .ok()?;
    for _ in 0..2 {
        match conn.reply(until, &abort).ok()? {
            Value::Array(Some(items)) if items.first().and_then(Value::text).as_deref() == Some("subscribe") => {}
            _ => return None,
        }
    }
    Some(conn)
}

/// Sleeps until `until` or until the subscription brings news (`true`). A subscription
/// that breaks is dropped, and the waiter goes on backing off.
fn wait_for_news(subscriber: &mut Option<Conn>, until: Instant) -> bool {
    let abort = || wait::stop_signal().is_some();
    let Some(conn) = subscriber.as_mut() else {
        while Instant::now() < until && !abort() {
            std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
        }
        return false;
    };
    match conn.reply(until, &abort) {
        Ok(_) => true,
        Err(Failure::Late | Failure::Aborted) => false,
        Err(_) => {
            *subscriber = None;
            false
        }
    }
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
) -> Result<HeldRedis, Error> {
    let reach = crate::kind::network::session::reach_until(deadline, target.ttl)
        .max(Instant::now() + Duration::from_secs(2));
    let mut conn = target.connect(reach)?;
    let replica_count = replicas(target, &mut conn, reach)?;
    let value = record(&target.command);
    let cap = (target.ttl / 10).max(MIN_PAUSE);
    let mut pause = MIN_PAUSE;
    let mut subscriber = None;
    let mut waited_from = None;
    let fence = loop {
        let now = Instant::now();
        let until = now + SHORT_BUDGET.max(reach.saturating_duration_since(now));
        let (holder, pttl) = match attempt(target, &mut conn, &value, until) {
            Ok(Attempt::Taken(fence)) => break fence,
            Ok(Attempt::Busy(holder, pttl)) => (holder, pttl),
            Err(e) => {
                if waited_from.is_some() {
                    observer.finished();
                }
                return Err(e);
            }
        };
        let path = std::path::Path::new(&target.location.shown);
        if deadline.is_immediate() {
            return Err(wait::not_acquired(path, deadline, held_by(&holder, pttl)));
        }
        if waited_from.is_none() {
            observer.blocked(&held_by(&holder, pttl));
            waited_from = Some(Instant::now());
            subscriber = subscribe(target, reach);
        }
        if deadline.remaining() == Some(Duration::ZERO) || wait::stop_signal().is_some() {
            observer.finished();
            return Err(wait::not_acquired(path, deadline, held_by(&holder, pttl)));
        }
        let mut until = Instant::now() + pause;
        if let Some(left) = deadline.remaining() {
            until = until.min(Instant::now() + left);
        }
        // A key about to expire is worth a look as it does.
        if let Some(left) = ttl_left(pttl) {
            until = until.min(Instant::now() + left + Duration::from_millis(1));
        }
        if wait_for_news(&mut subscriber, until) {
            pause = MIN_PAUSE;
        } else {
            pause = (pause * 2).min(cap);
        }
    };
    if waited_from.is_some() {
        observer.finished();
    }
    let taken = Instant::now();
    if let Some(count) = replica_count.filter(|n| *n > 0) {
        let abort = || wait::stop_signal().is_some();
        let wait_ms = REPLICA_WAIT.min(target.ttl / 4).as_millis().to_string();
        let acked = conn.call(&[b"WAIT", b"1", wait_ms.as_bytes()], Instant::now() + SHORT_BUDGET, &abort);
        if !matches!(acked, Ok(Value::Int(n)) if n >= 1) {
            observer.warn(&format!(
                "none of the {count} replica(s) of {} acknowledged the lock within {wait_ms} \
                 ms: if the primary fails now, a replica promoted in its place would not have \
                 the key, and another process could take the lock while this one holds it",
                target.location.endpoint
            ));
        }
    }
    let conn = Arc::new(Mutex::new(Some(conn)));
    let liveness = Liveness::start(
        Renewer {
            location: target.location.clone(),
            login: target.login.clone(),
            conn: Arc::clone(&conn),
            value: value.clone(),
            ttl_ms: target.ttl_ms(),
        },
        target.ttl,
        RENEWALS_PER_TTL,
        taken,
        ("renewal", "starting the Redis renewal thread"),
    )?;
    Ok(HeldRedis {
        liveness,
        conn,
        location: target.location.clone(),
        login: target.login.clone(),
        value,
        ttl: target.ttl,
        fence,
        waited: waited_from.map_or(Duration::ZERO, |t| taken.duration_since(t)),
    })
}

/// A held lock.
pub struct HeldRedis {
    liveness: Arc<Liveness<()>>,
    conn: Arc<Mutex<Option<Conn>>>,
    location: Location,
    login: Login,
    value: String,
    ttl: Duration,
    pub fence: i64,
    pub waited: Duration,
}

impl HeldRedis {
    #[must_use]
    pub fn lost(&self) -> Option<String> {
        self.liveness.lost()
    }

    #[must_use]
    pub fn watch(&self) -> LostWatch {
        self.liveness.watch(self.ttl)
    }

    /// Deletes the key if it is still ours. A warning when that could not be done (the
    /// key then expires by itself within the TTL).
    #[must_use]
    pub fn release(self) -> Option<String> {
        if self.liveness.stop() {
            return None;
        }
        let until = Instant::now() + RELEASE_BUDGET;
        let never = || false;
        let mut conn = match locked(&self.conn).take() {
            Some(conn) => conn,
            None => match Conn::open(&self.location, &self.login, until, &never) {
                Ok(conn) => conn,
                Err(e) => return Some(self.unreleased(&failure_text(&e))),
            },
        };
        let (key, channel) = (self.location.key(), self.location.release_channel());
        let args: [&[u8]; 6] = [
            b"EVAL",
            RELEASE.as_bytes(),
            b"1",
            key.as_bytes(),
            self.value.as_bytes(),
            channel.as_bytes(),
        ];
        match conn.call(&args, until, &never) {
            Ok(Value::Int(1)) => None,
            Ok(Value::Int(_)) => Some(format!(
                "{key} no longer held this flockrun's record when it let go; nothing was deleted"
            )),
            Ok(other) => Some(self.unreleased(&format!("{other:?}"))),
            Err(e) => Some(self.unreleased(&failure_text(&e))),
        }
    }

    fn unreleased(&self, why: &str) -> String {
        format!(
            "could not delete {} on {} ({why}); it expires within {:.1} s",
            self.location.key(),
            self.location.endpoint,
            self.ttl.as_secs_f64()
        )
    }
}

fn failure_text(failure: &Failure) -> String {
    match failure {
        Failure::Aborted => "stopped".to_owned(),
        Failure::Late => "no answer in time".to_owned(),
        Failure::Unreachable(m) | Failure::Refused(m) => m.clone(),
    }
}

/// The renewal thread's side: the renew script, on the holder's connection or, once that
/// broke, on a new one.
struct Renewer {
    location: Location,
    login: Login,
    conn: Arc<Mutex<Option<Conn>>>,
    value: String,
    ttl_ms: String,
}

impl Renew for Renewer {
    type Chore = ();

    fn renew(&mut self, until: Instant, stopping: &dyn Fn() -> bool) -> Renewal {
        let key = self.location.key();
        let mut problem = String::from("no answer");
        loop {
            if stopping() {
                return Renewal::Stopped;
            }
            if Instant::now() >= until {
                return Renewal::Lost(format!(
                    "the lock could not be renewed on {} in time ({problem}), so the key may \
                     expire",
                    self.location.endpoint
                ));
            }
            let mut guard = locked(&self.conn);
            if guard.is_none() {
                match Conn::open(&self.location, &self.login, until, stopping) {
                    Ok(conn) => *guard = Some(conn),
                    Err(Failure::Aborted) => return Renewal::Stopped,
                    Err(e) => {
                        problem = failure_text(&e);
                        drop(guard);
                        let pause = until.saturating_duration_since(Instant::now());
                        std::thread::sleep(pause.min(Duration::from_millis(200)));
                        continue;
                    }
                }
            }
            let Some(conn) = guard.as_mut() else {
                continue;
            };
            let args: [&[u8]; 6] = [
                b"EVAL",
                RENEW.as_bytes(),
                b"1",
                key.as_bytes(),
                self.value.as_bytes(),
                self.ttl_ms.as_bytes(),
            ];
            match conn.call(&args, until, stopping) {
                Ok(Value::Int(1)) => return Renewal::Renewed(None),
                Ok(Value::Int(0)) => {
                    return Renewal::Lost(format!(
                        "the key {key} is gone from the server (deleted, expired, or the \
                         server restarted without it)"
                    ));
                }
                Ok(Value::Bulk(Some(other))) => {
                    return Renewal::Lost(format!(
                        "the key {key} now holds another record: {}",
                        describe_value(&other, None)
                            .trim_end_matches(", with no expiry")
                    ));
                }
                Ok(Value::Error(e)) => {
                    return Renewal::Lost(format!("the server refused the renewal: {e}"));
                }
                Ok(other) => {
                    return Renewal::Lost(format!("unexpected answer to the renewal: {other:?}"));
                }
                Err(Failure::Aborted) => {
                    // The reply is still on its way: the connection must not serve the
                    // release, which would read it as its own.
                    *guard = None;
                    return Renewal::Stopped;
                }
                Err(e) => {
                    problem = failure_text(&e);
                    *guard = None;
                }
            }
        }
    }

    fn chore(&mut self, (): (), _until: Instant, _stopping: &dyn Fn() -> bool) {}
}

/// The key as `status` sees it.
#[derive(Debug, Clone)]
pub struct KeyState {
    pub key: String,
    /// The key's value, `None` when it does not exist.
    pub value: Option<Vec<u8>>,
    pub ttl_left: Option<Duration>,
    /// The last fencing token handed out, if any.
    pub fence: Option<String>,
}

/// Reads the key, its time to live and the fence counter.
///
/// # Errors
/// As taking the lock.
pub fn status(target: &Target) -> Result<KeyState, Error> {
    let until = Instant::now() + SHORT_BUDGET;
    let mut conn = target.connect(until)?;
    let abort = || wait::stop_signal().is_some();
    let (key, fence_key) = (target.location.key(), target.location.fence_key());
    let mut ask = |args: &[&[u8]], doing: &str| match conn.call(args, until, &abort) {
        Ok(Value::Error(e)) => Err(target.error_reply(&e, doing)),
        Ok(value) => Ok(value),
        Err(e) => Err(target.failed(e, doing)),
    };
    let value = match ask(&[b"GET", key.as_bytes()], "reading the key")? {
        Value::Bulk(value) => value,
        _ => None,
    };
    let ttl_left = match ask(&[b"PTTL", key.as_bytes()], "reading the key's TTL")? {
        Value::Int(ms) => self::ttl_left(ms),
        _ => None,
    };
    let fence = ask(&[b"GET", fence_key.as_bytes()], "reading the fence counter")?.text();
    Ok(KeyState {
        key,
        value,
        ttl_left,
        fence,
    })
}
