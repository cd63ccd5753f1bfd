//! LOCK's form for the Redis kind, as redis-cli's `-u` reads a URL:
//!
//! * `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]/NAME`, `rediss://` for TLS (and
//!   `valkey://`, `valkeys://`, the same for Valkey);
//! * `unix:///path/to/redis.sock?name=NAME[&db=N][&user=USER][&password=PASSWORD]` (also
//!   `redis+unix://`, `valkey+unix://`): a socket path has no place for a name of its own,
//!   so NAME is a query parameter, as redis-rs takes `db`, `user` and `pass` there.
//!
//! A path of one segment is NAME in database 0; of several, a first segment of digits is the
//! database and the rest is NAME (`redis://h/3/nightly`: database 3, NAME `nightly`;
//! `redis://h/jobs/nightly`: NAME `jobs/nightly`). Everything is percent-decoded.

use std::fmt;
use std::path::PathBuf;

use crate::error::Error;
use crate::kind::network::socket;
use crate::kind::postgres::conninfo::percent_decode;

/// The LOCK prefixes that name a Redis lock.
pub const SCHEMES: &[&str] = &[
    "redis://",
    "rediss://",
    "valkey://",
    "valkeys://",
    "unix://",
    "redis+unix://",
    "valkey+unix://",
];

const DEFAULT_PORT: u16 = 6379;

const SHAPE: &str = "expected redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]/NAME (rediss:// for \
                     TLS) or unix:///PATH/TO/redis.sock?name=NAME[&db=N]";

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A parsed LOCK.
#[derive(Clone, PartialEq, Eq)]
pub struct Location {
    pub endpoint: Endpoint,
    pub tls: bool,
    pub db: u32,
    pub user: Option<String>,
    /// The password LOCK gives, if any (never shown).
    pub password: Option<String>,
    pub name: String,
    /// LOCK as messages show it: the password replaced by `***`.
    pub shown: String,
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("name", &self.name)
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Location {
    /// The key that holds the lock: `flockrun:NAME`.
    #[must_use]
    pub fn key(&self) -> String {
        format!("flockrun:{}", self.name)
    }

    /// The counter the fencing token comes from: `flockrun-fence:NAME`.
    #[must_use]
    pub fn fence_key(&self) -> String {
        format!("flockrun-fence:{}", self.name)
    }

    /// The channel a releasing flockrun publishes on, so waiters try at once.
    #[must_use]
    pub fn release_channel(&self) -> String {
        format!("flockrun-released:{}", self.name)
    }

    /// The keyspace-notification channel of the key (where the server sends them).
    #[must_use]
    pub fn keyspace_channel(&self) -> String {
        format!("__keyspace@{}__:{}", self.db, self.key())
    }
}

fn usage(message: String) -> Error {
    Error::Usage { message }
}

/// Parses LOCK.
///
/// ```
/// use flockrun::kind::redis::url::{parse, Endpoint};
/// let l = parse("rediss://ci:s%40cret@cache.example:6380/2/deploy")?;
/// assert_eq!(l.endpoint, Endpoint::Tcp { host: "cache.example".into(), port: 6380 });
/// assert!(l.tls);
/// assert_eq!((l.db, l.name.as_str()), (2, "deploy"));
/// assert_eq!(l.password.as_deref(), Some("s@cret"));
/// assert_eq!(l.shown, "rediss://ci:***@cache.example:6380/2/deploy");
/// assert_eq!(l.key(), "flockrun:deploy");
/// # Ok::<(), flockrun::Error>(())
/// ```
///
/// # Errors
/// `Usage` naming what is wrong and the shape expected.
pub fn parse(text: &str) -> Result<Location, Error> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| usage(format!("{text}: {SHAPE}")))?;
    match scheme {
        "redis" | "valkey" => parse_tcp(text, rest, false),
        "rediss" | "valkeys" => parse_tcp(text, rest, true),
        "unix" | "redis+unix" | "valkey+unix" => parse_unix(text, rest),
        _ => Err(usage(format!("{text}: {SHAPE}"))),
    }
}

fn parse_tcp(text: &str, rest: &str, tls: bool) -> Result<Location, Error> {
    if rest.contains(['?', '#']) {
        return Err(usage(format!(
            "{text}: a redis:// LOCK takes no ?parameters or #fragment; write ? and # in NAME \
             as %3F and %23"
        )));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((info, hostport)) => (Some(info), hostport),
        None => (None, authority),
    };
    let (host, port) = socket::host_port(hostport, DEFAULT_PORT)
        .map_err(|problem| usage(format!("{text}: {hostport:?}{problem}; {SHAPE}")))?;
    let host = host.to_owned();
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            let user = (!user.is_empty())
                .then(|| percent_decode(user, "user name", text))
                .transpose()?;
            let password = password
                .map(|p| percent_decode(p, "password", text))
                .transpose()?;
            (user, password)
        }
    };
    let (db, name) = match path.split_once('/') {
        Some((first, name))
            if !first.is_empty() && !name.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (database(text, first)?, name)
        }
        _ => (0, path),
    };
    let name = lock_name(text, name)?;
    let shown = match (userinfo, &password) {
        (Some(info), Some(_)) => {
            let visible = info.split_once(':').map_or(info, |(user, _)| user);
            text.replacen(&format!("{info}@"), &format!("{visible}:***@"), 1)
        }
        _ => text.to_owned(),
    };
    Ok(Location {
        endpoint: Endpoint::Tcp { host, port },
        tls,
        db,
        user,
        password,
        name,
        shown,
    })
}

fn parse_unix(text: &str, rest: &str) -> Result<Location, Error> {
    let (path, query) = rest.split_once('?').ok_or_else(|| {
        usage(format!(
            "{text}: a unix:// LOCK names its lock with ?name=NAME \
             (unix:///PATH/TO/redis.sock?name=NAME[&db=N])"
        ))
    })?;
    if !path.starts_with('/') || path.len() < 2 {
        return Err(usage(format!(
            "{text}: the socket must be an absolute path (unix:///run/redis/redis.sock?name=NAME)"
        )));
    }
    let socket = PathBuf::from(percent_decode(path, "socket path", text)?);
    let (mut name, mut db, mut user, mut password) = (None, 0, None, None);
    let mut hidden = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "name" => name = Some(value),
            "db" => db = database(text, value)?,
            "user" => user = Some(percent_decode(value, "user name", text)?),
            "password" | "pass" => {
                password = Some(percent_decode(value, "password", text)?);
                hidden.push((pair, format!("{key}=***")));
            }
            _ => {
                return Err(usage(format!(
                    "{text}: unknown parameter {key:?}; a unix:// LOCK takes name, db, user \
                     and password"
                )));
            }
        }
    }
    let name = lock_name(text, name.unwrap_or(""))?;
    let mut shown = text.to_owned();
    for (pair, replacement) in hidden {
        shown = shown.replacen(pair, &replacement, 1);
    }
    Ok(Location {
        endpoint: Endpoint::Unix(socket),
        tls: false,
        db,
        user,
        password,
        name,
        shown,
    })
}

fn database(text: &str, digits: &str) -> Result<u32, Error> {
    digits
        .parse::<u32>()
        .ok()
        .filter(|db| i32::try_from(*db).is_ok())
        .ok_or_else(|| usage(format!("{text}: {digits:?} is not a database number")))
}

fn lock_name(text: &str, raw: &str) -> Result<String, Error> {
    if raw.is_empty() {
        return Err(usage(format!("{text}: LOCK names no lock; {SHAPE}")));
    }
    let name = percent_decode(raw, "lock name", text)?;
    if name.chars().any(char::is_control) {
        return Err(usage(format!(
            "{text}: the lock name holds a control character"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_redis_cli_takes() {
        let l = parse("redis://127.0.0.1/job").unwrap();
        assert_eq!(
            l.endpoint,
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 6379
            }
        );
        assert_eq!((l.db, l.name.as_str(), l.tls), (0, "job", false));
        let l = parse("redis://h/5").unwrap();
        assert_eq!((l.db, l.name.as_str()), (0, "5"));
        let l = parse("redis://h/jobs/nightly").unwrap();
        assert_eq!((l.db, l.name.as_str()), (0, "jobs/nightly"));
        let l = parse("valkey://:pw@[::1]:7000/1/a%2Fb").unwrap();
        assert_eq!(l.endpoint.to_string(), "[::1]:7000");
        assert_eq!((l.db, l.name.as_str(), l.user.as_deref()), (1, "a/b", None));
        assert_eq!(l.password.as_deref(), Some("pw"));
        assert_eq!(l.shown, "valkey://:***@[::1]:7000/1/a%2Fb");
        let l = parse("redis://ci@h/x").unwrap();
        assert_eq!((l.user.as_deref(), l.password.as_deref()), (Some("ci"), None));
        assert_eq!(l.shown, "redis://ci@h/x");
        let l = parse("unix:///run/redis.sock?name=deploy&db=2&user=u&password=p%26q").unwrap();
        assert_eq!(l.endpoint, Endpoint::Unix("/run/redis.sock".into()));
        assert_eq!((l.db, l.name.as_str()), (2, "deploy"));
        assert_eq!(l.password.as_deref(), Some("p&q"));
        assert_eq!(l.shown, "unix:///run/redis.sock?name=deploy&db=2&user=u&password=***");
        assert_eq!(l.keyspace_channel(), "__keyspace@2__:flockrun:deploy");
    }

    #[test]
    fn malformed_locks_say_what_is_wrong() {
        for (lock, says) in [
            ("redis://h", "names no lock"),
            ("redis://h/", "names no lock"),
            ("redis://h:0/x", "bad port"),
            ("redis://h:99999/x", "bad port"),
            ("redis:///x", "no usable host"),
            ("redis://h/x?db=1", "no ?parameters"),
            ("redis://h/9999999999/x", "not a database number"),
            ("redis://h/x%zz", "must start an escape"),
            ("unix:///run/r.sock", "?name=NAME"),
            ("unix://run/r.sock?name=x", "absolute path"),
            ("unix:///run/r.sock?name=x&sentinel=1", "unknown parameter"),
            ("redis://h/a%0Ab", "control character"),
        ] {
            let message = parse(lock).unwrap_err().to_string();
            assert!(message.contains(says), "{lock}: {message}");
        }
    }
}
