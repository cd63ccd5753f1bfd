//! The Redis kind (Valkey too): LOCK `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]/NAME`,
//! `rediss://` over TLS, or `unix:///PATH/TO/redis.sock?name=NAME`, a lease kept in the key
//! `flockrun:NAME` on a single primary. flockrun holds it through the network kinds'
//! renewal thread (`kind::network`), so COMMAND inherits nothing, and a lease that is lost
//! stops COMMAND.
//!
//! The protocol is in this folder: `url` (LOCK's form), `resp` (the connection and its
//! login), `lease` (the lock, its renewals, what `status` reads).

pub mod lease;
pub mod resp;
pub mod url;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use self::lease::{HeldRedis, KeyState};
use self::resp::Login;
use self::url::SCHEMES;
use super::etcd::Access;
use super::network;
use super::network::owner::Owner;
use crate::error::Error;
use crate::lock::{Claim, Hold, Kind, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::status::{LockStatus, RedisReport, State};
use crate::supervise::LostWatch;
use crate::wait::{Deadline, WaitObserver};

pub struct Redis;

/// The variable redis-cli takes the password from.
pub const ENV_PASSWORD: &str = "REDISCLI_AUTH";

/// Whether LOCK selects the Redis kind.
#[must_use]
pub fn is_target(lock: &OsStr) -> bool {
    let bytes = lock.as_encoded_bytes();
    SCHEMES.iter().any(|s| bytes.starts_with(s.as_bytes()))
}

/// LOCK and the options, resolved: where, how to log in, and the TTL.
fn resolve(text: &str, access: &Access, ttl: Duration) -> Result<lease::Target, Error> {
    let location = url::parse(text)?;
    let shown = location.shown.clone();
    if !location.tls && access.tls.any() {
        return Err(Error::Usage {
            message: format!(
                "--cacert, --cert and --key are for TLS, and {shown} is a plain connection: \
                 write LOCK as rediss://... for a server that serves TLS"
            ),
        });
    }
    let tls = if location.tls {
        Some(super::etcd::tls_client_config(&access.tls)?)
    } else {
        None
    };
    let (option_user, option_password) = match access.user.as_deref() {
        Some(given) => match given.split_once(':') {
            Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
            None => (Some(given.to_owned()), None),
        },
        None => (None, None),
    };
    if let (Some(ours), Some(theirs)) = (&location.user, &option_user)
        && ours != theirs
    {
        return Err(Error::Usage {
            message: format!(
                "{shown} names user {ours:?} and --user names {theirs:?}: give the user once"
            ),
        });
    }
    let from_file = match &access.password_file {
        Some(path) => Some(super::etcd::access::read_password(path)?),
        None => None,
    };
    let from_env = std::env::var(ENV_PASSWORD).ok().filter(|p| !p.is_empty());
    let (password, password_from) = if let Some(p) = location.password.clone() {
        (Some(p), "LOCK")
    } else if let Some(p) = from_file {
        (Some(p), "--password-file")
    } else if let Some(p) = option_password {
        (Some(p), "--user")
    } else if let Some(p) = from_env {
        (Some(p), ENV_PASSWORD)
    } else {
        (None, "nowhere")
    };
    Ok(lease::Target {
        login: Login {
            tls,
            user: location.user.clone().or(option_user),
            password,
            password_from,
            client_cert: access.tls.cert.is_some(),
            keepalive_idle: (ttl / 3).max(Duration::from_secs(1)),
        },
        location,
        ttl,
        command: String::new(),
    })
}

impl Kind for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        is_target(request.lock.as_os_str()).then_some(Claim::ByName)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_descriptor_options("redis")?;
        let text = network::lock_text(request.lock.as_os_str(), "redis://")?;
        if request.verb.is_read_write() {
            return Err(Error::Usage {
                message: format!(
                    "read and write take a SQLite lock file or a postgresql:// lock, not \
                     {text}; a Redis lock is exclusive: use exec or try"
                ),
            });
        }
        network::refuse_file_options(request, text, "a Redis lock")?;
        let ttl = match request.ttl {
            None => lease::DEFAULT_TTL,
            Some(ttl) if ttl.duration() < lease::MIN_TTL => {
                return Err(Error::Usage {
                    message: format!(
                        "--ttl {ttl}: a Redis lease needs at least 1 second (flockrun renews \
                         it every third of the TTL)",
                        ttl = ttl.as_secs_f64()
                    ),
                });
            }
            Some(ttl) => ttl.duration(),
        };
        let mut target = resolve(text, &request.etcd, ttl)?;
        target.command.clone_from(&request.command);
        let shown = target.location.shown.clone();
        Ok(Target {
            kind: self.name(),
            mode: LockMode::Exclusive,
            mode_names: LockMode::name,
            lock: shown.clone().into(),
            shown,
            deadline: request.deadline,
            close: request.close,
            no_fork: false,
            lockable: Box::new(RedisTarget { target }),
        })
    }

    fn inspect_named(&self, lock: &OsStr, access: &Access) -> Option<Result<LockStatus, Error>> {
        is_target(lock).then(|| inspect(lock, access))
    }

    fn inspects_files(&self) -> bool {
        false
    }

    fn inspect_file(&self, _status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        Err(Error::Internal(anyhow::anyhow!(
            "{} was inspected as a Redis lock, which is no file",
            file.path.display()
        )))
    }
}

/// The status of a Redis lock: who the key names, and how long it has left.
fn inspect(lock: &OsStr, access: &Access) -> Result<LockStatus, Error> {
    let target = resolve(
        network::lock_text(lock, "redis://")?,
        access,
        lease::DEFAULT_TTL,
    )?;
    let KeyState {
        key,
        value,
        ttl_left,
        fence,
    } = lease::status(&target)?;
    let mut status = LockStatus::new(PathBuf::from(&target.location.shown));
    status.exists = true;
    status.kind = Some(Redis.name());
    if value.is_some() {
        status.state = State::Held;
        status.mode = Some("exclusive");
    }
    status.redis = Some(RedisReport {
        key,
        owner: value.as_deref().and_then(Owner::parse),
        described: value
            .as_deref()
            .map(|v| lease::describe_value(v, ttl_left)),
        value: value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        ttl_left,
        fence,
    });
    Ok(status)
}

struct RedisTarget {
    target: lease::Target,
}

impl RedisTarget {
    /// The key a Redis lock has in `FLOCKRUN_HELD`: a hash of server, database and name.
    fn key(&self) -> HeldKey {
        let l = &self.target.location;
        HeldKey::of_name(Redis.name(), &format!("{}\0{}\0{}", l.endpoint, l.db, l.name))
    }
}

impl Lockable for RedisTarget {
    fn held_key(&self) -> Option<HeldKey> {
        Some(self.key())
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let held = lease::acquire(&self.target, deadline, observer)?;
        Ok(Box::new(HeldLease {
            held,
            key: self.key(),
            name: self.target.location.key(),
        }))
    }
}

struct HeldLease {
    held: HeldRedis,
    key: HeldKey,
    name: String,
}

impl Hold for HeldLease {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.held.waited
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        vec![("FLOCKRUN_FENCE".into(), self.held.fence.to_string().into())]
    }

    fn details(&self) -> String {
        format!(": key {}, fencing token {}", self.name, self.held.fence)
    }

    fn loss(&self) -> Option<LostWatch> {
        Some(self.held.watch())
    }

    fn lost(&self) -> Option<String> {
        self.held.lost()
    }

    fn release(self: Box<Self>) -> Option<String> {
        self.held.release()
    }
}
