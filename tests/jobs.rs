//! Job control: `--run-limit` (and `--kill-after`) and `--replace`, and the usage errors
//! of the job options.

use std::fs;
use std::time::{Duration, Instant};

use predicates::prelude::*;

use crate::harness::{
    FLOCKRUN, Holder, PATIENCE, flockrun, scratch, spawn_flockrun, wait_until, wait_until_exited,
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
