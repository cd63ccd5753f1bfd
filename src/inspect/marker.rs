//! Soft-lock markers at the lock path: py-filelock's `SoftFileLock` records (protocol 1,
//! `pid\nhost\n[start_token\n]`) and its `filelock/2` records (`SoftFileLease` with
//! `mode=lease`, `MarkerSoftFileLock` with `mode=exclusive`). Read without trusting what is there (no symlinks, no blocking on a
//! FIFO, at most 1 KiB) and judged by py-filelock 4.2.11's rules, failing closed where they
//! leave room: only a provably gone owner makes a marker stale.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::identity::{self, StartToken};

/// Longest marker py-filelock accepts.
const MAX_MARKER: usize = 1024;
/// py-filelock's `StrictSoftFileLock` sentinel: a permanent marker meaning "held".
const STRICT_SENTINEL: &[u8] = b"1\nfilelock-strict-v1\x00\n0\n";

/// What a marker file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// No bytes: a writer between create and write, or a pre-3.22 writer.
    Empty,
    /// The `StrictSoftFileLock` sentinel.
    Strict,
    /// A `filelock/2` record (lease and marker locks).
    Protocol2(Record),
    /// A protocol-1 record.
    Owner {
        pid: i32,
        host: String,
        token: Option<StartToken>,
    },
    /// Anything else, with what is wrong.
    Malformed(String),
}

/// A parsed `filelock/2` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub pid: Option<i32>,
    pub host: Option<String>,
    pub mode: RecordMode,
    pub start: Option<StartToken>,
}

impl Eq for Record {}

/// The contract a `filelock/2` record names.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordMode {
    /// `mode=lease`: a `SoftFileLease`, renewed by its holder, taken over once unchanged for
    /// `duration` seconds.
    Lease {
        token: String,
        /// As written (`30.0`), and its value.
        duration_text: String,
        duration: f64,
    },
    /// `mode=exclusive`: a `MarkerSoftFileLock`, reclaimed only when its owner is provably gone.
    Exclusive,
    /// A contract this version does not know: never reclaimed.
    Unknown(String),
}

/// The judgement on a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its owner may be alive: the lock is held.
    Held,
    /// Its owner is provably gone (same host, pid dead or reused).
    Stale,
    /// Unreadable as a marker; contenders evict it once it stays unchanged for 2 s.
    Malformed,
    /// Written on another host, whose pids cannot be checked from here: held.
    ForeignHost,
}

impl Verdict {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Held => "held",
            Verdict::Stale => "stale",
            Verdict::Malformed => "malformed",
            Verdict::ForeignHost => "foreign host",
        }
    }
}

/// Reads the marker at `path`: `Ok(None)` when nothing is there. A non-regular file reads as
/// malformed content without being opened.
///
/// # Errors
/// When the path cannot be examined (permissions).
pub fn read(path: &Path) -> io::Result<Option<Content>> {
    Ok(read_with_meta(path)?.map(|(content, _)| content))
}

/// As `read`, with the attributes of the file read: taken from the open descriptor, which on
/// NFS (close-to-open) are fresh from the server rather than the client's attribute cache.
/// For a non-regular file, its `lstat`.
///
/// # Errors
/// When the path cannot be examined (permissions).
pub fn read_with_meta(path: &Path) -> io::Result<Option<(Content, fs::Metadata)>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if crate::open::vanished(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_file() {
        let what = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else if meta.file_type().is_fifo() {
            "a FIFO"
        } else if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        let content = Content::Malformed(format!("the marker is {what}"));
        return Ok(Some((content, meta)));
    }
    let file = match File::options()
        .read(true)
        .custom_flags(
            libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | crate::mounts::uncached_at(path),
        )
        .open(path)
    {
        Ok(file) => file,
        Err(e) if crate::open::vanished(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    // On FUSE the attributes of a file removed since the open fail with ENOENT.
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) if crate::open::vanished(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::with_capacity(MAX_MARKER + 1);
    file.take(MAX_MARKER as u64 + 1).read_to_end(&mut bytes)?;
    Ok(Some((parse(&bytes), meta)))
}

/// Parses marker bytes the way py-filelock 4.1+ does.
#[must_use]
pub fn parse(bytes: &[u8]) -> Content {
    if bytes.is_empty() {
        return Content::Empty;
    }
    if bytes == STRICT_SENTINEL {
        return Content::Strict;
    }
    let malformed = |why: &str| Content::Malformed(why.to_owned());
    if bytes.len() > MAX_MARKER {
        return malformed("longer than 1024 bytes");
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return malformed("not UTF-8");
    };
    if text.starts_with("filelock/2\n") {
        return parse_record(text);
    }
    let Some(body) = text.strip_suffix('\n') else {
        return malformed("no final newline");
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let (pid, host, token) = match lines.as_slice() {
        [pid, host] => (*pid, *host, None),
        [pid, host, token] => (*pid, *host, Some(*token)),
        _ => return malformed("not 2 or 3 lines"),
    };
    let pid = match pid.parse::<i32>() {
        Ok(p) if p >= 1 && pid.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return malformed("the pid is not a number from 1 to 2147483647"),
    };
    if host.is_empty() {
        return malformed("the host is empty");
    }
    let token = match token.map(StartToken::parse) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => return malformed("the start token is not a decimal number"),
    };
    Content::Owner {
        pid,
        host: host.to_owned(),
        token,
    }
}

/// Parses a `filelock/2` record by py-filelock 4.2's rules: `key=value` lines after the
/// first, later keys winning, unknown keys ignored; a mode it does not know makes a record
/// it never reclaims.
fn parse_record(text: &str) -> Content {
    let malformed = |why: &str| Content::Malformed(format!("a filelock/2 record {why}"));
    if !text.ends_with('\n') {
        return malformed("without a final newline");
    }
    let mut fields = std::collections::HashMap::new();
    for line in text.trim().lines().skip(1) {
        let Some((key, value)) = line.split_once('=') else {
            return malformed("with a line that is not key=value");
        };
        fields.insert(key, value);
    }
    let mode = match fields.get("mode") {
        None => return malformed("without a mode"),
        Some(&("lease" | "exclusive")) => fields["mode"],
        Some(other) => {
            return Content::Protocol2(Record {
                pid: fields.get("pid").and_then(|p| parse_pid(p)),
                host: fields.get("host").map(|h| (*h).to_owned()),
                mode: RecordMode::Unknown((*other).to_owned()),
                start: None,
            });
        }
    };
    let Some(host) = fields.get("host").filter(|h| !h.is_empty()) else {
        return malformed("without a host");
    };
    let Some(pid) = fields.get("pid").and_then(|p| parse_pid(p)) else {
        return malformed("without a pid from 1 to 2147483647");
    };
    let start = match fields.get("start") {
        None => None,
        Some(text) if text.bytes().all(|b| b.is_ascii_digit()) => StartToken::parse(text),
        Some(_) => return malformed("with a start token that is not a number"),
    };
    let mode = if mode == "lease" {
        let Some(token) = fields.get("token").filter(|t| !t.is_empty()) else {
            return malformed("of a lease without a token");
        };
        let Some(text) = fields.get("duration") else {
            return malformed("of a lease without a duration");
        };
        match parse_duration(text) {
            Some(duration) => RecordMode::Lease {
                token: (*token).to_owned(),
                duration_text: (*text).to_owned(),
                duration,
            },
            None => return malformed("of a lease with a duration that is not a positive number"),
        }
    } else {
        RecordMode::Exclusive
    };
    Content::Protocol2(Record {
        pid: Some(pid),
        host: Some((*host).to_owned()),
        mode,
        start,
    })
}

fn parse_pid(text: &str) -> Option<i32> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<i32>().ok())
        .flatten()
        .filter(|p| *p >= 1)
}

/// `[0-9]+(\.[0-9]+)?(e[+-][0-9]+)?`, finite and above zero.
fn parse_duration(text: &str) -> Option<f64> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (text, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let shaped = digits(whole)
        && fraction.is_none_or(digits)
        && exponent.is_none_or(|e| e.strip_prefix(['+', '-']).is_some_and(digits));
    let value: f64 = text.parse().ok()?;
    (shaped && value.is_finite() && value > 0.0).then_some(value)
}

/// Whether a process with this pid is still running (`kill(pid, 0)`; one we may not signal
/// runs too). A zombie does not count: it has exited and closed everything it had, and only
/// waits for its parent to collect its status.
#[must_use]
pub fn pid_exists(pid: i32) -> bool {
    let exists = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    );
    exists && !is_zombie(pid)
}

/// The state letter in `/proc/PID/stat` (after the last `)`, as the command name may hold
/// one) is `Z` or `X`. Unreadable means "not known to be a zombie".
fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    matches!(stat.get(close + 2), Some(b'Z' | b'X'))
}

/// Judges `content` as a contender on this host would.
#[must_use]
pub fn judge(content: &Content) -> Verdict {
    match content {
        Content::Empty | Content::Strict => Verdict::Held,
        Content::Protocol2(record) => match (record.pid, &record.host, &record.mode) {
            (_, _, RecordMode::Unknown(_)) | (None, _, _) | (_, None, _) => Verdict::Held,
            (Some(pid), Some(host), _) => judge_owner(pid, host, record.start.as_ref()),
        },
        Content::Malformed(_) => Verdict::Malformed,
        Content::Owner { pid, host, token } => judge_owner(*pid, host, token.as_ref()),
    }
}

/// Whether the owner a record names is alive: same host and the pid runs the process that
/// wrote it; otherwise stale, or unknowable from here (another host).
fn judge_owner(pid: i32, host: &str, token: Option<&StartToken>) -> Verdict {
    if host != identity::host_name() {
        return Verdict::ForeignHost;
    }
    let alive = pid_exists(pid);
    let same_process = match (token, StartToken::of(pid)) {
        (Some(recorded), Some(current)) => recorded.same_start(current),
        // No recorded token, or none can be computed now: the pid alone decides.
        _ => true,
    };
    if alive && same_process {
        return Verdict::Held;
    }
    // A pre-4.1 py-filelock inside a container that shares this host name records its pid
    // as the container sees it, without a pid-namespace suffix. If any task here has that
    // pid innermost and the recorded start token, the owner lives.
    if !host.contains("?pidns-")
        && let Some(recorded) = token
        && lives_in_a_pid_namespace(pid, *recorded)
    {
        return Verdict::Held;
    }
    Verdict::Stale
}

/// Whether some task whose innermost pid (the last `NSpid` value) is `pid` has the start
/// token `token`.
fn lives_in_a_pid_namespace(pid: i32, token: StartToken) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .any(|real| {
            let innermost = fs::read_to_string(format!("/proc/{real}/status"))
                .ok()
                .and_then(|status| {
                    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
                    line.split_whitespace().last()?.parse::<i32>().ok()
                });
            innermost == Some(pid)
                && real != pid
                && StartToken::of(real).is_some_and(|t| t.same_start(token))
        })
}

/// The pid in a takeover leftover's name (`<name>.break.<pid>.<hex>`): the process that
/// made it.
#[must_use]
pub fn stranded_breaker(file: &Path) -> Option<i32> {
    let name = file.file_name()?.to_str()?;
    let mut parts = name.rsplitn(3, '.');
    let _hex = parts.next()?;
    parts.next()?.parse().ok()
}

/// Files a py-filelock 4.2.1+ takeover leaves when interrupted (`<name>.break.<pid>.<hex>`,
/// `<name>.restore.<pid>.<hex>`): one may hold a live owner's marker, so their presence
/// means "held" until someone cleans up.
#[must_use]
pub fn stranded(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = name.to_string_lossy();
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let other = e.file_name().to_string_lossy().into_owned();
            ["break", "restore"].iter().any(|what| {
                other
                    .strip_prefix(&format!("{name}.{what}."))
                    .and_then(|rest| rest.split_once('.'))
                    .is_some_and(|(pid, hex)| {
                        !pid.is_empty()
                            && pid.bytes().all(|b| b.is_ascii_digit())
                            && hex.len() == 32
                            && hex.bytes().all(|b| b.is_ascii_hexdigit())
                    })
            })
        })
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_a_running_owner() {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Wait for the exit but leave the child unreaped: a zombie.
        waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
        assert!(!pid_exists(pid));
        let mut child = child;
        child.wait().unwrap();
        assert!(pid_exists(std::process::id().try_into().unwrap()));
    }

    #[test]
    fn parses_protocol_1_records() {
        assert_eq!(
            parse(b"17824\nvm\n"),
            Content::Owner {
                pid: 17824,
                host: "vm".into(),
                token: None
            }
        );
        let Content::Owner { token: Some(t), .. } =
            parse(b"17799\nvm\n57388187673588313894229794773386246136790339237430980405\n")
        else {
            panic!("three-line marker not parsed");
        };
        assert_eq!(
            (t.boot, t.start),
            (0x0257_291f_6f2c_4746_9818_b1a7_047a_fa8f, 0x6f35)
        );
        assert_eq!(parse(b""), Content::Empty);
        assert_eq!(parse(STRICT_SENTINEL), Content::Strict);
        assert!(matches!(
            parse(b"filelock/2\npid=1\nhost=vm\nmode=lease\n"),
            Content::Malformed(_) // a lease needs a token and a duration
        ));
        assert!(matches!(
            parse(b"filelock/2\npid=1\nhost=vm\nmode=exclusive\n"),
            Content::Protocol2(Record {
                mode: RecordMode::Exclusive,
                pid: Some(1),
                ..
            })
        ));
    }

    #[test]
    fn refuses_malformed_records() {
        for bad in [
            &b"hello"[..],
            b"123\nvm",
            b"123\n",
            b"0\nvm\n",
            b"-5\nvm\n",
            b"+5\nvm\n",
            b"2147483648\nvm\n",
            b"12\n\n",
            b"12\nvm\nabc\n",
            b"12\nvm\n1\n2\n",
            b"\xff\nvm\n",
            b"filelock/break\n12\n",
            b"filelock/released\n",
        ] {
            assert!(matches!(parse(bad), Content::Malformed(_)), "{bad:?}");
        }
        assert!(matches!(parse(&[b'1'; 1025]), Content::Malformed(_)));
    }

    #[test]
    fn judges_owners() {
        let me = nix::unistd::getpid().as_raw();
        let host = identity::host_name();
        let live = Content::Owner {
            pid: me,
            host: host.clone(),
            token: StartToken::of(me),
        };
        assert_eq!(judge(&live), Verdict::Held);
        let recycled = Content::Owner {
            pid: me,
            host: host.clone(),
            token: StartToken::of(me).map(|t| StartToken {
                start: t.start + 1,
                ..t
            }),
        };
        assert_eq!(judge(&recycled), Verdict::Stale);
        let foreign = Content::Owner {
            pid: me,
            host: format!("{host}-elsewhere"),
            token: None,
        };
        assert_eq!(judge(&foreign), Verdict::ForeignHost);
        assert_eq!(judge(&Content::Empty), Verdict::Held);
        assert_eq!(judge(&Content::Malformed("x".into())), Verdict::Malformed);
    }
}
