//! Every exit status `exec` and `try` can produce, with the message that goes with it.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use predicates::prelude::*;

use crate::harness::{Holder, flockrun, scratch};

#[test]
fn command_status_is_passed_through() {
    let dir = scratch();
    let lock = dir.path().join("l");
    flockrun()
        .args(["exec"])
        .arg(&lock)
        .args(["--", "true"])
        .assert()
        .code(0);
    flockrun()
        .arg("exec")
        .arg(&lock)
        .args(["--", "sh", "-c", "exit 7"])
        .assert()
        .code(7);
    flockrun()
        .arg("try")
        .arg(&lock)
        .args(["sh", "-c", "exit 255"])
        .assert()
        .code(255);
}

#[test]
fn command_killed_by_a_signal_gives_128_plus_n() {
    let dir = scratch();
    flockrun()
        .arg("exec")
        .arg(dir.path().join("l"))
        .args(["--", "sh", "-c", "kill -KILL $$"])
        .assert()
        .code(137);
    flockrun()
        .arg("exec")
        .arg(dir.path().join("l"))
        .args(["--", "sh", "-c", "kill -TERM $$"])
        .assert()
        .code(143);
}

#[test]
fn usage_errors_exit_64_with_a_flockrun_message() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock = lock.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &[],
        &["exec"],
        &["exec", lock],
        &["try", lock],
        &["frobnicate", lock, "true"],
        &["exec", "--no-such-option", lock, "true"],
        &["exec", "-F", "-o", lock, "true"],
        &["exec", "-n", "-w", "1", lock, "true"],
        &["exec", "-v", "-q", lock, "true"],
        &["exec", "-E", "256", lock, "true"],
        &["exec", "-E", "-1", lock, "true"],
        &["try", "-w", "1", lock, "true"],
        &["exec", "--mode", "999", lock, "true"],
        &["exec", "-c", "true", lock, "true"],
    ];
    for args in cases {
        flockrun()
            .args(*args)
            .assert()
            .code(64)
            .stderr(predicate::str::starts_with("flockrun: "));
    }
    assert!(
        !dir.path().join("l").exists(),
        "a usage error created the lock file"
    );
}

#[test]
fn bad_timeouts_are_usage_errors() {
    let dir = scratch();
    let lock = dir.path().join("l");
    for bad in [
        "-1", "", "abc", "nan", "NaN", "inf", "1e400", "1e3", "0x10", " 1", "1 ", "+1",
    ] {
        flockrun()
            .arg("exec")
            .arg(format!("--timeout={bad}"))
            .arg(&lock)
            .arg("true")
            .assert()
            .code(64)
            .stderr(predicate::str::contains("--timeout"))
            .stderr(predicate::str::contains("seconds"));
    }
    flockrun()
        .args(["exec", "-w", "0.5"])
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
    flockrun()
        .args(["exec", "--wait", ".5"])
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
}

#[test]
fn help_and_version_exit_0() {
    flockrun()
        .arg("--version")
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("flockrun 0."));
    flockrun()
        .args(["exec", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("--conflict-exit-code"))
        .stdout(predicate::str::contains("Examples:"));
    flockrun()
        .args(["try", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Examples:"));
}

#[test]
fn command_not_found_is_127_and_not_executable_is_126() {
    let dir = scratch();
    let lock = dir.path().join("l");
    flockrun()
        .arg("exec")
        .arg(&lock)
        .arg("flockrun-test-no-such-command")
        .assert()
        .code(127)
        .stderr(predicate::str::contains("flockrun-test-no-such-command"))
        .stderr(predicate::str::contains("not found"));
    let script = dir.path().join("script.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    flockrun()
        .arg("exec")
        .arg(&lock)
        .arg(&script)
        .assert()
        .code(126)
        .stderr(predicate::str::contains("permission denied"));
    // Nothing stays locked after a command that could not start.
    flockrun()
        .arg("try")
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
}

#[test]
fn busy_is_75_or_the_conflict_code_and_names_the_holder() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let lock_s = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", lock_s]);
    let child_pid = fs::read_to_string(format!("/proc/{}/task/{0}/children", holder.pid()))
        .unwrap()
        .trim()
        .to_owned();
    flockrun()
        .args(["try", lock_s, "echo", "must-not-run"])
        .assert()
        .code(75)
        .stdout("")
        .stderr(predicate::str::starts_with(format!(
            "flockrun: {lock_s} is busy: held by pid {child_pid} (sh -c "
        )))
        .stderr(predicate::str::contains(format!(
            "under flockrun pid {}",
            holder.pid()
        )));
    flockrun()
        .args(["try", "-E", "9", lock_s, "true"])
        .assert()
        .code(9);
    flockrun()
        .args(["exec", "-n", lock_s, "true"])
        .assert()
        .code(75);
    flockrun()
        .args(["exec", "-w", "0", lock_s, "true"])
        .assert()
        .code(75);
    flockrun()
        .args(["try", "-q", lock_s, "true"])
        .assert()
        .code(75)
        .stderr("");
    assert!(holder.release().success());
    flockrun().args(["try", lock_s, "true"]).assert().code(0);
}

#[test]
fn descriptors_exhausted_is_71() {
    let dir = scratch();
    let lock = dir.path().join("l");
    // Three descriptors: stdin, stdout and stderr take them all, and the lock file finds
    // none. (Starting COMMAND needs no descriptor of its own.)
    flockrun_in_shell(&format!(
        "ulimit -n 3; exec {} exec {} true",
        crate::harness::FLOCKRUN,
        lock.display()
    ))
    .assert()
    .code(71)
    .stderr(predicate::str::contains(
        "flockrun: opening the lock file failed: Too many open files",
    ));
    // Nothing was left locked.
    flockrun()
        .arg("try")
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
}

fn flockrun_in_shell(script: &str) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new("sh");
    cmd.args(["-c", script]).timeout(crate::harness::PATIENCE);
    cmd
}
