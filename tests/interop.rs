//! flockrun against the real util-linux flock(1) and the real py-filelock `FileLock`, both
//! ways: each excludes the other on the same file.

use std::ffi::OsStr;

use predicates::prelude::*;

use crate::harness::{
    HOLD_SH, Holder, PY_FILELOCK_VERSIONS, flockrun, py_hold, py_try, python_with_filelock, scratch,
};

fn flock1_holder(args: &[&str]) -> Holder {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend(["sh", "-c", HOLD_SH].map(OsStr::new));
    Holder::start("flock", &all, "ready")
}

fn flock1(args: &[&str]) -> i32 {
    std::process::Command::new("flock")
        .args(args)
        .status()
        .expect("util-linux flock(1) must be installed")
        .code()
        .unwrap()
}

#[test]
fn flock1_holder_excludes_flockrun() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let holder = flock1_holder(&[lock_s]);
    flockrun()
        .args(["try", lock_s, "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(format!(
            "held by pid {}",
            holder.pid()
        )));
    flockrun()
        .args(["try", "-s", lock_s, "true"])
        .assert()
        .code(75);
    assert!(holder.release().success());
    flockrun().args(["try", lock_s, "true"]).assert().code(0);
}

#[test]
fn flockrun_holder_excludes_flock1() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", lock_s]);
    assert_eq!(flock1(&["-n", lock_s, "true"]), 1);
    assert_eq!(flock1(&["-n", "-s", lock_s, "true"]), 1);
    assert!(holder.release().success());
    assert_eq!(flock1(&["-n", lock_s, "true"]), 0);
}

#[test]
fn shared_locks_are_shared_with_flock1() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let holder = flock1_holder(&["-s", lock_s]);
    flockrun()
        .args(["try", "-s", lock_s, "true"])
        .assert()
        .code(0);
    flockrun().args(["try", lock_s, "true"]).assert().code(75);
    drop(holder);
    let holder = Holder::flockrun(&["exec", "-s", lock_s]);
    assert_eq!(flock1(&["-n", "-s", lock_s, "true"]), 0);
    assert_eq!(flock1(&["-n", "-x", lock_s, "true"]), 1);
    drop(holder);
}

#[test]
fn py_filelock_holder_excludes_flockrun() {
    for version in PY_FILELOCK_VERSIONS {
        let python = python_with_filelock(version);
        let dir = scratch();
        let lock = dir.path().join("x.lock");
        let lock_s = lock.to_str().unwrap();
        let holder = py_hold(&python, "native", &lock);
        flockrun()
            .args(["try", lock_s, "true"])
            .assert()
            .code(75)
            .stderr(predicate::str::contains(format!(
                "held by pid {}",
                holder.pid()
            )));
        flockrun()
            .args(["exec", "-w", "0.2", lock_s, "true"])
            .assert()
            .code(75);
        assert!(
            holder.release().success(),
            "py-filelock {version} holder failed"
        );
        flockrun().args(["try", lock_s, "true"]).assert().code(0);
    }
}

#[test]
fn flockrun_holder_excludes_py_filelock() {
    for version in PY_FILELOCK_VERSIONS {
        let python = python_with_filelock(version);
        let dir = scratch();
        let lock = dir.path().join("x.lock");
        let holder = Holder::flockrun(&["exec", lock.to_str().unwrap()]);
        assert_eq!(
            py_try(&python, &lock, "0.2"),
            "TIMEOUT",
            "py-filelock {version}"
        );
        assert!(holder.release().success());
        assert_eq!(
            py_try(&python, &lock, "0.2"),
            "ACQUIRED",
            "py-filelock {version}"
        );
    }
}
