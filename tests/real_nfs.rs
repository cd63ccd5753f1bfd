//! Every cross-host promise, on real Linux NFS: two NFS clients of one server, each a
//! virtual machine with its own kernel (`nfs_bed.rs`). The soft kinds and py-filelock across
//! the clients, crashed and cut-off clients, a hung and a restarted server, and the kernel
//! kinds through NFSv4 locks and NFSv3's lock manager, with the warnings where a mount keeps
//! locks on one client.

use std::ffi::OsStr;
use std::path::Path;

use crate::harness::{HOLD_SH, PY_FILELOCK_VERSIONS, PY_HOLD, PY_TRY, python_with_filelock};
use crate::nfs_bed::{Machine, Mount, NfsBed};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lock_in(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// `flockrun try ARGS -- true` on `machine`: its exit status and stderr.
fn try_on(bed: &NfsBed, machine: Machine, args: &[&str]) -> (i32, String) {
    let mut all = vec!["try"];
    all.extend_from_slice(args);
    all.extend(["--", "true"]);
    let out = bed.flockrun(machine, &all);
    (out.status.code().unwrap_or(-1), text(&out.stderr))
}

/// One bounded py-filelock attempt of `kind` (`native` or `soft`) on `machine`.
fn py_try_on(bed: &NfsBed, machine: Machine, version: &str, kind: &str, lock: &str) -> String {
    let python = python_with_filelock(version);
    let args = ["-c", PY_TRY, kind, lock, "0.5"].map(OsStr::new);
    let out = bed.output(machine, &python, &args);
    assert!(out.status.success(), "py-filelock: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

#[test]
fn the_bed_has_two_clients_that_share_files_and_kernel_locks() {
    let bed = NfsBed::take();
    for machine in [Machine::S, Machine::A, Machine::B] {
        assert_eq!(bed.sh(machine, "hostname"), machine.name());
    }
    let dir = bed.fresh_dir(Mount::V4, "bed");
    let file = lock_in(&dir, "made-on-a");
    bed.sh(Machine::A, &format!("echo hello > {file}"));
    assert_eq!(bed.sh(Machine::B, &format!("cat {file}")), "hello");
    assert_eq!(bed.sh(Machine::S, &format!("cat {file}")), "hello");
    // The same directory through NFSv3 on B.
    let v3 = file.replace("/mnt/v4/", "/mnt/v3/");
    assert_eq!(bed.sh(Machine::B, &format!("cat {v3}")), "hello");
    // flock(1) on A keeps flock(1) on B out through the server, except on a nolock mount.
    for (mount, crosses) in [(Mount::V4, true), (Mount::V3, true), (Mount::V3NoLock, false)] {
        let dir = bed.fresh_dir(mount, "bed-flock");
        let lock = lock_in(&dir, "k.lock");
        let holder = bed.hold(
            Machine::A,
            "flock",
            &[lock.as_str(), "sh", "-c", HOLD_SH].map(OsStr::new),
            "ready",
        );
        let out = bed.output(
            Machine::B,
            "flock",
            &["-n", lock.as_str(), "true"].map(OsStr::new),
        );
        assert_eq!(out.status.success(), !crosses, "{mount:?}: {out:?}");
        drop(holder);
    }
}

#[test]
fn kernel_and_ofd_locks_exclude_flock1_py_filelock_and_flockrun_across_clients() {
    let bed = NfsBed::take();
    for mount in [Mount::V4, Mount::V3] {
        let dir = bed.fresh_dir(mount, "kernel");
        let lock = lock_in(&dir, "k.lock");
        let lock = lock.as_str();
        // flockrun holds on A: everything on B is kept out and told who holds it.
        let holder = bed.hold_flockrun(Machine::A, &["exec", lock]);
        let (status, stderr) = try_on(&bed, Machine::B, &[lock]);
        assert_eq!(status, 75, "{mount:?}: {stderr}");
        assert!(stderr.contains("another NFS client"), "{mount:?}: {stderr}");
        let flock = bed.output(Machine::B, "flock", &["-n", lock, "true"].map(OsStr::new));
        assert_eq!(flock.status.code(), Some(1), "{mount:?}: {flock:?}");
        for version in PY_FILELOCK_VERSIONS {
            assert_eq!(py_try_on(&bed, Machine::B, version, "native", lock), "TIMEOUT");
        }
        // On NFS, flock(2) travels as a whole-file record lock: the ofd kind conflicts too.
        assert_eq!(try_on(&bed, Machine::B, &["--fcntl", lock]).0, 75, "{mount:?}");
        drop(holder);
        // flock(1) and py-filelock holding on A keep flockrun on B out.
        let holder = bed.hold(
            Machine::A,
            "flock",
            &[lock, "sh", "-c", HOLD_SH].map(OsStr::new),
            "ready",
        );
        assert_eq!(try_on(&bed, Machine::B, &[lock]).0, 75, "{mount:?}");
        drop(holder);
        for version in PY_FILELOCK_VERSIONS {
            let python = python_with_filelock(version);
            let mut holder = bed.hold(
                Machine::A,
                &python,
                &["-c", PY_HOLD, "native", lock].map(OsStr::new),
                "STARTED",
            );
            holder.expect_line_within("HELD", crate::nfs_bed::BED_PATIENCE);
            assert_eq!(try_on(&bed, Machine::B, &[lock]).0, 75, "{mount:?} {version}");
            drop(holder);
        }
        // Shared holds share across clients and keep an exclusive one out; so do OFD locks.
        for kind in [&[][..], &["--fcntl"][..]] {
            let mut args = vec!["exec", "-s"];
            args.extend_from_slice(kind);
            args.push(lock);
            let holder = bed.hold_flockrun(Machine::A, &args);
            let mut shared = vec!["-s"];
            shared.extend_from_slice(kind);
            shared.push(lock);
            assert_eq!(try_on(&bed, Machine::B, &shared).0, 0, "{mount:?} {kind:?}");
            let mut exclusive = kind.to_vec();
            exclusive.push(lock);
            assert_eq!(try_on(&bed, Machine::B, &exclusive).0, 75, "{mount:?} {kind:?}");
            drop(holder);
        }
        // Once released, B takes it.
        assert_eq!(try_on(&bed, Machine::B, &[lock]).0, 0, "{mount:?}");
    }
}
