//! The lock file deleted or replaced under a waiter. util-linux flock(1) then lets the waiter
//! run on the orphaned inode beside whoever locks the re-created path; flockrun re-checks the
//! inode after winning and starts over.

use std::fs;
use std::path::Path;
use std::time::Instant;

use crate::harness::{
    Holder, PATIENCE, is_waiting, scratch, start_waiter, wait_until, wait_with_deadline,
};

/// A waiter queues behind a holder; `disturb` swaps the file at the lock path; a newcomer
/// locks the new file; the holder lets go. The waiter must queue again on the new file, and
/// run only once the newcomer is done.
fn waiter_never_runs_beside_the_newcomer(disturb: impl FnOnce(&Path)) {
    let dir = scratch();
    let lock = dir.path().join("l");
    let l = lock.to_str().unwrap();
    let first = Holder::flockrun(&["exec", l]);
    let mut waiter = start_waiter(&["exec", l, "echo", "waiter-ran"], &lock);
    let waiter_pid = waiter.pid();

    disturb(&lock);
    let newcomer = Holder::flockrun(&["exec", l]);

    // The waiter wins the orphaned inode, notices, and must queue on the new one.
    assert!(first.release().success());
    let deadline = Instant::now() + PATIENCE;
    wait_until("the waiter to queue on the new inode", deadline, || {
        is_waiting(waiter_pid, &lock).then_some(())
    });
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
