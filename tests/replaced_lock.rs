//! The lock file deleted or replaced under a waiter. util-linux flock(1) then lets the waiter
//! run on the orphaned inode beside whoever locks the re-created path; flockrun re-checks the
//! inode after winning and starts over.

use std::fs;

use crate::harness::{
    Holder, PATIENCE, is_waiting, scratch, start_waiter, wait_until, wait_with_deadline,
};

#[test]
fn waiter_on_a_deleted_lock_file_never_runs_beside_the_new_holder() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let first = Holder::flockrun(&["exec", l]);
    let mut waiter = start_waiter(&["exec", l, "echo", "waiter-ran"], &lock);
    let waiter_pid = waiter.pid();

    // Delete the file the waiter is queued on; a newcomer creates and locks a new one.
    fs::remove_file(&lock).unwrap();
    let newcomer = Holder::flockrun(&["exec", l]);

    // The first holder lets go: the waiter wins the orphaned inode, notices, and must queue
    // again on the new file instead of running.
    assert!(first.release().success());
    wait_until(
        "the waiter to queue on the new inode",
        std::time::Instant::now() + PATIENCE,
        || is_waiting(waiter_pid, &lock).then_some(()),
    );
    assert_eq!(
        waiter.child.try_wait().unwrap(),
        None,
        "waiter ran beside the newcomer"
    );

    assert!(newcomer.release().success());
    assert!(wait_with_deadline(&mut waiter.child).success());
    assert_eq!(waiter.rest_of_output(), "waiter-ran\n");
}

#[test]
fn waiter_on_a_replaced_lock_file_never_runs_beside_the_new_holder() {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let first = Holder::flockrun(&["exec", l]);
    let mut waiter = start_waiter(&["exec", l, "echo", "waiter-ran"], &lock);
    let waiter_pid = waiter.pid();

    // Rename another file over the lock path, then lock it.
    let replacement = dir.path().join("replacement");
    fs::write(&replacement, "").unwrap();
    fs::rename(&replacement, &lock).unwrap();
    let newcomer = Holder::flockrun(&["exec", l]);

    assert!(first.release().success());
    wait_until(
        "the waiter to queue on the new inode",
        std::time::Instant::now() + PATIENCE,
        || is_waiting(waiter_pid, &lock).then_some(()),
    );
    assert_eq!(
        waiter.child.try_wait().unwrap(),
        None,
        "waiter ran beside the newcomer"
    );
    assert!(newcomer.release().success());
    assert!(wait_with_deadline(&mut waiter.child).success());
}
