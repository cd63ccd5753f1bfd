//! Job control: `--run-limit` (and `--kill-after`) and `--replace`, and the usage errors
//! of the job options.

use std::fs;
use std::time::{Duration, Instant};

use predicates::prelude::*;

use crate::harness::{
    FLOCKRUN, Holder, PATIENCE, flockrun, scratch, spawn_flockrun, wait_until_exited,
    wait_until_waiting, wait_with_deadline,
};

/// A COMMAND that ignores SIGTERM, starts a background child that ignores it too and
/// records its pid in `bg`, says `ready`, and would run for minutes.
const STUBBORN: &str = "trap '' TERM; (trap '' TERM; exec sleep 300) & echo $! > \"$FLOCKRUN_LOCK.bg\"; echo ready; wait; sleep 300";

fn pid_in(path: &std::path::Path) -> i32 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[test]
fn run_limit_stops_a_stubborn_command_and_its_background_children_then_frees_the_lock() {
    for kind in [
        &["exec"][..],
        &["exec", "--fcntl"],
        &["try", "--soft"],
        &["write"],
    ] {
        let dir = scratch();
        let lock = dir.path().join("job.lock");
        let lock_arg = lock.to_str().unwrap();
        let started = Instant::now();
        let mut args: Vec<&str> = kind.to_vec();
        args.extend([
            "--run-limit",
            "1",
            "--kill-after",
            "0.5",
            lock_arg,
            "--",
            "sh",
            "-c",
            STUBBORN,
        ]);
        let mut run = spawn_flockrun(&args);
        run.expect_line("ready");
        let background = pid_in(&dir.path().join("job.lock.bg"));
        let (status, stderr) = run.release_with_stderr();
        let took = started.elapsed();
        assert_eq!(status.code(), Some(124), "{kind:?}: {stderr}");
        assert!(
            stderr.contains("ran longer than --run-limit 1.00s")
                && stderr.contains("SIGKILL after 0.50s")
                && stderr.contains(lock_arg),
            "{kind:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(took >= Duration::from_millis(1500), "{kind:?} {took:?}");
        wait_until_exited(background, "the background child to be killed");
        // Free right after: a single attempt gets it.
        let mut again: Vec<&str> = vec![if kind[0] == "write" { "write" } else { "try" }];
        again.extend(&kind[1..]);
        if again[0] == "write" {
            again.extend(["-n"]);
        }
        again.extend([lock_arg, "--", "true"]);
        flockrun().args(&again).assert().success();
    }
}

#[test]
fn run_limit_lets_a_command_that_ends_in_time_keep_its_status() {
    let dir = scratch();
    let lock = dir.path().join("job.lock");
    flockrun()
        .args(["exec", "--run-limit", "1m", lock.to_str().unwrap(), "--"])
        .args(["sh", "-c", "exit 7"])
        .assert()
        .code(7)
        .stderr("");
    // A COMMAND that stops at SIGTERM exits within the limit's SIGTERM, without SIGKILL.
    flockrun()
        .args(["exec", "--run-limit", "0.3", lock.to_str().unwrap(), "--"])
        .args(["sleep", "60"])
        .assert()
        .code(124)
        .stderr(predicate::str::contains("(SIGTERM)"));
}

#[test]
fn the_wait_for_the_lock_does_not_count_against_the_run_limit() {
    let dir = scratch();
    let lock = dir.path().join("job.lock");
    let lock_arg = lock.to_str().unwrap();
    let holder = Holder::flockrun(&["exec", lock_arg]);
    let waiter = spawn_flockrun(&[
        "exec",
        "--run-limit",
        "1",
        lock_arg,
        "--",
        "sh",
        "-c",
        "echo got; exit 3",
    ]);
    wait_until_waiting(waiter.pid(), &lock);
    let waiting_since = Instant::now();
    // The quantity under test is time spent waiting: let it pass the limit.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(waiting_since.elapsed() > Duration::from_secs(1));
    holder.release();
    let mut waiter = waiter;
    let status = wait_with_deadline(&mut waiter.child);
    assert_eq!(status.code(), Some(3), "{}", waiter.rest_of_output());
}

#[test]
fn job_options_refuse_bad_values_with_a_message() {
    let dir = scratch();
    let lock = dir.path().join("job.lock");
    let lock_arg = lock.to_str().unwrap();
    for (args, says) in [
        (&["exec", "--slots", "0"][..], "from 1 to 1024"),
        (&["exec", "--slots", "1025"], "from 1 to 1024"),
        (&["try", "--slots", "-3"], "--slots"),
        (&["read", "--slots", "2"], "--slots applies to exec and try"),
        (
            &["write", "--slots", "2"],
            "--slots applies to exec and try",
        ),
        (&["exec", "--run-limit", "-1"], "--run-limit"),
        (&["exec", "--run-limit", "5x"], "such as 90, 1.5, 30s"),
        (&["write", "--run-limit", "1.5.5"], "such as 90, 1.5, 30s"),
        (&["exec", "--kill-after", "3"], "--kill-after applies with"),
        (
            &["exec", "--kill-after", "3y", "--run-limit", "1"],
            "--kill-after",
        ),
        (&["exec", "--run-limit", "3", "-F"], "-F/--no-fork"),
        (&["exec", "--replace", "-s"], "--shared"),
    ] {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([lock_arg, "--", "true"]);
        flockrun()
            .args(&all)
            .assert()
            .code(64)
            .stderr(predicate::str::contains(says));
    }
    flockrun()
        .args(["exec", "--replace", "--fd", "0", "true"])
        .assert()
        .code(64)
        .stderr(predicate::str::contains("give LOCK instead of --fd"));
    assert!(!lock.exists(), "a refused command line created LOCK");
}

/// A COMMAND that ignores SIGTERM and says `ready`.
const DEAF: &str = "trap '' TERM; echo ready; while :; do sleep 1; done";

#[test]
fn replace_stops_a_flockrun_holder_and_runs_in_its_place() {
    for (kind, command, kill_after) in [
        // Stops at SIGTERM: replaced without SIGKILL.
        (&["exec"][..], "echo ready; exec sleep 300", "30"),
        // Ignores it: SIGKILL after --kill-after, its whole tree with it.
        (&["exec"], DEAF, "0.5"),
        (&["exec", "--fcntl"], DEAF, "0.5"),
        (&["exec", "--soft"], DEAF, "0.5"),
        (&["exec", "--soft", "--ttl", "30"], DEAF, "0.5"),
    ] {
        let dir = scratch();
        let lock = dir.path().join("old.lock");
        let lock_arg = lock.to_str().unwrap();
        let mut args: Vec<&str> = kind.to_vec();
        args.extend([lock_arg, "--", "sh", "-c", command]);
        let mut old = spawn_flockrun(&args);
        old.expect_line("ready");
        let started = Instant::now();
        let mut args: Vec<&str> = vec!["try"];
        args.extend(&kind[1..]);
        args.extend(["--replace", "--kill-after", kill_after, lock_arg, "--"]);
        args.extend(["sh", "-c", "echo new"]);
        flockrun()
            .args(&args)
            .assert()
            .success()
            .stdout("new\n")
            .stderr(predicate::str::contains(format!(
                "stopping pid {}",
                old.pid()
            )));
        assert!(started.elapsed() < PATIENCE);
        let status = wait_with_deadline(&mut old.child);
        assert!(
            !status.success(),
            "{kind:?}: the old holder was not stopped: {status}"
        );
    }
}

#[test]
fn replace_stops_flock1_and_py_filelock_holders() {
    let dir = scratch();
    let lock = dir.path().join("peer.lock");
    let flock1 = Holder::start(
        "flock",
        &[
            lock.as_os_str(),
            "sh".as_ref(),
            "-c".as_ref(),
            "echo ready; exec sleep 300".as_ref(),
        ],
        "ready",
    );
    flockrun()
        .args([
            "exec",
            "--replace",
            lock.to_str().unwrap(),
            "--",
            "echo",
            "after flock",
        ])
        .assert()
        .success()
        .stdout("after flock\n");
    let mut flock1 = flock1;
    assert!(!wait_with_deadline(&mut flock1.child).success());
    let python = crate::harness::python_with_filelock("4.2.11");
    for (py_kind, kind) in [("native", &[][..]), ("soft", &["--soft"])] {
        let lock = dir.path().join(format!("{py_kind}.lock"));
        let py = crate::harness::py_hold(&python, py_kind, &lock);
        let mut args: Vec<&str> = vec!["try"];
        args.extend(kind);
        args.extend([
            "--replace",
            lock.to_str().unwrap(),
            "--",
            "echo",
            "after python",
        ]);
        flockrun()
            .args(&args)
            .assert()
            .success()
            .stdout("after python\n");
        let mut py = py;
        assert!(!wait_with_deadline(&mut py.child).success(), "{py_kind}");
    }
}

#[test]
fn replace_with_slots_stops_the_longest_running_holder() {
    let dir = scratch();
    let lock = dir.path().join("slots.lock");
    let lock_arg = lock.to_str().unwrap();
    let mut first = Holder::flockrun(&["exec", "--slots", "2", lock_arg]);
    // `since` has one-second resolution: make the two holds start in different seconds.
    std::thread::sleep(Duration::from_millis(1100));
    let second = Holder::flockrun(&["exec", "--slots", "2", lock_arg]);
    flockrun()
        .args([
            "try",
            "--slots",
            "2",
            "--replace",
            "--kill-after",
            "20",
            lock_arg,
            "--",
            "true",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "stopping pid {}",
            first.pid()
        )));
    assert!(!wait_with_deadline(&mut first.child).success());
    assert!(
        second.release().success(),
        "the newer holder was left alone"
    );
}

#[test]
fn replace_refuses_holders_it_must_not_stop() {
    let dir = scratch();
    // A soft marker written on another host.
    let lock = dir.path().join("remote.lock");
    fs::write(&lock, "4242\nbuild-host-7\n").unwrap();
    flockrun()
        .args([
            "try",
            "--soft",
            "--replace",
            lock.to_str().unwrap(),
            "--",
            "true",
        ])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(
            "was not replaced: it is held by pid 4242 on host build-host-7, not this one",
        ));
    assert_eq!(fs::read_to_string(&lock).unwrap(), "4242\nbuild-host-7\n");
    // A holder of another user, refused as the user who may not signal it.
    if !crate::harness::is_root() {
        eprintln!("NOTE: needs root to run as another user; checked as root in CI");
        return;
    }
    let lock = dir.path().join("root.lock");
    let root_holder = Holder::flockrun(&["exec", "--mode", "666", lock.to_str().unwrap()]);
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            FLOCKRUN,
        ])
        .args(["try", "--replace", lock.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("was not replaced")
            && stderr.contains("of user root, which this user may not signal"),
        "{stderr}"
    );
    assert!(
        root_holder.release().success(),
        "root's holder was disturbed"
    );
}
