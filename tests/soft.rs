//! `--soft`: py-filelock `SoftFileLock` markers. Interop both ways with py-filelock 3.28.0 and
//! 4.2.11, the outcome against each seeded marker (py-filelock 4.2.11's column), crashed
//! holders, signals, and the marker's exact bytes.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use predicates::prelude::*;

use crate::harness::{
    FLOCKRUN, Holder, PATIENCE, PY_FILELOCK_VERSIONS, child_of, flockrun, py_hold, py_identity,
    py_try_kind, python_with_filelock, scratch, signal, start_soft_waiter, wait_until_exited,
    wait_with_deadline,
};

fn dead_pid() -> i32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    child.wait().unwrap();
    pid
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_marker_is_byte_for_byte_what_py_filelock_writes() {
    let dir = scratch();
    let lock = dir.path().join("s.lock");
    let holder = Holder::flockrun(&["exec", "--soft", lock.to_str().unwrap()]);
    let (host, token) = py_identity(holder.pid());
    assert_eq!(
        fs::read_to_string(&lock).unwrap(),
        format!("{}\n{host}\n{token}\n", holder.pid())
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&lock).unwrap().permissions())
            & 0o022,
        0,
        "group or other may write the marker"
    );
    assert!(holder.release().success());
    assert!(!lock.exists(), "the marker was left behind");
}

#[test]
fn py_filelock_and_flockrun_exclude_each_other() {
    for version in PY_FILELOCK_VERSIONS {
        let python = python_with_filelock(version);
        let dir = scratch();
        let lock = dir.path().join("s.lock");
        let l = lock.to_str().unwrap();
        let py = py_hold(&python, "soft", &lock);
        flockrun()
            .args(["try", "--soft", l, "echo", "must-not-run"])
            .assert()
            .code(75)
            .stdout("")
            .stderr(predicate::str::contains(format!(
                "held by pid {}",
                py.pid()
            )));
        assert!(py.release().success());
        assert!(!lock.exists());

        let holder = Holder::flockrun(&["exec", "--soft", l]);
        assert_eq!(
            py_try_kind(&python, "soft", &lock, "0.2"),
            "TIMEOUT",
            "{version}"
        );
        assert!(holder.release().success());
        assert_eq!(
            py_try_kind(&python, "soft", &lock, "0"),
            "ACQUIRED",
            "{version}"
        );
        assert_eq!(leftovers(dir.path()), Vec::<String>::new(), "{version}");
    }
}

#[test]
fn seeded_markers_are_judged_as_py_filelock_4_does() {
    let me = nix::unistd::getpid().as_raw();
    let (host, token) = py_identity(me);
    let dead = dead_pid();
    let wrong_token = format!("{}", token.parse::<u128>().map_or(7, |t| t ^ 1));
    // (marker, acquired at once, held).
    let cases = [
        (format!("{dead}\n{host}\n"), true),
        (format!("{dead}\n{host}\n123\n"), true),
        (format!("{me}\n{host}\n{token}\n"), false),
        (format!("{me}\n{host}\n{wrong_token}\n"), true),
        (format!("{me}\n{host}\n"), false),
        (format!("{dead}\nsome-other-host\n"), false),
        (String::new(), false),
        ("1\nfilelock-strict-v1\0\n0\n".to_owned(), false),
        ("filelock/2\npid=1\nhost=x\nmode=lease\n".to_owned(), false),
    ];
    for (marker, reclaimed) in cases {
        let dir = scratch();
        let lock = dir.path().join("s.lock");
        fs::write(&lock, &marker).unwrap();
        let assert = flockrun()
            .args(["try", "--soft"])
            .arg(&lock)
            .args(["echo", "ran"])
            .assert();
        if reclaimed {
            assert.code(0).stdout("ran\n");
            assert_eq!(leftovers(dir.path()), Vec::<String>::new(), "{marker:?}");
        } else {
            assert.code(75).stdout("");
            assert_eq!(
                fs::read_to_string(&lock).unwrap(),
                marker,
                "a held marker was touched"
            );
        }
    }
    // Leftovers of an interrupted takeover (`s.lock.break.<breaker pid>.<hex>`) may hold a live
    // owner's marker: the lock stays held while one could. They are garbage only when the
    // breaker is gone and the marker inside is dead or malformed.
    let hex = "0".repeat(32);
    let leftover_cases = [
        // (breaker pid, content, removed and lock taken)
        (dead, format!("{me}\n{host}\n{token}\n"), false),
        (me, "filelock/break\n1\n".to_owned(), false),
        (dead, String::new(), false),
        (dead, format!("{dead}\n{host}\n"), true),
        (dead, format!("filelock/break\n{dead}\n"), true),
    ];
    for (breaker, content, removed) in leftover_cases {
        let dir = scratch();
        let lock = dir.path().join("s.lock");
        fs::write(&lock, format!("{dead}\n{host}\n")).unwrap();
        let leftover = dir.path().join(format!("s.lock.break.{breaker}.{hex}"));
        fs::write(&leftover, &content).unwrap();
        let assert = flockrun()
            .args(["try", "--soft"])
            .arg(&lock)
            .arg("true")
            .assert();
        if removed {
            assert.code(0);
            assert_eq!(leftovers(dir.path()), Vec::<String>::new(), "{content:?}");
        } else {
            assert.code(75);
            assert_eq!(fs::read_to_string(&leftover).unwrap(), content);
        }
    }

    let other = {
        let dir = scratch();
        let lock = dir.path().join("s.lock");
        fs::write(&lock, format!("{dead}\nsome-other-host\n")).unwrap();
        let out = flockrun()
            .args(["try", "--soft"])
            .arg(&lock)
            .arg("true")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        other.contains(&format!("held by pid {dead} on host some-other-host")),
        "{other}"
    );
}

#[test]
fn malformed_markers_are_evicted_after_staying_unchanged_for_2_seconds() {
    let dead = dead_pid();
    let (host, _) = py_identity(dead_pid());
    for marker in ["hello".to_owned(), format!("{dead}\n{host}")] {
        let dir = scratch();
        let lock = dir.path().join("s.lock");
        fs::write(&lock, &marker).unwrap();
        flockrun()
            .args(["try", "--soft"])
            .arg(&lock)
            .arg("true")
            .assert()
            .code(75);
        let started = Instant::now();
        flockrun()
            .args(["exec", "--soft", "-w", "10"])
            .arg(&lock)
            .args(["echo", "evicted"])
            .assert()
            .code(0)
            .stdout("evicted\n");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2), "evicted after {took:?}");
        assert!(took < PATIENCE, "{took:?}");
    }
}

#[test]
fn a_killed_holder_is_reclaimed_at_once_and_its_command_dies() {
    for reclaimer in ["flockrun", "py-filelock 4"] {
        let dir = scratch();
        let lock = dir.path().join("s.lock");
        let mut holder = Holder::flockrun(&["exec", "--soft", lock.to_str().unwrap()]);
        let command = child_of(holder.pid());
        signal(holder.pid(), Signal::SIGKILL);
        let _ = holder.child.wait();
        wait_until_exited(command, "COMMAND to die with flockrun");
        assert!(
            lock.exists(),
            "the killed holder's marker should still be there"
        );
        if reclaimer == "flockrun" {
            flockrun()
                .args(["try", "--soft"])
                .arg(&lock)
                .arg("true")
                .assert()
                .code(0);
        } else {
            let python = python_with_filelock("4.2.11");
            assert_eq!(py_try_kind(&python, "soft", &lock, "3"), "ACQUIRED");
        }
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }
}

#[test]
fn signals_leave_no_marker_behind() {
    let dir = scratch();
    let lock = dir.path().join("s.lock");
    let l = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", "--soft", l]);
    let marker = fs::read(&lock).unwrap();
    for (sig, code) in [
        (Signal::SIGINT, 130),
        (Signal::SIGTERM, 143),
        (Signal::SIGHUP, 129),
    ] {
        let mut waiter = start_soft_waiter(&["exec", "--soft", l, "echo", "must-not-run"]);
        signal(waiter.pid(), sig);
        assert_eq!(wait_with_deadline(&mut waiter.child).code(), Some(code));
        assert_eq!(waiter.rest_of_output(), "");
    }
    assert_eq!(
        fs::read(&lock).unwrap(),
        marker,
        "a waiter disturbed the holder's marker"
    );
    assert_eq!(leftovers(dir.path()), vec!["s.lock".to_owned()]);
    // SIGTERM to the holder: passed on to COMMAND, which exits; the marker goes with it.
    let pid = holder.pid();
    signal(pid, Signal::SIGTERM);
    let mut holder = holder;
    assert_eq!(wait_with_deadline(&mut holder.child).code(), Some(143));
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn a_waiter_takes_over_when_the_holder_releases() {
    let dir = scratch();
    let lock = dir.path().join("s.lock");
    let l = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", "--soft", l]);
    let mut waiter = start_soft_waiter(&["exec", "--soft", "-w", "20", l, "echo", "waiter-ran"]);
    assert_eq!(
        waiter.child.try_wait().unwrap(),
        None,
        "the waiter ran beside the holder"
    );
    assert!(holder.release().success());
    assert!(wait_with_deadline(&mut waiter.child).success());
    assert_eq!(waiter.rest_of_output(), "waiter-ran\n");
    assert!(!lock.exists());
}

#[test]
fn bad_paths_and_option_conflicts() {
    let dir = scratch();
    let d = dir.path().join("d");
    fs::create_dir(&d).unwrap();
    flockrun()
        .args(["try", "--soft"])
        .arg(&d)
        .arg("true")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("is a directory"));
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
    flockrun()
        .args(["try", "--soft"])
        .arg(&link)
        .arg("true")
        .assert()
        .code(66)
        .stderr(predicate::str::contains("symbolic link"));
    assert!(!dir.path().join("target").exists());
    let l = dir.path().join("l");
    for conflicting in ["-s", "--fcntl", "-F"] {
        flockrun()
            .args(["exec", "--soft", conflicting])
            .arg(&l)
            .arg("true")
            .assert()
            .code(64);
    }
    flockrun()
        .arg("exec")
        .arg("--soft")
        .arg(&l)
        .args([FLOCKRUN, "try", "--soft"])
        .arg(&l)
        .args(["sh", "-c", "echo $FLOCKRUN_KIND"])
        .assert()
        .code(0)
        .stdout("soft\n");
}

#[test]
fn status_reports_flockruns_own_marker() {
    let dir = scratch();
    let lock = dir.path().join("s.lock");
    let holder = Holder::flockrun(&["exec", "--soft", lock.to_str().unwrap()]);
    let command = child_of(holder.pid());
    let out = flockrun()
        .args(["status", "--json"])
        .arg(&lock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &doc["locks"][0];
    assert_eq!(s["kind"], "soft");
    assert_eq!(s["marker"]["pid"], holder.pid());
    assert_eq!(s["marker"]["verdict"], "held");
    assert_eq!(s["holders"][0]["flockrun"], true);
    assert_eq!(s["holders"][0]["child_pid"], command);
    assert!(holder.release().success());
}

/// Several processes taking the soft lock in a loop never overlap: each critical section
/// creates an occupancy file with `O_EXCL` (`set -C`) and fails if it is already there. This
/// once failed: a contender judged a marker whose holder had just released and exited,
/// and a newcomer's marker that reused the freed inode number passed for the judged one.
#[test]
fn contending_soft_holders_never_overlap() {
    let dir = scratch();
    let lock = dir.path().join("s.lock");
    let occupied = dir.path().join("occupied");
    let counter = dir.path().join("counter");
    fs::write(&counter, "0\n").unwrap();
    let (procs, each) = (6, 60);
    let body = format!(
        "set -C; : > {occ} || exit 99; n=$(cat {c}); echo $((n+1)) >| {c}; rm {occ}",
        occ = occupied.display(),
        c = counter.display()
    );
    let script = format!(
        "for i in $(seq {each}); do {FLOCKRUN} exec --soft {} -- sh -c '{body}' || exit $?; done",
        lock.display()
    );
    let mut loops: Vec<_> = (0..procs)
        .map(|_| Command::new("bash").args(["-c", &script]).spawn().unwrap())
        .collect();
    for l in &mut loops {
        assert_eq!(
            wait_with_deadline(l).code(),
            Some(0),
            "two holders overlapped"
        );
    }
    assert_eq!(
        fs::read_to_string(&counter).unwrap().trim(),
        (procs * each).to_string()
    );
    assert_eq!(leftovers(dir.path()), vec!["counter".to_owned()]);
}

/// py-filelock 4.2.11 `SoftFileLease` with a float duration: holds `path` (prints `HELD`,
/// releases when stdin closes), or tries once for TIMEOUT seconds (prints `ACQUIRED`,
/// `TIMEOUT`, or `MISMATCH` for its `LeaseSettingsMismatch`).
const PY_LEASE: &str = r#"
import sys, filelock
what, path, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
lock = filelock.SoftFileLease(path, lease_duration=duration)
if what == "hold":
    print("STARTED", flush=True)
    with lock:
        print("HELD", flush=True)
        sys.stdin.read()
else:
    try:
        lock.acquire(timeout=float(sys.argv[4]))
        lock.release()
        print("ACQUIRED")
    except filelock.Timeout:
        print("TIMEOUT")
    except ValueError as e:
        print("MISMATCH", type(e).__name__)
"#;

fn py_lease_hold(lock: &Path, duration: &str) -> Holder {
    let python = python_with_filelock("4.2.11");
    let args = ["-c", PY_LEASE, "hold", lock.to_str().unwrap(), duration];
    let mut holder = Holder::start(python, &args.map(std::ffi::OsStr::new), "STARTED");
    holder.expect_line("HELD");
    holder
}

fn py_lease_try(lock: &Path, duration: &str, timeout: &str) -> String {
    let out = Command::new(python_with_filelock("4.2.11"))
        .args(["-c", PY_LEASE, "try"])
        .arg(lock)
        .args([duration, timeout])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn duration_line(marker: &Path) -> String {
    fs::read_to_string(marker)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("duration="))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn fractional_lease_ttls_are_spelled_and_compared_as_py_filelock_does() {
    let dir = scratch();
    for (ttl, spelled) in [
        ("1.5", "1.5"),
        ("2", "2.0"),
        ("2.0", "2.0"),
        ("0.25", "0.25"),
        ("90", "90.0"),
    ] {
        let ours = dir.path().join(format!("ours-{ttl}.lock"));
        let theirs = dir.path().join(format!("theirs-{ttl}.lock"));
        let held = Holder::flockrun(&["exec", "--soft", "--ttl", ttl, ours.to_str().unwrap()]);
        let py = py_lease_hold(&theirs, ttl);
        assert_eq!(
            duration_line(&ours),
            format!("duration={spelled}"),
            "--ttl {ttl}"
        );
        assert_eq!(duration_line(&ours), duration_line(&theirs), "--ttl {ttl}");
        // The same float, however it was typed, is the same lease to both; a live holder
        // keeps it.
        let other_spelling = if ttl.contains('.') {
            ttl.trim_end_matches(".0")
        } else {
            spelled
        };
        assert_eq!(
            py_lease_try(&ours, other_spelling, "0.3"),
            "TIMEOUT",
            "--ttl {ttl}"
        );
        let out = flockrun()
            .args(["try", "--soft", "--ttl", other_spelling])
            .arg(&theirs)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(75), "--ttl {ttl}");
        assert!(held.release().success());
        drop(py);
    }
    // Another float is another contract, both ways: py-filelock raises its
    // LeaseSettingsMismatch, flockrun exits 65 naming both.
    let lock = dir.path().join("m.lock");
    let held = Holder::flockrun(&["exec", "--soft", "--ttl", "1.5", lock.to_str().unwrap()]);
    assert_eq!(
        py_lease_try(&lock, "1.25", "0.3"),
        "MISMATCH LeaseSettingsMismatch"
    );
    assert!(held.release().success());
    let py = py_lease_hold(&lock, "1.5");
    let out = flockrun()
        .args(["try", "--soft", "--ttl", "1.25"])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TTL of 1.5 s") && stderr.contains("--ttl 1.25"),
        "{stderr}"
    );
    drop(py);
}

#[test]
fn fractional_leases_are_taken_over_kept_and_lost_as_with_py_filelock() {
    let dir = scratch();
    // A stopped py-filelock holder (its lease no longer renewed) is taken over by flockrun
    // once the lease stayed unchanged for 1.5 s.
    let lock = dir.path().join("t.lock");
    let py = py_lease_hold(&lock, "1.5");
    signal(py.pid(), Signal::SIGSTOP);
    let start = Instant::now();
    let out = flockrun()
        .args(["exec", "-w", "10", "--soft", "--ttl", "1.5"])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!((1.4..3.0).contains(&took), "taken over after {took:.2}s");
    signal(py.pid(), Signal::SIGKILL);
    drop(py);
    // A stopped flockrun holder is taken over by py-filelock; woken, it finds its lease
    // gone, stops COMMAND and exits 79.
    let lock = dir.path().join("f.lock");
    let mut held = crate::harness::spawn_flockrun(&[
        "exec",
        "--soft",
        "--ttl",
        "1.5",
        lock.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        crate::harness::HOLD_SH,
    ]);
    held.expect_line("ready");
    let command = child_of(held.pid());
    signal(held.pid(), Signal::SIGSTOP);
    assert_eq!(py_lease_try(&lock, "1.5", "10"), "ACQUIRED");
    signal(held.pid(), Signal::SIGCONT);
    let (status, stderr) = held.release_with_stderr();
    assert_eq!(status.code(), Some(79), "{stderr}");
    wait_until_exited(command, "the lost holder's COMMAND");
    // Live holders renewing every TTL/3 keep a half-second lease for four times as long.
    let lock = dir.path().join("l.lock");
    let held = Holder::flockrun(&["exec", "--soft", "--ttl", "0.5", lock.to_str().unwrap()]);
    assert_eq!(py_lease_try(&lock, "0.5", "2"), "TIMEOUT");
    assert!(held.release().success());
    let py = py_lease_hold(&lock, "0.5");
    let out = flockrun()
        .args(["exec", "-w", "2", "--soft", "--ttl", "0.5"])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(py);
}

#[test]
fn ttls_out_of_range_or_fractional_for_etcd_are_usage_errors() {
    for (args, says) in [
        (&["exec", "--soft", "--ttl", "0.05", "l"][..], "from 0.1"),
        (
            &["exec", "--soft", "--ttl", "1e3", "l"][..],
            "such as 10 or 1.5",
        ),
        (&["exec", "--soft", "--ttl", "604801", "l"][..], "(a week)"),
        (
            &["read", "--soft", "--ttl=-1", "l"][..],
            "such as 10 or 1.5",
        ),
        (
            &["exec", "--ttl", "1.5", "etcd://127.0.0.1:9/x"][..],
            "whole seconds",
        ),
    ] {
        let out = flockrun().args(args).args(["--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
