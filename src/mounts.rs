//! What the filesystem under a lock file does with locks and attributes, as far as this host
//! can tell: `fstatfs(2)` names the filesystem type, and only for the network and FUSE types
//! is `/proc/self/mountinfo` read for the mount's options. Local filesystems cost one system
//! call and nothing else.
//!
//! Two questions are answered:
//! * do kernel locks (flock(2) or OFD) reach other hosts, or does this host keep them to
//!   itself ([`host_local_locks`])? FUSE filesystems keep them unless the filesystem forwards
//!   them (a few cluster filesystems do); NFS does with `nolock` or a matching `local_lock=`;
//!   SMB does with `nobrl`.
//! * how long may this host answer `fstat` from a cache ([`attribute_cache`]), which bounds
//!   the shortest soft-lease TTL a contender can judge: known for NFS mounted `nocto`.
//!
//! And for a kernel lock on a network filesystem that passes locks on ([`Filesystem`]):
//! whether a holder this host cannot see may be on another host, and for NFSv4, the lease
//! under which the server keeps the lock (`/proc/self/mountstats`).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
const NFS_SUPER_MAGIC: i64 = 0x6969;
const CIFS_SUPER_MAGIC: i64 = 0xFF53_4D42;
const SMB2_SUPER_MAGIC: i64 = 0xFE53_4D42;
const SMB_SUPER_MAGIC: i64 = 0x517B;

/// FUSE filesystems whose client forwards kernel locks to the other clients; for every other
/// FUSE filesystem (sshfs, s3fs, rclone, gcsfuse, bindfs…) the kernel keeps them local.
const FUSE_FORWARDING_LOCKS: [&str; 5] = ["glusterfs", "ceph-fuse", "juicefs", "mfs", "lizardfs"];

/// Which kernel lock a question is about: NFS's `local_lock=` treats the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelLock {
    /// flock(2).
    Flock,
    /// POSIX and OFD record locks (`fcntl`).
    Record,
}

/// A mount as `/proc/self/mountinfo` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    /// Such as `fuse.sshfs`, `nfs4`, `cifs`.
    pub fs_type: String,
    pub source: String,
    /// The filesystem's own options (after the ` - ` separator), comma-separated.
    pub super_options: String,
}

impl Mount {
    fn option(&self, name: &str) -> Option<&str> {
        self.super_options
            .split(',')
            .find_map(|o| match o.split_once('=') {
                Some((key, value)) if key == name => Some(value),
                None if o == name => Some(""),
                _ => None,
            })
    }

    /// The mount as a person reads it: `fuse.sshfs mount of host:/srv at /mnt/srv`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} mount of {} at {}",
            self.fs_type, self.source, self.mount_point
        )
    }
}

/// Why kernel locks on a file stay on this host: the mount and the reason in a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLocal {
    pub mount: Mount,
    pub why: &'static str,
}

/// Whether the kernel keeps `lock` locks on `file` to this host. `None` for local
/// filesystems (only this host can reach them), for network filesystems that pass locks on,
/// and when the mount cannot be found.
#[must_use]
pub fn host_local_locks(file: &File, lock: KernelLock) -> Option<HostLocal> {
    Filesystem::of(file.as_fd())?.host_local(lock)
}

/// A lock file's filesystem when other hosts may share it (network and FUSE filesystems),
/// with its mount; `None` for a local filesystem, which costs one `fstatfs`.
#[derive(Debug, Clone)]
pub struct Filesystem {
    magic: i64,
    pub mount: Mount,
}

impl Filesystem {
    #[must_use]
    pub fn of(file: BorrowedFd<'_>) -> Option<Filesystem> {
        let magic = filesystem_type(file)?;
        if ![
            FUSE_SUPER_MAGIC,
            NFS_SUPER_MAGIC,
            CIFS_SUPER_MAGIC,
            SMB2_SUPER_MAGIC,
            SMB_SUPER_MAGIC,
        ]
        .contains(&magic)
        {
            return None;
        }
        Some(Filesystem {
            magic,
            mount: mount_of(file)?,
        })
    }

    /// Whether the kernel keeps `lock` locks here to this host.
    #[must_use]
    pub fn host_local(&self, lock: KernelLock) -> Option<HostLocal> {
        let why = judge_locks(&self.mount, lock)?;
        Some(HostLocal {
            mount: self.mount.clone(),
            why,
        })
    }

    /// Where `lock` locks reach the other hosts through a server (not on FUSE, not where the
    /// kernel keeps them here): a holder on another host in words, and what a person should
    /// know about such holders on this filesystem, if anything.
    #[must_use]
    pub fn remote_holders(&self, lock: KernelLock) -> Option<(&'static str, Option<&'static str>)> {
        if self.host_local(lock).is_some() {
            return None;
        }
        match self.magic {
            NFS_SUPER_MAGIC if self.mount.fs_type == "nfs" => Some((
                "a process on another NFS client",
                Some(
                    "NFSv3 keeps the locks of a client that crashed or was cut off until that \
                     client boots again",
                ),
            )),
            NFS_SUPER_MAGIC => Some(("a process on another NFS client", None)),
            CIFS_SUPER_MAGIC | SMB2_SUPER_MAGIC | SMB_SUPER_MAGIC => {
                Some(("a process on another SMB client", None))
            }
            _ => None,
        }
    }

    /// For NFSv4, where the server keeps a client's locks only while the client renews its
    /// lease: the lease as this client learnt it from the server, or `None` when the kernel
    /// does not say. `None` too for every other filesystem (NFSv3 locks have no lease).
    #[must_use]
    pub fn nfs4_lease(&self) -> Option<Option<Duration>> {
        (self.magic == NFS_SUPER_MAGIC && self.mount.fs_type == "nfs4").then(|| {
            let stats = std::fs::read_to_string("/proc/self/mountstats").ok()?;
            lease_in_mountstats(&stats, &self.mount.mount_point)
        })
    }

    /// The server, as a person reads it: its address.
    #[must_use]
    pub fn server(&self) -> String {
        self.mount.option("addr").map_or_else(
            || {
                self.mount
                    .source
                    .split_once(':')
                    .map_or(self.mount.source.clone(), |(host, _)| host.to_owned())
            },
            str::to_owned,
        )
    }
}

/// The open flag for reading lock records on the filesystem `fd` is on: `O_DIRECT` on NFS,
/// nothing elsewhere. On NFSv4 a file opened for reading through the page cache may come
/// with a read delegation, and a client that crashes while holding one makes every other
/// client that renames, removes or writes that file wait for the server's lease (90 s by
/// default) first: a holder could not renew its record, a contender could not take over a
/// dead one. Linux's client asks for no delegation when it opens with `O_DIRECT`, and the
/// read then comes from the server, never from a cache. Local filesystems would refuse
/// small unaligned direct reads.
#[must_use]
pub fn uncached(fd: BorrowedFd<'_>) -> libc::c_int {
    if filesystem_type(fd) == Some(NFS_SUPER_MAGIC) {
        libc::O_DIRECT
    } else {
        0
    }
}

/// `uncached` for the filesystem `path` is on (`statfs`, following links).
#[must_use]
pub fn uncached_at(path: &std::path::Path) -> libc::c_int {
    match nix::sys::statfs::statfs(path) {
        #[allow(clippy::useless_conversion)] // the field's type differs between targets
        Ok(stat) if i64::from(stat.filesystem_type().0) == NFS_SUPER_MAGIC => libc::O_DIRECT,
        _ => 0,
    }
}

/// The NFSv4 lease of the mount at `mount_point` from `/proc/self/mountstats`, whose
/// `nfsv4:` line says `lease_time=SECONDS` (Linux 4.18 and later).
#[must_use]
pub fn lease_in_mountstats(stats: &str, mount_point: &str) -> Option<Duration> {
    let mut ours = false;
    for line in stats.lines() {
        if let Some(device) = line.strip_prefix("device ") {
            ours = device
                .split_once(" mounted on ")
                .and_then(|(_, rest)| rest.rsplit_once(" with fstype "))
                .is_some_and(|(point, _)| unescape(point) == mount_point);
            continue;
        }
        if !ours {
            continue;
        }
        if let Some(v4) = line.trim_start().strip_prefix("nfsv4:") {
            return v4.trim().split(',').find_map(|field| {
                let seconds = field.strip_prefix("lease_time=")?.parse::<u64>().ok()?;
                (seconds > 0).then(|| Duration::from_secs(seconds))
            });
        }
    }
    None
}

/// What a mount's type and options say about kernel locks reaching other hosts.
#[must_use]
pub fn judge_locks(mount: &Mount, lock: KernelLock) -> Option<&'static str> {
    let fs_type = mount.fs_type.as_str();
    if fs_type == "fuse" || fs_type.starts_with("fuse.") {
        let subtype = fs_type.strip_prefix("fuse.").unwrap_or("");
        return (!FUSE_FORWARDING_LOCKS.contains(&subtype))
            .then_some("FUSE keeps kernel locks on the host that takes them");
    }
    if fs_type == "nfs" || fs_type == "nfs4" {
        if mount.option("nolock").is_some() {
            return Some("it is mounted nolock, so locks are not sent to the server");
        }
        let local = matches!(
            (mount.option("local_lock"), lock),
            (Some("all"), _)
                | (Some("flock"), KernelLock::Flock)
                | (Some("posix"), KernelLock::Record)
        );
        return local.then_some("its local_lock= option keeps these locks on this host");
    }
    if matches!(fs_type, "cifs" | "smb3" | "smbfs") {
        return mount
            .option("nobrl")
            .map(|_| "it is mounted nobrl, so locks are not sent to the server");
    }
    None
}

/// How long this host may answer `fstat` on `file` from its attribute cache without asking
/// the server, where the mount options say so: NFS mounted `nocto` (without `noac`) trusts
/// its cache for up to `acregmax` (default 60 s). `None` where opening a file revalidates its
/// attributes (NFS's close-to-open default) or the bound is not visible from here (FUSE
/// filesystems set theirs per reply).
#[must_use]
pub fn attribute_cache(file: &File) -> Option<(Mount, Duration)> {
    if filesystem_type(file.as_fd())? != NFS_SUPER_MAGIC {
        return None;
    }
    let mount = mount_of(file.as_fd())?;
    let cache = nfs_attribute_cache(&mount)?;
    Some((mount, cache))
}

/// [`attribute_cache`] for a mount already read.
#[must_use]
pub fn nfs_attribute_cache(mount: &Mount) -> Option<Duration> {
    if mount.option("nocto").is_none() || mount.option("noac").is_some() {
        return None;
    }
    let seconds = |name| mount.option(name).and_then(|v| v.parse::<u64>().ok());
    let max = seconds("actimeo")
        .or_else(|| seconds("acregmax"))
        .unwrap_or(60);
    (max > 0).then(|| Duration::from_secs(max))
}

fn filesystem_type(file: BorrowedFd<'_>) -> Option<i64> {
    let stat = nix::sys::statfs::fstatfs(file).ok()?;
    #[allow(clippy::useless_conversion)] // the field's type differs between targets
    Some(i64::from(stat.filesystem_type().0))
}

/// The mount `file` lives on: its mount id from `/proc/self/fdinfo`, looked up in
/// `/proc/self/mountinfo`.
fn mount_of(file: BorrowedFd<'_>) -> Option<Mount> {
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    let id = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))?
        .trim()
        .to_owned();
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table
        .lines()
        .find(|l| l.split(' ').next() == Some(id.as_str()))
        .and_then(parse_mountinfo_line)
}

/// One line of `/proc/PID/mountinfo` (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS
/// [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS`, with spaces and the like octal-escaped.
#[must_use]
pub fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut fields = after.split(' ');
    let fs_type = fields.next()?;
    let source = fields.next()?;
    let super_options = fields.next().unwrap_or("");
    Some(Mount {
        mount_point: unescape(mount_point),
        fs_type: unescape(fs_type),
        source: unescape(source),
        super_options: unescape(super_options),
    })
}

/// Undoes mountinfo's `\NNN` octal escapes (for space, tab, newline and backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], escaped) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(line: &str) -> Mount {
        parse_mountinfo_line(line).unwrap()
    }

    #[test]
    fn mountinfo_lines_are_parsed_with_their_escapes() {
        let m = mount(
            "45 27 0:40 / /mnt/my\\040share rw,relatime shared:7 - fuse.sshfs me@h:/srv \
             rw,user_id=0,group_id=0",
        );
        assert_eq!(m.mount_point, "/mnt/my share");
        assert_eq!(m.fs_type, "fuse.sshfs");
        assert_eq!(m.source, "me@h:/srv");
        assert_eq!(m.option("user_id"), Some("0"));
        assert_eq!(m.option("allow_other"), None);
    }

    #[test]
    fn fuse_keeps_locks_local_unless_it_forwards_them() {
        for local in ["fuse", "fuse.sshfs", "fuse.s3fs", "fuse.rclone"] {
            let m = mount(&format!("1 1 0:1 / /m rw - {local} src rw"));
            assert!(judge_locks(&m, KernelLock::Flock).is_some(), "{local}");
        }
        for forwarding in ["fuse.glusterfs", "fuse.ceph-fuse", "fuseblk"] {
            let m = mount(&format!("1 1 0:1 / /m rw - {forwarding} src rw"));
            assert_eq!(judge_locks(&m, KernelLock::Flock), None, "{forwarding}");
        }
    }

    #[test]
    fn nfs_is_local_only_with_nolock_or_a_matching_local_lock() {
        let nfs = |options: &str| mount(&format!("1 1 0:1 / /m rw - nfs4 srv:/x {options}"));
        let with_nlm = nfs("rw,vers=4.2,hard,proto=tcp,local_lock=none,addr=10.0.0.1");
        assert_eq!(judge_locks(&with_nlm, KernelLock::Flock), None);
        assert_eq!(judge_locks(&with_nlm, KernelLock::Record), None);
        let nolock = nfs("rw,vers=3,nolock,addr=10.0.0.1");
        assert!(judge_locks(&nolock, KernelLock::Record).is_some());
        let flock_only = nfs("rw,vers=4.2,local_lock=flock");
        assert!(judge_locks(&flock_only, KernelLock::Flock).is_some());
        assert_eq!(judge_locks(&flock_only, KernelLock::Record), None);
        let posix_only = nfs("rw,local_lock=posix");
        assert_eq!(judge_locks(&posix_only, KernelLock::Flock), None);
        assert!(judge_locks(&posix_only, KernelLock::Record).is_some());
        assert!(judge_locks(&nfs("rw,local_lock=all"), KernelLock::Flock).is_some());
    }

    #[test]
    fn smb_is_local_only_with_nobrl() {
        let smb = |options: &str| mount(&format!("1 1 0:1 / /m rw - cifs //s/x {options}"));
        assert!(judge_locks(&smb("rw,vers=3.1.1,nobrl"), KernelLock::Flock).is_some());
        assert_eq!(judge_locks(&smb("rw,vers=3.1.1"), KernelLock::Flock), None);
    }

    #[test]
    fn an_nfs_attribute_cache_counts_only_without_close_to_open() {
        let nfs = |options: &str| mount(&format!("1 1 0:1 / /m rw - nfs srv:/x {options}"));
        assert_eq!(nfs_attribute_cache(&nfs("rw,acregmax=60")), None);
        assert_eq!(
            nfs_attribute_cache(&nfs("rw,nocto")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            nfs_attribute_cache(&nfs("rw,nocto,acregmin=3,acregmax=20")),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            nfs_attribute_cache(&nfs("rw,nocto,actimeo=5")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(nfs_attribute_cache(&nfs("rw,nocto,noac")), None);
    }

    #[test]
    fn the_nfs4_lease_is_read_from_the_mounts_own_stats() {
        let stats = "device proc mounted on /proc with fstype proc\n\
            device 10.0.0.1:/srv mounted on /mnt/a\\040b with fstype nfs4 statvers=1.1\n\
            \topts:\trw,vers=4.2\n\
            \tnfsv4:\tbm0=0xfdffbfff,acl=0x3,sessions,pnfs=not configured,lease_time=15,lease_expired=0\n\
            device 10.0.0.1:/srv mounted on /mnt/c with fstype nfs4 statvers=1.1\n\
            \tnfsv4:\tbm0=0xfdffbfff,acl=0x3,sessions,lease_time=90,lease_expired=0\n";
        assert_eq!(
            lease_in_mountstats(stats, "/mnt/a b"),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            lease_in_mountstats(stats, "/mnt/c"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(lease_in_mountstats(stats, "/mnt/d"), None);
        assert_eq!(lease_in_mountstats(stats, "/proc"), None);
    }

    #[test]
    fn this_hosts_own_files_are_not_host_local() {
        let file = File::open("/proc/self/mountinfo").unwrap();
        assert_eq!(host_local_locks(&file, KernelLock::Flock), None);
    }
}
