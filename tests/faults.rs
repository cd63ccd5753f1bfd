//! Faults around a hold, for every kind: COMMAND stopped, continued and killed; the lock
//! file deleted or replaced during the hold; descriptors running out; a full filesystem.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use nix::sys::signal::Signal;
use predicates::prelude::*;

use crate::harness::{
    PATIENCE, child_of, flockrun, scratch, signal, spawn_flockrun, wait_until, wait_with_deadline,
    with_tmpfs,
};

/// `exec`-style arguments for each kind; the single-attempt form adds `-n`.
const KINDS: [&[&str]; 4] = [
    &["exec"],
    &["exec", "--fcntl"],
    &["write"],
    &["exec", "--soft"],
];

/// One attempt at `lock` with `kind`; returns the exit code.
fn single_attempt(kind: &[&str], lock: &Path) -> i32 {
    flockrun()
        .args(kind)
        .arg("-n")
        .arg(lock)
        .arg("true")
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`...).
fn state(pid: i32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .unwrap_or('?')
}

#[test]
fn a_stopped_command_keeps_the_lock_until_it_is_continued_and_ends() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("l");
        let mut args = kind.to_vec();
        let l = lock.to_str().unwrap();
        args.extend([l, "sh", "-c", "echo ready; kill -STOP $$; echo resumed"]);
        let mut holder = spawn_flockrun(&args);
        holder.expect_line("ready");
        let command = child_of(holder.pid());
        wait_until("COMMAND to stop", Instant::now() + PATIENCE, || {
            (state(command) == 'T').then_some(())
        });
        // flockrun waits for COMMAND to end, not to stop: still held.
        assert_eq!(single_attempt(kind, &lock), 75, "{kind:?}");
        assert_eq!(holder.child.try_wait().unwrap(), None, "{kind:?}");
        signal(command, Signal::SIGCONT);
        holder.expect_line("resumed");
        assert!(wait_with_deadline(&mut holder.child).success(), "{kind:?}");
        assert_eq!(single_attempt(kind, &lock), 0, "{kind:?}");
    }
}

#[test]
fn a_killed_command_gives_137_and_frees_the_lock() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("l");
        let mut args = kind.to_vec();
        args.extend([
            lock.to_str().unwrap(),
            "sh",
            "-c",
            "echo ready; exec cat >/dev/null",
        ]);
        let mut holder = spawn_flockrun(&args);
        holder.expect_line("ready");
        signal(child_of(holder.pid()), Signal::SIGKILL);
        assert_eq!(
            wait_with_deadline(&mut holder.child).code(),
            Some(137),
            "{kind:?}"
        );
        assert_eq!(single_attempt(kind, &lock), 0, "{kind:?}");
        if kind.contains(&"--soft") {
            assert!(!lock.exists(), "the marker was left behind");
        }
    }
}

type Disturbance<'a> = &'a dyn Fn(&Path);

/// Nobody can stop a lock file being deleted or replaced during a hold: a newcomer then
/// locks the new file. flockrun says so when the hold ends, so the log shows it.
#[test]
fn a_lock_file_deleted_or_replaced_during_the_hold_is_reported() {
    let replace = |lock: &Path| {
        let new = lock.with_file_name("new");
        fs::write(&new, "").unwrap();
        fs::rename(&new, lock).unwrap();
    };
    let delete = |lock: &Path| fs::remove_file(lock).unwrap();
    let disturbances: [(&str, Disturbance); 2] = [("deleted", &delete), ("replaced", &replace)];
    for kind in KINDS {
        for (what, disturb) in disturbances {
            if what == "replaced" && kind.contains(&"--soft") {
                continue; // an empty file at a soft lock's path is a held marker, not a lock file
            }
            let dir = scratch();
            let lock = dir.path().join("l");
            let mut args = kind.to_vec();
            args.extend([
                lock.to_str().unwrap(),
                "sh",
                "-c",
                "echo ready; cat >/dev/null",
            ]);
            let mut holder = spawn_flockrun(&args);
            holder.expect_line("ready");
            disturb(&lock);
            assert_eq!(single_attempt(kind, &lock), 0, "{kind:?} {what}");
            let (status, stderr) = holder.release_with_stderr();
            assert!(status.success(), "{kind:?} {what}");
            assert!(
                stderr.contains("was deleted or replaced while the lock was held"),
                "{kind:?} {what}: {stderr}"
            );
        }
    }
    // An undisturbed hold says nothing.
    let dir = scratch();
    let lock = dir.path().join("l");
    flockrun()
        .arg("exec")
        .arg(&lock)
        .arg("true")
        .assert()
        .success()
        .stderr("");
}

/// Every descriptor limit from "not even the lock file" to "plenty": a clear message and
/// 71, or success; never a panic, a wrong diagnosis, or something left locked.
#[test]
fn running_out_of_descriptors_is_71_for_every_kind() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("l");
        let mut succeeded = false;
        for limit in 3..=10 {
            // COMMAND is flockrun itself, static: it needs no descriptor to start, so
            // what fails is flockrun's, not the dynamic loader's of a COMMAND.
            let script = format!(
                "ulimit -n {limit}; exec {0} {1} {2} {0} --version",
                crate::harness::FLOCKRUN,
                kind.join(" "),
                lock.display()
            );
            let out = Command::new("sh").args(["-c", &script]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => succeeded = true,
                Some(71) => assert!(
                    stderr.contains("Too many open files"),
                    "{kind:?} ulimit {limit}: {stderr}"
                ),
                other => panic!("{kind:?} ulimit {limit}: status {other:?}: {stderr}"),
            }
            assert_eq!(single_attempt(kind, &lock), 0, "{kind:?} left locked");
        }
        assert!(succeeded, "{kind:?} never ran even with 10 descriptors");
    }
}

#[test]
fn a_full_filesystem_refuses_to_create_and_leaves_nothing() {
    with_tmpfs("size=64k,nr_inodes=8", |mnt| {
        fs::write(mnt.join("existing.lock"), "").unwrap();
        // Fill the blocks: a soft marker needs one for its record.
        let _ = fs::write(mnt.join("filler"), vec![0u8; 128 * 1024]);
        flockrun()
            .args(["exec", "--soft"])
            .arg(mnt.join("soft.lock"))
            .arg("true")
            .assert()
            .code(73)
            .stderr(predicate::str::contains("No space left on device"))
            .stderr(predicate::str::contains("free some space"));
        // Use up the inodes: no new lock file can be made at all.
        for i in 0.. {
            if fs::write(mnt.join(format!("inode-{i}")), "").is_err() {
                break;
            }
        }
        for kind in [&["exec"][..], &["write"], &["exec", "--fcntl"]] {
            flockrun()
                .args(kind)
                .arg(mnt.join("new.lock"))
                .arg("true")
                .assert()
                .code(73)
                .stderr(predicate::str::contains("free some space"));
        }
        // An existing lock file needs no space.
        flockrun()
            .arg("exec")
            .arg(mnt.join("existing.lock"))
            .arg("true")
            .assert()
            .code(0);
        let names: Vec<String> = fs::read_dir(mnt)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("soft") || n.contains("new"))
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");
    });
}
