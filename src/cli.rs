//! The command line, defined once with clap; `man/` and `completions/` are generated from it
//! (see `tests/generated.rs`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use flockrun::duration::Ttl;
use flockrun::exit::CONFLICT_DEFAULT;

const ABOUT: &str = "Run a command while holding a lock, and release it when the command ends";

const LONG_ABOUT: &str = "Run a command while holding a lock, and release it when the command \
ends.\n\nflockrun speaks the lock protocols of util-linux flock(1) and of Python's filelock \
package, so shell scripts and Python programs can guard the same resource. Every message goes \
to stderr; stdout belongs to COMMAND.\n\n`flockrun --version` names the commit it was built \
from; with --verbose it also lists the lock kinds compiled in.";

const EXEC_EXAMPLES: &str = "Examples:\n  \
  flockrun exec /tmp/cache.lock -- ./rebuild-cache.sh\n  \
  flockrun exec -w 30 -E 0 deploy.lock -c 'make deploy && echo done'";

const READ_EXAMPLES: &str = "Examples:\n  \
  flockrun read data.rwlock -- ./report.sh\n  \
  flockrun read -w 10 data.rwlock -c 'sqlite3 data.db .dump > backup.sql'";

const WRITE_EXAMPLES: &str = "Examples:\n  \
  flockrun write data.rwlock -- ./import.sh\n  \
  flockrun write -n -E 0 data.rwlock -- ./compact.sh   # skip if anyone reads or writes\n  \
  flockrun write --soft /mnt/nfs/data.lock -- ./import.sh   # on a shared filesystem";

const STATUS_EXAMPLES: &str = "Examples:\n  \
  flockrun status /run/lock/backup.lock\n  \
  flockrun status --json cache.lock data.rwlock | jq '.locks[].holders'";

const STATUS_DETAILS: &str = "Exit status: 0 when every LOCK is free (a stale soft marker \
counts as free), 1 when at least one is held, 66 when one cannot be inspected.\n\n\
JSON (--json): one document, {\"locks\": [LOCK, ...]}, where each LOCK has:\n  \
path           absolute path\n  \
exists         true or false\n  \
kind           kernel, ofd, sqlite, soft, soft-lease, soft-rw, etcd, postgresql,\n                 \
redis, or null when absent\n  \
state          free, held or stale\n  \
mode           exclusive, shared, read, write, or null when free\n  \
holders        [{pid, command, user, since, flockrun, child_pid, child_command}]\n                 \
since is a UTC time such as 2026-11-23T19:00:01Z; child_pid and\n                 \
child_command name the COMMAND a flockrun runs\n  \
waiters        [{pid, command, mode}]; pid is null for OFD requests\n  \
marker         for soft locks {pid, host, start_token, verdict, note, mode, ttl,\n                 \
renewed_ago}, else null; verdict is held, stale, expired,\n                 \
malformed or foreign host; mode is the marker's contract\n                 \
(lease, exclusive, or null for a classic marker); ttl is a\n                 \
lease's TTL and renewed_ago the seconds since its last renewal\n  \
(etcd LOCKs: each holder and waiter is {pid, host, command,\n                 \
since, key, revision, lease}; redis LOCKs: {pid, host, command,\n                 \
since, key, ttl_left, flockrun, value}; soft-rw LOCKs: {pid, host,\n                 \
layout, role, token, heartbeat_ago, verdict})\n  \
soft_rw        for soft-rw LOCKs {layouts, generation}, else null\n  \
semaphore      for a semaphore (--slots) {slots, held, holders: [{slot, pid,\n                 \
host, command, user, since, flockrun, child_pid, child_command,\n                 \
verdict}]}, else null\n  \
ranges         OFD byte-range locks [{start, end, mode}]\n  \
warnings       [text] what could not be seen, and why\n\n\
Examples:\n  \
  flockrun status /run/lock/backup.lock\n  \
  flockrun status --json cache.lock data.rwlock | jq '.locks[].holders'";

const FLOCK_ABOUT: &str = "Take util-linux flock(1)'s command line, exit statuses and \
messages, so that scripts written for flock(1) run unchanged. This is what flockrun does when \
it is started through a link named flock (ln -s flockrun /usr/local/bin/flock); `flockrun \
flock ARGS` is the same without the link. flock -h lists flock(1)'s options.";

const FLOCK_DETAILS: &str = "Usage, as flock(1):\n  \
  flock [options] FILE|DIR COMMAND [ARG]...\n  \
  flock [options] FILE|DIR -c STRING\n  \
  flock [options] NUMBER\n  \
  flock [options] --fd NUMBER COMMAND [ARG]...\n  \
  flock [options] --fd NUMBER -c STRING\n\n\
Options: -s/--shared, -x/-e/--exclusive, -u/--unlock, -n/--nb/--nonblocking, \
-w/--timeout/--wait SECONDS, -E/--conflict-exit-code N, -o/--close, -c/--command STRING, \
-F/--no-fork, --fcntl, --start OFFSET, --length N (a byte range, implies --fcntl), --fd N, \
--verbose, -h/--help, -V/--version. Options end at the first word that is not one; a long \
option may be shortened while it stays unambiguous (--nonblock).\n\n\
Exit status, as flock(1): COMMAND's; 1 (or -E N) when the lock is busy or the wait timed \
out, silently unless --verbose; 64 usage error; 65 the lock call failed (a descriptor that \
is not open) or LOCK cannot be a lock (a FIFO); 66 LOCK cannot be opened; 69 COMMAND cannot \
be executed; 71 system error; 73 LOCK cannot be created; 128+N killed by signal N.\n\n\
Where it is stricter than flock(1): a symbolic link or a FIFO at LOCK is refused, a lock \
file deleted while waiting is waited for again, signals reach COMMAND, and a descriptor \
that is not a file or that was deleted is refused (README.md lists every difference).";

const TRY_EXAMPLES: &str = "Examples:\n  \
  */5 * * * * flockrun try /run/lock/backup.lock -- backup.sh\n  \
  flockrun try -q -E 0 job.lock -- ./job.sh   # busy is not an error";

/// `flockrun`: arguments in, a subcommand out.
#[derive(Debug, Parser)]
#[command(
    name = "flockrun",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wait for an exclusive lock on LOCK, run COMMAND, then release the lock
    #[command(after_help = EXEC_EXAMPLES)]
    Exec(ExecArgs),
    /// Run COMMAND under the lock only if LOCK is free; if it is busy, exit 75 at once
    #[command(after_help = TRY_EXAMPLES)]
    Try(TryArgs),
    /// Take a shared reader lock on LOCK (py-filelock's SQLite `ReadWriteLock`, or with --soft
    /// its `SoftReadWriteLock`) and run COMMAND; readers run together, a writer waits for them
    #[command(after_help = READ_EXAMPLES)]
    Read(ReadWriteArgs),
    /// Take the exclusive writer lock on LOCK (py-filelock's SQLite `ReadWriteLock`, or with
    /// --soft its `SoftReadWriteLock`) and run COMMAND; a waiting writer keeps new readers out
    #[command(after_help = WRITE_EXAMPLES)]
    Write(ReadWriteArgs),
    /// Show whether each LOCK is held, by whom and since when, and who waits; exit 0 when
    /// all are free, 1 when any is held, 66 when one cannot be inspected
    #[command(after_help = STATUS_EXAMPLES, after_long_help = STATUS_DETAILS)]
    Status(StatusArgs),
    /// Take util-linux flock(1)'s command line, exit statuses and messages (what flockrun
    /// does when started through a link named flock)
    #[command(
        disable_help_flag = true,
        long_about = FLOCK_ABOUT,
        after_long_help = FLOCK_DETAILS
    )]
    Flock(FlockArgs),
}

/// `flockrun flock`: everything after it is flock(1)'s command line.
#[derive(Debug, Args)]
pub struct FlockArgs {
    /// flock(1)'s options, then FILE|DIR COMMAND [ARG]..., FILE|DIR -c STRING, a descriptor
    /// NUMBER, or --fd NUMBER COMMAND [ARG]...
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..
    )]
    pub args: Vec<OsString>,
}

/// `flockrun status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON document (schema in the README and the man page)
    #[arg(long)]
    pub json: bool,

    /// Inspect LOCK as this kind instead of detecting it from the kernel's locks and the
    /// file's content
    #[arg(long, value_name = "KIND", value_parser = flockrun::kind::parse_inspectable)]
    pub kind: Option<&'static dyn flockrun::lock::Kind>,

    /// Also print the kernel's lock lines for each LOCK
    #[arg(short = 'v', long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Print nothing; only the exit status tells
    #[arg(short = 'q', long)]
    pub quiet: bool,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    /// The locks to inspect: lock files, etcd://HOST:PORT[,HOST:PORT...]/NAME (etcds:// for
    /// TLS), postgresql://[USER@]HOST[:PORT]/DBNAME/NAME, or `redis://HOST[:PORT][/DB]/NAME`
    #[arg(value_name = "LOCK", required = true)]
    pub locks: Vec<PathBuf>,
}

/// How long to wait: `-w` and `-n`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait at most SECONDS for the lock (a decimal fraction is allowed; 0 means a single
    /// attempt). Default: wait as long as it takes
    #[arg(short = 'w', long, visible_alias = "wait", value_name = "SECONDS",
          value_parser = parse_timeout)]
    pub timeout: Option<Duration>,

    /// Do not wait if the lock is busy (same as --timeout 0)
    #[arg(short = 'n', long, visible_alias = "nb", conflicts_with = "timeout")]
    pub nonblock: bool,
}

/// `flockrun read` and `flockrun write`.
#[derive(Debug, Args)]
pub struct ReadWriteArgs {
    #[command(flatten)]
    pub wait: WaitArgs,

    /// Use py-filelock's `SoftReadWriteLock` (marker files and a generation log beside LOCK)
    /// instead of SQLite, for filesystems whose locks do not reach every host (NFS, SMB,
    /// FUSE). A holder renews its records every TTL/3; one that stops is evicted after the TTL
    #[arg(long)]
    pub soft: bool,

    /// With --soft: the stale threshold in seconds, 0.1 or more, fractions allowed as
    /// py-filelock's `stale_threshold` [default: 90, py-filelock's]: a participant whose
    /// records stay unrenewed this long is evicted. Give every user of the lock the same one.
    /// For a postgresql:// LOCK: the lease in whole seconds, 3 or more [default: 10]
    #[arg(long, value_name = "SECONDS", value_parser = Ttl::parse)]
    pub ttl: Option<Ttl>,

    /// With --soft: the on-disk layout to take: v1 (py-filelock 3.27-3.32), v2 (4.0 and
    /// later), or both, v1 first, which keeps out Python peers of either age [default: both]
    #[arg(long, value_name = "LAYOUT", value_enum, requires = "soft")]
    pub layout: Option<flockrun::lock::SoftLayout>,

    /// Not for reader/writer locks: accepted only to be refused with a clear message
    #[arg(long, value_name = "N", hide = true, allow_hyphen_values = true)]
    pub slots: Option<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// `flockrun exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub wait: WaitArgs,

    #[command(flatten)]
    pub lock: KernelLockArgs,
}

/// `flockrun try`.
#[derive(Debug, Args)]
pub struct TryArgs {
    #[command(flatten)]
    pub lock: KernelLockArgs,
}

/// Options of the commands that take a kernel (flock or OFD) lock.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // one per flag
pub struct KernelLockArgs {
    /// Take a shared lock (any number of shared holders, no exclusive one), like flock -s
    #[arg(short = 's', long)]
    pub shared: bool,

    /// Use a Linux open-file-description lock (`F_OFD_SETLK`) instead of flock(2), like
    /// util-linux flock --fcntl. An exclusive one needs write permission on LOCK
    #[arg(long)]
    pub fcntl: bool,

    /// Use a marker-file lock (the soft-lock protocol of py-filelock) for filesystems where
    /// kernel locks do not work; a crashed holder's marker is reclaimed once its pid is
    /// provably gone
    #[arg(long, conflicts_with_all = ["shared", "fcntl", "no_fork"])]
    pub soft: bool,

    /// Do not pass the lock to COMMAND: only flockrun holds it, and COMMAND is killed if
    /// flockrun dies
    #[arg(short = 'o', long)]
    pub close: bool,

    /// Replace flockrun with COMMAND (exec without fork), so COMMAND itself holds the lock
    #[arg(short = 'F', long, conflicts_with = "close")]
    pub no_fork: bool,

    /// The lease's time to live in seconds: for an etcd:// or postgresql:// LOCK, whole
    /// seconds [default: 10; at least 3 for PostgreSQL]; for a redis:// LOCK, 1 or more with
    /// fractions allowed [default: 10], renewed every TTL/3;
    /// and with --soft, 0.1 or more with fractions allowed as py-filelock's `lease_duration`,
    /// where it makes the lock a soft lease (py-filelock's `SoftFileLease`) that a crashed
    /// holder's host cannot keep forever. flockrun renews a soft lease every TTL/3 and an etcd
    /// lease every TTL/4; if it dies, the lock frees itself after about TTL. Every user of a soft lease must give the same
    /// TTL
    #[arg(long, value_name = "SECONDS", value_parser = Ttl::parse)]
    pub ttl: Option<Ttl>,

    /// Make LOCK a semaphore of N slots (1 to 1024): at most N holders at once, and COMMAND
    /// learns which slot it holds from `FLOCKRUN_SLOT` (0 to N-1) and N from `FLOCKRUN_SLOTS`.
    /// Kernel and --fcntl locks: slot i is byte i of LOCK (an OFD lock); --soft: one marker
    /// LOCK.slot-i per slot; etcd: the N oldest keys under NAME hold. Every user of a
    /// semaphore must give the same N
    #[arg(long, value_name = "N", value_parser = parse_slots, allow_hyphen_values = true)]
    pub slots: Option<u16>,

    /// If a process on this host holds LOCK (a slot of it, with --slots: the one held
    /// longest), stop it (SIGTERM, SIGKILL after --kill-after) and take the lock once it has
    /// let go. The holder is the one `flockrun status` names; a holder on another host or one
    /// this user may not signal is not stopped (exit 75)
    #[arg(long, conflicts_with = "shared")]
    pub replace: bool,

    /// Refuse (exit 65) instead of warning when LOCK is on a filesystem that keeps kernel
    /// locks to this host (FUSE such as sshfs, NFS mounted nolock or with `local_lock`, SMB
    /// mounted nobrl), where a process on another host could hold the same kernel lock at
    /// the same time. Applies to the kernel and --fcntl kinds
    #[arg(long, env = "FLOCKRUN_REFUSE_HOST_LOCAL",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub refuse_host_local: bool,

    #[command(flatten)]
    pub run: RunArgs,

    // Last: its help heading applies to what follows it.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// How to reach an etcd cluster, named as etcdctl names them; the `ETCDCTL_*` variables
/// fill in what is not given.
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "etcd and Redis options (etcd://, redis:// and their TLS forms)")]
pub struct EtcdArgs {
    #[arg(
        long,
        value_name = "FILE",
        help = "TLS: the CA bundle (PEM) that signs the servers' \
          certificates [default: etcd: ETCDCTL_CACERT; else the system's CAs]"
    )]
    pub cacert: Option<PathBuf>,

    #[arg(
        long,
        value_name = "FILE",
        help = "TLS: the client certificate (PEM) for a server \
          that requires one, with --key [default: etcd: ETCDCTL_CERT]"
    )]
    pub cert: Option<PathBuf>,

    #[arg(
        long,
        value_name = "FILE",
        help = "TLS: the client certificate's private key (PEM) \
          [default: etcd: ETCDCTL_KEY]"
    )]
    pub key: Option<PathBuf>,

    #[arg(
        long,
        value_name = "NAME[:PASSWORD]",
        help = "The user to authenticate as: an etcd user \
          [default: ETCDCTL_USER] or a Redis ACL user (a user in LOCK goes first). \
          NAME:PASSWORD works as with etcdctl, but shows the password in the process list: \
          prefer --password-file, ETCDCTL_PASSWORD or REDISCLI_AUTH"
    )]
    pub user: Option<String>,

    #[arg(
        long,
        value_name = "FILE",
        help = "The user's password: the first line of FILE \
          [default: etcd: ETCDCTL_PASSWORD; Redis: a password in LOCK, else REDISCLI_AUTH]"
    )]
    pub password_file: Option<PathBuf>,
}

impl EtcdArgs {
    /// In the library's terms.
    #[must_use]
    pub fn access(&self) -> flockrun::kind::etcd::Access {
        flockrun::kind::etcd::Access {
            tls: flockrun::kind::etcd::TlsFiles {
                cacert: self.cacert.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
            user: self.user.clone(),
            password_file: self.password_file.clone(),
        }
    }
}

/// Options every locking command has, and LOCK and COMMAND.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // one per flag
pub struct RunArgs {
    /// Exit status when the lock is busy or the wait times out (0-255)
    #[arg(short = 'E', long, value_name = "N", default_value_t = CONFLICT_DEFAULT)]
    pub conflict_exit_code: u8,

    /// Run STRING with $SHELL -c (/bin/sh -c when SHELL is unset or empty)
    #[arg(
        short = 'c',
        long = "command",
        value_name = "STRING",
        conflicts_with = "command"
    )]
    pub shell_command: Option<OsString>,

    /// Permission bits (octal) of a lock file flockrun creates [default: 0666 & ~umask]
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,

    /// Say on stderr how long the wait took and who held the lock meanwhile
    #[arg(short = 'v', long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// No message when the lock is busy or the wait timed out
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Stop COMMAND and everything it started once it has run this long (SIGTERM, then SIGKILL
    /// after --kill-after), release the lock, and exit 124. DURATION is seconds, or a number
    /// with s, m, h or d as timeout(1) takes it (90, 1.5, 30s, 10m, 2h, 1d); 0 means no limit.
    /// The wait for the lock does not count
    #[arg(long, value_name = "DURATION", value_parser = flockrun::duration::parse_span,
          allow_hyphen_values = true)]
    pub run_limit: Option<Duration>,

    /// With --run-limit or --replace: how long after SIGTERM to send SIGKILL [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = flockrun::duration::parse_span,
          allow_hyphen_values = true)]
    pub kill_after: Option<Duration>,

    /// exec and try: lock the descriptor N this process inherited (as `exec 9>LOCK` in a
    /// shell opens it) instead of a LOCK path, kernel and --fcntl kinds. Without COMMAND,
    /// flockrun locks it and exits, and the caller keeps the lock; with COMMAND, the lock
    /// stays with the caller's descriptor after COMMAND ends
    #[arg(long, value_name = "N", value_parser = parse_fd)]
    pub fd: Option<i32>,

    #[arg(
        value_name = "LOCK",
        required_unless_present = "fd",
        help = "The lock file (created if missing; a directory can be locked too), or \
          etcd://HOST:PORT[,HOST:PORT...]/NAME for a lock shared across machines through etcd \
          (exec and try; etcds:// over TLS; etcd:///NAME takes the members from \
          ETCDCTL_ENDPOINTS), or postgresql://[USER[:PASSWORD]@]HOST[:PORT][,...]/DBNAME/NAME \
          for a PostgreSQL advisory lock (postgresql:///NAME takes the server from the PG* \
          variables, as psql does), or redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]/NAME for a \
          lease in the key flockrun:NAME on Redis or Valkey (exec and try; rediss:// over \
          TLS; unix:///PATH/redis.sock?name=NAME[&db=N] through a Unix socket)"
    )]
    pub lock: Option<PathBuf>,

    /// The command to run and its arguments, passed on byte for byte
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required_unless_present_any = ["shell_command", "fd"]
    )]
    pub command: Vec<OsString>,
}

impl Cli {
    /// The plainest and most frequent command line, `exec|try LOCK -- COMMAND [ARG]...` with
    /// no option, taken apart without clap: building even one subcommand's definition costs
    /// more than the rest of an uncontended run. What it returns is what clap's parse of the
    /// same words gives (a test checks that); `None` for anything else.
    #[must_use]
    pub fn plain_exec_or_try(args: &[OsString]) -> Option<Cli> {
        let [_, verb, lock, dashes, command @ ..] = args else {
            return None;
        };
        let lock_bytes = std::os::unix::ffi::OsStrExt::as_bytes(lock.as_os_str());
        if dashes != "--"
            || command.is_empty()
            || lock_bytes.is_empty()
            || lock_bytes[0] == b'-'
            // clap reads this variable for --refuse-host-local; let it.
            || std::env::var_os("FLOCKRUN_REFUSE_HOST_LOCAL").is_some()
        {
            return None;
        }
        let lock = KernelLockArgs {
            shared: false,
            fcntl: false,
            soft: false,
            close: false,
            no_fork: false,
            ttl: None,
            slots: None,
            replace: false,
            refuse_host_local: false,
            etcd: EtcdArgs::default(),
            run: RunArgs {
                conflict_exit_code: CONFLICT_DEFAULT,
                shell_command: None,
                mode: None,
                verbose: false,
                quiet: false,
                run_limit: None,
                kill_after: None,
                fd: None,
                lock: Some(PathBuf::from(lock)),
                command: command.to_vec(),
            },
        };
        let command = match verb.to_str()? {
            "exec" => Command::Exec(ExecArgs {
                wait: WaitArgs {
                    timeout: None,
                    nonblock: false,
                },
                lock,
            }),
            "try" => Command::Try(TryArgs { lock }),
            _ => return None,
        };
        Some(Cli { command })
    }
}

impl WaitArgs {
    /// The deadline these options ask for.
    #[must_use]
    pub fn deadline(&self) -> flockrun::wait::Deadline {
        use flockrun::wait::Deadline;
        match (self.nonblock, self.timeout) {
            (true, _) => Deadline::after(Duration::ZERO),
            (false, Some(limit)) => Deadline::after(limit),
            (false, None) => Deadline::forever(),
        }
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    flockrun::duration::parse_seconds(text)
}

fn parse_slots(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|n| (1..=flockrun::lock::MAX_SLOTS).contains(n) && !text.starts_with('+'))
        .ok_or_else(|| {
            format!(
                "expected a number of slots from 1 to {}",
                flockrun::lock::MAX_SLOTS
            )
        })
}

fn parse_fd(text: &str) -> Result<i32, String> {
    text.parse::<i32>()
        .ok()
        .filter(|n| *n >= 0 && !text.starts_with('+'))
        .ok_or_else(|| "expected a descriptor number such as 9".to_owned())
}

impl RunArgs {
    /// With `--fd` there is no LOCK: a word clap took for LOCK is COMMAND's first.
    pub fn settle_fd_mode(&mut self) {
        if self.fd.is_some()
            && let Some(first) = self.lock.take()
        {
            self.command.insert(0, first.into_os_string());
        }
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o777 && !text.starts_with('+'))
        .ok_or_else(|| "expected octal permission bits such as 644 or 0660".to_owned())?;
    if mode & 0o400 == 0 {
        return Err("the mode must let the owner read the lock file (include 0400)".to_owned());
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_plain_command_line_parses_as_clap_parses_it() {
        let words = |list: &[&str]| -> Vec<OsString> { list.iter().map(OsString::from).collect() };
        for plain in [
            &["flockrun", "exec", "a.lock", "--", "true"][..],
            &[
                "flockrun",
                "try",
                "/run/lock/x",
                "--",
                "sh",
                "-c",
                "echo -n hi",
                "--",
            ],
            &["flockrun", "exec", "help", "--", "-v"],
        ] {
            let args = words(plain);
            let fast = Cli::plain_exec_or_try(&args).expect("plain");
            let full = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{plain:?}");
        }
        for other in [
            &["flockrun", "exec", "-n", "a.lock", "--", "true"][..],
            &["flockrun", "exec", "a.lock", "true"],
            &["flockrun", "exec", "a.lock", "--"],
            &["flockrun", "exec", "-", "--", "true"],
            &["flockrun", "read", "a.lock", "--", "true"],
            &["flockrun", "exec", "", "--", "true"],
        ] {
            assert!(Cli::plain_exec_or_try(&words(other)).is_none(), "{other:?}");
        }
    }

    #[test]
    fn modes_are_octal_and_readable_by_the_owner() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0600"), Ok(0o600));
        for bad in ["", "8", "1777", "0200", "+644", "rw-r--r--", "-1"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }
}
