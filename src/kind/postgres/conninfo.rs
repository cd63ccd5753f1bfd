//! LOCK `postgresql://…` and everything else that says how to reach the server, layered as
//! libpq layers it, so that a LOCK reaches the server `psql` reaches with the same
//! environment: the URL (its authority, path and parameters) first, then the service
//! (`service=` or `PGSERVICE`, looked up in `PGSERVICEFILE` or `~/.pg_service.conf`, then in
//! `pg_service.conf` under `PGSYSCONFDIR`), then the `PG*` variables, then libpq's defaults
//! (the Unix socket in `/var/run/postgresql` as Debian builds libpq, else `/tmp`; port 5432;
//! the user's login name; a database named after the user; `sslmode=prefer`). The password
//! file (`PGPASSFILE` or `~/.pgpass`) is read only when the server asks for a password that
//! none of those gave.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

/// The schemes that select the PostgreSQL kind.
pub const SCHEMES: [&str; 2] = ["postgresql://", "postgres://"];

/// Where libpq looks for the server's Unix socket when no host is given, in order: Debian's
/// build, then upstream's.
const SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];
const DEFAULT_PORT: u16 = 5432;
/// Where Debian's libpq reads the system-wide service file.
const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// The environment, as a function (tests give their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// A server to try: a host name or address, or the directory of a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Tcp(String),
    Socket(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: Host,
    pub port: u16,
}

impl Server {
    /// The socket file of a Unix-socket server: `DIR/.s.PGSQL.PORT`.
    #[must_use]
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &self.host {
            Host::Socket(dir) => Some(dir.join(format!(".s.PGSQL.{}", self.port))),
            Host::Tcp(_) => None,
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Tcp(name) if name.contains(':') => write!(f, "[{name}]:{}", self.port),
            Host::Tcp(name) => write!(f, "{name}:{}", self.port),
            Host::Socket(_) => write!(
                f,
                "socket {}",
                self.socket_path().unwrap_or_default().display()
            ),
        }
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// The CA certificates that check the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    File(PathBuf),
    /// `sslrootcert=system`: the system's CA store (and then `verify-full`, as libpq makes it).
    System,
}

/// Which advisory lock NAME names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockKey {
    /// `hashtext(NAME)`, evaluated by the server, in the bigint key space.
    Text(String),
    /// A bigint key as given.
    Big(i64),
    /// An (int, int) key as given: a key space of its own.
    Pair(i32, i32),
}

impl LockKey {
    fn parse(name: &str) -> LockKey {
        if let Ok(key) = name.parse::<i64>() {
            return LockKey::Big(key);
        }
        if let Some((a, b)) = name.split_once(',')
            && let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>())
        {
            return LockKey::Pair(a, b);
        }
        LockKey::Text(name.to_owned())
    }

    /// The arguments of `pg_advisory_lock(…)` and the other advisory-lock functions.
    #[must_use]
    pub fn sql_args(&self) -> String {
        match self {
            LockKey::Text(name) => format!("hashtext({})", quote(name)),
            LockKey::Big(key) => format!("{key}::bigint"),
            LockKey::Pair(a, b) => format!("{a}, {b}"),
        }
    }

    /// A condition on `pg_locks` (aliased `l`) that picks this key's rows (`oid` columns
    /// are unsigned: a negative half shows as its two's complement).
    #[must_use]
    pub fn pg_locks_filter(&self) -> String {
        match self {
            LockKey::Pair(a, b) => format!(
                "l.objsubid = 2 AND l.classid::bigint = ({a}::bigint & 4294967295) AND \
                 l.objid::bigint = ({b}::bigint & 4294967295)"
            ),
            LockKey::Text(_) | LockKey::Big(_) => format!(
                "l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = ({})::bigint",
                self.sql_args()
            ),
        }
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockKey::Text(name) => write!(f, "hashtext({})", quote(name)),
            LockKey::Big(key) => write!(f, "{key}"),
            LockKey::Pair(a, b) => write!(f, "({a}, {b})"),
        }
    }
}

/// A string literal for SQL (the server's `standard_conforming_strings` is on, checked when
/// connecting): quotes doubled.
#[must_use]
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// libpq's `target_session_attrs`, as far as a lock can use it: a standby's advisory locks
/// are its own, so only the values that accept a primary are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    Any,
    ReadWrite,
    Primary,
}

/// Everything needed to connect and to name the lock.
#[derive(Debug, Clone)]
pub struct Conninfo {
    /// LOCK as given, with any password in it replaced by `***`: for messages.
    pub shown: String,
    pub servers: Vec<Server>,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    pub passfile: Option<PathBuf>,
    pub sslmode: SslMode,
    pub rootcert: Option<RootCerts>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Which settings came from a parameter or variable the user set (for messages about
    /// files that are missing: a default file that is absent is simply not used).
    pub ssl_files_given: bool,
    pub connect_timeout: Option<Duration>,
    pub options: Option<String>,
    pub attrs: SessionAttrs,
    /// `pooled=1`: hold the lock in a transaction, which works through a pooler.
    pub pooled: bool,
    /// NAME as given, and the key it names.
    pub name: String,
    pub lock_key: LockKey,
}

fn usage(message: String) -> Error {
    Error::Usage { message }
}

/// `%XX` escapes decoded.
pub(crate) fn percent_decode(text: &str, what: &str, lock: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    usage(format!(
                        "{lock}: a % in the {what} must start an escape such as %2F"
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| usage(format!("{lock}: the {what} is not UTF-8 once decoded")))
}

/// The settings as text, by libpq's keyword, each with where it came from.
#[derive(Default)]
struct Settings {
    values: HashMap<&'static str, String>,
}

/// The keywords LOCK's parameters and service files may set, and the variable for each.
const KEYWORDS: [(&str, Option<&str>); 15] = [
    ("host", Some("PGHOST")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("options", Some("PGOPTIONS")),
    ("service", None),
    ("pooled", None),
];

fn keyword(name: &str) -> Option<&'static str> {
    KEYWORDS.iter().map(|(k, _)| *k).find(|k| *k == name)
}

impl Settings {
    /// Sets `key` unless already set (the first layer to set a keyword wins).
    fn fill(&mut self, key: &'static str, value: String) {
        self.values.entry(key).or_insert(value);
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// Words about a keyword flockrun does not take, or an unknown one.
fn refuse_keyword(name: &str, lock: &str, place: &str) -> Error {
    let why = match name {
        "application_name" => {
            "flockrun sets application_name to flockrun:PID@HOST itself, so that status can \
             name the holder; leave it out"
                .to_owned()
        }
        "keepalives" | "keepalives_idle" | "keepalives_interval" | "keepalives_count"
        | "tcp_user_timeout" => "flockrun sets the keepalives from --ttl; leave it out".to_owned(),
        "hostaddr" | "gssencmode" | "krbsrvname" | "gsslib" | "requirepeer" | "sslcrl"
        | "sslcrldir" | "sslcompression" | "sslsni" | "ssl_min_protocol_version"
        | "ssl_max_protocol_version" | "channel_binding" | "require_auth" | "load_balance_hosts"
        | "sslnegotiation" | "sslpassword" | "sslcertmode" | "client_encoding" => {
            "flockrun does not support this libpq setting".to_owned()
        }
        _ => "not a connection setting flockrun knows".to_owned(),
    };
    usage(format!("{lock}: {name} ({place}): {why}"))
}

impl Conninfo {
    /// Parses LOCK and layers the service, the environment and libpq's defaults under it.
    ///
    /// # Errors
    /// `Usage` for a malformed LOCK, an unknown or unsupported setting, a missing service;
    /// `OptionFile` for a service file that cannot be read.
    pub fn resolve(lock: &str, env: Env<'_>) -> Result<Conninfo, Error> {
        let rest = SCHEMES
            .iter()
            .find_map(|s| lock.strip_prefix(s))
            .ok_or_else(|| usage(format!("{lock}: expected postgresql://…")))?;
        let shown = hide_password(lock);
        let lock = shown.as_str();
        if rest.contains('#') {
            return Err(usage(format!(
                "{lock}: a postgresql:// LOCK has no #fragment; put settings after ?"
            )));
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            usage(format!(
                "{lock}: no lock name; write postgresql://HOST/DBNAME/NAME or \
                 postgresql:///NAME"
            ))
        })?;
        let mut settings = Settings::default();
        // The URL's parameters outrank its authority, as in libpq.
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                usage(format!("{lock}: parameter {pair:?} needs a value (name=value)"))
            })?;
            let name = percent_decode(name, "parameter name", lock)?;
            let value = percent_decode(value, "parameter value", lock)?;
            let key = keyword(&name).ok_or_else(|| refuse_keyword(&name, lock, "in LOCK"))?;
            if settings.values.insert(key, value).is_some() {
                return Err(usage(format!("{lock}: {name} is given twice")));
            }
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                settings.fill("user", percent_decode(user, "user name", lock)?);
            }
            if let Some(password) = password {
                settings.fill("password", percent_decode(password, "password", lock)?);
            }
        }
        if !hosts.is_empty() {
            let (names, ports) = split_hosts(hosts, lock)?;
            settings.fill("host", names);
            if ports.split(',').any(|p| !p.is_empty()) {
                settings.fill("port", ports);
            }
        }
        let (dbname, name) = match path.split_once('/') {
            Some((db, name)) => (Some(db), name),
            None => (None, path),
        };
        if let Some(db) = dbname.filter(|d| !d.is_empty()) {
            settings.fill("dbname", percent_decode(db, "database name", lock)?);
        }
        let name = percent_decode(name, "lock name", lock)?;
        if name.is_empty() || name.contains('\0') {
            return Err(usage(format!(
                "{lock}: no lock name; write postgresql://HOST/DBNAME/NAME or \
                 postgresql:///NAME"
            )));
        }
        let home = home_dir(env);
        let service = settings
            .get("service")
            .map(str::to_owned)
            .or_else(|| text_var(env, "PGSERVICE"));
        if let Some(service) = service {
            apply_service(&mut settings, &service, env, home.as_deref(), lock)?;
        }
        for (key, var) in KEYWORDS {
            if let Some(value) = var.and_then(|v| text_var(env, v)) {
                settings.fill(key, value);
            }
        }
        Conninfo::from_settings(&settings, shown.clone(), name, home.as_deref())
    }

    fn from_settings(
        settings: &Settings,
        shown: String,
        name: String,
        home: Option<&Path>,
    ) -> Result<Conninfo, Error> {
        let lock = shown.as_str();
        let user = settings.get("user").map_or_else(login_name, str::to_owned);
        let servers = servers(settings, lock)?;
        let sslmode = match settings.get("sslmode") {
            None => SslMode::Prefer,
            Some(text) => SslMode::parse(text).ok_or_else(|| {
                usage(format!(
                    "{lock}: sslmode {text:?}: expected disable, allow, prefer, require, \
                     verify-ca or verify-full"
                ))
            })?,
        };
        let in_home = |file: &str| home.map(|h| h.join(".postgresql").join(file));
        let rootcert = match settings.get("sslrootcert") {
            Some("system") => Some(RootCerts::System),
            Some(path) => Some(RootCerts::File(PathBuf::from(path))),
            None => in_home("root.crt")
                .filter(|p| p.exists())
                .map(RootCerts::File),
        };
        // sslrootcert=system makes libpq check names as verify-full does.
        let sslmode = if rootcert == Some(RootCerts::System) {
            if sslmode < SslMode::VerifyFull && settings.get("sslmode").is_some() {
                return Err(usage(format!(
                    "{lock}: sslrootcert=system needs sslmode=verify-full (libpq's rule: \
                     the system's CAs vouch for any name)"
                )));
            }
            SslMode::VerifyFull
        } else {
            sslmode
        };
        let cert = settings
            .get("sslcert")
            .map(PathBuf::from)
            .or_else(|| in_home("postgresql.crt").filter(|p| p.exists()));
        let key = settings
            .get("sslkey")
            .map(PathBuf::from)
            .or_else(|| in_home("postgresql.key").filter(|p| p.exists()));
        let (connect_timeout, attrs, pooled) = choices(settings, lock)?;
        let ssl_files_given = settings.get("sslrootcert").is_some()
            || settings.get("sslcert").is_some()
            || settings.get("sslkey").is_some();
        Ok(Conninfo {
            servers,
            dbname: settings
                .get("dbname")
                .map_or_else(|| user.clone(), str::to_owned),
            password: settings.get("password").map(str::to_owned),
            passfile: settings
                .get("passfile")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".pgpass"))),
            sslmode,
            rootcert,
            cert,
            key,
            ssl_files_given,
            connect_timeout,
            options: settings.get("options").map(str::to_owned),
            attrs,
            pooled,
            lock_key: LockKey::parse(&name),
            name,
            user,
            shown,
        })
    }

    /// The password for `server` from the password file, as libpq finds it: the first line
    /// whose host, port, database and user match (`*` matches anything), and only if the
    /// file is readable by its owner alone. `warn` hears why a file was ignored.
    #[must_use]
    pub fn passfile_password(&self, server: &Server, warn: &mut dyn FnMut(String)) -> Option<String> {
        let path = self.passfile.as_ref()?;
        let meta = fs::metadata(path).ok()?;
        if !meta.is_file() {
            warn(format!(
                "password file {} is not a plain file; it was ignored",
                path.display()
            ));
            return None;
        }
        if meta.permissions().mode() & 0o077 != 0 {
            warn(format!(
                "password file {} has group or world access, so it was ignored; make it \
                 u=rw (chmod 0600) or less",
                path.display()
            ));
            return None;
        }
        let text = fs::read_to_string(path).ok()?;
        let host = match &server.host {
            Host::Tcp(name) => name.clone(),
            Host::Socket(dir) if SOCKET_DIRS.iter().any(|d| Path::new(d) == dir) => {
                "localhost".to_owned()
            }
            Host::Socket(dir) => dir.display().to_string(),
        };
        let port = server.port.to_string();
        let wanted = [host.as_str(), &port, &self.dbname, &self.user];
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(pgpass_fields)
            .find(|fields| {
                fields[..4]
                    .iter()
                    .zip(wanted)
                    .all(|(field, want)| field == "*" || field == want)
            })
            .map(|mut fields| fields.swap_remove(4))
    }
}

/// The servers to try, in order: each host with its port (one port for all, or one each).
fn servers(settings: &Settings, lock: &str) -> Result<Vec<Server>, Error> {
    let ports: Vec<u16> = match settings.get("port") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|p| {
                if p.is_empty() {
                    Ok(DEFAULT_PORT)
                } else {
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| usage(format!("{lock}: port {p:?} is not a port")))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let hosts: Vec<Host> = match settings.get("host") {
        None => vec![Host::Socket(default_socket_dir())],
        Some(list) => list
            .split(',')
            .map(|h| {
                if h.is_empty() {
                    Host::Socket(default_socket_dir())
                } else if h.starts_with('/') {
                    Host::Socket(PathBuf::from(h))
                } else {
                    Host::Tcp(h.to_owned())
                }
            })
            .collect(),
    };
    Ok(match ports.len() {
        0 => hosts
            .into_iter()
            .map(|host| Server {
                host,
                port: DEFAULT_PORT,
            })
            .collect(),
        1 => hosts
            .into_iter()
            .map(|host| Server {
                host,
                port: ports[0],
            })
            .collect(),
        n if n == hosts.len() => hosts
            .into_iter()
            .zip(ports)
            .map(|(host, port)| Server { host, port })
            .collect(),
        n => {
            return Err(usage(format!(
                "{lock}: {n} ports for {} hosts; give one port, or one per host",
                hosts.len()
            )));
        }
    })
}

/// `connect_timeout`, `target_session_attrs` and `pooled`.
fn choices(settings: &Settings, lock: &str) -> Result<(Option<Duration>, SessionAttrs, bool), Error> {
    let connect_timeout = match settings.get("connect_timeout") {
        None => None,
        Some(text) => match text.trim().parse::<u64>() {
            // libpq: zero, negative or absent means wait indefinitely; flockrun's own
            // budget then applies. Values of 1 are raised to 2, as libpq does.
            Ok(0) => None,
            Ok(secs) => Some(Duration::from_secs(secs.max(2))),
            Err(_) => {
                return Err(usage(format!(
                    "{lock}: connect_timeout {text:?} is not a whole number of seconds"
                )));
            }
        },
    };
    let attrs = match settings.get("target_session_attrs") {
        None | Some("any") => SessionAttrs::Any,
        Some("read-write") => SessionAttrs::ReadWrite,
        Some("primary") => SessionAttrs::Primary,
        Some(other @ ("read-only" | "standby" | "prefer-standby")) => {
            return Err(usage(format!(
                "{lock}: target_session_attrs={other}: advisory locks on a standby are \
                 its own and nobody else sees them; use primary or read-write"
            )));
        }
        Some(other) => {
            return Err(usage(format!(
                "{lock}: target_session_attrs {other:?}: expected any, read-write or \
                 primary"
            )));
        }
    };
    let pooled = match settings.get("pooled") {
        None | Some("0" | "false" | "no" | "off") => false,
        Some("1" | "true" | "yes" | "on") => true,
        Some(other) => {
            return Err(usage(format!(
                "{lock}: pooled {other:?}: expected 1 or 0 (true or false)"
            )));
        }
    };
    Ok((connect_timeout, attrs, pooled))
}

/// The five fields of a password-file line (`\` escapes `:` and `\`); `None` when short.
fn pgpass_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

/// The hosts and ports of a URL's authority, as the comma lists libpq's `host` and `port`
/// take: `a:1,[::1]:2,%2Ftmp` → (`a,::1,/tmp`, `1,2,`).
fn split_hosts(list: &str, lock: &str) -> Result<(String, String), Error> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for item in list.split(',') {
        let (host, port) = if let Some(v6) = item.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| usage(format!("{lock}: {item:?} lacks its closing ]")))?;
            (addr, after.strip_prefix(':').unwrap_or(""))
        } else {
            item.rsplit_once(':').unwrap_or((item, ""))
        };
        hosts.push(percent_decode(host, "host", lock)?);
        ports.push(port.to_owned());
    }
    Ok((hosts.join(","), ports.join(",")))
}

/// LOCK with the password in its authority, if any, replaced by `***`.
fn hide_password(lock: &str) -> String {
    let Some((scheme, rest)) = lock.split_once("://") else {
        return lock.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..end];
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{hosts}{}", &rest[end..])
        }
        _ => lock.to_owned(),
    }
}

fn text_var(env: Env<'_>, name: &str) -> Option<String> {
    env(name)
        .filter(|v| !v.is_empty())
        .and_then(|v| v.into_string().ok())
}

/// `$HOME`, else the home directory of the user flockrun runs as.
fn home_dir(env: Env<'_>) -> Option<PathBuf> {
    if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    crate::nss::confine();
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// libpq's default user: the login name of the effective user.
fn login_name() -> String {
    crate::inspect::process::user_name(nix::unistd::geteuid().as_raw())
}

fn default_socket_dir() -> PathBuf {
    SOCKET_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from(SOCKET_DIRS[1]))
}

/// Fills `settings` from service `name`: the user's file first, then the system's.
fn apply_service(
    settings: &mut Settings,
    name: &str,
    env: Env<'_>,
    home: Option<&Path>,
    lock: &str,
) -> Result<(), Error> {
    let user_file = env("PGSERVICEFILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".pg_service.conf")));
    let system_file = env("PGSYSCONFDIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SYSCONFDIR), PathBuf::from)
        .join("pg_service.conf");
    for file in user_file.iter().chain([&system_file]) {
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::OptionFile {
                    option: "service file",
                    path: file.clone(),
                    problem: format!("cannot read it: {e}"),
                    unreadable: true,
                });
            }
        };
        if let Some(entries) = service_entries(&text, name) {
            for (key, value) in entries {
                let keyword = keyword(&key)
                    .filter(|k| *k != "service")
                    .ok_or_else(|| {
                        refuse_keyword(&key, lock, &format!("service {name} in {}", file.display()))
                    })?;
                settings.fill(keyword, value);
            }
            return Ok(());
        }
    }
    Err(usage(format!(
        "{lock}: service {name:?} is defined in neither {} nor {}",
        user_file.map_or_else(|| "~/.pg_service.conf".to_owned(), |f| f.display().to_string()),
        system_file.display()
    )))
}

/// The `key=value` lines of section `[name]` of a service file, if it has one.
fn service_entries(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = false;
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section == name;
            found |= inside;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    found.then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    fn resolve(lock: &str, vars: &[(&str, &str)]) -> Result<Conninfo, Error> {
        let mut all = vec![("HOME", "/nonexistent-home")];
        all.extend_from_slice(vars);
        Conninfo::resolve(lock, &env_of(&all))
    }

    #[test]
    fn urls_name_servers_database_and_lock() {
        let c = resolve("postgresql://u:pw@db1:5433,[::1],db3/app/nightly", &[]).unwrap();
        assert_eq!(
            c.servers,
            [
                Server { host: Host::Tcp("db1".into()), port: 5433 },
                Server { host: Host::Tcp("::1".into()), port: 5432 },
                Server { host: Host::Tcp("db3".into()), port: 5432 },
            ]
        );
        assert_eq!((c.user.as_str(), c.password.as_deref()), ("u", Some("pw")));
        assert_eq!(c.dbname, "app");
        assert_eq!(c.lock_key, LockKey::Text("nightly".into()));
        assert_eq!(c.shown, "postgresql://u:***@db1:5433,[::1],db3/app/nightly");
        let c = resolve("postgres://%2Ftmp%2Fpg:6000/db/a%2Fb?sslmode=disable", &[]).unwrap();
        assert_eq!(c.servers[0].socket_path(), Some(PathBuf::from("/tmp/pg/.s.PGSQL.6000")));
        assert_eq!(c.lock_key, LockKey::Text("a/b".into()));
        assert_eq!(c.sslmode, SslMode::Disable);
        assert_eq!(resolve("postgresql:///4242", &[]).unwrap().lock_key, LockKey::Big(4242));
        assert_eq!(resolve("postgresql:///-1,7", &[]).unwrap().lock_key, LockKey::Pair(-1, 7));
        assert_eq!(
            resolve("postgresql:///9223372036854775808", &[]).unwrap().lock_key,
            LockKey::Text("9223372036854775808".into())
        );
    }

    #[test]
    fn the_url_outranks_the_environment_which_outranks_defaults() {
        let vars = [
            ("PGHOST", "envhost"),
            ("PGPORT", "7000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
        ];
        let c = resolve("postgresql:///job", &vars).unwrap();
        assert_eq!(c.servers, [Server { host: Host::Tcp("envhost".into()), port: 7000 }]);
        assert_eq!((c.user.as_str(), c.dbname.as_str()), ("envuser", "envdb"));
        assert_eq!(c.sslmode, SslMode::Require);
        let c = resolve("postgresql://me@urlhost/urldb/job?sslmode=disable", &vars).unwrap();
        assert_eq!(c.servers, [Server { host: Host::Tcp("urlhost".into()), port: 7000 }]);
        assert_eq!((c.user.as_str(), c.dbname.as_str()), ("me", "urldb"));
        assert_eq!(c.sslmode, SslMode::Disable);
        // Without a database the user's name is the database's, as in libpq.
        let c = resolve("postgresql://me@h/job", &[]).unwrap();
        assert_eq!(c.dbname, "me");
    }

    #[test]
    fn bad_urls_and_settings_are_usage_errors() {
        for bad in [
            "postgresql://host",
            "postgresql://host/db/",
            "postgresql://host/db/x?application_name=a",
            "postgresql://host/db/x?bogus=1",
            "postgresql://host/db/x?sslmode=sometimes",
            "postgresql://host/db/x?target_session_attrs=standby",
            "postgresql://host:99999/db/x",
            "postgresql://h1,h2/db/x?port=1,2,3",
            "postgresql://host/db/x?sslmode=require&sslmode=disable",
            "postgresql://host/db/x#frag",
            "postgresql://host/db/x%zz",
        ] {
            assert!(
                matches!(resolve(bad, &[]), Err(Error::Usage { .. })),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn service_files_fill_what_the_url_leaves_and_outrank_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services");
        fs::write(
            &file,
            "# comment\n[other]\nport=1\n[locks]\nhost=svchost\nport=6543\nuser=svcuser\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let vars = [("PGSERVICEFILE", file), ("PGUSER", "envuser"), ("PGDATABASE", "envdb")];
        let c = resolve("postgresql:///job?service=locks", &vars).unwrap();
        assert_eq!(c.servers, [Server { host: Host::Tcp("svchost".into()), port: 6543 }]);
        assert_eq!((c.user.as_str(), c.dbname.as_str()), ("svcuser", "envdb"));
        let vars = [("PGSERVICEFILE", file), ("PGSERVICE", "locks"), ("PGSYSCONFDIR", "/nonexistent")];
        let c = resolve("postgresql://me@h/db/job", &vars).unwrap();
        assert_eq!((c.user.as_str(), c.servers[0].port), ("me", 6543));
        let missing = [("PGSERVICEFILE", file), ("PGSYSCONFDIR", "/nonexistent")];
        assert!(matches!(
            resolve("postgresql:///job?service=absent", &missing),
            Err(Error::Usage { .. })
        ));
    }

    #[test]
    fn password_files_match_as_libpq_matches_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        fs::write(
            &file,
            "# comment\nother:*:*:*:no\ndb1:5432:app:u:first\n*:*:*:u:wild\\:card\nlocalhost:*:*:*:sock\n",
        )
        .unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let vars = [("PGPASSFILE", file.to_str().unwrap())];
        let c = resolve("postgresql://u@db1/app/job", &vars).unwrap();
        let mut warnings = Vec::new();
        let mut warn = |w: String| warnings.push(w);
        assert_eq!(c.passfile_password(&c.servers[0], &mut warn).as_deref(), Some("first"));
        let c = resolve("postgresql://u@db2/app/job", &vars).unwrap();
        assert_eq!(c.passfile_password(&c.servers[0], &mut warn).as_deref(), Some("wild:card"));
        let socket = Server { host: Host::Socket("/var/run/postgresql".into()), port: 5432 };
        let c = resolve("postgresql://x@db2/app/job", &vars).unwrap();
        assert_eq!(c.passfile_password(&socket, &mut warn).as_deref(), Some("sock"));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(c.passfile_password(&socket, &mut warn), None);
        assert_eq!(warnings.len(), 1, "only the open file is warned about");
        assert!(warnings[0].contains("group or world access"), "{warnings:?}");
    }

    #[test]
    fn keys_quote_names_and_filter_pg_locks() {
        assert_eq!(LockKey::Text("it's".into()).sql_args(), "hashtext('it''s')");
        assert_eq!(LockKey::Big(-5).sql_args(), "-5::bigint");
        assert_eq!(LockKey::Pair(1, 2).sql_args(), "1, 2");
        assert!(LockKey::Pair(1, 2).pg_locks_filter().contains("objsubid = 2"));
        assert!(LockKey::Big(3).pg_locks_filter().contains("objsubid = 1"));
    }
}
