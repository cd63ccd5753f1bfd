//! Entry points for fuzzing the parsers of bytes another program wrote: anyone who may write
//! to a lock's directory controls its markers and records, anyone who answers on an etcd
//! port controls the replies, and `/proc` and mountinfo carry names users chose. Each
//! function feeds arbitrary bytes through one parser and the code that consumes its result,
//! checks what must hold of what it accepts, and throws the result away.
//!
//! The cargo-fuzz targets in `fuzz/` call these, one target per entry of [`TARGETS`], and
//! the stable test suite replays every file of their committed corpora through the same
//! functions, so a parser that regresses on an input the fuzzer once found fails CI.

use std::path::PathBuf;

use crate::identity::StartToken;
use crate::inspect::{marker, proc_locks, process};

/// What a target calls with each input.
pub type Entry = fn(&[u8]);

/// A fuzz target's name (its file in `fuzz/fuzz_targets/` and its corpus in
/// `fuzz/corpus/`) and its entry point.
pub const TARGETS: &[(&str, Entry)] = &[
    ("soft_marker", soft_marker),
    ("soft_rw_record", soft_rw_record),
    ("sqlite_file", sqlite_file),
    ("etcd_reply", etcd_reply),
    ("redis_reply", redis_reply),
    ("proc_locks", proc_locks),
    ("mountinfo", mountinfo),
    ("proc_stat", proc_stat),
];

/// A `SoftFileLock` marker or a `SoftFileLease` record (`filelock/2`) as `status` and a waiter
/// read it, and the start token inside it.
pub fn soft_marker(bytes: &[u8]) {
    let content = marker::parse(bytes);
    // What status prints of a marker: the describing text, made of the parsed fields.
    let _ = format!("{content:?}");
    if let marker::Content::Owner {
        token: Some(token), ..
    } = &content
    {
        let text = token.to_string();
        assert_eq!(StartToken::parse(&text).as_ref(), Some(token));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = StartToken::parse(text);
    }
}

/// A soft read/write record of either layout: v1's `LOCK.write` and reader markers, v2's
/// generation records.
pub fn soft_rw_record(bytes: &[u8]) {
    crate::kind::replay_soft_rw_record(bytes);
}

/// A file at a read/write lock's path that is not ours: judged by its header, opened by
/// SQLite, read in a transaction.
pub fn sqlite_file(bytes: &[u8]) {
    let path = scratch_file("sqlite.lock");
    // A fresh file each time: SQLite must not keep state of the previous input.
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, bytes).expect("writing the fuzz input to a scratch file");
    let _ = crate::kind::replay_sqlite_file(&path);
}

/// An etcd gateway's answer: the HTTP head, a body by length, chunked or to the end, the
/// JSON reply or error, and as a watch stream of JSON lines; the keys of a lock's queue and
/// the holder details in their values.
pub fn etcd_reply(bytes: &[u8]) {
    crate::kind::etcd::mutex::replay_reply(bytes);
}

/// What a Redis server (or whatever answers on its port) sends: a stream of RESP replies,
/// parsed one after another as the connection reads them, and read as the lock does (a
/// holder's record, its description for messages).
pub fn redis_reply(bytes: &[u8]) {
    use crate::kind::redis::resp::{Value, parse};
    let mut rest = bytes;
    while let Ok(Some((value, used))) = parse(rest) {
        assert!(used > 0 && used <= rest.len());
        // A reply is complete in its own bytes, and parses the same from them alone.
        assert_eq!(parse(&rest[..used]), Ok(Some((value.clone(), used))));
        if let Value::Array(Some(items)) = &value {
            for item in items {
                if let Value::Bulk(Some(record)) = item {
                    let _ = crate::kind::redis::lease::describe_value(record, None);
                }
            }
        }
        rest = &rest[used..];
    }
}

/// `/proc/locks` and the `lock:` lines of `/proc/PID/fdinfo/FD`.
pub fn proc_locks(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    // At most one lock per line of text.
    assert!(proc_locks::parse_all(&text).len() <= text.lines().count());
    assert!(proc_locks::parse_fdinfo(&text).len() <= text.lines().count());
}

/// Lines of `/proc/PID/mountinfo` (mount points and sources are escaped names) and the
/// NFSv4 lease in `/proc/self/mountstats`.
pub fn mountinfo(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines() {
        if let Some(mount) = crate::mounts::parse_mountinfo_line(line) {
            let _ = mount.describe();
            let _ = crate::mounts::nfs_attribute_cache(&mount);
            for lock in [
                crate::mounts::KernelLock::Flock,
                crate::mounts::KernelLock::Record,
            ] {
                let _ = crate::mounts::judge_locks(&mount, lock);
            }
        }
    }
    let mount_point = text.lines().next().unwrap_or("/");
    let _ = crate::mounts::lease_in_mountstats(&text, mount_point);
}

/// `/proc/PID/stat`, whose command name may hold spaces and parentheses.
pub fn proc_stat(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = process::parse_stat(&text);
}

/// The directory of this process's own where targets whose parser reads a file write it.
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("flockrun-fuzz-{}", std::process::id()))
}

fn scratch_file(name: &str) -> PathBuf {
    std::fs::create_dir_all(scratch_dir()).expect("creating a scratch directory for fuzzing");
    scratch_dir().join(name)
}

/// Removes what the targets wrote into the scratch directory: for a caller that replays
/// inputs and goes on (the test suite), not for the fuzzer, whose process ends.
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_dir());
}
