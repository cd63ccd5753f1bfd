//! The critical section of the load tests, built by the harness with plain `rustc`.
//!
//! `occupy DIR x|s [--after-kill]`: as an exclusive (`x`) holder, create `DIR/occupied` with
//! `O_EXCL` (holding our pid), add one to `DIR/counter` with a plain read-modify-write, and
//! remove `occupied`; as a shared (`s`) holder, check twice that `occupied` is absent. Either
//! way, append `ROLE PID ENTER LEAVE` (CLOCK_MONOTONIC nanoseconds) to `DIR/log` in one
//! `O_APPEND` write once done. A clash is appended as `OVERLAP ...` and exits 99.
//!
//! With `--after-kill`, an `occupied` left by a holder that is gone (killed together with
//! its flockrun) is not a clash: the helper waits for that pid to disappear, logs `GONE PID`
//! and carries on. The test then checks that no GONE pid ever completed a hold.
//!
//! With `OCCUPY_DWELL_MS=N` in the environment, a holder stays inside N milliseconds (between
//! its checks, or with `occupied` created), so that a hold that should have waited meets
//! one in progress rather than slipping through between two short ones.
//!
//! With `OCCUPY_HOSTS=1` in the environment (the shared-filesystem bed, where every host has
//! its own pids and monotonic clock), times are CLOCK_REALTIME, the one clock all hosts
//! share; a holder is named `HOST/PID`; an owner on another host is not waited for (its
//! host's pids cannot be seen from here: its flockrun died long before a takeover from
//! another host, and took COMMAND with it); and an exclusive hold's line ends with the
//! counter value it wrote, so a lost update shows as a value written twice.
//!
//! With `OCCUPY_LOG=NAME`, lines go to `DIR/NAME` instead of `DIR/log`.
//!
//! `occupy DIR n [--after-kill]` is a semaphore slot's holder: it checks `FLOCKRUN_SLOT` is
//! below `FLOCKRUN_SLOTS`, creates `DIR/slot-I` for its slot I with `O_EXCL` (a slot given
//! twice at once is a clash), dwells, removes it, and logs its hold as a shared one (`s`):
//! the test counts how many holds overlap at any moment.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::exit;
use std::time::{Duration, Instant};

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

fn hosts() -> bool {
    std::env::var_os("OCCUPY_HOSTS").is_some_and(|v| v == "1")
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// This holder's name: its pid, or `HOST/PID` across hosts.
fn me() -> String {
    if hosts() {
        format!("{}/{}", host_name(), std::process::id())
    } else {
        std::process::id().to_string()
    }
}

/// Stays inside for `OCCUPY_DWELL_MS` milliseconds, if set.
fn dwell() {
    if let Some(ms) = std::env::var("OCCUPY_DWELL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn now() -> i128 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // CLOCK_MONOTONIC (1), or CLOCK_REALTIME (0) across hosts.
    let clock = if hosts() { 0 } else { 1 };
    // SAFETY: a valid out-pointer and a valid clock id.
    unsafe { clock_gettime(clock, &mut ts) };
    i128::from(ts.sec) * 1_000_000_000 + i128::from(ts.nsec)
}

fn append(dir: &Path, line: &str) {
    // OCCUPY_LOG names another log file in DIR: one per host where hosts share DIR over NFS,
    // whose clients do not append atomically to one file.
    let name = std::env::var_os("OCCUPY_LOG").unwrap_or_else(|| "log".into());
    let mut log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join(name))
        .expect("open log");
    log.write_all(line.as_bytes()).expect("write log");
}

fn clash(dir: &Path, what: &str) -> ! {
    append(dir, &format!("OVERLAP {} {what}\n", me()));
    eprintln!("occupy: OVERLAP: {what}");
    exit(99);
}

/// Whether `pid` still runs (a zombie counts as gone: it runs no code).
fn alive(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.starts_with(" Z")))
}

/// `owner` was found inside: a holder killed together with its flockrun is gone within
/// moments (and never logs its hold; the test checks that), a live one that stays is a clash.
fn outlive(dir: &Path, owner: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let local_pid = match owner.split_once('/') {
        Some((host, pid)) if host == host_name() => pid,
        Some(_) => "",
        None => owner,
    };
    while !local_pid.is_empty() && alive(local_pid) {
        if Instant::now() > deadline {
            clash(dir, &format!("pid {owner} is inside and alive"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    append(dir, &format!("GONE {owner}\n"));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(&args[1]);
    let after_kill = args.get(3).is_some_and(|a| a == "--after-kill");
    let occupied = dir.join("occupied");
    let enter = now();
    if args[2] == "n" {
        hold_slot(dir, after_kill);
        let leave = now();
        append(dir, &format!("s {} {enter} {leave}\n", me()));
        return;
    }
    if args[2] == "s" {
        for round in 0..2 {
            if occupied.exists() {
                let owner = fs::read_to_string(&occupied).unwrap_or_default();
                if !after_kill {
                    clash(dir, &format!("a shared holder found pid {owner} inside"));
                }
                outlive(dir, &owner);
            }
            if round == 0 {
                dwell();
            }
            std::thread::yield_now();
        }
    } else {
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&occupied) {
                Ok(mut f) => {
                    f.write_all(me().as_bytes()).unwrap();
                    break;
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&occupied).unwrap_or_default();
                    if !after_kill {
                        clash(dir, &format!("pid {owner} is inside"));
                    }
                    outlive(dir, &owner);
                    let _ = fs::remove_file(&occupied);
                }
                Err(e) => panic!("create {}: {e}", occupied.display()),
            }
        }
        let counter = dir.join("counter");
        let n: u64 = fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        std::thread::yield_now();
        dwell();
        // Written aside and renamed over, so a holder killed halfway (a flockrun killed
        // takes its COMMAND with it) leaves the old value or the new, never an empty file
        // that the next holder would read as 0.
        let fresh = dir.join(format!("counter.{}", std::process::id()));
        fs::write(&fresh, format!("{}\n", n + 1)).unwrap();
        fs::rename(&fresh, &counter).unwrap();
        fs::remove_file(&occupied).unwrap();
        if hosts() {
            let leave = now();
            append(dir, &format!("x {} {enter} {leave} {}\n", me(), n + 1));
            return;
        }
    }
    let leave = now();
    append(dir, &format!("{} {} {enter} {leave}\n", args[2], me()));
}

/// A semaphore slot's critical section.
fn hold_slot(dir: &Path, after_kill: bool) {
    let var = |name: &str| -> u32 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| clash(dir, &format!("{name} is missing or not a number")))
    };
    let (slot, slots) = (var("FLOCKRUN_SLOT"), var("FLOCKRUN_SLOTS"));
    if slot >= slots {
        clash(dir, &format!("slot {slot} of {slots}"));
    }
    let mine = dir.join(format!("slot-{slot}"));
    loop {
        match OpenOptions::new().write(true).create_new(true).open(&mine) {
            Ok(mut f) => {
                f.write_all(me().as_bytes()).unwrap();
                break;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&mine).unwrap_or_default();
                if !after_kill {
                    clash(dir, &format!("slot {slot} is held by pid {owner} too"));
                }
                outlive(dir, &owner);
                let _ = fs::remove_file(&mine);
            }
            Err(e) => panic!("create {}: {e}", mine.display()),
        }
    }
    std::thread::yield_now();
    dwell();
    fs::remove_file(&mine).unwrap();
}
