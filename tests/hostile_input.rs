//! Bad and hostile lock paths: each gets a clear message naming the path, the documented
//! status, and leaves everything as it was.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use predicates::prelude::*;

use crate::harness::{FLOCKRUN, flockrun, is_root, scratch, with_tmpfs};

#[test]
fn symlinks_are_refused_and_their_targets_untouched() {
    let dir = scratch();
    let target = dir.path().join("target");
    fs::write(&target, "precious").unwrap();
    let link = dir.path().join("link");
    symlink(&target, &link).unwrap();
    flockrun()
        .arg("exec")
        .arg(&link)
        .args(["echo", "must-not-run"])
        .assert()
        .code(66)
        .stdout("")
        .stderr(predicate::str::contains(link.to_str().unwrap()))
        .stderr(predicate::str::contains("symbolic link"));
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");

    let dangling = dir.path().join("dangling");
    let nowhere = dir.path().join("would-be-created");
    symlink(&nowhere, &dangling).unwrap();
    flockrun()
        .arg("try")
        .arg(&dangling)
        .arg("true")
        .assert()
        .code(66)
        .stderr(predicate::str::contains("symbolic link"));
    assert!(!nowhere.exists(), "the symlink's target was created");
}

#[test]
fn fifo_socket_and_character_device_are_refused_without_hanging() {
    let dir = scratch();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let socket_path = dir.path().join("sock");
    let _socket = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    for (path, what) in [
        (fifo.as_path(), "a FIFO"),
        (socket_path.as_path(), "a socket"),
        (Path::new("/dev/null"), "a character device"),
    ] {
        flockrun()
            .arg("exec")
            .arg(path)
            .args(["echo", "must-not-run"])
            .assert()
            .code(65)
            .stdout("")
            .stderr(predicate::str::contains(path.to_str().unwrap()))
            .stderr(predicate::str::contains(what));
    }
}

#[test]
fn missing_parent_directory_is_named() {
    let dir = scratch();
    let parent = dir.path().join("no").join("such");
    flockrun()
        .arg("exec")
        .arg(parent.join("l"))
        .arg("true")
        .assert()
        .code(66)
        .stderr(predicate::str::contains(format!(
            "directory {} does not exist",
            parent.display()
        )));
    assert!(!dir.path().join("no").exists());
}

#[test]
fn lock_path_longer_than_allowed_is_refused() {
    let dir = scratch();
    let long = dir.path().join("x".repeat(300));
    flockrun()
        .arg("exec")
        .arg(&long)
        .arg("true")
        .assert()
        .code(66)
        .stderr(predicate::str::contains("too long"));
}

#[test]
fn non_utf8_paths_and_arguments_pass_byte_for_byte() {
    let dir = scratch();
    let name = OsStr::from_bytes(b"lock-\xff\xfe");
    let lock = dir.path().join(name);
    let arg = OsStr::from_bytes(b"arg-\xc3\x28-\x80");
    let out = Command::new(FLOCKRUN)
        .arg("exec")
        .arg(&lock)
        .args([
            "--",
            "sh",
            "-c",
            "printf '%s|%s' \"$1\" \"$FLOCKRUN_LOCK\"",
            "sh",
        ])
        .arg(arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = arg.as_bytes().to_vec();
    expected.push(b'|');
    expected.extend_from_slice(lock.as_os_str().as_bytes());
    assert_eq!(out.stdout, expected);
    assert!(lock.exists());
}

#[test]
fn an_existing_data_file_is_never_truncated_or_modified() {
    let dir = scratch();
    let data = dir.path().join("data.txt");
    fs::write(&data, "keep me\n").unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o640)).unwrap();
    let before = fs::metadata(&data).unwrap();
    for extra in [&[][..], &["-s"], &["--fcntl"], &["--mode", "0600"]] {
        flockrun()
            .arg("exec")
            .args(extra)
            .arg(&data)
            .arg("true")
            .assert()
            .code(0);
    }
    let after = fs::metadata(&data).unwrap();
    assert_eq!(fs::read_to_string(&data).unwrap(), "keep me\n");
    assert_eq!(after.mode(), before.mode());
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec())
    );
    assert_eq!(after.ino(), before.ino());
}

#[test]
fn a_read_only_lock_file_can_still_be_locked() {
    let dir = scratch();
    let lock = dir.path().join("ro");
    fs::write(&lock, "").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o444)).unwrap();
    flockrun()
        .arg("exec")
        .arg(&lock)
        .arg("true")
        .assert()
        .code(0);
}

/// Runs flockrun as an unprivileged user (nobody) when the suite runs as root, or as the
/// current user otherwise.
fn unprivileged_flockrun(args: &[&OsStr]) -> assert_cmd::Command {
    let mut cmd;
    if is_root() {
        cmd = assert_cmd::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", FLOCKRUN]);
    } else {
        cmd = assert_cmd::Command::new(FLOCKRUN);
    }
    cmd.args(args).timeout(crate::harness::PATIENCE);
    cmd
}

#[test]
fn permission_denied_is_66_with_a_hint() {
    let dir = scratch();
    let unreadable = dir.path().join("secret.lock");
    fs::write(&unreadable, "").unwrap();
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o600)).unwrap();
    if !is_root() {
        // As a normal user the file must belong to someone else to be unreadable.
        fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o000)).unwrap();
    }
    // The unprivileged user can reach the directory but not write in it.
    fs::set_permissions(
        dir.path(),
        fs::Permissions::from_mode(if is_root() { 0o755 } else { 0o555 }),
    )
    .unwrap();
    unprivileged_flockrun(&[
        OsStr::new("exec"),
        unreadable.as_os_str(),
        OsStr::new("true"),
    ])
    .assert()
    .code(66)
    .stderr(predicate::str::contains(unreadable.to_str().unwrap()))
    .stderr(predicate::str::contains("read access"));
    let uncreatable = dir.path().join("new.lock");
    unprivileged_flockrun(&[
        OsStr::new("exec"),
        uncreatable.as_os_str(),
        OsStr::new("true"),
    ])
    .assert()
    .code(66)
    .stderr(predicate::str::contains("create"));
    assert!(!uncreatable.exists());
}

#[test]
fn another_users_file_in_a_sticky_directory_is_locked_without_o_creat() {
    if !is_root() {
        eprintln!("NOTE: needs root to create a file owned by another user; checked as root in CI");
        return;
    }
    let dir = scratch();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let sticky = dir.path().join("sticky");
    fs::create_dir(&sticky).unwrap();
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    let lock = sticky.join("shared.lock");
    fs::write(&lock, "").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    // Owned by a third user (daemon), neither the directory's owner nor the one locking.
    std::os::unix::fs::chown(&lock, Some(1), Some(1)).unwrap();
    // With fs.protected_regular on (systemd's default), O_CREAT on another user's file in a
    // sticky world-writable directory fails with EACCES.
    let sysctl = "/proc/sys/fs/protected_regular";
    let previous = fs::read_to_string(sysctl).unwrap();
    fs::write(sysctl, "1").unwrap();
    let result = std::panic::catch_unwind(|| {
        let flock1 = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "flock"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        assert_eq!(
            flock1.code(),
            Some(66),
            "flock(1) should trip over protected_regular"
        );
        unprivileged_flockrun(&[OsStr::new("exec"), lock.as_os_str(), OsStr::new("true")])
            .assert()
            .code(0);
    });
    fs::write(sysctl, previous.trim()).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn read_only_filesystem_locks_existing_files_and_refuses_to_create() {
    with_tmpfs("size=1m", |mnt| {
        fs::write(mnt.join("existing.lock"), "").unwrap();
        let remounted = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(mnt)
            .status()
            .unwrap()
            .success();
        assert!(remounted, "remounting read-only failed");
        flockrun()
            .arg("exec")
            .arg(mnt.join("existing.lock"))
            .arg("true")
            .assert()
            .code(0);
        flockrun()
            .arg("exec")
            .arg(mnt.join("missing.lock"))
            .arg("true")
            .assert()
            .code(73)
            .stderr(predicate::str::contains("read-only"));
    });
}

/// A lock file the user may read but not write (root's 0644 file, run as nobody when the
/// suite runs as root): every lock that needs only a readable descriptor works; the others
/// say that they need write permission and name the file; nothing is changed.
#[test]
fn a_lock_file_without_write_permission() {
    let dir = scratch();
    let lock = dir.path().join("readonly.lock");
    fs::write(&lock, "").unwrap();
    let mode = if is_root() { 0o644 } else { 0o444 };
    fs::set_permissions(&lock, fs::Permissions::from_mode(mode)).unwrap();
    fs::set_permissions(
        dir.path(),
        fs::Permissions::from_mode(if is_root() { 0o755 } else { 0o555 }),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        all.extend([lock.as_os_str(), OsStr::new("true")]);
        unprivileged_flockrun(&all).assert()
    };
    for ok in [&["exec"][..], &["exec", "-s"], &["exec", "--fcntl", "-s"]] {
        run(ok).code(0);
    }
    for refused in [&["exec", "--fcntl"][..], &["write"], &["read"]] {
        run(refused)
            .code(66)
            .stderr(predicate::str::contains(lock.to_str().unwrap()))
            .stderr(predicate::str::contains("needs write permission"));
    }
    // A soft lock is a new file beside it, which this user may not create.
    let soft = dir.path().join("soft.lock");
    unprivileged_flockrun(&[
        OsStr::new("exec"),
        OsStr::new("--soft"),
        soft.as_os_str(),
        OsStr::new("true"),
    ])
    .assert()
    .code(66)
    .stderr(predicate::str::contains("may not create files"));
    assert!(!soft.exists());
    assert_eq!(fs::read(&lock).unwrap(), b"");
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "something was created beside the lock");
}

/// A path longer than `PATH_MAX` (4096 bytes) as LOCK, for every kind and for status.
#[test]
fn a_path_longer_than_path_max_is_refused_by_every_command() {
    let dir = scratch();
    let mut long = dir.path().to_path_buf();
    while long.as_os_str().len() <= 5000 {
        long.push("component-of-a-very-long-path");
    }
    for kind in [
        &["exec"][..],
        &["exec", "--fcntl"],
        &["write"],
        &["read"],
        &["exec", "--soft"],
    ] {
        flockrun()
            .args(kind)
            .arg(&long)
            .arg("true")
            .assert()
            .code(66)
            .stderr(predicate::str::contains("too long"));
    }
    flockrun()
        .arg("status")
        .arg(&long)
        .assert()
        .code(66)
        .stderr(predicate::str::contains("too long"));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
