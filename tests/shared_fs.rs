//! The soft kinds, the kernel kinds and py-filelock on a shared filesystem: the two-host
//! bed of `bed.rs`, with real processes inside each host.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::bed::{Bed, Cache, Host};
use crate::harness::{HOLD_SH, Holder, PATIENCE, child_of, python_with_filelock, wait_until};

/// `flockrun ARGS -- sh -c HOLD_SH` inside `host`, once it holds.
fn hold(bed: &Bed, host: Host, args: &[&str]) -> Holder {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend(["--", "sh", "-c", HOLD_SH].map(OsStr::new));
    bed.hold(host, crate::harness::FLOCKRUN, &all, "ready")
}

#[test]
fn the_bed_has_two_hosts_that_share_files_but_not_kernel_locks() {
    let bed = Bed::up(Cache::Strict);
    for host in [Host::A, Host::B] {
        let out = bed.command(host, "hostname").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host.name());
    }
    // A file written on A is there on B, and on the server's disk.
    let made = bed
        .command(Host::A, "sh")
        .args(["-c", "echo hello > made-on-a"])
        .status()
        .unwrap();
    assert!(made.success());
    let seen = bed
        .command(Host::B, "cat")
        .arg("made-on-a")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout), "hello\n");
    assert!(bed.backing().join("made-on-a").exists());
    // flock(1) on A does not keep flock(1) on B out: each host has its own lock table.
    let holder = bed.hold(
        Host::A,
        "flock",
        &[
            OsStr::new("k.lock"),
            OsStr::new("sh"),
            OsStr::new("-c"),
            OsStr::new(HOLD_SH),
        ],
        "ready",
    );
    let other_host = bed
        .command(Host::B, "flock")
        .args(["-n", "k.lock", "true"])
        .status()
        .unwrap();
    assert!(other_host.success(), "flock crossed hosts");
    let same_host = bed
        .command(Host::A, "flock")
        .args(["-n", "k.lock", "true"])
        .status()
        .unwrap();
    assert_eq!(
        same_host.code(),
        Some(1),
        "flock did not exclude on one host"
    );
    drop(holder);
    // No RENAME_EXCHANGE, as on NFS.
    let refused = bed
        .command(Host::A, "python3")
        .args([
            "-c",
            "import ctypes, os, sys\n\
             open('x1','w').close(); open('x2','w').close()\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             r = libc.renameat2(-100, b'x1', -100, b'x2', 2)\n\
             sys.exit(0 if r == -1 and ctypes.get_errno() == 22 else 1)",
        ])
        .status()
        .unwrap();
    assert!(refused.success(), "RENAME_EXCHANGE was not refused");
    // The monotonic clocks disagree by the offset.
    let uptime = |host| {
        let out = bed
            .command(host, "cat")
            .arg("/proc/uptime")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap()
    };
    assert!(uptime(Host::B) - uptime(Host::A) > 999_000.0);
}

#[test]
fn a_crashed_host_takes_all_its_processes_with_it() {
    let mut bed = Bed::up(Cache::Default);
    let holder = hold(&bed, Host::A, &["exec", "--soft", "c.lock"]);
    let flockrun = child_of(holder.pid());
    bed.crash(Host::A);
    crate::harness::wait_until_exited(flockrun, "flockrun to die with its host");
    // Its marker stays, as a crashed NFS client's files do.
    assert!(bed.view(Host::B).join("c.lock").exists());
    bed.boot(Host::A);
    let out = bed.command(Host::A, "hostname").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "host-a");
}

/// Holds a py-filelock lock on a shared path: `lease TTL` (`SoftFileLease`) or `soft`
/// (`SoftFileLock`); prints `STARTED`, then `HELD`, and releases when stdin closes.
pub const PY_HOLD: &str = r#"
import sys, filelock
kind, path = sys.argv[1], sys.argv[2]
if kind == "lease":
    lock = filelock.SoftFileLease(path, lease_duration=float(sys.argv[3]))
else:
    lock = filelock.SoftFileLock(path)
print("STARTED", flush=True)
with lock:
    print("HELD", flush=True)
    sys.stdin.read()
"#;

/// One bounded py-filelock attempt: prints `ACQUIRED` or `TIMEOUT`.
pub const PY_TRY: &str = r#"
import sys, filelock
kind, path, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
if kind == "lease":
    lock = filelock.SoftFileLease(path, lease_duration=float(sys.argv[4]))
else:
    lock = filelock.SoftFileLock(path)
try:
    lock.acquire(timeout=timeout)
    lock.release()
    print("ACQUIRED")
except filelock.Timeout:
    print("TIMEOUT")
"#;

fn py_hold(bed: &Bed, host: Host, version: &str, args: &[&str]) -> Holder {
    let python = python_with_filelock(version);
    let mut all: Vec<&OsStr> = vec![OsStr::new("-c"), OsStr::new(PY_HOLD)];
    all.extend(args.iter().map(OsStr::new));
    let mut holder = bed.hold(host, python, &all, "STARTED");
    holder.expect_line("HELD");
    holder
}

fn py_try(bed: &Bed, host: Host, version: &str, args: &[&str]) -> String {
    let out = bed
        .command(host, python_with_filelock(version))
        .args(["-c", PY_TRY])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn soft_leases_exclude_py_filelock_both_ways_across_hosts() {
    let bed = Bed::up(Cache::Default);
    for (holder_host, other) in [(Host::A, Host::B), (Host::B, Host::A)] {
        // flockrun holds on one host: py-filelock and flockrun on the other wait.
        let held = hold(
            &bed,
            holder_host,
            &["exec", "--soft", "--ttl", "3", "l.lock"],
        );
        assert_eq!(
            py_try(&bed, other, "4.2.11", &["lease", "l.lock", "0.3", "3"]),
            "TIMEOUT"
        );
        let out = bed
            .flockrun(
                other,
                &["try", "--soft", "--ttl", "3", "l.lock", "--", "true"],
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains(&format!("on host {}", holder_host.name())),
            "{}",
            stderr_of(&out)
        );
        assert!(held.release().success());
        // py-filelock holds: flockrun on the other host waits, then gets it.
        let py = py_hold(&bed, holder_host, "4.2.11", &["lease", "l.lock", "3"]);
        let out = bed
            .flockrun(
                other,
                &["try", "--soft", "--ttl", "3", "l.lock", "--", "true"],
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
        drop(py);
        let out = bed
            .flockrun(
                other,
                &[
                    "exec", "-w", "10", "--soft", "--ttl", "3", "l.lock", "--", "true",
                ],
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
}

/// Seconds since the epoch printed by `date +%s.%N` inside a host: the wall clock, which
/// every host shares.
fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A flockrun inside `host` that waits for the lease on `lock` and prints the wall-clock time
/// at which its COMMAND started.
fn waiting_contender(bed: &Bed, host: Host, lock: &str, ttl: &str) -> Child {
    bed.flockrun(
        host,
        &[
            "exec", "-w", "60", "--soft", "--ttl", ttl, lock, "--", "date", "+%s.%N",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

fn started_at(child: Child) -> f64 {
    let out = wait_for_output(child);
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn wait_for_output(mut child: Child) -> Output {
    crate::harness::wait_with_deadline(&mut child);
    child.wait_with_output().unwrap()
}

#[test]
fn a_lease_whose_host_crashed_is_taken_over_by_the_other_host_within_ttl() {
    // Strict caching: what bounds the takeover is then the TTL alone (an attribute cache
    // adds its own time, see README.md). A whole TTL and a fractional one, as py-filelock
    // users give them.
    let mut bed = Bed::up(Cache::Strict);
    for (holder, ttl) in [
        ("flockrun", "2"),
        ("py-filelock", "2"),
        ("flockrun", "1.5"),
        ("py-filelock", "1.5"),
    ] {
        let lock = format!("c-{ttl}.lock");
        let held = match holder {
            "flockrun" => hold(&bed, Host::A, &["exec", "--soft", "--ttl", ttl, &lock]),
            _ => py_hold(&bed, Host::A, "4.2.11", &["lease", &lock, ttl]),
        };
        let seconds: f64 = ttl.parse().unwrap();
        let waiter = waiting_contender(&bed, Host::B, &lock, ttl);
        // The waiter watches the live lease for a while first.
        let watched_until = Instant::now() + Duration::from_secs(3);
        wait_until(
            "the contender to watch the lease",
            watched_until + PATIENCE,
            || (Instant::now() >= watched_until).then_some(()),
        );
        let crashed = wall_now();
        bed.crash(Host::A);
        drop(held);
        let took = started_at(waiter) - crashed;
        eprintln!("{holder} (TTL {ttl}): taken over {took:.3}s after the crash");
        // The last renewal came at most TTL/3 before the crash.
        assert!(
            took > seconds * 2.0 / 3.0 - 0.1 && took < seconds + 0.5,
            "{holder}'s lease (TTL {ttl}) taken over {took:.2}s after its host crashed"
        );
        bed.boot(Host::A);
        // Nothing is left of the takeover.
        let left: Vec<String> = fs::read_dir(bed.backing())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".break.") || n.contains(".takeover"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    // py-filelock itself never recovers a crashed host's lease here (it needs
    // RENAME_EXCHANGE), which is why flockrun must.
    let held = hold(&bed, Host::A, &["exec", "--soft", "--ttl", "2", "p.lock"]);
    bed.crash(Host::A);
    drop(held);
    assert_eq!(
        py_try(&bed, Host::B, "4.2.11", &["lease", "p.lock", "3.5", "2"]),
        "TIMEOUT"
    );
}

#[test]
fn a_live_lease_held_past_its_ttl_is_not_taken_over_even_through_attribute_caches() {
    // TTL/3 + the attribute cache must stay under the TTL (README.md): 3 s with libfuse's
    // 1 s cache, 6 s with the NFS-like 3 s one.
    // And a fractional TTL, as py-filelock users give them, against py-filelock too.
    for (cache, ttl) in [
        (Cache::Default, "3"),
        (Cache::Nfs, "6"),
        (Cache::Default, "2.5"),
    ] {
        let bed = Bed::up(cache);
        let held = hold(
            &bed,
            Host::A,
            &["exec", "--soft", "--ttl", ttl, "live.lock"],
        );
        let wait = (2.0 * ttl.parse::<f64>().unwrap() + 1.0).to_string();
        let out = bed
            .flockrun(
                Host::B,
                &[
                    "exec",
                    "-w",
                    &wait,
                    "--soft",
                    "--ttl",
                    ttl,
                    "live.lock",
                    "--",
                    "true",
                ],
            )
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(75),
            "{cache:?}: {}",
            stderr_of(&out)
        );
        if ttl.contains('.') {
            assert_eq!(
                py_try(&bed, Host::B, "4.2.11", &["lease", "live.lock", &wait, ttl]),
                "TIMEOUT",
                "{cache:?}: py-filelock took over a live lease"
            );
        }
        assert!(
            held.release().success(),
            "{cache:?}: the holder lost its lease"
        );
        if ttl.contains('.') {
            // And the other way: a live py-filelock lease, a flockrun contender.
            let held = py_hold(&bed, Host::A, "4.2.11", &["lease", "py-live.lock", ttl]);
            let out = bed
                .flockrun(
                    Host::B,
                    &[
                        "exec",
                        "-w",
                        &wait,
                        "--soft",
                        "--ttl",
                        ttl,
                        "py-live.lock",
                        "--",
                        "true",
                    ],
                )
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
            drop(held);
        }
    }
}

#[test]
fn a_hung_file_server_stops_the_holders_command_before_the_other_host_takes_over() {
    // A whole TTL and a fractional one.
    for ttl in ["3", "1.5"] {
        hung_file_server_case(ttl);
    }
}

fn hung_file_server_case(ttl: &str) {
    let bed = Bed::up(Cache::Strict);
    let mut held = bed.hold(
        Host::A,
        crate::harness::FLOCKRUN,
        &[
            "exec",
            "--soft",
            "--ttl",
            ttl,
            "h.lock",
            "--",
            "sh",
            "-c",
            "(sleep 1004 >/dev/null 2>&1 &); echo ready; exec sleep 1000",
        ]
        .map(OsStr::new),
        "ready",
    );
    let command = child_of(child_of(held.pid()));
    // "ready" can come before the background sleep has exec'd: wait for it to show.
    wait_until(
        "the background sleep to start",
        Instant::now() + PATIENCE,
        || (crate::harness::processes_running("sleep 1004").len() == 1).then_some(()),
    );
    let waiter = waiting_contender(&bed, Host::B, "h.lock", ttl);
    bed.freeze(Host::A);
    let status = crate::harness::wait_with_deadline(&mut held.child);
    let holder_gone = wall_now();
    assert_eq!(status.code(), Some(79), "the holder's status");
    crate::harness::wait_until_exited(command, "the holder's COMMAND");
    // What COMMAND left running in the background was stopped with it.
    assert!(crate::harness::processes_running("sleep 1004").is_empty());
    let taken = started_at(waiter);
    assert!(
        taken > holder_gone,
        "the other host took the lease {:.2}s before the hung holder had stopped",
        holder_gone - taken
    );
    bed.thaw(Host::A);
    let (_, stderr) = held.release_with_stderr();
    let _ = stderr;
}

#[test]
fn a_crashed_hosts_lease_is_taken_over_whichever_host_runs_ahead() {
    // The hosts' monotonic clocks disagree by 10^6 s one way, then the other: the takeover
    // only ever compares a contender's clock with itself.
    for offsets in [[0, 1_000_000], [2_000_000, 0]] {
        let mut bed = Bed::up_with(Cache::Strict, offsets);
        let held = hold(&bed, Host::A, &["exec", "--soft", "--ttl", "2", "k.lock"]);
        let waiter = waiting_contender(&bed, Host::B, "k.lock", "2");
        let crashed = wall_now();
        bed.crash(Host::A);
        drop(held);
        let took = started_at(waiter) - crashed;
        assert!(
            took < 2.5,
            "{offsets:?}: taken over {took:.2}s after the crash"
        );
    }
}

/// A lease marker as py-filelock writes it, for a process on `host`.
fn lease_marker(pid: u32, host: &str, ttl: &str) -> String {
    format!(
        "filelock/2\npid={pid}\nhost={host}\nmode=lease\ntoken=0123456789abcdef0123456789abcdef\n\
         duration={ttl}.0\n"
    )
}

#[test]
fn contenders_on_both_hosts_race_for_one_expired_lease_and_one_holds_at_a_time() {
    let bed = Bed::up(Cache::Strict);
    let work = crate::harness::scratch();
    let helper = crate::harness::occupy_helper();
    for round in 0..3 {
        let lock = format!("race{round}.lock");
        // An expired lease of a host that is gone: every contender judges it at once.
        fs::write(
            bed.backing().join(&lock),
            lease_marker(4242, "gone-host", "2"),
        )
        .unwrap();
        let mut contenders = Vec::new();
        for host in [Host::A, Host::B, Host::A, Host::B, Host::A, Host::B] {
            let mut command = bed.flockrun(
                host,
                &["exec", "-w", "60", "--soft", "--ttl", "2", &lock, "--"],
            );
            command
                .arg(&helper)
                .arg(work.path())
                .arg("x")
                .env("OCCUPY_HOSTS", "1");
            contenders.push(command.spawn().unwrap());
        }
        // py-filelock contenders too: they cannot take an expired lease over here, but they
        // race for the path once it is free.
        let mut py = Vec::new();
        for host in [Host::A, Host::B] {
            let mut command = bed.command(host, python_with_filelock("4.2.11"));
            command.args(["-c", PY_TRY, "lease", &lock, "60", "2"]);
            py.push(command.stdout(Stdio::piped()).spawn().unwrap());
        }
        for child in contenders {
            let out = wait_for_output(child);
            assert!(out.status.success(), "round {round}: {}", stderr_of(&out));
        }
        for child in py {
            let out = wait_for_output(child);
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ACQUIRED");
        }
    }
    let (holds, gone) = crate::harness::read_load_log(work.path());
    assert_eq!(holds.len(), 18);
    crate::harness::assert_no_overlap(&holds, &gone);
    assert_no_lost_update(&holds, work.path());
    let left: Vec<String> = fs::read_dir(bed.backing())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".break.") || n.contains(".takeover") || n.starts_with("race"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// No update lost: no value written twice, and the counter never went back below the
/// highest value a completed hold wrote (a killed holder may have written one more).
fn assert_no_lost_update(holds: &[crate::harness::Hold], work: &std::path::Path) {
    let counter: u64 = fs::read_to_string(work.join("counter"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_counter_kept(holds, counter);
}

/// As `assert_no_lost_update`, with the counter's final value read by the caller.
pub fn assert_counter_kept(holds: &[crate::harness::Hold], counter: u64) {
    assert_no_value_written_twice(holds);
    let highest = holds.iter().filter_map(|h| h.wrote).max().unwrap();
    assert!(
        counter >= highest,
        "the counter went back: {counter} < {highest}"
    );
}

/// Two holds that both wrote the same counter value read it at the same time: an update
/// was lost.
fn assert_no_value_written_twice(holds: &[crate::harness::Hold]) {
    let mut written: Vec<u64> = holds.iter().filter_map(|h| h.wrote).collect();
    written.sort_unstable();
    let twice: Vec<&[u64]> = written.windows(2).filter(|w| w[0] == w[1]).collect();
    assert!(
        twice.is_empty(),
        "lost updates: values written twice {twice:?}"
    );
}

#[test]
fn a_takeover_guard_left_by_a_dead_breaker_does_not_block_the_lock() {
    let bed = Bed::up(Cache::Strict);
    // A breaker that died on host A holding the guard, over an expired lease of a gone host.
    fs::write(
        bed.backing().join("g.lock"),
        lease_marker(4242, "gone-host", "2"),
    )
    .unwrap();
    let dead = bed
        .command(Host::A, "sh")
        .args(["-c", "echo $$"])
        .output()
        .unwrap();
    let dead_pid = String::from_utf8_lossy(&dead.stdout).trim().to_owned();
    let host = host_name_in(&bed, Host::A);
    fs::write(
        bed.backing().join("g.lock.takeover"),
        format!("{dead_pid}\n{host}\n"),
    )
    .unwrap();
    let t = Instant::now();
    let out = bed
        .flockrun(
            Host::A,
            &[
                "exec", "-w", "10", "--soft", "--ttl", "2", "g.lock", "--", "true",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The lease's TTL, not the guard's 10 s: its breaker's death was proved.
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    assert!(!bed.backing().join("g.lock.takeover").exists());
}

#[test]
fn the_classic_soft_lock_reclaims_a_dead_holder_on_its_host_and_never_guesses_across() {
    let bed = Bed::up(Cache::Default);
    let held = hold(&bed, Host::A, &["exec", "--soft", "s.lock"]);
    let flockrun = child_of(held.pid());
    crate::harness::signal(flockrun, nix::sys::signal::Signal::SIGKILL);
    crate::harness::wait_until_exited(flockrun, "the killed holder");
    drop(held);
    // On the other host its pid means nothing: never broken, and the message says what to do.
    let out = bed
        .flockrun(Host::B, &["try", "--soft", "s.lock", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    let message = stderr_of(&out);
    assert!(
        message.contains("on host host-a (pid namespace"),
        "{message}"
    );
    assert!(message.contains("--soft --ttl"), "{message}");
    // On its own host its death is provable: taken over at once, without RENAME_EXCHANGE.
    let out = bed
        .flockrun(Host::A, &["try", "--soft", "s.lock", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!bed.view(Host::A).join("s.lock").exists());
}

#[test]
fn classic_soft_locks_exclude_py_filelock_across_hosts() {
    let bed = Bed::up(Cache::Default);
    for version in crate::harness::PY_FILELOCK_VERSIONS {
        let held = hold(&bed, Host::A, &["exec", "--soft", "p.lock"]);
        assert_eq!(
            py_try(&bed, Host::B, version, &["soft", "p.lock", "0.3"]),
            "TIMEOUT"
        );
        drop(held);
        let py = py_hold(&bed, Host::B, version, &["soft", "p.lock"]);
        let out = bed
            .flockrun(Host::A, &["try", "--soft", "p.lock", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(75),
            "{version}: {}",
            stderr_of(&out)
        );
        drop(py);
        assert_eq!(
            py_try(&bed, Host::A, version, &["soft", "p.lock", "5"]),
            "ACQUIRED"
        );
    }
}

/// The host name py-filelock 4.2.11 (and flockrun) write inside `host`.
fn host_name_in(bed: &Bed, host: Host) -> String {
    let out = bed
        .command(host, python_with_filelock("4.2.11"))
        .args([
            "-c",
            "from filelock._identity import host_name; print(host_name())",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn no_hold_after_the_crash(bed: &Bed) -> String {
    format!(
        "no hold on host A within {PATIENCE:?} of host B's crash (TTL 3 s); the server's disk \
         holds:\n{}",
        describe_dir(&bed.backing())
    )
}

/// Every entry of `dir` with its age and, for a small file, its content: what a failed wait
/// on a soft lock left to read.
fn describe_dir(dir: &std::path::Path) -> String {
    let mut text = String::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return format!("({} cannot be read)", dir.display());
    };
    for entry in entries.flatten() {
        let meta = entry.metadata().ok();
        let age = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        let content = meta
            .filter(|m| m.is_file() && m.len() < 4096)
            .and_then(|_| fs::read_to_string(entry.path()).ok())
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  {} (modified {age:?} ago) {content:?}",
            entry.file_name().to_string_lossy()
        );
    }
    text
}

#[test]
fn chaos_on_two_hosts_with_kills_and_a_host_crash_ends_with_no_overlap_and_no_lost_update() {
    const WORKERS: usize = 4;
    const HOLDS: usize = 50;
    let mut bed = Bed::up(Cache::Default);
    let work = crate::harness::scratch();
    let helper = crate::harness::occupy_helper();
    // A flockrun killed by the chaos ends with 137; anything else fails the worker.
    let script = format!(
        "for i in $(seq {HOLDS}); do OCCUPY_HOSTS=1 {} exec --soft --ttl 3 chaos.lock -- \
         {} {} x --after-kill; rc=$?; [ $rc = 0 ] || [ $rc = 137 ] || exit $rc; done",
        crate::harness::FLOCKRUN,
        helper.display(),
        work.path().display()
    );
    let mut workers: Vec<(Host, Child)> = [Host::A, Host::B]
        .into_iter()
        .flat_map(|host| std::iter::repeat_n(host, WORKERS))
        .map(|host| {
            (
                host,
                bed.command(host, "bash")
                    .args(["-c", &script])
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let log = work.path().join("log");
    let holds_logged = || fs::read_to_string(&log).unwrap_or_default().lines().count();
    // A third of the way in, one more flockrun on host B takes the lease and holds it,
    // and host B crashes with it: host A's workers, with most of their holds to go, must
    // take the lease over once it has stayed unrenewed for the TTL.
    wait_until("the first holds", Instant::now() + 4 * PATIENCE, || {
        (holds_logged() >= WORKERS * HOLDS * 2 / 3).then_some(())
    });
    let last_word = hold(
        &bed,
        Host::B,
        &["exec", "--soft", "--ttl", "3", "chaos.lock"],
    );
    let crashed = Instant::now();
    let before_crash = holds_logged();
    bed.crash(Host::B);
    drop(last_word);
    crate::harness::wait_until_or_explain(
        Instant::now() + PATIENCE,
        || (holds_logged() > before_crash).then_some(()),
        || no_hold_after_the_crash(&bed),
    );
    let taken_over = crashed.elapsed();
    assert!(
        taken_over > Duration::from_secs(2),
        "host B's lease was taken over {taken_over:?} after the crash, before its TTL"
    );
    // Then random kills on host A.
    let kills = kill_flockruns_between_holds(&bed, "chaos.lock", 12, &holds_logged);
    for (host, child) in &mut workers {
        let status = crate::harness::wait_with_deadline_of(child, 12 * PATIENCE);
        match host {
            Host::A => assert!(status.success(), "a worker on host A failed: {status}"),
            // Killed with its host (nsenter passes the SIGKILL on), or done before the crash.
            Host::B => assert!(
                status.success()
                    || std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
                "a worker on host B failed: {status}"
            ),
        }
    }
    let (holds, gone) = crate::harness::read_load_log(work.path());
    eprintln!(
        "{} holds, {kills} kills, {} found their predecessor gone, host B's lease taken \
         over {taken_over:?} after its crash",
        holds.len(),
        gone.len(),
    );
    // Host A's workers finished every hold that was not killed.
    let on_a = holds
        .iter()
        .filter(|h| h.pid.starts_with(Host::A.name()))
        .count();
    assert!(
        on_a >= WORKERS * HOLDS - kills,
        "only {on_a} holds on host A"
    );
    crate::harness::assert_no_overlap(&holds, &gone);
    assert_no_lost_update(&holds, work.path());
    // The lock is still usable: whatever the kills left behind is taken over.
    let out = bed
        .flockrun(
            Host::A,
            &[
                "exec",
                "-w",
                "30",
                "--soft",
                "--ttl",
                "3",
                "chaos.lock",
                "--",
                "true",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// The flockrun processes (on any host) working on `lock`.
/// The flockruns working on `lock` in `bed` (not in another test's bed: they run in
/// this bed's shared directory).
fn flockruns_on(bed: &Bed, lock: &str) -> Vec<i32> {
    let here = bed.shared();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let exe = fs::read_link(e.path().join("exe")).ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let cwd = fs::read_link(e.path().join("cwd")).ok()?;
            (exe == std::path::Path::new(crate::harness::FLOCKRUN)
                && cwd == here
                && String::from_utf8_lossy(&cmdline).contains(lock))
            .then_some(pid)
        })
        .collect()
}

/// For a test that saw the lock stop changing hands: the files of `lock` on the server's
/// disk with their contents, every process working on it with what it waits in, and
/// what `flockrun status` says from host A.
fn stalled_lock_report(bed: &Bed, lock: &str) -> String {
    let mut report = String::new();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "for f in $(find . -path \"./$1*\" | sort); do \
             stat -c '%n %F %s bytes, mtime %y, inode %i' \"$f\"; \
             [ -f \"$f\" ] && [ $(stat -c %s \"$f\") -lt 512 ] && sed 's/^/    /' \"$f\"; \
             done; true",
        )
        .args(["sh", lock])
        .current_dir(bed.backing())
        .output()
        .unwrap();
    report.push_str(&String::from_utf8_lossy(&out.stdout));
    for entry in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // The flockruns themselves, not the worker loops that name the lock too.
        if !cmdline.contains(lock)
            || cmdline.starts_with("bash -c")
            || cmdline.starts_with("nsenter")
        {
            continue;
        }
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map_or("?", |(_, rest)| rest.trim());
        let state = state.split_whitespace().next().unwrap_or("?");
        let wchan = fs::read_to_string(entry.path().join("wchan")).unwrap_or_default();
        let threads: Vec<String> = fs::read_dir(entry.path().join("task"))
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .map(|t| fs::read_to_string(t.path().join("wchan")).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let children =
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let _ = writeln!(
            report,
            "pid {pid} {state} in {wchan} (threads in {threads:?}), children [{}]: {cmdline}",
            children.trim()
        );
    }
    // An idle soft read/write lock has no file at LOCK itself to tell its kind by.
    let status: &[&str] = if lock.contains("srw") {
        &["status", "--kind", "soft-rw", lock]
    } else {
        &["status", lock]
    };
    if let Ok(out) = bed.flockrun(Host::A, status).output() {
        report.push_str(&String::from_utf8_lossy(&out.stdout));
        report.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    report
}

fn has_child(pid: i32) -> bool {
    !fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .trim()
        .is_empty()
}

#[test]
fn a_file_server_that_is_gone_costs_the_holder_its_lease_with_79() {
    let mut bed = Bed::up(Cache::Strict);
    let mut held = hold(&bed, Host::A, &["exec", "--soft", "--ttl", "2", "cut.lock"]);
    let waiter = waiting_contender(&bed, Host::B, "cut.lock", "2");
    let cut = wall_now();
    bed.cut(Host::A);
    let status = crate::harness::wait_with_deadline(&mut held.child);
    let holder_gone = wall_now();
    assert_eq!(status.code(), Some(79));
    assert!(
        holder_gone - cut < 2.0,
        "the holder noticed after {:.2}s",
        holder_gone - cut
    );
    assert!(started_at(waiter) > holder_gone);
}

/// SIGKILLs `wanted` flockruns working on `lock`, mostly holders, letting a few holds pass
/// between kills; returns how many it killed.
fn kill_flockruns_between_holds(
    bed: &Bed,
    lock: &str,
    wanted: usize,
    holds_logged: &dyn Fn() -> usize,
) -> usize {
    let mut seed = u64::from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    ) | 1;
    eprintln!("chaos seed {seed}");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut kills = 0;
    while kills < wanted {
        let before = holds_logged();
        crate::harness::wait_until_or_explain(
            Instant::now() + 4 * PATIENCE,
            || (holds_logged() >= before + 3).then_some(()),
            || {
                format!(
                    "no hold for {:?} after {kills} kills; what the lock looked like:\n{}",
                    4 * PATIENCE,
                    stalled_lock_report(bed, lock)
                )
            },
        );
        // Mostly holders (a flockrun with COMMAND under it), sometimes a waiter.
        let all = flockruns_on(bed, lock);
        let holding: Vec<i32> = all.iter().copied().filter(|p| has_child(*p)).collect();
        let pool = if next() % 4 == 0 || holding.is_empty() {
            all
        } else {
            holding
        };
        if pool.is_empty() {
            continue;
        }
        let victim = pool[usize::try_from(next()).unwrap_or(0) % pool.len()];
        if nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok()
        {
            kills += 1;
        }
    }
    kills
}

#[test]
fn kernel_locks_on_the_bed_warn_that_other_hosts_do_not_see_them() {
    let bed = Bed::up(Cache::Strict);
    let _held = hold(&bed, Host::A, &["exec", "k.lock"]);
    let _held_ofd = hold(&bed, Host::A, &["exec", "--fcntl", "o.lock"]);
    // Host A's locks do not keep B out (the bed's first test shows the same of flock(1)), and
    // B is told so.
    for (lock, args) in [
        ("k.lock", &["try", "k.lock", "--", "true"][..]),
        ("o.lock", &["try", "--fcntl", "o.lock", "--", "true"][..]),
    ] {
        let out = bed.flockrun(Host::B, args).output().unwrap();
        let stderr = stderr_of(&out);
        assert!(out.status.success(), "{lock}: {stderr}");
        assert_eq!(stderr.matches("warning:").count(), 1, "{lock}: {stderr}");
        for needed in [
            lock,
            "fuse mount of",
            "FUSE keeps kernel locks on the host",
            "--soft --ttl",
            "--refuse-host-local",
        ] {
            assert!(stderr.contains(needed), "{lock}: {needed:?} in {stderr}");
        }
        // -q keeps it quiet.
        let quiet = [&args[..1], &["-q"], &args[1..]].concat();
        let out = bed.flockrun(Host::B, &quiet).output().unwrap();
        assert!(out.status.success());
        assert_eq!(stderr_of(&out), "", "{lock} with -q");
    }
    // Made an error by the option or the variable: 65, COMMAND not run, nothing left behind.
    let refusals = [
        (vec!["try", "--refuse-host-local"], None),
        (vec!["exec", "-w", "5"], Some("1")),
        (vec!["exec", "--fcntl"], Some("true")),
    ];
    for (options, variable) in refusals {
        let mut args = options.clone();
        args.extend(["k.lock", "--", "touch", "ran"]);
        let mut command = bed.flockrun(Host::B, &args);
        if let Some(value) = variable {
            command.env("FLOCKRUN_REFUSE_HOST_LOCAL", value);
        }
        let out = command.output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(65), "{options:?}: {stderr}");
        assert!(
            stderr.contains("refused (--refuse-host-local)") && stderr.contains("k.lock"),
            "{stderr}"
        );
        assert!(
            !bed.backing().join("ran").exists(),
            "{options:?} ran COMMAND"
        );
    }
    // A false value of the variable leaves it a warning.
    let out = bed
        .flockrun(Host::B, &["try", "k.lock", "--", "true"])
        .env("FLOCKRUN_REFUSE_HOST_LOCAL", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // status on B says the lock is free here but cannot speak for other hosts.
    let out = bed
        .flockrun(Host::B, &["status", "k.lock"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("a holder on another host does not show here")
            && text.contains("--soft --ttl"),
        "{text}"
    );
    let out = bed
        .flockrun(Host::B, &["status", "--json", "o.lock"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = report["locks"][0]["warnings"].to_string();
    assert!(warnings.contains("another host"), "{report}");
    // On host A, where the holders are, status shows them and still warns.
    let out = bed
        .flockrun(Host::A, &["status", "k.lock"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("another host"), "{text}");
}

// The soft reader/writer lock across hosts.

/// `SoftReadWriteLock` attempts and holds inside a host, by py-filelock `version`.
fn py_srw_try_in(bed: &Bed, host: Host, version: &str, mode: &str, lock: &str) -> String {
    let out = bed
        .command(host, python_with_filelock(version))
        .args(["-c", crate::soft_rw::PY_SRW_TRY, mode, lock, "3", "0.3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn py_srw_hold_in(
    bed: &Bed,
    host: Host,
    version: &str,
    mode: &str,
    lock: &str,
    ttl: &str,
) -> Holder {
    let python = python_with_filelock(version);
    let args = ["-c", crate::soft_rw::PY_SRW_HOLD, mode, lock, ttl].map(OsStr::new);
    let mut holder = bed.hold(host, python, &args, "STARTED");
    holder.expect_line_containing("HELD");
    holder
}

#[test]
fn soft_rw_locks_exclude_py_filelock_of_both_layouts_across_hosts() {
    let bed = Bed::up(Cache::Default);
    let flockrun_try = |host: Host, mode: &str| {
        bed.flockrun(
            host,
            &[mode, "-n", "--soft", "--ttl", "3", "rw.lock", "--", "true"],
        )
        .output()
        .unwrap()
    };
    for (here, there) in [(Host::A, Host::B), (Host::B, Host::A)] {
        // A flockrun writer here keeps out both Pythons and flockrun there.
        let held = hold(&bed, here, &["write", "--soft", "--ttl", "3", "rw.lock"]);
        for version in ["3.28.0", "4.2.11"] {
            for mode in ["read", "write"] {
                assert_eq!(
                    py_srw_try_in(&bed, there, version, mode, "rw.lock"),
                    "TIMEOUT",
                    "{version} {mode} on {there:?}"
                );
            }
        }
        let out = flockrun_try(there, "read");
        assert_eq!(out.status.code(), Some(75));
        assert!(
            stderr_of(&out).contains(&format!("on host {}", here.name())),
            "{}",
            stderr_of(&out)
        );
        assert!(held.release().success());
        // A flockrun reader here shares with readers there, not with writers.
        let held = hold(&bed, here, &["read", "--soft", "--ttl", "3", "rw.lock"]);
        for version in ["3.28.0", "4.2.11"] {
            assert!(py_srw_try_in(&bed, there, version, "read", "rw.lock").starts_with("ACQUIRED"));
            assert_eq!(
                py_srw_try_in(&bed, there, version, "write", "rw.lock"),
                "TIMEOUT"
            );
        }
        assert!(held.release().success());
        // A Python writer of either layout here keeps flockrun out there.
        for version in ["3.28.0", "4.2.11"] {
            let py = py_srw_hold_in(&bed, here, version, "write", "rw.lock", "3");
            for mode in ["read", "write"] {
                assert_eq!(
                    flockrun_try(there, mode).status.code(),
                    Some(75),
                    "{version}"
                );
            }
            drop(py);
            assert_eq!(
                flockrun_try(there, "write").status.code(),
                Some(0),
                "{version}"
            );
        }
    }
}

#[test]
fn a_soft_rw_holder_whose_host_crashed_is_evicted_within_the_threshold() {
    let mut bed = Bed::up(Cache::Strict);
    // A whole threshold and a fractional one, as py-filelock users give them.
    for (holder, mode, ttl) in [
        ("flockrun", "write", "2"),
        ("flockrun", "read", "2"),
        ("4.2.11", "write", "2"),
        ("3.28.0", "write", "2"),
        ("flockrun", "write", "1.5"),
        ("4.2.11", "write", "1.5"),
        ("3.28.0", "write", "1.5"),
    ] {
        let seconds: f64 = ttl.parse().unwrap();
        let held = match holder {
            "flockrun" => hold(&bed, Host::A, &[mode, "--soft", "--ttl", ttl, "h.lock"]),
            version => py_srw_hold_in(&bed, Host::A, version, mode, "h.lock", ttl),
        };
        let waiter = bed
            .flockrun(
                Host::B,
                &[
                    "write", "-w", "60", "--soft", "--ttl", ttl, "h.lock", "--", "date", "+%s.%N",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The waiter watches the live holder for a while first.
        let watched_until = Instant::now() + Duration::from_secs(3);
        wait_until("the waiter to watch", watched_until + PATIENCE, || {
            (Instant::now() >= watched_until).then_some(())
        });
        let crashed = wall_now();
        bed.crash(Host::A);
        drop(held);
        let took = started_at(waiter) - crashed;
        eprintln!("{holder} {mode} (TTL {ttl}): evicted {took:.3}s after its host crashed");
        // The last heartbeat came at most TTL/3 before the crash.
        assert!(
            took > seconds * 2.0 / 3.0 - 0.1 && took < seconds + 0.5,
            "{holder} {mode} (TTL {ttl}): evicted {took:.2}s after its host crashed"
        );
        bed.boot(Host::A);
    }
}

#[test]
fn a_live_soft_rw_holder_is_not_evicted_through_attribute_caches_or_skewed_clocks() {
    // NFS-like caches of 3 s and a threshold above 1.5 times that; host B's monotonic clock
    // a million seconds ahead (the bed's default).
    let bed = Bed::up(Cache::Nfs);
    let held = hold(
        &bed,
        Host::A,
        &["write", "--soft", "--ttl", "5", "live.lock"],
    );
    let out = bed
        .flockrun(
            Host::B,
            &[
                "write",
                "-w",
                "12",
                "--soft",
                "--ttl",
                "5",
                "live.lock",
                "--",
                "true",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    assert!(held.release().success());
}

#[test]
fn chaos_of_soft_rw_readers_and_writers_on_two_hosts_ends_with_no_overlap_and_no_lost_update() {
    const LOCK: &str = "srw-mayhem.lock";
    let mut bed = Bed::up(Cache::Default);
    let work = crate::harness::scratch();
    let helper = crate::harness::occupy_helper();
    let worker = |role: &str, holds: usize| {
        let mode = if role == "x" { "write" } else { "read" };
        format!(
            "for i in $(seq {holds}); do OCCUPY_HOSTS=1 OCCUPY_DWELL_MS=2 {} {mode} --soft \
             --ttl 2 {LOCK} -- {} {} {role} --after-kill; rc=$?; [ $rc = 0 ] || \
             [ $rc = 137 ] || exit $rc; done",
            crate::harness::FLOCKRUN,
            helper.display(),
            work.path().display()
        )
    };
    let mut workers: Vec<(Host, Child)> = Vec::new();
    for host in [Host::A, Host::B] {
        for role in ["x", "x", "s", "s"] {
            let child = bed
                .command(host, "bash")
                .args(["-c", &worker(role, 25)])
                .spawn()
                .unwrap();
            workers.push((host, child));
        }
    }
    let log = work.path().join("log");
    let holds_logged = || fs::read_to_string(&log).unwrap_or_default().lines().count();
    let kills = kill_flockruns_between_holds(&bed, LOCK, 8, &holds_logged);
    // Then host B crashes with whatever it holds.
    let before_crash = holds_logged();
    bed.crash(Host::B);
    crate::harness::wait_until_or_explain(
        Instant::now() + 2 * PATIENCE,
        || (holds_logged() > before_crash + 3).then_some(()),
        || {
            format!(
                "no more than 3 holds in {:?} after host B crashed; what the lock looked \
                 like:\n{}",
                2 * PATIENCE,
                stalled_lock_report(&bed, LOCK)
            )
        },
    );
    for (host, child) in &mut workers {
        let status = crate::harness::wait_with_deadline_of(child, 12 * PATIENCE);
        match host {
            Host::A => assert!(status.success(), "a worker on host A failed: {status}"),
            Host::B => assert!(
                status.success()
                    || std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
                "a worker on host B failed: {status}"
            ),
        }
    }
    let (holds, gone) = crate::harness::read_load_log(work.path());
    eprintln!(
        "{} holds, {kills} kills, {} found their predecessor gone",
        holds.len(),
        gone.len()
    );
    crate::harness::assert_no_overlap(&holds, &gone);
    assert_no_lost_update(&holds, work.path());
    // The lock is still usable from the surviving host.
    let out = bed
        .flockrun(
            Host::A,
            &[
                "write", "-w", "30", "--soft", "--ttl", "2", LOCK, "--", "true",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// A semaphore slot holder inside `host`: says `ready`, then its slot, then holds.
fn hold_slot(bed: &Bed, host: Host, args: &[&str]) -> (Holder, u16) {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend(
        [
            "--",
            "sh",
            "-c",
            "echo ready; echo $FLOCKRUN_SLOT; exec cat >/dev/null",
        ]
        .map(OsStr::new),
    );
    let mut holder = bed.hold(host, crate::harness::FLOCKRUN, &all, "ready");
    let line = holder
        .read_line_before(Instant::now() + PATIENCE)
        .expect("the slot");
    (holder, line.trim().parse().unwrap())
}

#[test]
fn semaphore_slots_span_both_hosts_and_a_crashed_hosts_slot_frees_within_the_ttl() {
    let mut bed = Bed::up(Cache::Strict);
    let args = ["exec", "--soft", "--ttl", "2", "--slots", "2", "sem.lock"];
    let (on_a, slot_a) = hold_slot(&bed, Host::A, &args);
    let (on_b, slot_b) = hold_slot(&bed, Host::B, &args);
    assert_ne!(slot_a, slot_b, "two hosts were given the same slot");
    // Both slots are held, whichever host asks.
    for host in [Host::A, Host::B] {
        let out = bed
            .flockrun(
                host,
                &[
                    "try", "--soft", "--ttl", "2", "--slots", "2", "sem.lock", "--", "true",
                ],
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(75), "{}", stderr_of(&out));
    }
    let status = bed
        .flockrun(Host::B, &["status", "sem.lock"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("slots    2 of 2 held"), "{text}");
    assert!(
        text.contains("on host host-a") && text.contains("host host-b"),
        "{text}"
    );
    // Host A crashes: its slot comes back to a waiter on B within the TTL.
    let waiter = bed
        .flockrun(
            Host::B,
            &[
                "exec",
                "-w",
                "60",
                "--soft",
                "--ttl",
                "2",
                "--slots",
                "2",
                "sem.lock",
                "--",
                "sh",
                "-c",
                "echo $FLOCKRUN_SLOT $(date +%s.%N)",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let crashed = wall_now();
    bed.crash(Host::A);
    drop(on_a);
    let out = wait_for_output(waiter);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let slot: u16 = words.next().unwrap().parse().unwrap();
    let at: f64 = words.next().unwrap().parse().unwrap();
    assert_eq!(
        slot, slot_a,
        "the waiter got another slot than the crashed host's"
    );
    assert!(
        at - crashed < 2.5,
        "taken {:.2}s after the crash",
        at - crashed
    );
    assert!(on_b.release().success());
}
