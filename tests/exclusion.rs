//! Exclusion between flockrun processes: exclusive, shared, OFD, waiting and timeouts.

use std::time::{Duration, Instant};

use predicates::prelude::*;

use crate::harness::{Holder, flockrun, proc_locks_for, scratch, start_waiter, wait_with_deadline};

#[test]
fn timeout_expires_after_the_requested_time() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", lock_s]);
    let started = Instant::now();
    flockrun()
        .args(["exec", "-w", "0.3", lock_s, "echo", "must-not-run"])
        .assert()
        .code(75)
        .stdout("")
        .stderr(predicate::str::contains("timed out after 0.3"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "returned early: {took:?}"
    );
    // Loose upper bound; BENCHMARKS.md measures the precision.
    assert!(took < Duration::from_secs(5), "returned late: {took:?}");
    drop(holder);
}

#[test]
fn waiter_runs_once_the_holder_releases() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", lock_s]);
    let mut waiter = start_waiter(&["exec", "-w", "60", lock_s, "echo", "waiter-ran"], &lock);
    assert_eq!(
        waiter.child.try_wait().unwrap(),
        None,
        "waiter did not wait"
    );
    assert!(holder.release().success());
    let status = wait_with_deadline(&mut waiter.child);
    assert!(status.success());
    assert_eq!(waiter.rest_of_output(), "waiter-ran\n");
}

#[test]
fn shared_locks_coexist_and_exclude_exclusive_ones() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let first = Holder::flockrun(&["exec", "-s", lock_s]);
    let second = Holder::flockrun(&["exec", "--shared", lock_s]);
    flockrun()
        .args(["try", "-s", lock_s, "true"])
        .assert()
        .code(0);
    flockrun()
        .args(["try", lock_s, "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains("held by 2 processes"));
    drop(first);
    drop(second);
    let holder = Holder::flockrun(&["exec", lock_s]);
    flockrun()
        .args(["try", "-s", lock_s, "true"])
        .assert()
        .code(75);
    drop(holder);
}

#[test]
fn fcntl_locks_are_independent_of_flock_locks() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", "--fcntl", lock_s]);
    assert!(
        proc_locks_for(&lock)
            .iter()
            .any(|l| l.contains("OFDLCK") && l.contains("WRITE")),
        "{:?}",
        proc_locks_for(&lock)
    );
    flockrun().args(["try", lock_s, "true"]).assert().code(0);
    flockrun()
        .args(["try", "--fcntl", lock_s, "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains("is busy"));
    flockrun()
        .args(["try", "--fcntl", "-s", lock_s, "true"])
        .assert()
        .code(75);
    drop(holder);
    let shared = Holder::flockrun(&["exec", "--fcntl", "-s", lock_s]);
    flockrun()
        .args(["try", "--fcntl", "-s", lock_s, "true"])
        .assert()
        .code(0);
    flockrun()
        .args(["try", "--fcntl", lock_s, "true"])
        .assert()
        .code(75);
    drop(shared);
    flockrun()
        .args(["try", "--fcntl", lock_s, "true"])
        .assert()
        .code(0);
}

#[test]
fn fcntl_waiter_wakes_when_the_holder_releases() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", "--fcntl", lock_s]);
    let mut waiter = start_waiter(
        &["exec", "--fcntl", lock_s, "echo", "ofd-waiter-ran"],
        &lock,
    );
    assert!(holder.release().success());
    assert!(wait_with_deadline(&mut waiter.child).success());
    assert_eq!(waiter.rest_of_output(), "ofd-waiter-ran\n");
}

#[test]
fn a_directory_can_be_locked() {
    let dir = scratch();
    let d = dir.path().join("d");
    std::fs::create_dir(&d).unwrap();
    let d_s = d.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", d_s]);
    flockrun().args(["try", d_s, "true"]).assert().code(75);
    drop(holder);
    flockrun().args(["try", d_s, "true"]).assert().code(0);
    flockrun()
        .args(["try", "--fcntl", "-s", d_s, "true"])
        .assert()
        .code(0);
    // An exclusive OFD lock needs a writable descriptor, which a directory cannot give.
    flockrun()
        .args(["try", "--fcntl", d_s, "true"])
        .assert()
        .code(66)
        .stderr(predicate::str::contains(d_s))
        .stderr(predicate::str::contains("directory"));
}

#[test]
fn verbose_reports_the_wait_and_the_holder() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    flockrun()
        .args(["exec", "-v", lock_s, "true"])
        .assert()
        .code(0)
        .stdout("")
        .stderr(
            predicate::str::is_match(
                r"^flockrun: locked .*/l \(exclusive, kernel\) after waiting \d+\.\d\ds\n$",
            )
            .unwrap(),
        );
    let holder = Holder::flockrun(&["exec", lock_s]);
    let holder_pid = holder.pid();
    let mut waiter = start_waiter(&["exec", "-v", lock_s, "true"], &lock);
    assert!(holder.release().success());
    assert!(wait_with_deadline(&mut waiter.child).success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(waiter.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("meanwhile it was held by pid")
            && stderr.contains(&format!("under flockrun pid {holder_pid}")),
        "{stderr}"
    );
}

#[test]
fn mode_sets_the_bits_of_a_created_lock_file_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch();
    let lock = dir.path().join("l");
    flockrun()
        .args(["exec", "--mode", "0640"])
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
    assert_eq!(
        std::fs::metadata(&lock).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    flockrun()
        .args(["exec", "--mode", "0600"])
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
    assert_eq!(
        std::fs::metadata(&lock).unwrap().permissions().mode() & 0o7777,
        0o640,
        "an existing lock file's mode was changed"
    );
    let default = dir.path().join("default");
    flockrun()
        .arg("exec")
        .arg(&default)
        .arg("true")
        .assert()
        .code(0);
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(umask);
    assert_eq!(
        std::fs::metadata(&default).unwrap().permissions().mode() & 0o777,
        0o666 & !umask.bits()
    );
}
