//! Test harness: real processes, real locks. A holder's command prints `ready` once it runs
//! under the lock and holds until its stdin closes; a waiter is known to be blocked when its
//! pid shows on a `->` line of `/proc/locks`. Deadlines here are upper bounds for failure,
//! never sleeps.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Upper bound for anything that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub const FLOCKRUN: &str = env!("CARGO_BIN_EXE_flockrun");

/// py-filelock versions the interop tests run against.
pub const PY_FILELOCK_VERSIONS: [&str; 2] = ["3.28.0", "4.2.11"];

/// An `assert_cmd` command for the flockrun binary, with a generous timeout.
pub fn flockrun() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(FLOCKRUN);
    cmd.timeout(PATIENCE);
    cmd
}

/// A scratch directory per test.
pub fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("flockrun-test-")
        .tempdir()
        .expect("temporary directory")
}

/// The shell snippet a holder runs: announce, then hold until stdin closes.
pub const HOLD_SH: &str = "echo ready; cat >/dev/null";

/// A process that holds a lock until released.
pub struct Holder {
    pub child: Child,
    stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
}

impl Holder {
    /// Starts `program args…` (stdin and stdout piped) and waits until it prints a line
    /// equal to `ready_line`.
    pub fn start(program: impl AsRef<OsStr>, args: &[&OsStr], ready_line: &str) -> Holder {
        Holder::start_within(program, args, ready_line, PATIENCE)
    }

    /// As `start`, waiting at most `patience` for the ready line.
    pub fn start_within(
        program: impl AsRef<OsStr>,
        args: &[&OsStr],
        ready_line: &str,
        patience: Duration,
    ) -> Holder {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start holder");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut holder = Holder {
            child,
            stdin,
            stdout,
        };
        holder.expect_line_within(ready_line, patience);
        holder
    }

    /// A flockrun holder: `flockrun ARGS… -- sh -c HOLD_SH`.
    pub fn flockrun(args: &[&str]) -> Holder {
        let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        all.extend(["--", "sh", "-c", HOLD_SH].map(OsStr::new));
        Holder::start(FLOCKRUN, &all, "ready")
    }

    /// Reads lines until one equals `want`; panics on EOF or after PATIENCE.
    pub fn expect_line(&mut self, want: &str) {
        self.expect_line_within(want, PATIENCE);
    }

    /// As `expect_line`, waiting at most `patience`.
    pub fn expect_line_within(&mut self, want: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let line = self.read_line_before(deadline);
            match line {
                Some(line) if line.trim_end() == want => return,
                Some(_) => {}
                None => panic!(
                    "process {} ended before printing {want:?}: {:?}",
                    self.child.id(),
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Reads lines until one contains `want`; panics on EOF or after PATIENCE.
    pub fn expect_line_containing(&mut self, want: &str) {
        let deadline = Instant::now() + PATIENCE;
        while let Some(line) = self.read_line_before(deadline) {
            if line.contains(want) {
                return;
            }
        }
        panic!("process {} ended before printing {want:?}", self.child.id());
    }

    /// Reads bytes until `want` has appeared, across line boundaries (a live line ends in
    /// no newline); panics on EOF or after PATIENCE.
    pub fn expect_line_containing_raw(&mut self, want: &str) {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        let (tx, rx) = mpsc::channel();
        let reader: &mut BufReader<ChildStdout> = &mut self.stdout;
        let found = thread::scope(|s| {
            s.spawn(move || {
                let mut byte = [0u8; 1];
                while reader.read(&mut byte).unwrap_or(0) == 1 {
                    seen.push(byte[0]);
                    if String::from_utf8_lossy(&seen).contains(want) {
                        let _ = tx.send(true);
                        return;
                    }
                }
                let _ = tx.send(false);
            });
            let found = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or(false);
            if !found {
                let _ = self.child.kill();
            }
            found
        });
        assert!(found, "process {} never printed {want:?}", self.child.id());
    }

    /// The next line, `None` at EOF. Reading happens on a helper thread so a hung process
    /// fails the test instead of hanging it.
    pub fn read_line_before(&mut self, deadline: Instant) -> Option<String> {
        let (tx, rx) = mpsc::channel();
        let reader: &mut BufReader<ChildStdout> = &mut self.stdout;
        thread::scope(|s| {
            s.spawn(move || {
                let mut line = String::new();
                let n = reader.read_line(&mut line).unwrap_or(0);
                let _ = tx.send((n > 0).then_some(line));
            });
            if let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                line
            } else {
                // Unblock the reader thread so the scope can end, then fail.
                let _ = self.child.kill();
                panic!("no output from process {} in time", self.child.id());
            }
        })
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin still open")
    }

    /// Closes stdin (the held command exits) and waits for the holder.
    pub fn release(mut self) -> ExitStatus {
        drop(self.stdin.take());
        wait_with_deadline(&mut self.child)
    }

    /// Like `release`, and also returns what the holder wrote on stderr (when it was piped).
    pub fn release_with_stderr(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let status = wait_with_deadline(&mut self.child);
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status, stderr)
    }

    /// Everything the holder still prints, after it exits.
    pub fn rest_of_output(&mut self) -> String {
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        rest
    }
}

impl Drop for Holder {
    /// Closes stdin and waits for the holder to finish: its command exits on EOF and the lock
    /// is released when it does. Killing at once would orphan a command that still holds an
    /// inherited lock. Killed only if it has not finished within PATIENCE.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child`, killing it and panicking after PATIENCE.
pub fn wait_with_deadline(child: &mut Child) -> ExitStatus {
    wait_with_deadline_of(child, PATIENCE)
}

/// Runs flockrun with `args` and the variables `env` added (and no `REDISCLI_AUTH` from the
/// caller's environment), stdin empty, within PATIENCE: its status and output.
pub fn flockrun_out(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(FLOCKRUN);
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("REDISCLI_AUTH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flockrun");
    finish(child)
}

/// Waits for `child` (its stdout and stderr piped) within PATIENCE and collects its output.
pub fn finish(mut child: Child) -> std::process::Output {
    let status = wait_with_deadline(&mut child);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout).unwrap();
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut stderr).unwrap();
    }
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// Waits for `child` at most `patience`.
pub fn wait_with_deadline_of(child: &mut Child, patience: Duration) -> ExitStatus {
    let deadline = Instant::now() + patience;
    wait_until("process exit", deadline, || child.try_wait().ok().flatten())
}

/// Polls `probe` (a condition check, not a sleep-to-let-things-happen) until it yields.
pub fn wait_until<T>(what: &str, deadline: Instant, probe: impl FnMut() -> Option<T>) -> T {
    wait_until_or_explain(deadline, probe, || format!("gave up waiting for {what}"))
}

/// As `wait_until`, failing with what `explain` says, asked only when the deadline passed.
pub fn wait_until_or_explain<T>(
    deadline: Instant,
    mut probe: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let mut explain = Some(explain);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            explain.take().map_or_else(String::new, |explain| explain())
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// `/proc/locks` lines for `path`'s inode.
pub fn proc_locks_for(path: &Path) -> Vec<String> {
    let ino = fs::metadata(path).map_or(0, |m| m.ino());
    fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .find(|w| w.matches(':').count() == 2)
                .and_then(|w| w.rsplit(':').next())
                .and_then(|i| i.parse::<u64>().ok())
                == Some(ino)
        })
        .map(str::to_owned)
        .collect()
}

/// True when `pid` has a request blocked (`->`) on the lock at `path`.
pub fn is_waiting(pid: i32, path: &Path) -> bool {
    proc_locks_for(path).iter().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.get(1) == Some(&"->") && words.get(5) == Some(&pid.to_string().as_str())
    })
}

/// Blocks until `pid` waits on `path` in the kernel.
pub fn wait_until_waiting(pid: i32, path: &Path) {
    wait_until(
        &format!("pid {pid} to wait on {}", path.display()),
        Instant::now() + PATIENCE,
        || is_waiting(pid, path).then_some(()),
    );
}

/// True when some OFD request is blocked on `path`. OFD lines carry pid -1, so this cannot
/// tell waiters apart; tests using it start a single OFD waiter.
pub fn has_ofd_waiter(path: &Path) -> bool {
    proc_locks_for(path)
        .iter()
        .any(|l| l.split_whitespace().nth(1) == Some("->") && l.contains("OFDLCK"))
}

/// Starts a flockrun that is expected to block on `path`, and waits until it does.
pub fn start_waiter(args: &[&str], path: &Path) -> Holder {
    let ofd = args.contains(&"--fcntl");
    let waiter = spawn_flockrun(args);
    let pid = waiter.pid();
    if ofd {
        let what = format!("an OFD waiter on {}", path.display());
        wait_until(&what, Instant::now() + PATIENCE, || {
            has_ofd_waiter(path).then_some(())
        });
    } else {
        wait_until_waiting(pid, path);
    }
    waiter
}

/// Sends `signal` to `pid`.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("kill");
}

/// The first child of `pid`, once it has one.
pub fn child_of(pid: i32) -> i32 {
    wait_until("a child process", Instant::now() + PATIENCE, || {
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Blocks until process `pid` has exited (gone, or a zombie nobody has reaped yet).
pub fn wait_until_exited(pid: i32, what: &str) {
    wait_until(what, Instant::now() + PATIENCE, || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    });
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `tool` is a file in one of PATH's directories.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// The lock every test process takes around apt-get, so parallel tests that find tools
/// missing install them one after another instead of failing on dpkg's own lock.
pub const APT_LOCK: &str = "/tmp/flockrun-apt.lock";

/// Installs the Debian package of every `(tool, package)` whose tool is not on PATH, as
/// root (`.ci/run` does the same up front, so this matters for a plain `cargo nextest run`
/// on a new machine). Fails loudly, naming the packages, when it cannot.
pub fn install_missing(tools: &[(&str, &str)]) {
    let missing: Vec<&(&str, &str)> = tools.iter().filter(|(t, _)| !on_path(t)).collect();
    if missing.is_empty() {
        return;
    }
    let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    assert!(
        is_root(),
        "these tests need {}: install the Debian packages {} (or run them as root, and they \
         install them)",
        missing
            .iter()
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
            .join(", "),
        packages.join(" ")
    );
    // Checked again under the lock: another test process may have installed them meanwhile.
    let checks: Vec<String> = missing
        .iter()
        .map(|(tool, package)| format!("command -v {tool} >/dev/null || p=\"$p {package}\";"))
        .collect();
    let script = format!(
        "p=; {} [ -z \"$p\" ] || {{ apt-get update -q && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q $p; }}",
        checks.join(" ")
    );
    let status = Command::new("flock")
        .args([APT_LOCK, "sh", "-c", &script])
        .status()
        .expect("run apt-get under flock(1)");
    assert!(
        status.success(),
        "cannot install the Debian packages {}",
        packages.join(" ")
    );
}

/// A Python interpreter with py-filelock `version` installed in a venv under the target
/// directory, created on first use. Fails loudly when it cannot be installed.
pub fn python_with_filelock(version: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let venv = base.join(format!("pyvenv-filelock-{version}"));
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if ready.exists() {
        return python;
    }
    // Tests run in parallel processes: one of them installs, the others wait.
    let guard = fs::File::create(base.join(format!("pyvenv-filelock-{version}.lock"))).unwrap();
    guard.lock().unwrap();
    if !ready.exists() {
        let _ = fs::remove_dir_all(&venv);
        run_setup(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run_setup(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            &format!("filelock=={version}"),
        ]));
        fs::write(&ready, version).unwrap();
    }
    python
}

fn run_setup(cmd: &mut Command) {
    let out = cmd.output().expect("run python setup");
    assert!(
        out.status.success(),
        "cannot install py-filelock for the interop tests ({cmd:?}): {}\n\
         The tests need python3 with venv and pip, and access to PyPI.",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Holds a py-filelock lock (`native`, `read` or `write`): prints `STARTED`, then `HELD` once
/// it holds the lock, and releases when stdin closes.
pub const PY_HOLD: &str = r#"
import sys, filelock
kind, path = sys.argv[1], sys.argv[2]
if kind == "native":
    lock = filelock.FileLock(path)
elif kind == "soft":
    lock = filelock.SoftFileLock(path)
else:
    rw = filelock.ReadWriteLock(path, is_singleton=False)
    lock = rw.read_lock() if kind == "read" else rw.write_lock()
print("STARTED", flush=True)
with lock:
    print("HELD", flush=True)
    sys.stdin.read()
"#;

/// One bounded py-filelock attempt (`native`, `read` or `write`): prints `ACQUIRED` or
/// `TIMEOUT`.
pub const PY_TRY: &str = r#"
import sys, filelock
kind, path, t = sys.argv[1], sys.argv[2], float(sys.argv[3])
try:
    if kind in ("native", "soft"):
        cls = filelock.FileLock if kind == "native" else filelock.SoftFileLock
        cls(path).acquire(timeout=t).lock.release()
    else:
        rw = filelock.ReadWriteLock(path, is_singleton=False)
        (rw.acquire_read if kind == "read" else rw.acquire_write)(timeout=t)
        rw.release()
        rw.close()
    print("ACQUIRED")
except filelock.Timeout:
    print("TIMEOUT")
"#;

/// A py-filelock process that has started to take a `kind` lock on `path` (it may still be
/// waiting: expect `HELD` to know it holds).
pub fn py_start(python: &Path, kind: &str, path: &Path) -> Holder {
    let args = [
        OsStr::new("-c"),
        OsStr::new(PY_HOLD),
        OsStr::new(kind),
        path.as_os_str(),
    ];
    Holder::start(python, &args, "STARTED")
}

/// A py-filelock process holding a `kind` lock on `path`.
pub fn py_hold(python: &Path, kind: &str, path: &Path) -> Holder {
    let mut holder = py_start(python, kind, path);
    holder.expect_line("HELD");
    holder
}

/// True when `pid` is an SQLite writer waiting for readers: it holds the PENDING byte
/// (0x40000000) but not the shared range.
pub fn is_waiting_writer(pid: i32, path: &Path) -> bool {
    let pid = pid.to_string();
    let mut pending = false;
    let mut exclusive = false;
    for line in proc_locks_for(path) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.get(1) != Some(&"POSIX")
            || w.get(3) != Some(&"WRITE")
            || w.get(4) != Some(&pid.as_str())
        {
            continue;
        }
        let start: u64 = w.get(6).and_then(|s| s.parse().ok()).unwrap_or(0);
        let end: u64 = w.get(7).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        pending |= start <= 0x4000_0000 && 0x4000_0000 <= end;
        exclusive |= start <= 0x4000_0002 && 0x4000_0002 <= end;
    }
    pending && !exclusive
}

/// Blocks until `pid` waits on `path` as an SQLite writer.
pub fn wait_until_waiting_writer(pid: i32, path: &Path) {
    wait_until(
        &format!("pid {pid} to wait to write {}", path.display()),
        Instant::now() + PATIENCE,
        || is_waiting_writer(pid, path).then_some(()),
    );
}

/// Starts a `flockrun --soft` expected to wait, and returns once it waits: a soft waiter
/// watches the lock's directory with inotify, so its descriptors include an inotify one.
pub fn start_soft_waiter(args: &[&str]) -> Holder {
    let waiter = spawn_flockrun(args);
    let pid = waiter.pid();
    wait_until(
        &format!("pid {pid} to wait on a soft lock"),
        Instant::now() + PATIENCE,
        || {
            let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
            fds.filter_map(Result::ok)
                .filter_map(|e| fs::read_link(e.path()).ok())
                .any(|target| target.to_string_lossy() == "anon_inode:inotify")
                .then_some(())
        },
    );
    waiter
}

/// Starts `flockrun ARGS…` without waiting for anything.
pub fn spawn_flockrun(args: &[&str]) -> Holder {
    let mut child = Command::new(FLOCKRUN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flockrun");
    let stdin = child.stdin.take();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    Holder {
        child,
        stdin,
        stdout,
    }
}

/// py-filelock 4.2.11's own host name and the start token it computes for `pid`.
pub fn py_identity(pid: i32) -> (String, String) {
    let python = python_with_filelock("4.2.11");
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; from filelock._identity import host_name, process_start_token as t\n\
             print(host_name()); print(t(int(sys.argv[1])))",
            &pid.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

/// Runs `PY_TRY` with `python` and returns its verdict.
pub fn py_try(python: &Path, path: &Path, timeout: &str) -> String {
    py_try_kind(python, "native", path, timeout)
}

/// Runs `PY_TRY` for a `kind` lock and returns its verdict.
pub fn py_try_kind(python: &Path, kind: &str, path: &Path, timeout: &str) -> String {
    let out = Command::new(python)
        .args(["-c", PY_TRY, kind])
        .arg(path)
        .arg(timeout)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The load tests' critical-section program (tests/helpers/occupy.rs), compiled with rustc
/// on first use into the target directory.
pub fn occupy_helper() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/occupy.rs");
    let binary = base.join("occupy-helper");
    let fresh = |b: &Path| {
        let (Ok(b), Ok(s)) = (fs::metadata(b), fs::metadata(&source)) else {
            return false;
        };
        b.modified().unwrap() >= s.modified().unwrap()
    };
    if fresh(&binary) {
        return binary;
    }
    let guard = fs::File::create(base.join("occupy-helper.lock")).unwrap();
    guard.lock().unwrap();
    if !fresh(&binary) {
        let partial = base.join("occupy-helper.partial");
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let out = Command::new(rustc)
            .args(["--edition", "2024", "-O", "-o"])
            .arg(&partial)
            .arg(&source)
            .output()
            .expect("run rustc for the occupy helper");
        assert!(
            out.status.success(),
            "cannot build {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&partial, &binary).unwrap();
    }
    binary
}

/// One hold in a load test, as the occupy helper logged it.
#[derive(Debug, Clone)]
pub struct Hold {
    pub exclusive: bool,
    /// The holder: its pid, or `HOST/PID` on the shared-filesystem bed.
    pub pid: String,
    pub enter: i128,
    pub leave: i128,
    /// On the bed: the counter value an exclusive hold wrote.
    pub wrote: Option<u64>,
}

/// What a load run left in its log: the completed holds and the pids of holders that were
/// found gone (killed) inside the critical section. Fails on any `OVERLAP` line.
pub fn read_load_log(dir: &Path) -> (Vec<Hold>, Vec<String>) {
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    let mut holds = Vec::new();
    let mut gone = Vec::new();
    for line in log.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("x" | "s") => holds.push(Hold {
                exclusive: w[0] == "x",
                pid: w[1].to_owned(),
                enter: w[2].parse().unwrap(),
                leave: w[3].parse().unwrap(),
                wrote: w.get(4).map(|v| v.parse().unwrap()),
            }),
            Some("GONE") => gone.extend(w.get(1).map(|p| (*p).to_owned())),
            _ => panic!("load log says: {line}"),
        }
    }
    (holds, gone)
}

/// Asserts that no exclusive hold overlaps any other hold, and that no holder found gone
/// inside the critical section ever completed its hold.
pub fn assert_no_overlap(holds: &[Hold], gone: &[String]) {
    let mut sorted = holds.to_vec();
    sorted.sort_by_key(|h| h.enter);
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            if b.enter >= a.leave {
                break;
            }
            assert!(
                !(a.exclusive || b.exclusive),
                "holds overlap: {a:?} and {b:?}"
            );
        }
    }
    for pid in gone {
        assert!(
            !holds.iter().any(|h| h.pid == *pid),
            "pid {pid} was found inside by a newcomer, yet completed its hold"
        );
    }
}

/// Mounts a fresh tmpfs with `options`, runs `body` on its mount point, and unmounts it,
/// also when `body` panics. Needs root: without it, prints a NOTE and returns without
/// running `body` (CI runs as root).
pub fn with_tmpfs(options: &str, body: impl FnOnce(&Path) + std::panic::UnwindSafe) {
    if !is_root() {
        eprintln!("NOTE: needs root to mount a tmpfs; checked as root in CI");
        return;
    }
    let dir = scratch();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(mounted, "mounting a tmpfs with {options} failed");
    let result = std::panic::catch_unwind(|| body(&mnt));
    let _ = Command::new("umount").arg(&mnt).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The pids of processes whose command line (arguments joined by spaces) is `command`.
pub fn processes_running(command: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let words: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            (words.join(" ") == command).then_some(pid)
        })
        .collect()
}
