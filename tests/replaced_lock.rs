//! The lock file deleted or replaced under a waiter. util-linux flock(1) then lets the waiter
//! run on the orphaned inode beside whoever locks the re-created path; flockrun re-checks the
//! inode after winning and starts over, for the kernel, ofd and sqlite kinds alike.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use crate::harness::{
    Holder, PATIENCE, has_ofd_waiter, is_waiting, scratch, spawn_flockrun, wait_until,
    wait_with_deadline,
};

/// Whether `pid` waits on the file now at `path`, as a waiter of `kind` shows it.
fn waits_on(kind: &[&str], pid: i32, path: &Path) -> bool {
    if kind.contains(&"--fcntl") {
        has_ofd_waiter(path)
    } else if kind.contains(&"write") {
        // An SQLite writer behind a writer polls without a trace in /proc/locks. flockrun
        // opens the file, then SQLite opens it by path: once both descriptors are on this
        // inode, every attempt it makes is on this inode.
        let Ok(want) = fs::metadata(path) else {
            return false;
        };
        fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.filter_map(Result::ok)
                .filter(|fd| {
                    fs::metadata(fd.path())
                        .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
                })
                .count()
                >= 2
        })
    } else {
        is_waiting(pid, path)
    }
}

/// A waiter queues behind a holder; `disturb` swaps the file at the lock path; a newcomer
/// locks the new file; the holder lets go. The waiter must queue again on the new file, and
/// run only once the newcomer is done. For each kind whose lock lives on the file's inode.
fn waiter_never_runs_beside_the_newcomer(disturb: impl Fn(&Path)) {
    for kind in [&["exec"][..], &["exec", "--fcntl"], &["write"]] {
        let dir = scratch();
        let lock = dir.path().join("l");
        let l = lock.to_str().unwrap();
        let with = |rest: &[&'static str]| -> Vec<&str> {
            let mut args = kind.to_vec();
            args.push(l);
            args.extend_from_slice(rest);
            args
        };
        let first = Holder::flockrun(&with(&[]));
        let mut waiter = spawn_flockrun(&with(&["echo", "waiter-ran"]));
        let waiter_pid = waiter.pid();
        wait_until("the waiter to queue", Instant::now() + PATIENCE, || {
            waits_on(kind, waiter_pid, &lock).then_some(())
        });

        disturb(&lock);
        let newcomer = Holder::flockrun(&with(&[]));

        // The waiter wins the orphaned inode, notices, and must queue on the new one.
        assert!(first.release().success());
        wait_until(
            &format!("the {kind:?} waiter to queue on the new inode"),
            Instant::now() + PATIENCE,
            || {
                if let Some(status) = waiter.child.try_wait().unwrap() {
                    let mut stderr = String::new();
                    let _ = waiter
                        .child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut stderr);
                    panic!("{kind:?}: the waiter ended ({status}) instead: {stderr}");
                }
                waits_on(kind, waiter_pid, &lock).then_some(())
            },
        );
        assert_eq!(
            waiter.child.try_wait().unwrap(),
            None,
            "{kind:?}: waiter ran beside the newcomer"
        );

        assert!(newcomer.release().success());
        assert!(wait_with_deadline(&mut waiter.child).success());
        assert_eq!(waiter.rest_of_output(), "waiter-ran\n");
    }
}

#[test]
fn waiter_on_a_deleted_lock_file_never_runs_beside_the_new_holder() {
    waiter_never_runs_beside_the_newcomer(|lock| fs::remove_file(lock).unwrap());
}

#[test]
fn waiter_on_a_replaced_lock_file_never_runs_beside_the_new_holder() {
    waiter_never_runs_beside_the_newcomer(|lock| {
        let replacement = lock.with_file_name("replacement");
        fs::write(&replacement, "").unwrap();
        fs::rename(&replacement, lock).unwrap();
    });
}
