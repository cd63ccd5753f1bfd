//! The etcd kind: LOCK `etcd://HOST:PORT[,HOST:PORT...]/NAME` (`etcds://` over TLS), one
//! lock across machines,
//! taken as `etcdctl lock` takes it (the protocol and the cluster client are in
//! `crate::etcd`). flockrun itself holds it through a lease, so COMMAND inherits nothing
//! and dies with flockrun; the lease can be lost while COMMAND runs, and then COMMAND is
//! stopped.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::etcd::{self as cluster, HeldEtcd};
use crate::inspect::sighting::FileId;
use crate::lock::{Claim, Hold, Kind, LockFile, Lockable, Request, Target};
use crate::mode::LockMode;
use crate::nested::HeldKey;
use crate::status::{LockStatus, State};
use crate::supervise::{self, LostWatch};
use crate::wait::{Deadline, WaitObserver};

pub struct Etcd;

impl Kind for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn claims(&self, request: &Request) -> Option<Claim> {
        cluster::is_target(request.lock.as_os_str()).then_some(Claim::ByName)
    }

    fn target(&self, request: &Request) -> Result<Target, Error> {
        request.refuse_descriptor_options("etcd")?;
        let usage = |message: String| Error::Usage { message };
        let text = utf8(request.lock.as_os_str())?;
        if request.verb.is_read_write() {
            return Err(usage(format!(
                "read and write take a SQLite lock file, not {text}; an etcd lock is \
                 exclusive: use exec or try"
            )));
        }
        let not_for_etcd = [
            (request.mode == LockMode::Shared, "-s/--shared"),
            (request.fcntl, "--fcntl"),
            (request.soft, "--soft"),
            (request.no_fork, "-F/--no-fork"),
            (request.create_mode.is_some(), "--mode"),
        ];
        if let Some((_, flag)) = not_for_etcd.iter().find(|(given, _)| *given) {
            return Err(usage(format!(
                "{flag} does not apply to {text}: an etcd lock is exclusive, held by flockrun \
                 itself, and has no file"
            )));
        }
        let ttl = match request.ttl {
            None => cluster::DEFAULT_TTL,
            Some(ttl) => ttl.whole_seconds().ok_or_else(|| Error::Usage {
                message: format!(
                    "--ttl {ttl}: an etcd lease lasts whole seconds; give a whole number such \
                     as {} (fractions are for --soft leases)",
                    ttl.as_secs_f64().ceil()
                ),
            })?,
        };
        let (target, reach) =
            cluster::Cluster::resolve(text, &request.etcd, &cluster::process_env)?;
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
            }),
        })
    }

    fn inspect_named(
        &self,
        lock: &OsStr,
        access: &cluster::Access,
    ) -> Option<Result<LockStatus, Error>> {
        cluster::is_target(lock).then(|| inspect(lock, access))
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
    lock.to_str().ok_or_else(|| Error::Usage {
        message: format!(
            "{}: an etcd:// LOCK must be valid UTF-8",
            lock.to_string_lossy()
        ),
    })
}

/// The status of an etcd lock: its queue of keys, the oldest holding it.
fn inspect(lock: &OsStr, access: &cluster::Access) -> Result<LockStatus, Error> {
    let text = utf8(lock)?;
    let (target, reach) = cluster::Cluster::resolve(text, access, &cluster::process_env)?;
    let queue = cluster::queue(&target, &Arc::new(reach))?;
    let mut status = LockStatus::new(PathBuf::from(text));
    status.exists = true;
    status.kind = Some(Etcd.name());
    if !queue.is_empty() {
        status.state = State::Held;
        status.mode = Some(LockMode::Exclusive.name());
    }
    status.etcd_queue = queue;
    Ok(status)
}

struct EtcdTarget {
    target: cluster::Target,
    cluster: Arc<cluster::Cluster>,
    ttl: u32,
    /// What the key's value says the holder runs.
    command: String,
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
        vec![
            ("FLOCKRUN_FENCE".into(), revision.clone().into()),
            // What etcdctl lock gives its command, for scripts written for it.
            ("ETCD_LOCK_KEY".into(), self.held.key.clone().into()),
            ("ETCD_LOCK_REV".into(), revision.into()),
        ]
    }

    fn details(&self) -> String {
        format!(
            ": key {}, fencing token {}",
            self.held.key, self.held.revision
        )
    }

    fn loss(&self) -> Option<LostWatch> {
        Some(LostWatch {
            is_lost: self.held.session.lost_flag(),
            grace: supervise::grace_for(self.held.session.ttl()),
            // The renewal thread signals a loss; its calls all have deadlines.
            poll: None,
        })
    }

    fn lost(&self) -> Option<String> {
        self.held.session.lost()
    }

    fn release(self: Box<Self>) -> Option<String> {
        self.held.session.release()
    }
}
