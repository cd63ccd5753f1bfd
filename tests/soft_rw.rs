//! `read --soft` and `write --soft`: py-filelock's `SoftReadWriteLock`, layout v1 (3.28)
//! and v2 (4.2.11), against the real py-filelock, with real processes. The two-host tests are
//! in `shared_fs.rs`; load and chaos in `load.rs`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{
    FLOCKRUN, HOLD_SH, Holder, PATIENCE, flockrun, python_with_filelock, scratch, signal,
    start_soft_waiter, wait_until,
};

/// Holds a py-filelock `SoftReadWriteLock` (`read` or `write`, stale threshold TTL, heartbeat
/// TTL/3): prints `STARTED`, then `HELD <generation>` (`None` in 3.28), releases when stdin
/// closes.
pub const PY_SRW_HOLD: &str = r#"
import sys, filelock
mode, path, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
lock = filelock.SoftReadWriteLock(path, heartbeat_interval=ttl / 3, stale_threshold=ttl,
                                  poll_interval=0.01, is_singleton=False)
print("STARTED", flush=True)
(lock.acquire_read if mode == "read" else lock.acquire_write)()
print("HELD", getattr(lock, "generation", None), flush=True)
sys.stdin.read()
lock.release()
"#;

/// One bounded `SoftReadWriteLock` attempt: prints `ACQUIRED <generation>` or `TIMEOUT`.
pub const PY_SRW_TRY: &str = r#"
import sys, filelock
mode, path, ttl, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
lock = filelock.SoftReadWriteLock(path, heartbeat_interval=ttl / 3, stale_threshold=ttl,
                                  poll_interval=0.01, is_singleton=False)
try:
    (lock.acquire_read if mode == "read" else lock.acquire_write)(timeout=timeout)
    print("ACQUIRED", getattr(lock, "generation", None))
    lock.release()
except filelock.Timeout:
    print("TIMEOUT")
"#;

pub fn py_srw_hold(version: &str, mode: &str, lock: &Path, ttl: &str) -> Holder {
    let python = python_with_filelock(version);
    let args = [
        OsStr::new("-c"),
        OsStr::new(PY_SRW_HOLD),
        OsStr::new(mode),
        lock.as_os_str(),
        OsStr::new(ttl),
    ];
    let mut holder = Holder::start(python, &args, "STARTED");
    holder.expect_line_containing("HELD");
    holder
}

pub fn py_srw_try(version: &str, mode: &str, lock: &Path, ttl: &str, timeout: &str) -> String {
    let out = Command::new(python_with_filelock(version))
        .args(["-c", PY_SRW_TRY, mode])
        .arg(lock)
        .args([ttl, timeout])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `flockrun read|write --soft --ttl TTL [extra] LOCK -- sh -c HOLD_SH`, once it holds.
fn hold(mode: &str, lock: &Path, ttl: &str, extra: &[&str]) -> Holder {
    let mut args = vec![mode, "--soft", "--ttl", ttl];
    args.extend(extra);
    args.push(lock.to_str().unwrap());
    args.extend(["--", "sh", "-c", HOLD_SH]);
    Holder::flockrun(&args)
}

/// One attempt (`-n`) of `flockrun read|write --soft`; its exit status.
fn try_once(mode: &str, lock: &Path, ttl: &str, extra: &[&str]) -> i32 {
    let mut cmd = flockrun();
    cmd.args([mode, "-n", "--soft", "--ttl", ttl]).args(extra);
    cmd.arg(lock).args(["--", "true"]);
    cmd.output().unwrap().status.code().unwrap()
}

fn beside(lock: &Path, suffix: &str) -> PathBuf {
    let mut name = lock.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn records_are_byte_for_byte_what_py_filelock_writes() {
    let dir = scratch();
    let lock = dir.path().join("data.lock");
    let out = flockrun()
        .args(["write", "--soft", "--ttl", "3"])
        .arg(&lock)
        .args(["--", "sh", "-c"])
        .arg(
            "echo $FLOCKRUN_KIND $FLOCKRUN_MODE $FLOCKRUN_FENCE; cat \"$FLOCKRUN_LOCK.write\"; \
             cat \"$FLOCKRUN_LOCK\".rw/holders/*; cat \"$FLOCKRUN_LOCK.rw/gen/00000000000000000001\"",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "soft-rw write 1");
    // Layout v1: token, pid, raw host name, as 3.28 writes it.
    let token = lines[1];
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()));
    let pid: i32 = lines[2].parse().unwrap();
    assert_eq!(lines[3], host_name());
    // Layout v2's holder record and the granting snapshot, as 4.2.11 writes them.
    let (py_host, _) = crate::harness::py_identity(pid);
    assert_eq!(lines[4], "filelock-rw/1");
    let v2_token = lines[5].strip_prefix("token=").unwrap();
    assert_eq!(lines[6], format!("pid={pid}"));
    assert_eq!(lines[7], format!("host={py_host}"));
    assert_eq!(lines[8], "lease=3.0");
    assert!(lines[9].starts_with("nonce=") && lines[9].len() == 6 + 32);
    assert_eq!(
        &lines[10..],
        [
            "filelock-rw/1",
            "generation=1",
            &format!("writer={v2_token}")
        ]
    );
    // Directories 0700, records 0600 (both layouts): what py-filelock makes them.
    for d in [".readers", ".rw", ".rw/gen", ".rw/holders"] {
        assert_eq!(mode_of(&beside(&lock, d)), 0o700, "{d}");
    }
    for f in [".rw/gen/00000000000000000001", ".rw/gen/epoch"] {
        assert_eq!(mode_of(&beside(&lock, f)), 0o600, "{f}");
    }
    // Released: the writer's marker and holder record are gone, the log says so, LOCK
    // itself was never created.
    assert!(!beside(&lock, ".write").exists());
    assert!(!lock.exists());
    assert_eq!(
        fs::read_dir(beside(&lock, ".rw/holders")).unwrap().count(),
        0
    );
    let head = fs::read_to_string(beside(&lock, ".rw/gen/HEAD")).unwrap();
    assert!(head.ends_with("filelock-rw/1\ngeneration=2\n"), "{head:?}");

    // A reader's v1 marker: LOCK.readers/<32 hex>.<pid>, 0600.
    let reader = hold("read", &lock, "3", &[]);
    let names: Vec<String> = fs::read_dir(beside(&lock, ".readers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let (hex, pid) = names[0].split_once('.').unwrap();
    assert_eq!(hex.len(), 32);
    assert_eq!(pid, reader.pid().to_string());
    let marker = fs::read_to_string(beside(&lock, ".readers").join(&names[0])).unwrap();
    assert!(
        marker.ends_with(&format!("\n{pid}\n{}\n", host_name())),
        "{marker:?}"
    );
    assert_eq!(mode_of(&beside(&lock, ".readers").join(&names[0])), 0o600);
    assert!(reader.release().success());
}

/// Every pairing: flockrun (both layouts, the default) against py-filelock 3.28 (v1) and
/// 4.2.11 (v2), each side holding in turn.
#[test]
fn py_filelock_of_either_layout_and_flockrun_exclude_each_other_both_ways() {
    let dir = scratch();
    let lock = dir.path().join("x.lock");
    for version in ["3.28.0", "4.2.11"] {
        // flockrun writes: py-filelock can neither read nor write.
        let held = hold("write", &lock, "3", &[]);
        for mode in ["read", "write"] {
            assert_eq!(
                py_srw_try(version, mode, &lock, "3", "0.3"),
                "TIMEOUT",
                "{version} {mode}"
            );
        }
        assert!(held.release().success());
        // flockrun reads: py-filelock may read, not write.
        let held = hold("read", &lock, "3", &[]);
        assert!(py_srw_try(version, "read", &lock, "3", "5").starts_with("ACQUIRED"));
        assert_eq!(
            py_srw_try(version, "write", &lock, "3", "0.3"),
            "TIMEOUT",
            "{version}"
        );
        assert!(held.release().success());
        // py-filelock writes: flockrun can neither read nor write.
        let py = py_srw_hold(version, "write", &lock, "3");
        assert_eq!(try_once("read", &lock, "3", &[]), 75, "{version}");
        assert_eq!(try_once("write", &lock, "3", &[]), 75, "{version}");
        drop(py);
        // py-filelock reads: flockrun may read, not write.
        let py = py_srw_hold(version, "read", &lock, "3");
        assert_eq!(try_once("read", &lock, "3", &[]), 0, "{version}");
        assert_eq!(try_once("write", &lock, "3", &[]), 75, "{version}");
        drop(py);
        // --layout narrowed to the peer's own still excludes it.
        let layout = if version == "3.28.0" { "v1" } else { "v2" };
        let held = hold("write", &lock, "3", &["--layout", layout]);
        assert_eq!(py_srw_try(version, "read", &lock, "3", "0.3"), "TIMEOUT");
        assert!(held.release().success());
    }
}

#[test]
fn the_default_holds_out_a_3_28_and_a_4_2_11_reader_at_once() {
    let dir = scratch();
    let lock = dir.path().join("x.lock");
    // The two Python readers do not see each other's layout; a flockrun writer sees both.
    let old = py_srw_hold("3.28.0", "read", &lock, "3");
    let new = py_srw_hold("4.2.11", "read", &lock, "3");
    let mut writer = crate::harness::spawn_flockrun(&[
        "write",
        "-w",
        "20",
        "--soft",
        "--ttl",
        "3",
        lock.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        HOLD_SH,
    ]);
    drop(old);
    // The 3.28 reader gone, the writer holds layout v1 but still waits in v2, behind the
    // 4.2.11 reader.
    let writer_pid = writer.pid();
    wait_until("the writer to hold v1", Instant::now() + PATIENCE, || {
        let s = status_of(&lock);
        let has =
            |key: &str, layout: &str| {
                s[key].as_array().unwrap().iter().any(|m| {
                    m["pid"] == writer_pid && m["layout"] == layout && m["role"] == "writer"
                })
            };
        (has("holders", "v1") && has("waiters", "v2")).then_some(())
    });
    assert!(writer.child.try_wait().unwrap().is_none());
    drop(new);
    writer.expect_line("ready");
    assert!(writer.release().success());
}

#[test]
fn a_waiting_writer_keeps_new_readers_of_both_layouts_out() {
    let dir = scratch();
    let lock = dir.path().join("w.lock");
    let lock_arg = lock.to_str().unwrap();
    for first_reader in ["flockrun", "3.28.0", "4.2.11"] {
        let reader = match first_reader {
            "flockrun" => hold("read", &lock, "3", &[]),
            version => py_srw_hold(version, "read", &lock, "3"),
        };
        let mut writer = start_soft_waiter(&[
            "write", "-w", "30", "--soft", "--ttl", "3", lock_arg, "--", "sh", "-c", HOLD_SH,
        ]);
        // The writer has its name in both layouts: LOCK.write, and the log's writer (each
        // held, or waiting for the reader of that layout).
        let writer_pid = writer.pid();
        wait_until("the writer's claims", Instant::now() + PATIENCE, || {
            let s = status_of(&lock);
            let claims = ["holders", "waiters"]
                .iter()
                .flat_map(|k| s[*k].as_array().cloned().unwrap_or_default())
                .filter(|m| m["pid"] == writer_pid && m["role"] == "writer")
                .count();
            (claims == 2).then_some(())
        });
        for version in ["3.28.0", "4.2.11"] {
            assert_eq!(
                py_srw_try(version, "read", &lock, "3", "0.3"),
                "TIMEOUT",
                "a {version} reader got in past a waiting writer ({first_reader} reads)"
            );
        }
        assert_eq!(try_once("read", &lock, "3", &[]), 75);
        drop(reader);
        writer.expect_line("ready");
        assert!(writer.release().success());
    }
}

/// Whether `pid` holds layout v2 as its writer, by `status`.
fn holds_v2_as_writer(lock: &Path, pid: i32) -> bool {
    status_of(lock)["holders"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .any(|h| h["pid"] == pid && h["layout"] == "v2" && h["role"] == "writer")
}

/// A writer granted v2 while v1 still drains, whose v1 claim (`LOCK.write`) is then taken
/// by another, gives v2 back: kept, it would hold v2 against the new v1 claimant, which
/// waits in v2 for it, and neither would ever get in (seen in the bed's chaos test, where
/// a claim went unrenewed for the threshold on a loaded filesystem and was evicted).
#[test]
fn a_writer_whose_v1_claim_is_taken_gives_back_layout_v2() {
    let dir = scratch();
    let lock = dir.path().join("claim.lock");
    let lock_arg = lock.to_str().unwrap();
    // A reader of v1 alone: v1 cannot drain, v2 is free.
    let reader = hold("read", &lock, "30", &["--layout", "v1"]);
    let mut writer = start_soft_waiter(&[
        "write", "-w", "60", "--soft", "--ttl", "30", lock_arg, "--", "sh", "-c", HOLD_SH,
    ]);
    let writer_pid = writer.pid();
    wait_until("the writer granted v2", Instant::now() + PATIENCE, || {
        holds_v2_as_writer(&lock, writer_pid).then_some(())
    });
    // Another writer's claim replaces ours; its pid is a live process of this host (ours),
    // so nobody evicts it as dead.
    let claim = beside(&lock, ".write");
    let taken = beside(&lock, ".write.new");
    fs::write(
        &taken,
        format!(
            "0123456789abcdef0123456789abcdef\n{}\n{}\n",
            std::process::id(),
            host_name()
        ),
    )
    .unwrap();
    fs::rename(&taken, &claim).unwrap();
    wait_until(
        "the writer to give v2 back",
        Instant::now() + PATIENCE,
        || (!holds_v2_as_writer(&lock, writer_pid)).then_some(()),
    );
    assert!(
        matches!(writer.child.try_wait(), Ok(None)),
        "the writer gave up instead of waiting on"
    );
    // Once the other claim and the reader are gone, it gets in.
    fs::remove_file(&claim).unwrap();
    drop(reader);
    writer.expect_line("ready");
    assert!(writer.release().success());
}

#[test]
fn fencing_generations_only_grow_across_flockrun_and_py_filelock() {
    let dir = scratch();
    let lock = dir.path().join("f.lock");
    let mut seen: Vec<u64> = Vec::new();
    for round in 0..3 {
        let out = flockrun()
            .args(["write", "--soft", "--ttl", "3"])
            .arg(&lock)
            .args(["--", "sh", "-c", "echo $FLOCKRUN_FENCE"])
            .output()
            .unwrap();
        assert!(out.status.success());
        seen.push(
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
        );
        let py = py_srw_try("4.2.11", "write", &lock, "3", "5");
        seen.push(py.strip_prefix("ACQUIRED ").unwrap().parse().unwrap());
        // A reader between writers moves the log on too.
        if round == 1 {
            assert_eq!(try_once("read", &lock, "3", &[]), 0);
        }
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

/// Seconds from `start` until `flockrun -w` gets the lock.
fn seconds_to_get(mode: &str, lock: &Path, ttl: &str) -> f64 {
    let start = Instant::now();
    let out = flockrun()
        .args([mode, "-w", "15", "--soft", "--ttl", ttl])
        .arg(lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed().as_secs_f64()
}

#[test]
fn a_killed_holder_is_evicted_within_the_threshold_and_a_live_one_never() {
    const TTL: f64 = 2.0;
    let dir = scratch();
    for (who, layout) in [
        ("flockrun", "both"),
        ("flockrun", "v1"),
        ("flockrun", "v2"),
        ("3.28.0", "v1"),
        ("4.2.11", "v2"),
    ] {
        let lock = dir.path().join(format!("{who}-{layout}.lock"));
        let held = match who {
            "flockrun" => hold("write", &lock, "2", &["--layout", layout]),
            version => py_srw_hold(version, "write", &lock, "2"),
        };
        // The process that wrote the records: flockrun itself, or the Python interpreter.
        let owner = held.pid();
        signal(owner, Signal::SIGKILL);
        crate::harness::wait_until_exited(owner, "the holder to die");
        let took = seconds_to_get("write", &lock, "2");
        eprintln!("{who} ({layout}) killed: taken over after {took:.2}s");
        assert!(took < TTL + 0.5, "{who} {layout}: {took:.2}s");
        drop(held);
    }
    // A live holder past its threshold: never evicted, by flockrun or py-filelock.
    let lock = dir.path().join("live.lock");
    let held = hold("write", &lock, "1", &[]);
    let out = flockrun()
        .args(["write", "-w", "2.5", "--soft", "--ttl", "1"])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    for version in ["3.28.0", "4.2.11"] {
        assert_eq!(py_srw_try(version, "write", &lock, "1", "2.5"), "TIMEOUT");
    }
    assert!(held.release().success());
}

/// What is beside LOCK besides the log's own files: markers, holder records, snapshot
/// names.
fn records(lock: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let parent = lock.parent().unwrap();
    for entry in walk(parent) {
        let rel = entry
            .strip_prefix(parent)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let is_log = rel.contains("/gen/");
        if entry.is_file() && !is_log {
            found.push(rel);
        }
    }
    found.sort();
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// What `status --json` says of `lock`.
fn status_of(lock: &Path) -> serde_json::Value {
    let out = flockrun()
        .args(["status", "--json"])
        .arg(lock)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["locks"][0].clone()
}

fn latest_snapshot(lock: &Path) -> String {
    status_of(lock).to_string()
}

#[test]
fn a_timeout_or_a_signal_while_waiting_leaves_no_record_behind() {
    let dir = scratch();
    let lock = dir.path().join("t.lock");
    let lock_arg = lock.to_str().unwrap();
    let reader = hold("read", &lock, "3", &[]);
    let before = records(&lock);
    // A writer that times out behind the reader: its claims are withdrawn.
    let out = flockrun()
        .args([
            "write", "-w", "0.5", "--soft", "--ttl", "3", lock_arg, "--", "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("held by reader pid"), "{stderr}");
    assert_eq!(records(&lock), before);
    assert!(!latest_snapshot(&lock).contains("\"writer\""));
    // The same with SIGINT.
    let waiter = start_soft_waiter(&["write", "--soft", "--ttl", "3", lock_arg, "--", "true"]);
    signal(waiter.pid(), Signal::SIGINT);
    let mut waiter = waiter;
    let status = crate::harness::wait_with_deadline(&mut waiter.child);
    assert_eq!(status.code(), Some(130));
    assert_eq!(records(&lock), before);
    assert!(!latest_snapshot(&lock).contains("\"writer\""));
    // A new reader is let in at once: nothing of the writers is left to wait behind.
    assert_eq!(try_once("read", &lock, "3", &[]), 0);
    assert!(reader.release().success());
}

#[test]
fn an_evicted_or_vanished_hold_stops_command_with_79() {
    let dir = scratch();
    // v2: flockrun frozen past its threshold, evicted by py-filelock, thawed.
    let (status, stderr) = stopped_and_evicted_by_py_filelock(&dir.path().join("e.lock"), "2");
    assert_eq!(status.code(), Some(79), "{stderr}");
    // Whichever noticed first: the renewal that found us evicted, or the clock (the whole
    // process was stopped past the point where a contender may take over).
    assert!(
        stderr.contains("lost the lock")
            && (stderr.contains("evicted") || stderr.contains("could not be renewed")),
        "{stderr}"
    );
    // v1: the marker removed under the holder (as an evicting peer would) is noticed at the
    // next renewal, TTL/3 later.
    let lock = dir.path().join("v.lock");
    let held = hold("write", &lock, "3", &["--layout", "v1"]);
    let started = Instant::now();
    fs::remove_file(beside(&lock, ".write")).unwrap();
    let mut held = held;
    let status = crate::harness::wait_with_deadline(&mut held.child);
    assert_eq!(status.code(), Some(79));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn state_py_filelock_refuses_is_refused_with_a_clear_message() {
    let dir = scratch();
    let run = |args: &[&str], lock: &Path| {
        let out = flockrun()
            .args(args)
            .arg(lock)
            .args(["--", "true"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let write = ["write", "-w", "5", "--soft"];
    // A malformed generation record: refused at once, not waited on.
    let lock = dir.path().join("m.lock");
    fs::create_dir_all(beside(&lock, ".rw/gen")).unwrap();
    fs::create_dir_all(beside(&lock, ".rw/holders")).unwrap();
    fs::write(beside(&lock, ".rw/gen/00000000000000000001"), "garbage\n").unwrap();
    let start = Instant::now();
    let (code, stderr) = run(&write, &lock);
    assert_eq!(code, 65, "{stderr}");
    assert!(
        stderr.contains("malformed") && stderr.contains("m.lock.rw"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    // The same refusal from py-filelock 4.2.11, so flockrun is not stricter than needed.
    assert!(
        !py_srw_try_ok("4.2.11", &lock),
        "py-filelock accepted a malformed log"
    );
    // A symbolic link where the log's directory belongs.
    let lock = dir.path().join("s.lock");
    std::os::unix::fs::symlink(dir.path(), beside(&lock, ".rw")).unwrap();
    let (code, stderr) = run(&write, &lock);
    assert_eq!(code, 65, "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    // A file where LOCK.readers belongs, a link where LOCK.write belongs.
    let lock = dir.path().join("r.lock");
    fs::write(beside(&lock, ".readers"), "").unwrap();
    let (code, stderr) = run(&["write", "-w", "5", "--soft", "--layout", "v1"], &lock);
    assert_eq!(code, 65, "{stderr}");
    assert!(stderr.contains("r.lock.readers"), "{stderr}");
    let lock = dir.path().join("l.lock");
    std::os::unix::fs::symlink("/etc/passwd", beside(&lock, ".write")).unwrap();
    let (code, stderr) = run(&["read", "-w", "5", "--soft", "--layout", "v1"], &lock);
    assert_eq!(code, 65, "{stderr}");
    assert!(stderr.contains("l.lock.write"), "{stderr}");
    // Usage errors.
    let lock = dir.path().join("u.lock");
    for args in [
        &["write", "--soft", "--mode", "600"][..],
        &["write", "--ttl", "3"],
        &["read", "--layout", "v1"],
        &["read", "--soft", "--layout", "v3"],
        &["read", "--soft", "--ttl", "0"],
    ] {
        let (code, stderr) = run(args, &lock);
        assert_eq!(code, 64, "{args:?}: {stderr}");
    }
    // A missing directory is named.
    let (code, stderr) = run(&write, &dir.path().join("nowhere/x.lock"));
    assert_eq!(code, 66, "{stderr}");
    assert!(stderr.contains("nowhere"), "{stderr}");
}

fn py_srw_try_ok(version: &str, lock: &Path) -> bool {
    Command::new(python_with_filelock(version))
        .args(["-c", PY_SRW_TRY, "write"])
        .arg(lock)
        .args(["3", "1"])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn nested_requests_pass_through_or_are_refused_as_for_read_and_write() {
    let dir = scratch();
    let lock = dir.path().join("n.lock");
    let lock_arg = lock.to_str().unwrap();
    let inner = |outer: &str, inner: &str| {
        let script = format!("{FLOCKRUN} {inner} -n --soft --ttl 3 {lock_arg} -- true");
        flockrun()
            .args([
                outer, "--soft", "--ttl", "3", lock_arg, "--", "sh", "-c", &script,
            ])
            .output()
            .unwrap()
    };
    assert_eq!(inner("write", "read").status.code(), Some(0));
    assert_eq!(inner("write", "write").status.code(), Some(0));
    assert_eq!(inner("read", "read").status.code(), Some(0));
    let refused = inner("read", "write");
    assert_eq!(refused.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("would wait for itself"));
}

#[test]
fn status_shows_layouts_generation_holders_and_waiters() {
    let dir = scratch();
    let lock = dir.path().join("st.lock");
    let lock_arg = lock.to_str().unwrap();
    // Nothing there yet.
    let out = flockrun().args(["status", lock_arg]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let reader = hold("read", &lock, "3", &[]);
    let py = py_srw_hold("4.2.11", "read", &lock, "3");
    let writer = start_soft_waiter(&["write", "--soft", "--ttl", "3", lock_arg, "--", "true"]);
    let out = flockrun().args(["status", lock_arg]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s = &status_of(&lock);
    assert_eq!(s["kind"], "soft-rw");
    assert_eq!(s["state"], "held");
    assert_eq!(s["mode"], "read");
    assert_eq!(s["soft_rw"]["layouts"], serde_json::json!(["v1", "v2"]));
    assert!(s["soft_rw"]["generation"].as_u64().unwrap() >= 2);
    let flockrun_pid = reader.pid();
    let holders = s["holders"].as_array().unwrap();
    let by = |pid: i32, layout: &str| {
        holders
            .iter()
            .find(|h| h["pid"] == pid && h["layout"] == layout)
            .unwrap_or_else(|| panic!("no {layout} holder {pid} in {holders:?}"))
    };
    for layout in ["v1", "v2"] {
        let h = by(flockrun_pid, layout);
        assert_eq!(h["role"], "reader");
        assert_eq!(h["verdict"], "live");
        assert!(h["heartbeat_ago"].as_f64().unwrap() < 3.0);
    }
    assert_eq!(
        by(py.pid(), "v2")["host"],
        crate::harness::py_identity(py.pid()).0
    );
    let waiters = s["waiters"].as_array().unwrap();
    let writer_pid = writer.pid();
    assert!(
        waiters
            .iter()
            .any(|w| w["pid"] == writer_pid && w["role"] == "writer"),
        "{waiters:?}"
    );
    // The text form says the same.
    let out = flockrun().args(["status", lock_arg]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("held (read, soft-rw)"), "{text}");
    assert!(text.contains("layouts  v1, v2 (generation"), "{text}");
    assert!(
        text.contains(&format!("holder   reader pid {flockrun_pid} on host")),
        "{text}"
    );
    assert!(
        text.contains(&format!("waiter   writer pid {writer_pid} on host")),
        "{text}"
    );
    drop(py);
    assert!(reader.release().success());
    let mut writer = writer;
    assert!(crate::harness::wait_with_deadline(&mut writer.child).success());
}

#[test]
fn layout_v1_waits_for_lock_state_end_at_the_deadline_and_an_abandoned_one_is_broken() {
    let dir = scratch();
    // LOCK.state held by a live process of this host (this test): a transition in progress.
    let lock = dir.path().join("busy.lock");
    fs::write(
        beside(&lock, ".state"),
        format!("{}\n{}\n", std::process::id(), host_name()),
    )
    .unwrap();
    let start = Instant::now();
    let out = flockrun()
        .args(["write", "-w", "0.5", "--soft", "--layout", "v1"])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        beside(&lock, ".state").exists(),
        "a live owner's LOCK.state was broken"
    );
    // LOCK.state of a host that crashed in mid-step: unchanged for the threshold, broken
    // with a warning (py-filelock 3.28 would wait on it forever).
    let lock = dir.path().join("abandoned.lock");
    fs::write(beside(&lock, ".state"), "4242\ngone-host\n").unwrap();
    let start = Instant::now();
    let out = flockrun()
        .args([
            "write", "-w", "10", "--soft", "--ttl", "1", "--layout", "v1",
        ])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(
        stderr.contains("abandoned.lock.state") && stderr.contains("broken"),
        "{stderr}"
    );
    assert!(!beside(&lock, ".state").exists());
}

#[test]
fn release_removes_layout_v1_markers_only_if_they_are_still_ours() {
    let dir = scratch();
    let lock = dir.path().join("mine.lock");
    // A long threshold: the holder does not renew (and so does not notice) before release.
    let held = hold("write", &lock, "60", &["--layout", "v1"]);
    let successor = "0123456789abcdef0123456789abcdef\n4242\nsomewhere\n";
    fs::write(beside(&lock, ".write"), successor).unwrap();
    assert!(held.release().success());
    assert_eq!(
        fs::read_to_string(beside(&lock, ".write")).unwrap(),
        successor,
        "release removed a marker that was not its own"
    );
}

fn holder_lease_line(lock: &Path) -> String {
    let holders = beside(lock, ".rw/holders");
    let record = fs::read_dir(&holders)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::read_to_string(record)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("lease="))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn fractional_thresholds_are_written_evicted_kept_and_lost_as_with_py_filelock() {
    let dir = scratch();
    // The v2 holder record carries the threshold as py-filelock 4.2.11 spells the float.
    for (ttl, spelled) in [("1.5", "1.5"), ("2", "2.0"), ("0.25", "0.25")] {
        let ours = dir.path().join(format!("ours-{ttl}.lock"));
        let theirs = dir.path().join(format!("theirs-{ttl}.lock"));
        let held = hold("write", &ours, ttl, &["--layout", "v2"]);
        let py = py_srw_hold("4.2.11", "write", &theirs, ttl);
        assert_eq!(holder_lease_line(&ours), format!("lease={spelled}"));
        assert_eq!(holder_lease_line(&ours), holder_lease_line(&theirs));
        assert!(held.release().success());
        drop(py);
    }
    // A killed holder of either side is evicted after about the 1.5 s threshold.
    for (who, layout) in [("flockrun", "both"), ("3.28.0", "v1"), ("4.2.11", "v2")] {
        let lock = dir.path().join(format!("killed-{who}.lock"));
        let held = match who {
            "flockrun" => hold("write", &lock, "1.5", &["--layout", layout]),
            version => py_srw_hold(version, "write", &lock, "1.5"),
        };
        signal(held.pid(), Signal::SIGKILL);
        crate::harness::wait_until_exited(held.pid(), "the holder to die");
        let took = if who == "flockrun" {
            let start = Instant::now();
            let got = py_srw_try("4.2.11", "write", &lock, "1.5", "10");
            assert!(got.starts_with("ACQUIRED"), "{got}");
            start.elapsed().as_secs_f64()
        } else {
            seconds_to_get("write", &lock, "1.5")
        };
        eprintln!("{who} killed: evicted after {took:.2}s");
        assert!(took < 1.5 + 1.0, "{who}: {took:.2}s");
        drop(held);
    }
    // Live holders at a 0.5 s threshold, renewing every TTL/3, are never evicted.
    let lock = dir.path().join("live.lock");
    let held = hold("write", &lock, "0.5", &[]);
    for version in ["3.28.0", "4.2.11"] {
        assert_eq!(py_srw_try(version, "write", &lock, "0.5", "2"), "TIMEOUT");
    }
    assert!(held.release().success());
    let py = py_srw_hold("4.2.11", "write", &lock, "0.5");
    let out = flockrun()
        .args(["write", "-w", "2", "--soft", "--ttl", "0.5"])
        .arg(&lock)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(py);
    // A stopped flockrun holder evicted by py-filelock at 1.5 s exits 79 once woken.
    let (status, stderr) = stopped_and_evicted_by_py_filelock(&dir.path().join("lost.lock"), "1.5");
    assert_eq!(status.code(), Some(79), "{stderr}");
}

/// A flockrun writer (layout v2, threshold TTL) stopped with SIGSTOP until a py-filelock
/// 4.2.11 writer has evicted it and holds, then woken: its exit status and stderr.
fn stopped_and_evicted_by_py_filelock(lock: &Path, ttl: &str) -> (ExitStatus, String) {
    let args = ["write", "--soft", "--ttl", ttl, "--layout", "v2"];
    let mut held = crate::harness::spawn_flockrun(
        &[
            &args[..],
            &[lock.to_str().unwrap(), "--", "sh", "-c", HOLD_SH],
        ]
        .concat(),
    );
    held.expect_line("ready");
    signal(held.pid(), Signal::SIGSTOP);
    let py = py_srw_hold("4.2.11", "write", lock, ttl);
    signal(held.pid(), Signal::SIGCONT);
    let outcome = held.release_with_stderr();
    assert!(py.release().success());
    outcome
}
