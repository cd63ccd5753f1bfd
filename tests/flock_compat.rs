//! flock(1) parity: fd mode (`exec|try --fd N`), and the front end (flockrun started as
//! `flock`) side by side with the real util-linux `/usr/bin/flock` (2.38 here): the same
//! command lines, the same exit statuses, stdout and stderr, except where flockrun is
//! deliberately stricter or words a usage error as util-linux HEAD does. The scenarios of
//! util-linux's own flock tests (tests/ts/flock: flock, unlock, close, range-lock) are
//! re-enacted at the end.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{FLOCKRUN, HOLD_SH, Holder, PATIENCE, scratch, wait_until};

const REAL_FLOCK: &str = "/usr/bin/flock";

/// util-linux flock(1) holding `lock` (shared or exclusive) until the holder is dropped.
fn real_flock_holds(lock: &Path, shared: bool) -> Holder {
    let mut args: Vec<&std::ffi::OsStr> = Vec::new();
    if shared {
        args.push("-s".as_ref());
    }
    args.extend([
        lock.as_os_str(),
        "sh".as_ref(),
        "-c".as_ref(),
        HOLD_SH.as_ref(),
    ]);
    Holder::start(REAL_FLOCK, &args, "ready")
}

/// flockrun under the name `flock`: a link in the test's own directory.
fn front_end(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let link = bin.join("flock");
    if !link.exists() {
        symlink(FLOCKRUN, &link).unwrap();
    }
    link
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a run said, with the wait times `--verbose` prints made comparable.
fn said(out: &Output) -> (Option<i32>, String, String) {
    let normal = |s: String| {
        s.lines()
            .map(|l| match l.split_once("getting lock took ") {
                Some((head, _)) => format!("{head}getting lock took <n> seconds"),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    (
        out.status.code(),
        normal(text(&out.stdout)),
        normal(text(&out.stderr)),
    )
}

/// Runs `script` with bash twice in `dir`, once with `$FLOCK` the real flock(1) and once
/// flockrun's front end, and returns both outcomes.
fn both(dir: &Path, script: &str) -> [(Option<i32>, String, String); 2] {
    let ours = front_end(dir);
    [PathBuf::from(REAL_FLOCK), ours].map(|flock| {
        let out = Command::new("bash")
            .args(["-c", script])
            .current_dir(dir)
            .env("FLOCK", &flock)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        said(&out)
    })
}

/// Asserts the real flock(1) and the front end answer `script` alike.
fn same(dir: &Path, script: &str) {
    let [real, ours] = both(dir, script);
    assert_eq!(ours, real, "{script}");
}

#[test]
fn the_front_end_answers_as_flock_1_does() {
    let dir = scratch();
    let d = dir.path();
    fs::create_dir(d.join("adir")).unwrap();
    fs::write(d.join("not-exec"), "#!/bin/sh\n").unwrap();
    for script in [
        // Running a command under the lock, in every form.
        r"$FLOCK l echo hello",
        r"$FLOCK -s l -c 'echo shared; exit 3'",
        r"$FLOCK -x l sh -c 'exit 7'",
        r"$FLOCK -e -n -w 2 -E 9 l true",
        r"$FLOCK --shared --nonblocking --conflict-exit-code 5 l echo long",
        r"$FLOCK --nonblock --excl --wai 1 l echo prefixes",
        r"$FLOCK --nb --timeout=0.5 l echo equals",
        r"$FLOCK -n -- l echo dashdash",
        r"$FLOCK l echo -n --verbose 'options after LOCK belong to the command'",
        r"$FLOCK adir echo a directory",
        r"$FLOCK --verbose l echo verbose",
        r"$FLOCK --verbose -s l -c 'echo shell'",
        r"$FLOCK -F l sh -c 'echo no fork'",
        r"$FLOCK -o l sh -c 'ls /proc/self/fd | wc -l'",
        // Failures that are not usage errors: same status, same words.
        r"$FLOCK nodir/l true",
        r"$FLOCK l ./does-not-exist",
        r"$FLOCK l ./not-exec",
        r"$FLOCK l adir",
        r"$FLOCK 42",
        r"$FLOCK -u 42",
        r"$FLOCK -F -o l true",
        r"$FLOCK l -c one two",
        r"$FLOCK -w -1 l true",
        // Descriptor forms.
        r#"exec 9>fd.lock; $FLOCK -n --verbose 9; echo "in shell $?"; $FLOCK -n fd.lock true; echo "other $?""#,
        r"exec 9>fd.lock; $FLOCK 9; $FLOCK -u 9; $FLOCK -n fd.lock echo free again",
        r"exec 9>fd.lock; $FLOCK -s 9; $FLOCK -s -n fd.lock echo shared too",
        r"exec 4<>fd.lock; $FLOCK -n -E 123 4; echo $?; [ -e 4 ] && echo created a file named 4",
    ] {
        same(d, script);
    }
}

#[test]
fn busy_and_timeout_are_silent_conflicts_unless_verbose() {
    let dir = scratch();
    let d = dir.path();
    // The real flock(1) holds the lock; both answer the same to every conflict.
    let held = real_flock_holds(&d.join("l"), false);
    for script in [
        r"$FLOCK -n l echo never",
        r"$FLOCK -n -E 42 l echo never",
        r"$FLOCK -n --verbose l echo never",
        r"$FLOCK -w 0.2 l echo never",
        r"$FLOCK -w 0.2 --verbose -E 3 l echo never",
        r"$FLOCK -w 0 l echo never",
        r"$FLOCK -s -n l echo never",
        r"exec 9>l; $FLOCK -n 9; echo $?",
    ] {
        same(d, script);
    }
    // (--fcntl is not in 2.38: OFD locks do not see the flock(2) lock held above.)
    let ours = front_end(d);
    let out = Command::new(&ours)
        .args(["--fcntl", "-n"])
        .arg(d.join("l"))
        .args(["echo", "an OFD lock"])
        .output()
        .unwrap();
    assert_eq!(
        said(&out),
        (Some(0), "an OFD lock".to_owned(), String::new())
    );
    drop(held);
    // An exclusive OFD lock on a directory needs a writable descriptor, so util-linux HEAD
    // (research/flock_upstream.md §1, run on a build of it) fails at the lock with 65; a
    // shared one opens the directory read-only and works.
    fs::create_dir(d.join("adir")).unwrap();
    for (args, expected) in [
        (
            &["--fcntl", "-x"][..],
            (
                Some(65),
                String::new(),
                "flock: adir: Is a directory".to_owned(),
            ),
        ),
        (
            &["--fcntl", "--start", "0", "--length", "1"][..],
            (
                Some(65),
                String::new(),
                "flock: adir: Is a directory".to_owned(),
            ),
        ),
        (
            &["--fcntl", "-s"][..],
            (Some(0), "shared on a directory".to_owned(), String::new()),
        ),
    ] {
        let out = Command::new(&ours)
            .current_dir(d)
            .args(args)
            .args(["adir", "echo", "shared on a directory"])
            .output()
            .unwrap();
        assert_eq!(said(&out), expected, "{args:?}");
    }
    // A shared holder lets shared requests in, not exclusive ones.
    let held = real_flock_holds(&d.join("l"), true);
    for script in [r"$FLOCK -s -n l echo shared", r"$FLOCK -n l echo never"] {
        same(d, script);
    }
    drop(held);
}

#[test]
fn usage_errors_exit_64_as_flock_1_does_in_util_linux_head_words() {
    let dir = scratch();
    let d = dir.path();
    for (script, ours) in [
        (
            "$FLOCK",
            "flock: not enough arguments\nTry 'flock --help' for more information.",
        ),
        (
            "$FLOCK --bogus l true",
            "flock: unrecognized option '--bogus'\nTry 'flock --help' for more information.",
        ),
        (
            "$FLOCK -q l true",
            "flock: unrecognized option '-q'\nTry 'flock --help' for more information.",
        ),
        (
            "$FLOCK --no l true",
            "flock: unrecognized option '--no'\nTry 'flock --help' for more information.",
        ),
        (
            "$FLOCK -w",
            "flock: option '-w' requires an argument\nTry 'flock --help' for more information.",
        ),
        ("$FLOCK -w abc l true", "flock: invalid timeout: 'abc'"),
        (
            "$FLOCK -E 256 l true",
            "flock: invalid exit code (allowed values: 0-255): '256': Numerical result out of range",
        ),
        ("$FLOCK abc", "flock: invalid file descriptor: 'abc'"),
    ] {
        let [real, mine] = both(d, script);
        assert_eq!(real.0, Some(64), "{script}: the real flock(1)");
        assert_eq!(mine.0, Some(64), "{script}");
        assert_eq!(mine.2, ours, "{script}");
    }
}

/// A shell that opens the lock file on descriptor 9, runs `script` with `$F` flockrun, and
/// reports what it saw.
fn shell(dir: &Path, script: &str) -> Output {
    Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .env("F", FLOCKRUN)
        .output()
        .unwrap()
}

#[test]
fn fd_mode_locks_the_callers_descriptor_which_keeps_the_lock() {
    let dir = scratch();
    let d = dir.path();
    // Without COMMAND: flockrun locks descriptor 9 and exits; the shell holds the lock, so
    // flock(1) and a flockrun without the descriptor are kept out (one that inherited it
    // runs under the shell's hold: nested use), and status names the shell.
    let out = shell(
        d,
        r#"exec 9>l; $F exec --fd 9 || exit 90
           flock -n l true; echo "flock $?"
           (exec 9>&-; $F try l -- true); echo "try $?"
           $F try l -- true; echo "nested $?"
           echo "shell $$"; $F status --json l; true"#,
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("flock 1\ntry 75\nnested 0\n"),
        "{stdout}{}",
        text(&out.stderr)
    );
    let shell_pid: i32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("shell "))
        .unwrap()
        .parse()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(stdout.lines().nth(4).unwrap()).unwrap();
    assert_eq!(json["locks"][0]["holders"][0]["pid"], shell_pid, "{stdout}");
    // With COMMAND: COMMAND has the descriptor, and the lock stays with the shell after.
    let out = shell(
        d,
        r#"exec 9>l; $F exec -s --fd 9 -- sh -c 'readlink /proc/self/fd/9; exit 4'; echo "rc $?"
           flock -n l true; echo "flock $?"; flock -s -n l true; echo "shared $?""#,
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{}\nrc 4\n", d.join("l").display())),
        "{stdout}"
    );
    assert!(stdout.contains("flock 1\nshared 0\n"), "{stdout}");
    // --close: COMMAND does not get the descriptor.
    let out = shell(
        d,
        r#"exec 9>l; $F exec --close --fd 9 -c 'ls /proc/self/fd/9 2>/dev/null; echo "seen $?"'"#,
    );
    assert_eq!(text(&out.stdout), "seen 2\n", "{}", text(&out.stderr));
    // --fcntl on the descriptor: an OFD lock, which flock(1) --fcntl would see.
    let out = shell(d, r#"exec 9<>l; $F exec --fcntl --fd 9; echo "held $?""#);
    assert_eq!(text(&out.stdout), "held 0\n", "{}", text(&out.stderr));
}

#[test]
fn fd_mode_conflicts_wait_and_time_out_like_any_lock() {
    let dir = scratch();
    let d = dir.path();
    let held = real_flock_holds(&d.join("l"), false);
    let out = shell(
        d,
        r#"exec 9>l; $F try --fd 9; echo "try $?"; $F exec -n -E 3 --fd 9; echo "E $?"
           start=$(date +%s%N); $F exec -w 0.3 --fd 9 -- true; echo "wait $?"
           echo "took $(( ($(date +%s%N) - start) / 1000000 ))""#,
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(stdout.contains("try 75\nE 3\nwait 75\n"), "{stdout}");
    assert!(
        stderr.contains("descriptor 9 is busy: held by pid") && stderr.contains("timed out"),
        "{stderr}"
    );
    let took: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("took "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((300..2000).contains(&took), "{took} ms");
    drop(held);
}

#[test]
fn fd_mode_refuses_descriptors_that_cannot_carry_a_lock() {
    let dir = scratch();
    let d = dir.path();
    let run = |script: &str| {
        let out = shell(d, script);
        (out.status.code(), text(&out.stderr))
    };
    let (code, stderr) = run("$F exec --fd 7");
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("descriptor 7") && stderr.contains("exec 7>LOCK"),
        "{stderr}"
    );
    let (code, stderr) = run("mkfifo ff; exec 8<>ff; $F exec --fd 8");
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("descriptor 8") && stderr.contains("FIFO"),
        "{stderr}"
    );
    let (code, stderr) = run("exec 6>gone; rm gone; $F exec --fd 6 -- true");
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("deleted"), "{stderr}");
    for (script, wanted) in [
        ("$F exec --fd x", "--fd"),
        ("$F exec --fd=-1", "--fd"),
        (
            "exec 9>l; $F write --fd 9 -- true",
            "--fd applies to exec and try",
        ),
        (
            "exec 9>l; $F exec --soft --fd 9 -- true",
            "--fd applies to exec and try",
        ),
        (
            "exec 9>l; $F exec --soft --ttl 5 --fd 9 -- true",
            "--fd applies to exec and try",
        ),
        ("$F exec", "LOCK"),
    ] {
        let (code, stderr) = run(script);
        assert_eq!(code, Some(64), "{script}: {stderr}");
        assert!(stderr.contains(wanted), "{script}: {stderr}");
    }
}

#[test]
fn the_front_end_keeps_flockruns_safety_where_flock_1_has_none() {
    let dir = scratch();
    let d = dir.path();
    let flock = front_end(d);
    fs::write(d.join("target"), "").unwrap();
    symlink(d.join("target"), d.join("link")).unwrap();
    // A symbolic link at LOCK: flock(1) follows it; the front end refuses it (66) and
    // says why.
    let out = Command::new(&flock)
        .arg(d.join("link"))
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "flock: cannot open lock file {}",
            d.join("link").display()
        )) && stderr.contains("symbolic link"),
        "{stderr}"
    );
    // A FIFO at LOCK: flock(1) hangs in open; the front end refuses it at once.
    Command::new("mkfifo").arg(d.join("fifo")).status().unwrap();
    let start = Instant::now();
    let out = Command::new(&flock)
        .arg(d.join("fifo"))
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(5));
    // No FLOCKRUN_* variables and no nesting: as with flock(1), a second lock of the same
    // file from under the first is busy.
    let out = Command::new(&flock)
        .arg(d.join("l"))
        .args([
            "sh",
            "-c",
            "env | grep -c FLOCKRUN_; \"$0\" -n \"$1\" true; echo $?",
        ])
        .arg(&flock)
        .arg(d.join("l"))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "0\n1\n", "{}", text(&out.stderr));
    // A stop signal while waiting ends the wait as it ends flock(1): the process dies of it.
    let held = real_flock_holds(&d.join("w"), false);
    let mut waiter = Command::new(&flock)
        .arg(d.join("w"))
        .arg("true")
        .spawn()
        .unwrap();
    let pid = i32::try_from(waiter.id()).unwrap();
    crate::harness::wait_until_waiting(pid, &d.join("w"));
    crate::harness::signal(pid, nix::sys::signal::Signal::SIGTERM);
    let status = crate::harness::wait_with_deadline(&mut waiter);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
    drop(held);
}

#[test]
fn flockrun_flock_is_the_front_end_too() {
    let dir = scratch();
    let out = Command::new(FLOCKRUN)
        .args(["flock", "--verbose", "-n"])
        .arg(dir.path().join("l"))
        .args(["echo", "via the subcommand"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("via the subcommand\nflock: getting lock took "),
        "{stdout}"
    );
    assert!(stdout.ends_with("flock: executing echo\n"), "{stdout}");
}

// util-linux's own flock tests (tests/ts/flock at HEAD), re-enacted step by step against
// the front end; the expected results are theirs.

/// tests/ts/flock/flock: for each API (flock(2), then --fcntl), a shared holder for 3 s,
/// then non-block, no-fork, shared, exclusive, fd, fcntl-vs-flock and timeout requests.
#[test]
fn upstream_flock_test() {
    let dir = scratch();
    let d = dir.path();
    let flock = front_end(d);
    let lockfile = d.join("lockfile");
    let output = d.join("output");
    for (api, api_arg) in [("flock", None), ("fcntl", Some("--fcntl"))] {
        let start = Instant::now();
        let mut general = Command::new(&flock);
        general.args(api_arg).arg("--shared").arg(&lockfile).args([
            "bash",
            "-c",
            &format!("echo 'API: {api}(2)'; echo 'Locking'; sleep 3; echo 'Unlocking'"),
        ]);
        let general = general.stdout(Stdio::piped()).spawn().unwrap();
        let pid = general.id();
        // Ready once the general lock's COMMAND runs (the upstream test waits for a child).
        wait_until("the general lock", Instant::now() + PATIENCE, || {
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .ok()
                .filter(|c| !c.trim().is_empty())
        });
        let lock = |opts: &[&str], message: &str| -> Option<i32> {
            let out = Command::new(&flock)
                .args(api_arg)
                .args(opts)
                .arg(&lockfile)
                .args(["echo", message])
                .output()
                .unwrap();
            fs::write(&output, &out.stdout).unwrap();
            out.status.code()
        };
        let never = "You will never see this!";
        assert_eq!(
            lock(&["--nonblocking", "--conflict-exit-code", "123"], never),
            Some(123)
        );
        assert_eq!(
            lock(
                &["--no-fork", "--nonblocking", "--conflict-exit-code", "123"],
                never
            ),
            Some(123)
        );
        assert_eq!(lock(&["--shared"], "Have shared lock"), Some(0));
        assert_eq!(fs::read_to_string(&output).unwrap(), "Have shared lock\n");
        assert_eq!(
            lock(
                &["--nb", "--exclusive", "--conflict-exit-code", "123"],
                never
            ),
            Some(123)
        );
        // fd: a number without a command is a descriptor, not a file to create.
        let out = Command::new("bash")
            .current_dir(d)
            .arg("-c")
            .arg(format!(
                "exec 4<>'{}'; '{}' {} --nonblocking --exclusive --conflict-exit-code 123 4",
                lockfile.display(),
                flock.display(),
                api_arg.unwrap_or("")
            ))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(123), "{}", text(&out.stderr));
        assert!(!d.join("4").exists(), "fd file should not exist");
        if api == "fcntl" {
            // fcntl locks are independent of flock locks.
            let out = Command::new(&flock)
                .args(["--nonblock", "--exclusive"])
                .arg(&lockfile)
                .args(["echo", "flock vs fcntl"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0));
            assert_eq!(text(&out.stdout), "flock vs fcntl\n");
        }
        assert_eq!(
            lock(
                &["--timeout", "5", "--conflict-exit-code", "5"],
                "After timeout."
            ),
            Some(0)
        );
        assert_eq!(fs::read_to_string(&output).unwrap(), "After timeout.\n");
        let took = start.elapsed().as_secs();
        assert!((3..=5).contains(&took), "time-check: {took} s");
        let general = general.wait_with_output().unwrap();
        assert_eq!(
            text(&general.stdout),
            format!("API: {api}(2)\nLocking\nUnlocking\n")
        );
    }
}

/// tests/ts/flock/unlock: lock descriptor 10, unlock it, then `--wait 0` on the file is `-n`.
#[test]
fn upstream_unlock_test() {
    let dir = scratch();
    let flock = front_end(dir.path());
    let out = Command::new("bash")
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!(
            "exec 10<>lock; F='{}'; \"$F\" --exclusive --nonblock --verbose 10; \
             \"$F\" --unlock 10; \"$F\" --exclusive --wait 0 --verbose lock true",
            flock.display()
        ))
        .output()
        .unwrap();
    let (_, stdout, stderr) = said(&out);
    assert_eq!(stderr, "");
    assert_eq!(
        stdout,
        "flock: getting lock took <n> seconds\nflock: getting lock took <n> seconds\n\
         flock: executing true"
    );
}

/// tests/ts/flock/close: with --close the command does not inherit descriptor 10, so a
/// flock on it inside fails with EBADF (65); without, it succeeds (the same open file
/// description already holds the lock).
#[test]
fn upstream_close_test() {
    let dir = scratch();
    let flock = front_end(dir.path());
    let out = Command::new("bash")
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!(
            "exec 10<>lock; F='{}'
             \"$F\" --exclusive --close --fd 10 --command \"$F --exclusive --nonblock --fd 10 true\"
             echo \"exit code: $?\"
             \"$F\" --exclusive --fd 10 --command \"$F --exclusive --nonblock --fd 10 true\"
             echo \"exit code: $?\"",
            flock.display()
        ))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "exit code: 65\nexit code: 0\n");
    assert_eq!(text(&out.stderr), "flock: 10: Bad file descriptor\n");
}

/// tests/ts/flock/range-lock: a shared OFD lock on bytes 1 and 2 of the directory, seen
/// with that range (upstream reads it with lslocks; here /proc/locks and status).
#[test]
fn upstream_range_lock_test() {
    let dir = scratch();
    let d = dir.path();
    let flock = front_end(d);
    let mut holder = Command::new(&flock)
        .args([
            "--shared",
            "--fcntl",
            "--start",
            "1",
            "--length",
            "2",
            "--no-fork",
        ])
        .arg(d)
        .args(["-c", "cat"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(d).unwrap());
    let line = wait_until("the range lock", Instant::now() + PATIENCE, || {
        crate::harness::proc_locks_for(d).into_iter().next()
    });
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&words[1..4], ["OFDLCK", "ADVISORY", "READ"], "{line}");
    assert!(words[5].ends_with(&format!(":{inode}")), "{line}");
    assert_eq!(&words[6..], ["1", "2"], "{line}");
    let out = Command::new(FLOCKRUN)
        .args(["status", "--json"])
        .arg(d)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["locks"][0]["ranges"],
        serde_json::json!([{"start": 1, "end": 2, "mode": "shared"}])
    );
    drop(holder.stdin.take());
    assert!(crate::harness::wait_with_deadline(&mut holder).success());
}
