//! `flockrun read` / `flockrun write`: py-filelock's SQLite `ReadWriteLock` protocol, among
//! flockruns and against real py-filelock 3.28.0 and 4.2.11 in both directions, writer
//! preference included.

use std::fs;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use predicates::prelude::*;

use crate::harness::{
    Holder, PATIENCE, PY_FILELOCK_VERSIONS, child_of, flockrun, is_waiting_writer, py_hold,
    py_start, py_try_kind, python_with_filelock, scratch, signal, spawn_flockrun,
    wait_until_exited, wait_until_waiting_writer, wait_with_deadline,
};

fn assert_still_empty(path: &Path) {
    assert_eq!(
        fs::metadata(path).unwrap().len(),
        0,
        "the lock database was written to"
    );
}

#[test]
fn readers_share_and_a_waiting_writer_keeps_new_readers_out() {
    let dir = scratch();
    let lock = dir.path().join("rw.db");
    let l = lock.to_str().unwrap();
    let first = Holder::flockrun(&["read", l]);
    let second = Holder::flockrun(&["read", l]);
    flockrun()
        .args(["write", "-n", l, "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains("held by 2 processes"));

    let mut writer = spawn_flockrun(&["write", l, "echo", "writer-ran"]);
    wait_until_waiting_writer(writer.pid(), &lock);
    flockrun()
        .args(["read", "-n", l, "echo", "must-not-run"])
        .assert()
        .code(75)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "pid {} waits for an exclusive lock",
            writer.pid()
        )));
    assert!(first.release().success());
    assert_eq!(
        writer.child.try_wait().unwrap(),
        None,
        "writer ran beside a reader"
    );
    assert!(second.release().success());
    assert!(wait_with_deadline(&mut writer.child).success());
    assert_eq!(writer.rest_of_output(), "writer-ran\n");
    assert_still_empty(&lock);
}

#[test]
fn a_writer_excludes_readers_and_writers() {
    let dir = scratch();
    let lock = dir.path().join("rw.db");
    let l = lock.to_str().unwrap();
    let writer = Holder::flockrun(&["write", l]);
    let busy = format!("held by pid {}", child_of(writer.pid()));
    flockrun()
        .args(["read", "-n", l, "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains(&busy));
    flockrun()
        .args(["write", "-n", "-E", "5", l, "true"])
        .assert()
        .code(5);
    let started = std::time::Instant::now();
    flockrun()
        .args(["read", "-w", "0.3", l, "true"])
        .assert()
        .code(75)
        .stderr(predicate::str::contains("timed out after 0.3"));
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(300) && took < PATIENCE,
        "{took:?}"
    );
    assert!(writer.release().success());
    flockrun().args(["write", "-n", l, "true"]).assert().code(0);
    assert_still_empty(&lock);
}

#[test]
fn py_filelock_holders_and_flockrun_exclude_each_other() {
    for version in PY_FILELOCK_VERSIONS {
        let python = python_with_filelock(version);
        let dir = scratch();
        let lock = dir.path().join("rw.db");
        let l = lock.to_str().unwrap();

        let reader = py_hold(&python, "read", &lock);
        flockrun().args(["read", "-n", l, "true"]).assert().code(0);
        flockrun()
            .args(["write", "-n", l, "true"])
            .assert()
            .code(75);
        drop(reader);
        let writer = py_hold(&python, "write", &lock);
        flockrun().args(["read", "-n", l, "true"]).assert().code(75);
        flockrun()
            .args(["write", "-w", "0.2", l, "true"])
            .assert()
            .code(75);
        drop(writer);

        let reader = Holder::flockrun(&["read", l]);
        assert_eq!(
            py_try_kind(&python, "read", &lock, "0"),
            "ACQUIRED",
            "{version}"
        );
        assert_eq!(
            py_try_kind(&python, "write", &lock, "0.2"),
            "TIMEOUT",
            "{version}"
        );
        drop(reader);
        let writer = Holder::flockrun(&["write", l]);
        assert_eq!(
            py_try_kind(&python, "read", &lock, "0.2"),
            "TIMEOUT",
            "{version}"
        );
        assert_eq!(
            py_try_kind(&python, "write", &lock, "0"),
            "TIMEOUT",
            "{version}"
        );
        assert!(writer.release().success());
        assert_eq!(
            py_try_kind(&python, "write", &lock, "0"),
            "ACQUIRED",
            "{version}"
        );
    }
}

#[test]
fn writer_preference_holds_across_flockrun_and_py_filelock() {
    for version in PY_FILELOCK_VERSIONS {
        let python = python_with_filelock(version);
        let dir = scratch();
        let lock = dir.path().join("rw.db");
        let l = lock.to_str().unwrap();

        // A flockrun writer waiting behind a Python reader keeps Python readers out.
        let py_reader = py_hold(&python, "read", &lock);
        let mut writer = spawn_flockrun(&["write", l, "echo", "writer-ran"]);
        wait_until_waiting_writer(writer.pid(), &lock);
        assert_eq!(
            py_try_kind(&python, "read", &lock, "0"),
            "TIMEOUT",
            "{version}"
        );
        assert!(py_reader.release().success());
        assert!(wait_with_deadline(&mut writer.child).success());
        assert_eq!(writer.rest_of_output(), "writer-ran\n");

        // A Python writer waiting behind a flockrun reader keeps flockrun readers out.
        let reader = Holder::flockrun(&["read", l]);
        let mut py_writer = py_start(&python, "write", &lock);
        wait_until_waiting_writer(py_writer.pid(), &lock);
        flockrun().args(["read", "-n", l, "true"]).assert().code(75);
        assert!(reader.release().success());
        py_writer.expect_line("HELD");
        assert!(py_writer.release().success());
        assert_still_empty(&lock);
    }
}

#[test]
fn refused_files_keep_their_bytes() {
    let dir = scratch();
    let garbage = dir.path().join("garbage.db");
    fs::write(&garbage, "not a database\n").unwrap();
    let tables = dir.path().join("tables.db");
    let wal = dir.path().join("wal.db");
    let made = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1]); c.execute('create table t(x)'); c.commit(); c.close()\n\
             c = sqlite3.connect(sys.argv[2]); c.execute('pragma journal_mode=wal')\n\
             c.execute('create table t(x)'); c.commit(); c.close()",
        )
        .arg(&tables)
        .arg(&wal)
        .status()
        .unwrap();
    assert!(made.success());
    for (path, why) in [
        (&garbage, "not an SQLite database"),
        (&tables, "with tables"),
        (&wal, "WAL mode"),
    ] {
        let before = fs::read(path).unwrap();
        for verb in ["read", "write"] {
            flockrun()
                .arg(verb)
                .arg(path)
                .args(["echo", "must-not-run"])
                .assert()
                .code(65)
                .stdout("")
                .stderr(predicate::str::contains(path.to_str().unwrap()))
                .stderr(predicate::str::contains(why));
        }
        assert_eq!(
            fs::read(path).unwrap(),
            before,
            "{} was changed",
            path.display()
        );
    }
    let directory = dir.path().join("dir.db");
    fs::create_dir(&directory).unwrap();
    flockrun()
        .arg("write")
        .arg(&directory)
        .arg("true")
        .assert()
        .code(65)
        .stderr(predicate::str::contains("is a directory"));
}

#[test]
fn an_empty_sqlite_database_is_accepted() {
    let dir = scratch();
    let lock = dir.path().join("empty.db");
    let made = Command::new("python3")
        .args(["-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('pragma user_version=1'); c.commit()"])
        .arg(&lock)
        .status()
        .unwrap();
    assert!(made.success());
    let before = fs::read(&lock).unwrap();
    assert!(!before.is_empty());
    flockrun()
        .arg("write")
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
    flockrun()
        .arg("read")
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
    assert_eq!(fs::read(&lock).unwrap(), before);
}

#[test]
fn killing_flockrun_stops_command_and_frees_the_lock() {
    for verb in ["read", "write"] {
        let dir = scratch();
        let lock = dir.path().join("rw.db");
        let l = lock.to_str().unwrap();
        let mut holder = Holder::flockrun(&[verb, l]);
        let command = child_of(holder.pid());
        signal(holder.pid(), Signal::SIGKILL);
        let _ = holder.child.wait();
        wait_until_exited(command, "COMMAND to die with flockrun");
        flockrun().args(["write", "-n", l, "true"]).assert().code(0);
    }
}

#[test]
fn a_stop_signal_ends_a_wait_and_leaves_nothing_behind() {
    let dir = scratch();
    let lock = dir.path().join("rw.db");
    let l = lock.to_str().unwrap();
    let reader = Holder::flockrun(&["read", l]);
    for (sig, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let mut writer = spawn_flockrun(&["write", l, "echo", "must-not-run"]);
        wait_until_waiting_writer(writer.pid(), &lock);
        signal(writer.pid(), sig);
        assert_eq!(wait_with_deadline(&mut writer.child).code(), Some(code));
        assert_eq!(writer.rest_of_output(), "");
        assert!(!is_waiting_writer(writer.pid(), &lock));
        // No waiting writer is left to keep readers out.
        flockrun().args(["read", "-n", l, "true"]).assert().code(0);
    }
    drop(reader);
}

#[test]
fn nested_read_and_write() {
    let dir = scratch();
    let lock = dir.path().join("rw.db");
    let l = lock.to_str().unwrap();
    let me = crate::harness::FLOCKRUN;
    for (outer, inner) in [("read", "read"), ("write", "write"), ("write", "read")] {
        flockrun()
            .args([
                outer,
                l,
                me,
                inner,
                "-n",
                l,
                "sh",
                "-c",
                "echo $FLOCKRUN_KIND $FLOCKRUN_MODE",
            ])
            .assert()
            .code(0)
            .stdout(format!("sqlite {inner}\n"));
    }
    flockrun()
        .args(["read", l, me, "write", l, "echo", "must-not-run"])
        .assert()
        .code(75)
        .stdout("")
        .stderr(predicate::str::contains(
            "already held with a read lock by an ancestor",
        ))
        .stderr(predicate::str::contains(
            "nested write request would wait for itself",
        ));
}
