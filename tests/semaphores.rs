//! `--slots N`: semaphores of the kernel, ofd, soft and soft-lease kinds; who gets which
//! slot, waiting for the first slot freed, the recorded N, crashes, py-filelock and OFD
//! byte locks taken by hand on the slots, and `status`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Instant;

use nix::sys::signal::Signal;
use predicates::prelude::*;

use crate::harness::{
    FLOCKRUN, Holder, PATIENCE, flockrun, has_ofd_waiter, python_with_filelock, scratch, signal,
    spawn_flockrun, wait_until, wait_until_exited, wait_with_deadline,
};

/// The kinds that make semaphores, as exec options.
const KINDS: [&[&str]; 4] = [&[], &["--fcntl"], &["--soft"], &["--soft", "--ttl", "5"]];

/// A slot holder's COMMAND: says which slot it holds, then holds until stdin closes.
const SAY_SLOT: &str = "echo \"slot $FLOCKRUN_SLOT of $FLOCKRUN_SLOTS\"; exec cat >/dev/null";

/// A flockrun holding a slot of `lock`; returns it with the slot it reported.
fn hold_slot(verb: &str, kind: &[&str], slots: &str, lock: &Path) -> (Holder, u16) {
    let mut args: Vec<&OsStr> = vec![OsStr::new(verb)];
    args.extend(kind.iter().map(OsStr::new));
    args.extend(["--slots", slots].map(OsStr::new));
    args.extend([lock.as_os_str()]);
    args.extend(["--", "sh", "-c", SAY_SLOT].map(OsStr::new));
    let mut holder = spawn_holder(&args);
    let slot = read_slot(&mut holder, slots);
    (holder, slot)
}

fn spawn_holder(args: &[&OsStr]) -> Holder {
    let words: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
    spawn_flockrun(&words)
}

/// Reads the `slot I of N` line a holder prints, checking N.
fn read_slot(holder: &mut Holder, slots: &str) -> u16 {
    let deadline = Instant::now() + PATIENCE;
    let line = holder
        .read_line_before(deadline)
        .unwrap_or_else(|| panic!("the holder said nothing: {}", holder.rest_of_output()));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{line:?}");
    assert_eq!(words[3], slots, "FLOCKRUN_SLOTS: {line:?}");
    words[1].parse().unwrap()
}

#[test]
fn each_kind_gives_n_holders_each_its_own_slot_and_refuses_the_next() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("gpu.lock");
        let holders: Vec<(Holder, u16)> = (0..3)
            .map(|_| hold_slot("exec", kind, "3", &lock))
            .collect();
        let slots: BTreeSet<u16> = holders.iter().map(|(_, s)| *s).collect();
        assert_eq!(slots, BTreeSet::from([0, 1, 2]), "{kind:?}");
        let mut args = vec!["try"];
        args.extend(kind);
        args.extend(["--slots", "3", lock.to_str().unwrap(), "--", "true"]);
        flockrun()
            .args(&args)
            .assert()
            .code(75)
            .stderr(predicate::str::contains("all 3 slots are held"));
        for (holder, _) in holders {
            assert!(holder.release().success());
        }
        // All free again: a single attempt gets slot 0.
        let (holder, slot) = hold_slot("try", kind, "3", &lock);
        assert_eq!(slot, 0, "{kind:?}");
        assert!(holder.release().success());
    }
}

#[test]
fn a_waiter_gets_the_slot_that_frees_first() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("jobs.lock");
        let mut holders: Vec<(Holder, u16)> = (0..3)
            .map(|_| hold_slot("exec", kind, "3", &lock))
            .collect();
        let mut args: Vec<&str> = vec!["exec"];
        args.extend(kind);
        args.extend(["--slots", "3", lock.to_str().unwrap(), "--", "sh", "-c"]);
        args.push("echo \"slot $FLOCKRUN_SLOT of $FLOCKRUN_SLOTS\"");
        let mut waiter = spawn_flockrun(&args);
        if kind.is_empty() || kind == ["--fcntl"] {
            // Kernel slots: the waiter at the head of the queue waits on the slot bytes.
            wait_until(
                "the waiter to wait in the kernel",
                Instant::now() + PATIENCE,
                || has_ofd_waiter(&lock).then_some(()),
            );
        }
        // Free the middle slot; the waiter must get that one.
        let at = holders.iter().position(|(_, s)| *s == 1).unwrap();
        let (freed, _) = holders.remove(at);
        assert!(freed.release().success());
        assert_eq!(read_slot(&mut waiter, "3"), 1, "{kind:?}");
        assert!(wait_with_deadline(&mut waiter.child).success());
        for (holder, _) in holders {
            assert!(holder.release().success());
        }
    }
}

#[test]
fn a_different_number_of_slots_is_refused_both_ways_naming_both() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("n.lock");
        for (first, second) in [("2", "3"), ("3", "2")] {
            let (holder, _) = hold_slot("exec", kind, first, &lock);
            let mut args = vec!["exec"];
            args.extend(kind);
            args.extend([
                "-w",
                "5",
                "--slots",
                second,
                lock.to_str().unwrap(),
                "--",
                "true",
            ]);
            flockrun()
                .args(&args)
                .assert()
                .code(65)
                .stderr(predicate::str::contains(format!(
                    "a semaphore of {first} slots in use, and this asks for --slots {second}"
                )));
            assert!(holder.release().success());
        }
        // Once nobody holds a slot, another N may be used.
        let (holder, _) = hold_slot("try", kind, "4", &lock);
        assert!(holder.release().success());
    }
}

#[test]
fn a_killed_holder_frees_its_slot() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("crash.lock");
        let (mut holder, slot) = hold_slot("exec", kind, "1", &lock);
        assert_eq!(slot, 0);
        let pid = holder.pid();
        let child = crate::harness::child_of(pid);
        signal(pid, Signal::SIGKILL);
        // A kernel slot's COMMAND holds the inherited lock: it goes too (a crashed job).
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL);
        let _ = holder.child.wait();
        wait_until_exited(child, "the holder's COMMAND to end");
        let (again, slot) = hold_slot("try", kind, "1", &lock);
        assert_eq!(slot, 0, "{kind:?}");
        assert!(again.release().success());
    }
}

/// Holds OFD write locks on byte `slot` of `path`, as util-linux 2.42's
/// `flock --fcntl --start SLOT --length 1` does; prints `HELD`, releases when stdin closes.
const PY_OFD_SLOT: &str = r#"
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
# struct flock: l_type, l_whence, l_start, l_len, l_pid (x86-64 and arm64 layout)
request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, int(sys.argv[2]), 1, 0)
fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, request)
print("HELD", flush=True)
sys.stdin.read()
"#;

#[test]
fn slot_i_of_a_kernel_semaphore_is_byte_i_for_other_ofd_lockers() {
    let dir = scratch();
    let lock = dir.path().join("bytes.lock");
    // Slot 0 taken by hand (an OFD lock on byte 0), slot 1 by flockrun's flock front end.
    let by_hand = Holder::start(
        "python3",
        &[
            OsStr::new("-c"),
            OsStr::new(PY_OFD_SLOT),
            lock.as_os_str(),
            OsStr::new("0"),
        ],
        "HELD",
    );
    let front_end = Holder::start(
        FLOCKRUN,
        &["flock", "--fcntl", "--start", "1", "--length", "1"]
            .map(OsStr::new)
            .into_iter()
            .chain([lock.as_os_str()])
            .chain(["sh", "-c", "echo ready; cat >/dev/null"].map(OsStr::new))
            .collect::<Vec<_>>(),
        "ready",
    );
    for kind in [&[][..], &["--fcntl"]] {
        let (holder, slot) = hold_slot("try", kind, "3", &lock);
        assert_eq!(slot, 2, "slots 0 and 1 are taken by hand");
        assert!(holder.release().success());
    }
    assert!(by_hand.release().success());
    assert!(front_end.release().success());
    // And the other way: a flockrun holding slot 0 keeps a hand-made lock on byte 0 out.
    let (holder, slot) = hold_slot("try", &[], "2", &lock);
    assert_eq!(slot, 0);
    flockrun()
        .args(["flock", "-n", "--fcntl", "--start", "0", "--length", "1"])
        .arg(&lock)
        .arg("true")
        .assert()
        .code(1);
    assert!(holder.release().success());
}

/// py-filelock on one slot marker: `SoftFileLock` or (4.2.11) `SoftFileLease`.
const PY_SLOT_MARKER: &str = r#"
import sys, filelock
kind, path = sys.argv[1], sys.argv[2]
if kind == "soft":
    lock = filelock.SoftFileLock(path)
else:
    lock = filelock.SoftFileLease(path, lease_duration=float(kind))
if len(sys.argv) > 3:
    try:
        lock.acquire(timeout=float(sys.argv[3]))
        lock.release()
        print("ACQUIRED")
    except filelock.Timeout:
        print("TIMEOUT")
    sys.exit(0)
with lock:
    print("HELD", flush=True)
    sys.stdin.read()
"#;

#[test]
fn soft_slots_are_py_filelock_markers_both_ways() {
    let python = python_with_filelock("4.2.11");
    for (kind, py_kind) in [(&["--soft"][..], "soft"), (&["--soft", "--ttl", "5"], "5")] {
        let dir = scratch();
        let lock = dir.path().join("py.lock");
        let slot0 = format!("{}.slot-0", lock.display());
        // Python holds slot 0: flockrun gets slot 1.
        let py = Holder::start(
            &python,
            &["-c", PY_SLOT_MARKER, py_kind, &slot0].map(OsStr::new),
            "HELD",
        );
        let (holder, slot) = hold_slot("try", kind, "2", &lock);
        assert_eq!(slot, 1, "{kind:?}");
        assert!(py.release().success());
        // flockrun holds slot 1 (and now 0): Python cannot take slot 0's marker.
        let (zero, slot) = hold_slot("try", kind, "2", &lock);
        assert_eq!(slot, 0);
        let out = std::process::Command::new(&python)
            .args(["-c", PY_SLOT_MARKER, py_kind, &slot0, "0.3"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "TIMEOUT",
            "{kind:?}"
        );
        assert!(zero.release().success());
        assert!(holder.release().success());
        let out = std::process::Command::new(&python)
            .args(["-c", PY_SLOT_MARKER, py_kind, &slot0, "5"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ACQUIRED");
    }
}

#[test]
fn status_shows_a_semaphore_slot_by_slot_in_text_and_json() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("st.lock");
        let holders: Vec<(Holder, u16)> = (0..2)
            .map(|_| hold_slot("exec", kind, "3", &lock))
            .collect();
        let out = flockrun().args(["status"]).arg(&lock).assert().code(1);
        let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(text.contains("slots    2 of 3 held"), "{kind:?}: {text}");
        for (holder, slot) in &holders {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("  slot {slot} "))
                        && l.contains(&format!("pid {}", holder.pid()))
                        && l.contains("flockrun running pid")),
                "{kind:?}: {text}"
            );
        }
        let out = flockrun()
            .args(["status", "--json"])
            .arg(&lock)
            .assert()
            .code(1);
        let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let report = &json["locks"][0];
        assert_eq!(report["state"], "held");
        assert_eq!(report["semaphore"]["slots"], 3, "{kind:?}: {report}");
        assert_eq!(report["semaphore"]["held"], 2);
        let listed: Vec<(u64, i64)> = report["semaphore"]["holders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["slot"].as_u64().unwrap(), h["pid"].as_i64().unwrap()))
            .collect();
        let mut expected: Vec<(u64, i64)> = holders
            .iter()
            .map(|(h, s)| (u64::from(*s), i64::from(h.pid())))
            .collect();
        expected.sort_unstable();
        assert_eq!(listed, expected, "{kind:?}");
        assert!(report["semaphore"]["holders"][0]["since"].is_string());
        // The old fields stay: the holders are listed there too.
        assert_eq!(report["holders"].as_array().unwrap().len(), 2);
        for (holder, _) in holders {
            assert!(holder.release().success());
        }
        let out = flockrun()
            .args(["status", "--json"])
            .arg(&lock)
            .assert()
            .code(0);
        let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        // Idle, a kernel semaphore is a plain file again; markers leave their record of N.
        assert_eq!(json["locks"][0]["state"], "free", "{kind:?}");
    }
}

#[test]
fn etcd_semaphores_give_slots_wait_refuse_another_n_and_show_in_status() {
    let cluster = crate::etcd::Cluster::start(1);
    let lock = cluster.lock("gpus");
    let hold = |verb: &str, slots: &str| -> (Holder, u16) {
        let args = [verb, "--slots", slots, &lock, "--", "sh", "-c", SAY_SLOT];
        let mut holder = spawn_flockrun(&args);
        let slot = read_slot(&mut holder, slots);
        (holder, slot)
    };
    let mut holders: Vec<(Holder, u16)> = (0..3).map(|_| hold("exec", "3")).collect();
    let slots: BTreeSet<u16> = holders.iter().map(|(_, s)| *s).collect();
    assert_eq!(slots, BTreeSet::from([0, 1, 2]));
    flockrun()
        .args(["try", "--slots", "3", &lock, "--", "true"])
        .assert()
        .code(75);
    for other in ["2", "4"] {
        flockrun()
            .args(["exec", "-w", "5", "--slots", other, &lock, "--", "true"])
            .assert()
            .code(65)
            .stderr(predicate::str::contains(format!(
                "a semaphore of 3 slots in use, and this asks for --slots {other}"
            )));
    }
    let out = flockrun().args(["status", &lock]).assert().code(1);
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("slots    3 of 3 held"), "{text}");
    for (holder, slot) in &holders {
        assert!(
            text.contains(&format!("  slot {slot} "))
                && text.contains(&format!("pid {}", holder.pid())),
            "{text}"
        );
    }
    let out = flockrun()
        .args(["status", "--json", &lock])
        .assert()
        .code(1);
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["locks"][0]["semaphore"]["slots"], 3);
    assert_eq!(json["locks"][0]["semaphore"]["held"], 3);
    // A waiter watches the keys ahead of it and gets the slot that frees.
    let args = [
        "exec",
        "--slots",
        "3",
        &lock,
        "--",
        "sh",
        "-c",
        "echo \"slot $FLOCKRUN_SLOT of $FLOCKRUN_SLOTS\"",
    ];
    let mut waiter = spawn_flockrun(&args);
    cluster.wait_for_queue("gpus", 4);
    let at = holders.iter().position(|(_, s)| *s == 1).unwrap();
    let (freed, _) = holders.remove(at);
    assert!(freed.release().success());
    assert_eq!(read_slot(&mut waiter, "3"), 1);
    assert!(wait_with_deadline(&mut waiter.child).success());
    for (holder, _) in holders {
        assert!(holder.release().success());
    }
    assert!(cluster.queue("gpus").is_empty());
}

#[test]
fn replace_refuses_an_etcd_holder_on_another_host() {
    let cluster = crate::etcd::Cluster::start(1);
    let lock = cluster.lock("remote");
    let out = cluster
        .etcdctl()
        .args(["lease", "grant", "60"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lease = text.split_whitespace().nth(1).unwrap().to_owned();
    let record = r#"{"host":"far-away","pid":4242,"command":"nightly.sh","since":"2026-12-07T10:00:00Z","by":"flockrun"}"#;
    let put = cluster
        .etcdctl()
        .args([
            "put",
            &format!("--lease={lease}"),
            &format!("remote/{lease}"),
            record,
        ])
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    flockrun()
        .args(["try", "--replace", &lock, "--", "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(
            "was not replaced: it is held by pid 4242 on host far-away, not this one",
        ));
    assert_eq!(
        cluster.queue("remote").len(),
        1,
        "the remote holder's key was touched"
    );
}

#[test]
fn a_waiter_that_times_out_or_is_stopped_leaves_nothing_behind() {
    for kind in KINDS {
        let dir = scratch();
        let lock = dir.path().join("left.lock");
        let (holder, _) = hold_slot("exec", kind, "1", &lock);
        let before_files = listing(dir.path());
        let before_locks = crate::harness::proc_locks_for(&lock).len();
        // Timed out.
        let mut args = vec!["exec", "-w", "0.3"];
        args.extend(kind);
        args.extend(["--slots", "1", lock.to_str().unwrap(), "--", "true"]);
        flockrun().args(&args).assert().code(75);
        // Stopped by a signal while it waits.
        let mut args = vec!["exec"];
        args.extend(kind);
        args.extend(["--slots", "1", lock.to_str().unwrap(), "--", "true"]);
        let mut waiter = spawn_flockrun(&args);
        if kind.is_empty() || kind == ["--fcntl"] {
            wait_until("the waiter to queue", Instant::now() + PATIENCE, || {
                has_ofd_waiter(&lock).then_some(())
            });
        } else {
            // A marker waiter watches LOCK's directory with inotify once it has found
            // every slot taken.
            let fds = format!("/proc/{}/fd", waiter.pid());
            wait_until(
                "the waiter to watch the slots",
                Instant::now() + PATIENCE,
                || {
                    std::fs::read_dir(&fds)
                        .ok()?
                        .filter_map(Result::ok)
                        .any(|fd| {
                            std::fs::read_link(fd.path())
                                .is_ok_and(|to| to.to_string_lossy().contains("inotify"))
                        })
                        .then_some(())
                },
            );
        }
        signal(waiter.pid(), Signal::SIGTERM);
        let status = wait_with_deadline(&mut waiter.child);
        assert_eq!(status.code(), Some(128 + 15), "{kind:?}");
        assert_eq!(
            listing(dir.path()),
            before_files,
            "{kind:?}: files left behind"
        );
        assert_eq!(
            crate::harness::proc_locks_for(&lock).len(),
            before_locks,
            "{kind:?}: kernel locks left behind"
        );
        assert!(holder.release().success());
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_nested_flockrun_runs_in_its_ancestors_slot() {
    let dir = scratch();
    let lock = dir.path().join("nest.lock");
    let lock = lock.to_str().unwrap();
    flockrun()
        .args([
            "exec", "--slots", "1", lock, "--", FLOCKRUN, "exec", "--slots", "1", lock,
        ])
        .args([
            "--",
            "sh",
            "-c",
            "echo slot $FLOCKRUN_SLOT of $FLOCKRUN_SLOTS",
        ])
        .assert()
        .success()
        .stdout("slot 0 of 1\n");
}
