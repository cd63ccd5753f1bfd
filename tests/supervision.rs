//! Running COMMAND: inheritance of the lock, signals passed on, flockrun killed, the child's
//! starting state, `--no-fork` and `--close`.

use std::ffi::OsStr;
use std::fs;
use std::time::Instant;

use nix::sys::signal::Signal;
use predicates::prelude::*;

use crate::harness::{
    FLOCKRUN, Holder, PATIENCE, child_of, flockrun, is_waiting, proc_locks_for, scratch, signal,
    start_waiter, wait_until, wait_until_exited, wait_with_deadline,
};

/// A COMMAND that reports the signals it gets and exits 9 on SIGTERM.
const TRAPPER: &str = r#"
import signal, sys
def on(sig, _):
    print("got", signal.Signals(sig).name, flush=True)
    if sig == signal.SIGTERM:
        sys.exit(9)
for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGWINCH):
    signal.signal(s, on)
print("ready", flush=True)
sys.stdin.read()
"#;

#[test]
fn signals_are_forwarded_to_command_once() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let args = [
        "exec",
        lock.to_str().unwrap(),
        "--",
        "python3",
        "-c",
        TRAPPER,
    ]
    .map(OsStr::new);
    let mut holder = Holder::start(FLOCKRUN, &args, "ready");
    for (sig, name) in [
        (Signal::SIGUSR1, "SIGUSR1"),
        (Signal::SIGHUP, "SIGHUP"),
        (Signal::SIGWINCH, "SIGWINCH"),
    ] {
        signal(holder.pid(), sig);
        holder.expect_line(&format!("got {name}"));
    }
    signal(holder.pid(), Signal::SIGTERM);
    holder.expect_line("got SIGTERM");
    let status = wait_with_deadline(&mut holder.child);
    assert_eq!(
        status.code(),
        Some(9),
        "flockrun must exit with COMMAND's status"
    );
    assert_eq!(holder.rest_of_output(), "", "a signal was delivered twice");
    flockrun()
        .args(["try", lock.to_str().unwrap(), "true"])
        .assert()
        .code(0);
}

#[test]
fn command_keeps_the_lock_when_flockrun_is_killed() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", l]);
    let command_pid = child_of(holder.pid());
    signal(holder.pid(), Signal::SIGKILL);
    // Reap flockrun; its COMMAND lives on, holding the inherited descriptor.
    let mut holder = holder;
    let _ = holder.child.wait();
    flockrun()
        .args(["try", l, "echo", "must-not-run"])
        .assert()
        .code(75)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "held by pid {command_pid} (sh -c"
        )));
    drop(holder); // closes COMMAND's stdin: it exits and the lock is free
    wait_until_exited(command_pid, "the orphaned command to exit");
    flockrun().args(["try", l, "true"]).assert().code(0);
}

#[test]
fn with_close_command_has_no_lock_and_dies_with_flockrun() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let out = flockrun()
        .args(["exec", "--close", l, "sh", "-c", "ls -l /proc/$$/fd"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(l),
        "COMMAND inherited the lock"
    );
    let out = flockrun()
        .args(["exec", l, "sh", "-c", "ls -l /proc/$$/fd"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(l),
        "COMMAND did not inherit the lock"
    );

    let mut holder = Holder::flockrun(&["exec", "-o", l]);
    let command_pid = child_of(holder.pid());
    flockrun().args(["try", l, "true"]).assert().code(75);
    signal(holder.pid(), Signal::SIGKILL);
    let _ = holder.child.wait();
    wait_until_exited(command_pid, "COMMAND to die with flockrun");
    flockrun().args(["try", l, "true"]).assert().code(0);
}

#[test]
fn no_fork_makes_command_the_holder() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let args = ["exec", "-F", l, "sh", "-c", "echo ready; cat >/dev/null"].map(OsStr::new);
    let holder = Holder::start(FLOCKRUN, &args, "ready");
    let comm = fs::read_to_string(format!("/proc/{}/comm", holder.pid())).unwrap();
    assert_eq!(comm.trim(), "sh", "flockrun was not replaced by COMMAND");
    flockrun()
        .args(["try", l, "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(format!(
            "held by pid {}",
            holder.pid()
        )));
    let status = holder.release();
    assert!(status.success());
    flockrun().args(["try", l, "true"]).assert().code(0);
    flockrun()
        .args(["try", "-F", l, "flockrun-test-no-such-command"])
        .assert()
        .code(127);
}

#[test]
fn stop_signals_while_waiting_end_the_wait_and_leave_nothing() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", l]);
    for (sig, code) in [
        (Signal::SIGINT, 130),
        (Signal::SIGTERM, 143),
        (Signal::SIGHUP, 129),
    ] {
        let mut waiter = start_waiter(&["exec", l, "echo", "must-not-run"], &lock);
        signal(waiter.pid(), sig);
        let status = wait_with_deadline(&mut waiter.child);
        assert_eq!(status.code(), Some(code), "{sig}");
        assert_eq!(waiter.rest_of_output(), "");
        assert!(
            !is_waiting(waiter.pid(), &lock),
            "a request was left queued"
        );
    }
    let with_timeout = start_waiter(&["exec", "-w", "60", l, "true"], &lock);
    signal(with_timeout.pid(), Signal::SIGINT);
    let mut with_timeout = with_timeout;
    assert_eq!(
        wait_with_deadline(&mut with_timeout.child).code(),
        Some(130)
    );
    // Only the holder's lock remains.
    assert_eq!(
        proc_locks_for(&lock).len(),
        1,
        "{:?}",
        proc_locks_for(&lock)
    );
    drop(holder);
}

#[test]
fn an_alarm_from_outside_does_not_end_a_timed_wait() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", l]);
    let mut waiter = start_waiter(&["exec", "-w", "60", l, "echo", "waited"], &lock);
    signal(waiter.pid(), Signal::SIGALRM);
    // Still queued after the stray alarm was handled: it re-enters the wait.
    wait_until(
        "the waiter to queue again",
        Instant::now() + PATIENCE,
        || is_waiting(waiter.pid(), &lock).then_some(()),
    );
    assert!(holder.release().success());
    assert!(wait_with_deadline(&mut waiter.child).success());
    assert_eq!(waiter.rest_of_output(), "waited\n");
}

#[test]
fn command_gets_the_lock_environment() {
    let dir = scratch();
    let lock = dir.path().join("sub").join("..").join("l");
    fs::create_dir(dir.path().join("sub")).unwrap();
    flockrun()
        .current_dir(dir.path())
        .args([
            "exec",
            "-s",
            "sub/../l",
            "sh",
            "-c",
            "echo $FLOCKRUN_LOCK $FLOCKRUN_KIND $FLOCKRUN_MODE",
        ])
        .assert()
        .code(0)
        .stdout(format!("{} kernel shared\n", lock.display()));
    flockrun()
        .current_dir(dir.path())
        .args([
            "try",
            "--fcntl",
            "l",
            "sh",
            "-c",
            "echo $FLOCKRUN_KIND $FLOCKRUN_MODE",
        ])
        .assert()
        .stdout("ofd exclusive\n");
}

#[test]
fn command_starts_with_default_signal_dispositions_and_an_empty_mask() {
    let dir = scratch();
    // Both ways COMMAND is started: the vfork-style clone (the kernel kind hands COMMAND
    // the lock) and the fork road (a soft lock: COMMAND must die with flockrun).
    for (kind, name) in [("", "kernel.lock"), ("--soft", "soft.lock")] {
        let lock = dir.path().join(name);
        // The calling shell ignores INT and QUIT, as a background job's shell does.
        let script = format!(
            "trap '' INT QUIT USR1; exec {FLOCKRUN} exec {kind} {} -- \
             grep -E '^Sig(Ign|Blk)' /proc/self/status",
            lock.display()
        );
        assert_cmd::Command::new("sh")
            .args(["-c", &script])
            .timeout(PATIENCE)
            .assert()
            .code(0)
            .stdout("SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    }
}

#[test]
fn shell_command_uses_shell_or_bin_sh() {
    let dir = scratch();
    let lock = dir.path().join("l");
    flockrun()
        .env_remove("SHELL")
        .args(["exec", "-c", "echo $0 ran"])
        .arg(&lock)
        .assert()
        .stdout("/bin/sh ran\n");
    flockrun()
        .env("SHELL", "")
        .arg("exec")
        .arg(&lock)
        .args(["-c", "echo $0 ran"])
        .assert()
        .stdout("/bin/sh ran\n");
    flockrun()
        .env("SHELL", "/bin/bash")
        .args(["try", "-c", "echo $0 ran; exit 4"])
        .arg(&lock)
        .assert()
        .code(4)
        .stdout("/bin/bash ran\n");
}

#[test]
fn a_waiter_keeps_its_place_when_signalled_to_no_effect() {
    // SIGWINCH is not a stop signal: it must neither end nor disturb a wait.
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", l]);
    let mut waiter = start_waiter(&["exec", l, "echo", "ran"], &lock);
    signal(waiter.pid(), Signal::SIGWINCH);
    assert!(is_waiting(waiter.pid(), &lock));
    assert!(holder.release().success());
    assert!(wait_with_deadline(&mut waiter.child).success());
}
