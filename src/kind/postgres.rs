//! The PostgreSQL kind: LOCK `postgresql://[USER[:PASSWORD]@]HOST[:PORT][,…]/DBNAME/NAME`
//! (or `postgres://`, or `postgresql:///NAME` with the server from libpq's environment), an
//! advisory lock on the database a team already runs. `exec` and `try` take it exclusive,
//! `read` shared and `write` exclusive. flockrun holds it on a session of its own, kept
//! alive by the network kinds' heartbeat (`kind::network`), so COMMAND inherits nothing,
//! and a session that is lost stops COMMAND.
//!
//! The protocol is in this folder: `conninfo` (LOCK, service files, `PG*` variables,
//! password file), `tls` (`sslmode` through rustls), `wire` (the connection), `advisory`
//! (the lock, its heartbeat, the holder query).

pub mod advisory;
pub mod conninfo;
mod tls;
mod wire;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use self::advisory::{HeldAdvisory, SessionRow};
use self::conninfo::{Conninfo, LockKey, SCHEMES};
use super::network;
use crate::error::Error;
use crate::lock::{Claim, Hold, Kind, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::status::{LockStatus, SessionReport, State};
use crate::supervise::LostWatch;
use crate::wait::{Deadline, WaitObserver};

pub struct Postgres;

/// Whether LOCK selects the PostgreSQL kind.
#[must_use]
pub fn is_target(lock: &OsStr) -> bool {
    let bytes = lock.as_encoded_bytes();
    SCHEMES.iter().any(|s| bytes.starts_with(s.as_bytes()))
}

fn resolve(lock: &OsStr) -> Result<Conninfo, Error> {
    let text = network::lock_text(lock, "postgresql://")?;
    Conninfo::resolve(text, &|name| std::env::var_os(name))
}

impl Kind for Postgres {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        is_target(request.lock.as_os_str()).then_some(Claim::ByName)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_descriptor_options("postgresql")?;
        let info = resolve(request.lock.as_os_str())?;
        let text = info.shown.clone();
        let rw = request.verb.is_read_write();
        if !rw && request.mode == LockMode::Shared {
            return Err(Error::Usage {
                message: format!(
                    "-s/--shared does not apply to {text}: use read for a shared PostgreSQL \
                     lock and write for an exclusive one"
                ),
            });
        }
        let mut file_only = request.clone();
        file_only.mode = LockMode::Exclusive;
        network::refuse_file_options(&file_only, &text, "a PostgreSQL lock")?;
        let ttl = network::whole_second_ttl(request, advisory::DEFAULT_TTL, "a PostgreSQL lease")?;
        if ttl < 3 {
            return Err(Error::Usage {
                message: format!(
                    "--ttl {ttl}: a PostgreSQL lease needs at least 3 seconds (the server \
                     counts its timeouts in whole seconds and flockrun beats every third)"
                ),
            });
        }
        let tls = tls::setup(&info)?;
        let mode = if rw { request.mode } else { LockMode::Exclusive };
        Ok(Target {
            kind: self.name(),
            mode,
            mode_names: if rw {
                LockMode::read_write_name
            } else {
                LockMode::name
            },
            lock: text.clone().into(),
            shown: text,
            deadline: request.deadline,
            close: request.close,
            no_fork: false,
            lockable: Box::new(PgTarget {
                target: advisory::Target {
                    info,
                    tls,
                    ttl,
                    mode,
                    command: request.command.clone(),
                },
            }),
        })
    }

    fn inspect_named(
        &self,
        lock: &OsStr,
        _access: &super::etcd::Access,
    ) -> Option<Result<LockStatus, Error>> {
        is_target(lock).then(|| inspect(lock))
    }

    fn inspects_files(&self) -> bool {
        false
    }

    fn inspect_file(&self, _status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        Err(Error::Internal(anyhow::anyhow!(
            "{} was inspected as a PostgreSQL lock, which is no file",
            file.path.display()
        )))
    }
}

fn report(row: &SessionRow) -> SessionReport {
    let (pid, host) = match (&row.owner, row.flockrun_pid_host()) {
        (Some(owner), _) => (owner.pid, owner.host.clone()),
        (None, Some((pid, host))) => (Some(pid), Some(host)),
        (None, None) => (None, None),
    };
    SessionReport {
        described: row.describe(),
        pid,
        host,
        command: row.owner.as_ref().and_then(|o| o.command.clone()),
        since: row.owner.as_ref().and_then(|o| o.since.clone()),
        backend_pid: row.backend_pid,
        user: row.user.clone(),
        application: row.application.clone(),
        client: row.client.clone(),
        mode: row.mode.clone(),
    }
}

/// The status of a PostgreSQL lock: the sessions that hold it and wait for it.
fn inspect(lock: &OsStr) -> Result<LockStatus, Error> {
    let info = resolve(lock)?;
    let tls = tls::setup(&info)?;
    let shown = info.shown.clone();
    let key = info.lock_key.clone();
    let target = advisory::Target {
        info,
        tls,
        ttl: advisory::DEFAULT_TTL,
        mode: LockMode::Exclusive,
        command: String::new(),
    };
    let (rows, number) = advisory::status(&target)?;
    let mut status = LockStatus::new(PathBuf::from(&shown));
    status.exists = true;
    status.kind = Some(Postgres.name());
    if let Some(holder) = rows.iter().find(|r| r.granted) {
        status.state = State::Held;
        status.mode = Some(if holder.mode == "shared" { "read" } else { "exclusive" });
    }
    status.server_key = Some(match (&key, number) {
        (LockKey::Pair(..), _) => format!("{key} (the two-integer key space)"),
        (_, Some(number)) => format!("{key} = {number}"),
        _ => key.to_string(),
    });
    status.sessions = rows.iter().map(|r| (r.granted, report(r))).collect();
    Ok(status)
}

struct PgTarget {
    target: advisory::Target,
}

impl PgTarget {
    /// The key a PostgreSQL lock has in `FLOCKRUN_HELD`: a hash of the servers, database
    /// and key in the device field, so a nested flockrun on the same lock sees it held.
    fn key(&self) -> HeldKey {
        let info = &self.target.info;
        let mut servers: Vec<String> = info.servers.iter().map(ToString::to_string).collect();
        servers.sort();
        let text = format!("{:?}\0{}\0{}", info.lock_key, info.dbname, servers.join(","));
        HeldKey::of_name(Postgres.name(), &text)
    }
}

impl Lockable for PgTarget {
    fn held_key(&self) -> Option<HeldKey> {
        Some(self.key())
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let held = advisory::acquire(&self.target, deadline, observer)?;
        Ok(Box::new(HeldPg {
            held,
            key: self.key(),
        }))
    }
}

struct HeldPg {
    held: HeldAdvisory,
    key: HeldKey,
}

impl Hold for HeldPg {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.held.waited
    }

    fn session_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.held.socket)
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        self.held
            .fence
            .iter()
            .map(|fence| ("FLOCKRUN_FENCE".into(), fence.into()))
            .collect()
    }

    fn details(&self) -> String {
        format!(
            ": backend {}{}",
            self.held.backend_pid,
            self.held
                .fence
                .as_ref()
                .map_or_else(String::new, |f| format!(", fencing token {f}"))
        )
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
