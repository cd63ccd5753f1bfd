//! The etcd kind: one lock across many machines, taken the way `etcdctl lock NAME` takes it
//! (etcd's `concurrency.Mutex`), so flockrun and etcdctl exclude each other.
//!
//! * A lease with a TTL, renewed by a background thread every quarter of the TTL for as
//!   long as flockrun waits or holds; when flockrun dies, renewals stop and the lease (with the
//!   key) expires.
//! * The key `NAME/<lease id in hex>`, created in a transaction only if absent. Keys under
//!   `NAME/` form a queue in create-revision order; the lowest holds the lock.
//! * A waiter watches the key just ahead of its own until that one is deleted, then looks
//!   again; a woken waiter never overtakes, so a crowd is served in order without a herd.
//!
//! flockrun stores `{host, pid, command, since}` as the key's value for `status`; etcdctl
//! writes an empty value and ignores values. Calls go through etcd's JSON gateway (see
//! `http`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::access::Cluster;
use super::http::{CallError, StreamEvent, Transport};
use super::target::{SCHEME, TLS_SCHEME, Target, base64, lease_hex, prefix_end, unbase64};
use crate::error::Error;
use crate::inspect::sighting::Sighting;
use crate::kind::network::owner::Owner;
use crate::kind::network::session::{Liveness, Renew, Renewal, locked};
use crate::supervise::LostWatch;
use crate::wait::{self, Deadline, WaitObserver};

/// `--ttl` when not given: etcdctl's default.
pub const DEFAULT_TTL: u32 = 10;

/// How often a waiter looks at the queue again even without a watch event, so a member that
/// hangs without closing the watch cannot strand it.
const RECHECK: Duration = Duration::from_secs(5);

/// How long `status` may try.
const SHORT_BUDGET: Duration = Duration::from_secs(5);
/// How long the final revoke may try: the lease expires by itself anyway, so an
/// unreachable cluster should not hold up flockrun's exit for long.
const REVOKE_BUDGET: Duration = Duration::from_secs(2);

/// Whether LOCK selects the etcd kind.
#[must_use]
pub fn is_target(lock: &std::ffi::OsStr) -> bool {
    let bytes = lock.as_encoded_bytes();
    bytes.starts_with(SCHEME.as_bytes()) || bytes.starts_with(TLS_SCHEME.as_bytes())
}

/// One key in a lock's queue.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    pub key: String,
    pub create_revision: i64,
    pub lease: i64,
    pub owner: Option<Owner>,
}

/// Reads `bytes` as a member's answer (see `http::replay_reply`) and, when it is a range
/// reply, its keys as a lock's queue: for `crate::fuzz`.
pub(crate) fn replay_reply(bytes: &[u8]) {
    let Some(reply) = super::http::replay_reply(bytes) else {
        return;
    };
    let queue: Vec<QueueEntry> = reply
        .get("kvs")
        .and_then(Value::as_array)
        .map(|kvs| kvs.iter().map(QueueEntry::from_kv).collect())
        .unwrap_or_default();
    for entry in &queue {
        let _ = entry.describe();
    }
}

impl QueueEntry {
    fn from_kv(kv: &Value) -> QueueEntry {
        let bytes = |k: &str| {
            kv.get(k)
                .and_then(Value::as_str)
                .and_then(unbase64)
                .unwrap_or_default()
        };
        QueueEntry {
            key: String::from_utf8_lossy(&bytes("key")).into_owned(),
            create_revision: int(kv.get("create_revision")),
            lease: int(kv.get("lease")),
            owner: Owner::parse(&bytes("value")),
        }
    }

    /// `pid 4242 on web-1 (./deploy.sh) since …`, or the key for a holder that left no
    /// details (etcdctl).
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.owner {
            Some(owner) => owner.describe(),
            None => format!(
                "key {} (created at revision {}; written by etcdctl lock or another client, \
                 which leaves no details)",
                self.key, self.create_revision
            ),
        }
    }
}

/// An int64 from protobuf's JSON mapping: a decimal string, a number, or absent (= 0).
fn int(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}


/// A lease and its renewal thread. Dropping it revokes the lease (best effort), which
/// deletes every key attached to it.
pub struct Session {
    transport: Transport,
    target: Target,
    lease: i64,
    ttl: Duration,
    liveness: Arc<Liveness<Value>>,
    /// The base64 key whose existence each renewal confirms, once created.
    key: Arc<Mutex<Option<String>>>,
    revoked: bool,
}

impl Session {
    fn start(
        target: &Target,
        cluster: &Arc<Cluster>,
        ttl: u32,
        until: Instant,
    ) -> Result<Session, Error> {
        let mut transport = Transport::new(Arc::clone(cluster));
        let sent = Instant::now();
        let reply = transport
            .call("/v3/lease/grant", &json!({ "TTL": ttl }), until, &|| {
                wait::stop_signal().is_some()
            })
            .map_err(|e| call_error(target, e, None))?;
        let lease = int(reply.get("ID"));
        let granted = int(reply.get("TTL"));
        if lease == 0 || granted <= 0 {
            return Err(Error::EtcdRefused {
                lock: target.text.clone(),
                message: format!("no lease in the reply to a lease grant: {reply}"),
            });
        }
        let ttl = Duration::from_secs(granted.unsigned_abs());
        let key = Arc::new(Mutex::new(None));
        let renewer = Renewer {
            transport: Transport::new(Arc::clone(cluster)),
            lease,
            key: Arc::clone(&key),
        };
        let liveness = Liveness::start(
            renewer,
            ttl,
            RENEWALS_PER_TTL,
            sent,
            ("lease", "starting the lease renewal thread"),
        )?;
        Ok(Session {
            transport,
            target: target.clone(),
            lease,
            ttl,
            liveness,
            key,
            revoked: false,
        })
    }

    /// Why the lease is lost, if it is.
    #[must_use]
    pub fn lost(&self) -> Option<String> {
        self.liveness.lost()
    }

    /// How the supervisor learns that the lease is lost. The TTL is the one etcd granted
    /// (it may raise a very short one to its minimum).
    #[must_use]
    pub fn watch(&self) -> LostWatch {
        self.liveness.watch(self.ttl)
    }

    fn should_stop(&self) -> bool {
        self.liveness.ending()
    }

    fn call(&mut self, path: &str, body: &Value, until: Instant) -> Result<Value, Error> {
        let liveness = Arc::clone(&self.liveness);
        let abort = move || liveness.ending();
        let reply = self.transport.call(path, body, until, &abort);
        reply.map_err(|e| call_error(&self.target, e, self.lost()))
    }

    /// Stops renewing and revokes the lease, freeing the lock at once. Returns a warning
    /// when etcd could not be told (the lock then frees itself when the lease expires).
    #[must_use]
    pub fn release(mut self) -> Option<String> {
        self.revoke()
    }

    fn revoke(&mut self) -> Option<String> {
        if self.revoked {
            return None;
        }
        self.revoked = true;
        if self.liveness.stop() {
            // Nothing to revoke: etcd dropped the lease, or cannot be reached to hear it.
            return None;
        }
        let until = Instant::now() + REVOKE_BUDGET;
        let body = json!({ "ID": self.lease.to_string() });
        match self
            .transport
            .call("/v3/lease/revoke", &body, until, &|| false)
        {
            Ok(_) => None,
            // Already gone: expired or revoked by someone else. Nothing is left behind.
            Err(CallError::Refused(m)) if m.contains("lease not found") => None,
            Err(e) => Some(format!(
                "could not revoke lease {:x} for {} ({}); the lock frees itself when the \
                 lease expires",
                self.lease,
                self.target.text,
                describe_call_error(&e)
            )),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(warning) = self.revoke() {
            eprintln!("flockrun: warning: {warning}");
        }
    }
}

/// Renewals per TTL. A quarter rather than etcdctl's third leaves a renewal due when the
/// leader has just died half the TTL to get through the election before the grace period
/// (a quarter) begins: with etcd's default timings an election can take 2 s, so TTL 5
/// rides through one with room to spare (see README.md, etcd locks).
const RENEWALS_PER_TTL: u32 = 4;

/// The renewal thread's side of a session: a keep-alive, then a check that the key still
/// exists. Both ask every member at once (`Transport::call_any`), so a member that hangs
/// in an election cannot eat the others' time.
struct Renewer {
    transport: Transport,
    lease: i64,
    key: Arc<Mutex<Option<String>>>,
}

impl Renew for Renewer {
    /// A transaction to send at once: the holder's "since" update, kept off the path
    /// between winning the lock and starting COMMAND.
    type Chore = Value;

    fn renew(&mut self, until: Instant, stopping: &dyn Fn() -> bool) -> Renewal {
        let body = json!({ "ID": self.lease.to_string() });
        match self
            .transport
            .call_any("/v3/lease/keepalive", &body, until, stopping)
        {
            Ok(reply) => match int(reply.get("TTL")) {
                left if left <= 0 => {
                    Renewal::Lost("etcd says the lease expired or was revoked".to_owned())
                }
                left => Renewal::Renewed(Some(Duration::from_secs(left.unsigned_abs()))),
            },
            Err(CallError::Aborted) => Renewal::Stopped,
            Err(e) => Renewal::Lost(format!(
                "the lease could not be renewed: {}",
                describe_call_error(&e)
            )),
        }
    }

    fn check(&mut self, until: Instant, stopping: &dyn Fn() -> bool) -> Renewal {
        let Some(key) = locked(&self.key).clone() else {
            return Renewal::Renewed(None);
        };
        let body = json!({ "key": key, "count_only": true });
        match self.transport.call_any("/v3/kv/range", &body, until, stopping) {
            Ok(reply) if int(reply.get("count")) == 0 => {
                Renewal::Lost("the lock's key was deleted from etcd".to_owned())
            }
            Ok(_) => Renewal::Renewed(None),
            Err(CallError::Aborted) => Renewal::Stopped,
            Err(e) => Renewal::Lost(format!(
                "the lock's key could not be checked: {}",
                describe_call_error(&e)
            )),
        }
    }

    fn chore(&mut self, txn: Value, until: Instant, stopping: &dyn Fn() -> bool) {
        // Best effort: the value is only for status. A failure here shows up in the
        // renewal that follows.
        let _ = self.transport.call("/v3/kv/txn", &txn, until, stopping);
    }
}

fn describe_call_error(e: &CallError) -> String {
    match e {
        CallError::Aborted => "stopped".to_owned(),
        CallError::Unreachable(problems) if problems.is_empty() => "no member answered".to_owned(),
        CallError::Unreachable(problems) => format!("no member answered ({})", problems.join("; ")),
        CallError::Refused(m) | CallError::Unauthenticated(m) => m.clone(),
    }
}

/// Maps a failed call to the error flockrun reports: a stop signal, a lost lease, an
/// unreachable cluster, or a refusal.
fn call_error(target: &Target, e: CallError, lost: Option<String>) -> Error {
    match e {
        CallError::Aborted => match (wait::stop_signal(), lost) {
            (Some(signal), _) => Error::Interrupted { signal },
            (None, Some(reason)) => Error::LockLost {
                lock: target.text.clone(),
                reason,
                command_ran: false,
            },
            (None, None) => Error::Internal(anyhow::anyhow!("an etcd call stopped for no reason")),
        },
        CallError::Unreachable(problems) => Error::EtcdUnreachable {
            lock: target.text.clone(),
            problems,
        },
        CallError::Refused(message) | CallError::Unauthenticated(message) => Error::EtcdRefused {
            lock: target.text.clone(),
            message,
        },
    }
}

/// A held etcd lock.
pub struct HeldEtcd {
    pub session: Session,
    /// The key, `NAME/<lease hex>`.
    pub key: String,
    /// The key's create revision: the fencing token.
    pub revision: i64,
    pub waited: Duration,
    /// For a semaphore: the slot held, and N.
    pub slot: Option<(u16, u16)>,
}

/// How long an unreachable cluster is retried before giving up: the TTL, or less when the
/// wait itself ends sooner.
fn reach_until(deadline: &Deadline, ttl: u32) -> Instant {
    crate::kind::network::session::reach_until(deadline, Duration::from_secs(u64::from(ttl)))
}

/// Takes the lock LOCK names, waiting as `deadline` allows.
///
/// # Errors
/// `Busy`/`TimedOut` (described holder), `Interrupted`, `EtcdUnreachable`, `EtcdRefused`,
/// `LockLost` when the lease expired while waiting.
pub fn acquire(
    target: &Target,
    cluster: &Arc<Cluster>,
    ttl: u32,
    deadline: &Deadline,
    command: &str,
    slots: Option<u16>,
    observer: &mut dyn WaitObserver,
) -> Result<HeldEtcd, Error> {
    let mut session = Session::start(target, cluster, ttl, reach_until(deadline, ttl))?;
    let record = |slot: Option<u16>| -> Value {
        match slots {
            Some(n) => Owner::mine_in_semaphore(command, SystemTime::now(), n, slot),
            None => Owner::mine(command, SystemTime::now()),
        }
    };
    let prefix = target.prefix();
    let my_key = format!("{prefix}{}", lease_hex(session.lease));
    let key64 = base64(my_key.as_bytes());
    let range_all = json!({
        "key": base64(prefix.as_bytes()),
        "range_end": base64(&prefix_end(prefix.as_bytes())),
        "sort_order": "ASCEND",
        "sort_target": "CREATE",
        "limit": 1,
    });
    let txn = json!({
        "compare": [{"key": key64, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
        "success": [
            {"request_put": {"key": key64, "value": base64(record(None).to_string().as_bytes()), "lease": session.lease.to_string()}},
            {"request_range": range_all},
        ],
        "failure": [
            {"request_range": {"key": key64}},
            {"request_range": range_all},
        ],
    });
    let reply = session.call("/v3/kv/txn", &txn, reach_until(deadline, ttl))?;
    *locked(&session.key) = Some(key64.clone());
    let responses = reply.get("responses").and_then(Value::as_array);
    let kvs = |i: usize| -> Vec<Value> {
        responses
            .and_then(|r| r.get(i))
            .and_then(|r| r.get("response_range"))
            .and_then(|r| r.get("kvs"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let revision = if reply.get("succeeded").and_then(Value::as_bool) == Some(true) {
        int(reply.get("header").and_then(|h| h.get("revision")))
    } else {
        // Our key already exists (a repeated transaction after a lost reply).
        kvs(0)
            .first()
            .map_or(0, |kv| int(kv.get("create_revision")))
    };
    if revision == 0 {
        return Err(Error::EtcdRefused {
            lock: target.text.clone(),
            message: format!("unexpected reply to the lock transaction: {reply}"),
        });
    }
    let owner = kvs(1).first().map(QueueEntry::from_kv);
    let n = slots.unwrap_or(1);
    if let Some(n) = slots {
        check_slots(&mut session, target, n, deadline, ttl)?;
    }
    // With one slot, the oldest key came back with our own; with more, look.
    let first = if n == 1 {
        owner.as_ref().is_none_or(|o| o.create_revision == revision)
    } else {
        key_ahead(&mut session, target, revision, n, reach_until(deadline, ttl))?.is_none()
    };
    if !first {
        wait_turn(
            &mut session,
            target,
            (revision, n),
            deadline,
            owner.as_ref(),
            observer,
        )?;
    }
    let slot = match slots {
        Some(n) => {
            // Among the N oldest: a slot of our own, and N checked again (of two newcomers
            // with different numbers, the later to look sees the other).
            let slot = claim_slot(&mut session, target, n, reach_until(deadline, ttl))?;
            check_slots(&mut session, target, n, deadline, ttl)?;
            Some((slot, n))
        }
        None => None,
    };
    if !first || slot.is_some() {
        // The value should say since when the lock is held, not since when it was awaited.
        // Only while the key is still ours: a plain put after someone deleted the key would
        // recreate it at the back of the queue. Sent by the renewal thread, so COMMAND
        // starts without waiting for another write to be committed.
        let update = json!({
            "compare": [{"key": key64, "target": "CREATE", "result": "EQUAL", "create_revision": revision.to_string()}],
            "success": [{"request_put": {
                "key": key64,
                "value": base64(record(slot.map(|(s, _)| s)).to_string().as_bytes()),
                "lease": session.lease.to_string(),
            }}],
            "failure": [],
        });
        session.liveness.queue(update);
    }
    Ok(HeldEtcd {
        session,
        key: my_key,
        revision,
        waited: deadline.elapsed(),
        slot,
    })
}

/// Where a semaphore's slot keys are: beside the queue's prefix, outside its range
/// (`NAME.slot-I` sorts before `NAME/`).
fn slot_prefix(target: &Target) -> String {
    format!("{}.slot-", target.name)
}

/// The key of slot `slot`, bound to the holder's lease like its queue key.
fn slot_key(target: &Target, slot: u16) -> String {
    format!("{}{slot}", slot_prefix(target))
}

/// Refuses (65) when the N oldest keys, the holders, record another number of slots than
/// `n`, or none (a plain lock's holder). Our own key is removed by the caller's revoke.
fn check_slots(
    session: &mut Session,
    target: &Target,
    n: u16,
    deadline: &Deadline,
    ttl: u32,
) -> Result<(), Error> {
    let prefix = target.prefix();
    let holders = json!({
        "key": base64(prefix.as_bytes()),
        "range_end": base64(&prefix_end(prefix.as_bytes())),
        "sort_order": "ASCEND",
        "sort_target": "CREATE",
        "limit": n.to_string(),
    });
    let reply = session.call("/v3/kv/range", &holders, reach_until(deadline, ttl))?;
    let mine = format!("{prefix}{}", lease_hex(session.lease));
    for entry in reply
        .get("kvs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(QueueEntry::from_kv)
        .filter(|e| e.key != mine)
    {
        let theirs = entry.owner.as_ref().and_then(|o| o.slots).unwrap_or(1);
        if theirs != n {
            return Err(Error::SlotsMismatch {
                lock: target.text.clone(),
                ours: n,
                theirs,
            });
        }
    }
    Ok(())
}

/// Takes the lowest free slot key for our lease. Only the N oldest keys' owners claim
/// slots, and a holder's slot key goes with its lease, so one is free; a claim that loses a
/// race to another holder looks again.
fn claim_slot(
    session: &mut Session,
    target: &Target,
    n: u16,
    until: Instant,
) -> Result<u16, Error> {
    let prefix = slot_prefix(target);
    for _ in 0..=n {
        let taken = json!({
            "key": base64(prefix.as_bytes()),
            "range_end": base64(&prefix_end(prefix.as_bytes())),
            "keys_only": true,
        });
        let reply = session.call("/v3/kv/range", &taken, until)?;
        let used: Vec<QueueEntry> = reply
            .get("kvs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(QueueEntry::from_kv)
            .collect();
        // A claim whose reply was lost (its member went away, and the call was sent again
        // elsewhere) stands under our lease: that slot is ours already.
        if let Some(mine) = used
            .iter()
            .filter(|e| e.lease == session.lease)
            .find_map(|e| e.key.strip_prefix(&prefix)?.parse().ok())
        {
            return Ok(mine);
        }
        let Some(free) = (0..n).find(|slot| !used.iter().any(|e| e.key == slot_key(target, *slot)))
        else {
            wait::nap(Duration::from_millis(50));
            continue;
        };
        let key = base64(slot_key(target, free).as_bytes());
        let claim = json!({
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {
                "key": key,
                "value": base64(lease_hex(session.lease).as_bytes()),
                "lease": session.lease.to_string(),
            }}],
            "failure": [],
        });
        let reply = session.call("/v3/kv/txn", &claim, until)?;
        if reply.get("succeeded").and_then(Value::as_bool) == Some(true) {
            return Ok(free);
        }
    }
    Err(Error::EtcdRefused {
        lock: target.text.clone(),
        message: format!(
            "no slot key under {prefix} could be claimed although this flockrun is among the \
             {n} oldest; is another client writing there?"
        ),
    })
}

/// Waits until no key older than ours remains (etcd's `waitDeletes`): look up the youngest
/// key created before ours, watch it until it is deleted, repeat.
fn wait_turn(
    session: &mut Session,
    target: &Target,
    (revision, slots): (i64, u16),
    deadline: &Deadline,
    owner: Option<&QueueEntry>,
    observer: &mut dyn WaitObserver,
) -> Result<(), Error> {
    if deadline.is_immediate() {
        return Err(Error::Busy {
            path: target.text.clone().into(),
            sighting: Box::new(held_by(owner)),
        });
    }
    let sighting = held_by(owner);
    observer.blocked(&sighting);
    let tick_every = observer.tick_every();
    let mut next_tick = tick_every;
    let budget = |d: &Deadline| Instant::now() + d.remaining().unwrap_or(Duration::from_secs(3600));
    // Watches etcd canceled in a row, each with a reason: after a few, the reason is the
    // answer (a permission the user lacks), not a passing state.
    let mut refusals = 0;
    let mine = base64(format!("{}{}", target.prefix(), lease_hex(session.lease)).as_bytes());
    let result = loop {
        let ahead = match key_ahead(session, target, revision, slots, budget(deadline)) {
            Ok(Some(ahead)) => ahead,
            Ok(None) => break Ok(()),
            Err(Error::EtcdUnreachable { .. }) if deadline.remaining() == Some(Duration::ZERO) => {
                break Err(timed_out(target, deadline, sighting.clone()));
            }
            Err(e) => break Err(e),
        };
        let watch = if ahead.whole_queue() {
            // The only key ahead: watch the whole queue from just after the look, so that
            // its deletion is the lock won, with no second look (a round trip) before
            // COMMAND starts. Our own key's deletion would show in the same stream first.
            let prefix = target.prefix();
            json!({"create_request": {
                "key": base64(prefix.as_bytes()),
                "range_end": base64(&prefix_end(prefix.as_bytes())),
                "start_revision": (ahead.from + 1).to_string(),
            }})
        } else {
            json!({"create_request": {"key": ahead.keys[0], "start_revision": ahead.from.to_string()}})
        };
        let liveness = Arc::clone(&session.liveness);
        let abort = move || liveness.ending();
        let mut stream =
            match session
                .transport
                .stream("/v3/watch", &watch, budget(deadline), &abort)
            {
                Ok(stream) => stream,
                Err(CallError::Unreachable(_)) => {
                    // No member would open a watch: look again shortly (the lookup itself
                    // waits out an unreachable cluster, and the renewal thread gives up on
                    // the lease once it cannot be renewed).
                    wait::nap(Duration::from_millis(100));
                    continue;
                }
                Err(e) => break Err(call_error(target, e, session.lost())),
            };
        let recheck_at = Instant::now() + RECHECK;
        let ended: Option<Result<(), Error>> = loop {
            let mut until = recheck_at;
            if let Some(left) = deadline.remaining() {
                until = until.min(Instant::now() + left);
            }
            if let Some(at) = next_tick {
                until = until.min(Instant::now() + at.saturating_sub(deadline.elapsed()));
            }
            match stream.next(until, &abort) {
                Ok(StreamEvent::Message(m)) => {
                    match watch_news(&m, &ahead, &mine, session, &mut refusals) {
                        WatchNews::Nothing => {}
                        WatchNews::LookAgain => break None,
                        WatchNews::Won => break Some(Ok(())),
                        WatchNews::Lost => break Some(Err(lost_while_waiting(target))),
                        WatchNews::Refused(reason) => {
                            break Some(Err(call_error(target, CallError::Refused(reason), None)));
                        }
                    }
                }
                Ok(StreamEvent::Idle) => {
                    if deadline.remaining() == Some(Duration::ZERO) {
                        break Some(Err(timed_out(
                            target,
                            deadline,
                            sighting_now(session, target),
                        )));
                    }
                    if let (Some(every), Some(at)) = (tick_every, next_tick)
                        && deadline.elapsed() >= at
                    {
                        observer.tick(deadline.elapsed(), &|| sighting.clone());
                        next_tick = Some(deadline.elapsed() + every);
                    }
                    if Instant::now() >= recheck_at {
                        break None;
                    }
                }
                Err(CallError::Unreachable(_)) => break None,
                Err(e) => break Some(Err(call_error(target, e, session.lost()))),
            }
        };
        if let Some(end) = ended {
            break end;
        }
        if session.should_stop() {
            break Err(call_error(target, CallError::Aborted, session.lost()));
        }
    };
    observer.finished();
    result
}

/// What a watch message means for a waiter.
enum WatchNews {
    /// Nothing that concerns it (a put, progress).
    Nothing,
    /// The watched key is gone, or the watch ended: look at the queue again.
    LookAgain,
    /// The only key ahead is gone while ours stands: the lock is ours.
    Won,
    /// Our own key is gone (the lease expired while waiting).
    Lost,
    /// etcd keeps canceling the watch for a reason (a permission the user lacks).
    Refused(String),
}

fn lost_while_waiting(target: &Target) -> Error {
    Error::LockLost {
        lock: target.text.clone(),
        reason: "its key expired or was deleted while waiting".to_owned(),
        command_ran: false,
    }
}

/// The base64 keys of the DELETE events in a watch message, in order.
fn deleted_keys(message: &Value) -> Vec<&str> {
    message
        .get("events")
        .and_then(Value::as_array)
        .map(|events| {
            events
                .iter()
                .filter(|e| e.get("type").and_then(Value::as_str) == Some("DELETE"))
                .filter_map(|e| e.get("kv")?.get("key")?.as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn watch_news(
    message: &Value,
    ahead: &Ahead,
    mine: &str,
    session: &mut Session,
    refusals: &mut u32,
) -> WatchNews {
    let gone = deleted_keys(message);
    let ahead_gone = gone
        .iter()
        .any(|k| ahead.keys.iter().any(|a| a.as_str() == Some(*k)));
    if ahead.whole_queue() && gone.contains(&mine) {
        return WatchNews::Lost;
    }
    if ahead.last && ahead_gone {
        return WatchNews::Won;
    }
    // Watching the whole queue, only the keys just ahead matter; watching one key, its
    // deletion is the only delete that shows.
    let deleted = if ahead.whole_queue() {
        ahead_gone && !ahead.last
    } else {
        !gone.is_empty()
    };
    let canceled = message.get("canceled").and_then(Value::as_bool) == Some(true)
        || int(message.get("compact_revision")) != 0;
    let reason = message
        .get("cancel_reason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    if let Some(reason) = reason {
        // An expired token shows here, not as a failed call: the next call authenticates
        // again.
        session.transport.token_refused();
        *refusals += 1;
        if *refusals >= 3 {
            return WatchNews::Refused(format!("etcd canceled the watch: {reason}"));
        }
    } else if deleted {
        *refusals = 0;
    }
    if deleted || canceled {
        WatchNews::LookAgain
    } else {
        WatchNews::Nothing
    }
}

/// The keys just ahead of ours: the youngest one created before ours, or for a semaphore
/// of N slots the N youngest (while all N stand, N holders are ahead of us).
struct Ahead {
    /// Their keys, base64 as the gateway gives them, youngest first.
    keys: Vec<Value>,
    /// The revision the look was made at.
    from: i64,
    /// Whether they are all that is ahead (then the deletion of one means a slot is ours).
    last: bool,
}

impl Ahead {
    /// Whether to watch the whole queue rather than one key: when one deletion wins, so
    /// that the win needs no second look, and for a semaphore, whose N keys ahead have no
    /// range of their own (a waiter acts on their deletions only).
    fn whole_queue(&self) -> bool {
        self.last || self.keys.len() > 1
    }
}

/// The youngest key created before ours, and the revision to watch it from; `None` when no
/// key is ahead of ours any more. The same transaction checks that our own key still
/// exists (what etcdctl checks with a separate read once its wait is over): a lease that
/// expired while waiting must not be taken for a won lock.
fn key_ahead(
    session: &mut Session,
    target: &Target,
    revision: i64,
    slots: u16,
    until: Instant,
) -> Result<Option<Ahead>, Error> {
    let prefix = target.prefix();
    let mine = base64(format!("{prefix}{}", lease_hex(session.lease)).as_bytes());
    let both = json!({
        "compare": [],
        "success": [
            {"request_range": {
                "key": base64(prefix.as_bytes()),
                "range_end": base64(&prefix_end(prefix.as_bytes())),
                "sort_order": "DESCEND",
                "sort_target": "CREATE",
                "max_create_revision": (revision - 1).to_string(),
                // One more than the slots, to tell whether the keys ahead are all there
                // is (etcd prunes by create revision before it applies the limit).
                "limit": (u32::from(slots) + 1).to_string(),
                "keys_only": true,
            }},
            {"request_range": {"key": mine, "count_only": true}},
        ],
        "failure": [],
    });
    let reply = session.call("/v3/kv/txn", &both, until)?;
    let range = |i: usize| {
        reply
            .get("responses")
            .and_then(|r| r.get(i))
            .and_then(|r| r.get("response_range"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    if int(range(1).get("count")) == 0 {
        return Err(lost_while_waiting(target));
    }
    let ahead = range(0);
    let kvs = ahead
        .get("kvs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let slots = usize::from(slots);
    if kvs.len() < slots {
        // Fewer older keys than slots: one is ours.
        return Ok(None);
    }
    Ok(Some(Ahead {
        keys: kvs[..slots]
            .iter()
            .map(|kv| kv.get("key").cloned().unwrap_or(Value::Null))
            .collect(),
        from: int(reply.get("header").and_then(|h| h.get("revision"))),
        last: kvs.len() == slots,
    }))
}

fn timed_out(target: &Target, deadline: &Deadline, sighting: Sighting) -> Error {
    wait::not_acquired(std::path::Path::new(&target.text), deadline, sighting)
}

/// The current holder, for a timeout message (best effort, briefly).
fn sighting_now(session: &mut Session, target: &Target) -> Sighting {
    let holder = queue_with(
        &mut session.transport,
        target,
        Instant::now() + Duration::from_secs(1),
    )
    .ok()
    .and_then(|q| q.into_iter().next());
    held_by(holder.as_ref())
}

/// What busy and timeout messages say about the holder.
fn held_by(holder: Option<&QueueEntry>) -> Sighting {
    Sighting {
        described: Some(holder.map_or_else(
            || "held".to_owned(),
            |e| format!("held by {}", e.describe()),
        )),
        ..Default::default()
    }
}

/// Every key in the lock's queue, oldest (the holder) first.
///
/// # Errors
/// `EtcdUnreachable` or `EtcdRefused`.
pub fn queue(target: &Target, cluster: &Arc<Cluster>) -> Result<Vec<QueueEntry>, Error> {
    let mut transport = Transport::new(Arc::clone(cluster));
    queue_with(&mut transport, target, Instant::now() + SHORT_BUDGET)
        .map_err(|e| call_error(target, e, None))
}

/// The slot keys of a semaphore: which slot each lease holds.
///
/// # Errors
/// `EtcdUnreachable` or `EtcdRefused`.
pub fn slot_leases(target: &Target, cluster: &Arc<Cluster>) -> Result<Vec<(u16, i64)>, Error> {
    let mut transport = Transport::new(Arc::clone(cluster));
    let prefix = slot_prefix(target);
    let body = json!({
        "key": base64(prefix.as_bytes()),
        "range_end": base64(&prefix_end(prefix.as_bytes())),
        "keys_only": true,
    });
    let reply = transport
        .call("/v3/kv/range", &body, Instant::now() + SHORT_BUDGET, &|| {
            wait::stop_signal().is_some()
        })
        .map_err(|e| call_error(target, e, None))?;
    Ok(reply
        .get("kvs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(QueueEntry::from_kv)
        .filter_map(|e| Some((e.key.strip_prefix(&prefix)?.parse().ok()?, e.lease)))
        .collect())
}

fn queue_with(
    transport: &mut Transport,
    target: &Target,
    until: Instant,
) -> Result<Vec<QueueEntry>, CallError> {
    let prefix = target.prefix();
    let body = json!({
        "key": base64(prefix.as_bytes()),
        "range_end": base64(&prefix_end(prefix.as_bytes())),
        "sort_order": "ASCEND",
        "sort_target": "CREATE",
    });
    let reply = transport.call("/v3/kv/range", &body, until, &|| {
        wait::stop_signal().is_some()
    })?;
    Ok(reply
        .get("kvs")
        .and_then(Value::as_array)
        .map(|kvs| kvs.iter().map(QueueEntry::from_kv).collect())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_int64s() {
        assert_eq!(int(Some(&json!("42"))), 42);
        assert_eq!(int(Some(&json!(7))), 7);
        assert_eq!(int(None), 0);
        assert_eq!(int(Some(&json!("x"))), 0);
    }
}
