//! Nested use: a lock an ancestor flockrun holds is granted at once when its mode covers the
//! request, and a request that would wait for itself is refused at once.

use predicates::prelude::*;

use crate::harness::{FLOCKRUN, flockrun, scratch};

#[test]
fn exclusive_inside_exclusive_runs_at_once() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    for outer in [&["exec"][..], &["try"], &["exec", "-o"], &["exec", "-F"]] {
        flockrun()
            .args(outer)
            .args([
                l,
                FLOCKRUN,
                "try",
                l,
                FLOCKRUN,
                "exec",
                "-s",
                l,
                "echo",
                "inner-ran",
            ])
            .assert()
            .code(0)
            .stdout("inner-ran\n");
    }
}

#[test]
fn shared_inside_shared_runs_and_exclusive_inside_shared_is_refused() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    flockrun()
        .args([
            "exec",
            "-s",
            l,
            FLOCKRUN,
            "exec",
            "-s",
            l,
            "echo",
            "inner-ran",
        ])
        .assert()
        .code(0)
        .stdout("inner-ran\n");
    for outer_close in [false, true] {
        let mut cmd = flockrun();
        cmd.args(["exec", "-s"]);
        if outer_close {
            cmd.arg("--close");
        }
        cmd.args([l, FLOCKRUN, "exec", "-E", "3", l, "echo", "must-not-run"])
            .assert()
            .code(3)
            .stdout("")
            .stderr(predicate::str::contains(
                "already held with a shared lock by an ancestor",
            ))
            .stderr(predicate::str::contains("wait for itself"));
    }
}

#[test]
fn a_different_lock_kind_is_not_nested() {
    // flock(2) and OFD locks do not conflict, so an OFD request inside a flock hold is a
    // separate lock and is simply taken.
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    flockrun()
        .args([
            "exec", "-s", l, FLOCKRUN, "try", "--fcntl", l, "echo", "ofd-ran",
        ])
        .assert()
        .code(0)
        .stdout("ofd-ran\n");
}

#[test]
fn an_inherited_environment_alone_does_not_grant_the_lock() {
    // FLOCKRUN_HELD copied from elsewhere names a process that is not our ancestor.
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let stale = flockrun()
        .args(["exec", l, "sh", "-c", "echo $FLOCKRUN_HELD"])
        .output()
        .unwrap();
    let stale = String::from_utf8(stale.stdout).unwrap();
    assert!(stale.starts_with("kernel:exclusive:"), "{stale}");
    let holder = crate::harness::Holder::flockrun(&["exec", l]);
    flockrun()
        .env("FLOCKRUN_HELD", stale.trim())
        .args(["try", l, "true"])
        .assert()
        .code(75);
    drop(holder);
}
