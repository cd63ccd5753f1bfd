//! Exclusion under load, for every kind: many processes take the same lock over and over,
//! each hold running the occupy helper (an `O_EXCL` occupancy file, a counter, an interval
//! log on the monotonic clock). flockrun shares each lock with the other programs that speak
//! its protocol: util-linux flock(1) and py-filelock. The chaos variant SIGKILLs flockrun
//! processes at random moments (waiting, just acquired, COMMAND running, releasing).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

use crate::harness::{
    FLOCKRUN, PATIENCE, assert_no_overlap, flockrun, occupy_helper, python_with_filelock,
    read_load_log, scratch, wait_until,
};

/// A py-filelock participant: `count` holds of a `kind` lock (`native`, `soft`, `read`,
/// `write`, and `srw-read`, `srw-write` for `SoftReadWriteLock`), each running the same
/// critical section as the occupy helper.
const PY_LOAD: &str = r#"
import os, sys, time, filelock
kind, path, d, count, after_kill = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
role = "s" if kind in ("read", "srw-read") else "x"
occ, log = os.path.join(d, "occupied"), os.path.join(d, "log")

def now():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

def append(line):
    with open(log, "a") as f:
        f.write(line)

def clash(what):
    append(f"OVERLAP {os.getpid()} {what}\n")
    sys.exit(f"py participant: OVERLAP: {what}")

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return not f.read().rsplit(")", 1)[1].startswith(" Z")
    except OSError:
        return False

def read_owner():
    try:
        with open(occ) as f:
            return f.read()
    except FileNotFoundError:
        return ""

def outlive(owner):
    deadline = time.monotonic() + 10
    while owner and alive(owner):
        if time.monotonic() > deadline:
            clash(f"pid {owner} is inside and alive")
        time.sleep(0.001)
    append(f"GONE {owner}\n")

dwell = int(os.environ.get("OCCUPY_DWELL_MS", "0")) / 1000

def occupy():
    enter = now()
    if role == "s":
        for round in range(2):
            if os.path.exists(occ):
                owner = read_owner()
                if not after_kill:
                    clash(f"a shared holder found pid {owner} inside")
                outlive(owner)
            if round == 0 and dwell:
                time.sleep(dwell)
    else:
        while True:
            try:
                fd = os.open(occ, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                break
            except FileExistsError:
                owner = read_owner()
                if not after_kill:
                    clash(f"pid {owner} is inside")
                outlive(owner)
                try:
                    os.unlink(occ)
                except FileNotFoundError:
                    pass
        counter = os.path.join(d, "counter")
        n = int((open(counter).read().strip() or "0") if os.path.exists(counter) else 0)
        if dwell:
            time.sleep(dwell)
        with open(counter, "w") as f:
            f.write(f"{n + 1}\n")
        os.unlink(occ)
    append(f"{role} {os.getpid()} {enter} {now()}\n")

if kind in ("native", "soft"):
    lock = (filelock.FileLock if kind == "native" else filelock.SoftFileLock)(path)
    for _ in range(count):
        lock.acquire(poll_interval=0.001)
        try:
            occupy()
        finally:
            lock.release()
elif kind.startswith("srw-"):
    # SoftReadWriteLock with the load tests' threshold of 2 s (flockrun --ttl 2).
    rw = filelock.SoftReadWriteLock(path, heartbeat_interval=2 / 3, stale_threshold=2.0,
                                    poll_interval=0.005, is_singleton=False)
    for _ in range(count):
        (rw.acquire_read if role == "s" else rw.acquire_write)()
        try:
            occupy()
        finally:
            rw.release()
else:
    rw = filelock.ReadWriteLock(path, is_singleton=False)
    for _ in range(count):
        (rw.acquire_read if kind == "read" else rw.acquire_write)()
        try:
            occupy()
        finally:
            rw.release()
    rw.close()
"#;

/// One process of a load run.
enum Who<'a> {
    /// `flockrun ARGS LOCK -- occupy DIR ROLE`, in a shell loop.
    Flockrun(&'a [&'a str], &'a str),
    /// util-linux `flock LOCK occupy DIR x`, in a shell loop.
    Flock1,
    /// The Python participant with this py-filelock version and kind.
    Py(&'a str, &'a str),
}

struct Run {
    dir: tempfile::TempDir,
    /// A lock file in `dir`, or an `etcd://` LOCK.
    lock: String,
    exclusive_holds: usize,
    chaos: Option<Chaos>,
    /// How long each hold stays inside (`OCCUPY_DWELL_MS`), if at all.
    dwell_ms: Option<u32>,
}

/// How the chaos thread kills: at most `max_kills`, spaced 0 to `max_pause` apart.
#[derive(Clone, Copy)]
struct Chaos {
    max_pause: Duration,
    max_kills: usize,
}

/// For the local kinds: a kill every few milliseconds, as many as the run allows.
const RAPID: Chaos = Chaos {
    max_pause: Duration::from_millis(15),
    max_kills: usize::MAX,
};

impl Run {
    fn new(lock_name: &str, chaos: bool) -> Run {
        let dir = scratch();
        let lock = dir.path().join(lock_name).to_str().unwrap().to_owned();
        Run::with_lock(dir, lock, chaos.then_some(RAPID))
    }

    fn with_lock(dir: tempfile::TempDir, lock: String, chaos: Option<Chaos>) -> Run {
        fs::create_dir(dir.path().join("work")).unwrap();
        Run {
            dir,
            lock,
            exclusive_holds: 0,
            chaos,
            dwell_ms: None,
        }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// A participant's command, with the run's dwell time in its environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        if let Some(ms) = self.dwell_ms {
            command.env("OCCUPY_DWELL_MS", ms.to_string());
        }
        command
    }

    fn start(&mut self, who: &Who<'_>, holds: usize) -> Child {
        let helper = occupy_helper();
        let (work, lock) = (self.work(), &self.lock);
        let chaos = self.chaos.is_some();
        let after_kill = if chaos { " --after-kill" } else { "" };
        let loop_of = |one: String| {
            // flockrun SIGKILLed by the chaos thread ends with 137; anything else is a failure.
            let tolerated = if chaos { "[ $rc = 137 ] ||" } else { "" };
            format!(
                "for i in $(seq {holds}); do {one}; rc=$?; [ $rc = 0 ] || {tolerated} exit $rc; done"
            )
        };
        match who {
            Who::Flockrun(args, role) => {
                if *role == "x" {
                    self.exclusive_holds += holds;
                }
                let script = loop_of(format!(
                    "{FLOCKRUN} {} '{lock}' -- {} '{}' {role}{after_kill}",
                    args.join(" "),
                    helper.display(),
                    work.display()
                ));
                self.command("bash").args(["-c", &script]).spawn().unwrap()
            }
            Who::Flock1 => {
                self.exclusive_holds += holds;
                let script = loop_of(format!(
                    "flock '{lock}' {} '{}' x{after_kill}",
                    helper.display(),
                    work.display()
                ));
                self.command("bash").args(["-c", &script]).spawn().unwrap()
            }
            Who::Py(version, kind) => {
                if !kind.ends_with("read") {
                    self.exclusive_holds += holds;
                }
                self.command(python_with_filelock(version))
                    .args(["-c", PY_LOAD, kind])
                    .arg(lock)
                    .arg(&work)
                    .args([holds.to_string(), u8::from(chaos).to_string()])
                    .spawn()
                    .unwrap()
            }
        }
    }

    /// Starts everyone at once, waits for all of them (killing flockrun processes at
    /// random meanwhile when `chaos`), and checks the log. Returns how many were killed.
    fn go(&mut self, everyone: &[(Who<'_>, usize)]) -> usize {
        // Build and install what the participants need before the clock starts.
        occupy_helper();
        for (who, _) in everyone {
            if let Who::Py(version, _) = who {
                python_with_filelock(version);
            }
        }
        let mut children: Vec<Child> = everyone.iter().map(|(w, n)| self.start(w, *n)).collect();
        let done = Arc::new(AtomicBool::new(false));
        let killer = self.chaos.map(|chaos| {
            let (done, lock) = (done.clone(), self.lock.clone());
            thread::spawn(move || kill_at_random(&lock, chaos, &done))
        });
        // Each participant runs a few hundred short holds; four minutes is a hang.
        let deadline = Instant::now() + 12 * PATIENCE;
        for child in &mut children {
            let status = wait_until("a load participant to finish", deadline, || {
                child.try_wait().unwrap()
            });
            assert!(status.success(), "a participant failed: {status}");
        }
        done.store(true, Ordering::SeqCst);
        let kills = killer.map_or(0, |k| k.join().unwrap());

        let (holds, gone) = read_load_log(&self.work());
        assert_no_overlap(&holds, &gone);
        if self.chaos.is_some() {
            // A killed flockrun takes its hold with it (a kernel kind's COMMAND finishes
            // on the inherited lock instead), so only an upper bound holds.
            assert!(holds.iter().filter(|h| h.exclusive).count() <= self.exclusive_holds);
        } else {
            assert!(gone.is_empty(), "nobody was killed, yet {gone:?} vanished");
            let exclusive = holds.iter().filter(|h| h.exclusive).count();
            assert_eq!(exclusive, self.exclusive_holds, "exclusive holds completed");
            let counter = fs::read_to_string(self.work().join("counter")).unwrap();
            assert_eq!(
                counter.trim(),
                self.exclusive_holds.to_string(),
                "lost updates"
            );
        }
        kills
    }

    /// After a run: every COMMAND has ended, nothing of a takeover is left beside the lock,
    /// and the lock can be taken at once.
    fn assert_free_afterwards(&self, single_attempt: &[&str]) {
        let work = self.work();
        let work = work.to_str().unwrap();
        wait_until(
            "the commands of killed flockruns to end",
            Instant::now() + PATIENCE,
            || (!any_process_mentions(work)).then_some(()),
        );
        let mut args = single_attempt.to_vec();
        args.extend([self.lock.as_str(), "--", "true"]);
        flockrun().args(&args).assert().success();
        let stray: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".break.") || n.contains(".restore."))
            .collect();
        assert!(stray.is_empty(), "takeover files left behind: {stray:?}");
    }
}

/// Whether any process has `needle` in its command line.
fn any_process_mentions(needle: &str) -> bool {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
}

/// SIGKILLs a random flockrun working on `lock` at random moments, as `chaos` says, until
/// `done`; returns how many.
fn kill_at_random(lock: &str, chaos: Chaos, done: &AtomicBool) -> usize {
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        | 1;
    eprintln!("chaos seed {seed}");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let mut kills = 0;
    while !done.load(Ordering::SeqCst) && kills < chaos.max_kills {
        let victims: Vec<i32> = fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let exe = fs::read_link(e.path().join("exe")).ok()?;
                let cmdline = fs::read(e.path().join("cmdline")).ok()?;
                (exe == Path::new(FLOCKRUN) && String::from_utf8_lossy(&cmdline).contains(lock))
                    .then_some(pid)
            })
            .collect();
        if !victims.is_empty() {
            let victim = victims[next() as usize % victims.len()];
            // It may have finished meanwhile; that is fine.
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).is_ok() {
                kills += 1;
            }
        }
        // Random spacing is the point: kills land at every stage of a hold.
        let max_us = u32::try_from(chaos.max_pause.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        thread::sleep(Duration::from_micros(u64::from(next() % max_us)));
    }
    kills
}

const EACH: usize = 25;

#[test]
fn kernel_kind_under_load_with_flock1_and_py_filelock() {
    let mut run = Run::new("k.lock", false);
    run.go(&[
        (Who::Flockrun(&["exec"], "x"), EACH),
        (Who::Flockrun(&["exec"], "x"), EACH),
        (Who::Flockrun(&["exec"], "x"), EACH),
        (Who::Flockrun(&["exec", "-s"], "s"), EACH),
        (Who::Flock1, EACH),
        (Who::Py("4.2.11", "native"), EACH),
    ]);
}

/// py-filelock 3.28 unlinks the lock file on release. flock(1) does not re-check the inode
/// it won, so 3.28 and flock(1) together do run two holders at once (the research notes
/// verify it); flockrun re-checks and shares a lock with 3.28 safely.
#[test]
fn kernel_kind_under_load_with_py_filelock_3_28_unlinking_on_release() {
    let mut run = Run::new("k.lock", false);
    run.go(&[
        (Who::Flockrun(&["exec"], "x"), EACH),
        (Who::Flockrun(&["exec"], "x"), EACH),
        (Who::Flockrun(&["exec", "-s"], "s"), EACH),
        (Who::Py("3.28.0", "native"), EACH),
        (Who::Py("3.28.0", "native"), EACH),
    ]);
}

#[test]
fn ofd_kind_under_load() {
    // Neither flock(1) 2.38 nor py-filelock takes OFD locks; flockrun alone here.
    let mut run = Run::new("o.lock", false);
    run.go(&[
        (Who::Flockrun(&["exec", "--fcntl"], "x"), EACH),
        (Who::Flockrun(&["exec", "--fcntl"], "x"), EACH),
        (Who::Flockrun(&["exec", "--fcntl"], "x"), EACH),
        (Who::Flockrun(&["exec", "--fcntl", "-s"], "s"), EACH),
        (Who::Flockrun(&["exec", "--fcntl", "-s"], "s"), EACH),
    ]);
}

#[test]
fn sqlite_kind_under_load_with_py_filelock() {
    let mut run = Run::new("rw.lock", false);
    run.go(&[
        (Who::Flockrun(&["write"], "x"), EACH),
        (Who::Flockrun(&["write"], "x"), EACH),
        (Who::Flockrun(&["read"], "s"), EACH),
        (Who::Flockrun(&["read"], "s"), EACH),
        (Who::Py("4.2.11", "write"), EACH),
        (Who::Py("4.2.11", "read"), EACH),
        (Who::Py("3.28.0", "write"), EACH),
    ]);
}

#[test]
fn soft_kind_under_load_with_py_filelock() {
    // py-filelock 3.28's SoftFileLock breaks a marker whose pid it saw dead without
    // re-checking, which can break a newer holder's marker among its own kind; the 4.x
    // protocol is the one to share a soft lock under load with.
    let mut run = Run::new("s.lock", false);
    run.go(&[
        (Who::Flockrun(&["exec", "--soft"], "x"), EACH),
        (Who::Flockrun(&["exec", "--soft"], "x"), EACH),
        (Who::Flockrun(&["exec", "--soft"], "x"), EACH),
        (Who::Py("4.2.11", "soft"), EACH),
    ]);
}

const SOFT_WRITE: &[&str] = &["write", "--soft", "--ttl", "2"];
/// Holds that last a moment, so that one let in too early meets one in progress.
const DWELL_MS: u32 = 3;
const SOFT_READ: &[&str] = &["read", "--soft", "--ttl", "2"];

/// flockrun taking both layouts beside py-filelock `version`'s writers and readers (two
/// Python versions' writers would not exclude each other: their layouts do not meet).
fn soft_rw_under_load_with(version: &str) {
    let mut run = Run::new("srw.lock", false);
    run.dwell_ms = Some(DWELL_MS);
    run.go(&[
        (Who::Flockrun(SOFT_WRITE, "x"), EACH),
        (Who::Flockrun(SOFT_WRITE, "x"), EACH),
        (Who::Flockrun(SOFT_READ, "s"), EACH),
        (Who::Flockrun(SOFT_READ, "s"), EACH),
        (Who::Py(version, "srw-write"), EACH),
        (Who::Py(version, "srw-read"), EACH),
    ]);
}

#[test]
fn soft_rw_kind_under_load_with_py_filelock_3_28() {
    soft_rw_under_load_with("3.28.0");
}

#[test]
fn soft_rw_kind_under_load_with_py_filelock_4_2_11() {
    soft_rw_under_load_with("4.2.11");
}

/// flockrun's writers keep out readers of both Python versions at once, and nothing
/// deadlocks while readers of both layouts and flockrun's writers and readers contend.
#[test]
fn soft_rw_writers_exclude_readers_of_both_layouts_at_once_under_load() {
    let mut run = Run::new("srw.lock", false);
    run.dwell_ms = Some(DWELL_MS);
    run.go(&[
        (Who::Flockrun(SOFT_WRITE, "x"), EACH),
        (Who::Flockrun(SOFT_WRITE, "x"), EACH),
        (Who::Flockrun(SOFT_READ, "s"), EACH),
        (Who::Py("3.28.0", "srw-read"), EACH),
        (Who::Py("4.2.11", "srw-read"), EACH),
    ]);
}

/// Chaos for one kind: flockrun loops beside a py-filelock participant where there is one.
fn chaos(lock_name: &str, kind_args: &[&str], shared_args: &[&str], py: Option<&str>) {
    let mut run = Run::new(lock_name, true);
    let mut everyone = vec![
        (Who::Flockrun(kind_args, "x"), 40),
        (Who::Flockrun(kind_args, "x"), 40),
        (Who::Flockrun(kind_args, "x"), 40),
    ];
    if !shared_args.is_empty() {
        everyone.push((Who::Flockrun(shared_args, "s"), 40));
    }
    if let Some(kind) = py {
        everyone.push((Who::Py("4.2.11", kind), 20));
    }
    let kills = run.go(&everyone);
    assert!(kills > 0, "the chaos thread never killed anything");
    eprintln!("{kills} flockrun processes killed");
    let mut single_attempt = kind_args.to_vec();
    single_attempt.push("-n");
    run.assert_free_afterwards(&single_attempt);
}

#[test]
fn killing_flockrun_at_random_never_gives_two_holders_kernel() {
    chaos("k.lock", &["exec"], &["exec", "-s"], Some("native"));
}

#[test]
fn killing_flockrun_at_random_never_gives_two_holders_ofd() {
    chaos(
        "o.lock",
        &["exec", "--fcntl"],
        &["exec", "--fcntl", "-s"],
        None,
    );
}

#[test]
fn killing_flockrun_at_random_never_gives_two_holders_sqlite() {
    chaos("rw.lock", &["write"], &["read"], Some("write"));
}

#[test]
fn killing_flockrun_at_random_never_gives_two_holders_soft() {
    chaos("s.lock", &["exec", "--soft"], &[], Some("soft"));
}

/// A killed soft reader/writer holder's records stay until they age out (v1: their mtime
/// older than the threshold; v2: at once when the dead owner is on this host), so kills are
/// spaced out and the threshold short.
#[test]
fn killing_flockrun_at_random_never_gives_two_holders_soft_rw() {
    let chaos = Chaos {
        max_pause: Duration::from_millis(200),
        max_kills: 12,
    };
    let dir = scratch();
    let lock = dir.path().join("srw.lock").to_str().unwrap().to_owned();
    let mut run = Run::with_lock(dir, lock, Some(chaos));
    let kills = run.go(&[
        (Who::Flockrun(SOFT_WRITE, "x"), 20),
        (Who::Flockrun(SOFT_WRITE, "x"), 20),
        (Who::Flockrun(SOFT_WRITE, "x"), 20),
        (Who::Flockrun(SOFT_READ, "s"), 20),
        (Who::Py("4.2.11", "srw-write"), 10),
    ]);
    assert!(kills > 0, "the chaos thread never killed anything");
    eprintln!("{kills} flockrun processes killed");
    // What the last kills left ages out within the threshold.
    run.assert_free_afterwards(&["write", "-w", "5", "--soft", "--ttl", "2"]);
}

/// The etcd kind: a killed flockrun takes its COMMAND with it at once, while its lease keeps
/// the lock for up to the TTL, so no kill can let two holders in. Each kill stalls the queue
/// until that lease expires, hence fewer, sparser kills than for the local kinds.
fn chaos_etcd(cluster: &crate::etcd::Cluster, name: &str) {
    let lock = cluster.lock(name);
    let chaos = Chaos {
        max_pause: Duration::from_millis(400),
        max_kills: 8,
    };
    let mut run = Run::with_lock(scratch(), lock, Some(chaos));
    let tls = cluster.tls_args();
    let mut args: Vec<&str> = vec!["exec", "--ttl", "1"];
    args.extend(tls.iter().map(String::as_str));
    let kills = run.go(&[
        (Who::Flockrun(&args, "x"), 15),
        (Who::Flockrun(&args, "x"), 15),
        (Who::Flockrun(&args, "x"), 15),
    ]);
    assert!(kills > 0, "the chaos thread never killed anything");
    eprintln!("{kills} flockrun processes killed");
    // Leases of killed flockruns may still be running out: wait for them, briefly.
    let mut single: Vec<&str> = vec!["exec", "-w", "10"];
    single.extend(tls.iter().map(String::as_str));
    run.assert_free_afterwards(&single);
}

#[test]
fn killing_flockrun_at_random_never_gives_two_holders_etcd() {
    chaos_etcd(&crate::etcd::Cluster::start(1), "chaos");
}

/// The same on a 3-member cluster that speaks only TLS with client certificates.
#[test]
fn killing_flockrun_at_random_never_gives_two_holders_etcd_over_tls() {
    let pki = crate::pki::Pki::new();
    let cluster = crate::etcd::Cluster::start_with(
        3,
        &crate::etcd::Setup {
            tls: Some((&pki, &pki.member)),
            ..crate::etcd::Setup::default()
        },
    );
    chaos_etcd(&cluster, "chaos-tls");
}

/// The PostgreSQL kind, 8 workers (writers and readers): a killed flockrun takes its COMMAND
/// with it, and its connection, which COMMAND inherits, closes only when COMMAND is gone, so
/// the server hands the lock on only after that.
#[test]
fn killing_flockrun_at_random_never_gives_two_holders_postgresql() {
    let pg = crate::postgres::Pg::start();
    let lock = pg.lock("chaos");
    let chaos = Chaos {
        max_pause: Duration::from_millis(300),
        max_kills: 12,
    };
    let mut run = Run::with_lock(scratch(), lock, Some(chaos));
    let write: &[&str] = &["write", "--ttl", "5"];
    let read: &[&str] = &["read", "--ttl", "5"];
    let mut everyone: Vec<(Who<'_>, usize)> =
        (0..6).map(|_| (Who::Flockrun(write, "x"), 15)).collect();
    everyone.extend((0..2).map(|_| (Who::Flockrun(read, "s"), 15)));
    let kills = run.go(&everyone);
    assert!(kills > 0, "the chaos thread never killed anything");
    eprintln!("{kills} flockrun processes killed");
    run.assert_free_afterwards(&["write", "-w", "10"]);
}

/// PostgreSQL through a transaction-pooling PgBouncer with `pooled=1`: writers and readers,
/// no overlap and no lost update.
#[test]
fn postgresql_pooled_locks_through_pgbouncer_under_load() {
    let pg = crate::postgres::Pg::start();
    let bouncer = crate::postgres::Bouncer::start(&pg);
    let mut run = Run::with_lock(scratch(), bouncer.lock("load", "pooled=1"), None);
    let write: &[&str] = &["write"];
    let read: &[&str] = &["read"];
    let mut everyone: Vec<(Who<'_>, usize)> =
        (0..4).map(|_| (Who::Flockrun(write, "x"), 10)).collect();
    everyone.push((Who::Flockrun(read, "s"), 10));
    run.go(&everyone);
}

/// Eight workers on a semaphore of three slots with `kind_args`, flockrun processes killed
/// at random: no more than three holds at any moment, no slot given twice at once (the
/// helper's `slot-I` files), and afterwards all three slots free.
fn slots_chaos(lock_name: &str, kind_args: &[&str], take_args: &[&str]) {
    let run = Run::new(lock_name, true);
    slots_chaos_in(run, kind_args, take_args);
}

/// `slots_chaos` for a prepared run; `try_args` take one slot at once afterwards.
fn slots_chaos_in(mut run: Run, kind_args: &[&str], try_args: &[&str]) {
    run.dwell_ms = Some(3);
    let mut args = kind_args.to_vec();
    args.extend(["--slots", "3"]);
    let everyone: Vec<(Who<'_>, usize)> = (0..8).map(|_| (Who::Flockrun(&args, "n"), 30)).collect();
    let kills = run.go(&everyone);
    assert!(kills > 0, "the chaos thread never killed anything");
    let (holds, _) = read_load_log(&run.work());
    assert!(!holds.is_empty(), "no hold completed");
    // Sweep the holds' starts and ends: the most that were inside at once.
    let mut events: Vec<(i128, i32)> = holds
        .iter()
        .flat_map(|h| [(h.enter, 1), (h.leave, -1)])
        .collect();
    events.sort_unstable();
    let (mut inside, mut most) = (0, 0);
    for (_, step) in events {
        inside += step;
        most = most.max(inside);
    }
    assert!(most <= 3, "{most} holders of a 3-slot semaphore at once");
    eprintln!(
        "{kills} killed, {} holds, at most {most} at once",
        holds.len()
    );
    let work = run.work();
    let work = work.to_str().unwrap();
    wait_until(
        "the commands of killed flockruns to end",
        Instant::now() + PATIENCE,
        || (!any_process_mentions(work)).then_some(()),
    );
    // No slot leaked: three attempts hold all three at once.
    let mut take = try_args.to_vec();
    take.extend(["--slots", "3", &run.lock]);
    let three: Vec<crate::harness::Holder> = (0..3)
        .map(|_| crate::harness::Holder::flockrun(&take))
        .collect();
    drop(three);
}

/// etcd: the semaphore recipe on a 3-member cluster, flockruns killed at random (a killed
/// holder's slot comes back when its lease expires) and one member stopped once the holds
/// have begun.
#[test]
fn an_etcd_semaphore_never_has_more_holders_than_slots_under_chaos_and_a_member_lost() {
    let cluster = std::sync::Arc::new(std::sync::Mutex::new(crate::etcd::Cluster::start(3)));
    let lock = cluster.lock().unwrap().lock("slots");
    let chaos = Chaos {
        max_pause: Duration::from_millis(400),
        max_kills: 8,
    };
    let run = Run::with_lock(scratch(), lock, Some(chaos));
    let log = run.work().join("log");
    let stopper = {
        let cluster = std::sync::Arc::clone(&cluster);
        thread::spawn(move || {
            wait_until("the first holds", Instant::now() + 4 * PATIENCE, || {
                fs::metadata(&log).ok().map(drop)
            });
            let mut cluster = cluster.lock().unwrap();
            let follower = (cluster.leader() + 1) % 3;
            cluster.stop_member(follower);
        })
    };
    slots_chaos_in(
        run,
        &["exec", "--ttl", "2"],
        // Killed holders' leases may still be running out.
        &["exec", "-w", "10", "--ttl", "2"],
    );
    stopper.join().unwrap();
}

#[test]
fn a_kernel_semaphore_never_has_more_holders_than_slots_under_chaos() {
    slots_chaos("k.lock", &["exec"], &["try"]);
}

#[test]
fn a_soft_semaphore_never_has_more_holders_than_slots_under_chaos() {
    slots_chaos("s.lock", &["exec", "--soft"], &["try", "--soft"]);
}

#[test]
fn a_soft_lease_semaphore_never_has_more_holders_than_slots_under_chaos() {
    // A contender killed halfway through a takeover leaves the slot's old marker aside,
    // which keeps the slot held until it has aged for the TTL: wait that long at most.
    slots_chaos(
        "l.lock",
        &["exec", "--soft", "--ttl", "5"],
        &["exec", "-w", "10", "--soft", "--ttl", "5"],
    );
}

/// The Redis kind, 8 workers: a killed flockrun takes its COMMAND with it at once, while its
/// key keeps the lock until it expires, so no kill lets two holders in.
#[test]
fn killing_flockrun_at_random_never_gives_two_holders_redis() {
    let redis = crate::redis::Redis::start();
    let chaos = Chaos {
        max_pause: Duration::from_millis(300),
        max_kills: 10,
    };
    let mut run = Run::with_lock(scratch(), redis.lock("chaos"), Some(chaos));
    // Holds long enough that kills land on holders, not only on waiters.
    run.dwell_ms = Some(20);
    let args: &[&str] = &["exec", "--ttl", "1"];
    let everyone: Vec<(Who<'_>, usize)> = (0..8).map(|_| (Who::Flockrun(args, "x"), 15)).collect();
    let kills = run.go(&everyone);
    assert!(kills > 0, "the chaos thread never killed anything");
    eprintln!("{kills} flockrun processes killed");
    // Keys of killed flockruns may still be running out: wait for them, briefly.
    run.assert_free_afterwards(&["exec", "-w", "10"]);
}
