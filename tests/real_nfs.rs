//! Every cross-host promise, on real Linux NFS: two NFS clients of one server, each a
//! virtual machine with its own kernel (`nfs_bed.rs`). The soft kinds and py-filelock across
//! the clients, crashed and cut-off clients, a hung and a restarted server, and the kernel
//! kinds through NFSv4 locks and NFSv3's lock manager, with the warnings where a mount keeps
//! locks on one client.

use std::ffi::OsStr;
use std::path::Path;

use crate::harness::{HOLD_SH, PY_FILELOCK_VERSIONS, PY_HOLD, PY_TRY, python_with_filelock};
use crate::nfs_bed::{BED_PATIENCE, LEASE, Machine, Mount, NfsBed};

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
    for (mount, crosses) in [
        (Mount::V4, true),
        (Mount::V3, true),
        (Mount::V3NoLock, false),
    ] {
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
            assert_eq!(
                py_try_on(&bed, Machine::B, version, "native", lock),
                "TIMEOUT"
            );
        }
        // On NFS, flock(2) travels as a whole-file record lock: the ofd kind conflicts too.
        assert_eq!(
            try_on(&bed, Machine::B, &["--fcntl", lock]).0,
            75,
            "{mount:?}"
        );
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
            assert_eq!(
                try_on(&bed, Machine::B, &[lock]).0,
                75,
                "{mount:?} {version}"
            );
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
            assert_eq!(
                try_on(&bed, Machine::B, &exclusive).0,
                75,
                "{mount:?} {kind:?}"
            );
            drop(holder);
        }
        // Once released, B takes it.
        assert_eq!(try_on(&bed, Machine::B, &[lock]).0, 0, "{mount:?}");
    }
}

/// A holder on A whose COMMAND writes the wall-clock time into `/tmp/alive-NAME` (A's own
/// disk, which a cut NFS link leaves alone) every 50 ms, for as long as it runs.
fn stamping_holder(bed: &NfsBed, args: &[&str], name: &str) -> crate::harness::Holder {
    // Written aside and renamed: a stamp cut off by SIGTERM halfway is never read.
    let script = format!(
        "echo ready; while :; do date +%s.%N > /tmp/alive-{name}.new; \
         mv /tmp/alive-{name}.new /tmp/alive-{name}; sleep 0.05; done"
    );
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend(["--", "sh", "-c", script.as_str()].map(OsStr::new));
    bed.hold(Machine::A, crate::harness::FLOCKRUN, &all, "ready")
}

/// The last time A's stamping COMMAND `name` was alive.
fn last_alive(bed: &NfsBed, name: &str) -> f64 {
    bed.sh(Machine::A, &format!("cat /tmp/alive-{name}"))
        .parse()
        .unwrap()
}

/// B tries `flockrun try ARGS` every 0.2 s until it gets the lock, and prints when its
/// COMMAND started: the earliest moment the server hands the lock on shows within 0.2 s.
fn eager_contender(bed: &NfsBed, args: &[&str]) -> std::process::Child {
    let script = format!(
        "until {} try {} -- date +%s.%N 2>/dev/null; do sleep 0.2; done",
        crate::harness::FLOCKRUN,
        args.join(" ")
    );
    bed.command(Machine::B, "sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(child: &mut std::process::Child, patience: std::time::Duration) -> i32 {
    crate::harness::wait_with_deadline_of(child, patience)
        .code()
        .unwrap_or(-1)
}

#[test]
fn a_cut_off_nfs4_holder_stops_its_command_before_the_other_client_gets_the_lock() {
    use std::io::Read;
    let bed = NfsBed::take();
    for (name, kind) in [("kernel", None), ("ofd", Some("--fcntl"))] {
        let dir = bed.fresh_dir(Mount::V4, &format!("cut-{name}"));
        let lock = lock_in(&dir, "k.lock");
        let mut args = vec!["exec"];
        args.extend(kind);
        args.push(&lock);
        let mut holder = stamping_holder(&bed, &args, name);
        let mut contender_args: Vec<&str> = kind.into_iter().collect();
        contender_args.push(&lock);
        let mut contender = eager_contender(&bed, &contender_args);
        let cut = bed.clock(Machine::S);
        bed.partition(Machine::A);
        let status = wait_for(&mut holder.child, BED_PATIENCE);
        let mut stderr = String::new();
        let _ = holder
            .child
            .stderr
            .take()
            .map(|mut e| e.read_to_string(&mut stderr));
        assert_eq!(status, 79, "{name}: the cut-off holder's status");
        let stopped = last_alive(&bed, name);
        assert_eq!(
            wait_for(&mut contender, BED_PATIENCE),
            0,
            "{name}: B never got it"
        );
        let mut out = String::new();
        contender
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let started: f64 = out.trim().parse().unwrap();
        eprintln!(
            "{name}: A's COMMAND stopped {:.2}s after the cut, B's started {:.2}s after it: \
             {:.2}s apart",
            stopped - cut,
            started - cut,
            started - stopped
        );
        assert!(
            stopped < started,
            "{name}: B's COMMAND started {:.2}s before A's was stopped",
            stopped - started
        );
        assert!(stopped - cut < f64::from(LEASE), "{name}: stopped late");
        bed.heal(Machine::A);
    }
}

#[test]
fn an_nfs_server_restart_where_the_client_reclaims_its_lock_is_not_a_loss() {
    let bed = NfsBed::take();
    let dirs: Vec<_> = [Mount::V4, Mount::V3]
        .into_iter()
        .map(|mount| (mount, lock_in(&bed.fresh_dir(mount, "restart"), "k.lock")))
        .collect();
    let holders: Vec<_> = dirs
        .iter()
        .map(|(_, lock)| bed.hold_flockrun(Machine::A, &["exec", lock]))
        .collect();
    bed.restart_nfsd();
    bed.wait_grace();
    for (mount, lock) in &dirs {
        let (status, stderr) = try_on(&bed, Machine::B, &[lock]);
        assert_eq!(
            status, 75,
            "{mount:?}: A's lock was not reclaimed: {stderr}"
        );
    }
    for ((mount, _), holder) in dirs.iter().zip(holders) {
        let (status, stderr) = holder.release_with_stderr();
        assert_eq!(status.code(), Some(0), "{mount:?}: {stderr}");
    }
    for (mount, lock) in &dirs {
        assert_eq!(try_on(&bed, Machine::B, &[lock]).0, 0, "{mount:?}");
    }
}

#[test]
fn a_lock_the_nfs4_server_dropped_is_noticed_and_its_command_stopped() {
    use std::io::Read;
    let bed = NfsBed::take();
    let lock = lock_in(&bed.fresh_dir(Mount::V4, "dropped"), "k.lock");
    let mut holder = stamping_holder(&bed, &["exec", &lock], "dropped");
    bed.expire_client(Machine::A);
    assert_eq!(wait_for(&mut holder.child, BED_PATIENCE), 79);
    let mut stderr = String::new();
    let _ = holder
        .child
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut stderr));
    let _ = stderr;
    // The server gave the lock up at once, so B may take it.
    assert_eq!(try_on(&bed, Machine::B, &[&lock]).0, 0);
}

#[test]
fn a_cut_off_nfs3_holder_keeps_its_lock_and_the_other_client_is_told_why_it_waits() {
    let bed = NfsBed::take();
    let lock = lock_in(&bed.fresh_dir(Mount::V3, "cut-v3"), "k.lock");
    let mut holder = stamping_holder(&bed, &["exec", &lock], "cut-v3");
    bed.partition(Machine::A);
    let cut = bed.clock(Machine::S);
    // Past what an NFSv4 lease would allow, B is still kept out, and told why.
    let wait = (f64::from(LEASE) * 1.5).to_string();
    let out = bed.flockrun(Machine::B, &["exec", "-w", &wait, &lock, "--", "true"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("another NFS client") && stderr.contains("until that client boots"),
        "{stderr}"
    );
    assert!(
        last_alive(&bed, "cut-v3") > cut + f64::from(LEASE),
        "A's COMMAND did not run on"
    );
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "A's flockrun ended"
    );
    bed.heal(Machine::A);
    drop(holder);
}

#[test]
fn status_shows_a_holder_on_another_nfs_client_without_a_pid() {
    let bed = NfsBed::take();
    for mount in [Mount::V4, Mount::V3] {
        let dir = bed.fresh_dir(mount, "status");
        for (mode, args) in [("exclusive", &[][..]), ("shared", &["-s"][..])] {
            let lock = lock_in(&dir, &format!("{mode}.lock"));
            let mut all = vec!["exec"];
            all.extend_from_slice(args);
            all.push(&lock);
            let holder = bed.hold_flockrun(Machine::A, &all);
            let out = bed.flockrun(Machine::B, &["status", &lock]);
            let shown = text(&out.stdout);
            if mode == "shared" {
                // The server's lock test passes over a shared holder here (NFSv4: B holds a
                // read delegation and answers the test itself; NFSv3: lockd answers that a
                // write lock would be granted): status must say it may miss one rather than
                // call the lock free without a word.
                assert!(
                    shown.contains("held (shared, kernel)") || shown.contains("not a shared one"),
                    "{mount:?}: {shown}"
                );
            } else {
                assert!(
                    shown.contains(&format!("held ({mode}, kernel)"))
                        && shown.contains("another NFS client")
                        && shown.contains("pid unknown"),
                    "{mount:?} {mode}: {shown}"
                );
                let json = text(
                    &bed.flockrun(Machine::B, &["status", "--json", &lock])
                        .stdout,
                );
                assert!(
                    json.contains("\"state\":\"held\"") && json.contains("\"elsewhere\":"),
                    "{mount:?} {mode}: {json}"
                );
            }
            drop(holder);
            let out = bed.flockrun(Machine::B, &["status", &lock]);
            assert!(
                text(&out.stdout).contains(": free"),
                "{mount:?} {mode}: {out:?}"
            );
        }
    }
}

#[test]
fn kernel_kinds_warn_exactly_where_the_mount_keeps_their_locks_on_one_client() {
    let bed = NfsBed::take();
    // (mount, kernel kind kept local, ofd kind kept local)
    let cases = [
        (Mount::V4, false, false),
        (Mount::V3, false, false),
        (Mount::V3NoLock, true, true),
        (Mount::V3LocalAll, true, true),
        (Mount::V3LocalFlock, true, false),
        (Mount::V3LocalPosix, false, true),
    ];
    for (mount, kernel_local, ofd_local) in cases {
        let dir = bed.fresh_dir(mount, "warn");
        for (kind, local) in [(None, kernel_local), (Some("--fcntl"), ofd_local)] {
            let lock = lock_in(&dir, &format!("{}.lock", kind.unwrap_or("kernel")));
            let mut args: Vec<&str> = kind.into_iter().collect();
            args.push(&lock);
            let (status, stderr) = try_on(&bed, Machine::A, &args);
            assert_eq!(status, 0, "{mount:?} {kind:?}: {stderr}");
            assert_eq!(
                stderr.contains("a process on another host can hold the same"),
                local,
                "{mount:?} {kind:?}: {stderr}"
            );
            let mut refuse = vec!["--refuse-host-local"];
            refuse.extend_from_slice(&args);
            let (status, stderr) = try_on(&bed, Machine::A, &refuse);
            assert_eq!(
                status,
                if local { 65 } else { 0 },
                "{mount:?} {kind:?}: {stderr}"
            );
            // And the warning tells the truth: where it is given, B is not kept out.
            let mut hold = vec!["exec"];
            hold.extend_from_slice(&args);
            let holder = bed.hold_flockrun(Machine::A, &hold);
            let (status, _) = try_on(&bed, Machine::B, &args);
            assert_eq!(status, if local { 0 } else { 75 }, "{mount:?} {kind:?}");
            if local {
                let status_kind = if kind.is_some() { "ofd" } else { "kernel" };
                let shown = text(
                    &bed.flockrun(Machine::B, &["status", "--kind", status_kind, &lock])
                        .stdout,
                );
                assert!(shown.contains("does not show here"), "{mount:?}: {shown}");
            }
            drop(holder);
        }
    }
}
