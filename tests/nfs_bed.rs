//! The real-NFS test bed: an NFS server S and two NFS clients A and B, each a virtual
//! machine running Debian's own kernel under qemu with this host's root filesystem as its
//! own (so flockrun, python3 with the py-filelock venvs and flock(1) run in them unchanged).
//! `tests/helpers/nfsbed.py` builds and drives it; this module gives the tests one bed at a
//! time.
//!
//! One bed serves the whole test run: bringing one up costs 20–40 s and about 1.5 GB of
//! memory under software emulation. A test takes it with [`NfsBed::take`], which holds an
//! exclusive flock for the test's lifetime (tests on the bed run one after another, in any
//! test process), brings it up if there is none, and otherwise undoes what the last test
//! did to it (`settle`: heal, thaw, boot what crashed, kill leftovers, empty the export, wait
//! out the server's grace period). The bed goes down by itself once no test has used it for
//! two minutes (its watchdog), so a finished `cargo nextest run` leaves nothing running.
//!
//! The export is mounted on each client several times, with other options
//! ([`Mount`]); the same paths on S show the server's disk. Needs root, /dev/net/tun and the
//! Debian packages `nfsbed.py setup` installs; without them a test fails, never skips.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{FLOCKRUN, HOLD_SH, Holder, is_root};

/// Upper bound for what should happen promptly on the bed: every step is slower under
/// software emulation (a guest's python3 starts in 0.3–0.5 s).
pub const BED_PATIENCE: Duration = Duration::from_secs(90);

/// How long the server's NFSv4 lease and grace periods last on the bed, in seconds.
pub const LEASE: u32 = 15;

/// A machine of the bed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// The NFS server; commands on it see the exported directory itself.
    S,
    A,
    B,
}

impl Machine {
    fn letter(self) -> &'static str {
        match self {
            Machine::S => "S",
            Machine::A => "A",
            Machine::B => "B",
        }
    }

    /// The host name inside it.
    pub fn name(self) -> &'static str {
        match self {
            Machine::S => "nfs-server",
            Machine::A => "client-a",
            Machine::B => "client-b",
        }
    }
}

/// One of the export's mounts on the clients; each is the same directory on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// NFSv4.2, default options.
    V4,
    /// NFSv3, default options: locks through lockd (NLM).
    V3,
    /// NFSv3 `nolock` (the kernel shows `local_lock=all`).
    V3NoLock,
    V3LocalAll,
    V3LocalFlock,
    V3LocalPosix,
}

impl Mount {
    fn dir(self) -> &'static str {
        match self {
            Mount::V4 => "v4",
            Mount::V3 => "v3",
            Mount::V3NoLock => "v3-nolock",
            Mount::V3LocalAll => "v3-local-all",
            Mount::V3LocalFlock => "v3-local-flock",
            Mount::V3LocalPosix => "v3-local-posix",
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/nfsbed.py")
}

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// The bed, held by one test at a time.
pub struct NfsBed {
    dir: PathBuf,
    _guard: fs::File,
}

impl NfsBed {
    /// Waits for the bed to be free, brings it up or settles it, and holds it until dropped.
    pub fn take() -> NfsBed {
        assert!(
            is_root() && Path::new("/dev/net/tun").exists(),
            "the real-NFS bed needs root and /dev/net/tun (CI runs as root)"
        );
        fs::create_dir_all(base()).unwrap();
        let lock_path = base().join("nfsbed.lock");
        let guard = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock_path)
            .unwrap();
        guard.lock().unwrap();
        let dir = base().join("nfsbed");
        let bed = NfsBed { dir, _guard: guard };
        let info = bed.tool(&["info"]).output().unwrap();
        let up = String::from_utf8_lossy(&info.stdout).contains("\"up\": true");
        let verb = if up { "settle" } else { "up" };
        let mut command = bed.tool(&[verb]);
        if !up {
            command
                .args(["--lease", &LEASE.to_string(), "--grace", &LEASE.to_string()])
                .args(["--idle", "120", "--idle-lock"])
                .arg(&lock_path);
        }
        let out = command.stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "nfsbed.py {verb} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bed
    }

    fn tool(&self, args: &[&str]) -> Command {
        let mut command = Command::new("python3");
        command
            .arg(script())
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..]);
        command
    }

    fn verb(&self, verb: &str, machine: Machine) {
        let out = self
            .tool(&[verb, machine.letter()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nfsbed.py {verb} {machine:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Powers `machine` off at once: no unmount, no unlock.
    pub fn crash(&self, machine: Machine) {
        self.verb("crash", machine);
    }

    /// Boots a crashed machine again (a client mounts the export again; S waits out its
    /// grace period).
    pub fn boot(&self, machine: Machine) {
        self.verb("boot", machine);
    }

    /// Cuts `machine`'s NFS link: packets vanish both ways; its commands still run.
    pub fn partition(&self, machine: Machine) {
        self.verb("partition", machine);
    }

    pub fn heal(&self, machine: Machine) {
        self.verb("heal", machine);
    }

    /// Stops `machine` whole (SIGSTOP of its qemu): a hung host.
    pub fn freeze(&self, machine: Machine) {
        self.verb("freeze", machine);
    }

    pub fn thaw(&self, machine: Machine) {
        self.verb("thaw", machine);
    }

    /// Restarts the NFS service on S: it forgets every client's state and starts a grace
    /// period in which clients reclaim their locks.
    pub fn restart_nfsd(&self) {
        let out = self.tool(&["restart-nfsd"]).output().unwrap();
        assert!(
            out.status.success(),
            "restart-nfsd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until the server's grace period (after it started or restarted) is over.
    pub fn wait_grace(&self) {
        let out = self.tool(&["wait-grace"]).output().unwrap();
        assert!(out.status.success(), "wait-grace: {out:?}");
    }

    /// Expires `client`'s state on the server, as an administrator can (`expire` in
    /// `/proc/fs/nfsd/clients/*/ctl`): the server drops its locks at once.
    pub fn expire_client(&self, client: Machine) {
        let address = match client {
            Machine::A => "10.50.0.2:",
            Machine::B => "10.50.0.3:",
            Machine::S => panic!("the server is no client"),
        };
        let expired = self.sh(
            Machine::S,
            &format!(
                "for c in /proc/fs/nfsd/clients/*; do if grep -q '\"{address}' $c/info; then \
                 echo expire > $c/ctl && echo $c; fi; done"
            ),
        );
        assert!(
            !expired.is_empty(),
            "no NFSv4 client state of {client:?} on S"
        );
    }

    /// A fresh directory on the export, named after `test`, as the clients see it through
    /// `mount` (and S sees the same path on its disk).
    pub fn fresh_dir(&self, mount: Mount, test: &str) -> PathBuf {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let dir = self
            .dir
            .join("mnt")
            .join(mount.dir())
            .join(format!("{test}-{stamp}"));
        let out = self.output(Machine::S, "mkdir", &[dir.as_os_str()]);
        assert!(out.status.success(), "mkdir on S: {out:?}");
        dir
    }

    /// `program args…` on `machine`, started in `/`; its stdin is this process's (pass
    /// `Stdio::null()` or a pipe).
    pub fn command(&self, machine: Machine, program: impl AsRef<OsStr>) -> Command {
        let mut command = self.tool(&["run", machine.letter(), "-C", "/", "--"]);
        command.arg(program);
        command
    }

    /// Runs `program args…` on `machine` to its end, with no stdin.
    pub fn output(&self, machine: Machine, program: impl AsRef<OsStr>, args: &[&OsStr]) -> Output {
        let mut command = self.tool(&["run", machine.letter(), "-n", "-C", "/", "--"]);
        let mut child = command
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + BED_PATIENCE;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{command:?} did not finish within {BED_PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// `sh -c SCRIPT` on `machine` to its end; its stdout, trimmed. Fails the test when it
    /// fails.
    pub fn sh(&self, machine: Machine, script: &str) -> String {
        let out = self.output(machine, "sh", &[OsStr::new("-c"), OsStr::new(script)]);
        assert!(
            out.status.success(),
            "{script} on {machine:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `flockrun args…` on `machine` to its end.
    pub fn flockrun(&self, machine: Machine, args: &[&str]) -> Output {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.output(machine, FLOCKRUN, &args)
    }

    /// `program args…` on `machine`, ready once it prints `ready_line`; released by closing
    /// its stdin, killed (on the machine too) when dropped after that.
    pub fn hold(
        &self,
        machine: Machine,
        program: impl AsRef<OsStr>,
        args: &[&OsStr],
        ready_line: &str,
    ) -> Holder {
        let command = self.command(machine, program);
        let mut all: Vec<&OsStr> = command.get_args().collect();
        all.extend_from_slice(args);
        Holder::start_within(command.get_program(), &all, ready_line, BED_PATIENCE)
    }

    /// `flockrun ARGS -- sh -c HOLD_SH` on `machine`, once it holds.
    pub fn hold_flockrun(&self, machine: Machine, args: &[&str]) -> Holder {
        let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        all.extend(["--", "sh", "-c", HOLD_SH].map(OsStr::new));
        self.hold(machine, FLOCKRUN, &all, "ready")
    }

    /// The wall-clock time on `machine`, in seconds (the bed sets every machine's clock from
    /// this host's, so they agree within milliseconds).
    pub fn clock(&self, machine: Machine) -> f64 {
        self.sh(machine, "date +%s.%N").parse().unwrap()
    }
}

impl Drop for NfsBed {
    /// Marks the bed as used just now (for its idle watchdog); the lock goes with the file.
    fn drop(&mut self) {
        let lock_path = base().join("nfsbed.lock");
        let _ = fs::File::options()
            .append(true)
            .open(&lock_path)
            .and_then(|f| f.set_modified(SystemTime::now()));
    }
}
