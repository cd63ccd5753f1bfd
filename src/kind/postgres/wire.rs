//! A PostgreSQL connection for locks: startup, TLS as `sslmode` asks, authentication
//! (trust, password, md5, SCRAM-SHA-256, client certificates) and simple queries, with the
//! messages and SCRAM from `postgres-protocol` (the rust-postgres project's protocol crate,
//! no async runtime). Every socket call is cut into slices, so a call keeps its deadline to
//! the slice and gives up as soon as the caller says to stop, as the etcd client does.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use rustls::ClientConfig;

use super::conninfo::{Conninfo, Server};
use super::tls::{self, Tls};
use crate::error::os_message;
use crate::kind::network::socket::{self, SLICE, Socket, check, keepalive, transient};
/// The longest reply flockrun reads: its queries return a row or a few.
const MAX_MESSAGE: usize = 1 << 20;

/// Why a connection or a query failed.
#[derive(Debug)]
pub enum Failure {
    /// The caller said to stop.
    Aborted,
    /// The deadline passed.
    Late,
    /// This server could not be reached or went away (another may do).
    Unreachable(String),
    /// The server refused who we are or how we came (password, database, TLS): no other
    /// server would answer differently.
    Refused(String),
    /// The server answered a query with an error.
    Sql { code: String, message: String },
}

impl From<socket::Failure> for Failure {
    fn from(failure: socket::Failure) -> Failure {
        match failure {
            socket::Failure::Aborted => Failure::Aborted,
            socket::Failure::Late => Failure::Late,
            socket::Failure::Unreachable(m) => Failure::Unreachable(m),
            socket::Failure::Refused(m) => Failure::Refused(m),
        }
    }
}

impl Failure {
    #[must_use]
    pub fn text(&self) -> String {
        match self {
            Failure::Aborted => "stopped".to_owned(),
            Failure::Late => "no answer in time".to_owned(),
            Failure::Unreachable(m) | Failure::Refused(m) => m.clone(),
            Failure::Sql { code, message } => format!("{message} (SQLSTATE {code})"),
        }
    }
}

/// A row of a query's result, each column as text (`None` for NULL).
pub type Row = Vec<Option<String>>;

/// One session with a server.
pub struct Conn {
    socket: Socket,
    input: BytesMut,
    /// The server process serving this session, and the key that cancels its query.
    pub backend_pid: i32,
    secret_key: i32,
    pub server: Server,
    /// What the server reported about itself (`server_version`, `standard_conforming_strings`…).
    pub params: HashMap<String, String>,
}


/// What a connection announces and asks for at startup.
pub struct Startup<'a> {
    pub info: &'a Conninfo,
    pub tls: &'a Tls,
    pub application_name: &'a str,
    /// The client-side keepalive idle time (the lease's third).
    pub keepalive_idle: Duration,
}

impl Conn {
    /// Connects to `server` and logs in.
    ///
    /// # Errors
    /// `Unreachable` when the server cannot be reached or hangs up; `Refused` for a login
    /// or TLS failure the server (or its certificate) settles; `Late`, `Aborted`.
    pub fn open(
        startup: &Startup<'_>,
        server: &Server,
        password: &mut dyn FnMut() -> Option<String>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<Conn, Failure> {
        check(until, abort)?;
        let socket = if let Some(path) = server.socket_path() {
            Socket::unix(&path)?
        } else {
            let tcp = connect_tcp(server, until, abort)?;
            keepalive(&tcp, startup.keepalive_idle);
            match startup.tls {
                Tls::Off => Socket::Tcp(tcp),
                Tls::Preferred(config) => negotiate(tcp, config, server, false, until, abort)?,
                Tls::Required(config) => negotiate(tcp, config, server, true, until, abort)?,
            }
        };
        let mut conn = Conn {
            socket,
            input: BytesMut::new(),
            backend_pid: 0,
            secret_key: 0,
            server: server.clone(),
            params: HashMap::new(),
        };
        let info = startup.info;
        let mut params = vec![
            ("user", info.user.as_str()),
            ("database", info.dbname.as_str()),
            ("application_name", startup.application_name),
        ];
        if let Some(options) = &info.options {
            params.push(("options", options.as_str()));
        }
        let mut buf = BytesMut::new();
        frontend::startup_message(params, &mut buf)
            .map_err(|e| Failure::Refused(format!("cannot send the startup message: {e}")))?;
        conn.send(&buf, until, abort)?;
        conn.authenticate(info, password, until, abort)?;
        Ok(conn)
    }

    fn authenticate(
        &mut self,
        info: &Conninfo,
        password: &mut dyn FnMut() -> Option<String>,
        until: Instant,
        abort: &dyn Fn() -> bool,
    ) -> Result<(), Failure> {
        let no_password = || {
            Failure::Refused(format!(
                "the server asks for a password for user {:?} and none was given (put it in \
                 LOCK, PGPASSWORD or the password file ~/.pgpass)",
                info.user
            ))
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let mut buf = BytesMut::new();
            match self.receive(until, abort)? {
                Message::AuthenticationOk | Message::NoticeResponse(_) => {}
                Message::AuthenticationCleartextPassword => {
                    let pass = password().ok_or_else(no_password)?;
                    frontend::password_message(pass.as_bytes(), &mut buf)
                        .map_err(|e| Failure::Refused(e.to_string()))?;
                    self.send(&buf, until, abort)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let pass = password().ok_or_else(no_password)?;
                    let hash = md5_hash(info.user.as_bytes(), pass.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut buf)
                        .map_err(|e| Failure::Refused(e.to_string()))?;
                    self.send(&buf, until, abort)?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut offered = Vec::new();
                    let mut mechanisms = body.mechanisms();
                    while let Ok(Some(m)) = mechanisms.next() {
                        offered.push(m.to_owned());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(Failure::Refused(format!(
                            "the server offers only {} for logging in, and flockrun speaks \
                             SCRAM-SHA-256",
                            offered.join(", ")
                        )));
                    }
                    let pass = password().ok_or_else(no_password)?;
                    // Without channel binding ("n"): the server accepts it whether or not it
                    // could bind to the TLS channel.
                    let state = ScramSha256::new(pass.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, state.message(), &mut buf)
                        .map_err(|e| Failure::Refused(e.to_string()))?;
                    self.send(&buf, until, abort)?;
                    scram = Some(state);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| Failure::Refused("unexpected SCRAM message".to_owned()))?;
                    state
                        .update(body.data())
                        .map_err(|e| Failure::Refused(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(state.message(), &mut buf)
                        .map_err(|e| Failure::Refused(e.to_string()))?;
                    self.send(&buf, until, abort)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| Failure::Refused("unexpected SCRAM message".to_owned()))?;
                    state.finish(body.data()).map_err(|e| {
                        Failure::Refused(format!("the server's SCRAM proof is wrong: {e}"))
                    })?;
                }
                Message::BackendKeyData(body) => {
                    self.backend_pid = body.process_id();
                    self.secret_key = body.secret_key();
                }
                Message::ParameterStatus(body) => {
                    if let (Ok(name), Ok(value)) = (body.name(), body.value()) {
                        self.params.insert(name.to_owned(), value.to_owned());
                    }
                }
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => {
                    let (code, message) = error_fields(body.fields());
                    return Err(Failure::Refused(login_error(&code, &message, info)));
                }
                Message::AuthenticationGss
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationSspi
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGssContinue(_) => {
                    return Err(Failure::Refused(
                        "the server asks for GSSAPI/Kerberos or SSPI, which flockrun does not \
                         speak; give the role a password (SCRAM) or a client certificate"
                            .to_owned(),
                    ));
                }
                _ => {
                    return Err(Failure::Refused(
                        "unexpected message while logging in: is this a PostgreSQL server?"
                            .to_owned(),
                    ));
                }
            }
        }
    }

    /// Sends `sql` as a simple query and returns the rows of its last result.
    ///
    /// # Errors
    /// `Sql` for an error the server reports (the connection stays usable); `Unreachable`
    /// when the connection breaks; `Late`, `Aborted` (the connection is then unusable).
    pub fn query(&mut self, sql: &str, until: Instant, abort: &dyn Fn() -> bool) -> Result<Vec<Row>, Failure> {
        let mut buf = BytesMut::new();
        frontend::query(sql, &mut buf).map_err(|e| Failure::Refused(e.to_string()))?;
        self.send(&buf, until, abort)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.receive(until, abort)? {
                Message::RowDescription(_) => rows.clear(),
                Message::DataRow(body) => {
                    let data = body.buffer();
                    let mut ranges = body.ranges();
                    let mut row = Vec::new();
                    while let Ok(Some(range)) = ranges.next() {
                        row.push(range.map(|r| String::from_utf8_lossy(&data[r]).into_owned()));
                    }
                    rows.push(row);
                }
                Message::ErrorResponse(body) => {
                    let (code, message) = error_fields(body.fields());
                    error = Some(Failure::Sql { code, message });
                }
                Message::ParameterStatus(body) => {
                    if let (Ok(name), Ok(value)) = (body.name(), body.value()) {
                        self.params.insert(name.to_owned(), value.to_owned());
                    }
                }
                Message::ReadyForQuery(_) => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    };
                }
                _ => {}
            }
        }
    }

    /// Asks the server (on a connection of its own) to cancel the query this session runs.
    /// Best effort, within `until`.
    pub fn cancel(&self, until: Instant) {
        let mut buf = BytesMut::new();
        frontend::cancel_request(self.backend_pid, self.secret_key, &mut buf);
        // Nothing to do about a failure: the connection is dropped next anyway.
        let _ = match self.server.socket_path() {
            Some(path) => UnixStream::connect(path).and_then(|mut s| s.write_all(&buf)),
            None => match connect_tcp(&self.server, until, &|| false) {
                Ok(mut tcp) => tcp.write_all(&buf),
                Err(_) => return,
            },
        };
    }

    /// What the server said or did unasked while the session was idle: the error it sent
    /// before ending the session (`pg_terminate_backend`, a shutdown) or the connection's
    /// end. `None` when there is nothing to read, or only notices.
    pub fn unsolicited(&mut self) -> Option<String> {
        let until = Instant::now() + Duration::from_millis(50);
        loop {
            match self.receive(until, &|| false) {
                Ok(Message::ErrorResponse(body)) => {
                    let (code, message) = error_fields(body.fields());
                    return Some(format!("{message} (SQLSTATE {code})"));
                }
                Ok(_) => {
                    if self.input.is_empty() {
                        return None;
                    }
                }
                Err(Failure::Late | Failure::Aborted) => return None,
                Err(e) => return Some(e.text()),
            }
        }
    }

    /// A second descriptor for the connection's socket, to watch it from another thread.
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn watch_handle(&self) -> io::Result<std::os::fd::OwnedFd> {
        self.socket.watch_handle()
    }

    /// The connection's socket.
    #[must_use]
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
    }

    /// Ends the session politely (the server then releases its locks at once).
    pub fn terminate(mut self) {
        let mut buf = BytesMut::new();
        frontend::terminate(&mut buf);
        let until = Instant::now() + Duration::from_millis(500);
        let _ = self.send(&buf, until, &|| false);
    }

    fn send(&mut self, bytes: &[u8], until: Instant, abort: &dyn Fn() -> bool) -> Result<(), Failure> {
        Ok(self.socket.send(bytes, until, abort)?)
    }

    fn receive(&mut self, until: Instant, abort: &dyn Fn() -> bool) -> Result<Message, Failure> {
        loop {
            match Message::parse(&mut self.input) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(e) => {
                    return Err(Failure::Unreachable(format!(
                        "the server sent something that is not PostgreSQL's protocol: {e}"
                    )));
                }
            }
            if self.input.len() > MAX_MESSAGE {
                return Err(Failure::Unreachable("reply too large".to_owned()));
            }
            let mut chunk = [0u8; 8192];
            let n = self.socket.receive(&mut chunk, until, abort)?;
            self.input.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A TCP connection to `server`, trying each of its addresses.
fn connect_tcp(server: &Server, until: Instant, abort: &dyn Fn() -> bool) -> Result<TcpStream, Failure> {
    let super::conninfo::Host::Tcp(name) = &server.host else {
        return Err(Failure::Unreachable("not a TCP server".to_owned()));
    };
    Ok(socket::connect_tcp(name, server.port, &server.to_string(), until, abort)?)
}

/// Asks for TLS (PostgreSQL's `SSLRequest`) and shakes hands if the server agrees.
fn negotiate(
    mut tcp: TcpStream,
    config: &Arc<ClientConfig>,
    server: &Server,
    required: bool,
    until: Instant,
    abort: &dyn Fn() -> bool,
) -> Result<Socket, Failure> {
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    tcp.write_all(&buf)
        .map_err(|e| Failure::Unreachable(format!("connection lost: {}", os_message(&e))))?;
    let mut answer = [0u8; 1];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let _ = tcp.set_read_timeout(Some(left.clamp(Duration::from_millis(1), SLICE)));
        match tcp.read(&mut answer) {
            Ok(0) => return Err(Failure::Unreachable("the server closed the connection".to_owned())),
            Ok(_) => break,
            Err(e) if transient(&e) => check(until, abort)?,
            Err(e) => return Err(Failure::Unreachable(format!("connection lost: {}", os_message(&e)))),
        }
    }
    match answer[0] {
        b'S' => {}
        b'N' if required => {
            return Err(Failure::Refused(format!(
                "{server} does not offer TLS, and sslmode asks for it"
            )));
        }
        b'N' => return Ok(Socket::Tcp(tcp)),
        _ => {
            return Err(Failure::Unreachable(format!(
                "{server} does not answer as PostgreSQL does"
            )));
        }
    }
    let super::conninfo::Host::Tcp(host) = &server.host else {
        return Err(Failure::Refused("TLS over a Unix socket".to_owned()));
    };
    let name = tls::server_name(host).map_err(Failure::Refused)?;
    socket::handshake(tcp, config, name, until, abort).map_err(|e| match e {
        Ok(failure) => failure.into(),
        Err(e) => match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(tls_error) => Failure::Refused(format!("TLS with {server} failed: {tls_error}")),
            None => Failure::Unreachable(format!("TLS with {server} failed: {}", os_message(&e))),
        },
    })
}

/// The SQLSTATE and the message of an error response.
fn error_fields(mut fields: ErrorFields<'_>) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    (code, message)
}

/// A login refusal in words that say what to check.
fn login_error(code: &str, message: &str, info: &Conninfo) -> String {
    let hint = match code {
        "28P01" => format!(
            "; check the password for user {:?} (LOCK, PGPASSWORD or ~/.pgpass)",
            info.user
        ),
        "28000" => "; the server's pg_hba.conf admits no such login from here".to_owned(),
        "3D000" => format!(
            "; create database {:?}, or name an existing one in LOCK (postgresql://HOST/DBNAME/NAME)",
            info.dbname
        ),
        _ => String::new(),
    };
    format!("{message} (SQLSTATE {code}){hint}")
}
