//! etcd's JSON gateway (`POST /v3/...`, grpc-gateway) spoken over HTTP/1.1 on a std
//! `TcpStream`, in TLS (rustls) for an `etcds://` cluster: one request at a time, rotating
//! over the cluster's members when one does not answer, with the authentication token when
//! the cluster wants one. No async runtime and no gRPC stack: flockrun makes a handful of
//! calls per lock.
//!
//! Every read and write runs in short slices (`SLICE`), so a stop signal, a lost lease or a
//! deadline is noticed within one slice even when a member hangs without closing the socket.
//! The TLS handshake runs in the same slices.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use serde_json::{Value, json};

use super::access::{Cluster, locked_token};
use crate::error::os_message;
use super::target::Endpoint;
use super::tls::{self, Refusal, Stage};
use crate::wait;

/// How long one blocking socket call may sleep before the caller's conditions are re-checked.
const SLICE: Duration = Duration::from_millis(200);
/// The longest a connection attempt to one member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest one unary request may take on one member before the next is asked (less when
/// the caller's budget is short: see `call`). etcd answers "request timed out" itself after
/// about 7 s while it has no leader; a shorter limit lets another member answer sooner.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest response accepted; a lock's prefix with thousands of waiters fits easily.
const MAX_BODY: usize = 16 << 20;

/// Why a call gave up before getting an answer it could use.
#[derive(Debug)]
pub enum CallError {
    /// The caller's abort check said stop (a stop signal, a lost lease).
    Aborted,
    /// No member answered before the deadline; one line per member on what went wrong.
    Unreachable(Vec<String>),
    /// A member answered with an error that asking another member will not fix, or with
    /// something that is not an etcd reply.
    Refused(String),
    /// The cluster wants a (new) token; `call` handles it when it has credentials.
    Unauthenticated(String),
}

/// A grpc-gateway error reply: `{"error": "...", "code": N, "message": "..."}`.
#[derive(Debug)]
enum Failure {
    /// Worth asking another member: a connection problem, no leader, a timeout.
    Transient(String),
    /// The member hung up on the TLS connection before answering, as it does when it
    /// rejects the client certificate (see `tls::Refusal::HungUp`). Asked of every member in
    /// turn like a transient failure; settled when all of them do it.
    HungUp(String),
    /// The deadline passed before the reply was complete.
    Late,
    Permanent(String),
    /// The token is missing, expired or stale: authenticate (again) and repeat the call.
    Unauthenticated(String),
    Aborted,
}

/// gRPC codes after which another member (or a later try) may succeed: canceled, unknown,
/// deadline exceeded, resource exhausted, aborted, internal, unavailable.
fn transient_code(code: i64) -> bool {
    matches!(code, 1 | 2 | 4 | 8 | 10 | 13 | 14)
}

/// The members of one cluster and a connection to the last one that answered.
pub struct Transport {
    cluster: Arc<Cluster>,
    endpoints: Vec<Endpoint>,
    preferred: usize,
    conn: Option<(usize, Conn)>,
}

impl Transport {
    #[must_use]
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Transport {
            endpoints: cluster.endpoints.clone(),
            cluster,
            preferred: 0,
            conn: None,
        }
    }

    /// Member indexes in the order to ask them: the last one that answered first.
    fn in_turn(&self) -> impl Iterator<Item = usize> + use<> {
        let (first, n) = (self.preferred, self.endpoints.len());
        (0..n).map(move |step| (first + step) % n)
    }

    /// `message` prefixed with the member it is about.
    fn at(&self, index: usize, message: &str) -> String {
        format!("{}: {message}", self.endpoints[index])
    }

    /// Sends `body` to `path` on some member and returns the parsed reply. Members are asked
    /// in turn, starting with the last one that answered, until one answers or `until`
    /// passes; `abort` is consulted between slices.
    pub fn call(
        &mut self,
        path: &str,
        body: &Value,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Value, CallError> {
        let body = body.to_string();
        self.authenticated(until, abort, |transport, token| {
            transport.call_with(path, &body, token, until, abort)
        })
    }

    /// As `call`, for requests that may be carried out more than once (renewals, reads), so
    /// that a leader election costs no more than the election: the member that answered
    /// last is asked first; once it fails, or has not answered within `HEDGE`, every member
    /// is asked at once, each on a connection of its own, and each asked again every
    /// `REASK` while it has not answered (a member that refused the connection only after
    /// `REFUSED_PAUSE`). The first answer wins. A follower parks a request that arrives
    /// while the cluster has no leader until its next look for one, up to an election
    /// timeout later, but answers a fresh request as soon as the new leader is there; and
    /// one member that hangs costs the others nothing.
    pub fn call_any(
        &mut self,
        path: &str,
        body: &Value,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Value, CallError> {
        let body = body.to_string();
        self.authenticated(until, abort, |transport, token| {
            transport.spread(path, &body, token, until, abort)
        })
    }

    /// Runs `attempt` with the token to send, and once more with a new token when the
    /// cluster refused the old one.
    fn authenticated(
        &mut self,
        until: Instant,
        abort: &dyn Fn() -> bool,
        mut attempt: impl FnMut(&mut Self, Option<&(String, u64)>) -> Result<Value, CallError>,
    ) -> Result<Value, CallError> {
        let mut token = self.token(until, abort)?;
        let mut renewed = false;
        loop {
            match attempt(self, token.as_ref()) {
                // The token expired (or the cluster turned authentication on): once per call,
                // a new one and the same request again. Every call flockrun makes is safe to
                // repeat.
                Err(CallError::Unauthenticated(message)) => {
                    if renewed || self.cluster.credentials.is_none() {
                        return Err(CallError::Refused(message));
                    }
                    renewed = true;
                    token = self.renew_token(token.as_ref(), until, abort)?;
                }
                other => return other,
            }
        }
    }

    /// The token to send, authenticating first when the cluster has credentials and no
    /// token was obtained yet. `None` without credentials, or where authentication is off.
    fn token(
        &mut self,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Option<(String, u64)>, CallError> {
        if self.cluster.credentials.is_none() {
            return Ok(None);
        }
        let (value, generation, disabled) = {
            let token = locked_token(&self.cluster);
            (token.value.clone(), token.generation, token.auth_disabled)
        };
        match value {
            Some(value) => Ok(Some((value, generation))),
            None if disabled => Ok(None),
            None => self.renew_token(None, until, abort),
        }
    }

    /// A new token in place of `stale` (which a call found expired), unless another thread
    /// of this process already got one since.
    fn renew_token(
        &mut self,
        stale: Option<&(String, u64)>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Option<(String, u64)>, CallError> {
        {
            let token = locked_token(&self.cluster);
            let seen = stale.map_or(0, |(_, generation)| *generation);
            if token.generation > seen
                && let Some(value) = &token.value
            {
                return Ok(Some((value.clone(), token.generation)));
            }
        }
        let Some(credentials) = self.cluster.credentials.clone() else {
            return Ok(None);
        };
        let body = json!({ "name": credentials.user, "password": credentials.password });
        // Not under the token's mutex: the network call may take long, and the other thread
        // must stay free to notice a stop signal. Two threads may both authenticate, rarely;
        // the later token wins and both are valid.
        let reply = self.call_with(
            "/v3/auth/authenticate",
            &body.to_string(),
            None,
            until,
            abort,
        );
        let mut token = locked_token(&self.cluster);
        match reply {
            Ok(reply) => {
                let value = reply
                    .get("token")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned);
                token.value.clone_from(&value);
                token.generation += 1;
                token.auth_disabled = value.is_none();
                Ok(value.map(|v| (v, token.generation)))
            }
            Err(CallError::Refused(message))
                if message.contains("authentication is not enabled") =>
            {
                // As etcdctl: a user given for a cluster without authentication is ignored.
                token.auth_disabled = true;
                Ok(None)
            }
            Err(CallError::Refused(message) | CallError::Unauthenticated(message))
                if message.contains("authentication failed") =>
            {
                Err(CallError::Refused(format!(
                    "{message}: etcd does not know the user {:?} with that password; check \
                     --user and the password (--password-file, ETCDCTL_PASSWORD)",
                    credentials.user
                )))
            }
            Err(e) => Err(e),
        }
    }

    fn call_with(
        &mut self,
        path: &str,
        body: &str,
        token: Option<&(String, u64)>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Value, CallError> {
        let token = token.map(|(value, _)| value.as_str());
        let mut problems = vec![String::new(); self.endpoints.len()];
        let mut pause = Duration::from_millis(50);
        let members = self.endpoints.len();
        loop {
            let mut hung_up = 0;
            for (asked, index) in self.in_turn().enumerate() {
                // Each member gets a fair share of the time left in this round, so one that
                // hangs (stopped, partitioned) cannot use up a short budget meant for all.
                let left_in_round = u32::try_from(members - asked).unwrap_or(u32::MAX);
                let share = until.saturating_duration_since(Instant::now()) / left_in_round;
                let attempt_until = until.min(Instant::now() + share.min(REQUEST_TIMEOUT));
                match self.call_one(index, path, body, token, attempt_until, abort) {
                    Ok(value) => {
                        self.preferred = index;
                        return Ok(value);
                    }
                    Err(Failure::Aborted) => return Err(CallError::Aborted),
                    Err(Failure::Permanent(message)) => {
                        return Err(CallError::Refused(self.at(index, &message)));
                    }
                    Err(Failure::Unauthenticated(message)) => {
                        return Err(CallError::Unauthenticated(self.at(index, &message)));
                    }
                    Err(Failure::Transient(message)) => {
                        problems[index] = self.at(index, &message);
                    }
                    Err(Failure::HungUp(message)) => {
                        problems[index] = self.at(index, &message);
                        hung_up += 1;
                    }
                    // A more telling failure seen earlier (connection refused) is kept.
                    Err(Failure::Late) if problems[index].is_empty() => {
                        problems[index] = self.at(index, "no answer in time");
                    }
                    Err(Failure::Late) => {}
                }
                if Instant::now() >= until {
                    return Err(CallError::Unreachable(
                        problems.into_iter().filter(|p| !p.is_empty()).collect(),
                    ));
                }
            }
            // Every member hung up on the handshake: the cluster refuses this client.
            if hung_up == members {
                return Err(CallError::Refused(problems.join("; ")));
            }
            // Every member failed this round: a short pause, so a cluster electing a leader
            // is not hammered, then another round.
            let nap = pause.min(until.saturating_duration_since(Instant::now()));
            if sleep_unless(nap, abort) {
                return Err(CallError::Aborted);
            }
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn call_one(
        &mut self,
        index: usize,
        path: &str,
        body: &str,
        token: Option<&str>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Value, Failure> {
        let kept = self.kept_conn(index);
        let tls = self.cluster.tls.as_ref();
        let (result, conn) = ask(
            &self.endpoints[index],
            tls,
            kept,
            &Request { path, body, token },
            until,
            abort,
        );
        if let Some(conn) = conn {
            self.conn = Some((index, conn));
        }
        result
    }

    /// The kept-alive connection, if it is to member `index`.
    fn kept_conn(&mut self, index: usize) -> Option<Conn> {
        match self.conn.take() {
            Some((i, conn)) if i == index => Some(conn),
            other => {
                self.conn = other;
                None
            }
        }
    }

    /// `call_any`'s rounds: see there.
    fn spread(
        &mut self,
        path: &str,
        body: &str,
        token: Option<&(String, u64)>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Value, CallError> {
        let request = (
            path.to_owned(),
            body.to_owned(),
            token.map(|(t, _)| t.clone()),
        );
        let finished = Arc::new(AtomicBool::new(false));
        // Whatever way this returns, the askers still out stop at their next slice.
        let _finish = Finish(Arc::clone(&finished));
        let (sender, answers) = mpsc::channel();
        let mut members = Spread::new(&self.endpoints, self.preferred);
        loop {
            if abort() {
                return Err(CallError::Aborted);
            }
            let now = Instant::now();
            if now >= until {
                return Err(CallError::Unreachable(members.problems()));
            }
            for index in members.due(now) {
                let asker = Asker {
                    index,
                    endpoint: self.endpoints[index].clone(),
                    tls: self.cluster.tls.clone(),
                    kept: self.kept_conn(index),
                    request: request.clone(),
                    until: until.min(now + ATTEMPT),
                    finished: Arc::clone(&finished),
                    answers: sender.clone(),
                };
                if let Err(e) = wait::spawn_with_signals_blocked("etcd-ask", || asker.run()) {
                    let message = format!("cannot start a thread: {e}");
                    members.failed(index, Failure::Transient(message), now);
                }
            }
            let wait = members.next_due().min(until).saturating_duration_since(now);
            let Ok((index, result, conn)) = answers.recv_timeout(wait) else {
                continue;
            };
            match result {
                Ok(value) => {
                    self.preferred = index;
                    if let Some(conn) = conn {
                        self.conn = Some((index, conn));
                    }
                    return Ok(value);
                }
                Err(Failure::Permanent(message)) => {
                    return Err(CallError::Refused(self.at(index, &message)));
                }
                Err(Failure::Unauthenticated(message)) => {
                    return Err(CallError::Unauthenticated(self.at(index, &message)));
                }
                Err(other) => members.failed(index, other, Instant::now()),
            }
            // Every member hung up on the handshake: the cluster refuses this client.
            if members.all_hung_up() {
                return Err(CallError::Refused(members.problems().join("; ")));
            }
        }
    }

    /// Opens a streaming request (a watch) on some member and returns the stream. Members
    /// are tried in turn as in `call`.
    pub fn stream(
        &mut self,
        path: &str,
        body: &Value,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Stream, CallError> {
        let body = body.to_string();
        let token = self.token(until, abort)?;
        let token = token.as_ref().map(|(value, _)| value.as_str());
        let mut problems = Vec::new();
        let mut hung_up = 0;
        for index in self.in_turn() {
            let attempt_until = until.min(Instant::now() + REQUEST_TIMEOUT);
            let endpoint = &self.endpoints[index];
            let opened = Conn::open(endpoint, self.cluster.tls.as_ref(), attempt_until, abort)
                .and_then(|mut c| {
                    c.send(endpoint, path, &body, token, attempt_until, abort)?;
                    let head = c.read_head(attempt_until, abort)?;
                    Ok((c, head))
                });
            match opened {
                Ok((conn, head)) if head.status == 200 && head.chunked => {
                    self.preferred = index;
                    return Ok(Stream {
                        conn,
                        pending: Vec::new(),
                    });
                }
                Ok((mut conn, head)) => {
                    let body = conn
                        .read_body(&head, attempt_until, abort)
                        .unwrap_or_default();
                    match interpret(head.status, &body) {
                        Err(Failure::Unauthenticated(m)) => {
                            return Err(CallError::Unauthenticated(self.at(index, &m)));
                        }
                        Err(Failure::Permanent(m)) => {
                            return Err(CallError::Refused(self.at(index, &m)));
                        }
                        Err(Failure::Transient(m)) => problems.push(self.at(index, &m)),
                        _ => problems.push(
                            self.at(index, &format!("HTTP {} without a stream", head.status)),
                        ),
                    }
                }
                Err(Failure::Aborted) => return Err(CallError::Aborted),
                Err(Failure::Permanent(m)) => return Err(CallError::Refused(self.at(index, &m))),
                Err(Failure::Unauthenticated(m)) => {
                    return Err(CallError::Unauthenticated(self.at(index, &m)));
                }
                Err(Failure::Transient(m)) => problems.push(self.at(index, &m)),
                Err(Failure::HungUp(m)) => {
                    problems.push(self.at(index, &m));
                    hung_up += 1;
                }
                Err(Failure::Late) => problems.push(self.at(index, "no answer in time")),
            }
        }
        if hung_up == self.endpoints.len() {
            return Err(CallError::Refused(problems.join("; ")));
        }
        Err(CallError::Unreachable(problems))
    }

    /// Forgets the token a watch was refused with, so that the next call authenticates
    /// again (a watch cannot be repeated by `call`).
    pub fn token_refused(&self) {
        let mut token = locked_token(&self.cluster);
        if token.value.is_some() {
            token.value = None;
        }
    }
}

/// One request's parts.
struct Request<'a> {
    path: &'a str,
    body: &'a str,
    token: Option<&'a str>,
}

/// Asks member `endpoint` once, on the kept-alive connection `kept` if there is one: the
/// reply, and the connection when it may be used again. A kept-alive connection may have
/// been closed by the server meanwhile; then one fresh connection is tried before calling
/// the member unreachable. Every call flockrun makes is safe to repeat (see `etcd::lock`).
fn ask(
    endpoint: &Endpoint,
    tls: Option<&Arc<ClientConfig>>,
    kept: Option<Conn>,
    request: &Request<'_>,
    until: Instant,
    abort: &dyn Fn() -> bool,
) -> (Result<Value, Failure>, Option<Conn>) {
    let reused = kept.is_some();
    let mut conn = match kept {
        Some(conn) => conn,
        None => match Conn::open(endpoint, tls, until, abort) {
            Ok(conn) => conn,
            Err(e) => return (Err(e), None),
        },
    };
    let Request { path, body, token } = *request;
    let mut result = conn.request(endpoint, path, body, token, until, abort);
    if reused
        && matches!(
            result,
            Err(Failure::Transient(_) | Failure::HungUp(_) | Failure::Late)
        )
    {
        conn = match Conn::open(endpoint, tls, until, abort) {
            Ok(conn) => conn,
            Err(e) => return (Err(e), None),
        };
        result = conn.request(endpoint, path, body, token, until, abort);
    }
    match result {
        Ok((status, reply)) => {
            let reusable = conn.reusable;
            (interpret(status, &reply), reusable.then_some(conn))
        }
        Err(e) => (Err(e), None),
    }
}

/// How long `call_any` waits for the member asked first before asking all of them, and
/// how often it asks a member that has not answered yet again.
const HEDGE: Duration = Duration::from_millis(250);
const REASK: Duration = Duration::from_millis(100);
/// The longest one request of `call_any` waits for its answer.
const ATTEMPT: Duration = Duration::from_secs(1);
/// How soon `call_any` asks a member again after it refused the connection (it is down or
/// restarting), and the longest pause after other failures (no leader yet, a timeout).
const REFUSED_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_millis(400);

/// What `call_any` gets back from one member: its index, the reply, the connection.
type Answer = (usize, Result<Value, Failure>, Option<Conn>);

/// One request of `call_any`, run on a thread of its own.
struct Asker {
    index: usize,
    endpoint: Endpoint,
    tls: Option<Arc<ClientConfig>>,
    kept: Option<Conn>,
    /// Path, body and token.
    request: (String, String, Option<String>),
    until: Instant,
    finished: Arc<AtomicBool>,
    answers: mpsc::Sender<Answer>,
}

impl Asker {
    fn run(self) {
        let finished = &self.finished;
        let abort = || finished.load(Ordering::SeqCst);
        let (path, body, token) = &self.request;
        let request = Request {
            path,
            body,
            token: token.as_deref(),
        };
        let (result, conn) = ask(
            &self.endpoint,
            self.tls.as_ref(),
            self.kept,
            &request,
            self.until,
            &abort,
        );
        // Nobody listens any more once another member answered.
        let _ = self.answers.send((self.index, result, conn));
    }
}

/// `call_any`'s view of the members: when to ask each (again), and what went wrong.
struct Spread {
    names: Vec<String>,
    next: Vec<Instant>,
    asked: Vec<bool>,
    pause: Vec<Duration>,
    problems: Vec<String>,
    hung_up: Vec<bool>,
}

impl Spread {
    /// The member that answered last is asked at once, the others after `HEDGE`.
    fn new(endpoints: &[Endpoint], preferred: usize) -> Spread {
        let now = Instant::now();
        let members = endpoints.len();
        Spread {
            names: endpoints.iter().map(ToString::to_string).collect(),
            next: (0..members)
                .map(|i| if i == preferred { now } else { now + HEDGE })
                .collect(),
            asked: vec![false; members],
            pause: vec![Duration::from_millis(50); members],
            problems: vec![String::new(); members],
            hung_up: vec![false; members],
        }
    }

    /// The members to ask now. A member that has not answered is asked again `REASK`
    /// later, beside the request still out: during an election a request can stay parked
    /// in a follower well after the new leader is there, while a fresh one is answered at
    /// once.
    fn due(&mut self, now: Instant) -> Vec<usize> {
        let due: Vec<usize> = (0..self.next.len())
            .filter(|&i| self.next[i] <= now)
            .collect();
        for &i in &due {
            self.next[i] = now + REASK;
            self.asked[i] = true;
        }
        due
    }

    fn next_due(&self) -> Instant {
        self.next.iter().min().copied().unwrap_or_else(Instant::now)
    }

    /// Member `index` failed: ask it again after a pause (at once after a request that ran
    /// out of time), and the members not asked yet now.
    fn failed(&mut self, index: usize, failure: Failure, now: Instant) {
        self.hung_up[index] = matches!(failure, Failure::HungUp(_));
        let retry = match failure {
            Failure::Transient(message) | Failure::HungUp(message) => {
                let refused = message == nix::errno::Errno::ECONNREFUSED.desc();
                self.problems[index] = format!("{}: {message}", self.names[index]);
                if refused {
                    REFUSED_PAUSE
                } else {
                    self.pause[index]
                }
            }
            // A more telling failure seen earlier (connection refused) is kept.
            _ => {
                if self.problems[index].is_empty() {
                    self.problems[index] = format!("{}: no answer in time", self.names[index]);
                }
                Duration::ZERO
            }
        };
        for (at, asked) in self.next.iter_mut().zip(&self.asked) {
            if !asked {
                *at = (*at).min(now);
            }
        }
        self.next[index] = now + retry;
        self.pause[index] = (self.pause[index] * 2).min(MAX_PAUSE);
    }

    fn all_hung_up(&self) -> bool {
        self.hung_up.iter().all(|&h| h)
    }

    fn problems(&self) -> Vec<String> {
        self.problems
            .iter()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect()
    }
}

/// Tells the askers of a `call_any` still out to stop, when it returns.
struct Finish(Arc<AtomicBool>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Turns an HTTP status and body into the reply or a classified failure.
fn interpret(status: u16, body: &[u8]) -> Result<Value, Failure> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        let text = String::from_utf8_lossy(&body[..body.len().min(120)])
            .trim()
            .to_owned();
        let mut message = format!("HTTP {status}, not an etcd reply: {text:?}");
        if text.contains("HTTPS server") {
            message.push_str(": this member serves TLS; write LOCK as etcds://...");
        }
        if status >= 500 {
            Failure::Transient(message)
        } else {
            Failure::Permanent(message)
        }
    })?;
    if status == 200 {
        // A streaming endpoint answered a single request: `{"result": …}` or `{"error": …}`.
        if let Some(error) = value.get("error") {
            return Err(gateway_error(error));
        }
        return Ok(value.get("result").cloned().unwrap_or(value));
    }
    Err(gateway_error(&value))
}

fn gateway_error(error: &Value) -> Failure {
    // Unary replies say `code`; errors inside a stream say `grpc_code`.
    let code = error
        .get("code")
        .or_else(|| error.get("grpc_code"))
        .and_then(Value::as_i64)
        .unwrap_or(2);
    let message = error
        .get("message")
        .or_else(|| error.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("unknown error")
        .to_owned();
    // 16 is gRPC's Unauthenticated (an expired or unknown token); etcd says "user name is
    // empty" when a cluster with authentication gets no token, and "revision of auth store is
    // old" when the users or roles changed since the token was issued.
    if code == 16
        || message.contains("user name is empty")
        || message.contains("revision of auth store is old")
    {
        return Failure::Unauthenticated(message);
    }
    if transient_code(code) {
        Failure::Transient(message)
    } else {
        Failure::Permanent(message)
    }
}

/// Sleeps `d` in slices; true when `abort` said stop.
fn sleep_unless(d: Duration, abort: &dyn Fn() -> bool) -> bool {
    let end = Instant::now() + d;
    loop {
        if abort() {
            return true;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        crate::wait::nap(left.min(SLICE));
    }
}

/// The parts of a response head flockrun needs.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

/// A connection's byte stream: TCP, or TLS over TCP.
enum Socket {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Bytes a member sent earlier, read back by `replay_reply` for the fuzz targets.
    Received(io::Cursor<Vec<u8>>),
}

impl Socket {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Socket::Plain(tcp) => tcp.set_read_timeout(Some(timeout)),
            Socket::Tls(tls) => tls.get_ref().set_read_timeout(Some(timeout)),
            Socket::Received(_) => Ok(()),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.read(buf),
            Socket::Tls(tls) => tls.read(buf),
            Socket::Received(bytes) => bytes.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(tcp) => tcp.write(buf),
            Socket::Tls(tls) => tls.write(buf),
            Socket::Received(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Plain(tcp) => tcp.flush(),
            Socket::Tls(tls) => tls.flush(),
            Socket::Received(_) => Ok(()),
        }
    }
}

/// One connection with its unread input.
struct Conn {
    stream: Socket,
    input: Vec<u8>,
    reusable: bool,
    /// The member's name, for TLS messages.
    host: String,
    /// Whether anything was read since the TLS handshake: a TLS member that hangs up before
    /// its first answer has most likely refused the client certificate.
    answered: bool,
    /// Whether a client certificate was offered, for TLS messages.
    client_cert: bool,
}

impl Conn {
    fn open(
        endpoint: &Endpoint,
        tls: Option<&Arc<ClientConfig>>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Self, Failure> {
        if abort() {
            return Err(Failure::Aborted);
        }
        crate::nss::confine();
        let addresses: Vec<SocketAddr> = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(|e| Failure::Transient(format!("cannot resolve the host name: {e}")))?
            .collect();
        let mut last = Failure::Transient("no address for the host name".to_owned());
        for address in addresses {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Late);
            }
            match TcpStream::connect_timeout(&address, left.min(CONNECT_TIMEOUT)) {
                Ok(stream) => {
                    // Requests are small and answered at once; Nagle would only add delay.
                    let _ = stream.set_nodelay(true);
                    stream
                        .set_read_timeout(Some(SLICE))
                        .and_then(|()| stream.set_write_timeout(Some(SLICE)))
                        .map_err(|e| Failure::Transient(e.to_string()))?;
                    let stream = match tls {
                        None => Socket::Plain(stream),
                        Some(config) => handshake(config, &endpoint.host, stream, until, abort)?,
                    };
                    return Ok(Conn {
                        stream,
                        input: Vec::new(),
                        reusable: true,
                        host: endpoint.host.clone(),
                        answered: false,
                        client_cert: tls.is_some_and(|c| c.client_auth_cert_resolver.has_certs()),
                    });
                }
                Err(e) => last = Failure::Transient(os_message(&e)),
            }
        }
        Err(last)
    }

    fn request(
        &mut self,
        endpoint: &Endpoint,
        path: &str,
        body: &str,
        token: Option<&str>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<(u16, Vec<u8>), Failure> {
        self.send(endpoint, path, body, token, until, abort)?;
        let head = self.read_head(until, abort)?;
        let body = self.read_body(&head, until, abort)?;
        self.reusable = !head.close;
        Ok((head.status, body))
    }

    fn send(
        &mut self,
        endpoint: &Endpoint,
        path: &str,
        body: &str,
        token: Option<&str>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<(), Failure> {
        // etcd's gateway takes the token bare, not as "Bearer <token>".
        let authorization = token.map_or_else(String::new, |t| format!("Authorization: {t}\r\n"));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
             {authorization}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut bytes = request.as_bytes();
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(0) => return Err(Failure::Transient("connection closed".to_owned())),
                Ok(n) => bytes = &bytes[n..],
                Err(e) => self.check_slice(&e, until, abort)?,
            }
        }
        // TLS buffers what it encrypts until flushed.
        while let Err(e) = self.stream.flush() {
            self.check_slice(&e, until, abort)?;
        }
        Ok(())
    }

    /// After a socket call ended without data: a timed-out slice or a signal is fine unless
    /// the deadline passed or the caller wants to stop; anything else is a failure.
    fn check_slice(
        &self,
        e: &io::Error,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<(), Failure> {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                slice_over(until, abort)
            }
            _ if matches!(self.stream, Socket::Tls(_)) => Err(
                match tls::refusal(e, &self.host, Stage::Answer, self.client_cert) {
                    Some(Refusal::Settled(m)) => Failure::Permanent(m),
                    Some(Refusal::HungUp(m)) if !self.answered => Failure::HungUp(m),
                    _ => Failure::Transient(os_message(e)),
                },
            ),
            _ => Err(Failure::Transient(os_message(e))),
        }
    }

    /// Reads more input; fails at end of stream.
    fn fill(&mut self, until: Instant, abort: &dyn Fn() -> bool) -> Result<(), Failure> {
        let mut buf = [0u8; 8192];
        loop {
            // The last slice ends at `until`, so a deadline is kept to the millisecond
            // rather than to the next whole slice.
            let left = until.saturating_duration_since(Instant::now());
            let slice = left.clamp(Duration::from_millis(1), SLICE);
            let _ = self.stream.set_read_timeout(slice);
            match self.stream.read(&mut buf) {
                Ok(0) if matches!(self.stream, Socket::Tls(_)) && !self.answered => {
                    let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                    return Err(
                        match tls::refusal(&eof, &self.host, Stage::Answer, self.client_cert) {
                            Some(Refusal::HungUp(m)) => Failure::HungUp(m),
                            _ => Failure::Transient("connection closed".to_owned()),
                        },
                    );
                }
                // A TLS listener drops a plain request without a word (etcd's does).
                Ok(0) if !self.answered => {
                    return Err(Failure::HungUp(
                        "the member closed the connection without answering: it seems to \
                         serve TLS on this port (write LOCK as etcds://...), or it is shutting \
                         down"
                            .to_owned(),
                    ));
                }
                Ok(0) => return Err(Failure::Transient("connection closed".to_owned())),
                Ok(n) => {
                    self.answered = true;
                    self.input.extend_from_slice(&buf[..n]);
                    if self.input.len() > MAX_BODY {
                        return Err(Failure::Permanent("reply too large".to_owned()));
                    }
                    return Ok(());
                }
                Err(e) => self.check_slice(&e, until, abort)?,
            }
        }
    }

    /// One line without its CRLF.
    fn line(&mut self, until: Instant, abort: &dyn Fn() -> bool) -> Result<String, Failure> {
        loop {
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.input.drain(..end + 2).take(end).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.input.len() > 64 * 1024 {
                return Err(Failure::Permanent("HTTP header line too long".to_owned()));
            }
            self.fill(until, abort)?;
        }
    }

    fn take(
        &mut self,
        n: usize,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, Failure> {
        while self.input.len() < n {
            self.fill(until, abort)?;
        }
        Ok(self.input.drain(..n).collect())
    }

    fn read_head(&mut self, until: Instant, abort: &dyn Fn() -> bool) -> Result<Head, Failure> {
        let status_line = self.line(until, abort)?;
        let status = parse_status_line(&status_line).ok_or_else(|| {
            Failure::Permanent(format!(
                "not an HTTP reply: {status_line:?} (is this etcd's client port?)"
            ))
        })?;
        let mut head = Head {
            status,
            content_length: None,
            chunked: false,
            close: false,
        };
        loop {
            let line = self.line(until, abort)?;
            if line.is_empty() {
                return Ok(head);
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => head.content_length = value.parse().ok(),
                "transfer-encoding" => head.chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => head.close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }

    fn read_body(
        &mut self,
        head: &Head,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, Failure> {
        if head.chunked {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk(until, abort)? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(Failure::Permanent("reply too large".to_owned()));
                }
            }
            Ok(body)
        } else if let Some(n) = head.content_length {
            if n > MAX_BODY {
                return Err(Failure::Permanent("reply too large".to_owned()));
            }
            self.take(n, until, abort)
        } else {
            // Neither: the body runs to the end of the connection.
            self.reusable = false;
            loop {
                match self.fill(until, abort) {
                    Ok(()) => {}
                    Err(Failure::Transient(_)) => return Ok(std::mem::take(&mut self.input)),
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// The next chunk of a chunked body; `None` after the last one. Input is consumed only
    /// once a whole chunk is there, so a stream that goes idle mid-chunk stays in step.
    fn chunk(
        &mut self,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Option<Vec<u8>>, Failure> {
        loop {
            if let Some((consumed, data)) = parse_chunk(&self.input)? {
                self.input.drain(..consumed);
                return Ok(data);
            }
            self.fill(until, abort)?;
        }
    }
}

/// A complete chunk at the start of `input`: how many bytes it takes and its data (`None`
/// for the last chunk); `Ok(None)` when more input is needed.
#[allow(clippy::type_complexity)]
fn parse_chunk(input: &[u8]) -> Result<Option<(usize, Option<Vec<u8>>)>, Failure> {
    let Some(end) = input.windows(2).position(|w| w == b"\r\n") else {
        if input.len() > 1024 {
            return Err(Failure::Permanent("bad chunk header".to_owned()));
        }
        return Ok(None);
    };
    let size_line = String::from_utf8_lossy(&input[..end]);
    let size = size_line.split(';').next().unwrap_or("").trim();
    let size = usize::from_str_radix(size, 16)
        .map_err(|_| Failure::Permanent(format!("bad chunk size {size_line:?}")))?;
    if size > MAX_BODY {
        return Err(Failure::Permanent("chunk too large".to_owned()));
    }
    let start = end + 2;
    if size == 0 {
        // Trailers, if any, then an empty line.
        let mut at = start;
        while let Some(len) = input[at..].windows(2).position(|w| w == b"\r\n") {
            at += len + 2;
            if len == 0 {
                return Ok(Some((at, None)));
            }
        }
        return Ok(None);
    }
    if input.len() < start + size + 2 {
        return Ok(None);
    }
    if &input[start + size..start + size + 2] != b"\r\n" {
        return Err(Failure::Permanent("chunk not followed by CRLF".to_owned()));
    }
    Ok(Some((
        start + size + 2,
        Some(input[start..start + size].to_vec()),
    )))
}

/// A slice of a socket call ran out: fine unless the deadline passed or the caller wants to
/// stop.
fn slice_over(until: Instant, abort: &dyn Fn() -> bool) -> Result<(), Failure> {
    if abort() {
        Err(Failure::Aborted)
    } else if Instant::now() >= until {
        Err(Failure::Late)
    } else {
        Ok(())
    }
}

/// The TLS handshake with `host` on `tcp`, in slices like every other socket call, so a
/// member that accepts the connection and then says nothing cannot hang it.
fn handshake(
    config: &Arc<ClientConfig>,
    host: &str,
    mut tcp: TcpStream,
    until: Instant,
    abort: &dyn Fn() -> bool,
) -> Result<Socket, Failure> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        Failure::Permanent(format!(
            "{host:?} cannot be checked against a TLS certificate"
        ))
    })?;
    let mut tls = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| Failure::Permanent(format!("cannot start TLS: {e}")))?;
    let client_cert = config.client_auth_cert_resolver.has_certs();
    let mut heard = false;
    while tls.is_handshaking() {
        let left = until.saturating_duration_since(Instant::now());
        let _ = tcp.set_read_timeout(Some(left.clamp(Duration::from_millis(1), SLICE)));
        match tls.complete_io(&mut tcp) {
            Ok((read, _)) => heard |= read > 0,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                slice_over(until, abort)?;
            }
            Err(e) => {
                let stage = if heard {
                    Stage::Handshake
                } else {
                    Stage::Silent
                };
                return Err(match tls::refusal(&e, host, stage, client_cert) {
                    Some(Refusal::Settled(m)) => Failure::Permanent(m),
                    Some(Refusal::HungUp(m)) => Failure::HungUp(m),
                    None => Failure::Transient(os_message(&e)),
                });
            }
        }
    }
    Ok(Socket::Tls(Box::new(StreamOwned::new(tls, tcp))))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}


/// A streaming reply (a watch): one JSON message per line of the chunked body.
pub struct Stream {
    conn: Conn,
    pending: Vec<u8>,
}

/// What waiting on a stream gave.
pub enum StreamEvent {
    Message(Value),
    /// `until` passed without a message.
    Idle,
}

impl Stream {
    /// The next message, or `Idle` once `until` passes. A closed or broken stream is an
    /// error (`Unreachable`), as is a message that is not JSON (`Refused`).
    pub fn next(
        &mut self,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<StreamEvent, CallError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_slice(line).map_err(|_| {
                    CallError::Refused(format!(
                        "a watch sent something that is not JSON: {:?}",
                        String::from_utf8_lossy(&line[..line.len().min(120)])
                    ))
                })?;
                if let Some(error) = value.get("error") {
                    return Err(match gateway_error(error) {
                        Failure::Permanent(m) => CallError::Refused(m),
                        Failure::Unauthenticated(m) => CallError::Unauthenticated(m),
                        Failure::Transient(m) | Failure::HungUp(m) => {
                            CallError::Unreachable(vec![m])
                        }
                        Failure::Late => {
                            CallError::Unreachable(vec!["no answer in time".to_owned()])
                        }
                        Failure::Aborted => CallError::Aborted,
                    });
                }
                return Ok(StreamEvent::Message(
                    value.get("result").cloned().unwrap_or(value),
                ));
            }
            match self.conn.chunk(until, abort) {
                Ok(Some(data)) => self.pending.extend_from_slice(&data),
                Ok(None) => return Err(CallError::Unreachable(vec!["the watch ended".to_owned()])),
                Err(Failure::Aborted) => return Err(CallError::Aborted),
                Err(Failure::Late) => return Ok(StreamEvent::Idle),
                Err(Failure::Transient(m) | Failure::HungUp(m)) => {
                    return Err(CallError::Unreachable(vec![m]));
                }
                Err(Failure::Permanent(m)) => return Err(CallError::Refused(m)),
                Err(Failure::Unauthenticated(m)) => return Err(CallError::Unauthenticated(m)),
            }
        }
    }
}

/// Reads `bytes` as a member's whole answer to one unary request, then again as a watch
/// stream, through the same code that reads a socket: what a fuzz target (see
/// `crate::fuzz`) drives. Gives the reply's JSON when it was a good unary reply.
pub(crate) fn replay_reply(bytes: &[u8]) -> Option<Value> {
    let received = |bytes: &[u8]| Conn {
        stream: Socket::Received(io::Cursor::new(bytes.to_vec())),
        input: Vec::new(),
        reusable: true,
        host: "member.invalid".to_owned(),
        answered: false,
        client_cert: false,
    };
    let until = Instant::now() + Duration::from_secs(1);
    let go_on = || false;
    let mut conn = received(bytes);
    let unary = conn
        .read_head(until, &go_on)
        .and_then(|head| Ok((head.status, conn.read_body(&head, until, &go_on)?)))
        .and_then(|(status, body)| interpret(status, &body))
        .ok();
    let mut stream = Stream {
        conn: received(bytes),
        pending: Vec::new(),
    };
    if stream.conn.read_head(until, &go_on).is_ok() {
        // Every message until the stream ends or breaks; each read consumes input, so this
        // ends when the bytes do.
        while let Ok(StreamEvent::Message(_)) = stream.next(until, &go_on) {}
    }
    unary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(
            parse_status_line("HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH_9.2"), None);
        assert_eq!(parse_status_line(""), None);
    }

    #[test]
    fn chunked_streams_reassemble_from_any_split() {
        let messages = [
            "{\"a\":1}\n",
            "",
            "{\"b\":\"x\\r\\n\"}\n",
            "0123456789abcdef",
        ];
        let mut wire = Vec::new();
        for m in messages.iter().filter(|m| !m.is_empty()) {
            wire.extend_from_slice(format!("{:x}\r\n{m}\r\n", m.len()).as_bytes());
        }
        wire.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
        let expected: String = messages.concat();
        // Every way of cutting the wire in two: input arrives in pieces, and a chunk is
        // consumed only when whole.
        for cut in 0..=wire.len() {
            let mut input = wire[..cut].to_vec();
            let mut body = Vec::new();
            let mut fed = false;
            loop {
                match parse_chunk(&input) {
                    Ok(Some((used, Some(data)))) => {
                        input.drain(..used);
                        body.extend_from_slice(&data);
                    }
                    Ok(Some((used, None))) => {
                        input.drain(..used);
                        break;
                    }
                    Ok(None) if !fed => {
                        input.extend_from_slice(&wire[cut..]);
                        fed = true;
                    }
                    Ok(None) => panic!("stuck at cut {cut}"),
                    Err(e) => panic!("refused at cut {cut}: {e:?}"),
                }
            }
            assert_eq!(String::from_utf8(body).unwrap(), expected, "cut {cut}");
            assert!(input.is_empty());
        }
        assert!(parse_chunk(b"zz\r\n").is_err());
        assert!(parse_chunk(b"3\r\nabcX\n").is_err());
    }

    #[test]
    fn gateway_errors_are_classified() {
        let no_leader =
            br#"{"error":"etcdserver: no leader","code":14,"message":"etcdserver: no leader"}"#;
        assert!(
            matches!(interpret(503, no_leader), Err(Failure::Transient(m)) if m == "etcdserver: no leader")
        );
        let bad = br#"{"error":"bad","code":3,"message":"invalid"}"#;
        assert!(matches!(interpret(400, bad), Err(Failure::Permanent(m)) if m == "invalid"));
        assert!(matches!(
            interpret(502, b"<html>"),
            Err(Failure::Transient(_))
        ));
        assert!(matches!(
            interpret(404, b"404 page not found"),
            Err(Failure::Permanent(_))
        ));
        let stream_reply = br#"{"result":{"ID":"7","TTL":"10"}}"#;
        assert_eq!(interpret(200, stream_reply).unwrap()["TTL"], "10");
    }
}
