//! The shared-filesystem test bed: two simulated hosts, A and B, sharing one directory, the
//! way two NFS clients share an export. Each host has its own FUSE mount of one backing
//! directory (one `bindfs` daemon per host), so each has its own kernel caches and its own
//! kernel lock table, and `RENAME_EXCHANGE` is refused as on NFS; and its own UTS, PID,
//! mount, IPC and time namespaces, so it has its own host name, its own pids and monotonic
//! clock (B's runs 1,000,000 s ahead of A's unless a test says otherwise). Inside either
//! host the shared directory is `ROOT/shared`; from the test, `ROOT/A` and `ROOT/B` are the
//! two hosts' views and `ROOT/backing` is the file server's disk.
//!
//! What it can do to a host: crash it whole (every process of it dies at once), boot it
//! again, hang its file server (SIGSTOP the daemon: calls block until `thaw`), or cut it
//! (SIGKILL the daemon: calls fail with ENOTCONN). What it does not simulate: a real
//! network, NFS's adaptive attribute cache, a wrong wall clock (`CLOCK_REALTIME` has no
//! namespace), separate network stacks.
//!
//! Needs root, /dev/fuse, `bindfs` and `fusermount3` (Debian: bindfs, fuse3; `.ci/run`
//! installs them). Without them a bed test fails and says what is missing: CI must run them.
//! Everything is torn down when the `Bed` drops, also when the test panics; a bed left by a
//! test binary that was killed is torn down by the next `Bed::up`.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{FLOCKRUN, Holder, PATIENCE, on_path, signal, wait_until};

/// The FUSE cache settings both hosts mount with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// No caching: every change is visible to the other host at once.
    Strict,
    /// libfuse's defaults: names and attributes cached for 1 s.
    Default,
    /// Names, attributes and missing names cached for 3 s, like NFS's `acregmin=3`.
    Nfs,
}

impl Cache {
    fn options(self) -> &'static [&'static str] {
        match self {
            Cache::Strict => &[
                "-o",
                "attr_timeout=0,entry_timeout=0,negative_timeout=0,direct_io",
            ],
            Cache::Default => &[],
            Cache::Nfs => &["-o", "attr_timeout=3,entry_timeout=3,negative_timeout=3"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    A,
    B,
}

impl Host {
    fn index(self) -> usize {
        match self {
            Host::A => 0,
            Host::B => 1,
        }
    }

    fn letter(self) -> &'static str {
        match self {
            Host::A => "A",
            Host::B => "B",
        }
    }

    fn other(self) -> Host {
        match self {
            Host::A => Host::B,
            Host::B => Host::A,
        }
    }

    /// The host name inside it.
    pub fn name(self) -> &'static str {
        match self {
            Host::A => "host-a",
            Host::B => "host-b",
        }
    }
}

/// A host's init: pid 1 of its namespaces, seen from here.
struct Init {
    unshare: Child,
    pid: i32,
}

pub struct Bed {
    root: PathBuf,
    daemons: [Option<Child>; 2],
    inits: [Option<Init>; 2],
    offsets: [i64; 2],
}

/// What every host's pid 1 runs: lay out the mounts, say ready, then reap orphans until
/// killed (a zombie nobody reaps would look alive to a same-host liveness check).
const INIT_SCRIPT: &str = r#"
set -e
root=$1 me=$2 other=$3 name=$4
hostname "$name"
mount --bind "$root/$me" "$root/shared"
mount -t tmpfs -o ro,size=4k,mode=0555 bed-hidden "$root/$other"
mount -t tmpfs -o ro,size=4k,mode=0555 bed-hidden "$root/backing"
echo ready
exec >/dev/null 2>&1
trap 'exit 0' TERM
while :; do sleep 3600 & wait $! || true; done
"#;

fn beds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("beds")
}

/// Fails the test (never skips it) when the bed cannot be set up here.
fn require_tools() {
    if nix::unistd::geteuid().is_root() {
        crate::harness::install_missing(&[("bindfs", "bindfs"), ("fusermount3", "fuse3")]);
    }
    let missing: Vec<&str> = [
        (nix::unistd::geteuid().is_root(), "root"),
        (Path::new("/dev/fuse").exists(), "/dev/fuse"),
        (on_path("bindfs"), "bindfs (Debian package bindfs)"),
        (on_path("fusermount3"), "fusermount3 (Debian package fuse3)"),
        (
            on_path("unshare") && on_path("nsenter"),
            "unshare and nsenter (util-linux)",
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| what)
    .collect();
    assert!(
        missing.is_empty(),
        "the shared-filesystem test bed needs {}; .ci/run installs the packages, and the \
         tests must run as root",
        missing.join(", ")
    );
}

/// Whether `point` is a mount point now, from mountinfo (never a `stat`: a frozen FUSE mount
/// would hang it).
fn is_mounted(point: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let point = point.to_string_lossy();
    info.lines()
        .any(|line| line.split_whitespace().nth(4) == Some(point.as_ref()))
}

/// Mount points at or under `root`, deepest first.
fn mounts_under(root: &Path) -> Vec<String> {
    let prefix = root.to_string_lossy().into_owned();
    let mut points: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4).map(str::to_owned))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points
}

/// The start time of `pid` in clock ticks, which with the pid names one process.
fn start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn kill_pid_file(file: &Path, signal: Signal) {
    if let Some(pid) = fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// Tears down beds whose test process is gone (a test binary killed before its `Drop`).
fn reap_stale_beds() {
    let Ok(entries) = fs::read_dir(beds_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let root = entry.path();
        let owner = fs::read_to_string(root.join("owner")).unwrap_or_default();
        let mut fields = owner.split_whitespace();
        let pid: Option<i32> = fields.next().and_then(|p| p.parse().ok());
        let ticks: Option<u64> = fields.next().and_then(|t| t.parse().ok());
        let alive = pid.is_some_and(|pid| start_ticks(pid) == ticks);
        // A bed whose owner has not written its name yet is being set up by a test that
        // runs now (tests run in parallel): only one that stayed nameless for a minute is
        // stale.
        let being_born = pid.is_none()
            && fs::metadata(&root)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(60));
        if !alive && !being_born {
            for host in ["A", "B"] {
                kill_pid_file(&root.join(format!("{host}.init.pid")), Signal::SIGKILL);
                kill_pid_file(&root.join(format!("{host}.fs.pid")), Signal::SIGCONT);
            }
            for point in mounts_under(&root) {
                let _ = Command::new("umount").arg("-l").arg(&point).status();
            }
            for host in ["A", "B"] {
                kill_pid_file(&root.join(format!("{host}.fs.pid")), Signal::SIGKILL);
            }
            let _ = fs::remove_dir_all(&root);
        }
    }
}

impl Bed {
    /// Two hosts sharing a fresh directory, both mounted with `cache`.
    pub fn up(cache: Cache) -> Bed {
        Bed::up_with(cache, [0, 1_000_000])
    }

    /// As `up`, with each host's monotonic and boot clocks set `offsets` seconds ahead.
    pub fn up_with(cache: Cache, offsets: [i64; 2]) -> Bed {
        require_tools();
        reap_stale_beds();
        fs::create_dir_all(beds_dir()).unwrap();
        let root = tempfile::Builder::new()
            .prefix("bed-")
            .tempdir_in(beds_dir())
            .unwrap()
            .keep();
        let me = std::process::id().cast_signed();
        fs::write(
            root.join("owner"),
            format!("{me} {}", start_ticks(me).unwrap_or(0)),
        )
        .unwrap();
        for dir in ["backing", "A", "B", "shared"] {
            fs::create_dir(root.join(dir)).unwrap();
        }
        // Lock files and markers are created by every host's processes: let anyone write.
        fs::set_permissions(
            root.join("backing"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        let mut bed = Bed {
            root,
            daemons: [None, None],
            inits: [None, None],
            offsets,
        };
        for host in [Host::A, Host::B] {
            bed.start_daemon(host, cache);
        }
        for host in [Host::A, Host::B] {
            bed.boot(host);
        }
        bed
    }

    fn start_daemon(&mut self, host: Host, cache: Cache) {
        let point = self.root.join(host.letter());
        let log = fs::File::create(self.root.join(format!("{}.fs.log", host.letter()))).unwrap();
        let mut command = Command::new("bindfs");
        command
            .arg("-f")
            .args(cache.options())
            .args(["-o", &format!("fsname=flockrun-bed-{}", host.letter())])
            .arg(self.root.join("backing"))
            .arg(&point)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Its own process group, so a terminal's signals to the test never reach it.
        command.process_group(0);
        let mut daemon = command.spawn().expect("start bindfs");
        fs::write(
            self.root.join(format!("{}.fs.pid", host.letter())),
            daemon.id().to_string(),
        )
        .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !is_mounted(&point) {
            if let Ok(Some(status)) = daemon.try_wait() {
                let log = fs::read_to_string(self.root.join(format!("{}.fs.log", host.letter())));
                panic!(
                    "bindfs for host {} exited ({status}): {log:?}",
                    host.letter()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bindfs for host {} did not mount",
                host.letter()
            );
            thread::sleep(Duration::from_millis(5));
        }
        self.daemons[host.index()] = Some(daemon);
    }

    /// Starts `host` (again, after a crash): fresh namespaces over the same mount.
    pub fn boot(&mut self, host: Host) {
        assert!(self.inits[host.index()].is_none(), "host {host:?} is up");
        let offset = self.offsets[host.index()].to_string();
        let mut unshare = Command::new("unshare")
            .args([
                "--uts",
                "--pid",
                "--mount",
                "--ipc",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                "--time",
                "--monotonic",
                &offset,
                "--boottime",
                &offset,
                "bash",
                "-c",
                INIT_SCRIPT,
                "bed-init",
            ])
            .arg(&self.root)
            .args([host.letter(), host.other().letter(), host.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                fs::File::create(self.root.join(format!("{}.init.log", host.letter()))).unwrap(),
            )
            .spawn()
            .expect("start a host with unshare");
        let stdout = unshare.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(PATIENCE).unwrap_or_default();
        assert_eq!(line.trim(), "ready", "host {host:?} did not start");
        let outer = i32::try_from(unshare.id()).unwrap();
        let pid: i32 = wait_until("the host's init", Instant::now() + PATIENCE, || {
            fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        fs::write(
            self.root.join(format!("{}.init.pid", host.letter())),
            pid.to_string(),
        )
        .unwrap();
        self.inits[host.index()] = Some(Init { unshare, pid });
    }

    /// Every process of `host` dies at once, as in a power cut; its files stay.
    pub fn crash(&mut self, host: Host) {
        let Some(mut init) = self.inits[host.index()].take() else {
            return;
        };
        signal(init.pid, Signal::SIGKILL);
        let _ = init.unshare.wait();
        let _ = fs::remove_file(self.root.join(format!("{}.init.pid", host.letter())));
    }

    fn daemon_pid(&self, host: Host) -> i32 {
        let daemon = self.daemons[host.index()].as_ref().expect("daemon running");
        i32::try_from(daemon.id()).unwrap()
    }

    /// `host`'s file server hangs: its filesystem calls block until `thaw`.
    pub fn freeze(&self, host: Host) {
        signal(self.daemon_pid(host), Signal::SIGSTOP);
    }

    pub fn thaw(&self, host: Host) {
        signal(self.daemon_pid(host), Signal::SIGCONT);
    }

    /// `host`'s file server is gone for good: its calls fail with ENOTCONN.
    pub fn cut(&mut self, host: Host) {
        if let Some(mut daemon) = self.daemons[host.index()].take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }

    /// The shared directory, as a path that means the same inside both hosts.
    pub fn shared(&self) -> PathBuf {
        self.root.join("shared")
    }

    /// `host`'s view of the shared directory, from the test.
    pub fn view(&self, host: Host) -> PathBuf {
        self.root.join(host.letter())
    }

    /// The file server's disk, from the test.
    pub fn backing(&self) -> PathBuf {
        self.root.join("backing")
    }

    /// `program args…` to run inside `host`, in the shared directory.
    pub fn command(&self, host: Host, program: impl AsRef<OsStr>) -> Command {
        let init = self.inits[host.index()]
            .as_ref()
            .unwrap_or_else(|| panic!("host {host:?} is down"));
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &init.pid.to_string()])
            .args(["--uts", "--pid", "--mount", "--ipc", "--time", "--"])
            // cd after entering: the shared directory is a different mount in each host.
            .args(["/bin/sh", "-c", "cd \"$0\" && exec \"$@\""])
            .arg(self.shared())
            .arg(program);
        command
    }

    /// `flockrun args…` inside `host`.
    pub fn flockrun(&self, host: Host, args: &[&str]) -> Command {
        let mut command = self.command(host, FLOCKRUN);
        command.args(args);
        command
    }

    /// A holder inside `host`: `program args…`, ready once it prints `ready_line`.
    pub fn hold(
        &self,
        host: Host,
        program: impl AsRef<OsStr>,
        args: &[&OsStr],
        ready_line: &str,
    ) -> Holder {
        let command = self.command(host, program);
        let program = command.get_program().to_owned();
        let mut all: Vec<&OsStr> = command.get_args().collect();
        all.extend_from_slice(args);
        Holder::start(program, &all, ready_line)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for host in [Host::A, Host::B] {
            self.crash(host);
        }
        for daemon in self.daemons.iter().flatten() {
            // A frozen daemon cannot unmount.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).unwrap_or(0)),
                Signal::SIGCONT,
            );
        }
        for point in mounts_under(&self.root) {
            let _ = Command::new("umount").arg("-l").arg(&point).status();
        }
        for daemon in self.daemons.iter_mut().flatten() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}
