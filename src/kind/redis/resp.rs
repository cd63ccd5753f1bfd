//! A connection to Redis or Valkey, speaking RESP2 itself: commands go out as arrays of bulk
//! strings, replies are parsed as they come, every socket call keeps its deadline to the
//! slice (`kind::network::socket`). Login follows redis-cli: TLS for `rediss://`, `AUTH`
//! with a user (an ACL user) or without (the default user), then `SELECT` the database.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use super::url::{Endpoint, Location};
use crate::error::os_message;
use crate::kind::network::socket::{self, Failure, Socket, check, keepalive};

/// The longest reply flockrun accepts: its replies are a few short values.
const MAX_REPLY: usize = 1 << 20;
/// How deep arrays may nest in a reply (flockrun's nest at most two).
const MAX_DEPTH: usize = 8;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(String),
    /// `-ERR …`: the server's error, code first (`WRONGPASS`, `NOPERM`, `READONLY`).
    Error(String),
    Int(i64),
    /// `$…`; `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*…`; `None` is the null array.
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The text of a bulk or simple string.
    #[must_use]
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Parses one reply from the front of `input`: the value and the bytes it took, `None` when
/// more bytes are needed.
///
/// # Errors
/// When `input` is not RESP (or nests deeper, or is larger, than flockrun's replies).
pub fn parse(input: &[u8]) -> Result<Option<(Value, usize)>, String> {
    parse_at(input, 0, 0)
}

fn parse_at(input: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, String> {
    if depth > MAX_DEPTH {
        return Err("a reply nests too deep".to_owned());
    }
    let Some(&kind) = input.get(at) else {
        return Ok(None);
    };
    let Some(end) = input[at + 1..].windows(2).position(|w| w == b"\r\n") else {
        if input.len() - at > MAX_REPLY {
            return Err("a reply line is too long".to_owned());
        }
        return Ok(None);
    };
    let line = &input[at + 1..at + 1 + end];
    let next = at + 1 + end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| format!("{:?} is not a number", text()))
    };
    match kind {
        b'+' => Ok(Some((Value::Simple(text()), next))),
        b'-' => Ok(Some((Value::Error(text()), next))),
        b':' => Ok(Some((Value::Int(number()?), next))),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_REPLY)
                .ok_or("a bulk string is too long")?;
            if input.len() < next + len + 2 {
                return Ok(None);
            }
            if &input[next + len..next + len + 2] != b"\r\n" {
                return Err("a bulk string does not end with CRLF".to_owned());
            }
            Ok(Some((Value::Bulk(Some(input[next..next + len].to_vec())), next + len + 2)))
        }
        b'*' => {
            let count = number()?;
            if count < 0 {
                return Ok(Some((Value::Array(None), next)));
            }
            let count = usize::try_from(count)
                .ok()
                .filter(|c| *c <= MAX_REPLY / 4)
                .ok_or("an array is too long")?;
            let mut items = Vec::with_capacity(count.min(64));
            let mut at = next;
            for _ in 0..count {
                match parse_at(input, at, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        at = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        other => Err(format!(
            "a reply starts with {:?}, which is not RESP: is this a Redis server?",
            char::from(other)
        )),
    }
}

/// A command as RESP: an array of bulk strings.
#[must_use]
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let mut head = String::new();
        let _ = write!(head, "${}\r\n", arg.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// How to log in: what LOCK and the options give.
#[derive(Clone)]
pub struct Login {
    pub tls: Option<Arc<ClientConfig>>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Where the password came from, for a refusal's hint (`LOCK`, `REDISCLI_AUTH`…).
    pub password_from: &'static str,
    /// Whether a client certificate is offered (for a refusal's wording).
    pub client_cert: bool,
    /// The client-side keepalive idle time (a third of the lease).
    pub keepalive_idle: Duration,
}

/// One connection.
pub struct Conn {
    socket: Socket,
    input: Vec<u8>,
}

impl Conn {
    /// Connects to LOCK's server, shakes hands (TLS), logs in and selects the database.
    ///
    /// # Errors
    /// `Unreachable`, `Refused` (login, TLS, a server that is not Redis), `Late`, `Aborted`.
    pub fn open(
        location: &Location,
        login: &Login,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Conn, Failure> {
        check(until, abort)?;
        let socket = match &location.endpoint {
            Endpoint::Unix(path) => Socket::unix(path)?,
            Endpoint::Tcp { host, port } => {
                let shown = location.endpoint.to_string();
                let tcp = socket::connect_tcp(host, *port, &shown, until, abort)?;
                keepalive(&tcp, login.keepalive_idle);
                match &login.tls {
                    None => Socket::Tcp(tcp),
                    Some(config) => {
                        let name = ServerName::try_from(host.clone()).map_err(|_| {
                            Failure::Refused(format!(
                                "{host:?} cannot be checked against a TLS certificate"
                            ))
                        })?;
                        socket::handshake(tcp, config, name, until, abort).map_err(|e| match e {
                            Ok(failure) => failure,
                            Err(e) => tls_failure(&e, &shown, login.client_cert),
                        })?
                    }
                }
            }
        };
        let mut conn = Conn {
            socket,
            input: Vec::new(),
        };
        conn.log_in(location, login, until, abort)?;
        Ok(conn)
    }

    fn log_in(
        &mut self,
        location: &Location,
        login: &Login,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<(), Failure> {
        if let Some(password) = &login.password {
            let reply = match &login.user {
                Some(user) => self.call(&[b"AUTH", user.as_bytes(), password.as_bytes()], until, abort)?,
                None => self.call(&[b"AUTH", password.as_bytes()], until, abort)?,
            };
            match reply {
                Value::Error(e) if e.contains("without any password configured") => {
                    // As redis-cli: a password the server does not need is not an error.
                }
                Value::Error(e) => {
                    return Err(Failure::Refused(format!(
                        "{e}: check the password (from {}){}",
                        login.password_from,
                        login
                            .user
                            .as_ref()
                            .map_or_else(String::new, |u| format!(" and the ACL user {u:?}"))
                    )));
                }
                _ => {}
            }
        } else if let Some(user) = &login.user {
            // An ACL user marked nopass takes any password.
            if let Value::Error(e) = self.call(&[b"AUTH", user.as_bytes(), b""], until, abort)? {
                return Err(Failure::Refused(format!(
                    "{e}: user {user:?} needs a password: give it in LOCK \
                     (redis://USER:PASSWORD@HOST/NAME), with --password-file or in REDISCLI_AUTH"
                )));
            }
        }
        if location.db != 0 {
            let db = location.db.to_string();
            if let Value::Error(e) = self.call(&[b"SELECT", db.as_bytes()], until, abort)? {
                return Err(refusal(&e, &format!("selecting database {db}"), login));
            }
        }
        Ok(())
    }

    /// Sends a command and reads its reply. An error reply is a `Value::Error`; the
    /// connection stays usable.
    ///
    /// # Errors
    /// `Unreachable` when the connection breaks or the reply is not RESP; `Late`, `Aborted`
    /// (the connection is then unusable).
    pub fn call(
        &mut self,
        args: &[&[u8]],
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Value, Failure> {
        self.socket.send(&encode(args), until, abort)?;
        self.reply(until, abort)
    }

    /// Sends a command without reading its reply (a subscription's).
    ///
    /// # Errors
    /// As `call`.
    pub fn send(
        &mut self,
        args: &[&[u8]],
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<(), Failure> {
        self.socket.send(&encode(args), until, abort)
    }

    /// The next reply (or pushed message, on a subscribed connection).
    ///
    /// # Errors
    /// As `call`.
    pub fn reply(&mut self, until: Instant, abort: &dyn Fn() -> bool) -> Result<Value, Failure> {
        loop {
            match parse(&self.input) {
                Ok(Some((value, used))) => {
                    self.input.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::Unreachable(format!("the server's reply: {e}"))),
            }
            let mut chunk = [0u8; 8192];
            let n = self.socket.receive(&mut chunk, until, abort)?;
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    /// The connection's socket.
    #[must_use]
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }
}

/// An error reply to a command flockrun needs, as a refusal that says what to check.
#[must_use]
pub fn refusal(error: &str, doing: &str, login: &Login) -> Failure {
    let hint = if error.starts_with("NOAUTH") {
        " (the server requires a password: give it in LOCK, with --password-file or in \
         REDISCLI_AUTH)"
            .to_owned()
    } else if error.starts_with("NOPERM") || error.contains("can't run this command") {
        format!(
            " (the ACL of user {} does not allow it; see README.md, \"Redis locks\", for the \
             commands and keys flockrun needs)",
            login.user.as_deref().unwrap_or("default")
        )
    } else {
        String::new()
    };
    Failure::Refused(format!("{doing}: {error}{hint}"))
}

/// A failed TLS handshake with the server `shown`, in words that say what to check.
fn tls_failure(e: &std::io::Error, shown: &str, client_cert: bool) -> Failure {
    use rustls::{CertificateError, Error as E};
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        let hung_up = matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        );
        return if hung_up {
            Failure::Refused(format!(
                "{shown} closed the connection during the TLS handshake: it {} (give --cert \
                 and --key signed by a CA the server trusts), or it serves no TLS on this port \
                 (use redis:// for it)",
                if client_cert {
                    "does not trust this client certificate"
                } else {
                    "may require a client certificate"
                }
            ))
        } else {
            Failure::Unreachable(format!("TLS with {shown} failed: {}", os_message(e)))
        };
    };
    let why = match tls {
        E::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "its certificate is not signed by a CA flockrun trusts: give the CA with --cacert"
            .to_owned(),
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "its certificate is not valid for the host LOCK names: name the server as its \
              certificate does"
            .to_owned(),
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "its certificate has expired (or this host's clock is wrong)".to_owned(),
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "it does not speak TLS on this port: use redis:// for it".to_owned()
        }
        E::AlertReceived(alert) => format!(
            "it refused the handshake (TLS alert {alert:?}){}",
            if client_cert {
                ": it does not trust the client certificate"
            } else {
                ": it may require a client certificate (--cert and --key)"
            }
        ),
        other => format!("the TLS handshake failed: {other}"),
    };
    Failure::Refused(format!("TLS with {shown}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        let reply = b"*3\r\n:1\r\n$5\r\nhello\r\n*2\r\n$-1\r\n+OK\r\n";
        let (value, used) = parse(reply).unwrap().unwrap();
        assert_eq!(used, reply.len());
        assert_eq!(
            value,
            Value::Array(Some(vec![
                Value::Int(1),
                Value::Bulk(Some(b"hello".to_vec())),
                Value::Array(Some(vec![Value::Bulk(None), Value::Simple("OK".into())])),
            ]))
        );
        for cut in 0..reply.len() {
            assert_eq!(parse(&reply[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(
            parse(b"-NOPERM no\r\n").unwrap().unwrap().0,
            Value::Error("NOPERM no".into())
        );
        assert!(parse(b"HTTP/1.1 400\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
        assert_eq!(encode(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
