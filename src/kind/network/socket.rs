//! The byte stream of a network kind that speaks its server's protocol itself (PostgreSQL,
//! Redis): TCP, a Unix socket or TLS over TCP through rustls, with every call cut into
//! slices, so that a call keeps its deadline to the slice and gives up as soon as the caller
//! says to stop.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::error::os_message;

/// How long one socket call may block before the deadline and the stop flag are checked.
pub const SLICE: Duration = Duration::from_millis(100);

/// Why a socket call gave up.
#[derive(Debug)]
pub enum Failure {
    /// The caller said to stop.
    Aborted,
    /// The deadline passed.
    Late,
    /// The server could not be reached or went away (another may do, or a later try).
    Unreachable(String),
    /// The server (or its certificate) refused us: asking again will not help.
    Refused(String),
}

/// A connection's byte stream.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Socket {
    /// Connects to the Unix socket at `path`.
    ///
    /// # Errors
    /// `Unreachable`, naming the path.
    pub fn unix(path: &Path) -> Result<Socket, Failure> {
        let unix = UnixStream::connect(path).map_err(|e| {
            Failure::Unreachable(format!(
                "cannot connect to {}: {}",
                path.display(),
                os_message(&e)
            ))
        })?;
        let _ = unix.set_write_timeout(Some(SLICE));
        Ok(Socket::Unix(unix))
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        let _ = match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
            Socket::Tls(s) => s.get_ref().set_read_timeout(timeout),
        };
    }

    /// A second descriptor for the socket, to watch it from another thread.
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn watch_handle(&self) -> io::Result<OwnedFd> {
        match self {
            Socket::Tcp(s) => s.try_clone().map(Into::into),
            Socket::Unix(s) => s.try_clone().map(Into::into),
            Socket::Tls(s) => s.get_ref().try_clone().map(Into::into),
        }
    }

    /// Writes all of `bytes`, within `until`.
    ///
    /// # Errors
    /// `Unreachable` when the connection breaks; `Late`, `Aborted`.
    pub fn send(
        &mut self,
        bytes: &[u8],
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<(), Failure> {
        let mut rest = bytes;
        while !rest.is_empty() {
            match self.write(rest) {
                Ok(0) => return Err(closed()),
                Ok(n) => rest = &rest[n..],
                Err(e) if transient(&e) => check(until, abort)?,
                Err(e) => return Err(lost(&e)),
            }
        }
        loop {
            match self.flush() {
                Ok(()) => return Ok(()),
                Err(e) if transient(&e) => check(until, abort)?,
                Err(e) => return Err(lost(&e)),
            }
        }
    }

    /// Reads what the server sends next into `chunk`, waiting for it until `until`;
    /// returns how many bytes came.
    ///
    /// # Errors
    /// `Unreachable` when the connection breaks or ends; `Late`, `Aborted`.
    pub fn receive(
        &mut self,
        chunk: &mut [u8],
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<usize, Failure> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            self.set_read_timeout(left.min(SLICE));
            match self.read(chunk) {
                Ok(0) => return Err(closed()),
                Ok(n) => return Ok(n),
                Err(e) if transient(&e) => check(until, abort)?,
                Err(e) => return Err(lost(&e)),
            }
        }
    }
}

fn closed() -> Failure {
    Failure::Unreachable("the server closed the connection".to_owned())
}

fn lost(e: &io::Error) -> Failure {
    // TLS 1.3 settles client certificates after the handshake: a server that wants one, or
    // does not trust the one it got, says so with an alert on the first read.
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Failure::Refused(match tls {
            rustls::Error::AlertReceived(alert) => format!(
                "the server ended the TLS connection with alert {alert:?}: it wants a client \
                 certificate it trusts (give a certificate and key signed by a CA the server \
                 trusts)"
            ),
            other => format!("TLS: {other}"),
        });
    }
    Failure::Unreachable(format!("connection lost: {}", os_message(e)))
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
            Socket::Tls(s) => s.flush(),
        }
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
            Socket::Tls(s) => s.get_ref().as_raw_fd(),
        }
    }
}

/// `Aborted` if the caller says to stop, `Late` past `until`.
///
/// # Errors
/// As above.
pub fn check(until: Instant, abort: &dyn Fn() -> bool) -> Result<(), Failure> {
    if abort() {
        Err(Failure::Aborted)
    } else if Instant::now() >= until {
        Err(Failure::Late)
    } else {
        Ok(())
    }
}

/// Whether a socket error only means "not yet": a timed-out slice or a signal.
#[must_use]
pub fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Sets TCP keepalives on the client's socket, so that a dead server is noticed by the
/// kernel too: first probe after `idle`, then every second, three tries.
pub fn keepalive(tcp: &TcpStream, idle: Duration) {
    use nix::sys::socket::{setsockopt, sockopt};
    let idle = u32::try_from(idle.as_secs().max(1)).unwrap_or(u32::MAX);
    let _ = setsockopt(tcp, sockopt::KeepAlive, &true);
    let _ = setsockopt(tcp, sockopt::TcpKeepIdle, &idle);
    let _ = setsockopt(tcp, sockopt::TcpKeepInterval, &1);
    let _ = setsockopt(tcp, sockopt::TcpKeepCount, &3);
}

/// A TCP connection to `host` port `port`, trying each of its addresses, with no delay
/// and writes in slices; `shown` names the server in messages.
///
/// # Errors
/// `Unreachable` when no address answers; `Late`, `Aborted`.
pub fn connect_tcp(
    host: &str,
    port: u16,
    shown: &str,
    until: Instant,
    abort: &dyn Fn() -> bool,
) -> Result<TcpStream, Failure> {
    crate::nss::confine();
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Failure::Unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = Failure::Unreachable(format!("{host} has no address"));
    for address in addresses {
        check(until, abort)?;
        let left = until.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(&address, left.min(Duration::from_secs(2))) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                let _ = tcp.set_write_timeout(Some(SLICE));
                return Ok(tcp);
            }
            Err(e) => {
                last =
                    Failure::Unreachable(format!("cannot connect to {shown}: {}", os_message(&e)));
            }
        }
    }
    Err(last)
}

/// The TLS handshake with the server `name` on `tcp`, in slices.
///
/// # Errors
/// `Err(Ok(failure))` for `Late` or `Aborted`; `Err(Err(e))` with the socket error the
/// handshake failed with, for the caller to put in its server's words (a rustls error
/// inside says the certificates disagree; a hang-up, that the server would not shake hands).
pub fn handshake(
    mut tcp: TcpStream,
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    until: Instant,
    abort: &dyn Fn() -> bool,
) -> Result<Socket, Result<Failure, io::Error>> {
    let mut session = ClientConnection::new(Arc::clone(config), name)
        .map_err(|e| Ok(Failure::Refused(format!("cannot start TLS: {e}"))))?;
    while session.is_handshaking() {
        let left = until.saturating_duration_since(Instant::now());
        let _ = tcp.set_read_timeout(Some(left.clamp(Duration::from_millis(1), SLICE)));
        match session.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e) if transient(&e) => check(until, abort).map_err(Ok)?,
            Err(e) => return Err(Err(e)),
        }
    }
    Ok(Socket::Tls(Box::new(StreamOwned::new(session, tcp))))
}

/// A server's `host`, `host:port`, `[v6]` or `[v6]:port` as LOCK names it, with `default`
/// for a port not given.
///
/// # Errors
/// What is wrong with it, worded to follow the server's name in a message (`" has a bad
/// port (1-65535)"`, `": expected :PORT after ]"`).
pub fn host_port(text: &str, default: u16) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| " lacks a closing ]".to_owned())?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| ": expected :PORT after ]".to_owned())?,
                ),
            ),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['[', ']', ' ', '@']) {
        return Err(" has no usable host".to_owned());
    }
    let port = match port {
        None => default,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| " has a bad port (1-65535)".to_owned())?,
    };
    Ok((host, port))
}
