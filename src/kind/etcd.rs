//! The etcd kind: LOCK `etcd://HOST:PORT[,HOST:PORT...]/NAME` (`etcds://` over TLS), one
//! lock across machines, taken as `etcdctl lock` takes it. flockrun itself holds it through
//! a lease kept alive by the network kinds' session (`kind::network`), so COMMAND inherits
//! nothing and dies with flockrun; the lease can be lost while COMMAND runs, and then
//! COMMAND is stopped.
//!
//! The protocol is in this folder: `mutex` (the lock recipe, the lease and its renewals),
//! `http` (the cluster client over etcd's JSON gateway), `access` (endpoints, credentials,
//! the environment etcdctl reads), `target` (LOCK's form), `tls`.

pub mod access;
pub mod http;
pub(crate) mod mutex;
pub mod target;
mod tls;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use self::access::{Access, Credentials};
use self::mutex::{self as cluster, HeldEtcd};
pub use self::mutex::{DEFAULT_TTL, QueueEntry, is_target};
pub use self::target::{SCHEME, TLS_SCHEME, base64, lease_hex, unbase64};
pub use self::tls::TlsFiles;
pub(crate) use self::tls::client_config as tls_client_config;
use super::network;
pub use super::network::owner::Owner;
use crate::error::Error;
use crate::inspect::sighting::FileId;
use crate::lock::{Claim, Hold, Kind, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::status::{LockStatus, SemaphoreReport, SlotReport, State};
use crate::supervise::LostWatch;
use crate::wait::{Deadline, WaitObserver};

pub struct Etcd;

impl Kind for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        is_target(request.lock.as_os_str()).then_some(Claim::ByName)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_descriptor_options("etcd")?;
        let text = utf8(request.lock.as_os_str())?;
        if request.verb.is_read_write() {
            return Err(Error::Usage {
                message: format!(
                    "read and write take a SQLite lock file, not {text}; an etcd lock is \
                     exclusive: use exec or try"
                ),
            });
        }
        network::refuse_file_options(request, text, "an etcd lock")?;
        let ttl = network::whole_second_ttl(request, DEFAULT_TTL, "an etcd lease")?;
        let (target, reach) = access::Cluster::resolve(text, &request.etcd, &access::process_env)?;
        Ok(Target {
            kind: self.name(),
            mode: LockMode::Exclusive,
            mode_names: LockMode::name,
            lock: text.into(),
            shown: text.to_owned(),
            deadline: request.deadline,
            close: request.close,
            no_fork: false,
            lockable: Box::new(EtcdTarget {
                target,
                cluster: Arc::new(reach),
                ttl,
                command: request.command.clone(),
                slots: request.slots,
            }),
        })
    }

    fn inspect_named(
        &self,
        lock: &OsStr,
        access: &Access,
    ) -> Option<Result<LockStatus, Error>> {
        is_target(lock).then(|| inspect(lock, access))
    }

    fn inspects_files(&self) -> bool {
        false
    }

    fn inspect_file(&self, _status: &mut LockStatus, file: &LockFile<'_>) -> Result<(), Error> {
        Err(Error::Internal(anyhow::anyhow!(
            "{} was inspected as an etcd lock, which is no file",
            file.path.display()
        )))
    }
}

fn utf8(lock: &OsStr) -> Result<&str, Error> {
    network::lock_text(lock, "etcd://")
}

/// The status of an etcd lock: its queue of keys, the oldest holding it.
fn inspect(lock: &OsStr, given: &Access) -> Result<LockStatus, Error> {
    let text = utf8(lock)?;
    let (target, reach) = access::Cluster::resolve(text, given, &access::process_env)?;
    let reach = Arc::new(reach);
    let queue = cluster::queue(&target, &reach)?;
    let mut status = LockStatus::new(PathBuf::from(text));
    status.exists = true;
    status.kind = Some(Etcd.name());
    if !queue.is_empty() {
        status.state = State::Held;
        status.mode = Some(LockMode::Exclusive.name());
    }
    // A semaphore's holders record N: the N oldest keys hold.
    if let Some(slots) = queue.first().and_then(|e| e.owner.as_ref()?.slots) {
        let taken = cluster::slot_leases(&target, &reach)?;
        let mut held: Vec<SlotReport> = queue
            .iter()
            .take(usize::from(slots))
            .map(|entry| {
                let owner = entry.owner.clone().unwrap_or_default();
                let claimed = taken.iter().find(|(_, lease)| *lease == entry.lease);
                SlotReport {
                    slot: claimed.map_or(owner.slot.unwrap_or(u16::MAX), |(slot, _)| *slot),
                    holder: None,
                    pid: owner.pid,
                    since: owner
                        .since
                        .as_deref()
                        .and_then(crate::utc::parse_utc_timestamp),
                    host: owner.host,
                    command: owner.command,
                    verdict: None,
                }
            })
            .collect();
        held.sort_by_key(|s| s.slot);
        status.semaphore = Some(SemaphoreReport {
            slots: Some(slots),
            held,
        });
    }
    status.etcd_queue = queue;
    Ok(status)
}

struct EtcdTarget {
    target: target::Target,
    cluster: Arc<access::Cluster>,
    ttl: u32,
    /// What the key's value says the holder runs.
    command: String,
    /// `--slots N`: a semaphore of N slots.
    slots: Option<u16>,
}

impl EtcdTarget {
    /// The key an etcd lock has in `FLOCKRUN_HELD`: the target's hash in the device field
    /// and 0 in the inode field, so the entry has the shape of every other one. The hash
    /// covers NAME and the member set, so two spellings of one cluster match.
    fn key(&self) -> HeldKey {
        HeldKey {
            kind: Etcd.name(),
            id: FileId {
                dev: self.target.identity(),
                ino: 0,
            },
        }
    }
}

impl Lockable for EtcdTarget {
    fn held_key(&self) -> Option<HeldKey> {
        Some(self.key())
    }

    fn take(
        &self,
        deadline: &Deadline,
        observer: &mut dyn WaitObserver,
    ) -> Result<Box<dyn Hold>, Error> {
        let held = cluster::acquire(
            &self.target,
            &self.cluster,
            self.ttl,
            deadline,
            &self.command,
            self.slots,
            observer,
        )?;
        Ok(Box::new(HeldLease {
            held,
            key: self.key(),
        }))
    }
}

/// A held etcd lock: the lease, renewed by a thread until released or lost.
struct HeldLease {
    held: HeldEtcd,
    key: HeldKey,
}

impl Hold for HeldLease {
    fn key(&self) -> HeldKey {
        self.key
    }

    fn waited(&self) -> Duration {
        self.held.waited
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        let revision = self.held.revision.to_string();
        let mut env = vec![
            ("FLOCKRUN_FENCE".into(), revision.clone().into()),
            // What etcdctl lock gives its command, for scripts written for it.
            ("ETCD_LOCK_KEY".into(), self.held.key.clone().into()),
            ("ETCD_LOCK_REV".into(), revision.into()),
        ];
        env.extend(crate::lock::slot_env(self.held.slot));
        env
    }

    fn details(&self) -> String {
        format!(
            ": key {}, fencing token {}{}",
            self.held.key,
            self.held.revision,
            crate::lock::slot_details(self.held.slot)
        )
    }

    fn loss(&self) -> Option<LostWatch> {
        Some(self.held.session.watch())
    }

    fn lost(&self) -> Option<String> {
        self.held.session.lost()
    }

    fn release(self: Box<Self>) -> Option<String> {
        self.held.session.release()
    }
}
